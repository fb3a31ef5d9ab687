using MLNet.ImageTransfer.Engine;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Models;

/// <summary>
/// ResNet with torchvision's module tree: <c>conv1, bn1, relu, maxpool, layer1..layer4, avgpool, fc</c>; blocks
/// <c>layerN.M.{conv1,bn1,conv2,bn2[,conv3,bn3],downsample.{0,1}}</c>.
/// </summary>
public sealed class ResNet : ImageClassifierModel
{
    readonly Conv2d _conv1;
    readonly BatchNorm2d _bn1;
    readonly MaxPool2d _maxpool;
    readonly Sequential[] _stages;
    nn.Module<Tensor, Tensor> _fc;
    readonly int _numFeatures;

    public ResNet(ResNetConfig config, int numClasses, HeadSpec head) : base("ResNet", config, head, numClasses)
    {
        config.Validate();
        head.Validate();
        int width = config.BaseWidth;
        int expansion = config.Block == ResNetBlock.Bottleneck ? 4 : 1;
        _conv1 = Init.ConvKaimingFanOut(nn.Conv2d(3, width, 7, stride: 2, padding: 3, bias: config.ConvBias));
        _bn1 = Init.BatchNorm(nn.BatchNorm2d(width, eps: config.Epsilon));
        _maxpool = nn.MaxPool2d(3, stride: 2, padding: 1);
        register_module("conv1", _conv1);
        register_module("bn1", _bn1);
        register_module("relu", nn.ReLU(inplace: true));
        register_module("maxpool", _maxpool);

        int inplanes = width;
        _stages = new Sequential[4];
        for (int s = 0; s < 4; s++)
        {
            int planes = width << s;
            int stride = s == 0 ? 1 : 2;
            var blocks = new List<(string, nn.Module<Tensor, Tensor>)>();
            for (int b = 0; b < config.Layers[s]; b++)
            {
                nn.Module<Tensor, Tensor> block = config.Block == ResNetBlock.Bottleneck
                    ? new Bottleneck(inplanes, planes, b == 0 ? stride : 1, config)
                    : new BasicBlock(inplanes, planes, b == 0 ? stride : 1, config);
                blocks.Add((b.ToString(System.Globalization.CultureInfo.InvariantCulture), block));
                inplanes = planes * expansion;
            }
            _stages[s] = nn.Sequential(blocks);
            register_module($"layer{s + 1}", _stages[s]);
        }
        register_module("avgpool", nn.AdaptiveAvgPool2d(new long[] { 1, 1 }));
        _numFeatures = inplanes;
        _fc = BuildClassifier(head, numClasses);
        register_module("fc", _fc);
    }

    public override int NumFeatures => _numFeatures;
    public override string ClassifierName => "fc";
    public override string DefaultCamLayer => "layer4";
    protected override nn.Module<Tensor, Tensor> Classifier { get => _fc; set => _fc = value; }
    protected override nn.Module<Tensor, Tensor> BuildClassifier(HeadSpec head, int numClasses) => BuildPooledHead(head, _numFeatures, numClasses);

    // One group per residual block (timm's fine-grained grouping): "the last K blocks" and layer-wise learning rates
    // work block by block, and fine-tuning only the last block of a stage is possible. A multiplier named after a stage
    // (layer4) applies to its blocks (see FineTuningSchedule).
    public override IReadOnlyList<LayerGroup> LayerGroups =>
        new[] { new LayerGroup("stem", new nn.Module[] { _conv1, _bn1 }, false) }
            .Concat(Blocks.Select(b => new LayerGroup(b.Name, [b.Block], false)))
            .Append(new LayerGroup("head", [_fc], true)).ToArray();

    /// <summary>The residual blocks in order, named by their torchvision path (layer1.0 … layer4.N).</summary>
    IEnumerable<(string Name, nn.Module<Tensor, Tensor> Block)> Blocks =>
        _stages.SelectMany((stage, s) => stage.named_children().Select(c => ($"layer{s + 1}.{c.name}", (nn.Module<Tensor, Tensor>)c.module)));

    // Stage 0 is the stem (conv1, bn1, relu, maxpool); the stages after it are the residual blocks, as the groups are.
    // A layerN covered whole runs as its Sequential, so hooks on layer1..layer4 (Grad-CAM, activations) still fire.
    public override Tensor ForwardStages(Tensor input, int from, int to)
    {
        int blockCount = _stages.Sum(s => (int)s.Count);
        CheckStageRange(from, to, blockCount + 1);
        var x = input;
        void Step(nn.Module<Tensor, Tensor> module)
        {
            var next = module.call(x);
            if (!ReferenceEquals(x, input)) x.Dispose();
            x = next;
        }
        if (from == 0 && to > 0)
        {
            using var c = _conv1.call(input);
            using var n = _bn1.call(c);
            using var r = nn.functional.relu(n);
            x = _maxpool.call(r);
        }
        int first = 1; // stage index of the current layer's first block
        foreach (var layer in _stages)
        {
            int count = (int)layer.Count, begin = Math.Max(from, first), end = Math.Min(to, first + count);
            if (begin == first && end == first + count) Step(layer);
            else for (int b = begin; b < end; b++) Step((nn.Module<Tensor, Tensor>)layer[b - first]);
            first += count;
        }
        return ReferenceEquals(x, input) ? input.alias() : x;
    }

