using System.Buffers;
using Microsoft.ML.Data;
using SkiaSharp;

namespace MLNet.ImageTransfer.Data;

/// <summary>
/// Limits of <see cref="ImageDecoder"/>. They bound what one image can cost, whatever its file claims.
/// Saved with a pipeline's <c>LoadImagesRobust</c> step, so training and scoring decode alike.
/// </summary>
public sealed record ImageDecodeOptions
{
    /// <summary>Default <see cref="MaxPixels"/>: 100 megapixels (Pillow's decompression-bomb limit is 89 MP).</summary>
    public const long DefaultMaxPixels = 100_000_000;

    /// <summary>
    /// Decompression-bomb guard: an image whose header claims more than this many pixels (width × height) is rejected
    /// before any pixel memory is allocated. The most one decode may hold is 4 bytes per pixel of the image's stored
    /// size (JPEG and WebP are decoded straight at the reduced size, see <see cref="MaxSide"/>).
    /// </summary>
    public long MaxPixels { get; init; } = DefaultMaxPixels;

    /// <summary>
    /// Images whose longer side exceeds this are downscaled to it (aspect kept) while decoding: JPEG and WebP by the
    /// codec itself (DCT scaling), other formats after decoding, with Skia's mipmapped bilinear filter. Bounds the memory of
    /// every later step to <c>MaxSide² × 4</c> bytes per image. Default 1024: four times the usual 224–256-pixel network input.
    /// </summary>
    public int MaxSide { get; init; } = 1024;

    /// <summary>Longest side ÷ shortest side beyond which an image is rejected (a 1×5000 strip would become a 256×1.3M tensor once its shorter side is resized). Default 100.</summary>
    public double MaxAspectRatio { get; init; } = 100;

    /// <summary>The defaults.</summary>
    public static ImageDecodeOptions Default { get; } = new();

    public void Validate()
    {
        if (MaxPixels < 1) throw new ArgumentOutOfRangeException(nameof(MaxPixels), MaxPixels, "MaxPixels must be positive.");
        if (MaxSide < 8) throw new ArgumentOutOfRangeException(nameof(MaxSide), MaxSide, "MaxSide must be at least 8 pixels.");
        if (!(MaxAspectRatio >= 1)) throw new ArgumentOutOfRangeException(nameof(MaxAspectRatio), MaxAspectRatio, "MaxAspectRatio must be at least 1.");
    }
}

/// <summary>
/// Decodes image files the way real folders need (ML.NET's <c>LoadImages</c> does none of this): the format is taken
/// from the content, not the extension; the EXIF orientation is applied (a phone photo stored sideways comes out
/// upright); grayscale, palette, 16-bit and CMYK images become 8-bit colour; an animated GIF gives its first frame;
/// transparency is composited over white (the same white <see cref="ImageTensors"/> uses, so an image with alpha
/// looks the same whichever loader read it); huge images are bounded by <see cref="ImageDecodeOptions"/>. A corrupt,
/// truncated, empty or non-image file gives a reason, never a half-decoded picture. Thread-safe.
/// Tiny images need nothing here: the model's preprocessing resizes (upscales) every image to the network's input.
/// </summary>
public static class ImageDecoder
{
    /// <summary>Decodes <paramref name="path"/> into an opaque BGRA <see cref="MLImage"/>.</summary>
    /// <exception cref="InvalidDataException">The file is not a usable image; the message names it and the problem.</exception>
    public static MLImage Decode(string path, ImageDecodeOptions? options = null)
        => TryDecode(path, options, out var image, out var problem) ? image! : throw new InvalidDataException($"Cannot read image '{path}': {problem}.");

