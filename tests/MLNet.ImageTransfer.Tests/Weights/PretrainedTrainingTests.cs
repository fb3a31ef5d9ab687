using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.ML;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Weights;

namespace MLNet.ImageTransfer.Tests.Weights;

/// <summary>
/// Weights in the trainers: the architecture variant and the preprocessing follow the weight file (a mismatch needs an
/// explicit override), and the saved model remembers the weights' name, format and SHA-256 and the fine-tuning schedule.
/// </summary>
public class PretrainedTrainingTests
{
    static string W(string name) => WeightFormatParityTests.W(name);

    [Fact]
    public void Preprocessing_follows_the_weights_source()
    {
        Assert.Equal("keras-caffe", WeightPreprocessing.Resolve(null, 224, W("keras_resnet_micro.h5"), "resnet", false).Name);
        Assert.Equal("keras-caffe", WeightPreprocessing.Resolve(null, 224, W("keras_vgg_micro.h5"), "vgg", false).Name);
        Assert.Equal("keras-torch", WeightPreprocessing.Resolve(null, 224, W("keras_densenet_micro.h5"), "densenet", false).Name);
        foreach (var file in new[] { "resnet_micro.pth", "resnet_micro.safetensors", "resnet_micro.onnx" })
            Assert.Equal("torchvision", WeightPreprocessing.Resolve(null, 224, W(file), "resnet", false).Name);
        Assert.Equal(160, WeightPreprocessing.Resolve(null, 160, W("keras_resnet_micro.h5"), "resnet", false).ImageSize);
        Assert.Equal("torchvision", WeightPreprocessing.Resolve(null, 224, null, "resnet", false).Name);
    }

    [Fact]
    public void A_preprocessing_that_contradicts_the_weights_needs_the_explicit_override()
    {
        var e = Assert.Throws<ArgumentException>(() => WeightPreprocessing.Resolve(ImagePreprocessing.TorchVision(), 224, W("keras_resnet_micro.h5"), "resnet", false));
        Assert.Contains("keras-caffe", e.Message);
        Assert.Contains("AllowPreprocessingMismatch", e.Message);
        Assert.Equal("torchvision", WeightPreprocessing.Resolve(ImagePreprocessing.TorchVision(), 224, W("keras_resnet_micro.h5"), "resnet", true).Name);
        Assert.Throws<ArgumentException>(() => WeightPreprocessing.Resolve(ImagePreprocessing.KerasCaffe(), 224, W("resnet_micro.pth"), "resnet", false));
        // Same normalisation, other geometry: not a contradiction.
        Assert.Equal("keras-torch", WeightPreprocessing.Resolve(ImagePreprocessing.KerasTorch(), 224, W("resnet_micro.pth"), "resnet", false).Name);
        Assert.Equal("custom", WeightPreprocessing.Resolve(ImagePreprocessing.KerasCaffe(96) with { Name = "custom", Resize = ResizeMode.ShorterSideThenCenterCrop }, 224,
            W("keras_resnet_micro.h5"), "resnet", false).Name);

        // The trainers' options check it at construction.
        var options = new ImageTransferTrainer.Options { Architecture = "resnet50", Weights = W("keras_resnet_micro.h5"), Preprocessing = ImagePreprocessing.TorchVision() };
        Assert.Throws<ArgumentException>(options.Validate);
        options.AllowPreprocessingMismatch = true;
        options.Validate();
    }

