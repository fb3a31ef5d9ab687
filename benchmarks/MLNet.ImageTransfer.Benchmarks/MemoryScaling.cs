using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Microsoft.ML;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using TorchSharp;

namespace MLNet.ImageTransfer.Benchmarks;

/// <summary>
/// <c>rss</c>: does training memory stay flat as the dataset grows? Trains a tiny ResNet through
/// <see cref="ImageClassificationWorkflow.TrainFromFolder"/> on synthetic folders of each size, each in a fresh child
/// process (<c>rss-child</c>), and reads the child's peak resident set (<c>VmHWM</c> from <c>/proc/self/status</c>).
/// Twice: first with the same training length for every size (smaller sets train for more epochs, so only the
/// dataset's size differs), then one epoch each for reference (run length then grows with the data, and with it the
/// runtime's warm-up costs). Target: the largest size's peak within 10% of the smallest's.
/// <code>
/// dotnet run -c Release --project benchmarks/MLNet.ImageTransfer.Benchmarks -- rss [--sizes 2000,20000] [--image-size 32] [--epochs 1] [--threads 2] [--dir DIR] [--trace]
/// </code>
/// </summary>
internal static class MemoryScaling
{
    /// <summary>
    /// One child's numbers: RSS peak and end (KiB), the anonymous and file-backed parts at the end, the managed heap
    /// (GC's view) and the live managed bytes after a full collection; where the anonymous part went (memory the GC
    /// has committed, glibc malloc's arena and what is in use in it); managed bytes allocated and collections per
    /// generation; and, with <c>--trace</c>, the same sampled every half second.
    /// </summary>
    sealed record ChildResult(int Images, int Epochs, long PeakRssKb, long FinalRssKb, long RssAnonKb, long RssFileKb, long ManagedHeapKb, long LiveManagedKb, double Seconds, int Skipped,
        long GcCommittedKb, long MallocArenaKb, long MallocInUseKb, long AllocatedKb, int Gen0, int Gen1, int Gen2, string Trace);

    public static int Run(IReadOnlyList<string> args)
    {
        var sizes = Arg(args, "--sizes", "2000,20000").Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        int imageSize = int.Parse(Arg(args, "--image-size", "32"), CultureInfo.InvariantCulture);
        int epochs = int.Parse(Arg(args, "--epochs", "1"), CultureInfo.InvariantCulture);
        string threads = Arg(args, "--threads", "2");
        var root = Arg(args, "--dir", Path.Combine(Path.GetTempPath(), "mlnet-imagetransfer-rss"));
        bool trace = args.Contains("--trace");
        var folders = sizes.Select(size => SyntheticFolder(root, size, imageSize)).ToArray();
        ChildResult Train(int i, int epochsOfThisSize) => RunChild(["rss-child", "--data", folders[i], "--image-size", imageSize.ToString(CultureInfo.InvariantCulture),
            "--epochs", epochsOfThisSize.ToString(CultureInfo.InvariantCulture), "--threads", threads]);

        // The comparison the target is about: the same amount of training (the same number of steps) over datasets of
        // different sizes, so that only the dataset's size differs. A process's fixed costs arrive with run length, not
        // with data: tiered JIT and its PGO tables, the GC's first gen0 budget (2,000 images for one epoch finish in a
        // second and never collect). One epoch each, below, mixes them in; it is printed for reference.
        int largest = sizes.Max();
        Console.WriteLine($"Same training length: every size trains on {epochs * largest:N0} images (smaller sets for more epochs).");
        var sameLength = sizes.Select((size, i) => Print(Train(i, epochs * (int)Math.Ceiling((double)largest / size)), trace)).ToList();
        Verdict(sameLength);
        Console.WriteLine();
        Console.WriteLine($"For reference, {epochs} epoch(s) each (run length grows with the data):");
        Verdict(sizes.Select((_, i) => Print(Train(i, epochs), trace)).ToList());
        return 0; // a measurement, not a test: the verdicts are printed
    }

