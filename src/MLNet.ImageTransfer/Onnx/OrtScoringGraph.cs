using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using System.Text.Json;
using Microsoft.ML.OnnxRuntime;

namespace MLNet.ImageTransfer.Onnx;

/// <summary>
/// A network as ONNX Runtime runs it on this kind of machine: the ONNX graph after all of ONNX Runtime's graph
/// optimisations (BatchNorm folded into convolutions, activations and residual adds fused, convolutions rewritten to
/// MLAS's blocked NCHWc layout with their weights reordered), saved in ONNX Runtime's own format. A saved classifier
/// keeps it beside its ONNX graph, so that loading skips the optimisation (and the protobuf parse: ONNX Runtime reads
/// the weights in place) and a fresh process scores its first image sooner.
/// </summary>
/// <remarks>
/// <para>
/// The layout rewrite depends on the machine: MLAS blocks channels by 8 on x64 with SSE/AVX/AVX2 and by 16 with AVX-512,
/// and a graph blocked for one gives wrong numbers on the other. So the graph is stored with the
/// <see cref="Platform"/> it was made on (ONNX Runtime version, processor architecture, NCHWc block) and used only where
/// that matches exactly; anywhere else the loader optimises the portable ONNX graph as before (correct, slower to load).
/// The block is read from CPUID the way MLAS chooses it (<c>mlas/lib/platform.cpp</c>); where that cannot be decided
/// (AVX-512 in the CPU but hidden from .NET) no platform is reported, and nothing is stored or used.
/// </para>
/// </remarks>
internal static class OrtScoringGraph
{
    /// <summary>The format written by <see cref="Optimize"/>.</summary>
    public const string OrtFormat = "ort";

    /// <summary>The graph optimisation level of the stored graph (ONNX Runtime's "all").</summary>
    public const string AllOptimizations = "all";

    static readonly Lazy<string?> _platform = new(DetectPlatform, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>
    /// What an optimised graph made here is valid for, e.g. <c>onnxruntime 1.32.0; X64; nchwc 8</c>; null where it
    /// cannot be told (then no optimised graph is made or used).
    /// </summary>
    public static string? Platform => _pretend.Value ?? _platform.Value;

    static readonly AsyncLocal<string?> _pretend = new();

    /// <summary>
    /// Tests: until disposed, this asynchronous flow labels the graphs it makes, and checks stored graphs against,
    /// <paramref name="platform"/> instead of the real one (how a file saved on another machine looks here).
    /// </summary>
    internal static IDisposable PretendPlatform(string platform)
    {
        var previous = _pretend.Value;
        _pretend.Value = platform;
        return new Restore(() => _pretend.Value = previous);
    }

    sealed class Restore(Action restore) : IDisposable
    {
        public void Dispose() => restore();
    }

    static int _warming;

    /// <summary>
    /// Starts ONNX Runtime (its native library and environment: about a tenth of a second) and the platform check on
    /// the thread pool, once per process. Called when a model entry of ours starts loading: ML.NET loads the entries
    /// before a classifier's on one thread, so the other core does this meanwhile.
    /// </summary>
    public static void WarmUpInBackground()
    {
        if (Interlocked.Exchange(ref _warming, 1) == 0)
            _ = Task.Run(() =>
            {
                try { _ = _platform.Value; }
                catch (Exception e) when (e is TypeInitializationException or DllNotFoundException or OnnxRuntimeException) { } // reported where ONNX Runtime is used
            });
    }

    static string? DetectPlatform()
    {
        string version = OrtEnv.Instance().GetVersionString();
        var architecture = RuntimeInformation.ProcessArchitecture;
        return architecture switch
        {
            Architecture.X64 or Architecture.X86 => NchwcBlockX86() is { } block ? $"onnxruntime {version}; {architecture}; nchwc {block}" : null,
            // MLAS's ARM NCHWc block (if the build has NCHWc there) is a compile-time constant of the ONNX Runtime build.
            Architecture.Arm64 => $"onnxruntime {version}; {architecture}",
            _ => null,
        };
    }

    /// <summary>MLAS's NCHWc block on x86: 16 where AVX-512F is in the CPU and enabled by the OS, else 8; null when unknown.</summary>
    static int? NchwcBlockX86()
    {
        if (!X86Base.IsSupported) return null;
        if (X86Base.CpuId(0, 0).Eax < 7) return 8;
        bool cpuHasAvx512F = (X86Base.CpuId(7, 0).Ebx & (1 << 16)) != 0;
        if (!cpuHasAvx512F) return 8;
        // MLAS also requires the OS to save the AVX-512 state (XCR0), which .NET checks too; but .NET reports false as
        // well when its own use of AVX-512 is turned off (DOTNET_EnableAVX512F=0), so false cannot be told apart.
        return Avx512F.IsSupported ? 16 : null;
    }

    /// <summary>
    /// Optimises <paramref name="onnx"/> (all levels) for this platform and returns it in ORT format, or null where
    /// <see cref="Platform"/> is unknown.
    /// </summary>
    public static byte[]? Optimize(byte[] onnx)
    {
        ArgumentNullException.ThrowIfNull(onnx);
        if (Platform is null) return null;
        var path = Path.Combine(Path.GetTempPath(), $"mlnet-imagetransfer-{Guid.NewGuid():N}.ort");
        try
        {
            using (var options = OnnxImageModel.CreateSessionOptions(intraOpThreads: 1))
            {
                options.GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL;
                options.OptimizedModelFilePath = path;
                options.AddSessionConfigEntry("session.save_model_format", "ORT");
                // ONNX Runtime warns that a graph with NCHWc layout is hardware-specific: that is what Platform records.
                options.LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR;
                using var _ = new InferenceSession(onnx, options);
            }
            return File.ReadAllBytes(path);
        }
        finally
        {
            try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>Whether a stored graph described by <paramref name="info"/> can run here.</summary>
    public static bool IsUsable(OrtScoringGraphInfo info)
        => info.Format == OrtFormat && info.Optimization == AllOptimizations && Platform is { } here && info.Platform == here;
}

/// <summary>
/// The description saved with an optimised graph (<c>scoring.json</c>): its format, optimisation level and platform.
/// Read with <see cref="JsonDocument"/> (a scoring process's start-up should not pay for the reflection serializer).
/// </summary>
internal sealed record OrtScoringGraphInfo(string Format, string Optimization, string Platform)
{
    /// <summary>The description of a graph made here by <see cref="OrtScoringGraph.Optimize"/>.</summary>
    public static OrtScoringGraphInfo ForThisPlatform() => new(OrtScoringGraph.OrtFormat, OrtScoringGraph.AllOptimizations,
        OrtScoringGraph.Platform ?? throw new InvalidOperationException("No optimised graph can be made on this platform."));

    public void Write(Stream stream)
    {
        using var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        writer.WriteStartObject();
        writer.WriteString(nameof(Format), Format);
        writer.WriteString(nameof(Optimization), Optimization);
        writer.WriteString(nameof(Platform), Platform);
        writer.WriteEndObject();
    }

    /// <summary>Reads a description; unknown or missing fields give one that <see cref="OrtScoringGraph.IsUsable"/> refuses.</summary>
    public static OrtScoringGraphInfo Read(Stream stream)
    {
        using var document = JsonDocument.Parse(stream);
        string Field(string name) => document.RootElement.ValueKind == JsonValueKind.Object
            && document.RootElement.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString()! : "";
        return new OrtScoringGraphInfo(Field(nameof(Format)), Field(nameof(Optimization)), Field(nameof(Platform)));
    }
}
