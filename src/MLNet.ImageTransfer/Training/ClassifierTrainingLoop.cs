using System.Diagnostics;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Training;

/// <summary>
/// The training loop: shuffled mini-batches, cross-entropy, Adam/SGD, optional frozen-backbone phase, per-epoch
/// validation, and the best epoch's weights kept. Knows nothing of ML.NET.
/// </summary>
public static class ClassifierTrainingLoop
{
    /// <summary>
    /// Trains <paramref name="model"/> in place (already on <paramref name="device"/>) and returns the history.
    /// Shuffling uses <paramref name="seed"/>; dropout and initialisation use TorchSharp's global generator, which the
    /// caller seeds.
    /// </summary>
    public static TrainingHistory Fit(ImageClassifierModel model, LabeledImageSet train, LabeledImageSet? validation,
        ImagePreprocessing preprocessing, TrainingOptions options, Device device, int seed, CancellationToken cancellation = default)
    {
        options.Validate();
        if (train.Count == 0) throw new InvalidOperationException("The training set is empty.");
        var history = new List<EpochSummary>();
        var random = new Random(seed);
        var groups = model.LayerGroups;
        var schedule = FineTuningSchedule.Create(groups, options);
        Dictionary<string, Tensor>? best = null;
        double bestValue = double.NaN;
        int keptEpoch = options.Epochs;
        optim.Optimizer? optimizer = null;
        FineTuningPhase? phase = null;
        // How a batch becomes logits (Training/FeatureCache.cs): the whole network, or a frozen backbone's cached features.
        using var trainFeatures = FeatureCache.ForTraining(schedule, options, train);
        using var validationFeatures = validation is null ? null : FeatureCache.ForValidation(schedule, options, validation);
        try
        {
            for (int epoch = 1; epoch <= options.Epochs; epoch++)
            {
                cancellation.ThrowIfCancellationRequested();
                // Fine-tuning schedule (Training/FineTuning.cs): which layer groups train this epoch, at which rates.
                var epochPlan = schedule.PhaseOf(epoch);
                var epochPhase = epochPlan.HeadOnly ? TrainingPhase.Frozen : TrainingPhase.FineTune;
                double lr = epochPlan.HeadLearningRate;
                if (!ReferenceEquals(phase, epochPlan))
                {
                    // Freezing = no gradients for frozen groups; the optimiser is rebuilt so it only holds what trains.
                    FineTuningSchedule.ApplyFreezing(model, groups, epochPlan);
                    optimizer?.Dispose();
                    optimizer = FineTuningSchedule.CreateOptimizer(model, groups, epochPlan, options);
                    phase = epochPlan;
                }

                var stopwatch = Stopwatch.StartNew();
                model.train();
                schedule.ApplyBatchNormFreezing(groups, epochPlan);

                var order = Enumerable.Range(0, train.Count).ToArray();
                random.Shuffle(order);
                int steps = (order.Length + options.BatchSize - 1) / options.BatchSize;
                // Augmentation (training only) runs on background workers, a few batches ahead; seeded per (seed, epoch, batch).
                int backboneBatchesBefore = trainFeatures.BackboneBatches;
                using var batches = trainFeatures.NeedsImages ? Augmentation.EpochBatches.Create(train, order, options.BatchSize, options.Augmentation, preprocessing, seed, epoch) : null;
                double lossSum = 0; long correct = 0;
                for (int step = 0; step < steps; step++)
                {
                    cancellation.ThrowIfCancellationRequested();
                    var rows = order.AsSpan(step * options.BatchSize, Math.Min(options.BatchSize, order.Length - step * options.BatchSize));
                    using var scope = NewDisposeScope();
                    optimizer!.zero_grad();
                    var (logits, y) = trainFeatures.Forward(model, rows, () => batches!.Next(), train.Labels, preprocessing, device);
                    var loss = nn.functional.cross_entropy(logits, y);
                    float lossValue = loss.item<float>();
                    if (!float.IsFinite(lossValue))
                        throw new InvalidOperationException($"Training diverged: the loss became {lossValue} at epoch {epoch}, step {step + 1}. Lower the learning rate (now {lr}).");
                    loss.backward();
                    optimizer.step();
                    lossSum += lossValue * rows.Length;
                    correct += logits.argmax(1).eq(y).sum().item<long>();
                    int seen = Math.Min((step + 1) * options.BatchSize, order.Length);
                    options.StepCompleted?.Invoke(new StepProgress(epoch, options.Epochs, step + 1, steps, lossSum / seen, (double)correct / seen));
                }
                double trainLoss = lossSum / order.Length, trainAccuracy = (double)correct / order.Length;

                double? valLoss = null, valAccuracy = null;
                if (validation is { Count: > 0 })
                {
                    var (l, a) = Evaluate(model, validation, preprocessing, options.BatchSize, device, validationFeatures);
                    valLoss = l; valAccuracy = a;
                }

                bool isBest = false;
                if (valLoss is not null && options.KeepBestBy != BestModelMetric.None)
                {
                    double value = options.KeepBestBy == BestModelMetric.ValidationLoss ? valLoss.Value : -valAccuracy!.Value;
                    if (best is null || value < bestValue)
                    {
                        bestValue = value;
                        DisposeAll(best);
                        best = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
                        keptEpoch = epoch;
                        isBest = true;
                    }
                }
                var summary = new EpochSummary(epoch, options.Epochs, epochPhase, steps, stopwatch.Elapsed, lr, trainLoss, trainAccuracy, valLoss, valAccuracy, isBest)
                {
                    BackboneBatches = trainFeatures.BackboneBatches - backboneBatchesBefore,
                };
                history.Add(summary);
                options.EpochCompleted?.Invoke(summary);
            }
            if (best is not null)
            {
                using var _ = no_grad();
                foreach (var (key, tensor) in model.state_dict()) tensor.copy_(best[key]);
            }
        }
        finally
        {
            DisposeAll(best);
            optimizer?.Dispose();
            foreach (var p in model.parameters()) p.requires_grad = true;
            model.eval();
        }
        return new TrainingHistory(history, keptEpoch) { Schedule = schedule };
    }

