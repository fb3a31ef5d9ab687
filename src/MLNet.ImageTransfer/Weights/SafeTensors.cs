using System.Buffers.Binary;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Weights;

/// <summary>Element types of the safetensors format that this reader and writer support.</summary>
public enum SafeTensorDType
{
    F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL,
}

/// <summary>One tensor's entry in a safetensors header: name, element type, shape, and byte range in the data section.</summary>
public sealed record SafeTensorInfo(string Name, SafeTensorDType DType, long[] Shape, long Begin, long End)
{
    public long ByteLength => End - Begin;
    public long ElementCount => Shape.Aggregate(1L, (a, d) => a * d);
    public override string ToString() => $"{Name}: {DType} [{string.Join(", ", Shape)}] bytes {Begin}..{End}";
}

/// <summary>
/// The parsed header of a safetensors file: tensor entries in data order, the <c>__metadata__</c> strings, and sizes.
/// </summary>
public sealed record SafeTensorsHeader(
    IReadOnlyList<SafeTensorInfo> Entries,
    IReadOnlyDictionary<string, string> Metadata,
    long HeaderLength,
    long DataLength)
{
    /// <summary>Offset of the data section from the start of the file (8 + header length).</summary>
    public long DataStart => 8 + HeaderLength;
}

/// <summary>How <see cref="SafeTensors.Read(string, SafeTensorsReadOptions?)"/> turns entries into tensors.</summary>
public sealed record SafeTensorsReadOptions
{
    /// <summary>Convert F16 and BF16 tensors to F32 while reading (the models compute in float32). Default false: keep the file's type.</summary>
    public bool ConvertHalfToFloat32 { get; init; }

    /// <summary>Read only the tensors whose name this returns true for; the others are skipped without being loaded.</summary>
    public Func<string, bool>? Filter { get; init; }

    internal static readonly SafeTensorsReadOptions Default = new();
}

/// <summary>
/// Tensors read from a safetensors file: <see cref="Tensors"/> in file (data offset) order, CPU, and the file's
/// <c>__metadata__</c>. Disposing it disposes the tensors.
/// </summary>
public sealed class SafeTensorsFile : IDisposable
{
    internal SafeTensorsFile(string source, SafeTensorsHeader header, OrderedDictionary<string, Tensor> tensors)
    {
        Source = source;
        Header = header;
        Tensors = tensors;
    }

    /// <summary>The path (or the name given for a stream) the tensors were read from.</summary>
    public string Source { get; }
    public SafeTensorsHeader Header { get; }
    public IReadOnlyDictionary<string, string> Metadata => Header.Metadata;
    /// <summary>Name → tensor, ordered as the data lies in the file.</summary>
    public OrderedDictionary<string, Tensor> Tensors { get; }
    public Tensor this[string name] => Tensors[name];

    /// <summary>Takes the tensors out of this object: they are no longer disposed with it.</summary>
    public OrderedDictionary<string, Tensor> Detach()
    {
        var copy = new OrderedDictionary<string, Tensor>(Tensors);
        Tensors.Clear();
        return copy;
    }

    public void Dispose()
    {
        foreach (var t in Tensors.Values) t.Dispose();
        Tensors.Clear();
    }
}

/// <summary>
/// Reader and writer of the <see href="https://github.com/huggingface/safetensors">safetensors</see> format: an 8-byte
/// little-endian header length N, N bytes of UTF-8 JSON <c>{"name": {"dtype", "shape", "data_offsets": [begin, end]},
/// "__metadata__": {string: string}}</c>, then the raw little-endian tensor data, contiguous and without holes.
/// Reading streams tensor by tensor straight into each tensor's memory (files of any size, no whole-file buffer) and
/// validates everything before trusting it: header size (at most 100 MB and within the file), JSON shape, dtypes,
/// offsets (in range, non-overlapping, no holes, length = elements × element size).
/// </summary>
public static class SafeTensors
{
    /// <summary>Largest header accepted, as in the reference implementation.</summary>
    public const long MaxHeaderLength = 100_000_000;

