using System.Globalization;
using MLNet.ImageTransfer.Training.Callbacks;

namespace MLNet.ImageTransfer.Training.Schedules;

/// <summary>Text form of the schedules, for the CLI and configuration files: <c>NAME[:key=value,…]</c>.</summary>
public static class LearningRateSchedules
{
    /// <summary>What <see cref="Parse"/> accepts.</summary>
    public const string Help =
        "step[:step_size=10,gamma=0.1] | cosine[:warmup_epochs=0,warmup_start_factor=0.1,eta_min=0] | " +
        "onecycle[:pct_start=0.3,div_factor=25,final_div_factor=1e4] | plateau[:factor=0.1,patience=10,cooldown=0,min_lr=0,threshold=1e-4]";

    /// <summary>
    /// Parses <c>step</c>, <c>cosine</c>, <c>onecycle</c> or <c>plateau</c>, each optionally followed by <c>:</c> and
    /// PyTorch's parameter names (e.g. <c>step:step_size=3,gamma=0.5</c>). <paramref name="monitor"/> is the plateau
    /// schedule's metric; <c>none</c> or empty gives null.
    /// </summary>
    /// <exception cref="ArgumentException">An unknown schedule or parameter, or a value that is not a number.</exception>
    public static LearningRateSchedule? Parse(string? spec, MonitoredMetric monitor = MonitoredMetric.ValidationLoss)
    {
        if (string.IsNullOrWhiteSpace(spec) || spec.Trim().Equals("none", StringComparison.OrdinalIgnoreCase)) return null;
        var parts = spec.Split(':', 2, StringSplitOptions.TrimEntries);
        var name = parts[0].ToLowerInvariant();
        var values = new Dictionary<string, double>(StringComparer.OrdinalIgnoreCase);
        if (parts.Length == 2)
            foreach (var item in parts[1].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                var kv = item.Split('=', 2, StringSplitOptions.TrimEntries);
                if (kv.Length != 2 || !double.TryParse(kv[1], NumberStyles.Float, CultureInfo.InvariantCulture, out var v))
                    throw new ArgumentException($"Learning-rate schedule '{spec}': expected key=value, got '{item}'. Format: {Help}");
                values[kv[0].Replace('-', '_')] = v;
            }
        double Take(string key, double fallback)
        {
            if (!values.Remove(key, out var v)) return fallback;
            return v;
        }
        int TakeInt(string key, int fallback)
        {
            double v = Take(key, fallback);
            if (v != Math.Floor(v)) throw new ArgumentException($"Learning-rate schedule '{spec}': {key} must be a whole number, got {v}.");
            return (int)v;
        }
        LearningRateSchedule schedule = name switch
        {
            "step" => new StepSchedule { StepSize = TakeInt("step_size", 10), Gamma = Take("gamma", 0.1) },
            "cosine" => new CosineSchedule { WarmupEpochs = TakeInt("warmup_epochs", 0), WarmupStartFactor = Take("warmup_start_factor", 0.1), MinLearningRate = Take("eta_min", 0) },
            "onecycle" or "one_cycle" => new OneCycleSchedule { PctStart = Take("pct_start", 0.3), DivFactor = Take("div_factor", 25), FinalDivFactor = Take("final_div_factor", 1e4) },
            "plateau" => new ReduceOnPlateauSchedule
            {
                Monitor = monitor, Factor = Take("factor", 0.1), Patience = TakeInt("patience", 10), Cooldown = TakeInt("cooldown", 0),
                MinLearningRate = Take("min_lr", 0), Threshold = Take("threshold", 1e-4),
            },
            _ => throw new ArgumentException($"Unknown learning-rate schedule '{parts[0]}'. Use {Help}."),
        };
        if (values.Count > 0)
            throw new ArgumentException($"Learning-rate schedule '{spec}': unknown parameter(s) {string.Join(", ", values.Keys)} for {name}. Format: {Help}");
        try { schedule.Validate(); }
        catch (ArgumentOutOfRangeException e) { throw new ArgumentException($"Learning-rate schedule '{spec}': {e.Message}", e); }
        return schedule;
    }
}
