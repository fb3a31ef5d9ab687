using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Weights;
using Xunit.Abstractions;

namespace MLNet.ImageTransfer.Tests.Weights;

/// <summary>
/// Mutation fuzzing of every weight format: a valid fixture is mutated with a seeded random generator (bit flips, byte
/// overwrites, truncation, chunk duplication and deletion, length fields inflated to absurd values) and each mutant is
/// opened and loaded into a micro network as a trainer does. Only the library's own errors may come out —
/// <see cref="WeightFileException"/> (the file is bad) or <see cref="WeightLoadException"/> (a readable file that does
/// not fit the network) — or success; never an <c>IndexOutOfRangeException</c>, <c>OverflowException</c>, a third-party
/// parser's exception, a managed allocation out of proportion to the file, or a hang.
/// </summary>
/// <remarks>
/// Every mutant is reproducible from its seed (format index × 1,000,000 + iteration), printed with each failure kind.
/// The CI run uses <see cref="CiIterations"/> mutants per format; the Slow run <see cref="LongRunIterations"/>.
/// </remarks>
public sealed class WeightFileFuzzTests(ITestOutputHelper output) : IDisposable
{
    public const int CiIterations = 1000;
    public const int LongRunIterations = 20_000;

    /// <summary>
    /// A mutant that takes longer than this to be refused or loaded is a hang: the watchdog ends the test process with
    /// the seed in the message (a reader stuck in a loop cannot be interrupted, and running it on another thread would
    /// leave it using the network after the test). Generous, as a shared CI machine can stall for seconds.
    /// </summary>
    static readonly TimeSpan MutantTimeout = TimeSpan.FromSeconds(60);

    /// <summary>Managed bytes one mutant may make the reader allocate: far above what the micro fixtures need (≈ 1 MB), far below an absurd length field's.</summary>
    const long MaxManagedAllocation = 64L << 20;

    /// <summary>
    /// The same for HDF5, looser: PureHDF (third-party) allocates a structure's buffer from its 32-bit length field
    /// before reading it (our stream then refuses the read past the end of the file), and on some corrupt files it
    /// catches that and tries other structures. Measured over 20,000 mutants: at most four such transient buffers of
    /// about 2 GB each (8.6 GB allocated in total) in 6 mutants, every one refused. Our own allocations (datasets) are
    /// checked against the file before PureHDF reads them; this cap still catches anything beyond that pattern.
    /// </summary>
    const long MaxManagedAllocationHdf5 = 5L * int.MaxValue + (64L << 20);

    readonly string _dir = TestData.NewTempDir("fuzz");

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    /// <summary>The fuzzed formats: a name, the fixture mutated, and the configuration of the network it loads into.</summary>
    /// <remarks><c>pth-pickle</c> mutates only the pickle inside a well-formed zip, so that mutants reach the unpickler instead of the zip reader.</remarks>
    static readonly (string Name, string Fixture, string Io)[] Targets =
    [
        ("pth-zip", "vgg_micro_bn.pth", "vgg_micro_bn"),
        ("pth-pickle", "vgg_micro_bn.pth", "vgg_micro_bn"),
        ("pth-legacy", "resnet_micro_basic.legacy.pth", "resnet_micro_basic"),
        ("safetensors", "vgg_micro_bn.safetensors", "vgg_micro_bn"),
        ("h5", "keras_vgg_micro.h5", "keras_vgg_micro"),
        ("onnx", "vgg_micro_bn.onnx", "vgg_micro_bn"),
    ];

    public static TheoryData<string> Formats => new(Targets.Select(t => t.Name));

    [Theory]
    [MemberData(nameof(Formats))]
    public void Mutated_files_give_only_the_librarys_own_errors(string format) => Fuzz(format, CiIterations);

    [Theory]
    [MemberData(nameof(Formats))]
    [Trait("Category", "Slow")]
    public void Mutated_files_give_only_the_librarys_own_errors_long_run(string format) => Fuzz(format, LongRunIterations);

