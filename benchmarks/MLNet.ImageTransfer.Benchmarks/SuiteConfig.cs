using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace MLNet.ImageTransfer.Benchmarks;

/// <summary>
/// The suite's one configuration: in-process, one invocation per iteration (operations take milliseconds to
/// seconds), 5 warm-up iterations, memory diagnoser, and an images-per-second column. Two jobs:
/// <b>Full</b> (10 measured iterations; for published numbers) and <b>Quick</b> (3; pass <c>--quick</c>).
/// </summary>
/// <remarks>
/// In-process because BenchmarkDotNet's generated child project would need the Debian 12 libstdc++ fix
/// (build/TorchSharp.LinuxCompat.targets) applied to its own output folder; this process already has a working libtorch.
/// The memory diagnoser sees managed allocations only; libtorch's native tensors are outside it.
/// </remarks>
public sealed class SuiteConfig : ManualConfig
{
    /// <summary>Set by Program from <c>--quick</c> before BenchmarkDotNet builds the configs.</summary>
    public static bool Quick { get; set; }

    public SuiteConfig()
    {
        AddJob(Job.Default
            .WithToolchain(InProcessEmitToolchain.Instance)
            .WithWarmupCount(5)
            .WithIterationCount(Quick ? 3 : 10)
            .WithInvocationCount(1)
            .WithUnrollFactor(1)
            .WithId(Quick ? "Quick" : "Full"));
        AddDiagnoser(MemoryDiagnoser.Default);
        AddColumn(new ImagesPerSecondColumn());
    }
}

/// <summary>
/// Images per second at the mean operation time: a benchmark's <c>BatchSize</c> parameter (one operation = one batch)
/// or its <c>ImagesPerOperation</c> property (one operation = a pass over a folder).
/// </summary>
public sealed class ImagesPerSecondColumn : IColumn
{
    public string Id => nameof(ImagesPerSecondColumn);
    public string ColumnName => "img/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "Images per second at the mean time of one operation";
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public bool IsAvailable(Summary summary) => true;
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase)
    {
        var stats = summary[benchmarkCase]?.ResultStatistics;
        if (stats is null) return "—";
        double? images = benchmarkCase.Parameters.Items.FirstOrDefault(p => p.Name == "BatchSize")?.Value is int b ? b : null;
        if (images is null && ImagesPerOperation.TryGetValue(benchmarkCase.Descriptor.Type, out var n)) images = n;
        return images is null ? "—" : (images.Value / (stats.Mean / 1e9)).ToString("F1", System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Benchmarks whose operation is a pass over a folder register how many images that pass reads.</summary>
    public static readonly System.Collections.Concurrent.ConcurrentDictionary<Type, int> ImagesPerOperation = new();
}
