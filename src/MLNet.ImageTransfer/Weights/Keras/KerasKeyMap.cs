using System.Globalization;
using System.Text.RegularExpressions;
using MLNet.ImageTransfer.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Weights.Keras;

/// <summary>A Keras weight file translated to torchvision keys: the tensors, the architecture the layer names describe, and what was done.</summary>
internal sealed record KerasMapping(
    OrderedDictionary<string, Tensor> Tensors,
    ArchitectureConfig? Architecture,
    double BatchNormEpsilon,
    string Naming,
    IReadOnlyList<string> Notes);

/// <summary>
/// The layer-name maps from <c>keras.applications</c>' DenseNet121/169/201, ResNet50/101/152 and VGG16/19 to our
/// (torchvision-named) modules, with the layout changes: convolution kernels HWIO → OIHW, dense kernels [in, out] →
/// [out, in], BatchNorm gamma/beta/moving_mean/moving_variance → weight/bias/running_mean/running_var (plus a zero
/// <c>num_batches_tracked</c>), and VGG's first dense layer re-ordered from Keras' channels-last flatten to PyTorch's
/// channels-first one. Layers are matched by name, never by position (Keras' own <c>load_weights(by_name=True)</c>).
/// </summary>
/// <remarks>
/// Names handled: DenseNet <c>conv1/conv</c> (or Keras 3's <c>conv1_conv</c>), <c>conv1/bn</c>,
/// <c>convS_blockI_{0_bn,1_conv,1_bn,2_conv}</c>, <c>poolS_{bn,conv}</c>, <c>bn</c>, <c>predictions</c>; ResNet (tf.keras
/// <c>resnet.py</c>) <c>conv1_conv</c>, <c>conv1_bn</c>, <c>convS_blockB_{0,1,2,3}_{conv,bn}</c>, <c>predictions</c>;
/// ResNet50 of the first keras-applications release (Caffe names) <c>conv1</c>, <c>bn_conv1</c>,
/// <c>resSX_branch{1,2a,2b,2c}</c>, <c>bnSX_branch…</c>, <c>fc1000</c>; VGG <c>blockB_convC</c>, <c>fc1</c>, <c>fc2</c>,
/// <c>predictions</c>.
/// </remarks>
internal static class KerasKeyMap
{
    static readonly Regex DenseLayer = new(@"^conv([0-9]+)_block([0-9]+)_(0_bn|1_conv|1_bn|2_conv)$", RegexOptions.CultureInvariant);
    static readonly Regex DenseTransition = new(@"^pool([0-9]+)_(bn|conv)$", RegexOptions.CultureInvariant);
    static readonly Regex ResNetLayer = new(@"^conv([0-9]+)_block([0-9]+)_([0-9])_(conv|bn)$", RegexOptions.CultureInvariant);
    static readonly Regex CaffeResNetLayer = new(@"^(res|bn)([0-9])([a-z])([0-9]*)_branch(1|2a|2b|2c)$", RegexOptions.CultureInvariant);
    static readonly Regex VggConv = new(@"^block([0-9]+)_conv([0-9]+)$", RegexOptions.CultureInvariant);

    public static KerasMapping Map(KerasWeightFile file, string path)
    {
        var names = file.Layers.Select(l => Normalize(l.Name)).ToHashSet(StringComparer.Ordinal);
        if (names.Any(n => DenseTransition.IsMatch(n)) && names.Any(n => DenseLayer.IsMatch(n))) return MapDenseNet(file, path);
        if (names.Any(n => ResNetLayer.IsMatch(n))) return MapResNet(file, path);
        if (names.Any(n => CaffeResNetLayer.IsMatch(n)) || names.Contains("bn_conv1")) return MapCaffeResNet(file, path);
        if (names.Any(n => VggConv.IsMatch(n))) return MapVgg(file, path);
        throw new WeightFileException(path, "its layer names are not those of keras.applications' DenseNet, ResNet or VGG " +
            $"(first layers: {string.Join(", ", file.Layers.Take(6).Select(l => l.Name))}); no key map applies.");
    }

