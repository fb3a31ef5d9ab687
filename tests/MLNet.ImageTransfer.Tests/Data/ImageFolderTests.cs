using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ImageTransfer.Data;

namespace MLNet.ImageTransfer.Tests.Data;

public class ImageFolderTests
{
    static readonly byte[] Png1x1 = Convert.FromBase64String("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==");

    static string MakeFolder(params (string Path, byte[] Bytes)[] files)
    {
        var root = TestData.NewTempDir("folder");
        foreach (var (path, bytes) in files)
        {
            var full = Path.Combine(root, path);
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            File.WriteAllBytes(full, bytes);
        }
        return root;
    }

    [Fact]
    public void Classes_are_sorted_subfolders_and_images_are_recognised_by_content()
    {
        var root = MakeFolder(
            ("zebra/a.png", Png1x1),
            ("ant/png-named-jpg.jpg", Png1x1),       // a PNG with the wrong extension is an image
            ("ant/notes.jpg", "not an image"u8.ToArray()),
            ("ant/empty.png", []),
            ("ant/.hidden.png", Png1x1),
            ("Bee/b.bin", Png1x1),                    // no extension, still an image
            (".git/c.png", Png1x1));                  // hidden folders are not classes

        var scan = ImageFolder.Scan(root);
        Assert.Equal(["Bee", "ant", "zebra"], scan.ClassNames); // ordinal order, like torchvision's sorted()
        Assert.Equal(new[] { "Bee/b.bin", "ant/png-named-jpg.jpg", "zebra/a.png" }.OrderBy(p => p, StringComparer.Ordinal), scan.Images.Select(i => i.ImagePath.Replace(Path.DirectorySeparatorChar, '/')).OrderBy(p => p, StringComparer.Ordinal));
        Assert.Contains(scan.Skipped, s => s.Path.EndsWith("notes.jpg") && s.Reason.Contains("not a JPEG"));
        Assert.Contains(scan.Skipped, s => s.Path.EndsWith("empty.png") && s.Reason == "empty file");
        Assert.Contains(scan.Skipped, s => s.Path.EndsWith(".hidden.png") && s.Reason == "hidden file");
    }

    [Fact]
    public void Unusable_folders_get_clear_messages()
    {
        Assert.Contains("does not exist", Assert.Throws<DirectoryNotFoundException>(() => ImageFolder.Scan("/nonexistent/xyz")).Message);
        var single = MakeFolder(("only/a.png", Png1x1));
        Assert.Contains("single class", Assert.Throws<InvalidDataException>(() => ImageFolder.Scan(single)).Message);
        var emptyClass = MakeFolder(("a/a.png", Png1x1), ("b/readme.txt", "x"u8.ToArray()), ("c/c.png", Png1x1));
        Assert.Contains("'b'", Assert.Throws<InvalidDataException>(() => ImageFolder.Scan(emptyClass)).Message);
        var flat = MakeFolder(("a.png", Png1x1));
        Assert.Contains("no class subfolders", Assert.Throws<InvalidDataException>(() => ImageFolder.Scan(flat)).Message);
    }

    [Fact]
    public void Stratified_split_keeps_class_proportions_and_is_seeded()
    {
        var ml = new MLContext();
        var root = TestData.ShapesFolder(perClass: 12, size: 16, seed: 2);
        var data = ImageFolder.Load(ml, root);
        var a = ImageFolder.StratifiedSplit(ml, data, 0.25, seed: 4);
        var test = ml.Data.CreateEnumerable<ImageFolderEntry>(a.TestSet, false).ToList();
        var train = ml.Data.CreateEnumerable<ImageFolderEntry>(a.TrainSet, false).ToList();
        Assert.Equal(36, test.Count + train.Count);
        Assert.All(test.GroupBy(e => e.Label), g => Assert.Equal(3, g.Count()));
        Assert.Empty(test.Select(e => e.ImagePath).Intersect(train.Select(e => e.ImagePath)));

        var again = ml.Data.CreateEnumerable<ImageFolderEntry>(ImageFolder.StratifiedSplit(ml, data, 0.25, seed: 4).TestSet, false).Select(e => e.ImagePath);
        Assert.Equal(test.Select(e => e.ImagePath), again);
        var other = ml.Data.CreateEnumerable<ImageFolderEntry>(ImageFolder.StratifiedSplit(ml, data, 0.25, seed: 5).TestSet, false).Select(e => e.ImagePath);
        Assert.NotEqual(test.Select(e => e.ImagePath), other);
    }

    [Fact]
    public void Workflow_rows_resolve_absolute_paths_as_they_are_read_and_keep_the_row_count()
    {
        var root = MakeFolder(("ant/a.png", Png1x1), ("ant/b.png", Png1x1), ("bee/c.png", Png1x1));
        var scan = ImageFolder.Scan(root);
        var rows = AbsolutePathRows.Of(scan);

        var view = new MLContext().Data.LoadFromEnumerable(rows);
        Assert.Equal(3, view.GetRowCount()); // ML.NET knows the count (the trainer sizes its cache from it)
        var paths = view.GetColumn<string>(ImageFolder.ImagePathColumn).ToArray();
        Assert.Equal(scan.Images.Select(e => Path.Combine(scan.Root, e.ImagePath)), paths);
        Assert.All(paths, p => Assert.True(Path.IsPathRooted(p) && File.Exists(p), p));
        Assert.Equal(["ant", "ant", "bee"], view.GetColumn<string>(ImageFolder.LabelColumn));
        Assert.Equal(paths, view.GetColumn<string>(ImageFolder.ImagePathColumn)); // a second pass reads the same rows
        Assert.All(scan.Images, e => Assert.False(Path.IsPathRooted(e.ImagePath))); // the scan itself keeps relative paths
        Assert.Throws<NotSupportedException>(() => rows.Add(new ImageFolderEntry()));
    }
}
