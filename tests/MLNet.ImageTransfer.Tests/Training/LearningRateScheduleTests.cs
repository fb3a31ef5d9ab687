using System.Text.Json;
using MLNet.ImageTransfer.Training;
using MLNet.ImageTransfer.Training.Callbacks;
using MLNet.ImageTransfer.Training.Schedules;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.TrainingLoop;

/// <summary>
/// Each schedule against the rates PyTorch's own schedulers produce (fixtures/training_reference.json, made by
/// fixtures/generate_training_fixtures.py with python3-torch 1.13), and the loop actually training at those rates.
/// </summary>
public class LearningRateScheduleTests
{
    static JsonElement Reference(string kind) => JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.Dir, "training_reference.json")))
        .RootElement.GetProperty("schedules").EnumerateArray().Where(s => s.GetProperty("kind").GetString() == kind).ToArray() is var cases && cases.Length > 0
            ? JsonDocument.Parse("[" + string.Join(",", cases.Select(c => c.GetRawText())) + "]").RootElement
            : throw new InvalidOperationException($"No '{kind}' cases in the fixture.");

    static double[] Lrs(JsonElement c) => c.GetProperty("lrs").EnumerateArray().Select(e => e.GetDouble()).ToArray();

    static void AssertClose(double[] expected, double[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-12 + 1e-9 * Math.Abs(expected[i]), $"{what}: index {i}: PyTorch {expected[i]:R}, ours {actual[i]:R}");
    }

    static double[] PerEpoch(LearningRateSchedule s, double baseLr, int epochs, Func<int, EpochSummary>? after = null)
    {
        s.Reset();
        var lrs = new double[epochs];
        for (int e = 1; e <= epochs; e++)
        {
            lrs[e - 1] = s.LearningRate(new SchedulePosition(e, 0, 1, epochs, baseLr));
            if (after is not null) s.OnEpochEnd(after(e));
        }
        return lrs;
    }

    static EpochSummary Epoch(int epoch, double? valLoss = null, double? valAccuracy = null)
        => new(epoch, 99, TrainingPhase.FineTune, 1, TimeSpan.Zero, 0, 0, 0, valLoss ?? 0, valAccuracy ?? 0, false);

    [Fact]
    public void Step_schedule_matches_PyTorch_StepLR()
    {
        foreach (var c in Reference("step").EnumerateArray())
        {
            var s = new StepSchedule { StepSize = c.GetProperty("step_size").GetInt32(), Gamma = c.GetProperty("gamma").GetDouble() };
            AssertClose(Lrs(c), PerEpoch(s, c.GetProperty("base_lr").GetDouble(), c.GetProperty("epochs").GetInt32()), s.ToString());
        }
    }

    [Fact]
    public void Cosine_schedule_with_warmup_matches_PyTorch_LinearLR_then_CosineAnnealingLR()
    {
        foreach (var c in Reference("cosine").EnumerateArray())
        {
            var s = new CosineSchedule
            {
                WarmupEpochs = c.GetProperty("warmup_epochs").GetInt32(),
                WarmupStartFactor = c.GetProperty("warmup_start_factor").GetDouble(),
                MinLearningRate = c.GetProperty("eta_min").GetDouble(),
            };
            AssertClose(Lrs(c), PerEpoch(s, c.GetProperty("base_lr").GetDouble(), c.GetProperty("epochs").GetInt32()), s.ToString());
        }
    }

    [Fact]
    public void One_cycle_schedule_matches_PyTorch_OneCycleLR_per_step()
    {
        foreach (var c in Reference("onecycle").EnumerateArray())
        {
            var s = new OneCycleSchedule { PctStart = c.GetProperty("pct_start").GetDouble(), DivFactor = c.GetProperty("div_factor").GetDouble(), FinalDivFactor = c.GetProperty("final_div_factor").GetDouble() };
            int epochs = c.GetProperty("epochs").GetInt32(), steps = c.GetProperty("steps_per_epoch").GetInt32();
            double max = c.GetProperty("base_lr").GetDouble();
            var ours = new List<double>();
            for (int e = 1; e <= epochs; e++)
                for (int step = 0; step < steps; step++)
                    ours.Add(s.LearningRate(new SchedulePosition(e, step, steps, epochs, max)));
            AssertClose(Lrs(c), ours.ToArray(), s.ToString());
        }
    }

    [Fact]
    public void Plateau_schedule_matches_PyTorch_ReduceLROnPlateau()
    {
        foreach (var c in Reference("plateau").EnumerateArray())
        {
            bool max = c.GetProperty("mode").GetString() == "max";
            var s = new ReduceOnPlateauSchedule
            {
                Monitor = max ? MonitoredMetric.ValidationAccuracy : MonitoredMetric.ValidationLoss,
                Factor = c.GetProperty("factor").GetDouble(), Patience = c.GetProperty("patience").GetInt32(),
                Cooldown = c.GetProperty("cooldown").GetInt32(), MinLearningRate = c.GetProperty("min_lr").GetDouble(),
                Threshold = c.GetProperty("threshold").GetDouble(),
            };
            var metrics = c.GetProperty("metrics").EnumerateArray().Select(m => m.GetDouble()).ToArray();
            var ours = PerEpoch(s, c.GetProperty("base_lr").GetDouble(), metrics.Length,
                e => max ? Epoch(e, valAccuracy: metrics[e - 1]) : Epoch(e, valLoss: metrics[e - 1]));
            AssertClose(Lrs(c), ours, s.ToString());
            Assert.True(s.Reductions > 0, "the fixture should exercise at least one reduction");
        }
    }

    [Fact]
    public void Parse_reads_every_schedule_and_rejects_unknown_parameters()
    {
        var step = Assert.IsType<StepSchedule>(LearningRateSchedules.Parse("step:step_size=3,gamma=0.5"));
        Assert.Equal((3, 0.5), (step.StepSize, step.Gamma));
        var cosine = Assert.IsType<CosineSchedule>(LearningRateSchedules.Parse("cosine:warmup_epochs=2,eta_min=1e-5"));
        Assert.Equal((2, 1e-5), (cosine.WarmupEpochs, cosine.MinLearningRate));
        Assert.IsType<OneCycleSchedule>(LearningRateSchedules.Parse("onecycle"));
        var plateau = Assert.IsType<ReduceOnPlateauSchedule>(LearningRateSchedules.Parse("plateau:patience=2,factor=0.5", MonitoredMetric.ValidationAccuracy));
        Assert.Equal((2, 0.5, MonitoredMetric.ValidationAccuracy), (plateau.Patience, plateau.Factor, plateau.Monitor));
        Assert.Null(LearningRateSchedules.Parse("none"));
        Assert.Contains("gama", Assert.Throws<ArgumentException>(() => LearningRateSchedules.Parse("step:gama=0.5")).Message);
        Assert.Contains("Unknown learning-rate schedule", Assert.Throws<ArgumentException>(() => LearningRateSchedules.Parse("exponential")).Message);
        Assert.Contains("gamma", Assert.Throws<ArgumentException>(() => LearningRateSchedules.Parse("step:gamma=2")).Message);
    }

    [Fact]
    public void The_loop_reports_the_scheduled_rate_at_every_step()
    {
        using var data = TrainingTestKit.RandomImages(12);
        var schedule = new OneCycleSchedule();
        var steps = new List<double>();
        var options = new TrainingOptions
        {
            Epochs = 3, BatchSize = 4, LearningRate = 0.01, KeepBestBy = BestModelMetric.None, LearningRateSchedule = schedule,
            StepCompleted = s => steps.Add(s.LearningRate),
        };
        using var model = TrainingTestKit.NewModel();
        var history = ClassifierTrainingLoop.Fit(model, data, null, TrainingTestKit.Preprocessing, options, CPU, seed: 1);
        var expected = Enumerable.Range(0, 9).Select(i => schedule.LearningRate(new SchedulePosition(i / 3 + 1, i % 3, 3, 3, 0.01))).ToArray();
        AssertClose(expected, steps.ToArray(), "step learning rates");
        Assert.Equal(expected[^1], history.Epochs[^1].LearningRate, 12);
    }

    /// <summary>Rate 0 in epoch 2, the base rate otherwise.</summary>
    sealed class PauseInEpochTwo : LearningRateSchedule
    {
        public override double LearningRate(SchedulePosition p) => p.Epoch == 2 ? 0 : p.BaseLearningRate;
        public override string ToString() => "pause";
    }

    [Fact]
    public void The_schedule_drives_every_parameter_group_including_layer_decayed_ones()
    {
        // Layer decay gives each backbone group its own parameter group (rate × 0.5^k). A scheduled rate of 0 must stop
        // all of them: every parameter is bit-identical across epoch 2, and all change in epochs 1 and 3.
        using var data = TrainingTestKit.RandomImages(12);
        using var model = TrainingTestKit.NewModel();
        var parameters = model.named_parameters().Select(p => p.name).ToList();
        var states = new List<Dictionary<string, Tensor>> { TrainingTestKit.Snapshot(model) };
        var options = new TrainingOptions
        {
            Epochs = 3, BatchSize = 4, LearningRate = 0.01, LayerLearningRateDecay = 0.5, KeepBestBy = BestModelMetric.None,
            LearningRateSchedule = new PauseInEpochTwo(), EpochCompleted = _ => states.Add(TrainingTestKit.Snapshot(model)),
        };
        ClassifierTrainingLoop.Fit(model, data, null, TrainingTestKit.Preprocessing, options, CPU, seed: 1);
        foreach (var name in parameters)
        {
            Assert.False(TrainingTestKit.Same(states[0][name], states[1][name]), $"{name} did not train in epoch 1");
            Assert.True(TrainingTestKit.Same(states[1][name], states[2][name]), $"{name} changed in epoch 2 at rate 0");
            Assert.False(TrainingTestKit.Same(states[2][name], states[3][name]), $"{name} did not train in epoch 3");
        }
    }
}