    /// <summary>Keras 3 writes <c>conv1_conv</c> where Keras 2 wrote <c>conv1/conv</c>.</summary>
    static string Normalize(string layerName) => layerName.Replace('/', '_');

    // ---- DenseNet -----------------------------------------------------------------------------------------------

    static KerasMapping MapDenseNet(KerasWeightFile file, string path)
    {
        var b = new Builder(path);
        var blocks = new SortedDictionary<int, int>();
        int? initFeatures = null, growth = null, bottleneck = null;
        foreach (var layer in file.Layers)
        {
            string n = Normalize(layer.Name);
            Match m;
            if (n == "conv1_conv") initFeatures = b.Conv(layer, "features.conv0", false);
            else if (n == "conv1_bn") b.BatchNorm(layer, "features.norm0");
            else if (n == "bn") b.BatchNorm(layer, "features.norm5");
            else if ((m = DenseLayer.Match(n)).Success)
            {
                int stage = Int(m.Groups[1]), index = Int(m.Groups[2]);
                blocks[stage] = Math.Max(blocks.GetValueOrDefault(stage), index);
                string prefix = $"features.denseblock{stage - 1}.denselayer{index}";
                switch (m.Groups[3].Value)
                {
                    case "0_bn": b.BatchNorm(layer, prefix + ".norm1"); break;
                    case "1_conv": int c1 = b.Conv(layer, prefix + ".conv1", false); bottleneck ??= c1; break;
                    case "1_bn": b.BatchNorm(layer, prefix + ".norm2"); break;
                    case "2_conv": int c2 = b.Conv(layer, prefix + ".conv2", false); growth ??= c2; break;
                }
            }
            else if ((m = DenseTransition.Match(n)).Success)
            {
                string prefix = $"features.transition{Int(m.Groups[1]) - 1}";
                if (m.Groups[2].Value == "bn") b.BatchNorm(layer, prefix + ".norm");
                else b.Conv(layer, prefix + ".conv", false);
            }
            else if (n is "predictions" or "fc1000") b.Dense(layer, "classifier");
            else b.Unmapped(layer);
        }
        ArchitectureConfig? config = null;
        // Block sizes come from the layer numbers in the names: they must be backed by that many layers (a corrupt name
        // such as conv2_block999999_0_bn must not describe a network of a million layers).
        if (initFeatures is int init && growth is int g && bottleneck is int bn && blocks.Count > 0 && g > 0 && bn % g == 0
            && blocks.Values.Sum(v => (long)v) <= file.Layers.Count)
            config = new DenseNetConfig(g, blocks.Values.ToArray(), init, bn / g, 0, ArchitectureConfig.KerasBatchNormEpsilon);
        return b.Result(config, ArchitectureConfig.KerasBatchNormEpsilon, "keras.applications DenseNet");
    }

    // ---- ResNet -------------------------------------------------------------------------------------------------

    static KerasMapping MapResNet(KerasWeightFile file, string path)
    {
        var b = new Builder(path);
        var stages = new SortedDictionary<int, int>();
        int convsPerBlock = 0;
        int? baseWidth = null;
        foreach (var layer in file.Layers)
        {
            string n = Normalize(layer.Name);
            Match m;
            if (n == "conv1_conv") baseWidth = b.Conv(layer, "conv1", true);
            else if (n == "conv1_bn") b.BatchNorm(layer, "bn1");
            else if ((m = ResNetLayer.Match(n)).Success)
            {
                int stage = Int(m.Groups[1]), block = Int(m.Groups[2]), part = Int(m.Groups[3]);
                stages[stage] = Math.Max(stages.GetValueOrDefault(stage), block);
                convsPerBlock = Math.Max(convsPerBlock, part);
                string prefix = $"layer{stage - 1}.{block - 1}";
                bool conv = m.Groups[4].Value == "conv";
                string target = part == 0 ? $"{prefix}.downsample.{(conv ? 0 : 1)}" : $"{prefix}.{(conv ? "conv" : "bn")}{part}";
                if (conv) b.Conv(layer, target, true); else b.BatchNorm(layer, target);
            }
            else if (n is "predictions" or "probs" or "fc1000") b.Dense(layer, "fc");
            else b.Unmapped(layer);
        }
        var config = ResNetFrom(stages, convsPerBlock, baseWidth, ArchitectureConfig.KerasBatchNormEpsilon, file.Layers.Count);
        return b.Result(config, ArchitectureConfig.KerasBatchNormEpsilon, "keras.applications ResNet (v1)");
    }

