using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Augmentation;

/// <summary>State shared by the pixel ops of one batch.</summary>
internal sealed class PixelContext(Random random)
{
    Generator? _generator;

    /// <summary>Product of the <see cref="Rescale"/> factors so far: values run from 0 to 255·Units.</summary>
    public double Units { get; set; } = 1;
    public double MaxValue => 255 * Units;

    /// <summary>A torch generator seeded from the batch's draws (for ops that need random tensors).</summary>
    public Generator Generator => _generator ??= new Generator((ulong)random.NextInt64(), CPU);

    public void DisposeGenerator() => _generator?.Dispose();
}

/// <summary>
/// An op that changes pixel values, not positions. Works on float RGB values from 0 to 255 (times any
/// <see cref="Rescale"/> factor before it); results are clipped to that range. BGR presets are handled by the pipeline.
/// </summary>
public abstract record PixelAugmentation : AugmentationOp
{
    private protected PixelAugmentation() { }

    /// <summary>Applies the op to a float batch [N,3,H,W] in RGB order; returns the result (possibly <paramref name="x"/> itself).</summary>
    internal abstract Tensor Apply(Tensor x, Random random, PixelContext context);

    /// <summary>Per-image parameter: drawn where the op applies, <paramref name="identity"/> elsewhere. Null when no image is affected.</summary>
    private protected float[]? DrawPerImage(Random random, int count, ParameterRange range, double identity)
    {
        var chosen = Select(random, count);
        var values = new float[count];
        bool any = false;
        for (int i = 0; i < count; i++)
        {
            values[i] = chosen[i] ? (float)range.Draw(random) : (float)identity;
            any |= values[i] != (float)identity;
        }
        return any ? values : null;
    }

    private protected static Tensor PerImage(float[] values) => tensor(values).view(values.Length, 1, 1, 1);

    internal static Tensor Gray(Tensor rgb) // [N,3,H,W] → [N,1,H,W], ITU-R 601 luma as torchvision's rgb_to_grayscale
        => (rgb.narrow(1, 0, 1) * 0.299f + rgb.narrow(1, 1, 1) * 0.587f + rgb.narrow(1, 2, 1) * 0.114f);

    internal static Tensor Blend(Tensor x, Tensor other, Tensor factor, double max)
        => (x * factor + other * (1f - factor)).clamp_(0, max);
}

/// <summary>Multiplies values by a factor from <see cref="Factor"/> (Keras <c>brightness_range</c>; torchvision <c>ColorJitter(brightness=b)</c> is <c>Factor = 1−b…1+b</c>).</summary>
public sealed record Brightness(ParameterRange Factor) : PixelAugmentation
{
    /// <summary>Factors in [max(0, 1 − <paramref name="jitter"/>), 1 + <paramref name="jitter"/>].</summary>
    public Brightness(double jitter) : this(ParameterRange.AroundOne(jitter)) { }
    public override string Name => "brightness";
    public override void Validate() { base.Validate(); Factor.Validate(Name, nameof(Factor), 0); }
    private protected override string ArgumentsSpec() => "=" + Factor;
    internal override Tensor Apply(Tensor x, Random random, PixelContext context)
        => DrawPerImage(random, (int)x.size(0), Factor, 1) is { } f ? (x * PerImage(f)).clamp_(0, context.MaxValue) : x;
}

/// <summary>Blends with the image's mean grey level by a factor from <see cref="Factor"/> (torchvision <c>adjust_contrast</c>; 0 = flat grey, 1 = unchanged).</summary>
public sealed record Contrast(ParameterRange Factor) : PixelAugmentation
{
    public Contrast(double jitter) : this(ParameterRange.AroundOne(jitter)) { }
    public override string Name => "contrast";
    public override void Validate() { base.Validate(); Factor.Validate(Name, nameof(Factor), 0); }
    private protected override string ArgumentsSpec() => "=" + Factor;
    internal override Tensor Apply(Tensor x, Random random, PixelContext context)
    {
        if (DrawPerImage(random, (int)x.size(0), Factor, 1) is not { } f) return x;
        var mean = Gray(x).mean([1, 2, 3], keepdim: true);
        return Blend(x, mean, PerImage(f), context.MaxValue);
    }
}

