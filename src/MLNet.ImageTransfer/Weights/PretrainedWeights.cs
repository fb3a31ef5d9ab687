using MLNet.ImageTransfer.Models;

namespace MLNet.ImageTransfer.Weights;

/// <summary>Starting a network from a pretrained weight file (transfer learning's first step).</summary>
public static class PretrainedWeights
{
    /// <summary>
    /// Loads a weight file with torchvision key names into <paramref name="network"/>. The backbone must match
    /// exactly (missing, unexpected or mis-shaped keys are listed by name in the error). The classifier is loaded only
    /// when it fits; otherwise it keeps its fresh initialisation (torchvision's "replace the fc layer", timm's
    /// <c>reset_classifier</c>), so ImageNet's 1000-class weights start a K-class model.
    /// </summary>
    public static WeightLoadReport LoadInto(ImageClassifierModel network, string path)
    {
        using var file = SafeTensors.Read(path);
        var tensors = file.Tensors;
        string prefix = network.ClassifierName + ".";
        var headKeys = network.state_dict().Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal)).ToArray();
        bool headFits = headKeys.All(kv => tensors.TryGetValue(kv.Key, out var t) && t.shape.SequenceEqual(kv.Value.shape))
            && tensors.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal)).All(k => headKeys.Any(h => h.Key == k));
        return StateDictLoader.Load(network, tensors, strict: true, skip: headFits ? null : key => key.StartsWith(prefix, StringComparison.Ordinal), source: path);
    }
}
