using System.Buffers;
using MLNet.ImageTransfer.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Augmentation;

/// <summary>
/// Runs an <see cref="AugmentationPipeline"/> on a batch: uint8 (or float 0–255) images [N,3,H,W] in the
/// preprocessing's channel order → float32 [N,3,S,S], values 0–255, same channel order, ready for
/// <see cref="ImageTensors.Normalize"/>. Consecutive geometric ops are fused into one affine map per image and
/// resampled once; pixel copies (crops by whole pixels, flips, quarter turns) are exact. Thread-safe: every call
/// gets its random draws from the <see cref="Random"/> it is given.
/// </summary>
internal sealed class ImageAugmenter
{
    readonly AugmentationPipeline _pipeline;
    readonly int _outputSize;
    readonly bool _bgr;

    public ImageAugmenter(AugmentationPipeline pipeline, int outputSize, ChannelOrder channels = ChannelOrder.Rgb)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        pipeline.Validate();
        if (outputSize < 1) throw new ArgumentOutOfRangeException(nameof(outputSize));
        _pipeline = pipeline;
        _outputSize = outputSize;
        _bgr = channels == ChannelOrder.Bgr;
    }

    public int OutputSize => _outputSize;

    /// <summary>The random draws of batch <paramref name="batch"/> of epoch <paramref name="epoch"/> for a seed: the same triple always gives the same draws.</summary>
    public static Random RandomFor(int seed, int epoch, int batch)
    {
        // SplitMix64 over the triple: nearby seeds/epochs/batches give unrelated streams.
        ulong z = (ulong)(uint)seed * 0x9E3779B97F4A7C15UL ^ (ulong)(uint)epoch * 0xBF58476D1CE4E5B9UL ^ (ulong)(uint)batch * 0x94D049BB133111EBUL ^ 0xA0761D6478BD642FUL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return new Random((int)(z & 0x7FFFFFFF));
    }

    /// <summary>
    /// Augments a batch of same-size images [N,3,H,W] (uint8, or float 0–255). A crop op (the first one) crops each
    /// image itself: its windows are placed in the image as it is (no larger source behind it).
    /// </summary>
    public Tensor Apply(Tensor batch, Random random)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentNullException.ThrowIfNull(random);
        if (batch.dim() != 4 || batch.size(1) != 3) throw new ArgumentException("Expected images [N,3,H,W].", nameof(batch));
        if (FirstCrop >= 0) return Apply(SourceImages.FromBatch(batch), source: null, random);
        using var scope = NewDisposeScope();
        var context = new PixelContext(random);
        try
        {
            var x = batch.to_type(ScalarType.Float32, copy: true);
            if (_bgr) x = x.flip(1);
            x = Run(x, _pipeline.Ops, random, context);
            if (x.size(2) != _outputSize || x.size(3) != _outputSize)
            {
                // No crop brought a larger source to the network's size: take the evaluation's centre crop.
                int w = (int)x.size(3), h = (int)x.size(2);
                x = Resample(x, Enumerable.Repeat(GeometricAugmentation.CentreWindow(w, h, _outputSize, _outputSize), (int)x.size(0)).ToArray(),
                    _outputSize, _outputSize, context);
            }
            if (context.Units != 1) x = x / context.Units;
            if (_bgr) x = x.flip(1);
            return x.MoveToOuterDisposeScope();
        }
        finally
        {
            context.DisposeGenerator();
        }
    }

    /// <summary>Index of the first crop op; −1 when the pipeline has none.</summary>
    int FirstCrop
    {
        get
        {
            for (int i = 0; i < _pipeline.Ops.Count; i++)
                if (_pipeline.Ops[i] is GeometricAugmentation { IsCrop: true }) return i;
            return -1;
        }
    }

    /// <summary>
    /// Augments cached sources of different sizes (the training cache when augmentation crops, see
    /// <see cref="AugmentationSource"/>), one image at a time: the ops before the first crop on the image at its own
    /// size, then the crop (torchvision's box on that image, cut out and resized to S×S with Pillow's bilinear), then
    /// the rest on the S×S batch. Images the crop skips get the evaluation geometry. Returns float [N,3,S,S], 0–255.
    /// </summary>
    /// <param name="images">The batch's sources: interleaved [H,W,3] bytes in the preset's channel order.</param>
    /// <param name="source">How the sources were cached; null: each image is itself what crops cut from (a uniform batch).</param>
    /// <param name="random">The batch's draws (<see cref="RandomFor"/>).</param>
    public Tensor Apply(ISourceImages images, AugmentationSource? source, Random random)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(random);
        int cropIndex = FirstCrop;
        if (cropIndex < 0) throw new InvalidOperationException("Internal error: sources of different sizes need a crop to become a batch.");
        var ops = _pipeline.Ops;
        var before = ops.Take(cropIndex).ToArray();
        var crop = (GeometricAugmentation)ops[cropIndex];
        var after = ops.Skip(cropIndex + 1).ToArray();
        int n = images.Count, size = _outputSize, perImage = 3 * size * size;
        using var scope = NewDisposeScope();
        var context = new PixelContext(random);
        try
        {
            var chosen = crop.Select(random, n);
            var batch = empty([n, 3, size, size], ScalarType.Byte);
            var output = batch.bytes;
            for (int i = 0; i < n; i++)
            {
                var (height, width) = images.SizeOf(i);
                var pixels = ArrayPool<byte>.Shared.Rent(3 * width * height);
                try
                {
                    images.Read(i, pixels.AsSpan(0, 3 * width * height));
                    if (before.Length > 0) ApplyBeforeCrop(pixels, width, height, before, random, context);
                    Crop(crop, chosen[i], pixels.AsSpan(0, 3 * width * height), width, height, source, random, output.Slice(i * perImage, perImage));
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(pixels);
                }
            }
            var x = batch.to_type(ScalarType.Float32);
            if (context.Units != 1) x = x * context.Units;
            if (_bgr) x = x.flip(1);
            x = Run(x, after, random, context);
            if (context.Units != 1) x = x / context.Units;
            if (_bgr) x = x.flip(1);
            return x.MoveToOuterDisposeScope();
        }
        finally
        {
            context.DisposeGenerator();
        }
    }

    /// <summary>The ops before the crop, on one image at its own size (geometric ops before a crop keep the size), rounded back to bytes.</summary>
    void ApplyBeforeCrop(byte[] pixels, int width, int height, AugmentationOp[] ops, Random random, PixelContext context)
    {
        using var scope = NewDisposeScope();
        int length = 3 * width * height;
        var hwc = torch.tensor(pixels.AsSpan(0, length).ToArray(), ScalarType.Byte).view(1, height, width, 3);
        var x = hwc.permute(0, 3, 1, 2).to_type(ScalarType.Float32);
        if (context.Units != 1) x = x * context.Units;
        if (_bgr) x = x.flip(1);
        x = Run(x, ops, random, context);
        if (_bgr) x = x.flip(1);
        if (context.Units != 1) x = x / context.Units;
        var bytes = x.round().clamp_(0, 255).to_type(ScalarType.Byte).permute(0, 2, 3, 1).contiguous();
        bytes.bytes.CopyTo(pixels);
    }

    /// <summary>The crop of one source into <paramref name="chw"/> [3,S,S]: the op's box when chosen, else the evaluation geometry.</summary>
    void Crop(GeometricAugmentation crop, bool chosen, ReadOnlySpan<byte> hwc, int width, int height, AugmentationSource? source, Random random, Span<byte> chw)
    {
        int size = _outputSize;
        var image = PixelSource.Rgb(hwc, width, height); // bytes in the preset's order, kept (identity map)
        const PillowResample.OutputLayout planar = PillowResample.OutputLayout.Planar3;
        if (!chosen)
        {
            if (source is not null) source.ToEvaluation(hwc, width, height, chw);
            else if (width >= size && height >= size)
                ImageGeometry.Resample(image, new ResizeCrop(width, height, (int)Math.Round((width - size) / 2.0), (int)Math.Round((height - size) / 2.0), size, size), chw, planar, ChannelOrder.Rgb);
            else ImageGeometry.Resample(image, ResizeCrop.Whole(size, size), chw, planar, ChannelOrder.Rgb);
            return;
        }
        switch (crop)
        {
            case RandomResizedCrop resized:
            {
                var (top, left, h, w) = resized.DrawBox(random, width, height);
                ImageGeometry.Resample(image, left, top, w, h, ResizeCrop.Whole(size, size), chw, planar, ChannelOrder.Rgb);
                return;
            }
            case RandomCrop windowed:
            {
                // Windows are placed in the evaluation's resized image (crop space); a source at another scale maps them onto itself.
                var (cw, ch) = source?.CropSpace(width, height) ?? (width, height);
                var (top, left, side) = windowed.DrawBox(random, cw, ch, size);
                if (cw == width && ch == height)
                    ImageGeometry.Resample(image, left, top, side, side, ResizeCrop.Whole(size, size), chw, planar, ChannelOrder.Rgb);
                else
                {
                    double sx = (double)width / cw, sy = (double)height / ch;
                    PillowResample.Resample(hwc, width * 3, 3, 0, 0,
                        PillowResample.Coefficients(width, left * sx, (left + side) * sx, size),
                        PillowResample.Coefficients(height, top * sy, (top + side) * sy, size),
                        chw, planar, [0, 1, 2]);
                }
                return;
            }
            default:
                throw new InvalidOperationException($"Internal error: {crop.Name} is not a crop.");
        }
    }

    /// <summary>Runs <paramref name="ops"/> on a float RGB batch: consecutive geometric ops fused into one resampling, pixel ops one by one.</summary>
    Tensor Run(Tensor x, IReadOnlyList<AugmentationOp> ops, Random random, PixelContext context)
    {
        for (int i = 0; i < ops.Count;)
        {
            if (ops[i] is GeometricAugmentation)
            {
                int end = i;
                while (end < ops.Count && ops[end] is GeometricAugmentation) end++;
                x = ApplyGeometry(x, ops.Skip(i).Take(end - i).Cast<GeometricAugmentation>().ToArray(), random, context);
                i = end;
            }
            else
            {
                x = ((PixelAugmentation)ops[i]).Apply(x, random, context);
                i++;
            }
        }
        return x;
    }

    Tensor ApplyGeometry(Tensor x, GeometricAugmentation[] ops, Random random, PixelContext context)
    {
        int n = (int)x.size(0);
        int width = (int)x.size(3), height = (int)x.size(2);
        var maps = Enumerable.Repeat(Affine2D.Identity, n).ToArray();
        foreach (var op in ops)
        {
            var (outWidth, outHeight) = op.OutputSize(width, height, _outputSize);
            var chosen = op.Select(random, n);
            for (int i = 0; i < n; i++)
            {
                var map = chosen[i] ? op.Draw(random, width, height, outWidth, outHeight) : op.Skip(width, height, outWidth, outHeight);
                maps[i] = maps[i].Compose(map);
            }
            (width, height) = (outWidth, outHeight);
        }
        return Resample(x, maps, width, height, context);
    }

    /// <summary>Output pixel (x, y) of image i = input image i at maps[i](x, y); exact copies where possible, bilinear elsewhere.</summary>
    Tensor Resample(Tensor x, Affine2D[] maps, int outWidth, int outHeight, PixelContext context)
    {
        int n = (int)x.size(0), inWidth = (int)x.size(3), inHeight = (int)x.size(2);
        var output = empty(n, 3, outHeight, outWidth, dtype: ScalarType.Float32);
        var interpolated = new List<long>();
        for (int i = 0; i < n; i++)
        {
            if (maps[i].TryAsPixelCopy(inWidth, inHeight, outWidth, outHeight, out var exact))
                output[i].copy_(PixelCopy(x[i], exact, outWidth, outHeight));
            else
                interpolated.Add(i);
        }
        if (interpolated.Count == 0) return output;

        var index = tensor(interpolated.ToArray());
        var part = interpolated.Count == n ? x : x.index_select(0, index);
        var theta = new float[interpolated.Count * 6];
        for (int k = 0; k < interpolated.Count; k++)
        {
            var m = maps[interpolated[k]];
            // Pixel-centre coordinates → grid_sample's normalised ones (align_corners=false: −1 and 1 are the outer edges).
            theta[k * 6 + 0] = (float)(m.A * outWidth / inWidth);
            theta[k * 6 + 1] = (float)(m.B * outHeight / inWidth);
            theta[k * 6 + 2] = (float)(2.0 / inWidth * (m.A * (outWidth - 1) / 2.0 + m.B * (outHeight - 1) / 2.0 + m.C) + 1.0 / inWidth - 1);
            theta[k * 6 + 3] = (float)(m.D * outWidth / inHeight);
            theta[k * 6 + 4] = (float)(m.E * outHeight / inHeight);
            theta[k * 6 + 5] = (float)(2.0 / inHeight * (m.D * (outWidth - 1) / 2.0 + m.E * (outHeight - 1) / 2.0 + m.F) + 1.0 / inHeight - 1);
        }
        var grid = nn.functional.affine_grid(tensor(theta).view(interpolated.Count, 2, 3), [interpolated.Count, 3, outHeight, outWidth], align_corners: false);
        var sampled = Sample(part, grid, context);
        if (interpolated.Count == n) return sampled;
        return output.index_copy_(0, index, sampled);
    }

    Tensor Sample(Tensor x, Tensor grid, PixelContext context)
    {
        const bool alignCorners = false;
        var bilinear = GridSampleMode.Bilinear;
        switch (_pipeline.Fill)
        {
            case FillMode.Nearest:
                return nn.functional.grid_sample(x, grid, bilinear, GridSamplePaddingMode.Border, alignCorners);
            case FillMode.Reflect:
                return nn.functional.grid_sample(x, grid, bilinear, GridSamplePaddingMode.Reflection, alignCorners);
            case FillMode.Constant:
                // Bilinear sampling is linear and its weights sum to 1 inside the image: sampling (x − v) with zeros
                // outside and adding v back gives v outside and the plain interpolation inside.
                float value = (float)_pipeline.FillValue;
                return nn.functional.grid_sample(x - value, grid, bilinear, GridSamplePaddingMode.Zeros, alignCorners).add_(value);
            case FillMode.Wrap:
            {
                long w = x.size(3), h = x.size(2);
                // Wrap the sampling positions into [−0.5, size − 0.5) and sample an image padded circularly by one
                // pixel, so that interpolation across the seam reads the opposite edge.
                var gx = Wrap(grid.select(3, 0), w);
                var gy = Wrap(grid.select(3, 1), h);
                var padded = nn.functional.pad(x, [1, 1, 1, 1], PaddingModes.Circular);
                return nn.functional.grid_sample(padded, stack([gx, gy], 3), bilinear, GridSamplePaddingMode.Border, alignCorners);
            }
            default:
                throw new InvalidOperationException($"Unknown fill mode {_pipeline.Fill}.");
        }

        static Tensor Wrap(Tensor normalised, long size)
        {
            var pixel = normalised * (size / 2.0) + (size - 1) / 2.0;
            var wrapped = (pixel + 0.5).remainder_(size) - 0.5;
            return (wrapped + 1) * (2.0 / (size + 2)) + (1.0 / (size + 2) - 1);
        }
    }

    /// <summary>out[y, x] = image[D·x + E·y + F, A·x + B·y + C] for an exact (axis-permuting, whole-pixel, in-bounds) map.</summary>
    static Tensor PixelCopy(Tensor image, Affine2D m, int outWidth, int outHeight)
    {
        var source = image;
        double a = m.A, c = m.C, e = m.E, f = m.F;
        if (m.A == 0)
        {
            // x_in depends on y and y_in on x: transpose, then it is the straight case with the roles swapped.
            source = image.transpose(1, 2);
            (a, c, e, f) = (m.D, m.F, m.B, m.C);
        }
        var rows = e > 0 ? source.narrow(1, (long)f, outHeight) : source.narrow(1, (long)f - (outHeight - 1), outHeight).flip(1);
        var both = a > 0 ? rows.narrow(2, (long)c, outWidth) : rows.narrow(2, (long)c - (outWidth - 1), outWidth).flip(2);
        return both;
    }
}

