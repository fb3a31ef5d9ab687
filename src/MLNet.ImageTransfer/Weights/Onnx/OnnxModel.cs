using System.Buffers.Binary;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Weights.Onnx;

/// <summary>An ONNX node: operator, inputs, outputs, attributes (only the kinds a CNN's structure needs).</summary>
internal sealed record OnnxNode(string OpType, string Name, string Domain, IReadOnlyList<string> Inputs, IReadOnlyList<string> Outputs, IReadOnlyDictionary<string, OnnxAttribute> Attributes)
{
    public long[]? Ints(string name) => Attributes.TryGetValue(name, out var a) ? a.Ints : null;
    public long? Int(string name) => Attributes.TryGetValue(name, out var a) ? a.Int : null;
    public float? Float(string name) => Attributes.TryGetValue(name, out var a) ? a.Float : null;
    public override string ToString() => $"{OpType} '{Name}'";
}

internal sealed record OnnxAttribute(string Name, long? Int, float? Float, long[]? Ints, string? String, OnnxTensor? Tensor);

/// <summary>A tensor of the graph (an initializer or a Constant's value), not yet decoded: where its data lies.</summary>
internal sealed class OnnxTensor
{
    public required string Name { get; init; }
    public required long[] Dims { get; init; }
    public required int DataType { get; init; }
    /// <summary>raw_data, or the packed typed field (float_data, int64_data…), as a range of the file's bytes.</summary>
    public ReadOnlyMemory<byte> Raw { get; init; }
    public bool RawIsTyped { get; init; }
    public bool External { get; init; }
    public long ElementCount => Dims.Aggregate(1L, (a, d) => a * d);

    public const int Float = 1, UInt8 = 2, Int8 = 3, Int32 = 6, Int64 = 7, Double = 11, Float16 = 10, BFloat16 = 16;

    public string DTypeName => DataType switch
    {
        Float => "F32", Float16 => "F16", BFloat16 => "BF16", Double => "F64", Int64 => "I64", Int32 => "I32", Int8 => "I8", UInt8 => "U8",
        _ => $"onnx:{DataType}",
    };

    public bool IsFloatingPoint => DataType is Float or Float16 or BFloat16 or Double;

    /// <summary>The values as a float32 tensor of shape <see cref="Dims"/>.</summary>
    public Tensor ToFloat32(string source)
    {
        if (External) throw new WeightFileException(source, $"initializer '{Name}' keeps its data in an external file; only self-contained ONNX files are supported (re-export without external data, below 2 GB).");
        long n = ElementCount;
        var span = Raw.Span;
        switch (DataType)
        {
            case Float:
            {
                // raw_data and packed float_data have the same layout: little-endian 4-byte floats.
                if (span.Length != n * 4) throw Bad(source, n * 4, span.Length);
                var t = empty(Dims, ScalarType.Float32, CPU);
                if (n > 0) span.CopyTo(t.bytes);
                return t;
            }
            case Float16 or BFloat16:
            {
                // raw_data holds 2-byte values; the typed form (int32_data) holds one value per varint.
                ushort[] bits;
                if (RawIsTyped) bits = Varints(span).Select(v => (ushort)v).ToArray();
                else
                {
                    bits = new ushort[span.Length / 2];
                    for (int i = 0; i < bits.Length; i++) bits[i] = BinaryPrimitives.ReadUInt16LittleEndian(span[(2 * i)..]);
                }
                if (bits.LongLength != n) throw Bad(source, n, bits.LongLength);
                var values = bits.Select(b => DataType == Float16 ? (float)BitConverter.UInt16BitsToHalf(b) : BitConverter.Int32BitsToSingle(b << 16)).ToArray();
                return tensor(values, Dims, ScalarType.Float32);
            }
            case Double:
            {
                if (span.Length != n * 8) throw Bad(source, n * 8, span.Length);
                var values = new float[n];
                for (int i = 0; i < n; i++) values[i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(span[(8 * i)..]);
                return tensor(values, Dims, ScalarType.Float32);
            }
            default:
                throw new WeightFileException(source, $"initializer '{Name}' has element type {DTypeName}; weights must be floating point.");
        }
    }

    /// <summary>Integer values (shapes for Reshape, axes…).</summary>
    public long[] ToInt64s(string source)
    {
        var span = Raw.Span;
        if (DataType is not (Int64 or Int32)) throw new WeightFileException(source, $"tensor '{Name}' is not an integer tensor.");
        if (RawIsTyped) return Varints(span).Select(v => (long)v).ToArray();
        int size = DataType == Int64 ? 8 : 4;
        var values = new long[span.Length / size];
        for (int i = 0; i < values.Length; i++)
            values[i] = size == 8 ? BinaryPrimitives.ReadInt64LittleEndian(span[(8 * i)..]) : BinaryPrimitives.ReadInt32LittleEndian(span[(4 * i)..]);
        return values;
    }

    static List<ulong> Varints(ReadOnlySpan<byte> span)
    {
        var list = new List<ulong>();
        var r = new ProtoReader(span.ToArray(), "tensor");
        while (!r.AtEnd) list.Add(r.Varint());
        return list;
    }

    WeightFileException Bad(string source, long expected, long got)
        => new(source, $"initializer '{Name}' [{string.Join(", ", Dims)}] needs {expected:N0} bytes/values of data but has {got:N0}.");
}

/// <summary>The parts of an ONNX ModelProto the weight reader needs.</summary>
internal sealed class OnnxModel
{
    public long IrVersion { get; init; }
    public string Producer { get; init; } = "";
    public string ProducerVersion { get; init; } = "";
    public IReadOnlyList<(string Domain, long Version)> Opsets { get; init; } = [];
    public required IReadOnlyList<OnnxNode> Nodes { get; init; }
    public required IReadOnlyDictionary<string, OnnxTensor> Initializers { get; init; }
    /// <summary>Graph inputs that are not initializers (the image).</summary>
    public required IReadOnlyList<string> Inputs { get; init; }
    public required IReadOnlyList<string> Outputs { get; init; }
    public IReadOnlyList<OnnxTensor> InitializerList { get; init; } = [];
}

/// <summary>
/// A minimal protobuf wire-format reader (varints, fixed32/64, length-delimited fields) over bytes in memory, and the
/// decoding of the ONNX messages a weight reader needs: ModelProto, GraphProto, NodeProto, AttributeProto,
/// TensorProto, ValueInfoProto (names only). Field numbers are those of onnx/onnx.proto. Unknown fields are skipped.
/// Every length is checked against the bytes left; nested messages are sliced, never copied.
/// </summary>
internal struct ProtoReader(ReadOnlyMemory<byte> data, string source)
{
    readonly ReadOnlyMemory<byte> _data = data;
    int _pos = 0;

