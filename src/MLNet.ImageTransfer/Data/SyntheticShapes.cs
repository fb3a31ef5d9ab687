using SkiaSharp;

namespace MLNet.ImageTransfer.Data;

/// <summary>
/// A small, seeded, class-per-folder image dataset for demos and tests: one coloured shape (circle, square,
/// triangle, star) per image, at a random position, size, rotation and colour, on a noisy background.
/// The class is the shape, never the colour, so a model must look at geometry.
/// The shapes are drawn by Skia with anti-aliasing, so their outline pixels depend on the SkiaSharp version: a seed
/// gives the same shapes everywhere, but SkiaSharp 3 shades the edge pixels differently from SkiaSharp 2.88 (up to
/// 57/255 in about half the images), and a seeded training run on the dataset ends differently.
/// </summary>
public static class SyntheticShapes
{
    public static readonly string[] Classes = ["circle", "square", "star", "triangle"];

    /// <summary>Writes <paramref name="imagesPerClass"/> PNG images of <paramref name="size"/>² pixels per class under <paramref name="root"/>.</summary>
    public static ImageFolderScan Generate(string root, int imagesPerClass = 40, int size = 64, int seed = 0, IReadOnlyList<string>? classes = null)
    {
        if (imagesPerClass < 1) throw new ArgumentOutOfRangeException(nameof(imagesPerClass));
        if (size < 16) throw new ArgumentOutOfRangeException(nameof(size), size, "Images must be at least 16 pixels wide.");
        classes ??= Classes;
        var random = new Random(seed);
        foreach (var className in classes)
        {
            var dir = Path.Combine(root, className);
            Directory.CreateDirectory(dir);
            for (int i = 0; i < imagesPerClass; i++)
            {
                using var bitmap = Draw(className, size, random);
                using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
                using var file = File.Create(Path.Combine(dir, $"{className}_{i:D4}.png"));
                data.SaveTo(file);
            }
        }
        return ImageFolder.Scan(root);
    }

    /// <summary>Draws one image of a class.</summary>
    public static SKBitmap Draw(string className, int size, Random random)
    {
        var bitmap = new SKBitmap(new SKImageInfo(size, size, SKColorType.Bgra8888, SKAlphaType.Premul));
        var pixels = new byte[size * size * 4];
        byte baseGray = (byte)random.Next(60, 200);
        for (int p = 0; p < size * size; p++)
        {
            byte v = (byte)Math.Clamp(baseGray + random.Next(-25, 26), 0, 255);
            pixels[4 * p] = v; pixels[4 * p + 1] = v; pixels[4 * p + 2] = v; pixels[4 * p + 3] = 255;
        }
        System.Runtime.InteropServices.Marshal.Copy(pixels, 0, bitmap.GetPixels(), pixels.Length);

        using var canvas = new SKCanvas(bitmap);
        // Keep the shape visible: dark shapes on light backgrounds, bright shapes on dark ones.
        var color = SKColor.FromHsv(random.Next(0, 360), random.Next(50, 100), baseGray > 128 ? random.Next(15, 45) : random.Next(75, 100));
        using var paint = new SKPaint { Color = color, IsAntialias = true, Style = SKPaintStyle.Fill };
        float radius = size * (0.22f + 0.14f * (float)random.NextDouble());
        float cx = radius + (float)random.NextDouble() * (size - 2 * radius);
        float cy = radius + (float)random.NextDouble() * (size - 2 * radius);
        canvas.Translate(cx, cy);
        canvas.RotateDegrees((float)random.NextDouble() * 360f);
        switch (className)
        {
            case "circle":
                canvas.DrawCircle(0, 0, radius, paint);
                break;
            case "square":
                canvas.DrawRect(-radius * 0.8f, -radius * 0.8f, radius * 1.6f, radius * 1.6f, paint);
                break;
            case "triangle":
                canvas.DrawPath(Polygon(3, radius, 0), paint);
                break;
            case "star":
                canvas.DrawPath(Star(5, radius, radius * 0.45f), paint);
                break;
            default:
                throw new ArgumentException($"Unknown synthetic class '{className}'. Known: {string.Join(", ", Classes)}.");
        }
        return bitmap;
    }

    static SKPath Polygon(int sides, float radius, float phase)
    {
        var path = new SKPath();
        for (int i = 0; i < sides; i++)
        {
            double a = phase + 2 * Math.PI * i / sides;
            var p = new SKPoint((float)(radius * Math.Cos(a)), (float)(radius * Math.Sin(a)));
            if (i == 0) path.MoveTo(p); else path.LineTo(p);
        }
        path.Close();
        return path;
    }

    static SKPath Star(int points, float outer, float inner)
    {
        var path = new SKPath();
        for (int i = 0; i < 2 * points; i++)
        {
            float r = i % 2 == 0 ? outer : inner;
            double a = Math.PI * i / points;
            var p = new SKPoint((float)(r * Math.Cos(a)), (float)(r * Math.Sin(a)));
            if (i == 0) path.MoveTo(p); else path.LineTo(p);
        }
        path.Close();
        return path;
    }
}