    [Fact]
    public void Keras_weights_train_the_keras_variant_and_the_model_remembers_where_it_started()
    {
        var ml = new MLContext(seed: 1);
        var root = TestData.ShapesFolder();
        var options = new ImageTransferTrainer.Options
        {
            CustomArchitecture = WeightFormatParityTests.ConfigOf("keras_resnet_micro"), // torchvision convention; the file makes it Keras'
            Weights = W("keras_resnet_micro.h5"),
            ImageSize = 32,
            Epochs = 2,
            FrozenEpochs = 1,
            FineTuneLearningRate = 1e-4,
            BatchSize = 8,
            Seed = 1,
        };
        var trainer = ml.MulticlassClassification.Trainers.ImageTransfer(options);
        var model = TestData.Prefix(ml, root).Append(trainer).Fit(ImageFolder.Load(ml, root));

        var load = trainer.LastWeightLoad!;
        Assert.Equal(WeightFormat.KerasH5, load.Format);
        Assert.Equal(["fc.weight", "fc.bias"], load.ReinitializedHead); // 5 ImageNet-like classes → 3 shapes

        var description = ((IEnumerable<ITransformer>)model).OfType<ImageClassifierTransformer>().Single().Classifier.Description;
        var config = Assert.IsType<ResNetConfig>(description.Architecture);
        Assert.True(config.StrideOnFirstConv && config.ConvBias);
        Assert.Equal(ArchitectureConfig.KerasBatchNormEpsilon, config.Epsilon);
        Assert.Equal(2, description.FormatVersion);
        Assert.Equal("keras-caffe", description.Preprocessing.Name);
        Assert.Equal(32, description.Preprocessing.ImageSize);
        Assert.Equal("keras_resnet_micro.h5", description.InitialWeights);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(W("keras_resnet_micro.h5")))), description.InitialWeightsSha256);
        Assert.Equal("KerasH5", description.InitialWeightsFormat);
        var phases = description.FineTuning!.Phases;
        Assert.Equal(2, phases.Count);
        Assert.Equal(["head"], phases[0].TrainableGroups);
        Assert.Equal(["stem", "layer1.0", "layer2.0", "layer2.1", "layer3.0", "layer4.0", "head"], phases[1].TrainableGroups);
        Assert.Equal(1e-4, phases[1].LearningRates["layer1.0"]);

        // All of it survives saving and loading.
        var path = Path.Combine(TestData.NewTempDir("keras-train"), "model.zip");
        ml.Model.Save(model, null, path);
        var loaded = new MLContext().RegisterImageTransfer().Model.Load(path, out _);
        var reloaded = ((IEnumerable<ITransformer>)loaded).OfType<ImageClassifierTransformer>().Single().Classifier.Description;
        Assert.Equal(description.Architecture, reloaded.Architecture);
        Assert.Equal(description.InitialWeightsSha256, reloaded.InitialWeightsSha256);
        Assert.Equal(description.FineTuning.Phases.Select(p => string.Join(",", p.TrainableGroups)), reloaded.FineTuning!.Phases.Select(p => string.Join(",", p.TrainableGroups)));
        Assert.Equal(description.FineTuning.Phases[1].LearningRates, reloaded.FineTuning.Phases[1].LearningRates);
    }

    [Fact]
    public void Torchvision_configurations_serialise_as_before_and_variants_carry_their_options()
    {
        var plain = JsonSerializer.Serialize<ArchitectureConfig>(Architectures.Get("resnet50"), ClassifierDescription.Json);
        Assert.DoesNotContain("StrideOnFirstConv", plain);
        Assert.DoesNotContain("Epsilon", plain);
        Assert.Equal(1, ClassifierDescription.FormatVersionFor(Architectures.Get("resnet50")));

        var keras = Architectures.Get("resnet50_keras");
        var json = JsonSerializer.Serialize(keras, ClassifierDescription.Json);
        Assert.Contains("\"StrideOnFirstConv\": true", json);
        Assert.Equal(keras, JsonSerializer.Deserialize<ArchitectureConfig>(json, ClassifierDescription.Json));
        Assert.Equal(2, ClassifierDescription.FormatVersionFor(keras));

        // A description written before these options existed still reads, as torchvision's layout.
        const string old = """{ "family": "resnet", "Block": "Bottleneck", "Layers": [3, 4, 6, 3], "BaseWidth": 64 }""";
        Assert.Equal(Architectures.Get("resnet50"), JsonSerializer.Deserialize<ArchitectureConfig>(old, ClassifierDescription.Json));
        const string oldDense = """{ "family": "densenet", "GrowthRate": 32, "BlockConfig": [6, 12, 24, 16], "NumInitFeatures": 64, "BnSize": 4, "DropRate": 0 }""";
        Assert.Equal(Architectures.Get("densenet121"), JsonSerializer.Deserialize<ArchitectureConfig>(oldDense, ClassifierDescription.Json));
    }
}
