using System.Buffers;
using Microsoft.ML.Data;
using MLNet.ImageTransfer.Data;

namespace MLNet.ImageTransfer.Onnx;

/// <summary>
/// The geometry of <see cref="ImagePreprocessing"/> (alpha compositing, resize, centre crop) without TorchSharp: what
/// a scoring process needs to feed an exported graph's <c>pixels</c> input. It runs the same 8-bit code as
/// <see cref="ImageTensors.ToResizedBytes"/> (<see cref="ImageGeometry"/>: Pillow's bilinear resize in its fixed-point
/// arithmetic), so a saved model scoring on ONNX Runtime sees exactly the bytes training and evaluation saw.
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
        int n = 3 * size * size;
        if (destination.Length != n) throw new ArgumentException($"The destination holds {destination.Length} values; 3×{size}×{size} needed.", nameof(destination));
        var bytes = ArrayPool<byte>.Shared.Rent(n);
        try
        {
            ImageGeometry.ToEvaluationBytes(image, preprocessing, bytes.AsSpan(0, n), ChannelOrder.Rgb);
            for (int i = 0; i < n; i++) destination[i] = bytes[i];
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(bytes);
        }
    }
}
