using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.ML;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Weights;

namespace MLNet.ImageTransfer;

/// <summary>What starting a training run from a saved model did (<see cref="ImageTransferTrainerOptions.InitialModel"/>).</summary>
/// <param name="Path">The model file.</param>
/// <param name="Sha256">SHA-256 (hex) of the file.</param>
/// <param name="SavedClassNames">The classes the saved model was trained on.</param>
/// <param name="HeadReinitialized">True when the classes differ: the backbone was loaded, the classifier starts fresh.</param>
/// <param name="Loaded">The <c>state_dict</c> keys copied from the saved model.</param>
public sealed record InitialModelLoad(string Path, string Sha256, IReadOnlyList<string> SavedClassNames, bool HeadReinitialized, IReadOnlyList<string> Loaded)
{
    /// <summary>One line for logs.</summary>
    public string Describe() => HeadReinitialized
        ? $"Started from '{System.IO.Path.GetFileName(Path)}': {Loaded.Count} backbone tensors loaded; its classes ({string.Join(", ", SavedClassNames)}) differ from the data's, so the classifier was re-initialised."
        : $"Started from '{System.IO.Path.GetFileName(Path)}': all {Loaded.Count} tensors loaded (same architecture, head and classes).";
}

/// <summary>
/// A model <c>.zip</c> saved by this library, opened to continue training from its weights: its one image classifier,
/// whose TorchSharp network is rebuilt from the saved ONNX initializers (or a format-v1 file's safetensors).
/// </summary>
internal sealed class InitialModelFile : IDisposable
{
    readonly ImageClassifierTransformer _transformer;

    InitialModelFile(string path, ImageClassifierTransformer transformer)
    {
        Path = path;
        _transformer = transformer;
    }

    public string Path { get; }
    public ClassifierDescription Description => _transformer.Description;

    /// <summary>Loads <paramref name="path"/> with ML.NET and finds its image classifier.</summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidDataException">The file is not a model this library can load, or has no (or several) image classifiers.</exception>
    public static InitialModelFile Open(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"Initial model '{path}' does not exist.", path);
        ITransformer model;
        try
        {
            model = new MLContext().RegisterImageTransfer().Model.Load(path, out _);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new InvalidDataException($"Initial model '{path}' is not an ML.NET model this library can load: {e.GetBaseException().Message}", e);
        }
        var classifiers = Flatten(model).OfType<ImageClassifierTransformer>().ToList();
        if (classifiers.Count != 1)
            throw new InvalidDataException($"Initial model '{path}' contains {classifiers.Count} image classifiers; exactly one is needed to continue training from it.");
        return new InitialModelFile(path, classifiers[0]);
    }

    static IEnumerable<ITransformer> Flatten(ITransformer t) => t is IEnumerable<ITransformer> chain ? chain.SelectMany(Flatten) : [t];

    /// <summary>
    /// The architecture and head to build: the saved ones. <paramref name="requested"/> (the trainer's) must be the same
    /// architecture; <paramref name="requestedHead"/> must be the saved head or left at <see cref="HeadSpec.Default"/>.
    /// </summary>
    public (ArchitectureConfig Architecture, HeadSpec Head) Check(ArchitectureConfig requested, HeadSpec requestedHead)
    {
        var saved = Description.Architecture;
        if (JsonSerializer.Serialize(requested, ClassifierDescription.Json) != JsonSerializer.Serialize(saved, ClassifierDescription.Json))
            throw new ArgumentException(
                $"Initial model '{Path}' is {Name(saved)}, but the trainer is set to build {Name(requested)}. Set the trainer's architecture to the saved one " +
                "(the CLI's --arch defaults to it with --init-model).");
        if (requestedHead != HeadSpec.Default && requestedHead != Description.Head)
            throw new ArgumentException($"Initial model '{Path}' has the head {Description.Head}, but the trainer asks for {requestedHead}. Leave Head at its default to keep the saved one.");
        return (saved, Description.Head);
    }

    static string Name(ArchitectureConfig config) => Architectures.NameOf(config) is { } name ? $"a {name}" : $"a custom {config.Family} ({config})";

    /// <summary>
    /// Copies the saved weights into <paramref name="network"/> (built from <see cref="Check"/>'s result). With other
    /// classes than <paramref name="classNames"/>, everything but the classifier is copied and the classifier keeps its
    /// fresh initialisation. Exact copies: nothing is converted.
    /// </summary>
    public InitialModelLoad LoadInto(ImageClassifierModel network, IReadOnlyList<string> classNames)
    {
        var saved = _transformer.Classifier;
        bool sameClasses = saved.ClassNames.SequenceEqual(classNames, StringComparer.Ordinal);
        string prefix = network.ClassifierName + ".";
        Func<string, bool>? skipHead = sameClasses ? null : key => key.StartsWith(prefix, StringComparison.Ordinal);
        var report = StateDictLoader.Load(network, saved.Network.state_dict(), strict: true, skip: skipHead, source: Path);
        string sha;
        using (var file = File.OpenRead(Path)) sha = Convert.ToHexStringLower(SHA256.HashData(file));
        return new InitialModelLoad(Path, sha, saved.ClassNames.ToArray(), !sameClasses, report.Loaded);
    }

    /// <summary>Frees the saved network (rebuilt only to be copied).</summary>
    public void Dispose() => _transformer.ReleaseResources();
}
