using Microsoft.ML;
using MLNet.ImageTransfer.Data;
using SkiaSharp;

namespace MLNet.ImageTransfer.Tests.Data;

/// <summary>A folder as real users have it trains without intervention, and what was left out is reported.</summary>
public class MessyFolderTests
{
    /// <summary>
    /// Class "a": every messy fixture (EXIF-rotated, CMYK, 16-bit, palette, animated, grayscale, RGBA, WebP, BMP, a PNG
    /// named .jpg). Class "b": plain images, a 2×3 one, a 3000×2000 JPEG and PNG. Both: corrupt, truncated, empty and
    /// non-image files, a decompression bomb, hidden files and a hidden folder.
    /// </summary>
    static (string Root, string[] Bad) BuildMessyFolder()
    {
        var root = TestData.NewTempDir("messy");
        void Put(string relative, byte[] bytes)
        {
            var full = Path.Combine(root, relative);
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            File.WriteAllBytes(full, bytes);
        }
        foreach (var fixture in MessyImages.All) Put(Path.Combine("a", Path.GetFileName(fixture)), File.ReadAllBytes(fixture));
        for (int i = 0; i < 6; i++) Put($"b/plain{i}.png", MessyImages.Encode(40 + i, 30, shade: (byte)(i * 40)));
        Put("b/tiny.png", MessyImages.Encode(2, 3));
        Put("b/huge.jpg", MessyImages.Encode(3000, 2000, SKEncodedImageFormat.Jpeg));
        Put("b/huge.png", MessyImages.Encode(3000, 2000));

        var jpeg = MessyImages.Encode(64, 48, SKEncodedImageFormat.Jpeg);
        var garbage = new byte[3000];
        new Random(3).NextBytes(garbage);
        garbage[0] = 0xFF; garbage[1] = 0xD8; garbage[2] = 0xFF;
        Put("a/truncated.jpg", jpeg[..(jpeg.Length / 2)]);
        Put("a/corrupt.jpg", garbage);
        Put("b/empty.jpg", []);
        Put("b/notes.txt.jpg", "shopping list"u8.ToArray());
        Put("b/bomb.png", MessyImages.PngHeaderOnly(60_000, 60_000));
        Put("a/.DS_Store", [0, 0, 0, 1, 0x42, 0x75, 0x64, 0x31]);
        Put("b/._plain0.png", MessyImages.Encode(8, 8));
        Put("a/.ipynb_checkpoints/copy.png", MessyImages.Encode(8, 8));
        return (root, ["a/truncated.jpg", "a/corrupt.jpg", "b/empty.jpg", "b/notes.txt.jpg", "b/bomb.png"]);
    }

    static string Slashes(string path) => path.Replace(Path.DirectorySeparatorChar, '/');

    [Fact]
    public void A_messy_folder_trains_and_reports_what_it_skipped()
    {
        var (root, bad) = BuildMessyFolder();
        var ml = new MLContext(seed: 1);
        var trained = ImageClassificationWorkflow.TrainFromFolder(ml, root, TestData.TinyOptions(epochs: 1), validationSplit: 0.25, splitSeed: 1);

        var scan = trained.TrainingScan!;
        Assert.Equal(["a", "b"], scan.ClassNames);
        Assert.Equal(MessyImages.All.Count(), scan.CountOf("a"));
        Assert.Equal(9, scan.CountOf("b"));
        var skipped = scan.Skipped.ToDictionary(s => Slashes(s.Path), s => s.Reason);
        Assert.Contains("truncated", skipped["a/truncated.jpg"]);
        Assert.Contains("corrupt", skipped["a/corrupt.jpg"]);
        Assert.Equal("empty file", skipped["b/empty.jpg"]);
        Assert.Contains("not a JPEG", skipped["b/notes.txt.jpg"]);
        Assert.Contains("decompression-bomb", skipped["b/bomb.png"]);
        Assert.Equal(ImageFolder.HiddenFileReason, skipped["a/.DS_Store"]);
        Assert.Equal(ImageFolder.HiddenFileReason, skipped["b/._plain0.png"]);
        Assert.Equal(ImageFolder.HiddenFileReason, skipped["a/.ipynb_checkpoints/copy.png"]);
        Assert.Equal(8, skipped.Count);

        var summary = trained.SkippedSummary(maxListed: 3)!;
        Assert.StartsWith($"Skipped 8 file(s) in '{Path.GetFullPath(root)}' ({scan.Images.Count} images used); 3 hidden; 5 not usable: ", summary);
        Assert.Contains("a/corrupt.jpg: corrupt", Slashes(summary)); // the first paths, sorted, with reasons
        Assert.Contains("and 2 more", summary);
        Assert.Empty(trained.SkippedRows); // the scan caught everything: the trainer saw only good images

        Assert.Single(trained.History.Epochs);
        Assert.True(double.IsFinite(trained.History.Epochs[0].TrainLoss));
        // Every usable image, exotic ones included, is scored by the saved pipeline.
        var predictions = ImageClassificationWorkflow.Predict(ml, trained.Model, scan.Images.Select(e => Path.Combine(root, e.ImagePath)), top: 2);
        Assert.Equal(scan.Images.Count, predictions.Count);
        Assert.All(predictions, p => Assert.True(p.Top.All(t => float.IsFinite(t.Probability)), p.ImagePath));
        // Asked about a bad file, prediction names it and the problem.
        var e = Assert.Throws<InvalidDataException>(() => ImageClassificationWorkflow.Predict(ml, trained.Model, [Path.Combine(root, "a", "truncated.jpg")]));
        Assert.True(e.Message.Contains("truncated.jpg: truncated"), e.Message);
    }

