using System.Globalization;
using System.Text.Json.Serialization;
using MLNet.ImageTransfer.Models;

namespace MLNet.ImageTransfer.Weights;

/// <summary>
/// What a weight file holds (the CLI's <c>weights inspect</c>): format, size and SHA-256, the tensors as stored, the
/// architecture they match — checked key by key and shape by shape against the network we would build — the
/// classifier's class count, and the preprocessing the source implies.
/// </summary>
public sealed record WeightInspection
{
    public required string Path { get; init; }
    [JsonConverter(typeof(JsonStringEnumConverter))]
    public required WeightFormat Format { get; init; }
    public required long FileBytes { get; init; }
    public required string Sha256 { get; init; }
    /// <summary>The tensors as the file stores them (names, element types, shapes).</summary>
    public required IReadOnlyList<WeightTensorInfo> Tensors { get; init; }
    /// <summary>Number of values in <see cref="Tensors"/>.</summary>
    public required long Values { get; init; }
    /// <summary>Registered name of the matching architecture (<c>resnet50</c>, <c>densenet121_keras</c>…), if any.</summary>
    public string? Architecture { get; init; }
    /// <summary>The architecture's configuration in words (family, widths, depths, variant options), or why none was recognised.</summary>
    public required string ArchitectureDetails { get; init; }
    /// <summary>
    /// The file's tensors, under our key names, against the network built for <see cref="ArchitectureDetails"/>: exact
    /// when every key and shape matches (a file without classifier is compared without it). Null when no architecture
    /// was recognised.
    /// </summary>
    public WeightLoadReport? Match { get; init; }
    /// <summary>Outputs of the file's classifier; null for a file without one (Keras "notop").</summary>
    public int? NumClasses { get; init; }
    /// <summary>The preprocessing these weights expect (and that training picks by default).</summary>
    public string? Preprocessing { get; init; }
    public required IReadOnlyList<string> Notes { get; init; }

    /// <summary>Reads and checks a weight file. Building the matched network allocates it once (hundreds of MB for VGG).</summary>
    public static WeightInspection Inspect(string path)
    {
        using var file = PretrainedWeightFile.Open(path);
        WeightLoadReport? match = null;
        var notes = file.Notes.ToList();
        if (file.Architecture is { } config)
        {
            using var network = config.Build(file.NumClasses ?? 1);
            var target = network.state_dict();
            bool IsHead(string k) => k.StartsWith(network.ClassifierName + ".", StringComparison.Ordinal);
            bool Compared(string k) => file.NumClasses is not null || !IsHead(k);
            var missing = target.Keys.Where(k => Compared(k) && !file.Tensors.ContainsKey(k) && !k.EndsWith(".num_batches_tracked", StringComparison.Ordinal)).ToList();
            var unexpected = file.Tensors.Keys.Where(k => Compared(k) && !target.ContainsKey(k)).ToList();
            var mismatched = target.Where(kv => Compared(kv.Key) && file.Tensors.TryGetValue(kv.Key, out var t) && !t.shape.SequenceEqual(kv.Value.shape))
                .Select(kv => new ShapeMismatch(kv.Key, kv.Value.shape, file.Tensors[kv.Key].shape)).ToList();
            var loaded = target.Keys.Where(k => Compared(k) && file.Tensors.TryGetValue(k, out var t) && t.shape.SequenceEqual(target[k].shape)).ToList();
            match = new WeightLoadReport(loaded, missing, unexpected, mismatched);
            if (file.Format == WeightFormat.Onnx && config is VggConfig { BatchNorm: false })
                notes.Add("a VGG read from ONNX without BatchNorm nodes may be a VGG-BN whose BatchNorms the exporter folded; it loads into either");
        }
        return new WeightInspection
        {
            Path = path,
            Format = file.Format,
            FileBytes = new FileInfo(path).Length,
            Sha256 = file.Sha256,
            Tensors = file.Entries,
            Values = file.Entries.Sum(e => e.Shape.Aggregate(1L, (a, d) => a * d)),
            Architecture = file.ArchitectureName,
            ArchitectureDetails = file.Architecture is null ? "not recognised as a DenseNet, ResNet or VGG" : Describe(file.Architecture),
            Match = match,
            NumClasses = file.NumClasses,
            Preprocessing = file.Architecture is null ? null
                : file.ImpliedPreprocessing(file.Architecture) is var p ? $"{p.Name} ({WeightPreprocessing.Describe(p)})" : null,
            Notes = notes,
        };
    }

    /// <summary>A configuration in words, e.g. "ResNet, bottleneck blocks [3, 4, 6, 3], base width 64".</summary>
    public static string Describe(ArchitectureConfig config)
    {
        static string List(IEnumerable<int> v) => "[" + string.Join(", ", v) + "]";
        static string Eps(double e) => e == ArchitectureConfig.TorchBatchNormEpsilon ? "" : $", BatchNorm epsilon {e.ToString("G4", CultureInfo.InvariantCulture)}";
        return config switch
        {
            DenseNetConfig d => $"DenseNet, growth rate {d.GrowthRate}, blocks {List(d.BlockConfig)}, stem width {d.NumInitFeatures}, bottleneck ×{d.BnSize}{Eps(d.Epsilon)}",
            ResNetConfig r => $"ResNet, {(r.Block == ResNetBlock.Bottleneck ? "bottleneck" : "basic")} blocks {List(r.Layers)}, base width {r.BaseWidth}" +
                (r.StrideOnFirstConv ? ", stride on the first 1×1 convolution (v1)" : "") + (r.ConvBias ? ", convolution biases" : "") + Eps(r.Epsilon),
            VggConfig v => $"VGG {List(v.Layers.Select(x => x))} (0 = max-pool){(v.BatchNorm ? " with BatchNorm" : "")}, classifier {v.ClassifierWidth} wide on {v.PoolSize}×{v.PoolSize}",
            _ => config.ToString(),
        };
    }
}
