using Microsoft.ML.Data;
using MLNet.ImageTransfer.Data;

namespace MLNet.ImageTransfer.Onnx;

/// <summary>
/// The geometry of <see cref="ImagePreprocessing"/> (alpha compositing, resize, centre crop, rounding to 0–255) in
/// plain .NET, without TorchSharp: what a scoring process needs to feed an exported graph's <c>pixels</c> input.
/// It mirrors <see cref="ImageTensors.ToResizedBytes"/> operation for operation — PyTorch's bilinear interpolation,
/// antialiased (PIL-style triangle filter, width first, then height) whenever a side shrinks — in float32 like
/// libtorch's CPU kernels, so the two agree to within one grey level (a rounding tie decided differently when libtorch
/// fuses a multiply-add) and are usually identical.
/// </summary>
public static class ManagedImagePreprocessing
{
    /// <summary>
    /// The image as the network's <c>pixels</c> input: float32 [3,S,S] planes in RGB order (whatever the preset's
    /// channel order: exported graphs reorder themselves), integer values 0–255.
    /// </summary>
    public static float[] ToPixels(MLImage image, ImagePreprocessing preprocessing)
    {
        var result = new float[3 * preprocessing.ImageSize * preprocessing.ImageSize];
        ToPixels(image, preprocessing, result);
        return result;
    }

    /// <summary><see cref="ToPixels(MLImage, ImagePreprocessing)"/> into <paramref name="destination"/> (3·S·S floats).</summary>
    public static void ToPixels(MLImage image, ImagePreprocessing preprocessing, Span<float> destination)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(preprocessing);
        if (image.Width <= 0 || image.Height <= 0) throw new ArgumentException("The image has no pixels.");
        int size = preprocessing.ImageSize;
        if (destination.Length != 3 * size * size) throw new ArgumentException($"The destination holds {destination.Length} values; 3×{size}×{size} needed.", nameof(destination));

