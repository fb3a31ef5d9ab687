using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Onnx;
using MLNet.ImageTransfer.Tests.Cli;
using Xunit.Abstractions;

namespace MLNet.ImageTransfer.Tests.Onnx;

/// <summary>
/// Exporting trained ML.NET pipelines: the classifier inside a fitted or saved model, its metadata, its use by ML.NET's
/// own <c>ApplyOnnxModel</c> (no MLNet.ImageTransfer component at scoring time), and the CLI's <c>export</c>.
/// </summary>
public class OnnxPipelineTests(ITestOutputHelper output)
{
    sealed class Row
    {
        public string ImagePath { get; set; } = "";
        public string Label { get; set; } = "";
    }

    static readonly Lazy<(string Root, string ModelPath, string[] Classes)> Trained = new(() =>
    {
        var root = TestData.ShapesFolder(perClass: 8, size: 32);
        var ml = new MLContext(seed: 1);
        var (model, all) = TestData.FitTinyPipeline(ml, root, epochs: 1);
        var path = Path.Combine(TestData.NewTempDir("onnx-pipeline"), "model.zip");
        ml.Model.Save(model, all.Schema, path);
        return (root, path, ImageClassificationWorkflow.FindClassifier(model).ClassNames.ToArray());
    });

    [Fact]
    public void A_saved_model_exports_with_class_names_and_preprocessing_in_its_metadata()
    {
        var (_, modelPath, classes) = Trained.Value;
        var ml = new MLContext().RegisterImageTransfer();
        var loaded = ml.Model.Load(modelPath, out _);
        var classifier = ImageClassificationWorkflow.FindClassifier(loaded);
        var export = OnnxModelExport.FromPipeline(loaded);
        Assert.True(export.IsClassifier);
        var bytes = export.ToBytes();

        using var onnx = OnnxImageModel.Load(bytes);
        Assert.Equal(OnnxNames.Pixels, onnx.InputName);
        Assert.Null(onnx.FixedBatchSize);
        Assert.Equal(32, onnx.ImageSize);
        Assert.Equal([OnnxNames.Probabilities, OnnxNames.Logits], onnx.OutputNames);
        Assert.Equal(classes, onnx.ClassNames);
        Assert.Equal(classifier.Preprocessing, onnx.Preprocessing);
        Assert.Equal("classifier", onnx.Metadata[OnnxMetadataKeys.Kind]);
        Assert.Equal("true", onnx.Metadata[OnnxMetadataKeys.PreprocessingIncluded]);
        Assert.Equal("true", onnx.Metadata[OnnxMetadataKeys.BatchNormFolded]);
        Assert.Contains("RGB pixel values 0-255", onnx.Metadata[OnnxMetadataKeys.InputDescription]);
        var architecture = JsonSerializer.Deserialize<global::MLNet.ImageTransfer.Models.ArchitectureConfig>(onnx.Metadata[OnnxMetadataKeys.Architecture], global::MLNet.ImageTransfer.Models.ClassifierDescription.Json);
        Assert.Equal(classifier.Description.Architecture, architecture);

        var report = export.Verify(bytes, images: 4);
        output.WriteLine(report.ToString());
        Assert.InRange(report.Max, 0, 1e-4);
    }

