using System.CommandLine;
using MLNet.ImageTransfer.Training;

namespace MLNet.ImageTransfer.Cli.Commands;

internal static class TrainCommand
{
    /// <summary>Exit code after Ctrl+C (128 + SIGINT, as shells report it).</summary>
    public const int InterruptedExitCode = 130;

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
            // Named weights: fetched now, with a progress bar, so that training finds them in the cache.
            if (options.Weights is { } weights && !File.Exists(weights))
                WeightsCommand.Fetch(Weights.PretrainedWeightSource.Select(weights, options.Architecture
                    ?? (Weights.PretrainedWeightSource.ArchitectureOf(weights) is null && options.CustomArchitecture is null ? ImageTransferTrainer.Options.DefaultArchitecture : null)), r.GetValue(flags.Quiet));
            Console.WriteLine(Training.TrainingRecipes.Apply(options, pretrained: options.Weights is not null).Description);
            var ml = Cli.NewContext(options.Seed);
            using var interrupt = CtrlC.StopTrainingOnCancelKey(options);
            TrainedPipeline trained;
            try
            {
                trained = TrainingDisplay.Run(options, r.GetValue(flags.Quiet),
                    () => ImageClassificationWorkflow.TrainFromFolder(ml, r.GetValue(data)!.FullName, options, r.GetValue(val)?.FullName, r.GetValue(valSplit), options.Seed ?? 0,
                        new Data.ImageFolderOptions { FailFast = r.GetValue(failFast) }));
            }
            catch (TrainingInterruptedException e)
            {
                Console.Error.WriteLine($"interrupted: {e.Message}" + (e.Checkpoint is null ? "" : " Run the same command with --resume " + Path.GetDirectoryName(e.Checkpoint) + " to continue."));
                return InterruptedExitCode;
            }
            if (trained.SkippedSummary() is { } skipped) Console.Error.WriteLine(skipped);
            if (trained.InitialModel is { } initial) Console.WriteLine(initial.Describe());
            var history = trained.History;
            if (history.ResumedFrom is { } from) Console.WriteLine($"Resumed from the {from}.");
            foreach (var note in history.Notes) Console.WriteLine($"note: {note}");
            if (history.StopReason is { } reason) Console.WriteLine($"Stopped after epoch {history.Epochs[^1].Epoch}: {reason}.");
            var path = r.GetValue(output)!.FullName;
            trained.Save(ml, path);
            var kept = history.Kept;
            Console.WriteLine($"Kept epoch {kept.Epoch}" + (kept.ValidationAccuracy is { } a ? $" (val_loss {kept.ValidationLoss:F4}, val_accuracy {a:F4})" : "") + $". Saved {path}");
            Console.WriteLine("Wrote " + string.Join(", ", Reporting.TrainingHistoryFiles.SaveNextToModel(trained.History, path).Select(Path.GetFileName)));
            return 0;
        }));
        return command;
    }
}

/// <summary>
/// Ctrl+C (SIGINT) or SIGTERM (what <c>docker stop</c> and <c>kill</c> send) → <see cref="TrainingOptions.Cancellation"/>:
/// the loop finishes its step, checkpoints and stops. A second Ctrl+C kills at once.
/// </summary>
internal sealed class CtrlC : IDisposable
{
    readonly CancellationTokenSource _source = new();
    readonly System.Runtime.InteropServices.PosixSignalRegistration? _sigterm;

    CtrlC()
    {
        Console.CancelKeyPress += OnCancelKeyPress;
        if (!OperatingSystem.IsWindows())
            _sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, context =>
            {
                if (_source.IsCancellationRequested) return; // a second SIGTERM terminates
                context.Cancel = true;
                Console.Error.WriteLine("Terminated: stopping after the current step…");
                _source.Cancel();
            });
    }

    public static CtrlC StopTrainingOnCancelKey(TrainingOptions options)
    {
        var ctrlC = new CtrlC();
        options.Cancellation = ctrlC._source.Token;
        return ctrlC;
    }

    void OnCancelKeyPress(object? sender, ConsoleCancelEventArgs e)
    {
        if (_source.IsCancellationRequested) return; // the second Ctrl+C terminates
        e.Cancel = true;
        Console.Error.WriteLine("Stopping after the current step (Ctrl+C again to kill)…");
        _source.Cancel();
    }

    public void Dispose()
    {
        Console.CancelKeyPress -= OnCancelKeyPress;
        _sigterm?.Dispose();
        _source.Dispose();
    }
}
