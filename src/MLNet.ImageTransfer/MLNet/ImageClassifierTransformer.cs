using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using Microsoft.ML.Transforms.Image;
using MLNet.ImageTransfer;
using MLNet.ImageTransfer.MLNet.DataViews;
using MLNet.ImageTransfer.MLNet.Persistence;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Onnx;

[assembly: ImageTransferModelEntry(typeof(ImageClassifierTransformer), nameof(ImageClassifierTransformer.Format))]

namespace MLNet.ImageTransfer;

/// <summary>What computes a classifier's scores.</summary>
public enum ClassifierScoringEngine
{
    /// <summary>The TorchSharp network (a classifier trained in this process, or loaded from a format-v1 file).</summary>
    TorchSharp,
    /// <summary>ONNX Runtime, on the graph saved in the model file (a classifier loaded from a file): libtorch is not loaded.</summary>
    OnnxRuntime,
}

/// <summary>
/// A fitted image classifier in an ML.NET pipeline: reads an image column (from <c>LoadImages</c>) and adds
/// <c>Score</c> (K class probabilities, slot names = class names) and <c>PredictedLabel</c> (key over the class names).
/// Never augments; preprocessing is the one saved with the model.
/// </summary>
/// <remarks>
/// <para><b>Saved</b> inside ML.NET's .zip (format v2) as <c>columns.json</c>, <c>model.json</c> (the
/// <see cref="ClassifierDescription"/>), <c>model.onnx</c> (the network with its preprocessing, every trained tensor an
/// initializer named by its <c>state_dict</c> key; see <see cref="OnnxCheckpoint"/>) and <c>extra-state.safetensors</c>
/// (BatchNorm counters). Format v1 files (<c>weights.safetensors</c>) still load, on TorchSharp.</para>
/// <para><b>Loaded</b>, it scores on ONNX Runtime (<see cref="Engine"/>): loading, <c>Transform</c>,
/// <c>PredictionEngine</c> and <c>Evaluate</c> never load libtorch, so a scoring service needs Microsoft.ML,
/// Microsoft.ML.ImageAnalytics, Microsoft.ML.OnnxRuntime and this assembly (TorchSharp's managed assembly is loaded for
/// type metadata; its native libraries are never opened). <see cref="Classifier"/> (the TorchSharp
/// network, for explanations, export or further training) is rebuilt from the saved initializers on first use; a
/// loaded transformer keeps scoring and saving what was loaded.</para>
/// </remarks>
public sealed class ImageClassifierTransformer : ImageBatchTransformer
{
    /// <summary>
    /// v1: weights.safetensors (TorchSharp scoring). v2: model.onnx + extra-state.safetensors (ONNX Runtime scoring),
    /// and optionally scoring.json + scoring.ort (the graph ONNX Runtime optimised on the saving platform; a v2 reader
    /// that does not know them ignores them).
    /// </summary>
    internal static readonly ModelEntryFormat Format = new("IMGTRANSFER-CLASSIFIER", "IMGCLSFR", version: 2, minReadableVersion: 1, load: Load);
    const string ColumnsPart = "columns.json";
    const string DescriptionPart = "model.json";
    const string WeightsPartV1 = "weights.safetensors";
    const string OnnxPart = "model.onnx";
    const string ExtraStatePart = "extra-state.safetensors";
    const string ScoringInfoPart = "scoring.json";
    const string ScoringGraphPart = "scoring.ort";

    readonly IReadOnlyList<OutputColumn<float[]>> _outputs;
    readonly string[] _classNames;
    readonly Lazy<ClassifierDescription> _description;
    // Exactly one of the two scorers. _saved: loaded from a v2 file; the TorchSharp classifier is built on demand.
    readonly Lazy<FittedClassifier> _classifier;
    readonly SavedNetwork? _saved;

    internal ImageClassifierTransformer(IHostEnvironment env, FittedClassifier classifier, string imageColumnName, string scoreColumnName, string predictedLabelColumnName)
        : this(env, classifier.Description.ClassNames, new Lazy<ClassifierDescription>(classifier.Description), imageColumnName, scoreColumnName, predictedLabelColumnName,
            new Lazy<FittedClassifier>(classifier), saved: null)
    {
    }

    ImageClassifierTransformer(IHostEnvironment env, string[] classNames, Lazy<ClassifierDescription> description, string imageColumnName, string scoreColumnName,
        string predictedLabelColumnName, Lazy<FittedClassifier> classifier, SavedNetwork? saved)
        : base(env, nameof(ImageClassifierTransformer), imageColumnName)
    {
        _classNames = classNames;
        _description = description;
        _classifier = classifier;
        _saved = saved;
        ScoreColumnName = scoreColumnName;
        PredictedLabelColumnName = predictedLabelColumnName;
        _outputs = ClassificationColumns.Create(classNames, scoreColumnName, predictedLabelColumnName);
        ImageTransferModelRegistration.EnsureRegistered(env);
    }