    static string SyntheticFolder(string root, int size, int imageSize)
    {
        var dir = Path.Combine(root, $"shapes-{size}-{imageSize}");
        if (!Directory.Exists(dir))
        {
            Console.Error.WriteLine($"Generating {size} images of {imageSize}² in {dir} …");
            var temp = dir + ".partial";
            if (Directory.Exists(temp)) Directory.Delete(temp, true);
            SyntheticShapes.Generate(temp, imagesPerClass: size / SyntheticShapes.Classes.Length, size: imageSize, seed: 1);
            Directory.Move(temp, dir);
        }
        return dir;
    }

    static ChildResult Print(ChildResult result, bool trace)
    {
        if (trace) Console.Write(result.Trace);
        Console.WriteLine($"{result.Images,7} images × {result.Epochs,2} epoch(s): peak RSS {result.PeakRssKb / 1024.0,6:F1} MiB, final RSS {result.FinalRssKb / 1024.0,6:F1} MiB " +
            $"(anonymous {result.RssAnonKb / 1024.0:F1}, file-backed {result.RssFileKb / 1024.0:F1}; managed heap {result.ManagedHeapKb / 1024.0:F1}, live managed {result.LiveManagedKb / 1024.0:F1}), {result.Seconds,6:F1} s");
        // The GC reports its committed memory as of its last collection: none yet means none reported.
        var committed = result.Gen0 == 0 ? "none reported (no collection ran)" : $"{result.GcCommittedKb / 1024.0:F1} MiB";
        Console.WriteLine($"{"",15}GC committed {committed}, malloc arena {result.MallocArenaKb / 1024.0:F1} MiB ({result.MallocInUseKb / 1024.0:F1} in use); " +
            $"{result.AllocatedKb / 1024.0:F0} MiB allocated, collections gen0/1/2 {result.Gen0}/{result.Gen1}/{result.Gen2}");
        return result;
    }

    /// <summary>Prints the largest size's peak against the smallest's (target: within ±10%) and the growth per extra image.</summary>
    static void Verdict(IReadOnlyList<ChildResult> results)
    {
        var (first, last) = (results[0], results[^1]);
        double growth = (double)last.PeakRssKb / first.PeakRssKb - 1;
        double perImage = (last.PeakRssKb - first.PeakRssKb) * 1024.0 / Math.Max(1, last.Images - first.Images);
        bool ok = Math.Abs(growth) <= 0.10;
        Console.WriteLine($"Peak RSS of {last.Images} images vs {first.Images}: {growth:+0.0%;-0.0%} ({perImage:F0} bytes per extra image; target: within ±10%) → {(ok ? "OK" : "OVER")}");
    }

