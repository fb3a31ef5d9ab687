namespace MLNet.ImageTransfer.Augmentation;

/// <summary>
/// A sequence of random image augmentations, applied in order to every training image each epoch — data, not code:
/// it is validated, compared, printed and parsed as a spec string (<see cref="Parse"/>, <see cref="ToSpec"/>), held by
/// the trainers' <c>Augmentation</c> option, and recorded with the trained model. Augmentation exists only on the
/// training path: evaluation, validation, <c>Transform</c> of any data, prediction engines and loaded models never
/// augment. Each epoch draws afresh; the same seed gives the same draws.
/// </summary>
/// <example>
/// <code>
/// // Keras' ImageDataGenerator(rotation_range=20, width_shift_range=0.2, height_shift_range=0.2, shear_range=0.2,
/// //                            zoom_range=0.2, horizontal_flip=True, fill_mode='nearest'):
/// var keras = AugmentationPipeline.Keras(rotationRange: 20, widthShiftRange: 0.2, heightShiftRange: 0.2,
///     shearRange: 0.2, zoomRange: 0.2, horizontalFlip: true);
/// // torchvision's RandomResizedCrop(224) + RandomHorizontalFlip():
/// var torchvision = new AugmentationPipeline().RandomResizedCrop().HorizontalFlip();
/// // The same as spec strings (what the CLI's --augment takes):
/// var parsed = AugmentationPipeline.Parse("resized-crop,hflip");
/// </code>
/// </example>
public sealed record AugmentationPipeline
{
    public AugmentationPipeline() { }
    public AugmentationPipeline(IEnumerable<AugmentationOp> ops) => Ops = ops.ToArray();

    /// <summary>The ops, applied in this order.</summary>
    public IReadOnlyList<AugmentationOp> Ops { get; init; } = [];

    /// <summary>How geometric ops fill pixels that come from outside the image (Keras' <c>fill_mode</c>). Default <see cref="FillMode.Nearest"/>, as Keras.</summary>
    public FillMode Fill { get; init; } = FillMode.Nearest;

    /// <summary>Fill value for <see cref="FillMode.Constant"/> (Keras' <c>cval</c>), in pixel units (0–255). Default 0.</summary>
    public double FillValue { get; init; }

    /// <summary>Seed of the random draws; null derives it from the trainer's seed. Same seed → same draws; every epoch draws afresh.</summary>
    public int? Seed { get; init; }

    /// <summary>
    /// Background threads that augment the next batches while the network trains on the current one; null picks
    /// one per two cores (1–4). Results do not depend on it: every batch's draws are fixed by (seed, epoch, batch).
    /// </summary>
    public int? Workers { get; init; }

    /// <summary>True when there is nothing to do (training then takes exactly the path it takes without augmentation).</summary>
    public bool IsEmpty => Ops.Count == 0;

    /// <summary>
    /// Whether a crop op needs more than the network's input to crop from. Then training images are cached whole,
    /// aspect kept: for <c>resized-crop</c> the photo itself (at a resolution that keeps its smallest window at least
    /// twice the input size across), for <c>crop</c> with the shorter-side + centre-crop presets (torchvision) the
    /// image resized as evaluation resizes it (shorter side 256 for 224); with stretch presets <c>crop</c> alone
    /// crops the S×S image, which already shows the whole image.
    /// </summary>
    public bool NeedsLargerSource => Ops.OfType<GeometricAugmentation>().Any(o => o.IsCrop);

    // ---- Presets -----------------------------------------------------------------------------------------------

    /// <summary>No augmentation.</summary>
    public static AugmentationPipeline None { get; } = new();

    /// <summary>
    /// <c>--augment default</c>: <c>resized-crop(scale=0.35:1),hflip,brightness=0.8:1.2,contrast=0.8:1.2,saturation=0.8:1.2</c> —
    /// torchvision's recipe with crops that keep at least 35% of the image, and light colour jitter: moderate, for
    /// runs of a few epochs (see the preset's definition in <see cref="AugmentationSpec"/>).
    /// </summary>
    public static AugmentationPipeline Default => Parse("default");