    public readonly bool AtEnd => _pos >= _data.Length;

    WeightFileException Corrupt(string what) => new(source, $"the protobuf data is corrupt ({what} at byte {_pos}); this is not a valid ONNX file.");

    public ulong Varint()
    {
        ulong result = 0;
        var span = _data.Span;
        for (int shift = 0; shift < 64; shift += 7)
        {
            if (_pos >= span.Length) throw Corrupt("a varint runs past the end");
            byte b = span[_pos++];
            result |= (ulong)(b & 0x7f) << shift;
            if (b < 0x80) return result;
        }
        throw Corrupt("a varint is longer than 10 bytes");
    }

    public (int Field, int WireType) Tag()
    {
        ulong tag = Varint();
        if (tag >> 3 == 0 || tag >> 3 > int.MaxValue) throw Corrupt("field number 0");
        return ((int)(tag >> 3), (int)(tag & 7));
    }

    public ReadOnlyMemory<byte> Bytes()
    {
        ulong length = Varint();
        if (length > (ulong)(_data.Length - _pos)) throw Corrupt($"a field of {length:N0} bytes overruns the message");
        var slice = _data.Slice(_pos, (int)length);
        _pos += (int)length;
        return slice;
    }

    public string String() => Encoding.UTF8.GetString(Bytes().Span);

    public uint Fixed32()
    {
        if (_data.Length - _pos < 4) throw Corrupt("a fixed32 runs past the end");
        uint v = BinaryPrimitives.ReadUInt32LittleEndian(_data.Span[_pos..]);
        _pos += 4;
        return v;
    }

    public void Skip(int wireType)
    {
        switch (wireType)
        {
            case 0: Varint(); break;
            case 1: if (_data.Length - _pos < 8) throw Corrupt("a fixed64 runs past the end"); _pos += 8; break;
            case 2: Bytes(); break;
            case 5: Fixed32(); break;
            default: throw Corrupt($"wire type {wireType}");
        }
    }

    /// <summary>A repeated int64 field, packed (wire type 2) or not (wire type 0).</summary>
    public void RepeatedInt64(int wireType, List<long> into)
    {
        if (wireType == 0) { into.Add((long)Varint()); return; }
        if (wireType != 2) { Skip(wireType); return; }
        var r = new ProtoReader(Bytes(), source);
        while (!r.AtEnd) into.Add((long)r.Varint());
    }
}

internal static class OnnxReader
{
    /// <summary>ONNX files are single protobuf messages, limited to 2 GB by protobuf itself.</summary>
    public const long MaxFileBytes = int.MaxValue;

