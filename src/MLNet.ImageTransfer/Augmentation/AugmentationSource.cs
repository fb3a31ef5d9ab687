using MLNet.ImageTransfer.Data;

namespace MLNet.ImageTransfer.Augmentation;

/// <summary>What the training cache holds for each image.</summary>
internal enum SourceKind
{
    /// <summary>The evaluation geometry: uint8 [3,S,S] (CHW), what the network sees without augmentation.</summary>
    Evaluation,

    /// <summary>
    /// The whole image resized as evaluation resizes it before its centre crop (shorter side R = S / crop fraction,
    /// aspect kept), interleaved [H,W,3]: torchvision's <c>Resize(R)</c> output, which <c>RandomCrop(S)</c> crops from.
    /// </summary>
    ShorterSide,

    /// <summary>
    /// The whole image, aspect kept, interleaved [H,W,3], at the resolution its crops need and never larger than the
    /// decoded image: what torchvision's <c>RandomResizedCrop</c> samples from.
    /// </summary>
    Whole,
}

/// <summary>
/// The geometry training images are cached at, chosen from the preprocessing and the augmentation's crops, and how
/// crops and the evaluation geometry are cut from it.
/// </summary>
/// <remarks>
/// <para>Without crops the cache holds the evaluation geometry. <c>crop</c> alone (torchvision's <c>Resize(R)</c> then
/// <c>RandomCrop(S)</c>) caches the whole image resized to R on its shorter side, so that its S-pixel windows (and the
/// evaluation crop, its centre) are cut out exactly. Stretch presets (Keras) show the whole image already: their
/// <c>crop</c> crops the S×S evaluation image, as before.</para>
/// <para><c>resized-crop</c> (torchvision's <c>RandomResizedCrop</c>) caches the whole image. Its crops are resized to
/// S×S; the smallest has area <c>a·A</c> (scale a of the image's area A) and the least favourable aspect ratio, so its
/// shorter side is <c>m = √(a·A·ρ)</c>, ρ = min(r, 1/r) over the ratio range's ends (0.75 for 3/4–4/3). Torchvision
/// resizes every crop from the full image; a cache scaled by f resamples it twice (the image by f, then the crop to S),
/// which is harmless while the second step still reduces: the cache keeps the smallest crop at least
/// <see cref="CropResolutionMargin"/>·S pixels across, <c>f = min(1, 2·S / m)</c>, and never upsamples (nor below
/// R on the shorter side, so that the evaluation crop cut from it reduces too). For torchvision's scale 0.08 at 224
/// that is √(A)·f ≥ 1,829 pixels, so photos are kept as decoded (at most <c>ImageDecodeOptions.MaxSide</c>, 1024); the
/// <c>default</c> preset's 0.35 needs 875; at 64 pixels, 523 and 250. Measured on the photo fixtures at 32 and 48
/// pixels (where they are kept smaller): crops within 0.39 grey levels of the full-resolution crop on average (0.98 on
/// the most detailed photo); with a margin of 1 (the smallest crop exactly S across, its second resampling nearly 1:1)
/// 0.86 (2.41). Crops drawn from the cache are torchvision's boxes on that image, cut out and resized to S×S with
/// Pillow's bilinear, bit for bit torchvision's <c>resized_crop</c> of the cached image.</para>
/// </remarks>
internal sealed record AugmentationSource(ImagePreprocessing Preprocessing, SourceKind Kind, double ResizedCropScale)
{
    /// <summary>How many times S pixels the smallest resized-crop window keeps across in the cache (see the remarks).</summary>
    public const double CropResolutionMargin = 2;

