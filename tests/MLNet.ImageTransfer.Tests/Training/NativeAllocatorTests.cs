using MLNet.ImageTransfer.Engine;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.Memory;

public class NativeAllocatorTests
{
    /// <summary>Minor page faults of this process so far (/proc/self/stat field 10).</summary>
    static long MinorFaults()
    {
        var stat = File.ReadAllText("/proc/self/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return long.Parse(fields[7]); // field 10 overall; fields after "(comm)" start at field 3
    }

    [Fact]
    public void Tuned_malloc_reuses_freed_activations_without_faulting_their_pages_again()
    {
        if (!OperatingSystem.IsLinux()) return; // glibc-only setting; CI and the benchmarks run on Debian
        Assert.True(NativeAllocator.TuneForTraining(), "mallopt was not applied on glibc Linux");
        Assert.True(NativeAllocator.IsTuned);
        // A "step": activations of assorted sizes (MiB) allocated, written and freed, as forward/backward do.
        int[] mib = [8, 24, 40, 16, 32, 12, 36, 20];
        void Step()
        {
            var tensors = mib.Select(m => ones(m * 256L * 1024)).ToList();
            foreach (var t in tensors) t.Dispose();
        }
        Step();
        long before = MinorFaults();
        for (int i = 0; i < 5; i++) Step();
        long faults = MinorFaults() - before;
        long pagesPerStep = mib.Sum() * 256L; // 4 KiB pages
        // Untuned, glibc mmaps the blocks above its threshold afresh every step (Debian's PyTorch, same pattern: 69% of
        // the pages faulted again; tuned: 13%, the block that memalign's padding keeps from reusing a freed hole).
        Assert.True(faults < 5 * pagesPerStep / 4, $"{faults} minor page faults in five steps of {pagesPerStep} pages after tuning");
    }
}
