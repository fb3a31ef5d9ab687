namespace MLNet.ImageTransfer.Onnx.Protobuf;

/// <summary>
/// The ONNX messages this exporter writes, field by field, with the field numbers of <c>onnx/onnx.proto</c>
/// (identical in <c>onnx.proto3</c>): ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto,
/// ValueInfoProto/TypeProto/TensorShapeProto, OperatorSetIdProto and StringStringEntryProto.
/// </summary>
internal static class OnnxProto
{
    /// <summary>TensorProto.DataType values.</summary>
    public enum DataType { Float = 1, UInt8 = 2, Int8 = 3, Int32 = 6, Int64 = 7, Double = 11 }

    /// <summary>AttributeProto.AttributeType values.</summary>
    enum AttributeType { Float = 1, Int = 2, String = 3, Tensor = 4, Floats = 6, Ints = 7 }

    // ModelProto
    const int ModelIrVersion = 1, ModelProducerName = 2, ModelProducerVersion = 3, ModelDomain = 4, ModelVersion = 5,
        ModelDocString = 6, ModelGraph = 7, ModelOpsetImport = 8, ModelMetadataProps = 14;
    // OperatorSetIdProto
    const int OpsetDomain = 1, OpsetVersion = 2;
    // StringStringEntryProto
    const int EntryKey = 1, EntryValue = 2;
    // GraphProto
    const int GraphNode = 1, GraphName = 2, GraphInitializer = 5, GraphDocString = 10, GraphInput = 11, GraphOutput = 12, GraphValueInfo = 13;
    // NodeProto
    const int NodeInput = 1, NodeOutput = 2, NodeName = 3, NodeOpType = 4, NodeAttribute = 5, NodeDocString = 6, NodeDomain = 7;
    // AttributeProto
    const int AttrName = 1, AttrF = 2, AttrI = 3, AttrS = 4, AttrT = 5, AttrFloats = 7, AttrInts = 8, AttrType = 20;
    // TensorProto
    const int TensorDims = 1, TensorDataType = 2, TensorName = 8, TensorRawData = 9, TensorDocString = 12;
    // ValueInfoProto / TypeProto / TypeProto.Tensor / TensorShapeProto / TensorShapeProto.Dimension
    const int ValueInfoName = 1, ValueInfoType = 2, ValueInfoDocString = 3;
    const int TypeTensorType = 1, TypeDenotation = 6;
    const int TensorTypeElemType = 1, TensorTypeShape = 2;
    const int ShapeDim = 1;
    const int DimValue = 1, DimParam = 2, DimDenotation = 3;

    /// <summary>An attribute of a node; build with the static factories.</summary>
    public sealed class Attr
    {
        Attr(ProtoMessage message) => Message = message;
        internal ProtoMessage Message { get; }

        public static Attr Int(string name, long value) => new(Start(name, AttributeType.Int).Varint(AttrI, value));
        public static Attr Float(string name, float value) => new(Start(name, AttributeType.Float).Float(AttrF, value));
        public static Attr String(string name, string value) => new(Start(name, AttributeType.String).String(AttrS, value));
        public static Attr Tensor(string name, ProtoMessage tensor) => new(Start(name, AttributeType.Tensor).Message(AttrT, tensor));

        public static Attr Ints(string name, IEnumerable<long> values)
        {
            var m = Start(name, AttributeType.Ints);
            foreach (var v in values) m.Varint(AttrInts, v);
            return new(m);
        }

        public static Attr Floats(string name, IEnumerable<float> values)
        {
            var m = Start(name, AttributeType.Floats);
            foreach (var v in values) m.Float(AttrFloats, v);
            return new(m);
        }

        static ProtoMessage Start(string name, AttributeType type) => new ProtoMessage().String(AttrName, name).Varint(AttrType, (int)type);
    }

    /// <summary>A dimension of a tensor type: a fixed size or a symbolic name (e.g. <c>"N"</c> for the batch).</summary>
    public readonly record struct Dim(long? Value, string? Param, string? Denotation = null)
    {
        public static implicit operator Dim(long value) => new(value, null);
        public static Dim Symbolic(string name, string? denotation = null) => new(null, name, denotation);
        public override string ToString() => Param ?? Value?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "?";
    }

