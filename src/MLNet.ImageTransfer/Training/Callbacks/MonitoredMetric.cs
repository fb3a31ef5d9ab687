namespace MLNet.ImageTransfer.Training.Callbacks;

/// <summary>A per-epoch number that early stopping, checkpoints and the plateau schedule watch (Keras' <c>monitor</c>).</summary>
public enum MonitoredMetric
{
    /// <summary><c>val_loss</c>: lower is better.</summary>
    ValidationLoss,
    /// <summary><c>val_accuracy</c>: higher is better.</summary>
    ValidationAccuracy,
}

/// <summary>What each <see cref="MonitoredMetric"/> means.</summary>
public static class MonitoredMetrics
{
    /// <summary>Keras' name: <c>val_loss</c> or <c>val_accuracy</c>.</summary>
    public static string Name(this MonitoredMetric metric) => metric switch
    {
        MonitoredMetric.ValidationLoss => "val_loss",
        MonitoredMetric.ValidationAccuracy => "val_accuracy",
        _ => throw new ArgumentOutOfRangeException(nameof(metric), metric, null),
    };

    /// <summary>Parses <c>val_loss</c> / <c>val_accuracy</c> (also <c>loss</c>/<c>accuracy</c> spelled with a <c>val-</c> dash).</summary>
    public static MonitoredMetric Parse(string text) => text.Trim().ToLowerInvariant().Replace('-', '_') switch
    {
        "val_loss" => MonitoredMetric.ValidationLoss,
        "val_accuracy" or "val_acc" => MonitoredMetric.ValidationAccuracy,
        _ => throw new ArgumentException($"Unknown metric '{text}'. Use val_loss or val_accuracy.", nameof(text)),
    };

    public static bool HigherIsBetter(this MonitoredMetric metric) => metric == MonitoredMetric.ValidationAccuracy;

    /// <summary>The value that every real value improves on.</summary>
    public static double Worst(this MonitoredMetric metric) => metric.HigherIsBetter() ? double.NegativeInfinity : double.PositiveInfinity;

    /// <summary>The epoch's value; null without a validation set.</summary>
    public static double? ValueOf(this MonitoredMetric metric, EpochSummary epoch)
        => metric == MonitoredMetric.ValidationLoss ? epoch.ValidationLoss : epoch.ValidationAccuracy;

    /// <summary>Keras' test: <paramref name="current"/> beats <paramref name="best"/> by more than <paramref name="minDelta"/>.</summary>
    public static bool Improves(this MonitoredMetric metric, double current, double best, double minDelta = 0)
        => metric.HigherIsBetter() ? current - minDelta > best : current + minDelta < best;

    /// <summary>The monitored metric that corresponds to a <see cref="BestModelMetric"/> (null for None).</summary>
    public static MonitoredMetric? ToMonitored(this BestModelMetric metric) => metric switch
    {
        BestModelMetric.ValidationLoss => MonitoredMetric.ValidationLoss,
        BestModelMetric.ValidationAccuracy => MonitoredMetric.ValidationAccuracy,
        _ => null,
    };
}
