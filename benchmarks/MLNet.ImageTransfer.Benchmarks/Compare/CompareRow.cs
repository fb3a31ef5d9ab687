namespace MLNet.ImageTransfer.Benchmarks.Compare;

/// <summary>
/// One side's number for a row: the median, the interquartile spread relative to it, the sample count, and the
/// interquartile range in the same unit (<see cref="Low"/> ≤ median ≤ <see cref="High"/>).
/// </summary>
public sealed record Measurement(double Value, double Spread, int Samples, double Low, double High, string Detail = "")
{
    /// <summary>Median seconds of named parts of a step or run (training: forward, backward, optimizer; load rows: start-up, load, predict).</summary>
    public IReadOnlyDictionary<string, double> Parts { get; init; } = new Dictionary<string, double>();
}

/// <summary>What a row measures, for MFU and for the notes.</summary>
public enum RowKind { Gemm, Train, Inference, Pipeline, EndToEnd, LoadPredict, Onnx }

/// <summary>One line of the side-by-side table: how to measure each side, and the results once run.</summary>
public sealed class CompareRow
{
    public required RowKind Kind { get; init; }
    /// <summary>What is measured, e.g. "Train resnet50 224² b32".</summary>
    public required string Name { get; init; }
    public string Architecture { get; init; } = "";
    public int ImageSize { get; init; }
    public int BatchSize { get; init; }
    /// <summary>"img/s", "GFLOP/s", "s".</summary>
    public required string Unit { get; init; }
    public bool HigherIsBetter { get; init; } = true;
    public Func<Measurement> Ours { get; init; } = () => throw new InvalidOperationException("This row measures both sides together.");
    public Func<Measurement> Theirs { get; init; } = () => throw new InvalidOperationException("This row measures both sides together.");
    /// <summary>Measures both sides together, interleaved in rounds (step benchmarks); when set, <see cref="Ours"/>/<see cref="Theirs"/> are unused.</summary>
    public Func<bool, (Measurement Ours, Measurement Theirs)>? Both { get; init; }
    /// <summary>Model FLOP per image (train: 6·MACs, inference: 2·MACs); 0 where MFU does not apply.</summary>
    public double FlopPerItem { get; init; }
    /// <summary>Label of the PyTorch side when it is not the default recipe (e.g. "DataLoader(num_workers=2)").</summary>
    public string TheirSetup { get; init; } = "";

    public Measurement? OurResult { get; set; }
    public Measurement? TheirResult { get; set; }
    public string? Error { get; set; }
    public double OthersCpu { get; set; } = double.NaN;
    public string LoadAverageAtStart { get; set; } = "";
    public DateTimeOffset StartedAt { get; set; }
    public double WallSeconds { get; set; }
    /// <summary>Seconds spent waiting for other processes to quieten before the row (all attempts).</summary>
    public double WaitedSeconds { get; set; }
    /// <summary>1, or 2 when the first attempt was disturbed by other processes and the row was measured again.</summary>
    public int Attempts { get; set; } = 1;
    /// <summary>Why the first attempt failed, when a second one succeeded (reported under the table).</summary>
    public string? FirstAttemptError { get; set; }

    /// <summary>Speed ratio, ours ÷ PyTorch in throughput terms (for times: PyTorch's time ÷ ours): above 1.0 we are faster.</summary>
    public double Ratio => OurResult is null || TheirResult is null ? double.NaN
        : HigherIsBetter ? OurResult.Value / TheirResult.Value : TheirResult.Value / OurResult.Value;

    /// <summary>
    /// A gap too small to call: under 10%, and the two sides' interquartile ranges overlap.
    /// </summary>
    public bool IsTie => OurResult is not null && TheirResult is not null && Ratio >= 0.9
        && OurResult.High >= TheirResult.Low && TheirResult.High >= OurResult.Low;
}
