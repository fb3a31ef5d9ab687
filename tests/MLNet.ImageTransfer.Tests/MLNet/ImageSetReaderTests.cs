using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ImageTransfer.Augmentation;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Tests.Data;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.MLNet;

/// <summary>
/// The training cache's reader on the photo fixtures, through <c>LoadImagesRobust</c> (the workers decode the files
/// themselves): evaluation-geometry reads are exactly what scoring computes, validation rows of a split too, in row
/// order; training reads may decode JPEGs smaller (DCT scaling) and stay close to the full decode.
/// </summary>
public class ImageSetReaderTests(ITestOutputHelper output)
{
    /// <summary>The photos in two class folders (several copies, so that rows outnumber the workers), and the robust-loader view over them.</summary>
    static (IDataView View, string[] Classes, string[] Files) PhotoFolder(MLContext ml)
    {
        var root = TestData.NewTempDir("reader-photos");
        var photos = PhotoFixtures.Photos;
        for (int copy = 0; copy < 3; copy++)
            for (int i = 0; i < photos.Count; i++)
            {
                var dir = Directory.CreateDirectory(Path.Combine(root, i % 2 == 0 ? "even" : "odd")).FullName;
                File.Copy(photos[i].Jpeg, Path.Combine(dir, $"{copy}-{photos[i].Name}.jpg"));
            }
        var rows = ImageFolder.Load(ml, root);
        var view = ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Transforms.LoadImagesRobust("Image", root, "ImagePath")).Fit(rows).Transform(rows);
        var files = view.GetColumn<ReadOnlyMemory<char>>("ImagePath").Select(p => Path.Combine(root, p.ToString())).ToArray();
        return (view, ClassSchema.ClassNames(view.Schema["Label"]), files);
    }

    static byte[] Row(Training.LabeledImageSet set, int row)
    {
        var (h, w) = set.SizeOf(row);
        var bytes = new byte[3 * h * w];
        set.Read(row, bytes);
        return bytes;
    }

    [Fact]
    public void Evaluation_reads_and_validation_rows_are_what_scoring_computes_in_row_order()
    {
        var ml = new MLContext(seed: 1);
        var (view, classes, files) = PhotoFolder(ml);
        var preprocessing = ImagePreprocessing.TorchVision(64);
        byte[] Expected(string file)
        {
            using var image = ImageDecoder.Decode(file);
            using var tensor = ImageTensors.ToResizedBytes(image, preprocessing);
            return tensor.data<byte>().ToArray();
        }

        using var set = ImageSetReader.Read(view, "Image", "Label", classes, preprocessing, "test data");
        Assert.Equal(files.Length, set.Count);
        for (int i = 0; i < files.Length; i++) Assert.True(Expected(files[i]).AsSpan().SequenceEqual(Row(set, i)), files[i]);

        // A split with crops: validation rows at the evaluation geometry, decoded at full size, in row order.
        var source = AugmentationSource.For(preprocessing, AugmentationPipeline.Parse("resized-crop,hflip"));
        var (train, validation) = ImageSetReader.ReadSplit(view, "Image", "Label", classes, preprocessing, "test data", out var skipped,
            source, ImageSetReader.TrainingReducingGap, validationFraction: 0.4, seed: 3);
        using (train)
        using (validation)
        {
            Assert.Empty(skipped);
            Assert.Equal(files.Length, train.Count + validation!.Count);
            Assert.False(train.HoldsEvaluationGeometry);
            Assert.True(validation.Count > 0 && train.Count > 0);
            var labels = view.GetColumn<uint>("Label").Select(k => (int)k - 1).ToArray();
            var held = Training.LabeledImageSet.StratifiedSample(labels, 0.4, new Random(3)).Order().ToArray();
            Assert.Equal(held.Length, validation.Count);
            for (int v = 0; v < held.Length; v++)
            {
                Assert.Equal(labels[held[v]], validation.Labels[v]);
                Assert.True(Expected(files[held[v]]).AsSpan().SequenceEqual(Row(validation, v)), files[held[v]]);
            }
        }
    }

    [Fact]
    public void Training_reads_may_decode_smaller_and_stay_close_to_the_full_decode()
    {
        var ml = new MLContext(seed: 1);
        var (view, classes, files) = PhotoFolder(ml);
        // crop at 32 pixels: sources are the photos resized to 37 on the shorter side, far smaller than the photos,
        // so every JPEG can be decoded at a quarter or an eighth of its size and still stay twice the source's size.
        var preprocessing = ImagePreprocessing.TorchVision(32);
        var source = AugmentationSource.For(preprocessing, AugmentationPipeline.Parse("crop"));
        using var exact = ImageSetReader.Read(view, "Image", "Label", classes, preprocessing, "test data", out _, source, reducingGap: 0);
        using var reduced = ImageSetReader.Read(view, "Image", "Label", classes, preprocessing, "test data", out _, source, ImageSetReader.TrainingReducingGap);
        Assert.Equal(files.Length, reduced.Count);
        int differ = 0;
        var means = new List<double>();
        for (int i = 0; i < files.Length; i++)
        {
            using var image = ImageDecoder.Decode(files[i]);
            var plan = source.Plan(image.Width, image.Height);
            Assert.Equal((plan.Height, plan.Width), exact.SizeOf(i));
            Assert.Equal(exact.SizeOf(i), reduced.SizeOf(i));
            // Without a gap: the full decode, resized as the source plan says, bit for bit.
            var expected = new byte[3 * plan.Width * plan.Height];
            using (var pixels = ImageGeometry.OpaquePixels.Of(image))
                ImageGeometry.Resample(pixels.Source, plan, expected, source.Layout, preprocessing.Channels);
            Assert.True(expected.AsSpan().SequenceEqual(Row(exact, i)), files[i]);

            var smaller = Row(reduced, i);
            double mean = expected.Zip(smaller, (a, b) => Math.Abs(a - b)).Average();
            if (mean > 0) differ++;
            output.WriteLine($"{Path.GetFileName(files[i])}: {image.Width}×{image.Height} → {plan.Width}×{plan.Height}, mean |Δ| {mean:F3} against the full decode");
            means.Add(mean);
        }
        output.WriteLine($"mean |Δ| {means.Average():F3}, worst {means.Max():F3}");
        // "Within a few grey levels": at these 37-pixel sources, where the DCT's near-box filter and Pillow's
        // triangle differ most, each photo stays within two grey levels on average.
        Assert.All(means, m => Assert.InRange(m, 0, 2.0));
        // The smaller decodes did happen (DCT scaling is not the same filter as the resize).
        Assert.True(differ > 0);
    }
}
