namespace MLNet.ImageTransfer.Training;

/// <summary>The loss became NaN or infinite. Nothing was written after the last good checkpoint (<see cref="LastCheckpoint"/>).</summary>
public sealed class TrainingDivergedException : InvalidOperationException
{
    public TrainingDivergedException(string message, int epoch, int step, string? lastCheckpoint) : base(message)
    {
        Epoch = epoch; Step = step; LastCheckpoint = lastCheckpoint;
    }

    public int Epoch { get; }
    public int Step { get; }

    /// <summary>The folder of the last checkpoint written before the divergence, or null.</summary>
    public string? LastCheckpoint { get; }
}

/// <summary>
/// Training was cancelled (Ctrl+C in the CLI, <see cref="TrainingOptions.Cancellation"/> in the API). The step in
/// progress finished; with a checkpoint folder, a checkpoint of that point was written (<see cref="Checkpoint"/>), and
/// <c>Resume</c> continues from it.
/// </summary>
public sealed class TrainingInterruptedException : OperationCanceledException
{
    public TrainingInterruptedException(int epoch, int step, string? checkpoint, CancellationToken token)
        : base(checkpoint is null
            ? $"Training was interrupted at epoch {epoch}, step {step + 1}. No checkpoint folder was set, so nothing was saved."
            : $"Training was interrupted at epoch {epoch} after {step} steps. Checkpoint: '{checkpoint}'. Resume continues from there.", token)
    {
        Epoch = epoch; StepsDone = step; Checkpoint = checkpoint;
    }

    public int Epoch { get; }

    /// <summary>Steps of <see cref="Epoch"/> completed before stopping.</summary>
    public int StepsDone { get; }

    /// <summary>The checkpoint folder written (or the one that already held this point), or null without a checkpoint folder.</summary>
    public string? Checkpoint { get; }
}