    /// <summary>The child: trains once on <c>--data</c> and prints one JSON line with its peak and final RSS.</summary>
    public static int Child(IReadOnlyList<string> args)
    {
        var data = Arg(args, "--data", "");
        int imageSize = int.Parse(Arg(args, "--image-size", "32"), CultureInfo.InvariantCulture);
        torch.set_num_threads(int.Parse(Arg(args, "--threads", "2"), CultureInfo.InvariantCulture));
        var options = new ImageTransferTrainer.Options
        {
            CustomArchitecture = new ResNetConfig(ResNetBlock.Basic, [1, 1, 1, 1], BaseWidth: 4),
            Preprocessing = ImagePreprocessing.TorchVision(imageSize) with { Resize = ResizeMode.Stretch },
            Epochs = int.Parse(Arg(args, "--epochs", "1"), CultureInfo.InvariantCulture),
            BatchSize = 32,
            Seed = 1,
        };
        var watch = Stopwatch.StartNew();
        var trace = new System.Text.StringBuilder();
        using var stopSampling = new CancellationTokenSource();
        var sampler = new Thread(() =>
        {
            while (!stopSampling.IsCancellationRequested)
            {
                var sample = File.ReadAllLines("/proc/self/status");
                var (arena, inUse) = Malloc();
                trace.Append(CultureInfo.InvariantCulture, $"{watch.Elapsed.TotalSeconds,6:F1} s  RSS {Field(sample, "VmRSS") >> 10} MiB (anonymous {Field(sample, "RssAnon") >> 10})  " +
                    $"GC committed {GC.GetGCMemoryInfo().TotalCommittedBytes >> 20}  malloc {arena >> 20} ({inUse >> 20} in use)  allocated {GC.GetTotalAllocatedBytes() >> 20}  collections {GC.CollectionCount(0)}/{GC.CollectionCount(1)}/{GC.CollectionCount(2)}  {Generations()}\n");
                Thread.Sleep(500);
            }
        }) { IsBackground = true, Name = "rss-sampler" };
        sampler.Start();
        var trained = ImageClassificationWorkflow.TrainFromFolder(new MLContext(seed: 1), data, options, validationSplit: 0.1, splitSeed: 1);
        var seconds = watch.Elapsed.TotalSeconds;
        stopSampling.Cancel();
        sampler.Join();
        long committed = GC.GetGCMemoryInfo().TotalCommittedBytes / 1024, allocated = GC.GetTotalAllocatedBytes() / 1024;
        int gen0 = GC.CollectionCount(0), gen1 = GC.CollectionCount(1), gen2 = GC.CollectionCount(2);
        var (mallocArena, mallocInUse) = Malloc();
        var status = File.ReadAllLines("/proc/self/status");
        long heap = GC.GetGCMemoryInfo().HeapSizeBytes / 1024;
        long live = GC.GetTotalMemory(forceFullCollection: true) / 1024;
        Console.WriteLine(JsonSerializer.Serialize(new ChildResult(trained.TrainingScan!.Images.Count, options.Epochs, Field(status, "VmHWM"), Field(status, "VmRSS"),
            Field(status, "RssAnon"), Field(status, "RssFile"), heap, live, seconds, trained.TrainingScan.Skipped.Count + trained.SkippedRows.Count,
            committed, mallocArena / 1024, mallocInUse / 1024, allocated, gen0, gen1, gen2, trace.ToString())));
        GC.KeepAlive(trained);
        return 0;
    }

    /// <summary>Each generation's size and fragmentation after the last collection (MiB): gen0, gen1, gen2, large, pinned.</summary>
    static string Generations()
    {
        var info = GC.GetGCMemoryInfo();
        if (info.Index == 0) return "";
        var names = new[] { "g0", "g1", "g2", "loh", "poh" };
        return "after GC " + string.Join(" ", info.GenerationInfo.ToArray().Select((g, i) => $"{names[i]} {g.SizeAfterBytes / 1048576.0:F1}/{g.FragmentationAfterBytes / 1048576.0:F1}"));
    }

    /// <summary>A KiB field of /proc/self/status (Linux): VmHWM is the peak resident set, VmRSS the current one.</summary>
    static long Field(string[] status, string name)
        => long.Parse(status.Single(l => l.StartsWith(name + ":", StringComparison.Ordinal))[(name.Length + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);

    static ChildResult RunChild(string[] args)
    {
        var path = Environment.ProcessPath!;
        var start = new ProcessStartInfo(path) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(path) == "dotnet") start.ArgumentList.Add(typeof(MemoryScaling).Assembly.Location);
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"rss-child failed ({process.ExitCode}): {stderr.Result}{stdout.Result}");
        var line = stdout.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries).Last(l => l.StartsWith('{'));
        return JsonSerializer.Deserialize<ChildResult>(line)!;
    }

    /// <summary>glibc's view of the native heap (bytes): the arenas' size and what is allocated in them (mallinfo2, glibc ≥ 2.33).</summary>
    static (long Arena, long InUse) Malloc()
    {
        var info = MallInfo2();
        return ((long)info.arena, (long)info.uordblks);
    }

    [StructLayout(LayoutKind.Sequential)]
    struct MallocInfo2 { public nuint arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost; }

    [DllImport("libc", EntryPoint = "mallinfo2")]
    static extern MallocInfo2 MallInfo2();

    static string Arg(IReadOnlyList<string> args, string name, string fallback)
    {
        for (int i = 0; i < args.Count - 1; i++) if (args[i] == name) return args[i + 1];
        return fallback;
    }
}
