using System.CommandLine;
using Microsoft.ML;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Training;
using MLNet.ImageTransfer.Training.Callbacks;

namespace MLNet.ImageTransfer.Cli.Commands;

/// <summary>The training flags shared by <c>train</c> and <c>demo</c> (Keras/timm vocabulary), and their mapping to Options.</summary>
internal sealed class TrainingFlags
{
    public Option<string?> Arch { get; } = new("--arch") { Description = $"Architecture: {string.Join(", ", Architectures.Names)}. Default: the one --weights holds, else densenet121" };
    public Option<string?> Weights { get; } = new("--weights") { Description = "Pretrained weights to start from: a name from 'weights list' (mlnet-resnet18: ML.NET's ResNet18 from its NuGet package, offline; resnet50.tv2_in1k: downloaded once), 'imagenet' for --arch's default, or a file: safetensors, PyTorch .pth/.pt, Keras .h5 or ONNX (see 'weights inspect')" };
    public Option<FileInfo?> InitModel { get; } = new("--init-model") { Description = "Continue training from a model .zip saved by 'train' (its weights, architecture, head and preprocessing; --arch defaults to its architecture, --image-size to its size). Other classes: backbone kept, classifier re-initialised" };
    public Option<int> ImageSize { get; } = new("--image-size") { Description = "Network input size in pixels", DefaultValueFactory = _ => 224 };
    public Option<string?> Preprocess { get; } = new("--preprocess") { Description = "Preprocessing preset: torchvision, keras-caffe, keras-torch, keras-tf, rescale. Default: the one the --weights were trained with (torchvision without weights)" };
    public Option<bool> AllowPreprocessMismatch { get; } = new("--allow-preprocess-mismatch") { Description = "Accept a --preprocess that contradicts the weights' source" };
    public Option<string> Freeze { get; } = new("--freeze") { Description = "none, or backbone (feature extraction: only the head trains)", DefaultValueFactory = _ => "none" };
    public Option<int?> TrainableBlocks { get; } = new("--trainable-blocks") { Description = "When the backbone trains, only its last K blocks do (VGG block5: 1)" };
    public Option<double?> LayerDecay { get; } = new("--layer-decay") { Description = "Discriminative learning rates: the block k steps below the head trains at lr × decay^k" };
    public Option<string?> LrMult { get; } = new("--lr-mult") { Description = "Learning-rate multipliers per layer group, e.g. stem=0.1,layer4=0.5" };
    public Option<bool> UpdateFrozenBn { get; } = new("--update-frozen-bn") { Description = "Let BatchNorm layers of frozen blocks update their running statistics (default: kept, as Keras)" };
    public Option<int> Epochs { get; } = new("--epochs") { Description = "Passes over the training data", DefaultValueFactory = _ => 10 };
    public Option<int> BatchSize { get; } = new("--batch-size") { Description = "Images per step", DefaultValueFactory = _ => 32 };
    public Option<double> LearningRate { get; } = new("--lr") { Description = "Learning rate", DefaultValueFactory = _ => 1e-3 };
    public Option<string> Optimizer { get; } = new("--optimizer") { Description = "adam, adamw (decoupled weight decay) or sgd (momentum 0.9)", DefaultValueFactory = _ => "adam" };
    public Option<double> WeightDecay { get; } = new("--weight-decay") { Description = "Weight decay: an L2 term in the gradient for adam/sgd, decoupled for adamw", DefaultValueFactory = _ => 0 };
    public Option<string?> LrSchedule { get; } = new("--lr-schedule") { Description = "Learning-rate schedule: " + Training.Schedules.LearningRateSchedules.Help };
    public Option<int?> WarmupEpochs { get; } = new("--warmup-epochs") { Description = "Linear warm-up epochs before the cosine schedule (--lr-schedule cosine; default cosine when given alone)" };
    public Option<int?> EarlyStopping { get; } = new("--early-stopping") { Description = "Stop after PATIENCE epochs without improvement of --monitor, keeping the best epoch's weights" };
    public Option<double> MinDelta { get; } = new("--min-delta") { Description = "Smallest change of --monitor that counts as an improvement for --early-stopping", DefaultValueFactory = _ => 0 };
    public Option<string> Monitor { get; } = new("--monitor") { Description = "val_loss or val_accuracy: picks the best epoch (kept weights, best checkpoint) and drives --early-stopping and the plateau schedule", DefaultValueFactory = _ => "val_loss" };
    public Option<double> LabelSmoothing { get; } = new("--label-smoothing") { Description = "Label smoothing of the training loss, in [0, 1)", DefaultValueFactory = _ => 0 };
    public Option<string?> ClassWeights { get; } = new("--class-weights") { Description = "Loss weights per class: balanced (N / (K·n_class)) or a comma-separated list in class order" };
    public Option<bool> BalancedSampling { get; } = new("--balanced-sampling") { Description = "Draw each epoch's images with replacement so that every class is equally likely" };
    public Option<double?> ClipGradNorm { get; } = new("--clip-grad-norm") { Description = "Clip the gradients' total L2 norm to this value" };
    public Option<DirectoryInfo?> CheckpointDir { get; } = new("--checkpoint-dir") { Description = "Write a checkpoint after every epoch (and on Ctrl+C) to this folder, plus the best epoch's weights" };
    public Option<DirectoryInfo?> Resume { get; } = new("--resume") { Description = "Continue from the newest checkpoint in this folder (repeat the original command's flags); checkpoints keep going there" };
    public Option<int> FreezeEpochs { get; } = new("--freeze-epochs") { Description = "Epochs with the backbone frozen before fine-tuning everything", DefaultValueFactory = _ => 0 };
    public Option<int> Seed { get; } = new("--seed") { Description = "Random seed (same seed, same data, CPU → same model)", DefaultValueFactory = _ => 1 };
    public Option<string> Device { get; } = new("--device") { Description = "cpu, cuda or cuda:N", DefaultValueFactory = _ => "cpu" };
    public Option<bool> Quiet { get; } = new("--quiet", "-q") { Description = "One plain line per epoch, no progress bar (for logs and CI)" };
    public Option<string> Augment { get; } = new("--augment") { Description = "Training augmentation: " + Augmentation.AugmentationSpec.Help, DefaultValueFactory = _ => "none" };

