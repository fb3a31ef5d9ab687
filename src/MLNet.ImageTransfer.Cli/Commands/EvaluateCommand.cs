using System.CommandLine;

namespace MLNet.ImageTransfer.Cli.Commands;

internal static class EvaluateCommand
{
    public static Command Create()
    {
        var model = new Option<FileInfo>("--model") { Description = "Trained model (.zip)", Required = true };
        var data = new Option<DirectoryInfo>("--data") { Description = "Images to evaluate on, one subfolder per class", Required = true };
        var json = new Option<bool>("--json") { Description = "Print a machine-readable JSON report instead of text" };
        var command = new Command("evaluate", "Evaluate a saved model: accuracy, log-loss, per-class precision/recall/F1, confusion matrix") { model, data, json };
        command.SetAction(r => Cli.Run(() =>
        {
            var ml = Cli.NewContext();
            var loaded = ImageClassificationWorkflow.LoadModel(ml, r.GetValue(model)!.FullName, out _);
            var report = ImageClassificationWorkflow.Evaluate(ml, loaded, r.GetValue(data)!.FullName);
            if (r.GetValue(json)) { Console.WriteLine(report.ToJson()); return 0; }
            Print(report);
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
    }
}
