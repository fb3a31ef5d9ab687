using Microsoft.Win32.SafeHandles;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Training;

/// <summary>
/// How a batch of images becomes logits in training and validation, with a bottleneck cache (Keras' "extract features
/// once, train the classifier on them"): when the backbone is frozen for the whole run and deterministic, its output
/// (<see cref="ImageClassifierModel.ForwardFeatures"/>) is computed once per image, in the first epoch, and later
/// epochs run only the head (<see cref="ImageClassifierModel.ForwardHead"/>, dropout included) on the cached features.
/// Otherwise every batch runs the whole network, as without a cache.
/// </summary>
/// <remarks>
/// <para>The cache is used when <see cref="TrainingOptions.CacheBackboneFeatures"/> is on, every epoch trains the head
/// only (<see cref="TrainingOptions.FreezeBackbone"/>, or <see cref="TrainingOptions.TrainableBlocks"/> = 0), there is
/// no augmentation (each epoch would see other pixels), and the backbone computes the same features in every batch:
/// its BatchNorm and dropout layers in eval mode, which is what the frozen loop does with
/// <see cref="TrainingOptions.FreezeBatchNormStatistics"/> (checked on the modules themselves at the first batch).
/// The head then sees exactly the features the full forward pass would give it, so training is the same, up to
/// floating-point noise.</para>
/// <para>Features are float32 on the CPU (moved to the training device per batch); once
/// <see cref="TrainingOptions.FeatureCacheMemoryLimit"/> bytes are held, further rows go to a temporary file, deleted
/// when training ends.</para>
/// </remarks>
internal sealed class FeatureCache : IDisposable
{
    readonly bool _enabled;
    readonly long _memoryLimit;
    readonly Tensor?[] _rows;
    readonly long[] _fileOffsets;
    long _memoryBytes;
    int _stored;
    bool? _deterministic;
    FileStream? _spill;
    long[]? _rowShape;

    FeatureCache(int count, bool enabled, long memoryLimit)
    {
        _enabled = enabled;
        _memoryLimit = memoryLimit;
        _rows = new Tensor?[count];
        _fileOffsets = new long[count];
        Array.Fill(_fileOffsets, -1L);
    }

    /// <summary>The cache for the training set of a run (a pass-through when the run cannot use one).</summary>
    public static FeatureCache ForTraining(FineTuningSchedule schedule, TrainingOptions options, LabeledImageSet set)
        => new(set.Count, Applies(schedule, options, augmented: options.Augmentation is { IsEmpty: false }), options.FeatureCacheMemoryLimit);

    /// <summary>The cache for the validation set of a run (never augmented).</summary>
    public static FeatureCache ForValidation(FineTuningSchedule schedule, TrainingOptions options, LabeledImageSet set)
        => new(set.Count, Applies(schedule, options, augmented: false), options.FeatureCacheMemoryLimit);

    /// <summary>A pass-through: every batch runs the whole network.</summary>
    public static FeatureCache None(int count) => new(count, enabled: false, memoryLimit: 0);

    // Frozen BatchNorm statistics: with them updating, a frozen backbone's features change from epoch to epoch.
    static bool Applies(FineTuningSchedule schedule, TrainingOptions options, bool augmented)
        => options.CacheBackboneFeatures && options.FreezeBatchNormStatistics && schedule.Phases.All(p => p.HeadOnly) && !augmented;

    /// <summary>False once every row's features are cached: the images are not needed any more.</summary>
    public bool NeedsImages => !_enabled || _deterministic == false || _stored < _rows.Length;

    /// <summary>Batches that ran the backbone so far (all batches when the cache is not in use).</summary>
    public int BackboneBatches { get; private set; }

