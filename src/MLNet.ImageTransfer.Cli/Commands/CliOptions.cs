using System.CommandLine;
using Microsoft.ML;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Training;

namespace MLNet.ImageTransfer.Cli.Commands;

/// <summary>The training flags shared by <c>train</c> and <c>demo</c> (Keras/timm vocabulary), and their mapping to Options.</summary>
internal sealed class TrainingFlags
{
    public Option<string> Arch { get; } = new("--arch") { Description = $"Architecture: {string.Join(", ", Architectures.Names)}", DefaultValueFactory = _ => "densenet121" };
    public Option<FileInfo?> Weights { get; } = new("--weights") { Description = "Pretrained weights (safetensors with torchvision key names) to start from" };
    public Option<int> ImageSize { get; } = new("--image-size") { Description = "Network input size in pixels", DefaultValueFactory = _ => 224 };
    public Option<string> Preprocess { get; } = new("--preprocess") { Description = "Preprocessing preset: torchvision, keras-caffe, keras-torch, keras-tf, rescale", DefaultValueFactory = _ => "torchvision" };
    public Option<int> Epochs { get; } = new("--epochs") { Description = "Passes over the training data", DefaultValueFactory = _ => 10 };
    public Option<int> BatchSize { get; } = new("--batch-size") { Description = "Images per step", DefaultValueFactory = _ => 32 };
    public Option<double> LearningRate { get; } = new("--lr") { Description = "Learning rate", DefaultValueFactory = _ => 1e-3 };
    public Option<string> Optimizer { get; } = new("--optimizer") { Description = "adam or sgd (momentum 0.9)", DefaultValueFactory = _ => "adam" };
    public Option<double> WeightDecay { get; } = new("--weight-decay") { Description = "L2 weight decay", DefaultValueFactory = _ => 0 };
    public Option<int> FreezeEpochs { get; } = new("--freeze-epochs") { Description = "Epochs with the backbone frozen before fine-tuning everything", DefaultValueFactory = _ => 0 };
    public Option<int> Seed { get; } = new("--seed") { Description = "Random seed (same seed, same data, CPU → same model)", DefaultValueFactory = _ => 1 };
    public Option<string> Device { get; } = new("--device") { Description = "cpu, cuda or cuda:N", DefaultValueFactory = _ => "cpu" };
    public Option<bool> Quiet { get; } = new("--quiet", "-q") { Description = "One plain line per epoch, no progress bar (for logs and CI)" };

    public IEnumerable<Option> All => [Arch, Weights, ImageSize, Preprocess, Epochs, BatchSize, LearningRate, Optimizer, WeightDecay, FreezeEpochs, Seed, Device, Quiet];

    public ImageTransferTrainer.Options ToOptions(ParseResult r) => new()
    {
        Architecture = r.GetValue(Arch)!,
        Weights = r.GetValue(Weights)?.FullName,
        Preprocessing = ImagePreprocessing.FromPreset(r.GetValue(Preprocess)!, r.GetValue(ImageSize)),
        Epochs = r.GetValue(Epochs),
        BatchSize = r.GetValue(BatchSize),
        LearningRate = r.GetValue(LearningRate),
        Optimizer = r.GetValue(Optimizer)!.ToLowerInvariant() switch
        {
            "adam" => OptimizerKind.Adam,
            "sgd" => OptimizerKind.Sgd,
            var o => throw new ArgumentException($"Unknown optimizer '{o}': use adam or sgd."),
        },
        WeightDecay = r.GetValue(WeightDecay),
        FrozenEpochs = r.GetValue(FreezeEpochs),
        Seed = r.GetValue(Seed),
        Device = r.GetValue(Device)!,
    };
}

internal static class Cli
{
    /// <summary>Runs a command body; user errors print one clear line and exit 1 instead of a stack trace.</summary>
    public static int Run(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is ArgumentException or FileNotFoundException or DirectoryNotFoundException or InvalidDataException or InvalidOperationException or IOException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    public static MLContext NewContext(int? seed = null)
    {
        var ml = new MLContext(seed);
        ml.RegisterImageTransfer();
        return ml;
    }
}
