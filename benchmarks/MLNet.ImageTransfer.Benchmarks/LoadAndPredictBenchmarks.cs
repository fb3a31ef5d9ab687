using BenchmarkDotNet.Attributes;
using MLNet.ImageTransfer.Benchmarks.Infrastructure;

namespace MLNet.ImageTransfer.Benchmarks;

/// <summary>
/// Start-up cost of a scoring service: a new MLContext, <c>ImageClassificationWorkflow.LoadModel</c> of a saved ML.NET
/// .zip (JSON description + the network as ONNX, scored on ONNX Runtime), and the first prediction of one JPEG. In
/// process (the runtime is already loaded); the <c>compare</c> mode also times it in a fresh process, which never loads libtorch.
/// </summary>
[Config(typeof(SuiteConfig))]
public class LoadAndPredictBenchmarks
{
    [Params("resnet18", "resnet50")]
    public string Architecture { get; set; } = "resnet50";

    string _root = null!, _zip = null!, _image = null!;

    [GlobalSetup]
    public void Setup()
    {
        _root = JpegFolder.TempDirectory("mlnet-imagetransfer-load");
        var data = Path.Combine(_root, "data");
        var scan = JpegFolder.Write(data, imagesPerClass: 2);
        _image = Path.Combine(scan.Root, scan.Images[0].ImagePath);
        _zip = Path.Combine(_root, "model.zip");
        LibraryWorkloads.SaveTrainedModel(data, Architecture, 224, 8, _zip);
    }

    [Benchmark(Description = "load .zip + first prediction")]
    public string LoadAndPredict() => LibraryWorkloads.LoadAndPredictOnce(_zip, _image).Predicted;

    [GlobalCleanup]
    public void Cleanup() => Directory.Delete(_root, recursive: true);
}
