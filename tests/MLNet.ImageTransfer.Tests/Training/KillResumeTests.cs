using System.Diagnostics;
using MLNet.ImageTransfer.Tests.Persistence;
using MLNet.ImageTransfer.Training;
using MLNet.ImageTransfer.Training.Callbacks;
using MLNet.ImageTransfer.Training.Checkpoints;
using MLNet.ImageTransfer.Training.Schedules;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.TrainingLoop;

/// <summary>
/// A training process SIGKILLed at random moments, several times, never leaves a corrupt checkpoint, and resuming
/// after each kill reaches the same final weights as a run that was never killed (CPU, same seed; bit-identical).
/// The child is this test assembly (see <see cref="FreshProcess"/>), training a tiny network with dropout,
/// augmentation, AdamW, a warm-up cosine schedule and a frozen first epoch.
/// </summary>
public class KillResumeTests(ITestOutputHelper output)
{
    public const string ChildMode = "train-checkpointed";

    /// <summary>Child: trains (resuming from <c>args[0]</c> when it holds a checkpoint), writes the final weights to <c>args[1]</c>.</summary>
    internal static int RunChild(string[] args)
    {
        string checkpointDir = args[0], weightsOut = args[1];
        int stepDelayMs = int.Parse(args[2]);
        using var train = TrainingTestKit.RandomImages(14, seed: 5);
        using var validation = TrainingTestKit.RandomImages(6, seed: 9);
        using var model = TrainingTestKit.NewModel(dropout: true);
        var options = new TrainingOptions
        {
            Epochs = 6, BatchSize = 4, LearningRate = 0.01, Optimizer = OptimizerKind.AdamW, WeightDecay = 0.01, FrozenEpochs = 1,
            KeepBestBy = BestModelMetric.ValidationLoss, CheckpointDirectory = checkpointDir, Resume = true,
            LearningRateSchedule = new CosineSchedule { WarmupEpochs = 1 },
            Augmentation = global::MLNet.ImageTransfer.Augmentation.AugmentationPipeline.Parse("flip,rotate=10"),
            Callbacks = { new EarlyStopping { Patience = 20 } },
            StepCompleted = s =>
            {
                Console.WriteLine($"step {s.Epoch}.{s.Step}");
                Thread.Sleep(stepDelayMs);
            },
        };
        var history = ClassifierTrainingLoop.Fit(model, train, validation, TrainingTestKit.Preprocessing, options, CPU, seed: 1);
        global::MLNet.ImageTransfer.Weights.SafeTensors.Write(weightsOut, model.state_dict().Select(kv => (kv.Key, kv.Value)));
        Console.WriteLine($"done (resumed from: {history.ResumedFrom ?? "nothing"})");
        return 0;
    }

    static (int ExitCode, string Output) RunToEnd(string checkpointDir, string weightsOut)
    {
        using var child = FreshProcess.Start(ChildMode, checkpointDir, weightsOut, "0");
        var stdout = child.StandardOutput.ReadToEndAsync();
        var stderr = child.StandardError.ReadToEndAsync();
        if (!child.WaitForExit(TimeSpan.FromMinutes(3))) { child.Kill(true); throw new TimeoutException("training child did not finish"); }
        return (child.ExitCode, stdout.Result + stderr.Result);
    }

    /// <summary>Every folder that carries a checkpoint's name is a complete, verified checkpoint.</summary>
    static void AssertNoCorruptCheckpoint(string dir)
    {
        if (!Directory.Exists(dir)) return;
        foreach (var folder in Directory.GetDirectories(dir).Where(d => !Path.GetFileName(d).StartsWith('.')))
            Assert.True(CheckpointDirectory.TryRead(folder, out var problem) is not null, $"corrupt checkpoint after SIGKILL: {problem}");
    }

    [Fact]
    public void A_run_SIGKILLed_several_times_resumes_to_the_same_final_weights()
    {
        var root = TestData.NewTempDir("sigkill");
        var expectedPath = Path.Combine(root, "uninterrupted.safetensors");
        var reference = RunToEnd(Path.Combine(root, "reference"), expectedPath);
        Assert.True(reference.ExitCode == 0, reference.Output);

        var dir = Path.Combine(root, "killed");
        int seed = Environment.TickCount;
        var random = new Random(seed);
        int killedWhileTraining = 0;
        for (int attempt = 0; attempt < 4; attempt++)
        {
            using var child = FreshProcess.Start(ChildMode, dir, Path.Combine(root, $"never-{attempt}.safetensors"), "25");
            _ = child.StandardError.ReadToEndAsync();
            // Let it run to a random step of the remaining run (6 epochs × 4 steps), then a random few ms more: kills land in
            // steps, validation and checkpoint writes alike.
            int target = random.Next(1, 9), seen = 0;
            string? line;
            do
            {
                line = child.StandardOutput.ReadLine();
                if (line is not null && line.StartsWith("step", StringComparison.Ordinal)) seen++;
            } while (line is not null && seen < target);
            _ = child.StandardOutput.ReadToEndAsync();
            Thread.Sleep(random.Next(0, 40));
            bool running = !child.HasExited;
            if (running) { child.Kill(entireProcessTree: true); killedWhileTraining++; } // Process.Kill is SIGKILL on Unix
            child.WaitForExit();
            output.WriteLine($"attempt {attempt}: {(running ? "killed" : "had finished")}; checkpoints: {string.Join(", ", Directory.Exists(dir) ? Directory.GetDirectories(dir).Select(Path.GetFileName) : [])}");
            AssertNoCorruptCheckpoint(dir);
        }
        Assert.True(killedWhileTraining >= 2, $"only {killedWhileTraining} of 4 children were killed while training (seed {seed})");

        var resumedPath = Path.Combine(root, "resumed.safetensors");
        var final = RunToEnd(dir, resumedPath);
        Assert.True(final.ExitCode == 0, final.Output);
        output.WriteLine(final.Output.Split('\n').Last(l => l.StartsWith("done")));
        AssertNoCorruptCheckpoint(dir);
        TrainingTestKit.AssertSameWeights(TrainingTestKit.ReadWeights(expectedPath), TrainingTestKit.ReadWeights(resumedPath), $"resumed after SIGKILLs (random seed {seed})");
    }
}
