using System.CommandLine;

namespace MLNet.ImageTransfer.Cli.Commands;

internal static class EvaluateCommand
{
    public static Command Create()
    {
        var model = new Option<FileInfo>("--model") { Description = "Trained model (.zip)", Required = true };
        var data = new Option<DirectoryInfo>("--data") { Description = "Images to evaluate on, one subfolder per class", Required = true };
        var json = new Option<bool>("--json") { Description = "Print a machine-readable JSON report instead of text" };
        var reportDir = new Option<DirectoryInfo?>("--report") { Description = "Write report.json, confusion_counts.png, confusion_normalized.png, top_losses.csv (and curves.png and history.csv/json when the model has a training history) into this folder" };
        var command = new Command("evaluate", "Evaluate a saved model: accuracy, log-loss, per-class precision/recall/F1, confusion matrix, top losses") { model, data, json, reportDir };
        command.SetAction(r => Cli.Run(() =>
        {
            var ml = Cli.NewContext();
            var loaded = ImageClassificationWorkflow.LoadModel(ml, r.GetValue(model)!.FullName, out _);
            var report = ImageClassificationWorkflow.Evaluate(ml, loaded, r.GetValue(data)!.FullName);
            if (r.GetValue(json)) Console.WriteLine(report.ToJson());
            else Print(report);
            if (r.GetValue(reportDir) is { } dir)
            {
                var written = report.Save(dir.FullName, ImageClassificationWorkflow.HistoryOf(loaded));
                // With --json, stdout stays pure JSON; the file list goes to stderr.
                (r.GetValue(json) ? Console.Error : Console.Out).WriteLine($"Wrote {string.Join(", ", written.Select(Path.GetFileName))} to {dir.FullName}");
            }
            return 0;
        }));
        return command;
    }

    public static void Print(EvaluationReport report)
    {
        Console.WriteLine($"Micro accuracy: {report.MicroAccuracy:F4}   Macro accuracy: {report.MacroAccuracy:F4}   Log-loss: {report.LogLoss:F4}   Log-loss reduction: {report.LogLossReduction:F4}");
        Console.WriteLine();
        Console.WriteLine($"{"class",-20} {"precision",10} {"recall",10} {"f1",10} {"support",8}");
        foreach (var c in report.PerClass)
            Console.WriteLine($"{c.Class,-20} {c.Precision,10:F4} {c.Recall,10:F4} {c.F1,10:F4} {c.Support,8}");
        Console.WriteLine();
        Console.WriteLine(report.FormattedConfusionTable);
        if (report.TopLosses.Count == 0) return;
        Console.WriteLine("Top losses (highest -ln p(actual) first):");
        Console.WriteLine($"{"loss",8} {"actual",-16} {"predicted",-16} {"p(actual)",10}  image");
        foreach (var t in report.TopLosses)
            Console.WriteLine($"{t.Loss,8:F4} {t.Actual,-16} {t.Predicted,-16} {t.ActualProbability,10:F4}  {t.ImagePath}");
    }
}
