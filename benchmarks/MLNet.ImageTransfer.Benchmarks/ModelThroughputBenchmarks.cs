using BenchmarkDotNet.Attributes;
using MLNet.ImageTransfer.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Benchmarks;

/// <summary>
/// Images per second of one training step (forward, cross-entropy, backward, Adam step) and of inference (eval mode,
/// no_grad) for our TorchSharp networks on the CPU. One operation = one batch; divide BatchSize by the mean time for
/// img/s (the img/s column does). Side by side with PyTorch on the same machine: the <c>compare</c> mode (benchmarks/RESULTS.md).
/// </summary>
[MemoryDiagnoser]
// In-process, 5 warm-ups, Full/Quick jobs, img/s column: see SuiteConfig.
[Config(typeof(SuiteConfig))]
public class ModelThroughputBenchmarks
{
    [Params("resnet18", "resnet50", "densenet121", "vgg16")]
    public string Architecture { get; set; } = "resnet18";

    [Params(64, 224)]
    public int ImageSize { get; set; }

    [Params(8, 32)]
    public int BatchSize { get; set; }

    ImageClassifierModel _model = null!;
    optim.Optimizer _optimizer = null!;
    Tensor _images = null!, _labels = null!;

    [GlobalSetup]
    public void Setup()
    {
        torch.manual_seed(0);
        _model = Architectures.Create(Architecture, 10);
        _optimizer = optim.Adam(_model.parameters(), 1e-4);
        _images = torch.randn(BatchSize, 3, ImageSize, ImageSize);
        _labels = torch.randint(0, 10, BatchSize, dtype: ScalarType.Int64);
    }

    [Benchmark]
    public float TrainStep()
    {
        _model.train();
        using var scope = NewDisposeScope();
        _optimizer.zero_grad();
        var loss = nn.functional.cross_entropy(_model.call(_images), _labels);
        loss.backward();
        _optimizer.step();
        return loss.item<float>();
    }

    [Benchmark]
    public float Inference()
    {
        _model.eval();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        return _model.call(_images).sum().item<float>();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _optimizer.Dispose();
        _model.Dispose();
        _images.Dispose();
        _labels.Dispose();
    }
}
