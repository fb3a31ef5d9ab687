using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Training.Callbacks;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Training;

/// <summary>The weights of the best epoch so far by one metric, kept in memory (Keras' ModelCheckpoint(save_best_only) / restore_best_weights).</summary>
internal sealed class BestWeights : IDisposable
{
    Dictionary<string, Tensor>? _weights;
    double _value;

    public BestWeights(MonitoredMetric? metric)
    {
        Metric = metric;
        _value = metric?.Worst() ?? double.NaN;
    }

    /// <summary>Null: the last epoch's weights are kept.</summary>
    public MonitoredMetric? Metric { get; }

    /// <summary>The epoch held (null: none).</summary>
    public int? Epoch { get; private set; }

    /// <summary>Takes a copy of the model's weights when <paramref name="epoch"/> beats the best so far.</summary>
    /// <returns>True when it did.</returns>
    public bool Offer(ImageClassifierModel model, EpochSummary epoch)
    {
        if (Metric is not { } metric || metric.ValueOf(epoch) is not { } value) return false;
        if (_weights is not null && !metric.Improves(value, _value)) return false;
        Replace(model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone()), epoch.Epoch, value);
        return true;
    }

    /// <summary>Sets the held weights (resume: from the best checkpoint).</summary>
    public void Load(int epoch, EpochSummary summary, IReadOnlyDictionary<string, Tensor> weights)
    {
        Replace(weights.ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone().MoveToOuterDisposeScope()), epoch, Metric!.Value.ValueOf(summary) ?? double.NaN);
    }

    /// <summary>Copies the held weights into the model; returns their epoch (null: nothing held, the model keeps its last weights).</summary>
    public int? Restore(ImageClassifierModel model)
    {
        if (_weights is null) return null;
        using var _ = no_grad();
        foreach (var (key, tensor) in model.state_dict()) tensor.copy_(_weights[key]);
        return Epoch;
    }

    void Replace(Dictionary<string, Tensor> weights, int epoch, double value)
    {
        Dispose();
        _weights = weights;
        Epoch = epoch;
        _value = value;
    }

    public void Dispose()
    {
        if (_weights is null) return;
        foreach (var t in _weights.Values) t.Dispose();
        _weights = null;
    }
}
