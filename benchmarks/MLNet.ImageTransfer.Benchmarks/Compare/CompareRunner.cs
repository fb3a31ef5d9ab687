using MLNet.ImageTransfer.Engine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML;
using MLNet.ImageTransfer.Benchmarks.Infrastructure;
using MLNet.ImageTransfer.Data;
using TorchSharp;

namespace MLNet.ImageTransfer.Benchmarks.Compare;

/// <summary>Command-line options of <c>compare</c>.</summary>
public sealed class CompareOptions
{
    public bool Quick { get; set; }
    public int Threads { get; set; } = 2;
    public string Python { get; set; } = "/usr/bin/python3";
    public string? Output { get; set; }
    public bool IncludeSlow { get; set; }
    /// <summary>Before each row, wait (up to <see cref="MaxWaitSeconds"/>) until other processes use less than this share of the CPUs.</summary>
    public double QuietThreshold { get; set; } = 0.15;
    public double MaxWaitSeconds { get; set; } = 120;
    /// <summary>A row during which other processes used more than this share of the CPUs is measured again (once), after waiting for quiet.</summary>
    public double RetryAbove { get; set; } = 0.25;
    /// <summary>Only rows whose name contains one of these (case-insensitive); for trying a single row.</summary>
    public List<string> Filters { get; } = [];

    public const string Usage = """
        compare [--quick] [--threads 2] [--python /usr/bin/python3] [--out benchmarks/RESULTS.md] [--include-slow] [--only TEXT]...
          Runs our side (TorchSharp, in this process) and the PyTorch side (benchmarks/pytorch_reference.py, Debian's
          python3-torch) row by row, alternating which side goes first, and writes a table with ratios, model FLOP
          utilisation and the machine's load to RESULTS.md (and the raw numbers to RESULTS.json beside it).
          --quick         small images, batch 8, short timing: a few minutes, for checking that everything works
                          (writes BenchmarkDotNet.Artifacts/RESULTS.quick.md, git-ignored, unless --out is given)
          --include-slow  also the rows skipped by default (VGG-16 at 224² with batch 32)
          --only TEXT     only rows whose name contains TEXT (repeatable)
          --quiet 0.15    before each row, wait until other processes use less than this share of the CPUs ...
          --max-wait 120  ... for at most this many seconds
          --retry-above 0.25  measure a row again (once) when other processes took more than this share while it ran
        compare --render benchmarks/RESULTS.json
          Rewrites RESULTS.md from a run's RESULTS.json (the same numbers with the current notes); measures nothing.
        """;

    public static CompareOptions Parse(IReadOnlyList<string> args)
    {
        var o = new CompareOptions();
        for (int i = 0; i < args.Count; i++)
        {
            string Next() => i + 1 < args.Count ? args[++i] : throw new ArgumentException($"{args[i]} needs a value.\n{Usage}");
            switch (args[i])
            {
                case "--quick": o.Quick = true; break;
                case "--threads": o.Threads = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--python": o.Python = Next(); break;
                case "--out": o.Output = Next(); break;
                case "--include-slow": o.IncludeSlow = true; break;
                case "--only": o.Filters.Add(Next()); break;
                case "--quiet": o.QuietThreshold = double.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--max-wait": o.MaxWaitSeconds = double.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--retry-above": o.RetryAbove = double.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "-h" or "--help": Console.WriteLine(Usage); Environment.Exit(0); break;
                default: throw new ArgumentException($"Unknown option '{args[i]}'.\n{Usage}");
            }
        }
        if (o.Threads < 1) throw new ArgumentException("--threads must be at least 1.");
        return o;
    }
}

/// <summary>
/// The side-by-side runner: TorchSharp (this library) against Debian's PyTorch on the same machine, same models,
/// sizes, batches, thread count and data, in one run; writes benchmarks/RESULTS.md.
/// </summary>
public static class CompareRunner
{
    static readonly string[] Architectures = ["resnet18", "resnet50", "densenet121", "vgg16"];
    const int Classes = 10;

