using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using TorchSharp;
using TorchSharp.Modules;
using static MLNet.ImageTransfer.Onnx.Protobuf.OnnxProto;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Onnx;

/// <summary>
/// Writes one of our networks into an <see cref="OnnxGraphBuilder"/>, family by family, mirroring each family's
/// <c>forward</c> (DenseNet's concatenations, ResNet's residual additions, VGG's sequential features) and reading
/// every hyper-parameter (kernel, stride, padding, dilation, groups, bias, epsilon, pooling) from the modules
/// themselves, by their torchvision paths. Dropout is omitted (inference).
/// </summary>
/// <remarks>
/// With <c>foldBatchNorm</c>, a BatchNorm that directly follows a convolution is folded into it:
/// <c>W' = W·γ/√(σ²+ε)</c>, <c>b' = (b − μ)·γ/√(σ²+ε) + β</c> per output channel, computed in double precision.
/// BatchNorms that follow something else (DenseNet's pre-activation norms on concatenations and transitions, and its
/// final <c>norm5</c>) stay BatchNormalization nodes.
/// </remarks>
internal sealed class TorchvisionOnnxWriter
{
    readonly OnnxGraphBuilder _g;
    readonly ImageClassifierModel _model;
    readonly Dictionary<string, nn.Module> _modules;
    readonly bool _fold;

    public TorchvisionOnnxWriter(OnnxGraphBuilder graph, ImageClassifierModel model, bool foldBatchNorm)
    {
        _g = graph;
        _model = model;
        _fold = foldBatchNorm;
        _modules = model.named_modules().Where(m => m.name.Length > 0).ToDictionary(m => m.name, m => m.module, StringComparer.Ordinal);
    }

    // ---- Preprocessing ------------------------------------------------------------------------------------------

    /// <summary>
    /// Raw RGB pixels 0–255 → the network input of <paramref name="p"/>: channel reorder for BGR presets (Gather),
    /// then <c>(x · Scale − Mean) / Std</c> as Mul, Sub, Div — the same float32 operations, in the same order, as
    /// <see cref="ImageTensors.Normalize"/>.
    /// </summary>
    public string Preprocess(string pixels, ImagePreprocessing p)
    {
        var shape = _g.Shape(pixels);
        string x = pixels;
        if (p.Channels == ChannelOrder.Bgr)
            x = _g.Node("Gather", "preprocess.bgr", shape, [x, _g.Initializer("preprocess.bgr_indices", new long[] { 2, 1, 0 }, 3)], Attr.Int("axis", 1));
        x = _g.Node("Mul", "preprocess.scaled", shape, [x, _g.Initializer("preprocess.scale", [p.Scale], 1, 1, 1, 1)]);
        var (centre, centreShape) = p.Centering;
        x = _g.Node("Sub", "preprocess.centered", shape, [x, _g.Initializer("preprocess.mean", centre.ToArray(), centreShape)]);
        return _g.Node("Div", "preprocess.normalized", shape, [x, _g.Initializer("preprocess.std", p.Std.ToArray(), 1, 3, 1, 1)]);
    }

    // ---- Families ---------------------------------------------------------------------------------------------

    /// <summary>The backbone: image batch → feature map (what <see cref="ImageClassifierModel.ForwardFeatures"/> returns).</summary>
    public string Features(string x) => _model switch
    {
        DenseNet => DenseNetFeatures(x, (DenseNetConfig)_model.Config),
        ResNet => ResNetFeatures(x, (ResNetConfig)_model.Config),
        Vgg => SequentialPath("features", x),
        _ => throw new NotSupportedException($"ONNX export does not know the network type {_model.GetType().Name}."),
    };

    /// <summary>Pooling and classifier: feature map → logits (what <see cref="ImageClassifierModel.ForwardHead"/> returns).</summary>
    public string Head(string features)
    {
        string pooled = _model is Vgg && _model.Head.Kind == HeadKind.Linear
            ? AdaptiveAvgPoolFlatten(features, ((VggConfig)_model.Config).PoolSize, "avgpool")
            : GlobalAvgPoolFlatten(features, "pool");
        return SequentialPath(_model.ClassifierName, pooled);
    }

