using Microsoft.ML;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Training;

namespace MLNet.ImageTransfer;

/// <summary>
/// Options shared by the DenseNet, ResNet and VGG trainers: columns, data, and the training options of
/// <see cref="TrainingOptions"/>. Defaults follow torchvision's fine-tuning recipe with Keras' Adam.
/// </summary>
public abstract class ImageTransferTrainerOptions : TrainingOptions
{
    /// <summary>Key-typed label column (use <c>MapValueToKey</c>). Default "Label".</summary>
    public string LabelColumnName { get; set; } = "Label";

    /// <summary>Image column produced by <c>LoadImages</c>. Default "Image".</summary>
    public string ImageColumnName { get; set; } = "Image";

    /// <summary>Output column of class probabilities. Default "Score".</summary>
    public string ScoreColumnName { get; set; } = "Score";

    /// <summary>Output key column of the most probable class. Default "PredictedLabel".</summary>
    public string PredictedLabelColumnName { get; set; } = "PredictedLabel";

    /// <summary>Side of the square network input. Default 224 (ignored when <see cref="Preprocessing"/> is set).</summary>
    public int ImageSize { get; set; } = 224;

    /// <summary>
    /// Image preprocessing. Null (default): the preset the <see cref="Weights"/> were trained with, at
    /// <see cref="ImageSize"/> — Keras <c>.h5</c>: keras-caffe for VGG and ResNet, keras-torch for DenseNet; PyTorch,
    /// safetensors and ONNX: torchvision — or torchvision's without weights. An explicit preprocessing that normalises
    /// differently from the weights' source is an error unless <see cref="AllowPreprocessingMismatch"/> is set.
    /// </summary>
    public ImagePreprocessing? Preprocessing { get; set; }

    /// <summary>Accept a <see cref="Preprocessing"/> that contradicts the weights' source (for weights trained with a custom normalisation). Default false.</summary>
    public bool AllowPreprocessingMismatch { get; set; }

    /// <summary>Classifier head put on the backbone. Default: the architecture's own classifier with K outputs.</summary>
    public HeadSpec Head { get; set; } = HeadSpec.Default;

    /// <summary>
    /// Pretrained weights to start from, by name or by file. Names are those of the published ImageNet weights
    /// (<see cref="global::MLNet.ImageTransfer.Weights.PretrainedWeightCatalog"/>, <c>mlnet-imagetransfer weights list</c>):
    /// <c>resnet50.tv2_in1k</c> (downloaded once into the cache), <c>mlnet-resnet18</c> (ML.NET's ResNet18 from the
    /// NuGet package Microsoft.ML.DnnImageFeaturizer.ResNet18, offline), or <c>imagenet</c> for the default weights of
    /// the chosen architecture (Keras' <c>weights="imagenet"</c>). Files: safetensors (timm, Hugging Face), PyTorch
    /// <c>.pth</c>/<c>.pt</c> (a state dict or a training checkpoint), Keras <c>.h5</c> (keras.applications, including
    /// "notop" files) or ONNX, recognised by content. Without <see cref="ImageTransferTrainer.Options.Architecture"/>,
    /// the architecture is the one the weights hold. The backbone must match; the classifier is re-initialised when its
    /// shape does not fit the number of classes. Keras files build the Keras variant of the architecture (e.g.
    /// <c>resnet50_keras</c>). Null trains from scratch.
    /// </summary>
    public string? Weights { get; set; }

    /// <summary>Where named <see cref="Weights"/> are downloaded to and how (cache folder, progress, offline). Null: the defaults.</summary>
    public global::MLNet.ImageTransfer.Weights.PretrainedWeightOptions? WeightSource { get; set; }

    /// <summary>
    /// A model <c>.zip</c> saved by this library to continue training from: the network starts with its weights
    /// (read back exactly from the saved file), its architecture, head and — unless <see cref="Preprocessing"/> is set —
    /// its preprocessing (<see cref="ImageSize"/> is then ignored). The trainer's architecture must be the saved one, and
    /// <see cref="Head"/> the saved head or the default. When the data's classes differ from the saved model's, the
    /// backbone is loaded and the classifier re-initialised (see <c>LastInitialModelLoad</c>). Exclusive with
    /// <see cref="Weights"/>. Null (default): start from <see cref="Weights"/> or from scratch.
    /// </summary>
    public string? InitialModel { get; set; }

