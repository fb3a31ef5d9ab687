using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using Microsoft.ML.Transforms.Image;
using MLNet.ImageTransfer;
using MLNet.ImageTransfer.MLNet.DataViews;
using MLNet.ImageTransfer.MLNet.Persistence;
using MLNet.ImageTransfer.Models;

[assembly: ImageTransferModelEntry(typeof(ImageClassifierTransformer), nameof(ImageClassifierTransformer.Format))]

namespace MLNet.ImageTransfer;

/// <summary>
/// A fitted image classifier in an ML.NET pipeline: reads an image column (from <c>LoadImages</c>) and adds
/// <c>Score</c> (K class probabilities, slot names = class names) and <c>PredictedLabel</c> (key over the class names).
/// Never augments; preprocessing is the one saved with the model. Saved inside ML.NET's .zip as a JSON description
/// plus safetensors weights.
/// </summary>
public sealed class ImageClassifierTransformer : RowMappingTransformer<MLImage, float[]>
{
    internal static readonly ModelEntryFormat Format = new("IMGTRANSFER-CLASSIFIER", "IMGCLSFR", version: 1, minReadableVersion: 1, load: Load);
    const string ColumnsPart = "columns.json";
    const string DescriptionPart = "model.json";
    const string WeightsPart = "weights.safetensors";

    readonly IReadOnlyList<OutputColumn<float[]>> _outputs;

    internal ImageClassifierTransformer(IHostEnvironment env, FittedClassifier classifier, string imageColumnName, string scoreColumnName, string predictedLabelColumnName)
        : base(env, nameof(ImageClassifierTransformer), imageColumnName)
    {
        Classifier = classifier;
        ScoreColumnName = scoreColumnName;
        PredictedLabelColumnName = predictedLabelColumnName;
        _outputs = ClassificationColumns.Create(classifier.ClassNames, scoreColumnName, predictedLabelColumnName);
        ImageTransferModelRegistration.EnsureRegistered(env);
    }

    /// <summary>The network, class names and preprocessing.</summary>
    public FittedClassifier Classifier { get; }
    public IReadOnlyList<string> ClassNames => Classifier.ClassNames;
    public string ScoreColumnName { get; }
    public string PredictedLabelColumnName { get; }

    protected override IReadOnlyList<OutputColumn<float[]>> OutputColumns => _outputs;

    // Batches make the network several times faster per image than one-by-one forwards.
    protected override int BatchSize => 16;

    protected override void CheckInputColumn(DataViewSchema.Column column)
    {
        if (column.Type is not ImageDataViewType)
            throw new ArgumentException($"Column '{column.Name}' must hold images (from LoadImages), but is {column.Type}.", nameof(column));
    }

    protected override void Map(ReadOnlySpan<MLImage> inputs, Span<float[]> results)
    {
        var present = new List<MLImage>(inputs.Length);
        var index = new List<int>(inputs.Length);
        for (int i = 0; i < inputs.Length; i++)
        {
            if (inputs[i] is { Width: > 0, Height: > 0 } image) { present.Add(image); index.Add(i); }
            else results[i] = Enumerable.Repeat(float.NaN, Classifier.NumClasses).ToArray(); // no image → missing prediction
        }
        var probabilities = Classifier.PredictProbabilities(present);
        for (int j = 0; j < index.Count; j++) results[index[j]] = probabilities[j];
    }

    protected override void SaveModel(ModelSaveContext ctx)
    {
        var columns = new ColumnNames(InputColumnName, ScoreColumnName, PredictedLabelColumnName);
        ImageTransferModelFormat.Save(ctx, Format,
        [
            (ColumnsPart, s => System.Text.Json.JsonSerializer.Serialize(s, columns)),
            (DescriptionPart, Classifier.SaveDescription),
            (WeightsPart, Classifier.SaveWeights),
        ]);
    }

    static ITransformer Load(IHostEnvironment env, LoadedParts parts)
    {
        var columns = parts.Read(ColumnsPart, s => System.Text.Json.JsonSerializer.Deserialize<ColumnNames>(s))
            ?? throw new InvalidDataException("The classifier entry has no column names.");
        var description = parts.Read(DescriptionPart, s => FittedClassifier.ReadDescription(s, DescriptionPart));
        var classifier = parts.Read(WeightsPart, s => FittedClassifier.Load(description, s, source: WeightsPart));
        return new ImageClassifierTransformer(env, classifier, columns.Image, columns.Score, columns.PredictedLabel);
    }

    sealed record ColumnNames(string Image, string Score, string PredictedLabel);
}