    /// <summary>Global-average-pooled features [C] (<see cref="ImageClassifierModel.ForwardPooledFeatures"/>).</summary>
    public string GlobalAvgPoolFlatten(string x, string name, string? outputName = null)
    {
        var s = _g.Shape(x);
        var pooled = _g.Node("GlobalAveragePool", name, [s[0], 1, 1], [x]);
        return _g.Node("Flatten", outputName ?? name + ".flatten", [s[0]], [pooled], Attr.Int("axis", 1));
    }

    string DenseNetFeatures(string x, DenseNetConfig config)
    {
        x = Conv("features.conv0", x, "features.norm0");
        x = Relu(x, "features.relu0");
        x = Pool("features.pool0", x);
        for (int b = 1; b <= config.BlockConfig.Length; b++)
        {
            string block = $"features.denseblock{b}";
            var outputs = new List<string> { x };
            for (int l = 1; l <= config.BlockConfig[b - 1]; l++)
            {
                string p = $"{block}.denselayer{l}";
                string input = outputs.Count == 1 ? outputs[0] : Concat(outputs, p + ".input");
                var y = BatchNorm(p + ".norm1", input);
                y = Relu(y, p + ".relu1");
                y = Conv(p + ".conv1", y, p + ".norm2");
                y = Relu(y, p + ".relu2");
                y = Conv(p + ".conv2", y);
                outputs.Add(y); // dropout (drop_rate) is the identity at inference
            }
            x = Concat(outputs, block);
            string t = $"features.transition{b}";
            if (_modules.ContainsKey(t))
            {
                x = BatchNorm(t + ".norm", x);
                x = Relu(x, t + ".relu");
                x = Conv(t + ".conv", x);
                x = Pool(t + ".pool", x);
            }
        }
        x = BatchNorm("features.norm5", x);
        return Relu(x, "features.relu5"); // torchvision applies this ReLU in forward(), outside `features`
    }

    string ResNetFeatures(string x, ResNetConfig config)
    {
        x = Conv("conv1", x, "bn1");
        x = Relu(x, "relu");
        x = Pool("maxpool", x);
        for (int s = 1; s <= 4; s++)
        {
            for (int b = 0; b < config.Layers[s - 1]; b++)
            {
                string p = $"layer{s}.{b}";
                var y = Conv(p + ".conv1", x, p + ".bn1");
                y = Relu(y, p + ".relu1");
                y = Conv(p + ".conv2", y, p + ".bn2");
                if (config.Block == ResNetBlock.Bottleneck)
                {
                    y = Relu(y, p + ".relu2");
                    y = Conv(p + ".conv3", y, p + ".bn3");
                }
                string identity = _modules.ContainsKey(p + ".downsample") ? Conv(p + ".downsample.0", x, p + ".downsample.1") : x;
                var sum = _g.Node("Add", p + ".add", _g.Shape(y), [y, identity]);
                x = Relu(sum, p);
            }
        }
        return x;
    }

    /// <summary>
    /// The children of a Sequential (or a single module) in order: VGG's <c>features</c>, and every classifier head
    /// (torchvision's Linear, VGG's 7-layer classifier, the Keras-style MLP). A BatchNorm right after a Conv is folded.
    /// </summary>
    string SequentialPath(string path, string x)
    {
        var module = Module<nn.Module>(path);
        var children = module is Sequential ? module.named_children().Select(c => (Path: $"{path}.{c.name}", Module: c.module)).ToList() : [(path, module)];
        for (int i = 0; i < children.Count; i++)
        {
            var (p, m) = children[i];
            switch (m)
            {
                case Conv2d:
                    bool bnNext = i + 1 < children.Count && children[i + 1].Module is BatchNorm2d;
                    x = Conv(p, x, bnNext ? children[i + 1].Path : null);
                    if (bnNext) i++;
                    break;
                case BatchNorm2d: x = BatchNorm(p, x); break;
                case ReLU: x = Relu(x, p); break;
                case MaxPool2d or AvgPool2d: x = Pool(p, x); break;
                case Linear: x = Gemm(p, x); break;
                case Dropout or Identity: break; // inference
                default: throw new NotSupportedException($"ONNX export does not support module '{p}' ({m.GetType().Name}).");
            }
        }
        return x;
    }

