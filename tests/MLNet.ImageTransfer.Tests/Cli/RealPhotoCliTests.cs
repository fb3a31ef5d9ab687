using System.Globalization;
using System.Text.RegularExpressions;

namespace MLNet.ImageTransfer.Tests.Cli;

/// <summary>
/// <c>train</c> and <c>evaluate</c> through the real CLI on real JPEG photos (ten CC BY 2.0 flower photos of three
/// kinds, of mixed size and aspect; see fixtures/flowers/ATTRIBUTION.md), starting from ML.NET's pretrained ResNet18 by
/// name, offline: the recipe is announced, and the model fits the photos it learned from.
/// </summary>
public class RealPhotoCliTests
{
    static readonly string Photos = Path.Combine(AppContext.BaseDirectory, "fixtures", "flowers");

    [Fact] // about 10 s: ten photos through ResNet18
    public void Train_from_ML_NETs_ResNet18_by_name_fits_real_photos_and_evaluate_reads_the_model_back()
    {
        var dir = TestData.NewTempDir("real-photo-cli");
        var model = Path.Combine(dir, "flowers.zip");
        var train = CliProcess.Run("train", "--data", Photos, "--weights", "mlnet-resnet18", "--epochs", "4", "--batch-size", "4", "--out", model, "--quiet");
        Assert.True(train.ExitCode == 0, train.StdErr + train.StdOut);
        Assert.Contains("Recipe (pretrained weights): 3 epochs training the head alone on cached backbone features (lr 0.003), then 1 epoch", train.StdOut);
        Assert.Contains("[fine-tune, cached features]", train.StdOut);

        var evaluate = CliProcess.Run("evaluate", "--model", model, "--data", Photos);
        Assert.True(evaluate.ExitCode == 0, evaluate.StdErr + evaluate.StdOut);
        var accuracy = Regex.Match(evaluate.StdOut, @"Micro accuracy: ([0-9.]+)");
        Assert.True(accuracy.Success, evaluate.StdOut);
        // The photos it trained on, three classes (chance about 0.4 for the largest class): a network that learned
        // nothing cannot reach this; measured 1.0.
        Assert.True(double.Parse(accuracy.Groups[1].Value, CultureInfo.InvariantCulture) >= 0.8, evaluate.StdOut);
    }
}
