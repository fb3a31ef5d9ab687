using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Weights;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.Weights;

/// <summary>
/// Every weight format against PyTorch: micro DenseNet / ResNet (bottleneck and basic) / VGG-BN saved by PyTorch as
/// safetensors, <c>.pth</c> (zip, legacy, training checkpoint, float16) and ONNX (torch.onnx.export's folded graph and
/// model-zoo style graphs), and Keras-layout <c>.h5</c> files, load into our networks and give the reference logits
/// within 1e-4 (fixtures/generate_weight_fixtures.py).
/// </summary>
public class WeightFormatParityTests(ITestOutputHelper output)
{
    internal const double Tolerance = 1e-4;
    const int M = VggConfig.MaxPool;

    internal static string W(string name) => Fixtures.Path_(Path.Combine("weights", name));

    /// <summary>The torchvision-convention configuration each fixture was made from.</summary>
    internal static ArchitectureConfig ConfigOf(string io) => io switch
    {
        "densenet_micro" or "densenet_zoo" => new DenseNetConfig(4, [1, 2, 1, 1], 8, 2),
        "keras_densenet_micro" => new DenseNetConfig(4, [1, 2, 1, 1], 8, 4),
        "resnet_micro" or "keras_resnet_micro" => new ResNetConfig(ResNetBlock.Bottleneck, [1, 2, 1, 1], 2),
        "resnet_v1_zoo" => new ResNetConfig(ResNetBlock.Bottleneck, [1, 1, 1, 1], 2),
        "resnet_micro_basic" => new ResNetConfig(ResNetBlock.Basic, [1, 1, 1, 1], 2),
        "vgg_micro_bn" => new VggConfig([4, M, 8, M, 8, 8, M], true, 8, 2),
        "keras_vgg_micro" => new VggConfig([4, M, 8, M, 8, 8, M], false, 8, 2),
        _ => throw new ArgumentException(io),
    };

    internal static Tensor Input(string io)
    {
        using var meta = SafeTensors.Read(W($"{io}.io.safetensors"));
        using var input = SafeTensors.Read(W(meta.Metadata["input"]));
        return input["input"].clone();
    }

    internal static Tensor Expected(string io, string name = "logits")
    {
        using var f = SafeTensors.Read(W($"{io}.io.safetensors"));
        return f[name].clone();
    }

    public static TheoryData<string, string, string> Files => new()
    {
        // file, io fixture, expected tensor
        { "densenet_micro.safetensors", "densenet_micro", "logits" },
        { "densenet_micro.pth", "densenet_micro", "logits" },
        { "densenet_micro.onnx", "densenet_micro", "logits" },
        { "densenet_zoo.onnx", "densenet_zoo", "logits" },
        { "resnet_micro.safetensors", "resnet_micro", "logits" },
        { "resnet_micro.pth", "resnet_micro", "logits" },
        { "resnet_micro.onnx", "resnet_micro", "logits" },
        { "resnet_v1_zoo.onnx", "resnet_v1_zoo", "logits" },
        { "resnet_micro_basic.onnx", "resnet_micro_basic", "logits" },
        { "resnet_micro_basic.legacy.pth", "resnet_micro_basic", "logits" },
        { "resnet_micro_basic.checkpoint.pth", "resnet_micro_basic", "logits" },
        { "vgg_micro_bn.safetensors", "vgg_micro_bn", "logits" },
        { "vgg_micro_bn.pth", "vgg_micro_bn", "logits" },
        { "vgg_micro_bn.onnx", "vgg_micro_bn", "logits" },
        { "vgg_micro_bn.f16.pth", "vgg_micro_bn", "logits_f16" },
        { "keras_densenet_micro.h5", "keras_densenet_micro", "logits" },
        { "keras_resnet_micro.h5", "keras_resnet_micro", "logits" },
        { "keras_vgg_micro.h5", "keras_vgg_micro", "logits" },
    };

