using System.Globalization;
using System.Text;
using System.Text.Json;
using MLNet.ImageTransfer.Benchmarks.Infrastructure;

namespace MLNet.ImageTransfer.Benchmarks.Compare;

/// <summary>Renders a run as benchmarks/RESULTS.md (and the raw numbers as JSON).</summary>
public sealed record ResultsReport
{
    public required CompareOptions Options { get; init; }
    public required IReadOnlyList<CompareRow> Rows { get; init; }
    public required IReadOnlyList<string> Skipped { get; init; }
    public required CompareRunner.PeakGemm Peak { get; init; }
    public required CompareRunner.PeakGemm PeakAfter { get; init; }
    public required IReadOnlyList<(string Key, string Value)> Machine { get; init; }
    public required string PyTorch { get; init; }
    public required DateTimeOffset Started { get; init; }
    public required TimeSpan Duration { get; init; }
    public required string LoadBefore { get; init; }
    public required string LoadAfter { get; init; }
    public required IReadOnlyList<(string Architecture, long Counted, double Published)> FlopCheck { get; init; }
    public required TimingRule Rule { get; init; }
    public required string Dataset { get; init; }
    public required string CommandLine { get; init; }
    public string? OrtUnavailable { get; init; }
    public string OrtVersion { get; init; } = "";
    /// <summary>Set while the run is still going (or was interrupted): how far it got.</summary>
    public string? Partial { get; init; }