    /// <summary>Decodes <paramref name="path"/>; false with the reason when it is not a usable image (never throws for bad content).</summary>
    public static bool TryDecode(string path, ImageDecodeOptions? options, out MLImage? image, out string? problem)
    {
        image = null;
        var pixels = DecodePixels(path, options ?? ImageDecodeOptions.Default, out problem);
        if (pixels is not { } decoded) return false;
        try
        {
            image = MLImage.CreateFromPixels(decoded.Width, decoded.Height, MLPixelFormat.Bgra32, decoded.Bgra); // copies
        }
        finally
        {
            decoded.Return();
        }
        return true;
    }

    /// <summary>
    /// Null when <paramref name="path"/> decodes completely (the whole file is read, so truncation is found), else
    /// the reason. Decodes at a small size where the codec can (JPEG, WebP), so checking a folder is cheap.
    /// </summary>
    public static string? Check(string path, ImageDecodeOptions? options = null)
    {
        var o = options ?? ImageDecodeOptions.Default;
        DecodePixels(path, o with { MaxSide = Math.Min(o.MaxSide, 64) }, out var problem)?.Return();
        return problem;
    }

    /// <summary>
    /// Opaque BGRA pixels (4 bytes per pixel, rows packed), upright, within the options' limits. The buffer is rented
    /// from the shared array pool (decoding a folder would otherwise leave megabytes of garbage per second, which the
    /// GC lets pile up as resident memory): <see cref="Return"/> it when done.
    /// </summary>
    internal readonly record struct DecodedPixels(int Width, int Height, byte[] Buffer)
    {
        public ReadOnlySpan<byte> Bgra => Buffer.AsSpan(0, Width * Height * 4);
        public void Return() => ArrayPool<byte>.Shared.Return(Buffer);

        /// <summary>The size <see cref="Decode(string, ImageDecodeOptions?)"/> gives for the file (upright); larger than Width×Height when a JPEG was decoded smaller on request.</summary>
        public (int Width, int Height) Logical { get; init; }
    }

    /// <summary>
    /// Asked with the upright size <see cref="Decode(string, ImageDecodeOptions?)"/> would give, answers the smallest upright size a decode may
    /// shrink the image to (a JPEG is then decoded at 1/2, 1/4 or 1/8 scale by DCT scaling, the largest of them that
    /// is still at least that size); null: the image as <see cref="Decode(string, ImageDecodeOptions?)"/> gives it.
    /// </summary>
    internal delegate (int Width, int Height)? SmallestDecode(int width, int height);

    /// <summary>
    /// Decodes <paramref name="path"/> straight into the geometry <paramref name="plan"/> gives for its upright size
    /// (the size <see cref="Decode(string, ImageDecodeOptions?)"/> would give), in <paramref name="layout"/> and <paramref name="order"/>: the
    /// training cache's path, one pass from file to cached bytes. With <paramref name="reducingGap"/> &gt; 0, a JPEG
    /// larger than <paramref name="reducingGap"/> times the plan's resized size is decoded smaller by DCT scaling
    /// first (at least that many times the resized size on both sides): much less work, and a result within a few
    /// grey levels of the full decode on edges (the DCT's own downscaling is nearly a box filter). The bytes come from
    /// the shared array pool (3 per output pixel): return them when done. Null with the reason when the file is not a
    /// usable image (never throws for bad content).
    /// </summary>
    internal static byte[]? DecodeResampled(string path, ImageDecodeOptions? options, Func<int, int, ResizeCrop> plan, double reducingGap,
        PillowResample.OutputLayout layout, ChannelOrder order, out ResizeCrop geometry, out string? problem)
    {
        ResizeCrop chosen = default;
        var pixels = DecodePixels(path, options ?? ImageDecodeOptions.Default, out problem, (w, h) =>
        {
            chosen = plan(w, h);
            if (!(reducingGap > 0)) return null;
            return ((int)Math.Ceiling(reducingGap * chosen.ResizedWidth), (int)Math.Ceiling(reducingGap * chosen.ResizedHeight));
        });
        geometry = chosen;
        if (pixels is not { } decoded) return null;
        try
        {
            var result = ArrayPool<byte>.Shared.Rent(3 * chosen.Width * chosen.Height);
            try
            {
                // The plan is for the logical size; a smaller decode is resampled with the same output grid.
                var source = new PixelSource(decoded.Bgra, decoded.Width, decoded.Height, decoded.Width * 4, 4, red: 2, green: 1, blue: 0);
                ImageGeometry.Resample(source, chosen, result, layout, order);
                return result;
            }
            catch
            {
                ArrayPool<byte>.Shared.Return(result);
                throw;
            }
        }
        finally
        {
            decoded.Return();
        }
    }

