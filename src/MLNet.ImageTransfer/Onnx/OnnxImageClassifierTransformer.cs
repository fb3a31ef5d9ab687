using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using Microsoft.ML.Transforms.Image;
using MLNet.ImageTransfer.MLNet.DataViews;
using MLNet.ImageTransfer.MLNet.Persistence;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Onnx;

[assembly: ImageTransferModelEntry(typeof(OnnxImageClassifierTransformer), nameof(OnnxImageClassifierTransformer.Format))]

namespace MLNet.ImageTransfer.Onnx;

/// <summary>
/// A trained image classifier scored by ONNX Runtime: the same columns as <see cref="ImageClassifierTransformer"/>
/// (<c>Score</c>, probabilities with the class names as slot names; <c>PredictedLabel</c>, a key over the class names),
/// computed by the exported graph from pixels that <see cref="ManagedImagePreprocessing"/> prepares in plain .NET.
/// Loading and scoring it never loads libtorch. A saved <see cref="ImageClassifierTransformer"/> already scores on ONNX
/// Runtime once loaded; this transformer is the smallest scoring-only form (BatchNorm folded, weights optional). Make
/// one with <see cref="OnnxScoring.ToOnnxScoring"/>.
/// </summary>
/// <remarks>
/// Saved inside ML.NET's .zip as <c>columns.json</c>, <c>model.json</c> (the <see cref="ClassifierDescription"/>),
/// <c>model.onnx</c> and, unless left out, <c>weights.safetensors</c> (torchvision key names), from which
/// <see cref="ToFittedClassifier"/> rebuilds the TorchSharp network — for explanations or further training; only that
/// call loads libtorch.
/// </remarks>
public sealed class OnnxImageClassifierTransformer : ImageBatchTransformer, IDisposable
{
    internal static readonly ModelEntryFormat Format = new("IMGTRANSFER-ONNXCLSFR", "IMGONNXC", version: 1, minReadableVersion: 1, load: Load);
    const string ColumnsPart = "columns.json";
    const string DescriptionPart = "model.json";
    const string OnnxPart = "model.onnx";
    const string WeightsPart = "weights.safetensors";

    readonly IReadOnlyList<OutputColumn<float[]>> _outputs;
    readonly byte[] _onnx;
    readonly byte[]? _weights;
    readonly OnnxClassifierScorer _scorer;

    internal OnnxImageClassifierTransformer(IHostEnvironment env, ClassifierDescription description, byte[] onnx, byte[]? weights,
        string imageColumnName, string scoreColumnName, string predictedLabelColumnName)
        : base(env, nameof(OnnxImageClassifierTransformer), imageColumnName)
    {
        Description = description;
        _onnx = onnx;
        _weights = weights;
        _scorer = new OnnxClassifierScorer(description, onnx, OnnxPart);
        ScoreColumnName = scoreColumnName;
        PredictedLabelColumnName = predictedLabelColumnName;
        _outputs = ClassificationColumns.Create(description.ClassNames, scoreColumnName, predictedLabelColumnName);
        ImageTransferModelRegistration.EnsureRegistered(env);
    }

    /// <summary>Architecture, class names, preprocessing and training history of the classifier.</summary>
    public ClassifierDescription Description { get; }
    public IReadOnlyList<string> ClassNames => Description.ClassNames;
    public string ScoreColumnName { get; }
    public string PredictedLabelColumnName { get; }

    /// <summary>The ONNX Runtime session.</summary>
    public OnnxImageModel Model => _scorer.Model;

    /// <summary>The ONNX model's bytes (e.g. to deploy it elsewhere).</summary>
    public ReadOnlyMemory<byte> OnnxModel => _onnx;

    /// <summary>Whether the TorchSharp weights were kept (see <see cref="ToFittedClassifier"/>).</summary>
    public bool HasWeights => _weights is not null;

    protected override IReadOnlyList<OutputColumn<float[]>> OutputColumns => _outputs;
    protected override int BatchSize => 16;


    /// <summary>Class probabilities for each image, in <see cref="ClassNames"/> order.</summary>
    public float[][] PredictProbabilities(IReadOnlyList<MLImage> images) => _scorer.PredictProbabilities(images);

    protected override int OutputLength => ClassNames.Count;

    protected override float[][] MapImages(IReadOnlyList<MLImage> images) => PredictProbabilities(images);

