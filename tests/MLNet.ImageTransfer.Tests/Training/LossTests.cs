using System.Text.Json;
using MLNet.ImageTransfer.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.TrainingLoop;

/// <summary>Class weights and label smoothing against PyTorch's cross_entropy (fixtures/training_reference.json), and balanced weights / sampling.</summary>
public class LossTests
{
    [Fact]
    public void Weighted_and_smoothed_loss_matches_PyTorch_cross_entropy()
    {
        var root = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.Dir, "training_reference.json"))).RootElement.GetProperty("losses");
        var logitsRows = root.GetProperty("logits").EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetDouble()).ToArray()).ToArray();
        using var logits = tensor(logitsRows.SelectMany(r => r).ToArray(), [logitsRows.Length, logitsRows[0].Length]);
        using var targets = tensor(root.GetProperty("targets").EnumerateArray().Select(v => v.GetInt64()).ToArray());
        int checkedCases = 0;
        foreach (var c in root.GetProperty("cases").EnumerateArray())
        {
            double[]? weights = c.GetProperty("weight").ValueKind == JsonValueKind.Null ? null : c.GetProperty("weight").EnumerateArray().Select(v => v.GetDouble()).ToArray();
            double smoothing = c.GetProperty("label_smoothing").GetDouble();
            using var loss = new ClassificationLoss(weights, smoothing, CPU);
            double ours = loss.Compute(logits, targets).item<double>();
            Assert.Equal(c.GetProperty("loss").GetDouble(), ours, 9);
            checkedCases++;
        }
        Assert.Equal(5, checkedCases);
    }

    [Fact]
    public void Class_weights_change_the_loss_by_the_weighted_mean_formula()
    {
        // Hand-derived: mean = Σ w_y·(−log softmax_y) / Σ w_y.
        using var logits = tensor(new double[] { 2, 0, 0, 0, 1, 0 }, [2, 3]);
        using var targets = tensor(new long[] { 0, 2 });
        double l0 = -Math.Log(Math.Exp(2) / (Math.Exp(2) + 2)), l1 = -Math.Log(1 / (Math.E + 2));
        using var plain = new ClassificationLoss(null, 0, CPU);
        using var weighted = new ClassificationLoss([1, 1, 3], 0, CPU);
        Assert.Equal((l0 + l1) / 2, plain.Compute(logits, targets).item<double>(), 12);
        Assert.Equal((l0 + 3 * l1) / 4, weighted.Compute(logits, targets).item<double>(), 12);
    }

    [Fact]
    public void Balanced_class_weights_are_N_over_K_times_class_count()
    {
        int[] labels = [0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2];
        var w = ClassWeights.Balanced.Resolve(labels, 3);
        Assert.Equal([12.0 / (3 * 6), 12.0 / (3 * 2), 12.0 / (3 * 4)], w);
        Assert.Equal([1.0, 2.0, 0.5], ClassWeights.Of(1, 2, 0.5).Resolve(labels, 3));
        Assert.Contains("3 classes", Assert.Throws<ArgumentException>(() => ClassWeights.Of(1, 2).Resolve(labels, 3)).Message);
    }

    [Fact]
    public void Balanced_sampling_draws_every_class_about_equally_and_is_a_function_of_seed_and_epoch()
    {
        // 90 / 9 / 1 images: a permutation shows class 2 once per epoch; balanced sampling about a third of the time.
        var labels = Enumerable.Range(0, 100).Select(i => i < 90 ? 0 : i < 99 ? 1 : 2).ToArray();
        var counts = new int[3];
        for (int epoch = 1; epoch <= 30; epoch++)
            foreach (var row in EpochSampling.Order(labels, seed: 4, epoch, balanced: true)) counts[labels[row]]++;
        foreach (var c in counts) Assert.InRange(c / 3000.0, 0.28, 0.39);
        Assert.Equal(EpochSampling.Order(labels, 4, 7, true), EpochSampling.Order(labels, 4, 7, true));
        Assert.NotEqual(EpochSampling.Order(labels, 4, 7, true), EpochSampling.Order(labels, 4, 8, true));
        var permutation = EpochSampling.Order(labels, 4, 7, false);
        Assert.Equal(Enumerable.Range(0, 100), permutation.OrderBy(i => i));
    }

    [Fact]
    public void Training_with_class_weights_and_smoothing_reports_the_weighted_loss()
    {
        // One step, learning rate 0: the reported loss is the loss of the initial model on the batch, which we recompute.
        using var data = TrainingTestKit.RandomImages(6);
        using var model = TrainingTestKit.NewModel();
        var options = new TrainingOptions
        {
            Epochs = 1, BatchSize = 6, LearningRate = 1e-30, KeepBestBy = BestModelMetric.None,
            ClassWeights = ClassWeights.Of(3, 1.5, 0.5), LabelSmoothing = 0.2, FreezeBatchNormStatistics = false,
        };
        var reported = new List<double>();
        options.StepCompleted = s => reported.Add(s.Loss);
        using var reference = TrainingTestKit.NewModel();
        var history = ClassifierTrainingLoop.Fit(model, data, null, TrainingTestKit.Preprocessing, options, CPU, seed: 1);

        reference.train();
        using var scope = NewDisposeScope();
        var (bytes, labels) = data.Batch(Enumerable.Range(0, 6).ToArray());
        var logits = reference.call(global::MLNet.ImageTransfer.Data.ImageTensors.Normalize(bytes, TrainingTestKit.Preprocessing, CPU));
        double weighted = nn.functional.cross_entropy(logits, labels, weight: tensor(new float[] { 3, 1.5f, 0.5f }), label_smoothing: 0.2).item<float>();
        double plain = nn.functional.cross_entropy(logits, labels).item<float>();
        Assert.Single(reported);
        Assert.Equal(weighted, reported[0], 5);
        Assert.NotEqual(plain, reported[0], 3);
    }
}