    void Fuzz(string format, int iterations)
    {
        int targetIndex = Array.FindIndex(Targets, t => t.Name == format);
        var (_, fixture, io) = Targets[targetIndex];
        var original = File.ReadAllBytes(WeightFormatParityTests.W(fixture));
        Func<Random, byte[]> mutate = format == "pth-pickle" ? PickleMutator(original) : random => Mutator.Mutate(original, random);

        using (var check = PretrainedWeightFile.Open(WeightFormatParityTests.W(fixture)))
            Assert.NotNull(check.Architecture); // the unmutated fixture is valid: the mutants are near-valid files
        var config = WeightFormatParityTests.ConfigOf(io);
        using (var probe = PretrainedWeightFile.Open(WeightFormatParityTests.W(fixture))) config = probe.Adapt(config);
        var failures = new Dictionary<string, (int Count, int Seed, string Detail)>(StringComparer.Ordinal);
        var outcomes = new Dictionary<string, int>(StringComparer.Ordinal);
        var path = Path.Combine(_dir, $"mutant-{format}.bin");
        var clock = Stopwatch.StartNew();
        using var network = config.Build(5, HeadSpec.Default with { Dropout = 0 });
        for (int i = 0; i < iterations; i++)
        {
            int seed = targetIndex * 1_000_000 + i;
            File.WriteAllBytes(path, mutate(new Random(seed)));
            using var watchdog = new Timer(_ => Environment.FailFast(
                $"WeightFileFuzzTests: the {format} mutant of seed {seed} ran for more than {MutantTimeout.TotalSeconds} s (a hang)."), null, MutantTimeout, Timeout.InfiniteTimeSpan);
            // Every 8th mutant also goes through `weights inspect` (which builds the network the file describes).
            var (outcome, failure) = Run(path, network, format == "h5" ? MaxManagedAllocationHdf5 : MaxManagedAllocation, inspect: i % 8 == 0);
            outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
            if (failure is not null)
            {
                var kind = failure.Value.Kind;
                failures[kind] = failures.TryGetValue(kind, out var known) ? (known.Count + 1, known.Seed, known.Detail) : (1, seed, failure.Value.Detail);
            }
        }
        output.WriteLine($"{format}: {iterations} mutants of {fixture} ({original.Length:N0} bytes) in {clock.Elapsed.TotalSeconds:F1} s; outcomes: " +
            string.Join(", ", outcomes.OrderByDescending(o => o.Value).Select(o => $"{o.Key} {o.Value}")));
        foreach (var (kind, (count, seed, detail)) in failures)
            output.WriteLine($"FAILURE {kind}: {count}× (first seed {seed})\n{detail}\n");
        Assert.True(failures.Count == 0, $"{failures.Count} failure kind(s) for {format}: {string.Join("; ", failures.Keys)}");
    }

    /// <summary>Opens and loads one mutant: the outcome, and a failure kind when it broke the contract.</summary>
    static (string Outcome, (string Kind, string Detail)? Failure) Run(string path, ImageClassifierModel network, long maxAllocation, bool inspect)
    {
        Exception? e = null;
        long before = GC.GetAllocatedBytesForCurrentThread();
        try
        {
            if (inspect) WeightInspection.Inspect(path);
            using var file = PretrainedWeightFile.Open(path);
            PretrainedWeights.Load(network, file);
        }
        catch (Exception caught) { e = caught; }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        if (allocated > maxAllocation)
            return ("huge allocation", ($"managed allocation of {allocated:N0} bytes", e?.ToString() ?? "(loaded)"));
        return e switch
        {
            null => ("loaded", null),
            WeightFileException w when w.InnerException is null or WeightFileException => (Bucket(w.Problem), null),
            WeightFileException w => ("wrapped " + w.InnerException!.GetType().Name, null),
            WeightLoadException => ("does not fit the network", null),
            _ => ("contract broken", ($"{e.GetType().Name} at {WhereThrown(e)}", e.ToString())),
        };
    }

    /// <summary>A short label of a refusal's message, to show which checks the mutants hit.</summary>
    static string Bucket(string problem)
    {
        var words = problem.Split(' ', StringSplitOptions.RemoveEmptyEntries).Where(w => !w.Any(char.IsDigit) && !w.Contains('\'')).Take(4);
        return "refused: " + string.Join(' ', words);
    }

    static string WhereThrown(Exception e)
    {
        var frames = new StackTrace(e, false).GetFrames();
        var ours = frames.FirstOrDefault(f => f.GetMethod()?.DeclaringType?.Namespace?.StartsWith("MLNet.ImageTransfer", StringComparison.Ordinal) == true);
        var frame = ours ?? frames.FirstOrDefault();
        var m = frame?.GetMethod();
        return m is null ? "?" : $"{m.DeclaringType?.Name}.{m.Name}";
    }

    /// <summary>Mutates only <c>data.pkl</c> of a torch.save zip and re-zips it with its other entries unchanged.</summary>
    static Func<Random, byte[]> PickleMutator(byte[] zipBytes)
    {
        var entries = new List<(string Name, byte[] Data)>();
        using (var zip = new ZipArchive(new MemoryStream(zipBytes), ZipArchiveMode.Read))
            foreach (var e in zip.Entries)
            {
                using var s = e.Open();
                var ms = new MemoryStream();
                s.CopyTo(ms);
                entries.Add((e.FullName, ms.ToArray()));
            }
        return random =>
        {
            var output = new MemoryStream();
            using (var zip = new ZipArchive(output, ZipArchiveMode.Create, leaveOpen: true))
                foreach (var (name, data) in entries)
                {
                    using var s = zip.CreateEntry(name, CompressionLevel.NoCompression).Open();
                    s.Write(name.EndsWith("/data.pkl", StringComparison.Ordinal) ? Mutator.Mutate(data, random) : data);
                }
            return output.ToArray();
        };
    }
}