        var planes = Decode(image);
        planes = ResizeAndCrop(planes, preprocessing);
        int n = size * size;
        for (int c = 0; c < 3; c++)
        {
            var plane = planes.Data[c];
            var target = destination.Slice(c * n, n);
            for (int i = 0; i < n; i++) target[i] = Math.Clamp(MathF.Round(plane[i], MidpointRounding.ToEven), 0f, 255f);
        }
    }

    /// <summary>Three float planes (R, G, B) of <see cref="Height"/>×<see cref="Width"/>.</summary>
    internal readonly record struct Planes(float[][] Data, int Height, int Width);

    /// <summary>RGB planes 0–255, transparency composited over white (<c>c + 255 − a</c> on premultiplied BGRA/RGBA).</summary>
    internal static Planes Decode(MLImage image)
    {
        int h = image.Height, w = image.Width;
        var data = new[] { new float[h * w], new float[h * w], new float[h * w] };
        CompositedPixels.Write(image, ChannelOrder.Rgb, data[0], data[1], data[2], pixelStride: 1);
        return new Planes(data, h, w);
    }

    /// <summary><see cref="ImageTensors.ResizeAndCrop"/> on planes.</summary>
    internal static Planes ResizeAndCrop(Planes image, ImagePreprocessing preprocessing)
    {
        int h = image.Height, w = image.Width, size = preprocessing.ImageSize;
        if (preprocessing.Resize == ResizeMode.Stretch)
            return h == size && w == size ? image : Interpolate(image, size, size);

        int shorter = preprocessing.ResizeShorterSide;
        int nh = h <= w ? shorter : (int)(shorter * (double)h / w);
        int nw = h <= w ? (int)(shorter * (double)w / h) : shorter;
        var resized = nh == h && nw == w ? image : Interpolate(image, nh, nw);
        if (nh < size || nw < size) return Interpolate(resized, size, size);
        int top = (int)Math.Round((nh - size) / 2.0), left = (int)Math.Round((nw - size) / 2.0);
        var data = new float[3][];
        for (int c = 0; c < 3; c++)
        {
            data[c] = new float[size * size];
            for (int y = 0; y < size; y++)
                Array.Copy(resized.Data[c], (top + y) * nw + left, data[c], y * size, size);
        }
        return new Planes(data, size, size);
    }

    /// <summary>PyTorch's <c>interpolate(mode: bilinear, align_corners: false, antialias: a side shrinks)</c>.</summary>
    internal static Planes Interpolate(Planes image, int outH, int outW)
    {
        bool antialias = outH < image.Height || outW < image.Width;
        if (!antialias) return Bilinear(image, outH, outW);
        // libtorch's separable antialiased kernel: the contiguous dimension (width) first, each only if it changes.
        var result = image;
        if (outW != result.Width) result = AntialiasPass(result, outW, horizontal: true);
        if (outH != result.Height) result = AntialiasPass(result, outH, horizontal: false);
        return result;
    }

    /// <summary>One antialiased pass along one axis (PIL's triangle filter, support scaled by the downscale factor).</summary>
    static Planes AntialiasPass(Planes image, int outSize, bool horizontal)
    {
        int inSize = horizontal ? image.Width : image.Height;
        var (starts, counts, weights, maxCount) = AntialiasWeights(inSize, outSize);
        int outH = horizontal ? image.Height : outSize, outW = horizontal ? outSize : image.Width;
        var data = new float[3][];
        for (int c = 0; c < 3; c++)
        {
            var src = image.Data[c];
            var dst = data[c] = new float[outH * outW];
            for (int y = 0; y < outH; y++)
            for (int x = 0; x < outW; x++)
            {
                int o = horizontal ? x : y;
                int start = starts[o], count = counts[o];
                int wOffset = o * maxCount;
                int baseIndex = horizontal ? y * image.Width + start : start * image.Width + x;
                int stride = horizontal ? 1 : image.Width;
                float t = src[baseIndex] * weights[wOffset];
                for (int j = 1; j < count; j++) t += src[baseIndex + j * stride] * weights[wOffset + j];
                dst[y * outW + x] = t;
            }
        }
        return new Planes(data, outH, outW);
    }

    /// <summary>libtorch's <c>_compute_weights_aa</c> for the bilinear filter, in its float/double mix.</summary>
    static (int[] Starts, int[] Counts, float[] Weights, int MaxCount) AntialiasWeights(int inSize, int outSize)
    {
        float scale = (float)inSize / outSize;
        float support = scale >= 1f ? scale : 1f; // (interp_size / 2) * scale, interp_size = 2 for bilinear
        int maxCount = (int)Math.Ceiling(support) * 2 + 1;
        var starts = new int[outSize];
        var counts = new int[outSize];
        var weights = new float[outSize * maxCount];
        float invscale = scale >= 1f ? (float)(1.0 / scale) : 1f;
        for (int i = 0; i < outSize; i++)
        {
            float center = (float)(scale * (i + 0.5));
            int xmin = Math.Max((int)(long)(center - support + 0.5), 0);
            int xsize = (int)Math.Min((long)(center + support + 0.5), inSize) - xmin;
            float total = 0;
            for (int j = 0; j < xsize; j++)
            {
                float w = Triangle((float)(((j + xmin) - center + 0.5) * invscale));
                weights[i * maxCount + j] = w;
                total += w;
            }
            if (total != 0)
                for (int j = 0; j < xsize; j++) weights[i * maxCount + j] /= total;
            starts[i] = xmin;
            counts[i] = xsize;
        }
        return (starts, counts, weights, maxCount);
    }

    static float Triangle(float x)
    {
        if (x < 0) x = -x;
        return x < 1f ? 1f - x : 0f;
    }

    /// <summary>libtorch's <c>upsample_bilinear2d</c> (align_corners = false), used when no side shrinks.</summary>
    static Planes Bilinear(Planes image, int outH, int outW)
    {
        int h = image.Height, w = image.Width;
        var (y0, y1, hy0, hy1) = LinearIndices(h, outH);
        var (x0, x1, wx0, wx1) = LinearIndices(w, outW);
        var data = new float[3][];
        for (int c = 0; c < 3; c++)
        {
            var src = image.Data[c];
            var dst = data[c] = new float[outH * outW];
            for (int y = 0; y < outH; y++)
            for (int x = 0; x < outW; x++)
            {
                float top = src[y0[y] * w + x0[x]] * wx0[x] + src[y0[y] * w + x1[x]] * wx1[x];
                float bottom = src[y1[y] * w + x0[x]] * wx0[x] + src[y1[y] * w + x1[x]] * wx1[x];
                dst[y * outW + x] = top * hy0[y] + bottom * hy1[y];
            }
        }
        return new Planes(data, outH, outW);
    }

    static (int[] I0, int[] I1, float[] L0, float[] L1) LinearIndices(int inSize, int outSize)
    {
        float scale = (float)inSize / outSize;
        var i0 = new int[outSize];
        var i1 = new int[outSize];
        var l0 = new float[outSize];
        var l1 = new float[outSize];
        for (int o = 0; o < outSize; o++)
        {
            float real = Math.Max((float)(scale * (o + 0.5) - 0.5), 0f); // area_pixel_compute_source_index: double arithmetic, float result
            int index = Math.Min((int)MathF.Floor(real), inSize - 1);
            float lambda = Math.Clamp(real - index, 0f, 1f);
            i0[o] = index;
            i1[o] = index + (index < inSize - 1 ? 1 : 0);
            l1[o] = lambda;
            l0[o] = 1f - lambda;
        }
        return (i0, i1, l0, l1);
    }
}
