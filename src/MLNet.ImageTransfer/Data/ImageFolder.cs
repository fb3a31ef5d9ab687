using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.ImageTransfer.Data;

/// <summary>One image of a class-per-subfolder dataset: path relative to the root, and the class (subfolder) name.</summary>
public sealed class ImageFolderEntry
{
    public string ImagePath { get; set; } = "";
    public string Label { get; set; } = "";
}

/// <summary>A file that was not taken as an image, and why.</summary>
public sealed record SkippedFile(string Path, string Reason);

/// <summary>A train/test pair of data views (ML.NET's own TrainTestData cannot be constructed outside ML.NET).</summary>
public sealed record TrainTestSplit(IDataView TrainSet, IDataView TestSet);

/// <summary>What <see cref="ImageFolder.Scan"/> found: sorted class names, the images, and the files it skipped.</summary>
public sealed record ImageFolderScan(string Root, IReadOnlyList<string> ClassNames, IReadOnlyList<ImageFolderEntry> Images, IReadOnlyList<SkippedFile> Skipped)
{
    public int CountOf(string className) => Images.Count(e => e.Label == className);
}

/// <summary>
/// Class-per-subfolder datasets (torchvision <c>ImageFolder</c>, Keras <c>image_dataset_from_directory</c>):
/// <c>root/cat/1.jpg</c>, <c>root/dog/2.png</c>. Classes are the subfolder names in ordinal order; images are
/// recognised by their content (a PNG named .jpg is an image, a text file named .jpg is not).
/// </summary>
public static class ImageFolder
{
    /// <summary>Column of <see cref="Load"/>'s output holding the image path relative to the root.</summary>
    public const string ImagePathColumn = "ImagePath";
    /// <summary>Column of <see cref="Load"/>'s output holding the class name.</summary>
    public const string LabelColumn = "Label";

    /// <summary>
    /// Loads a class-per-subfolder directory as an IDataView with columns <c>ImagePath</c> (relative to
    /// <paramref name="root"/>, so pass the root as <c>imageFolder</c> to <c>LoadImages</c>) and <c>Label</c>.
    /// Rows are ordered by class, then file name, so <c>MapValueToKey("Label")</c> numbers the classes in sorted order.
    /// </summary>
    public static IDataView Load(MLContext mlContext, string root) => mlContext.Data.LoadFromEnumerable(Scan(root).Images);

    /// <summary>Scans <paramref name="root"/> without loading anything; throws with a clear message when it is unusable.</summary>
    public static ImageFolderScan Scan(string root)
    {
        if (!Directory.Exists(root)) throw new DirectoryNotFoundException($"Image folder '{root}' does not exist.");
        var skipped = new List<SkippedFile>();
        var images = new List<ImageFolderEntry>();
        var classes = new List<string>();
        var emptyClasses = new List<string>();
        foreach (var dir in Directory.GetDirectories(root).OrderBy(d => Path.GetFileName(d), StringComparer.Ordinal))
        {
            var className = Path.GetFileName(dir);
            if (className.StartsWith('.')) continue; // .git, .ipynb_checkpoints, .DS_Store folders
            int before = images.Count;
            foreach (var file in Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).OrderBy(f => f, StringComparer.Ordinal))
            {
                var relative = Path.GetRelativePath(root, file);
                if (Path.GetFileName(file).StartsWith('.')) { skipped.Add(new(relative, "hidden file")); continue; }
                var format = ImageFormatSniffer.Detect(file, out var problem);
                if (format is null) { skipped.Add(new(relative, problem!)); continue; }
                images.Add(new ImageFolderEntry { ImagePath = relative, Label = className });
            }
            if (images.Count == before) emptyClasses.Add(className);
            else classes.Add(className);
        }
        if (classes.Count == 0)
            throw new InvalidDataException($"Image folder '{root}' has no class subfolders with images. Expected root/<class>/<image>, e.g. {Path.Combine(root, "cat", "1.jpg")}."
                + (skipped.Count > 0 ? $" {skipped.Count} file(s) were not images, e.g. {skipped[0].Path}: {skipped[0].Reason}." : ""));
        if (emptyClasses.Count > 0)
            throw new InvalidDataException($"Image folder '{root}': class folder(s) {string.Join(", ", emptyClasses.Select(c => $"'{c}'"))} contain no images. Remove them or add images.");
        if (classes.Count == 1)
            throw new InvalidDataException($"Image folder '{root}' has a single class ('{classes[0]}'); classification needs at least two class subfolders.");
        return new ImageFolderScan(Path.GetFullPath(root), classes, images, skipped);
    }

    /// <summary>
    /// Splits rows with the <see cref="ImageFolderEntry"/> columns into train and test parts, keeping each class's
    /// proportion (every class with ≥ 2 images gets at least one test image). Deterministic for a seed.
    /// </summary>
    public static TrainTestSplit StratifiedSplit(MLContext mlContext, IDataView data, double testFraction = 0.2, int seed = 0)
    {
        if (testFraction is <= 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(testFraction), testFraction, "The test fraction must be in (0, 1).");
        var rows = mlContext.Data.CreateEnumerable<ImageFolderEntry>(data, reuseRowObject: false).ToList();
        var (train, test) = StratifiedSplit(rows, testFraction, seed);
        return new TrainTestSplit(mlContext.Data.LoadFromEnumerable(train), mlContext.Data.LoadFromEnumerable(test));
    }

    internal static (List<ImageFolderEntry> Train, List<ImageFolderEntry> Test) StratifiedSplit(IReadOnlyList<ImageFolderEntry> rows, double testFraction, int seed)
    {
        var random = new Random(seed);
        var testSet = new HashSet<ImageFolderEntry>(ReferenceEqualityComparer.Instance);
        foreach (var group in rows.GroupBy(r => r.Label).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            var members = group.ToArray();
            random.Shuffle(members);
            int n = members.Length < 2 ? 0 : Math.Clamp((int)Math.Round(members.Length * testFraction), 1, members.Length - 1);
            foreach (var m in members.Take(n)) testSet.Add(m);
        }
        return (rows.Where(r => !testSet.Contains(r)).ToList(), rows.Where(testSet.Contains).ToList());
    }
}
