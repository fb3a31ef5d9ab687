using System.Globalization;
using System.Text.Json;
using Microsoft.ML;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Reporting;

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
        var lines = File.ReadAllLines(csv);
        Assert.Equal("path,class1,probability1,class2,probability2,class3,probability3", lines[0]);
        Assert.Equal(Directory.GetFiles(root, "*.png", SearchOption.AllDirectories).Length, lines.Length - 1);
        Assert.Equal(lines.Length - 1, ReportCsv.ReadPredictions(csv).Count);
        var there = lines.Skip(1).Select(line => line.Split(',')).ToDictionary(f => f[0]);
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

        // One image: its top-k printed, most probable first.
        var single = CliProcess.Run("predict", "--model", modelPath, images[0], "--top", "2");
        Assert.True(single.ExitCode == 0, single.StdErr + single.StdOut);
        var expected = $"{images[0]}: {here[0].Top[0].Class} {here[0].Top[0].Probability:P1}  {here[0].Top[1].Class} {here[0].Top[1].Probability:P1}";
        Assert.Equal(expected, single.StdOut.Trim());
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
        // The history of every epoch, next to the model.
        var history = TrainingHistoryFiles.ReadCsv(Path.ChangeExtension(modelPath, ".history.csv"));
        Assert.Equal(1, Assert.Single(history.Epochs).Epoch);
        Assert.NotNull(history.Epochs[0].ValidationLoss);
        Assert.Equal(history.Epochs, TrainingHistoryFiles.ReadJson(Path.ChangeExtension(modelPath, ".history.json")).Epochs);
        AssertPng(Path.ChangeExtension(modelPath, ".curves.png"));

        var reportDir = Path.Combine(Path.GetDirectoryName(modelPath)!, "report");
        var eval = CliProcess.Run("evaluate", "--model", modelPath, "--data", root, "--json", "--report", reportDir);
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

        // --report: the same JSON as a file, the heatmaps, the top losses, and the curves from the model's saved history.
        Assert.Equal(eval.StdOut.Trim(), File.ReadAllText(Path.Combine(reportDir, "report.json")).Trim());
        foreach (var png in new[] { "confusion_counts.png", "confusion_normalized.png", "curves.png" }) AssertPng(Path.Combine(reportDir, png));
        Assert.Equal(history.Epochs, TrainingHistoryFiles.ReadCsv(Path.Combine(reportDir, "history.csv")).Epochs);
        var losses = r.GetProperty("TopLosses").EnumerateArray().Select(t => t.GetProperty("Loss").GetDouble()).ToList();
        Assert.Equal(10, losses.Count);
        Assert.Equal(losses.OrderDescending(), losses);
        var topLossRows = File.ReadAllLines(Path.Combine(reportDir, "top_losses.csv"));
        Assert.Equal("rank,path,actual,predicted,p_actual,p_predicted,loss", topLossRows[0]);
        Assert.Equal(losses, topLossRows.Skip(1).Select(l => double.Parse(l.Split(',')[^1], CultureInfo.InvariantCulture)));
    }

    static void AssertPng(string path)
    {
        Assert.True(File.Exists(path), $"{path} was not written");
        using var bitmap = SkiaSharp.SKBitmap.Decode(path);
        Assert.True(bitmap is { Width: > 200, Height: > 200 }, $"{path} is not a chart-sized PNG");
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
