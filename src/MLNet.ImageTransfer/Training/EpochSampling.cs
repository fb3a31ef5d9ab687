using MLNet.ImageTransfer.Augmentation;

namespace MLNet.ImageTransfer.Training;

/// <summary>
/// The rows of one epoch, in training order. Derived from (seed, epoch) alone — not from a generator carried across
/// epochs — so that a run resumed at any epoch draws exactly what an uninterrupted run would.
/// </summary>
internal static class EpochSampling
{
    /// <summary>Tag that separates the shuffle's stream from the augmentation's per-batch streams (batch indices ≥ 0).</summary>
    const int ShuffleStream = -1;

    /// <summary>The order of an epoch's rows, drawn from (<paramref name="seed"/>, <paramref name="epoch"/>) alone so that a resumed run draws the same.</summary>
    /// <param name="labels">Class of each training row.</param>
    /// <param name="seed">The run's seed.</param>
    /// <param name="epoch">1-based epoch.</param>
    /// <param name="balanced">
    /// Balanced sampling (PyTorch's <c>WeightedRandomSampler</c> with weights 1/n_class, replacement): N draws in
    /// which each class is equally likely; rare images repeat, frequent ones are skipped. Otherwise a permutation.
    /// </param>
    public static int[] Order(IReadOnlyList<int> labels, int seed, int epoch, bool balanced)
    {
        var random = ImageAugmenter.RandomFor(seed, epoch, ShuffleStream);
        int n = labels.Count;
        if (!balanced)
        {
            var order = Enumerable.Range(0, n).ToArray();
            random.Shuffle(order);
            return order;
        }
        var counts = new Dictionary<int, int>();
        foreach (var l in labels) counts[l] = counts.GetValueOrDefault(l) + 1;
        var cumulative = new double[n];
        double total = 0;
        for (int i = 0; i < n; i++) cumulative[i] = total += 1.0 / counts[labels[i]];
        var drawn = new int[n];
        for (int i = 0; i < n; i++)
        {
            int index = Array.BinarySearch(cumulative, random.NextDouble() * total);
            drawn[i] = Math.Min(index < 0 ? ~index : index, n - 1);
        }
        return drawn;
    }
}
