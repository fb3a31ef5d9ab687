using System.Globalization;
using System.Text;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ImageTransfer.Benchmarks.Infrastructure;
using MLNet.ImageTransfer.Weights;

namespace MLNet.ImageTransfer.Benchmarks.Transfer;

/// <summary>
/// Transfer learning from ML.NET's pretrained ResNet18 on real photo folders, two routes side by side in one run:
/// <list type="bullet">
/// <item><b>ML.NET</b>: the route ML.NET's documentation gives — LoadImages → ResizeImages(224, 224) → ExtractPixels →
/// DnnFeaturizeImage(ResNet18) → cache → LbfgsMaximumEntropy — with its defaults.</item>
/// <item><b>MLNet.ImageTransfer</b>: what <c>train --data D/train --val D/val --weights mlnet-resnet18 --epochs 5</c>
/// does, with every other option at its default (the trainer's transfer-learning recipe).</item>
/// </list>
/// Each route runs in a fresh child process (the .NET host, native libraries and model loading count, as they do for a
/// user); wall time is measured by the parent from process start to exit. Accuracy is ML.NET's multiclass evaluator on
/// the folder's val/ images, for both. Usage:
/// <c>transfer --data DIR [--data DIR …] [--epochs 5] [--repeat 1] [--out FILE.md]</c>; DIR holds train/ and val/,
/// one subfolder per class.
/// </summary>
internal static class TransferLearningRunner
{
    const string OursRoute = "MLNet.ImageTransfer", MLNetRoute = "ML.NET DnnFeaturizeImage + L-BFGS";