    // ---- Layers ---------------------------------------------------------------------------------------------------

    T Module<T>(string path) where T : nn.Module
        => _modules.TryGetValue(path, out var m)
            ? m as T ?? throw new InvalidOperationException($"Module '{path}' is a {m.GetType().Name}, {typeof(T).Name} expected.")
            : throw new InvalidOperationException($"The network has no module '{path}'.");

    string Relu(string x, string name) => _g.Node("Relu", name, _g.Shape(x), [x]);

    string Concat(IReadOnlyList<string> inputs, string name)
    {
        var shapes = inputs.Select(_g.Shape).ToList();
        long channels = shapes.Sum(s => s[0]);
        return _g.Node("Concat", name, [channels, shapes[0][1], shapes[0][2]], inputs, Attr.Int("axis", 1));
    }

    /// <summary>Conv2d, with the BatchNorm at <paramref name="bnPath"/> folded in (or emitted after it when not folding).</summary>
    string Conv(string path, string x, string? bnPath = null)
    {
        var conv = Module<Conv2d>(path);
        if (conv.padding is null || conv.padding_mode != PaddingModes.Zeros)
            throw new NotSupportedException($"ONNX export supports convolutions with explicit zero padding only ('{path}').");
        var w = conv.weight ?? throw new InvalidOperationException($"Convolution '{path}' has no weight.");
        long[] wShape = w.shape;
        long[] k = conv.kernel_size, s = conv.stride, pad = conv.padding, d = conv.dilation;
        var input = _g.Shape(x);
        if (input[0] != wShape[1] * conv.groups)
            throw new InvalidOperationException($"Convolution '{path}' expects {wShape[1] * conv.groups} input channels, the graph has {input[0]}.");
        long[] output = [wShape[0], ConvOut(input[1], k[0], s[0], pad[0], d[0]), ConvOut(input[2], k[1], s[1], pad[1], d[1])];

        float[] weight = Floats(w);
        float[]? bias = conv.bias is null ? null : Floats(conv.bias);
        string weightName = path + ".weight";
        if (bnPath is not null && _fold)
        {
            (weight, bias) = FoldBatchNorm(weight, bias, Module<BatchNorm2d>(bnPath), wShape[0]);
            weightName = $"{path}+{bnPath}.weight";
        }
        var inputs = new List<string> { x, _g.Initializer(weightName, weight, wShape) };
        if (bias is not null) inputs.Add(_g.Initializer(weightName[..^".weight".Length] + ".bias", bias, wShape[0]));
        string y = _g.Node("Conv", bnPath is not null && _fold ? bnPath : path, output, inputs,
            Attr.Ints("kernel_shape", k), Attr.Ints("strides", s), Attr.Ints("pads", [pad[0], pad[1], pad[0], pad[1]]),
            Attr.Ints("dilations", d), Attr.Int("group", conv.groups));
        return bnPath is not null && !_fold ? BatchNorm(bnPath, y) : y;
    }

