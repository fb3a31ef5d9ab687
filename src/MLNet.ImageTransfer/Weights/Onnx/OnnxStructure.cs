using MLNet.ImageTransfer.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Weights.Onnx;

/// <summary>An ONNX graph's weights under torchvision keys, the architecture its structure describes, and what was done.</summary>
internal sealed record OnnxMapping(
    OrderedDictionary<string, Tensor> Tensors,
    ArchitectureConfig Architecture,
    bool FoldedBatchNorm,
    double? BatchNormEpsilon,
    IReadOnlyList<string> Notes);

/// <summary>
/// Maps an ONNX CNN's initializers to our parameters by the graph's structure — which operator consumes which tensor,
/// where the residual additions and dense concatenations are — never by initializer names or positions (exporters
/// rename them: <c>onnx::Conv_193</c>, <c>resnetv17_conv0_weight</c>). Handles torchvision models exported with
/// <c>torch.onnx.export</c> (BatchNorm folded into the preceding convolution, shared constants behind Identity nodes)
/// and model-zoo style graphs (BatchNormalization kept, initializers also listed as inputs, Flatten/Reshape before the
/// classifier, a 1×1 convolution as classifier, residual <c>Sum</c>).
/// </summary>
/// <remarks>
/// The family is recognised from the structure: residual additions → ResNet; concatenations of feature maps → DenseNet;
/// a plain chain → VGG. Each family's walk assigns torchvision keys and infers the configuration (stage / block sizes,
/// widths, bottleneck stride placement, convolution biases, BatchNorm epsilon). Where the exporter folded a BatchNorm
/// into its convolution, the BatchNorm is loaded as the identity with the folded bias (exact in eval mode).
/// </remarks>
internal sealed class OnnxStructure
{
    readonly OnnxModel _model;
    readonly string _source;
    readonly Dictionary<string, OnnxTensor> _constants = new(StringComparer.Ordinal);
    readonly Dictionary<string, string> _alias = new(StringComparer.Ordinal);
    readonly Dictionary<string, OnnxNode> _producer = new(StringComparer.Ordinal);
    readonly Dictionary<string, List<OnnxNode>> _consumers = new(StringComparer.Ordinal);
    readonly HashSet<string> _activations = new(StringComparer.Ordinal);
    readonly List<OnnxNode> _order = new();
    readonly List<string> _notes = new();
    readonly OrderedDictionary<string, Tensor> _out = new();
    readonly HashSet<OnnxNode> _used = new(ReferenceEqualityComparer.Instance);
    readonly List<double> _epsilons = new();
    bool _folded;

    static readonly HashSet<string> PassThrough = new(StringComparer.Ordinal) { "Identity", "Dropout" };

    OnnxStructure(OnnxModel model, string source)
    {
        _model = model;
        _source = source;
    }

    public static OnnxMapping Map(OnnxModel model, string source)
    {
        var s = new OnnxStructure(model, source);
        try
        {
            return s.Run();
        }
        catch
        {
            foreach (var t in s._out.Values) t.Dispose();
            throw;
        }
    }

    WeightFileException Error(string problem) => new(_source, problem);

