using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Onnx;
using Xunit.Abstractions;

using MLNet.ImageTransfer.Tests.Persistence;

namespace MLNet.ImageTransfer.Tests.Onnx;

/// <summary>
/// Scoring on ONNX Runtime: a trained pipeline converted with <c>ToOnnxScoring</c> scores like the TorchSharp one,
/// saves and loads through ML.NET's .zip, and a process that loads and scores it never loads libtorch.
/// </summary>
public class OnnxScoringTests(ITestOutputHelper output)
{
    public sealed class Row
    {
        public string ImagePath { get; set; } = "";
        public string Label { get; set; } = "";
    }

    /// <summary>A tiny classifier trained on 48-pixel shapes with 32-pixel preprocessing: scoring resizes (the antialiased path).</summary>
    static readonly Lazy<(string Root, string TorchZip, string OnnxZip, List<Row> Rows)> Trained = new(() =>
    {
        var root = TestData.ShapesFolder(perClass: 8, size: 48);
        var ml = new MLContext(seed: 1);
        var (model, all) = TestData.FitTinyPipeline(ml, root, epochs: 1);
        var dir = TestData.NewTempDir("onnx-scoring");
        var torchZip = Path.Combine(dir, "torchsharp.zip");
        var onnxZip = Path.Combine(dir, "onnx.zip");
        ml.Model.Save(model, all.Schema, torchZip);
        ml.Model.Save(ml.ToOnnxScoring(model), all.Schema, onnxZip);
        var rows = ml.Data.CreateEnumerable<Row>(all, false).ToList();
        return (root, torchZip, onnxZip, rows);
    });

    static List<float[]> Scores(MLContext ml, ITransformer model, IEnumerable<Row> rows)
        => model.Transform(ml.Data.LoadFromEnumerable(rows.ToList())).GetColumn<float[]>("Score").ToList();

    void AssertClose(List<float[]> expected, List<float[]> actual, double tolerance, string what)
    {
        Assert.Equal(expected.Count, actual.Count);
        double max = expected.Zip(actual, (a, b) => a.Zip(b, (x, y) => Math.Abs((double)x - y)).Max()).Max();
        output.WriteLine($"{what}: {actual.Count} images, max |score difference| = {max:E2}");
        Assert.InRange(max, 0, tolerance);
    }

    [Fact]
    public void Converted_pipeline_scores_like_torchsharp_and_round_trips_through_the_zip()
    {
        var (_, torchZip, onnxZip, rows) = Trained.Value;
        var ml = new MLContext().RegisterImageTransfer();
        var torchModel = ml.Model.Load(torchZip, out _);
        var expected = Scores(ml, torchModel, rows);

        var converted = ml.ToOnnxScoring(torchModel);
        AssertClose(expected, Scores(ml, converted, rows), 1e-4, "converted in memory");

        var fresh = new MLContext().RegisterImageTransfer();
        var loaded = fresh.Model.Load(onnxZip, out _);
        var onnxClassifier = ((IEnumerable<ITransformer>)loaded).SelectMany(t => t is IEnumerable<ITransformer> c ? c : [t])
            .OfType<OnnxImageClassifierTransformer>().Single();
        Assert.True(onnxClassifier.HasWeights);
        AssertClose(expected, Scores(fresh, loaded, rows), 1e-4, "saved and loaded");

        // The same multiclass contract: Evaluate works, with class names.
        var scored = loaded.Transform(fresh.Data.LoadFromEnumerable(rows)); // the pipeline maps Label to a key itself
        var metrics = fresh.MulticlassClassification.Evaluate(scored);
        Assert.Equal(3, metrics.ConfusionMatrix.NumberOfClasses);
        Assert.Equal(
            torchModel.Transform(ml.Data.LoadFromEnumerable(rows)).GetColumn<string>("PredictedLabel"),
            loaded.Transform(fresh.Data.LoadFromEnumerable(rows)).GetColumn<string>("PredictedLabel"));

        // The kept weights rebuild the TorchSharp classifier (for explanations or further training).
        using var rebuilt = onnxClassifier.ToFittedClassifier();
        var original = ImageClassificationWorkflow.FindClassifier(torchModel);
        Assert.Equal(original.ClassNames, rebuilt.ClassNames);
        var a = original.Network.state_dict();
        foreach (var (key, tensor) in rebuilt.Network.state_dict()) Assert.True(tensor.eq(a[key]).all().item<bool>(), key);
    }

