using System.IO.Compression;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ImageTransfer.Data;
using Xunit.Abstractions;

namespace MLNet.ImageTransfer.Tests.Persistence;

/// <summary>
/// The default saved classifier (a trainer pipeline saved with <c>ml.Model.Save</c>) scores on ONNX Runtime once
/// loaded: a fresh process loads it and runs PredictionEngine, batch Transform and Evaluate without ever mapping
/// libtorch, with the scores of the TorchSharp model that was saved. The TorchSharp network comes back exactly from
/// the saved ONNX initializers.
/// </summary>
public class SavedClassifierScoringTests(ITestOutputHelper output)
{
    public sealed class Row
    {
        public string ImagePath { get; set; } = "";
        public string Label { get; set; } = "";
    }

    public sealed class Prediction
    {
        public float[] Score { get; set; } = [];
        public string PredictedLabel { get; set; } = "";
    }

    sealed record Trained(string Zip, List<Row> Rows, ITransformer Model, MLContext Ml);

    /// <summary>
    /// A tiny ResNet (it has BatchNorms, so running statistics and counters must survive) trained for two epochs, saved
    /// by ml.Model.Save. The images have the network's size, so the comparison measures the engines: resizing in .NET
    /// (ManagedImagePreprocessing) may round an occasional pixel one grey level away from libtorch's resize, which moves
    /// a probability by ~1e-4 on its own (covered by OnnxScoringTests and ManagedPreprocessingTests).
    /// </summary>
    static readonly Lazy<Trained> Model = new(() =>
    {
        var root = TestData.ShapesFolder(perClass: 6, size: 32);
        var ml = new MLContext(seed: 1);
        var (model, all) = TestData.FitTinyPipeline(ml, root, epochs: 2);
        var zip = Path.Combine(TestData.NewTempDir("saved-classifier"), "model.zip");
        ml.Model.Save(model, all.Schema, zip);
        return new Trained(zip, ml.Data.CreateEnumerable<Row>(all, false).ToList(), model, ml);
    });

    static ImageClassifierTransformer ClassifierOf(ITransformer model)
        => ((IEnumerable<ITransformer>)model).SelectMany(t => t is IEnumerable<ITransformer> c ? c : [t]).OfType<ImageClassifierTransformer>().Single();

    void AssertClose(IReadOnlyList<float[]> expected, IReadOnlyList<float[]> actual, double tolerance, string what)
    {
        Assert.Equal(expected.Count, actual.Count);
        double max = expected.Zip(actual, (a, b) => { Assert.Equal(a.Length, b.Length); return a.Zip(b, (x, y) => Math.Abs((double)x - y)).Max(); }).Max();
        output.WriteLine($"{what}: {actual.Count} images, max |score difference| = {max:E2}");
        Assert.InRange(max, 0, tolerance);
    }

    [Fact]
    public void A_fresh_process_scores_the_saved_model_on_onnx_runtime_without_loading_libtorch()
    {
        var (zip, rows, model, ml) = Model.Value;
        Assert.Equal(ClassifierScoringEngine.TorchSharp, ClassifierOf(model).Engine);
        var scored = model.Transform(ml.Data.LoadFromEnumerable(rows));
        var expectedScores = scored.GetColumn<float[]>("Score").ToList();
        var expectedLabels = scored.GetColumn<string>("PredictedLabel").ToList();
        var expectedMetrics = ml.MulticlassClassification.Evaluate(scored);

        var dir = TestData.NewTempDir("saved-classifier-child");
        var rowsPath = Path.Combine(dir, "rows.json");
        File.WriteAllText(rowsPath, JsonSerializer.Serialize(rows));
        var report = RunChild(zip, rowsPath, Path.Combine(dir, "report.json"));
        output.WriteLine("native libraries of the scoring process:\n  " + string.Join("\n  ", report.NativeLibraries));
        output.WriteLine("managed assemblies: " + string.Join(", ", report.ManagedAssemblies));

        Assert.Equal(nameof(ClassifierScoringEngine.OnnxRuntime), report.Engine);
        Assert.True(report.StoredOptimizedGraph, "the fresh process should run the graph optimised at save time");
        Assert.Contains(report.NativeLibraries, l => l.Contains("onnxruntime", StringComparison.OrdinalIgnoreCase));
        Assert.DoesNotContain(report.NativeLibraries, IsTorch);

        AssertClose(expectedScores, report.TransformScores, 1e-4, "batch Transform in a fresh process vs TorchSharp in the training process");
        AssertClose(expectedScores, report.EngineScores, 1e-4, "PredictionEngine in a fresh process vs TorchSharp in the training process");
        Assert.Equal(expectedLabels, report.TransformLabels);
        Assert.Equal(expectedLabels, report.EngineLabels);
        Assert.Equal(expectedMetrics.MicroAccuracy, report.MicroAccuracy, 12);
        Assert.Equal(expectedMetrics.LogLoss, report.LogLoss, 4);
        Assert.Equal(expectedMetrics.ConfusionMatrix.GetFormattedConfusionTable(), report.ConfusionTable);
        Assert.Contains("circle", report.ConfusionTable); // class names, not indices

        // Control: the same check sees libtorch once the process rebuilds the TorchSharp network, so its absence above means something.
        var control = RunChild(zip, rowsPath, Path.Combine(dir, "control.json"), touchTorchSharp: true);
        Assert.Contains(control.NativeLibraries, IsTorch);
    }