    public IEnumerable<Option> All => [Arch, Weights, InitModel, ImageSize, Preprocess, AllowPreprocessMismatch, Epochs, BatchSize, LearningRate, Optimizer, WeightDecay, FreezeEpochs,
        Freeze, TrainableBlocks, LayerDecay, LrMult, UpdateFrozenBn, Augment, LrSchedule, WarmupEpochs, EarlyStopping, MinDelta, Monitor, LabelSmoothing,
        ClassWeights, BalancedSampling, ClipGradNorm, CheckpointDir, Resume, Seed, Device, Quiet];

    public ImageTransferTrainer.Options ToOptions(ParseResult r)
    {
        var options = BaseOptions(r);
        var monitor = MonitoredMetrics.Parse(r.GetValue(Monitor)!);
        options.KeepBestBy = monitor == MonitoredMetric.ValidationLoss ? BestModelMetric.ValidationLoss : BestModelMetric.ValidationAccuracy;
        var schedule = r.GetValue(LrSchedule);
        if (r.GetValue(WarmupEpochs) is int warmup)
        {
            schedule ??= "cosine";
            if (!schedule.StartsWith("cosine", StringComparison.OrdinalIgnoreCase))
                throw new ArgumentException($"--warmup-epochs applies to the cosine schedule, not '{schedule}'.");
            schedule += (schedule.Contains(':') ? "," : ":") + $"warmup_epochs={warmup}";
        }
        options.LearningRateSchedule = Training.Schedules.LearningRateSchedules.Parse(schedule, monitor);
        if (r.GetValue(EarlyStopping) is int patience)
            options.Callbacks.Add(new EarlyStopping { Monitor = monitor, Patience = patience, MinDelta = r.GetValue(MinDelta), RestoreBestWeights = true });
        options.LabelSmoothing = r.GetValue(LabelSmoothing);
        options.ClassWeights = r.GetValue(ClassWeights) switch
        {
            null or "" => null,
            var w when w.Equals("balanced", StringComparison.OrdinalIgnoreCase) => Training.ClassWeights.Balanced,
            var w => Training.ClassWeights.Of(w.Split(',', StringSplitOptions.TrimEntries).Select(v =>
                double.TryParse(v, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var x) ? x
                    : throw new ArgumentException($"--class-weights expects 'balanced' or numbers separated by commas, got '{v}'.")).ToArray()),
        };
        options.BalancedSampling = r.GetValue(BalancedSampling);
        options.GradientClipNorm = r.GetValue(ClipGradNorm);
        var checkpointDir = r.GetValue(CheckpointDir);
        if (r.GetValue(Resume) is { } resume)
        {
            if (!resume.Exists) throw new DirectoryNotFoundException($"--resume: the checkpoint folder '{resume.FullName}' does not exist.");
            if (checkpointDir is not null && checkpointDir.FullName != resume.FullName)
                throw new ArgumentException("--resume continues writing checkpoints to its own folder; leave out --checkpoint-dir or give the same folder.");
            checkpointDir = resume;
            options.Resume = true;
        }
        options.CheckpointDirectory = checkpointDir?.FullName;
        if (options.InitialModel is { } initial)
        {
            var saved = ImageClassificationWorkflow.ReadDescription(initial);
            // Without --arch: build the saved model's architecture (named or custom).
            if (r.GetValue(Arch) is null) options.CustomArchitecture = saved.Architecture;
            // An explicit --image-size keeps the saved normalisation at another resolution (otherwise the saved preprocessing is used).
            if (options.Preprocessing is null && r.GetResult(ImageSize) is { Implicit: false })
                options.Preprocessing = saved.Preprocessing.AtImageSize(options.ImageSize);
        }
        return options;
    }

