using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Onnx;
using Xunit.Abstractions;

namespace MLNet.ImageTransfer.Tests.Onnx;

/// <summary>Full-size zoo networks (seeded weights, non-trivial BatchNorm statistics) exported at 224 and run by ONNX Runtime.</summary>
public class OnnxFullSizeTests(ITestOutputHelper output)
{
    [Theory]
    [Trait("Category", "Slow")]
    [InlineData("densenet121")]
    [InlineData("resnet50")]
    [InlineData("vgg16_bn")]
    public void Full_size_networks_export_and_match_torchsharp(string architecture)
    {
        var prep = ImagePreprocessing.TorchVision(224);
        using var model = OnnxTestModels.Build(global::MLNet.ImageTransfer.Models.Architectures.Get(architecture), 1000);
        using var ms = new MemoryStream();
        var summary = OnnxExporter.Export(model, prep, null, ms);
        output.WriteLine(summary.ToString());
        var report = OnnxParity.Check(model, prep, ms.ToArray(), images: 2);
        output.WriteLine(report.ToString());
        Assert.InRange(report.MaxAbsDifference[OnnxNames.Probabilities], 0, 1e-4);
        // Deep networks with random weights have logits far from 1 (DenseNet-121's reach 1e8 here): compare relatively.
        Assert.InRange(report.Relative(OnnxNames.Logits), 0, 1e-5);
    }
}
