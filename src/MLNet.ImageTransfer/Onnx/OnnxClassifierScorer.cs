using Microsoft.ML.Data;
using MLNet.ImageTransfer.Models;

namespace MLNet.ImageTransfer.Onnx;

/// <summary>
/// Class probabilities of a classifier exported with its preprocessing (input <see cref="OnnxNames.Pixels"/>, output
/// <see cref="OnnxNames.Probabilities"/>), computed on ONNX Runtime from pixels that <see cref="ManagedImagePreprocessing"/>
/// prepares in plain .NET. Touches no TorchSharp: a process that only scores never loads libtorch. Thread-safe.
/// </summary>
internal sealed class OnnxClassifierScorer : IDisposable
{
    readonly ClassifierDescription _description;

    /// <param name="description">The classifier's description (class names and preprocessing must match the graph).</param>
    /// <param name="onnx">The ONNX model's bytes.</param>
    /// <param name="source">Where the bytes come from, for error messages.</param>
    public OnnxClassifierScorer(ClassifierDescription description, byte[] onnx, string source)
    {
        _description = description;
        Model = OnnxImageModel.Load(onnx);
        try
        {
            if (!Model.TakesRawPixels || !Model.OutputWidths.ContainsKey(OnnxNames.Probabilities))
                throw new InvalidDataException($"The ONNX model in '{source}' must take '{OnnxNames.Pixels}' and give '{OnnxNames.Probabilities}'; it takes '{Model.InputName}' and gives {string.Join(", ", Model.OutputNames)}.");
            if (Model.OutputWidths[OnnxNames.Probabilities] != description.ClassNames.Length || Model.ImageSize != description.Preprocessing.ImageSize)
                throw new InvalidDataException(
                    $"The ONNX model in '{source}' does not match its description: {Model.OutputWidths[OnnxNames.Probabilities]} classes at {Model.ImageSize} px, " +
                    $"the description says {description.ClassNames.Length} classes at {description.Preprocessing.ImageSize} px.");
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
        int size = _description.Preprocessing.ImageSize;
        int perImage = 3 * size * size;
        var pixels = new float[images.Count * perImage];
        for (int i = 0; i < images.Count; i++)
            ManagedImagePreprocessing.ToPixels(images[i], _description.Preprocessing, pixels.AsSpan(i * perImage, perImage));
        return Model.RunRows(pixels, OnnxNames.Probabilities);
    }

    public void Dispose() => Model.Dispose();
}
