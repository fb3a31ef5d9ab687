using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Models;

/// <summary>
/// VGG with torchvision's module tree: <c>features.{i}</c> (conv, [bn], relu, …, maxpool by position),
/// <c>avgpool</c>, <c>classifier.{0,3,6}</c> (Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear).
/// </summary>
public sealed class Vgg : ImageClassifierModel
{
    readonly Sequential _features;
    nn.Module<Tensor, Tensor> _classifier;
    readonly int _numFeatures;
    readonly VggConfig _config;
    readonly List<LayerGroup> _blocks = new();
    readonly List<nn.Module<Tensor, Tensor>[]> _stages = new();
    readonly string _lastConvActivation;

    public Vgg(VggConfig config, int numClasses, HeadSpec head) : base("VGG", config, head, numClasses)
    {
        config.Validate();
        head.Validate();
        _config = config;
        var layers = new List<(string, nn.Module<Tensor, Tensor>)>();
        var currentBlock = new List<nn.Module>();
        var currentStage = new List<nn.Module<Tensor, Tensor>>(); // the block's modules with its activations, in order
        int channels = 3;
        foreach (var v in config.Layers)
        {
            string index = layers.Count.ToString(System.Globalization.CultureInfo.InvariantCulture);
            if (v == VggConfig.MaxPool)
            {
                var pool = nn.MaxPool2d(2, stride: 2);
                layers.Add((index, pool));
                // Keras names VGG's stages block1..block5, each ending at a max-pool; Keras' VGG16 fine-tuning trains "block5".
                currentBlock.Add(pool);
                currentStage.Add(pool);
                _blocks.Add(new LayerGroup($"block{_blocks.Count + 1}", currentBlock.ToArray(), false));
                _stages.Add(currentStage.ToArray());
                currentBlock.Clear();
                currentStage.Clear();
                continue;
            }
            var conv = Init.ConvKaimingFanOut(nn.Conv2d(channels, v, 3, padding: 1));
            layers.Add((index, conv));
            currentBlock.Add(conv);
            currentStage.Add(conv);
            if (config.BatchNorm)
            {
                var bn = Init.BatchNorm(nn.BatchNorm2d(v));
                layers.Add((layers.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), bn));
                currentBlock.Add(bn);
                currentStage.Add(bn);
            }
            var relu = nn.ReLU(inplace: true);
            layers.Add((layers.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), relu));
            currentStage.Add(relu);
            channels = v;
        }
        if (currentBlock.Count > 0)
        {
            _blocks.Add(new LayerGroup($"block{_blocks.Count + 1}", currentBlock.ToArray(), false));
            _stages.Add(currentStage.ToArray());
        }

        _features = nn.Sequential(layers);
        // The ReLU after the last convolution (before the final max-pool).
        _lastConvActivation = "features." + layers.FindLast(l => l.Item2 is ReLU).Item1;
        _numFeatures = channels;
        _classifier = BuildClassifier(head, numClasses);
        register_module("features", _features);
        register_module("avgpool", nn.AdaptiveAvgPool2d(new long[] { config.PoolSize, config.PoolSize }));
        register_module("classifier", _classifier);
    }

    public override int NumFeatures => _numFeatures;
    public override string ClassifierName => "classifier";
    public override string DefaultCamLayer => _lastConvActivation;
    protected override nn.Module<Tensor, Tensor> Classifier { get => _classifier; set => _classifier = value; }

    public override IReadOnlyList<LayerGroup> LayerGroups => _blocks.Append(new LayerGroup("head", [_classifier], true)).ToArray();

    protected override nn.Module<Tensor, Tensor> BuildClassifier(HeadSpec head, int numClasses)
    {
        if (head.Kind != HeadKind.Linear) return BuildPooledHead(head, _numFeatures, numClasses);
        int flat = _numFeatures * _config.PoolSize * _config.PoolSize;
        int width = _config.ClassifierWidth;
        return nn.Sequential(
            ("0", Init.LinearNormal(nn.Linear(flat, width), 0.01)),
            ("1", nn.ReLU(inplace: true)),
            ("2", nn.Dropout(head.Dropout)),
            ("3", Init.LinearNormal(nn.Linear(width, width), 0.01)),
            ("4", nn.ReLU(inplace: true)),
            ("5", nn.Dropout(head.Dropout)),
            ("6", Init.LinearNormal(nn.Linear(width, numClasses), 0.01)));
    }

    // Each stage is a block: its convolutions (with BatchNorm), activations and closing max-pool, in `features` order.
    public override Tensor ForwardStages(Tensor input, int from, int to)
    {
        CheckStageRange(from, to, _stages.Count);
        return RunInOrder(input, _stages.Skip(from).Take(to - from).SelectMany(stage => stage));
    }

    public override Tensor ForwardHead(Tensor features)
    {
        // torchvision's own classifier sees the 7×7 adaptive-pooled map; a Keras-style head sees global-average-pooled features.
        long pool = Head.Kind == HeadKind.Linear ? _config.PoolSize : 1;
        using var pooled = nn.functional.adaptive_avg_pool2d(features, new long[] { pool, pool });
        using var flat = pooled.flatten(1);
        return _classifier.call(flat);
    }
}
