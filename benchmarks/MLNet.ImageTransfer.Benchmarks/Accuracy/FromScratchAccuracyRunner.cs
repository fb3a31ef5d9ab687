using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.ML;
using MLNet.ImageTransfer.Augmentation;
using MLNet.ImageTransfer.Benchmarks.Infrastructure;
using MLNet.ImageTransfer.Data;

namespace MLNet.ImageTransfer.Benchmarks.Accuracy;

/// <summary>
/// Training from scratch on real photo folders, ours beside PyTorch with the same recipe, several seeds each:
/// architecture, input size, epochs, batch, Adam and learning rate, RandomResizedCrop(scale=(MIN, 1)) + horizontal flip
/// for training and torchvision's resize + centre crop for validation; PyTorch runs torchvision's ImageFolder and a
/// DataLoader with 2 workers (<c>benchmarks/pytorch_reference.py train-eval</c>). Each run is a fresh process timed from
/// start to exit. Reports the mean and spread of the best and the final validation accuracy, and the wall time. Usage:
/// <c>from-scratch --data DIR [--data DIR] [--arch resnet18] [--size 96] [--epochs 15] [--batch 32] [--lr 1e-3]
/// [--min-scale 0.6] [--seeds 3] [--python /usr/bin/python3] [--out FILE.md]</c>.
/// </summary>
internal static class FromScratchAccuracyRunner
{
    sealed record Recipe(string Arch, int Size, int Epochs, int Batch, double LearningRate, double MinScale);
    sealed record Result(double[] Accuracies, double Seconds);

    public static int Run(string[] args)
    {
        var folders = new List<string>();
        string arch = "resnet18", python = "/usr/bin/python3";
        int size = 96, epochs = 15, batch = 32, seeds = 3;
        double lr = 1e-3, minScale = 0.6;
        string? output = null;
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => args[++i];
            switch (args[i])
            {
                case "--data": folders.Add(Path.GetFullPath(Next())); break;
                case "--arch": arch = Next(); break;
                case "--size": size = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--epochs": epochs = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--batch": batch = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--lr": lr = double.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--min-scale": minScale = double.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--seeds": seeds = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--python": python = Next(); break;
                case "--out": output = Path.GetFullPath(Next()); break;
                default: Console.Error.WriteLine($"from-scratch: unknown argument '{args[i]}'"); return 2;
            }
        }
        if (folders.Count == 0 || folders.Any(f => !Directory.Exists(Path.Combine(f, "train")) || !Directory.Exists(Path.Combine(f, "val"))))
        {
            Console.Error.WriteLine("from-scratch: give --data DIR (one or more), each with train/ and val/ subfolders, one folder per class.");
            return 2;
        }
        var recipe = new Recipe(arch, size, epochs, batch, lr, minScale);
        string script = Path.Combine(Compare.CompareRunner.RepositoryRoot(), "benchmarks", "pytorch_reference.py");

