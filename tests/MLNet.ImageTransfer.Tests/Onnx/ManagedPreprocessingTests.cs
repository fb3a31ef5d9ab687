using Microsoft.ML.Data;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Onnx;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.Onnx;

/// <summary>
/// The torch-free image geometry (what feeds an exported graph without libtorch) against <see cref="ImageTensors.ToResizedBytes"/>:
/// every resize path (stretch up and down, shorter side then centre crop, one side up and the other down, the crop
/// larger than the resized image), transparency, RGB and BGR presets. Both run the same 8-bit code, so they agree exactly.
/// </summary>
public class ManagedPreprocessingTests(ITestOutputHelper output)
{
    static MLImage RandomImage(int width, int height, int seed, bool translucent)
    {
        var random = new Random(seed);
        var bgra = new byte[width * height * 4];
        // Smooth gradients plus noise: resizing smooth content produces many exact .5 ties less often than pure noise would.
        for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++)
        {
            int i = (y * width + x) * 4;
            byte a = translucent ? (byte)random.Next(256) : (byte)255;
            for (int c = 0; c < 3; c++)
            {
                int v = (x * (c + 1) * 7 + y * (3 - c) * 5 + random.Next(40)) % 256;
                bgra[i + c] = (byte)(v * a / 255); // premultiplied, as ML.NET stores pixels
            }
            bgra[i + 3] = a;
        }
        return MLImage.CreateFromPixels(width, height, MLPixelFormat.Bgra32, bgra);
    }

    public static TheoryData<int, int, string, int, bool> Cases => new()
    {
        { 32, 32, "stretch", 32, false },      // no resize at all
        { 50, 37, "stretch", 64, false },      // both sides grow: plain bilinear
        { 300, 200, "stretch", 64, true },     // both shrink: antialiased
        { 230, 40, "stretch", 64, false },     // width shrinks, height grows: antialiased on both axes
        { 640, 480, "torchvision", 224, false },  // shorter side 256 (shrinks), centre crop
        { 100, 500, "torchvision", 224, true },   // grows to 256 × 1280, crop
        { 257, 1000, "torchvision", 224, false }, // shrink by a hair
        { 225, 255, "torchvision", 224, false },  // grows, then cropped
        { 301, 77, "keras-caffe", 48, true },     // BGR preset (stretch)
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Managed_geometry_equals_torchsharp(int width, int height, string preset, int size, bool translucent)
    {
        var prep = preset == "stretch" ? ImagePreprocessing.TorchVision(size) with { Resize = ResizeMode.Stretch } : ImagePreprocessing.FromPreset(preset, size);
        using var image = RandomImage(width, height, seed: width * 31 + height, translucent);
        var managed = ManagedImagePreprocessing.ToPixels(image, prep);

        using var scope = NewDisposeScope();
        var torchBytes = ImageTensors.ToResizedBytes(image, prep).to_type(ScalarType.Float32);
        if (prep.Channels == ChannelOrder.Bgr) torchBytes = torchBytes.flip(0); // managed pixels are always RGB
        var expected = torchBytes.contiguous().data<float>().ToArray();

        Assert.Equal(expected.Length, managed.Length);
        int differing = 0;
        double max = 0;
        for (int i = 0; i < managed.Length; i++)
        {
            double d = Math.Abs(managed[i] - expected[i]);
            if (d > 0) differing++;
            max = Math.Max(max, d);
        }
        output.WriteLine($"{width}x{height} {preset} {size}: {differing} of {managed.Length} values differ, max {max}");
        Assert.Equal(0, differing);
    }
}
