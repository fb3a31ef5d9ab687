using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using Microsoft.ML.Transforms.Image;
using MLNet.ImageTransfer;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Engine;
using MLNet.ImageTransfer.MLNet.DataViews;
using MLNet.ImageTransfer.MLNet.Persistence;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Weights;
using TorchSharp;
using static TorchSharp.torch;

[assembly: ImageTransferModelEntry(typeof(ImageFeaturizerTransformer), nameof(ImageFeaturizerTransformer.Format))]

namespace MLNet.ImageTransfer;

/// <summary>Options of <see cref="ImageFeaturizerEstimator"/> (<c>ml.Transforms.FeaturizeImage</c>).</summary>
public sealed class ImageFeaturizerOptions
{
    /// <summary>Registered architecture name (densenet121, resnet50, vgg16, …; see <see cref="Architectures.Names"/>). Null (default): the one <see cref="Weights"/> holds, else resnet50.</summary>
    public string? Architecture { get; set; }

    /// <summary>A custom configuration instead of a named architecture (e.g. a tiny network for tests).</summary>
    public ArchitectureConfig? CustomArchitecture { get; set; }

    /// <summary>
    /// Pretrained weights of the backbone, by name or by file, as for the trainers
    /// (<see cref="ImageTransferTrainerOptions.Weights"/>): <c>mlnet-resnet18</c> is the network behind ML.NET's
    /// <c>DnnFeaturizeImage</c>, found offline in its NuGet package; <c>resnet50.tv2_in1k</c> is downloaded once;
    /// <c>imagenet</c> is the chosen architecture's default; a file of any supported format works too. The file's
    /// classifier, if any, is ignored. Null leaves the backbone randomly initialised (seeded by <see cref="Seed"/>),
    /// which only makes sense for tests.
    /// </summary>
    public string? Weights { get; set; }

    /// <summary>Where named <see cref="Weights"/> are downloaded to and how (cache folder, progress, offline). Null: the defaults.</summary>
    public PretrainedWeightOptions? WeightSource { get; set; }

    /// <summary>Side of the square network input. Default 224 (ignored when <see cref="Preprocessing"/> is set).</summary>
    public int ImageSize { get; set; } = 224;

    /// <summary>Image preprocessing; null uses torchvision's ImageNet preset at <see cref="ImageSize"/>. Use the preset the weights were trained with.</summary>
    public ImagePreprocessing? Preprocessing { get; set; }

    /// <summary>cpu, cuda or cuda:N. Default cpu.</summary>
    public string Device { get; set; } = "cpu";

    /// <summary>Images per forward pass when a data view is scored. Default 16.</summary>
    public int BatchSize { get; set; } = 16;

    /// <summary>Seed of the initialisation when <see cref="Weights"/> is null. Default 0.</summary>
    public int Seed { get; set; }

    internal ArchitectureConfig ResolveArchitecture()
        => CustomArchitecture
           ?? (Architecture is null && Weights is not null ? PretrainedWeightSource.ArchitectureOf(Weights) : null)
           ?? Architectures.Get(Architecture ?? "resnet50");

    // Without an explicit preprocessing: the one the weights were trained with (see WeightPreprocessing.ImpliedBy).
    internal ImagePreprocessing ResolvePreprocessing() => Preprocessing ?? (Weights is null ? ImagePreprocessing.TorchVision(ImageSize)
        : WeightPreprocessing.ImpliedBy(Weights, ResolveArchitecture().Family, ImageSize, Architectures.NameOf(ResolveArchitecture())));

    /// <summary>The local file of <see cref="Weights"/> (found, or downloaded once into the cache).</summary>
    internal ResolvedWeights? ResolveWeights()
        => Weights is null ? null : PretrainedWeightSource.Resolve(Weights, Architectures.NameOf(ResolveArchitecture()), WeightSource);

    internal void Validate()
    {
        ResolveArchitecture().Validate();
        ResolvePreprocessing().Validate();
        if (BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, "The batch size must be positive.");
        if (Weights is not null && !File.Exists(Weights)) PretrainedWeightSource.Select(Weights, Architectures.NameOf(ResolveArchitecture()));
        _ = ComputeDevice.Resolve(Device);
    }
}