/// <summary>Seeded byte-level mutations of a file, as a mutation fuzzer makes them.</summary>
internal static class Mutator
{
    /// <summary>Little-endian values that make length and count fields absurd: sign bits, all ones, 2^31, 2^60.</summary>
    static readonly ulong[] InterestingValues = [0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff, 0x1_0000_0000, 1UL << 60, long.MaxValue, ulong.MaxValue];

    static readonly string[] InterestingNumbers = ["-1", "0", "4294967296", "9223372036854775807", "18446744073709551616", "99999999999999999999999", "1e308", "1152921504606846976"];

    /// <summary>One to three random mutations of <paramref name="data"/> (which is not modified).</summary>
    public static byte[] Mutate(byte[] data, Random random)
    {
        var bytes = new List<byte>(data);
        int count = 1 + (random.Next(4) == 0 ? random.Next(3) : 0);
        for (int m = 0; m < count && bytes.Count > 0; m++)
        {
            switch (random.Next(8))
            {
                case 0: // bit flips
                    for (int i = random.Next(1, 9); i > 0; i--)
                    {
                        int p = random.Next(bytes.Count);
                        bytes[p] ^= (byte)(1 << random.Next(8));
                    }
                    break;
                case 1: // byte overwrites with 0x00, 0xFF or random
                    for (int i = random.Next(1, 17); i > 0; i--)
                        bytes[random.Next(bytes.Count)] = random.Next(3) switch { 0 => (byte)0, 1 => (byte)0xff, _ => (byte)random.Next(256) };
                    break;
                case 2: // truncation
                {
                    int cut = random.Next(bytes.Count);
                    bytes.RemoveRange(cut, bytes.Count - cut);
                    break;
                }
                case 3: // chunk duplication
                {
                    int start = random.Next(bytes.Count), length = Math.Min(bytes.Count - start, 1 + random.Next(256));
                    var chunk = bytes.GetRange(start, length);
                    bytes.InsertRange(random.Next(bytes.Count + 1), chunk);
                    break;
                }
                case 4: // chunk deletion
                {
                    int start = random.Next(bytes.Count), length = Math.Min(bytes.Count - start, 1 + random.Next(256));
                    bytes.RemoveRange(start, length);
                    break;
                }
                case 5: // length-field inflation: an absurd little-endian 2-, 4- or 8-byte value
                {
                    int width = random.Next(3) switch { 0 => 2, 1 => 4, _ => 8 };
                    ulong value = InterestingValues[random.Next(InterestingValues.Length)];
                    if (random.Next(2) == 0) value += (ulong)random.Next(1, 1 << 16);
                    int p = random.Next(Math.Max(1, bytes.Count - width));
                    if (random.Next(2) == 0) p &= ~(width - 1); // aligned, as most binary headers are
                    for (int i = 0; i < width && p + i < bytes.Count; i++) bytes[p + i] = (byte)(value >> (8 * i));
                    break;
                }
                case 6: // a varint-style inflation: a run of continuation bytes (protobuf, pickle LONG)
                {
                    int p = random.Next(bytes.Count);
                    int n = random.Next(1, 11);
                    for (int i = 0; i < n && p + i < bytes.Count; i++) bytes[p + i] = i == n - 1 ? (byte)random.Next(1, 128) : (byte)(0x80 | random.Next(128));
                    break;
                }
                default: // a decimal number in text (a JSON header's shape or offsets) replaced by an absurd one
                {
                    var digits = new List<int>();
                    for (int i = 0; i < bytes.Count; i++)
                        if (bytes[i] is >= (byte)'0' and <= (byte)'9' && (i == 0 || bytes[i - 1] is < (byte)'0' or > (byte)'9')) digits.Add(i);
                    if (digits.Count == 0) goto case 0;
                    int start = digits[random.Next(digits.Count)], end = start;
                    while (end < bytes.Count && bytes[end] is >= (byte)'0' and <= (byte)'9') end++;
                    bytes.RemoveRange(start, end - start);
                    bytes.InsertRange(start, Encoding.ASCII.GetBytes(InterestingNumbers[random.Next(InterestingNumbers.Length)]));
                    break;
                }
            }
        }
        return bytes.ToArray();
    }
}
