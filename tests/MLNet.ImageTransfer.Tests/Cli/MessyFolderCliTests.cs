using MLNet.ImageTransfer.Tests.Data;
using SkiaSharp;

namespace MLNet.ImageTransfer.Tests.Cli;

/// <summary><c>train</c> on a folder with a broken file: skipped with a note on stderr, or with <c>--fail-fast</c> an error before training.</summary>
public class MessyFolderCliTests
{
    [Fact]
    public void Train_skips_a_broken_file_with_a_note_or_stops_with_fail_fast()
    {
        var root = TestData.NewTempDir("cli-messy");
        foreach (var c in new[] { "cat", "dog" })
        {
            Directory.CreateDirectory(Path.Combine(root, c));
            for (int i = 0; i < 4; i++) File.WriteAllBytes(Path.Combine(root, c, $"{i}.png"), MessyImages.Encode(16, 16, shade: (byte)(c == "cat" ? 0 : 200 + i)));
        }
        var jpeg = MessyImages.Encode(64, 64, SKEncodedImageFormat.Jpeg);
        File.WriteAllBytes(Path.Combine(root, "dog", "broken.jpg"), jpeg[..(jpeg.Length / 2)]);
        var model = Path.Combine(TestData.NewTempDir("cli-messy-out"), "m.zip");
        string[] common = ["train", "--data", root, "--arch", "resnet18", "--image-size", "16", "--epochs", "1", "--batch-size", "4", "--seed", "1", "--quiet", "--out", model];

        var strict = CliProcess.Run([.. common, "--fail-fast"]);
        Assert.Equal(1, strict.ExitCode);
        Assert.Contains("broken.jpg: truncated", strict.StdErr);
        Assert.DoesNotContain("Epoch", strict.StdOut);
        Assert.False(File.Exists(model));

        var lenient = CliProcess.Run(common);
        Assert.True(lenient.ExitCode == 0, lenient.StdErr + lenient.StdOut);
        Assert.Contains("Skipped 1 file(s)", lenient.StdErr);
        Assert.Contains("broken.jpg: truncated", lenient.StdErr);
        Assert.True(File.Exists(model));
    }
}
