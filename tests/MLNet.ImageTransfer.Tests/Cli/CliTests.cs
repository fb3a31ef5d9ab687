using System.Globalization;
using System.Text.Json;
using Microsoft.ML;
using MLNet.ImageTransfer.Data;

namespace MLNet.ImageTransfer.Tests.Cli;

/// <summary>
/// The CLI end to end, and the persistence promise in a fresh process: a pipeline with built-in transforms before
/// (MapValueToKey, LoadImages) and after (MapKeyToValue) our trainer, saved here, loaded by another process, predicts
/// exactly what it predicted here.
/// </summary>
public class CliTests
{
    static ImageTransferTrainer.Options Options() => new()
    {
        Architecture = "resnet18",
        Preprocessing = ImagePreprocessing.TorchVision(32) with { Resize = ResizeMode.Stretch },
        Epochs = 1,
        BatchSize = 8,
        Seed = 3,
    };

    [Fact]
    public void A_saved_model_predicts_identically_in_a_fresh_process()
    {
        var root = TestData.ShapesFolder();
        var dir = TestData.NewTempDir("fresh");
        var modelPath = Path.Combine(dir, "model.zip");
        var ml = new MLContext(seed: 1);
        var trained = ImageClassificationWorkflow.TrainFromFolder(ml, root, Options());
        trained.Save(ml, modelPath);
        var images = Directory.GetFiles(Path.Combine(root, "star")).Take(5).Concat(Directory.GetFiles(Path.Combine(root, "circle")).Take(5)).ToArray();
        var here = ImageClassificationWorkflow.Predict(ml, trained.Model, images, top: 3);

        var csv = Path.Combine(dir, "predictions.csv");
        var (code, stdout, stderr) = CliProcess.Run("predict", "--model", modelPath, root, "--top", "3", "--csv", csv);
        Assert.True(code == 0, stderr + stdout);
        var there = File.ReadAllLines(csv).Skip(1).Select(line => line.Split(',')).ToDictionary(f => f[0]);
        foreach (var p in here)
        {
            var row = there[p.ImagePath];
            for (int k = 0; k < 3; k++)
            {
                Assert.Equal(p.Top[k].Class, row[1 + 2 * k]);
                // Same preprocessing, same weights: identical up to batching order in the forward pass.
                Assert.Equal(p.Top[k].Probability, float.Parse(row[2 + 2 * k], CultureInfo.InvariantCulture), 5);
            }
        }
    }

    [Fact]
    public void Train_then_evaluate_json_reports_metrics_with_class_names()
    {
        var root = TestData.ShapesFolder();
        var modelPath = Path.Combine(TestData.NewTempDir("cli"), "m.zip");
        var train = CliProcess.Run("train", "--data", root, "--val-split", "0.25", "--arch", "resnet18", "--image-size", "32",
            "--epochs", "1", "--batch-size", "8", "--seed", "2", "--quiet", "--out", modelPath);
        Assert.True(train.ExitCode == 0, train.StdErr + train.StdOut);
        Assert.Contains("Epoch 1/1", train.StdOut);
        Assert.Contains("val_accuracy", train.StdOut);
        Assert.True(File.Exists(modelPath));

        var eval = CliProcess.Run("evaluate", "--model", modelPath, "--data", root, "--json");
        Assert.True(eval.ExitCode == 0, eval.StdErr + eval.StdOut);
        using var report = JsonDocument.Parse(eval.StdOut);
        var r = report.RootElement;
        Assert.InRange(r.GetProperty("MicroAccuracy").GetDouble(), 0, 1);
        Assert.InRange(r.GetProperty("MacroAccuracy").GetDouble(), 0, 1);
        Assert.True(r.GetProperty("LogLoss").GetDouble() > 0);
        Assert.Equal(["circle", "square", "star"], r.GetProperty("ClassNames").EnumerateArray().Select(e => e.GetString()));
        var confusion = r.GetProperty("ConfusionMatrix").EnumerateArray().Select(row => row.EnumerateArray().Sum(c => c.GetInt64())).ToArray();
        Assert.Equal(Directory.GetFiles(root, "*.png", SearchOption.AllDirectories).Length, confusion.Sum());
        Assert.All(r.GetProperty("PerClass").EnumerateArray(), c => Assert.InRange(c.GetProperty("Recall").GetDouble(), 0, 1));
    }

    [Fact]
    public void User_errors_print_one_clear_line_and_exit_1()
    {
        var missing = CliProcess.Run("evaluate", "--model", "/nonexistent/model.zip", "--data", TestData.ShapesFolder());
        Assert.Equal(1, missing.ExitCode);
        Assert.StartsWith("error: Model file '/nonexistent/model.zip' does not exist.", missing.StdErr);

        var badArch = CliProcess.Run("train", "--data", TestData.ShapesFolder(), "--arch", "resnet9000", "--out", "/tmp/x.zip");
        Assert.Equal(1, badArch.ExitCode);
        Assert.Contains("Unknown architecture 'resnet9000'", badArch.StdErr);
    }

    [Fact]
    public void Every_command_has_help()
    {
        foreach (var command in new[] { "demo", "train", "evaluate", "predict" })
        {
            var help = CliProcess.Run(command, "--help");
            Assert.Equal(0, help.ExitCode);
            Assert.Contains("Usage:", help.StdOut);
        }
    }
}