    /// <summary>The peak that utilisation is relative to: the best GEMM rate measured in this run (start or end).</summary>
    public double PeakGflops => Math.Max(Peak.Best, PeakAfter.Best);

    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public string ToMarkdown()
    {
        var sb = new StringBuilder();
        sb.AppendLine("# Benchmarks: MLNet.ImageTransfer (TorchSharp) vs PyTorch on the same machine");
        sb.AppendLine();
        sb.AppendLine($"Produced in one run by `{CommandLine}` on {Started:yyyy-MM-dd HH:mm zzz} ({Duration.TotalMinutes:F0} min). Do not edit by hand: rerun it.");
        if (Options.Quick) sb.AppendLine("**Quick run** (small images, batch 8, short timing): for checking the harness, not for quoting.");
        if (Partial is not null) sb.AppendLine($"**Incomplete run** ({Partial}): the run was still going or was interrupted.");
        sb.AppendLine();
        sb.AppendLine("## Machine");
        sb.AppendLine();
        foreach (var (k, v) in Machine) sb.AppendLine($"- **{k}**: {v}");
        sb.AppendLine($"- **PyTorch side**: {PyTorch}");
        sb.AppendLine($"- **Peak fp32 GEMM through libtorch** (the physical limit used for MFU): **{PeakGflops:F1} GFLOP/s** "
            + $"(TorchSharp's libtorch/oneMKL, square n×n·n×n, fastest step per size: {string.Join(", ", Peak.BySize.Select(p => $"n={p.Key} {p.Value:F1}"))} at the start; "
            + $"{string.Join(", ", PeakAfter.BySize.Select(p => $"n={p.Key} {p.Value:F1}"))} at the end).");
        var others = Rows.Where(r => !double.IsNaN(r.OthersCpu)).Select(r => r.OthersCpu).ToArray();
        sb.AppendLine($"- **Load**: /proc/loadavg {LoadBefore} before, {LoadAfter} after (the benchmark itself adds about {Options.Threads}). "
            + (others.Length > 0 ? $"Other processes' share of the CPUs while rows ran: median {Stats.Median(others):P0}, max {others.Max():P0} (last column). " : "")
            + $"Before each row the runner waited until other processes used under {Options.QuietThreshold:P0} of the CPUs (at most {Options.MaxWaitSeconds:F0} s; {Rows.Sum(r => r.WaitedSeconds) / 60:F1} min in all), "
            + $"and measured a row again when they took over {Options.RetryAbove:P0} while it ran ({Rows.Count(r => r.Attempts > 1)} rows; the less disturbed attempt is kept).");
        sb.AppendLine();

        sb.AppendLine("## Results");
        sb.AppendLine();
        sb.AppendLine("Ratio = ours ÷ PyTorch as a speed: throughput ÷ throughput, or PyTorch's time ÷ our time for rows in seconds. **Above 1.0 we are faster.** "
            + "MFU = model FLOP/s achieved ÷ the peak GEMM rate above (training: 6 × MACs per image, inference: 2 × MACs). "
            + "Noise = interquartile range ÷ median, ours / PyTorch. Others' CPU = share of the machine used by other processes during the row.");
        sb.AppendLine();
        sb.AppendLine("| # | Benchmark | Unit | Ours | PyTorch | Ratio | MFU ours | MFU PyTorch | Noise | Others' CPU |");
        sb.AppendLine("|--:|---|---|--:|--:|--:|--:|--:|--:|--:|");
        for (int i = 0; i < Rows.Count; i++)
        {
            var r = Rows[i];
            string ratio = double.IsNaN(r.Ratio) ? "—" : r.Ratio < 1 ? $"**{r.Ratio:F2}**" : $"{r.Ratio:F2}";
            string mfuOurs = "", mfuTheirs = "";
            if (r.FlopPerItem > 0)
            {
                mfuOurs = Mfu(r.OurResult, r.FlopPerItem);
                mfuTheirs = Mfu(r.TheirResult, r.FlopPerItem);
            }
            string noise = r.OurResult is null || r.TheirResult is null ? "" : $"{r.OurResult.Spread:P0} / {r.TheirResult.Spread:P0}";
            string name = r.Error is null ? r.Name : $"{r.Name} (failed: {FirstLine(r.Error)})";
            sb.AppendLine($"| {i + 1} | {name} | {r.Unit} | {Num(r.OurResult?.Value)} | {Num(r.TheirResult?.Value)} | {ratio} | {mfuOurs} | {mfuTheirs} | {noise} | {(double.IsNaN(r.OthersCpu) ? "" : r.OthersCpu.ToString("P0", Inv))} |");
        }
        sb.AppendLine();

        var trainRows = Rows.Select((r, i) => (Row: r, Index: i + 1))
            .Where(x => x.Row.Kind == RowKind.Train && x.Row.OurResult?.Parts.Count > 0 && x.Row.TheirResult?.Parts.Count > 0).ToList();
        if (trainRows.Count > 0)
        {
            sb.AppendLine("Training step by phase, median milliseconds, ours / PyTorch (forward includes the loss; optimizer = Adam step + zero_grad):");
            sb.AppendLine();
            sb.AppendLine("| # | Benchmark | Forward | Backward | Optimizer |");
            sb.AppendLine("|--:|---|--:|--:|--:|");
            foreach (var (r, i) in trainRows)
                sb.AppendLine($"| {i} | {r.Name} | {Part(r, "forward")} | {Part(r, "backward")} | {Part(r, "optimizer")} |");
            sb.AppendLine();
        }

        sb.AppendLine("## Notes");
        sb.AppendLine();
        var below = Rows.Select((r, i) => (Row: r, Index: i + 1)).Where(x => x.Row.Ratio < 1).ToList();
        if (below.Count == 0) sb.AppendLine("No ratio is below 1.0.");
        foreach (var group in below.GroupBy(x => Explanations.KeyOf(x.Row)))
        {
            var numbers = string.Join(", ", group.Select(x => $"#{x.Index}"));
            sb.AppendLine($"- **Rows {numbers}** (ratio {string.Join(", ", group.Select(x => x.Row.Ratio.ToString("F2", Inv)))}): {Explanations.For(group.Select(x => x.Row).ToList())}");
        }
        sb.AppendLine();
        foreach (var line in Explanations.General(this)) sb.AppendLine("- " + line);
        sb.AppendLine();

        var retried = Rows.Select((r, i) => (Row: r, Index: i + 1)).Where(x => x.Row.FirstAttemptError is not null).ToList();
        if (retried.Count > 0)
        {
            sb.AppendLine("**Rows whose first attempt failed** (the table shows the second):");
            sb.AppendLine();
            foreach (var (r, i) in retried) sb.AppendLine($"- #{i} {r.Name}: {FirstLine(r.FirstAttemptError!)}");
            sb.AppendLine();
        }

        if (Skipped.Count > 0)
        {
            sb.AppendLine("**Skipped rows**:");
            sb.AppendLine();
            foreach (var s in Skipped) sb.AppendLine($"- {s}");
            sb.AppendLine();
        }

        sb.AppendLine("## Method");
        sb.AppendLine();
        sb.AppendLine($"- Both sides run in one invocation, row by row; the PyTorch side is a long-lived "
            + $"`{Path.GetFileName(Options.Python)} benchmarks/pytorch_reference.py --worker` process (idle while ours runs), ours runs in the runner's process. "
            + "Rows alternate which side goes first.");
        sb.AppendLine($"- Step rows (GEMM, training, inference, ONNX Runtime): both sides build their step and run {Rule.Warmup} untimed warm-up steps; each side then runs as many timed steps "
            + $"as fill about {Rule.TargetSeconds:0.#} s by its own warm-up estimate (at least {Rule.MinIterations}, at most {Rule.MaxIterations}), split into 4 rounds that alternate between the sides "
            + "(ours, PyTorch, PyTorch, ours, …) so that both sample the same stretch of machine time; the table shows images per second at the **median** step. "
            + "Training step = train mode, forward, cross-entropy, backward, Adam (lr 1e-4) step + zero_grad on a fixed random batch, 10 classes; inference = eval mode, no_grad, forward. "
            + "Models: ours are the library's TorchSharp modules, PyTorch's are torchvision's classes (same layers and state_dict keys).");
        sb.AppendLine($"- Data: {Dataset}. Pipeline rows: ours = the library's `LoadImagesRobust` (ML.NET image column, SkiaSharp decode) + its `torchvision` preset geometry (resize shorter side to size/0.875, centre crop) "
            + "cached as uint8 (what the trainer does once), then batches stacked and normalised; PyTorch = `torchvision.datasets.ImageFolder` with `Resize`, `CenterCrop`, `ToTensor`, `Normalize` "
            + "through a `DataLoader` (batch 32). One untimed pass, then the median pass.");
        sb.AppendLine("- End-to-end rows: one epoch from the JPEG folder, model construction included, no validation; ours = `ImageClassificationWorkflow.TrainFromFolder` (what `train --data DIR` runs), "
            + "PyTorch = `ImageFolder` + `DataLoader(shuffle=True, num_workers=2)` + the same loop with Adam (lr 1e-3). One untimed epoch, then the median.");
        sb.AppendLine("- Load + first prediction: ours = new `MLContext`, `ImageClassificationWorkflow.LoadModel` of the saved ML.NET .zip (JSON + ONNX graph, scored on ONNX Runtime without libtorch), `Predict` one JPEG; "
            + "PyTorch = `torchvision.models.resnet50(num_classes=4)`, `load_state_dict(torch.load(.pth))`, PIL + transforms, one forward. "
            + "The fresh-process row times the whole process (runtime start, imports/native library loading, load, predict) from outside.");
        sb.AppendLine("- FLOP counts: multiply-accumulates of convolutions and fully connected layers (torchvision's \"GFLOPS\" convention), counted by forward hooks on our modules; "
            + "at 224² with 1000 classes they equal the published numbers: "
            + string.Join(", ", FlopCheck.Select(f => $"{f.Architecture} {f.Counted / 1e9:F2} G counted / {f.Published / 1e9:F2} G published")) + ".");
        sb.AppendLine(OrtUnavailable is null
            ? $"- ONNX Runtime rows: our network exported by the library's ONNX exporter (normalised input, BatchNorm folded), run by Microsoft.ML.OnnxRuntime {OrtVersion} "
              + "(CPU provider, all graph optimisations, the same intra-op threads, 1 inter-op thread), against the same PyTorch eager inference as the TorchSharp rows."
            : $"- No ONNX Runtime rows: {OrtUnavailable}.");
        sb.AppendLine("- MFU can pass 100% where a library computes a layer with fewer multiplications than the nominal count (Winograd 3×3 convolutions in oneDNN and ONNX Runtime), "
            + "and where the peak GEMM of this run came out low; it is a utilisation estimate against one measured GEMM rate, not a hardware counter.");
        sb.AppendLine();
        sb.AppendLine("Reproduce (Debian 12, .NET 10 SDK, `apt-get install python3-torch python3-torchvision`):");
        sb.AppendLine();
        sb.AppendLine("```bash");
        sb.AppendLine("dotnet run -c Release --project benchmarks/MLNet.ImageTransfer.Benchmarks -- compare           # this table (about 30 min on 2 cores)");
        sb.AppendLine("dotnet run -c Release --project benchmarks/MLNet.ImageTransfer.Benchmarks -- compare --quick   # harness check (a few minutes)");
        sb.AppendLine("```");
        return sb.ToString();
    }

