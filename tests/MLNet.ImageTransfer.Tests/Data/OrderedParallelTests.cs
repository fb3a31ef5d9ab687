using MLNet.ImageTransfer.Data;

namespace MLNet.ImageTransfer.Tests.Data;

/// <summary>
/// The order-keeping producer/consumer behind the parallel image reading: results come back in item order whatever
/// the workers' timing, the number of items in flight stays bounded, and a failing item ends the run at its turn with
/// the results already made but not consumed handed to <c>discard</c> (pooled buffers go back).
/// </summary>
public class OrderedParallelTests
{
    /// <summary>Work whose duration varies by item, so that workers finish out of order.</summary>
    static int SlowSquare(int item)
    {
        Thread.Sleep((item * 7919) % 5);
        return item * item;
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(4, 6)]
    [InlineData(8, 3)]
    public void Results_come_back_in_item_order_with_a_bounded_number_in_flight(int workers, int window)
    {
        const int Count = 300;
        int produced = 0, consumed = 0, maxAhead = 0, running = 0, maxRunning = 0;
        var order = new List<(int Item, int Result)>();
        IEnumerable<int> Items()
        {
            for (int i = 0; i < Count; i++)
            {
                maxAhead = Math.Max(maxAhead, ++produced - consumed);
                yield return i;
            }
        }
        OrderedParallel.Run(Items(), item =>
        {
            int now = Interlocked.Increment(ref running);
            InterlockedMax(ref maxRunning, now);
            try { return SlowSquare(item); }
            finally { Interlocked.Decrement(ref running); }
        }, (item, result) =>
        {
            consumed++;
            order.Add((item, result));
        }, workers, window);

        Assert.Equal(Enumerable.Range(0, Count).Select(i => (i, i * i)), order);
        // The window (at least the worker count) bounds what is made and not yet consumed; one more item is held by
        // the producer while it waits for a free slot.
        Assert.InRange(maxAhead, 1, Math.Max(workers, window) + 1);
        Assert.InRange(maxRunning, 1, workers);
    }

    static void InterlockedMax(ref int target, int value)
    {
        int seen;
        while (value > (seen = Volatile.Read(ref target)) && Interlocked.CompareExchange(ref target, value, seen) != seen) { }
    }

    [Fact]
    public void A_failing_item_ends_the_run_at_its_turn_and_unconsumed_results_are_discarded()
    {
        var consumed = new List<int>();
        var discarded = new List<int>();
        var error = Assert.Throws<InvalidDataException>(() => OrderedParallel.Run(Enumerable.Range(0, 200), item =>
            {
                if (item == 50) throw new InvalidDataException("item 50");
                return SlowSquare(item);
            }, (item, _) => consumed.Add(item), workers: 4, window: 12,
            discard: result => { lock (discarded) discarded.Add(result); }));

        Assert.Equal("item 50", error.Message);
        Assert.Equal(Enumerable.Range(0, 50), consumed);
        // Only results of items after the failing one, each at most once, and never one that was consumed.
        Assert.All(discarded, r => Assert.True(r > 50 * 50, $"{r} was discarded"));
        Assert.Equal(discarded.Count, discarded.Distinct().Count());
        Assert.InRange(discarded.Count, 0, 12);
    }

    [Fact]
    public void An_exception_from_the_consumer_stops_the_workers_and_discards_what_they_made()
    {
        int made = 0;
        var discarded = new List<int>();
        Assert.Throws<OperationCanceledException>(() => OrderedParallel.Run(Enumerable.Range(0, 1000), item =>
            {
                Interlocked.Increment(ref made);
                return item;
            }, (item, _) => { if (item == 10) throw new OperationCanceledException(); }, workers: 3, window: 8,
            discard: result => { lock (discarded) discarded.Add(result); }));

        // The run stopped near item 10 (at most a window beyond it was made), and every result made after the
        // consumed ones went to discard: with the made count, nothing is left unaccounted for.
        Assert.InRange(made, 11, 11 + 8 + 1);
        Assert.Equal(made - 11, discarded.Count);
        Assert.All(discarded, r => Assert.InRange(r, 11, 10 + 8 + 1));
    }
}
