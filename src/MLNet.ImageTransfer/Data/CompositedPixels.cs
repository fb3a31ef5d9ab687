using Microsoft.ML.Data;

namespace MLNet.ImageTransfer.Data;

/// <summary>
/// An ML.NET image's pixels as float channel values 0–255, composited over white. ML.NET's pixels are premultiplied
/// BGRA (or RGBA), so over white is <c>c + (255 − a)</c>; reading them as plain colours would darken every translucent
/// pixel. Shared by the TorchSharp preprocessing (<see cref="ImageTensors"/>) and the managed one used for ONNX scoring,
/// so both read images alike. No TorchSharp here: a scoring process uses it without libtorch.
/// </summary>
internal static class CompositedPixels
{
    /// <summary>
    /// Writes channel <c>c</c> of pixel <c>i = y·W + x</c> to <c>channel_c[i · pixelStride]</c>: interleaved HWC with the
    /// three spans offset by one and a stride of 3, or planes with a stride of 1.
    /// </summary>
    public static void Write(MLImage image, ChannelOrder channels, Span<float> first, Span<float> second, Span<float> third, int pixelStride)
    {
        int h = image.Height, w = image.Width;
        var pixels = image.Pixels;
        int rowBytes = pixels.Length / h;
        // Byte offsets of red and blue within a stored pixel (green is 1, alpha 3).
        bool isRgba = image.PixelFormat == MLPixelFormat.Rgba32;
        int red = isRgba ? 0 : 2, blue = isRgba ? 2 : 0;
        var (firstOffset, thirdOffset) = channels == ChannelOrder.Rgb ? (red, blue) : (blue, red);
        for (int y = 0; y < h; y++)
        {
            var row = pixels.Slice(y * rowBytes, w * 4);
            for (int x = 0, s = 0, d = y * w * pixelStride; x < w; x++, s += 4, d += pixelStride)
            {
                float white = 255f - row[s + 3];
                first[d] = row[s + firstOffset] + white;
                second[d] = row[s + 1] + white;
                third[d] = row[s + thirdOffset] + white;
            }
        }
    }
}
