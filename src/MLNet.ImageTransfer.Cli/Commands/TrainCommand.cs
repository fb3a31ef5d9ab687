using System.CommandLine;

namespace MLNet.ImageTransfer.Cli.Commands;

internal static class TrainCommand
{
    public static Command Create()
    {
        var flags = new TrainingFlags();
        var data = new Option<DirectoryInfo>("--data") { Description = "Training images, one subfolder per class", Required = true };
        var val = new Option<DirectoryInfo?>("--val") { Description = "Validation images, one subfolder per class" };
        var valSplit = new Option<double>("--val-split") { Description = "Fraction of --data held out for validation (stratified), when --val is not given", DefaultValueFactory = _ => 0 };
        var output = new Option<FileInfo>("--out") { Description = "Where to save the trained model (.zip)", Required = true };
        var failFast = new Option<bool>("--fail-fast") { Description = "Stop before training when any file is not a usable image (corrupt, truncated, empty, not an image, too large), instead of skipping it with a note" };
        var command = new Command("train", "Train a classifier on a class-per-subfolder image folder and save it as an ML.NET .zip") { data, val, valSplit, output, failFast };
        foreach (var o in flags.All) command.Options.Add(o);
        command.SetAction(r => Cli.Run(() =>
        {
            var options = flags.ToOptions(r);
            var ml = Cli.NewContext(options.Seed);
            var trained = TrainingDisplay.Run(options, r.GetValue(flags.Quiet),
                () => ImageClassificationWorkflow.TrainFromFolder(ml, r.GetValue(data)!.FullName, options, r.GetValue(val)?.FullName, r.GetValue(valSplit), options.Seed ?? 0,
                    new Data.ImageFolderOptions { FailFast = r.GetValue(failFast) }));
            if (trained.SkippedSummary() is { } skipped) Console.Error.WriteLine(skipped);
            var path = r.GetValue(output)!.FullName;
            trained.Save(ml, path);
            var kept = trained.History.Kept;
            Console.WriteLine($"Kept epoch {kept.Epoch}" + (kept.ValidationAccuracy is { } a ? $" (val_loss {kept.ValidationLoss:F4}, val_accuracy {a:F4})" : "") + $". Saved {path}");
            return 0;
        }));
        return command;
    }
}