    public static int Run(IReadOnlyList<string> args)
    {
        if (args.Count == 2 && args[0] == "--render")
        {
            // Re-render RESULTS.md from a run's RESULTS.json (same numbers, current notes); measures nothing.
            var json = Path.GetFullPath(args[1]);
            File.WriteAllText(Path.ChangeExtension(json, ".md"), ResultsReport.FromJson(File.ReadAllText(json)).ToMarkdown());
            Console.WriteLine($"Rendered {Path.ChangeExtension(json, ".md")} from {json}.");
            return 0;
        }
        var o = CompareOptions.Parse(args);
        var repo = RepositoryRoot();
        var script = Path.Combine(repo, "benchmarks", "pytorch_reference.py");
        // A quick run is a harness check: it goes to BenchmarkDotNet.Artifacts (git-ignored), never over RESULTS.md.
        var output = Path.GetFullPath(o.Output ?? (o.Quick
            ? Path.Combine(repo, "benchmarks", "MLNet.ImageTransfer.Benchmarks", "BenchmarkDotNet.Artifacts", "RESULTS.quick.md")
            : Path.Combine(repo, "benchmarks", "RESULTS.md")));
        Directory.CreateDirectory(Path.GetDirectoryName(output)!);
        var started = DateTimeOffset.Now;
        string loadBefore = CpuMeter.LoadAverage();
        var clock = Stopwatch.StartNew();

        torch.set_num_threads(o.Threads);
        torch.set_num_interop_threads(1);
        // What the library's trainers do on CPU before training (Engine/NativeAllocator.cs); the whole runner process
        // gets it, so every "ours" row, inference included, runs with it. The PyTorch side runs with glibc's defaults.
        NativeAllocator.TuneForTraining();
        Console.WriteLine($"compare{(o.Quick ? " --quick" : "")}: {o.Threads} threads, load average {loadBefore}; PyTorch worker {o.Python} {script}");

        var work = JpegFolder.TempDirectory("mlnet-imagetransfer-bench");
        try
        {
            using var py = new PyTorchWorker(o.Python, script, o.Threads);
            var rule = o.Quick ? new TimingRule(5, 3, 10, 1.5) : new TimingRule(5, 5, 20, 6.0);
            var plan = Plan.Create(o, rule, py, work);
            var rows = plan.Rows.Where(r => o.Filters.Count == 0 || o.Filters.Any(f => r.Name.Contains(f, StringComparison.OrdinalIgnoreCase))).ToList();

            Console.WriteLine($"Measuring the machine's peak GEMM through libtorch ...");
            WaitForQuiet(o, py.ProcessId);
            var peak = MeasurePeakGemm(o.Quick);
            Console.WriteLine($"  peak {peak.Best:F1} GFLOP/s ({string.Join(", ", peak.BySize.Select(p => $"n={p.Key}: {p.Value:F1}"))})");

            for (int i = 0; i < rows.Count; i++)
            {
                var row = rows[i];
                Console.WriteLine($"[{i + 1}/{rows.Count}] {row.Name} ...");
                for (int attempt = 1; attempt <= 2; attempt++)
                {
                    row.WaitedSeconds += WaitForQuiet(o, py.ProcessId);
                    var (ours, theirs, error, others, rowStarted, load, wall) = Measure(row, i, py.ProcessId);
                    Console.WriteLine($"  ours {Fmt(ours?.Value)} {row.Unit}, PyTorch {Fmt(theirs?.Value)} {row.Unit}, others' CPU {others:P0}, {wall:F0} s{(error is null ? "" : ", failed: " + error)}");
                    // Keep the attempt that other processes disturbed least (and one that worked).
                    if (attempt == 1 || error is null && (row.Error is not null || others < row.OthersCpu))
                    {
                        if (attempt > 1 && row.Error is not null) row.FirstAttemptError = row.Error;
                        (row.OurResult, row.TheirResult, row.Error, row.OthersCpu, row.StartedAt, row.LoadAverageAtStart, row.WallSeconds) = (ours, theirs, error, others, rowStarted, load, wall);
                        row.Attempts = attempt;
                    }
                    if (attempt == 2 || error is null && !(others > o.RetryAbove)) break;
                    Console.WriteLine(error is not null ? "  failed; measuring again" : $"  other processes took {others:P0} of the CPUs; measuring again");
                }
                Console.WriteLine($"  → ratio {row.Ratio:F2}");
                // Written after every row, so that an interrupted run still leaves what it measured.
                var partial = Report(rows.Take(i + 1).ToList(), peak, peak) with { Partial = $"{i + 1} of {rows.Count} rows" };
                File.WriteAllText(output, partial.ToMarkdown());
                File.WriteAllText(Path.ChangeExtension(output, ".json"), partial.ToJson());
            }

            WaitForQuiet(o, py.ProcessId);
            var peakAfter = MeasurePeakGemm(quick: true);
            var report = Report(rows, peak, peakAfter);
            File.WriteAllText(output, report.ToMarkdown());
            File.WriteAllText(Path.ChangeExtension(output, ".json"), report.ToJson());
            Console.WriteLine($"Wrote {output} ({clock.Elapsed.TotalMinutes:F1} min, load average {report.LoadBefore} → {report.LoadAfter}).");
            return rows.Any(r => r.Error is not null) ? 1 : 0;

            ResultsReport Report(List<CompareRow> measured, PeakGemm peakStart, PeakGemm peakEnd) => new()
            {
                Options = o,
                Rows = measured,
                Skipped = plan.Skipped,
                Peak = peakStart,
                PeakAfter = peakEnd,
                Machine = MachineInfo.Describe(o.Threads),
                PyTorch = MachineInfo.DescribePyTorch(py.Versions),
                Started = started,
                Duration = clock.Elapsed,
                LoadBefore = loadBefore,
                LoadAfter = CpuMeter.LoadAverage(),
                FlopCheck = plan.FlopCheck,
                Rule = rule,
                Dataset = plan.DatasetDescription,
                OrtUnavailable = plan.OrtUnavailable,
                OrtVersion = typeof(Microsoft.ML.OnnxRuntime.InferenceSession).Assembly.GetName().Version?.ToString(3) ?? "?",
                CommandLine = "dotnet run -c Release --project benchmarks/MLNet.ImageTransfer.Benchmarks -- compare" + (args.Count > 0 ? " " + string.Join(' ', args) : ""),
            };
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); } catch (IOException) { }
        }
    }

    static (Measurement? Ours, Measurement? Theirs, string? Error, double Others, DateTimeOffset Started, string Load, double Wall) Measure(CompareRow row, int index, int pythonPid)
    {
        var started = DateTimeOffset.Now;
        var load = CpuMeter.LoadAverage();
        var meter = CpuMeter.Start(pythonPid);
        var t = Stopwatch.StartNew();
        Measurement? ours = null, theirs = null;
        string? error = null;
        try
        {
            // Alternate which side goes first, so that a slow drift in the machine's load favours neither.
            if (row.Both is not null) (ours, theirs) = row.Both(index % 2 == 0);
            else if (index % 2 == 0) { ours = row.Ours(); theirs = row.Theirs(); }
            else { theirs = row.Theirs(); ours = row.Ours(); }
        }
        catch (Exception e)
        {
            error = e.GetBaseException().Message;
        }
        double others = meter.OthersFraction();
        double wall = t.Elapsed.TotalSeconds;
        GC.Collect();
        GC.WaitForPendingFinalizers();
        return (ours, theirs, error, others, started, load, wall);
    }

    /// <summary>Waits, in 2-second samples, until other processes use less than the threshold (or the wait limit passes). Returns seconds waited.</summary>
    static double WaitForQuiet(CompareOptions o, int pythonPid)
    {
        var t = Stopwatch.StartNew();
        while (true)
        {
            var meter = CpuMeter.Start(pythonPid);
            Thread.Sleep(2000);
            double others = meter.OthersFraction();
            if (double.IsNaN(others) || others < o.QuietThreshold) return t.Elapsed.TotalSeconds - 2;
            if (t.Elapsed.TotalSeconds > o.MaxWaitSeconds)
            {
                Console.WriteLine($"  still {others:P0} busy with other processes after {t.Elapsed.TotalSeconds:F0} s; measuring anyway");
                return t.Elapsed.TotalSeconds;
            }
        }
    }

    public sealed record PeakGemm(double Best, IReadOnlyDictionary<int, double> BySize);

    /// <summary>
    /// The machine's peak fp32 GEMM through our libtorch (oneMKL): for each of a few square sizes the fastest step
    /// (a peak is an upper bound, so the best step, not the median), and the best size.
    /// </summary>
    static PeakGemm MeasurePeakGemm(bool quick)
    {
        var sizes = quick ? new[] { 1024, 2048 } : new[] { 1024, 1536, 2048, 3072 };
        var rule = new TimingRule(5, 5, 20, quick ? 1.0 : 3.0);
        var results = new Dictionary<int, double>();
        foreach (var n in sizes)
        {
            using var gemm = new GemmStep(n);
            var times = StepTimer.Run(gemm.Step, rule, gemm.FlopPerStep);
            results[n] = gemm.FlopPerStep / times.Seconds.Min() / 1e9;
        }
        return new PeakGemm(results.Values.Max(), results);
    }

    static string Fmt(double? v) => v is null ? "—" : v.Value.ToString(v.Value >= 100 ? "F0" : v.Value >= 10 ? "F1" : "F2", CultureInfo.InvariantCulture);

    /// <summary>The repository root: the folder holding benchmarks/pytorch_reference.py, searched upwards from the app and the working directory.</summary>
    internal static string RepositoryRoot()
    {
        foreach (var start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "benchmarks", "pytorch_reference.py"))) return dir.FullName;
        }
        throw new FileNotFoundException("Could not find benchmarks/pytorch_reference.py above the application or the working directory; run from the repository.");
    }

    /// <summary>The rows of a run and the data they use.</summary>
    sealed class Plan
    {
        public List<CompareRow> Rows { get; } = [];
        public List<string> Skipped { get; } = [];
        public List<(string Architecture, long Counted, double Published)> FlopCheck { get; } = [];
        public string DatasetDescription { get; private set; } = "";
        /// <summary>Why there are no ONNX Runtime rows (null when there are).</summary>
        public string? OrtUnavailable { get; private set; }

        public static Plan Create(CompareOptions o, TimingRule rule, PyTorchWorker py, string work)
        {
            var plan = new Plan();
            int[] sizes = o.Quick ? [64] : [64, 224];
            int[] batches = o.Quick ? [8] : [8, 32];

            // FLOP counts: ours by forward hooks, checked against torchvision's published numbers at 224²/1000 classes.
            var macs = new Dictionary<(string, int), long>();
            foreach (var arch in Architectures)
            {
                plan.FlopCheck.Add((arch, ModelFlops.CountMacs(arch, 224, 1000), ModelFlops.PublishedGMacs[arch] * 1e9));
                foreach (var s in sizes) macs[(arch, s)] = ModelFlops.CountMacs(arch, s, Classes);
            }

            plan.Rows.Add(new CompareRow
            {
                Kind = RowKind.Gemm, Name = "GEMM fp32 1024×1024·1024×1024", Unit = "GFLOP/s",
                Both = oursFirst => Interleaved(() => { var g = new GemmStep(1024); return new OurStep(g.Step, g.FlopPerStep, null, g); },
                    new JsonObject { ["step"] = "gemm", ["n"] = 1024 }, py, rule, oursFirst, 1e-9),
            });

            foreach (bool training in new[] { true, false })
                foreach (var s in sizes)
                    foreach (var b in batches)
                        foreach (var arch in Architectures)
                        {
                            string name = $"{(training ? "Train" : "Infer")} {arch} {s}² b{b}";
                            if (!o.IncludeSlow && arch == "vgg16" && s == 224 && b == 32)
                            {
                                plan.Skipped.Add($"{name}: {(training ? "about 25–30 s per step on 2 cores, so ≥ 10 steps per side add about 10 minutes" : "about 8 s per step, ≥ 10 steps per side add about 3 minutes")}; run with --include-slow to add it.");
                                continue;
                            }
                            var kind = training ? "train" : "infer";
                            plan.Rows.Add(new CompareRow
                            {
                                Kind = training ? RowKind.Train : RowKind.Inference, Name = name, Architecture = arch, ImageSize = s, BatchSize = b,
                                Unit = "img/s",
                                FlopPerItem = training ? ModelFlops.TrainFlopPerImage(macs[(arch, s)]) : ModelFlops.InferenceFlopPerImage(macs[(arch, s)]),
                                Both = oursFirst => Interleaved(() =>
                                    {
                                        var step = new ModelStep(arch, s, b, training, Classes);
                                        return new OurStep(() => step.Step(), b,
                                            training ? () => step.Phases.Select(p => new[] { p.Forward, p.Backward, p.Optimizer }).ToList() : null, step);
                                    },
                                    new JsonObject { ["step"] = kind, ["arch"] = arch, ["size"] = s, ["batch"] = b, ["classes"] = Classes, ["seed"] = 0 },
                                    py, rule, oursFirst),
                            });
                        }

            // ONNX Runtime on our exported network against PyTorch eager (compare with the TorchSharp inference rows above).
            plan.OrtUnavailable = OrtStep.Availability();
            if (plan.OrtUnavailable is null)
                foreach (var s in new[] { sizes[^1] })
                    foreach (var arch in Architectures)
                    {
                        const int b = 8;
                        plan.Rows.Add(new CompareRow
                        {
                            Kind = RowKind.Onnx, Name = $"Infer {arch} {s}² b{b}, ours via ONNX Runtime", Architecture = arch, ImageSize = s, BatchSize = b,
                            Unit = "img/s", FlopPerItem = ModelFlops.InferenceFlopPerImage(macs[(arch, s)]),
                            Both = oursFirst => Interleaved(() =>
                                {
                                    var step = new OrtStep(arch, s, b, o.Threads, Classes);
                                    return new OurStep(() => step.Step(), b, null, step);
                                },
                                new JsonObject { ["step"] = "infer", ["arch"] = arch, ["size"] = s, ["batch"] = b, ["classes"] = Classes, ["seed"] = 0 },
                                py, rule, oursFirst),
                        });
                    }

            // A photo-like JPEG folder for the data pipeline, the end-to-end epoch and the saved model.
            int perClass = o.Quick ? 16 : 64;
            var folder = Path.Combine(work, "jpeg");
            var scan = JpegFolder.Write(folder, perClass);
            var tiny = Path.Combine(work, "tiny");
            JpegFolder.Write(tiny, 2, seed: 1);
            plan.DatasetDescription = $"{scan.Images.Count} JPEGs (quality 90, 500×375, {scan.ClassNames.Count} classes × {perClass}) of the library's synthetic shapes, written to a temporary folder; both sides read the same files";
            int passes = o.Quick ? 2 : 3;
            foreach (var s in sizes)
            {
                plan.Rows.Add(PipelineRow(py, folder, s, 32, workers: 2, passes));
                plan.Rows.Add(PipelineRow(py, folder, s, 32, workers: 0, passes));
            }

            foreach (var s in new[] { sizes[^1] })
            {
                const string spec = "torchvision"; // resized-crop + hflip: torchvision's RandomResizedCrop + RandomHorizontalFlip
                plan.Rows.Add(new CompareRow
                {
                    Kind = RowKind.Pipeline, Name = $"Augment (random-resized-crop + flip) → {s}², one epoch (ours from the decoded cache; PyTorch decodes, num_workers=2)",
                    ImageSize = s, BatchSize = 32, Unit = "img/s", TheirSetup = "ImageFolder + RandomResizedCrop + RandomHorizontalFlip + DataLoader(batch_size=32, num_workers=2)",
                    Ours = () =>
                    {
                        using var epochs = new AugmentedEpochs(new MLContext(0), LibraryWorkloads.FolderRows(new MLContext(0), folder), s, spec);
                        var times = new List<double>();
                        for (int p = 0; p < 1 + passes; p++)
                        {
                            double t = StepTimer.Time(() => epochs.Epoch(32));
                            if (p > 0) times.Add(t);
                        }
                        return FromSteps(new StepTimes([], times.ToArray(), epochs.Count));
                    },
                    Theirs = () => FromPython(py.Run(new JsonObject
                    {
                        ["kind"] = "pipeline", ["folder"] = folder, ["size"] = s, ["batch"] = 32, ["workers"] = 2,
                        ["augment"] = true, ["warmup_passes"] = 1, ["passes"] = passes,
                    })),
                });
            }

            int e2eRuns = o.Quick ? 1 : 2;
            foreach (var s in sizes)
            {
                const string arch = "resnet18";
                const int batch = 32;
                plan.Rows.Add(new CompareRow
                {
                    Kind = RowKind.EndToEnd, Name = $"Epoch from JPEG folder, {arch} {s}² b{batch}", Architecture = arch, ImageSize = s, BatchSize = batch,
                    Unit = "s", HigherIsBetter = false, TheirSetup = "ImageFolder + DataLoader(num_workers=2)",
                    Ours = () =>
                    {
                        var times = new List<double>();
                        for (int r = 0; r < 1 + e2eRuns; r++)
                        {
                            double t = StepTimer.Time(() => LibraryWorkloads.TrainOneEpochFromFolder(folder, arch, s, batch));
                            if (r > 0) times.Add(t);
                        }
                        return FromTimes(times, $"{scan.Images.Count} images");
                    },
                    Theirs = () => FromPythonTimes(py.Run(new JsonObject
                    {
                        ["kind"] = "e2e", ["folder"] = folder, ["arch"] = arch, ["size"] = s, ["batch"] = batch, ["epochs"] = 1,
                        ["workers"] = 2, ["warmup_runs"] = 1, ["runs"] = e2eRuns, ["lr"] = 1e-3,
                    })),
                });
            }

            // Load + first prediction of a saved model (ResNet-50, 4 classes): ours from the ML.NET .zip, PyTorch from a state_dict .pth.
            const string savedArch = "resnet50";
            int savedSize = 224;
            var zip = Path.Combine(work, "resnet50.zip");
            var pth = Path.Combine(work, "resnet50.pth");
            var image = Path.Combine(folder, scan.Images[0].ImagePath);
            LibraryWorkloads.SaveTrainedModel(tiny, savedArch, savedSize, 8, zip);
            py.Run(new JsonObject { ["kind"] = "save_model", ["arch"] = savedArch, ["classes"] = scan.ClassNames.Count, ["path"] = pth });
            int loadRuns = o.Quick ? 3 : 5;
            plan.Rows.Add(new CompareRow
            {
                Kind = RowKind.LoadPredict, Name = $"Load saved {savedArch} + first prediction, in process", Architecture = savedArch, ImageSize = savedSize, BatchSize = 1,
                Unit = "s", HigherIsBetter = false, TheirSetup = "torch.load + load_state_dict",
                Ours = () =>
                {
                    var times = new List<double>();
                    var parts = new List<JsonObject>();
                    for (int r = 0; r < 1 + loadRuns; r++)
                    {
                        var (load, predict, _) = LibraryWorkloads.LoadAndPredictOnce(zip, image);
                        if (r == 0) continue;
                        times.Add(load + predict);
                        parts.Add(new JsonObject { ["load_s"] = load, ["predict_s"] = predict });
                    }
                    return FromTimes(times) with { Parts = MedianParts(parts) };
                },
                Theirs = () =>
                {
                    var r = py.Run(new JsonObject
                    {
                        ["kind"] = "load_predict", ["arch"] = savedArch, ["classes"] = scan.ClassNames.Count, ["size"] = savedSize,
                        ["weights"] = pth, ["image"] = image, ["warmup_runs"] = 1, ["runs"] = loadRuns,
                    });
                    var loads = PyTorchWorker.Doubles(r["load_s"]);
                    var predicts = PyTorchWorker.Doubles(r["predict_s"]);
                    return FromPythonTimes(r) with { Parts = new Dictionary<string, double> { ["load"] = Stats.Median(loads), ["predict"] = Stats.Median(predicts) } };
                },
            });
            plan.Rows.Add(new CompareRow
            {
                Kind = RowKind.LoadPredict, Name = $"Load saved {savedArch} + first prediction, fresh process", Architecture = savedArch, ImageSize = savedSize, BatchSize = 1,
                Unit = "s", HigherIsBetter = false, TheirSetup = "python3 script: import torch, torchvision; load; predict",
                Ours = () => FreshProcessTimes(TimedProcess.OwnCommand(["load-predict", "--model", zip, "--image", image, "--threads", o.Threads.ToString(CultureInfo.InvariantCulture)]), loadRuns),
                Theirs = () => FreshProcessTimes([py.Python, py.Script, "load-predict", "--weights", pth, "--image", image, "--arch", savedArch,
                    "--size", savedSize.ToString(CultureInfo.InvariantCulture), "--classes", scan.ClassNames.Count.ToString(CultureInfo.InvariantCulture),
                    "--threads", o.Threads.ToString(CultureInfo.InvariantCulture)], loadRuns),
            });
            return plan;
        }

        static CompareRow PipelineRow(PyTorchWorker py, string folder, int size, int batch, int workers, int passes) => new()
        {
            Kind = RowKind.Pipeline, Name = $"Decode+resize+normalise JPEG→{size}² (PyTorch num_workers={workers})", ImageSize = size, BatchSize = batch,
            Unit = "img/s", TheirSetup = $"ImageFolder + DataLoader(batch_size={batch}, num_workers={workers})",
            Ours = () =>
            {
                var ml = new MLContext(0);
                var rows = LibraryWorkloads.FolderRows(ml, folder);
                var times = new List<double>();
                int count = 0;
                for (int p = 0; p < 1 + passes; p++)
                {
                    double t = StepTimer.Time(() => count = LibraryWorkloads.DecodeResizeNormalize(ml, rows, size, batch));
                    if (p > 0) times.Add(t);
                }
                return FromSteps(new StepTimes([], times.ToArray(), count));
            },
            Theirs = () => FromPython(py.Run(new JsonObject
            {
                ["kind"] = "pipeline", ["folder"] = folder, ["size"] = size, ["batch"] = batch, ["workers"] = workers,
                ["augment"] = false, ["warmup_passes"] = 1, ["passes"] = passes,
            })),
        };

    }

    /// <summary>Our side of an interleaved step benchmark: the step, what one step processes, its phase times so far (training), and what to dispose.</summary>
    sealed record OurStep(Action Step, double ItemsPerStep, Func<List<double[]>>? Phases, IDisposable Owner);

    const int Rounds = 4;

    /// <summary>
    /// A step benchmark with both sides interleaved: both build their step and run the warm-up steps, each side's
    /// number of timed steps comes from its own warm-up (the same <see cref="TimingRule"/>), and the timed steps run
    /// in <see cref="Rounds"/> alternating rounds (ours, theirs, theirs, ours, …), so that both sides sample the same
    /// stretch of machine time.
    /// </summary>
    static (Measurement Ours, Measurement Theirs) Interleaved(Func<OurStep> createOurs, JsonObject theirCase, PyTorchWorker py, TimingRule rule, bool oursFirst, double scale = 1)
    {
        string handle = Guid.NewGuid().ToString("N");
        var ours = createOurs();
        try
        {
            var ourWarm = new double[rule.Warmup];
            JsonObject opened = null!;
            void WarmOurs() { for (int i = 0; i < ourWarm.Length; i++) ourWarm[i] = StepTimer.Time(ours.Step); }
            void OpenTheirs()
            {
                var c = (JsonObject)theirCase.DeepClone();
                c["kind"] = "open"; c["handle"] = handle; c["warmup"] = rule.Warmup;
                opened = py.Run(c);
            }
            if (oursFirst) { WarmOurs(); OpenTheirs(); } else { OpenTheirs(); WarmOurs(); }
            var theirWarm = PyTorchWorker.Doubles(opened["warmup_s"]);
            double theirItems = opened["items_per_step"]!.GetValue<double>();
            int ourPerRound = (int)Math.Ceiling(rule.TimedSteps(ourWarm) / (double)Rounds);
            int theirPerRound = (int)Math.Ceiling(rule.TimedSteps(theirWarm) / (double)Rounds);
            int ourPhaseStart = ours.Phases?.Invoke().Count ?? 0;

            var ourTimes = new List<double>();
            var theirTimes = new List<double>();
            var theirPhases = new List<double[]>();
            for (int round = 0; round < Rounds; round++)
            {
                bool oursNow = (round % 2 == 0) == oursFirst;
                for (int side = 0; side < 2; side++, oursNow = !oursNow)
                {
                    if (oursNow)
                        for (int i = 0; i < ourPerRound; i++) ourTimes.Add(StepTimer.Time(ours.Step));
                    else
                    {
                        var r = py.Run(new JsonObject { ["kind"] = "steps", ["handle"] = handle, ["n"] = theirPerRound });
                        theirTimes.AddRange(PyTorchWorker.Doubles(r["times_s"]));
                        if (r["phases_s"] is JsonArray phases) theirPhases.AddRange(phases.Select(p => PyTorchWorker.Doubles(p)));
                    }
                }
            }
            var ourM = FromSteps(new StepTimes(ourWarm, ourTimes.ToArray(), ours.ItemsPerStep), scale);
            var theirM = FromSteps(new StepTimes(theirWarm, theirTimes.ToArray(), theirItems), scale);
            if (ours.Phases is not null) ourM = ourM with { Parts = TrainingParts(ours.Phases().Skip(ourPhaseStart).ToList()) };
            if (theirPhases.Count > 0) theirM = theirM with { Parts = TrainingParts(theirPhases) };
            return (ourM, theirM);
        }
        finally
        {
            ours.Owner.Dispose();
            try { py.Run(new JsonObject { ["kind"] = "close", ["handle"] = handle }); } catch (InvalidOperationException) { }
        }
    }

    static Measurement FromSteps(StepTimes t, double scale = 1)
        => new(t.Throughput * scale, t.RelativeSpread, t.Seconds.Length,
            t.ItemsPerStep / Stats.Quantile(t.Seconds, 0.75) * scale, t.ItemsPerStep / Stats.Quantile(t.Seconds, 0.25) * scale,
            $"median step {t.MedianSeconds * 1000:F1} ms");

    static Measurement FromPython(JsonObject r, double scale = 1, string itemsKey = "items_per_step")
        => FromSteps(new StepTimes(PyTorchWorker.Doubles(r["warmup_s"]), PyTorchWorker.Doubles(r["times_s"]), r[itemsKey]!.GetValue<double>()), scale);

    static Measurement FromTimes(IReadOnlyList<double> seconds, string detail = "")
    {
        double median = Stats.Median(seconds);
        double spread = seconds.Count < 2 ? 0 : (Stats.Quantile(seconds, 0.75) - Stats.Quantile(seconds, 0.25)) / median;
        return new Measurement(median, spread, seconds.Count, Stats.Quantile(seconds, 0.25), Stats.Quantile(seconds, 0.75), detail);
    }

    static Measurement FromPythonTimes(JsonObject r) => FromTimes(PyTorchWorker.Doubles(r["times_s"]));

    static Dictionary<string, double> TrainingParts(IReadOnlyList<double[]> phases) => phases.Count == 0 ? [] : new()
    {
        ["forward"] = Stats.Median(phases.Select(p => p[0]).ToArray()),
        ["backward"] = Stats.Median(phases.Select(p => p[1]).ToArray()),
        ["optimizer"] = Stats.Median(phases.Select(p => p[2]).ToArray()),
    };

    /// <summary>Medians of the numeric fields a load/predict run reported (seconds).</summary>
    static Dictionary<string, double> MedianParts(IEnumerable<JsonObject> reports)
    {
        var all = reports.ToList();
        return all.SelectMany(r => r.Where(kv => kv.Key.EndsWith("_s") && kv.Value is JsonValue v && v.TryGetValue<double>(out _)).Select(kv => kv.Key)).Distinct()
            .ToDictionary(k => k[..^2], k => Stats.Median(all.Where(r => r[k] is not null).Select(r => r[k]!.GetValue<double>()).ToArray()));
    }

    /// <summary>This benchmark executable (apphost or <c>dotnet app.dll</c>) with extra arguments.</summary>
    /// <summary>Wall time from starting a process to its exit (it prints one prediction): one warm-up run, then <paramref name="runs"/>.</summary>
    static Measurement FreshProcessTimes(string[] command, int runs)
    {
        var times = new List<double>();
        var reports = new List<JsonObject>();
        for (int r = 0; r < 1 + runs; r++)
        {
            var run = TimedProcess.Run(command);
            if (run.ExitCode != 0)
                throw new InvalidOperationException($"`{string.Join(' ', command)}` failed ({run.ExitCode}): {run.Output}");
            if (r == 0) continue;
            times.Add(run.Seconds);
            var last = run.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault();
            if (last is not null && last.TrimStart().StartsWith('{') && JsonNode.Parse(last) is JsonObject report) reports.Add(report);
        }
        return FromTimes(times) with { Parts = MedianParts(reports) };
    }

    /// <summary>
    /// The child side of the fresh-process row: <c>load-predict --model ZIP --image IMG [--threads N]</c>. Loads the
    /// saved model in a new MLContext, predicts one image, prints JSON timings.
    /// </summary>
    public static int LoadPredictChild(IReadOnlyList<string> args)
    {
        string? model = null, image = null;
        int threads = 0;
        for (int i = 0; i < args.Count - 1; i += 2)
        {
            switch (args[i])
            {
                case "--model": model = args[i + 1]; break;
                case "--image": image = args[i + 1]; break;
                case "--threads": threads = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
            }
        }
        if (model is null || image is null)
        {
            Console.Error.WriteLine("usage: load-predict --model ZIP --image IMAGE [--threads N]");
            return 2;
        }
        var sinceStart = DateTime.Now - Process.GetCurrentProcess().StartTime;
        // No torch.set_num_threads here: touching TorchSharp would map libtorch even when scoring runs on ONNX Runtime.
        _ = threads;
        var (load, predict, predicted) = LibraryWorkloads.LoadAndPredictOnce(model, image);
        Console.WriteLine(JsonSerializer.Serialize(new
        {
            ok = true, startup_s = sinceStart.TotalSeconds, load_s = load, predict_s = predict, predicted,
            peak_rss_kb = Deployment.DeploymentRunner.ProcStatusKb("VmHWM"), libtorch_mapped = Deployment.DeploymentRunner.LibTorchMapped(),
        }));
        return 0;
    }
}
