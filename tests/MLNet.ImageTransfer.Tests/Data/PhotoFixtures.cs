using System.Text.Json;
using Microsoft.ML.Data;
using MLNet.ImageTransfer.Data;
using SkiaSharp;

namespace MLNet.ImageTransfer.Tests.Data;

/// <summary>
/// The committed photo fixtures (fixtures/photos, made by fixtures/generate_photo_fixtures.py with torchvision 0.14 on
/// Pillow 9.4): real JPEGs, Pillow's decoding of each, and torchvision's outputs for geometry cases (photos.json).
/// </summary>
internal static class PhotoFixtures
{
    public static string Dir => Path.Combine(AppContext.BaseDirectory, "fixtures", "photos");

    static readonly Lazy<JsonDocument> Manifest = new(() => JsonDocument.Parse(File.ReadAllText(Path.Combine(Dir, "photos.json"))));

    public static JsonElement Root => Manifest.Value.RootElement;

    public sealed record Photo(string Name, string Jpeg, string? Decoded, int Width, int Height, int Orientation, IReadOnlyList<Case> Cases);

    /// <summary>One torchvision output: its kind (eval, stretch, resized_crop, crop), parameters and expected pixels' file.</summary>
    public sealed record Case(string Id, string Kind, int Size, double CropFraction, int Top, int Left, int Height, int Width, int Resize, string File);

    public static IReadOnlyList<Photo> Photos => Root.GetProperty("photos").EnumerateArray().Select(p => new Photo(
        p.GetProperty("name").GetString()!,
        Path.Combine(Dir, p.GetProperty("name").GetString() + ".jpg"),
        p.GetProperty("decoded").ValueKind == JsonValueKind.String ? Path.Combine(Dir, p.GetProperty("decoded").GetString()!) : null,
        p.GetProperty("size")[0].GetInt32(), p.GetProperty("size")[1].GetInt32(), p.GetProperty("orientation").GetInt32(),
        p.GetProperty("cases").EnumerateArray().Select(c => new Case(
            c.GetProperty("id").GetString()!, c.GetProperty("kind").GetString()!, c.GetProperty("size").GetInt32(),
            c.TryGetProperty("crop_fraction", out var f) ? f.GetDouble() : 1,
            Int(c, "top"), Int(c, "left"), Int(c, "height"), Int(c, "width"), Int(c, "resize"),
            Path.Combine(Dir, c.GetProperty("file").GetString()!))).ToList())).ToList();

    static int Int(JsonElement e, string name) => e.TryGetProperty(name, out var v) ? v.GetInt32() : 0;

    public static Photo Named(string name) => Photos.Single(p => p.Name == name);

    /// <summary>Interleaved RGB bytes of a PNG (lossless: exactly the pixels Python wrote).</summary>
    public static (byte[] Rgb, int Width, int Height) ReadPng(string path)
    {
        using var bitmap = SKBitmap.Decode(path) ?? throw new InvalidDataException($"Cannot read '{path}'.");
        using var rgba = bitmap.Copy(SKColorType.Rgba8888) ?? throw new InvalidDataException($"Cannot convert '{path}'.");
        var pixels = rgba.GetPixelSpan();
        var rgb = new byte[rgba.Width * rgba.Height * 3];
        for (int i = 0, j = 0; j < rgb.Length; i += 4, j += 3)
        {
            rgb[j] = pixels[i];
            rgb[j + 1] = pixels[i + 1];
            rgb[j + 2] = pixels[i + 2];
        }
        return (rgb, rgba.Width, rgba.Height);
    }

    /// <summary>An opaque ML.NET image (BGRA) of interleaved RGB bytes.</summary>
    public static MLImage ToImage(byte[] rgb, int width, int height)
    {
        var bgra = new byte[width * height * 4];
        for (int i = 0, j = 0; j < rgb.Length; i += 4, j += 3)
        {
            bgra[i] = rgb[j + 2];
            bgra[i + 1] = rgb[j + 1];
            bgra[i + 2] = rgb[j];
            bgra[i + 3] = 255;
        }
        return MLImage.CreateFromPixels(width, height, MLPixelFormat.Bgra32, bgra);
    }

    /// <summary>Interleaved RGB bytes of an opaque ML.NET image.</summary>
    public static byte[] ToRgb(MLImage image)
    {
        var pixels = image.Pixels;
        int rowBytes = pixels.Length / image.Height;
        var rgb = new byte[image.Width * image.Height * 3];
        bool isRgba = image.PixelFormat == MLPixelFormat.Rgba32;
        for (int y = 0; y < image.Height; y++)
            for (int x = 0; x < image.Width; x++)
            {
                int s = y * rowBytes + x * 4, d = (y * image.Width + x) * 3;
                rgb[d] = pixels[s + (isRgba ? 0 : 2)];
                rgb[d + 1] = pixels[s + 1];
                rgb[d + 2] = pixels[s + (isRgba ? 2 : 0)];
            }
        return rgb;
    }

    /// <summary>The preprocessing of an eval or stretch case.</summary>
    public static ImagePreprocessing Preprocessing(Case c) => c.Kind switch
    {
        "eval" => ImagePreprocessing.TorchVision(c.Size) with { CropFraction = c.CropFraction },
        "stretch" => ImagePreprocessing.TorchVision(c.Size) with { Resize = ResizeMode.Stretch },
        _ => throw new ArgumentException($"Case {c.Id} is not an evaluation geometry."),
    };

    /// <summary>Largest |difference| and how many values differ, between CHW planes and interleaved RGB.</summary>
    public static (int Max, int Differing) CompareChw(ReadOnlySpan<byte> chw, byte[] rgb, int width, int height)
    {
        int max = 0, differing = 0, plane = width * height;
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < plane; i++)
            {
                int d = Math.Abs(chw[c * plane + i] - rgb[i * 3 + c]);
                if (d > 0) differing++;
                max = Math.Max(max, d);
            }
        return (max, differing);
    }

    public static (int Max, int Differing) Compare(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        Assert.Equal(a.Length, b.Length);
        int max = 0, differing = 0;
        for (int i = 0; i < a.Length; i++)
        {
            int d = Math.Abs(a[i] - b[i]);
            if (d > 0) differing++;
            max = Math.Max(max, d);
        }
        return (max, differing);
    }
}