/// <summary>
/// What a featurizer is, saved as JSON inside the model: the backbone's architecture, the preprocessing, and which
/// weights it started from. The loader rebuilds the backbone from this alone.
/// </summary>
public sealed record ImageFeaturizerDescription
{
    public int FormatVersion { get; init; } = CurrentFormatVersion;
    public const int CurrentFormatVersion = 1;
    public string? ArchitectureName { get; init; }
    public required ArchitectureConfig Architecture { get; init; }
    public required ImagePreprocessing Preprocessing { get; init; }
    /// <summary>File name of the pretrained weights, if any (informational).</summary>
    public string? InitialWeights { get; init; }
    /// <summary>Width of the feature vector.</summary>
    public int FeatureDimension { get; init; }
}

/// <summary>
/// Frozen-backbone feature extraction (Keras' VGG16 feature extractor; ML.NET's <c>DnnImageFeaturizer</c>): reads
/// an image column and adds a known-size <c>Vector&lt;float, C&gt;</c> column holding the backbone's
/// global-average-pooled features (<see cref="ImageClassifierModel.ForwardPooledFeatures"/>), for any ML.NET trainer.
/// Fitting trains nothing: it builds the backbone and loads its weights.
/// </summary>
public sealed class ImageFeaturizerEstimator : IEstimator<ImageFeaturizerTransformer>
{
    readonly IHost _host;
    readonly string _outputColumnName;
    readonly string _inputColumnName;
    readonly ImageFeaturizerOptions _options;

    internal ImageFeaturizerEstimator(IHostEnvironment env, string outputColumnName, string inputColumnName, ImageFeaturizerOptions options)
    {
        ArgumentNullException.ThrowIfNull(env);
        ArgumentException.ThrowIfNullOrWhiteSpace(outputColumnName);
        ArgumentException.ThrowIfNullOrWhiteSpace(inputColumnName);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _host = env.Register(nameof(ImageFeaturizerEstimator));
        _outputColumnName = outputColumnName;
        _inputColumnName = inputColumnName;
        _options = options;
        ImageTransferModelRegistration.EnsureRegistered(env);
    }

    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        if (!inputSchema.TryFindColumn(_inputColumnName, out var image))
            throw new ArgumentException($"Input has no column '{_inputColumnName}'. Add ml.Transforms.LoadImages(\"{_inputColumnName}\", imageFolder, \"ImagePath\") before FeaturizeImage.");
        if (image.ItemType is not ImageDataViewType || image.Kind != SchemaShape.Column.VectorKind.Scalar)
            throw new ArgumentException($"Column '{_inputColumnName}' must hold images (from LoadImages), but is {image.ItemType}.");
        // A shape carries no vector sizes: any width describes the same shape.
        return SchemaShapes.Append(inputSchema, [ImageFeaturizerTransformer.FeatureColumn(_outputColumnName, 1)]);
    }

    public ImageFeaturizerTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        GetOutputSchema(SchemaShapes.FromSchema(input.Schema));
        // Any weight format; the file decides the variant to build (Keras files: Keras' conventions, e.g. resnet50_keras).
        using var weights = _options.ResolveWeights() is { } resolved ? PretrainedWeightFile.Open(resolved.Path) : null;
        var architecture = weights?.Adapt(_options.ResolveArchitecture()) ?? _options.ResolveArchitecture();
        var backbone = ImageFeaturizerTransformer.BuildBackbone(architecture, _options.Seed);
        try
        {
            if (weights is not null) PretrainedWeights.Load(backbone, weights);
            var description = new ImageFeaturizerDescription
            {
                ArchitectureName = Architectures.NameOf(architecture),
                Architecture = architecture,
                Preprocessing = _options.ResolvePreprocessing(),
                InitialWeights = _options.Weights is not { } named ? null : File.Exists(named) ? Path.GetFileName(named) : named,
                FeatureDimension = backbone.NumFeatures,
            };
            return new ImageFeaturizerTransformer(_host, backbone, description, _inputColumnName, _outputColumnName, ComputeDevice.Resolve(_options.Device), _options.BatchSize);
        }
        catch
        {
            backbone.Dispose();
            throw;
        }
    }
}

