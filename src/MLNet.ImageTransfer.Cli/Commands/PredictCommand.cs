using System.CommandLine;
using MLNet.ImageTransfer.Reporting;

namespace MLNet.ImageTransfer.Cli.Commands;

internal static class PredictCommand
{
    public static Command Create()
    {
        var model = new Option<FileInfo>("--model") { Description = "Trained model (.zip)", Required = true };
        var input = new Argument<string>("path") { Description = "An image file, or a folder whose images (recursively) are all predicted" };
        var top = new Option<int>("--top") { Description = "How many classes to show per image", DefaultValueFactory = _ => 3 };
        top.Validators.Add(v => { if (v.GetValue(top) < 1) v.AddError("--top must be at least 1."); });
        var csv = new Option<FileInfo?>("--csv") { Description = "Also write the predictions to this CSV file: path,class1,probability1,…,classK,probabilityK (most probable first)" };
        var command = new Command("predict", "Predict the class of an image or of every image in a folder") { model, input, top, csv };
        command.SetAction(r => Cli.Run(() =>
        {
            var path = r.GetValue(input)!;
            var images = ImageClassificationWorkflow.ImageFiles(path, out var skipped);
            if (skipped.Count > 0) // corrupt or truncated files in a folder are left out with a note, as in training
                Console.Error.WriteLine($"Skipped {skipped.Count} file(s) that are not usable images: "
                    + string.Join("; ", skipped.Take(5).Select(b => $"{b.Path}: {b.Problem}")) + (skipped.Count > 5 ? $"; and {skipped.Count - 5} more." : "."));
            var ml = Cli.NewContext();
            var loaded = ImageClassificationWorkflow.LoadModel(ml, r.GetValue(model)!.FullName, out _);
            var predictions = ImageClassificationWorkflow.Predict(ml, loaded, images, r.GetValue(top));
            foreach (var p in predictions)
                Console.WriteLine($"{p.ImagePath}: " + string.Join("  ", p.Top.Select(t => $"{t.Class} {t.Probability:P1}")));
            if (r.GetValue(csv) is { } file)
                Console.WriteLine($"Wrote {ReportCsv.WritePredictions(file.FullName, predictions)} ({predictions.Count} images)");
            return 0;
        }));
        return command;
    }
}
