using System.Text.Json;
using MLNet.ImageTransfer.Engine;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Tests.Persistence;
using TorchSharp;
using static TorchSharp.torch;
using Fault = MLNet.ImageTransfer.Engine.ConvolutionEngineCheck.SimulatedFault;

namespace MLNet.ImageTransfer.Tests.Platform;

/// <summary>
/// The start-up check of libtorch's convolution engine (<see cref="ConvolutionEngineCheck"/>). On virtual machines
/// whose CPUID hides the cache sizes, libtorch 2.10's oneDNN computes wrong convolution gradients (NaN losses) and
/// divides by zero in ResNet-50's backward pass. Machines that show the fault fail the in-process tests here without
/// the repair; every machine runs the child-process tests, which put exactly the values such a machine leaves in
/// oneDNN's CPU information (<see cref="OneDnnCacheInfo.SimulateHiddenCacheSizes"/>) before the process's first
/// convolution, and check detection, repair and fallback.
/// </summary>
public class ConvolutionEngineCheckTests
{
    internal const string ChildMode = "convolution-engine";

    [Fact]
    public void In_this_process_the_engine_is_verified_and_a_4_channel_convolution_gradient_matches_float64()
    {
        using var network = TestData.TinyResNet.Build(2); // builds through the check
        var report = ConvolutionEngineCheck.Report;
        Assert.NotNull(report);
        Assert.Contains(report.State, new[] { ConvolutionEngineState.Sound, ConvolutionEngineState.Repaired });

        double error = ConvolutionEngineCheck.ConvolutionSelfTest.WorstRelativeError();
        Assert.True(error < ConvolutionEngineCheck.Tolerance, $"4→4, 12→12 and 3→4/2 convolutions vs float64: relative error {error:e2}. {report}");
    }

    [Fact]
    public void The_simulated_fault_is_the_real_fault_without_the_check_a_4_channel_input_gradient_is_wrong()
    {
        var child = RunChild(Fault.HiddenCaches, check: false);
        Assert.Equal(nameof(ConvolutionEngineState.NotChecked), child.State);
        Assert.True(child.SelfTestError > 1e-2,
            $"with 1-byte caches oneDNN's 4-channel input gradient should be far off; relative error {child.SelfTestError:e2}");
        Assert.True(child.TinyResNetGradientError > 1e-2 || !double.IsFinite(child.TinyResNetGradientError),
            $"a tiny ResNet's gradients should be wrong too; relative error {child.TinyResNetGradientError:e2}");
    }

    [Fact]
    public void Hidden_cache_sizes_are_repaired_before_the_first_convolution_and_gradients_match_float64()
    {
        var child = RunChild(Fault.HiddenCaches, check: true);
        Assert.Equal(nameof(ConvolutionEngineState.Repaired), child.State);
        Assert.True(child.OneDnnEnabled, "the repair keeps oneDNN's fast kernels");
        Assert.Equal([32768u, 524288u, 1048576u], child.PerCoreCacheSizes); // oneDNN 3.8's built-in sizes
        Assert.True(child.SelfTestError < ConvolutionEngineCheck.Tolerance, $"self-test error {child.SelfTestError:e2}");
        Assert.True(child.TinyResNetGradientError < 1e-4, $"tiny ResNet gradient error {child.TinyResNetGradientError:e2}");
        Assert.DoesNotContain("warning", child.Output);
    }

    [Fact]
    public void Without_a_repair_the_engine_falls_back_to_reference_kernels_with_one_warning()
    {
        var child = RunChild(Fault.HiddenCachesRepairUnavailable, check: true);
        Assert.Equal(nameof(ConvolutionEngineState.ReferenceKernels), child.State);
        Assert.False(child.OneDnnEnabled);
        Assert.True(child.SelfTestError < ConvolutionEngineCheck.Tolerance, $"self-test error {child.SelfTestError:e2}");
        Assert.True(child.TinyResNetGradientError < 1e-4, $"tiny ResNet gradient error {child.TinyResNetGradientError:e2}");
        Assert.Equal(1, CountOccurrences(child.Output, "warning: MLNet.ImageTransfer:"));
        Assert.Contains("slower", child.Output);
    }