/// <summary>
/// A fitted <see cref="ImageFeaturizerEstimator"/>: adds the feature column (<c>Vector&lt;float, C&gt;</c>; NaNs for a
/// row without an image). Saved inside ML.NET's .zip as a JSON description plus the backbone's weights (safetensors,
/// torchvision key names); load it with <c>mlContext.RegisterImageTransfer()</c> then <c>mlContext.Model.Load</c>.
/// </summary>
public sealed class ImageFeaturizerTransformer : ImageBatchTransformer, IDisposable
{
    internal static readonly ModelEntryFormat Format = new("IMGTRANSFER-FEATURIZER", "IMGFEATR", version: 1, minReadableVersion: 1, load: Load);
    const string ColumnsPart = "columns.json";
    const string DescriptionPart = "featurizer.json";
    const string WeightsPart = "backbone.safetensors";

    readonly IReadOnlyList<OutputColumn<float[]>> _outputs;
    readonly int _batchSize;

    internal ImageFeaturizerTransformer(IHostEnvironment env, ImageClassifierModel backbone, ImageFeaturizerDescription description,
        string inputColumnName, string outputColumnName, Device device, int batchSize)
        : base(env, nameof(ImageFeaturizerTransformer), inputColumnName)
    {
        Backbone = backbone;
        Description = description with { FeatureDimension = backbone.NumFeatures };
        OutputColumnName = outputColumnName;
        Device = device;
        _batchSize = batchSize;
        if (device.type != DeviceType.CPU) backbone.to(device);
        backbone.eval();
        _outputs = [FeatureColumn(outputColumnName, backbone.NumFeatures)];
        ImageTransferModelRegistration.EnsureRegistered(env);
    }

    /// <summary>The backbone network (eval mode). Its classifier is a placeholder and is never used.</summary>
    public ImageClassifierModel Backbone { get; }
    public ImageFeaturizerDescription Description { get; }
    public ImagePreprocessing Preprocessing => Description.Preprocessing;
    public string OutputColumnName { get; }
    public Device Device { get; }

    /// <summary>Width C of the feature vector.</summary>
    public int FeatureDimension => Backbone.NumFeatures;

    protected override IReadOnlyList<OutputColumn<float[]>> OutputColumns => _outputs;
    protected override int BatchSize => _batchSize;

    internal static OutputColumn<float[]> FeatureColumn(string name, int width)
        => OutputColumn<float[]>.Create(name, new VectorDataViewType(NumberDataViewType.Single, width),
            (float[] features, ref VBuffer<float> value) =>
            {
                if (features.Length != width) throw new InvalidOperationException($"The featurizer produced {features.Length} values for a {width}-wide column.");
                var editor = VBufferEditor.Create(ref value, width);
                features.AsSpan().CopyTo(editor.Values);
                value = editor.Commit();
            });

    /// <summary>
    /// The backbone with the smallest possible head (the family's pooled MLP head with one unit): the head is never
    /// run, and VGG's 120-million-parameter classifier is never allocated.
    /// </summary>
    internal static ImageClassifierModel BuildBackbone(ArchitectureConfig architecture, int seed)
    {
        lock (GlobalGenerator.Gate)
        {
            torch.manual_seed(seed);
            return architecture.Build(1, HeadSpec.KerasMlp(hiddenUnits: 1, dropout: 0));
        }
    }


