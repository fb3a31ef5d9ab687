using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Training;

/// <summary>
/// How a batch of images becomes logits in training and validation, with a cache of what frozen stages compute
/// (Keras' "extract features once, train the classifier on them", generalised to partial fine-tuning): when the first
/// stages of the backbone (<see cref="ImageClassifierModel.ForwardStages"/>) are frozen and deterministic in a phase,
/// their output is computed once per image and later epochs run only the stages after them and the head.
/// </summary>
/// <remarks>
/// <para>Each phase of the <see cref="FineTuningSchedule"/> has a boundary: the number of leading backbone stages it
/// keeps frozen (all of them in a head-only phase; all but the last K with <see cref="TrainingOptions.TrainableBlocks"/>;
/// none when the whole backbone trains). A phase uses the cache when <see cref="TrainingOptions.CacheBackboneFeatures"/>
/// is on, its boundary is above 0, the frozen stages compute the same output in every batch — their BatchNorm and
/// dropout in eval mode, which the loop arranges with <see cref="TrainingOptions.FreezeBatchNormStatistics"/> (checked
/// on the modules themselves) — and its training images are not augmented (each epoch would see other pixels; the
/// validation set never is). The result is then the same as without the cache, up to floating-point noise.</para>
/// <para>While a phase computes its frozen stages it also keeps the output at the boundaries of later phases that lie
/// below its own and whose stages stay frozen until then, so a run that trains the head first and then fine-tunes
/// the last stage reads the images once: the first epoch stores both the last stage's input and the backbone's output.
/// A store is freed when no later phase needs it.</para>
/// <para>Values are float32 on the CPU (moved to the training device per batch); once
/// <see cref="TrainingOptions.FeatureCacheMemoryLimit"/> bytes are held (all stores of a set together), further rows
/// go to a temporary file, deleted when training ends.</para>
/// </remarks>
internal sealed class FeatureCache : IDisposable
{
    readonly int _count;
    readonly IReadOnlyList<FineTuningPhase> _phases;
    // Per phase: the leading backbone stages it keeps frozen, and the boundary whose output it reads from the cache
    // (its frozen prefix when it can use the cache, else 0).
    readonly int[] _frozenPrefixes;
    readonly int[] _boundaries;
    readonly Dictionary<int, RowStore> _stores = new();
    readonly MemoryBudget _budget;
    bool? _deterministicFor;
    int _checkedBoundary = -1;

    FeatureCache(int count, IReadOnlyList<FineTuningPhase> phases, int[] frozenPrefixes, int[] boundaries, long memoryLimit)
    {
        _count = count;
        _phases = phases;
        _frozenPrefixes = frozenPrefixes;
        _boundaries = boundaries;
        _budget = new MemoryBudget(memoryLimit);
    }

    /// <summary>The cache for the training set of a run (a pass-through when no phase can use one).</summary>
    public static FeatureCache ForTraining(FineTuningSchedule schedule, TrainingOptions options, LabeledImageSet set, int stageCount)
        => Create(schedule, options, set, stageCount, options.AugmentsPhase);

    /// <summary>The cache for the validation set of a run (never augmented).</summary>
    public static FeatureCache ForValidation(FineTuningSchedule schedule, TrainingOptions options, LabeledImageSet set, int stageCount)
        => Create(schedule, options, set, stageCount, _ => false);

    /// <summary>A pass-through: every batch runs the whole network.</summary>
    public static FeatureCache None(int count) => new(count, [], [], [], memoryLimit: 0);

    static FeatureCache Create(FineTuningSchedule schedule, TrainingOptions options, LabeledImageSet set, int stageCount, Func<FineTuningPhase, bool> augmented)
    {
        var backbone = schedule.LayerGroups.Take(stageCount).ToList();
        int FrozenPrefix(FineTuningPhase phase)
        {
            int frozen = 0;
            while (frozen < backbone.Count && !phase.TrainableGroups.Contains(backbone[frozen])) frozen++;
            return frozen;
        }
        var prefixes = schedule.Phases.Select(FrozenPrefix).ToArray();
        // Frozen BatchNorm statistics: with them updating, a frozen stage's output changes from epoch to epoch.
        bool cacheable = options.CacheBackboneFeatures && options.FreezeBatchNormStatistics;
        var boundaries = schedule.Phases.Select((p, i) => cacheable && !augmented(p) ? prefixes[i] : 0).ToArray();
        return new FeatureCache(set.Count, schedule.Phases, prefixes, boundaries, options.FeatureCacheMemoryLimit);
    }

