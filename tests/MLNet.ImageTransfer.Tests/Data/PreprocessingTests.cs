using Microsoft.ML.Data;
using MLNet.ImageTransfer.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.Data;

public class PreprocessingTests
{
    static MLImage Solid(int w, int h, byte r, byte g, byte b, byte a = 255)
    {
        var px = new byte[w * h * 4];
        for (int i = 0; i < w * h; i++) { px[4 * i] = b; px[4 * i + 1] = g; px[4 * i + 2] = r; px[4 * i + 3] = a; }
        return MLImage.CreateFromPixels(w, h, MLPixelFormat.Bgra32, px);
    }

    [Fact]
    public void Channel_order_follows_the_preset()
    {
        using var img = Solid(10, 6, r: 200, g: 100, b: 50);
        using var rgb = ImageTensors.ToResizedBytes(img, ImagePreprocessing.TorchVision(8));
        using var bgr = ImageTensors.ToResizedBytes(img, ImagePreprocessing.KerasCaffe(8));
        Assert.Equal(new long[] { 3, 8, 8 }, rgb.shape);
        Assert.Equal(new byte[] { 200, 100, 50 }, Enumerable.Range(0, 3).Select(c => rgb[c, 4, 4].item<byte>()));
        Assert.Equal(new byte[] { 50, 100, 200 }, Enumerable.Range(0, 3).Select(c => bgr[c, 4, 4].item<byte>()));
    }

    [Fact]
    public void Normalisation_applies_scale_mean_and_std_per_channel()
    {
        using var img = Solid(4, 4, r: 255, g: 0, b: 51);
        var p = ImagePreprocessing.TorchVision(4) with { Resize = ResizeMode.Stretch };
        using var bytes = ImageTensors.ToResizedBytes(img, p).unsqueeze(0);
        using var x = ImageTensors.Normalize(bytes, p);
        Assert.Equal((1f - 0.485f) / 0.229f, x[0, 0, 0, 0].item<float>(), 5);
        Assert.Equal((0f - 0.456f) / 0.224f, x[0, 1, 0, 0].item<float>(), 5);
        Assert.Equal((0.2f - 0.406f) / 0.225f, x[0, 2, 0, 0].item<float>(), 5);

        var caffe = ImagePreprocessing.KerasCaffe(4);
        using var bgr = ImageTensors.ToResizedBytes(img, caffe).unsqueeze(0);
        using var y = ImageTensors.Normalize(bgr, caffe);
        Assert.Equal(51f - 103.939f, y[0, 0, 0, 0].item<float>(), 3);
        Assert.Equal(255f - 123.68f, y[0, 2, 0, 0].item<float>(), 3);
    }

    [Fact]
    public void Shorter_side_resize_then_centre_crop_keeps_the_centre()
    {
        // 40×20 image: left half red, right half blue, with a green centre band 8 pixels wide.
        var px = new byte[40 * 20 * 4];
        for (int y = 0; y < 20; y++)
            for (int x = 0; x < 40; x++)
            {
                int i = 4 * (y * 40 + x);
                (byte r, byte g, byte b) = x is >= 16 and < 24 ? ((byte)0, (byte)255, (byte)0) : x < 20 ? ((byte)255, (byte)0, (byte)0) : ((byte)0, (byte)0, (byte)255);
                px[i] = b; px[i + 1] = g; px[i + 2] = r; px[i + 3] = 255;
            }
        using var img = MLImage.CreateFromPixels(40, 20, MLPixelFormat.Bgra32, px);
        var p = ImagePreprocessing.TorchVision(16) with { CropFraction = 0.8 }; // shorter side → 20 (no resize), crop 16×16 from the centre
        using var t = ImageTensors.ToResizedBytes(img, p);
        Assert.Equal(new long[] { 3, 16, 16 }, t.shape);
        Assert.Equal(255, t[1, 8, 8].item<byte>());   // centre column is green
        Assert.Equal(255, t[0, 8, 0].item<byte>());   // left edge of the crop (x = 12) is red
        Assert.Equal(255, t[2, 8, 15].item<byte>());  // right edge (x = 27) is blue
    }

    [Fact]
    public void Transparent_pixels_are_composited_over_white()
    {
        using var transparent = Solid(4, 4, 0, 0, 0, a: 0);
        using var t = ImageTensors.ToResizedBytes(transparent, ImagePreprocessing.Rescale(4));
        Assert.True(t.eq(255).all().item<bool>());
    }
}
