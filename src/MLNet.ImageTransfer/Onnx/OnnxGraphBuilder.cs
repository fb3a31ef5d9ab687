using MLNet.ImageTransfer.Onnx.Protobuf;
using static MLNet.ImageTransfer.Onnx.Protobuf.OnnxProto;

namespace MLNet.ImageTransfer.Onnx;

/// <summary>
/// Collects an ONNX graph: nodes in topological order (the order they are added), initializers, inputs and outputs.
/// Tracks the per-sample shape of every value it creates (batch dimension excluded), so writers can compute pooling
/// geometry and check their own arithmetic, and gives every value and initializer a unique name.
/// </summary>
internal sealed class OnnxGraphBuilder
{
    readonly List<ProtoMessage> _nodes = new();
    readonly List<ProtoMessage> _initializers = new();
    readonly List<ProtoMessage> _inputs = new();
    readonly List<ProtoMessage> _outputs = new();
    readonly Dictionary<string, long[]> _shapes = new(StringComparer.Ordinal);
    readonly Dictionary<string, int> _opCounts = new(StringComparer.Ordinal);
    readonly Dim _batch;

    public OnnxGraphBuilder(Dim batch) => _batch = batch;

    /// <summary>Number of nodes per operator type (for tests and diagnostics).</summary>
    public IReadOnlyDictionary<string, int> OperatorCounts => _opCounts;

    /// <summary>Per-sample shape of a value (without the batch dimension).</summary>
    public long[] Shape(string value) => _shapes.TryGetValue(value, out var s) ? s : throw new KeyNotFoundException($"No value '{value}' in the graph.");

    /// <summary><paramref name="name"/>, or <paramref name="name"/> with a numeric suffix when it is taken.</summary>
    public string Unique(string name)
    {
        if (!_shapes.ContainsKey(name)) return name;
        for (int i = 1; ; i++)
        {
            var candidate = $"{name}_{i}";
            if (!_shapes.ContainsKey(candidate)) return candidate;
        }
    }

    /// <summary>A float32 graph input [batch, ..sampleShape].</summary>
    public string Input(string name, long[] sampleShape, string? docString = null)
    {
        if (_shapes.ContainsKey(name)) throw new InvalidOperationException($"Value '{name}' already exists.");
        _shapes[name] = sampleShape;
        _inputs.Add(ValueInfo(name, DataType.Float, [_batch, .. sampleShape.Select(d => (Dim)d)], docString));
        return name;
    }

    /// <summary>Declares an existing float32 value as a graph output [batch, ..shape].</summary>
    public void Output(string value, string? docString = null)
        => _outputs.Add(ValueInfo(value, DataType.Float, [_batch, .. Shape(value).Select(d => (Dim)d)], docString));

    /// <summary>A float32 initializer (constant) with <paramref name="dims"/>; returns its unique name.</summary>
    public string Initializer(string name, float[] data, params long[] dims)
    {
        CheckCount(name, data.Length, dims);
        name = Unique(name);
        _shapes[name] = dims; // constants have no batch dimension; their shape is the full shape
        _initializers.Add(Tensor(name, DataType.Float, dims, ProtoMessage.LittleEndianBytes<float>(data)));
        return name;
    }

    /// <summary>An int64 initializer (indices, shapes).</summary>
    public string Initializer(string name, long[] data, params long[] dims)
    {
        CheckCount(name, data.Length, dims);
        name = Unique(name);
        _shapes[name] = dims;
        _initializers.Add(Tensor(name, DataType.Int64, dims, ProtoMessage.LittleEndianBytes<long>(data)));
        return name;
    }

    static void CheckCount(string name, int count, long[] dims)
    {
        long expected = dims.Aggregate(1L, (a, d) => a * d);
        if (expected != count) throw new ArgumentException($"Initializer '{name}' has {count} values for shape [{string.Join(", ", dims)}].");
    }

    /// <summary>
    /// Adds a node with one output, named <paramref name="outputName"/> (made unique), whose per-sample shape is
    /// <paramref name="outputShape"/>. Returns the output's name.
    /// </summary>
    public string Node(string opType, string outputName, long[] outputShape, IReadOnlyList<string> inputs, params Attr[] attributes)
    {
        foreach (var input in inputs)
            if (input.Length > 0 && !_shapes.ContainsKey(input)) throw new InvalidOperationException($"{opType} '{outputName}' reads '{input}', which is not in the graph yet.");
        if (outputShape.Any(d => d < 1)) throw new InvalidOperationException($"{opType} '{outputName}' would produce an empty shape [{string.Join(", ", outputShape)}]: the image is too small for this network.");
        var output = Unique(outputName);
        _shapes[output] = outputShape;
        _nodes.Add(OnnxProto.Node(opType, inputs, [output], name: output, attributes: attributes));
        _opCounts[opType] = _opCounts.GetValueOrDefault(opType) + 1;
        return output;
    }

    /// <summary>The GraphProto.</summary>
    public ProtoMessage Build(string name, string? docString = null)
        => Graph(name, _nodes, _initializers, _inputs, _outputs, docString: docString);
}