    internal static DecodedPixels? DecodePixels(string path, ImageDecodeOptions options, out string? problem, SmallestDecode? smallest = null)
    {
        options.Validate();
        // The file is mapped once (SKData) and sniffed and decoded from the same bytes. SKCodec.Create(path) would
        // also work, but wraps its file stream in ~1.5 KiB of managed ownership bookkeeping per file: garbage that,
        // over a folder of thousands of small images, is what the GC's resident memory grows with.
        using var data = SKData.Create(path);
        if (data is null || data.Size == 0)
        {
            // Missing, unreadable or empty: the sniffer says which (a readable file Skia cannot map is a race with a writer or a special file).
            ImageFormatSniffer.Detect(path, out problem);
            problem ??= "unreadable (the file could not be mapped)";
            return null;
        }
        if (ImageFormatSniffer.Detect(data.AsSpan()) is null)
        {
            problem = ImageFormatSniffer.NotAnImage;
            return null;
        }
        using var codec = SKCodec.Create(data);
        if (codec is null)
        {
            problem = RefusedHeader(path);
            return null;
        }
        return Decode(codec, options, out problem, smallest);
    }

    /// <summary>Why Skia refused the file's header: its stream-based factory reports the reason (rare path: bad files only).</summary>
    static string RefusedHeader(string path)
    {
        try
        {
            using var codec = SKCodec.Create(path, out var created);
            return created == SKCodecResult.IncompleteInput ? Describe(created) : $"corrupt image header ({Describe(created)})";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"unreadable: {e.Message}";
        }
    }

