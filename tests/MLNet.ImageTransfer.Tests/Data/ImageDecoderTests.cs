using Microsoft.ML.Data;
using MLNet.ImageTransfer.Data;
using SkiaSharp;

namespace MLNet.ImageTransfer.Tests.Data;

public class ImageDecoderTests
{
    static void AssertUprightPattern(MLImage image, string name, bool grayscale = false)
    {
        Assert.True(image.Width == MessyImages.Width && image.Height == MessyImages.Height, $"{name}: {image.Width}×{image.Height}, expected 24×16 upright");
        var corner = MessyImages.Rgb(image, 1, 1);
        var left = MessyImages.Rgb(image, 7, 11);
        var right = MessyImages.Rgb(image, 19, 8);
        if (grayscale)
        {
            // ITU-R 601 luma of pure green, red, blue: 150, 76, 29.
            Assert.InRange(corner.G, 135, 165);
            Assert.InRange(left.G, 62, 90);
            Assert.InRange(right.G, 15, 45);
            return;
        }
        Assert.True(corner.G > 180 && corner.R < 90 && corner.B < 90, $"{name}: corner {corner} is not green");
        Assert.True(left.R > 200 && left.G < 60 && left.B < 60, $"{name}: left {left} is not red");
        Assert.True(right.B > 200 && right.R < 60 && right.G < 60, $"{name}: right {right} is not blue");
    }

    [Theory]
    [InlineData("exif_orientation6.jpg")] // stored 16×24 (rotated 90° counter-clockwise); EXIF says rotate back
    [InlineData("exif_orientation3.jpg")] // stored upside down
    [InlineData("cmyk.jpg")]
    [InlineData("rgb16.png")]
    [InlineData("animated.gif")]          // first frame is the pattern; the second is black
    [InlineData("png_named.jpg")]
    [InlineData("lossless.webp")]
    [InlineData("plain.bmp")]
    public void Colour_fixtures_decode_upright_to_8_bit_BGRA(string name)
    {
        using var image = ImageDecoder.Decode(MessyImages.Fixture(name));
        AssertUprightPattern(image, name);
    }

    [Theory]
    [InlineData("gray.jpg")]
    [InlineData("gray16.png")]
    public void Grayscale_fixtures_become_gray_colour_images(string name)
    {
        using var image = ImageDecoder.Decode(MessyImages.Fixture(name));
        AssertUprightPattern(image, name, grayscale: true);
        var p = MessyImages.Rgb(image, 7, 11);
        Assert.True(p.R == p.G && p.G == p.B, $"{name}: {p} is not gray");
    }

    [Fact]
    public void Exif_orientation_is_applied_where_MLNet_ignores_it()
    {
        var path = MessyImages.Fixture("exif_orientation6.jpg");
        using (var raw = MLImage.CreateFromFile(path))
            Assert.Equal((16, 24), (raw.Width, raw.Height)); // ML.NET's LoadImages: the stored, sideways pixels
        using var image = ImageDecoder.Decode(path);
        Assert.Equal((24, 16), (image.Width, image.Height));
        // Upright: green square top-left, red left, blue right. Sideways (ignored EXIF) it would be bottom-left.
        var topLeft = MessyImages.Rgb(image, 1, 1);
        var bottomLeft = MessyImages.Rgb(image, 1, 14);
        Assert.True(topLeft.G > 180 && topLeft.R < 90, $"top-left {topLeft}");
        Assert.True(bottomLeft.R > 200 && bottomLeft.G < 60, $"bottom-left {bottomLeft}");
    }

    [Fact]
    public void Transparency_is_composited_over_white_not_read_as_premultiplied()
    {
        // Right half: blue at alpha 128 → over white (127, 127, 255). Premultiplied bytes read as colour would give (0, 0, 128).
        using var rgba = ImageDecoder.Decode(MessyImages.Fixture("rgba.png"));
        var right = MessyImages.Rgb(rgba, 19, 8);
        Assert.InRange(right.R, 126, 128);
        Assert.InRange(right.G, 126, 128);
        Assert.Equal(255, right.B);
        Assert.Equal((255, 0, 0), MessyImages.Rgb(rgba, 7, 11));
        // Palette PNG whose green entry is transparent: the corner becomes white.
        using var palette = ImageDecoder.Decode(MessyImages.Fixture("palette.png"));
        Assert.Equal((255, 255, 255), MessyImages.Rgb(palette, 1, 1));
        var left = MessyImages.Rgb(palette, 7, 11);
        Assert.True(left.R > 200 && left.G < 60, $"palette left {left}");
    }

