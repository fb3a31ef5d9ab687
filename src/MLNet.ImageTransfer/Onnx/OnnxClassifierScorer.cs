using Microsoft.ML.Data;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;

namespace MLNet.ImageTransfer.Onnx;

/// <summary>
/// Class probabilities of a classifier exported with its preprocessing (input <see cref="OnnxNames.Pixels"/>, output
/// <see cref="OnnxNames.Probabilities"/>), computed on ONNX Runtime from pixels that <see cref="ManagedImagePreprocessing"/>
/// prepares in plain .NET. Touches no TorchSharp: a process that only scores never loads libtorch. Thread-safe.
/// </summary>
internal sealed class OnnxClassifierScorer : IDisposable
{
    readonly ImagePreprocessing _preprocessing;

    /// <param name="description">The classifier's description (class names and preprocessing must match the graph).</param>
    /// <param name="onnx">The ONNX model's bytes.</param>
    /// <param name="source">Where the bytes come from, for error messages.</param>
    public OnnxClassifierScorer(ClassifierDescription description, byte[] onnx, string source)
        : this(description.ClassNames.Length, description.Preprocessing, OnnxImageModel.Load(onnx), source)
    {
    }

    /// <param name="classCount">The number of classes (the width of the graph's probabilities).</param>
    /// <param name="preprocessing">The classifier's preprocessing (its image size must be the graph's).</param>
    /// <param name="model">The session on the classifier's graph; disposed by this scorer (also when this constructor throws).</param>
    /// <param name="source">Where the graph comes from, for error messages.</param>
    public OnnxClassifierScorer(int classCount, ImagePreprocessing preprocessing, OnnxImageModel model, string source)
    {
        _preprocessing = preprocessing;
        Model = model;
        try
        {
            if (!Model.TakesRawPixels || !Model.OutputWidths.ContainsKey(OnnxNames.Probabilities))
                throw new InvalidDataException($"The ONNX model in '{source}' must take '{OnnxNames.Pixels}' and give '{OnnxNames.Probabilities}'; it takes '{Model.InputName}' and gives {string.Join(", ", Model.OutputNames)}.");
            if (Model.OutputWidths[OnnxNames.Probabilities] != classCount || Model.ImageSize != preprocessing.ImageSize)
                throw new InvalidDataException(
                    $"The ONNX model in '{source}' does not match its description: {Model.OutputWidths[OnnxNames.Probabilities]} classes at {Model.ImageSize} px, " +
                    $"the description says {classCount} classes at {preprocessing.ImageSize} px.");
        }
        catch
        {
            Model.Dispose();
            throw;
        }
    }

    /// <summary>The ONNX Runtime session.</summary>
    public OnnxImageModel Model { get; }

    /// <summary>Class probabilities for each image, in class-name order.</summary>
    public float[][] PredictProbabilities(IReadOnlyList<MLImage> images)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.Count == 0) return [];
        int size = _preprocessing.ImageSize;
        int perImage = 3 * size * size;
        var pixels = new float[images.Count * perImage];
        for (int i = 0; i < images.Count; i++)
            ManagedImagePreprocessing.ToPixels(images[i], _preprocessing, pixels.AsSpan(i * perImage, perImage));
        return Model.RunRows(pixels, OnnxNames.Probabilities);
    }

    public void Dispose() => Model.Dispose();
}
