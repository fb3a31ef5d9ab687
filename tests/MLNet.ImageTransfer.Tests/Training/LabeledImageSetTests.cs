using MLNet.ImageTransfer.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.ImageSets;

/// <summary>Images beyond the memory budget live in a temporary file, with the same batches as in memory.</summary>
public class LabeledImageSetTests
{
    static LabeledImageSet Fill(long budget, int count = 30, int seed = 2)
    {
        var set = new LabeledImageSet(budget);
        var generator = new torch.Generator((ulong)seed);
        for (int i = 0; i < count; i++)
            set.Add(torch.randint(0, 256, [3, 8, 8], generator: generator).to_type(ScalarType.Byte), i % 4);
        return set;
    }

    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    [Fact]
    public void Spilled_images_batch_exactly_like_images_in_memory()
    {
        using var memory = Fill(LabeledImageSet.DefaultMemoryBudgetBytes);
        using var partly = Fill(10 * 3 * 8 * 8);  // the first 10 in memory, 20 on disk
        using var disk = Fill(0);
        Assert.Equal((0, 20, 30), (memory.SpilledCount, partly.SpilledCount, disk.SpilledCount));

        int[] rows = [29, 0, 11, 10, 9, 17];
        var (expected, expectedLabels) = memory.Batch(rows);
        foreach (var set in new[] { partly, disk })
        {
            var (images, labels) = set.Batch(rows);
            Assert.Equal(ScalarType.Byte, images.dtype);
            Assert.True(Same(expected, images));
            Assert.True(Same(expectedLabels, labels));
        }
        // Concurrent batches (the augmentation prefetch workers) read the file safely.
        Parallel.For(0, 16, i =>
        {
            using var scope = NewDisposeScope();
            Assert.True(Same(expected, disk.Batch(rows).Images));
        });

        // The validation split moves rows, spilled or not, with their pixels and labels.
        var moved = new[] { 3, 12, 25 };
        var (movedExpected, _) = memory.Batch(moved);
        var (keptExpected, _) = memory.Batch([0, 1, 2, 4, 29]);
        using var extracted = partly.Extract(moved);
        Assert.Equal(3, extracted.Count);
        Assert.Equal(27, partly.Count);
        Assert.True(Same(movedExpected, extracted.Batch([0, 1, 2]).Images));
        Assert.True(Same(keptExpected, partly.Batch([0, 1, 2, 3, 26]).Images));
        Assert.Equal(memory.Labels.Where((_, i) => !moved.Contains(i)), partly.Labels);
        // One budget for both: rows 3 (in memory) and 12, 25 (on disk) left; 9 images stay in memory here, 1 fits there.
        Assert.Equal(3 * 8 * 8, extracted.MemoryBudgetBytes);
        Assert.Equal(2, extracted.SpilledCount);
    }

    [Fact]
    public void The_temporary_file_is_deleted_on_dispose()
    {
        var before = Directory.GetFiles(Path.GetTempPath(), $"mlnet-imagetransfer-images-{Environment.ProcessId}-*").Length;
        var set = Fill(0, count: 5);
        Assert.Equal(before + 1, Directory.GetFiles(Path.GetTempPath(), $"mlnet-imagetransfer-images-{Environment.ProcessId}-*").Length);
        set.Dispose();
        Assert.Equal(before, Directory.GetFiles(Path.GetTempPath(), $"mlnet-imagetransfer-images-{Environment.ProcessId}-*").Length);
    }
}
