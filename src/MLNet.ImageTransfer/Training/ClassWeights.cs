using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Training;

/// <summary>
/// Per-class weights of the training loss, for imbalanced sets (Keras' <c>class_weight</c>, PyTorch's
/// <c>cross_entropy(weight=…)</c>): the loss is the weighted mean Σ wᵧ·lossᵢ / Σ wᵧ. Validation loss stays unweighted.
/// </summary>
public sealed class ClassWeights
{
    readonly double[]? _values;

    ClassWeights(double[]? values) => _values = values;

    /// <summary>scikit-learn's "balanced": w_c = N / (K · n_c), from the training set's class counts.</summary>
    public static ClassWeights Balanced { get; } = new(null);

    /// <summary>Explicit weights, one per class in key order.</summary>
    public static ClassWeights Of(params double[] weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        if (weights.Length == 0 || weights.Any(w => !(w >= 0) || double.IsInfinity(w)) || weights.All(w => w == 0))
            throw new ArgumentException("Class weights must be finite, non-negative, and not all zero.", nameof(weights));
        return new(weights.ToArray());
    }

    public bool IsBalanced => _values is null;

    /// <summary>The weight of each of <paramref name="classes"/> classes for a training set with these labels.</summary>
    public double[] Resolve(IReadOnlyList<int> labels, int classes)
    {
        if (_values is not null)
        {
            if (_values.Length != classes)
                throw new ArgumentException($"{_values.Length} class weights were given, but the model has {classes} classes.");
            return _values.ToArray();
        }
        var counts = new long[classes];
        foreach (var l in labels) counts[l]++;
        return counts.Select(n => n == 0 ? 0 : (double)labels.Count / (classes * n)).ToArray();
    }

    public override string ToString() => _values is null ? "balanced" : string.Join(",", _values.Select(v => v.ToString("G4", System.Globalization.CultureInfo.InvariantCulture)));
}

/// <summary>The training loss: cross-entropy with optional class weights and label smoothing, as PyTorch defines them.</summary>
public sealed class ClassificationLoss : IDisposable
{
    readonly Tensor? _weights;

    /// <param name="classWeights">One weight per class, or null.</param>
    /// <param name="labelSmoothing">ε in [0, 1): targets become (1 − ε)·one-hot + ε/K (Keras' and PyTorch's definition).</param>
    /// <param name="device">Where the logits live.</param>
    public ClassificationLoss(double[]? classWeights, double labelSmoothing, Device device)
    {
        if (!(labelSmoothing >= 0 && labelSmoothing < 1)) throw new ArgumentOutOfRangeException(nameof(labelSmoothing), labelSmoothing, "Label smoothing must be in [0, 1).");
        LabelSmoothing = labelSmoothing;
        _weights = classWeights is null ? null : tensor(classWeights.Select(w => (float)w).ToArray()).to(device);
    }

    public double LabelSmoothing { get; }

    /// <summary>Mean loss of a batch (weighted mean with class weights).</summary>
    public Tensor Compute(Tensor logits, Tensor labels)
    {
        var weight = _weights is not null && _weights.dtype != logits.dtype ? _weights.to_type(logits.dtype) : _weights;
        return nn.functional.cross_entropy(logits, labels, weight: weight, label_smoothing: LabelSmoothing);
    }

    public void Dispose() => _weights?.Dispose();
}
