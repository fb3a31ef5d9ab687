using System.Text.Json;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Weights;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.Onnx;

/// <summary>Tiny networks for the ONNX tests: the PyTorch parity fixtures, and seeded custom variants.</summary>
internal static class OnnxTestModels
{
    /// <summary>The fixtures of every family: DenseNet, ResNet basic and bottleneck, VGG without and with BatchNorm.</summary>
    public static readonly string[] FixtureNames = Fixtures.TinyModelNames;

    /// <summary>A fixture network with torchvision's weights (random, with non-trivial BatchNorm statistics), and its PyTorch inputs/outputs.</summary>
    public static (ImageClassifierModel Model, SafeTensorsFile Io) LoadFixture(string name)
    {
        var (model, io) = Fixtures.LoadTinyModel(name);
        model.eval();
        return (model, io);
    }

    /// <summary>Builds <paramref name="config"/> with seeded weights and gives every BatchNorm non-trivial statistics and affine parameters.</summary>
    public static ImageClassifierModel Build(ArchitectureConfig config, int classes, HeadSpec? head = null, int seed = 3)
    {
        ImageClassifierModel model;
        lock (global::MLNet.ImageTransfer.Engine.GlobalGenerator.Gate)
        {
            torch.manual_seed(seed);
            model = config.Build(classes, head);
        }
        var generator = new Generator((ulong)seed);
        using (no_grad())
        {
            foreach (var (_, module) in model.named_modules())
            {
                if (module is not BatchNorm2d bn) continue;
                long n = bn.num_features;
                bn.running_mean!.copy_(torch.randn(n, generator: generator) * 0.2);
                bn.running_var!.copy_(torch.rand(n, generator: generator) + 0.5);
                bn.weight!.copy_(torch.randn(n, generator: generator) * 0.2 + 1);
                bn.bias!.copy_(torch.randn(n, generator: generator) * 0.1);
            }
        }
        model.eval();
        return model;
    }

    /// <summary>Number of BatchNorm2d modules in a network.</summary>
    public static int BatchNormCount(ImageClassifierModel model) => model.named_modules().Count(m => m.module is BatchNorm2d);
}
