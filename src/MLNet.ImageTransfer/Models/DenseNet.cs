using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Models;

/// <summary>
/// DenseNet-BC with torchvision's module tree: <c>features.{conv0,norm0,relu0,pool0,denseblockN.denselayerM,transitionN,norm5}</c>
/// and <c>classifier</c>.
/// </summary>
public sealed class DenseNet : ImageClassifierModel
{
    readonly Sequential _features;
    nn.Module<Tensor, Tensor> _classifier;
    readonly int _numFeatures;
    readonly List<LayerGroup> _backboneGroups = new();

    public DenseNet(DenseNetConfig config, int numClasses, HeadSpec head) : base("DenseNet", config, head, numClasses)
    {
        config.Validate();
        head.Validate();
        var stem = new List<(string, nn.Module<Tensor, Tensor>)>
        {
            ("conv0", Init.ConvKaimingFanOut(nn.Conv2d(3, config.NumInitFeatures, 7, stride: 2, padding: 3, bias: false))),
            ("norm0", Init.BatchNorm(nn.BatchNorm2d(config.NumInitFeatures, eps: config.Epsilon))),
            ("relu0", nn.ReLU(inplace: true)),
            ("pool0", nn.MaxPool2d(3, stride: 2, padding: 1)),
        };
        var layers = new List<(string, nn.Module<Tensor, Tensor>)>(stem);
        _backboneGroups.Add(new LayerGroup("stem", stem.Select(s => (nn.Module)s.Item2).ToArray(), false));

        int channels = config.NumInitFeatures;
        for (int b = 0; b < config.BlockConfig.Length; b++)
        {
            var block = new DenseBlock(config.BlockConfig[b], channels, config.BnSize, config.GrowthRate, config.DropRate, config.Epsilon);
            layers.Add(($"denseblock{b + 1}", block));
            var groupModules = new List<nn.Module> { block };
            channels += config.BlockConfig[b] * config.GrowthRate;
            if (b != config.BlockConfig.Length - 1)
            {
                var transition = new Transition(channels, channels / 2, config.Epsilon);
                layers.Add(($"transition{b + 1}", transition));
                groupModules.Add(transition);
                channels /= 2;
            }
            _backboneGroups.Add(new LayerGroup($"denseblock{b + 1}", groupModules, false));
        }
        var norm5 = Init.BatchNorm(nn.BatchNorm2d(channels, eps: config.Epsilon));
        layers.Add(("norm5", norm5));
        // The final norm belongs with the last block: unfreezing "the last block" must include it.
        _backboneGroups[^1] = _backboneGroups[^1] with { Modules = _backboneGroups[^1].Modules.Append(norm5).ToArray() };

        _features = nn.Sequential(layers);
        _numFeatures = channels;
        _classifier = BuildClassifier(head, numClasses);
        register_module("features", _features);
        register_module("classifier", _classifier);
    }

    public override int NumFeatures => _numFeatures;
    public override string ClassifierName => "classifier";
    public override string DefaultCamLayer => "features.norm5";

    protected override nn.Module<Tensor, Tensor> Classifier { get => _classifier; set => _classifier = value; }

    protected override nn.Module<Tensor, Tensor> BuildClassifier(HeadSpec head, int numClasses) => BuildPooledHead(head, _numFeatures, numClasses);

    public override IReadOnlyList<LayerGroup> LayerGroups => _backboneGroups.Append(new LayerGroup("head", [_classifier], true)).ToArray();

    // Each stage runs its group's modules (the stem; a dense block with its transition; the last block with norm5).
    // torchvision applies the final ReLU in forward(), outside `features`: it ends the last stage here.
    public override Tensor ForwardStages(Tensor input, int from, int to)
    {
        CheckStageRange(from, to, _backboneGroups.Count);
        var modules = _backboneGroups.Skip(from).Take(to - from).SelectMany(g => g.Modules).Cast<nn.Module<Tensor, Tensor>>();
        var x = RunInOrder(input, modules);
        if (to < _backboneGroups.Count || from == to) return x;
        using (x) return nn.functional.relu(x);
    }