    [Fact]
    public void Broken_files_give_reasons_instead_of_pictures()
    {
        var dir = TestData.NewTempDir("broken");
        string Write(string name, byte[] bytes) { var p = Path.Combine(dir, name); File.WriteAllBytes(p, bytes); return p; }
        var jpeg = MessyImages.Encode(64, 48, SKEncodedImageFormat.Jpeg);
        var png = MessyImages.Encode(64, 48);

        Assert.Null(ImageDecoder.Check(Write("ok.jpg", jpeg)));
        Assert.Contains("truncated", ImageDecoder.Check(Write("cut.jpg", jpeg[..(jpeg.Length / 2)])));
        Assert.Contains("truncated", ImageDecoder.Check(Write("cut.png", png[..(png.Length * 2 / 3)])));
        Assert.Equal("empty file", ImageDecoder.Check(Write("empty.jpg", [])));
        Assert.Contains("not a JPEG", ImageDecoder.Check(Write("text.jpg", "hello, not an image"u8.ToArray())));
        var garbage = new byte[2000];
        new Random(1).NextBytes(garbage);
        garbage[0] = 0xFF; garbage[1] = 0xD8; garbage[2] = 0xFF; // a JPEG by its magic, garbage after
        Assert.NotNull(ImageDecoder.Check(Write("garbage.jpg", garbage)));
        Assert.False(ImageDecoder.TryDecode(Path.Combine(dir, "garbage.jpg"), null, out var none, out _));
        Assert.Null(none);
        var e = Assert.Throws<InvalidDataException>(() => ImageDecoder.Decode(Path.Combine(dir, "cut.jpg")));
        Assert.Contains("cut.jpg", e.Message);
    }

    [Fact]
    public void Decompression_bombs_are_refused_from_the_header()
    {
        var dir = TestData.NewTempDir("bomb");
        var bomb = Path.Combine(dir, "bomb.png");
        File.WriteAllBytes(bomb, MessyImages.PngHeaderOnly(100_000, 100_000)); // claims 10^10 pixels (40 GB), is a few hundred bytes
        var before = GC.GetTotalAllocatedBytes(precise: true);
        var reason = ImageDecoder.Check(bomb);
        Assert.Contains("decompression-bomb limit of 100,000,000 pixels", reason);
        Assert.True(GC.GetTotalAllocatedBytes(precise: true) - before < 1_000_000, "the guard must act before allocating pixels");
        // The limit is a setting.
        Assert.Contains("decompression-bomb", ImageDecoder.Check(MessyImages.Fixture("plain.bmp"), new ImageDecodeOptions { MaxPixels = 100 }));
        Assert.Contains("aspect ratio", ImageDecoder.Check(Write(dir, "strip.png", MessyImages.Encode(1000, 2)), new ImageDecodeOptions()));
    }

    static string Write(string dir, string name, byte[] bytes) { var p = Path.Combine(dir, name); File.WriteAllBytes(p, bytes); return p; }

    [Theory]
    [InlineData(SKEncodedImageFormat.Jpeg)] // shrunk by the codec while decoding
    [InlineData(SKEncodedImageFormat.Png)]  // decoded, then shrunk
    public void Huge_images_come_out_within_MaxSide_and_tiny_ones_as_they_are(SKEncodedImageFormat format)
    {
        var dir = TestData.NewTempDir("huge");
        using var huge = ImageDecoder.Decode(Write(dir, "huge", MessyImages.Encode(3000, 2000, format)));
        Assert.Equal(1024, huge.Width);
        Assert.InRange(huge.Height, 682, 683);
        using var tiny = ImageDecoder.Decode(Write(dir, "tiny", MessyImages.Encode(2, 3, format)));
        Assert.Equal((2, 3), (tiny.Width, tiny.Height));
    }
}