/// <summary>Blends with the image's grey version by a factor from <see cref="Factor"/> (torchvision <c>adjust_saturation</c>; 0 = grey, 1 = unchanged).</summary>
public sealed record Saturation(ParameterRange Factor) : PixelAugmentation
{
    public Saturation(double jitter) : this(ParameterRange.AroundOne(jitter)) { }
    public override string Name => "saturation";
    public override void Validate() { base.Validate(); Factor.Validate(Name, nameof(Factor), 0); }
    private protected override string ArgumentsSpec() => "=" + Factor;
    internal override Tensor Apply(Tensor x, Random random, PixelContext context)
        => DrawPerImage(random, (int)x.size(0), Factor, 1) is { } f ? Blend(x, Gray(x), PerImage(f), context.MaxValue) : x;
}

/// <summary>
/// Rotates the hue by a shift from <see cref="Shift"/>, in turns of the colour circle (−0.5…0.5; torchvision
/// <c>adjust_hue</c>, <c>tf.image.random_hue(max_delta)</c> is <c>new Hue(max_delta)</c>). 1/3 turns red into green.
/// </summary>
public sealed record Hue(ParameterRange Shift) : PixelAugmentation
{
    public Hue(double maxShift) : this(ParameterRange.Symmetric(maxShift)) { }
    public override string Name => "hue";
    public override void Validate() { base.Validate(); Shift.Validate(Name, nameof(Shift), -0.5, 0.5); }
    private protected override string ArgumentsSpec() => "=" + Shift.ToSymmetricString();
    internal override Tensor Apply(Tensor x, Random random, PixelContext context)
    {
        if (DrawPerImage(random, (int)x.size(0), Shift, 0) is not { } shifts) return x;
        var rows = Enumerable.Range(0, shifts.Length).Where(i => shifts[i] != 0).Select(i => (long)i).ToArray();
        var index = tensor(rows);
        float max = (float)context.MaxValue;
        var part = x.index_select(0, index).div(max).clamp_(0, 1);
        var hsv = ColorSpace.RgbToHsv(part);
        var h = (hsv.narrow(1, 0, 1) + tensor(rows.Select(r => shifts[r]).ToArray()).view(-1, 1, 1, 1)).remainder_(1.0);
        var shifted = ColorSpace.HsvToRgb(cat([h, hsv.narrow(1, 1, 2)], 1)).mul_(max);
        return x.index_copy(0, index, shifted);
    }
}

/// <summary>
/// Keras' <c>channel_shift_range</c>: adds one intensity from <see cref="Intensity"/> to every channel, clipped to the
/// image's own minimum and maximum (as Keras does). Units: pixel values 0–255, or the units of a <see cref="Rescale"/> before it.
/// </summary>
public sealed record ChannelShift(ParameterRange Intensity) : PixelAugmentation
{
    public ChannelShift(double maxIntensity) : this(ParameterRange.Symmetric(maxIntensity)) { }
    public override string Name => "channel-shift";
    public override void Validate() { base.Validate(); Intensity.Validate(Name, nameof(Intensity)); }
    private protected override string ArgumentsSpec() => "=" + Intensity.ToSymmetricString();
    internal override Tensor Apply(Tensor x, Random random, PixelContext context)
    {
        if (DrawPerImage(random, (int)x.size(0), Intensity, 0) is not { } shift) return x;
        var low = x.amin([1, 2, 3], keepdim: true);
        var high = x.amax([1, 2, 3], keepdim: true);
        return maximum(minimum(x + PerImage(shift), high), low);
    }
}

/// <summary>Converts to grey (3 equal channels, torchvision's luma weights). Probability default 0.1 (torchvision <c>RandomGrayscale</c>).</summary>
public sealed record Grayscale : PixelAugmentation
{
    public Grayscale() => Probability = 0.1;
    public override string Name => "grayscale";
    internal override double DefaultProbability => 0.1;
    private protected override string ArgumentsSpec() => "";
    internal override Tensor Apply(Tensor x, Random random, PixelContext context)
    {
        var chosen = Select(random, (int)x.size(0));
        if (!chosen.Contains(true)) return x;
        var mask = tensor(chosen).view(-1, 1, 1, 1);
        return where(mask, Gray(x).expand_as(x), x);
    }
}

/// <summary>
/// Gaussian blur with an odd <see cref="KernelSize"/> and a standard deviation from <see cref="Sigma"/> (pixels),
/// borders reflected (torchvision <c>GaussianBlur(kernel_size, sigma=(0.1, 2.0))</c>).
/// </summary>
public sealed record GaussianBlur(int KernelSize, ParameterRange Sigma) : PixelAugmentation
{
    /// <summary>Sigma from 0.1 to 2 (torchvision's default).</summary>
    public GaussianBlur(int kernelSize = 5) : this(kernelSize, new ParameterRange(0.1, 2.0)) { }
    public override string Name => "blur";
    public override void Validate()
    {
        base.Validate();
        if (KernelSize < 1 || KernelSize % 2 == 0)
            throw new ArgumentOutOfRangeException(nameof(KernelSize), $"{Name}: kernel size must be a positive odd number, got {KernelSize}.");
        Sigma.Validate(Name, nameof(Sigma), 0, excludeLowest: true);
    }
    private protected override string ArgumentsSpec() => $"(kernel={KernelSize},sigma={Sigma})";

