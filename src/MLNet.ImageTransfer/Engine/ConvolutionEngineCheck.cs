using System.Diagnostics;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Engine;

/// <summary>What the start-up check of libtorch's convolution engine found.</summary>
public enum ConvolutionEngineState
{
    /// <summary>The check was turned off (<see cref="ConvolutionEngineCheck.Enabled"/>); nothing was verified.</summary>
    NotChecked,

    /// <summary>oneDNN's convolutions compute correct gradients as they are.</summary>
    Sound,

    /// <summary>oneDNN had been given impossible cache sizes by this machine's CPUID; they were corrected and its convolutions verified.</summary>
    Repaired,

    /// <summary>oneDNN's convolutions were wrong and could not be repaired; libtorch's reference kernels are used instead (correct, slower).</summary>
    ReferenceKernels,
}

/// <summary>The outcome of the start-up check, with what it saw and how long it took.</summary>
public sealed record ConvolutionEngineReport(ConvolutionEngineState State, string Details, TimeSpan Elapsed);

/// <summary>libtorch's convolutions computed wrong numbers on this machine, and no correct engine could be found.</summary>
public sealed class ConvolutionEngineFaultException(string message) : InvalidOperationException(message);

/// <summary>
/// Makes sure libtorch computes correct convolutions before this library's first one: once per process, before a
/// network is built. Healthy machines pay a few milliseconds once; nothing is added to any training step.
/// </summary>
/// <remarks>
/// <para>Why: libtorch 2.10's oneDNN reads the CPU's cache sizes from CPUID, and some virtual machines hide them. oneDNN
/// then believes every cache holds one byte and picks convolution kernels that compute wrong gradients (the training
/// loss turns NaN) or divide by zero (the process dies) — see <see cref="OneDnnCacheInfo"/>.</para>
/// <para>What it does, in order: (1) if oneDNN's CPU information holds such impossible cache sizes, it is given the
/// built-in sizes that oneDNN 3.8+ uses in that case; (2) a small convolution — forward, input gradient and weight
/// gradient, for channel counts that need padded kernel blocks — is compared with the same computation in float64,
/// which libtorch runs without oneDNN; (3) if that disagrees, oneDNN is turned off for the process (libtorch's
/// reference convolutions: correct, several times slower) with one warning on standard error, and the comparison is
/// repeated; if it still disagrees, <see cref="ConvolutionEngineFaultException"/> says so instead of training on wrong
/// numbers. When step (1) was not possible although CPUID hides the caches, oneDNN is turned off without waiting for
/// step (2): the division by zero would end the process before any check could report it.</para>
/// <para>Also turns off NNPACK, whose initialisation prints "Could not initialize NNPACK!" on processors it does not
/// support; libtorch prefers oneDNN for every convolution where both exist.</para>
/// <para>Experts can turn the check off with <see cref="Enabled"/> or the environment variable
/// <c>MLNET_IMAGETRANSFER_CONVOLUTION_CHECK=0</c>.</para>
/// </remarks>
public static class ConvolutionEngineCheck
{
    /// <summary>Set to <c>0</c> to skip the check (and the repair) in every process that inherits the environment.</summary>
    public const string DisableVariable = "MLNET_IMAGETRANSFER_CONVOLUTION_CHECK";

    /// <summary>Largest relative error (max |a−b| / max |b|) accepted from float32 against float64. Sound kernels give about 1e-6.</summary>
    internal const double Tolerance = 1e-4;

    static readonly object Gate = new();
    static volatile ConvolutionEngineReport? _report;

    /// <summary>Whether the check runs before the first network is built (default true, unless <see cref="DisableVariable"/> is 0). Set it before building a network.</summary>
    public static bool Enabled { get; set; } = Environment.GetEnvironmentVariable(DisableVariable) != "0";

    /// <summary>The check's outcome in this process, or null before it ran.</summary>
    public static ConvolutionEngineReport? Report => _report;

    /// <summary>Test seam: the fault to put into oneDNN's CPU information before checking (see <see cref="SimulatedFault"/>).</summary>
    internal static SimulatedFault Simulation { get; set; }

    /// <summary>Ways to reproduce, on a healthy machine, what a machine whose CPUID hides its caches does.</summary>
    internal enum SimulatedFault
    {
        None,

        /// <summary>oneDNN holds 1-byte caches and CPUID is taken to hide them: detected and repaired.</summary>
        HiddenCaches,

        /// <summary>As <see cref="HiddenCaches"/>, but the repair is unavailable (an unknown libtorch build): oneDNN is turned off.</summary>
        HiddenCachesRepairUnavailable,

        /// <summary>oneDNN holds 1-byte caches but CPUID looks healthy: only the self-test can notice, and oneDNN is turned off.</summary>
        HiddenCachesUnseenByCpuid,
    }

    /// <summary>Runs the check once per process (later calls return the first outcome at the cost of a field read).</summary>
    /// <exception cref="ConvolutionEngineFaultException">No correct convolution engine could be found.</exception>
    public static ConvolutionEngineReport EnsureChecked()
    {
        if (_report is { } done) return done;
        lock (Gate)
        {
            if (_report is { } raced) return raced;
            var clock = Stopwatch.StartNew();
            using (var _ = zeros(1)) { } // loads libtorch, whose symbols the steps below use
            LibTorchNative.DisableNnpack();
            var (state, details) = Enabled ? Check() : (ConvolutionEngineState.NotChecked, $"turned off ({DisableVariable}=0 or ConvolutionEngineCheck.Enabled = false)");
            _report = new ConvolutionEngineReport(state, details, clock.Elapsed);
            if (state == ConvolutionEngineState.ReferenceKernels)
                Console.Error.WriteLine($"warning: MLNet.ImageTransfer: {details}");
            return _report;
        }
    }