    static (float[] Weight, float[] Bias) FoldBatchNorm(float[] weight, float[]? bias, BatchNorm2d bn, long outChannels)
    {
        var (gamma, beta, mean, variance, eps) = BatchNormParameters(bn);
        if (gamma.Length != outChannels) throw new InvalidOperationException($"BatchNorm of {gamma.Length} channels after a convolution of {outChannels}.");
        int perChannel = weight.Length / (int)outChannels;
        var w = new float[weight.Length];
        var b = new float[outChannels];
        for (int o = 0; o < outChannels; o++)
        {
            double scale = gamma[o] / Math.Sqrt(variance[o] + eps);
            for (int j = 0; j < perChannel; j++) w[o * perChannel + j] = (float)(weight[o * perChannel + j] * scale);
            b[o] = (float)(((bias?[o] ?? 0.0) - mean[o]) * scale + beta[o]);
        }
        return (w, b);
    }

    static (float[] Gamma, float[] Beta, float[] Mean, float[] Var, double Eps) BatchNormParameters(BatchNorm2d bn)
    {
        long n = bn.num_features;
        var mean = bn.running_mean is null ? new float[n] : Floats(bn.running_mean);
        var variance = bn.running_var is null ? Enumerable.Repeat(1f, (int)n).ToArray() : Floats(bn.running_var);
        var gamma = bn.weight is null ? Enumerable.Repeat(1f, (int)n).ToArray() : Floats(bn.weight);
        var beta = bn.bias is null ? new float[n] : Floats(bn.bias);
        return (gamma, beta, mean, variance, bn.eps);
    }

    string BatchNorm(string path, string x)
    {
        var bn = Module<BatchNorm2d>(path);
        var (gamma, beta, mean, variance, eps) = BatchNormParameters(bn);
        long c = gamma.Length;
        if (_g.Shape(x)[0] != c) throw new InvalidOperationException($"BatchNorm '{path}' has {c} channels, its input {_g.Shape(x)[0]}.");
        return _g.Node("BatchNormalization", path, _g.Shape(x),
            [x, _g.Initializer(path + ".weight", gamma, c), _g.Initializer(path + ".bias", beta, c),
             _g.Initializer(path + ".running_mean", mean, c), _g.Initializer(path + ".running_var", variance, c)],
            Attr.Float("epsilon", (float)eps));
    }

    string Pool(string path, string x)
    {
        var input = _g.Shape(x);
        switch (Module<nn.Module>(path))
        {
            case MaxPool2d m:
            {
                long[] k = m.kernel_size, s = m.stride ?? m.kernel_size, p = m.padding ?? [0, 0], d = m.dilation ?? [1, 1];
                long[] output = [input[0], PoolOut(input[1], k[0], s[0], p[0], d[0], m.ceil_mode), PoolOut(input[2], k[1], s[1], p[1], d[1], m.ceil_mode)];
                return _g.Node("MaxPool", path, output, [x],
                    Attr.Ints("kernel_shape", k), Attr.Ints("strides", s), Attr.Ints("pads", [p[0], p[1], p[0], p[1]]),
                    Attr.Ints("dilations", d), Attr.Int("ceil_mode", m.ceil_mode ? 1 : 0));
            }
            case AvgPool2d a:
            {
                if (a.divisor_override is not null) throw new NotSupportedException($"ONNX has no divisor_override ('{path}').");
                long[] k = a.kernel_size, s = a.stride ?? a.kernel_size, p = a.padding ?? [0, 0];
                long[] output = [input[0], PoolOut(input[1], k[0], s[0], p[0], 1, a.ceil_mode), PoolOut(input[2], k[1], s[1], p[1], 1, a.ceil_mode)];
                return _g.Node("AveragePool", path, output, [x],
                    Attr.Ints("kernel_shape", k), Attr.Ints("strides", s), Attr.Ints("pads", [p[0], p[1], p[0], p[1]]),
                    Attr.Int("count_include_pad", a.count_include_pad ? 1 : 0), Attr.Int("ceil_mode", a.ceil_mode ? 1 : 0));
            }
            case var other:
                throw new NotSupportedException($"Module '{path}' ({other.GetType().Name}) is not a pooling layer ONNX export knows.");
        }
    }