    static bool IsTorch(string library) => NativeLibraries.IsTorch(library);

    [Fact]
    public void The_torchsharp_network_comes_back_exactly_from_the_saved_initializers()
    {
        var (zip, _, model, _) = Model.Value;
        var trained = ClassifierOf(model).Classifier;
        var fresh = new MLContext().RegisterImageTransfer();
        var loaded = ClassifierOf(fresh.Model.Load(zip, out _));
        Assert.Equal(ClassifierScoringEngine.OnnxRuntime, loaded.Engine);

        var expected = trained.Network.state_dict();
        var actual = loaded.Classifier.Network.state_dict();
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        Assert.Contains(actual.Keys, k => k.EndsWith("num_batches_tracked"));
        Assert.Contains(actual.Keys, k => k.EndsWith("running_var"));
        foreach (var (key, tensor) in expected)
            Assert.True(tensor.dtype == actual[key].dtype && tensor.cpu().eq(actual[key]).all().item<bool>(), $"{key} differs after the round trip");
        Assert.Equal(trained.Description.ClassNames, loaded.Classifier.ClassNames);
    }

    [Fact]
    public void The_zip_holds_the_network_once_as_onnx_and_a_loaded_model_saves_the_same_bytes()
    {
        var (zip, _, _, _) = Model.Value;
        var fresh = new MLContext().RegisterImageTransfer();
        var loaded = fresh.Model.Load(zip, out var schema);
        var again = Path.Combine(TestData.NewTempDir("resaved"), "again.zip");
        fresh.Model.Save(loaded, schema, again); // never touches the TorchSharp network

        static Dictionary<string, byte[]> Parts(string path)
        {
            using var archive = ZipFile.OpenRead(path);
            return archive.Entries.Where(e => e.FullName.Contains("Transform")).ToDictionary(e => e.FullName.Replace('\\', '/'), e =>
            {
                using var s = e.Open();
                using var ms = new MemoryStream();
                s.CopyTo(ms);
                return ms.ToArray();
            });
        }
        var first = Parts(zip);
        var second = Parts(again);
        var onnx = first.Keys.Single(k => k.EndsWith("/model.onnx"));
        Assert.DoesNotContain(first.Keys, k => k.EndsWith("weights.safetensors"));
        Assert.Contains(first.Keys, k => k.EndsWith("/extra-state.safetensors"));
        Assert.Equal(first[onnx], second[onnx]);
    }

    [Fact]
    public void A_format_v1_file_still_loads_and_scores_on_torchsharp()
    {
        var fixtures = Path.Combine(AppContext.BaseDirectory, "fixtures", "classifier-v1");
        var expected = JsonSerializer.Deserialize<V1Scores>(File.ReadAllText(Path.Combine(fixtures, "scores.json")))!;
        var ml = new MLContext().RegisterImageTransfer();
        var model = ml.Model.Load(Path.Combine(fixtures, "classifier-v1.zip"), out _);
        Assert.Equal(ClassifierScoringEngine.TorchSharp, ClassifierOf(model).Engine);
        var rows = expected.Images.Select(p => new Row { ImagePath = Path.Combine(fixtures, "images", p), Label = Path.GetDirectoryName(p)! }).ToList();
        var scores = model.Transform(ml.Data.LoadFromEnumerable(rows)).GetColumn<float[]>("Score").ToList();
        AssertClose(expected.Scores, scores, 1e-6, "format v1 file vs the scores recorded when it was saved");

        // Saving it again writes the current format, which then scores on ONNX Runtime.
        var path = Path.Combine(TestData.NewTempDir("v1-resaved"), "v2.zip");
        ml.Model.Save(model, ml.Data.LoadFromEnumerable(rows).Schema, path);
        var reloaded = new MLContext().RegisterImageTransfer().Model.Load(path, out _);
        Assert.Equal(ClassifierScoringEngine.OnnxRuntime, ClassifierOf(reloaded).Engine);
        AssertClose(expected.Scores, reloaded.Transform(ml.Data.LoadFromEnumerable(rows)).GetColumn<float[]>("Score").ToList(), 1e-4, "v1 re-saved as v2");
    }