    /// <summary>A TensorProto with raw little-endian data.</summary>
    public static ProtoMessage Tensor(string name, DataType type, IReadOnlyList<long> dims, ReadOnlyMemory<byte> rawData, string? docString = null)
    {
        var m = new ProtoMessage();
        foreach (var d in dims) m.Varint(TensorDims, d);
        m.Varint(TensorDataType, (int)type).String(TensorName, name).Bytes(TensorRawData, rawData);
        if (!string.IsNullOrEmpty(docString)) m.String(TensorDocString, docString);
        return m;
    }

    /// <summary>A ValueInfoProto of a tensor with element type <paramref name="type"/> and shape <paramref name="dims"/>.</summary>
    public static ProtoMessage ValueInfo(string name, DataType type, IReadOnlyList<Dim> dims, string? docString = null, string? denotation = null)
    {
        var shape = new ProtoMessage();
        foreach (var d in dims)
        {
            var dim = new ProtoMessage();
            if (d.Param is not null) dim.String(DimParam, d.Param);
            else dim.Varint(DimValue, d.Value ?? throw new ArgumentException("A dimension needs a value or a name."));
            if (d.Denotation is not null) dim.String(DimDenotation, d.Denotation);
            shape.Message(ShapeDim, dim);
        }
        var tensorType = new ProtoMessage().Varint(TensorTypeElemType, (int)type).Message(TensorTypeShape, shape);
        var typeProto = new ProtoMessage().Message(TypeTensorType, tensorType);
        if (denotation is not null) typeProto.String(TypeDenotation, denotation);
        var m = new ProtoMessage().String(ValueInfoName, name).Message(ValueInfoType, typeProto);
        if (!string.IsNullOrEmpty(docString)) m.String(ValueInfoDocString, docString);
        return m;
    }

    /// <summary>A NodeProto of the default (ai.onnx) domain.</summary>
    public static ProtoMessage Node(string opType, IEnumerable<string> inputs, IEnumerable<string> outputs, string? name = null,
        IEnumerable<Attr>? attributes = null, string? docString = null)
    {
        var m = new ProtoMessage();
        foreach (var i in inputs) m.String(NodeInput, i);
        foreach (var o in outputs) m.String(NodeOutput, o);
        if (!string.IsNullOrEmpty(name)) m.String(NodeName, name);
        m.String(NodeOpType, opType);
        foreach (var a in attributes ?? []) m.Message(NodeAttribute, a.Message);
        if (!string.IsNullOrEmpty(docString)) m.String(NodeDocString, docString);
        return m;
    }

    /// <summary>A GraphProto.</summary>
    public static ProtoMessage Graph(string name, IEnumerable<ProtoMessage> nodes, IEnumerable<ProtoMessage> initializers,
        IEnumerable<ProtoMessage> inputs, IEnumerable<ProtoMessage> outputs, IEnumerable<ProtoMessage>? valueInfo = null, string? docString = null)
    {
        var m = new ProtoMessage();
        foreach (var n in nodes) m.Message(GraphNode, n);
        m.String(GraphName, name);
        foreach (var t in initializers) m.Message(GraphInitializer, t);
        if (!string.IsNullOrEmpty(docString)) m.String(GraphDocString, docString);
        foreach (var i in inputs) m.Message(GraphInput, i);
        foreach (var o in outputs) m.Message(GraphOutput, o);
        foreach (var v in valueInfo ?? []) m.Message(GraphValueInfo, v);
        return m;
    }

    /// <summary>A ModelProto importing the default opset at <paramref name="opsetVersion"/>.</summary>
    public static ProtoMessage Model(long irVersion, long opsetVersion, ProtoMessage graph, string producerName, string producerVersion,
        string? domain, long modelVersion, string? docString, IEnumerable<KeyValuePair<string, string>> metadata)
    {
        var m = new ProtoMessage().Varint(ModelIrVersion, irVersion)
            .String(ModelProducerName, producerName)
            .String(ModelProducerVersion, producerVersion);
        if (!string.IsNullOrEmpty(domain)) m.String(ModelDomain, domain);
        m.Varint(ModelVersion, modelVersion);
        if (!string.IsNullOrEmpty(docString)) m.String(ModelDocString, docString);
        m.Message(ModelGraph, graph);
        m.Message(ModelOpsetImport, new ProtoMessage().String(OpsetDomain, "").Varint(OpsetVersion, opsetVersion));
        foreach (var (key, value) in metadata)
            m.Message(ModelMetadataProps, new ProtoMessage().String(EntryKey, key).String(EntryValue, value));
        return m;
    }
}