    /// <summary>
    /// Cheap content test: a ModelProto starts with field 1 (ir_version, a small varint) in every exporter's output,
    /// followed by another ModelProto field.
    /// </summary>
    public static bool LooksLikeOnnx(ReadOnlySpan<byte> head)
    {
        if (head.Length < 4 || head[0] != 0x08 || head[1] is 0 or > 20) return false;
        byte next = head[2];
        return next is 0x12 or 0x1a or 0x22 or 0x28 or 0x32 or 0x3a or 0x42 or 0x72;
    }

    public static OnnxModel Read(string path)
    {
        var info = new FileInfo(path);
        if (info.Length > MaxFileBytes)
            throw new WeightFileException(path, $"the file is {info.Length:N0} bytes; an ONNX protobuf cannot exceed 2 GB (larger models keep external data, which is not supported).");
        return Parse(File.ReadAllBytes(path), path);
    }

    public static OnnxModel Parse(ReadOnlyMemory<byte> bytes, string source)
    {
        var r = new ProtoReader(bytes, source);
        long ir = 0;
        string producer = "", producerVersion = "";
        var opsets = new List<(string, long)>();
        ReadOnlyMemory<byte>? graph = null;
        while (!r.AtEnd)
        {
            var (field, wt) = r.Tag();
            switch (field)
            {
                case 1 when wt == 0: ir = (long)r.Varint(); break;
                case 2 when wt == 2: producer = r.String(); break;
                case 3 when wt == 2: producerVersion = r.String(); break;
                case 7 when wt == 2: graph = r.Bytes(); break;
                case 8 when wt == 2: opsets.Add(ParseOpset(r.Bytes(), source)); break;
                default: r.Skip(wt); break;
            }
        }
        if (graph is null) throw new WeightFileException(source, "the ONNX model has no graph.");
        return ParseGraph(graph.Value, source, ir, producer, producerVersion, opsets);
    }

    static (string, long) ParseOpset(ReadOnlyMemory<byte> bytes, string source)
    {
        var r = new ProtoReader(bytes, source);
        string domain = ""; long version = 0;
        while (!r.AtEnd)
        {
            var (field, wt) = r.Tag();
            if (field == 1 && wt == 2) domain = r.String();
            else if (field == 2 && wt == 0) version = (long)r.Varint();
            else r.Skip(wt);
        }
        return (domain, version);
    }

    static OnnxModel ParseGraph(ReadOnlyMemory<byte> bytes, string source, long ir, string producer, string producerVersion, List<(string, long)> opsets)
    {
        var r = new ProtoReader(bytes, source);
        var nodes = new List<OnnxNode>();
        var initializers = new Dictionary<string, OnnxTensor>(StringComparer.Ordinal);
        var initializerList = new List<OnnxTensor>();
        var inputs = new List<string>();
        var outputs = new List<string>();
        while (!r.AtEnd)
        {
            var (field, wt) = r.Tag();
            switch (field)
            {
                case 1 when wt == 2: nodes.Add(ParseNode(r.Bytes(), source)); break;
                case 5 when wt == 2:
                {
                    var t = ParseTensor(r.Bytes(), source);
                    if (!initializers.TryAdd(t.Name, t)) throw new WeightFileException(source, $"the graph has two initializers named '{t.Name}'.");
                    initializerList.Add(t);
                    break;
                }
                case 11 when wt == 2: inputs.Add(ValueInfoName(r.Bytes(), source)); break;
                case 12 when wt == 2: outputs.Add(ValueInfoName(r.Bytes(), source)); break;
                default: r.Skip(wt); break;
            }
        }
        return new OnnxModel
        {
            IrVersion = ir, Producer = producer, ProducerVersion = producerVersion, Opsets = opsets,
            Nodes = nodes, Initializers = initializers, InitializerList = initializerList,
            // IR < 4 lists initializers among the inputs too (model-zoo files): keep only the real inputs.
            Inputs = inputs.Where(i => !initializers.ContainsKey(i)).ToList(), Outputs = outputs,
        };
    }

    static string ValueInfoName(ReadOnlyMemory<byte> bytes, string source)
    {
        var r = new ProtoReader(bytes, source);
        while (!r.AtEnd)
        {
            var (field, wt) = r.Tag();
            if (field == 1 && wt == 2) return r.String();
            r.Skip(wt);
        }
        return "";
    }

