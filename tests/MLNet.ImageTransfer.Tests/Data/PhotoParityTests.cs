using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Onnx;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.Data;

/// <summary>
/// Evaluation and scoring geometry against torchvision 0.14 on Pillow 9.4 (fixtures/photos): real JPEGs, EXIF-rotated
/// included. Two questions, kept apart: the resize alone (both sides given the same decoded RGB bytes: Pillow's
/// decoding, saved losslessly) and the whole chain (our decoder, then the resize). Both paths are checked: the
/// TorchSharp one (<see cref="ImageTensors.ToResizedBytes"/>, what training and evaluation use) and the managed one
/// (<see cref="ManagedImagePreprocessing"/>, what a saved model scoring on ONNX Runtime uses).
/// </summary>
public class PhotoParityTests(ITestOutputHelper output)
{
    /// <summary>
    /// What the JPEG decoders may differ by. Skia and Pillow both decode with libjpeg-turbo (integer IDCT, fancy
    /// upsampling), and they agree byte for byte on every fixture and on 1,395 photos of the hymenoptera, weather4 and
    /// flowers folders (4:2:0 and 4:4:4, progressive, grayscale, ICC profiles); one grey level allows for builds of
    /// the decoder elsewhere.
    /// </summary>
    const int DecoderTolerance = 1;

    public static TheoryData<string> Names()
    {
        var data = new TheoryData<string>();
        foreach (var photo in PhotoFixtures.Photos) data.Add(photo.Name);
        return data;
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Our_decoder_gives_pillows_pixels(string name)
    {
        var photo = PhotoFixtures.Named(name);
        if (photo.Decoded is null) return; // checked through the whole chain only
        var (expected, width, height) = PhotoFixtures.ReadPng(photo.Decoded);
        using var image = ImageDecoder.Decode(photo.Jpeg);
        Assert.Equal((width, height), (image.Width, image.Height)); // EXIF orientation applied, as ImageOps.exif_transpose
        var (max, differing) = PhotoFixtures.Compare(PhotoFixtures.ToRgb(image), expected);
        output.WriteLine($"{name} ({width}×{height}, orientation {photo.Orientation}): decoder max |Δ| {max}, {differing} of {expected.Length} values differ");
        Assert.InRange(max, 0, DecoderTolerance);
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void The_resize_alone_equals_torchvision_bit_for_bit(string name)
    {
        var photo = PhotoFixtures.Named(name);
        if (photo.Decoded is null) return;
        var (rgb, width, height) = PhotoFixtures.ReadPng(photo.Decoded);
        using var image = PhotoFixtures.ToImage(rgb, width, height);
        foreach (var c in photo.Cases)
        {
            var (max, differing) = Ours(image, rgb, width, height, c);
            output.WriteLine($"{name} {c.Id}: max |Δ| {max}, {differing} values differ");
            Assert.True(max == 0, $"{name} {c.Id}: max |Δ| {max} ({differing} values)");
        }
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void The_whole_chain_from_the_jpeg_matches_torchvision(string name)
    {
        var photo = PhotoFixtures.Named(name);
        using var image = ImageDecoder.Decode(photo.Jpeg);
        var rgb = PhotoFixtures.ToRgb(image);
        foreach (var c in photo.Cases)
        {
            var (max, differing) = Ours(image, rgb, image.Width, image.Height, c);
            output.WriteLine($"{name} {c.Id}: max |Δ| {max}, {differing} values differ");
            Assert.True(max <= DecoderTolerance, $"{name} {c.Id}: max |Δ| {max} ({differing} values)");
        }
    }

    /// <summary>Our output for a case against torchvision's: for evaluation geometry both paths (which must agree exactly), for crops the crop code.</summary>
    static (int Max, int Differing) Ours(Microsoft.ML.Data.MLImage image, byte[] rgb, int width, int height, PhotoFixtures.Case c)
    {
        var (expected, w, h) = PhotoFixtures.ReadPng(c.File);
        Assert.Equal((c.Size, c.Size), (w, h));
        switch (c.Kind)
        {
            case "eval":
            case "stretch":
            {
                var preprocessing = PhotoFixtures.Preprocessing(c);
                using var scope = NewDisposeScope();
                var torchPath = ImageTensors.ToResizedBytes(image, preprocessing).data<byte>().ToArray();
                var managedPath = ManagedImagePreprocessing.ToPixels(image, preprocessing).Select(v => (byte)v).ToArray();
                Assert.Equal(torchPath, managedPath);
                return PhotoFixtures.CompareChw(torchPath, expected, c.Size, c.Size);
            }
            case "resized_crop":
            {
                // torchvision's F.resized_crop: the box cut out, then resized.
                var chw = new byte[3 * c.Size * c.Size];
                ImageGeometry.Resample(PixelSource.Rgb(rgb, width, height), c.Left, c.Top, c.Width, c.Height,
                    ResizeCrop.Whole(c.Size, c.Size), chw, PillowResample.OutputLayout.Planar3, ChannelOrder.Rgb);
                return PhotoFixtures.CompareChw(chw, expected, c.Size, c.Size);
            }
            case "crop":
            {
                // Resize(R), then F.crop at (top, left): one resampling that keeps only the window.
                var (nw, nh) = ResizeCrop.ShorterSide(width, height, c.Resize);
                var chw = new byte[3 * c.Size * c.Size];
                ImageGeometry.Resample(PixelSource.Rgb(rgb, width, height), new ResizeCrop(nw, nh, c.Left, c.Top, c.Size, c.Size),
                    chw, PillowResample.OutputLayout.Planar3, ChannelOrder.Rgb);
                return PhotoFixtures.CompareChw(chw, expected, c.Size, c.Size);
            }
            default:
                throw new InvalidDataException($"Unknown case kind '{c.Kind}'.");
        }
    }
}