    /// <summary>
    /// PyTorch's <c>adaptive_avg_pool2d</c> to <paramref name="size"/>² followed by <c>flatten(1)</c>. An identity when
    /// the map already has that size, an AveragePool when it divides evenly; otherwise (e.g. a 1×1 map of a small
    /// image replicated to 7×7) an exact linear map: MatMul of the [C, h·w] map with PyTorch's bin-averaging matrix.
    /// </summary>
    string AdaptiveAvgPoolFlatten(string x, int size, string name)
    {
        var s = _g.Shape(x);
        long c = s[0], h = s[1], w = s[2];
        long flat = c * size * size;
        if (h == size && w == size)
            return _g.Node("Flatten", name + ".flatten", [flat], [x], Attr.Int("axis", 1));
        if (h % size == 0 && w % size == 0)
        {
            long[] k = [h / size, w / size];
            var pooled = _g.Node("AveragePool", name, [c, size, size], [x], Attr.Ints("kernel_shape", k), Attr.Ints("strides", k));
            return _g.Node("Flatten", name + ".flatten", [flat], [pooled], Attr.Int("axis", 1));
        }
        var matrix = new float[h * w * size * size];
        for (int oy = 0; oy < size; oy++)
        for (int ox = 0; ox < size; ox++)
        {
            long y0 = oy * h / size, y1 = ((oy + 1) * h + size - 1) / size;
            long x0 = ox * w / size, x1 = ((ox + 1) * w + size - 1) / size;
            float weight = 1f / ((y1 - y0) * (x1 - x0));
            for (long iy = y0; iy < y1; iy++)
            for (long ix = x0; ix < x1; ix++)
                matrix[(iy * w + ix) * size * size + oy * size + ox] = weight;
        }
        var rows = _g.Node("Reshape", name + ".rows", [c, h * w], [x, _g.Initializer(name + ".rows_shape", new long[] { 0, c, h * w }, 3)]);
        var pooledRows = _g.Node("MatMul", name, [c, size * size], [rows, _g.Initializer(name + ".bins", matrix, h * w, size * size)]);
        return _g.Node("Reshape", name + ".flatten", [flat], [pooledRows, _g.Initializer(name + ".flat_shape", new long[] { 0, flat }, 2)]);
    }

    string Gemm(string path, string x)
    {
        var linear = Module<Linear>(path);
        long outFeatures = linear.out_features, inFeatures = linear.in_features;
        if (_g.Shape(x)[0] != inFeatures) throw new InvalidOperationException($"Linear '{path}' expects {inFeatures} inputs, the graph has {_g.Shape(x)[0]}.");
        var inputs = new List<string> { x, _g.Initializer(path + ".weight", Floats(linear.weight!), outFeatures, inFeatures) };
        if (linear.bias is not null) inputs.Add(_g.Initializer(path + ".bias", Floats(linear.bias), outFeatures));
        return _g.Node("Gemm", path, [outFeatures], inputs, Attr.Int("transB", 1));
    }

    static long ConvOut(long size, long kernel, long stride, long pad, long dilation) => FloorDiv(size + 2 * pad - dilation * (kernel - 1) - 1, stride) + 1;

    static long FloorDiv(long a, long b) => (long)Math.Floor((double)a / b);

    /// <summary>PyTorch's pooling output size, including its ceil-mode rule (the last window must start inside the input or left padding).</summary>
    static long PoolOut(long size, long kernel, long stride, long pad, long dilation, bool ceil)
    {
        long span = size + 2 * pad - dilation * (kernel - 1) - 1;
        long output = (ceil ? -FloorDiv(-span, stride) : FloorDiv(span, stride)) + 1;
        if (ceil && (output - 1) * stride >= size + pad) output--;
        return output;
    }

    static float[] Floats(Tensor t)
    {
        using var scope = NewDisposeScope();
        return t.detach().cpu().to_type(ScalarType.Float32).contiguous().data<float>().ToArray();
    }
}