    /// <summary>The ops of Keras' <c>ImageDataGenerator</c> with its argument names, in Keras' order (affine, channel shift, flips, brightness).</summary>
    /// <param name="rotationRange">Degrees, ±.</param>
    /// <param name="widthShiftRange">Fraction of the width (&lt; 1) or pixels, ±.</param>
    /// <param name="heightShiftRange">Fraction of the height (&lt; 1) or pixels, ±.</param>
    /// <param name="shearRange">Degrees, ± (as Keras: 0.2 is a fifth of a degree).</param>
    /// <param name="zoomRange">Factors 1 ± zoomRange (below 1 zooms in).</param>
    /// <param name="channelShiftRange">Intensity ±, in pixel values (0–255).</param>
    /// <param name="horizontalFlip">Random left–right flip (p = 0.5).</param>
    /// <param name="verticalFlip">Random top–bottom flip (p = 0.5).</param>
    /// <param name="brightnessRange">Brightness factors (min, max), e.g. (0.8, 1.2).</param>
    /// <param name="fillMode">Keras' <c>fill_mode</c>.</param>
    /// <param name="cval">Keras' <c>cval</c> (pixel units) for <see cref="FillMode.Constant"/>.</param>
    public static AugmentationPipeline Keras(double rotationRange = 0, double widthShiftRange = 0, double heightShiftRange = 0,
        double shearRange = 0, double zoomRange = 0, double channelShiftRange = 0, bool horizontalFlip = false, bool verticalFlip = false,
        (double Min, double Max)? brightnessRange = null, FillMode fillMode = FillMode.Nearest, double cval = 0)
    {
        var ops = new List<AugmentationOp>();
        if (rotationRange != 0) ops.Add(new Rotate(rotationRange));
        if (widthShiftRange != 0 || heightShiftRange != 0) ops.Add(new Shift(widthShiftRange, heightShiftRange));
        if (shearRange != 0) ops.Add(new Shear(shearRange));
        if (zoomRange != 0) ops.Add(new Zoom(zoomRange));
        if (channelShiftRange != 0) ops.Add(new ChannelShift(channelShiftRange));
        if (horizontalFlip) ops.Add(new HorizontalFlip());
        if (verticalFlip) ops.Add(new VerticalFlip());
        if (brightnessRange is { } b) ops.Add(new Brightness(new ParameterRange(b.Min, b.Max)));
        var pipeline = new AugmentationPipeline(ops) { Fill = fillMode, FillValue = cval };
        pipeline.Validate();
        return pipeline;
    }

    // ---- Fluent building (each returns a new pipeline) ---------------------------------------------------------

    public AugmentationPipeline Append(AugmentationOp op)
    {
        ArgumentNullException.ThrowIfNull(op);
        op.Validate();
        return this with { Ops = [.. Ops, op] };
    }

    public AugmentationPipeline HorizontalFlip(double probability = 0.5) => Append(new HorizontalFlip { Probability = probability });
    public AugmentationPipeline VerticalFlip(double probability = 0.5) => Append(new VerticalFlip { Probability = probability });
    /// <summary>Rotation uniform in ±<paramref name="maxDegrees"/> (counter-clockwise positive).</summary>
    public AugmentationPipeline Rotate(double maxDegrees, double probability = 1) => Append(new Rotate(maxDegrees) { Probability = probability });
    /// <summary>Shifts uniform in ±width, ±height: fractions of the size when below 1, else pixels (Keras' shift ranges).</summary>
    public AugmentationPipeline Shift(double width, double height, double probability = 1) => Append(new Shift(width, height) { Probability = probability });
    /// <summary>Keras' <c>shear_range</c> in degrees.</summary>
    public AugmentationPipeline Shear(double maxDegrees, double probability = 1) => Append(new Shear(maxDegrees) { Probability = probability });
    /// <summary>Keras' <c>zoom_range</c>: factors 1 ± <paramref name="range"/>, below 1 zooms in.</summary>
    public AugmentationPipeline Zoom(double range, bool keepAspectRatio = false, double probability = 1)
        => Append(new Zoom(new ParameterRange(1 - range, 1 + range), keepAspectRatio) { Probability = probability });
    /// <summary>Random square crop of <paramref name="size"/> pixels (≥ 1) or a fraction of the side (&lt; 1); null = the network's input size.</summary>
    public AugmentationPipeline RandomCrop(double? size = null, double probability = 1) => Append(new RandomCrop(size) { Probability = probability });
    /// <summary>torchvision's <c>RandomResizedCrop(scale=(minScale, maxScale), ratio=(minRatio, maxRatio))</c>.</summary>
    public AugmentationPipeline RandomResizedCrop(double minScale = 0.08, double maxScale = 1, double minRatio = 3.0 / 4, double maxRatio = 4.0 / 3)
        => Append(new RandomResizedCrop(new ParameterRange(minScale, maxScale), new ParameterRange(minRatio, maxRatio)));
    /// <summary>Brightness factors in [1 − jitter, 1 + jitter].</summary>
    public AugmentationPipeline Brightness(double jitter, double probability = 1) => Append(new Brightness(jitter) { Probability = probability });
    public AugmentationPipeline Contrast(double jitter, double probability = 1) => Append(new Contrast(jitter) { Probability = probability });
    public AugmentationPipeline Saturation(double jitter, double probability = 1) => Append(new Saturation(jitter) { Probability = probability });
    /// <summary>Hue shifts in ±<paramref name="maxShift"/> turns (at most 0.5).</summary>
    public AugmentationPipeline Hue(double maxShift, double probability = 1) => Append(new Hue(maxShift) { Probability = probability });
    /// <summary>torchvision's <c>ColorJitter(brightness, contrast, saturation, hue)</c> as four ops (zero = left out).</summary>
    public AugmentationPipeline ColorJitter(double brightness = 0, double contrast = 0, double saturation = 0, double hue = 0)
    {
        var p = this;
        if (brightness != 0) p = p.Brightness(brightness);
        if (contrast != 0) p = p.Contrast(contrast);
        if (saturation != 0) p = p.Saturation(saturation);
        if (hue != 0) p = p.Hue(hue);
        return p;
    }
    /// <summary>Keras' <c>channel_shift_range</c>.</summary>
    public AugmentationPipeline ChannelShift(double maxIntensity, double probability = 1) => Append(new ChannelShift(maxIntensity) { Probability = probability });
    public AugmentationPipeline Grayscale(double probability = 0.1) => Append(new Grayscale { Probability = probability });
    public AugmentationPipeline GaussianBlur(int kernelSize = 5, double minSigma = 0.1, double maxSigma = 2, double probability = 1)
        => Append(new GaussianBlur(kernelSize, new ParameterRange(minSigma, maxSigma)) { Probability = probability });
    /// <summary>torchvision's <c>RandomErasing</c>; <paramref name="value"/> null = random noise.</summary>
    public AugmentationPipeline RandomErasing(double probability = 0.5, double minScale = 0.02, double maxScale = 0.33, double minRatio = 0.3, double maxRatio = 3.3, double? value = 0)
        => Append(new RandomErasing { Probability = probability, Scale = new(minScale, maxScale), Ratio = new(minRatio, maxRatio), Value = value });
    /// <summary>Keras' <c>rescale</c> (units of the following ops' parameters; see <see cref="Augmentation.Rescale"/>).</summary>
    public AugmentationPipeline Rescale(double factor) => Append(new Rescale(factor));
    public AugmentationPipeline WithFill(FillMode mode, double value = 0) => this with { Fill = mode, FillValue = value };
    public AugmentationPipeline WithSeed(int? seed) => this with { Seed = seed };

