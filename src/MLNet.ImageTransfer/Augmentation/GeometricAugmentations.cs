namespace MLNet.ImageTransfer.Augmentation;

/// <summary>
/// An op that moves pixels. Consecutive geometric ops are fused into one affine map per image and the image is
/// resampled once (bilinear, like Keras' <c>ImageDataGenerator</c>); pure pixel copies (flips, 90° rotations, whole-pixel
/// crops) are exact. Pixels that come from outside the image are filled by <see cref="AugmentationPipeline.Fill"/>.
/// Coordinates: x is the column, y the row; rotation and shear angles in degrees.
/// </summary>
public abstract record GeometricAugmentation : AugmentationOp
{
    private protected GeometricAugmentation() { }

    /// <summary>Crops produce the network's input size from a larger cached source (see <see cref="AugmentationPipeline.NeedsLargerSource"/>).</summary>
    internal virtual bool IsCrop => false;

    internal (int Width, int Height) OutputSize(int width, int height, int target) => IsCrop ? (target, target) : (width, height);

    /// <summary>The map (output pixel → input pixel) for one image the op applies to.</summary>
    internal abstract Affine2D Draw(Random random, int inWidth, int inHeight, int outWidth, int outHeight);

    /// <summary>The map for an image the op skips (its probability said no): identity, or a centre crop for crops.</summary>
    internal virtual Affine2D Skip(int inWidth, int inHeight, int outWidth, int outHeight) => Affine2D.Identity;

    /// <summary>The centre <paramref name="outWidth"/>×<paramref name="outHeight"/> window (whole pixels, the same rounding as the evaluation crop).</summary>
    internal static Affine2D CentreWindow(int inWidth, int inHeight, int outWidth, int outHeight)
    {
        if (inWidth < outWidth || inHeight < outHeight) return Affine2D.Window(0, 0, inWidth, inHeight, outWidth, outHeight);
        return Affine2D.Window(Math.Round((inWidth - outWidth) / 2.0), Math.Round((inHeight - outHeight) / 2.0), outWidth, outHeight, outWidth, outHeight);
    }
}

/// <summary>Mirrors left–right (torchvision <c>RandomHorizontalFlip</c>, Keras <c>horizontal_flip</c>). Probability default 0.5.</summary>
public sealed record HorizontalFlip : GeometricAugmentation
{
    public HorizontalFlip() => Probability = 0.5;
    public override string Name => "hflip";
    internal override double DefaultProbability => 0.5;
    private protected override string ArgumentsSpec() => "";
    internal override Affine2D Draw(Random random, int inWidth, int inHeight, int outWidth, int outHeight)
        => Affine2D.AboutCentre(-1, 0, 0, 1, inWidth, inHeight);
}

/// <summary>Mirrors top–bottom (Keras <c>vertical_flip</c>, <c>tf.image.random_flip_up_down</c>). Probability default 0.5.</summary>
public sealed record VerticalFlip : GeometricAugmentation
{
    public VerticalFlip() => Probability = 0.5;
    public override string Name => "vflip";
    internal override double DefaultProbability => 0.5;
    private protected override string ArgumentsSpec() => "";
    internal override Affine2D Draw(Random random, int inWidth, int inHeight, int outWidth, int outHeight)
        => Affine2D.AboutCentre(1, 0, 0, -1, inWidth, inHeight);
}

/// <summary>
/// Rotates about the image centre by an angle drawn from <see cref="Degrees"/>; positive = counter-clockwise
/// (Keras <c>rotation_range=20</c> is <c>new Rotate(20)</c>, i.e. −20°…20°).
/// </summary>
public sealed record Rotate(ParameterRange Degrees) : GeometricAugmentation
{
    /// <summary>Uniform in [−<paramref name="maxDegrees"/>, +<paramref name="maxDegrees"/>].</summary>
    public Rotate(double maxDegrees) : this(ParameterRange.Symmetric(maxDegrees)) { }
    public override string Name => "rotate";
    public override void Validate()
    {
        base.Validate();
        Degrees.Validate(Name, nameof(Degrees), -360, 360);
    }
    private protected override string ArgumentsSpec() => "=" + Degrees.ToSymmetricString();
    internal override Affine2D Draw(Random random, int inWidth, int inHeight, int outWidth, int outHeight)
    {
        double theta = Degrees.Draw(random) * Math.PI / 180;
        double c = Math.Cos(theta), s = Math.Sin(theta);
        // Content turns counter-clockwise on screen (y points down): in − centre = (c·dx − s·dy, s·dx + c·dy).
        return Affine2D.AboutCentre(c, -s, s, c, inWidth, inHeight);
    }
}

