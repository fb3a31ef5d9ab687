namespace MLNet.ImageTransfer.Training.Callbacks;

/// <summary>What a callback can do to the run: ask it to stop after the current epoch (Keras' <c>model.stop_training = True</c>).</summary>
public sealed class TrainingControl
{
    /// <summary>Set by <see cref="RequestStop"/>; the loop ends after the current epoch.</summary>
    public bool StopRequested { get; private set; }

    /// <summary>Why the run was asked to stop (shown by the CLI, kept in the history).</summary>
    public string? StopReason { get; private set; }

    /// <summary>Ends the run after the current epoch (its checkpoint is still written).</summary>
    public void RequestStop(string reason)
    {
        StopRequested = true;
        StopReason ??= reason;
    }
}

/// <summary>
/// Keras-style training callback (<c>keras.callbacks.Callback</c>): hooks around the run, each epoch and each step.
/// Add instances to <see cref="TrainingOptions.Callbacks"/>. Every method has an empty default.
/// </summary>
/// <remarks>
/// A resumed run calls <see cref="OnResume"/> with the epochs already done instead of replaying them: a callback that
/// keeps state across epochs (like <see cref="EarlyStopping"/>) rebuilds it from there, so that a resumed run decides
/// exactly as an uninterrupted one would.
/// </remarks>
public abstract class TrainingCallback
{
    /// <summary>Before the first epoch (of this process: also when resuming).</summary>
    public virtual void OnTrainBegin(TrainingControl control) { }

    /// <summary>When resuming: the epochs already completed, in order.</summary>
    public virtual void OnResume(IReadOnlyList<EpochSummary> completed, TrainingControl control) { }

    /// <summary>After every optimisation step.</summary>
    public virtual void OnStepEnd(StepProgress step, TrainingControl control) { }

    /// <summary>After every epoch (after validation, before its checkpoint). Call <see cref="TrainingControl.RequestStop"/> to end the run.</summary>
    public virtual void OnEpochEnd(EpochSummary epoch, TrainingControl control) { }

    /// <summary>After the last epoch (not called when the run fails or is interrupted).</summary>
    public virtual void OnTrainEnd(TrainingHistory history) { }
}
