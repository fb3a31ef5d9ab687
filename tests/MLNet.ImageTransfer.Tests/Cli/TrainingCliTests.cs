using System.Diagnostics;
using MLNet.ImageTransfer.Training.Checkpoints;

namespace MLNet.ImageTransfer.Tests.Cli;

/// <summary>The training flags through the real CLI process: schedules, callbacks, checkpoints, --resume, Ctrl+C.</summary>
public class TrainingCliTests
{
    static readonly string[] Common = ["--val-split", "0.25", "--arch", "resnet18", "--image-size", "32", "--batch-size", "8", "--seed", "2", "--quiet"];

    [Fact]
    public void Train_with_schedule_early_stopping_and_checkpoints_then_resume_for_more_epochs()
    {
        var root = TestData.ShapesFolder();
        var dir = TestData.NewTempDir("cli-ckpt");
        var checkpoints = Path.Combine(dir, "ckpt");
        string[] flags = [.. Common, "--lr-schedule", "cosine", "--warmup-epochs", "1", "--early-stopping", "3", "--monitor", "val_accuracy",
            "--label-smoothing", "0.1", "--class-weights", "balanced", "--balanced-sampling", "--clip-grad-norm", "1", "--optimizer", "adamw", "--weight-decay", "0.01"];
        var train = CliProcess.Run(["train", "--data", root, .. flags, "--epochs", "2", "--checkpoint-dir", checkpoints, "--out", Path.Combine(dir, "m.zip")]);
        Assert.True(train.ExitCode == 0, train.StdErr + train.StdOut);
        Assert.Contains("Epoch 2/2", train.StdOut);
        Assert.Contains("- lr: 1e-4", train.StdOut); // warm-up epoch: 1e-3 × 0.1, Keras-style line
        Assert.Equal(2, new CheckpointDirectory(checkpoints).Latest()!.EpochsCompleted);

        // A resumed run repeats the original flags; a different optimizer is refused with a clear message.
        var wrong = CliProcess.Run(["train", "--data", root, .. Common, "--epochs", "3", "--resume", checkpoints, "--out", Path.Combine(dir, "m3.zip")]);
        Assert.Equal(1, wrong.ExitCode);
        Assert.Contains("optimizer AdamW, this run has Adam", wrong.StdErr);
        var resumed = CliProcess.Run(["train", "--data", root, .. flags, "--epochs", "3", "--resume", checkpoints, "--out", Path.Combine(dir, "m3.zip")]);
        Assert.True(resumed.ExitCode == 0, resumed.StdErr + resumed.StdOut);
        Assert.Contains("Resumed from the last checkpoint after epoch 2", resumed.StdOut);
        Assert.Contains("Epoch 3/3", resumed.StdOut);
        Assert.DoesNotContain("Epoch 1/3", resumed.StdOut);
        Assert.True(File.Exists(Path.Combine(dir, "m3.zip")));
    }

    [Fact]
    public void Bad_training_flags_give_one_clear_line()
    {
        var root = TestData.ShapesFolder();
        var badSchedule = CliProcess.Run(["train", "--data", root, .. Common, "--lr-schedule", "exponential", "--out", "/tmp/x.zip"]);
        Assert.Equal(1, badSchedule.ExitCode);
        Assert.Contains("Unknown learning-rate schedule 'exponential'", badSchedule.StdErr);
        var noVal = CliProcess.Run(["train", "--data", root, "--arch", "resnet18", "--image-size", "32", "--early-stopping", "2", "--quiet", "--out", "/tmp/x.zip"]);
        Assert.Equal(1, noVal.ExitCode);
        Assert.Contains("validation set", noVal.StdErr);
        var missing = CliProcess.Run(["train", "--data", root, .. Common, "--resume", "/nonexistent/ckpt", "--out", "/tmp/x.zip"]);
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("/nonexistent/ckpt", missing.StdErr);
    }

    [Fact]
    public async Task Ctrl_C_finishes_the_step_writes_a_checkpoint_and_exits_130()
    {
        var root = TestData.ShapesFolder();
        var dir = TestData.NewTempDir("cli-sigint");
        var checkpoints = Path.Combine(dir, "ckpt");
        var start = new ProcessStartInfo(ChildProcess.DotnetHost())
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = AppContext.BaseDirectory,
        };
        foreach (var a in (string[])[Path.Combine(AppContext.BaseDirectory, "mlnet-imagetransfer.dll"), "train", "--data", root, .. Common,
                     "--epochs", "200", "--checkpoint-dir", checkpoints, "--out", Path.Combine(dir, "m.zip")])
            start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        string? line;
        do line = process.StandardOutput.ReadLine(); while (line is not null && !line.StartsWith("Epoch 1/200", StringComparison.Ordinal));
        Assert.NotNull(line);
        var rest = process.StandardOutput.ReadToEndAsync();
        // A shell that starts a job in the background without job control (`cmd &` in a script, as some CI runners do)
        // sets SIGINT to "ignored" for it, and the child inherits that: no Ctrl+C can reach it. Then send SIGTERM,
        // which the CLI handles the same way (docker stop / kill).
        string signal = SignalIgnored(process.Id, 2) ? "-TERM" : "-INT";
        using (var kill = Process.Start("kill", [signal, process.Id.ToString()])) kill.WaitForExit();
        if (!process.WaitForExit(TimeSpan.FromMinutes(2))) { process.Kill(true); Assert.Fail($"the CLI did not stop after kill {signal}"); }

        string errors = await stderr, output = await rest;
        Assert.True(process.ExitCode == 130, $"exit {process.ExitCode} after kill {signal}: {errors}{output}");
        Assert.Contains("interrupted", errors);
        Assert.Contains("--resume " + checkpoints, errors);
        var latest = new CheckpointDirectory(checkpoints).Latest();
        Assert.NotNull(latest);
        Assert.True(latest!.EpochsCompleted >= 1);
        Assert.False(File.Exists(Path.Combine(dir, "m.zip")), "an interrupted run must not save a model");
    }

    /// <summary>Whether process <paramref name="pid"/> ignores signal <paramref name="signal"/> (SigIgn mask of /proc/PID/status).</summary>
    static bool SignalIgnored(int pid, int signal)
    {
        var line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("SigIgn:", StringComparison.Ordinal));
        ulong mask = Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16);
        return (mask & (1UL << (signal - 1))) != 0;
    }
}
