using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Onnx;
using TorchSharp;

namespace MLNet.ImageTransfer.Benchmarks.Infrastructure;

/// <summary>
/// One inference step through ONNX Runtime on our network exported by the library's <see cref="OnnxExporter"/>
/// (normalised input [N,3,S,S], no preprocessing in the graph, BatchNorm folded as the exporter does by default),
/// with the same thread settings as the other rows: the ORT side of "ORT vs TorchSharp".
/// </summary>
public sealed class OrtStep : IDisposable
{
    readonly InferenceSession _session;
    readonly List<NamedOnnxValue> _inputs;
    readonly string _outputName;

    public OrtStep(string architecture, int imageSize, int batchSize, int threads, int classes = 10, int seed = 0)
    {
        using var stream = new MemoryStream();
        torch.manual_seed(seed);
        using (var network = Architectures.Create(architecture, classes))
        {
            network.eval();
            OnnxExporter.Export(network, ImagePreprocessing.TorchVision(imageSize), null, stream, new OnnxExportOptions { IncludePreprocessing = false });
        }
        using var options = new SessionOptions
        {
            IntraOpNumThreads = threads,
            InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
        };
        _session = new InferenceSession(stream.ToArray(), options);
        var input = _session.InputMetadata.Single();
        var random = new Random(seed);
        var data = new float[batchSize * 3 * imageSize * imageSize];
        for (int i = 0; i < data.Length; i++) data[i] = (float)(random.NextDouble() * 2 - 1);
        _inputs = [NamedOnnxValue.CreateFromTensor(input.Key, new DenseTensor<float>(data, [batchSize, 3, imageSize, imageSize]))];
        _outputName = _session.OutputMetadata.Keys.First();
    }

    public float Step()
    {
        using var results = _session.Run(_inputs, [_outputName]);
        return results[0].AsTensor<float>()[0, 0];
    }

    public void Dispose() => _session.Dispose();

    /// <summary>Null when export + ONNX Runtime work here (a tiny model round trip), else the reason.</summary>
    public static string? Availability()
    {
        try
        {
            using var step = new OrtStep("resnet18", 32, 1, 1, 2);
            step.Step();
            return null;
        }
        catch (Exception e)
        {
            return $"ONNX export or ONNX Runtime failed: {e.GetBaseException().Message}";
        }
    }
}
