namespace MLNet.ImageTransfer.Data;

/// <summary>
/// A bounded producer/consumer that keeps order: the calling thread produces items (reading a cursor), worker
/// threads transform them, and the calling thread consumes the results in the order the items were produced. At most
/// <c>window</c> items are in flight, so memory stays bounded whatever the number of items; results never depend on
/// the number of workers or their timing.
/// </summary>
internal static class OrderedParallel
{
    /// <summary>Workers for decoding: every core (decoding is CPU-bound and each worker holds one image at a time).</summary>
    public static int DefaultWorkers => Math.Max(1, Environment.ProcessorCount);

    /// <summary>
    /// For each item of <paramref name="items"/> (enumerated on the calling thread), <paramref name="transform"/> runs
    /// on one of <paramref name="workers"/> threads; <paramref name="consume"/> receives the results on the calling
    /// thread in item order. An exception from <paramref name="transform"/> is rethrown at its item's turn; after
    /// any exception the workers stop and the results not consumed are passed to <paramref name="discard"/>.
    /// </summary>
    public static void Run<TItem, TResult>(IEnumerable<TItem> items, Func<TItem, TResult> transform, Action<TItem, TResult> consume,
        int workers, int window, Action<TResult>? discard = null)
    {
        ArgumentNullException.ThrowIfNull(items);
        workers = Math.Max(1, workers);
        window = Math.Max(workers, window);
        var slots = new Slot<TItem, TResult>[window];
        for (int i = 0; i < window; i++) slots[i] = new Slot<TItem, TResult>();
        var queue = new Queue<long>();
        var gate = new object();
        bool finished = false, stopping = false;

        void Work()
        {
            while (true)
            {
                long seq;
                lock (gate)
                {
                    while (queue.Count == 0 && !finished && !stopping) Monitor.Wait(gate);
                    if (stopping || queue.Count == 0) return;
                    seq = queue.Dequeue();
                }
                var slot = slots[seq % window];
                try
                {
                    slot.Result = transform(slot.Item!);
                }
                catch (Exception e)
                {
                    slot.Error = e;
                }
                slot.Done.Set();
            }
        }

        var threads = new Thread[workers];
        for (int i = 0; i < workers; i++)
        {
            threads[i] = new Thread(Work) { IsBackground = true, Name = $"image-decode-{i}" };
            threads[i].Start();
        }
        long produced = 0, consumed = 0;
        void ConsumeNext()
        {
            var slot = slots[consumed % window];
            slot.Done.Wait();
            consumed++;
            var (item, result, error) = (slot.Item!, slot.Result, slot.Error);
            slot.Reset();
            if (error is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
            consume(item, result!);
        }
        try
        {
            foreach (var item in items)
            {
                if (produced - consumed == window) ConsumeNext();
                var slot = slots[produced % window];
                slot.Item = item;
                lock (gate)
                {
                    queue.Enqueue(produced);
                    Monitor.Pulse(gate);
                }
                produced++;
            }
            lock (gate)
            {
                finished = true;
                Monitor.PulseAll(gate);
            }
            while (consumed < produced) ConsumeNext();
        }
        finally
        {
            lock (gate)
            {
                stopping = true;
                Monitor.PulseAll(gate);
            }
            foreach (var thread in threads) thread.Join();
            // Results made but never consumed (an exception ended the run early).
            for (long seq = consumed; seq < produced; seq++)
            {
                var slot = slots[seq % window];
                if (slot.Done.IsSet && slot.Error is null && discard is not null && slot.Result is { } result) discard(result);
            }
            foreach (var slot in slots) slot.Done.Dispose();
        }
    }

    sealed class Slot<TItem, TResult>
    {
        public TItem? Item;
        public TResult? Result;
        public Exception? Error;
        public readonly ManualResetEventSlim Done = new(false);

        public void Reset()
        {
            Item = default;
            Result = default;
            Error = null;
            Done.Reset();
        }
    }
}
