using MLNet.ImageTransfer.Training.Callbacks;

namespace MLNet.ImageTransfer.Training.Schedules;

/// <summary>Where training stands when the learning rate is asked for.</summary>
/// <param name="Epoch">1-based epoch.</param>
/// <param name="Step">0-based step within the epoch.</param>
/// <param name="StepsPerEpoch">Optimisation steps per epoch.</param>
/// <param name="Epochs">Epochs of the whole run.</param>
/// <param name="BaseLearningRate">The rate the schedule scales: <see cref="TrainingOptions.LearningRate"/>, or
/// <see cref="TrainingOptions.FineTuneLearningRate"/> once the backbone is unfrozen.</param>
public readonly record struct SchedulePosition(int Epoch, int Step, int StepsPerEpoch, int Epochs, double BaseLearningRate)
{
    /// <summary>0-based index of this step in the whole run.</summary>
    public long GlobalStep => (long)(Epoch - 1) * StepsPerEpoch + Step;

    /// <summary>Steps in the whole run.</summary>
    public long TotalSteps => (long)Epochs * StepsPerEpoch;
}

/// <summary>
/// A learning-rate schedule (PyTorch's <c>torch.optim.lr_scheduler</c>): the rate of the head's parameter group at a
/// step. Layer-group multipliers (<see cref="TrainingOptions.LearningRateMultipliers"/>,
/// <see cref="TrainingOptions.LayerLearningRateDecay"/>) scale every group by the same schedule.
/// </summary>
/// <remarks>
/// Schedules are pure functions of the position and, for <see cref="ReduceOnPlateauSchedule"/>, of the epochs seen so
/// far; that is what makes a resumed run follow the same rates (the loop replays the history into
/// <see cref="OnEpochEnd"/> on resume; nothing else needs saving).
/// </remarks>
public abstract class LearningRateSchedule
{
    /// <summary>The learning rate at <paramref name="position"/>.</summary>
    public abstract double LearningRate(SchedulePosition position);

    /// <summary>Called before the first epoch (and before a resumed run replays its history): forget earlier runs.</summary>
    public virtual void Reset() { }

    /// <summary>Called after each epoch with its numbers (ReduceLROnPlateau watches them).</summary>
    public virtual void OnEpochEnd(EpochSummary epoch) { }

    /// <summary>Checks the parameters; throws <see cref="ArgumentOutOfRangeException"/> naming the bad one.</summary>
    public virtual void Validate() { }

    /// <summary>Short description for logs and the model's saved description.</summary>
    public abstract override string ToString();

    /// <summary>PyTorch's cosine annealing between <paramref name="start"/> and <paramref name="end"/> at fraction <paramref name="pct"/>.</summary>
    protected static double CosineAnneal(double start, double end, double pct) => end + (start - end) / 2 * (Math.Cos(Math.PI * pct) + 1);
}

/// <summary>
/// Step decay (PyTorch <c>StepLR</c>): rate × <see cref="Gamma"/>^⌊(epoch−1) / <see cref="StepSize"/>⌋, changed per epoch.
/// </summary>
public sealed class StepSchedule : LearningRateSchedule
{
    /// <summary>Epochs between decays. Default 10.</summary>
    public int StepSize { get; init; } = 10;

    /// <summary>Multiplier at each decay. Default 0.1.</summary>
    public double Gamma { get; init; } = 0.1;

    public override double LearningRate(SchedulePosition p) => p.BaseLearningRate * Math.Pow(Gamma, (p.Epoch - 1) / StepSize);

    public override void Validate()
    {
        if (StepSize < 1) throw new ArgumentOutOfRangeException(nameof(StepSize), StepSize, "The step schedule's step size must be at least 1 epoch.");
        if (!(Gamma > 0 && Gamma <= 1)) throw new ArgumentOutOfRangeException(nameof(Gamma), Gamma, "The step schedule's gamma must be in (0, 1].");
    }

    public override string ToString() => $"step(step_size={StepSize}, gamma={Gamma:G4})";
}

