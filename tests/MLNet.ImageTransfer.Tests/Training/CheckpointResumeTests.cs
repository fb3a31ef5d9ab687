using MLNet.ImageTransfer.Training;
using MLNet.ImageTransfer.Training.Callbacks;
using MLNet.ImageTransfer.Training.Checkpoints;
using MLNet.ImageTransfer.Training.Schedules;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.TrainingLoop;

/// <summary>
/// Resume: an interrupted run continued from its checkpoint ends bit-identical to an uninterrupted one (CPU, same
/// seed), with dropout, augmentation, a schedule and early-stopping state in play; corrupt checkpoints are skipped;
/// a diverging loss stops with the last good checkpoint intact; a failing write keeps the previous checkpoint.
/// </summary>
public class CheckpointResumeTests
{
    /// <summary>Cancels the run after a given (epoch, step).</summary>
    sealed class CancelAt(int epoch, int step, CancellationTokenSource source) : TrainingCallback
    {
        public override void OnStepEnd(StepProgress s, TrainingControl control)
        {
            if (s.Epoch == epoch && s.Step == step) source.Cancel();
        }
    }

    static TrainingOptions Options(string? checkpointDir) => new()
    {
        Epochs = 4, BatchSize = 4, LearningRate = 0.01, Optimizer = OptimizerKind.AdamW, WeightDecay = 0.01, FrozenEpochs = 1,
        FineTuneLearningRate = 0.005, KeepBestBy = BestModelMetric.ValidationLoss, CheckpointDirectory = checkpointDir,
        LearningRateSchedule = new CosineSchedule { WarmupEpochs = 1 }, GradientClipNorm = 1.0, LabelSmoothing = 0.1,
        Augmentation = global::MLNet.ImageTransfer.Augmentation.AugmentationPipeline.Parse("flip,rotate=10"),
        Callbacks = { new EarlyStopping { Patience = 10 } },
    };

    static (Dictionary<string, Tensor> Weights, TrainingHistory History) Train(TrainingOptions options, bool resume = false)
    {
        using var train = TrainingTestKit.RandomImages(14, seed: 5);
        using var validation = TrainingTestKit.RandomImages(6, seed: 9);
        using var model = TrainingTestKit.NewModel(dropout: true);
        options.Resume = resume;
        var history = ClassifierTrainingLoop.Fit(model, train, validation, TrainingTestKit.Preprocessing, options, CPU, seed: 1);
        return (TrainingTestKit.Snapshot(model), history);
    }

    [Theory]
    [InlineData(2, 2)] // mid-epoch, in the fine-tuning phase: partial epoch, optimizer and RNG state restored
    [InlineData(1, 4)] // last step of the frozen phase: resume rebuilds the optimizer for the next phase
    public void An_interrupted_run_resumed_from_its_checkpoint_ends_bit_identical(int stopEpoch, int stopStep)
    {
        var (expected, expectedHistory) = Train(Options(null));

        var dir = TestData.NewTempDir("resume");
        using var source = new CancellationTokenSource();
        var interrupted = Options(dir);
        interrupted.Callbacks.Add(new CancelAt(stopEpoch, stopStep, source));
        interrupted.Cancellation = source.Token;
        var e = Assert.Throws<TrainingInterruptedException>(() => Train(interrupted));
        Assert.NotNull(e.Checkpoint);
        var checkpoint = CheckpointDirectory.TryRead(e.Checkpoint!, out var problem);
        Assert.True(checkpoint is not null, problem);

        var (resumed, history) = Train(Options(dir), resume: true);
        Assert.NotNull(history.ResumedFrom);
        TrainingTestKit.AssertSameWeights(expected, resumed, "resumed run");
        Assert.Equal(expectedHistory.Epochs.Select(x => (x.TrainLoss, x.ValidationLoss, x.LearningRate)), history.Epochs.Select(x => (x.TrainLoss, x.ValidationLoss, x.LearningRate)));
        Assert.Equal(expectedHistory.KeptEpoch, history.KeptEpoch);
    }

    [Fact]
    public void A_corrupt_newest_checkpoint_is_skipped_and_the_previous_one_used()
    {
        var dir = TestData.NewTempDir("corrupt");
        var (expected, _) = Train(Options(dir));
        var checkpoints = new CheckpointDirectory(dir);
        var newest = checkpoints.Latest()!;
        Assert.Equal(4, newest.EpochsCompleted);
        // Flip one byte of the newest model: the hash check rejects it, the epoch-3 checkpoint is used, and the rerun of
        // epoch 4 reproduces the same weights.
        var model = newest.ModelPath!;
        var bytes = File.ReadAllBytes(model);
        bytes[^3] ^= 0x55;
        File.WriteAllBytes(model, bytes);
        var reopened = new CheckpointDirectory(dir);
        Assert.Equal(3, reopened.Latest()!.EpochsCompleted);
        Assert.Contains(reopened.Problems, p => p.Contains("SHA-256") && p.Contains("epoch-0004"));

        var (resumed, history) = Train(Options(dir), resume: true);
        Assert.Contains("epoch 3", history.ResumedFrom);
        Assert.Contains(history.Notes, n => n.Contains("SHA-256"));
        TrainingTestKit.AssertSameWeights(expected, resumed, "resumed after a corrupt checkpoint");
    }

    [Fact]
    public void Resuming_a_finished_run_trains_nothing_and_ends_with_the_same_weights()
    {
        // A process killed after its last checkpoint but before saving the model: resuming must give that model.
        var dir = TestData.NewTempDir("finished");
        var (expected, first) = Train(Options(dir));
        var (again, history) = Train(Options(dir), resume: true);
        Assert.Equal(first.Epochs.Count, history.Epochs.Count);
        Assert.Equal(first.KeptEpoch, history.KeptEpoch);
        TrainingTestKit.AssertSameWeights(expected, again, "resumed finished run");
    }

