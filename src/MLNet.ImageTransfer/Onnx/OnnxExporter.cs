using System.Reflection;
using System.Text.Json;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Onnx.Protobuf;
using static MLNet.ImageTransfer.Onnx.Protobuf.OnnxProto;

namespace MLNet.ImageTransfer.Onnx;

/// <summary>Which outputs an exported classifier has.</summary>
[Flags]
public enum OnnxClassifierOutputs
{
    /// <summary><c>probabilities</c> [N,K]: softmax over the classes, in class-name order.</summary>
    Probabilities = 1,
    /// <summary><c>logits</c> [N,K]: the classifier's raw outputs.</summary>
    Logits = 2,
    /// <summary>Both (the default).</summary>
    Both = Probabilities | Logits,
}

/// <summary>How a network is written to ONNX.</summary>
public sealed record OnnxExportOptions
{
    /// <summary>Opset of the default ONNX domain, 13 to 21 (the operators used mean the same in all of them). Default 13.</summary>
    public int Opset { get; init; } = 13;

    /// <summary>
    /// True (default): the input is <c>pixels</c>, raw RGB values 0–255, and the graph starts with the model's
    /// normalisation (channel reorder for BGR presets, scale, mean, std). False: the input is <c>input</c>, the
    /// already-normalised tensor the network itself sees.
    /// </summary>
    public bool IncludePreprocessing { get; init; } = true;

    /// <summary>Fold each BatchNorm that directly follows a convolution into that convolution. Default true.</summary>
    public bool FoldBatchNorm { get; init; } = true;

    /// <summary>Outputs of a classifier export (ignored for feature extractors). Default both.</summary>
    public OnnxClassifierOutputs Outputs { get; init; } = OnnxClassifierOutputs.Both;

    /// <summary>A fixed batch size, or null (default) for a symbolic batch dimension <c>N</c>.</summary>
    public int? BatchSize { get; init; }

    internal void Validate()
    {
        if (Opset is < OnnxExporter.MinOpset or > OnnxExporter.MaxOpset)
            throw new ArgumentOutOfRangeException(nameof(Opset), Opset, $"Supported opsets are {OnnxExporter.MinOpset} to {OnnxExporter.MaxOpset}.");
        if ((Outputs & OnnxClassifierOutputs.Both) == 0) throw new ArgumentException("Choose at least one output (probabilities, logits).", nameof(Outputs));
        if (BatchSize is < 1) throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, "The batch size must be positive.");
    }
}

/// <summary>What an export wrote: the graph's interface and its operators.</summary>
public sealed record OnnxExportSummary(
    string InputName, IReadOnlyList<string> InputShape, IReadOnlyList<string> OutputNames, IReadOnlyList<string> OutputShape,
    int Opset, IReadOnlyDictionary<string, int> OperatorCounts, IReadOnlyDictionary<string, string> Metadata, long Bytes)
{
    public override string ToString()
        => $"{InputName} [{string.Join(", ", InputShape)}] → {string.Join(", ", OutputNames)} [{string.Join(", ", OutputShape)}], opset {Opset}, " +
           $"{OperatorCounts.Values.Sum()} nodes ({string.Join(", ", OperatorCounts.OrderByDescending(kv => kv.Value).Select(kv => $"{kv.Key} {kv.Value}"))}), {Bytes / 1024.0 / 1024.0:F1} MiB";
}

/// <summary>The names of an exported graph's inputs, outputs and metadata entries.</summary>
public static class OnnxNames
{
    /// <summary>Input with preprocessing: float32 [N,3,S,S], RGB, 0–255, already resized/cropped to S (see <see cref="OnnxMetadataKeys.Preprocessing"/>).</summary>
    public const string Pixels = "pixels";
    /// <summary>Input without preprocessing: float32 [N,3,S,S], normalised exactly as the network was trained.</summary>
    public const string NormalizedInput = "input";
    public const string Probabilities = "probabilities";
    public const string Logits = "logits";
    /// <summary>Global-average-pooled backbone features [N,C] (feature-extractor exports).</summary>
    public const string Features = "features";
}