    /// <summary>keras-applications' first ResNet50 (2017), converted from Caffe: Caffe layer names, BatchNorm epsilon 1e-3 (Keras' default).</summary>
    static KerasMapping MapCaffeResNet(KerasWeightFile file, string path)
    {
        const double CaffeKerasEpsilon = 1e-3;
        var b = new Builder(path);
        var stages = new SortedDictionary<int, int>();
        int convsPerBlock = 0;
        int? baseWidth = null;
        foreach (var layer in file.Layers)
        {
            string n = layer.Name;
            Match m;
            if (n == "conv1") baseWidth = b.Conv(layer, "conv1", true);
            else if (n == "bn_conv1") b.BatchNorm(layer, "bn1");
            else if ((m = CaffeResNetLayer.Match(n)).Success)
            {
                int stage = Int(m.Groups[2]);
                // blocks a, b, c… or (Caffe's ResNet-101/152) a, b1, b2…
                int block = m.Groups[4].Value.Length > 0 ? Int(m.Groups[4]) : m.Groups[3].Value[0] - 'a';
                stages[stage] = Math.Max(stages.GetValueOrDefault(stage), block + 1);
                string branch = m.Groups[5].Value;
                bool conv = m.Groups[1].Value == "res";
                int part = branch switch { "2a" => 1, "2b" => 2, "2c" => 3, _ => 0 };
                convsPerBlock = Math.Max(convsPerBlock, part);
                string prefix = $"layer{stage - 1}.{block}";
                string target = part == 0 ? $"{prefix}.downsample.{(conv ? 0 : 1)}" : $"{prefix}.{(conv ? "conv" : "bn")}{part}";
                if (conv) b.Conv(layer, target, true); else b.BatchNorm(layer, target);
            }
            else if (n is "fc1000" or "predictions") b.Dense(layer, "fc");
            else b.Unmapped(layer);
        }
        b.Note("Caffe-named Keras ResNet50 (keras-applications 1.0): BatchNorm epsilon 1e-3, Keras' default for that model");
        var config = ResNetFrom(stages, convsPerBlock, baseWidth, CaffeKerasEpsilon, file.Layers.Count);
        return b.Result(config, CaffeKerasEpsilon, "keras-applications ResNet50 (Caffe names)");
    }

    static ArchitectureConfig? ResNetFrom(SortedDictionary<int, int> stages, int convsPerBlock, int? baseWidth, double eps, int layerCount)
    {
        if (stages.Count != 4 || baseWidth is not int width || width <= 0 || convsPerBlock is not (2 or 3)) return null;
        if (stages.Values.Any(b => b <= 0) || stages.Values.Sum(b => (long)b) > layerCount) return null; // block numbers not backed by layers
        var torchvision = new ResNetConfig(convsPerBlock == 3 ? ResNetBlock.Bottleneck : ResNetBlock.Basic, stages.Values.ToArray(), width);
        return Architectures.KerasConvention(torchvision, eps);
    }

    // ---- VGG ----------------------------------------------------------------------------------------------------