    OnnxMapping Run()
    {
        Prepare();
        var adds = _order.Where(n => n.OpType is "Add" or "Sum" && ActivationInputs(n).Count >= 2).ToList();
        var concats = _order.Where(n => n.OpType == "Concat" && ActivationInputs(n).Count >= 2).ToList();
        ArchitectureConfig config;
        if (adds.Count > 0 && concats.Count > 0)
            throw Error("the graph has both residual additions and feature concatenations; it is not a DenseNet, ResNet or VGG.");
        if (adds.Count > 0) config = MapResNet(adds);
        else if (concats.Count > 0) config = MapDenseNet();
        else config = MapVgg();

        var unused = ParamNodes().Where(n => !_used.Contains(n)).ToList();
        if (unused.Count > 0)
            throw Error($"{unused.Count} parameterised node(s) of the graph have no place in the {config.Family} structure: {string.Join(", ", unused.Take(5))}.");
        // A learned constant consumed by anything but the layers mapped above (a Caffe "Scale" as Mul/Add, a PRelu…)
        // would be silently lost: refuse instead.
        var inputNormalisation = InputNormalisation();
        if (inputNormalisation.Count > 0)
            _notes.Add($"the graph normalises its input before the first convolution ({string.Join(", ", inputNormalisation.Select(n => n.OpType))}); that is preprocessing, not weights, and is not loaded");
        var learned = _order.Where(n => !_used.Contains(n) && !inputNormalisation.Contains(n)
                && n.OpType is not ("Reshape" or "Gather" or "Unsqueeze" or "Squeeze" or "Concat" or "Slice" or "Expand" or "Tile" or "Pad" or "Resize" or "Upsample")
                && n.Inputs.Select(Resolve).Any(i => _constants.TryGetValue(i, out var t) && t.IsFloatingPoint && t.ElementCount > 1)).ToList();
        if (learned.Count > 0)
            throw Error($"{learned.Count} operation(s) with learned constants have no place in the {config.Family} structure: {string.Join(", ", learned.Take(5))}; the graph is not a plain torchvision-style {config.Family}.");
        double? eps = _epsilons.Count > 0 && _epsilons.All(e => Math.Abs(e - _epsilons[0]) < 1e-12) ? _epsilons[0] : null;
        if (_folded)
            _notes.Add("the exporter folded BatchNorm into the preceding convolutions (torch.onnx.export's default in eval mode): those BatchNorms are loaded as the identity with the folded bias — exact for inference; fine-tuning them starts from that. Export with do_constant_folding=False to keep them.");
        return new OnnxMapping(_out, config, _folded, eps, _notes);
    }

    // ---- graph preparation ---------------------------------------------------------------------------------------

    void Prepare()
    {
        foreach (var t in _model.InitializerList) _constants[t.Name] = t;
        foreach (var n in _model.Nodes)
        {
            if (n.OpType == "Constant" && n.Outputs.Count == 1 && n.Attributes.TryGetValue("value", out var v) && v.Tensor is { } t)
                _constants[n.Outputs[0]] = t;
        }
        foreach (var n in _model.Nodes)
        {
            if (PassThrough.Contains(n.OpType) && n.Inputs.Count >= 1 && n.Outputs.Count >= 1)
                _alias[n.Outputs[0]] = n.Inputs[0];
        }

        // Topological order (the file's order breaks ties), ignoring pass-through and constant nodes.
        var nodes = _model.Nodes.Where(n => !PassThrough.Contains(n.OpType) && n.OpType != "Constant").ToList();
        foreach (var n in nodes)
            foreach (var o in n.Outputs)
                if (o.Length > 0 && !_producer.TryAdd(o, n)) throw Error($"tensor '{o}' is produced by two nodes.");
        var indegree = new Dictionary<OnnxNode, int>(ReferenceEqualityComparer.Instance);
        foreach (var n in nodes)
        {
            var deps = n.Inputs.Where(i => i.Length > 0).Select(Resolve).Where(_producer.ContainsKey).Distinct().ToList();
            indegree[n] = deps.Count;
            foreach (var d in deps) Consumers(d).Add(n);
        }
        var index = new Dictionary<OnnxNode, int>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < nodes.Count; i++) index[nodes[i]] = i;
        var ready = new SortedSet<int>(nodes.Where(n => indegree[n] == 0).Select(n => index[n]));
        while (ready.Count > 0)
        {
            int i = ready.Min;
            ready.Remove(i);
            var n = nodes[i];
            _order.Add(n);
            foreach (var o in n.Outputs)
                foreach (var c in _consumers.GetValueOrDefault(o) ?? [])
                    if (--indegree[c] == 0) ready.Add(index[c]);
        }
        if (_order.Count != nodes.Count) throw Error("the graph has a cycle.");

