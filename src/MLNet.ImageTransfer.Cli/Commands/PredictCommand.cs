using Microsoft.ML;
using System.CommandLine;
using MLNet.ImageTransfer.Reporting;

namespace MLNet.ImageTransfer.Cli.Commands;

internal static class PredictCommand
{
    public static Command Create()
    {
        var model = new Option<FileInfo?>("--model") { Description = "Trained model (.zip)" };
        var weights = new Option<string?>("--weights") { Description = "Instead of --model: pretrained weights with their classifier, as published (e.g. resnet50.tv2_in1k, or imagenet with --arch): ImageNet's class names" };
        var arch = new Option<string?>("--arch") { Description = "With --weights: the architecture (default: the one the weights name)" };
        var input = new Argument<string>("path") { Description = "An image file, or a folder whose images (recursively) are all predicted" };
        var top = new Option<int>("--top") { Description = "How many classes to show per image", DefaultValueFactory = _ => 3 };
        top.Validators.Add(v => { if (v.GetValue(top) < 1) v.AddError("--top must be at least 1."); });
        var csv = new Option<FileInfo?>("--csv") { Description = "Also write the predictions to this CSV file: path,class1,probability1,…,classK,probabilityK (most probable first)" };
        var command = new Command("predict", "Predict the class of an image or of every image in a folder") { model, weights, arch, input, top, csv };
        command.Validators.Add(v =>
        {
            if ((v.GetValue(model) is null) == (v.GetValue(weights) is null)) v.AddError("Give either --model (a trained .zip) or --weights (a pretrained classifier).");
        });
        command.SetAction(r => Cli.Run(() =>
        {
            var path = r.GetValue(input)!;
            var images = ImageClassificationWorkflow.ImageFiles(path, out var skipped);
            if (skipped.Count > 0) // corrupt or truncated files in a folder are left out with a note, as in training
                Console.Error.WriteLine($"Skipped {skipped.Count} file(s) that are not usable images: "
                    + string.Join("; ", skipped.Take(5).Select(b => $"{b.Path}: {b.Problem}")) + (skipped.Count > 5 ? $"; and {skipped.Count - 5} more." : "."));
            var ml = Cli.NewContext();
            ITransformer loaded;
            if (r.GetValue(weights) is { } named)
            {
                // Named weights: fetched first with a progress bar, then used as published.
                if (!File.Exists(named)) WeightsCommand.Fetch(Weights.PretrainedWeightSource.Select(named, r.GetValue(arch)), quiet: false);
                loaded = ImageClassificationWorkflow.FromPretrained(ml, File.Exists(named) ? Path.GetFullPath(named) : named, r.GetValue(arch));
            }
            else loaded = ImageClassificationWorkflow.LoadModel(ml, r.GetValue(model)!.FullName, out _);
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
