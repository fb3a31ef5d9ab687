using MLNet.ImageTransfer.Weights.Keras;
using PureHDF;
using TorchSharp;

namespace MLNet.ImageTransfer.Tests.Weights;

/// <summary>
/// Writes Keras 2 weight files (root attribute <c>layer_names</c>, per-layer <c>weight_names</c>, datasets at
/// <c>/LAYER/WEIGHT_NAME</c>) with PureHDF, for variants of the committed fixtures: renamed layers (Keras-applications
/// 1.0's Caffe names), dropped layers ("notop"), or the <c>model.save</c> layout (under <c>/model_weights</c>).
/// </summary>
internal static class KerasH5Writer
{
    /// <summary>Copies a Keras file's layers; <paramref name="rename"/> returns the new layer name, or null to drop the layer.</summary>
    public static void Copy(string source, string target, Func<string, string?> rename, bool underModelWeights = false)
    {
        using var file = KerasH5.Read(source);
        var layers = new List<(string Name, List<(string WeightName, float[] Data, ulong[] Dims)> Weights)>();
        foreach (var layer in file.Layers)
        {
            var name = rename(layer.Name);
            if (name is null) continue;
            var weights = layer.Weights.Select(w => (name + w.Name[layer.Name.Length..], w.Value.data<float>().ToArray(), w.Value.shape.Select(d => (ulong)d).ToArray())).ToList();
            layers.Add((name, weights));
        }
        Write(target, layers, underModelWeights);
    }

    public static void Write(string path, IReadOnlyList<(string Name, List<(string WeightName, float[] Data, ulong[] Dims)> Weights)> layers, bool underModelWeights = false)
    {
        var h5 = new H5File();
        H5Group root = h5;
        if (underModelWeights)
        {
            root = new H5Group();
            h5["model_weights"] = root;
        }
        root.Attributes["layer_names"] = layers.Select(l => l.Name).ToArray();
        root.Attributes["backend"] = "tensorflow";
        foreach (var (name, weights) in layers)
        {
            var group = Nested(root, name);
            group.Attributes["weight_names"] = weights.Select(w => w.WeightName).ToArray();
            foreach (var (weightName, data, dims) in weights)
            {
                var parts = weightName.Split('/');
                var parent = Nested(group, string.Join('/', parts[..^1]));
                parent[parts[^1]] = new H5Dataset(data, fileDims: dims);
            }
        }
        h5.Write(path);
    }

    /// <summary>The group at a '/'-separated path below <paramref name="group"/>, created as needed (Keras names nest).</summary>
    static H5Group Nested(H5Group group, string path)
    {
        foreach (var part in path.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            if (!group.TryGetValue(part, out var child))
            {
                child = new H5Group();
                group[part] = child;
            }
            group = (H5Group)child;
        }
        return group;
    }
}