    ImageTransferTrainer.Options BaseOptions(ParseResult r) => new()
    {
        Architecture = r.GetValue(Arch),
        Weights = r.GetValue(Weights) is { } weights && File.Exists(weights) ? Path.GetFullPath(weights) : r.GetValue(Weights),
        InitialModel = r.GetValue(InitModel)?.FullName,
        ImageSize = r.GetValue(ImageSize),
        Preprocessing = r.GetValue(Preprocess) is { } preset ? ImagePreprocessing.FromPreset(preset, r.GetValue(ImageSize)) : null,
        AllowPreprocessingMismatch = r.GetValue(AllowPreprocessMismatch),
        Epochs = r.GetValue(Epochs),
        BatchSize = r.GetValue(BatchSize),
        LearningRate = r.GetValue(LearningRate),
        Optimizer = r.GetValue(Optimizer)!.ToLowerInvariant() switch
        {
            "adam" => OptimizerKind.Adam,
            "sgd" => OptimizerKind.Sgd,
            "adamw" => OptimizerKind.AdamW,
            var o => throw new ArgumentException($"Unknown optimizer '{o}': use adam, adamw or sgd."),
        },
        WeightDecay = r.GetValue(WeightDecay),
        FrozenEpochs = r.GetValue(FreezeEpochs),
        FreezeBackbone = r.GetValue(Freeze)!.ToLowerInvariant() switch
        {
            "none" => false,
            "backbone" => true,
            var f => throw new ArgumentException($"Unknown --freeze '{f}': use none or backbone (and --freeze-epochs / --trainable-blocks for schedules)."),
        },
        TrainableBlocks = r.GetValue(TrainableBlocks),
        LayerLearningRateDecay = r.GetValue(LayerDecay),
        LearningRateMultipliers = ParseMultipliers(r.GetValue(LrMult)),
        FreezeBatchNormStatistics = !r.GetValue(UpdateFrozenBn),
        Augmentation = Augmentation.AugmentationPipeline.Parse(r.GetValue(Augment)!) is { IsEmpty: false } augmentation ? augmentation : null,
        Seed = r.GetValue(Seed),
        Device = r.GetValue(Device)!,
    };

    /// <summary>"stem=0.1,layer4=0.5" → group → multiplier.</summary>
    static Dictionary<string, double>? ParseMultipliers(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return null;
        var result = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var kv = part.Split('=', 2, StringSplitOptions.TrimEntries);
            if (kv.Length != 2 || !double.TryParse(kv[1], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var value))
                throw new ArgumentException($"--lr-mult expects GROUP=VALUE pairs separated by commas (e.g. stem=0.1,layer4=0.5), got '{part}'.");
            result[kv[0]] = value;
        }
        return result;
    }
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