    static Dictionary<string, ZipArchiveEntry> ClassifierEntries(ZipArchive archive)
        => archive.Entries.Where(e => e.FullName.Replace('\\', '/').Contains("/Transform_001/") && !e.FullName.Contains("Transform_000"))
            .ToDictionary(e => Path.GetFileName(e.FullName.Replace('\\', '/')));

    [Fact]
    public void The_zip_stores_the_graph_onnx_runtime_optimised_for_this_platform_uncompressed_beside_the_portable_one()
    {
        var (zip, _, _, _) = Model.Value;
        Assert.True(global::MLNet.ImageTransfer.MLNet.Persistence.MLNetInternals.DirectZipAccess, "ML.NET's zip internals should resolve (uncompressed parts, direct reads)");
        using var archive = ZipFile.OpenRead(zip);
        var entries = ClassifierEntries(archive);
        // The parts a format-v2 reader of an earlier version reads are all there; the new ones it ignores.
        Assert.Contains("columns.json", entries.Keys);
        Assert.Contains("model.json", entries.Keys);
        Assert.Contains("extra-state.safetensors", entries.Keys);
        foreach (var large in new[] { "model.onnx", "scoring.ort" })
        {
            output.WriteLine($"{large}: {entries[large].Length} bytes, {entries[large].CompressedLength} in the zip");
            Assert.Equal(entries[large].Length, entries[large].CompressedLength); // stored, not deflated
        }
        using var info = JsonDocument.Parse(entries["scoring.json"].Open());
        output.WriteLine(info.RootElement.ToString());
        Assert.Equal("ort", info.RootElement.GetProperty("Format").GetString());
        Assert.Equal(global::MLNet.ImageTransfer.Onnx.OrtScoringGraph.Platform, info.RootElement.GetProperty("Platform").GetString());
    }

    [Fact]
    public void A_file_whose_optimised_graph_is_for_another_platform_scores_the_same_from_the_portable_graph()
    {
        var (zip, rows, _, _) = Model.Value;
        var ml = new MLContext().RegisterImageTransfer();
        var data = ml.Data.LoadFromEnumerable(rows);
        var here = ml.Model.Load(zip, out var schema);
        Assert.True(ClassifierOf(here).ScoresWithStoredOptimizedGraph);
        var expected = here.Transform(data).GetColumn<float[]>("Score").ToList();

        // Saved "elsewhere": the stored graph's platform is not this one, so the loader optimises model.onnx instead.
        var elsewhere = Path.Combine(TestData.NewTempDir("other-platform"), "model.zip");
        using (global::MLNet.ImageTransfer.Onnx.OrtScoringGraph.PretendPlatform("onnxruntime 1.32.0; X64; nchwc 16 (another machine)"))
            ml.Model.Save(here, schema, elsewhere);
        using (var archive = ZipFile.OpenRead(elsewhere))
            Assert.Contains("another machine", new StreamReader(ClassifierEntries(archive)["scoring.json"].Open()).ReadToEnd());
        var loaded = ml.Model.Load(elsewhere, out _);
        Assert.Equal(ClassifierScoringEngine.OnnxRuntime, ClassifierOf(loaded).Engine);
        Assert.False(ClassifierOf(loaded).ScoresWithStoredOptimizedGraph);
        AssertClose(expected, loaded.Transform(data).GetColumn<float[]>("Score").ToList(), 1e-6, "portable graph optimised at load vs the stored optimised graph");

        // Saved again here, it stores a graph for this platform.
        var back = Path.Combine(TestData.NewTempDir("back-here"), "model.zip");
        ml.Model.Save(loaded, schema, back);
        Assert.True(ClassifierOf(ml.Model.Load(back, out _)).ScoresWithStoredOptimizedGraph);
    }

