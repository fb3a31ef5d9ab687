using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Augmentation;

/// <summary>
/// The training batches of one epoch, in order. Without augmentation: the cached images of each batch, stacked on
/// demand (what the loop always did). With augmentation: background workers augment the next batches while the
/// network trains on the current one (a bounded prefetch queue); batch <c>b</c> of epoch <c>e</c> always gets the
/// draws of <see cref="ImageAugmenter.RandomFor"/>(seed, e, b), whichever worker makes it, so results never depend on
/// thread timing or the worker count. A set of crop sources (<see cref="AugmentationSource"/>) always goes through the
/// workers: its batches are crops, or the evaluation geometry cut from the sources in epochs without augmentation.
/// </summary>
internal sealed class EpochBatches : IDisposable
{
    readonly LabeledImageSet _set;
    readonly int[] _order;
    readonly int _batchSize;
    readonly Prefetcher? _prefetcher;
    int _next;

    EpochBatches(LabeledImageSet set, int[] order, int batchSize, Prefetcher? prefetcher)
    {
        _set = set;
        _order = order;
        _batchSize = batchSize;
        _prefetcher = prefetcher;
    }

    public int Count => (_order.Length + _batchSize - 1) / _batchSize;

    /// <param name="set">Cached training images (at the augmentation's source size).</param>
    /// <param name="order">This epoch's shuffled row order.</param>
    /// <param name="batchSize">Images per batch (the last one may be smaller).</param>
    /// <param name="augmentation">Null or empty: plain batches.</param>
    /// <param name="preprocessing">The model's preprocessing: output size and channel order.</param>
    /// <param name="seed">Augmentation seed (<see cref="AugmentationPipeline.Seed"/> wins over it).</param>
    /// <param name="epoch">1-based epoch: part of every batch's draws.</param>
    public static EpochBatches Create(LabeledImageSet set, int[] order, int batchSize, AugmentationPipeline? augmentation,
        ImagePreprocessing preprocessing, int seed, int epoch)
    {
        ArgumentNullException.ThrowIfNull(set);
        ArgumentNullException.ThrowIfNull(order);
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize));
        bool augments = augmentation is { IsEmpty: false };
        int count = (order.Length + batchSize - 1) / batchSize;
        if (set.HoldsEvaluationGeometry)
        {
            if (!augments) return new EpochBatches(set, order, batchSize, null);
            var augmenter = new ImageAugmenter(augmentation!, preprocessing.ImageSize, preprocessing.Channels);
            int augmentationSeed = augmentation!.Seed ?? seed;
            int workers = Math.Min(count, augmentation.Workers ?? DefaultWorkers);
            var prefetcher = new Prefetcher(count, workers, depth: Math.Max(2, 2 * workers), step =>
            {
                using var scope = NewDisposeScope();
                var (images, labels) = set.Batch(Rows(order, batchSize, step));
                var augmented = augmenter.Apply(images, ImageAugmenter.RandomFor(augmentationSeed, epoch, step));
                return (augmented.MoveToOuterDisposeScope(), labels.MoveToOuterDisposeScope());
            });
            return new EpochBatches(set, order, batchSize, prefetcher);
        }

        // A cache of sources (augmentation crops): every batch is cut from them, augmented or in the evaluation geometry.
        var source = set.Source!;
        var sourceAugmenter = augments ? new ImageAugmenter(augmentation!, preprocessing.ImageSize, preprocessing.Channels) : null;
        int sourceSeed = augmentation?.Seed ?? seed;
        int sourceWorkers = Math.Min(count, augmentation?.Workers ?? DefaultWorkers);
        var sourcePrefetcher = new Prefetcher(count, sourceWorkers, depth: Math.Max(2, 2 * sourceWorkers), step =>
        {
            using var scope = NewDisposeScope();
            var rows = Rows(order, batchSize, step).ToArray();
            var labels = torch.tensor(rows.Select(r => (long)set.Labels[r]).ToArray());
            var images = sourceAugmenter is not null
                ? sourceAugmenter.Apply(SourceImages.FromSet(set, rows), source, ImageAugmenter.RandomFor(sourceSeed, epoch, step))
                : EvaluationBatch(set, rows, source);
            return (images.MoveToOuterDisposeScope(), labels.MoveToOuterDisposeScope());
        });
        return new EpochBatches(set, order, batchSize, sourcePrefetcher);
    }

    /// <summary>Rows of a set of sources in the evaluation geometry: uint8 [N,3,S,S].</summary>
    static Tensor EvaluationBatch(LabeledImageSet set, int[] rows, AugmentationSource source)
    {
        int size = source.Preprocessing.ImageSize, perImage = 3 * size * size;
        var batch = empty([rows.Length, 3, size, size], ScalarType.Byte);
        var output = batch.bytes;
        for (int i = 0; i < rows.Length; i++)
        {
            var (h, w) = set.SizeOf(rows[i]);
            var pixels = System.Buffers.ArrayPool<byte>.Shared.Rent(3 * w * h);
            try
            {
                set.Read(rows[i], pixels);
                source.ToEvaluation(pixels.AsSpan(0, 3 * w * h), w, h, output.Slice(i * perImage, perImage));
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(pixels);
            }
        }
        return batch;
    }

    /// <summary>One worker per two cores, 1–4: augmentation is cheap next to a training step on the CPU.</summary>
    public static int DefaultWorkers => Math.Clamp(Environment.ProcessorCount / 2, 1, 4);

    static ReadOnlySpan<int> Rows(int[] order, int batchSize, int step)
        => order.AsSpan(step * batchSize, Math.Min(batchSize, order.Length - step * batchSize));

    /// <summary>
    /// The next batch: images [N,3,S,S] (uint8 without augmentation, float 0–255 with it) and int64 labels. The tensors
    /// belong to the caller's current dispose scope.
    /// </summary>
    public (Tensor Images, Tensor Labels) Next()
    {
        if (_next >= Count) throw new InvalidOperationException("The epoch has no more batches.");
        int step = _next++;
        if (_prefetcher is null) return _set.Batch(Rows(_order, _batchSize, step));
        var (images, labels) = _prefetcher.Take(step);
        if (torch.CurrentDisposeScope is { } scope)
        {
            scope.Attach(images);
            scope.Attach(labels);
        }
        return (images, labels);
    }

    public void Dispose() => _prefetcher?.Dispose();

    /// <summary>Produces items 0..count−1 on background threads, at most <c>depth</c> ahead of the consumer; consumed in order.</summary>
    sealed class Prefetcher : IDisposable
    {
        readonly Func<int, (Tensor, Tensor)> _produce;
        readonly TaskCompletionSource<(Tensor, Tensor)>[] _slots;
        readonly SemaphoreSlim _permits;
        readonly CancellationTokenSource _stop = new();
        readonly Thread[] _threads;
        readonly bool[] _consumed;
        int _claimed = -1;

        public Prefetcher(int count, int workers, int depth, Func<int, (Tensor, Tensor)> produce)
        {
            _produce = produce;
            _slots = Enumerable.Range(0, count).Select(_ => new TaskCompletionSource<(Tensor, Tensor)>(TaskCreationOptions.RunContinuationsAsynchronously)).ToArray();
            _consumed = new bool[count];
            _permits = new SemaphoreSlim(depth);
            _threads = Enumerable.Range(0, Math.Max(1, workers)).Select(i => new Thread(Work) { IsBackground = true, Name = $"augmentation-{i}" }).ToArray();
            foreach (var thread in _threads) thread.Start();
        }

        void Work()
        {
            while (true)
            {
                try
                {
                    _permits.Wait(_stop.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                int step = Interlocked.Increment(ref _claimed);
                if (step >= _slots.Length || _stop.IsCancellationRequested)
                {
                    _permits.Release();
                    return;
                }
                try
                {
                    var result = _produce(step);
                    if (!_slots[step].TrySetResult(result)) { result.Item1.Dispose(); result.Item2.Dispose(); }
                }
                catch (Exception e)
                {
                    _slots[step].TrySetException(e);
                }
            }
        }

        public (Tensor, Tensor) Take(int step)
        {
            var result = _slots[step].Task.GetAwaiter().GetResult();
            _consumed[step] = true;
            _permits.Release();
            return result;
        }

        public void Dispose()
        {
            _stop.Cancel();
            foreach (var thread in _threads) thread.Join();
            // Batches made but never taken (an exception or cancellation stopped the epoch early).
            for (int step = 0; step < _slots.Length; step++)
            {
                if (!_slots[step].TrySetCanceled() && _slots[step].Task.IsCompletedSuccessfully && !_consumed[step])
                {
                    var (a, b) = _slots[step].Task.Result;
                    a.Dispose();
                    b.Dispose();
                }
            }
            _stop.Dispose();
            _permits.Dispose();
        }
    }
}
