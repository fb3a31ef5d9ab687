using Microsoft.ML;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;

namespace MLNet.ImageTransfer.Onnx;

/// <summary>
/// The exportable network of a fitted or loaded ML.NET pipeline: its <see cref="ImageClassifierTransformer"/>
/// (exported as a classifier) or, failing that, its <see cref="ImageFeaturizerTransformer"/> (exported as a feature
/// extractor). What the CLI's <c>export</c> does.
/// </summary>
public sealed class OnnxModelExport
{
    readonly ImageClassifierModel _network;
    readonly ImagePreprocessing _preprocessing;
    readonly IReadOnlyList<string>? _classNames;
    readonly string? _architectureName;

    OnnxModelExport(ImageClassifierModel network, ImagePreprocessing preprocessing, IReadOnlyList<string>? classNames, string? architectureName)
    {
        _network = network;
        _preprocessing = preprocessing;
        _classNames = classNames;
        _architectureName = architectureName;
    }

    /// <summary>True for a classifier, false for a feature extractor.</summary>
    public bool IsClassifier => _classNames is not null;

    /// <summary>A trained classifier.</summary>
    public static OnnxModelExport FromClassifier(FittedClassifier classifier)
    {
        ArgumentNullException.ThrowIfNull(classifier);
        return new(classifier.Network, classifier.Preprocessing, classifier.ClassNames, classifier.Description.ArchitectureName);
    }

    /// <summary>A fitted or loaded featurizer (<c>ml.Transforms.FeaturizeImage</c>).</summary>
    public static OnnxModelExport FromFeaturizer(ImageFeaturizerTransformer featurizer)
    {
        ArgumentNullException.ThrowIfNull(featurizer);
        return new(featurizer.Backbone, featurizer.Preprocessing, null, featurizer.Description.ArchitectureName);
    }

    /// <summary>The one image classifier of a pipeline, or else its one image featurizer.</summary>
    /// <exception cref="InvalidOperationException">The pipeline has neither, or several of the kind found.</exception>
    public static OnnxModelExport FromPipeline(ITransformer model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var parts = Flatten(model).ToList();
        var classifiers = parts.OfType<ImageClassifierTransformer>().ToList();
        if (classifiers.Count == 1) return FromClassifier(classifiers[0].Classifier);
        if (classifiers.Count > 1) throw new InvalidOperationException($"The model contains {classifiers.Count} image classifiers; export one with OnnxExporter.Export(classifier, …).");
        var featurizers = parts.OfType<ImageFeaturizerTransformer>().ToList();
        return featurizers.Count switch
        {
            1 => FromFeaturizer(featurizers[0]),
            0 => throw new InvalidOperationException("The model contains no MLNet.ImageTransfer image classifier or featurizer to export."),
            _ => throw new InvalidOperationException($"The model contains {featurizers.Count} image featurizers; export one with OnnxModelExport.FromFeaturizer."),
        };
    }

    static IEnumerable<ITransformer> Flatten(ITransformer t)
        => t is IEnumerable<ITransformer> chain ? chain.SelectMany(Flatten) : [t];

    /// <summary>Writes the ONNX file (atomically: a temporary file moved into place).</summary>
    public OnnxExportSummary Write(string path, OnnxExportOptions? options = null) => OnnxExporter.WriteFile(path, s => Write(s, options));

    /// <summary>Writes the ONNX model to a stream.</summary>
    public OnnxExportSummary Write(Stream stream, OnnxExportOptions? options = null)
        => IsClassifier
            ? OnnxExporter.Export(_network, _preprocessing, _classNames, stream, options, _architectureName)
            : OnnxExporter.ExportFeatureExtractor(_network, _preprocessing, stream, options, _architectureName);

    /// <summary>The ONNX model as bytes.</summary>
    public byte[] ToBytes(OnnxExportOptions? options = null)
    {
        using var ms = new MemoryStream();
        Write(ms, options);
        return ms.ToArray();
    }

    /// <summary>Runs <paramref name="onnxModel"/> (an export of this network) on ONNX Runtime against TorchSharp on random images.</summary>
    public OnnxParityReport Verify(byte[] onnxModel, int images = 4, int seed = 0)
        => OnnxParity.Check(_network, _preprocessing, onnxModel, images, seed);
}
