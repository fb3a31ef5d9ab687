using System.Buffers;
using Microsoft.ML.Data;

namespace MLNet.ImageTransfer.Data;

/// <summary>
/// A resize of a whole image to <see cref="ResizedWidth"/>×<see cref="ResizedHeight"/> of which only the
/// <see cref="Width"/>×<see cref="Height"/> window at (<see cref="Left"/>, <see cref="Top"/>) is kept: torchvision's
/// <c>Resize</c> then <c>CenterCrop</c>, computed in one resampling that produces only the kept pixels (with the
/// coefficients of the whole resize, so the kept pixels are those of the two steps exactly).
/// </summary>
internal readonly record struct ResizeCrop(int ResizedWidth, int ResizedHeight, int Left, int Top, int Width, int Height)
{
    /// <summary>
    /// The evaluation geometry of a <paramref name="width"/>×<paramref name="height"/> image, torchvision's arithmetic
    /// on PIL images: <c>Resize(R)</c> makes the shorter side R and the longer <c>int(R · long / short)</c>;
    /// <c>CenterCrop(S)</c> starts at <c>int(round((size − S) / 2))</c> (round half to even, as Python's <c>round</c>).
    /// Stretch: both sides S.
    /// </summary>
    public static ResizeCrop Evaluation(int width, int height, ImagePreprocessing preprocessing)
    {
        if (width < 1 || height < 1) throw new ArgumentException("The image has no pixels.");
        int size = preprocessing.ImageSize;
        if (preprocessing.Resize == ResizeMode.Stretch) return new(size, size, 0, 0, size, size);
        var (nw, nh) = ShorterSide(width, height, preprocessing.ResizeShorterSide);
        if (nw < size || nh < size) return new(size, size, 0, 0, size, size); // unreachable for crop fractions ≤ 1: ResizeShorterSide ≥ ImageSize
        return new(nw, nh, (int)Math.Round((nw - size) / 2.0), (int)Math.Round((nh - size) / 2.0), size, size);
    }

    /// <summary>torchvision's <c>Resize(int)</c> on a PIL image: the shorter side becomes <paramref name="shorter"/>, the longer keeps the aspect ratio (truncated).</summary>
    public static (int Width, int Height) ShorterSide(int width, int height, int shorter)
        => width <= height ? (shorter, (int)(shorter * (double)height / width)) : ((int)(shorter * (double)width / height), shorter);

    /// <summary>The whole image resized to <paramref name="width"/>×<paramref name="height"/>.</summary>
    public static ResizeCrop Whole(int width, int height) => new(width, height, 0, 0, width, height);

    /// <summary>The horizontal taps for a source of <paramref name="inputWidth"/> pixels (the image this geometry was planned for, or a smaller or larger copy of it).</summary>
    public PillowResample.Axis Horizontal(int inputWidth) => PillowResample.Coefficients(inputWidth, 0, inputWidth, ResizedWidth, Left, Width);

    public PillowResample.Axis Vertical(int inputHeight) => PillowResample.Coefficients(inputHeight, 0, inputHeight, ResizedHeight, Top, Height);
}

/// <summary>Interleaved 8-bit pixels (3 or 4 bytes each) and which bytes hold red, green and blue.</summary>
internal readonly ref struct PixelSource(ReadOnlySpan<byte> data, int width, int height, int rowBytes, int pixelBytes, int red, int green, int blue)
{
    public ReadOnlySpan<byte> Data { get; } = data;
    public int Width { get; } = width;
    public int Height { get; } = height;
    public int RowBytes { get; } = rowBytes;
    public int PixelBytes { get; } = pixelBytes;
    public int Red { get; } = red;
    public int Green { get; } = green;
    public int Blue { get; } = blue;

    /// <summary>Interleaved RGB, rows packed.</summary>
    public static PixelSource Rgb(ReadOnlySpan<byte> data, int width, int height) => new(data, width, height, width * 3, 3, 0, 1, 2);

    /// <summary>Output channel order → the byte of a pixel each output channel reads.</summary>
    public int[] ChannelMap(ChannelOrder order) => order == ChannelOrder.Rgb ? [Red, Green, Blue] : [Blue, Green, Red];
}

