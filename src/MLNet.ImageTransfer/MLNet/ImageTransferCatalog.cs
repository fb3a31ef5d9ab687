using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.ImageTransfer;

/// <summary>
/// Catalog extensions on <c>mlContext.MulticlassClassification.Trainers</c>, in ML.NET's style: a simple overload
/// with the common arguments, and one taking the full Options.
/// </summary>
public static class ImageTransferCatalog
{
    /// <summary>DenseNet transfer learning. Input: a key <paramref name="labelColumnName"/> and an image column from LoadImages.</summary>
    public static DenseNetTrainer DenseNet(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string labelColumnName = "Label", string imageColumnName = "Image", DenseNetArchitecture architecture = DenseNetArchitecture.DenseNet121,
        int epochs = 10, int batchSize = 32, double learningRate = 1e-3, string? weights = null)
        => catalog.DenseNet(new DenseNetTrainer.Options
        {
            LabelColumnName = labelColumnName, ImageColumnName = imageColumnName, Architecture = architecture,
            Epochs = epochs, BatchSize = batchSize, LearningRate = learningRate, Weights = weights,
        });

    /// <summary>DenseNet transfer learning with full options.</summary>
    public static DenseNetTrainer DenseNet(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog, DenseNetTrainer.Options options)
        => new(ImageTransferModelRegistration.EnsureRegistered(catalog), options);

    /// <summary>ResNet transfer learning. Input: a key <paramref name="labelColumnName"/> and an image column from LoadImages.</summary>
    public static ResNetTrainer ResNet(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string labelColumnName = "Label", string imageColumnName = "Image", ResNetArchitecture architecture = ResNetArchitecture.ResNet50,
        int epochs = 10, int batchSize = 32, double learningRate = 1e-3, string? weights = null)
        => catalog.ResNet(new ResNetTrainer.Options
        {
            LabelColumnName = labelColumnName, ImageColumnName = imageColumnName, Architecture = architecture,
            Epochs = epochs, BatchSize = batchSize, LearningRate = learningRate, Weights = weights,
        });

    /// <summary>ResNet transfer learning with full options.</summary>
    public static ResNetTrainer ResNet(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog, ResNetTrainer.Options options)
        => new(ImageTransferModelRegistration.EnsureRegistered(catalog), options);

    /// <summary>VGG transfer learning. Input: a key <paramref name="labelColumnName"/> and an image column from LoadImages.</summary>
    public static VggTrainer Vgg(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string labelColumnName = "Label", string imageColumnName = "Image", VggArchitecture architecture = VggArchitecture.Vgg16,
        int epochs = 10, int batchSize = 32, double learningRate = 1e-3, string? weights = null)
        => catalog.Vgg(new VggTrainer.Options
        {
            LabelColumnName = labelColumnName, ImageColumnName = imageColumnName, Architecture = architecture,
            Epochs = epochs, BatchSize = batchSize, LearningRate = learningRate, Weights = weights,
        });

    /// <summary>VGG transfer learning with full options.</summary>
    public static VggTrainer Vgg(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog, VggTrainer.Options options)
        => new(ImageTransferModelRegistration.EnsureRegistered(catalog), options);

    /// <summary>Transfer learning with any registered architecture by name (densenet121, resnet50, vgg16_bn, …).</summary>
    public static ImageTransferTrainer ImageTransfer(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog, ImageTransferTrainer.Options options)
        => new(ImageTransferModelRegistration.EnsureRegistered(catalog), options);
}
