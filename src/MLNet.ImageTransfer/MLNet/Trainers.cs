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
        /// <summary>Which DenseNet. Default DenseNet121.</summary>
        public DenseNetArchitecture Architecture { get; set; } = DenseNetArchitecture.DenseNet121;

        internal override ArchitectureConfig ResolveArchitecture()
            => CustomOfFamily<DenseNetConfig>(CustomArchitecture, nameof(DenseNetTrainer)) ?? Architectures.Get(Architecture.ToString().ToLowerInvariant());
    }

    internal DenseNetTrainer(IHostEnvironment env, Options options) : base(env, options, nameof(DenseNetTrainer)) { }
}

/// <summary>Transfer learning with ResNet-18/34/50/101/152 (torchvision layout, v1.5).</summary>
public sealed class ResNetTrainer : ImageTransferTrainerBase<ResNetTrainer.Options>
{
    public sealed class Options : ImageTransferTrainerOptions
    {
        /// <summary>Which ResNet. Default ResNet50.</summary>
        public ResNetArchitecture Architecture { get; set; } = ResNetArchitecture.ResNet50;

        internal override ArchitectureConfig ResolveArchitecture()
            => CustomOfFamily<ResNetConfig>(CustomArchitecture, nameof(ResNetTrainer)) ?? Architectures.Get(Architecture.ToString().ToLowerInvariant());
    }

    internal ResNetTrainer(IHostEnvironment env, Options options) : base(env, options, nameof(ResNetTrainer)) { }
}

/// <summary>Transfer learning with VGG-11/13/16/19, with or without BatchNorm (torchvision layout).</summary>
public sealed class VggTrainer : ImageTransferTrainerBase<VggTrainer.Options>
{
    public sealed class Options : ImageTransferTrainerOptions
    {
        /// <summary>Which VGG. Default Vgg16.</summary>
        public VggArchitecture Architecture { get; set; } = VggArchitecture.Vgg16;

        internal override ArchitectureConfig ResolveArchitecture()
            => CustomOfFamily<VggConfig>(CustomArchitecture, nameof(VggTrainer)) ?? Architectures.Get(Architecture.ToString().ToLowerInvariant().Replace("bn", "_bn"));
    }

    internal VggTrainer(IHostEnvironment env, Options options) : base(env, options, nameof(VggTrainer)) { }
}

/// <summary>Transfer learning with any registered architecture by name (densenet121, resnet50, vgg16_bn…), as the CLI's <c>--arch</c>.</summary>
public sealed class ImageTransferTrainer : ImageTransferTrainerBase<ImageTransferTrainer.Options>
{
    public sealed class Options : ImageTransferTrainerOptions
    {
        /// <summary>Registered architecture name (see <see cref="Architectures.Names"/>). Default densenet121.</summary>
        public string Architecture { get; set; } = "densenet121";

        internal override ArchitectureConfig ResolveArchitecture() => CustomArchitecture ?? Architectures.Get(Architecture);
    }

    internal ImageTransferTrainer(IHostEnvironment env, Options options) : base(env, options, nameof(ImageTransferTrainer)) { }
}
