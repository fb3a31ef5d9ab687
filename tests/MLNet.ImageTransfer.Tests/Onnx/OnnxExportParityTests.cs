using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Onnx;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.Onnx;

/// <summary>
/// Exported graphs run by ONNX Runtime against the TorchSharp networks they came from (and against PyTorch itself):
/// every family's tiny variant, with and without BatchNorm folding, with each kind of preprocessing, head and pooling.
/// </summary>
public class OnnxExportParityTests(ITestOutputHelper output)
{
    const double Tolerance = 1e-4;

    static readonly ImagePreprocessing Prep32 = ImagePreprocessing.TorchVision(32) with { Resize = ResizeMode.Stretch };

    public static TheoryData<string, bool> FixturesWithFolding()
    {
        var data = new TheoryData<string, bool>();
        foreach (var name in OnnxTestModels.FixtureNames)
        {
            data.Add(name, true);
            data.Add(name, false);
        }
        return data;
    }

    public static TheoryData<string> Fixtures_() => new(OnnxTestModels.FixtureNames);

    void AssertParity(string what, OnnxParityReport report, params string[] outputs)
    {
        output.WriteLine($"{what}: {report}");
        foreach (var name in outputs)
        {
            Assert.True(report.MaxAbsDifference.ContainsKey(name), $"{what}: output '{name}' was not compared.");
            Assert.InRange(report.MaxAbsDifference[name], 0, Tolerance);
        }
    }

    [Theory]
    [MemberData(nameof(FixturesWithFolding))]
    public void Onnx_runtime_matches_torchsharp_on_raw_pixels(string name, bool fold)
    {
        var (model, io) = OnnxTestModels.LoadFixture(name);
        using (model) using (io)
        {
            using var ms = new MemoryStream();
            var summary = OnnxExporter.Export(model, Prep32, null, ms, new OnnxExportOptions { FoldBatchNorm = fold });
            output.WriteLine(summary.ToString());
            AssertParity($"{name} fold={fold}", OnnxParity.Check(model, Prep32, ms.ToArray(), images: 3, seed: 11), OnnxNames.Probabilities, OnnxNames.Logits);

            // Folding: every BatchNorm that follows a convolution disappears; DenseNet's pre-activation norms stay.
            int bns = OnnxTestModels.BatchNormCount(model);
            int bnNodes = summary.OperatorCounts.GetValueOrDefault("BatchNormalization");
            if (!fold) Assert.Equal(bns, bnNodes);
            else if (model is DenseNet)
            {
                var config = (DenseNetConfig)model.Config;
                int preActivation = config.BlockConfig.Sum() + (config.BlockConfig.Length - 1) + 1; // norm1 per layer, transitions, norm5
                Assert.Equal(preActivation, bnNodes);
                Assert.Equal(bns - preActivation, bns - bnNodes); // norm0 and every norm2 were folded
            }
            else Assert.Equal(0, bnNodes);
            Assert.DoesNotContain("Dropout", summary.OperatorCounts.Keys);
        }
    }

    [Theory]
    [MemberData(nameof(Fixtures_))]
    public void Onnx_runtime_matches_pytorch_on_its_own_inputs(string name)
    {
        // Three-way: the normalised-input export against the logits torchvision computed (fixtures/generate_fixtures.py).
        var (model, io) = OnnxTestModels.LoadFixture(name);
        using (model) using (io)
        {
            using var ms = new MemoryStream();
            OnnxExporter.Export(model, Prep32, null, ms, new OnnxExportOptions { IncludePreprocessing = false });
            using var onnx = OnnxImageModel.Load(ms.ToArray());
            Assert.Equal(OnnxNames.NormalizedInput, onnx.InputName);
            var logits = onnx.Run(io.Tensors["input"].data<float>().ToArray(), OnnxNames.Logits)[OnnxNames.Logits];
            var expected = io.Tensors["logits_eval"].data<float>().ToArray();
            double max = logits.Zip(expected, (a, b) => Math.Abs((double)a - b)).Max();
            output.WriteLine($"{name}: max |onnx - pytorch| logits = {max:E2}");
            Assert.InRange(max, 0, Tolerance);
        }
    }