    internal override Tensor Apply(Tensor x, Random random, PixelContext context)
    {
        if (DrawPerImage(random, (int)x.size(0), Sigma, 0) is not { } sigmas || KernelSize == 1) return x;
        int half = KernelSize / 2;
        if (half >= x.size(2) || half >= x.size(3))
            throw new InvalidOperationException($"{Name}: a {KernelSize}-pixel kernel is too large for {x.size(3)}×{x.size(2)} images.");
        var rows = Enumerable.Range(0, sigmas.Length).Where(i => sigmas[i] != 0).Select(i => (long)i).ToArray();
        var index = tensor(rows);
        var part = x.index_select(0, index);
        return x.index_copy(0, index, Blur(part, rows.Select(r => (double)sigmas[r]).ToArray(), KernelSize));
    }

    /// <summary>Per-image separable Gaussian blur of [N,3,H,W] (one sigma per image), reflect padding.</summary>
    internal static Tensor Blur(Tensor x, double[] sigmas, int kernelSize)
    {
        long n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
        int half = kernelSize / 2;
        var kernels = new float[n * kernelSize];
        for (int i = 0; i < n; i++)
        {
            double sum = 0;
            for (int k = 0; k < kernelSize; k++) sum += kernels[i * kernelSize + k] = (float)Math.Exp(-0.5 * Math.Pow((k - half) / sigmas[i], 2));
            for (int k = 0; k < kernelSize; k++) kernels[i * kernelSize + k] /= (float)sum;
        }
        // Depthwise convolution: every (image, channel) plane is a group with its image's kernel. Augmentation can run
        // before (or without) any network, so it asks for the engine check itself.
        Engine.ConvolutionEngineCheck.EnsureChecked();
        var kernel = tensor(kernels).view(n, 1, kernelSize).repeat_interleave(c, 0); // [N·C, 1, k]
        var planes = x.reshape(1, n * c, h, w);
        var padded = nn.functional.pad(planes, [half, half, half, half], PaddingModes.Reflect);
        var across = nn.functional.conv2d(padded, kernel.view(n * c, 1, 1, kernelSize), groups: n * c);
        var down = nn.functional.conv2d(across, kernel.view(n * c, 1, kernelSize, 1), groups: n * c);
        return down.view(n, c, h, w);
    }
}

/// <summary>
/// torchvision's <c>RandomErasing</c> (cutout): a rectangle covering a <see cref="Scale"/> fraction of the image with
/// aspect ratio from <see cref="Ratio"/> is set to <see cref="Value"/> (pixel units; null = uniform random noise).
/// Probability default 0.5. Unlike torchvision it runs before normalisation, so 0 is black rather than the mean colour.
/// </summary>
public sealed record RandomErasing : PixelAugmentation
{
    public RandomErasing() => Probability = 0.5;

    /// <summary>Fraction of the image area erased. Default 0.02–0.33 (torchvision).</summary>
    public ParameterRange Scale { get; init; } = new(0.02, 0.33);
    /// <summary>Rectangle aspect ratio (height/width, log-uniform). Default 0.3–3.3 (torchvision).</summary>
    public ParameterRange Ratio { get; init; } = new(0.3, 3.3);
    /// <summary>Fill value in pixel units (0–255, or a <see cref="Rescale"/>'s units); null fills with random noise. Default 0.</summary>
    public double? Value { get; init; } = 0;

    public override string Name => "erase";
    internal override double DefaultProbability => 0.5;
    public override void Validate()
    {
        base.Validate();
        Scale.Validate(Name, nameof(Scale), 0, 1, excludeLowest: true);
        Ratio.Validate(Name, nameof(Ratio), 0, excludeLowest: true);
        if (Value is { } v && !double.IsFinite(v)) throw new ArgumentOutOfRangeException(nameof(Value), $"{Name}: value must be finite.");
    }
    private protected override string ArgumentsSpec()
        => $"(scale={Scale},ratio={Ratio},value={(Value is { } v ? ParameterRange.Format(v) : "random")})";

