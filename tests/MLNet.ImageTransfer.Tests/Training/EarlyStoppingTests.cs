using MLNet.ImageTransfer.Training;
using MLNet.ImageTransfer.Training.Callbacks;
using MLNet.ImageTransfer.Training.Checkpoints;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.TrainingLoop;

/// <summary>Early stopping (Keras semantics), restoring the best weights, and the best checkpoint.</summary>
public class EarlyStoppingTests
{
    static EpochSummary Epoch(int epoch, double valLoss, double valAccuracy = 0)
        => new(epoch, 99, TrainingPhase.FineTune, 1, TimeSpan.Zero, 0, 0, 0, valLoss, valAccuracy, false);

    static int? StopEpoch(EarlyStopping callback, params double[] valLosses)
    {
        var control = new TrainingControl();
        callback.OnTrainBegin(control);
        for (int e = 1; e <= valLosses.Length; e++)
        {
            callback.OnEpochEnd(Epoch(e, valLosses[e - 1], valAccuracy: 1 - valLosses[e - 1]), control);
            if (control.StopRequested) return e;
        }
        return null;
    }

    [Fact]
    public void Stops_after_patience_epochs_without_an_improvement_larger_than_min_delta()
    {
        // Keras: wait resets on improvement (current + min_delta < best), stop when wait reaches patience.
        Assert.Equal(5, StopEpoch(new EarlyStopping { Patience = 2 }, 1.0, 0.8, 0.7, 0.75, 0.71, 0.5));
        Assert.Null(StopEpoch(new EarlyStopping { Patience = 3 }, 1.0, 0.8, 0.7, 0.75, 0.71, 0.5));
        // 0.69 improves on 0.7 but not by more than 0.05: it does not count.
        Assert.Equal(5, StopEpoch(new EarlyStopping { Patience = 2, MinDelta = 0.05 }, 1.0, 0.8, 0.7, 0.69, 0.68));
        Assert.Equal(3, StopEpoch(new EarlyStopping { Patience = 1, Monitor = MonitoredMetric.ValidationAccuracy }, 0.5, 0.4, 0.45));
        var early = new EarlyStopping { Patience = 1 };
        StopEpoch(early, 0.9, 0.5, 0.6);
        Assert.Equal((2, 3), (early.BestEpoch, early.StoppedEpoch));
    }

    [Fact]
    public void Training_stops_at_the_right_epoch_and_restores_the_best_weights()
    {
        using var train = TrainingTestKit.RandomImages(12, seed: 5);
        using var validation = TrainingTestKit.RandomImages(6, seed: 9);
        using var model = TrainingTestKit.NewModel();
        var states = new List<Dictionary<string, Tensor>> { TrainingTestKit.Snapshot(model) };
        var early = new EarlyStopping { Patience = 2, Monitor = MonitoredMetric.ValidationLoss };
        var options = new TrainingOptions
        {
            Epochs = 15, BatchSize = 4, LearningRate = 0.03, Callbacks = { early }, KeepBestBy = BestModelMetric.None,
            EpochCompleted = _ => states.Add(TrainingTestKit.Snapshot(model)),
        };
        var history = ClassifierTrainingLoop.Fit(model, train, validation, TrainingTestKit.Preprocessing, options, CPU, seed: 1);

        // Independently: the first epoch that is `patience` epochs past the best so far.
        var losses = history.Epochs.Select(e => e.ValidationLoss!.Value).ToArray();
        int best = 0, expectedStop = 0;
        for (int i = 0; i < losses.Length; i++)
        {
            if (losses[i] < losses[best] || i == 0) best = i;
            else if (i - best >= 2) { expectedStop = i + 1; break; }
        }
        Assert.True(expectedStop > 0, $"validation loss never stalled for 2 epochs in 15 ({string.Join(", ", losses)}): the test data should make it stall");
        Assert.Equal(expectedStop, history.Epochs.Count);
        Assert.Equal(expectedStop, early.StoppedEpoch);
        Assert.Contains("early stopping", history.StopReason);
        // restore_best_weights: the model ends with the best epoch's weights, and the history says which.
        int bestEpoch = Array.IndexOf(losses, losses.Min()) + 1;
        Assert.Equal(bestEpoch, history.KeptEpoch);
        Assert.NotEqual(history.Epochs.Count, bestEpoch);
        TrainingTestKit.AssertSameWeights(states[bestEpoch], TrainingTestKit.Snapshot(model), "restored weights");
    }

    [Fact]
    public void The_best_checkpoint_holds_the_epoch_with_the_best_monitored_value()
    {
        var dir = TestData.NewTempDir("best-checkpoint");
        using var train = TrainingTestKit.RandomImages(12, seed: 5);
        using var validation = TrainingTestKit.RandomImages(6, seed: 9);
        using var model = TrainingTestKit.NewModel();
        var states = new List<Dictionary<string, Tensor>> { TrainingTestKit.Snapshot(model) };
        var options = new TrainingOptions
        {
            Epochs = 5, BatchSize = 4, LearningRate = 0.03, KeepBestBy = BestModelMetric.ValidationAccuracy, CheckpointDirectory = dir,
            EpochCompleted = _ => states.Add(TrainingTestKit.Snapshot(model)),
        };
        var history = ClassifierTrainingLoop.Fit(model, train, validation, TrainingTestKit.Preprocessing, options, CPU, seed: 1);

        var accuracies = history.Epochs.Select(e => e.ValidationAccuracy!.Value).ToArray();
        int bestEpoch = Array.IndexOf(accuracies, accuracies.Max()) + 1; // the first epoch reaching the maximum (strict improvement)
        var checkpoints = new CheckpointDirectory(dir);
        var best = checkpoints.Best();
        Assert.NotNull(best);
        Assert.Equal(bestEpoch, best!.EpochsCompleted);
        Assert.Equal(bestEpoch, history.KeptEpoch);
        TrainingTestKit.AssertSameWeights(states[bestEpoch], TrainingTestKit.ReadWeights(best.ModelPath!), "best checkpoint");
        // The newest two per-epoch checkpoints are kept, the last one holds the last epoch's weights and the history.
        var last = checkpoints.Latest()!;
        Assert.Equal(5, last.EpochsCompleted);
        Assert.Equal(5, last.History.Count);
        TrainingTestKit.AssertSameWeights(states[5], TrainingTestKit.ReadWeights(last.ModelPath!), "last checkpoint");
        Assert.Equal(["epoch-0004", "epoch-0005"], checkpoints.ValidCheckpoints(CheckpointDirectory.LastKind).Select(c => Path.GetFileName(c.Directory!)).OrderBy(n => n));
        Assert.Empty(Directory.GetDirectories(dir, ".tmp-*"));
        Assert.Empty(checkpoints.Problems);
    }
}
