using BenchmarkDotNet.Attributes;
using Microsoft.ML;
using MLNet.ImageTransfer.Benchmarks.Infrastructure;

namespace MLNet.ImageTransfer.Benchmarks;

/// <summary>
/// The data pipeline training consumes, from a folder of photo-sized JPEGs (500×375): ML.NET <c>LoadImages</c>
/// (SkiaSharp decode), the torchvision preset's resize + centre crop to uint8 [3,S,S], then batches of 32 stacked and
/// normalised. One operation = one pass over the folder; the img/s column divides by its image count. Compare the
/// img/s with <see cref="ModelThroughputBenchmarks"/>'s TrainStep img/s at the same size: the pipeline keeps up when it is higher.
/// </summary>
[Config(typeof(SuiteConfig))]
public class DataPipelineBenchmarks
{
    [Params(64, 224)]
    public int ImageSize { get; set; }

    public const int ImagesPerClass = 32; // 4 classes: 128 images per pass

    string _root = null!;
    MLContext _ml = null!;
    IDataView _rows = null!;

    [GlobalSetup]
    public void Setup()
    {
        _root = JpegFolder.TempDirectory("mlnet-imagetransfer-pipeline");
        var scan = JpegFolder.Write(_root, ImagesPerClass);
        ImagesPerSecondColumn.ImagesPerOperation[typeof(DataPipelineBenchmarks)] = scan.Images.Count;
        _ml = new MLContext(0);
        _rows = LibraryWorkloads.FolderRows(_ml, _root);
    }

    [Benchmark(Description = "decode+resize+normalise, one folder pass")]
    public int DecodeResizeNormalize() => LibraryWorkloads.DecodeResizeNormalize(_ml, _rows, ImageSize, 32);

    [GlobalCleanup]
    public void Cleanup() => Directory.Delete(_root, recursive: true);
}
