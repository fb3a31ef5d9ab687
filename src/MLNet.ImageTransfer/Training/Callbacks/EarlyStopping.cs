namespace MLNet.ImageTransfer.Training.Callbacks;

/// <summary>
/// Stops training when the monitored metric has not improved for <see cref="Patience"/> epochs (Keras'
/// <c>EarlyStopping(monitor, min_delta, patience, restore_best_weights)</c>). An improvement must beat the best value
/// by more than <see cref="MinDelta"/>. With <see cref="RestoreBestWeights"/>, the run ends with the weights of the best
/// epoch by this metric (the loop's <see cref="TrainingOptions.KeepBestBy"/> follows the callback's monitor then).
/// </summary>
public sealed class EarlyStopping : TrainingCallback
{
    /// <summary>The metric watched. Default validation loss.</summary>
    public MonitoredMetric Monitor { get; init; } = MonitoredMetric.ValidationLoss;

    /// <summary>Epochs without improvement before stopping. Default 5.</summary>
    public int Patience { get; init; } = 5;

    /// <summary>Smallest change that counts as an improvement. Default 0.</summary>
    public double MinDelta { get; init; }

    /// <summary>End with the best epoch's weights (Keras' restore_best_weights). Default true.</summary>
    public bool RestoreBestWeights { get; init; } = true;

    double _best;
    int _wait;

    /// <summary>The epoch with the best value so far (0: none yet).</summary>
    public int BestEpoch { get; private set; }

    /// <summary>The epoch after which the run was stopped (0: it ran to the end).</summary>
    public int StoppedEpoch { get; private set; }

    public void Validate()
    {
        if (Patience < 0) throw new ArgumentOutOfRangeException(nameof(Patience), Patience, "Early-stopping patience cannot be negative.");
        if (!(MinDelta >= 0)) throw new ArgumentOutOfRangeException(nameof(MinDelta), MinDelta, "Early-stopping min delta cannot be negative.");
    }

    public override void OnTrainBegin(TrainingControl control)
    {
        _best = Monitor.Worst();
        _wait = 0;
        BestEpoch = StoppedEpoch = 0;
    }

    public override void OnResume(IReadOnlyList<EpochSummary> completed, TrainingControl control)
    {
        // Replayed with the same rule: if the interrupted run had already stopped, the resumed one stops at once too.
        foreach (var e in completed)
            if (Update(e))
            {
                Stop(e.Epoch, control);
                break;
            }
    }

    public override void OnEpochEnd(EpochSummary epoch, TrainingControl control)
    {
        if (Update(epoch)) Stop(epoch.Epoch, control);
    }

    void Stop(int epoch, TrainingControl control)
    {
        StoppedEpoch = epoch;
        control.RequestStop($"early stopping: {Monitor.Name()} did not improve for {Patience} epochs (best {_best:F4} at epoch {BestEpoch})");
    }

    /// <returns>True when patience has run out.</returns>
    bool Update(EpochSummary epoch)
    {
        double current = Monitor.ValueOf(epoch)
            ?? throw new InvalidOperationException($"Early stopping watches {Monitor.Name()}, which needs a validation set.");
        if (Monitor.Improves(current, _best, MinDelta))
        {
            _best = current;
            BestEpoch = epoch.Epoch;
            _wait = 0;
            return false;
        }
        return ++_wait >= Patience;
    }
}