    static string FirstLine(string text) => text.Split('\n')[0].Trim();

    static string Part(CompareRow r, string name)
        => r.OurResult!.Parts.TryGetValue(name, out var a) && r.TheirResult!.Parts.TryGetValue(name, out var b)
            ? $"{a * 1000:F0} / {b * 1000:F0}" : "";

    string Mfu(Measurement? m, double flopPerItem)
        => m is null ? "" : (m.Value * flopPerItem / (PeakGflops * 1e9)).ToString("P1", Inv);

    static string Num(double? v) => v is null ? "—" : v.Value.ToString(v.Value >= 100 ? "F0" : v.Value >= 10 ? "F1" : v.Value >= 1 ? "F2" : "F3", Inv);

    public string ToJson() => JsonSerializer.Serialize(new
    {
        started = Started,
        duration_s = Duration.TotalSeconds,
        command = CommandLine,
        load_before = LoadBefore,
        load_after = LoadAfter,
        peak_gflops = PeakGflops,
        peak_start = Peak.BySize,
        peak_end = PeakAfter.BySize,
        machine = Machine.ToDictionary(m => m.Key, m => m.Value),
        pytorch = PyTorch,
        rule = Rule,
        options = new { quick = Options.Quick, threads = Options.Threads, python = Options.Python, quiet = Options.QuietThreshold, max_wait_s = Options.MaxWaitSeconds, retry_above = Options.RetryAbove },
        flop_check = FlopCheck.Select(f => new { architecture = f.Architecture, counted_macs = f.Counted, published_macs = f.Published }),
        dataset = Dataset,
        ort_unavailable = OrtUnavailable,
        ort_version = OrtVersion,
        partial = Partial,
        rows = Rows.Select(r => new
        {
            r.Name, kind = r.Kind.ToString(), r.Architecture, r.ImageSize, r.BatchSize, r.Unit, r.HigherIsBetter, their_setup = r.TheirSetup,
            ours = r.OurResult, pytorch = r.TheirResult, ratio = double.IsNaN(r.Ratio) ? (double?)null : r.Ratio,
            flop_per_item = r.FlopPerItem, others_cpu = double.IsNaN(r.OthersCpu) ? (double?)null : r.OthersCpu,
            load_average_at_start = r.LoadAverageAtStart, started = r.StartedAt, wall_s = r.WallSeconds, waited_s = r.WaitedSeconds, attempts = r.Attempts, error = r.Error,
            first_attempt_error = r.FirstAttemptError,
        }),
        skipped = Skipped,
    }, new JsonSerializerOptions { WriteIndented = true });

