using MLNet.ImageTransfer.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Weights;

/// <summary>What starting a network from a pretrained file did.</summary>
/// <param name="Report">The strict load of everything but the re-initialised classifier parts: loaded keys (missing, unexpected, mis-shaped are empty, or loading would have thrown).</param>
/// <param name="ReinitializedHead">Model keys of the classifier that kept their fresh initialisation (class count differs, other head layout, or the file has no classifier).</param>
/// <param name="DroppedFromFile">Classifier keys of the file that were not used.</param>
/// <param name="Format">The file's format.</param>
/// <param name="Sha256">SHA-256 of the file.</param>
/// <param name="Notes">What the reader did (prefixes removed, layouts converted, BatchNorm folded…).</param>
public sealed record PretrainedLoadResult(
    WeightLoadReport Report, IReadOnlyList<string> ReinitializedHead, IReadOnlyList<string> DroppedFromFile,
    WeightFormat Format, string Sha256, IReadOnlyList<string> Notes)
{
    /// <summary>True when the classifier (or part of it) was replaced by a fresh one.</summary>
    public bool HeadReplaced => ReinitializedHead.Count > 0;

    public string Describe()
    {
        var text = $"{Format} weights: {Report.Describe()}";
        if (HeadReplaced) text += $" Classifier re-initialised ({string.Join(", ", ReinitializedHead.Take(6))}{(ReinitializedHead.Count > 6 ? ", …" : "")}).";
        return text;
    }
}

/// <summary>Starting a network from a pretrained weight file (transfer learning's first step).</summary>
public static class PretrainedWeights
{
    /// <summary>
    /// Loads a weight file of any supported format (safetensors, PyTorch <c>.pth</c>/<c>.pt</c>, Keras <c>.h5</c>,
    /// ONNX) into <paramref name="network"/>. The backbone must match exactly: missing, unexpected or mis-shaped keys are
    /// listed by name in a <see cref="WeightLoadException"/>. The classifier is loaded where it fits; where it does not
    /// (another class count, another head layout, or a "notop" file without classifier) it keeps its fresh
    /// initialisation — torchvision's "replace the fc layer", timm's <c>reset_classifier</c>, Keras' <c>include_top=False</c>.
    /// </summary>
    /// <remarks>
    /// The network must already have the variant the file needs (see <see cref="PretrainedWeightFile.Adapt"/>), as the
    /// trainers arrange: e.g. a Keras ResNet50 file loads into <c>resnet50_keras</c>, not torchvision's <c>resnet50</c>.
    /// </remarks>
    public static WeightLoadReport LoadInto(ImageClassifierModel network, string path)
    {
        using var file = PretrainedWeightFile.Open(path);
        return Load(network, file).Report;
    }

    /// <summary>Loads an opened weight file into <paramref name="network"/>; see <see cref="LoadInto(ImageClassifierModel, string)"/>.</summary>
    public static PretrainedLoadResult Load(ImageClassifierModel network, PretrainedWeightFile file)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentNullException.ThrowIfNull(file);
        if (file.Architecture is { } arch && arch.Family != network.Config.Family)
            throw new WeightLoadException($"Weights from '{file.Path}' are for a {arch.Family} ({file.ArchitectureName ?? "custom configuration"}) but the network is a {network.Config.Family}.",
                new WeightLoadReport([], [], file.Tensors.Keys.ToList(), []));

        string prefix = network.ClassifierName + ".";
        bool IsHead(string key) => key.StartsWith(prefix, StringComparison.Ordinal) || key == network.ClassifierName;
        var target = network.state_dict();
        var created = new List<Tensor>();
        var notes = file.Notes.ToList();
        try
        {
            return Load(network, file, file.TensorsFor(network.Config, created, notes), notes, target, IsHead);
        }
        finally
        {
            foreach (var t in created) t.Dispose();
        }
    }

    static PretrainedLoadResult Load(ImageClassifierModel network, PretrainedWeightFile file, IReadOnlyDictionary<string, Tensor> tensors,
        IReadOnlyList<string> notes, Dictionary<string, Tensor> target, Func<string, bool> IsHead)
    {
        // The classifier, module by module (a Linear's weight and bias together): loaded only where every tensor fits.
        var reinitialized = new List<string>();
        var loadHead = new HashSet<string>(StringComparer.Ordinal);
        foreach (var module in target.Keys.Where(IsHead).GroupBy(ModuleOf))
        {
            bool fits = module.All(k => tensors.TryGetValue(k, out var t) && t.shape.SequenceEqual(target[k].shape));
            if (fits) loadHead.UnionWith(module);
            else reinitialized.AddRange(module);
        }
        var dropped = tensors.Keys.Where(k => IsHead(k) && !loadHead.Contains(k)).ToList();

        // Files written before PyTorch 0.4.1 (and Keras / ONNX sources) may lack num_batches_tracked; PyTorch fills 0.
        var source = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var zeros = new List<Tensor>();
        try
        {
            foreach (var (k, t) in tensors)
                if (!IsHead(k) || loadHead.Contains(k)) source[k] = t;
            foreach (var k in target.Keys)
                if (k.EndsWith(".num_batches_tracked", StringComparison.Ordinal) && !source.ContainsKey(k) && !IsHead(k))
                {
                    var z = tensor(0L);
                    zeros.Add(z);
                    source[k] = z;
                }
            var report = StateDictLoader.Load(network, source, strict: true, skip: k => IsHead(k) && !loadHead.Contains(k), source: file.Path);
            return new PretrainedLoadResult(report, reinitialized, dropped, file.Format, file.Sha256, notes);
        }
        finally
        {
            foreach (var z in zeros) z.Dispose();
        }
    }

    static string ModuleOf(string key) => key.LastIndexOf('.') is var i and > 0 ? key[..i] : key;
}