    static KerasMapping MapVgg(KerasWeightFile file, string path)
    {
        var b = new Builder(path);
        var convs = new SortedDictionary<(int Block, int Conv), KerasLayer>();
        var dense = new Dictionary<string, KerasLayer>(StringComparer.Ordinal);
        foreach (var layer in file.Layers)
        {
            var m = VggConv.Match(layer.Name);
            if (m.Success) convs[(Int(m.Groups[1]), Int(m.Groups[2]))] = layer;
            else if (layer.Name is "fc1" or "fc2" or "predictions") dense[layer.Name] = layer;
            else b.Unmapped(layer);
        }
        // torchvision's make_layers: conv, ReLU (2 indices) per convolution, one index per max-pool closing a block.
        var cfg = new List<int>();
        int index = 0, lastChannels = 0, currentBlock = -1;
        foreach (var ((block, _), layer) in convs)
        {
            if (currentBlock != -1 && block != currentBlock) { cfg.Add(VggConfig.MaxPool); index++; }
            currentBlock = block;
            lastChannels = b.Conv(layer, $"features.{index}", true);
            cfg.Add(lastChannels);
            index += 2;
        }
        if (convs.Count > 0) cfg.Add(VggConfig.MaxPool);

        int classifierWidth = 4096, poolSize = 7;
        if (dense.TryGetValue("fc1", out var fc1))
        {
            var fc1Kernel = b.DenseKernel(fc1);
            long inFeatures = fc1Kernel.shape[0];
            int p = lastChannels > 0 ? (int)Math.Round(Math.Sqrt(inFeatures / (double)lastChannels)) : 0;
            if (p < 1 || (long)p * p * lastChannels != inFeatures)
                throw new WeightFileException(path, $"fc1 takes {inFeatures} inputs, which is not a square feature map of the last block's {lastChannels} channels.");
            poolSize = p;
            classifierWidth = (int)fc1Kernel.shape[1];
            b.Dense(fc1, "classifier.0", kernel =>
            {
                // Named, disposed views rather than temporaries: see PyTorchCheckpoint.Extract.
                using var unflattened = kernel.reshape(p, p, lastChannels, -1);
                using var channelsFirst = unflattened.permute(3, 2, 0, 1);
                return channelsFirst.reshape(-1, (long)p * p * lastChannels);
            });
            b.Note($"fc1's inputs re-ordered from Keras' channels-last flatten to PyTorch's channels-first ({p}×{p}×{lastChannels})");
        }
        if (dense.TryGetValue("fc2", out var fc2)) b.Dense(fc2, "classifier.3");
        if (dense.TryGetValue("predictions", out var predictions)) b.Dense(predictions, "classifier.6");
        ArchitectureConfig? config = convs.Count > 0 ? new VggConfig(cfg.ToArray(), false, classifierWidth, poolSize) : null;
        return b.Result(config, ArchitectureConfig.TorchBatchNormEpsilon, "keras.applications VGG");
    }

    /// <summary>A layer number from a name; absurd ones (beyond any network) become <see cref="MaxLayerNumber"/>, which the plausibility checks refuse.</summary>
    static int Int(Group g) => int.TryParse(g.Value, NumberStyles.None, CultureInfo.InvariantCulture, out int v) ? Math.Min(v, MaxLayerNumber) : MaxLayerNumber;

    const int MaxLayerNumber = 1_000_000;

    /// <summary>Collects converted tensors; disposes them on failure.</summary>
    sealed class Builder(string path)
    {
        readonly OrderedDictionary<string, Tensor> _tensors = new();
        readonly List<string> _notes = new();
        readonly List<string> _unmapped = new();

        public void Note(string note) => _notes.Add(note);

        public void Unmapped(KerasLayer layer)
        {
            // Layers with weights that no map covers stay under their Keras names, so a strict load lists them as unexpected.
            _unmapped.Add(layer.Name);
            foreach (var (name, value, _) in layer.Weights) Add($"{layer.Name}/{name}", value.alias());
        }