    static (ConvolutionEngineState, string) Check()
    {
        bool repaired = false;
        string cacheNote = "CPUID reports the cache sizes";
        if (Simulation != SimulatedFault.None)
            (OneDnnCacheInfo.TryLocate(out var missing) ?? throw new InvalidOperationException(missing)).SimulateHiddenCacheSizes();
        if (Simulation is SimulatedFault.HiddenCaches or SimulatedFault.HiddenCachesRepairUnavailable || OneDnnCacheInfo.CpuidHidesCacheSizes())
        {
            // Only here is oneDNN's copy of the sizes looked up (about 0.1 s: it is found through a 79 MB symbol table).
            var info = OneDnnCacheInfo.TryLocate(out var unavailable);
            if (Simulation == SimulatedFault.HiddenCachesRepairUnavailable) { info = null; unavailable = "the repair was made unavailable by a test"; }
            repaired = info is not null && info.HoldsHiddenCacheSizes && info.RepairHiddenCacheSizes();
            if (info is not null && !info.HoldsHiddenCacheSizes && !repaired)
                cacheNote = $"CPUID hides the cache sizes but oneDNN did not take them from there ({info.Describe()})";
            else if (!repaired)
            {
                // Planning some convolutions with 1-byte caches divides by zero, which no self-test would survive.
                LibTorchNative.DisableOneDnn();
                return Verified(ConvolutionEngineState.ReferenceKernels,
                    "this machine's CPUID hides its cache sizes, which makes libtorch's oneDNN compute wrong convolution gradients " +
                    $"or crash, and oneDNN's copy of them could not be corrected ({unavailable}). libtorch's reference convolutions " +
                    "are used instead: correct, but training is several times slower.");
            }
            else cacheNote = $"this machine's CPUID hides its cache sizes, so oneDNN had read 1-byte caches; it now uses its built-in sizes ({info!.Describe()})";
        }

        double error = ConvolutionSelfTest.WorstRelativeError();
        if (error <= Tolerance)
            return (repaired ? ConvolutionEngineState.Repaired : ConvolutionEngineState.Sound,
                $"{cacheNote}; a test convolution's forward pass and gradients match float64 within {error:0.0e0}");

        LibTorchNative.DisableOneDnn();
        return Verified(ConvolutionEngineState.ReferenceKernels,
            $"libtorch's oneDNN computes wrong convolutions on this machine (relative error {error:0.0e0} against float64; {cacheNote}). " +
            "libtorch's reference convolutions are used instead: correct, but training is several times slower.");
    }

    static (ConvolutionEngineState, string) Verified(ConvolutionEngineState state, string details)
    {
        double error = ConvolutionSelfTest.WorstRelativeError();
        if (error > Tolerance)
            throw new ConvolutionEngineFaultException(
                $"libtorch computes wrong convolutions on this machine even without oneDNN (relative error {error:0.0e0} against float64). " +
                $"Training here would produce wrong models. Context: {details}");
        return (state, details);
    }

    /// <summary>The comparison itself: float32 convolutions against float64 on inputs that need no random numbers.</summary>
    internal static class ConvolutionSelfTest
    {
        // (in, out, kernel, stride, padding, image side): 4 and 12 channels need padded blocks on AVX2 and AVX-512;
        // the 7×7 stride-2 stem is a ResNet's first layer.
        static readonly (int In, int Out, int Kernel, int Stride, int Padding, int Side)[] Cases =
        [
            (4, 4, 3, 1, 1, 8),
            (12, 12, 3, 1, 1, 8),
            (3, 4, 7, 2, 3, 16),
        ];

        /// <summary>The largest relative error over the cases' outputs and gradients (NaN counts as infinite).</summary>
        public static double WorstRelativeError()
        {
            using var scope = NewDisposeScope();
            using var gradients = enable_grad();
            double worst = 0;
            foreach (var c in Cases)
            {
                const int batch = 8;
                var input = Deterministic(batch * c.In * c.Side * c.Side, 0.7, 0.3).view(batch, c.In, c.Side, c.Side);
                var weight = Deterministic(c.Out * c.In * c.Kernel * c.Kernel, 1.3, 0.0).mul_(0.2).view(c.Out, c.In, c.Kernel, c.Kernel);
                var (output32, input32, weight32) = Run(input, weight, c.Stride, c.Padding, ScalarType.Float32);
                var (output64, input64, weight64) = Run(input, weight, c.Stride, c.Padding, ScalarType.Float64);
                worst = Math.Max(worst, RelativeError(output32, output64));
                worst = Math.Max(worst, RelativeError(input32, input64));
                worst = Math.Max(worst, RelativeError(weight32, weight64));
            }
            return worst;
        }

        static (Tensor Output, Tensor InputGradient, Tensor WeightGradient) Run(Tensor input, Tensor weight, int stride, int padding, ScalarType type)
        {
            var x = input.to(type).detach().requires_grad_(true);
            var w = weight.to(type).detach().requires_grad_(true);
            var y = nn.functional.conv2d(x, w, strides: [stride, stride], padding: [padding, padding]);
            var upstream = Deterministic(y.numel(), 0.11, 0.5).view(y.shape).to(type);
            y.backward([upstream]);
            return (y.detach(), x.grad!, w.grad!);
        }

        static Tensor Deterministic(long count, double frequency, double phase) =>
            arange(count, dtype: ScalarType.Float64).mul_(frequency).add_(phase).sin_();

        static double RelativeError(Tensor actual, Tensor reference)
        {
            double scale = reference.abs().max().item<double>();
            double error = (actual.to(ScalarType.Float64) - reference).abs().max().item<double>();
            return double.IsFinite(error) ? error / Math.Max(scale, 1e-30) : double.PositiveInfinity;
        }
    }
}
