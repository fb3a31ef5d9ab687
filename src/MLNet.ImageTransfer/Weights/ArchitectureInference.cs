using System.Globalization;
using System.Text.RegularExpressions;
using MLNet.ImageTransfer.Models;

namespace MLNet.ImageTransfer.Weights;

/// <summary>
/// Recognises which of our architectures a torchvision-keyed state dict belongs to, from its keys and shapes alone
/// (growth rate, block sizes, stage depths, widths, VGG's layer table, BatchNorm or not, classifier size).
/// </summary>
public static class ArchitectureInference
{
    static readonly Regex DenseConv2 = new(@"^features\.denseblock([0-9]+)\.denselayer([0-9]+)\.conv2\.weight$", RegexOptions.CultureInvariant);
    static readonly Regex ResNetConv = new(@"^layer([0-9])\.([0-9]+)\.conv([0-9])\.weight$", RegexOptions.CultureInvariant);
    static readonly Regex VggFeature = new(@"^features\.([0-9]+)\.weight$", RegexOptions.CultureInvariant);

    /// <summary>What a state dict's keys say about its network.</summary>
    /// <param name="Architecture">The configuration (registered or custom), or null when the keys fit no family.</param>
    /// <param name="NumClasses">Outputs of the classifier, or null when the file has none (a "notop" file).</param>
    public sealed record Result(ArchitectureConfig? Architecture, int? NumClasses)
    {
        /// <summary>The registered name of <see cref="Architecture"/>, if any.</summary>
        public string? Name => Architecture is null ? null : Architectures.NameOf(Architecture);
    }

    static readonly Dictionary<(string Path, long Length, DateTime Written), Result> FileResults = new();

    /// <summary>
    /// The architecture a weight file holds, as <see cref="PretrainedWeightFile.Open"/> reads it (any format). Remembered
    /// per file (path, size, time written), since trainers ask while validating and again while fitting.
    /// </summary>
    public static Result OfFile(string path)
    {
        var info = new FileInfo(path);
        var key = (info.FullName, info.Length, info.LastWriteTimeUtc);
        lock (FileResults)
            if (FileResults.TryGetValue(key, out var known)) return known;
        Result result;
        using (var file = PretrainedWeightFile.Open(path)) result = new Result(file.Architecture, file.NumClasses);
        lock (FileResults) FileResults[key] = result;
        return result;
    }

    /// <summary>Infers the architecture from key → shape.</summary>
    public static Result FromShapes(IReadOnlyDictionary<string, long[]> shapes)
    {
        if (shapes.ContainsKey("features.conv0.weight")) return DenseNet(shapes);
        if (shapes.ContainsKey("conv1.weight") && shapes.Keys.Any(k => k.StartsWith("layer1.", StringComparison.Ordinal))) return ResNet(shapes);
        if (shapes.ContainsKey("features.0.weight")) return Vgg(shapes);
        return new Result(null, null);
    }

    static Result DenseNet(IReadOnlyDictionary<string, long[]> s)
    {
        var blocks = new SortedDictionary<int, int>();
        long growth = 0, bottleneck = 0;
        foreach (var (key, shape) in s)
        {
            var m = DenseConv2.Match(key);
            if (!m.Success || shape.Length != 4) continue;
            int b = Int(m.Groups[1]), l = Int(m.Groups[2]);
            blocks[b] = Math.Max(blocks.GetValueOrDefault(b), l);
            growth = shape[0];
            bottleneck = shape[1];
        }
        if (blocks.Count == 0 || growth == 0 || bottleneck % growth != 0 || blocks.Keys.First() != 1 || blocks.Keys.Last() != blocks.Count
            || !LayersBacked(blocks.Values, s) || s["features.conv0.weight"].Length != 4)
            return new Result(null, null);
        var config = new DenseNetConfig((int)growth, blocks.Values.ToArray(), (int)s["features.conv0.weight"][0], (int)(bottleneck / growth));
        return new Result(config, Classes(s, "classifier.weight"));
    }

