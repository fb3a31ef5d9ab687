using BenchmarkDotNet.Attributes;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Benchmarks;

/// <summary>
/// Inference of the same network, same weights, same batch of raw pixels (float32 [N,3,S,S], 0–255) to class
/// probabilities: TorchSharp (normalise, eval-mode forward under no_grad, softmax — what ImageClassifierTransformer
/// does after decoding) against ONNX Runtime running our export (normalisation inside the graph; BatchNorm folded
/// into the convolutions, and, for comparison, not folded). ONNX Runtime gets TorchSharp's thread count. One
/// operation = one batch: img/s = BatchSize / mean.
/// </summary>
[MemoryDiagnoser]
// In-process like ModelThroughputBenchmarks: the host process already has a working libtorch (Debian 12 fix).
[InProcess]
[WarmupCount(5)]
[IterationCount(10)]
public class OnnxInferenceBenchmarks
{
    [Params("resnet50", "resnet18", "densenet121")]
    public string Architecture { get; set; } = "resnet50";

    [Params(224)]
    public int ImageSize { get; set; } = 224;

    [Params(8)]
    public int BatchSize { get; set; } = 8;

    ImageClassifierModel _model = null!;
    ImagePreprocessing _preprocessing = null!;
    OnnxImageModel _folded = null!, _unfolded = null!;
    float[] _pixels = null!;
    Tensor _pixelTensor = null!;

    [GlobalSetup]
    public void Setup()
    {
        torch.manual_seed(0);
        _model = Architectures.Create(Architecture, 10);
        _model.eval();
        _preprocessing = ImagePreprocessing.TorchVision(ImageSize);
        var random = new Random(0);
        _pixels = new float[BatchSize * 3 * ImageSize * ImageSize];
        for (int i = 0; i < _pixels.Length; i++) _pixels[i] = random.Next(256);
        _pixelTensor = torch.tensor(_pixels, new long[] { BatchSize, 3, ImageSize, ImageSize });
        int threads = torch.get_num_threads();
        _folded = OnnxImageModel.Load(Export(foldBatchNorm: true), threads);
        _unfolded = OnnxImageModel.Load(Export(foldBatchNorm: false), threads);
        Console.WriteLine($"// TorchSharp threads {threads}; ONNX Runtime intra-op threads {threads}; " +
                          $"max |ORT - TorchSharp| probabilities {OnnxParity.Check(_model, _preprocessing, Export(true), images: 2).Max:E2}");
    }

    byte[] Export(bool foldBatchNorm)
    {
        using var ms = new MemoryStream();
        OnnxExporter.Export(_model, _preprocessing, null, ms, new OnnxExportOptions { FoldBatchNorm = foldBatchNorm, Outputs = OnnxClassifierOutputs.Probabilities });
        return ms.ToArray();
    }

    [Benchmark(Baseline = true)]
    public float TorchSharp()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var probabilities = nn.functional.softmax(_model.call(ImageTensors.Normalize(_pixelTensor, _preprocessing)), 1);
        return probabilities.data<float>()[0];
    }

    [Benchmark]
    public float OnnxRuntime() => _folded.Run(_pixels, OnnxNames.Probabilities)[OnnxNames.Probabilities][0];

    [Benchmark]
    public float OnnxRuntimeUnfoldedBatchNorm() => _unfolded.Run(_pixels, OnnxNames.Probabilities)[OnnxNames.Probabilities][0];

    [GlobalCleanup]
    public void Cleanup()
    {
        _folded.Dispose();
        _unfolded.Dispose();
        _pixelTensor.Dispose();
        _model.Dispose();
    }
}