    public override Tensor ForwardHead(Tensor features)
    {
        using var pooled = nn.functional.adaptive_avg_pool2d(features, new long[] { 1, 1 });
        using var flat = pooled.flatten(1);
        return _classifier.call(flat);
    }

    /// <summary>BN → ReLU → 1×1 conv (bottleneck) → BN → ReLU → 3×3 conv, on the concatenation of all earlier outputs.</summary>
    sealed class DenseLayer : TorchvisionModule
    {
        readonly BatchNorm2d _norm1, _norm2;
        readonly Conv2d _conv1, _conv2;
        readonly double _dropRate;

        public DenseLayer(int inChannels, int growthRate, int bnSize, double dropRate, double eps) : base("DenseLayer")
        {
            _norm1 = Init.BatchNorm(nn.BatchNorm2d(inChannels, eps: eps));
            _conv1 = Init.ConvKaimingFanOut(nn.Conv2d(inChannels, bnSize * growthRate, 1, bias: false));
            _norm2 = Init.BatchNorm(nn.BatchNorm2d(bnSize * growthRate, eps: eps));
            _conv2 = Init.ConvKaimingFanOut(nn.Conv2d(bnSize * growthRate, growthRate, 3, padding: 1, bias: false));
            _dropRate = dropRate;
            register_module("norm1", _norm1);
            register_module("relu1", nn.ReLU(inplace: true));
            register_module("conv1", _conv1);
            register_module("norm2", _norm2);
            register_module("relu2", nn.ReLU(inplace: true));
            register_module("conv2", _conv2);
        }

        public override Tensor forward(Tensor concatenated)
        {
            using var n1 = _norm1.call(concatenated);
            using var r1 = nn.functional.relu(n1);
            using var c1 = _conv1.call(r1);
            using var n2 = _norm2.call(c1);
            using var r2 = nn.functional.relu(n2);
            var c2 = _conv2.call(r2);
            if (_dropRate <= 0) return c2;
            using (c2) return nn.functional.dropout(c2, _dropRate, training);
        }
    }

    sealed class DenseBlock : TorchvisionModule
    {
        readonly DenseLayer[] _layers;

        public DenseBlock(int numLayers, int inChannels, int bnSize, int growthRate, double dropRate, double eps) : base("DenseBlock")
        {
            _layers = new DenseLayer[numLayers];
            for (int i = 0; i < numLayers; i++)
            {
                _layers[i] = new DenseLayer(inChannels + i * growthRate, growthRate, bnSize, dropRate, eps);
                register_module($"denselayer{i + 1}", _layers[i]);
            }
        }

        public override Tensor forward(Tensor input)
        {
            var outputs = new List<Tensor> { input };
            try
            {
                foreach (var layer in _layers)
                {
                    using var concatenated = torch.cat(outputs, 1);
                    outputs.Add(layer.call(concatenated));
                }
                return torch.cat(outputs, 1);
            }
            finally
            {
                foreach (var t in outputs.Skip(1)) t.Dispose(); // the input belongs to the caller
            }
        }
    }

    /// <summary>BN → ReLU → 1×1 conv halving the channels → 2×2 average pool.</summary>
    sealed class Transition : TorchvisionModule
    {
        readonly BatchNorm2d _norm;
        readonly Conv2d _conv;

        public Transition(int inChannels, int outChannels, double eps) : base("Transition")
        {
            _norm = Init.BatchNorm(nn.BatchNorm2d(inChannels, eps: eps));
            _conv = Init.ConvKaimingFanOut(nn.Conv2d(inChannels, outChannels, 1, bias: false));
            register_module("norm", _norm);
            register_module("relu", nn.ReLU(inplace: true));
            register_module("conv", _conv);
            register_module("pool", nn.AvgPool2d(2, stride: 2));
        }

        public override Tensor forward(Tensor input)
        {
            using var n = _norm.call(input);
            using var r = nn.functional.relu(n);
            using var c = _conv.call(r);
            return nn.functional.avg_pool2d(c, 2, 2);
        }
    }
}
