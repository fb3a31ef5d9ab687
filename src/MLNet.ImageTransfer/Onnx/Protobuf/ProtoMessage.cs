using System.Runtime.InteropServices;
using Google.Protobuf;

namespace MLNet.ImageTransfer.Onnx.Protobuf;

/// <summary>
/// A protobuf message under construction: an ordered list of fields, encoded with Google.Protobuf's
/// <see cref="CodedOutputStream"/>. There is no generated code: ONNX's messages are written field by field with the
/// numbers of <c>onnx.proto</c> (see <see cref="OnnxProto"/>).
/// </summary>
/// <remarks>
/// Nested messages are written length-delimited, so every message knows its encoded size before it is written
/// (<see cref="Size"/>, computed once and cached: a message must not be changed after it has been measured). Large
/// payloads (initializers' raw data) are referenced, not copied, until they are written to the output stream.
/// Repeated scalar fields are written unpacked except where <c>onnx.proto</c> declares them packed
/// (parsers accept both encodings).
/// </remarks>
internal sealed class ProtoMessage
{
    readonly List<Field> _fields = new();
    int _size = -1;

    abstract class Field
    {
        protected Field(int number, WireFormat.WireType wireType) => Tag = WireFormat.MakeTag(number, wireType);
        public uint Tag { get; }
        public int TagSize => CodedOutputStream.ComputeRawVarint32Size(Tag);
        public abstract int Size { get; }
        public abstract void Write(CodedOutputStream output);
    }

    sealed class VarintField(int number, long value) : Field(number, WireFormat.WireType.Varint)
    {
        public override int Size => TagSize + CodedOutputStream.ComputeInt64Size(value);
        public override void Write(CodedOutputStream output) { output.WriteTag(Tag); output.WriteInt64(value); }
    }

    sealed class Fixed32Field(int number, float value) : Field(number, WireFormat.WireType.Fixed32)
    {
        public override int Size => TagSize + 4;
        public override void Write(CodedOutputStream output) { output.WriteTag(Tag); output.WriteFloat(value); }
    }

    sealed class BytesField(int number, ByteString value) : Field(number, WireFormat.WireType.LengthDelimited)
    {
        public override int Size => TagSize + CodedOutputStream.ComputeBytesSize(value);
        public override void Write(CodedOutputStream output) { output.WriteTag(Tag); output.WriteBytes(value); }
    }

    sealed class PackedFloatsField(int number, float[] values) : Field(number, WireFormat.WireType.LengthDelimited)
    {
        int PayloadSize => checked(values.Length * 4);
        public override int Size => TagSize + CodedOutputStream.ComputeLengthSize(PayloadSize) + PayloadSize;
        public override void Write(CodedOutputStream output)
        {
            output.WriteTag(Tag);
            output.WriteLength(PayloadSize);
            foreach (var v in values) output.WriteFloat(v);
        }
    }

    sealed class MessageField(int number, ProtoMessage value) : Field(number, WireFormat.WireType.LengthDelimited)
    {
        public override int Size => TagSize + CodedOutputStream.ComputeLengthSize(value.Size) + value.Size;
        public override void Write(CodedOutputStream output)
        {
            output.WriteTag(Tag);
            output.WriteLength(value.Size);
            value.WriteFields(output);
        }
    }

    /// <summary>An int32/int64/enum/bool field (varint).</summary>
    public ProtoMessage Varint(int number, long value) => Add(new VarintField(number, value));

    /// <summary>A <c>float</c> field (fixed32).</summary>
    public ProtoMessage Float(int number, float value) => Add(new Fixed32Field(number, value));

    /// <summary>A <c>string</c> field (UTF-8). Empty strings are still written: callers skip optional fields themselves.</summary>
    public ProtoMessage String(int number, string value) => Add(new BytesField(number, ByteString.CopyFromUtf8(value ?? "")));

    /// <summary>A <c>bytes</c> field; <paramref name="value"/> is referenced, not copied, and must not change afterwards.</summary>
    public ProtoMessage Bytes(int number, ReadOnlyMemory<byte> value) => Add(new BytesField(number, UnsafeByteOperations.UnsafeWrap(value)));

    /// <summary>A <c>repeated float [packed = true]</c> field.</summary>
    public ProtoMessage PackedFloats(int number, float[] values) => Add(new PackedFloatsField(number, values));

    /// <summary>An embedded message field.</summary>
    public ProtoMessage Message(int number, ProtoMessage value)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (ReferenceEquals(value, this)) throw new ArgumentException("A message cannot contain itself.");
        return Add(new MessageField(number, value));
    }

    ProtoMessage Add(Field field)
    {
        if (_size >= 0) throw new InvalidOperationException("A protobuf message cannot change after it has been measured or written.");
        _fields.Add(field);
        return this;
    }

    /// <summary>Encoded size in bytes (without a length prefix). Protobuf messages are limited to 2 GiB.</summary>
    public int Size
    {
        get
        {
            if (_size < 0)
            {
                long size = 0;
                foreach (var f in _fields) size += f.Size;
                if (size > int.MaxValue)
                    throw new NotSupportedException($"The ONNX model would be {size / (1 << 20)} MiB; protobuf files are limited to 2 GiB.");
                _size = (int)size;
            }
            return _size;
        }
    }

    void WriteFields(CodedOutputStream output)
    {
        foreach (var f in _fields) f.Write(output);
    }

    /// <summary>Writes the message (as a top-level message, without a length prefix) to <paramref name="stream"/>.</summary>
    public void WriteTo(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        _ = Size; // measure (and check the 2 GiB limit) before writing anything
        using var output = new CodedOutputStream(stream, leaveOpen: true);
        WriteFields(output);
        output.Flush();
    }

    /// <summary>The encoded message.</summary>
    public byte[] ToByteArray()
    {
        var bytes = new byte[Size];
        var output = new CodedOutputStream(bytes);
        WriteFields(output);
        output.CheckNoSpaceLeft();
        return bytes;
    }

    /// <summary>Little-endian bytes of <paramref name="values"/> (protobuf and ONNX raw data are little-endian).</summary>
    public static byte[] LittleEndianBytes<T>(ReadOnlySpan<T> values) where T : unmanaged
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("ONNX export needs a little-endian machine.");
        return MemoryMarshal.AsBytes(values).ToArray();
    }
}
