using Microsoft.ML.Data;
using SkiaSharp;

namespace MLNet.ImageTransfer.Tests.Data;

/// <summary>
/// The committed messy-image fixtures (fixtures/messy, made by fixtures/generate_messy_images.py with Pillow) and
/// byte-level builders for the broken files real folders hold. Every fixture shows the same 24×16 picture upright:
/// left half red, right half blue, a green 4×4 square in the top-left corner.
/// </summary>
internal static class MessyImages
{
    public const int Width = 24, Height = 16;

    public static string Dir => Path.Combine(AppContext.BaseDirectory, "fixtures", "messy");

    public static string Fixture(string name) => Path.Combine(Dir, name);

    public static IEnumerable<string> All => Directory.EnumerateFiles(Dir).Order(StringComparer.Ordinal);

    /// <summary>Pixel (x, y) of an opaque BGRA image as (R, G, B).</summary>
    public static (int R, int G, int B) Rgb(MLImage image, int x, int y)
    {
        var pixels = image.Pixels;
        int rowBytes = pixels.Length / image.Height;
        int i = y * rowBytes + x * 4;
        Assert.Equal(MLPixelFormat.Bgra32, image.PixelFormat);
        return (pixels[i + 2], pixels[i + 1], pixels[i]);
    }

    /// <summary>An encoded picture of <paramref name="width"/>×<paramref name="height"/> (diagonal gradient) in <paramref name="format"/>.</summary>
    public static byte[] Encode(int width, int height, SKEncodedImageFormat format = SKEncodedImageFormat.Png, int quality = 90, byte shade = 0)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using (var canvas = new SKCanvas(bitmap))
        {
            using var paint = new SKPaint
            {
                Shader = SKShader.CreateLinearGradient(new SKPoint(0, 0), new SKPoint(width, height),
                    [new SKColor(shade, 40, 200), new SKColor(250, shade, 30)], SKShaderTileMode.Clamp),
            };
            canvas.DrawRect(0, 0, width, height, paint);
        }
        using var data = bitmap.Encode(format, quality);
        return data.ToArray();
    }

    /// <summary>
    /// A decompression bomb's shape: a valid PNG header claiming <paramref name="width"/>×<paramref name="height"/>,
    /// followed by a small zlib stream of zeros (a real bomb's IDAT compresses ~1000:1), in a file of a few hundred bytes.
    /// </summary>
    public static byte[] PngHeaderOnly(int width, int height)
    {
        var ihdr = new byte[13];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(ihdr, width);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), height);
        ihdr[8] = 8; ihdr[9] = 2; // 8-bit RGB
        var zeros = new MemoryStream();
        using (var z = new System.IO.Compression.ZLibStream(zeros, System.IO.Compression.CompressionLevel.SmallestSize, leaveOpen: true))
            z.Write(new byte[100_000]);
        return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, .. Chunk("IHDR", ihdr), .. Chunk("IDAT", zeros.ToArray()), .. Chunk("IEND", [])];
    }

    static byte[] Chunk(string kind, byte[] data)
    {
        var typeAndData = System.Text.Encoding.ASCII.GetBytes(kind).Concat(data).ToArray();
        var bytes = new byte[12 + data.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(bytes, data.Length);
        typeAndData.CopyTo(bytes, 4);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(8 + data.Length), Crc32(typeAndData));
        return bytes;
    }

    static uint Crc32(byte[] data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (var b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
        }
        return ~crc;
    }
}
