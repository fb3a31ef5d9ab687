using System.Diagnostics;

namespace MLNet.ImageTransfer.Benchmarks.Infrastructure;

/// <summary>
/// How many steps a side-by-side measurement runs: <see cref="Warmup"/> untimed steps, then enough timed steps to last
/// about <see cref="TargetSeconds"/> (estimated from the median of the last three warm-up steps), clamped to
/// [<see cref="MinIterations"/>, <see cref="MaxIterations"/>]. benchmarks/pytorch_reference.py implements the same
/// rule, so both sides of a row run under identical rules.
/// </summary>
public sealed record TimingRule(int Warmup, int MinIterations, int MaxIterations, double TargetSeconds)
{
    public int TimedSteps(IReadOnlyList<double> warmupSeconds)
    {
        var tail = warmupSeconds.Skip(Math.Max(0, warmupSeconds.Count - 3)).Order().ToArray();
        double estimate = tail.Length == 0 ? 1 : tail[tail.Length / 2];
        int n = (int)Math.Ceiling(TargetSeconds / Math.Max(estimate, 1e-6));
        return Math.Clamp(n, MinIterations, MaxIterations);
    }
}

/// <summary>Raw per-step times of one measurement (seconds), and what one step processes.</summary>
public sealed record StepTimes(double[] WarmupSeconds, double[] Seconds, double ItemsPerStep)
{
    public double MedianSeconds => Stats.Median(Seconds);
    /// <summary>Items (images) per second at the median step time.</summary>
    public double Throughput => ItemsPerStep / MedianSeconds;
    /// <summary>Interquartile range of the step times relative to the median: the row's noise.</summary>
    public double RelativeSpread => Seconds.Length < 2 ? 0 : (Stats.Quantile(Seconds, 0.75) - Stats.Quantile(Seconds, 0.25)) / MedianSeconds;
}

public static class StepTimer
{
    /// <summary>Runs <paramref name="step"/> under <paramref name="rule"/> and returns every step's wall time.</summary>
    public static StepTimes Run(Action step, TimingRule rule, double itemsPerStep)
    {
        var warm = new double[rule.Warmup];
        for (int i = 0; i < warm.Length; i++) warm[i] = Time(step);
        var times = new double[rule.TimedSteps(warm)];
        for (int i = 0; i < times.Length; i++) times[i] = Time(step);
        return new StepTimes(warm, times, itemsPerStep);
    }

    public static double Time(Action action)
    {
        long start = Stopwatch.GetTimestamp();
        action();
        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }
}

public static class Stats
{
    public static double Median(IReadOnlyList<double> values) => Quantile(values, 0.5);

    /// <summary>Linear-interpolated quantile (numpy's default).</summary>
    public static double Quantile(IReadOnlyList<double> values, double q)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.Order().ToArray();
        double pos = q * (sorted.Length - 1);
        int lo = (int)Math.Floor(pos), hi = (int)Math.Ceiling(pos);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
    }
}