    public override Tensor ForwardHead(Tensor features)
    {
        using var pooled = nn.functional.adaptive_avg_pool2d(features, new long[] { 1, 1 });
        using var flat = pooled.flatten(1);
        return _fc.call(flat);
    }

    /// <summary>1×1 conv + BN projecting the shortcut when the shape changes (keys downsample.0 / downsample.1).</summary>
    static Sequential? Downsample(int inplanes, int outplanes, int stride, ResNetConfig config)
        => stride == 1 && inplanes == outplanes
            ? null
            : nn.Sequential(("0", Init.ConvKaimingFanOut(nn.Conv2d(inplanes, outplanes, 1, stride: stride, bias: config.ConvBias))),
                            ("1", Init.BatchNorm(nn.BatchNorm2d(outplanes, eps: config.Epsilon))));

    sealed class BasicBlock : TorchvisionModule
    {
        readonly Conv2d _conv1, _conv2;
        readonly BatchNorm2d _bn1, _bn2;
        readonly Sequential? _downsample;

        public BasicBlock(int inplanes, int planes, int stride, ResNetConfig config) : base("BasicBlock")
        {
            _conv1 = Init.ConvKaimingFanOut(nn.Conv2d(inplanes, planes, 3, stride: stride, padding: 1, bias: config.ConvBias));
            _bn1 = Init.BatchNorm(nn.BatchNorm2d(planes, eps: config.Epsilon));
            _conv2 = Init.ConvKaimingFanOut(nn.Conv2d(planes, planes, 3, padding: 1, bias: config.ConvBias));
            _bn2 = Init.BatchNorm(nn.BatchNorm2d(planes, eps: config.Epsilon));
            _downsample = Downsample(inplanes, planes, stride, config);
            register_module("conv1", _conv1);
            register_module("bn1", _bn1);
            register_module("relu", nn.ReLU(inplace: true));
            register_module("conv2", _conv2);
            register_module("bn2", _bn2);
            if (_downsample is not null) register_module("downsample", _downsample);
        }

        public override Tensor forward(Tensor x)
        {
            using var c1 = _conv1.call(x);
            using var n1 = _bn1.call(c1);
            using var r1 = nn.functional.relu(n1);
            using var c2 = _conv2.call(r1);
            using var n2 = _bn2.call(c2);
            using var identity = _downsample is null ? x.alias() : _downsample.call(x);
            using var sum = n2.add(identity, TorchScalars.One); // rooted alpha: Engine/TorchScalars.cs
            return nn.functional.relu(sum);
        }
    }

    sealed class Bottleneck : TorchvisionModule
    {
        const int Expansion = 4;
        readonly Conv2d _conv1, _conv2, _conv3;
        readonly BatchNorm2d _bn1, _bn2, _bn3;
        readonly Sequential? _downsample;

        public Bottleneck(int inplanes, int planes, int stride, ResNetConfig config) : base("Bottleneck")
        {
            // v1.5 (torchvision): the stride is on the 3×3 convolution; v1 (original paper, Keras, Caffe): on the first 1×1.
            int stride1 = config.StrideOnFirstConv ? stride : 1, stride2 = config.StrideOnFirstConv ? 1 : stride;
            _conv1 = Init.ConvKaimingFanOut(nn.Conv2d(inplanes, planes, 1, stride: stride1, bias: config.ConvBias));
            _bn1 = Init.BatchNorm(nn.BatchNorm2d(planes, eps: config.Epsilon));
            _conv2 = Init.ConvKaimingFanOut(nn.Conv2d(planes, planes, 3, stride: stride2, padding: 1, bias: config.ConvBias));
            _bn2 = Init.BatchNorm(nn.BatchNorm2d(planes, eps: config.Epsilon));
            _conv3 = Init.ConvKaimingFanOut(nn.Conv2d(planes, planes * Expansion, 1, bias: config.ConvBias));
            _bn3 = Init.BatchNorm(nn.BatchNorm2d(planes * Expansion, eps: config.Epsilon));
            _downsample = Downsample(inplanes, planes * Expansion, stride, config);
            register_module("conv1", _conv1);
            register_module("bn1", _bn1);
            register_module("conv2", _conv2);
            register_module("bn2", _bn2);
            register_module("conv3", _conv3);
            register_module("bn3", _bn3);
            register_module("relu", nn.ReLU(inplace: true));
            if (_downsample is not null) register_module("downsample", _downsample);
        }

        public override Tensor forward(Tensor x)
        {
            using var c1 = _conv1.call(x);
            using var n1 = _bn1.call(c1);
            using var r1 = nn.functional.relu(n1);
            using var c2 = _conv2.call(r1);
            using var n2 = _bn2.call(c2);
            using var r2 = nn.functional.relu(n2);
            using var c3 = _conv3.call(r2);
            using var n3 = _bn3.call(c3);
            using var identity = _downsample is null ? x.alias() : _downsample.call(x);
            using var sum = n3.add(identity, TorchScalars.One);
            return nn.functional.relu(sum);
        }
    }
}
