using Microsoft.ML;
using Microsoft.ML.Runtime;
using MLNet.ImageTransfer.Models;

namespace MLNet.ImageTransfer;

public enum DenseNetArchitecture { DenseNet121, DenseNet161, DenseNet169, DenseNet201 }
public enum ResNetArchitecture { ResNet18, ResNet34, ResNet50, ResNet101, ResNet152 }
public enum VggArchitecture { Vgg11, Vgg11Bn, Vgg13, Vgg13Bn, Vgg16, Vgg16Bn, Vgg19, Vgg19Bn }

/// <summary>Transfer learning with DenseNet-121/161/169/201 (torchvision layout).</summary>
public sealed class DenseNetTrainer : ImageTransferTrainerBase<DenseNetTrainer.Options>
{
    public sealed class Options : ImageTransferTrainerOptions
    {
        /// <summary>Which DenseNet. Null (default): the one <see cref="ImageTransferTrainerOptions.Weights"/> holds, else DenseNet121.</summary>
        public DenseNetArchitecture? Architecture { get; set; }

        internal override ArchitectureConfig ResolveArchitecture()
            => CustomOfFamily<DenseNetConfig>(CustomArchitecture, nameof(DenseNetTrainer))
               ?? (Architecture is null ? ArchitectureOfWeights("densenet") : null)
               ?? Architectures.Get((Architecture ?? DenseNetArchitecture.DenseNet121).ToString().ToLowerInvariant());
    }

    internal DenseNetTrainer(IHostEnvironment env, Options options) : base(env, options, nameof(DenseNetTrainer)) { }
}

/// <summary>Transfer learning with ResNet-18/34/50/101/152 (torchvision layout, v1.5).</summary>
public sealed class ResNetTrainer : ImageTransferTrainerBase<ResNetTrainer.Options>
{
    public sealed class Options : ImageTransferTrainerOptions
    {
        /// <summary>Which ResNet. Null (default): the one <see cref="ImageTransferTrainerOptions.Weights"/> holds (ML.NET's ResNet18 included), else ResNet50.</summary>
        public ResNetArchitecture? Architecture { get; set; }

        internal override ArchitectureConfig ResolveArchitecture()
            => CustomOfFamily<ResNetConfig>(CustomArchitecture, nameof(ResNetTrainer))
               ?? (Architecture is null ? ArchitectureOfWeights("resnet") : null)
               ?? Architectures.Get((Architecture ?? ResNetArchitecture.ResNet50).ToString().ToLowerInvariant());
    }

    internal ResNetTrainer(IHostEnvironment env, Options options) : base(env, options, nameof(ResNetTrainer)) { }
}

/// <summary>Transfer learning with VGG-11/13/16/19, with or without BatchNorm (torchvision layout).</summary>
public sealed class VggTrainer : ImageTransferTrainerBase<VggTrainer.Options>
{
    public sealed class Options : ImageTransferTrainerOptions
    {
        /// <summary>Which VGG. Null (default): the one <see cref="ImageTransferTrainerOptions.Weights"/> holds, else Vgg16.</summary>
        public VggArchitecture? Architecture { get; set; }

        internal override ArchitectureConfig ResolveArchitecture()
            => CustomOfFamily<VggConfig>(CustomArchitecture, nameof(VggTrainer))
               ?? (Architecture is null ? ArchitectureOfWeights("vgg") : null)
               ?? Architectures.Get((Architecture ?? VggArchitecture.Vgg16).ToString().ToLowerInvariant().Replace("bn", "_bn"));
    }

    internal VggTrainer(IHostEnvironment env, Options options) : base(env, options, nameof(VggTrainer)) { }
}

/// <summary>Transfer learning with any registered architecture by name (densenet121, resnet50, vgg16_bn…), as the CLI's <c>--arch</c>.</summary>
public sealed class ImageTransferTrainer : ImageTransferTrainerBase<ImageTransferTrainer.Options>
{
    public sealed class Options : ImageTransferTrainerOptions
    {
        /// <summary>Registered architecture name (see <see cref="Architectures.Names"/>). Null (default): the one <see cref="ImageTransferTrainerOptions.Weights"/> holds, else densenet121.</summary>
        public string? Architecture { get; set; }

        /// <summary>The architecture built when neither <see cref="Architecture"/> nor the weights choose one.</summary>
        public const string DefaultArchitecture = "densenet121";

        internal override ArchitectureConfig ResolveArchitecture()
            => CustomArchitecture ?? (Architecture is null ? ArchitectureOfWeights() : null) ?? Architectures.Get(Architecture ?? DefaultArchitecture);
    }

    internal ImageTransferTrainer(IHostEnvironment env, Options options) : base(env, options, nameof(ImageTransferTrainer)) { }
}
