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
        var line = $"Epoch {Epoch}/{Epochs} [{(Phase == TrainingPhase.Frozen ? "frozen" : "fine-tune")}{(BackboneBatches == 0 && Steps > 0 ? ", cached features" : "")}] {Steps} steps {Duration.TotalSeconds:F1}s {MillisecondsPerStep:F0}ms/step - loss: {TrainLoss:F4} - accuracy: {TrainAccuracy:F4}";
        if (ValidationLoss is { } vl) line += $" - val_loss: {vl:F4} - val_accuracy: {ValidationAccuracy:F4}";
        return IsBest ? line + " *" : line;
    }
}

/// <summary>Progress within an epoch, after each optimisation step (running means over the epoch so far).</summary>
public sealed record StepProgress(int Epoch, int Epochs, int Step, int Steps, double Loss, double Accuracy);

/// <summary>All epochs of a training run, and which one's weights were kept.</summary>
public sealed record TrainingHistory(IReadOnlyList<EpochSummary> Epochs, int KeptEpoch)
{
    /// <summary>The fine-tuning schedule the run followed (frozen / trainable layer groups and their learning rates per phase).</summary>
    public FineTuningSchedule? Schedule { get; init; }

    public EpochSummary Kept => Epochs.Single(e => e.Epoch == KeptEpoch);
}
