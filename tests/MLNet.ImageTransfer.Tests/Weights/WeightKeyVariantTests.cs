using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Onnx;
using MLNet.ImageTransfer.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.Weights;

/// <summary>
/// Weight files with other spellings or origins: torchvision's original DenseNet keys, timm's VGG head, and ONNX
/// graphs written by this library's own exporter (with and without the normalisation and BatchNorm folding) — a second,
/// independent ONNX writer for the structural reader.
/// </summary>
public sealed class WeightKeyVariantTests : IDisposable
{
    readonly string _dir = TestData.NewTempDir("key-variants");

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    static string W(string name) => WeightFormatParityTests.W(name);

    static double LoadAndCompare(string file, string io, ArchitectureConfig config)
    {
        using var weights = PretrainedWeightFile.Open(file);
        using var model = weights.Adapt(config).Build(5);
        var result = PretrainedWeights.Load(model, weights);
        Assert.True(result.Report.IsExact, result.Report.Describe());
        model.eval();
        using var _ = no_grad();
        using var x = WeightFormatParityTests.Input(io);
        using var logits = model.call(x);
        using var expected = WeightFormatParityTests.Expected(io);
        return (logits - expected).abs().max().item<float>();
    }

    [Fact]
    public void Torchvisions_original_densenet_key_names_load()
    {
        // densenet121-a639ec97.pth and its siblings spell denselayer keys 'norm.1', 'conv.2' (torchvision renames them on load).
        var path = Path.Combine(_dir, "old_densenet.safetensors");
        using (var file = SafeTensors.Read(W("densenet_micro.safetensors")))
            SafeTensors.Write(path, file.Tensors.Select(kv => (System.Text.RegularExpressions.Regex.Replace(kv.Key, @"(denselayer\d+\.(?:norm|conv))([12])\.", "$1.$2."), kv.Value)).ToList());
        Assert.Contains(SafeTensors.ReadHeader(path).Entries, e => e.Name == "features.denseblock1.denselayer1.norm.1.weight");
        Assert.InRange(LoadAndCompare(path, "densenet_micro", WeightFormatParityTests.ConfigOf("densenet_micro")), 0, 1e-4);
    }

    [Fact]
    public void Timms_vgg_head_loads_as_torchvisions_classifier()
    {
        // timm's VGG: pre_logits.fc1 is a k×k convolution over the pooled map, pre_logits.fc2 a 1×1 one, head.fc the last Linear.
        var path = Path.Combine(_dir, "timm_vgg.safetensors");
        using (var file = SafeTensors.Read(W("vgg_micro_bn.safetensors")))
        {
            var entries = file.Tensors.Select(kv => kv.Key switch
            {
                "classifier.0.weight" => ("pre_logits.fc1.weight", kv.Value.reshape(8, 8, 2, 2)),
                "classifier.0.bias" => ("pre_logits.fc1.bias", kv.Value),
                "classifier.3.weight" => ("pre_logits.fc2.weight", kv.Value.reshape(8, 8, 1, 1)),
                "classifier.3.bias" => ("pre_logits.fc2.bias", kv.Value),
                "classifier.6.weight" => ("head.fc.weight", kv.Value),
                "classifier.6.bias" => ("head.fc.bias", kv.Value),
                _ => (kv.Key, kv.Value),
            }).ToList();
            SafeTensors.Write(path, entries);
        }
        Assert.InRange(LoadAndCompare(path, "vgg_micro_bn", WeightFormatParityTests.ConfigOf("vgg_micro_bn")), 0, 1e-4);
    }

    public static TheoryData<string, bool, bool> OwnExports => new()
    {
        { "densenet_micro", true, true }, { "densenet_micro", false, false },
        { "resnet_micro", true, true }, { "resnet_micro", false, false },
        { "vgg_micro_bn", true, true }, { "vgg_micro_bn", false, false },
    };

    [Theory]
    [MemberData(nameof(OwnExports))]
    public void Onnx_files_written_by_our_exporter_read_back_by_structure(string io, bool includePreprocessing, bool foldBatchNorm)
    {
        var config = WeightFormatParityTests.ConfigOf(io);
        using var original = config.Build(5);
        using (var file = PretrainedWeightFile.Open(W($"{io}.safetensors"))) PretrainedWeights.Load(original, file);
        var preprocessing = ImagePreprocessing.KerasCaffe(io.StartsWith("vgg", StringComparison.Ordinal) ? 16 : 32); // BGR: a channel Gather too
        var path = Path.Combine(_dir, $"{io}-{includePreprocessing}-{foldBatchNorm}.onnx");
        using (var stream = File.Create(path))
            OnnxExporter.Export(original, preprocessing, null, stream, new OnnxExportOptions { IncludePreprocessing = includePreprocessing, FoldBatchNorm = foldBatchNorm });

        using var weights = PretrainedWeightFile.Open(path);
        Assert.Equal(WeightFormat.Onnx, weights.Format);
        if (includePreprocessing) Assert.Contains(weights.Notes, n => n.Contains("normalises its input"));
        Assert.InRange(LoadAndCompare(path, io, config), 0, 1e-4);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_keras_variant_exported_to_onnx_reads_back_as_that_variant(bool foldBatchNorm)
    {
        // Keras ResNet v1 (stride on the first 1×1 convolution, convolution biases, epsilon 1.001e-5) → our exporter →
        // the structural reader finds the stride placement (and, unfolded, the biases and epsilon) again.
        using var keras = PretrainedWeightFile.Open(W("keras_resnet_micro.h5"));
        var config = keras.Adapt(WeightFormatParityTests.ConfigOf("keras_resnet_micro"));
        using var original = config.Build(5);
        PretrainedWeights.Load(original, keras);
        var path = Path.Combine(_dir, $"keras-resnet-{foldBatchNorm}.onnx");
        using (var stream = File.Create(path))
            OnnxExporter.Export(original, ImagePreprocessing.KerasCaffe(32), null, stream, new OnnxExportOptions { FoldBatchNorm = foldBatchNorm });

        using var onnx = PretrainedWeightFile.Open(path);
        var read = Assert.IsType<ResNetConfig>(onnx.Adapt(WeightFormatParityTests.ConfigOf("keras_resnet_micro")));
        Assert.True(read.StrideOnFirstConv);
        Assert.Equal(!foldBatchNorm, read.ConvBias);
        if (!foldBatchNorm) Assert.Equal(ArchitectureConfig.KerasBatchNormEpsilon, read.Epsilon, 9);
        Assert.InRange(LoadAndCompare(path, "keras_resnet_micro", WeightFormatParityTests.ConfigOf("keras_resnet_micro")), 0, 1e-4);
    }
}
