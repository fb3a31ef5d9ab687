using System.Text.Json.Serialization;

namespace MLNet.ImageTransfer.Training.Checkpoints;

/// <summary>One file of a checkpoint, as its manifest records it.</summary>
public sealed record CheckpointFile(long Bytes, string Sha256);

/// <summary>
/// The manifest of a checkpoint folder (<c>checkpoint.json</c>, written last): where the run stood, what it had seen,
/// and the size and SHA-256 of every other file. A folder whose manifest is missing, unreadable or disagrees with a file
/// is not a checkpoint (<see cref="CheckpointDirectory"/> skips it and takes the previous one).
/// </summary>
public sealed record TrainingCheckpoint
{
    public const int CurrentFormatVersion = 1;
    public const string ManifestFileName = "checkpoint.json";
    public const string ModelFileName = "model.safetensors";
    public const string OptimizerFileName = "optimizer.bin";

    public int FormatVersion { get; init; } = CurrentFormatVersion;

    /// <summary><c>last</c>: everything needed to resume; <c>best</c>: the model weights of the best epoch so far.</summary>
    public required string Kind { get; init; }

    /// <summary>Epochs fully done.</summary>
    public required int EpochsCompleted { get; init; }

    /// <summary>Steps done of the next epoch (non-zero only for a checkpoint written on interruption).</summary>
    public int StepsIntoEpoch { get; init; }

    /// <summary>Running sums of the interrupted epoch (sum of per-image losses, correct predictions), so its numbers come out the same.</summary>
    public double PartialLossSum { get; init; }
    public long PartialCorrect { get; init; }

    /// <summary>The run's seed, batch size, training-set size and class count: a resumed run must match them.</summary>
    public required int Seed { get; init; }
    public required int BatchSize { get; init; }
    public required int TrainingImages { get; init; }
    public required int Classes { get; init; }

    /// <summary>Optimizer type, and the first epoch of the fine-tuning phase its state belongs to (it restarts at each phase).</summary>
    public string? Optimizer { get; init; }
    public int OptimizerPhaseFromEpoch { get; init; }

    /// <summary>The epochs so far.</summary>
    public required IReadOnlyList<EpochSummary> History { get; init; }

    /// <summary>The epoch whose weights the run keeps so far (its <c>best</c> checkpoint holds them; 0: none).</summary>
    public int KeptEpoch { get; init; }

    /// <summary>TorchSharp's global generator state (dropout draws), base64.</summary>
    public string? TorchRngState { get; init; }

    public DateTimeOffset CreatedUtc { get; init; } = DateTimeOffset.UtcNow;

    /// <summary>Every other file of the folder.</summary>
    public required IReadOnlyDictionary<string, CheckpointFile> Files { get; init; }

    /// <summary>The folder it was read from (not saved).</summary>
    [JsonIgnore] public string? Directory { get; init; }

    /// <summary>Path of <see cref="ModelFileName"/> in <see cref="Directory"/>: loadable as pretrained weights.</summary>
    [JsonIgnore] public string? ModelPath => Directory is null ? null : Path.Combine(Directory, ModelFileName);

    /// <summary>Folder name: <c>epoch-0003</c> after epoch 3, <c>epoch-0004-step-00005</c> for 5 steps into epoch 4, <c>best-epoch-0002</c>.</summary>
    public static string FolderName(string kind, int epochsCompleted, int stepsIntoEpoch)
        => kind == CheckpointDirectory.BestKind ? $"best-epoch-{epochsCompleted:D4}"
            : stepsIntoEpoch == 0 ? $"epoch-{epochsCompleted:D4}" : $"epoch-{epochsCompleted + 1:D4}-step-{stepsIntoEpoch:D5}";

    /// <summary>Order of "where the run stood" (later is larger).</summary>
    [JsonIgnore] public (int, int) Position => (EpochsCompleted, StepsIntoEpoch);

    public override string ToString() => StepsIntoEpoch == 0
        ? $"{Kind} checkpoint after epoch {EpochsCompleted}"
        : $"{Kind} checkpoint {StepsIntoEpoch} steps into epoch {EpochsCompleted + 1}";
}