    /// <summary>
    /// Rebuilds the TorchSharp classifier from the kept weights (to explain it, export it differently, or train on).
    /// This loads libtorch.
    /// </summary>
    /// <exception cref="InvalidOperationException">The weights were left out when the model was converted.</exception>
    public FittedClassifier ToFittedClassifier()
    {
        if (_weights is null)
            throw new InvalidOperationException("This ONNX classifier was saved without its TorchSharp weights (keepWeights: false); only scoring is possible.");
        using var stream = new MemoryStream(_weights, writable: false);
        return FittedClassifier.Load(Description, stream, source: WeightsPart);
    }

    protected override void SaveModel(ModelSaveContext ctx)
    {
        var columns = new ColumnNames(InputColumnName, ScoreColumnName, PredictedLabelColumnName);
        var parts = new List<(string, Action<Stream>)>
        {
            (ColumnsPart, s => JsonSerializer.Serialize(s, columns)),
            (DescriptionPart, s => JsonSerializer.Serialize(s, Description, ClassifierDescription.Json)),
            (OnnxPart, s => s.Write(_onnx)),
        };
        if (_weights is not null) parts.Add((WeightsPart, s => s.Write(_weights)));
        ImageTransferModelFormat.Save(ctx, Format, parts);
    }

    static ITransformer Load(IHostEnvironment env, LoadedParts parts)
    {
        var columns = parts.Read(ColumnsPart, s => JsonSerializer.Deserialize<ColumnNames>(s))
            ?? throw new InvalidDataException("The ONNX classifier entry has no column names.");
        var description = parts.Read(DescriptionPart, s => ClassifierDescription.Read(s, DescriptionPart));
        var onnx = parts.Read(OnnxPart, ReadAll);
        var weights = parts.Contains(WeightsPart) ? parts.Read(WeightsPart, ReadAll) : null;
        return new OnnxImageClassifierTransformer(env, description, onnx, weights, columns.Image, columns.Score, columns.PredictedLabel);
    }

    static byte[] ReadAll(Stream stream)
    {
        using var ms = new MemoryStream();
        stream.CopyTo(ms);
        return ms.ToArray();
    }

    public void Dispose() => _scorer.Dispose();

    sealed record ColumnNames(string Image, string Score, string PredictedLabel);
}

/// <summary>Turning a trained pipeline into one that scores on ONNX Runtime (deployable without libtorch).</summary>
public static class OnnxScoring
{
    /// <summary>
    /// A copy of <paramref name="model"/> in which every <see cref="ImageClassifierTransformer"/> is replaced by an
    /// <see cref="OnnxImageClassifierTransformer"/> of the same classifier (its graph exported with preprocessing and
    /// BatchNorm folding); every other transformer is kept. Save it with <c>mlContext.Model.Save</c> as usual; loading
    /// and scoring the saved file (after <c>RegisterImageTransfer()</c>) then never loads libtorch — as for any saved
    /// classifier; this form is smaller (folded BatchNorm, and no training state with <paramref name="keepWeights"/> false).
    /// </summary>
    /// <param name="mlContext">The context the new transformers belong to.</param>
    /// <param name="model">A fitted or loaded pipeline.</param>
    /// <param name="keepWeights">Keep the TorchSharp weights inside (default), so that
    /// <see cref="OnnxImageClassifierTransformer.ToFittedClassifier"/> works; false for the smallest scoring-only file.</param>
    /// <param name="opset">ONNX opset of the exported graph.</param>
    public static ITransformer ToOnnxScoring(this MLContext mlContext, ITransformer model, bool keepWeights = true, int opset = OnnxExporter.MinOpset)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentNullException.ThrowIfNull(model);
        var options = new OnnxExportOptions { Opset = opset, Outputs = OnnxClassifierOutputs.Probabilities };
        int replaced = 0;
        var result = Convert(model);
        if (replaced == 0) throw new InvalidOperationException("The model contains no MLNet.ImageTransfer image classifier to convert.");
        return result;

        ITransformer Convert(ITransformer t)
        {
            switch (t)
            {
                case ImageClassifierTransformer c:
                {
                    replaced++;
                    var classifier = c.Classifier;
                    byte[]? weights = null;
                    if (keepWeights)
                    {
                        using var ms = new MemoryStream();
                        classifier.SaveWeights(ms);
                        weights = ms.ToArray();
                    }
                    return new OnnxImageClassifierTransformer(mlContext, classifier.Description, OnnxExporter.ExportToBytes(classifier, options), weights,
                        c.InputColumnName, c.ScoreColumnName, c.PredictedLabelColumnName);
                }
                case IEnumerable<ITransformer> chain:
                    return new TransformerChain<ITransformer>(chain.Select(Convert).ToArray());
                default:
                    return t;
            }
        }
    }
}