    [Fact]
    public void A_damaged_optimised_graph_fails_with_a_clear_corruption_error()
    {
        var (zip, _, _, _) = Model.Value;
        var damaged = Path.Combine(TestData.NewTempDir("damaged-graph"), "model.zip");
        File.Copy(zip, damaged);
        using (var archive = ZipFile.Open(damaged, ZipArchiveMode.Update))
        {
            var entry = ClassifierEntries(archive)["scoring.ort"];
            byte[] bytes;
            using (var s = entry.Open()) { using var ms = new MemoryStream(); s.CopyTo(ms); bytes = ms.ToArray(); }
            bytes[bytes.Length - 100] ^= 0x40; // inside the last initializer
            string name = entry.FullName;
            entry.Delete();
            using var w = archive.CreateEntry(name, CompressionLevel.NoCompression).Open();
            w.Write(bytes);
        }
        var error = Record.Exception(() => new MLContext().RegisterImageTransfer().Model.Load(damaged, out _));
        var corrupt = Assert.IsType<InvalidDataException>(error?.GetBaseException());
        output.WriteLine(corrupt.Message);
        Assert.Contains("'scoring.ort'", corrupt.Message);
        Assert.Contains("SHA-256", corrupt.Message);
    }

    [Fact]
    public void What_scoring_reads_of_the_description_equals_the_full_description()
    {
        var (_, _, model, _) = Model.Value;
        var saved = ClassifierOf(model).Description;
        var meanImage = Enumerable.Range(0, 3 * 8 * 8).Select(i => (float)Math.Sin(i) * 100).ToArray();
        var presets = new[]
        {
            ImagePreprocessing.TorchVision(), ImagePreprocessing.KerasCaffe(64), ImagePreprocessing.KerasTorch(32), ImagePreprocessing.KerasTf(), ImagePreprocessing.Rescale(17),
            ImagePreprocessing.TorchVision(8) with { MeanImage = meanImage, CropFraction = 0.9, Name = "with mean image" },
        };
        foreach (var preprocessing in presets)
        {
            var description = saved with { Preprocessing = preprocessing, ClassNames = ["a", "b \"\u00e9", "c"] };
            using var json = new MemoryStream();
            description.Write(json);
            var (names, read) = global::MLNet.ImageTransfer.Models.ClassifierDescription.ReadScoringFields(json.ToArray(), "test");
            var full = global::MLNet.ImageTransfer.Models.ClassifierDescription.Read(new MemoryStream(json.ToArray()));
            Assert.Equal(full.ClassNames, names);
            Assert.Equal(full.Preprocessing, read);
            Assert.Equal(preprocessing, read);
        }
        // Absent fields take the record's defaults, enums also by number, as the serializer reads them.
        var sparse = """{"ClassNames":["x","y"],"Preprocessing":{"ImageSize":64,"Channels":1}}"""u8.ToArray();
        var fromSparse = global::MLNet.ImageTransfer.Models.ClassifierDescription.ReadScoringFields(sparse).Preprocessing;
        Assert.Equal(System.Text.Json.JsonSerializer.Deserialize<ImagePreprocessing>(
            """{"ImageSize":64,"Channels":1}""", global::MLNet.ImageTransfer.Models.ClassifierDescription.Json), fromSparse);
        Assert.Equal(ChannelOrder.Bgr, fromSparse.Channels);
        var newer = Assert.Throws<InvalidDataException>(() => global::MLNet.ImageTransfer.Models.ClassifierDescription.ReadScoringFields("""{"FormatVersion":99,"ClassNames":[],"Preprocessing":{}}"""u8.ToArray()));
        Assert.Contains("format version 99", newer.Message);
    }

    sealed record V1Scores(List<string> Images, List<float[]> Scores);