/// <summary>
/// Cosine annealing to <see cref="MinLearningRate"/> over the epochs after an optional linear warm-up, per epoch
/// (PyTorch <c>SequentialLR([LinearLR(start_factor, total_iters=W), CosineAnnealingLR(T_max=E−W, eta_min)], [W])</c>):
/// epoch e (0-based) &lt; W: rate × (s + (1 − s)·e/W); then eta_min + (rate − eta_min)(1 + cos(π(e − W)/(E − W)))/2.
/// </summary>
public sealed class CosineSchedule : LearningRateSchedule
{
    /// <summary>Epochs of linear warm-up before the cosine (W). Default 0.</summary>
    public int WarmupEpochs { get; init; }

    /// <summary>Fraction of the rate the warm-up starts at (PyTorch LinearLR's start_factor). Default 0.1.</summary>
    public double WarmupStartFactor { get; init; } = 0.1;

    /// <summary>The rate the cosine ends at (eta_min). Default 0.</summary>
    public double MinLearningRate { get; init; }

    public override double LearningRate(SchedulePosition p)
    {
        int e = p.Epoch - 1;
        if (e < WarmupEpochs) return p.BaseLearningRate * (WarmupStartFactor + (1 - WarmupStartFactor) * e / WarmupEpochs);
        int span = Math.Max(1, p.Epochs - WarmupEpochs);
        return CosineAnneal(p.BaseLearningRate, MinLearningRate, (double)(e - WarmupEpochs) / span);
    }

    public override void Validate()
    {
        if (WarmupEpochs < 0) throw new ArgumentOutOfRangeException(nameof(WarmupEpochs), WarmupEpochs, "Warm-up epochs cannot be negative.");
        if (!(WarmupStartFactor > 0 && WarmupStartFactor <= 1)) throw new ArgumentOutOfRangeException(nameof(WarmupStartFactor), WarmupStartFactor, "The warm-up start factor must be in (0, 1].");
        if (MinLearningRate < 0) throw new ArgumentOutOfRangeException(nameof(MinLearningRate), MinLearningRate, "The minimum learning rate cannot be negative.");
    }

    public override string ToString() => $"cosine(warmup_epochs={WarmupEpochs}, warmup_start_factor={WarmupStartFactor:G4}, eta_min={MinLearningRate:G4})";
}

/// <summary>
/// The one-cycle policy (PyTorch <c>OneCycleLR</c>, two phases, cosine annealing), per step: from rate /
/// <see cref="DivFactor"/> up to the rate (the maximum) over the first <see cref="PctStart"/> of the steps, then down to
/// rate / (DivFactor · <see cref="FinalDivFactor"/>). Unlike PyTorch's default, momentum / Adam's β1 is not cycled.
/// </summary>
public sealed class OneCycleSchedule : LearningRateSchedule
{
    /// <summary>Fraction of the steps spent increasing the rate. Default 0.3.</summary>
    public double PctStart { get; init; } = 0.3;

    /// <summary>initial rate = max / DivFactor. Default 25.</summary>
    public double DivFactor { get; init; } = 25;

    /// <summary>final rate = initial / FinalDivFactor. Default 1e4.</summary>
    public double FinalDivFactor { get; init; } = 1e4;

    public override double LearningRate(SchedulePosition p)
    {
        double max = p.BaseLearningRate, initial = max / DivFactor, min = initial / FinalDivFactor;
        double step = p.GlobalStep;
        double endUp = PctStart * p.TotalSteps - 1, endDown = p.TotalSteps - 1;
        if (step <= endUp) return CosineAnneal(initial, max, endUp <= 0 ? 1 : step / endUp);
        return CosineAnneal(max, min, endDown - endUp <= 0 ? 1 : (step - endUp) / (endDown - endUp));
    }

    public override void Validate()
    {
        if (!(PctStart > 0 && PctStart < 1)) throw new ArgumentOutOfRangeException(nameof(PctStart), PctStart, "The one-cycle pct_start must be in (0, 1).");
        if (!(DivFactor >= 1)) throw new ArgumentOutOfRangeException(nameof(DivFactor), DivFactor, "The one-cycle div_factor must be at least 1.");
        if (!(FinalDivFactor >= 1)) throw new ArgumentOutOfRangeException(nameof(FinalDivFactor), FinalDivFactor, "The one-cycle final_div_factor must be at least 1.");
    }