/// <summary>Keys of the <c>metadata_props</c> of an exported model (ONNX Runtime: <c>ModelMetadata.CustomMetadataMap</c>).</summary>
public static class OnnxMetadataKeys
{
    /// <summary>"classifier" or "feature-extractor".</summary>
    public const string Kind = "mlnet_imagetransfer.kind";
    /// <summary>JSON array of the class names, in output order.</summary>
    public const string ClassNames = "class_names";
    /// <summary>JSON of <see cref="ImagePreprocessing"/> (geometry: image size, resize mode, crop fraction; then channels, scale, mean, std).</summary>
    public const string Preprocessing = "preprocessing";
    /// <summary>Whether the graph contains the normalisation ("true": input is raw pixels 0–255, RGB).</summary>
    public const string PreprocessingIncluded = "preprocessing_included";
    /// <summary>Plain-text description of the input tensor.</summary>
    public const string InputDescription = "input_description";
    /// <summary>JSON of the <see cref="ArchitectureConfig"/>.</summary>
    public const string Architecture = "architecture";
    /// <summary>The registered architecture name (e.g. resnet50), if any.</summary>
    public const string ArchitectureName = "architecture_name";
    /// <summary>JSON of the <see cref="HeadSpec"/>.</summary>
    public const string Head = "head";
    /// <summary>Width of the <c>features</c> output.</summary>
    public const string FeatureDimension = "feature_dimension";
    /// <summary>"true" when BatchNorms after convolutions were folded into them.</summary>
    public const string BatchNormFolded = "batchnorm_folded";
}

/// <summary>
/// Writes our DenseNet, ResNet and VGG networks (trained, or zoo models with loaded weights) as ONNX models, opset 13+,
/// that ONNX Runtime and other ONNX consumers can run without libtorch.
/// </summary>
/// <remarks>
/// <para><b>Input.</b> By default <c>pixels</c>: float32 <c>[N,3,S,S]</c> (N symbolic), RGB, values 0–255, already
/// resized and cropped to S×S as the model's <see cref="ImagePreprocessing"/> prescribes (that geometry is in the
/// <c>preprocessing</c> metadata; <see cref="ImageTensors.ToResizedBytes"/> does it in .NET). The graph begins with the
/// normalisation: for BGR presets a Gather reordering the channels, then Mul (scale), Sub (mean), Div (std).
/// With <see cref="OnnxExportOptions.IncludePreprocessing"/> = false the input is <c>input</c>, the normalised tensor.</para>
/// <para><b>Outputs.</b> <c>probabilities</c> [N,K] (Softmax) and <c>logits</c> [N,K]; or, for a feature extractor,
/// <c>features</c> [N,C] (global-average-pooled backbone output).</para>
/// <para><b>Graph.</b> Conv (with each following BatchNorm folded in), BatchNormalization (DenseNet's pre-activation
/// norms), Relu, MaxPool, AveragePool, GlobalAveragePool, Concat, Add, Flatten, Gemm, Softmax; VGG's adaptive pooling
/// as an identity, AveragePool or an exact MatMul. Dropout is omitted. Initializer names are torchvision's
/// <c>state_dict</c> keys (<c>layer1.0.conv1+layer1.0.bn1.weight</c> for folded pairs).</para>
/// <para><b>Metadata</b> (<see cref="OnnxMetadataKeys"/>): class names, preprocessing JSON, architecture, head.</para>
/// </remarks>
public static class OnnxExporter
{
    public const int MinOpset = 13;
    public const int MaxOpset = 21;

    static readonly string ProducerVersion =
        typeof(OnnxExporter).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0";

    // ---- Classifiers ----------------------------------------------------------------------------------------------

    /// <summary>Exports a trained classifier (e.g. <c>ImageClassificationWorkflow.FindClassifier(model)</c>) to <paramref name="path"/>.</summary>
    public static OnnxExportSummary Export(FittedClassifier classifier, string path, OnnxExportOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(classifier);
        return WriteFile(path, s => Export(classifier, s, options));
    }

    /// <summary>Exports a trained classifier to <paramref name="stream"/>.</summary>
    public static OnnxExportSummary Export(FittedClassifier classifier, Stream stream, OnnxExportOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(classifier);
        return Export(classifier.Network, classifier.Preprocessing, classifier.ClassNames, stream, options, classifier.Description.ArchitectureName);
    }

