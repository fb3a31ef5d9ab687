using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Onnx;
using MLNet.ImageTransfer.Weights;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.MLNet;

/// <summary>
/// <c>ml.Transforms.FeaturizeImage</c>: a frozen backbone's pooled features as an ML.NET vector column, feeding any
/// ML.NET trainer, saved and loaded through ML.NET's .zip.
/// </summary>
public class ImageFeaturizerTests(ITestOutputHelper output)
{
    static readonly ImagePreprocessing Prep32 = ImagePreprocessing.TorchVision(32) with { Resize = ResizeMode.Stretch };

    static ImageFeaturizerOptions TinyOptions(string? weights = null, ArchitectureConfig? architecture = null) => new()
    {
        CustomArchitecture = architecture ?? TestData.TinyResNet,
        Weights = weights,
        Preprocessing = Prep32,
        Seed = 1,
        BatchSize = 8,
    };

    sealed class Row
    {
        public string ImagePath { get; set; } = "";
        public string Label { get; set; } = "";
    }

    static readonly Lazy<string> ColourFolder = new(() => WriteColourFolder(perClass: 16, size: 32, seed: 5));

    /// <summary>
    /// Three classes told apart by hue (reddish, greenish, bluish noise at random brightness): a signal that a random
    /// backbone's pooled features carry, so the downstream trainer has something to learn without a pretrained network.
    /// Whether pretrained weights reach the features is checked separately, against the reference network.
    /// </summary>
    static string WriteColourFolder(int perClass, int size, int seed)
    {
        var root = TestData.NewTempDir("colours");
        var random = new Random(seed);
        foreach (var (name, channel) in new[] { ("red", 2), ("green", 1), ("blue", 0) })
        {
            Directory.CreateDirectory(Path.Combine(root, name));
            for (int i = 0; i < perClass; i++)
            {
                using var bitmap = new SkiaSharp.SKBitmap(new SkiaSharp.SKImageInfo(size, size, SkiaSharp.SKColorType.Bgra8888, SkiaSharp.SKAlphaType.Opaque));
                var pixels = new byte[size * size * 4];
                double brightness = 0.4 + 0.6 * random.NextDouble();
                for (int p = 0; p < size * size; p++)
                {
                    for (int c = 0; c < 3; c++)
                        pixels[p * 4 + c] = (byte)Math.Clamp((c == channel ? 200 * brightness : 60 * random.NextDouble()) + random.Next(-30, 30), 0, 255);
                    pixels[p * 4 + 3] = 255;
                }
                System.Runtime.InteropServices.Marshal.Copy(pixels, 0, bitmap.GetPixels(), pixels.Length);
                using var data = bitmap.Encode(SkiaSharp.SKEncodedImageFormat.Png, 100);
                using var file = File.Create(Path.Combine(root, name, $"{name}_{i:D3}.png"));
                data.SaveTo(file);
            }
        }
        return root;
    }