    [Fact]
    public void Wrong_convolutions_that_CPUID_does_not_predict_are_caught_by_the_self_test()
    {
        var child = RunChild(Fault.HiddenCachesUnseenByCpuid, check: true);
        Assert.Equal(nameof(ConvolutionEngineState.ReferenceKernels), child.State);
        Assert.Contains("wrong convolutions", child.Details);
        Assert.False(child.OneDnnEnabled);
        Assert.True(child.TinyResNetGradientError < 1e-4, $"tiny ResNet gradient error {child.TinyResNetGradientError:e2}");
        Assert.Equal(1, CountOccurrences(child.Output, "warning: MLNet.ImageTransfer:"));
    }

    [Fact]
    public void A_healthy_engine_is_left_as_it_is()
    {
        var child = RunChild(Fault.None, check: true);
        Assert.Contains(child.State, new[] { nameof(ConvolutionEngineState.Sound), nameof(ConvolutionEngineState.Repaired) });
        Assert.True(child.OneDnnEnabled);
        Assert.True(child.TinyResNetGradientError < 1e-4, $"tiny ResNet gradient error {child.TinyResNetGradientError:e2}");
        Assert.DoesNotContain("NNPACK", child.Output); // NNPACK is switched off rather than failing to initialise aloud
    }

    [Fact]
    public void The_check_can_be_turned_off_by_the_environment()
    {
        var child = RunChild(Fault.None, check: true, environmentOff: true);
        Assert.Equal(nameof(ConvolutionEngineState.NotChecked), child.State);
        Assert.Contains(ConvolutionEngineCheck.DisableVariable, child.Details);
    }