    /// <summary>
    /// Rebuilds a report from the JSON a run wrote (<c>compare --render RESULTS.json</c>): the same run's numbers, with
    /// the current notes and layout. Nothing is measured.
    /// </summary>
    public static ResultsReport FromJson(string json)
    {
        var root = System.Text.Json.Nodes.JsonNode.Parse(json)!.AsObject();
        static double D(System.Text.Json.Nodes.JsonNode? n) => n is null ? double.NaN : n.GetValue<double>();
        static string S(System.Text.Json.Nodes.JsonNode? n) => n?.GetValue<string>() ?? "";
        static Measurement? M(System.Text.Json.Nodes.JsonNode? n) => n is null ? null
            : new Measurement(D(n["Value"]), D(n["Spread"]), n["Samples"]!.GetValue<int>(), D(n["Low"]), D(n["High"]), S(n["Detail"]))
            {
                Parts = n["Parts"]?.AsObject().ToDictionary(kv => kv.Key, kv => kv.Value!.GetValue<double>()) ?? [],
            };
        static Dictionary<int, double> Peak(System.Text.Json.Nodes.JsonNode? n) => n?.AsObject().ToDictionary(kv => int.Parse(kv.Key, Inv), kv => kv.Value!.GetValue<double>()) ?? [];
        var o = root["options"]!;
        var options = new CompareOptions
        {
            Quick = o["quick"]!.GetValue<bool>(), Threads = o["threads"]!.GetValue<int>(), Python = S(o["python"]),
            QuietThreshold = D(o["quiet"]), MaxWaitSeconds = D(o["max_wait_s"]), RetryAbove = D(o["retry_above"]),
        };
        var rule = root["rule"]!;
        var rows = root["rows"]!.AsArray().Select(n => new CompareRow
        {
            Kind = Enum.Parse<RowKind>(S(n!["kind"])), Name = S(n["Name"]), Architecture = S(n["Architecture"]),
            ImageSize = n["ImageSize"]!.GetValue<int>(), BatchSize = n["BatchSize"]!.GetValue<int>(), Unit = S(n["Unit"]),
            HigherIsBetter = n["HigherIsBetter"]!.GetValue<bool>(), TheirSetup = S(n["their_setup"]), FlopPerItem = D(n["flop_per_item"]),
            Ours = () => throw new InvalidOperationException("rendering only"), Theirs = () => throw new InvalidOperationException("rendering only"),
            OurResult = M(n["ours"]), TheirResult = M(n["pytorch"]), OthersCpu = D(n["others_cpu"]),
            LoadAverageAtStart = S(n["load_average_at_start"]), StartedAt = n["started"]!.GetValue<DateTimeOffset>(), WallSeconds = D(n["wall_s"]),
            WaitedSeconds = D(n["waited_s"]), Attempts = n["attempts"]!.GetValue<int>(), Error = n["error"]?.GetValue<string>(),
            FirstAttemptError = n["first_attempt_error"]?.GetValue<string>(),
        }).ToList();
        var start = Peak(root["peak_start"]);
        var end = Peak(root["peak_end"]);
        return new ResultsReport
        {
            Options = options,
            Rows = rows,
            Skipped = root["skipped"]!.AsArray().Select(n => S(n)).ToList(),
            Peak = new CompareRunner.PeakGemm(start.Values.DefaultIfEmpty(0).Max(), start),
            PeakAfter = new CompareRunner.PeakGemm(end.Values.DefaultIfEmpty(0).Max(), end),
            Machine = root["machine"]!.AsObject().Select(kv => (kv.Key, S(kv.Value))).ToList(),
            PyTorch = S(root["pytorch"]),
            Started = root["started"]!.GetValue<DateTimeOffset>(),
            Duration = TimeSpan.FromSeconds(D(root["duration_s"])),
            LoadBefore = S(root["load_before"]),
            LoadAfter = S(root["load_after"]),
            FlopCheck = root["flop_check"]!.AsArray().Select(n => (S(n!["architecture"]), n["counted_macs"]!.GetValue<long>(), D(n["published_macs"]))).ToList(),
            Rule = new TimingRule(rule["Warmup"]!.GetValue<int>(), rule["MinIterations"]!.GetValue<int>(), rule["MaxIterations"]!.GetValue<int>(), D(rule["TargetSeconds"])),
            Dataset = S(root["dataset"]),
            CommandLine = S(root["command"]),
            OrtUnavailable = root["ort_unavailable"]?.GetValue<string>(),
            OrtVersion = S(root["ort_version"]),
            Partial = root["partial"]?.GetValue<string>(),
        };
    }
}
