using System.Globalization;

namespace MLNet.ImageTransfer.Benchmarks.Compare;

/// <summary>
/// The notes under the table: for every ratio below 1.0, why, and what would fix it; and what the rows mean together
/// (the data pipeline against what training consumes, ONNX Runtime against TorchSharp).
/// </summary>
/// <remarks>
/// The causes quoted here were isolated on the benchmark machine (2-core AMD EPYC VM, Debian 12) with small
/// experiments run while no other process was busy (minimum of 20–30 runs each, both sides back to back); the run's
/// own numbers (phase split of training steps, load/start-up split) are filled in from the row.
/// </remarks>
public static class Explanations
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>Rows with the same cause share a note.</summary>
    public static string KeyOf(CompareRow r)
    {
        if (r.IsTie) return "noise";
        return r.Kind switch
        {
            RowKind.Pipeline => r.Name.StartsWith("Augment", StringComparison.Ordinal) ? "augment" : "pipeline",
            RowKind.EndToEnd => "e2e",
            RowKind.LoadPredict => r.Name.Contains("fresh", StringComparison.Ordinal) ? "fresh" : "load",
            RowKind.Gemm => "gemm",
            RowKind.Train => "train",
            RowKind.Inference or RowKind.Onnx => "infer-" + r.Kind,
            _ => r.Kind.ToString(),
        };
    }

    // Evidence gathered separately (see remarks): quoted, not re-measured, by every run.
    const string AllocatorEvidence =
        "Our side runs with the library's glibc malloc tuning (Engine/NativeAllocator.cs; the trainers apply it, so does this runner): without it, large steps were "
        + "page-fault bound on both sides — densenet121 224² b32 training took 0.96 M (ours) and 1.7 M (PyTorch) minor faults per step, and the step 8.1 s (ours) and 9.0 s (PyTorch); "
        + "with it, 5.8 s (PyTorch with the same setting through GLIBC_TUNABLES: 5.1 s). That is why the 224² b32 rows favour us against PyTorch's defaults";
    const string InPlaceEvidence =
        "Single kernels are not the cause: the convolutions of these networks' shapes (1×1, 3×3, strided, the 7×7 stem) run within ±5% of PyTorch 1.13's, "
        + "and TorchSharp's per-call overhead is 1–2 µs (PyTorch: 1 µs) against milliseconds per layer; max-pooling is the exception, 25% slower in libtorch 2.10 "
        + "(2.5 vs 2.0 ms for the ResNet/DenseNet stem at 64²). What remains is memory traffic: our modules allocate a fresh tensor for every ReLU and residual add, "
        + "where torchvision works in place — one more allocation and one more full pass over each activation per layer, which shows most where layers are many and small "
        + "(inference, DenseNet, 64²)";
    const string InPlaceFix = "make the modules' ReLU and residual adds in place, as torchvision's are (autograd allows it after BatchNorm and convolutions)";

    public static string For(IReadOnlyList<CompareRow> rows)
    {
        var r = rows[0];
        switch (KeyOf(r))
        {
            case "noise":
                return "within this run's noise: the gap is under 10% and the two sides' interquartile ranges of step times overlap, so these rows are a tie, not a loss. "
                    + "A quieter machine and more timed steps would settle them.";
            case "train":
                return PhaseSummary(rows) + " " + AllocatorEvidence + ". " + InPlaceEvidence + ". Fix: " + InPlaceFix + ".";
            case "infer-Inference":
                return InPlaceEvidence + ". Fix: " + InPlaceFix + ". For scoring this gap does not apply: a saved model scores on ONNX Runtime, faster than both (rows with \"via ONNX Runtime\" and the ORT ÷ TorchSharp line below).";
            case "infer-Onnx":
                return "ONNX Runtime's CPU provider is slower than PyTorch's oneDNN path for these shapes with 2 threads (it loses to our own TorchSharp rows too, see the ORT ÷ TorchSharp line below). "
                    + "Fix: keep TorchSharp for batch scoring here; ORT's advantage is deployment (no libtorch), not speed on this CPU.";
            case "pipeline":
                return "our path decodes one image at a time on one thread in ML.NET's row cursor: `LoadImagesRobust` (SkiaSharp's codec, EXIF orientation, the decompression-bomb guard), "
                    + "then `ImageTensors.ToResizedBytes` copies the pixels to float, composites alpha over white (even for opaque JPEGs), and resizes with libtorch's antialiased interpolate; "
                    + "PIL decodes and resizes uint8 in C, and DataLoader's workers run it in parallel. "
                    + "Fix: decode rows in parallel ahead of the cursor (bounded), resize uint8 pixels in SkiaSharp before making a tensor, and skip compositing for opaque images. "
                    + "The trainer caches the resized images, so this is paid once per run, not once per epoch (see the pipeline-vs-training line below).";
            case "e2e":
                return "before the first step our epoch decodes every image twice: the folder scan verifies each file by decoding it (in parallel, so that broken files are skipped "
                    + "with a report before training), then the trainer decodes it again, on one thread, into its cache of resized images; PyTorch decodes lazily in two DataLoader workers "
                    + "that overlap the training. Fix: keep the verified decode's result for the cache (one decode per image) and the pipeline fixes above.";
            case "load":
                return Parts(r) + "Our load reads the .zip (the network stored once as a Deflate-compressed ONNX graph with unfolded BatchNorm, 94 MB for resnet50) and creates an "
                    + "ONNX Runtime session with all graph optimisations, which folds the BatchNorms and rewrites the graph at every load; PyTorch's is `torch.load` of a .pth "
                    + "and `load_state_dict` into a freshly built torchvision model. The split between reading and session creation was not measured in this run. "
                    + "Fix: keep the ORT-optimised graph (SessionOptions.OptimizedModelFilePath) beside the stored one, or cache it on first load, and store the entry uncompressed.";
            case "fresh":
                return Parts(r) + "Besides the load above, a fresh .NET process pays runtime start-up and JIT of ML.NET, ONNX Runtime's managed API and our code "
                    + "(libtorch is not loaded: the saved model scores on ONNX Runtime); Python's start-up imports precompiled bytecode. Fix: ReadyToRun (or Native AOT for the CLI) and the load fixes above.";
            default:
                return "slower than PyTorch here; no specific cause established.";
        }
    }

    /// <summary>"forward 120/100 ms, backward …": where the training rows' gap is.</summary>
    static string PhaseSummary(IReadOnlyList<CompareRow> rows)
    {
        var parts = new List<string>();
        var totals = new Dictionary<string, double>();
        foreach (var r in rows)
        {
            var ours = r.OurResult?.Parts;
            var theirs = r.TheirResult?.Parts;
            if (ours is null || theirs is null || ours.Count == 0 || theirs.Count == 0) continue;
            foreach (var phase in new[] { "forward", "backward", "optimizer" })
                if (ours.TryGetValue(phase, out var a) && theirs.TryGetValue(phase, out var b))
                    totals[phase] = totals.GetValueOrDefault(phase) + (a - b) / (ours.Values.Sum());
        }
        if (totals.Count == 0) return "";
        var worst = totals.OrderByDescending(kv => kv.Value).First();
        var order = string.Join(", ", totals.OrderByDescending(kv => kv.Value).Select(kv => $"{kv.Key} {kv.Value / rows.Count * 100:+0;-0}%"));
        return $"By phase (table above; our time minus PyTorch's, as a share of our step, averaged over these rows): {order} — the gap is mostly in the {worst.Key}.";
    }

    static string Parts(CompareRow r)
    {
        static string Fmt(IReadOnlyDictionary<string, double> p) => string.Join(", ", p.Select(kv => $"{kv.Key} {kv.Value.ToString("F2", Inv)} s"));
        if (r.OurResult?.Parts is not { Count: > 0 } ours || r.TheirResult?.Parts is not { Count: > 0 } theirs) return "";
        return $"Split (medians): ours {Fmt(ours)}; PyTorch {Fmt(theirs)}. ";
    }

    /// <summary>Lines that relate rows to each other: what the data pipeline delivers against what training consumes; ORT against TorchSharp.</summary>
    public static IEnumerable<string> General(ResultsReport report)
    {
        foreach (var size in report.Rows.Where(r => r.Kind == RowKind.Pipeline).Select(r => r.ImageSize).Distinct())
        {
            // Decoding rows only: the augmentation row reads the trainer's decoded cache, not the JPEG folder.
            static bool Decodes(CompareRow r) => r.Kind == RowKind.Pipeline && !r.Name.StartsWith("Augment", StringComparison.Ordinal);
            var ours = report.Rows.Where(r => Decodes(r) && r.ImageSize == size && r.OurResult is not null).Select(r => r.OurResult!.Value).DefaultIfEmpty().Max();
            var theirs = report.Rows.Where(r => Decodes(r) && r.ImageSize == size && r.TheirResult is not null)
                .Select(r => (r.TheirSetup, r.TheirResult!.Value)).ToList();
            var consumers = report.Rows.Where(r => r.Kind == RowKind.Train && r.ImageSize == size && r.OurResult is not null)
                .GroupBy(r => r.Architecture).Select(g => (Arch: g.Key, Rate: g.Max(r => r.OurResult!.Value))).ToList();
            if (ours == 0 || consumers.Count == 0) continue;
            string rates = string.Join(", ", consumers.OrderByDescending(c => c.Rate).Select(c => $"{c.Arch} {c.Rate.ToString("F1", Inv)}"));
            double hungriest = consumers.Max(c => c.Rate);
            yield return $"**Data pipeline vs training at {size}²:** our decode+resize+normalise delivers {ours:F0} img/s on one thread (PyTorch: "
                + string.Join(", ", theirs.Select(t => $"{t.Value:F0} img/s with {t.TheirSetup}")) + $"); our training consumes (best batch) {rates} img/s. "
                + (hungriest < ours
                    ? $"The pipeline is {ours / hungriest:F1}× faster than the hungriest model, so it never starves training — and our trainer decodes each image once per run, not once per epoch."
                    : $"The pipeline is slower than the hungriest model ({consumers.MaxBy(c => c.Rate).Arch}), so a first epoch at this size is decode-bound; later epochs read the trainer's cache of resized images.");
        }
        var gemm = report.Rows.FirstOrDefault(r => r.Kind == RowKind.Gemm && r.OurResult is not null && r.TheirResult is not null);
        if (gemm is not null)
            yield return $"**BLAS on the PyTorch side:** Debian's python3-torch uses the system `libblas.so.3`, here the reference BLAS (row #{report.Rows.ToList().IndexOf(gemm) + 1}: "
                + $"{gemm.TheirResult!.Value:F1} GFLOP/s against {gemm.OurResult!.Value:F1} through TorchSharp's oneMKL). Convolutions go through oneDNN on both sides and are unaffected, "
                + "but fully connected layers are not: VGG-16's classifier (123 M multiply-accumulates per image, 25088→4096→4096→K) dominates PyTorch's VGG rows, hence their large ratios. "
                + "With OpenBLAS installed (`apt-get install libopenblas0-pthread`, which takes over the libblas.so.3 alternative; not done on this shared machine) the VGG rows would move toward the ResNet/DenseNet ones.";
        if (report.OrtUnavailable is not null)
        {
            yield return $"**ORT vs TorchSharp inference:** TODO — no rows in this run: {report.OrtUnavailable}. "
                + "DESIGN.md §3 records ONNX Runtime at 1.33× TorchSharp's inference speed for resnet18.";
            yield break;
        }
        var pairs = report.Rows.Where(r => r.Kind == RowKind.Onnx && r.OurResult is not null)
            .Select(ort => (Ort: ort, Torch: report.Rows.FirstOrDefault(t => t.Kind == RowKind.Inference && t.Architecture == ort.Architecture
                && t.ImageSize == ort.ImageSize && t.BatchSize == ort.BatchSize && t.OurResult is not null)))
            .Where(p => p.Torch is not null).ToList();
        if (pairs.Count > 0)
            yield return "**ORT vs TorchSharp inference** (same network and weights layout, same threads; ONNX Runtime img/s ÷ TorchSharp img/s, from the rows above): "
                + string.Join(", ", pairs.Select(p => $"{p.Ort.Architecture} {p.Ort.ImageSize}² b{p.Ort.BatchSize} {(p.Ort.OurResult!.Value / p.Torch!.OurResult!.Value).ToString("F2", Inv)}")) + ".";
    }
}