    [Fact]
    public void Models_saved_with_ML_NET_5_load_and_give_the_same_outputs()
    {
        var fixtures = Path.Combine(AppContext.BaseDirectory, "fixtures", "mlnet5-models");
        var expected = JsonSerializer.Deserialize<MLNet5Outputs>(File.ReadAllText(Path.Combine(fixtures, "expected.json")))!;
        Assert.StartsWith("Microsoft.ML.Core 5.0.1+", expected.SavedWith);
        var images = Path.Combine(AppContext.BaseDirectory, "fixtures", "classifier-v1", "images");
        var ml = new MLContext().RegisterImageTransfer();
        var data = ml.Data.LoadFromEnumerable(expected.Images.Select(p => new Row { ImagePath = Path.Combine(images, p), Label = Path.GetDirectoryName(p)! }).ToList());

        var classifier = ml.Model.Load(Path.Combine(fixtures, "classifier.zip"), out _);
        var parts = ((IEnumerable<ITransformer>)classifier).ToList();
        Assert.IsType<RobustImageLoadingTransformer>(parts[1]);
        Assert.IsType<AugmentImagesTransformer>(parts[2]);
        Assert.Equal(ClassifierScoringEngine.OnnxRuntime, ClassifierOf(classifier).Engine);
        var scored = classifier.Transform(data);
        AssertClose(expected.Scores, scored.GetColumn<float[]>("Score").ToList(), 1e-5, "classifier saved with ML.NET 5.0.1");
        Assert.Equal(expected.PredictedLabels, scored.GetColumn<string>("PredictedLabel").ToList());

        var featurizer = ml.Model.Load(Path.Combine(fixtures, "featurizer.zip"), out _);
        Assert.IsType<ImageFeaturizerTransformer>(((IEnumerable<ITransformer>)featurizer).Last());
        AssertClose(expected.Features, featurizer.Transform(data).GetColumn<float[]>("Features").ToList(), 1e-5, "featurizer saved with ML.NET 5.0.1");
    }

    sealed record MLNet5Outputs(string SavedWith, List<string> Images, List<float[]> Scores, List<string> PredictedLabels, List<float[]> Features);

    // ---- Child process: load, PredictionEngine, Transform, Evaluate, list native libraries ------------------------

    internal const string ChildMode = "saved-classifier-scoring";

    public sealed class ChildReport
    {
        public string Engine { get; set; } = "";
        public bool StoredOptimizedGraph { get; set; }
        public List<float[]> EngineScores { get; set; } = [];
        public List<string> EngineLabels { get; set; } = [];
        public List<float[]> TransformScores { get; set; } = [];
        public List<string> TransformLabels { get; set; } = [];
        public double MicroAccuracy { get; set; }
        public double LogLoss { get; set; }
        public string ConfusionTable { get; set; } = "";
        public List<string> NativeLibraries { get; set; } = [];
        public List<string> ManagedAssemblies { get; set; } = [];
    }

    static ChildReport RunChild(string modelPath, string rowsPath, string reportPath, bool touchTorchSharp = false)
        => FreshProcess.RunForReport<ChildReport>(ChildMode, reportPath, modelPath, rowsPath, reportPath, touchTorchSharp ? "torch" : "");

    /// <summary>The child (<see cref="FreshProcess"/>): args = model, rows JSON, report path, "torch" to rebuild the TorchSharp network too.</summary>
    internal static int RunChildProcess(string[] args)
    {
        var ml = new MLContext().RegisterImageTransfer();
        var model = ml.Model.Load(args[0], out var inputSchema);
        var rows = JsonSerializer.Deserialize<List<Row>>(File.ReadAllText(args[1]))!;
        var report = new ChildReport { Engine = ClassifierOf(model).Engine.ToString(), StoredOptimizedGraph = ClassifierOf(model).ScoresWithStoredOptimizedGraph };

        var engine = ml.Model.CreatePredictionEngine<Row, Prediction>(model, inputSchema);
        foreach (var row in rows)
        {
            var p = engine.Predict(row);
            report.EngineScores.Add(p.Score.ToArray());
            report.EngineLabels.Add(p.PredictedLabel);
        }
        var scored = model.Transform(ml.Data.LoadFromEnumerable(rows));
        report.TransformScores = scored.GetColumn<float[]>("Score").ToList();
        report.TransformLabels = scored.GetColumn<string>("PredictedLabel").ToList();
        var metrics = ml.MulticlassClassification.Evaluate(scored);
        report.MicroAccuracy = metrics.MicroAccuracy;
        report.LogLoss = metrics.LogLoss;
        report.ConfusionTable = metrics.ConfusionMatrix.GetFormattedConfusionTable();
        if (args[3] == "torch") _ = ClassifierOf(model).Classifier.Network.parameters().Count();

        report.NativeLibraries = NativeLibraries.Mapped();
        report.ManagedAssemblies = AppDomain.CurrentDomain.GetAssemblies().Select(a => a.GetName().Name!).Order().ToList();
        File.WriteAllText(args[2], JsonSerializer.Serialize(report));
        return 0;
    }
}
