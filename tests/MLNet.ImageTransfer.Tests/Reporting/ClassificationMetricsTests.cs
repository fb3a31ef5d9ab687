using Microsoft.ML;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Reporting;

namespace MLNet.ImageTransfer.Tests.Reporting;

public class ClassificationMetricsTests
{
    [Fact]
    public void Per_class_metrics_match_a_hand_computation()
    {
        // Rows: true class; columns: predicted. Class "c" has no images but is predicted once.
        long[][] confusion = [[5, 2, 0], [1, 3, 1], [0, 0, 0]];
        var metrics = ClassificationMetrics.PerClass(["a", "b", "c"], confusion);

        // a: TP 5, predicted a 6 times (column 0: 5+1), 7 images of a (row 0: 5+2).
        Assert.Equal(5.0 / 6, metrics[0].Precision, 12);
        Assert.Equal(5.0 / 7, metrics[0].Recall, 12);
        Assert.Equal(2 * (5.0 / 6) * (5.0 / 7) / (5.0 / 6 + 5.0 / 7), metrics[0].F1, 12);
        Assert.Equal(7, metrics[0].Support);
        // b: TP 3, predicted 5 times (2+3), 5 images (1+3+1): precision = recall = F1 = 0.6.
        Assert.Equal(0.6, metrics[1].Precision, 12);
        Assert.Equal(0.6, metrics[1].Recall, 12);
        Assert.Equal(0.6, metrics[1].F1, 12);
        // c: predicted once, wrongly; no images: everything 0, not NaN.
        Assert.Equal(new ClassMetrics("c", 0, 0, 0, 0), metrics[2]);

        Assert.Throws<ArgumentException>(() => ClassificationMetrics.PerClass(["a", "b"], confusion));
    }

    [Fact]
    public void Top_losses_are_ordered_by_cross_entropy_of_the_true_class()
    {
        var random = new Random(5);
        string[] names = ["a", "b", "c", "d"];
        var logits = Enumerable.Range(0, 40).Select(_ => names.Select(_ => random.NextDouble() * 8 - 4).ToArray()).ToArray();
        var truth = logits.Select(_ => random.Next(names.Length)).ToArray();
        var images = logits.Select((z, i) =>
        {
            var e = z.Select(Math.Exp).ToArray();
            return new ScoredImage($"img{i:D2}.png", truth[i], e.Select(v => (float)(v / e.Sum())).ToArray());
        }).ToList();

        var top = ClassificationMetrics.TopLosses(images, names, count: 7);

        // Independently: cross-entropy from the logits, logsumexp(z) − z[true], in double precision.
        var expected = logits.Select((z, i) => (Path: $"img{i:D2}.png", Loss: Math.Log(z.Sum(Math.Exp)) - z[truth[i]]))
            .OrderByDescending(t => t.Loss).Take(7).ToList();
        Assert.Equal(expected.Select(t => t.Path), top.Select(t => t.ImagePath));
        foreach (var (t, e) in top.Zip(expected)) Assert.Equal(e.Loss, t.Loss, 5);
        Assert.All(top, t =>
        {
            int i = int.Parse(t.ImagePath[3..5]);
            Assert.Equal(names[truth[i]], t.Actual);
            Assert.Equal(names[Array.IndexOf(logits[i], logits[i].Max())], t.Predicted);
        });
    }

    [Fact]
    public void A_zero_probability_costs_the_log_loss_floor_not_infinity()
    {
        var top = ClassificationMetrics.TopLosses([new("x.png", 0, [0f, 1f])], ["a", "b"]);
        Assert.Equal(-Math.Log(ClassificationMetrics.ProbabilityFloor), top[0].Loss, 9);
        Assert.False(top[0].IsCorrect);
    }

    /// <summary>
    /// On a trained pipeline: the report's per-class numbers agree with ML.NET's own, and its top losses with the
    /// probabilities <see cref="ImageClassificationWorkflow.Predict"/> gives for the same images.
    /// </summary>
    [Fact]
    public void Evaluation_report_agrees_with_mlnet_and_with_predict()
    {
        var root = TestData.ShapesFolder();
        var ml = new MLContext(seed: 1);
        var trained = ImageClassificationWorkflow.TrainFromFolder(ml, root, TestData.TinyOptions(epochs: 1));
        var data = ml.Data.LoadFromEnumerable(Directory.GetFiles(root, "*.png", SearchOption.AllDirectories).Order()
            .Select(f => new ImageFolderEntry { ImagePath = f, Label = Path.GetFileName(Path.GetDirectoryName(f))! }).ToList());

        var report = ImageClassificationWorkflow.Evaluate(ml, trained.Model, data, topLosses: 5);
        var mlnet = ml.MulticlassClassification.Evaluate(trained.Model.Transform(data)).ConfusionMatrix;
        for (int c = 0; c < report.ClassNames.Count; c++)
        {
            Assert.Equal(mlnet.PerClassPrecision[c], report.PerClass[c].Precision, 9);
            Assert.Equal(mlnet.PerClassRecall[c], report.PerClass[c].Recall, 9);
        }

        // Independently: every image's probabilities from Predict, loss −ln p(actual), the 5 highest.
        var files = Directory.GetFiles(root, "*.png", SearchOption.AllDirectories);
        var expected = ImageClassificationWorkflow.Predict(ml, trained.Model, files, top: report.ClassNames.Count)
            .Select(p => (p.ImagePath, p.PredictedClass, Actual: Path.GetFileName(Path.GetDirectoryName(p.ImagePath))!,
                Loss: -Math.Log(p.Top.Single(t => t.Class == Path.GetFileName(Path.GetDirectoryName(p.ImagePath))).Probability)))
            .OrderByDescending(t => t.Loss).Take(5).ToList();
        Assert.Equal(expected.Select(e => e.ImagePath), report.TopLosses.Select(t => t.ImagePath));
        foreach (var (loss, e) in report.TopLosses.Zip(expected))
        {
            Assert.Equal(e.Actual, loss.Actual);
            Assert.Equal(e.PredictedClass, loss.Predicted);
            Assert.Equal(e.Loss, loss.Loss, 4);
        }
        Assert.Equal(trained.History.Epochs, ImageClassificationWorkflow.HistoryOf(trained.Model)!.Epochs);
    }
}
