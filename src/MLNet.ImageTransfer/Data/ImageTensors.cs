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
    static readonly long[] RgbFromBgra = [2, 1, 0];
    static readonly long[] BgrFromBgra = [0, 1, 2];

    /// <summary>
    /// Geometry of <paramref name="preprocessing"/> applied to an ML.NET image: uint8 tensor [3,S,S] in the preset's
    /// channel order. Transparent pixels are composited over white (ML.NET's pixels are premultiplied, so compositing
    /// is <c>c + 255 − a</c>; reading them as plain colours would darken every translucent pixel).
    /// </summary>
    public static Tensor ToResizedBytes(MLImage image, ImagePreprocessing preprocessing)
    {
        using var scope = NewDisposeScope();
        var resized = ResizeAndCrop(DecodeToFloat(image, preprocessing.Channels), preprocessing);
        return resized.squeeze(0).round_().clamp_(TorchScalars.Zero, TorchScalars.ByteMax).to_type(ScalarType.Byte).MoveToOuterDisposeScope();
    }

    /// <summary>An ML.NET image as float [1,3,H,W], values 0–255 in <paramref name="channels"/> order, transparency composited over white.</summary>
    internal static Tensor DecodeToFloat(MLImage image, ChannelOrder channels)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (image.Width <= 0 || image.Height <= 0) throw new ArgumentException("The image has no pixels.");
        using var scope = NewDisposeScope();
        int h = image.Height, w = image.Width;
        var pixels = image.Pixels;
        int rowBytes = pixels.Length / h;
        // Copied straight into a tensor: a managed copy per image would only feed the GC.
        var rows = torch.empty(new long[] { h, rowBytes }, ScalarType.Byte);
        pixels[..(h * rowBytes)].CopyTo(rows.bytes);
        var raw = rows.narrow(1, 0, (long)w * 4).view(h, w, 4);
        var hwc = raw.to_type(ScalarType.Float32);
        bool isRgba = image.PixelFormat == MLPixelFormat.Rgba32;
        var alpha = hwc.select(2, 3).unsqueeze(2);
        // c + (255 − a), with rooted scalars (Engine/TorchScalars.cs: implicit temporaries can be finalized mid-call).
        var composited = hwc.narrow(2, 0, 3).sub(alpha).add_(TorchScalars.ByteMax, TorchScalars.One);
        // Channel indices into the stored BGRA (or RGBA) layout for the requested order.
        long[] order = (channels == ChannelOrder.Rgb) ^ isRgba ? RgbFromBgra : BgrFromBgra;
        return composited.index_select(2, torch.tensor(order)).permute(2, 0, 1).unsqueeze(0).MoveToOuterDisposeScope(); // channels-last view, as before
    }

    /// <summary>Resize (bilinear, antialiased like PIL/torchvision) and centre-crop a float batch [N,3,H,W].</summary>
    public static Tensor ResizeAndCrop(Tensor nchw, ImagePreprocessing preprocessing)
    {
        long h = nchw.shape[2], w = nchw.shape[3];
        int size = preprocessing.ImageSize;
        if (preprocessing.Resize == ResizeMode.Stretch)
            return h == size && w == size ? nchw.alias() : Interpolate(nchw, size, size);

        using var resized = ResizeShorterSide(nchw, preprocessing.ResizeShorterSide);
        long nh = resized.shape[2], nw = resized.shape[3];
        long top = (long)Math.Round((nh - size) / 2.0), left = (long)Math.Round((nw - size) / 2.0);
        if (nh < size || nw < size) // CenterCrop pads when the crop is larger than the image; here we stretch instead.
            return Interpolate(resized, size, size);
        return resized.narrow(2, top, size).narrow(3, left, size).contiguous();
    }

    /// <summary>torchvision's Resize(int): the shorter side becomes <paramref name="shorter"/>, the longer keeps the aspect ratio (truncated).</summary>
    internal static Tensor ResizeShorterSide(Tensor nchw, int shorter)
    {
        long h = nchw.shape[2], w = nchw.shape[3];
        long nh = h <= w ? shorter : (long)(shorter * (double)h / w);
        long nw = h <= w ? (long)(shorter * (double)w / h) : shorter;
        return nh == h && nw == w ? nchw.alias() : Interpolate(nchw, nh, nw);
    }

    static Tensor Interpolate(Tensor nchw, long h, long w)
        => nn.functional.interpolate(nchw, new[] { h, w }, mode: InterpolationMode.Bilinear, align_corners: false,
            antialias: h < nchw.shape[2] || w < nchw.shape[3]);

    /// <summary>uint8 (or float 0–255) batch [N,3,S,S] → normalised float32 network input on <paramref name="device"/>.</summary>
    public static Tensor Normalize(Tensor batch, ImagePreprocessing preprocessing, Device? device = null)
    {
        using var scope = NewDisposeScope();
        var x = batch.to(ScalarType.Float32, device ?? batch.device);
        var mean = torch.tensor(preprocessing.Mean, device: x.device).view(1, 3, 1, 1);
        var std = torch.tensor(preprocessing.Std, device: x.device).view(1, 3, 1, 1);
        using var scale = preprocessing.Scale.ToScalar(); // kept alive to the end of the call (Engine/TorchScalars.cs)
        return x.mul(scale).sub_(mean).div_(std).MoveToOuterDisposeScope();
    }
}
