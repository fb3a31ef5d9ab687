namespace MLNet.ImageTransfer.Models;

/// <summary>
/// The registry of named variants (timm's model registry, torchvision's builders): the only place where the published
/// configurations of each architecture are written down.
/// </summary>
public static class Architectures
{
    const int M = VggConfig.MaxPool;

    static readonly Dictionary<string, ArchitectureConfig> Registry = new(StringComparer.OrdinalIgnoreCase)
    {
        ["densenet121"] = new DenseNetConfig(32, [6, 12, 24, 16], 64),
        ["densenet161"] = new DenseNetConfig(48, [6, 12, 36, 24], 96),
        ["densenet169"] = new DenseNetConfig(32, [6, 12, 32, 32], 64),
        ["densenet201"] = new DenseNetConfig(32, [6, 12, 48, 32], 64),

        ["resnet18"] = new ResNetConfig(ResNetBlock.Basic, [2, 2, 2, 2]),
        ["resnet34"] = new ResNetConfig(ResNetBlock.Basic, [3, 4, 6, 3]),
        ["resnet50"] = new ResNetConfig(ResNetBlock.Bottleneck, [3, 4, 6, 3]),
        ["resnet101"] = new ResNetConfig(ResNetBlock.Bottleneck, [3, 4, 23, 3]),
        ["resnet152"] = new ResNetConfig(ResNetBlock.Bottleneck, [3, 8, 36, 3]),
        // ML.NET's pretrained ResNet18 (Microsoft.ML.DnnImageFeaturizer.ResNet18, exported by CNTK): a third block in the
        // last stage. CNTK's "same" padding of a stride-2 layer pads as torchvision does at the start; at the end it pads
        // one pixel less on even inputs (a pixel no window reaches) and the same on odd ones, so at every input size it
        // computes what torchvision's symmetric padding does, and the variant needs no padding option.
        ["resnet18_mlnet"] = new ResNetConfig(ResNetBlock.Basic, [2, 2, 2, 3]),

        // torchvision's cfgs "A", "B", "D", "E".
        ["vgg11"] = new VggConfig([64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M], false),
        ["vgg13"] = new VggConfig([64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M], false),
        ["vgg16"] = new VggConfig([64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M], false),
        ["vgg19"] = new VggConfig([64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M, 512, 512, 512, 512, M], false),
    };

    static Architectures()
    {
        foreach (var name in new[] { "vgg11", "vgg13", "vgg16", "vgg19" })
            Registry[name + "_bn"] = ((VggConfig)Registry[name]) with { BatchNorm = true };
        // keras.applications' DenseNet and ResNet (v1) as the same module trees with Keras' conventions. Keras' VGG16/19
        // are torchvision's vgg16/vgg19 exactly (only the weight file's layout differs), so they need no entry.
        foreach (var name in new[] { "densenet121", "densenet169", "densenet201", "resnet50", "resnet101", "resnet152" })
            Registry[name + KerasSuffix] = KerasConvention(Registry[name]);
    }

    /// <summary>Suffix of the registered Keras-convention variants (<c>resnet50_keras</c>, <c>densenet121_keras</c>).</summary>
    public const string KerasSuffix = "_keras";

    /// <summary>
    /// The same network with the conventions of <c>keras.applications</c> (what Keras <c>.h5</c> weights were trained
    /// with): BatchNorm epsilon 1.001e-5 for DenseNet and ResNet; for ResNet also v1's stride on the first 1×1
    /// convolution of a bottleneck and a bias on every convolution. VGG is unchanged.
    /// </summary>
    /// <param name="config">A torchvision-convention configuration.</param>
    /// <param name="batchNormEpsilon">Epsilon to use instead of Keras' 1.001e-5 (the first Keras ResNet50 files, with
    /// Caffe layer names, were made for a model with Keras' default 1e-3).</param>
    public static ArchitectureConfig KerasConvention(ArchitectureConfig config, double? batchNormEpsilon = null) => config switch
    {
        DenseNetConfig d => d with { BatchNormEpsilon = batchNormEpsilon ?? ArchitectureConfig.KerasBatchNormEpsilon },
        ResNetConfig r => r with { StrideOnFirstConv = true, ConvBias = true, BatchNormEpsilon = batchNormEpsilon ?? ArchitectureConfig.KerasBatchNormEpsilon },
        _ => config,
    };

    /// <summary>All registered names, e.g. densenet121, resnet50, vgg16_bn.</summary>
    public static IReadOnlyCollection<string> Names => Registry.Keys.OrderBy(n => n, StringComparer.Ordinal).ToArray();

    /// <summary>The configuration of a named architecture.</summary>
    /// <exception cref="ArgumentException">The name is unknown; the message lists the known names.</exception>
    public static ArchitectureConfig Get(string name)
        => Registry.TryGetValue(name ?? "", out var config)
            ? config
            : throw new ArgumentException($"Unknown architecture '{name}'. Known: {string.Join(", ", Names)}.", nameof(name));

    /// <summary>The registered name of a configuration, or null for a custom one.</summary>
    public static string? NameOf(ArchitectureConfig config)
        => Registry.Where(kv => kv.Value.Equals(config)).Select(kv => kv.Key).OrderBy(n => n, StringComparer.Ordinal).FirstOrDefault();

    /// <summary>Builds a named architecture with a freshly initialised classifier for K classes.</summary>
    public static ImageClassifierModel Create(string name, int numClasses, HeadSpec? head = null) => Get(name).Build(numClasses, head);
}