/// <summary>The images of one batch, read one at a time: interleaved [H,W,3] bytes, each at its own size.</summary>
internal interface ISourceImages
{
    int Count { get; }
    (int Height, int Width) SizeOf(int index);
    void Read(int index, Span<byte> hwc);
}

/// <summary><see cref="ISourceImages"/> over rows of a training set, or over the images of a uniform batch.</summary>
internal sealed class SourceImages : ISourceImages
{
    readonly Func<int, (int, int)> _size;
    readonly SpanReader _read;

    delegate void SpanReader(int index, Span<byte> destination);

    SourceImages(int count, Func<int, (int, int)> size, SpanReader read)
    {
        Count = count;
        _size = size;
        _read = read;
    }

    public int Count { get; }
    public (int Height, int Width) SizeOf(int index) => _size(index);
    public void Read(int index, Span<byte> hwc) => _read(index, hwc);

    /// <summary>Rows <paramref name="rows"/> of a set that holds sources.</summary>
    public static SourceImages FromSet(Training.LabeledImageSet set, int[] rows)
        => new(rows.Length, i => set.SizeOf(rows[i]), (i, destination) => set.Read(rows[i], destination));

    /// <summary>The images of a uniform batch [N,3,H,W], rounded to bytes and interleaved.</summary>
    public static SourceImages FromBatch(Tensor batch)
    {
        int n = (int)batch.size(0), h = (int)batch.size(2), w = (int)batch.size(3);
        byte[] bytes;
        using (var scope = NewDisposeScope())
        {
            var x = batch.dtype == ScalarType.Byte ? batch : batch.to_type(ScalarType.Float32).round().clamp(0, 255).to_type(ScalarType.Byte);
            bytes = x.permute(0, 2, 3, 1).contiguous().data<byte>().ToArray();
        }
        int perImage = 3 * h * w;
        return new(n, _ => (h, w), (i, destination) => bytes.AsSpan(i * perImage, perImage).CopyTo(destination));
    }
}
