using System.Globalization;

namespace MLNet.ImageTransfer.Augmentation;

/// <summary>A closed interval [<see cref="Min"/>, <see cref="Max"/>] a random parameter is drawn from (uniformly, unless an op says otherwise).</summary>
public readonly record struct ParameterRange(double Min, double Max)
{
    /// <summary>[−<paramref name="magnitude"/>, +<paramref name="magnitude"/>] (Keras' <c>rotation_range=20</c> style).</summary>
    public static ParameterRange Symmetric(double magnitude) => new(-magnitude, magnitude);

    /// <summary>[max(0, 1 − <paramref name="jitter"/>), 1 + <paramref name="jitter"/>] (torchvision's <c>ColorJitter(brightness=0.2)</c> style).</summary>
    public static ParameterRange AroundOne(double jitter) => new(Math.Max(0, 1 - jitter), 1 + jitter);

    /// <summary>The single value <paramref name="value"/> (no randomness; for tests and exact effects).</summary>
    public static ParameterRange Fixed(double value) => new(value, value);

    public bool IsFixed => Min == Max;
    public double MaxMagnitude => Math.Max(Math.Abs(Min), Math.Abs(Max));

    internal double Draw(Random random) => Min == Max ? Min : Min + (Max - Min) * random.NextDouble();

    /// <summary>Checks finiteness and order; <paramref name="lowest"/>/<paramref name="highest"/> bound both ends (inclusive).</summary>
    internal void Validate(string op, string parameter, double lowest = double.NegativeInfinity, double highest = double.PositiveInfinity, bool excludeLowest = false)
    {
        if (!double.IsFinite(Min) || !double.IsFinite(Max))
            throw new ArgumentOutOfRangeException(parameter, $"{op}: {parameter} must be finite, got {this}.");
        if (Min > Max)
            throw new ArgumentOutOfRangeException(parameter, $"{op}: {parameter} range {this} is reversed (minimum above maximum).");
        bool tooLow = excludeLowest ? Min <= lowest : Min < lowest;
        if (tooLow || Max > highest)
        {
            string low = double.IsNegativeInfinity(lowest) ? "" : (excludeLowest ? $"above {Format(lowest)}" : $"at least {Format(lowest)}");
            string high = double.IsPositiveInfinity(highest) ? "" : $"at most {Format(highest)}";
            string bounds = string.Join(" and ", new[] { low, high }.Where(s => s.Length > 0));
            throw new ArgumentOutOfRangeException(parameter, $"{op}: {parameter} must be {bounds}, got {this}.");
        }
    }

    /// <summary><c>a:b</c> (spec syntax; also for a fixed value, <c>a:a</c>).</summary>
    public override string ToString() => $"{Format(Min)}:{Format(Max)}";

    /// <summary>Magnitude form (<c>20</c> for [−20, 20]) when symmetric around zero, else <c>a:b</c>.</summary>
    internal string ToSymmetricString() => Min == -Max ? Format(Max) : ToString();

    internal static string Format(double value) => value.ToString("R", CultureInfo.InvariantCulture);
}

/// <summary>How a geometric transform fills output pixels that come from outside the input (Keras' <c>fill_mode</c>).</summary>
public enum FillMode
{
    /// <summary>Repeat the nearest edge pixel: aaaa|abcd|dddd (Keras' default).</summary>
    Nearest,
    /// <summary>A constant value, <see cref="AugmentationPipeline.FillValue"/> (Keras' <c>cval</c>): kkkk|abcd|kkkk.</summary>
    Constant,
    /// <summary>Mirror at the border: dcba|abcd|dcba.</summary>
    Reflect,
    /// <summary>Tile the image periodically: abcd|abcd|abcd.</summary>
    Wrap,
}

/// <summary>
/// One augmentation step: data (its parameters) plus the probability that it applies to a given image. Each op draws
/// its random parameters independently per image. Ops are immutable records; build them directly or through
/// <see cref="AugmentationPipeline"/>'s fluent methods or spec strings (<see cref="AugmentationPipeline.Parse"/>).
/// </summary>
public abstract record AugmentationOp
{
    private protected AugmentationOp() { }

    /// <summary>Probability that the op applies to an image (0–1). Default 1, except where an op's documentation says otherwise.</summary>
    public double Probability { get; init; } = 1;

    /// <summary>The op's name in spec strings (e.g. <c>rotate</c>).</summary>
    public abstract string Name { get; }

    internal virtual double DefaultProbability => 1;

    /// <summary>Throws <see cref="ArgumentException"/> (or <see cref="ArgumentOutOfRangeException"/>) naming the bad parameter.</summary>
    public virtual void Validate()
    {
        if (!(Probability >= 0 && Probability <= 1))
            throw new ArgumentOutOfRangeException(nameof(Probability), $"{Name}: probability must be between 0 and 1, got {ParameterRange.Format(Probability)}.");
    }

    /// <summary>The op's parameters in spec syntax, without name and probability: <c>=20</c>, <c>(scale=0.08:1,ratio=0.75:1.333)</c> or empty.</summary>
    private protected abstract string ArgumentsSpec();

    /// <summary>This op in spec syntax, e.g. <c>rotate=20</c>, <c>hflip@0.5</c>, <c>resized-crop(scale=0.08:1,ratio=0.75:1.3333333333333333)</c>.</summary>
    public string ToSpec() => Name + ArgumentsSpec() + (Probability == DefaultProbability ? "" : "@" + ParameterRange.Format(Probability));

    public override string ToString() => ToSpec();

    /// <summary>Per-image decisions: which images of the batch this op applies to.</summary>
    internal bool[] Select(Random random, int count)
    {
        var chosen = new bool[count];
        for (int i = 0; i < count; i++)
            chosen[i] = Probability >= 1 || (Probability > 0 && random.NextDouble() < Probability);
        return chosen;
    }
}