    [Theory]
    [MemberData(nameof(Files))]
    public void Weights_load_and_give_the_reference_logits(string file, string io, string expected)
    {
        using var weights = PretrainedWeightFile.Open(W(file));
        foreach (var note in weights.Notes) output.WriteLine($"note: {note}");
        var config = weights.Adapt(ConfigOf(io));
        using var reference = Expected(io, expected);
        using var model = config.Build((int)reference.shape[1], HeadSpec.Default with { Dropout = 0 });
        var result = PretrainedWeights.Load(model, weights);
        Assert.True(result.Report.IsExact, result.Report.Describe());
        Assert.False(result.HeadReplaced);
        model.eval();
        using var _ = no_grad();
        using var x = Input(io);
        using var logits = model.call(x);
        double diff = (logits - reference).abs().max().item<float>();
        output.WriteLine($"{file}: {weights.Format}, built {Architectures.NameOf(config) ?? config.ToString()}; max |ours - reference| = {diff:E2}");
        Assert.InRange(diff, 0, Tolerance);
    }

    [Theory]
    [MemberData(nameof(Files))]
    public void The_file_describes_the_architecture_it_was_made_from(string file, string io, string expected)
    {
        _ = expected;
        using var weights = PretrainedWeightFile.Open(W(file));
        var adapted = weights.Adapt(ConfigOf(io));
        // What the file says about itself equals what we build for it (VGG-BN from a folded ONNX graph reads as plain VGG).
        var expectedConfig = file == "vgg_micro_bn.onnx" ? ((VggConfig)adapted) with { BatchNorm = false } : adapted;
        Assert.Equal(expectedConfig, weights.Architecture);
        Assert.Equal(5, weights.NumClasses);
    }

    [Fact]
    public void Keras_weights_build_the_keras_variant_of_the_architecture()
    {
        using var resnet = PretrainedWeightFile.Open(W("keras_resnet_micro.h5"));
        var r = Assert.IsType<ResNetConfig>(resnet.Adapt(ConfigOf("resnet_micro")));
        Assert.True(r.StrideOnFirstConv);
        Assert.True(r.ConvBias);
        Assert.Equal(ArchitectureConfig.KerasBatchNormEpsilon, r.Epsilon);
        Assert.Equal("resnet50_keras", Architectures.NameOf(resnet.Adapt(Architectures.Get("resnet50"))));

        using var densenet = PretrainedWeightFile.Open(W("keras_densenet_micro.h5"));
        Assert.Equal("densenet121_keras", Architectures.NameOf(densenet.Adapt(Architectures.Get("densenet121"))));

        using var vgg = PretrainedWeightFile.Open(W("keras_vgg_micro.h5"));
        Assert.Equal("vgg16", Architectures.NameOf(vgg.Adapt(Architectures.Get("vgg16"))));

        using var zoo = PretrainedWeightFile.Open(W("resnet_v1_zoo.onnx"));
        Assert.True(((ResNetConfig)zoo.Adapt(Architectures.Get("resnet50"))).StrideOnFirstConv);
        Assert.False(((ResNetConfig)zoo.Adapt(Architectures.Get("resnet50"))).ConvBias);
    }

    [Fact]
    public void Torchvision_configurations_are_unchanged_by_torchvision_sources()
    {
        foreach (var file in new[] { "resnet_micro.safetensors", "resnet_micro.pth", "resnet_micro.onnx" })
        {
            using var weights = PretrainedWeightFile.Open(W(file));
            Assert.Equal(Architectures.Get("resnet50"), weights.Adapt(Architectures.Get("resnet50")));
        }
    }

    [Fact]
    public void Formats_are_recognised_by_content_not_extension()
    {
        var dir = Directory.CreateTempSubdirectory("weights-ext-").FullName;
        try
        {
            foreach (var (file, format) in new[] { ("resnet_micro.pth", WeightFormat.PyTorch), ("resnet_micro_basic.legacy.pth", WeightFormat.PyTorchLegacy),
                         ("resnet_micro.safetensors", WeightFormat.SafeTensors), ("resnet_micro.onnx", WeightFormat.Onnx), ("keras_vgg_micro.h5", WeightFormat.KerasH5) })
            {
                var renamed = Path.Combine(dir, Path.GetFileNameWithoutExtension(file) + ".bin");
                File.Copy(W(file), renamed, overwrite: true);
                Assert.Equal(format, PretrainedWeightFile.DetectFormat(renamed));
            }
            var text = Path.Combine(dir, "notes.txt");
            File.WriteAllText(text, "hello, these are not weights");
            var e = Assert.Throws<WeightFileException>(() => PretrainedWeightFile.DetectFormat(text));
            Assert.Contains("not a supported weight format", e.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
