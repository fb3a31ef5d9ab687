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

/// <summary>What <see cref="ImageFolder.Scan(string, ImageFolderOptions?)"/> found: sorted class names, the images, and the files it skipped.</summary>
public sealed record ImageFolderScan(string Root, IReadOnlyList<string> ClassNames, IReadOnlyList<ImageFolderEntry> Images, IReadOnlyList<SkippedFile> Skipped)
{
    public int CountOf(string className) => Images.Count(e => e.Label == className);

    /// <summary>
    /// One paragraph for people: how many files were skipped, and the first <paramref name="maxListed"/> with their
    /// reasons; null when nothing was skipped. Hidden files are counted but not listed (they are skipped on purpose).
    /// </summary>
    public string? SkippedSummary(int maxListed = 5) => ImageFolder.Summarize(Root, Images.Count, Skipped, maxListed);
}

/// <summary>How <see cref="ImageFolder.Scan(string, ImageFolderOptions?)"/> treats files that are not usable images.</summary>
public sealed record ImageFolderOptions
{
    /// <summary>
    /// Decode every file completely (in parallel) so that corrupt and truncated images are found now, not during
    /// training. Default true. False: only the first bytes are checked (format by content), which is fast but lets a
    /// truncated image through to the loader (<c>LoadImagesRobust</c> then yields no image and the trainer skips the row).
    /// </summary>
    public bool VerifyImages { get; init; } = true;

    /// <summary>Throw (with the skip summary) when any file other than a hidden one is skipped, instead of going on without it.</summary>
    public bool FailFast { get; init; }

    /// <summary>The limits images are checked against (decompression-bomb guard, size); the loader should use the same.</summary>
    public ImageDecodeOptions Decode { get; init; } = ImageDecodeOptions.Default;
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
    public static IDataView Load(MLContext mlContext, string root, ImageFolderOptions? options = null) => mlContext.Data.LoadFromEnumerable(Scan(root, options).Images);

    /// <summary>Reason given for skipped hidden files (<c>.DS_Store</c>, <c>._IMG_1.jpg</c>, files under <c>.ipynb_checkpoints/</c>).</summary>
    public const string HiddenFileReason = "hidden file";

    /// <summary>
    /// Scans <paramref name="root"/>: classes, images, and the files that are not usable images, with reasons
    /// (<see cref="ImageFolderScan.Skipped"/>, summarised by <see cref="ImageFolderScan.SkippedSummary"/>). By default
    /// every image is decoded once to find corrupt and truncated files (see <see cref="ImageFolderOptions"/>).
    /// Throws with a clear message when the folder is unusable (missing, no classes, an empty class, a single class)
    /// or, with <see cref="ImageFolderOptions.FailFast"/>, when any file was skipped.
    /// </summary>
    public static ImageFolderScan Scan(string root, ImageFolderOptions? options = null)
    {
        options ??= new ImageFolderOptions();
        if (!Directory.Exists(root)) throw new DirectoryNotFoundException($"Image folder '{root}' does not exist.");
        // Relative paths only: the full ones are rebuilt where needed, rather than held (as mid-life garbage the GC
        // promotes) for a folder of tens of thousands of files.
        var candidates = new List<(string Relative, string Class)>();
        var hidden = new List<SkippedFile>();
        var classDirs = new List<string>();
        foreach (var dir in Directory.GetDirectories(root).OrderBy(d => Path.GetFileName(d), StringComparer.Ordinal))
        {
            var className = Path.GetFileName(dir);
            if (className.StartsWith('.')) continue; // .git, .ipynb_checkpoints, .DS_Store folders
            classDirs.Add(className);
            foreach (var file in Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).OrderBy(f => f, StringComparer.Ordinal))
            {
                var relative = Path.GetRelativePath(root, file);
                if (Path.GetRelativePath(dir, file).Split(Path.DirectorySeparatorChar).Any(part => part.StartsWith('.')))
                    hidden.Add(new(relative, HiddenFileReason));
                else
                    candidates.Add((relative, className));
            }
        }

        // Content check of every candidate: the first bytes, or (default) a complete decode, in parallel.
        var problems = new string?[candidates.Count];
        Parallel.For(0, candidates.Count, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, i =>
        {
            var full = Path.Join(root, candidates[i].Relative);
            problems[i] = options.VerifyImages
                ? ImageDecoder.Check(full, options.Decode)
                : ImageFormatSniffer.Detect(full, out var problem) is null ? problem : null;
        });
        var skipped = new List<SkippedFile>(hidden);
        var images = new List<ImageFolderEntry>(candidates.Count);
        for (int i = 0; i < candidates.Count; i++)
        {
            if (problems[i] is { } problem) skipped.Add(new(candidates[i].Relative, problem));
            else images.Add(new ImageFolderEntry { ImagePath = candidates[i].Relative, Label = candidates[i].Class });
        }
        skipped.Sort((a, b) => StringComparer.Ordinal.Compare(a.Path, b.Path));

        var classes = classDirs.Where(c => images.Any(e => e.Label == c)).ToList();
        var emptyClasses = classDirs.Except(classes).ToList();
        string Report() => Summarize(root, images.Count, skipped, 5) is { } s ? " " + s : "";
        if (classes.Count == 0)
            throw new InvalidDataException($"Image folder '{root}' has no class subfolders with images. Expected root/<class>/<image>, e.g. {Path.Combine(root, "cat", "1.jpg")}." + Report());
        if (emptyClasses.Count > 0)
            throw new InvalidDataException($"Image folder '{root}': class folder(s) {string.Join(", ", emptyClasses.Select(c => $"'{c}'"))} contain no usable images. Remove them or add images." + Report());
        if (classes.Count == 1)
            throw new InvalidDataException($"Image folder '{root}' has a single class ('{classes[0]}'); classification needs at least two class subfolders, e.g. {Path.Combine(root, "cat")} and {Path.Combine(root, "dog")}.");
        var scan = new ImageFolderScan(Path.GetFullPath(root), classes, images, skipped);
        if (options.FailFast && skipped.Any(s => s.Reason != HiddenFileReason))
            throw new InvalidDataException($"Image folder '{root}' has files that are not usable images (stopping before training because fail-fast is on). {scan.SkippedSummary()}");
        return scan;
    }

    internal static string? Summarize(string root, int used, IReadOnlyList<SkippedFile> skipped, int maxListed)
    {
        if (skipped.Count == 0) return null;
        var listed = skipped.Where(s => s.Reason != HiddenFileReason).ToList();
        int hiddenCount = skipped.Count - listed.Count;
        var text = new System.Text.StringBuilder($"Skipped {skipped.Count} file(s) in '{root}' ({used} images used)");
        if (hiddenCount > 0) text.Append($"; {hiddenCount} hidden");
        if (listed.Count > 0)
        {
            text.Append($"; {listed.Count} not usable: ");
            text.Append(string.Join("; ", listed.Take(maxListed).Select(s => $"{s.Path}: {s.Reason}")));
            if (listed.Count > maxListed) text.Append($"; and {listed.Count - maxListed} more");
        }
        return text.Append('.').ToString();
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