    [Theory]
    [MemberData(nameof(Fixtures_))]
    public void Feature_extractor_export_matches_pooled_features(string name)
    {
        var (model, io) = OnnxTestModels.LoadFixture(name);
        using (model) using (io)
        {
            var bytes = OnnxExporter.ExportFeatureExtractorToBytes(model, Prep32);
            using (var onnx = OnnxImageModel.Load(bytes))
            {
                Assert.Equal([OnnxNames.Features], onnx.OutputNames);
                Assert.Equal(model.NumFeatures, onnx.OutputWidths[OnnxNames.Features]);
                Assert.Equal("feature-extractor", onnx.Metadata[OnnxMetadataKeys.Kind]);
            }
            AssertParity($"{name} features", OnnxParity.Check(model, Prep32, bytes, images: 2), OnnxNames.Features);
        }
    }

    public static TheoryData<string> PreprocessingPresets => new() { "torchvision", "keras-caffe", "keras-torch", "keras-tf", "rescale" };

    [Theory]
    [MemberData(nameof(PreprocessingPresets))]
    public void Every_preprocessing_preset_is_part_of_the_graph(string preset)
    {
        // keras-caffe is BGR with 0-255 mean subtraction: the graph reorders RGB input itself.
        var prep = ImagePreprocessing.FromPreset(preset, 32);
        using var model = OnnxTestModels.Build(new ResNetConfig(ResNetBlock.Basic, [1, 1, 1, 1], BaseWidth: 4), 3);
        var bytes = ExportBytes(model, prep);
        using (var onnx = OnnxImageModel.Load(bytes)) Assert.Equal(prep, onnx.Preprocessing);
        AssertParity(preset, OnnxParity.Check(model, prep, bytes), OnnxNames.Probabilities, OnnxNames.Logits);
    }

    public static TheoryData<string, int> HeadAndPoolingVariants => new()
    {
        { "resnet-bottleneck-mlp-relu", 32 },
        { "densenet-dropout-mlp", 32 },
        { "vgg-bn-pool-identity", 28 },      // 28 → 7×7 map: adaptive pooling to 7×7 is the identity
        { "vgg-bn-pool-average", 56 },       // 14×14 → 7×7: AveragePool 2×2
        { "vgg-pool-matmul", 40 },           // 10×10 → 7×7: overlapping bins, MatMul
        { "vgg-mlp-head", 40 },              // Keras-style head on a VGG: global average pooling
        { "vgg-pool-to-3", 40 },             // 10×10 → 3×3
    };

    [Theory]
    [MemberData(nameof(HeadAndPoolingVariants))]
    public void Heads_and_pooling_variants_match_torchsharp(string variant, int size)
    {
        const int M = VggConfig.MaxPool;
        (ArchitectureConfig config, HeadSpec head) = variant switch
        {
            "resnet-bottleneck-mlp-relu" => ((ArchitectureConfig)new ResNetConfig(ResNetBlock.Bottleneck, [1, 2, 1, 1], BaseWidth: 4), HeadSpec.KerasMlp(6, 0.5, HeadActivation.ReLU)),
            "densenet-dropout-mlp" => (new DenseNetConfig(4, [2, 3], 8, BnSize: 2, DropRate: 0.3), HeadSpec.KerasMlp(5)),
            "vgg-bn-pool-identity" => (new VggConfig([4, M, 8, M], true, ClassifierWidth: 8), HeadSpec.Default),
            "vgg-bn-pool-average" => (new VggConfig([4, M, 8, M], true, ClassifierWidth: 8), HeadSpec.Default),
            "vgg-pool-matmul" => (new VggConfig([4, M, 8, M], false, ClassifierWidth: 8), HeadSpec.Default),
            "vgg-mlp-head" => (new VggConfig([4, M, 8, 8, M], true), HeadSpec.KerasMlp(7, 0.2)),
            "vgg-pool-to-3" => (new VggConfig([4, M, 8, M], true, ClassifierWidth: 8, PoolSize: 3), HeadSpec.Default),
            _ => throw new ArgumentException(variant),
        };
        var prep = ImagePreprocessing.TorchVision(size) with { Resize = ResizeMode.Stretch };
        using var model = OnnxTestModels.Build(config, 4, head);
        var bytes = ExportBytes(model, prep, out var summary);
        output.WriteLine(summary.ToString());
        if (variant == "vgg-bn-pool-identity") Assert.DoesNotContain("MatMul", summary.OperatorCounts.Keys);
        if (variant == "vgg-bn-pool-average") Assert.Equal(1, summary.OperatorCounts["AveragePool"]);
        if (variant is "vgg-pool-matmul" or "vgg-pool-to-3") Assert.Equal(1, summary.OperatorCounts["MatMul"]);
        AssertParity(variant, OnnxParity.Check(model, prep, bytes, images: 3), OnnxNames.Probabilities, OnnxNames.Logits);
    }

