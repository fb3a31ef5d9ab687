using System.Globalization;
using System.Text.RegularExpressions;

namespace MLNet.ImageTransfer.Tests.Cli;

/// <summary>
/// The README's first command, shortened: the demo fine-tunes ML.NET's pretrained ResNet18 on its bundled flower
/// photos, offline, and must learn (five classes: chance is 20%), save, reload and predict.
/// </summary>
public class DemoCliTests
{
    [Fact] // about 20 s: 160 photos through ResNet18 once, plus the validation photos
    public void The_demo_learns_the_bundled_flower_photos_from_the_pretrained_network()
    {
        var dir = TestData.NewTempDir("demo");
        var (code, stdout, stderr) = CliProcess.Run("demo", "--epochs", "3", "--skip-from-scratch", "--quiet", "--dir", dir);
        Assert.True(code == 0, stderr + stdout);

        Assert.Contains("Dataset: 160 training and 40 validation photos of daisy, dandelion, roses, sunflowers, tulips", stdout);
        Assert.Contains("Recipe (pretrained weights): 2 epochs training the head alone on cached backbone features", stdout);
        var accuracy = Regex.Match(stdout, @"Accuracy on held-out photos: ([0-9.]+) ?%");
        Assert.True(accuracy.Success, stdout);
        double percent = double.Parse(accuracy.Groups[1].Value, CultureInfo.InvariantCulture);
        Assert.True(percent >= 60, $"held-out accuracy {percent}% (chance is 20%)");
        Assert.DoesNotContain("from scratch (", stdout); // --skip-from-scratch

        Assert.True(File.Exists(Path.Combine(dir, "flowers-model.zip")));
        Assert.True(File.Exists(Path.Combine(dir, "report", "confusion_counts.png")));
        Assert.Equal(5, Regex.Matches(stdout, @"^\s+(right|WRONG) ", RegexOptions.Multiline).Count); // one reloaded prediction per class
    }
}