/// <summary>
/// Moves the content by a random offset (Keras <c>width_shift_range</c>/<c>height_shift_range</c>). Ranges whose
/// magnitudes are all below 1 are fractions of the image's width/height; otherwise pixels. Positive = right/down.
/// </summary>
public sealed record Shift(ParameterRange Width, ParameterRange Height) : GeometricAugmentation
{
    /// <summary>Uniform in ±<paramref name="width"/> horizontally and ±<paramref name="height"/> vertically.</summary>
    public Shift(double width, double height) : this(ParameterRange.Symmetric(width), ParameterRange.Symmetric(height)) { }
    public override string Name => "shift";
    public override void Validate()
    {
        base.Validate();
        Width.Validate(Name, nameof(Width));
        Height.Validate(Name, nameof(Height));
    }
    private protected override string ArgumentsSpec() => Width == Height
        ? "=" + Width.ToSymmetricString()
        : $"(width={Width.ToSymmetricString()},height={Height.ToSymmetricString()})";
    internal override Affine2D Draw(Random random, int inWidth, int inHeight, int outWidth, int outHeight)
    {
        double tx = Width.Draw(random), ty = Height.Draw(random);
        if (Width.MaxMagnitude < 1) tx *= inWidth;
        if (Height.MaxMagnitude < 1) ty *= inHeight;
        return Affine2D.AboutCentre(1, 0, 0, 1, inWidth, inHeight, tx, ty);
    }
}

/// <summary>
/// Shears by an angle drawn from <see cref="Degrees"/>, with Keras' <c>shear_range</c> geometry and units:
/// <b>degrees</b> (so Keras' <c>shear_range=0.2</c> is a 0.2° shear, as in Keras).
/// </summary>
public sealed record Shear(ParameterRange Degrees) : GeometricAugmentation
{
    public Shear(double maxDegrees) : this(ParameterRange.Symmetric(maxDegrees)) { }
    public override string Name => "shear";
    public override void Validate()
    {
        base.Validate();
        Degrees.Validate(Name, nameof(Degrees), -89, 89);
    }
    private protected override string ArgumentsSpec() => "=" + Degrees.ToSymmetricString();
    internal override Affine2D Draw(Random random, int inWidth, int inHeight, int outWidth, int outHeight)
    {
        double shear = Degrees.Draw(random) * Math.PI / 180;
        // Keras' shear matrix [[1, −sin], [0, cos]] on (row, col): y_in = y − sin·x, x_in = cos·x (about the centre).
        return Affine2D.AboutCentre(Math.Cos(shear), 0, -Math.Sin(shear), 1, inWidth, inHeight);
    }
}

/// <summary>
/// Keras' <c>zoom_range</c>: the sampled region is scaled by a factor drawn from <see cref="Factor"/> about the centre,
/// independently for width and height unless <see cref="KeepAspectRatio"/>. As in Keras, a factor below 1 zooms
/// <em>in</em> (content larger) and above 1 zooms out; <c>zoom_range=0.2</c> is <c>new Zoom(0.2)</c> = factors 0.8…1.2.
/// </summary>
public sealed record Zoom(ParameterRange Factor, bool KeepAspectRatio = false) : GeometricAugmentation
{
    /// <summary>Factors in [1 − <paramref name="range"/>, 1 + <paramref name="range"/>] (Keras' float <c>zoom_range</c>).</summary>
    public Zoom(double range) : this(new ParameterRange(1 - range, 1 + range)) { }
    public override string Name => "zoom";
    public override void Validate()
    {
        base.Validate();
        Factor.Validate(Name, nameof(Factor), 0, excludeLowest: true);
    }
    private protected override string ArgumentsSpec() => KeepAspectRatio ? $"(factor={Factor},keep-aspect)" : "=" + Factor;
    internal override Affine2D Draw(Random random, int inWidth, int inHeight, int outWidth, int outHeight)
    {
        double zx = Factor.Draw(random), zy = KeepAspectRatio ? zx : Factor.Draw(random);
        return Affine2D.AboutCentre(zx, 0, 0, zy, inWidth, inHeight);
    }
}

/// <summary>
/// Takes a square window at a random position (torchvision <c>RandomCrop</c>, <c>tf.image.random_crop</c>) and
/// resizes it to the network's input size. <see cref="Size"/>: pixels when ≥ 1, a fraction of the shorter side
/// when below 1, or null for the network's input size. Windows are placed in the image evaluation resizes before its
/// centre crop: with torchvision preprocessing the whole image with its shorter side at R (256 for 224), so the default
/// is torchvision's <c>Resize(256)</c> + <c>RandomCrop(224)</c> exactly (its windows are copied, not resampled); with
/// stretch presets the S×S image. Images the op skips get the evaluation crop.
/// </summary>
public sealed record RandomCrop(double? Size = null) : GeometricAugmentation
{
    public override string Name => "crop";
    internal override bool IsCrop => true;
    public override void Validate()
    {
        base.Validate();
        if (Size is { } s && (!double.IsFinite(s) || s <= 0))
            throw new ArgumentOutOfRangeException(nameof(Size), $"{Name}: size must be positive (pixels ≥ 1, or a fraction below 1), got {ParameterRange.Format(s)}.");
    }
    private protected override string ArgumentsSpec() => Size is { } s ? "=" + ParameterRange.Format(s) : "";

