using System.IO.Compression;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ImageTransfer.Augmentation;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Tests.Cli;
using SkiaSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.Augmentation;

/// <summary>The preview grid (API and <c>augment</c> command) and <c>train --augment</c>.</summary>
public class AugmentationPreviewTests
{
    [Fact]
    public void The_grid_shows_the_evaluation_view_then_augmented_draws()
    {
        var root = TestData.ShapesFolder();
        var paths = AugmentationPreview.PickImages(root, 3, seed: 1);
        Assert.Equal(3, paths.Select(p => Path.GetFileName(Path.GetDirectoryName(p))).Distinct().Count()); // one per class
        var images = paths.Select(MLImage.CreateFromFile).ToList();
        var preprocessing = ImagePreprocessing.TorchVision(32);
        var png = AugmentationPreview.RenderPng(images, AugmentationPipeline.Parse("resized-crop,hflip,hue=0.2"), preprocessing, samples: 4, seed: 2);

        using var bitmap = SKBitmap.Decode(png);
        // Layout: 4-pixel margins and gaps, a 16-pixel gap after the original column.
        Assert.Equal(4 + 32 + 16 + 4 * 32 + 3 * 4 + 4, bitmap.Width);
        Assert.Equal(4 + 3 * (32 + 4), bitmap.Height);
        using var scope = NewDisposeScope();
        for (int row = 0; row < 3; row++)
        {
            int top = 4 + row * 36;
            var original = ImageTensors.ToResizedBytes(images[row], preprocessing);
            Assert.True(Cell(bitmap, 4, top).Same(original), $"row {row}: the first column is not the evaluation view");
            var augmented = Enumerable.Range(0, 4).Select(k => Cell(bitmap, 4 + 32 + 16 + k * 36, top)).ToList();
            Assert.All(augmented, a => Assert.False(a.Same(original)));
            Assert.False(augmented[0].Same(augmented[1]), "two draws of one image are identical");
        }
        // Same seed, same picture.
        Assert.Equal(png, AugmentationPreview.RenderPng(images, AugmentationPipeline.Parse("resized-crop,hflip,hue=0.2"), preprocessing, samples: 4, seed: 2));
        foreach (var image in images) image.Dispose();
    }

    /// <summary>The 32×32 cell at (left, top) as uint8 [3,32,32] RGB.</summary>
    static Tensor Cell(SKBitmap bitmap, int left, int top)
    {
        var values = new byte[3 * 32 * 32];
        for (int y = 0; y < 32; y++)
            for (int x = 0; x < 32; x++)
            {
                var c = bitmap.GetPixel(left + x, top + y);
                values[(0 * 32 + y) * 32 + x] = c.Red;
                values[(1 * 32 + y) * 32 + x] = c.Green;
                values[(2 * 32 + y) * 32 + x] = c.Blue;
            }
        return tensor(values).view(3, 32, 32);
    }

    [Fact]
    public void The_augment_command_writes_the_grid_and_train_takes_augment()
    {
        var root = TestData.ShapesFolder();
        var dir = TestData.NewTempDir("augment-cli");
        var grid = Path.Combine(dir, "grid.png");
        var run = CliProcess.Run("augment", "--data", root, "--out", grid, "--augment", "hflip,rotate=30,zoom=0.2,fill=reflect", "--image-size", "32", "--rows", "2", "--samples", "3");
        Assert.True(run.ExitCode == 0, run.StdErr + run.StdOut);
        Assert.Contains("hflip,rotate=30,zoom=0.8:1.2,fill=reflect", run.StdOut);
        using (var bitmap = SKBitmap.Decode(grid))
        {
            Assert.Equal(4 + 32 + 16 + 3 * 32 + 2 * 4 + 4, bitmap.Width);
            Assert.Equal(4 + 2 * 36, bitmap.Height);
        }

        var bad = CliProcess.Run("augment", "--data", root, "--out", grid, "--augment", "twirl=3");
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("Unknown augmentation 'twirl=3'", bad.StdErr);

        var model = Path.Combine(dir, "m.zip");
        var train = CliProcess.Run("train", "--data", root, "--arch", "resnet18", "--image-size", "32", "--epochs", "1", "--batch-size", "8",
            "--augment", "torchvision", "--quiet", "--out", model);
        Assert.True(train.ExitCode == 0, train.StdErr + train.StdOut);
        // The model records how it was trained.
        using var zip = ZipFile.OpenRead(model);
        var entry = zip.Entries.Single(e => e.Name == "model.json");
        using var json = JsonDocument.Parse(entry.Open());
        Assert.Equal(AugmentationPipeline.Parse("torchvision").ToSpec(), json.RootElement.GetProperty("Augmentation").GetString());

        var badTrain = CliProcess.Run("train", "--data", root, "--augment", "rotate=-5", "--out", model);
        Assert.Equal(1, badTrain.ExitCode);
        Assert.Contains("cannot be negative", badTrain.StdErr);
    }

    [Fact]
    public void The_augment_command_has_help()
    {
        var help = CliProcess.Run("augment", "--help");
        Assert.Equal(0, help.ExitCode);
        Assert.Contains("--augment", help.StdOut);
        Assert.Contains("Usage:", help.StdOut);
    }
}
