using MLNet.ImageTransfer.Training;
using Spectre.Console;

namespace MLNet.ImageTransfer.Cli.Commands;

/// <summary>Keras-style progress: a live bar per epoch (Spectre.Console) or plain lines with --quiet / redirected output.</summary>
internal static class TrainingDisplay
{
    public static T Run<T>(TrainingOptions options, bool quiet, Func<T> train)
    {
        if (quiet || Console.IsOutputRedirected || !AnsiConsole.Profile.Capabilities.Interactive)
        {
            options.EpochCompleted = e => Console.WriteLine(e.ToString());
            return train();
        }
        T result = default!;
        AnsiConsole.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                ProgressTask? task = null;
                options.StepCompleted = s =>
                {
                    task ??= ctx.AddTask($"Epoch {s.Epoch}/{s.Epochs}", maxValue: s.Steps);
                    task.Value = s.Step;
                    task.Description = $"Epoch {s.Epoch}/{s.Epochs} {s.Step}/{s.Steps} loss {s.Loss:F4} acc {s.Accuracy:F3} lr {s.LearningRate:0.##e+0} ETA {s.EpochEta:mm\\:ss}";
                };
                options.EpochCompleted = e =>
                {
                    task?.StopTask();
                    task = null;
                    AnsiConsole.MarkupLine(Markup.Escape(e.ToString()));
                };
                result = train();
            });
        return result;
    }
}
