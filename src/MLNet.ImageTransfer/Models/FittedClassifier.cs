using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML.Data;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Training;
using MLNet.ImageTransfer.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Models;

/// <summary>
/// Everything a trained classifier is, saved as JSON next to its weights: the architecture it was built from, the
/// classes, the preprocessing, and how it was trained. The loader rebuilds the network from this alone.
/// </summary>
public sealed record ClassifierDescription
{
    /// <summary>Version of this description's layout. Readers refuse versions newer than they know.</summary>
    public int FormatVersion { get; init; } = CurrentFormatVersion;
    /// <summary>
    /// 2 added architecture variants (<see cref="ResNetConfig.StrideOnFirstConv"/>, <see cref="ResNetConfig.ConvBias"/>,
    /// BatchNorm epsilon); a description is written as version 1 unless its architecture uses them
    /// (<see cref="FormatVersionFor"/>), so older readers keep loading everything they can rebuild exactly.
    /// </summary>
    public const int CurrentFormatVersion = 2;

    /// <summary>The lowest format version that describes <paramref name="architecture"/> exactly.</summary>
    public static int FormatVersionFor(ArchitectureConfig architecture) => architecture.IsVariant ? 2 : 1;

    /// <summary>Registered name (e.g. densenet121), or null for a custom configuration.</summary>
    public string? ArchitectureName { get; init; }
    public required ArchitectureConfig Architecture { get; init; }
    public required HeadSpec Head { get; init; }
    public required string[] ClassNames { get; init; }
    public required ImagePreprocessing Preprocessing { get; init; }
    /// <summary>File name of the pretrained weights training started from, if any.</summary>
    public string? InitialWeights { get; init; }
    /// <summary>SHA-256 (hex) of the pretrained weight file, if any: which exact file the model started from.</summary>
    public string? InitialWeightsSha256 { get; init; }
    /// <summary>Format of the pretrained weight file (safetensors, PyTorch, KerasH5, Onnx…; ImageTransferModel for a saved model trained on), if any.</summary>
    public string? InitialWeightsFormat { get; init; }
    /// <summary>The fine-tuning schedule used: trainable layer groups and learning rates per phase of epochs.</summary>
    public FineTuningSchedule? FineTuning { get; init; }
    /// <summary>The training augmentation as a spec string (<see cref="global::MLNet.ImageTransfer.Augmentation.AugmentationPipeline.ToSpec"/>), if any. A record only: prediction never augments.</summary>
    public string? Augmentation { get; init; }
    /// <summary>Per-epoch history of the run that produced the weights.</summary>
    public IReadOnlyList<EpochSummary>? History { get; init; }
    public int? KeptEpoch { get; init; }

    /// <summary>Writes the description as JSON.</summary>
    public void Write(Stream stream) => JsonSerializer.Serialize(stream, this, Json);

    /// <summary>Reads and checks a description written by <see cref="Write"/>. Uses no TorchSharp (scoring processes read it too).</summary>
    public static ClassifierDescription Read(Stream description, string? source = null)
    {
        static string Where(string? source) => source is null ? "" : $" in '{source}'";
        ClassifierDescription? desc;
        try
        {
            desc = JsonSerializer.Deserialize<ClassifierDescription>(description, Json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"Model description{Where(source)} is not valid: {e.Message}", e);
        }
        if (desc is null) throw new InvalidDataException($"Model description{Where(source)} is empty.");
        if (desc.FormatVersion > CurrentFormatVersion || desc.FormatVersion < 1)
            throw new InvalidDataException($"Model description{Where(source)} has format version {desc.FormatVersion}; this version of MLNet.ImageTransfer reads versions 1 to {CurrentFormatVersion}. Upgrade the package to load it.");
        return desc;
    }