    internal int WindowSize(int inWidth, int inHeight, int target)
    {
        int side = Size is not { } s ? target
            : s < 1 ? (int)Math.Max(1, Math.Round(s * Math.Min(inWidth, inHeight)))
            : (int)Math.Round(s);
        if (side > Math.Min(inWidth, inHeight))
            throw new InvalidOperationException($"{Name}: the {side}-pixel window does not fit in the {inWidth}×{inHeight} image it crops from. Use a smaller size or a fraction (e.g. crop=0.9).");
        return side;
    }

    /// <summary>torchvision's <c>RandomCrop.get_params</c>: a square window (<see cref="WindowSize"/> for <paramref name="target"/>), top then left drawn uniformly over the positions that fit.</summary>
    internal (int Top, int Left, int Side) DrawBox(Random random, int inWidth, int inHeight, int target)
    {
        int side = WindowSize(inWidth, inHeight, target);
        int top = random.Next(0, inHeight - side + 1), left = random.Next(0, inWidth - side + 1);
        return (top, left, side);
    }

    internal override Affine2D Draw(Random random, int inWidth, int inHeight, int outWidth, int outHeight)
    {
        var (top, left, side) = DrawBox(random, inWidth, inHeight, outWidth);
        return Affine2D.Window(left, top, side, side, outWidth, outHeight);
    }

    internal override Affine2D Skip(int inWidth, int inHeight, int outWidth, int outHeight) => CentreWindow(inWidth, inHeight, outWidth, outHeight);
}

/// <summary>
/// torchvision's <c>RandomResizedCrop</c>: a window whose area is a <see cref="Scale"/> fraction of the image and whose
/// aspect ratio (width/height) is drawn log-uniformly from <see cref="Ratio"/>, resized to the network's input size
/// (Pillow's antialiased bilinear). The same algorithm as torchvision (10 tries, then the centre crop fallback), on
/// the whole image, aspect kept, at a resolution that keeps the smallest window at least S pixels across.
/// </summary>
public sealed record RandomResizedCrop : GeometricAugmentation
{
    public RandomResizedCrop() { }
    public RandomResizedCrop(ParameterRange scale, ParameterRange? ratio = null)
    {
        Scale = scale;
        Ratio = ratio ?? Ratio;
    }

    /// <summary>Fraction of the image area the window covers. Default 0.08–1 (torchvision).</summary>
    public ParameterRange Scale { get; init; } = new(0.08, 1);
    /// <summary>Window aspect ratio (width/height). Default 3/4–4/3 (torchvision).</summary>
    public ParameterRange Ratio { get; init; } = new(3.0 / 4, 4.0 / 3);

    public override string Name => "resized-crop";
    internal override bool IsCrop => true;
    public override void Validate()
    {
        base.Validate();
        Scale.Validate(Name, nameof(Scale), 0, 1, excludeLowest: true);
        Ratio.Validate(Name, nameof(Ratio), 0, excludeLowest: true);
    }
    private protected override string ArgumentsSpec() => $"(scale={Scale},ratio={Ratio})";

    /// <summary>
    /// torchvision's <c>RandomResizedCrop.get_params</c> on an <paramref name="inWidth"/>×<paramref name="inHeight"/>
    /// image: up to 10 tries of an area fraction drawn from <see cref="Scale"/> and a log-uniform aspect ratio, rounded
    /// to whole pixels, until the window fits; then top and left drawn uniformly; else the centre crop with the
    /// nearest ratio in range. Draws in torchvision's order.
    /// </summary>
    internal (int Top, int Left, int Height, int Width) DrawBox(Random random, int inWidth, int inHeight)
    {
        double area = (double)inWidth * inHeight;
        double logMin = Math.Log(Ratio.Min), logMax = Math.Log(Ratio.Max);
        for (int attempt = 0; attempt < 10; attempt++)
        {
            double targetArea = area * (Scale.Min + (Scale.Max - Scale.Min) * random.NextDouble());
            double aspect = Math.Exp(logMin + (logMax - logMin) * random.NextDouble());
            int w = (int)Math.Round(Math.Sqrt(targetArea * aspect));
            int h = (int)Math.Round(Math.Sqrt(targetArea / aspect));
            if (w > 0 && w <= inWidth && h > 0 && h <= inHeight)
            {
                int top = random.Next(0, inHeight - h + 1), left = random.Next(0, inWidth - w + 1);
                return (top, left, h, w);
            }
        }
        // torchvision's fallback: the whole image, or its centre with the nearest ratio in range.
        double inRatio = (double)inWidth / inHeight;
        int fw = inWidth, fh = inHeight;
        if (inRatio < Ratio.Min) fh = (int)Math.Round(fw / Ratio.Min);
        else if (inRatio > Ratio.Max) fw = (int)Math.Round(fh * Ratio.Max);
        return ((inHeight - fh) / 2, (inWidth - fw) / 2, fh, fw);
    }

    internal override Affine2D Draw(Random random, int inWidth, int inHeight, int outWidth, int outHeight)
    {
        var (top, left, h, w) = DrawBox(random, inWidth, inHeight);
        return Affine2D.Window(left, top, w, h, outWidth, outHeight);
    }

    internal override Affine2D Skip(int inWidth, int inHeight, int outWidth, int outHeight) => CentreWindow(inWidth, inHeight, outWidth, outHeight);
}
