namespace MLNet.ImageTransfer.Training;

public enum TrainingPhase
{
    /// <summary>Backbone frozen, head training.</summary>
    Frozen,
    /// <summary>All layers training.</summary>
    FineTune,
}

/// <summary>One epoch's numbers, like Keras' fit line: loss, accuracy, val_loss, val_accuracy, time.</summary>
public sealed record EpochSummary(
    int Epoch, int Epochs, TrainingPhase Phase, int Steps, TimeSpan Duration, double LearningRate,
    double TrainLoss, double TrainAccuracy, double? ValidationLoss, double? ValidationAccuracy, bool IsBest)
{
    public double MillisecondsPerStep => Steps == 0 ? 0 : Duration.TotalMilliseconds / Steps;

    /// <summary>Training batches of this epoch that ran the backbone (0: the head trained on cached features; see <see cref="TrainingOptions.CacheBackboneFeatures"/>).</summary>
    public int BackboneBatches { get; init; } = Steps;

    public override string ToString()
    {
        var line = $"Epoch {Epoch}/{Epochs} [{(Phase == TrainingPhase.Frozen ? "frozen" : "fine-tune")}{(BackboneBatches == 0 && Steps > 0 ? ", cached features" : "")}] {Steps}/{Steps} - {Duration.TotalSeconds:F1}s {MillisecondsPerStep:F0}ms/step - loss: {TrainLoss:F4} - accuracy: {TrainAccuracy:F4}";
        if (ValidationLoss is { } vl) line += $" - val_loss: {vl:F4} - val_accuracy: {ValidationAccuracy:F4}";
        line += $" - lr: {LearningRate:0.###e+0}";
        return IsBest ? line + " *" : line;
    }
}

/// <summary>Progress within an epoch, after each optimisation step (running means over the epoch so far).</summary>
public sealed record StepProgress(int Epoch, int Epochs, int Step, int Steps, double Loss, double Accuracy)
{
    /// <summary>The head's learning rate of this step.</summary>
    public double LearningRate { get; init; }

    /// <summary>Time spent in this epoch so far (this process: a resumed epoch counts from the resume).</summary>
    public TimeSpan Elapsed { get; init; }

    /// <summary>Steps that <see cref="Elapsed"/> covers.</summary>
    public int StepsTimed { get; init; }

    /// <summary>Estimated time to the end of the epoch (Keras' ETA), from the mean step time so far.</summary>
    public TimeSpan EpochEta => StepsTimed <= 0 ? TimeSpan.Zero : Elapsed / StepsTimed * (Steps - Step);
}

/// <summary>All epochs of a training run, and which one's weights were kept.</summary>
public sealed record TrainingHistory(IReadOnlyList<EpochSummary> Epochs, int KeptEpoch)
{
    /// <summary>The fine-tuning schedule the run followed (frozen / trainable layer groups and their learning rates per phase).</summary>
    public FineTuningSchedule? Schedule { get; init; }

    public EpochSummary Kept => Epochs.Single(e => e.Epoch == KeptEpoch);

    /// <summary>Why the run ended before <see cref="EpochSummary.Epochs"/> (early stopping, a callback), or null.</summary>
    public string? StopReason { get; init; }

    /// <summary>The checkpoint a resumed run continued from, or null.</summary>
    public string? ResumedFrom { get; init; }

    /// <summary>The newest checkpoint folder written or resumed from, or null without a checkpoint folder.</summary>
    public string? LastCheckpoint { get; init; }

    /// <summary>What the run noticed on the way (skipped corrupt checkpoints, a missing best checkpoint …).</summary>
    public IReadOnlyList<string> Notes { get; init; } = [];

    /// <summary>What the run did, as its <see cref="TrainingRecipe"/> decided (e.g. "head on cached features for 4 epochs, then …"); null when not recorded.</summary>
    public string? Recipe { get; init; }
}
