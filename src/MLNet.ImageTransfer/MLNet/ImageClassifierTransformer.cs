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
    /// <summary>v1: weights.safetensors (TorchSharp scoring). v2: model.onnx + extra-state.safetensors (ONNX Runtime scoring).</summary>
    internal static readonly ModelEntryFormat Format = new("IMGTRANSFER-CLASSIFIER", "IMGCLSFR", version: 2, minReadableVersion: 1, load: Load);
    const string ColumnsPart = "columns.json";
    const string DescriptionPart = "model.json";
    const string WeightsPartV1 = "weights.safetensors";
    const string OnnxPart = "model.onnx";
    const string ExtraStatePart = "extra-state.safetensors";

    readonly IReadOnlyList<OutputColumn<float[]>> _outputs;
    // Exactly one of the two scorers. _saved: loaded from a v2 file; the TorchSharp classifier is built on demand.
    readonly Lazy<FittedClassifier> _classifier;
    readonly SavedNetwork? _saved;

    internal ImageClassifierTransformer(IHostEnvironment env, FittedClassifier classifier, string imageColumnName, string scoreColumnName, string predictedLabelColumnName)
        : this(env, classifier.Description, imageColumnName, scoreColumnName, predictedLabelColumnName, new Lazy<FittedClassifier>(classifier), saved: null)
    {
    }

    ImageClassifierTransformer(IHostEnvironment env, ClassifierDescription description, string imageColumnName, string scoreColumnName, string predictedLabelColumnName,
        Lazy<FittedClassifier> classifier, SavedNetwork? saved)
        : base(env, nameof(ImageClassifierTransformer), imageColumnName)
    {
        Description = description;
        _classifier = classifier;
        _saved = saved;
        ScoreColumnName = scoreColumnName;
        PredictedLabelColumnName = predictedLabelColumnName;
        _outputs = ClassificationColumns.Create(description.ClassNames, scoreColumnName, predictedLabelColumnName);
        ImageTransferModelRegistration.EnsureRegistered(env);
    }

    /// <summary>Architecture, class names, preprocessing and training history.</summary>
    public ClassifierDescription Description { get; }

    /// <summary>
    /// The TorchSharp network with its class names and preprocessing (explanations, export, further training). For a
    /// loaded model it is rebuilt from the saved ONNX initializers on first access, which loads libtorch; scoring does
    /// not need it.
    /// </summary>
    public FittedClassifier Classifier => _classifier.Value;

    /// <summary>What computes the scores: TorchSharp for a model trained in this process, ONNX Runtime for a loaded one.</summary>
    public ClassifierScoringEngine Engine => _saved is null ? ClassifierScoringEngine.TorchSharp : ClassifierScoringEngine.OnnxRuntime;

    public IReadOnlyList<string> ClassNames => Description.ClassNames;
    public string ScoreColumnName { get; }
    public string PredictedLabelColumnName { get; }

    protected override IReadOnlyList<OutputColumn<float[]>> OutputColumns => _outputs;

    // Batches make the network several times faster per image than one-by-one forwards.
    protected override int BatchSize => 16;


    /// <summary>Class probabilities for each image, in <see cref="ClassNames"/> order, from <see cref="Engine"/>.</summary>
    public float[][] PredictProbabilities(IReadOnlyList<MLImage> images)
        => _saved is not null ? _saved.Scorer.PredictProbabilities(images) : Classifier.PredictProbabilities(images);

    protected override int OutputLength => ClassNames.Count;

    protected override float[][] MapImages(IReadOnlyList<MLImage> images) => PredictProbabilities(images);

    protected override void SaveModel(ModelSaveContext ctx)
    {
        var columns = new ColumnNames(InputColumnName, ScoreColumnName, PredictedLabelColumnName);
        // A loaded model saves the bytes it scores with (no libtorch needed); a trained one exports its network.
        byte[] onnx = _saved?.Onnx ?? OnnxCheckpoint.Export(Classifier);
        ImageTransferModelFormat.Save(ctx, Format,
        [
            (ColumnsPart, s => System.Text.Json.JsonSerializer.Serialize(s, columns)),
            (DescriptionPart, s => Description.Write(s)),
            (OnnxPart, s => s.Write(onnx)),
            (ExtraStatePart, s =>
            {
                if (_saved is not null) s.Write(_saved.ExtraState);
                else OnnxCheckpoint.WriteExtraState(Classifier.Network, onnx, s);
            }),
        ]);
    }

    /// <summary>Disposes the TorchSharp network (if built) and the ONNX Runtime session, for a transformer nothing else uses.</summary>
    internal void ReleaseResources()
    {
        if (_classifier.IsValueCreated) _classifier.Value.Dispose();
        _saved?.Scorer.Dispose();
    }

    static ITransformer Load(IHostEnvironment env, LoadedParts parts)
    {
        // Nothing on the v2 path may touch TorchSharp: its first call loads libtorch.
        var columns = parts.Read(ColumnsPart, s => System.Text.Json.JsonSerializer.Deserialize<ColumnNames>(s))
            ?? throw new InvalidDataException("The classifier entry has no column names.");
        var description = parts.Read(DescriptionPart, s => ClassifierDescription.Read(s, DescriptionPart));
        if (parts.FormatVersion == 1)
        {
            var classifier = parts.Read(WeightsPartV1, s => FittedClassifier.Load(description, s, source: WeightsPartV1));
            return new ImageClassifierTransformer(env, classifier, columns.Image, columns.Score, columns.PredictedLabel);
        }
        var onnx = parts.Read(OnnxPart, ReadAll);
        var extraState = parts.Read(ExtraStatePart, ReadAll);
        var saved = new SavedNetwork(onnx, extraState, new OnnxClassifierScorer(description, onnx, OnnxPart));
        var rebuilt = new Lazy<FittedClassifier>(() => OnnxCheckpoint.Rebuild(description, onnx, extraState, OnnxPart), LazyThreadSafetyMode.ExecutionAndPublication);
        return new ImageClassifierTransformer(env, description, columns.Image, columns.Score, columns.PredictedLabel, rebuilt, saved);
    }

    static byte[] ReadAll(Stream stream)
    {
        using var ms = new MemoryStream();
        stream.CopyTo(ms);
        return ms.ToArray();
    }

    sealed record ColumnNames(string Image, string Score, string PredictedLabel);

    /// <summary>A v2 file's network: the bytes (saved again as they are) and the ONNX Runtime scorer on them.</summary>
    sealed record SavedNetwork(byte[] Onnx, byte[] ExtraState, OnnxClassifierScorer Scorer);
}