    /// <summary>Features of a batch of images, one float[C] per image.</summary>
    public float[][] Featurize(IReadOnlyList<MLImage> images)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.Count == 0) return [];
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var batch = stack(images.Select(i => ImageTensors.ToResizedBytes(i, Preprocessing)).ToArray());
        var features = Backbone.ForwardPooledFeatures(ImageTensors.Normalize(batch, Preprocessing, Device)).cpu();
        var flat = features.data<float>().ToArray();
        int c = FeatureDimension;
        return Enumerable.Range(0, images.Count).Select(i => flat.AsSpan(i * c, c).ToArray()).ToArray();
    }

    protected override int OutputLength => FeatureDimension;

    protected override float[][] MapImages(IReadOnlyList<MLImage> images) => Featurize(images);

    protected override void SaveModel(ModelSaveContext ctx)
    {
        var columns = new ColumnNames(InputColumnName, OutputColumnName, _batchSize);
        ImageTransferModelFormat.Save(ctx, Format,
        [
            (ColumnsPart, s => JsonSerializer.Serialize(s, columns)),
            (DescriptionPart, s => JsonSerializer.Serialize(s, Description, ClassifierDescription.Json)),
            (WeightsPart, WriteBackbone),
        ]);
    }

    void WriteBackbone(Stream stream)
    {
        string head = Backbone.ClassifierName + ".";
        var state = Backbone.state_dict().Where(kv => !kv.Key.StartsWith(head, StringComparison.Ordinal))
            .Select(kv => (kv.Key, kv.Value.device_type == DeviceType.CPU ? kv.Value : kv.Value.cpu())).ToList();
        SafeTensors.Write(stream, state, new Dictionary<string, string> { ["format"] = "pt", ["producer"] = "MLNet.ImageTransfer featurizer" });
    }

    static ITransformer Load(IHostEnvironment env, LoadedParts parts)
    {
        var columns = parts.Read(ColumnsPart, s => JsonSerializer.Deserialize<ColumnNames>(s))
            ?? throw new InvalidDataException("The featurizer entry has no column names.");
        var description = parts.Read(DescriptionPart, s => JsonSerializer.Deserialize<ImageFeaturizerDescription>(s, ClassifierDescription.Json))
            ?? throw new InvalidDataException("The featurizer entry has no description.");
        if (description.FormatVersion is < 1 or > ImageFeaturizerDescription.CurrentFormatVersion)
            throw new InvalidDataException($"The featurizer description has format version {description.FormatVersion}; this version reads 1 to {ImageFeaturizerDescription.CurrentFormatVersion}. Upgrade MLNet.ImageTransfer to load it.");
        var backbone = BuildBackbone(description.Architecture, 0);
        try
        {
            parts.Read(WeightsPart, s =>
            {
                using var file = SafeTensors.Read(s, WeightsPart);
                string head = backbone.ClassifierName + ".";
                StateDictLoader.Load(backbone, file.Tensors, strict: true, skip: k => k.StartsWith(head, StringComparison.Ordinal), source: WeightsPart);
            });
            return new ImageFeaturizerTransformer(env, backbone, description, columns.Image, columns.Features, CPU, Math.Max(1, columns.BatchSize));
        }
        catch
        {
            backbone.Dispose();
            throw;
        }
    }

    public void Dispose() => Backbone.Dispose();

    sealed record ColumnNames(string Image, string Features, int BatchSize);
}

/// <summary>Catalog extensions on <c>mlContext.Transforms</c>: <c>FeaturizeImage</c>.</summary>
public static class ImageFeaturizerCatalog
{
    /// <summary>
    /// Adds <paramref name="outputColumnName"/>, the global-average-pooled features of a pretrained backbone (a frozen
    /// feature extractor), computed from the images in <paramref name="inputColumnName"/> (from <c>LoadImages</c>).
    /// </summary>
    /// <example>
    /// <code>
    /// var pipeline = ml.Transforms.Conversion.MapValueToKey("Label")
    ///     .Append(ml.Transforms.LoadImages("Image", "photos/", "ImagePath"))
    ///     .Append(ml.Transforms.FeaturizeImage("Features", "Image", weights: "mlnet-resnet18"))   // DnnFeaturizeImage's network
    ///     .Append(ml.MulticlassClassification.Trainers.LbfgsMaximumEntropy("Label", "Features"));
    /// </code>
    /// </example>
    public static ImageFeaturizerEstimator FeaturizeImage(this TransformsCatalog catalog, string outputColumnName = "Features", string inputColumnName = "Image",
        string? architecture = null, string? weights = null, int imageSize = 224)
        => catalog.FeaturizeImage(outputColumnName, inputColumnName, new ImageFeaturizerOptions { Architecture = architecture, Weights = weights, ImageSize = imageSize });

    /// <summary><see cref="FeaturizeImage(TransformsCatalog, string, string, string?, string?, int)"/> with full options.</summary>
    public static ImageFeaturizerEstimator FeaturizeImage(this TransformsCatalog catalog, string outputColumnName, string inputColumnName, ImageFeaturizerOptions options)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return new ImageFeaturizerEstimator(ImageTransferModelRegistration.EnsureRegistered(catalog), outputColumnName, inputColumnName, options);
    }
}