    /// <summary>Exports a trained classifier as bytes (e.g. for <c>ApplyOnnxModel</c> or an ONNX Runtime session).</summary>
    public static byte[] ExportToBytes(FittedClassifier classifier, OnnxExportOptions? options = null)
    {
        using var ms = new MemoryStream();
        Export(classifier, ms, options);
        return ms.ToArray();
    }

    /// <summary>Exports any network of ours (e.g. a zoo model with loaded weights) as a classifier.</summary>
    /// <param name="network">The network; exported as it is (its weights, its head), whatever its train/eval mode.</param>
    /// <param name="preprocessing">The preprocessing the network expects (its input size is the graph's).</param>
    /// <param name="classNames">One name per output, or null for "0", "1", ….</param>
    /// <param name="stream">Where the ModelProto is written.</param>
    /// <param name="options">Export options.</param>
    /// <param name="architectureName">Registered name for the metadata; null looks it up.</param>
    public static OnnxExportSummary Export(ImageClassifierModel network, ImagePreprocessing preprocessing, IReadOnlyList<string>? classNames,
        Stream stream, OnnxExportOptions? options = null, string? architectureName = null)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentNullException.ThrowIfNull(stream);
        classNames ??= Enumerable.Range(0, network.NumClasses).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        if (classNames.Count != network.NumClasses)
            throw new ArgumentException($"The network has {network.NumClasses} outputs but {classNames.Count} class names were given.", nameof(classNames));
        return Write(network, preprocessing, classNames, stream, options ?? new(), architectureName);
    }

    // ---- Feature extractors ---------------------------------------------------------------------------------------

    /// <summary>
    /// Exports the backbone of <paramref name="network"/> as a feature extractor: output <c>features</c> [N,C], the
    /// global-average-pooled feature map (<see cref="ImageClassifierModel.ForwardPooledFeatures"/>); the head is not exported.
    /// </summary>
    public static OnnxExportSummary ExportFeatureExtractor(ImageClassifierModel network, ImagePreprocessing preprocessing, Stream stream,
        OnnxExportOptions? options = null, string? architectureName = null)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentNullException.ThrowIfNull(stream);
        return Write(network, preprocessing, null, stream, options ?? new(), architectureName);
    }

    /// <summary><see cref="ExportFeatureExtractor(ImageClassifierModel, ImagePreprocessing, Stream, OnnxExportOptions?, string?)"/> as bytes.</summary>
    public static byte[] ExportFeatureExtractorToBytes(ImageClassifierModel network, ImagePreprocessing preprocessing, OnnxExportOptions? options = null)
    {
        using var ms = new MemoryStream();
        ExportFeatureExtractor(network, preprocessing, ms, options);
        return ms.ToArray();
    }

    // ---- Implementation -------------------------------------------------------------------------------------------

    /// <summary>Writes a file atomically: to a temporary file next to it, then moved into place.</summary>
    internal static OnnxExportSummary WriteFile(string path, Func<Stream, OnnxExportSummary> write)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var temp = full + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            OnnxExportSummary summary;
            using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
                summary = write(file);
            File.Move(temp, full, overwrite: true);
            return summary;
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    /// <summary>Builds and writes the model; <paramref name="classNames"/> null means a feature extractor.</summary>
    static OnnxExportSummary Write(ImageClassifierModel network, ImagePreprocessing preprocessing, IReadOnlyList<string>? classNames,
        Stream stream, OnnxExportOptions options, string? architectureName)
    {
        ArgumentNullException.ThrowIfNull(preprocessing);
        options.Validate();
        preprocessing.Validate();
        bool classifier = classNames is not null;
        Dim batch = options.BatchSize is { } n ? n : Dim.Symbolic("N");
        int size = preprocessing.ImageSize;
        architectureName ??= Architectures.NameOf(network.Config);

        var graph = new OnnxGraphBuilder(batch);
        var writer = new TorchvisionOnnxWriter(graph, network, options.FoldBatchNorm);
        string inputName = options.IncludePreprocessing ? OnnxNames.Pixels : OnnxNames.NormalizedInput;
        string inputDescription = options.IncludePreprocessing
            ? $"float32 [N,3,{size},{size}]: RGB pixel values 0-255 (not normalised), already resized and cropped to {size}x{size} " +
              $"as the '{OnnxMetadataKeys.Preprocessing}' metadata prescribes (resize {preprocessing.Resize}, crop fraction {preprocessing.CropFraction}); " +
              $"the graph applies channel order {preprocessing.Channels}, x*{preprocessing.Scale}, -mean, /std itself."
            : $"float32 [N,3,{size},{size}]: the normalised network input, ((pixel*Scale)-Mean)/Std in {preprocessing.Channels} order " +
              $"(see the '{OnnxMetadataKeys.Preprocessing}' metadata).";
        var x = graph.Input(inputName, [3, size, size], inputDescription);
        if (options.IncludePreprocessing) x = writer.Preprocess(x, preprocessing);
        var features = writer.Features(x);

        var outputs = new List<string>();
        if (classifier)
        {
            var logits = writer.Head(features);
            long k = graph.Shape(logits)[0];
            if (options.Outputs.HasFlag(OnnxClassifierOutputs.Probabilities))
            {
                var probabilities = graph.Node("Softmax", OnnxNames.Probabilities, [k], [logits], OnnxProto.Attr.Int("axis", 1));
                graph.Output(probabilities, "Class probabilities (softmax), in the order of the 'class_names' metadata.");
                outputs.Add(probabilities);
            }
            if (options.Outputs.HasFlag(OnnxClassifierOutputs.Logits))
            {
                // An Identity gives the logits their public name without renaming the classifier's own node.
                var named = graph.Node("Identity", OnnxNames.Logits, [k], [logits]);
                graph.Output(named, "The classifier's logits (before softmax).");
                outputs.Add(named);
            }
        }
        else
        {
            var pooled = writer.GlobalAvgPoolFlatten(features, "pool", OnnxNames.Features);
            graph.Output(pooled, "Global-average-pooled backbone features.");
            outputs.Add(pooled);
        }

        var metadata = new List<KeyValuePair<string, string>>
        {
            new(OnnxMetadataKeys.Kind, classifier ? "classifier" : "feature-extractor"),
            new(OnnxMetadataKeys.Preprocessing, JsonSerializer.Serialize(preprocessing, ClassifierDescription.Json)),
            new(OnnxMetadataKeys.PreprocessingIncluded, options.IncludePreprocessing ? "true" : "false"),
            new(OnnxMetadataKeys.InputDescription, inputDescription),
            new(OnnxMetadataKeys.Architecture, JsonSerializer.Serialize(network.Config, ClassifierDescription.Json)),
            new(OnnxMetadataKeys.BatchNormFolded, options.FoldBatchNorm ? "true" : "false"),
        };
        if (architectureName is not null) metadata.Add(new(OnnxMetadataKeys.ArchitectureName, architectureName));
        if (classifier)
        {
            metadata.Add(new(OnnxMetadataKeys.ClassNames, JsonSerializer.Serialize(classNames)));
            metadata.Add(new(OnnxMetadataKeys.Head, JsonSerializer.Serialize(network.Head, ClassifierDescription.Json)));
        }
        else
        {
            metadata.Add(new(OnnxMetadataKeys.FeatureDimension, graph.Shape(outputs[0])[0].ToString(System.Globalization.CultureInfo.InvariantCulture)));
        }

        string what = (architectureName ?? network.Config.Family) + (classifier ? $" classifier ({classNames!.Count} classes)" : " feature extractor");
        var model = OnnxProto.Model(IrVersionFor(options.Opset), options.Opset, graph.Build(what.Replace(' ', '_')), "MLNet.ImageTransfer", ProducerVersion,
            domain: "mlnet.imagetransfer", modelVersion: 1, docString: $"{what}, exported by MLNet.ImageTransfer. Input: {inputDescription}", metadata);
        model.WriteTo(stream);
        return new OnnxExportSummary(inputName, [batch.ToString(), "3", $"{size}", $"{size}"], outputs,
            [batch.ToString(), graph.Shape(outputs[0])[0].ToString(System.Globalization.CultureInfo.InvariantCulture)], options.Opset,
            new Dictionary<string, int>(graph.OperatorCounts), metadata.ToDictionary(kv => kv.Key, kv => kv.Value), model.Size);
    }

    /// <summary>The IR version released with each opset (ONNX 1.8: IR 7 / opset 13 … ONNX 1.16: IR 10 / opset 21).</summary>
    static long IrVersionFor(int opset) => opset switch
    {
        13 => 7,
        <= 18 => 8,
        <= 20 => 9,
        _ => 10,
    };
}