    /// <summary>
    /// The two fields scoring needs — class names and preprocessing — read from a description written by
    /// <see cref="Write"/>, with the same format-version check as <see cref="Read"/> and the same values (defaults where
    /// a field is absent, enums by name or number). It parses with <see cref="JsonDocument"/> instead of the reflection
    /// serializer, whose first use in a process costs more than the rest of loading a model; the full description is
    /// read when something asks for it.
    /// </summary>
    internal static (string[] ClassNames, ImagePreprocessing Preprocessing) ReadScoringFields(ReadOnlyMemory<byte> description, string? source = null)
    {
        string where = source is null ? "" : $" in '{source}'";
        try
        {
            using var document = JsonDocument.Parse(description);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"Model description{where} is not a JSON object.");
            int version = root.TryGetProperty(nameof(FormatVersion), out var v) ? v.GetInt32() : CurrentFormatVersion;
            if (version > CurrentFormatVersion || version < 1)
                throw new InvalidDataException($"Model description{where} has format version {version}; this version of MLNet.ImageTransfer reads versions 1 to {CurrentFormatVersion}. Upgrade the package to load it.");
            if (!root.TryGetProperty(nameof(ClassNames), out var names) || names.ValueKind != JsonValueKind.Array)
                throw new InvalidDataException($"Model description{where} is not valid: it has no '{nameof(ClassNames)}'.");
            var classNames = names.EnumerateArray().Select(n => n.GetString() ?? throw new InvalidDataException($"Model description{where} is not valid: a class name is null.")).ToArray();
            if (!root.TryGetProperty(nameof(Preprocessing), out var p) || p.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"Model description{where} is not valid: it has no '{nameof(Preprocessing)}'.");
            return (classNames, ReadPreprocessing(p));
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or ArgumentException)
        {
            throw new InvalidDataException($"Model description{where} is not valid: {e.Message}", e);
        }
    }

    static ImagePreprocessing ReadPreprocessing(JsonElement p)
    {
        var defaults = new ImagePreprocessing();
        bool Has(string name, out JsonElement value) => p.TryGetProperty(name, out value) && value.ValueKind != JsonValueKind.Null;
        static T Enum<T>(JsonElement e) where T : struct, System.Enum
            => e.ValueKind == JsonValueKind.Number ? (T)(object)e.GetInt32() : System.Enum.Parse<T>(e.GetString()!, ignoreCase: true);
        static float[] Floats(JsonElement e) => e.EnumerateArray().Select(x => x.GetSingle()).ToArray();
        float[]? meanImage = null;
        if (Has(nameof(ImagePreprocessing.MeanImage), out var mi))
        {
            var bytes = mi.GetBytesFromBase64();
            if (bytes.Length % 4 != 0) throw new JsonException("A float32 array's bytes must be a multiple of 4.");
            meanImage = new float[bytes.Length / 4];
            for (int i = 0; i < meanImage.Length; i++) meanImage[i] = System.Buffers.Binary.BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(4 * i));
        }
        return new ImagePreprocessing
        {
            Name = Has(nameof(ImagePreprocessing.Name), out var name) ? name.GetString()! : defaults.Name,
            ImageSize = Has(nameof(ImagePreprocessing.ImageSize), out var size) ? size.GetInt32() : defaults.ImageSize,
            Resize = Has(nameof(ImagePreprocessing.Resize), out var resize) ? Enum<ResizeMode>(resize) : defaults.Resize,
            CropFraction = Has(nameof(ImagePreprocessing.CropFraction), out var crop) ? crop.GetDouble() : defaults.CropFraction,
            Channels = Has(nameof(ImagePreprocessing.Channels), out var channels) ? Enum<ChannelOrder>(channels) : defaults.Channels,
            Scale = Has(nameof(ImagePreprocessing.Scale), out var scale) ? scale.GetSingle() : defaults.Scale,
            Mean = Has(nameof(ImagePreprocessing.Mean), out var mean) ? Floats(mean) : defaults.Mean,
            Std = Has(nameof(ImagePreprocessing.Std), out var std) ? Floats(std) : defaults.Std,
            MeanImage = meanImage,
        };
    }

    internal static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter() },
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };
}

/// <summary>
/// A trained network with its class names and preprocessing: what ML.NET's transformer wraps, what the CLI predicts
/// with, and what is saved inside the model .zip. Always in eval mode; safe to predict from several threads.
/// </summary>
public sealed class FittedClassifier : IDisposable
{
    public FittedClassifier(ImageClassifierModel network, ClassifierDescription description, Device? device = null)
    {
        if (description.ClassNames.Length != network.NumClasses)
            throw new ArgumentException($"The network has {network.NumClasses} outputs but {description.ClassNames.Length} class names were given.");
        Network = network;
        Description = description;
        Device = device ?? CPU;
        Network.eval();
    }

    public ImageClassifierModel Network { get; }
    public ClassifierDescription Description { get; }
    public Device Device { get; }
    public IReadOnlyList<string> ClassNames => Description.ClassNames;
    public ImagePreprocessing Preprocessing => Description.Preprocessing;
    public int NumClasses => Description.ClassNames.Length;

    /// <summary>Class probabilities (softmax) for each image, in <see cref="ClassNames"/> order.</summary>
    public float[][] PredictProbabilities(IReadOnlyList<MLImage> images)
    {
        if (images.Count == 0) return [];
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var batch = stack(images.Select(i => ImageTensors.ToResizedBytes(i, Preprocessing)).ToArray());
        var probabilities = nn.functional.softmax(Network.call(ImageTensors.Normalize(batch, Preprocessing, Device)), 1).cpu();
        var flat = probabilities.data<float>().ToArray();
        return Enumerable.Range(0, images.Count).Select(i => flat.AsSpan(i * NumClasses, NumClasses).ToArray()).ToArray();
    }

    /// <summary>Class probabilities for one image.</summary>
    public float[] PredictProbabilities(MLImage image) => PredictProbabilities([image])[0];

    /// <summary>Writes the description as JSON.</summary>
    public void SaveDescription(Stream stream) => Description.Write(stream);

    /// <summary>Writes the weights as safetensors, with torchvision's key names (readable by PyTorch/timm too).</summary>
    public void SaveWeights(Stream stream)
    {
        var cpuState = Network.state_dict().Select(kv => (kv.Key, kv.Value.device_type == DeviceType.CPU ? kv.Value : kv.Value.cpu())).ToList();
        SafeTensors.Write(stream, cpuState, new Dictionary<string, string> { ["format"] = "pt", ["producer"] = "MLNet.ImageTransfer" });
    }

    /// <summary>Reads and checks a description written by <see cref="SaveDescription"/>.</summary>
    public static ClassifierDescription ReadDescription(Stream description, string? source = null) => ClassifierDescription.Read(description, source);

    /// <summary>Rebuilds a classifier from its description and the weights written by <see cref="SaveWeights"/>; they must match exactly.</summary>
    public static FittedClassifier Load(ClassifierDescription description, Stream weights, Device? device = null, string? source = null)
    {
        var network = description.Architecture.Build(description.ClassNames.Length, description.Head);
        try
        {
            using (var file = SafeTensors.Read(weights, source))
                StateDictLoader.Load(network, file.Tensors, strict: true, source: source);
            if (device is not null && device.type != DeviceType.CPU) network.to(device);
            return new FittedClassifier(network, description, device);
        }
        catch
        {
            network.Dispose();
            throw;
        }
    }

    static string Where(string? source) => source is null ? "" : $" in '{source}'";

    public void Dispose() => Network.Dispose();
}