        /// <summary>Adds a Conv2D layer; returns its output channels.</summary>
        public int Conv(KerasLayer layer, string prefix, bool biasAllowed)
        {
            var kernel = Find(layer, "kernel", 0);
            if (kernel.dim() != 4) throw new WeightFileException(path, $"layer '{layer.Name}' has a {kernel.dim()}-D kernel; a Conv2D kernel is 4-D (HWIO).");
            int outChannels = (int)kernel.shape[3];
            using var oihw = kernel.permute(3, 2, 0, 1); // a named, disposed view rather than a temporary: see PyTorchCheckpoint.Extract
            Add(prefix + ".weight", oihw.contiguous());
            if (TryFind(layer, "bias", 1) is { } bias)
            {
                if (!biasAllowed) _notes.Add($"layer '{layer.Name}' has a bias, which the torchvision layout has no place for");
                Add(prefix + ".bias", bias.clone());
            }
            return outChannels;
        }

        public void BatchNorm(KerasLayer layer, string prefix)
        {
            if (layer.Weights.Count != 4)
                throw new WeightFileException(path, $"BatchNormalization layer '{layer.Name}' has {layer.Weights.Count} weights; expected gamma, beta, moving_mean, moving_variance.");
            Add(prefix + ".weight", Find(layer, "gamma", 0).clone());
            Add(prefix + ".bias", Find(layer, "beta", 1).clone());
            Add(prefix + ".running_mean", Find(layer, "moving_mean", 2).clone());
            Add(prefix + ".running_var", Find(layer, "moving_variance", 3).clone());
            Add(prefix + ".num_batches_tracked", tensor(0L));
        }

        /// <summary>A Dense layer's kernel (inputs × outputs), checked to be 2-D.</summary>
        public Tensor DenseKernel(KerasLayer layer)
        {
            var kernel = Find(layer, "kernel", 0);
            if (kernel.dim() != 2) throw new WeightFileException(path, $"layer '{layer.Name}' has a {kernel.dim()}-D kernel; a Dense kernel is 2-D.");
            return kernel;
        }

        public void Dense(KerasLayer layer, string prefix, Func<Tensor, Tensor>? kernelToWeight = null)
        {
            var kernel = DenseKernel(layer);
            // A named, disposed intermediate rather than a temporary: see PyTorchCheckpoint.Extract.
            using var weight = kernelToWeight is null ? kernel.t() : kernelToWeight(kernel);
            Add(prefix + ".weight", weight.contiguous());
            if (TryFind(layer, "bias", 1) is { } bias) Add(prefix + ".bias", bias.clone());
        }

        void Add(string key, Tensor t)
        {
            if (!_tensors.TryAdd(key, t))
            {
                t.Dispose();
                throw new WeightFileException(path, $"two Keras layers map to '{key}'.");
            }
        }

        Tensor Find(KerasLayer layer, string kind, int position)
            => TryFind(layer, kind, position) ?? throw new WeightFileException(path, $"layer '{layer.Name}' has no '{kind}' weight.");

        /// <summary>By the weight's name (<c>…/kernel:0</c>); for names without a recognised kind, by Keras' own order.</summary>
        static Tensor? TryFind(KerasLayer layer, string kind, int position)
        {
            foreach (var (name, value, _) in layer.Weights)
                if (WeightKind(name) == kind) return value;
            bool anyNamed = layer.Weights.Any(w => WeightKind(w.Name) is "kernel" or "bias" or "gamma" or "beta" or "moving_mean" or "moving_variance");
            return !anyNamed && position < layer.Weights.Count ? layer.Weights[position].Value : null;
        }

        static string WeightKind(string weightName)
        {
            var last = weightName[(weightName.LastIndexOf('/') + 1)..];
            int colon = last.IndexOf(':');
            return colon >= 0 ? last[..colon] : last;
        }

        public KerasMapping Result(ArchitectureConfig? config, double eps, string naming)
        {
            if (_unmapped.Count > 0)
                _notes.Add($"{_unmapped.Count} layer(s) with weights that the {naming} map does not cover: {string.Join(", ", _unmapped.Take(8))}");
            return new KerasMapping(_tensors, config, eps, naming, _notes);
        }
    }
}
