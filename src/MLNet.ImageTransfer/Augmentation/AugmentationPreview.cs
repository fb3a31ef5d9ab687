using Microsoft.ML.Data;
using MLNet.ImageTransfer.Data;
using SkiaSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Augmentation;

/// <summary>
/// A picture of what augmentation does (the seeds plot their augmented samples): a PNG grid with one row per image —
/// first the image as the network sees it at evaluation, then a gap, then random augmented versions as training sees
/// them. The same code path as training (cached source, <see cref="ImageAugmenter"/>), so what you see is what trains.
/// </summary>
public static class AugmentationPreview
{
    const int Gap = 4, SeparatorGap = 16;

    /// <summary>Renders the grid for images in memory; returns PNG bytes.</summary>
    /// <param name="images">One row per image.</param>
    /// <param name="augmentation">The pipeline to preview.</param>
    /// <param name="preprocessing">Geometry of the network input; default torchvision at 224.</param>
    /// <param name="samples">Augmented versions per image (columns after the original).</param>
    /// <param name="seed">Seed of the draws (row r uses the draws of batch r of epoch 1).</param>
    public static byte[] RenderPng(IReadOnlyList<MLImage> images, AugmentationPipeline augmentation, ImagePreprocessing? preprocessing = null, int samples = 5, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(augmentation);
        if (images.Count == 0) throw new ArgumentException("No images to preview.", nameof(images));
        if (samples < 1 || samples > 64) throw new ArgumentOutOfRangeException(nameof(samples), samples, "Samples per image must be 1 to 64.");
        preprocessing ??= ImagePreprocessing.TorchVision();
        preprocessing.Validate();
        augmentation.Validate();

        int size = preprocessing.ImageSize;
        var source = AugmentationSource.For(preprocessing, augmentation);
        var augmenter = new ImageAugmenter(augmentation, size, preprocessing.Channels);
        int width = 2 * Gap + SeparatorGap + (samples + 1) * size + (samples - 1) * Gap;
        int height = Gap + images.Count * (size + Gap);
        var rgba = new byte[width * height * 4];
        for (int i = 0; i < rgba.Length; i += 4) { rgba[i] = 235; rgba[i + 1] = 235; rgba[i + 2] = 235; rgba[i + 3] = 255; }

        for (int row = 0; row < images.Count; row++)
        {
            using var scope = NewDisposeScope();
            var original = ImageTensors.ToResizedBytes(images[row], preprocessing);
            var random = ImageAugmenter.RandomFor(augmentation.Seed ?? seed, 1, row);
            Tensor augmented;
            if (source.IsEvaluation)
                augmented = augmenter.Apply(original.unsqueeze(0).expand(samples, 3, size, size).contiguous(), random);
            else
            {
                // The cached source training crops from (the whole image), as the training cache holds it.
                var plan = source.Plan(images[row].Width, images[row].Height);
                var cached = new byte[3 * plan.Width * plan.Height];
                using (var pixels = ImageGeometry.OpaquePixels.Of(images[row]))
                    ImageGeometry.Resample(pixels.Source, plan, cached, source.Layout, preprocessing.Channels);
                var sources = new SampleCopies(samples, plan.Height, plan.Width, cached);
                augmented = augmenter.Apply(sources, source, random);
            }
            int top = Gap + row * (size + Gap);
            Blit(rgba, width, Gap, top, original, preprocessing.Channels);
            for (int k = 0; k < samples; k++)
                Blit(rgba, width, Gap + size + SeparatorGap + k * (size + Gap), top, augmented[k], preprocessing.Channels);
        }

        using var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        System.Runtime.InteropServices.Marshal.Copy(rgba, 0, bitmap.GetPixels(), rgba.Length);
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    /// <summary>Renders the grid for image files (any format ML.NET reads) and writes it to <paramref name="pngPath"/>.</summary>
    public static void SaveGrid(string pngPath, IEnumerable<string> imagePaths, AugmentationPipeline augmentation, ImagePreprocessing? preprocessing = null, int samples = 5, int seed = 0)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(pngPath);
        var images = new List<MLImage>();
        try
        {
            foreach (var path in imagePaths)
            {
                if (!File.Exists(path)) throw new FileNotFoundException($"Image '{path}' does not exist.", path);
                images.Add(MLImage.CreateFromFile(path));
            }
            var png = RenderPng(images, augmentation, preprocessing, samples, seed);
            var full = Path.GetFullPath(pngPath);
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            File.WriteAllBytes(full, png);
        }
        finally
        {
            foreach (var image in images) image.Dispose();
        }
    }

    /// <summary>
    /// Up to <paramref name="count"/> images of a folder, taking its class subfolders in turn (a seeded choice within
    /// each); a folder of plain images works too. Files are recognised by content, as everywhere.
    /// </summary>
    public static IReadOnlyList<string> PickImages(string dataDir, int count, int seed = 0)
    {
        if (!Directory.Exists(dataDir)) throw new DirectoryNotFoundException($"Image folder '{dataDir}' does not exist.");
        var random = new Random(seed);
        var root = Path.GetFullPath(dataDir);
        var files = Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)
            .Where(f => !Path.GetFileName(f).StartsWith('.') && !Path.GetRelativePath(root, f).Split(Path.DirectorySeparatorChar).Any(part => part.StartsWith('.')))
            .OrderBy(f => f, StringComparer.Ordinal)
            .Where(f => ImageFormatSniffer.Detect(f, out _) is not null);
        var perClass = files.GroupBy(f => Path.GetRelativePath(root, f).Split(Path.DirectorySeparatorChar) is { Length: > 1 } parts ? parts[0] : "")
            .OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => new Queue<string>(g.OrderBy(_ => random.Next()))).ToList();
        var picked = new List<string>();
        while (picked.Count < count && perClass.Any(q => q.Count > 0))
            foreach (var queue in perClass)
                if (picked.Count < count && queue.Count > 0) picked.Add(queue.Dequeue());
        return picked;
    }

    /// <summary>The same cached source, <c>count</c> times.</summary>
    sealed class SampleCopies(int count, int height, int width, byte[] pixels) : ISourceImages
    {
        public int Count => count;
        public (int Height, int Width) SizeOf(int index) => (height, width);
        public void Read(int index, Span<byte> hwc) => pixels.CopyTo(hwc);
    }

    static void Blit(byte[] rgba, int width, int left, int top, Tensor image, ChannelOrder channels)
    {
        var chw = image.to_type(ScalarType.Float32).round().clamp(0, 255).to_type(ScalarType.Byte);
        if (channels == ChannelOrder.Bgr) chw = chw.flip(0);
        var hwc = chw.permute(1, 2, 0).contiguous().data<byte>().ToArray();
        int h = (int)image.size(1), w = (int)image.size(2);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                int o = ((top + y) * width + left + x) * 4, s = (y * w + x) * 3;
                rgba[o] = hwc[s]; rgba[o + 1] = hwc[s + 1]; rgba[o + 2] = hwc[s + 2];
            }
    }
}