    /// <summary>Batches that ran the images through the backbone's first stage so far.</summary>
    public int BackboneBatches { get; private set; }

    /// <summary>False once every row is cached at the phase's boundary: the images are not needed in that phase any more.</summary>
    public bool NeedsImages(FineTuningPhase? phase)
    {
        int b = BoundaryOf(phase);
        return b == 0 || _deterministicFor == false || !_stores.TryGetValue(b, out var store) || !store.Complete;
    }

    /// <summary>
    /// The logits and labels of the rows <paramref name="rows"/> (indices into the set) in <paramref name="phase"/>
    /// (null: no cache). <paramref name="nextBatch"/> gives the batch's images (uint8 or float 0–255) and labels; it is
    /// called only when the images must run through the network. The tensors belong to the caller's dispose scope.
    /// </summary>
    public (Tensor Logits, Tensor Labels) Forward(ImageClassifierModel model, FineTuningPhase? phase, ReadOnlySpan<int> rows,
        Func<(Tensor Images, Tensor Labels)> nextBatch, IReadOnlyList<int> labels, ImagePreprocessing preprocessing, Device device)
    {
        int boundary = BoundaryOf(phase);
        if (boundary > 0 && _checkedBoundary != boundary)
        {
            _deterministicFor = FrozenStagesAreDeterministic(model, boundary);
            _checkedBoundary = boundary;
        }
        if (boundary == 0 || _deterministicFor == false)
        {
            var (images, y) = nextBatch();
            BackboneBatches++;
            return (model.call(ImageTensors.Normalize(images, preprocessing, device)), y.to(device));
        }

        int stages = model.StageCount;
        var store = Store(boundary);
        if (store.Has(rows))
        {
            var rowLabels = new long[rows.Length];
            for (int i = 0; i < rows.Length; i++) rowLabels[i] = labels[rows[i]];
            var cached = store.Load(rows).to(device);
            return (Head(model, cached, boundary, stages), tensor(rowLabels).to(device));
        }

        var (batch, batchLabels) = nextBatch();
        BackboneBatches++;
        Tensor atBoundary;
        using (no_grad())
        {
            // Frozen stages, in runs between the boundaries that are kept: this phase's and later phases' below it.
            var x = ImageTensors.Normalize(batch, preprocessing, device);
            int done = 0;
            foreach (int keep in KeptBoundaries(phase!, boundary))
            {
                x = model.ForwardStages(x, done, keep);
                done = keep;
                Store(keep).Add(rows, x);
            }
            atBoundary = x;
        }
        return (Head(model, atBoundary, boundary, stages), batchLabels.to(device));
    }

    /// <summary>The trainable stages after the boundary, then the head (the caller's autograd mode applies).</summary>
    static Tensor Head(ImageClassifierModel model, Tensor atBoundary, int boundary, int stages)
        => model.ForwardHead(boundary == stages ? atBoundary : model.ForwardStages(atBoundary, boundary, stages));

    int BoundaryOf(FineTuningPhase? phase)
    {
        if (phase is null) return 0;
        int index = IndexOf(phase);
        return index < 0 ? 0 : _boundaries[index];
    }

    int IndexOf(FineTuningPhase phase)
    {
        for (int i = 0; i < _phases.Count; i++)
            if (ReferenceEquals(_phases[i], phase) || _phases[i] == phase) return i;
        return -1;
    }

    /// <summary>
    /// Boundaries whose output to keep while <paramref name="phase"/> runs its frozen stages, ascending and ending with
    /// its own: those of later phases that lie below it, provided no phase in between trains a stage below them.
    /// </summary>
    IEnumerable<int> KeptBoundaries(FineTuningPhase phase, int boundary)
    {
        int index = IndexOf(phase);
        var kept = new SortedSet<int> { boundary };
        int frozenSince = _frozenPrefixes[index];
        for (int later = index + 1; later < _phases.Count; later++)
        {
            int b = _boundaries[later];
            if (b > 0 && b <= frozenSince) kept.Add(b);
            frozenSince = Math.Min(frozenSince, _frozenPrefixes[later]);
        }
        return kept;
    }

    RowStore Store(int boundary)
    {
        if (!_stores.TryGetValue(boundary, out var store)) _stores[boundary] = store = new RowStore(_count, _budget);
        return store;
    }