    /// <summary>
    /// Data to validate on after every epoch. It must hold the columns this trainer reads: the image column
    /// (transform it with the same LoadImages as the training data) and the label, as text or as a key of the same classes.
    /// </summary>
    public IDataView? ValidationSet { get; set; }

    /// <summary>Fraction of the training rows held out, stratified by class, for validation when <see cref="ValidationSet"/> is null. Default 0.</summary>
    public double ValidationFraction { get; set; }

    /// <summary>A custom configuration of this trainer's family instead of a named variant (e.g. a tiny network for tests).</summary>
    public ArchitectureConfig? CustomArchitecture { get; set; }

    /// <summary>The configuration to build: <see cref="CustomArchitecture"/>, the named variant, or the one the weights imply.</summary>
    internal abstract ArchitectureConfig ResolveArchitecture();

    /// <summary>
    /// The architecture <see cref="Weights"/> holds, when the user chose none: a weight file says what it is, so
    /// <c>Weights</c> alone is enough to start from it. Null without weights or for a file of another family
    /// (<paramref name="family"/>, when the trainer has one), where the trainer's default applies and loading explains the mismatch.
    /// </summary>
    private protected ArchitectureConfig? ArchitectureOfWeights(string? family = null)
    {
        if (Weights is null) return null;
        var implied = global::MLNet.ImageTransfer.Weights.PretrainedWeightSource.ArchitectureOf(Weights);
        return family is null || implied?.Family == family ? implied : null;
    }

    (string Weights, string? Architecture, global::MLNet.ImageTransfer.Weights.ResolvedWeights Resolved)? _resolvedWeights;

    /// <summary>
    /// The local file of <see cref="Weights"/>: the file itself, or a named entry found in its package or the download
    /// cache, downloaded if needed (remembered for these options).
    /// </summary>
    internal global::MLNet.ImageTransfer.Weights.ResolvedWeights? ResolveWeights()
    {
        if (Weights is null) return null;
        var architecture = Architectures.NameOf(ResolveArchitecture());
        if (_resolvedWeights is { } known && known.Weights == Weights && known.Architecture == architecture) return known.Resolved;
        var resolved = global::MLNet.ImageTransfer.Weights.PretrainedWeightSource.Resolve(Weights, architecture, WeightSource);
        _resolvedWeights = (Weights, architecture, resolved);
        return resolved;
    }

    internal ImagePreprocessing ResolvePreprocessing()
    {
        var architecture = ResolveArchitecture();
        return global::MLNet.ImageTransfer.Weights.WeightPreprocessing.Resolve(Preprocessing, ImageSize, Weights, architecture.Family, AllowPreprocessingMismatch,
            Architectures.NameOf(architecture));
    }

    public override void Validate()
    {
        base.Validate();
        if (ValidationFraction is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(ValidationFraction), ValidationFraction, "Validation fraction must be in [0, 1).");
        if (ValidationSet is not null && ValidationFraction > 0) throw new ArgumentException("Set either ValidationSet or ValidationFraction, not both.");
        // A name must be a catalog entry that fits the architecture (nothing is downloaded here).
        if (Weights is not null && !File.Exists(Weights))
            global::MLNet.ImageTransfer.Weights.PretrainedWeightSource.Select(Weights, Architectures.NameOf(ResolveArchitecture()));
        if (InitialModel is not null && Weights is not null) throw new ArgumentException("Set either Weights (pretrained backbone) or InitialModel (continue from a saved model), not both.");
        if (InitialModel is not null && !File.Exists(InitialModel)) throw new FileNotFoundException($"Initial model '{InitialModel}' does not exist.", InitialModel);
        ResolvePreprocessing().Validate();
        Head.Validate();
    }

    internal static T CustomOfFamily<T>(ArchitectureConfig? custom, string trainer) where T : ArchitectureConfig
        => custom is null or T ? (T)custom! : throw new ArgumentException($"{trainer} needs a {typeof(T).Name} as CustomArchitecture, got {custom.GetType().Name}.");
}
