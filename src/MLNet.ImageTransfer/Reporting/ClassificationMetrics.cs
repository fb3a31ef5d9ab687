namespace MLNet.ImageTransfer.Reporting;

/// <summary>One scored image: its file, the index of its true class, and the predicted class probabilities.</summary>
public sealed record ScoredImage(string ImagePath, int ActualIndex, float[] Probabilities);

/// <summary>
/// An image the model got most wrong (fastai's top losses): loss is the cross-entropy of its true class,
/// −ln p(actual), so confident mistakes come first.
/// </summary>
public sealed record TopLoss(string ImagePath, string Actual, string Predicted, double ActualProbability, double PredictedProbability, double Loss)
{
    public bool IsCorrect => Actual == Predicted;
}

/// <summary>Metrics computed from a confusion matrix and from per-image scores.</summary>
public static class ClassificationMetrics
{
    /// <summary>ML.NET's clamp for log-loss: p is taken as at least this, so a zero probability costs ~34.5, not infinity.</summary>
    public const double ProbabilityFloor = 1e-15;

    /// <summary>
    /// Precision, recall and F1 of each class from a confusion matrix whose rows are true classes and columns predicted
    /// ones (ML.NET's layout). A class never predicted has precision 0; a class with no images has recall 0 (scikit-learn's zero_division=0).
    /// </summary>
    public static IReadOnlyList<ClassMetrics> PerClass(IReadOnlyList<string> classNames, long[][] confusion)
    {
        int k = classNames.Count;
        if (confusion.Length != k || confusion.Any(r => r.Length != k))
            throw new ArgumentException($"The confusion matrix must be {k}×{k} for {k} classes.", nameof(confusion));
        return Enumerable.Range(0, k).Select(c =>
        {
            long truePositives = confusion[c][c], actual = confusion[c].Sum(), predicted = confusion.Sum(r => r[c]);
            double precision = predicted == 0 ? 0 : (double)truePositives / predicted;
            double recall = actual == 0 ? 0 : (double)truePositives / actual;
            double f1 = precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall);
            return new ClassMetrics(classNames[c], precision, recall, f1, actual);
        }).ToArray();
    }

    /// <summary>
    /// The <paramref name="count"/> images with the highest loss −ln p(actual), highest first (ties by path).
    /// The prediction is the most probable class (the first on ties, as ML.NET's PredictedLabel).
    /// </summary>
    public static IReadOnlyList<TopLoss> TopLosses(IEnumerable<ScoredImage> images, IReadOnlyList<string> classNames, int count = 10)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        return images.Select(i =>
        {
            if ((uint)i.ActualIndex >= (uint)i.Probabilities.Length || i.Probabilities.Length != classNames.Count)
                throw new ArgumentException($"Image '{i.ImagePath}' has class index {i.ActualIndex} and {i.Probabilities.Length} probabilities for {classNames.Count} classes.");
            int predicted = 0;
            for (int c = 1; c < i.Probabilities.Length; c++) if (i.Probabilities[c] > i.Probabilities[predicted]) predicted = c;
            double p = i.Probabilities[i.ActualIndex];
            return new TopLoss(i.ImagePath, classNames[i.ActualIndex], classNames[predicted], p, i.Probabilities[predicted], -Math.Log(Math.Max(p, ProbabilityFloor)));
        }).OrderByDescending(t => t.Loss).ThenBy(t => t.ImagePath, StringComparer.Ordinal).Take(count).ToList();
    }
}