    // ---- Data ----------------------------------------------------------------------------------------------------

    /// <summary>Checks every op and setting; throws <see cref="ArgumentException"/> naming the op and parameter.</summary>
    public void Validate()
    {
        if (Ops is null) throw new ArgumentNullException(nameof(Ops));
        foreach (var op in Ops)
        {
            if (op is null) throw new ArgumentException("The augmentation pipeline contains a null op.", nameof(Ops));
            op.Validate();
        }
        if (!Enum.IsDefined(Fill)) throw new ArgumentOutOfRangeException(nameof(Fill), Fill, "Unknown fill mode.");
        if (!double.IsFinite(FillValue)) throw new ArgumentOutOfRangeException(nameof(FillValue), FillValue, "The fill value must be finite.");
        if (Workers is < 1 or > 64) throw new ArgumentOutOfRangeException(nameof(Workers), Workers, "Workers must be between 1 and 64.");
    }

    /// <summary>
    /// Parses a spec: <c>none</c>, <c>default</c>, or comma-separated items such as
    /// <c>hflip,rotate=20,shift=0.1,zoom=0.2,fill=reflect</c> (see <see cref="AugmentationSpec"/> for the grammar and names;
    /// Keras argument names such as <c>rotation_range=20</c> and <c>horizontal_flip</c> work too).
    /// </summary>
    /// <exception cref="ArgumentException">The spec is malformed or a parameter is out of range; the message says which.</exception>
    public static AugmentationPipeline Parse(string spec) => AugmentationSpec.Parse(spec);

    /// <summary>The canonical spec string; <see cref="Parse"/> of it gives an equal pipeline. <c>none</c> when empty.</summary>
    public string ToSpec()
    {
        var items = new List<string>(Ops.Select(o => o.ToSpec()));
        if (Fill != FillMode.Nearest) items.Add("fill=" + Fill.ToString().ToLowerInvariant());
        if (FillValue != 0) items.Add("cval=" + ParameterRange.Format(FillValue));
        if (Seed is { } seed) items.Add("seed=" + seed);
        if (Workers is { } workers) items.Add("workers=" + workers);
        return items.Count == 0 ? "none" : string.Join(",", items);
    }

    public override string ToString() => ToSpec();

    public bool Equals(AugmentationPipeline? other)
        => other is not null && Ops.SequenceEqual(other.Ops) && Fill == other.Fill && FillValue == other.FillValue && Seed == other.Seed && Workers == other.Workers;

    public override int GetHashCode()
    {
        var hash = new HashCode();
        foreach (var op in Ops) hash.Add(op);
        hash.Add(Fill); hash.Add(FillValue); hash.Add(Seed); hash.Add(Workers);
        return hash.ToHashCode();
    }
}