    [Fact]
    public void Scoring_only_file_without_weights_is_smaller_and_says_why_it_cannot_rebuild()
    {
        var (_, torchZip, _, rows) = Trained.Value;
        var ml = new MLContext().RegisterImageTransfer();
        var torchModel = ml.Model.Load(torchZip, out var schema);
        var slim = ml.ToOnnxScoring(torchModel, keepWeights: false);
        var path = Path.Combine(TestData.NewTempDir("onnx-slim"), "slim.zip");
        ml.Model.Save(slim, schema, path);
        var loaded = new MLContext().RegisterImageTransfer().Model.Load(path, out _);
        var onnxClassifier = ((IEnumerable<ITransformer>)loaded).SelectMany(t => t is IEnumerable<ITransformer> c ? c : [t]).OfType<OnnxImageClassifierTransformer>().Single();
        Assert.False(onnxClassifier.HasWeights);
        var e = Assert.Throws<InvalidOperationException>(() => onnxClassifier.ToFittedClassifier());
        Assert.Contains("without its TorchSharp weights", e.Message);
        Assert.Throws<InvalidOperationException>(() => ml.ToOnnxScoring(ml.Transforms.LoadImages("Image", null, "ImagePath").Fit(ml.Data.LoadFromEnumerable(rows))));
    }

    [Fact]
    public void A_scoring_process_never_loads_libtorch()
    {
        var (_, torchZip, onnxZip, rows) = Trained.Value;
        var dir = TestData.NewTempDir("no-libtorch");
        var rowsPath = Path.Combine(dir, "rows.json");
        File.WriteAllText(rowsPath, JsonSerializer.Serialize(rows));

        var onnx = RunChild(onnxZip, rowsPath, Path.Combine(dir, "onnx-report.json"));
        output.WriteLine("native libraries of the ONNX scoring process:\n  " + string.Join("\n  ", onnx.NativeLibraries));
        Assert.Contains(onnx.NativeLibraries, l => l.Contains("onnxruntime", StringComparison.OrdinalIgnoreCase));
        Assert.DoesNotContain(onnx.NativeLibraries, IsTorch);

        // Control: the same check sees libtorch in a process that rebuilds the TorchSharp network of a saved model, so
        // its absence above means something. (Scoring alone no longer loads it for any saved classifier.)
        var torch = RunChild(torchZip, rowsPath, Path.Combine(dir, "torch-report.json"), touchTorchSharp: true);
        Assert.Contains(torch.NativeLibraries, IsTorch);

        AssertClose(torch.Scores, onnx.Scores, 1e-4, "fresh processes, folded scoring-only file vs the default saved model");
    }

    static bool IsTorch(string library) => NativeLibraries.IsTorch(library);

    static ChildReport RunChild(string modelPath, string rowsPath, string reportPath, bool touchTorchSharp = false)
        => FreshProcess.RunForReport<ChildReport>(ChildMode, reportPath, modelPath, rowsPath, reportPath, touchTorchSharp ? "torch" : "");

    // ---- Child process: load a model, score rows, list the native libraries mapped into the process ---------------

    internal const string ChildMode = "onnx-scoring";

    public sealed class ChildReport
    {
        public List<float[]> Scores { get; set; } = [];
        public List<string> NativeLibraries { get; set; } = [];
    }

    /// <summary>The child (<see cref="FreshProcess"/>): args = model, rows JSON, report path, "torch" to rebuild the TorchSharp network too.</summary>
    internal static int RunChildProcess(string[] args)
    {
        var ml = new MLContext().RegisterImageTransfer();
        var model = ml.Model.Load(args[0], out _);
        var rows = JsonSerializer.Deserialize<List<Row>>(File.ReadAllText(args[1]))!;
        var report = new ChildReport { Scores = Scores(ml, model, rows) };
        if (args[3] == "torch") _ = ImageClassificationWorkflow.FindClassifier(model).Network.parameters().Count();
        report.NativeLibraries = NativeLibraries.Mapped();
        File.WriteAllText(args[2], JsonSerializer.Serialize(report));
        return 0;
    }
}