    [Theory]
    [InlineData(13)]
    [InlineData(17)]
    [InlineData(21)]
    public void Every_supported_opset_loads_and_matches(int opset)
    {
        using var model = OnnxTestModels.Build(new DenseNetConfig(4, [1, 2], 8, BnSize: 2), 3);
        var bytes = ExportBytes(model, Prep32, out _, new OnnxExportOptions { Opset = opset });
        AssertParity($"opset {opset}", OnnxParity.Check(model, Prep32, bytes), OnnxNames.Probabilities);
    }

    [Fact]
    public void Fixed_batch_size_and_single_output_are_honoured()
    {
        using var model = OnnxTestModels.Build(new ResNetConfig(ResNetBlock.Basic, [1, 1, 1, 1], BaseWidth: 4), 3);
        var bytes = ExportBytes(model, Prep32, out var summary, new OnnxExportOptions { BatchSize = 2, Outputs = OnnxClassifierOutputs.Logits });
        Assert.Equal(["2", "3", "32", "32"], summary.InputShape);
        using var onnx = OnnxImageModel.Load(bytes);
        Assert.Equal(2, onnx.FixedBatchSize);
        Assert.Equal([OnnxNames.Logits], onnx.OutputNames);
        AssertParity("batch 2, logits only", OnnxParity.Check(model, Prep32, bytes), OnnxNames.Logits);
    }

    [Fact]
    public void Options_out_of_range_are_refused()
    {
        using var model = OnnxTestModels.Build(new ResNetConfig(ResNetBlock.Basic, [1, 1, 1, 1], BaseWidth: 4), 3);
        Assert.Throws<ArgumentOutOfRangeException>(() => ExportBytes(model, Prep32, out _, new OnnxExportOptions { Opset = 12 }));
        Assert.Throws<ArgumentException>(() => ExportBytes(model, Prep32, out _, new OnnxExportOptions { Outputs = 0 }));
        Assert.Throws<ArgumentException>(() => OnnxExporter.Export(model, Prep32, ["only one name"], new MemoryStream()));
        // 8-pixel images vanish in a ResNet's five halvings: the export says so instead of writing a broken graph.
        var tiny = ImagePreprocessing.TorchVision(8) with { Resize = ResizeMode.Stretch };
        using var vgg = OnnxTestModels.Build(new VggConfig([4, 0, 4, 0, 4, 0, 4, 0], false, 8), 3);
        var e = Assert.Throws<InvalidOperationException>(() => ExportBytes(vgg, tiny, out _));
        Assert.Contains("too small", e.Message);
    }

    static byte[] ExportBytes(ImageClassifierModel model, ImagePreprocessing prep) => ExportBytes(model, prep, out _);

    static byte[] ExportBytes(ImageClassifierModel model, ImagePreprocessing prep, out OnnxExportSummary summary, OnnxExportOptions? options = null)
    {
        using var ms = new MemoryStream();
        summary = OnnxExporter.Export(model, prep, null, ms, options);
        return ms.ToArray();
    }
}