    [Fact] // a few seconds: a full-size network's one step at 64 px, batch 2
    public void A_full_size_ResNet50_training_step_survives_the_fault_once_repaired()
    {
        var child = RunChild(Fault.HiddenCaches, check: true, resnet50: true);
        Assert.Equal(nameof(ConvolutionEngineState.Repaired), child.State);
        Assert.True(double.IsFinite(child.ResNet50Loss), $"ResNet-50 loss {child.ResNet50Loss}");
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void Without_the_check_the_same_ResNet50_step_kills_the_process()
    {
        var reportPath = Path.Combine(Path.GetTempPath(), $"convcheck-{Guid.NewGuid():N}.json");
        var (code, output) = FreshProcess.Run(ChildMode, [reportPath, $"{Fault.HiddenCaches}", "False", "True"], null);
        Assert.False(File.Exists(reportPath), "the child should not live to write its report");
        Assert.Equal(128 + 8, code); // SIGFPE: oneDNN divides by zero planning the stride-2 1×1 backward convolution
    }

    static int CountOccurrences(string text, string what) =>
        (text.Length - text.Replace(what, "", StringComparison.Ordinal).Length) / what.Length;

    // ---- Child side --------------------------------------------------------------------------------------------

    public sealed class ChildReport
    {
        public string State { get; set; } = "";
        public string Details { get; set; } = "";
        public double ElapsedMs { get; set; }
        public double LocateMs { get; set; }
        public double SelfTestMs { get; set; }
        public bool OneDnnEnabled { get; set; }
        public uint[] PerCoreCacheSizes { get; set; } = [];
        public double SelfTestError { get; set; }
        public double TinyResNetGradientError { get; set; }
        public double ResNet50Loss { get; set; } = double.NaN;
        public string Output { get; set; } = "";
    }

    static readonly JsonSerializerOptions Json = new() { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    static ChildReport RunChild(Fault fault, bool check, bool environmentOff = false, bool resnet50 = false)
    {
        var reportPath = Path.Combine(Path.GetTempPath(), $"convcheck-{Guid.NewGuid():N}.json");
        try
        {
            var (code, output) = FreshProcess.Run(ChildMode, [reportPath, $"{fault}", $"{check}", $"{resnet50}"],
                environmentOff ? new Dictionary<string, string> { [ConvolutionEngineCheck.DisableVariable] = "0" } : null);
            Assert.True(code == 0, $"child exited with {code}: {output}");
            var report = JsonSerializer.Deserialize<ChildReport>(File.ReadAllText(reportPath), Json)!;
            report.Output = output;
            return report;
        }
        finally
        {
            File.Delete(reportPath);
        }
    }

    internal static int RunChild(string[] args)
    {
        var fault = Enum.Parse<Fault>(args[1]);
        bool check = bool.Parse(args[2]), resnet50 = bool.Parse(args[3]);
        var report = new ChildReport();
        if (!check) ConvolutionEngineCheck.Enabled = false;
        else ConvolutionEngineCheck.Simulation = fault;
        if (fault != Fault.None && !check)
        {
            using var load = zeros(1);
            var info = OneDnnCacheInfo.TryLocate(out var reason) ?? throw new InvalidOperationException(reason);
            info.SimulateHiddenCacheSizes();
        }

        // Building the network runs the check (when enabled) before any convolution of this process. Fixed weights,
        // so that a failure reproduces (on a sound engine 25 seeds give float32-vs-float64 gradient errors of 5e-6–1.3e-5).
        torch.manual_seed(1);
        using var network = TestData.TinyResNet.Build(3);
        var outcome = ConvolutionEngineCheck.Report!;
        report.State = outcome.State.ToString();
        report.Details = outcome.Details;
        report.ElapsedMs = outcome.Elapsed.TotalMilliseconds;
        report.OneDnnEnabled = LibTorchNative.OneDnnEnabled;
        var locate = System.Diagnostics.Stopwatch.StartNew();
        var info2 = OneDnnCacheInfo.TryLocate(out _);
        report.LocateMs = locate.Elapsed.TotalMilliseconds;
        var selfTest = System.Diagnostics.Stopwatch.StartNew();
        ConvolutionEngineCheck.ConvolutionSelfTest.WorstRelativeError();
        report.SelfTestMs = selfTest.Elapsed.TotalMilliseconds;
        report.PerCoreCacheSizes = info2 is null ? [] : [info2.PerCoreCacheSize(1), info2.PerCoreCacheSize(2), info2.PerCoreCacheSize(3)];
        report.TinyResNetGradientError = GradientErrorAgainstFloat64(network, side: 32);
        report.SelfTestError = ConvolutionEngineCheck.ConvolutionSelfTest.WorstRelativeError();
        if (resnet50) report.ResNet50Loss = ResNet50TrainingStep();
        File.WriteAllText(args[0], JsonSerializer.Serialize(report, Json));
        return 0;
    }

    /// <summary>One training step's parameter gradients in float32 against the same network in float64.</summary>
    static double GradientErrorAgainstFloat64(ImageClassifierModel network, int side)
    {
        using var scope = NewDisposeScope();
        network.train();
        var images = arange(8 * 3 * side * side, dtype: ScalarType.Float32).mul_(0.37).sin_().view(8, 3, side, side);
        var labels = arange(8, dtype: ScalarType.Int64).remainder_(3);

        Dictionary<string, Tensor> Gradients()
        {
            foreach (var p in network.parameters()) p.grad = null;
            var type = network.parameters().First().dtype;
            nn.functional.cross_entropy(network.forward(images.to(type)), labels).backward();
            return network.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!.to(ScalarType.Float64).detach());
        }

        var single = Gradients();
        network.to(ScalarType.Float64);
        var reference = Gradients();
        network.to(ScalarType.Float32);
        double worst = 0;
        foreach (var (name, grad) in reference)
        {
            double scale = grad.abs().max().item<double>();
            double error = (single[name] - grad).abs().max().item<double>() / Math.Max(scale, 1e-12);
            worst = Math.Max(worst, double.IsFinite(error) ? error : double.PositiveInfinity);
        }
        return worst;
    }

    static double ResNet50TrainingStep()
    {
        using var scope = NewDisposeScope();
        using var network = Architectures.Create("resnet50", 2);
        network.train();
        var images = arange(2 * 3 * 64 * 64, dtype: ScalarType.Float32).mul_(0.37).sin_().view(2, 3, 64, 64);
        var loss = nn.functional.cross_entropy(network.forward(images), tensor(new long[] { 0, 1 }));
        loss.backward();
        return loss.item<float>();
    }
}
