using System.IO.Compression;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ImageTransfer.MLNet.DataViews;
using MLNet.ImageTransfer.MLNet.Persistence;
using Xunit.Abstractions;

namespace MLNet.ImageTransfer.Tests.Persistence;

/// <summary>
/// Our transformers inside ML.NET pipelines: fit, evaluate, predict, save, and load — in this process and in a fresh one.
/// Uses <see cref="ToyCentroidTransformer"/>, which persists exactly like the real classifier, without TorchSharp.
/// </summary>
public sealed class ModelPersistenceTests(ITestOutputHelper output) : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("mlnet-imagetransfer-persistence-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    static (MLContext Ml, ITransformer Model, IDataView Train, IDataView Test) FitPipeline(int batchSize = 1)
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(ToyData.Make(90, seed: 1));
        var test = ml.Data.LoadFromEnumerable(ToyData.Make(30, seed: 2));
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(new ToyCentroidEstimator(ml, batchSize: batchSize))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"));
        return (ml, pipeline.Fit(train), train, test);
    }

    [Fact]
    public void Pipeline_fits_evaluates_with_class_names_and_predicts_names()
    {
        var (ml, model, _, test) = FitPipeline();
        var scored = model.Transform(test);

        var metrics = ml.MulticlassClassification.Evaluate(scored);
        string table = metrics.ConfusionMatrix.GetFormattedConfusionTable();
        output.WriteLine(table);
        Assert.True(metrics.MicroAccuracy > 0.9, $"accuracy {metrics.MicroAccuracy}");
        foreach (var name in ToyData.Classes) Assert.Contains(name, table);

        var score = scored.Schema["Score"];
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 3), score.Type);
        VBuffer<ReadOnlyMemory<char>> slotNames = default;
        score.GetSlotNames(ref slotNames);
        Assert.Equal(ToyData.Classes, slotNames.DenseValues().Select(v => v.ToString()));
        Assert.Equal(TextDataViewType.Instance, scored.Schema["PredictedLabel"].Type); // MapKeyToValue found our KeyValues

        var engine = ml.Model.CreatePredictionEngine<ToyRow, ToyPrediction>(model);
        foreach (var row in ToyData.Make(12, seed: 3))
        {
            var p = engine.Predict(row);
            Assert.Equal(3, p.Score.Length);
            Assert.Equal(1f, p.Score.Sum(), 4);
            Assert.Equal(ToyData.Classes[Array.IndexOf(p.Score, p.Score.Max())], p.PredictedLabel);
            Assert.Equal(row.Label, p.PredictedLabel); // well separated classes
        }
    }

    [Fact]
    public void Estimator_output_shape_feeds_MapKeyToValue()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(ToyData.Make(9, seed: 1));
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(new ToyCentroidEstimator(ml))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"));

        var shape = pipeline.GetOutputSchema(SchemaShapes.FromSchema(data.Schema));

        Assert.True(shape.TryFindColumn("Score", out var score));
        Assert.Equal(SchemaShape.Column.VectorKind.Vector, score.Kind);
        Assert.Equal(NumberDataViewType.Single, score.ItemType);
        Assert.True(score.HasAnnotation("SlotNames"));
        Assert.True(shape.TryFindColumn("PredictedLabel", out var predicted));
        Assert.Equal(TextDataViewType.Instance, predicted.ItemType);
        Assert.False(predicted.IsKey);
        Assert.True(shape.TryFindColumn("Features", out _)); // input columns pass through
    }

    [Fact]
    public void Saved_model_loads_in_a_fresh_process_with_identical_predictions()
    {
        var (ml, model, train, _) = FitPipeline(batchSize: 4);
        string modelPath = Path.Combine(_dir, "toy.zip");
        ml.Model.Save(model, train.Schema, modelPath);

        var rows = ToyData.Make(25, seed: 4);
        var engine = ml.Model.CreatePredictionEngine<ToyRow, ToyPrediction>(model);
        var expected = rows.Select(engine.Predict).ToList();
        string inputPath = Path.Combine(_dir, "rows.json"), reportPath = Path.Combine(_dir, "report.json");
        File.WriteAllText(inputPath, JsonSerializer.Serialize(rows));

        var (exitCode, childOutput) = FreshProcess.Run("load-and-predict", modelPath, inputPath, reportPath);
        output.WriteLine(childOutput);
        Assert.Equal(0, exitCode);
        var report = JsonSerializer.Deserialize<FreshProcess.LoadReport>(File.ReadAllText(reportPath))!;

        output.WriteLine("Loading without RegisterImageTransfer() in a fresh process:");
        foreach (var line in report.UnregisteredErrorChain) output.WriteLine("  " + line);
        Assert.DoesNotContain("no error", report.UnregisteredErrorChain[0]);

        Assert.Equal(["ValueToKeyMappingTransformer", "ToyCentroidTransformer", "KeyToValueMappingTransformer"], report.TransformerTypes);
        AssertSamePredictions(expected, report.EnginePredictions);
        AssertSamePredictions(expected, report.TransformPredictions);
    }

    [Fact]
    public void Saved_model_loads_in_a_new_context_of_this_process()
    {
        var (ml, model, train, _) = FitPipeline();
        string modelPath = Path.Combine(_dir, "toy.zip");
        ml.Model.Save(model, train.Schema, modelPath);

        // The context that trained the model was registered by the transformer itself.
        Assert.IsAssignableFrom<IEnumerable<ITransformer>>(ml.Model.Load(modelPath, out _));

        var ml2 = new MLContext(seed: 2).RegisterImageTransfer().RegisterImageTransfer(); // idempotent
        var loaded = ml2.Model.Load(modelPath, out var schema);
        var rows = ToyData.Make(10, seed: 5);
        var before = ml.Model.CreatePredictionEngine<ToyRow, ToyPrediction>(model);
        var after = ml2.Model.CreatePredictionEngine<ToyRow, ToyPrediction>(loaded, schema);
        AssertSamePredictions(rows.Select(before.Predict).ToList(), rows.Select(after.Predict).ToList());

        // The entry's streams are where the format documentation says they are.
        using var zip = ZipFile.OpenRead(modelPath);
        var names = zip.Entries.Select(e => e.FullName.Replace('\\', '/')).ToList();
        Assert.Contains("TransformerChain/Transform_001/Model.key", names);
        Assert.Contains("TransformerChain/Transform_001/header.bin", names);
        Assert.Contains("TransformerChain/Transform_001/centroids.bin", names);
    }

    [Fact]
    public void A_lone_transformer_round_trips()
    {
        var ml = new MLContext(seed: 1);
        var toy = new ToyCentroidTransformer(ml, "Features", ["a", "b"], [0, 0, 0, 0, 1, 1, 1, 1]);
        var data = ml.Data.LoadFromEnumerable(ToyData.Make(5, seed: 1));
        string path = Path.Combine(_dir, "lone.zip");
        ml.Model.Save(toy, data.Schema, path);

        var loaded = new MLContext().RegisterImageTransfer().Model.Load(path, out _);
        var restored = Assert.IsType<ToyCentroidTransformer>(loaded);
        Assert.Equal(toy.ClassNames, restored.ClassNames);
        Assert.Equal(toy.Centroids, restored.Centroids);
    }

    [Fact]
    public void A_newer_format_version_fails_with_both_versions_named()
    {
        var (ml, model, train, _) = FitPipeline();
        var toy = ((IEnumerable<ITransformer>)model).OfType<ToyCentroidTransformer>().Single();
        toy.SaveAs = new ModelEntryFormat(ToyCentroidTransformer.LoaderSignature, "TOYCNTRD", version: 7, minReadableVersion: 7,
            load: (_, _) => throw new InvalidOperationException("never used for loading"));
        string path = Path.Combine(_dir, "future.zip");
        ml.Model.Save(model, train.Schema, path);

        var error = LoadError(path);
        var notSupported = Find<NotSupportedException>(error);
        output.WriteLine(Describe(error));
        Assert.Same(notSupported, error.GetBaseException()); // under ML.NET's reflection wrappers, ours is innermost
        Assert.Contains("format version 7", notSupported.Message);
        Assert.Contains("reads format versions 1 to 1", notSupported.Message);
        Assert.Contains(ToyCentroidTransformer.LoaderSignature, notSupported.Message);
    }

    [Fact]
    public void A_damaged_part_fails_with_a_clear_corruption_error()
    {
        string path = SaveToyModel("damaged.zip");
        RewriteEntry(path, "centroids.bin", bytes => { bytes[5] ^= 0x40; return bytes; });

        var corrupt = Find<InvalidDataException>(LoadError(path));
        output.WriteLine(corrupt.Message);
        Assert.Contains("corrupt", corrupt.Message);
        Assert.Contains("'centroids.bin'", corrupt.Message);
        Assert.Contains("SHA-256", corrupt.Message);
    }

    [Fact]
    public void A_truncated_part_fails_with_a_clear_corruption_error_even_when_the_parser_fails_first()
    {
        string path = SaveToyModel("truncated.zip");
        RewriteEntry(path, "centroids.bin", bytes => bytes[..^6]); // the toy's reader hits end of stream

        var error = LoadError(path);
        var corrupt = Find<InvalidDataException>(error);
        output.WriteLine(corrupt.Message);
        Assert.Same(corrupt, error.GetBaseException());
        Assert.Contains("'centroids.bin'", corrupt.Message);
        Assert.Contains("ends after", corrupt.Message);
        Assert.Contains(nameof(EndOfStreamException), corrupt.Message);
    }

    [Fact]
    public void A_missing_part_fails_with_a_clear_corruption_error()
    {
        string path = SaveToyModel("missing.zip");
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Update))
            zip.Entries.Single(e => e.FullName.EndsWith("header.bin")).Delete();

        var corrupt = Find<InvalidDataException>(LoadError(path));
        Assert.Contains("'header.bin'", corrupt.Message);
        Assert.Contains("missing", corrupt.Message);
    }

    [Fact]
    public void Part_names_are_validated_when_saving()
    {
        Assert.Throws<ArgumentException>(() => ImageTransferModelFormat.ValidatePartNames(["a.bin", "A.BIN"]));
        Assert.Throws<ArgumentException>(() => ImageTransferModelFormat.ValidatePartNames(["Model.key"]));
        Assert.Throws<ArgumentException>(() => ImageTransferModelFormat.ValidatePartNames(["dir/x.bin"]));
        ImageTransferModelFormat.ValidatePartNames(["weights.bin", "meta-v1_2.json"]);
    }

    [Fact]
    public void Formats_reject_signatures_ML_NET_cannot_store()
    {
        static ITransformer Load(Microsoft.ML.Runtime.IHostEnvironment env, LoadedParts parts) => throw new NotImplementedException();
        Assert.Throws<ArgumentException>(() => new ModelEntryFormat(new string('X', 25), "ABCDEFGH", 1, 1, Load));
        Assert.Throws<ArgumentException>(() => new ModelEntryFormat("OK", "SHORT", 1, 1, Load));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ModelEntryFormat("OK", "ABCDEFGH", 1, 2, Load));
    }

    [Fact]
    public void The_bridge_finds_every_internal_member_of_this_ML_NET()
    {
        MLNetInternals.Verify();
        // The ML.NET loaded here is the one the library says it supports (Directory.Packages.props' MLNetVersion).
        Assert.Matches(@"^\d+\.\d+\.\d+$", MLNetInternals.SupportedMLNetVersion);
        Assert.StartsWith($"Microsoft.ML.Core {MLNetInternals.SupportedMLNetVersion}+", MLNetInternals.DescribeLoadedMLNet());
        Assert.NotEmpty(MLNetInternals.Required);
    }

    [Fact]
    public void A_different_ML_NET_gives_one_error_naming_the_supported_version_and_every_missing_member()
    {
        // As if ML.NET's internals had moved: resolve them in assemblies that do not have them.
        var error = Assert.Throws<InvalidOperationException>(
            () => MLNetInternals.VerifyAgainst(typeof(object).Assembly, typeof(object).Assembly));
        output.WriteLine(error.Message);
        Assert.Contains($"ML.NET {MLNetInternals.SupportedMLNetVersion},", error.Message);
        Assert.Contains(MLNetInternals.DescribeLoadedMLNet(), error.Message); // the version actually found
        Assert.Contains("ModelLoadContext", error.Message);
        Assert.Contains("LoadableClassAttribute", error.Message);
        Assert.Contains("IInternalCatalog", error.Message);
    }

    [Fact]
    public void The_library_declares_valid_formats_with_unique_signatures()
    {
        // Reads every [assembly: ImageTransferModelEntry] of the library: a wrong member name fails here.
        var formats = ImageTransferModelFormat.KnownFormats();
        Assert.Equal(formats.Count, formats.Select(f => f.LoaderSignature.ToLowerInvariant()).Distinct().Count());
        foreach (var f in formats) output.WriteLine(f.ToString());
        Assert.Contains(formats, f => f.LoaderSignature == "IMGTRANSFER-CLASSIFIER");
    }

    [Fact]
    public void The_environment_of_a_catalog_is_found_and_registered()
    {
        var ml = new MLContext();
        var env = ImageTransferModelRegistration.EnsureRegistered((object)ml.MulticlassClassification.Trainers);
        Assert.Same(ml.ComponentCatalog, env.ComponentCatalog);
        Assert.Same(ml.ComponentCatalog, ImageTransferModelRegistration.EnsureRegistered((object)ml.Transforms.Conversion).ComponentCatalog);
        Assert.Throws<ArgumentException>(() => ImageTransferModelRegistration.EnsureRegistered(new object()));
    }

    // ---- helpers ------------------------------------------------------------------------------------------------

    string SaveToyModel(string fileName)
    {
        var (ml, model, train, _) = FitPipeline();
        string path = Path.Combine(_dir, fileName);
        ml.Model.Save(model, train.Schema, path);
        return path;
    }

    static Exception LoadError(string path)
    {
        var ml = new MLContext().RegisterImageTransfer();
        return Assert.ThrowsAny<Exception>(() => ml.Model.Load(path, out _));
    }

    static void RewriteEntry(string zipPath, string suffix, Func<byte[], byte[]> change)
    {
        using var zip = ZipFile.Open(zipPath, ZipArchiveMode.Update);
        var entry = zip.Entries.Single(e => e.FullName.EndsWith(suffix));
        string name = entry.FullName;
        byte[] bytes;
        using (var s = entry.Open())
        using (var m = new MemoryStream())
        {
            s.CopyTo(m);
            bytes = m.ToArray();
        }
        entry.Delete();
        using var w = zip.CreateEntry(name).Open();
        w.Write(change(bytes));
    }

    /// <summary>Our exception, wherever ML.NET's reflection-based loading wrapped it.</summary>
    static T Find<T>(Exception e) where T : Exception
    {
        for (var x = e; x is not null; x = x.InnerException)
            if (x is T found) return found;
        throw new Xunit.Sdk.XunitException($"No {typeof(T).Name} in:\n{Describe(e)}");
    }

    static string Describe(Exception e)
    {
        var lines = new List<string>();
        for (var x = e; x is not null; x = x.InnerException) lines.Add($"{x.GetType().FullName}: {x.Message}");
        return string.Join("\n  ", lines);
    }

    static void AssertSamePredictions(IReadOnlyList<ToyPrediction> expected, IReadOnlyList<ToyPrediction> actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.Equal(expected[i].PredictedLabel, actual[i].PredictedLabel);
            Assert.Equal(expected[i].Score, actual[i].Score); // exact: same code, same floats
        }
    }
}