    /// <summary>Architecture, class names, preprocessing and training history (of a loaded model: read from the file on first use).</summary>
    public ClassifierDescription Description => _description.Value;

    /// <summary>
    /// The TorchSharp network with its class names and preprocessing (explanations, export, further training). For a
    /// loaded model it is rebuilt from the saved ONNX initializers on first access, which loads libtorch; scoring does
    /// not need it.
    /// </summary>
    public FittedClassifier Classifier => _classifier.Value;

    /// <summary>What computes the scores: TorchSharp for a model trained in this process, ONNX Runtime for a loaded one.</summary>
    public ClassifierScoringEngine Engine => _saved is null ? ClassifierScoringEngine.TorchSharp : ClassifierScoringEngine.OnnxRuntime;

    /// <summary>
    /// For a loaded model, whether ONNX Runtime runs the graph it optimised when the model was saved (stored in the
    /// file for the platform that saved it: same ONNX Runtime version, processor architecture and vector width), so
    /// that loading skipped graph optimisation; false when it optimised the portable graph at load (another platform,
    /// or a file saved before optimised graphs were stored) and for a model trained in this process.
    /// </summary>
    public bool ScoresWithStoredOptimizedGraph => _saved?.Graph is not null;

    public IReadOnlyList<string> ClassNames => _classNames;
    public string ScoreColumnName { get; }
    public string PredictedLabelColumnName { get; }

    protected override IReadOnlyList<OutputColumn<float[]>> OutputColumns => _outputs;

    // Batches make the network several times faster per image than one-by-one forwards.
    protected override int BatchSize => 16;


    /// <summary>Class probabilities for each image, in <see cref="ClassNames"/> order, from <see cref="Engine"/>.</summary>
    public float[][] PredictProbabilities(IReadOnlyList<MLImage> images)
        => _saved is not null ? _saved.Scorer.PredictProbabilities(images) : Classifier.PredictProbabilities(images);

    protected override int OutputLength => _classNames.Length;

    protected override float[][] MapImages(IReadOnlyList<MLImage> images) => PredictProbabilities(images);

    protected override void SaveModel(ModelSaveContext ctx)
    {
        var columns = new ColumnNames(InputColumnName, ScoreColumnName, PredictedLabelColumnName);
        // A loaded model saves the bytes it scores with (no libtorch needed); a trained one exports its network.
        byte[] onnx = _saved?.Onnx.Verify() ?? OnnxCheckpoint.Export(Classifier);
        // The graph ONNX Runtime runs, optimised for this platform: the loaded one when it is for this platform, else made now.
        var (graphInfo, graph) = _saved?.Graph is { } loaded && OrtScoringGraph.IsUsable(loaded.Info) ? (loaded.Info, loaded.Bytes.Verify()) : OptimizedGraph(onnx);
        var parts = new List<ModelPart>
        {
            new(ColumnsPart, columns.Write),
            new(DescriptionPart, s => { if (_saved is not null) s.Write(_saved.DescriptionJson); else Description.Write(s); }),
            new(OnnxPart, s => s.Write(onnx), Uncompressed: true),
            new(ExtraStatePart, s =>
            {
                if (_saved is not null) s.Write(_saved.ExtraState.Verify());
                else OnnxCheckpoint.WriteExtraState(Classifier.Network, onnx, s);
            }),
        };
        if (graph is not null && graphInfo is not null)
        {
            parts.Add(new(ScoringInfoPart, graphInfo.Write));
            parts.Add(new(ScoringGraphPart, s => s.Write(graph), Uncompressed: true));
        }
        ImageTransferModelFormat.Save(ctx, Format, parts);
    }

    static (OrtScoringGraphInfo? Info, byte[]? Bytes) OptimizedGraph(byte[] onnx)
    {
        try
        {
            return OrtScoringGraph.Optimize(onnx) is { } ort ? (OrtScoringGraphInfo.ForThisPlatform(), ort) : (null, null);
        }
        catch (Microsoft.ML.OnnxRuntime.OnnxRuntimeException)
        {
            return (null, null); // an optimisation only: the file still scores from model.onnx
        }
    }

    /// <summary>Disposes the TorchSharp network (if built) and the ONNX Runtime session, for a transformer nothing else uses.</summary>
    internal void ReleaseResources()
    {
        if (_classifier.IsValueCreated) _classifier.Value.Dispose();
        _saved?.Scorer.Dispose();
    }