/// <summary>
/// The image geometry of <see cref="ImagePreprocessing"/> in 8-bit integer arithmetic, equal to torchvision on PIL
/// images (<see cref="PillowResample"/>): used by the TorchSharp path (<see cref="ImageTensors.ToResizedBytes"/>),
/// the training cache and the managed path that feeds ONNX Runtime, so that all three give the same bytes.
/// No TorchSharp here: a scoring process uses it without libtorch.
/// </summary>
internal static class ImageGeometry
{
    /// <summary>Resamples <paramref name="source"/> by <paramref name="plan"/> into <paramref name="destination"/> (3 bytes per output pixel, CHW or HWC).</summary>
    public static void Resample(in PixelSource source, ResizeCrop plan, Span<byte> destination, PillowResample.OutputLayout layout, ChannelOrder order)
        => Resample(source, 0, 0, source.Width, source.Height, plan, destination, layout, order);

    /// <summary>Resamples the window (x, y, w, h) of <paramref name="source"/> as if it were the whole image (torchvision's crop, then resize).</summary>
    public static void Resample(in PixelSource source, int x, int y, int w, int h, ResizeCrop plan, Span<byte> destination, PillowResample.OutputLayout layout, ChannelOrder order)
        => PillowResample.Resample(source.Data, source.RowBytes, source.PixelBytes, x, y, plan.Horizontal(w), plan.Vertical(h), destination, layout, source.ChannelMap(order));

    /// <summary>
    /// The network input geometry of an ML.NET image as uint8 [3,S,S] (CHW) in the preset's channel order: transparent
    /// pixels composited over white (ML.NET's pixels are premultiplied, so that is <c>c + 255 − a</c>), then resized
    /// and cropped as torchvision does on a PIL image.
    /// </summary>
    public static void ToEvaluationBytes(MLImage image, ImagePreprocessing preprocessing, Span<byte> chw)
        => ToEvaluationBytes(image, preprocessing, chw, preprocessing.Channels);

    /// <summary><see cref="ToEvaluationBytes(MLImage, ImagePreprocessing, Span{byte})"/> in <paramref name="order"/> rather than the preset's channel order.</summary>
    public static void ToEvaluationBytes(MLImage image, ImagePreprocessing preprocessing, Span<byte> chw, ChannelOrder order)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (image.Width <= 0 || image.Height <= 0) throw new ArgumentException("The image has no pixels.");
        int size = preprocessing.ImageSize;
        if (chw.Length != 3 * size * size) throw new ArgumentException($"The destination holds {chw.Length} bytes; 3×{size}×{size} needed.", nameof(chw));
        var plan = ResizeCrop.Evaluation(image.Width, image.Height, preprocessing);
        using var pixels = OpaquePixels.Of(image);
        Resample(pixels.Source, plan, chw, PillowResample.OutputLayout.Planar3, order);
    }

    /// <summary>An image's pixels, composited over white first (into a pooled buffer, returned on dispose) when any is not opaque.</summary>
    internal ref struct OpaquePixels
    {
        byte[]? _rented;

        public PixelSource Source { get; private set; }

        public static OpaquePixels Of(MLImage image)
        {
            var pixels = image.Pixels;
            int h = image.Height, w = image.Width;
            int rowBytes = pixels.Length / h;
            bool isRgba = image.PixelFormat == MLPixelFormat.Rgba32;
            int red = isRgba ? 0 : 2, blue = isRgba ? 2 : 0;
            if (IsOpaque(pixels, w, h, rowBytes)) return new OpaquePixels { Source = new PixelSource(pixels, w, h, rowBytes, 4, red, 1, blue) };
            var composited = ArrayPool<byte>.Shared.Rent(w * h * 4);
            for (int y = 0; y < h; y++)
            {
                var row = pixels.Slice(y * rowBytes, w * 4);
                var target = composited.AsSpan(y * w * 4, w * 4);
                for (int i = 0; i < row.Length; i += 4)
                {
                    int white = 255 - row[i + 3]; // premultiplied: c ≤ a, so c + 255 − a ≤ 255
                    target[i] = (byte)(row[i] + white);
                    target[i + 1] = (byte)(row[i + 1] + white);
                    target[i + 2] = (byte)(row[i + 2] + white);
                    target[i + 3] = 255;
                }
            }
            return new OpaquePixels { _rented = composited, Source = new PixelSource(composited.AsSpan(0, w * h * 4), w, h, w * 4, 4, red, 1, blue) };
        }

        public void Dispose()
        {
            if (_rented is not null) ArrayPool<byte>.Shared.Return(_rented);
            _rented = null;
        }
    }

    static bool IsOpaque(ReadOnlySpan<byte> pixels, int w, int h, int rowBytes)
    {
        for (int y = 0; y < h; y++)
        {
            var row = pixels.Slice(y * rowBytes, w * 4);
            for (int i = 3; i < row.Length; i += 4)
                if (row[i] != 255) return false;
        }
        return true;
    }
}
