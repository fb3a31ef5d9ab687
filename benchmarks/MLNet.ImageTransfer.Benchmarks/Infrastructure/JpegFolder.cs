using MLNet.ImageTransfer.Data;
using SkiaSharp;

namespace MLNet.ImageTransfer.Benchmarks.Infrastructure;

/// <summary>
/// A class-per-subfolder JPEG dataset for the data-pipeline and end-to-end benchmarks: the library's seeded synthetic
/// shapes (<see cref="SyntheticShapes"/>), drawn at the larger side and cropped to a photo-like
/// <c>width × height</c> (default 500×375, a typical ImageNet/Flickr size), saved as JPEG quality 90.
/// Both sides of the comparison read the same files.
/// </summary>
public static class JpegFolder
{
    public static ImageFolderScan Write(string root, int imagesPerClass, int width = 500, int height = 375, int seed = 0, int classes = 4)
    {
        var random = new Random(seed);
        var names = SyntheticShapes.Classes.Take(classes).ToArray();
        foreach (var className in names)
        {
            var dir = Path.Combine(root, className);
            Directory.CreateDirectory(dir);
            for (int i = 0; i < imagesPerClass; i++)
            {
                using var square = SyntheticShapes.Draw(className, Math.Max(width, height), random);
                using var cropped = new SKBitmap();
                if (!square.ExtractSubset(cropped, new SKRectI(0, 0, width, height)))
                    throw new InvalidOperationException("Could not crop the synthetic image.");
                using var image = SKImage.FromBitmap(cropped);
                using var data = image.Encode(SKEncodedImageFormat.Jpeg, 90);
                using var file = File.Create(Path.Combine(dir, $"{className}_{i:D4}.jpg"));
                data.SaveTo(file);
            }
        }
        return ImageFolder.Scan(root);
    }

    /// <summary>A fresh temporary directory under the system temp folder.</summary>
    public static string TempDirectory(string prefix)
    {
        var dir = Path.Combine(Path.GetTempPath(), $"{prefix}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }
}