    /// <summary>Mean cross-entropy and accuracy of the model (eval mode) on a set.</summary>
    public static (double Loss, double Accuracy) Evaluate(ImageClassifierModel model, LabeledImageSet data, ImagePreprocessing preprocessing, int batchSize, Device device)
        => Evaluate(model, data, preprocessing, batchSize, device, features: null);

    internal static (double Loss, double Accuracy) Evaluate(ImageClassifierModel model, LabeledImageSet data, ImagePreprocessing preprocessing, int batchSize, Device device, FeatureCache? features)
    {
        features ??= FeatureCache.None(data.Count);
        bool wasTraining = model.training;
        model.eval();
        double lossSum = 0; long correct = 0;
        try
        {
            using var _ = no_grad();
            var rows = Enumerable.Range(0, data.Count).ToArray();
            for (int start = 0; start < rows.Length; start += batchSize)
            {
                using var scope = NewDisposeScope();
                int from = start, count = Math.Min(batchSize, rows.Length - start);
                var (logits, y) = features.Forward(model, rows.AsSpan(from, count), () => data.Batch(rows.AsSpan(from, count)), data.Labels, preprocessing, device);
                lossSum += nn.functional.cross_entropy(logits, y, reduction: nn.Reduction.Sum).item<float>();
                correct += logits.argmax(1).eq(y).sum().item<long>();
            }
        }
        finally
        {
            model.train(wasTraining);
        }
        return (lossSum / data.Count, (double)correct / data.Count);
    }

    static void DisposeAll(Dictionary<string, Tensor>? tensors)
    {
        if (tensors is null) return;
        foreach (var t in tensors.Values) t.Dispose();
    }
}