        // Activations: what flows from the image input (not shape arithmetic, not constants).
        foreach (var i in _model.Inputs) _activations.Add(i);
        foreach (var n in _order)
        {
            if (n.OpType is "Shape" or "Size") continue;
            int dataInputs = n.OpType is "Reshape" or "Expand" or "Tile" or "Slice" or "Pad" or "Resize" or "Upsample" ? 1 : n.Inputs.Count;
            if (n.Inputs.Take(dataInputs).Any(i => i.Length > 0 && _activations.Contains(Resolve(i))))
                foreach (var o in n.Outputs) _activations.Add(o);
        }
        if (_model.Inputs.Count == 0 || _order.Count == 0) throw Error("the graph has no input or no nodes.");
    }

    /// <summary>
    /// Elementwise operations between the image input and the first convolution (an export with its normalisation
    /// built in: channel Gather, Mul by the scale, Sub of the mean, Div by the std).
    /// </summary>
    HashSet<OnnxNode> InputNormalisation()
    {
        var result = new HashSet<OnnxNode>(ReferenceEqualityComparer.Instance);
        var first = _order.FirstOrDefault(n => n.OpType == "Conv");
        var input = first is null ? null : ActivationInputs(first).FirstOrDefault();
        for (int guard = 0; input is not null && guard < 16 && _producer.TryGetValue(input, out var p); guard++)
        {
            if (p.OpType is not ("Mul" or "Sub" or "Div" or "Add" or "Gather" or "Cast")) break;
            result.Add(p);
            input = ActivationInputs(p).FirstOrDefault();
        }
        return result;
    }

    List<OnnxNode> Consumers(string tensor)
    {
        if (!_consumers.TryGetValue(tensor, out var list)) _consumers[tensor] = list = new List<OnnxNode>();
        return list;
    }

    string Resolve(string name)
    {
        for (int guard = 0; guard < 10_000 && _alias.TryGetValue(name, out var target); guard++) name = target;
        return name;
    }

    List<string> ActivationInputs(OnnxNode n) => n.Inputs.Where(i => i.Length > 0).Select(Resolve).Where(_activations.Contains).ToList();

    IEnumerable<OnnxNode> ParamNodes() => _order.Where(n => n.OpType is "Conv" or "BatchNormalization" or "Gemm" or "MatMul");

    /// <summary>The nodes that consume a node's first output (pass-through nodes looked through).</summary>
    List<OnnxNode> Next(OnnxNode n) => n.Outputs.Count == 0 ? [] : _consumers.GetValueOrDefault(n.Outputs[0]) ?? [];

    OnnxTensor Const(OnnxNode node, int input, string what)
    {
        if (node.Inputs.Count <= input || node.Inputs[input].Length == 0) throw Error($"{node} has no {what}.");
        var name = Resolve(node.Inputs[input]);
        return _constants.TryGetValue(name, out var t) ? t : throw Error($"the {what} of {node} ('{name}') is not a constant initializer; only graphs with constant weights are supported.");
    }

    OnnxTensor? OptionalConst(OnnxNode node, int input)
        => node.Inputs.Count > input && node.Inputs[input].Length > 0 && _constants.TryGetValue(Resolve(node.Inputs[input]), out var t) ? t : null;

    void Emit(string key, Tensor t)
    {
        if (!_out.TryAdd(key, t)) { t.Dispose(); throw Error($"two graph nodes map to '{key}'."); }
    }

    // ---- layers ------------------------------------------------------------------------------------------------

    /// <summary>A convolution and the BatchNorm that consumes it, if any.</summary>
    sealed record ConvUnit(OnnxNode Conv, OnnxNode? Bn)
    {
        public long OutChannels { get; init; }
        public long Stride { get; init; }
        public long Kernel { get; init; }
    }

    ConvUnit Conv(OnnxNode conv)
    {
        if (conv.Int("group") is long g && g != 1) throw Error($"{conv} is a grouped convolution (group={g}); DenseNet, ResNet and VGG have none.");
        var w = Const(conv, 1, "weight");
        if (w.Dims.Length != 4) throw Error($"{conv} has a {w.Dims.Length}-D weight; 2-D convolutions have 4-D weights.");
        var next = Next(conv);
        OnnxNode? bn = next.Count == 1 && next[0].OpType == "BatchNormalization" ? next[0] : null;
        long stride = conv.Ints("strides") is { Length: > 0 } s ? s.Max() : 1;
        return new ConvUnit(conv, bn) { OutChannels = w.Dims[0], Stride = stride, Kernel = w.Dims[2] };
    }

    /// <summary>
    /// Emits a convolution (and its BatchNorm) under torchvision keys. <paramref name="bnKey"/> null: the model has no
    /// BatchNorm there (VGG). <paramref name="biasAllowed"/>: the target convolution has a bias parameter.
    /// </summary>
    void EmitConv(ConvUnit u, string convKey, string? bnKey, bool biasAllowed)
    {
        _used.Add(u.Conv);
        var weight = Const(u.Conv, 1, "weight").ToFloat32(_source);
        Emit(convKey + ".weight", weight);
        var biasTensor = OptionalConst(u.Conv, 2);
        if (bnKey is null)
        {
            if (biasTensor is not null) Emit(convKey + ".bias", biasTensor.ToFloat32(_source));
            else if (biasAllowed) Emit(convKey + ".bias", zeros(weight.shape[0]));
            return;
        }
        if (u.Bn is { } bn)
        {
            _used.Add(bn);
            if (biasTensor is not null) Emit(convKey + ".bias", biasTensor.ToFloat32(_source));
            else if (biasAllowed) Emit(convKey + ".bias", zeros(weight.shape[0])); // e.g. MXNet's stem without bias in a network with biases
            EmitBatchNorm(bn, bnKey);
            return;
        }
        // Folded by the exporter: conv' = conv·γ/σ with bias b' = β + (b − μ)·γ/σ. Our BatchNorm then carries b' as its
        // bias and the identity otherwise (running_var = 1 − eps, so that sqrt(var + eps) = 1).
        _folded = true;
        long channels = weight.shape[0];
        using var folded = biasTensor?.ToFloat32(_source) ?? zeros(channels);
        if (biasAllowed)
        {
            Emit(convKey + ".bias", folded.clone());
            EmitIdentityBatchNorm(bnKey, zeros(channels));
        }
        else EmitIdentityBatchNorm(bnKey, folded.clone());
    }

    void EmitBatchNorm(OnnxNode bn, string key)
    {
        _used.Add(bn);
        _epsilons.Add(bn.Float("epsilon") ?? 1e-5f);
        Emit(key + ".weight", Const(bn, 1, "scale").ToFloat32(_source));
        Emit(key + ".bias", Const(bn, 2, "bias").ToFloat32(_source));
        Emit(key + ".running_mean", Const(bn, 3, "mean").ToFloat32(_source));
        Emit(key + ".running_var", Const(bn, 4, "variance").ToFloat32(_source));
        Emit(key + ".num_batches_tracked", tensor(0L));
    }

    void EmitIdentityBatchNorm(string key, Tensor bias)
    {
        long c = bias.shape[0];
        Emit(key + ".weight", ones(c));
        Emit(key + ".bias", bias);
        Emit(key + ".running_mean", zeros(c));
        using var identityVariance = (1.0 - ArchitectureConfig.TorchBatchNormEpsilon).ToScalar(); // rooted across the native call (TorchScalars)
        Emit(key + ".running_var", full(c, identityVariance, ScalarType.Float32));
        Emit(key + ".num_batches_tracked", tensor(0L));
    }

    /// <summary>The classifier layers after the backbone: Gemm, MatMul(+Add), or a 1×1 Conv on pooled features.</summary>
    List<(OnnxNode Node, Func<(Tensor Weight, Tensor? Bias)> Read)> LinearLayers(IEnumerable<OnnxNode> tail)
    {
        var list = new List<(OnnxNode, Func<(Tensor, Tensor?)>)>();
        foreach (var n in tail)
        {
            switch (n.OpType)
            {
                case "Gemm":
                    list.Add((n, () => ReadGemm(n)));
                    break;
                case "MatMul":
                {
                    var next = Next(n);
                    var add = next.Count == 1 && next[0].OpType == "Add" && next[0].Inputs.Select(Resolve).Any(_constants.ContainsKey) ? next[0] : null;
                    list.Add((n, () =>
                    {
                        var w = Const(n, 1, "weight").ToFloat32(_source);
                        if (w.dim() != 2) throw Error($"{n} has a {w.dim()}-D weight.");
                        using (w)
                        {
                            Tensor? b = null;
                            if (add is not null)
                            {
                                _used.Add(add);
                                var bt = add.Inputs.Select(Resolve).First(_constants.ContainsKey);
                                using var bias = _constants[bt].ToFloat32(_source);
                                b = bias.flatten();
                            }
                            // Named, disposed views rather than temporaries: see PyTorchCheckpoint.Extract.
                            using var transposed = w.t();
                            return (transposed.contiguous(), b);
                        }
                    }));
                    break;
                }
                case "Conv":
                {
                    var w = Const(n, 1, "weight");
                    if (w.Dims.Length != 4 || w.Dims[2] != 1 || w.Dims[3] != 1)
                        throw Error($"{n} comes after the backbone but is not a 1×1 classifier convolution.");
                    list.Add((n, () =>
                    {
                        using var weight = Const(n, 1, "weight").ToFloat32(_source);
                        using var matrix = weight.reshape(weight.shape[0], weight.shape[1]);
                        return (matrix.clone(), OptionalConst(n, 2)?.ToFloat32(_source));
                    }));
                    break;
                }
                case "BatchNormalization":
                    throw Error($"{n} comes after the classifier's first layer; not a supported classifier.");
            }
        }
        return list;
    }

    (Tensor, Tensor?) ReadGemm(OnnxNode n)
    {
        if ((n.Int("transA") ?? 0) != 0) throw Error($"{n} transposes its input (transA=1); not a Linear layer.");
        using var b = Const(n, 1, "weight").ToFloat32(_source);
        if (b.dim() != 2) throw Error($"{n} has a {b.dim()}-D weight.");
        // Named, disposed intermediates and scalars rather than temporaries: TorchSharp keeps neither alive across the
        // native call (see PyTorchCheckpoint.Extract and TorchScalars).
        Tensor weight;
        if ((n.Int("transB") ?? 0) == 1) weight = b.clone();
        else
        {
            using var transposed = b.t();
            weight = transposed.contiguous();
        }
        Tensor? bias = null;
        if (OptionalConst(n, 2) is { } biasConst)
        {
            using var raw = biasConst.ToFloat32(_source);
            bias = raw.flatten();
        }
        float alpha = n.Float("alpha") ?? 1f, beta = n.Float("beta") ?? 1f;
        if (alpha != 1f)
        {
            using var a = alpha.ToScalar();
            weight.mul_(a);
        }
        if (bias is not null && beta != 1f)
        {
            using var s = beta.ToScalar();
            bias.mul_(s);
        }
        return (weight, bias);
    }

    void EmitLinear((OnnxNode Node, Func<(Tensor Weight, Tensor? Bias)> Read) layer, string key)
    {
        _used.Add(layer.Node);
        var (w, b) = layer.Read();
        Emit(key + ".weight", w);
        Emit(key + ".bias", b ?? zeros(w.shape[0]));
    }

    /// <summary>Param nodes in topological order, with a trailing 1×1 convolution on pooled features turned into a classifier.</summary>
    (List<OnnxNode> Backbone, List<OnnxNode> Head) SplitHead(IReadOnlyList<OnnxNode> paramNodes)
    {
        int firstHead = paramNodes.Count;
        for (int i = 0; i < paramNodes.Count; i++)
        {
            var n = paramNodes[i];
            if (n.OpType is "Gemm" or "MatMul" || (n.OpType == "Conv" && IsOnPooledFeatures(n)))
            {
                firstHead = i;
                break;
            }
        }
        return (paramNodes.Take(firstHead).ToList(), paramNodes.Skip(firstHead).ToList());
    }

    /// <summary>
    /// A 1×1 convolution used as the classifier (Caffe2 / model-zoo style): the last convolution of the graph, not
    /// followed by a BatchNorm, on features that went through (global) average pooling.
    /// </summary>
    bool IsOnPooledFeatures(OnnxNode n)
    {
        if (Const(n, 1, "weight").Dims is not [_, _, 1, 1] || Next(n).Any(c => c.OpType == "BatchNormalization")) return false;
        if (_order.SkipWhile(o => !ReferenceEquals(o, n)).Skip(1).Any(o => o.OpType is "Conv" or "BatchNormalization")) return false;
        var input = ActivationInputs(n).FirstOrDefault();
        for (int guard = 0; input is not null && guard < 16 && _producer.TryGetValue(input, out var p); guard++)
        {
            if (p.OpType is "GlobalAveragePool" or "ReduceMean" or "AveragePool") return true;
            if (p.OpType is not ("Flatten" or "Reshape" or "Relu" or "Squeeze" or "Unsqueeze")) return false;
            input = ActivationInputs(p).FirstOrDefault();
        }
        return false;
    }

    // ---- VGG ---------------------------------------------------------------------------------------------------

    ArchitectureConfig MapVgg()
    {
        var (backbone, head) = SplitHead(ParamNodes().ToList());
        var cfg = new List<int>();
        int index = 0;
        bool? batchNorm = null;
        long lastChannels = 0;
        foreach (var n in _order)
        {
            if (n.OpType == "Conv" && backbone.Contains(n))
            {
                var u = Conv(n);
                bool hasBn = u.Bn is not null;
                if (batchNorm is bool known && known != hasBn) throw Error("some convolutions have a BatchNorm and others not; not a VGG.");
                batchNorm = hasBn;
                if (u.Kernel != 3 || u.Stride != 1) throw Error($"{n} is a {u.Kernel}×{u.Kernel} convolution with stride {u.Stride}; VGG's are 3×3 with stride 1.");
                EmitConv(u, $"features.{index}", hasBn ? $"features.{index + 1}" : null, biasAllowed: true);
                index += hasBn ? 3 : 2; // conv, [bn], relu
                cfg.Add((int)u.OutChannels);
                lastChannels = u.OutChannels;
            }
            else if (n.OpType == "BatchNormalization" && !_used.Contains(n) && backbone.Contains(n))
                throw Error($"{n} does not follow a convolution; not a VGG.");
            else if (n.OpType == "MaxPool" && cfg.Count > 0 && !head.Any(h => _order.IndexOf(h) < _order.IndexOf(n)))
            {
                cfg.Add(VggConfig.MaxPool);
                index++;
            }
        }
        if (cfg.Count == 0) throw Error("the graph has no convolution.");
        var linears = LinearLayers(head);
        int width = 4096, pool = 7;
        if (linears.Count == 3)
        {
            EmitLinear(linears[0], "classifier.0");
            EmitLinear(linears[1], "classifier.3");
            EmitLinear(linears[2], "classifier.6");
            width = (int)_out["classifier.0.weight"].shape[0];
            long inFeatures = _out["classifier.0.weight"].shape[1];
            pool = (int)Math.Round(Math.Sqrt(inFeatures / (double)lastChannels));
            if ((long)pool * pool * lastChannels != inFeatures) throw Error($"the first classifier layer takes {inFeatures} inputs, not a square map of {lastChannels} channels.");
        }
        else if (linears.Count == 1)
        {
            EmitLinear(linears[0], "classifier");
            _notes.Add("the graph has a single Linear classifier, not torchvision's three-layer VGG classifier; it is listed under 'classifier'");
        }
        else if (linears.Count != 0) throw Error($"the graph has {linears.Count} classifier layers; a VGG has 3.");
        return new VggConfig(cfg.ToArray(), batchNorm ?? false, width, pool);
    }

    // ---- ResNet ------------------------------------------------------------------------------------------------

    ArchitectureConfig MapResNet(List<OnnxNode> adds)
    {
        var (_, head) = SplitHead(ParamNodes().ToList());
        var units = new List<(List<OnnxNode> Main, List<OnnxNode> Shortcut, string Fork)>();
        foreach (var add in adds)
        {
            var inputs = ActivationInputs(add);
            if (inputs.Count != 2) throw Error($"{add} adds {inputs.Count} feature maps; a residual block adds 2.");
            var a = BranchBack(inputs[0]);
            var b = BranchBack(inputs[1]);
            var aTensors = a.Tensors.ToHashSet(StringComparer.Ordinal);
            string? fork = b.Tensors.FirstOrDefault(aTensors.Contains);
            if (fork is null) throw Error($"the two branches of {add} do not start from the same feature map; not a residual block.");
            var mainA = a.Nodes.Take(a.Tensors.IndexOf(fork)).Where(IsParam).Reverse().ToList();
            var mainB = b.Nodes.Take(b.Tensors.IndexOf(fork)).Where(IsParam).Reverse().ToList();
            int convA = mainA.Count(n => n.OpType == "Conv"), convB = mainB.Count(n => n.OpType == "Conv");
            if (convA == convB) throw Error($"both branches of {add} have {convA} convolutions; cannot tell the residual path from the shortcut.");
            units.Add(convA > convB ? (mainA, mainB, fork) : (mainB, mainA, fork));
        }

        // Stem: the parameterised nodes before the first block's input.
        var stem = BranchBack(units[0].Fork).Nodes.Where(IsParam).Reverse().ToList();
        var stemConvs = stem.Where(n => n.OpType == "Conv").ToList();
        if (stemConvs.Count != 1) throw Error($"the ResNet stem has {stemConvs.Count} convolutions; torchvision's has one.");
        var stemConv = Conv(stemConvs[0]);
        var convs = units.SelectMany(u => u.Main.Concat(u.Shortcut)).Where(n => n.OpType == "Conv").Append(stemConv.Conv).ToList();
        // A bias on convolutions that keep their BatchNorm means the network has conv biases (Keras / Caffe ResNets).
        bool convBias = convs.Any(c => Conv(c).Bn is not null && OptionalConst(c, 2) is not null);
        EmitConv(stemConv, "conv1", "bn1", convBias);

        int blockConvs = units[0].Main.Count(n => n.OpType == "Conv");
        if (blockConvs is not (2 or 3) || units.Any(u => u.Main.Count(n => n.OpType == "Conv") != blockConvs))
            throw Error("the residual blocks do not all have 2 (basic) or 3 (bottleneck) convolutions.");
        var block = blockConvs == 3 ? ResNetBlock.Bottleneck : ResNetBlock.Basic;

        var stages = new List<int>();
        long previousOut = stemConv.OutChannels;
        bool? strideOnFirst = null;
        for (int i = 0; i < units.Count; i++)
        {
            var main = units[i].Main.Where(n => n.OpType == "Conv").Select(Conv).ToList();
            long stride = main.Aggregate(1L, (s, c) => s * c.Stride);
            long outChannels = main[^1].OutChannels;
            if (i == 0 || stride > 1 || outChannels != previousOut) stages.Add(0);
            stages[^1]++;
            if (stride > 1 && block == ResNetBlock.Bottleneck)
            {
                bool first = main[0].Stride > 1;
                if (strideOnFirst is bool known && known != first) throw Error("the bottlenecks place their stride inconsistently.");
                strideOnFirst = first;
            }
            int stage = stages.Count, index = stages[^1] - 1;
            string prefix = $"layer{stage}.{index}";
            for (int c = 0; c < main.Count; c++) EmitConv(main[c], $"{prefix}.conv{c + 1}", $"{prefix}.bn{c + 1}", convBias);
            var shortcut = units[i].Shortcut.Where(n => n.OpType == "Conv").Select(Conv).ToList();
            if (shortcut.Count > 1) throw Error("a shortcut has more than one convolution.");
            if (shortcut.Count == 1) EmitConv(shortcut[0], $"{prefix}.downsample.0", $"{prefix}.downsample.1", convBias);
            previousOut = outChannels;
        }
        if (stages.Count != 4) throw Error($"the graph has {stages.Count} ResNet stages; torchvision's ResNets have 4.");
        var linears = LinearLayers(head);
        if (linears.Count == 1) EmitLinear(linears[0], "fc");
        else if (linears.Count > 1) throw Error($"the graph has {linears.Count} classifier layers after the last block; a ResNet has one.");
        if (strideOnFirst == true) _notes.Add("the bottlenecks have their stride on the first 1×1 convolution (ResNet v1, as Keras / Caffe / MXNet): the model is built that way");
        double? eps = _epsilons.Count > 0 ? _epsilons[0] : null;
        return new ResNetConfig(block, stages.ToArray(), (int)stemConv.OutChannels, strideOnFirst ?? false, convBias,
            eps is double e && Math.Abs(e - ArchitectureConfig.TorchBatchNormEpsilon) > 1e-12 ? e : null);
    }

    static bool IsParam(OnnxNode n) => n.OpType is "Conv" or "BatchNormalization";

    /// <summary>
    /// Walks back from a tensor through single-input nodes: the nodes passed (nearest first) and the tensors met
    /// (the start included). Stops at a node with several feature-map inputs (a previous addition) or the graph input.
    /// </summary>
    (List<OnnxNode> Nodes, List<string> Tensors) BranchBack(string tensor)
    {
        var nodes = new List<OnnxNode>();
        var tensors = new List<string> { tensor };
        for (int guard = 0; guard < 100_000 && _producer.TryGetValue(tensor, out var p); guard++)
        {
            var inputs = ActivationInputs(p);
            if (inputs.Count != 1) break;
            nodes.Add(p);
            tensor = inputs[0];
            tensors.Add(tensor);
        }
        return (nodes, tensors);
    }

    // ---- DenseNet ----------------------------------------------------------------------------------------------

    ArchitectureConfig MapDenseNet()
    {
        var (all, head) = SplitHead(ParamNodes().ToList());
        // BatchNorms that directly follow a convolution (norm0, norm2) travel with it; the rest open a layer.
        var attached = all.Where(n => n.OpType == "Conv").Select(n => Conv(n).Bn).OfType<OnnxNode>().ToHashSet(ReferenceEqualityComparer.Instance);
        var backbone = all.Where(n => !attached.Contains(n)).ToList();
        int i = 0;
        OnnxNode Take(string op, string what)
        {
            if (i >= backbone.Count || backbone[i].OpType != op) throw Error($"expected a {op} ({what}) but found {(i < backbone.Count ? backbone[i].ToString() : "the end")}; not a torchvision-style DenseNet.");
            return backbone[i++];
        }

        var stem = Conv(Take("Conv", "stem convolution"));
        EmitConv(stem, "features.conv0", "features.norm0", false);

        var blocks = new List<int> { 0 };
        long growth = 0, bottleneck = 0;
        while (i < backbone.Count)
        {
            var norm = Take("BatchNormalization", "a BatchNorm opening a layer");
            if (i >= backbone.Count)
            {
                EmitBatchNorm(norm, "features.norm5");
                break;
            }
            var conv1 = Conv(Take("Conv", "a 1×1 convolution"));
            // A dense layer continues with a 3×3 convolution; a transition's 1×1 convolution is followed by the next BatchNorm.
            if (i >= backbone.Count || backbone[i].OpType != "Conv")
            {
                if (conv1.Bn is not null) throw Error($"a transition's convolution {conv1.Conv} is followed by a BatchNorm; not a DenseNet.");
                int t = blocks.Count;
                EmitBatchNorm(norm, $"features.transition{t}.norm");
                EmitConv(conv1, $"features.transition{t}.conv", null, false);
                blocks.Add(0);
                continue;
            }
            var conv2 = Conv(Take("Conv", "a 3×3 convolution"));
            if (conv2.Bn is not null) throw Error($"{conv2.Conv} is followed by a BatchNorm; a dense layer's second convolution feeds the concatenation.");
            int layer = ++blocks[^1];
            string prefix = $"features.denseblock{blocks.Count}.denselayer{layer}";
            EmitBatchNorm(norm, prefix + ".norm1");
            EmitConv(conv1, prefix + ".conv1", prefix + ".norm2", false);
            EmitConv(conv2, prefix + ".conv2", null, false);
            if (growth == 0) { growth = conv2.OutChannels; bottleneck = conv1.OutChannels; }
        }
        if (!_out.ContainsKey("features.norm5.weight")) throw Error("the DenseNet has no final BatchNorm before its classifier.");
        if (blocks.Any(b => b == 0) || growth == 0 || bottleneck % growth != 0) throw Error("the dense blocks could not be delimited.");
        var linears = LinearLayers(head);
        if (linears.Count == 1) EmitLinear(linears[0], "classifier");
        else if (linears.Count > 1) throw Error($"the graph has {linears.Count} classifier layers; a DenseNet has one.");
        double? eps = _epsilons.Count > 0 ? _epsilons[0] : null;
        return new DenseNetConfig((int)growth, blocks.ToArray(), (int)stem.OutChannels, (int)(bottleneck / growth), 0,
            eps is double e && Math.Abs(e - ArchitectureConfig.TorchBatchNormEpsilon) > 1e-12 ? e : null);
    }
}