    [Fact]
    public void Resume_rejects_a_checkpoint_of_another_run_with_a_clear_message()
    {
        var dir = TestData.NewTempDir("mismatch");
        var options = Options(dir);
        options.Epochs = 1;
        Train(options);
        var other = Options(dir);
        other.BatchSize = 3;
        var e = Assert.Throws<InvalidOperationException>(() => Train(other, resume: true));
        Assert.Contains("batch size 4", e.Message);
        Assert.Contains(dir, e.Message);
    }

    /// <summary>A rate that makes SGD blow up from epoch 2 on.</summary>
    sealed class ExplodeFromEpochTwo : LearningRateSchedule
    {
        public override double LearningRate(SchedulePosition p) => p.Epoch >= 2 ? 1e35 : p.BaseLearningRate;
        public override string ToString() => "explode";
    }

    [Fact]
    public void A_diverging_loss_stops_with_a_clear_message_and_the_last_good_checkpoint_intact()
    {
        var dir = TestData.NewTempDir("nan");
        using var train = TrainingTestKit.RandomImages(12);
        using var model = TrainingTestKit.NewModel();
        Dictionary<string, Tensor>? afterEpoch1 = null;
        var options = new TrainingOptions
        {
            Epochs = 3, BatchSize = 4, Optimizer = OptimizerKind.Sgd, LearningRate = 0.01, KeepBestBy = BestModelMetric.None,
            CheckpointDirectory = dir, LearningRateSchedule = new ExplodeFromEpochTwo(),
            EpochCompleted = e => { if (e.Epoch == 1) afterEpoch1 = TrainingTestKit.Snapshot(model); },
        };
        var e = Assert.Throws<TrainingDivergedException>(() => ClassifierTrainingLoop.Fit(model, train, null, TrainingTestKit.Preprocessing, options, CPU, seed: 1));
        Assert.Contains("diverged", e.Message);
        Assert.Equal(2, e.Epoch);
        Assert.Contains("epoch-0001", e.Message);
        var last = new CheckpointDirectory(dir).Latest();
        Assert.NotNull(last);
        Assert.Equal(1, last!.EpochsCompleted);
        Assert.Equal(e.LastCheckpoint, last.Directory);
        TrainingTestKit.AssertSameWeights(afterEpoch1!, TrainingTestKit.ReadWeights(last.ModelPath!), "last good checkpoint");
        Assert.Single(Directory.GetDirectories(dir));
    }

    /// <summary>A stream that fails like a full disk after some bytes.</summary>
    internal sealed class FullDiskStream(Stream inner, long capacity) : Stream
    {
        long _written;
        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));
        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (_written + buffer.Length > capacity) throw new IOException("No space left on device");
            inner.Write(buffer);
            _written += buffer.Length;
        }
        public override void Flush() => inner.Flush();
        protected override void Dispose(bool disposing) { if (disposing) inner.Dispose(); base.Dispose(disposing); }
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => _written;
        public override long Position { get => _written; set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }

    [Fact]
    public void A_failed_checkpoint_write_keeps_the_previous_checkpoint_and_names_the_file()
    {
        var dir = TestData.NewTempDir("fulldisk");
        var options = Options(dir);
        options.Epochs = 1;
        Train(options);
        var good = new CheckpointDirectory(dir).Latest()!;
        var before = File.ReadAllBytes(good.ModelPath!);

        var failing = new CheckpointDirectory(dir) { OpenWrite = p => new FullDiskStream(new FileStream(p, FileMode.CreateNew), 1000) };
        var manifest = good with { EpochsCompleted = 2, Directory = null };
        var e = Assert.Throws<IOException>(() => failing.Write(manifest, [(TrainingCheckpoint.ModelFileName, s => s.Write(new byte[5000]))]));
        Assert.Contains("No space left on device", e.Message);
        Assert.Contains("model.safetensors", e.Message);
        Assert.Contains("unchanged", e.Message);

        var after = new CheckpointDirectory(dir);
        Assert.Equal(1, after.Latest()!.EpochsCompleted);
        Assert.Equal(before, File.ReadAllBytes(after.Latest()!.ModelPath!));
        Assert.Empty(Directory.GetDirectories(dir, ".tmp-*"));
        Assert.False(Directory.Exists(Path.Combine(dir, "epoch-0002")));
    }

    [Fact]
    public void An_unwritable_checkpoint_folder_fails_before_training_with_its_path()
    {
        var dir = TestData.NewTempDir("unwritable-ckpt");
        var file = Path.Combine(dir, "a-file");
        File.WriteAllText(file, "x");
        var options = Options(Path.Combine(file, "ckpt"));
        int epochs = 0;
        options.EpochCompleted = _ => epochs++;
        var e = Assert.Throws<IOException>(() => Train(options));
        Assert.Contains("checkpoint folder '" + Path.Combine(file, "ckpt") + "' cannot be written", e.Message);
        Assert.Equal(0, epochs);
    }

    [Fact]
    public void A_checkpoint_without_its_manifest_is_not_a_checkpoint()
    {
        var dir = TestData.NewTempDir("nomanifest");
        var options = Options(dir);
        options.Epochs = 2;
        Train(options);
        File.Delete(Path.Combine(dir, "epoch-0002", TrainingCheckpoint.ManifestFileName));
        var checkpoints = new CheckpointDirectory(dir);
        Assert.Equal(1, checkpoints.Latest()!.EpochsCompleted);
        Assert.Contains(checkpoints.Problems, p => p.Contains("epoch-0002") && p.Contains("incomplete"));
    }
}