    [Fact]
    public void FeaturizeImage_then_LbfgsMaximumEntropy_trains_evaluates_saves_and_loads_in_a_fresh_context()
    {
        var root = ColourFolder.Value;
        var ml = new MLContext(seed: 1);
        var all = ImageFolder.Load(ml, root);
        var split = ImageFolder.StratifiedSplit(ml, all, testFraction: 0.25, seed: 1);

        var pipeline = TestData.Prefix(ml, root)
            .Append(ml.Transforms.FeaturizeImage("Features", "Image", TinyOptions()))
            .Append(ml.Transforms.NormalizeMeanVariance("Features"))
            .Append(ml.MulticlassClassification.Trainers.LbfgsMaximumEntropy("Label", "Features"))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"));
        var model = pipeline.Fit(split.TrainSet);

        var scored = model.Transform(split.TestSet);
        var featureColumn = scored.Schema["Features"];
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, TestData.TinyResNet.Build(1).NumFeatures), featureColumn.Type);
        var metrics = ml.MulticlassClassification.Evaluate(scored);
        output.WriteLine($"held-out micro accuracy {metrics.MicroAccuracy:F3}, log-loss {metrics.LogLoss:F3}");
        output.WriteLine(metrics.ConfusionMatrix.GetFormattedConfusionTable());
        Assert.Equal(3, metrics.ConfusionMatrix.NumberOfClasses);
        Assert.True(metrics.MicroAccuracy >= 0.8, $"held-out accuracy {metrics.MicroAccuracy} on an easy three-class problem");

        var dir = TestData.NewTempDir("featurizer");
        var path = Path.Combine(dir, "featurizer-lbfgs.zip");
        ml.Model.Save(model, all.Schema, path);

        var fresh = new MLContext().RegisterImageTransfer();
        var loaded = fresh.Model.Load(path, out var inputSchema);
        Assert.Equal(all.Schema.Select(c => c.Name), inputSchema.Select(c => c.Name));
        var rescored = loaded.Transform(fresh.Data.LoadFromEnumerable(fresh.Data.CreateEnumerable<Row>(split.TestSet, false).ToList()));

        var before = scored.GetColumn<float[]>("Score").ToList();
        var after = rescored.GetColumn<float[]>("Score").ToList();
        Assert.Equal(before.Count, after.Count);
        double maxDiff = before.Zip(after, (a, b) => a.Zip(b, (x, y) => Math.Abs(x - y)).Max()).Max();
        output.WriteLine($"max |score before save - after load| = {maxDiff:E2}");
        Assert.InRange(maxDiff, 0, 1e-6);
        Assert.Equal(scored.GetColumn<string>("PredictedLabel"), rescored.GetColumn<string>("PredictedLabel"));
        Assert.Equal(scored.GetColumn<float[]>("Features").SelectMany(f => f), rescored.GetColumn<float[]>("Features").SelectMany(f => f));

        // The row-at-a-time path (PredictionEngine) gives the same features as the batched data view.
        var engine = fresh.Model.CreatePredictionEngine<Row, FeaturesRow>(loaded);
        var first = fresh.Data.CreateEnumerable<Row>(split.TestSet, false).First();
        var one = engine.Predict(first);
        var batched = scored.GetColumn<float[]>("Features").First();
        Assert.Equal(batched.Length, one.Features.Length);
        Assert.InRange(one.Features.Zip(batched, (x, y) => Math.Abs(x - y)).Max(), 0, 1e-5);
    }

    sealed class FeaturesRow
    {
        public float[] Features { get; set; } = [];
        public string PredictedLabel { get; set; } = "";
    }

    [Theory]
    [InlineData("densenet_tiny")]
    [InlineData("resnet_tiny_bottleneck")]
    [InlineData("vgg_tiny_bn")]
    public void Features_are_the_pretrained_backbones_pooled_features_and_export_to_onnx(string fixture)
    {
        // Pretrained weights from a file (with a 5-class classifier the featurizer ignores).
        var (reference, io) = Onnx.OnnxTestModels.LoadFixture(fixture);
        using (reference) using (io)
        {
            var root = TestData.ShapesFolder(perClass: 2, size: 32);
            var ml = new MLContext(seed: 1);
            var data = TestData.Prefix(ml, root).Fit(ImageFolder.Load(ml, root)).Transform(ImageFolder.Load(ml, root));
            var featurizer = ml.Transforms.FeaturizeImage("Features", "Image", TinyOptions(Fixtures.Path_($"{fixture}.safetensors"), reference.Config)).Fit(data);
            Assert.Equal(reference.NumFeatures, featurizer.FeatureDimension);
            var features = featurizer.Transform(data).GetColumn<float[]>("Features").ToList();

            // The same images through the reference network by hand.
            using var scope = NewDisposeScope();
            var batch = stack(ResizedImages(data));
            int count = (int)batch.shape[0];
            Tensor expected;
            using (no_grad()) expected = reference.ForwardPooledFeatures(ImageTensors.Normalize(batch, Prep32));
            var expectedRows = Enumerable.Range(0, count).Select(i => expected[i].data<float>().ToArray()).ToList();
            double max = features.Zip(expectedRows, (a, b) => a.Zip(b, (x, y) => Math.Abs(x - y)).Max()).Max();
            output.WriteLine($"{fixture}: max |featurizer - reference| = {max:E2}");
            Assert.InRange(max, 0, 1e-6);

            // Exported as an ONNX feature extractor, fed the same resized pixels.
            var onnxBytes = OnnxModelExport.FromFeaturizer(featurizer).ToBytes();
            using var onnx = OnnxImageModel.Load(onnxBytes);
            var pixels = batch.to_type(ScalarType.Float32).data<float>().ToArray();
            var onnxRows = onnx.RunRows(pixels, OnnxNames.Features);
            double onnxMax = onnxRows.Zip(features, (a, b) => a.Zip(b, (x, y) => Math.Abs(x - y)).Max()).Max();
            output.WriteLine($"{fixture}: max |onnx - featurizer| = {onnxMax:E2}");
            Assert.InRange(onnxMax, 0, 1e-4);
            featurizer.Dispose();
        }
    }

    /// <summary>Each row's image as the network's resized uint8 [3,S,S] (read inside the cursor: ML.NET disposes images as it moves on).</summary>
    static Tensor[] ResizedImages(IDataView data)
    {
        var column = data.Schema["Image"];
        using var cursor = data.GetRowCursor([column]);
        var getter = cursor.GetGetter<MLImage>(column);
        var result = new List<Tensor>();
        MLImage image = null!;
        while (cursor.MoveNext())
        {
            getter(ref image);
            result.Add(ImageTensors.ToResizedBytes(image, Prep32));
        }
        return result.ToArray();
    }

    [Fact]
    public void Wrong_columns_and_options_give_clear_errors()
    {
        var ml = new MLContext(seed: 1);
        var rows = ml.Data.LoadFromEnumerable(new[] { new Row { ImagePath = "a.png", Label = "x" } });
        var e = Assert.Throws<ArgumentException>(() => ml.Transforms.FeaturizeImage("Features", "Image", TinyOptions()).Fit(rows));
        Assert.Contains("LoadImages", e.Message);
        var e2 = Assert.Throws<ArgumentException>(() => ml.Transforms.FeaturizeImage("Features", "ImagePath", TinyOptions()).Fit(rows));
        Assert.Contains("must hold images", e2.Message);
        Assert.Throws<ArgumentException>(() => ml.Transforms.FeaturizeImage(architecture: "resnet51"));
        Assert.Throws<FileNotFoundException>(() => ml.Transforms.FeaturizeImage(architecture: "resnet18", weights: "/nonexistent/resnet18.safetensors"));
    }

    [Fact]
    public void A_row_without_an_image_gets_missing_features()
    {
        var root = TestData.ShapesFolder(perClass: 2, size: 32);
        var ml = new MLContext(seed: 1);
        var rows = ml.Data.LoadFromEnumerable(new[]
        {
            new Row { ImagePath = Directory.EnumerateFiles(root, "*.png", SearchOption.AllDirectories).First(), Label = "a" },
            new Row { ImagePath = "", Label = "b" },
        });
        var model = ml.Transforms.LoadImages("Image", null, "ImagePath").Append(ml.Transforms.FeaturizeImage("Features", "Image", TinyOptions())).Fit(rows);
        var features = model.Transform(rows).GetColumn<float[]>("Features").ToList();
        Assert.All(features[0], v => Assert.False(float.IsNaN(v)));
        Assert.All(features[1], v => Assert.True(float.IsNaN(v)));
    }
}