        var report = new StringBuilder();
        report.AppendLine(FormattableString.Invariant($"From scratch: {arch} at {size}², {epochs} epochs, batch {batch}, Adam lr {lr:G3}, training crops RandomResizedCrop(scale=({minScale:G3}, 1)) + horizontal flip, validation resize {Math.Round(size / 0.875)} + centre crop {size}; seeds 1–{seeds} on each side; {Environment.ProcessorCount} logical CPUs."));
        report.AppendLine();
        report.AppendLine("| dataset | side | best val accuracy (mean ± sd) | final val accuracy (mean ± sd) | wall time per run (s) |");
        report.AppendLine("|---|---|---:|---:|---:|");
        foreach (var folder in folders)
        {
            var ours = new List<Result>();
            var theirs = new List<Result>();
            for (int seed = 1; seed <= seeds; seed++)
            {
                // Alternate which side goes first.
                var order = seed % 2 == 1 ? new[] { true, false } : new[] { false, true };
                foreach (bool isOurs in order)
                {
                    var result = isOurs ? RunOurs(folder, recipe, seed) : RunPyTorch(python, script, folder, recipe, seed);
                    (isOurs ? ours : theirs).Add(result);
                    Console.WriteLine(FormattableString.Invariant($"{Path.GetFileName(folder)} seed {seed} {(isOurs ? "ours" : "PyTorch")}: best {result.Accuracies.Max():F3}, final {result.Accuracies[^1]:F3}, {result.Seconds:F0} s"));
                }
            }
            foreach (var (side, results) in new[] { ("MLNet.ImageTransfer", ours), ("PyTorch (torchvision)", theirs) })
                report.AppendLine(FormattableString.Invariant(
                    $"| {Path.GetFileName(folder)} | {side} | {Stats(results.Select(r => r.Accuracies.Max()))} | {Stats(results.Select(r => r.Accuracies[^1]))} | {results.Average(r => r.Seconds):F0} |"));
        }
        Console.WriteLine();
        Console.Write(report);
        if (output is not null) File.WriteAllText(output, report.ToString());
        return 0;
    }

    static string Stats(IEnumerable<double> values)
    {
        var v = values.ToArray();
        double mean = v.Average(), sd = v.Length > 1 ? Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / (v.Length - 1)) : 0;
        return FormattableString.Invariant($"{mean:F3} ± {sd:F3}");
    }

    /// <summary>The child process for our side: prints the per-epoch validation accuracies as JSON.</summary>
    public static int Child(string[] args)
    {
        string folder = args[0], arch = args[1];
        int size = int.Parse(args[2], CultureInfo.InvariantCulture), epochs = int.Parse(args[3], CultureInfo.InvariantCulture),
            batch = int.Parse(args[4], CultureInfo.InvariantCulture), seed = int.Parse(args[7], CultureInfo.InvariantCulture);
        double lr = double.Parse(args[5], CultureInfo.InvariantCulture), minScale = double.Parse(args[6], CultureInfo.InvariantCulture);
        var options = new ImageTransferTrainer.Options
        {
            Architecture = arch,
            ImageSize = size,
            Preprocessing = ImagePreprocessing.TorchVision(size),
            Epochs = epochs,
            BatchSize = batch,
            LearningRate = lr,
            Augmentation = AugmentationPipeline.Parse(FormattableString.Invariant($"resized-crop={minScale},hflip")),
            Seed = seed,
        };
        var trained = ImageClassificationWorkflow.TrainFromFolder(new MLContext(seed: seed), Path.Combine(folder, "train"), options, Path.Combine(folder, "val"));
        Console.WriteLine(JsonSerializer.Serialize(new { accuracies = trained.History.Epochs.Select(e => e.ValidationAccuracy ?? double.NaN).ToArray() }));
        return 0;
    }

    static Result RunOurs(string folder, Recipe r, int seed)
        => Accuracies(TimedProcess.OwnCommand("from-scratch-child", folder, r.Arch, I(r.Size), I(r.Epochs), I(r.Batch), I(r.LearningRate), I(r.MinScale), I(seed)));

    static Result RunPyTorch(string python, string script, string folder, Recipe r, int seed)
        => Accuracies([python, script, "train-eval", "--train", Path.Combine(folder, "train"), "--val", Path.Combine(folder, "val"), "--arch", r.Arch,
            "--size", I(r.Size), "--epochs", I(r.Epochs), "--batch", I(r.Batch), "--lr", I(r.LearningRate), "--min-scale", I(r.MinScale),
            "--seed", I(seed), "--threads", "2"]);

    /// <summary>Runs a side and reads the per-epoch validation accuracies from the JSON line it prints last.</summary>
    static Result Accuracies(string[] command)
    {
        var run = TimedProcess.Run(command);
        var line = run.StdOut.Split('\n').LastOrDefault(l => l.TrimStart().StartsWith('{') && l.Contains("accuracies", StringComparison.Ordinal));
        if (run.ExitCode != 0 || line is null)
            throw new InvalidOperationException($"'{string.Join(' ', command)}' failed (exit {run.ExitCode}): {run.Output}");
        using var json = JsonDocument.Parse(line);
        return new Result(json.RootElement.GetProperty("accuracies").EnumerateArray().Select(e => e.GetDouble()).ToArray(), run.Seconds);
    }

    static string I(double value) => value.ToString(CultureInfo.InvariantCulture);
}
