using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Weights;
using MLNet.ImageTransfer.Weights.Onnx;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Onnx;

/// <summary>
/// A trained classifier's network stored once, as ONNX, in a form that serves both scoring and training: the graph
/// runs on ONNX Runtime as it is, and every trained tensor is an initializer named by its <c>state_dict</c> key, so the
/// TorchSharp network can be rebuilt from it exactly. What the model <c>.zip</c> holds since classifier format v2.
/// </summary>
/// <remarks>
/// <para>The export keeps BatchNorm unfolded (<see cref="OnnxExportOptions.FoldBatchNorm"/> = false): each
/// BatchNormalization node carries the layer's weight, bias, running mean and running variance as initializers.
/// ONNX Runtime folds Conv+BatchNormalization itself when it creates the session (a basic graph optimisation), so
/// scoring costs the same as with an export folded ahead of time.</para>
/// <para>The <c>state_dict</c> entries that inference does not use (BatchNorm's <c>num_batches_tracked</c> counters)
/// are kept beside the graph in a small safetensors part (<see cref="WriteExtraState"/>).</para>
/// </remarks>
internal static class OnnxCheckpoint
{
    /// <summary>How the stored graph is exported: raw pixels in (preprocessing in the graph), probabilities out, BatchNorm unfolded.</summary>
    public static OnnxExportOptions ExportOptions { get; } = new()
    {
        IncludePreprocessing = true,
        FoldBatchNorm = false,
        Outputs = OnnxClassifierOutputs.Probabilities,
    };

    /// <summary>The classifier's graph (loads libtorch: it reads the TorchSharp network).</summary>
    public static byte[] Export(FittedClassifier classifier) => OnnxExporter.ExportToBytes(classifier, ExportOptions);

    /// <summary>Writes the network's <c>state_dict</c> entries that are not initializers of <paramref name="onnx"/>, as safetensors.</summary>
    public static void WriteExtraState(ImageClassifierModel network, byte[] onnx, Stream stream)
    {
        var initializers = OnnxReader.Parse(onnx, "the exported graph").Initializers;
        using var scope = NewDisposeScope();
        var extra = network.state_dict().Where(kv => !initializers.ContainsKey(kv.Key)).Select(kv => (kv.Key, kv.Value.detach().cpu())).ToList();
        SafeTensors.Write(stream, extra, new Dictionary<string, string> { ["format"] = "pt", ["producer"] = "MLNet.ImageTransfer", ["content"] = "state_dict entries not in model.onnx" });
    }

    /// <summary>
    /// Rebuilds the TorchSharp classifier: a fresh network of the described architecture and head, every <c>state_dict</c>
    /// entry copied from the graph's initializer of the same name or from <paramref name="extraState"/>. Strict: a
    /// missing, surplus or mis-shaped entry is an error naming it.
    /// </summary>
    public static FittedClassifier Rebuild(ClassifierDescription description, byte[] onnx, byte[] extraState, string source)
    {
        var parsed = OnnxReader.Parse(onnx, source);
        var network = description.Architecture.Build(description.ClassNames.Length, description.Head);
        try
        {
            using var scope = NewDisposeScope();
            var keys = network.state_dict().Keys.ToHashSet(StringComparer.Ordinal);
            var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            foreach (var (name, initializer) in parsed.Initializers)
                if (keys.Contains(name)) tensors[name] = initializer.ToFloat32(source);
            using var extra = SafeTensors.Read(new MemoryStream(extraState, writable: false), source + " (extra state)");
            foreach (var (name, tensor) in extra.Tensors)
                if (!tensors.TryAdd(name, tensor)) throw new InvalidDataException($"'{name}' is both in the graph and in the extra state of '{source}'.");
            StateDictLoader.Load(network, tensors, strict: true, source: source);
            return new FittedClassifier(network, description);
        }
        catch
        {
            network.Dispose();
            throw;
        }
    }
}