    [Fact]
    public void MLNet_ApplyOnnxModel_scores_the_export_like_the_image_classifier_transformer()
    {
        var (root, modelPath, classes) = Trained.Value;
        var ml = new MLContext().RegisterImageTransfer();
        var loaded = ml.Model.Load(modelPath, out _);
        var onnxBytes = OnnxModelExport.FromPipeline(loaded).ToBytes(new OnnxExportOptions { Outputs = OnnxClassifierOutputs.Probabilities });
        var data = ImageFolder.Load(ml, root);
        var expected = loaded.Transform(data).GetColumn<float[]>("Score").ToList();

        // Scoring with ML.NET's own components only: the images are 32×32 already (the network's input size, so ResizeImages
        // changes nothing); ExtractPixels gives RGB planes 0–255, as the graph expects.
        var onnxPipeline = ml.Transforms.LoadImages("Image", root, "ImagePath")
            .Append(ml.Transforms.ResizeImages("Image", 32, 32)) // ExtractPixels wants a known size; a no-op at 32×32
            .Append(ml.Transforms.ExtractPixels(OnnxNames.Pixels, "Image", interleavePixelColors: false, scaleImage: 1f, offsetImage: 0f))
            .Append(ml.Transforms.ApplyOnnxModel([OnnxNames.Probabilities], [OnnxNames.Pixels], new MemoryStream(onnxBytes),
                shapeDictionary: new Dictionary<string, int[]> { [OnnxNames.Pixels] = [1, 3, 32, 32] }, gpuDeviceId: null, fallbackToCpu: false, recursionLimit: 100));
        var onnxModel = onnxPipeline.Fit(data);
        AssertSameScores(expected, onnxModel.Transform(data).GetColumn<float[]>(OnnxNames.Probabilities).ToList(), "ApplyOnnxModel");

        // Saved and loaded by a context that knows nothing of MLNet.ImageTransfer: the ONNX bytes travel inside the .zip.
        var path = Path.Combine(TestData.NewTempDir("onnx-mlnet"), "onnx-scoring.zip");
        ml.Model.Save(onnxModel, data.Schema, path);
        var plain = new MLContext();
        var reloaded = plain.Model.Load(path, out _);
        AssertSameScores(expected, reloaded.Transform(plain.Data.LoadFromEnumerable(plain.Data.CreateEnumerable<Row>(data, false).ToList()))
            .GetColumn<float[]>(OnnxNames.Probabilities).ToList(), "ApplyOnnxModel, reloaded");
        Assert.Equal(3, classes.Length);
    }

    void AssertSameScores(List<float[]> expected, List<float[]> actual, string what)
    {
        Assert.Equal(expected.Count, actual.Count);
        double max = expected.Zip(actual, (a, b) =>
        {
            Assert.Equal(a.Length, b.Length);
            return a.Zip(b, (x, y) => Math.Abs(x - y)).Max();
        }).Max();
        output.WriteLine($"{what}: {actual.Count} images, max |onnx - transformer| score = {max:E2}");
        Assert.InRange(max, 0, 1e-4);
    }

    [Fact]
    public void Cli_export_writes_a_checked_onnx_file()
    {
        var (_, modelPath, classes) = Trained.Value;
        var onnxPath = Path.Combine(TestData.NewTempDir("cli-export"), "model.onnx");
        var (code, stdout, stderr) = CliProcess.Run("export", "--model", modelPath, "--onnx", onnxPath);
        output.WriteLine(stdout + stderr);
        Assert.True(code == 0, stdout + stderr);
        Assert.Contains("Checked on ONNX Runtime against TorchSharp", stdout);
        using var onnx = OnnxImageModel.Load(onnxPath);
        Assert.Equal(classes, onnx.ClassNames);

        var (code2, stdout2, stderr2) = CliProcess.Run("export", "--model", modelPath, "--onnx", onnxPath, "--no-preprocessing", "--no-fold-bn", "--outputs", "logits", "--opset", "17");
        Assert.True(code2 == 0, stdout2 + stderr2);
        using var raw = OnnxImageModel.Load(onnxPath);
        Assert.Equal(OnnxNames.NormalizedInput, raw.InputName);
        Assert.Equal([OnnxNames.Logits], raw.OutputNames);

        var (code3, _, stderr3) = CliProcess.Run("export", "--model", modelPath, "--onnx", onnxPath, "--opset", "9");
        Assert.Equal(1, code3);
        Assert.Contains("opset", stderr3, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void A_featurizer_pipeline_exports_as_a_feature_extractor()
    {
        var root = TestData.ShapesFolder(perClass: 2, size: 32);
        var ml = new MLContext(seed: 1);
        var data = ImageFolder.Load(ml, root);
        var model = TestData.Prefix(ml, root)
            .Append(ml.Transforms.FeaturizeImage("Features", "Image", new ImageFeaturizerOptions
            {
                CustomArchitecture = TestData.TinyResNet,
                Preprocessing = ImagePreprocessing.TorchVision(32) with { Resize = ResizeMode.Stretch },
            }))
            .Fit(data);
        var export = OnnxModelExport.FromPipeline(model);
        Assert.False(export.IsClassifier);
        var bytes = export.ToBytes();
        using (var onnx = OnnxImageModel.Load(bytes)) Assert.Equal([OnnxNames.Features], onnx.OutputNames);
        Assert.InRange(export.Verify(bytes).Max, 0, 1e-4);

        var noModel = ml.Transforms.LoadImages("Image", root, "ImagePath").Fit(data);
        Assert.Throws<InvalidOperationException>(() => OnnxModelExport.FromPipeline(noModel));
    }
}
