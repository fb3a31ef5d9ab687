using System.Reflection;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using TorchSharp;

namespace MLNet.ImageTransfer.Benchmarks.Compare;

/// <summary>The machine and library versions printed at the top of RESULTS.md.</summary>
public static class MachineInfo
{
    public static IReadOnlyList<(string Key, string Value)> Describe(int threads)
    {
        var cpuinfo = ReadOr("/proc/cpuinfo", "");
        string Field(string name) => cpuinfo.Split('\n').Where(l => l.StartsWith(name, StringComparison.Ordinal))
            .Select(l => l[(l.IndexOf(':') + 1)..].Trim()).FirstOrDefault() ?? "?";
        var flags = Field("flags").Split(' ');
        string simd = string.Join(" ", new[] { "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile" }.Where(flags.Contains));
        bool vm = flags.Contains("hypervisor");
        string mem = ReadOr("/proc/meminfo", "").Split('\n').FirstOrDefault(l => l.StartsWith("MemTotal"))?.Split(' ', StringSplitOptions.RemoveEmptyEntries) is { Length: >= 2 } m
            ? $"{double.Parse(m[1]) / 1024 / 1024:F1} GiB" : "?";
        string os = ReadOr("/etc/os-release", "").Split('\n').FirstOrDefault(l => l.StartsWith("PRETTY_NAME="))?[12..].Trim('"') ?? RuntimeInformation.OSDescription;
        return
        [
            ("CPU", $"{Field("model name")} (family {Field("cpu family")}, model {Field("model")}, {Field("cpu MHz")} MHz{(vm ? ", virtual machine" : "")}); SIMD: {simd}"),
            ("Cores / threads used", $"{Environment.ProcessorCount} logical cores; both sides run {threads} intra-op threads (torch.set_num_threads({threads})), 1 inter-op thread"),
            ("Memory", mem),
            ("OS", $"{os}, kernel {ReadOr("/proc/sys/kernel/osrelease", "?").Trim()}"),
            (".NET", RuntimeInformation.FrameworkDescription + $" ({RuntimeInformation.ProcessArchitecture}), Server GC: {System.Runtime.GCSettings.IsServerGC}"),
            ("glibc malloc (our side)", global::MLNet.ImageTransfer.Engine.NativeAllocator.IsTuned
                ? "tuned by the library as its trainers do (M_MMAP_MAX 0, M_TRIM_THRESHOLD max: freed activations stay in the process); the PyTorch side runs with glibc's defaults"
                : "glibc's defaults (the library's tuning was off or unavailable)"),
            ("TorchSharp", $"{Version(typeof(torch).Assembly)} with libtorch {PackageVersion("libtorch-cpu-linux-x64") ?? PackageVersion("libtorch-cpu") ?? "?"} (CPU; oneMKL BLAS, oneDNN convolutions, OpenMP)"),
            ("ML.NET / SkiaSharp", $"{Version(typeof(Microsoft.ML.MLContext).Assembly)} / {Version(typeof(SkiaSharp.SKBitmap).Assembly)}"),
        ];
    }

    public static string DescribePyTorch(JsonObject v)
        => $"Debian python3-torch {v["torch"]} / python3-torchvision {v["torchvision"]}, Python {v["python"]}, Pillow {v["pillow"]}; "
         + $"{v["onednn"]}, CPU capability {v["cpu_capability"]}, BLAS: {v["blas_info"]} (Debian's libblas.so.3 alternative; the reference BLAS unless OpenBLAS/BLIS is installed), OpenMP; "
         + $"threads {v["threads"]}, inter-op {v["interop_threads"]}";

    static string Version(Assembly a)
        => (a.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? a.GetName().Version?.ToString() ?? "?").Split('+')[0];

    /// <summary>A NuGet package's version from this app's deps.json (libtorch has no version API in TorchSharp).</summary>
    static string? PackageVersion(string id)
    {
        var deps = Path.Combine(AppContext.BaseDirectory, Assembly.GetEntryAssembly()!.GetName().Name + ".deps.json");
        if (!File.Exists(deps)) return null;
        var libraries = JsonNode.Parse(File.ReadAllText(deps))?["libraries"]?.AsObject();
        return libraries?.Select(kv => kv.Key).FirstOrDefault(k => k.StartsWith(id + "/", StringComparison.OrdinalIgnoreCase))?.Split('/')[1];
    }

    static string ReadOr(string path, string fallback)
    {
        try { return File.ReadAllText(path); }
        catch (IOException) { return fallback; }
        catch (UnauthorizedAccessException) { return fallback; }
    }
}