    /// <summary>Frees the stores no phase after <paramref name="finished"/> reads.</summary>
    public void PhaseFinished(FineTuningPhase finished)
    {
        int index = IndexOf(finished);
        var needed = _boundaries.Skip(index + 1).Where(b => b > 0).ToHashSet();
        foreach (var boundary in _stores.Keys.Where(b => !needed.Contains(b)).ToList())
        {
            _stores[boundary].Dispose();
            _stores.Remove(boundary);
        }
    }

    /// <summary>BatchNorm, dropout and our own blocks (which may branch on training) of the frozen stages must be in eval mode.</summary>
    static bool FrozenStagesAreDeterministic(ImageClassifierModel model, int boundary)
    {
        foreach (var group in model.LayerGroups.Where(g => !g.IsHead).Take(boundary))
            foreach (var root in group.Modules)
                foreach (var module in root.modules().Prepend(root))
                {
                    if (!module.training) continue;
                    string type = module.GetType().Name;
                    if (type.StartsWith("BatchNorm", StringComparison.Ordinal) || type.Contains("Dropout", StringComparison.Ordinal) || module is TorchvisionModule)
                        return false;
                }
        return true;
    }

    public void Dispose()
    {
        foreach (var store in _stores.Values) store.Dispose();
        _stores.Clear();
        _budget.Dispose();
    }

    /// <summary>Bytes held in memory by all stores of one set, and the temporary file they spill to beyond the limit.</summary>
    sealed class MemoryBudget(long limit) : IDisposable
    {
        FileStream? _spill;
        public long Used { get; set; }
        public long Limit { get; } = limit;

        public FileStream Spill => _spill ??= new FileStream(
            Path.Combine(Path.GetTempPath(), $"mlnet-imagetransfer-features-{Guid.NewGuid():N}.bin"),
            FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 16, FileOptions.DeleteOnClose);

        public void Dispose() => _spill?.Dispose();
    }

    /// <summary>One boundary's values for every row of the set: in memory within the budget, else in the spill file.</summary>
    sealed class RowStore(int count, MemoryBudget budget) : IDisposable
    {
        readonly Tensor?[] _rows = new Tensor?[count];
        readonly long[] _fileOffsets = Enumerable.Repeat(-1L, count).ToArray();
        long[]? _rowShape;
        long _memoryBytes;
        int _stored;

        public bool Complete => _stored == _rows.Length;

        public bool Has(ReadOnlySpan<int> rows)
        {
            foreach (int r in rows)
                if (_rows[r] is null && _fileOffsets[r] < 0) return false;
            return true;
        }

        public void Add(ReadOnlySpan<int> rows, Tensor values)
        {
            using var scope = NewDisposeScope();
            var cpu = values.detach().to(ScalarType.Float32, CPU);
            _rowShape ??= cpu.shape[1..];
            long rowBytes = 4 * _rowShape.Aggregate(1L, (a, d) => a * d);
            for (int i = 0; i < rows.Length; i++)
            {
                int r = rows[i];
                if (_rows[r] is not null || _fileOffsets[r] >= 0) continue;
                var row = cpu[i];
                if (budget.Used + rowBytes <= budget.Limit)
                {
                    _rows[r] = row.clone().DetachFromDisposeScope();
                    budget.Used += rowBytes;
                    _memoryBytes += rowBytes;
                }
                else
                {
                    var spill = budget.Spill;
                    _fileOffsets[r] = spill.Length;
                    spill.Seek(0, SeekOrigin.End);
                    spill.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(row.contiguous().data<float>().ToArray().AsSpan()));
                    spill.Flush();
                }
                _stored++;
            }
        }

        public Tensor Load(ReadOnlySpan<int> rows)
        {
            var parts = new Tensor[rows.Length];
            for (int i = 0; i < rows.Length; i++)
            {
                int r = rows[i];
                if (_rows[r] is { } inMemory) { parts[i] = inMemory; continue; }
                var values = new float[_rowShape!.Aggregate(1L, (a, d) => a * d)];
                RandomAccess.Read(budget.Spill.SafeFileHandle, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()), _fileOffsets[r]);
                parts[i] = tensor(values, _rowShape);
            }
            return stack(parts);
        }

        public void Dispose()
        {
            foreach (var t in _rows) t?.Dispose();
            Array.Clear(_rows);
            budget.Used -= _memoryBytes;
            _memoryBytes = 0;
        }
    }
}