    static ITransformer Load(IHostEnvironment env, LoadedParts parts)
    {
        // Nothing on the v2 path may touch TorchSharp: its first call loads libtorch. Nor does it read more of the
        // description than scoring needs (class names, preprocessing); the rest is parsed when asked for.
        var columns = parts.Read(ColumnsPart, ColumnNames.Read);
        var descriptionJson = parts.ReadBytes(DescriptionPart).Verify();
        var (classNames, preprocessing) = ClassifierDescription.ReadScoringFields(descriptionJson, DescriptionPart);
        var description = new Lazy<ClassifierDescription>(() => ClassifierDescription.Read(new MemoryStream(descriptionJson, writable: false), DescriptionPart),
            LazyThreadSafetyMode.ExecutionAndPublication);
        if (parts.FormatVersion == 1)
        {
            var classifier = parts.Read(WeightsPartV1, s => FittedClassifier.Load(description.Value, s, source: WeightsPartV1));
            return new ImageClassifierTransformer(env, classifier, columns.Image, columns.Score, columns.PredictedLabel);
        }

        var graphInfo = parts.Contains(ScoringInfoPart) && parts.Contains(ScoringGraphPart) ? parts.Read(ScoringInfoPart, OrtScoringGraphInfo.Read) : null;
        SavedNetwork saved;
        if (graphInfo is not null && OrtScoringGraph.IsUsable(graphInfo))
        {
            // ONNX Runtime reads the weights in place from the pinned array, while the thread pool hashes it; the
            // portable graph and the training state are read (not parsed) for saving again and for Classifier, and
            // hashed when first used.
            // Session and hash run on the thread pool while this thread reads the other parts (one reader per archive).
            var graph = parts.ReadBytes(ScoringGraphPart, pinned: true).StartVerification();
            var opening = Task.Run(() => Open(graph, () => new OnnxClassifierScorer(classNames.Length, preprocessing, OnnxImageModel.LoadOptimized(graph.Bytes), ScoringGraphPart)));
            PartBytes onnx, extraState;
            try
            {
                onnx = parts.ReadBytes(OnnxPart);
                extraState = parts.ReadBytes(ExtraStatePart);
            }
            catch
            {
                opening.ContinueWith(t => t.Result.Dispose(), TaskContinuationOptions.OnlyOnRanToCompletion);
                throw;
            }
            var scorer = opening.GetAwaiter().GetResult();
            try
            {
                graph.Verify();
            }
            catch
            {
                scorer.Dispose();
                throw;
            }
            saved = new SavedNetwork(descriptionJson, onnx, extraState, scorer, new StoredGraph(graphInfo, graph));
        }
        else
        {
            var onnx = parts.ReadBytes(OnnxPart).StartVerification();
            var scorer = Open(onnx, () => new OnnxClassifierScorer(classNames.Length, preprocessing, OnnxImageModel.Load(onnx.Bytes), OnnxPart));
            try
            {
                saved = new SavedNetwork(descriptionJson, onnx, parts.ReadBytes(ExtraStatePart), scorer, Graph: null);
                onnx.Verify();
            }
            catch
            {
                scorer.Dispose();
                throw;
            }
        }
        var rebuilt = new Lazy<FittedClassifier>(() => OnnxCheckpoint.Rebuild(description.Value, saved.Onnx.Verify(), saved.ExtraState.Verify(), OnnxPart),
            LazyThreadSafetyMode.ExecutionAndPublication);
        return new ImageClassifierTransformer(env, classNames, description, columns.Image, columns.Score, columns.PredictedLabel, rebuilt, saved);
    }

    /// <summary>Opens a session on a part whose hash is still being checked: a damaged part is reported as such, not as whatever ONNX Runtime makes of it.</summary>
    static OnnxClassifierScorer Open(PartBytes part, Func<OnnxClassifierScorer> open)
    {
        try
        {
            return open();
        }
        catch (Exception e) when (e is Microsoft.ML.OnnxRuntime.OnnxRuntimeException or InvalidDataException)
        {
            part.Verify(); // throws the corruption error when the bytes are damaged
            throw;
        }
    }

    sealed record ColumnNames(string Image, string Score, string PredictedLabel)
    {
        public void Write(Stream stream) => System.Text.Json.JsonSerializer.Serialize(stream, this);

        /// <summary>Reads what <see cref="Write"/> wrote (without the reflection serializer: see <see cref="ClassifierDescription.ReadScoringFields"/>).</summary>
        public static ColumnNames Read(Stream stream)
        {
            using var document = System.Text.Json.JsonDocument.Parse(stream);
            string Field(string name) => document.RootElement.TryGetProperty(name, out var value) && value.GetString() is { } text
                ? text : throw new InvalidDataException($"The classifier entry's column names have no '{name}'.");
            return new ColumnNames(Field(nameof(Image)), Field(nameof(Score)), Field(nameof(PredictedLabel)));
        }
    }

    /// <summary>The optimised graph a v2 file stored for this platform, and its description.</summary>
    sealed record StoredGraph(OrtScoringGraphInfo Info, PartBytes Bytes);

    /// <summary>A v2 file's network: the bytes (saved again as they are) and the ONNX Runtime scorer on them.</summary>
    sealed record SavedNetwork(byte[] DescriptionJson, PartBytes Onnx, PartBytes ExtraState, OnnxClassifierScorer Scorer, StoredGraph? Graph);
}