    static DecodedPixels? Decode(SKCodec codec, ImageDecodeOptions options, out string? problem, SmallestDecode? smallest)
    {
        problem = null;
        int width = codec.Info.Width, height = codec.Info.Height;
        if (width <= 0 || height <= 0) { problem = "the image has no pixels"; return null; }
        if ((long)width * height > options.MaxPixels)
        {
            problem = $"{width}×{height} pixels exceed the decompression-bomb limit of {options.MaxPixels:N0} pixels (ImageDecodeOptions.MaxPixels)";
            return null;
        }
        double aspect = (double)Math.Max(width, height) / Math.Min(width, height);
        if (aspect > options.MaxAspectRatio)
        {
            problem = $"aspect ratio {width}×{height} exceeds {options.MaxAspectRatio}:1 (ImageDecodeOptions.MaxAspectRatio)";
            return null;
        }

        // Let the codec shrink while decoding when it can (JPEG: 1/2, 1/4, 1/8 DCT scaling): a 6000-pixel photo never
        // exists at full size in memory. Codecs that cannot answer with the full size.
        var size = new SKSizeI(width, height);
        int longer = Math.Max(width, height);
        if (longer > options.MaxSide)
        {
            var scaled = codec.GetScaledDimensions((float)options.MaxSide / longer);
            if (scaled.Width > 0 && scaled.Height > 0 && scaled.Width <= width && scaled.Height <= height) size = scaled;
        }

        // The upright size Decode gives (codecs that cannot scale are shrunk after decoding, see Finish), and a smaller
        // JPEG decode when the caller needs less.
        var origin = codec.EncodedOrigin;
        bool swaps = SwapsAxes(origin);
        var logical = size.Width == width && longer > options.MaxSide ? ShrunkSize(width, height, options.MaxSide) : (size.Width, size.Height);
        if (swaps) logical = (logical.Height, logical.Width);
        if (smallest?.Invoke(logical.Width, logical.Height) is { } needed && codec.EncodedFormat == SKEncodedImageFormat.Jpeg)
        {
            var (needW, needH) = swaps ? (needed.Height, needed.Width) : (needed.Width, needed.Height);
            foreach (int eighths in (ReadOnlySpan<int>)[1, 2, 4])
            {
                var reduced = codec.GetScaledDimensions(eighths / 8f);
                if (reduced.Width >= needW && reduced.Height >= needH && reduced.Width < size.Width && reduced.Height <= size.Height)
                {
                    size = reduced;
                    break;
                }
            }
        }

        // Unpremultiplied 8-bit RGBA: Skia converts grayscale, palette, 16-bit and CMYK sources to it.
        var result = DecodeFrame0(codec, size, out var rgba);
        if (result == SKCodecResult.InvalidScale && (size.Width != width || size.Height != height))
        {
            ArrayPool<byte>.Shared.Return(rgba);
            size = new SKSizeI(width, height);
            result = DecodeFrame0(codec, size, out rgba);
        }
        try
        {
            if (result != SKCodecResult.Success) { problem = Describe(result); return null; }
            return Finish(rgba, size.Width, size.Height, origin, options) with { Logical = logical };
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rgba);
        }
    }

    /// <summary>Frame 0 (an animation's first frame) as unpremultiplied 8-bit RGBA, packed rows; Skia converts grayscale, palette, 16-bit and CMYK sources.</summary>
    static SKCodecResult DecodeFrame0(SKCodec codec, SKSizeI size, out byte[] rgba)
    {
        var info = new SKImageInfo(size.Width, size.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        rgba = ArrayPool<byte>.Shared.Rent(checked((int)info.BytesSize64)); // rows packed: RowBytes = 4 · width
        var handle = System.Runtime.InteropServices.GCHandle.Alloc(rgba, System.Runtime.InteropServices.GCHandleType.Pinned);
        try
        {
            return codec.GetPixels(info, handle.AddrOfPinnedObject(), info.RowBytes, new SKCodecOptions(0));
        }
        finally
        {
            handle.Free();
        }
    }

    static string Describe(SKCodecResult result) => result switch
    {
        SKCodecResult.IncompleteInput => "truncated (the file ends before the image data does)",
        SKCodecResult.ErrorInInput => "corrupt image data",
        SKCodecResult.InvalidInput => "not a decodable image",
        SKCodecResult.Unimplemented => "an image encoding this decoder does not support",
        _ => $"cannot be decoded ({result})",
    };

    /// <summary>
    /// Bilinear from the nearest mipmap level: a box-filtered pyramid, so a 3000-pixel image shrunk to 64 still
    /// averages every source pixel instead of sampling a few. What SkiaSharp 2's <c>SKFilterQuality.High</c> did when
    /// shrinking (Skia fell back to mipmaps there); SkiaSharp 3 maps that obsolete value to a Mitchell cubic without
    /// mipmaps, which aliases badly at large reductions. Measured against SkiaSharp 2.88: the same pictures within ±2
    /// grey levels (Skia's bilinear arithmetic itself changed; every drawing route of SkiaSharp 3 gives the same bytes).
    /// </summary>
    static readonly SKSamplingOptions Shrinking = new(SKFilterMode.Linear, SKMipmapMode.Nearest);

    /// <summary>Composites over white, shrinks to <see cref="ImageDecodeOptions.MaxSide"/>, applies the EXIF orientation, and returns BGRA.</summary>
    static DecodedPixels Finish(byte[] rgba, int width, int height, SKEncodedOrigin origin, ImageDecodeOptions options)
    {
        int length = width * height * 4;
        CompositeOverWhite(rgba.AsSpan(0, length));
        int longer = Math.Max(width, height);
        if (longer <= options.MaxSide) return Orient(rgba.AsSpan(0, length), width, height, width * 4, origin);

        // Codecs that cannot shrink while decoding (PNG, GIF, BMP): shrink now. Opaque by now, so resampling is exact.
        var (w, h) = ShrunkSize(width, height, options.MaxSide);
        using var full = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        System.Runtime.InteropServices.Marshal.Copy(rgba, 0, full.GetPixels(), length);
        using var resized = full.Resize(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Opaque), Shrinking)
            ?? throw new InvalidOperationException($"Skia could not resize a {width}×{height} image to {w}×{h}.");
        return Orient(resized.GetPixelSpan(), resized.Width, resized.Height, resized.RowBytes, origin);
    }

    /// <summary>The size an image larger than <paramref name="maxSide"/> is shrunk to after decoding (aspect kept, rounded).</summary>
    static (int Width, int Height) ShrunkSize(int width, int height, int maxSide)
    {
        double f = (double)maxSide / Math.Max(width, height);
        return (Math.Max(1, (int)Math.Round(width * f)), Math.Max(1, (int)Math.Round(height * f)));
    }

    static bool SwapsAxes(SKEncodedOrigin origin)
        => origin is SKEncodedOrigin.LeftTop or SKEncodedOrigin.RightTop or SKEncodedOrigin.RightBottom or SKEncodedOrigin.LeftBottom;

    /// <summary>RGBA unpremultiplied → opaque: <c>c·a/255 + 255·(1 − a/255)</c>, rounded; alpha becomes 255.</summary>
    static void CompositeOverWhite(Span<byte> rgba)
    {
        for (int i = 0; i < rgba.Length; i += 4)
        {
            int a = rgba[i + 3];
            if (a == 255) continue;
            int background = 255 * (255 - a);
            rgba[i] = (byte)((rgba[i] * a + background + 127) / 255);
            rgba[i + 1] = (byte)((rgba[i + 1] * a + background + 127) / 255);
            rgba[i + 2] = (byte)((rgba[i + 2] * a + background + 127) / 255);
            rgba[i + 3] = 255;
        }
    }

    /// <summary>
    /// The displayed (upright) picture of stored RGBA pixels, as BGRA. EXIF orientation n says how the stored pixels
    /// must be transformed for display: 3 = rotate 180°, 6 = rotate 90° clockwise, 8 = 90° counter-clockwise, 2/4 =
    /// mirror, 5/7 = transpose/transverse. Exact pixel moves, no resampling.
    /// </summary>
    internal static DecodedPixels Orient(ReadOnlySpan<byte> rgba, int width, int height, int rowBytes, SKEncodedOrigin origin)
    {
        bool swaps = SwapsAxes(origin);
        int outW = swaps ? height : width, outH = swaps ? width : height;
        var bgra = ArrayPool<byte>.Shared.Rent(checked(outW * outH * 4));
        for (int y = 0; y < outH; y++)
        {
            for (int x = 0; x < outW; x++)
            {
                // (sx, sy): the stored pixel shown at (x, y).
                var (sx, sy) = origin switch
                {
                    SKEncodedOrigin.TopRight => (width - 1 - x, y),
                    SKEncodedOrigin.BottomRight => (width - 1 - x, height - 1 - y),
                    SKEncodedOrigin.BottomLeft => (x, height - 1 - y),
                    SKEncodedOrigin.LeftTop => (y, x),
                    SKEncodedOrigin.RightTop => (y, height - 1 - x),
                    SKEncodedOrigin.RightBottom => (width - 1 - y, height - 1 - x),
                    SKEncodedOrigin.LeftBottom => (width - 1 - y, x),
                    _ => (x, y),
                };
                int s = sy * rowBytes + sx * 4, d = (y * outW + x) * 4;
                bgra[d] = rgba[s + 2];
                bgra[d + 1] = rgba[s + 1];
                bgra[d + 2] = rgba[s];
                bgra[d + 3] = 255;
            }
        }
        return new DecodedPixels(outW, outH, bgra);
    }
}