    static OnnxNode ParseNode(ReadOnlyMemory<byte> bytes, string source)
    {
        var r = new ProtoReader(bytes, source);
        var inputs = new List<string>();
        var outputs = new List<string>();
        var attributes = new Dictionary<string, OnnxAttribute>(StringComparer.Ordinal);
        string name = "", op = "", domain = "";
        while (!r.AtEnd)
        {
            var (field, wt) = r.Tag();
            switch (field)
            {
                case 1 when wt == 2: inputs.Add(r.String()); break;
                case 2 when wt == 2: outputs.Add(r.String()); break;
                case 3 when wt == 2: name = r.String(); break;
                case 4 when wt == 2: op = r.String(); break;
                case 5 when wt == 2: { var a = ParseAttribute(r.Bytes(), source); attributes[a.Name] = a; break; }
                case 7 when wt == 2: domain = r.String(); break;
                default: r.Skip(wt); break;
            }
        }
        return new OnnxNode(op, name, domain, inputs, outputs, attributes);
    }

    static OnnxAttribute ParseAttribute(ReadOnlyMemory<byte> bytes, string source)
    {
        var r = new ProtoReader(bytes, source);
        string name = "";
        long? i = null; float? f = null; string? s = null; OnnxTensor? t = null;
        var ints = new List<long>();
        bool hasInts = false;
        while (!r.AtEnd)
        {
            var (field, wt) = r.Tag();
            switch (field)
            {
                case 1 when wt == 2: name = r.String(); break;
                case 2 when wt == 5: f = BitConverter.UInt32BitsToSingle(r.Fixed32()); break;
                case 3 when wt == 0: i = (long)r.Varint(); break;
                case 4 when wt == 2: s = r.String(); break;
                case 5 when wt == 2: t = ParseTensor(r.Bytes(), source); break;
                case 8: hasInts = true; r.RepeatedInt64(wt, ints); break;
                default: r.Skip(wt); break;
            }
        }
        return new OnnxAttribute(name, i, f, hasInts ? ints.ToArray() : null, s, t);
    }

    static OnnxTensor ParseTensor(ReadOnlyMemory<byte> bytes, string source)
    {
        var r = new ProtoReader(bytes, source);
        var dims = new List<long>();
        int dataType = 0;
        string name = "";
        ReadOnlyMemory<byte>? raw = null, typed = null;
        var typedParts = new List<ReadOnlyMemory<byte>>();
        bool external = false;
        var floats = new List<byte>();
        while (!r.AtEnd)
        {
            var (field, wt) = r.Tag();
            switch (field)
            {
                case 1: r.RepeatedInt64(wt, dims); break;
                case 2 when wt == 0: dataType = (int)r.Varint(); break;
                case 4 when wt == 2: typedParts.Add(r.Bytes()); break;               // float_data (packed)
                case 4 when wt == 5: floats.AddRange(BitConverter.GetBytes(r.Fixed32())); break; // float_data (unpacked)
                case 5 when wt == 2: typedParts.Add(r.Bytes()); break;               // int32_data (packed; also f16/bf16 bits)
                case 7 when wt == 2: typedParts.Add(r.Bytes()); break;               // int64_data (packed)
                case 10 when wt == 2: typedParts.Add(r.Bytes()); break;              // double_data (packed fixed64)
                case 8 when wt == 2: name = r.String(); break;
                case 9 when wt == 2: raw = r.Bytes(); break;
                case 14 when wt == 0: external = r.Varint() == 1; break;             // data_location EXTERNAL
                default: r.Skip(wt); break;
            }
        }
        if (dims.Any(d => d < 0)) throw new WeightFileException(source, $"tensor '{name}' has a negative dimension.");
        // Every consumer multiplies the dims (element counts, byte lengths, tensor allocation): they must fit a long.
        if (dims.Count > 32) throw new WeightFileException(source, $"tensor '{name}' has {dims.Count} dimensions.");
        long elements = 1;
        foreach (var d in dims)
            if (d != 0 && elements > long.MaxValue / 16 / d) throw new WeightFileException(source, $"tensor '{name}' has an impossibly large shape [{string.Join(", ", dims)}].");
            else elements *= d;
        if (floats.Count > 0) typedParts.Add(floats.ToArray());
        if (raw is null && typedParts.Count > 0)
            typed = typedParts.Count == 1 ? typedParts[0] : typedParts.SelectMany(p => p.ToArray()).ToArray();
        return new OnnxTensor
        {
            Name = name, Dims = dims.ToArray(), DataType = dataType, External = external,
            Raw = raw ?? typed ?? ReadOnlyMemory<byte>.Empty,
            // packed float_data / double_data have the raw layout; int32_data/int64_data are varints
            RawIsTyped = raw is null && typed is not null && dataType is not (OnnxTensor.Float or OnnxTensor.Double),
        };
    }
}