    static Result ResNet(IReadOnlyDictionary<string, long[]> s)
    {
        var stages = new SortedDictionary<int, int>();
        int convs = 0;
        foreach (var key in s.Keys)
        {
            var m = ResNetConv.Match(key);
            if (!m.Success) continue;
            int stage = Int(m.Groups[1]), block = Int(m.Groups[2]);
            stages[stage] = Math.Max(stages.GetValueOrDefault(stage), block + 1);
            convs = Math.Max(convs, Int(m.Groups[3]));
        }
        if (stages.Count != 4 || stages.Keys.First() != 1 || convs is not (2 or 3) || !LayersBacked(stages.Values, s) || s["conv1.weight"].Length != 4)
            return new Result(null, null);
        var config = new ResNetConfig(convs == 3 ? ResNetBlock.Bottleneck : ResNetBlock.Basic, stages.Values.ToArray(), (int)s["conv1.weight"][0],
            ConvBias: s.ContainsKey("conv1.bias"));
        return new Result(config, Classes(s, "fc.weight"));
    }

    static Result Vgg(IReadOnlyDictionary<string, long[]> s)
    {
        // torchvision's make_layers: conv at i, [BatchNorm at i+1], ReLU, …, a max-pool taking one index. A weight of
        // rank 4 is a convolution, rank 1 a BatchNorm; a gap of one extra index between two layers is a max-pool.
        var layers = s.Select(kv => (Match: VggFeature.Match(kv.Key), Shape: kv.Value)).Where(p => p.Match.Success)
            .Select(p => (Index: Int(p.Match.Groups[1]), p.Shape)).OrderBy(p => p.Index).ToList();
        var convs = layers.Where(l => l.Shape.Length == 4).ToList();
        if (convs.Count == 0) return new Result(null, null);
        bool batchNorm = layers.Any(l => l.Shape.Length == 1);
        int step = batchNorm ? 3 : 2;
        var cfg = new List<int>();
        for (int i = 0; i < convs.Count; i++)
        {
            if (i > 0)
            {
                int gap = convs[i].Index - convs[i - 1].Index;
                if (gap == step + 1) cfg.Add(VggConfig.MaxPool);
                else if (gap != step) return new Result(null, null);
            }
            else if (convs[0].Index != 0) return new Result(null, null);
            cfg.Add((int)convs[i].Shape[0]);
        }
        cfg.Add(VggConfig.MaxPool); // every VGG ends its last block with a max-pool
        int width = 4096, pool = 7;
        if (s.TryGetValue("classifier.0.weight", out var fc1) && fc1.Length == 2)
        {
            width = (int)fc1[0];
            long last = convs[^1].Shape[0];
            int p = (int)Math.Round(Math.Sqrt(fc1[1] / (double)last));
            if (p >= 1 && p * p * last == fc1[1]) pool = p;
        }
        var config = new VggConfig(cfg.ToArray(), batchNorm, width, pool);
        return new Result(config, Classes(s, "classifier.6.weight"));
    }

    static int? Classes(IReadOnlyDictionary<string, long[]> s, string key) => s.TryGetValue(key, out var shape) && shape.Length == 2 ? (int)shape[0] : null;

    /// <summary>
    /// Block sizes are read from the layer numbers in the keys: each layer must be backed by tensors, so that a corrupt
    /// key such as <c>layer1.999999.conv1.weight</c> does not describe a network of a million blocks (which
    /// <c>weights inspect</c> would then build).
    /// </summary>
    static bool LayersBacked(IEnumerable<int> blockSizes, IReadOnlyDictionary<string, long[]> s) => blockSizes.Sum(b => (long)b) <= s.Count;

    /// <summary>A layer number from a key; absurd ones become <see cref="MaxLayerNumber"/>, which <see cref="LayersBacked"/> refuses.</summary>
    static int Int(Group g) => int.TryParse(g.Value, NumberStyles.None, CultureInfo.InvariantCulture, out int v) ? Math.Min(v, MaxLayerNumber) : MaxLayerNumber;

    const int MaxLayerNumber = 1_000_000;
}
