using System.Text.Json.Serialization;

namespace MLNet.ImageTransfer.Models;

/// <summary>
/// Everything needed to rebuild a network's module tree. Saved with every model, so a loaded model never depends on
/// constants repeated elsewhere (the registry only names well-known configurations).
/// </summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "family")]
[JsonDerivedType(typeof(DenseNetConfig), "densenet")]
[JsonDerivedType(typeof(ResNetConfig), "resnet")]
[JsonDerivedType(typeof(VggConfig), "vgg")]
public abstract record ArchitectureConfig
{
    /// <summary>Family name: densenet, resnet or vgg.</summary>
    [JsonIgnore] public abstract string Family { get; }

    /// <summary>Builds a freshly initialised network with a classifier for <paramref name="numClasses"/> classes.</summary>
    public abstract ImageClassifierModel Build(int numClasses, HeadSpec? head = null);

    /// <summary>Throws <see cref="ArgumentException"/> naming the offending value when the configuration is unusable.</summary>
    public abstract void Validate();

    /// <summary>PyTorch's BatchNorm epsilon (torchvision's networks); Keras applications use <see cref="KerasBatchNormEpsilon"/>.</summary>
    public const double TorchBatchNormEpsilon = 1e-5;

    /// <summary>The BatchNorm epsilon of Keras' DenseNet and ResNet applications (<c>epsilon=1.001e-5</c>).</summary>
    public const double KerasBatchNormEpsilon = 1.001e-5;

    /// <summary>
    /// True when the configuration departs from torchvision's layout in a way older readers of a saved model would not
    /// know about (a Keras-convention variant); such models are saved with a newer description format version.
    /// </summary>
    [JsonIgnore] public virtual bool IsVariant => false;

    private protected static void ValidateEpsilon(double? eps, string family)
    {
        if (eps is { } e && !(e > 0 && e < 1)) throw new ArgumentException($"{family} BatchNorm epsilon must be in (0, 1), got {e}.");
    }
}

/// <summary>
/// torchvision's DenseNet-BC: growth rate, layers per dense block, stem width, bottleneck multiplier.
/// <see cref="BatchNormEpsilon"/> (null = PyTorch's 1e-5) is the only difference of Keras' DenseNet
/// (<see cref="ArchitectureConfig.KerasBatchNormEpsilon"/>).
/// </summary>
public sealed record DenseNetConfig(int GrowthRate, int[] BlockConfig, int NumInitFeatures, int BnSize = 4, double DropRate = 0,
    double? BatchNormEpsilon = null) : ArchitectureConfig
{
    public override string Family => "densenet";

    /// <summary>The BatchNorm epsilon in effect.</summary>
    [JsonIgnore] public double Epsilon => BatchNormEpsilon ?? TorchBatchNormEpsilon;
    public override bool IsVariant => Epsilon != TorchBatchNormEpsilon;
    public override ImageClassifierModel Build(int numClasses, HeadSpec? head = null) => new DenseNet(this, numClasses, head ?? HeadSpec.Default);

    public override void Validate()
    {
        if (GrowthRate < 1) throw new ArgumentException($"DenseNet growth rate must be positive, got {GrowthRate}.");
        if (BlockConfig is null || BlockConfig.Length == 0 || BlockConfig.Any(n => n < 1))
            throw new ArgumentException("DenseNet block config needs at least one block, each with at least one layer.");
        if (NumInitFeatures < 1 || BnSize < 1) throw new ArgumentException("DenseNet stem width and bn_size must be positive.");
        if (DropRate is < 0 or >= 1) throw new ArgumentException($"DenseNet drop rate must be in [0, 1), got {DropRate}.");
        ValidateEpsilon(BatchNormEpsilon, "DenseNet");
    }

    // Records compare arrays by reference; configurations are values.
    public bool Equals(DenseNetConfig? other) => other is not null && GrowthRate == other.GrowthRate && BlockConfig.SequenceEqual(other.BlockConfig)
        && NumInitFeatures == other.NumInitFeatures && BnSize == other.BnSize && DropRate == other.DropRate && Epsilon == other.Epsilon;
    public override int GetHashCode() => HashCode.Combine(GrowthRate, BlockConfig.Length, NumInitFeatures, BnSize, DropRate, Epsilon);
}