    [Fact]
    public void Fail_fast_stops_before_training_with_the_same_report()
    {
        var (root, bad) = BuildMessyFolder();
        var options = TestData.TinyOptions(epochs: 1);
        int epochs = 0;
        options.EpochCompleted = _ => epochs++;
        var e = Assert.Throws<InvalidDataException>(() => ImageClassificationWorkflow.TrainFromFolder(new MLContext(1), root, options,
            folderOptions: new ImageFolderOptions { FailFast = true }));
        Assert.Equal(0, epochs);
        Assert.Contains("fail-fast", e.Message);
        Assert.Contains("5 not usable", e.Message);
        foreach (var path in bad) Assert.Contains(path, Slashes(e.Message));
    }

    [Fact]
    public void A_class_with_only_broken_files_is_named_with_the_reasons()
    {
        var root = TestData.NewTempDir("brokenclass");
        Directory.CreateDirectory(Path.Combine(root, "good"));
        Directory.CreateDirectory(Path.Combine(root, "other"));
        Directory.CreateDirectory(Path.Combine(root, "broken"));
        File.WriteAllBytes(Path.Combine(root, "good", "1.png"), MessyImages.Encode(8, 8));
        File.WriteAllBytes(Path.Combine(root, "other", "1.png"), MessyImages.Encode(8, 8));
        var png = MessyImages.Encode(64, 64);
        File.WriteAllBytes(Path.Combine(root, "broken", "cut.png"), png[..(png.Length / 2)]);
        var e = Assert.Throws<InvalidDataException>(() => ImageFolder.Scan(root));
        Assert.Contains("'broken' contain no usable images", e.Message);
        Assert.Contains("cut.png: truncated", e.Message);
    }

    [Fact]
    public void Trainers_skip_rows_whose_image_fails_to_load_instead_of_aborting()
    {
        // A pipeline built by hand, without the verifying scan: one file is garbage behind a JPEG signature.
        var root = TestData.NewTempDir("unverified");
        foreach (var c in new[] { "x", "y" })
            for (int i = 0; i < 4; i++)
                File.WriteAllBytes(Path.Combine(Directory.CreateDirectory(Path.Combine(root, c)).FullName, $"{i}.png"), MessyImages.Encode(20, 20, shade: (byte)(c == "x" ? 0 : 200)));
        var garbage = new byte[500];
        new Random(5).NextBytes(garbage);
        garbage[0] = 0xFF; garbage[1] = 0xD8; garbage[2] = 0xFF;
        File.WriteAllBytes(Path.Combine(root, "y", "bad.jpg"), garbage);

        var ml = new MLContext(seed: 1);
        var data = ImageFolder.Load(ml, root, new ImageFolderOptions { VerifyImages = false });
        Assert.Equal(9, data.GetRowCount());
        foreach (var loader in new IEstimator<ITransformer>[]
                 {
                     ml.Transforms.LoadImages("Image", root, "ImagePath"),                 // ML.NET's: throws on the file
                     ml.Transforms.LoadImagesRobust("Image", root, "ImagePath"),           // ours: no image for it
                 })
        {
            var trainer = ml.MulticlassClassification.Trainers.ImageTransfer(TestData.TinyOptions(epochs: 1));
            ml.Transforms.Conversion.MapValueToKey("Label").Append(loader).Append(trainer).Fit(data);
            var row = Assert.Single(trainer.LastSkippedRows);
            Assert.Equal(Path.Combine("y", "bad.jpg"), row.Path);
        }
    }
}
