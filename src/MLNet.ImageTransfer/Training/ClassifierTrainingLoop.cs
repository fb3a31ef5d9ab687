using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Training;

/// <summary>
/// The training loop: shuffled (or class-balanced) mini-batches, cross-entropy (class weights, label smoothing),
/// Adam/AdamW/SGD with a learning-rate schedule and gradient clipping, optional frozen-backbone phase, per-epoch
/// validation, callbacks (early stopping), the best epoch's weights kept, checkpoints and resume. Knows nothing of
/// ML.NET. The run itself is <see cref="TrainingRun"/>.
/// </summary>
public static class ClassifierTrainingLoop
{
    /// <summary>
    /// Trains <paramref name="model"/> in place (already on <paramref name="device"/>) and returns the history.
    /// Shuffling, balanced sampling and augmentation draws derive from (<paramref name="seed"/>, epoch, batch);
    /// dropout and initialisation use TorchSharp's global generator, which the caller seeds (its state is saved in
    /// checkpoints). <paramref name="cancellation"/>, when given, overrides <see cref="TrainingOptions.Cancellation"/>.
    /// </summary>
    /// <exception cref="TrainingInterruptedException">Cancelled; the step in progress finished and, with a checkpoint folder, was saved.</exception>
    /// <exception cref="TrainingDivergedException">The loss became NaN or infinite.</exception>
    public static TrainingHistory Fit(ImageClassifierModel model, LabeledImageSet train, LabeledImageSet? validation,
        ImagePreprocessing preprocessing, TrainingOptions options, Device device, int seed, CancellationToken cancellation = default)
    {
        if (cancellation.CanBeCanceled) options = options.With(o => o.Cancellation = cancellation);
        using var run = new TrainingRun(model, train, validation, preprocessing, options, device, seed);
        return run.Run();
    }

    /// <summary>Mean cross-entropy and accuracy of the model (eval mode) on a set.</summary>
    public static (double Loss, double Accuracy) Evaluate(ImageClassifierModel model, LabeledImageSet data, ImagePreprocessing preprocessing, int batchSize, Device device)
        => Evaluate(model, data, preprocessing, batchSize, device, features: null, phase: null);

    internal static (double Loss, double Accuracy) Evaluate(ImageClassifierModel model, LabeledImageSet data, ImagePreprocessing preprocessing, int batchSize, Device device,
        FeatureCache? features, FineTuningPhase? phase)
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
                var (logits, y) = features.Forward(model, phase, rows.AsSpan(from, count), () => data.Batch(rows.AsSpan(from, count)), data.Labels, preprocessing, device);
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
}