    /// <summary>
    /// The logits and labels of the rows <paramref name="rows"/> (indices into the set). <paramref name="nextBatch"/>
    /// gives the batch's images (uint8 or float 0–255) and labels; it is called only when the backbone must run.
    /// The tensors belong to the caller's dispose scope.
    /// </summary>
    public (Tensor Logits, Tensor Labels) Forward(ImageClassifierModel model, ReadOnlySpan<int> rows, Func<(Tensor Images, Tensor Labels)> nextBatch,
        IReadOnlyList<int> labels, ImagePreprocessing preprocessing, Device device)
    {
        if (_enabled && _deterministic is null) _deterministic = BackboneIsDeterministic(model);
        if (!_enabled || _deterministic == false)
        {
            var (images, y) = nextBatch();
            BackboneBatches++;
            return (model.call(ImageTensors.Normalize(images, preprocessing, device)), y.to(device));
        }

        if (AllCached(rows))
        {
            var rowLabels = new long[rows.Length];
            for (int i = 0; i < rows.Length; i++) rowLabels[i] = labels[rows[i]];
            return (model.ForwardHead(Load(rows).to(device)), tensor(rowLabels).to(device));
        }

        var (batch, batchLabels) = nextBatch();
        BackboneBatches++;
        Tensor features;
        using (no_grad()) features = model.ForwardFeatures(ImageTensors.Normalize(batch, preprocessing, device));
        Store(rows, features);
        return (model.ForwardHead(features), batchLabels.to(device));
    }

    bool AllCached(ReadOnlySpan<int> rows)
    {
        foreach (int r in rows)
            if (_rows[r] is null && _fileOffsets[r] < 0) return false;
        return true;
    }

    /// <summary>BatchNorm, dropout and our own blocks (which may branch on training) outside the head must be in eval mode.</summary>
    static bool BackboneIsDeterministic(ImageClassifierModel model)
    {
        string head = model.ClassifierName;
        foreach (var (name, module) in model.named_modules())
        {
            if (name.Length == 0 || name == head || name.StartsWith(head + ".", StringComparison.Ordinal) || !module.training) continue;
            string type = module.GetType().Name;
            if (type.StartsWith("BatchNorm", StringComparison.Ordinal) || type.Contains("Dropout", StringComparison.Ordinal) || module is TorchvisionModule)
                return false;
        }
        return true;
    }

    void Store(ReadOnlySpan<int> rows, Tensor features)
    {
        using var scope = NewDisposeScope();
        var cpu = features.detach().to(ScalarType.Float32, CPU);
        _rowShape ??= cpu.shape[1..];
        long rowBytes = 4 * _rowShape.Aggregate(1L, (a, d) => a * d);
        for (int i = 0; i < rows.Length; i++)
        {
            int r = rows[i];
            if (_rows[r] is not null || _fileOffsets[r] >= 0) continue;
            var row = cpu[i];
            if (_memoryBytes + rowBytes <= _memoryLimit)
            {
                _rows[r] = row.clone().DetachFromDisposeScope();
                _memoryBytes += rowBytes;
            }
            else
            {
                _spill ??= new FileStream(Path.Combine(Path.GetTempPath(), $"mlnet-imagetransfer-features-{Guid.NewGuid():N}.bin"),
                    FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 16, FileOptions.DeleteOnClose);
                _fileOffsets[r] = _spill.Length;
                _spill.Seek(0, SeekOrigin.End);
                _spill.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(row.contiguous().data<float>().ToArray().AsSpan()));
                _spill.Flush();
            }
            _stored++;
        }
    }

    Tensor Load(ReadOnlySpan<int> rows)
    {
        var parts = new Tensor[rows.Length];
        for (int i = 0; i < rows.Length; i++)
        {
            int r = rows[i];
            if (_rows[r] is { } inMemory) { parts[i] = inMemory; continue; }
            var values = new float[_rowShape!.Aggregate(1L, (a, d) => a * d)];
            RandomAccess.Read(_spill!.SafeFileHandle, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()), _fileOffsets[r]);
            parts[i] = tensor(values, _rowShape);
        }
        return stack(parts);
    }

    public void Dispose()
    {
        foreach (var t in _rows) t?.Dispose();
        Array.Clear(_rows);
        _spill?.Dispose();
    }
}