    public static int Run(string[] args)
    {
        var folders = new List<string>();
        int epochs = 5, repeat = 1;
        string? output = null;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--data": folders.Add(Path.GetFullPath(args[++i])); break;
                case "--epochs": epochs = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--repeat": repeat = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--out": output = Path.GetFullPath(args[++i]); break;
                default: Console.Error.WriteLine($"transfer: unknown argument '{args[i]}'"); return 2;
            }
        }
        if (folders.Count == 0)
        {
            Console.Error.WriteLine("transfer: give at least one --data DIR with train/ and val/ subfolders (one folder per class in each).");
            return 2;
        }
        foreach (var folder in folders)
            foreach (var split in new[] { "train", "val" })
                if (!Directory.Exists(Path.Combine(folder, split)))
                {
                    Console.Error.WriteLine($"transfer: '{folder}' has no {split}/ folder.");
                    return 2;
                }

        var rows = new List<(string Dataset, int Train, int Val, int Classes, string Route, int Run, double Accuracy, double Seconds)>();
        foreach (var folder in folders)
        {
            var (train, val, classes) = Count(folder);
            for (int run = 1; run <= repeat; run++)
            {
                // Alternate which route goes first, so that neither always runs on a cold disk cache.
                var routes = run % 2 == 1 ? new[] { MLNetRoute, OursRoute } : new[] { OursRoute, MLNetRoute };
                foreach (var route in routes)
                {
                    var (accuracy, seconds) = RunChild(route, folder, epochs);
                    rows.Add((Path.GetFileName(folder), train, val, classes, route, run, accuracy, seconds));
                    Console.WriteLine($"{Path.GetFileName(folder)} run {run} {route}: accuracy {accuracy:F3}, {seconds:F1} s");
                }
            }
        }

        var report = new StringBuilder();
        report.AppendLine($"Transfer learning from ML.NET's pretrained ResNet18 ({MLNetResNet18.PackageId} {MLNetResNet18.PackageVersion}), {epochs} epochs for ours; "
            + $"{Environment.ProcessorCount} logical CPUs, {Environment.OSVersion}. Wall time of a fresh process from start to exit (fit + evaluation).");
        report.AppendLine();
        report.AppendLine("| dataset | train / val images | classes | route | val accuracy | wall time (s) | ours / ML.NET time |");
        report.AppendLine("|---|---|---:|---|---:|---:|---:|");
        foreach (var group in rows.GroupBy(r => (r.Dataset, r.Route)))
        {
            var first = group.First();
            double accuracy = group.Average(r => r.Accuracy), seconds = group.Average(r => r.Seconds);
            string spread = group.Count() > 1 ? $" (±{(group.Max(r => r.Seconds) - group.Min(r => r.Seconds)) / 2:F1})" : "";
            double peer = rows.Where(r => r.Dataset == first.Dataset && r.Route == MLNetRoute).Average(r => r.Seconds);
            report.AppendLine($"| {first.Dataset} | {first.Train} / {first.Val} | {first.Classes} | {first.Route} | {accuracy:F3} | {seconds:F1}{spread} | "
                + (first.Route == OursRoute ? $"{seconds / peer:F2}×" : "") + " |");
        }
        Console.WriteLine();
        Console.Write(report);
        if (output is not null) File.WriteAllText(output, report.ToString());
        return 0;
    }

    /// <summary>The child process: one route on one folder; prints "accuracy=X".</summary>
    public static int Child(string[] args)
    {
        string route = args[0], folder = args[1];
        int epochs = int.Parse(args[2], CultureInfo.InvariantCulture);
        string train = Path.Combine(folder, "train"), val = Path.Combine(folder, "val");
        var ml = new MLContext(seed: 1);
        double accuracy = route == OursRoute ? Ours(ml, train, val, epochs) : MLNetDnnFeaturizer(ml, train, val);
        Console.WriteLine(FormattableString.Invariant($"accuracy={accuracy:R}"));
        return 0;
    }

    /// <summary>What <c>train --weights mlnet-resnet18 --epochs N</c> does, then ML.NET's evaluator on val/.</summary>
    static double Ours(MLContext ml, string train, string val, int epochs)
    {
        var options = new ImageTransferTrainer.Options { Weights = MLNetResNet18.ShortName, Epochs = epochs, Seed = 1 };
        var trained = ImageClassificationWorkflow.TrainFromFolder(ml, train, options, val);
        Console.Error.WriteLine(trained.History.Recipe);
        return ImageClassificationWorkflow.Evaluate(ml, trained.Model, trained.ValidationData!).MicroAccuracy;
    }

    /// <summary>ML.NET's documented featurizer route, defaults throughout.</summary>
    static double MLNetDnnFeaturizer(MLContext ml, string train, string val)
    {
        IDataView Load(string root) => ml.Data.LoadFromEnumerable(
            Directory.GetDirectories(root).Order(StringComparer.Ordinal)
                .SelectMany(d => Directory.GetFiles(d).Order(StringComparer.Ordinal).Select(f => new ImageRow { ImagePath = f, Label = Path.GetFileName(d) }))
                .ToList());
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.Transforms.LoadImages("ImageObject", null, "ImagePath"))
            .Append(ml.Transforms.ResizeImages("ImageObject", 224, 224, "ImageObject"))
            .Append(ml.Transforms.ExtractPixels("Pixels", "ImageObject"))
            .Append(ml.Transforms.DnnFeaturizeImage("Features", m => m.ModelSelector.ResNet18(ml, m.OutputColumn, m.InputColumn), "Pixels"))
            .AppendCacheCheckpoint(ml)
            .Append(ml.MulticlassClassification.Trainers.LbfgsMaximumEntropy("Label", "Features"));
        var model = pipeline.Fit(Load(train));
        return ml.MulticlassClassification.Evaluate(model.Transform(Load(val))).MicroAccuracy;
    }

    sealed class ImageRow
    {
        public string ImagePath { get; set; } = "";
        public string Label { get; set; } = "";
    }

    static (double Accuracy, double Seconds) RunChild(string route, string folder, int epochs)
    {
        var run = TimedProcess.Run(TimedProcess.OwnCommand("transfer-child", route, folder, epochs.ToString(CultureInfo.InvariantCulture)));
        var line = run.StdOut.Split('\n').FirstOrDefault(l => l.StartsWith("accuracy=", StringComparison.Ordinal));
        if (run.ExitCode != 0 || line is null)
            throw new InvalidOperationException($"The {route} child failed on {folder} (exit {run.ExitCode}): {run.Output}");
        foreach (var note in run.StdErr.Split('\n').Where(l => l.StartsWith("Recipe", StringComparison.Ordinal))) Console.WriteLine("  " + note.Trim());
        return (double.Parse(line["accuracy=".Length..], CultureInfo.InvariantCulture), run.Seconds);
    }

    static (int Train, int Val, int Classes) Count(string folder)
    {
        int Images(string split) => Directory.GetDirectories(Path.Combine(folder, split)).Sum(d => Directory.GetFiles(d).Length);
        return (Images("train"), Images("val"), Directory.GetDirectories(Path.Combine(folder, "train")).Length);
    }
}
