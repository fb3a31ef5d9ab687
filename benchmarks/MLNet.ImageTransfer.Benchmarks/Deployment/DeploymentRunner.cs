using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using MLNet.ImageTransfer.Benchmarks.Compare;
using MLNet.ImageTransfer.Benchmarks.Infrastructure;
using TorchSharp;

namespace MLNet.ImageTransfer.Benchmarks.Deployment;

/// <summary>
/// <c>deploy</c>: what choosing ONNX Runtime or TorchSharp costs a scoring service and what the frozen-backbone mode
/// costs a training run — inference img/s and peak RSS per engine (each configuration in its own process, so peak
/// RSS is that configuration's alone), load + first prediction of a saved model in a fresh process (and whether
/// libtorch was mapped), and epoch times of a frozen-backbone training. Writes benchmarks/results/DEPLOYMENT.md.
/// </summary>
public static class DeploymentRunner
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static int Run(IReadOnlyList<string> args)
    {
        bool quick = args.Contains("--quick");
        int threads = 2;
        string repo = FindRepo();
        string output = Path.Combine(repo, "benchmarks", "results", quick ? "DEPLOYMENT.quick.md" : "DEPLOYMENT.md");
        for (int i = 0; i < args.Count - 1; i++)
        {
            if (args[i] == "--threads") threads = int.Parse(args[i + 1], Inv);
            if (args[i] == "--out") output = Path.GetFullPath(args[i + 1]);
        }
        var started = DateTimeOffset.Now;
        var clock = Stopwatch.StartNew();
        string loadBefore = CpuMeter.LoadAverage();
        var md = new StringBuilder();
        md.AppendLine("# Deployment benchmarks: ONNX Runtime vs TorchSharp, saved-model start-up, frozen-backbone epochs");
        md.AppendLine();
        md.AppendLine($"Produced in one run by `dotnet run -c Release --project benchmarks/MLNet.ImageTransfer.Benchmarks -- deploy{(quick ? " --quick" : "")}` "
            + $"on {started:yyyy-MM-dd HH:mm zzz}. Machine: {string.Join("; ", MachineInfo.Describe(threads).Where(kv => kv.Key is "CPU" or "Cores / threads used" or "Memory").Select(kv => $"{kv.Key}: {kv.Value}"))}.");
        md.AppendLine();

        string[] architectures = quick ? ["resnet18"] : ["densenet121", "resnet50", "vgg16"];
        int[] batches = [1, 32];
        md.AppendLine("## Inference at 224², ONNX Runtime vs TorchSharp");
        md.AppendLine();
        md.AppendLine($"Each cell ran in a fresh process: {threads} intra-op threads, the library's network with random weights (10 classes), a fixed normalised batch, "
            + "5 warm-up steps then the median of ≥ 5 timed steps (about 6 s). ORT = the library's ONNX export (BatchNorm folded) in Microsoft.ML.OnnxRuntime, "
            + "all graph optimisations; TorchSharp = eval mode, no_grad. Peak RSS = VmHWM of the process (runtime, libraries, weights, activations); "
            + "baseline = VmRSS before the network was built. The children run with glibc's malloc defaults, as a scoring process does "
            + "(the library tunes malloc only for training, Engine/NativeAllocator.cs), so TorchSharp here pays page faults that the compare runner's tuned process does not.");
        md.AppendLine();
        md.AppendLine("| Model | Batch | ORT img/s | TorchSharp img/s | ORT ÷ TorchSharp | ORT peak RSS | TorchSharp peak RSS | Baseline RSS (ORT / TorchSharp) |");
        md.AppendLine("|---|--:|--:|--:|--:|--:|--:|--:|");
        foreach (var arch in architectures)
            foreach (var b in batches)
            {
                Console.WriteLine($"[infer] {arch} b{b} ...");
                var ort = Child(["probe-infer", "--engine", "ort", "--arch", arch, "--batch", b.ToString(Inv), "--threads", threads.ToString(Inv)]);
                var ts = Child(["probe-infer", "--engine", "torchsharp", "--arch", arch, "--batch", b.ToString(Inv), "--threads", threads.ToString(Inv)]);
                double o = ort["img_per_s"]!.GetValue<double>(), t = ts["img_per_s"]!.GetValue<double>();
                Console.WriteLine($"  ORT {o:F1} img/s, {Mb(ort, "peak_rss_kb")}; TorchSharp {t:F1} img/s, {Mb(ts, "peak_rss_kb")}");
                md.AppendLine($"| {arch} | {b} | {o:F1} | {t:F1} | {o / t:F2} | {Mb(ort, "peak_rss_kb")} | {Mb(ts, "peak_rss_kb")} | {Mb(ort, "baseline_rss_kb")} / {Mb(ts, "baseline_rss_kb")} |");
            }
        md.AppendLine();

        var work = JpegFolder.TempDirectory("mlnet-imagetransfer-deploy");
        try
        {
            var data = Path.Combine(work, "jpeg");
            JpegFolder.Write(data, imagesPerClass: quick ? 8 : 32, seed: 3);
            var image = Directory.EnumerateFiles(data, "*.jpg", SearchOption.AllDirectories).Order().First();

            md.AppendLine("## A saved model: load + first prediction in a fresh process");
            md.AppendLine();
            md.AppendLine("The .zip a trainer pipeline saves (`ml.Model.Save`), loaded by `ml.Model.Load` in a new process that then predicts one 500×375 JPEG "
                + "(`ImageClassificationWorkflow.LoadModel` + `Predict`), as a scoring service does at start-up. Median of 5 runs after one warm-up run. "
                + "\"libtorch mapped\" = whether libtorch_cpu.so appeared in the process's /proc/self/maps.");
            md.AppendLine();
            md.AppendLine("| Model | Process wall time | Runtime start-up | Load | First prediction | Peak RSS | libtorch mapped |");
            md.AppendLine("|---|--:|--:|--:|--:|--:|--:|");
            foreach (var arch in quick ? new[] { "resnet18" } : ["resnet50", "densenet121"])
            {
                Console.WriteLine($"[load] {arch} ...");
                var zip = Path.Combine(work, arch + ".zip");
                LibraryWorkloads.SaveTrainedModel(data, arch, 224, 8, zip);
                var runs = new List<(double Wall, JsonObject Report)>();
                for (int r = 0; r < 6; r++)
                {
                    var t = Stopwatch.StartNew();
                    var report = Child(["load-predict", "--model", zip, "--image", image, "--threads", threads.ToString(Inv)]);
                    if (r > 0) runs.Add((t.Elapsed.TotalSeconds, report));
                }
                var median = runs.OrderBy(x => x.Wall).ElementAt(runs.Count / 2);
                string Sec(string key) => Stats.Median(runs.Select(x => x.Report[key]!.GetValue<double>()).ToList()).ToString("F2", Inv) + " s";
                Console.WriteLine($"  wall {median.Wall:F2} s, load {Sec("load_s")}, libtorch {median.Report["libtorch_mapped"]}");
                md.AppendLine($"| {arch} (224², {new FileInfo(zip).Length / 1e6:F0} MB .zip) | {median.Wall:F2} s | {Sec("startup_s")} | {Sec("load_s")} | {Sec("predict_s")} | "
                    + $"{Mb(median.Report, "peak_rss_kb")} | {(median.Report["libtorch_mapped"]!.GetValue<bool>() ? "yes" : "no")} |");
            }
            md.AppendLine();

            md.AppendLine("## Frozen backbone, no augmentation: epoch times");
            md.AppendLine();
            string frozenArch = quick ? "resnet18" : "resnet50";
            int images = Directory.EnumerateFiles(data, "*.jpg", SearchOption.AllDirectories).Count();
            md.AppendLine($"`{frozenArch}` at 224², {images} JPEGs (4 classes), batch 16, `FreezeBackbone = true`, no augmentation, no validation, in this process "
                + "(the trainer's own per-epoch durations from its history; decoding the images happens before epoch 1 and is not included).");
            md.AppendLine();
            Console.WriteLine($"[frozen] {frozenArch} ...");
            var history = FrozenEpochs(data, frozenArch, epochs: 4);
            md.AppendLine("| Epoch | Seconds | Share of epoch 1 |");
            md.AppendLine("|--:|--:|--:|");
            double first = history[0];
            for (int e = 0; e < history.Count; e++)
                md.AppendLine($"| {e + 1} | {history[e]:F2} | {history[e] / first * 100:F1} % |");
            md.AppendLine();
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); } catch (IOException) { }
        }

        md.AppendLine($"Load average {loadBefore} before, {CpuMeter.LoadAverage()} after; {clock.Elapsed.TotalMinutes:F1} min.");
        Directory.CreateDirectory(Path.GetDirectoryName(output)!);
        File.WriteAllText(output, md.ToString());
        Console.WriteLine($"Wrote {output}");
        return 0;
    }

    static List<double> FrozenEpochs(string data, string architecture, int epochs)
    {
        var ml = new Microsoft.ML.MLContext(0);
        var options = LibraryWorkloads.TrainerOptions(architecture, 224, 16, epochs);
        options.FreezeBackbone = true;
        var trained = ImageClassificationWorkflow.TrainFromFolder(ml, data, options);
        (trained.Model as IDisposable)?.Dispose();
        return trained.History.Epochs.Select(e => e.Duration.TotalSeconds).ToList();
    }

    /// <summary>Child entry point: one inference configuration, then its throughput and memory as one JSON line.</summary>
    public static int ProbeInference(IReadOnlyList<string> args)
    {
        string engine = Arg(args, "--engine"), arch = Arg(args, "--arch");
        int batch = int.Parse(Arg(args, "--batch"), Inv), threads = int.Parse(Arg(args, "--threads"), Inv);
        torch.set_num_threads(threads);
        torch.set_num_interop_threads(1);
        long baseline = ProcStatusKb("VmRSS");
        var rule = new TimingRule(5, 5, 20, 6.0);
        StepTimes times;
        if (engine == "ort")
        {
            using var step = new OrtStep(arch, 224, batch, threads);
            times = StepTimer.Run(() => step.Step(), rule, batch);
        }
        else
        {
            using var step = new ModelStep(arch, 224, batch, training: false);
            times = StepTimer.Run(() => step.Step(), rule, batch);
        }
        Console.WriteLine(JsonSerializer.Serialize(new
        {
            img_per_s = times.Throughput,
            peak_rss_kb = ProcStatusKb("VmHWM"),
            baseline_rss_kb = baseline,
        }));
        return 0;
    }

    /// <summary>A field of /proc/self/status in kB (VmRSS, VmHWM).</summary>
    public static long ProcStatusKb(string field)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
                return long.Parse(line[(field.Length + 1)..].Trim().Split(' ')[0], Inv);
        return -1;
    }

    /// <summary>Whether libtorch's CPU library is mapped into this process.</summary>
    public static bool LibTorchMapped() => File.ReadLines("/proc/self/maps").Any(l => l.Contains("libtorch_cpu", StringComparison.Ordinal));

    static string Arg(IReadOnlyList<string> args, string name)
    {
        int i = args.ToList().IndexOf(name);
        return i >= 0 && i + 1 < args.Count ? args[i + 1] : throw new ArgumentException($"missing {name}");
    }

    static string Mb(JsonObject o, string key) => $"{o[key]!.GetValue<long>() / 1024.0:F0} MB";

    static JsonObject Child(string[] args)
    {
        var path = Environment.ProcessPath!;
        string[] command = Path.GetFileNameWithoutExtension(path) == "dotnet" ? [path, typeof(DeploymentRunner).Assembly.Location, .. args] : [path, .. args];
        var start = new ProcessStartInfo(command[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in command.Skip(1)) start.ArgumentList.Add(a);
        using var p = Process.Start(start)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{string.Join(' ', args)} failed ({p.ExitCode}): {stderr.Result}");
        var last = stdout.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries).Last();
        return JsonNode.Parse(last)!.AsObject();
    }

    static string FindRepo()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "MLNet.ImageTransfer.sln"))) return dir.FullName;
        return Directory.GetCurrentDirectory();
    }
}
