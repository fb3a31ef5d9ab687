using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using MLNet.ImageTransfer.Augmentation;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Benchmarks;

/// <summary>
/// Does augmentation keep up with training? Augmented images per second as the training loop gets them
/// (<c>EpochBatches</c>: cached uint8 images (the whole image when the pipeline crops) → background workers → augmented float
/// batches of 32 at 224 pixels),
/// next to what a resnet50 training step at 224 consumes (<see cref="AugmentationTrainStepBaseline"/>). One operation =
/// one epoch of <see cref="Batches"/> batches; the img/s column divides by its image count. Run both with
/// <c>--filter '*Augmentation*'</c>.
/// </summary>
[Config(typeof(SuiteConfig))]
public class AugmentationThroughputBenchmarks
{
    public const int BatchSize = 32, Batches = 4, ImageSize = 224;

    /// <summary>Presets: torchvision = resized-crop + hflip (from the whole 500×375 image); keras = rotate, shift, shear, zoom, hflip (one fused resample); default = torchvision + colour jitter.</summary>
    [Params("torchvision", "keras", "default")]
    public string Spec { get; set; } = "default";

    /// <summary>Background workers (results are identical for any count; the machine's default is one per two cores).</summary>
    [Params(1, 2)]
    public int Workers { get; set; } = 1;

    LabeledImageSet _set = null!;
    AugmentationPipeline _pipeline = null!;
    ImagePreprocessing _preprocessing = null!;
    int[] _order = null!;
    int _epoch;

    [GlobalSetup]
    public void Setup()
    {
        // typeof, not GetType(): the in-process toolchain runs a generated subclass.
        ImagesPerSecondColumn.ImagesPerOperation[typeof(AugmentationThroughputBenchmarks)] = BatchSize * Batches;
        _preprocessing = ImagePreprocessing.TorchVision(ImageSize);
        _pipeline = AugmentationPipeline.Parse(Spec) with { Workers = Workers };
        var source = AugmentationSource.For(_preprocessing, _pipeline);
        // Smooth random 500×375 photos (noise upsampled), cached as training caches them (the whole image when crops need it).
        using var generator = new Generator(1, CPU);
        _set = new LabeledImageSet { Source = source.IsEvaluation ? null : source };
        for (int i = 0; i < BatchSize * Batches; i++)
        {
            using var scope = NewDisposeScope();
            var small = rand([1, 3, 16, 16], generator: generator) * 255;
            var photo = nn.functional.interpolate(small, [375, 500], mode: InterpolationMode.Bilinear, align_corners: false);
            var hwc = photo[0].permute(1, 2, 0).round().to_type(ScalarType.Byte).contiguous().data<byte>().ToArray();
            var plan = source.Plan(500, 375);
            var cached = new byte[3 * plan.Width * plan.Height];
            ImageGeometry.Resample(PixelSource.Rgb(hwc, 500, 375), plan, cached, source.Layout, ChannelOrder.Rgb);
            _set.Add(cached, plan.Height, plan.Width, i % 10);
        }
        _order = Enumerable.Range(0, _set.Count).ToArray();
    }

    [Benchmark(Description = "augmented batches of an epoch (32 × 224 px)")]
    public double AugmentEpoch()
    {
        using var scope = NewDisposeScope();
        using var batches = EpochBatches.Create(_set, _order, BatchSize, _pipeline, _preprocessing, seed: 1, epoch: ++_epoch);
        double sum = 0;
        for (int b = 0; b < batches.Count; b++)
        {
            using var inner = NewDisposeScope();
            var (images, _) = batches.Next();
            sum += images[0, 0, 0, 0].item<float>();
        }
        return sum;
    }

    [GlobalCleanup]
    public void Cleanup() => _set.Dispose();
}

/// <summary>
/// What training consumes: one resnet50 training step at 224 pixels (normalise, forward, cross-entropy, backward, Adam)
/// on a batch of 32, the rate <see cref="AugmentationThroughputBenchmarks"/> must exceed. A step takes seconds on a
/// 2-core CPU, so this uses <see cref="LongStepConfig"/> (5 measured iterations, no in-process time limit).
/// </summary>
[Config(typeof(LongStepConfig))]
public class AugmentationTrainStepBaseline
{
    [Params(32)]
    public int BatchSize { get; set; } = 32;

    ImageClassifierModel _model = null!;
    optim.Optimizer _optimizer = null!;
    Tensor _images = null!, _labels = null!;
    readonly ImagePreprocessing _preprocessing = ImagePreprocessing.TorchVision(224);

    [GlobalSetup]
    public void Setup()
    {
        torch.manual_seed(0);
        _model = Architectures.Create("resnet50", 10);
        _optimizer = optim.Adam(_model.parameters(), 1e-4);
        _images = torch.rand(BatchSize, 3, 224, 224) * 255;
        _labels = torch.randint(0, 10, BatchSize, dtype: ScalarType.Int64);
    }

    [Benchmark(Description = "resnet50 train step at 224")]
    public float ResNet50TrainStep()
    {
        _model.train();
        using var scope = NewDisposeScope();
        _optimizer.zero_grad();
        var loss = nn.functional.cross_entropy(_model.call(ImageTensors.Normalize(_images, _preprocessing)), _labels);
        loss.backward();
        _optimizer.step();
        return loss.item<float>();
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

/// <summary>
/// <see cref="SuiteConfig"/>'s job for operations of many seconds: the in-process toolchain's default time limit would
/// abort a resnet50 step at 224 on a busy 2-core machine, and 5 warm-ups + 5 iterations keep the run to minutes.
/// </summary>
public sealed class LongStepConfig : ManualConfig
{
    public LongStepConfig()
    {
        AddJob(Job.Default
            .WithToolchain(new InProcessEmitToolchain(TimeSpan.FromMinutes(60), logOutput: true))
            .WithWarmupCount(5)
            .WithIterationCount(SuiteConfig.Quick ? 3 : 5)
            .WithInvocationCount(1)
            .WithUnrollFactor(1)
            .WithId(SuiteConfig.Quick ? "Quick" : "Full"));
        AddDiagnoser(MemoryDiagnoser.Default);
        AddColumn(new ImagesPerSecondColumn());
    }
}