    const string MetadataKey = "__metadata__";

    // ------------------------------------------------------------------------------------------------------------
    // dtype mapping
    // ------------------------------------------------------------------------------------------------------------

    /// <summary>Bytes per element of a safetensors dtype.</summary>
    public static int ElementSize(SafeTensorDType dtype) => dtype switch
    {
        SafeTensorDType.F64 or SafeTensorDType.I64 => 8,
        SafeTensorDType.F32 or SafeTensorDType.I32 => 4,
        SafeTensorDType.F16 or SafeTensorDType.BF16 or SafeTensorDType.I16 => 2,
        SafeTensorDType.I8 or SafeTensorDType.U8 or SafeTensorDType.BOOL => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    /// <summary>The TorchSharp element type of a safetensors dtype.</summary>
    public static ScalarType ToScalarType(SafeTensorDType dtype) => dtype switch
    {
        SafeTensorDType.F64 => ScalarType.Float64,
        SafeTensorDType.F32 => ScalarType.Float32,
        SafeTensorDType.F16 => ScalarType.Float16,
        SafeTensorDType.BF16 => ScalarType.BFloat16,
        SafeTensorDType.I64 => ScalarType.Int64,
        SafeTensorDType.I32 => ScalarType.Int32,
        SafeTensorDType.I16 => ScalarType.Int16,
        SafeTensorDType.I8 => ScalarType.Int8,
        SafeTensorDType.U8 => ScalarType.Byte,
        SafeTensorDType.BOOL => ScalarType.Bool,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    /// <summary>The safetensors dtype of a TorchSharp element type; throws for types the format has no name for here.</summary>
    public static SafeTensorDType FromScalarType(ScalarType type) => type switch
    {
        ScalarType.Float64 => SafeTensorDType.F64,
        ScalarType.Float32 => SafeTensorDType.F32,
        ScalarType.Float16 => SafeTensorDType.F16,
        ScalarType.BFloat16 => SafeTensorDType.BF16,
        ScalarType.Int64 => SafeTensorDType.I64,
        ScalarType.Int32 => SafeTensorDType.I32,
        ScalarType.Int16 => SafeTensorDType.I16,
        ScalarType.Int8 => SafeTensorDType.I8,
        ScalarType.Byte => SafeTensorDType.U8,
        ScalarType.Bool => SafeTensorDType.BOOL,
        _ => throw new NotSupportedException($"Tensors of type {type} cannot be written to safetensors by this writer."),
    };

    static bool TryParseDType(string s, out SafeTensorDType dtype)
    {
        // exact, case-sensitive names as the format defines them
        switch (s)
        {
            case "F64": dtype = SafeTensorDType.F64; return true;
            case "F32": dtype = SafeTensorDType.F32; return true;
            case "F16": dtype = SafeTensorDType.F16; return true;
            case "BF16": dtype = SafeTensorDType.BF16; return true;
            case "I64": dtype = SafeTensorDType.I64; return true;
            case "I32": dtype = SafeTensorDType.I32; return true;
            case "I16": dtype = SafeTensorDType.I16; return true;
            case "I8": dtype = SafeTensorDType.I8; return true;
            case "U8": dtype = SafeTensorDType.U8; return true;
            case "BOOL": dtype = SafeTensorDType.BOOL; return true;
            default: dtype = default; return false;
        }
    }

    // ------------------------------------------------------------------------------------------------------------
    // reading
    // ------------------------------------------------------------------------------------------------------------

    /// <summary>Reads only the header of a file (for inspection): entries, metadata, sizes. Loads no tensor data.</summary>
    public static SafeTensorsHeader ReadHeader(string path)
    {
        using var stream = OpenRead(path);
        return ReadHeader(stream, path);
    }

    /// <summary>Reads the header from the start of <paramref name="stream"/>, leaving it positioned at the data section.</summary>
    public static SafeTensorsHeader ReadHeader(Stream stream, string? sourceName = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        string source = sourceName ?? DescribeStream(stream);
        long? remaining = TryRemaining(stream);

        Span<byte> lengthBytes = stackalloc byte[8];
        int got = ReadAtMost(stream, lengthBytes);
        if (got < 8)
            throw new WeightFileException(source, got == 0 ? "the file is empty." : $"the file is {got} bytes long, too short for the 8-byte header length.");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength > (ulong)MaxHeaderLength)
            throw new WeightFileException(source, $"the header length field says {headerLength:N0} bytes, more than the {MaxHeaderLength:N0} allowed; this is not a safetensors file or it is corrupt.");
        if (remaining is long total && (long)headerLength > total - 8)
            throw new WeightFileException(source, $"the header length field says {headerLength:N0} bytes but the file has only {total - 8:N0} bytes after it; the file is truncated or not a safetensors file.");
        if (headerLength < 2)
            throw new WeightFileException(source, $"the header length field says {headerLength} bytes, too short for a JSON header.");

        var headerBytes = new byte[(int)headerLength];
        got = ReadAtMost(stream, headerBytes);
        if (got < headerBytes.Length)
            throw new WeightFileException(source, $"the file ends after {8 + got:N0} bytes, inside the {headerLength:N0}-byte header; it is truncated.");

        long? dataLength = remaining is long t ? t - 8 - (long)headerLength : null;
        return ParseHeader(headerBytes, dataLength, source);
    }

    /// <summary>Reads all tensors of a safetensors file (CPU tensors, file order).</summary>
    public static SafeTensorsFile Read(string path, SafeTensorsReadOptions? options = null)
    {
        using var stream = OpenRead(path);
        return Read(stream, path, options);
    }

    /// <summary>
    /// Reads all tensors from <paramref name="stream"/>, which need not be seekable (a zip entry works). Reads exactly
    /// the bytes the header describes. <paramref name="sourceName"/> names the stream in errors.
    /// </summary>
    public static SafeTensorsFile Read(Stream stream, string? sourceName = null, SafeTensorsReadOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("Reading safetensors requires a little-endian machine.");
        options ??= SafeTensorsReadOptions.Default;
        string source = sourceName ?? DescribeStream(stream);
        var header = ReadHeader(stream, source);

        var tensors = new OrderedDictionary<string, Tensor>();
        try
        {
            long position = 0; // within the data section
            foreach (var e in header.Entries)
            {
                if (options.Filter is { } filter && !filter(e.Name))
                    continue;
                Skip(stream, e.Begin - position, source, e.Name);
                position = e.Begin;
                var tensor = ReadTensor(stream, e, source);
                position = e.End;
                if (options.ConvertHalfToFloat32 && e.DType is SafeTensorDType.F16 or SafeTensorDType.BF16)
                    tensor = tensor.to_type(ScalarType.Float32, disposeAfter: true);
                tensors.Add(e.Name, tensor);
            }
            // a non-seekable stream's length was not known while validating: make sure the data was all there
            if (header.DataLength > position)
                Skip(stream, header.DataLength - position, source, null);
        }
        catch
        {
            foreach (var t in tensors.Values) t.Dispose();
            throw;
        }
        return new SafeTensorsFile(source, header, tensors);
    }

    static Tensor ReadTensor(Stream stream, SafeTensorInfo e, string source)
    {
        var tensor = empty(e.Shape, ToScalarType(e.DType), CPU);
        try
        {
            long length = e.ByteLength;
            if (length == 0) return tensor;
            if (length <= int.MaxValue)
            {
                // straight into the tensor's memory: no intermediate managed buffer
                Span<byte> target = tensor.bytes;
                int done = 0;
                while (done < target.Length)
                {
                    int n = stream.Read(target[done..]);
                    if (n == 0) throw Truncated(source, e, done);
                    done += n;
                }
            }
            else
            {
                try { tensor.ReadBytesFromStream(stream, 1 << 20); }
                catch (EndOfStreamException) { throw Truncated(source, e, -1); }
            }
            return tensor;
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    static WeightFileException Truncated(string source, SafeTensorInfo e, long got) =>
        new(source, $"the file ends inside tensor '{e.Name}' ({(got >= 0 ? $"{got:N0} of " : "")}{e.ByteLength:N0} bytes present); it is truncated.");

    static void Skip(Stream stream, long count, string source, string? nextTensor)
    {
        if (count <= 0) return;
        if (stream.CanSeek)
        {
            long target = stream.Position + count;
            if (target > stream.Length)
                throw new WeightFileException(source, "the file ends before the data the header describes; it is truncated.");
            stream.Seek(count, SeekOrigin.Current);
            return;
        }
        var buffer = new byte[(int)Math.Min(count, 1 << 20)];
        while (count > 0)
        {
            int n = stream.Read(buffer, 0, (int)Math.Min(count, buffer.Length));
            if (n == 0)
                throw new WeightFileException(source, nextTensor is null
                    ? "the file ends before the data the header describes; it is truncated."
                    : $"the file ends before tensor '{nextTensor}'; it is truncated.");
            count -= n;
        }
    }

    static SafeTensorsHeader ParseHeader(byte[] headerBytes, long? dataLength, string source)
    {
        // JsonDocument accepts invalid UTF-8 inside strings and fails only when a name is read: check it all first.
        if (!System.Text.Unicode.Utf8.IsValid(headerBytes))
            throw new WeightFileException(source, "the header is not valid UTF-8; this is not a safetensors file or it is corrupt.");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(headerBytes, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException ex)
        {
            throw new WeightFileException(source, $"the header is not valid JSON ({ex.Message}); this is not a safetensors file or it is corrupt.", ex);
        }
        catch (ArgumentException ex) // invalid UTF-8 surfaces here on some paths
        {
            throw new WeightFileException(source, $"the header is not valid UTF-8 JSON ({ex.Message}).", ex);
        }

        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new WeightFileException(source, $"the header is a JSON {root.ValueKind}, not an object.");

            var declared = new List<SafeTensorInfo>();
            var metadata = new OrderedDictionary<string, string>(); // keeps the file's order
            var seen = new HashSet<string>(StringComparer.Ordinal);
            bool sawMetadata = false;
            foreach (var prop in root.EnumerateObject())
            {
                if (prop.Name == MetadataKey)
                {
                    if (sawMetadata) throw new WeightFileException(source, "the header has two __metadata__ entries.");
                    sawMetadata = true;
                    if (prop.Value.ValueKind == JsonValueKind.Null) continue;
                    if (prop.Value.ValueKind != JsonValueKind.Object)
                        throw new WeightFileException(source, "__metadata__ must be an object of strings.");
                    foreach (var m in prop.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String)
                            throw new WeightFileException(source, $"__metadata__ value '{m.Name}' is a JSON {m.Value.ValueKind}; the format allows only strings.");
                        if (!metadata.TryAdd(m.Name, m.Value.GetString()!))
                            throw new WeightFileException(source, $"__metadata__ has the key '{m.Name}' twice.");
                    }
                    continue;
                }
                if (!seen.Add(prop.Name))
                    throw new WeightFileException(source, $"tensor '{prop.Name}' appears twice in the header.");
                declared.Add(ParseEntry(prop.Name, prop.Value, source));
            }

            // offsets: sorted by begin, they must tile the data section exactly (no overlap, no hole)
            var entries = declared.OrderBy(e => e.Begin).ThenBy(e => e.End).ToList(); // stable: empty tensors keep header order
            long expected = 0;
            SafeTensorInfo? previous = null;
            foreach (var e in entries)
            {
                if (e.Begin < expected)
                    throw new WeightFileException(source, $"tensor '{e.Name}' (bytes {e.Begin}..{e.End}) overlaps tensor '{previous!.Name}' (bytes {previous.Begin}..{previous.End}).");
                if (e.Begin > expected)
                    throw new WeightFileException(source, $"there is a hole of {e.Begin - expected} bytes before tensor '{e.Name}' (data offsets must be contiguous).");
                expected = e.End;
                previous = e;
            }
            if (dataLength is long dl)
            {
                if (expected > dl)
                {
                    var cut = entries.First(e => e.End > dl);
                    throw new WeightFileException(source, $"tensor '{cut.Name}' needs data bytes {cut.Begin:N0}..{cut.End:N0} but the file has only {dl:N0} data bytes; it is truncated.");
                }
                if (expected < dl)
                    throw new WeightFileException(source, $"the file has {dl - expected:N0} bytes after the last tensor's data; it is corrupt or not a safetensors file.");
            }
            return new SafeTensorsHeader(entries, metadata, headerBytes.Length, dataLength ?? expected);
        }
    }

    static SafeTensorInfo ParseEntry(string name, JsonElement value, string source)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new WeightFileException(source, $"the header entry of tensor '{name}' is a JSON {value.ValueKind}, not an object.");
        if (!value.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw new WeightFileException(source, $"tensor '{name}' has no dtype string.");
        string dtypeName = dtypeElement.GetString()!;
        if (!TryParseDType(dtypeName, out var dtype))
            throw new WeightFileException(source, $"tensor '{name}' has dtype '{dtypeName}', which is not supported (supported: {string.Join(", ", Enum.GetNames<SafeTensorDType>())}).");

        if (!value.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
            throw new WeightFileException(source, $"tensor '{name}' has no shape array.");
        var shape = new long[shapeElement.GetArrayLength()];
        long elements = 1;
        int i = 0;
        foreach (var d in shapeElement.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim) || dim < 0)
                throw new WeightFileException(source, $"tensor '{name}' has an invalid dimension {d.GetRawText()} in its shape.");
            shape[i++] = dim;
            try { elements = checked(elements * dim); }
            catch (OverflowException) { throw new WeightFileException(source, $"tensor '{name}' has an impossibly large shape [{string.Join(", ", shape.Take(i))}...]."); }
        }

        if (!value.TryGetProperty("data_offsets", out var offs) || offs.ValueKind != JsonValueKind.Array || offs.GetArrayLength() != 2)
            throw new WeightFileException(source, $"tensor '{name}' has no data_offsets pair.");
        long begin = ReadOffset(offs[0]), end = ReadOffset(offs[1]);
        if (begin < 0 || end < 0)
            throw new WeightFileException(source, $"tensor '{name}' has invalid data_offsets {offs.GetRawText()}.");
        if (end < begin)
            throw new WeightFileException(source, $"tensor '{name}' has data_offsets {offs.GetRawText()} that end before they begin.");

        long expectedBytes;
        try { expectedBytes = checked(elements * ElementSize(dtype)); }
        catch (OverflowException) { throw new WeightFileException(source, $"tensor '{name}' has an impossibly large shape."); }
        if (end - begin != expectedBytes)
            throw new WeightFileException(source, $"tensor '{name}' is {dtypeName} [{string.Join(", ", shape)}] = {expectedBytes:N0} bytes, but its data_offsets {offs.GetRawText()} span {end - begin:N0} bytes.");

        return new SafeTensorInfo(name, dtype, shape, begin, end);

        static long ReadOffset(JsonElement e) => e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out long v) ? v : -1;
    }

    // ------------------------------------------------------------------------------------------------------------
    // writing
    // ------------------------------------------------------------------------------------------------------------

    /// <summary>
    /// Writes <paramref name="tensors"/> (in the given order) and optional metadata to <paramref name="path"/>
    /// atomically: a temporary file in the same folder is written, flushed, then renamed over the target.
    /// </summary>
    public static void Write(string path, IEnumerable<(string Name, Tensor Tensor)> tensors, IDictionary<string, string>? metadata = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        var temp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                Write(stream, tensors, metadata);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>Writes the safetensors bytes to a stream (which need not be seekable). Tensors may be on any device.</summary>
    public static void Write(Stream stream, IEnumerable<(string Name, Tensor Tensor)> tensors, IDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(tensors);
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("Writing safetensors requires a little-endian machine.");

        var list = tensors.ToList();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, tensor) in list)
        {
            if (string.IsNullOrEmpty(name)) throw new ArgumentException("A tensor name is empty.", nameof(tensors));
            if (name == MetadataKey) throw new ArgumentException($"'{MetadataKey}' is reserved and cannot name a tensor.", nameof(tensors));
            if (!names.Add(name)) throw new ArgumentException($"Tensor name '{name}' appears twice.", nameof(tensors));
            ArgumentNullException.ThrowIfNull(tensor, $"tensor '{name}'");
        }

        byte[] header = BuildHeader(list, metadata);
        Span<byte> lengthBytes = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(lengthBytes, (ulong)header.Length);
        stream.Write(lengthBytes);
        stream.Write(header);

        foreach (var (_, tensor) in list)
        {
            using var scope = NewDisposeScope();
            var t = tensor.detach();
            if (t.device_type != DeviceType.CPU) t = t.cpu();
            if (!t.is_contiguous()) t = t.contiguous();
            long bytes = t.NumberOfElements * t.ElementSize;
            if (bytes == 0) continue;
            if (bytes <= int.MaxValue) stream.Write(t.bytes);
            else t.WriteBytesToStream(stream, 1 << 20);
        }
    }

    static byte[] BuildHeader(List<(string Name, Tensor Tensor)> list, IDictionary<string, string>? metadata)
    {
        var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject(MetadataKey);
                foreach (var (k, v) in metadata)
                    json.WriteString(k, v ?? throw new ArgumentException($"Metadata value '{k}' is null.", nameof(metadata)));
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var (name, tensor) in list)
            {
                var dtype = FromScalarType(tensor.dtype);
                long bytes = checked(tensor.NumberOfElements * ElementSize(dtype));
                json.WriteStartObject(name);
                json.WriteString("dtype", dtype.ToString());
                json.WriteStartArray("shape");
                foreach (var d in tensor.shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + bytes);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += bytes;
            }
            json.WriteEndObject();
        }
        // pad with spaces so that the data section starts 8-byte aligned, as the reference writer does
        int padding = (int)((8 - buffer.Length % 8) % 8);
        for (int i = 0; i < padding; i++) buffer.WriteByte((byte)' ');
        if (buffer.Length > MaxHeaderLength)
            throw new ArgumentException($"The header would be {buffer.Length:N0} bytes, more than the format's {MaxHeaderLength:N0}.");
        return buffer.ToArray();
    }

    // ------------------------------------------------------------------------------------------------------------
    // helpers
    // ------------------------------------------------------------------------------------------------------------

    static FileStream OpenRead(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
            throw new FileNotFoundException($"Weight file '{path}' does not exist.", path);
        // unbuffered: tensor data goes straight from the OS into the tensors; the header is read in two calls
        return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0, FileOptions.SequentialScan);
    }

    static long? TryRemaining(Stream stream)
    {
        if (!stream.CanSeek) return null;
        try { return stream.Length - stream.Position; }
        catch (NotSupportedException) { return null; }
    }

    static int ReadAtMost(Stream stream, Span<byte> buffer)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            int n = stream.Read(buffer[done..]);
            if (n == 0) break;
            done += n;
        }
        return done;
    }

    static string DescribeStream(Stream stream) => stream is FileStream fs ? fs.Name : $"<{stream.GetType().Name}>";
}
