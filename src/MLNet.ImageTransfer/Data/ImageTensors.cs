using System.Runtime.InteropServices;
using Microsoft.ML.Data;
using MLNet.ImageTransfer.Engine;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Data;

/// <summary>
/// Turns decoded images into network input. Split in two steps so training can cache the expensive one:
/// <see cref="ToResizedBytes"/> (decode geometry: alpha, channel order, resize, crop → uint8 [3,S,S]) and
/// <see cref="Normalize"/> (scale, mean, std on a whole batch, on the target device).
/// </summary>
public static class ImageTensors
{
    /// <summary>
    /// Geometry of <paramref name="preprocessing"/> applied to an ML.NET image: uint8 tensor [3,S,S] in the preset's
    /// channel order. Transparent pixels are composited over white (ML.NET's pixels are premultiplied, so compositing
    /// is <c>c + 255 − a</c>; reading them as plain colours would darken every translucent pixel). The resize is
    /// Pillow's bilinear in its own 8-bit fixed-point arithmetic (<see cref="PillowResample"/>), so the bytes are those
    /// torchvision's <c>Resize</c> + <c>CenterCrop</c> give for a PIL image of the same pixels.
    /// </summary>
    public static Tensor ToResizedBytes(MLImage image, ImagePreprocessing preprocessing)
    {
        ArgumentNullException.ThrowIfNull(image);
        int size = preprocessing.ImageSize;
        var result = torch.empty(new long[] { 3, size, size }, ScalarType.Byte);
        try
        {
            ImageGeometry.ToEvaluationBytes(image, preprocessing, result.bytes);
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    /// <summary>An ML.NET image as float [1,3,H,W], values 0–255 in <paramref name="channels"/> order, transparency composited over white.</summary>
    /// <remarks>
    /// One managed pass straight into the tensor's memory (channels-last, returned as an NCHW view), rather than a
    /// dozen tensor ops whose wrappers were most of the garbage made per image when a large folder is read.
    /// </remarks>
    internal static Tensor DecodeToFloat(MLImage image, ChannelOrder channels)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (image.Width <= 0 || image.Height <= 0) throw new ArgumentException("The image has no pixels.");
        int h = image.Height, w = image.Width;
        var hwc = torch.empty(new long[] { 1, h, w, 3 }, ScalarType.Float32);
        var values = MemoryMarshal.Cast<byte, float>(hwc.bytes);
        CompositedPixels.Write(image, channels, values, values[1..], values[2..], pixelStride: 3);
        using (hwc)
            return hwc.permute(0, 3, 1, 2); // a view: keeps the storage alive after the wrapper is disposed
    }

    /// <summary>
    /// Resize (bilinear, antialiased, libtorch's float kernel) and centre-crop a float batch [N,3,H,W]: the geometry of
    /// <see cref="ToResizedBytes"/> for tensors, within a grey level of it (libtorch's float arithmetic, not Pillow's
    /// 8-bit fixed point).
    /// </summary>
    public static Tensor ResizeAndCrop(Tensor nchw, ImagePreprocessing preprocessing)
    {
        long h = nchw.size(2), w = nchw.size(3);
        int size = preprocessing.ImageSize;
        if (preprocessing.Resize == ResizeMode.Stretch)
            return h == size && w == size ? nchw.alias() : Interpolate(nchw, size, size);

        using var resized = ResizeShorterSide(nchw, preprocessing.ResizeShorterSide);
        long nh = resized.size(2), nw = resized.size(3);
        long top = (long)Math.Round((nh - size) / 2.0), left = (long)Math.Round((nw - size) / 2.0);
        if (nh < size || nw < size) // CenterCrop pads when the crop is larger than the image; here we stretch instead.
            return Interpolate(resized, size, size);
        return resized.narrow(2, top, size).narrow(3, left, size).contiguous();
    }

    /// <summary>torchvision's Resize(int): the shorter side becomes <paramref name="shorter"/>, the longer keeps the aspect ratio (truncated).</summary>
    internal static Tensor ResizeShorterSide(Tensor nchw, int shorter)
    {
        long h = nchw.size(2), w = nchw.size(3);
        long nh = h <= w ? shorter : (long)(shorter * (double)h / w);
        long nw = h <= w ? (long)(shorter * (double)w / h) : shorter;
        return nh == h && nw == w ? nchw.alias() : Interpolate(nchw, nh, nw);
    }

    /// <summary>Three square planes of side <paramref name="from"/> (channel-major) resized to side <paramref name="to"/> as images are resized.</summary>
    internal static float[] ResizePlanes(float[] planes, int from, int to)
    {
        using var scope = NewDisposeScope();
        using var source = torch.tensor(planes).view(1, 3, from, from);
        return Interpolate(source, to, to).contiguous().data<float>().ToArray();
    }

    static Tensor Interpolate(Tensor nchw, long h, long w)
        => nn.functional.interpolate(nchw, new[] { h, w }, mode: InterpolationMode.Bilinear, align_corners: false,
            antialias: h < nchw.size(2) || w < nchw.size(3));

    /// <summary>uint8 (or float 0–255) batch [N,3,S,S] → normalised float32 network input on <paramref name="device"/>.</summary>
    public static Tensor Normalize(Tensor batch, ImagePreprocessing preprocessing, Device? device = null)
    {
        using var scope = NewDisposeScope();
        var x = batch.to(ScalarType.Float32, device ?? batch.device);
        var (centre, shape) = preprocessing.Centering;
        var mean = torch.tensor(centre, device: x.device).view(shape);
        var std = torch.tensor(preprocessing.Std, device: x.device).view(1, 3, 1, 1);
        using var scale = preprocessing.Scale.ToScalar(); // kept alive to the end of the call (Engine/TorchScalars.cs)
        return x.mul(scale).sub_(mean).div_(std).MoveToOuterDisposeScope();
    }
}
