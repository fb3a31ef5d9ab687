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
}

/// <summary>torchvision's DenseNet-BC: growth rate, layers per dense block, stem width, bottleneck multiplier.</summary>
public sealed record DenseNetConfig(int GrowthRate, int[] BlockConfig, int NumInitFeatures, int BnSize = 4, double DropRate = 0) : ArchitectureConfig
{
    public override string Family => "densenet";
    public override ImageClassifierModel Build(int numClasses, HeadSpec? head = null) => new DenseNet(this, numClasses, head ?? HeadSpec.Default);

    public override void Validate()
    {
        if (GrowthRate < 1) throw new ArgumentException($"DenseNet growth rate must be positive, got {GrowthRate}.");
        if (BlockConfig is null || BlockConfig.Length == 0 || BlockConfig.Any(n => n < 1))
            throw new ArgumentException("DenseNet block config needs at least one block, each with at least one layer.");
        if (NumInitFeatures < 1 || BnSize < 1) throw new ArgumentException("DenseNet stem width and bn_size must be positive.");
        if (DropRate is < 0 or >= 1) throw new ArgumentException($"DenseNet drop rate must be in [0, 1), got {DropRate}.");
    }

    // Records compare arrays by reference; configurations are values.
    public bool Equals(DenseNetConfig? other) => other is not null && GrowthRate == other.GrowthRate && BlockConfig.SequenceEqual(other.BlockConfig)
        && NumInitFeatures == other.NumInitFeatures && BnSize == other.BnSize && DropRate == other.DropRate;
    public override int GetHashCode() => HashCode.Combine(GrowthRate, BlockConfig.Length, NumInitFeatures, BnSize, DropRate);
}

public enum ResNetBlock { Basic, Bottleneck }

/// <summary>torchvision's ResNet (v1.5: the stride sits on the 3×3 convolution of a bottleneck).</summary>
public sealed record ResNetConfig(ResNetBlock Block, int[] Layers, int BaseWidth = 64) : ArchitectureConfig
{
    public override string Family => "resnet";
    public override ImageClassifierModel Build(int numClasses, HeadSpec? head = null) => new ResNet(this, numClasses, head ?? HeadSpec.Default);

    public override void Validate()
    {
        if (Layers is null || Layers.Length != 4 || Layers.Any(n => n < 1))
            throw new ArgumentException("ResNet needs four stages with at least one block each.");
        if (BaseWidth < 1) throw new ArgumentException($"ResNet base width must be positive, got {BaseWidth}.");
    }

    public bool Equals(ResNetConfig? other) => other is not null && Block == other.Block && Layers.SequenceEqual(other.Layers) && BaseWidth == other.BaseWidth;
    public override int GetHashCode() => HashCode.Combine(Block, Layers.Length, BaseWidth);
}

/// <summary>
/// VGG from one configuration table (seed 002): conv widths with 0 for a 2×2 max-pool, optional BatchNorm, and
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