    public override string ToString() => $"onecycle(pct_start={PctStart:G4}, div_factor={DivFactor:G4}, final_div_factor={FinalDivFactor:G4})";
}

/// <summary>
/// Lowers the rate when a validation metric stops improving (PyTorch <c>ReduceLROnPlateau</c>, threshold_mode "rel"):
/// after <see cref="Patience"/> epochs without an improvement larger than <see cref="Threshold"/> (relative), the rate
/// is multiplied by <see cref="Factor"/> (not below <see cref="MinLearningRate"/>), then <see cref="Cooldown"/> epochs
/// pass before bad epochs count again. Needs a validation set.
/// </summary>
public sealed class ReduceOnPlateauSchedule : LearningRateSchedule
{
    /// <summary>The metric watched. Default validation loss.</summary>
    public MonitoredMetric Monitor { get; init; } = MonitoredMetric.ValidationLoss;

    /// <summary>Multiplier at each reduction. Default 0.1.</summary>
    public double Factor { get; init; } = 0.1;

    /// <summary>Epochs without improvement tolerated before a reduction. Default 10.</summary>
    public int Patience { get; init; } = 10;

    /// <summary>Epochs after a reduction during which bad epochs are not counted. Default 0.</summary>
    public int Cooldown { get; init; }

    /// <summary>Lower bound of the rate. Default 0.</summary>
    public double MinLearningRate { get; init; }

    /// <summary>Relative improvement that counts (new &lt; best·(1 − t) for a loss, &gt; best·(1 + t) for accuracy). Default 1e-4.</summary>
    public double Threshold { get; init; } = 1e-4;

    double _best;
    int _badEpochs, _cooldownLeft, _reductions;

    /// <summary>Reductions so far.</summary>
    public int Reductions => _reductions;

    public override double LearningRate(SchedulePosition p) => Math.Max(p.BaseLearningRate * Math.Pow(Factor, _reductions), Math.Min(MinLearningRate, p.BaseLearningRate));

    public override void Reset()
    {
        _best = Monitor.Worst();
        _badEpochs = _cooldownLeft = _reductions = 0;
    }

    public override void OnEpochEnd(EpochSummary epoch)
    {
        double current = Monitor.ValueOf(epoch)
            ?? throw new InvalidOperationException($"The plateau schedule watches {Monitor.Name()}, which needs a validation set.");
        bool better = Monitor.HigherIsBetter() ? current > _best * (1 + Threshold) : current < _best * (1 - Threshold);
        if (better) { _best = current; _badEpochs = 0; }
        else _badEpochs++;
        if (_cooldownLeft > 0) { _cooldownLeft--; _badEpochs = 0; }
        if (_badEpochs > Patience)
        {
            _reductions++;
            _cooldownLeft = Cooldown;
            _badEpochs = 0;
        }
    }

    public override void Validate()
    {
        if (!(Factor > 0 && Factor < 1)) throw new ArgumentOutOfRangeException(nameof(Factor), Factor, "The plateau factor must be in (0, 1).");
        if (Patience < 0) throw new ArgumentOutOfRangeException(nameof(Patience), Patience, "The plateau patience cannot be negative.");
        if (Cooldown < 0) throw new ArgumentOutOfRangeException(nameof(Cooldown), Cooldown, "The plateau cooldown cannot be negative.");
        if (MinLearningRate < 0) throw new ArgumentOutOfRangeException(nameof(MinLearningRate), MinLearningRate, "The minimum learning rate cannot be negative.");
        if (Threshold < 0) throw new ArgumentOutOfRangeException(nameof(Threshold), Threshold, "The plateau threshold cannot be negative.");
    }

    public override string ToString() => $"plateau(monitor={Monitor.Name()}, factor={Factor:G4}, patience={Patience}, cooldown={Cooldown}, min_lr={MinLearningRate:G4}, threshold={Threshold:G4})";
}