    internal override Tensor Apply(Tensor x, Random random, PixelContext context)
    {
        int n = (int)x.size(0), height = (int)x.size(2), width = (int)x.size(3);
        var chosen = Select(random, n);
        if (!chosen.Contains(true)) return x;
        var result = x.clone();
        double area = (double)height * width, logMin = Math.Log(Ratio.Min), logMax = Math.Log(Ratio.Max);
        for (int i = 0; i < n; i++)
        {
            if (!chosen[i]) continue;
            for (int attempt = 0; attempt < 10; attempt++)
            {
                double erase = area * Scale.Draw(random);
                double aspect = Math.Exp(logMin + (logMax - logMin) * random.NextDouble());
                int h = (int)Math.Round(Math.Sqrt(erase * aspect)), w = (int)Math.Round(Math.Sqrt(erase / aspect));
                if (!(h < height && w < width)) continue;
                int top = random.Next(0, height - h + 1), left = random.Next(0, width - w + 1);
                var region = result[i].narrow(1, top, h).narrow(2, left, w);
                if (Value is { } v) region.fill_(v);
                else region.copy_(rand([3, h, w], generator: context.Generator).mul_(context.MaxValue));
                break;
            }
        }
        return result;
    }
}

/// <summary>
/// Keras' <c>rescale</c>: multiplies values by <see cref="Factor"/> before the ops that follow, so their parameters
/// (channel shift, fill value, erase value) are in the rescaled units, as in Keras. It does not change what the network
/// sees: the network's input scaling is the model's <c>ImagePreprocessing</c> (preset <c>rescale</c> = Keras'
/// <c>rescale=1/255</c>), identical in training and prediction.
/// </summary>
public sealed record Rescale(double Factor) : PixelAugmentation
{
    public override string Name => "rescale";
    public override void Validate()
    {
        base.Validate();
        if (!double.IsFinite(Factor) || Factor <= 0) throw new ArgumentOutOfRangeException(nameof(Factor), $"{Name}: factor must be positive and finite, got {ParameterRange.Format(Factor)}.");
    }
    private protected override string ArgumentsSpec() => "=" + ParameterRange.Format(Factor);
    internal override Tensor Apply(Tensor x, Random random, PixelContext context)
    {
        context.Units *= Factor;
        return x * Factor;
    }
}

/// <summary>RGB ↔ HSV on batches in [0, 1] (torchvision's algorithm).</summary>
internal static class ColorSpace
{
    public static Tensor RgbToHsv(Tensor rgb)
    {
        var r = rgb.narrow(1, 0, 1); var g = rgb.narrow(1, 1, 1); var b = rgb.narrow(1, 2, 1);
        var maxc = rgb.amax([1], keepdim: true);
        var minc = rgb.amin([1], keepdim: true);
        var eqc = maxc.eq(minc);
        var cr = maxc - minc;
        var ones = ones_like(maxc);
        var s = cr / where(eqc, ones, maxc);
        var crDivisor = where(eqc, ones, cr);
        var rc = (maxc - r) / crDivisor;
        var gc = (maxc - g) / crDivisor;
        var bc = (maxc - b) / crDivisor;
        var isR = maxc.eq(r); var isG = maxc.eq(g) & maxc.ne(r); var isB = maxc.ne(g) & maxc.ne(r);
        var h = isR.to_type(ScalarType.Float32) * (bc - gc)
              + isG.to_type(ScalarType.Float32) * (rc - bc + 2.0f)
              + isB.to_type(ScalarType.Float32) * (gc - rc + 4.0f);
        h = (h / 6.0f + 1.0f).fmod_(1.0);
        return cat([h, s, maxc], 1);
    }

    public static Tensor HsvToRgb(Tensor hsv)
    {
        var h = hsv.narrow(1, 0, 1); var s = hsv.narrow(1, 1, 1); var v = hsv.narrow(1, 2, 1);
        var i6 = (h * 6.0f).floor();
        var f = h * 6.0f - i6;
        var i = i6.to_type(ScalarType.Int32).remainder(6);
        var p = (v * (1.0f - s)).clamp(0, 1);
        var q = (v * (1.0f - s * f)).clamp(0, 1);
        var t = (v * (1.0f - s * (1.0f - f))).clamp(0, 1);
        Tensor Pick(params Tensor[] bySector)
        {
            var result = zeros_like(v);
            for (int k = 0; k < 6; k++) result = where(i.eq(k), bySector[k], result);
            return result;
        }
        return cat([Pick(v, q, p, p, t, v), Pick(t, v, v, q, p, p), Pick(p, p, t, v, v, q)], 1);
    }
}