public enum ResNetBlock { Basic, Bottleneck }

/// <summary>
/// torchvision's ResNet (v1.5: the stride sits on the 3×3 convolution of a bottleneck). Three options describe the
/// ResNet v1 of Keras' applications (and of Caffe / MXNet model-zoo exports) with the same module tree:
/// <see cref="StrideOnFirstConv"/> (the stride on the bottleneck's first 1×1 convolution), <see cref="ConvBias"/>
/// (every convolution has a bias, keys <c>….conv1.bias</c>) and <see cref="BatchNormEpsilon"/> (null = 1e-5).
/// </summary>
public sealed record ResNetConfig(ResNetBlock Block, int[] Layers, int BaseWidth = 64,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] bool StrideOnFirstConv = false,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] bool ConvBias = false,
    double? BatchNormEpsilon = null) : ArchitectureConfig
{
    public override string Family => "resnet";

    /// <summary>The BatchNorm epsilon in effect.</summary>
    [JsonIgnore] public double Epsilon => BatchNormEpsilon ?? TorchBatchNormEpsilon;
    public override bool IsVariant => StrideOnFirstConv || ConvBias || Epsilon != TorchBatchNormEpsilon;
    public override ImageClassifierModel Build(int numClasses, HeadSpec? head = null) => new ResNet(this, numClasses, head ?? HeadSpec.Default);

    public override void Validate()
    {
        if (Layers is null || Layers.Length != 4 || Layers.Any(n => n < 1))
            throw new ArgumentException("ResNet needs four stages with at least one block each.");
        if (BaseWidth < 1) throw new ArgumentException($"ResNet base width must be positive, got {BaseWidth}.");
        ValidateEpsilon(BatchNormEpsilon, "ResNet");
    }

    public bool Equals(ResNetConfig? other) => other is not null && Block == other.Block && Layers.SequenceEqual(other.Layers) && BaseWidth == other.BaseWidth
        && StrideOnFirstConv == other.StrideOnFirstConv && ConvBias == other.ConvBias && Epsilon == other.Epsilon;
    public override int GetHashCode() => HashCode.Combine(Block, Layers.Length, BaseWidth, StrideOnFirstConv, ConvBias, Epsilon);
}

/// <summary>
/// VGG from one configuration table (torchvision's <c>cfgs</c>): conv widths with 0 for a 2×2 max-pool, optional BatchNorm, and
/// torchvision's classifier (adaptive average pool to <see cref="PoolSize"/>², two hidden layers of
/// <see cref="ClassifierWidth"/>).
/// </summary>
public sealed record VggConfig(int[] Layers, bool BatchNorm, int ClassifierWidth = 4096, int PoolSize = 7) : ArchitectureConfig
{
    /// <summary>The value in <see cref="Layers"/> that stands for a max-pool ('M' in torchvision's table).</summary>
    public const int MaxPool = 0;

    public override string Family => "vgg";
    public override ImageClassifierModel Build(int numClasses, HeadSpec? head = null) => new Vgg(this, numClasses, head ?? HeadSpec.Default);

    public override void Validate()
    {
        if (Layers is null || !Layers.Any(n => n > 0) || Layers.Any(n => n < 0))
            throw new ArgumentException("VGG needs at least one convolution; widths must be positive (0 marks a max-pool).");
        if (ClassifierWidth < 1 || PoolSize < 1) throw new ArgumentException("VGG classifier width and pool size must be positive.");
    }

    public bool Equals(VggConfig? other) => other is not null && Layers.SequenceEqual(other.Layers) && BatchNorm == other.BatchNorm
        && ClassifierWidth == other.ClassifierWidth && PoolSize == other.PoolSize;
    public override int GetHashCode() => HashCode.Combine(Layers.Length, BatchNorm, ClassifierWidth, PoolSize);
}
