using BenchmarkDotNet.Attributes;
using MLNet.ImageTransfer.Benchmarks.Infrastructure;

namespace MLNet.ImageTransfer.Benchmarks;

/// <summary>
/// One training epoch from a JPEG folder through the library's folder workflow (what the CLI's <c>train --data DIR</c>
/// runs): scan, ML.NET pipeline, decode + resize every image once, model construction, one epoch of Adam steps at
/// batch 32, no validation. One operation = one epoch over 128 images (4 steps; the 5 warm-up iterations are 20 steps).
/// </summary>
[Config(typeof(SuiteConfig))]
public class EndToEndEpochBenchmarks
{
    [Params("resnet18")]
    public string Architecture { get; set; } = "resnet18";

    [Params(64, 224)]
    public int ImageSize { get; set; }

    string _root = null!;

    [GlobalSetup]
    public void Setup()
    {
        _root = JpegFolder.TempDirectory("mlnet-imagetransfer-epoch");
        var scan = JpegFolder.Write(_root, imagesPerClass: 32);
        ImagesPerSecondColumn.ImagesPerOperation[typeof(EndToEndEpochBenchmarks)] = scan.Images.Count;
    }

    [Benchmark(Description = "one epoch from a JPEG folder")]
    public int Epoch() => LibraryWorkloads.TrainOneEpochFromFolder(_root, Architecture, ImageSize, batchSize: 32);

    [GlobalCleanup]
    public void Cleanup() => Directory.Delete(_root, recursive: true);
}