    /// <summary>The cache for <paramref name="augmentation"/>'s crops (the evaluation geometry without any).</summary>
    public static AugmentationSource For(ImagePreprocessing preprocessing, AugmentationPipeline? augmentation)
    {
        var crops = augmentation?.Ops.OfType<GeometricAugmentation>().Where(o => o.IsCrop).ToList() ?? [];
        var resized = crops.OfType<RandomResizedCrop>().ToList();
        if (resized.Count > 0)
        {
            // f·m ≥ S for the smallest crop of every resized-crop op: f·√A ≥ S / √(a·ρ).
            double need = resized.Max(r => 1 / Math.Sqrt(r.Scale.Min * Math.Min(Math.Min(r.Ratio.Min, 1 / r.Ratio.Min), Math.Min(r.Ratio.Max, 1 / r.Ratio.Max))));
            return new(preprocessing, SourceKind.Whole, need);
        }
        if (crops.Count > 0 && preprocessing.Resize == ResizeMode.ShorterSideThenCenterCrop) return new(preprocessing, SourceKind.ShorterSide, 0);
        return new(preprocessing, SourceKind.Evaluation, 0);
    }

    /// <summary>The evaluation geometry (validation and evaluation sets).</summary>
    public static AugmentationSource Evaluation(ImagePreprocessing preprocessing) => new(preprocessing, SourceKind.Evaluation, 0);

    public bool IsEvaluation => Kind == SourceKind.Evaluation;

    /// <summary>Evaluation images are planes (CHW, batched as they are); sources are interleaved rows (HWC).</summary>
    public PillowResample.OutputLayout Layout => IsEvaluation ? PillowResample.OutputLayout.Planar3 : PillowResample.OutputLayout.Interleaved3;

    /// <summary>The cached image of an image decoded at <paramref name="width"/>×<paramref name="height"/>: its size, and the resize that makes it.</summary>
    public ResizeCrop Plan(int width, int height)
    {
        switch (Kind)
        {
            case SourceKind.Evaluation:
                return ResizeCrop.Evaluation(width, height, Preprocessing);
            case SourceKind.ShorterSide:
            {
                var (nw, nh) = ResizeCrop.ShorterSide(width, height, Preprocessing.ResizeShorterSide);
                return ResizeCrop.Whole(nw, nh);
            }
            default:
            {
                int size = Preprocessing.ImageSize;
                double f = Math.Max(CropResolutionMargin * size * ResizedCropScale / Math.Sqrt((double)width * height), CropSpaceScale(width, height));
                if (f >= 1) return ResizeCrop.Whole(width, height);
                return ResizeCrop.Whole(Math.Max(1, (int)Math.Round(width * f)), Math.Max(1, (int)Math.Round(height * f)));
            }
        }
    }

    /// <summary>The scale at which <c>crop</c>'s windows (in the evaluation's resized image) keep every pixel of a whole-image source.</summary>
    double CropSpaceScale(int width, int height)
    {
        var (w, h) = CropSpace(width, height);
        return Math.Max((double)w / width, (double)h / height);
    }

    /// <summary>
    /// The image <c>crop</c> cuts its windows from, for a source of <paramref name="width"/>×<paramref name="height"/>:
    /// the evaluation's resized image (R on the shorter side; S×S with stretch presets).
    /// </summary>
    public (int Width, int Height) CropSpace(int width, int height)
        => Preprocessing.Resize == ResizeMode.Stretch
            ? (Preprocessing.ImageSize, Preprocessing.ImageSize)
            : ResizeCrop.ShorterSide(width, height, Preprocessing.ResizeShorterSide);

    /// <summary>
    /// The evaluation geometry of a cached source (interleaved, <paramref name="width"/>×<paramref name="height"/>) into
    /// <paramref name="chw"/> [3,S,S]. From a <see cref="SourceKind.ShorterSide"/> source this is an exact copy of its
    /// centre, the bytes evaluation computes; from a <see cref="SourceKind.Whole"/> one, the same geometry resampled
    /// from the cached image.
    /// </summary>
    public void ToEvaluation(ReadOnlySpan<byte> source, int width, int height, Span<byte> chw)
    {
        var plan = Kind == SourceKind.ShorterSide
            ? new ResizeCrop(width, height, (int)Math.Round((width - Preprocessing.ImageSize) / 2.0), (int)Math.Round((height - Preprocessing.ImageSize) / 2.0),
                Preprocessing.ImageSize, Preprocessing.ImageSize)
            : ResizeCrop.Evaluation(width, height, Preprocessing);
        ImageGeometry.Resample(PixelSource.Rgb(source, width, height), plan, chw, PillowResample.OutputLayout.Planar3, ChannelOrder.Rgb);
    }
}
