using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using MLNet.ImageTransfer.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.Weights;

/// <summary>
/// The safetensors reader against files written by Python (fixtures/generate_fixtures.py records dtype, shape, sum and
/// first values of every tensor in checksums.json), the writer by round trip and byte-for-byte against Python's
/// output, and the reader's refusals of damaged files.
/// </summary>
public sealed class SafeTensorsTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("safetensors-tests-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    string Temp(string name) => Path.Combine(_dir, name);

    public static TheoryData<string> FixtureFiles()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.Path_("checksums.json")));
        var data = new TheoryData<string>();
        foreach (var p in doc.RootElement.EnumerateObject()) data.Add(p.Name);
        return data;
    }

    static double Sum(Tensor t) => t.numel() == 0 ? 0 : t.to_type(ScalarType.Float64).sum().item<double>();

    static double[] First(Tensor t, int n)
    {
        using var flat = t.flatten().to_type(ScalarType.Float64);
        return flat[..(int)Math.Min(n, flat.numel())].data<double>().ToArray();
    }

    // ---------------------------------------------------------------------------------------------------------------
    // reading Python's files
    // ---------------------------------------------------------------------------------------------------------------

    [Theory]
    [MemberData(nameof(FixtureFiles))]
    public void Reads_python_written_files_with_the_recorded_names_dtypes_shapes_and_sums(string file)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.Path_("checksums.json")));
        var expected = doc.RootElement.GetProperty(file);
        using var st = SafeTensors.Read(Fixtures.Path_(file));

        var expectedTensors = expected.GetProperty("tensors").EnumerateObject().ToList();
        Assert.Equal(expectedTensors.Select(p => p.Name), st.Tensors.Keys); // file order is preserved
        foreach (var p in expectedTensors)
        {
            var t = st.Tensors[p.Name];
            var e = p.Value;
            Assert.Equal(SafeTensors.ToScalarType(Enum.Parse<SafeTensorDType>(e.GetProperty("dtype").GetString()!)), t.dtype);
            Assert.Equal(e.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()), t.shape);
            Assert.Equal(DeviceType.CPU, t.device_type);
            double sum = e.GetProperty("sum").GetDouble();
            Assert.True(Math.Abs(Sum(t) - sum) <= 1e-9 * Math.Max(1, e.GetProperty("abs_sum").GetDouble()), $"{file}:{p.Name} sum {Sum(t)} vs {sum}");
            var first = e.GetProperty("first").EnumerateArray().Select(v => v.GetDouble()).ToArray();
            Assert.Equal(first, First(t, first.Length)); // exact: float32 → float64 is exact on both sides
        }
        foreach (var m in expected.GetProperty("metadata").EnumerateObject())
            Assert.Equal(m.Value.GetString(), st.Metadata[m.Name]);
        Assert.Equal(expected.GetProperty("metadata").EnumerateObject().Count(), st.Metadata.Count);
    }

    [Fact]
    public void Model_fixture_metadata_carries_the_configuration()
    {
        using var st = SafeTensors.Read(Fixtures.Path_("resnet_tiny_basic.safetensors"));
        Assert.Equal("pt", st.Metadata["format"]);
        using var config = JsonDocument.Parse(st.Metadata["config"]);
        Assert.Equal("basic", config.RootElement.GetProperty("block").GetString());
        Assert.Equal(ScalarType.Int64, st["bn1.num_batches_tracked"].dtype);
        Assert.Empty(st["bn1.num_batches_tracked"].shape);
        Assert.Equal(101L, st["bn1.num_batches_tracked"].item<long>());
        Assert.Equal(new long[] { 8, 3, 7, 7 }, st["conv1.weight"].shape);
    }

    [Fact]
    public void Reads_every_dtype_exactly_and_keeps_half_types_by_default()
    {
        var expected = ReadExpectedDtypes();
        using var st = SafeTensors.Read(Fixtures.Path_("dtypes.safetensors"));
        Assert.Equal(expected.Keys, st.Tensors.Keys);
        foreach (var (name, (dtype, shape, values)) in expected)
        {
            var t = st[name];
            Assert.Equal(SafeTensors.ToScalarType(dtype), t.dtype);
            Assert.Equal(shape, t.shape);
            AssertValues(name, t, values);
        }
        Assert.Equal("dtype coverage for the C# safetensors reader", st.Metadata["purpose"]);
    }

    [Fact]
    public void Converts_f16_and_bf16_to_f32_on_request()
    {
        var expected = ReadExpectedDtypes();
        using var st = SafeTensors.Read(Fixtures.Path_("dtypes.safetensors"), new SafeTensorsReadOptions { ConvertHalfToFloat32 = true });
        foreach (var name in new[] { "f16", "bf16" })
        {
            Assert.Equal(ScalarType.Float32, st[name].dtype);
            var values = expected[name].Values.Select(v => v.GetDouble()).ToArray();
            var got = st[name].data<float>().ToArray().Select(v => (double)v).ToArray();
            Assert.Equal(values, got); // every half value is exact in float32
        }
        Assert.Equal(ScalarType.Float64, st["f64"].dtype); // other types untouched
        Assert.True(BitConverter.DoubleToInt64Bits(st["f16"][5].item<float>()) < 0, "-0.0 keeps its sign");
    }

    static Dictionary<string, (SafeTensorDType DType, long[] Shape, JsonElement[] Values)> ReadExpectedDtypes()
    {
        var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.Path_("dtypes.expected.json")));
        return doc.RootElement.GetProperty("tensors").EnumerateObject().ToDictionary(
            p => p.Name,
            p => (Enum.Parse<SafeTensorDType>(p.Value.GetProperty("dtype").GetString()!),
                  p.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray(),
                  p.Value.GetProperty("values").EnumerateArray().ToArray()));
    }

    static void AssertValues(string name, Tensor t, JsonElement[] values)
    {
        Assert.Equal(values.Length, t.numel());
        if (t.numel() == 0) return; // TorchSharp's data<T>() accessor cannot enumerate an empty tensor
        switch (t.dtype)
        {
            case ScalarType.Bool:
                Assert.Equal(values.Select(v => v.GetBoolean()), t.data<bool>().ToArray());
                break;
            case ScalarType.Int64:
                Assert.Equal(values.Select(v => v.GetInt64()), t.data<long>().ToArray());
                break;
            case ScalarType.Int32:
                Assert.Equal(values.Select(v => v.GetInt32()), t.data<int>().ToArray());
                break;
            case ScalarType.Byte:
                Assert.Equal(values.Select(v => v.GetByte()), t.data<byte>().ToArray());
                break;
            case ScalarType.Float64:
                Assert.Equal(values.Select(v => v.GetDouble()), t.data<double>().ToArray());
                break;
            case ScalarType.Float32:
                Assert.Equal(values.Select(v => (float)v.GetDouble()), t.data<float>().ToArray());
                break;
            case ScalarType.Float16:
            case ScalarType.BFloat16:
                using (var f = t.to_type(ScalarType.Float32))
                    Assert.Equal(values.Select(v => (float)v.GetDouble()), f.data<float>().ToArray());
                break;
            default:
                Assert.Fail($"{name}: unexpected dtype {t.dtype}");
                break;
        }
    }

    [Fact]
    public void Filter_skips_tensors_without_reading_them()
    {
        using var st = SafeTensors.Read(Fixtures.Path_("vgg_tiny.safetensors"), new SafeTensorsReadOptions { Filter = n => !n.StartsWith("classifier.") });
        Assert.DoesNotContain(st.Tensors.Keys, k => k.StartsWith("classifier."));
        Assert.Contains("features.0.weight", st.Tensors.Keys);
        Assert.Contains(st.Header.Entries, e => e.Name == "classifier.6.weight"); // still described by the header
    }

    [Fact]
    public void ReadHeader_describes_entries_without_loading_data()
    {
        var h = SafeTensors.ReadHeader(Fixtures.Path_("densenet_tiny.safetensors"));
        var first = h.Entries[0];
        Assert.Equal("features.conv0.weight", first.Name);
        Assert.Equal(SafeTensorDType.F32, first.DType);
        Assert.Equal(new long[] { 8, 3, 7, 7 }, first.Shape);
        Assert.Equal(0, first.Begin);
        Assert.Equal(8 * 3 * 7 * 7 * 4, first.ByteLength);
        Assert.Equal(new FileInfo(Fixtures.Path_("densenet_tiny.safetensors")).Length, h.DataStart + h.DataLength);
        Assert.Equal(0, h.DataStart % 8);
    }

    [Fact]
    public void Reads_from_a_non_seekable_stream()
    {
        var bytes = File.ReadAllBytes(Fixtures.Path_("dtypes.safetensors"));
        using var stream = new NonSeekableStream(new MemoryStream(bytes));
        using var st = SafeTensors.Read(stream, "dtypes (stream)", new SafeTensorsReadOptions { Filter = n => n != "f64" });
        using var reference = SafeTensors.Read(Fixtures.Path_("dtypes.safetensors"));
        Assert.Equal(reference.Tensors.Keys.Where(k => k != "f64"), st.Tensors.Keys);
        Assert.True(st["arange_3x4x5"].Equals(reference["arange_3x4x5"]));
    }

    // ---------------------------------------------------------------------------------------------------------------
    // writing
    // ---------------------------------------------------------------------------------------------------------------

    [Fact]
    public void Rewriting_a_python_file_reproduces_it_byte_for_byte()
    {
        foreach (var file in new[] { "densenet_tiny.safetensors", "resnet_tiny_basic.io.safetensors", "dtypes.safetensors" })
        {
            using var st = SafeTensors.Read(Fixtures.Path_(file));
            var copy = Temp(file);
            SafeTensors.Write(copy, st.Tensors.Select(kv => (kv.Key, kv.Value)), new Dictionary<string, string>(st.Metadata));
            Assert.Equal(File.ReadAllBytes(Fixtures.Path_(file)), File.ReadAllBytes(copy));
        }
    }

    [Fact]
    public void Round_trips_every_dtype_shape_and_metadata()
    {
        using var scope = NewDisposeScope();
        var transposed = arange(12, ScalarType.Float32).reshape(3, 4).t(); // non-contiguous
        var tensors = new List<(string, Tensor)>
        {
            ("f32", randn(2, 3, 4)), ("f64", randn(5, dtype: ScalarType.Float64)), ("f16", randn(7).to_type(ScalarType.Float16)),
            ("bf16", randn(3, 3).to_type(ScalarType.BFloat16)), ("i64", tensor(new long[] { long.MinValue, -1, 0, long.MaxValue })),
            ("i32", tensor(new[] { int.MinValue, 7 })), ("i16", tensor(new short[] { -3, 300 })), ("i8", tensor(new sbyte[] { -128, 127 })),
            ("u8", tensor(new byte[] { 0, 255 })), ("bool", tensor(new[] { true, false, true })),
            ("scalar", tensor(3.5f)), ("empty", zeros(0, 4)), ("transposed", transposed),
            ("param", nn.Parameter(ones(2, 2))), ("unicode.ключ", ones(1)),
        };
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "quotes \" and \\ and ünïcode <&>" };
        var path = Temp("all.safetensors");
        SafeTensors.Write(path, tensors, metadata);

        Assert.Equal(0, (8 + (long)BinaryPrimitives.ReadUInt64LittleEndian(File.ReadAllBytes(path).AsSpan(0, 8))) % 8);
        using var back = SafeTensors.Read(path);
        Assert.Equal(tensors.Select(t => t.Item1), back.Tensors.Keys);
        foreach (var (name, t) in tensors)
        {
            Assert.Equal(t.dtype, back[name].dtype);
            Assert.Equal(t.shape, back[name].shape);
            Assert.True(back[name].Equals(t), name);
        }
        Assert.Equal(metadata.OrderBy(kv => kv.Key), back.Metadata.OrderBy(kv => kv.Key));
    }

    [Fact]
    public void Writes_to_a_stream_and_reads_back()
    {
        using var a = randn(4, 5);
        var ms = new MemoryStream();
        SafeTensors.Write(ms, [("a", a)]);
        ms.Position = 0;
        using var back = SafeTensors.Read(ms);
        Assert.True(back["a"].Equals(a));
        Assert.Empty(back.Metadata);
    }

    [Fact]
    public void Write_replaces_atomically_and_leaves_no_temporary_files()
    {
        var path = Temp("model.safetensors");
        using var a = ones(3);
        using var b = zeros(5);
        SafeTensors.Write(path, [("a", a)]);
        SafeTensors.Write(path, [("b", b)]);
        using (var back = SafeTensors.Read(path))
            Assert.Equal(new[] { "b" }, back.Tensors.Keys);

        // a failing write (unsupported dtype) leaves the previous file intact and no temporary file behind
        using var complex = randn(2, dtype: ScalarType.ComplexFloat32);
        Assert.Throws<NotSupportedException>(() => SafeTensors.Write(path, [("a", a), ("c", complex)]));
        using (var back = SafeTensors.Read(path))
            Assert.Equal(new[] { "b" }, back.Tensors.Keys);
        Assert.Equal(new[] { path }, Directory.GetFiles(_dir));
    }

    [Fact]
    public void Write_rejects_duplicate_and_reserved_names()
    {
        using var a = ones(1);
        Assert.Throws<ArgumentException>(() => SafeTensors.Write(new MemoryStream(), [("x", a), ("x", a)]));
        Assert.Throws<ArgumentException>(() => SafeTensors.Write(new MemoryStream(), [("__metadata__", a)]));
    }

    // ---------------------------------------------------------------------------------------------------------------
    // damaged files
    // ---------------------------------------------------------------------------------------------------------------

    WeightFileException ReadFails(byte[] bytes, string name, bool alsoFromStream = true)
    {
        var path = Temp(name);
        File.WriteAllBytes(path, bytes);
        var ex = Assert.Throws<WeightFileException>(() => SafeTensors.Read(path));
        Assert.Equal(path, ex.FilePath);
        Assert.Contains(path, ex.Message);
        // the same verdict from a non-seekable stream (where the length is not known in advance)
        if (alsoFromStream)
        {
            using var stream = new NonSeekableStream(new MemoryStream(bytes));
            Assert.Throws<WeightFileException>(() => SafeTensors.Read(stream, name));
        }
        return ex;
    }

    static byte[] File_(string header, int dataBytes, bool pad = true)
    {
        var h = Encoding.UTF8.GetBytes(header);
        if (pad) h = [.. h, .. Enumerable.Repeat((byte)' ', (8 - h.Length % 8) % 8)];
        var bytes = new byte[8 + h.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)h.Length);
        h.CopyTo(bytes, 8);
        return bytes;
    }

    [Fact]
    public void Truncated_file_names_the_file_and_the_tensor()
    {
        var bytes = File.ReadAllBytes(Fixtures.Path_("densenet_tiny.safetensors"));
        var ex = ReadFails(bytes[..^100], "truncated.safetensors");
        Assert.Contains("truncated", ex.Message);
        Assert.Contains("classifier.", ex.Message); // the last tensors are the classifier's

        ex = ReadFails(bytes[..20], "truncated-header.safetensors");
        Assert.Contains("truncated", ex.Message);

        ex = ReadFails(bytes[..5], "tiny.safetensors");
        Assert.Contains("too short", ex.Message);

        ex = ReadFails([], "empty.safetensors");
        Assert.Contains("empty", ex.Message);
    }

    [Fact]
    public void Absurd_header_length_is_refused_before_allocating()
    {
        var bytes = new byte[64];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, 1UL << 40);
        var ex = ReadFails(bytes, "absurd.safetensors");
        Assert.Contains("header length", ex.Message);
        Assert.Contains("100,000,000", ex.Message);

        // a plausible size that is larger than the file
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, 4096);
        ex = ReadFails(bytes, "short.safetensors");
        Assert.Contains("header length", ex.Message);

        // a file that is not safetensors at all (e.g. a PyTorch zip): its first bytes make a huge length
        ex = ReadFails([.. "PK\u0003\u0004"u8, .. new byte[60]], "model.pth");
        Assert.Contains("header length", ex.Message);
    }

    [Theory]
    [InlineData("not json at all", 0, "not valid JSON")]
    [InlineData("[1,2,3]", 0, "not an object")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "span 4 bytes")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "overlaps")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "hole")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12, "after the last tensor")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "truncated")]
    [InlineData("{\"a\":{\"dtype\":\"C64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, "dtype 'C64'")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "invalid dimension")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "end before they begin")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "data_offsets")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "twice")]
    [InlineData("{\"__metadata__\":{\"k\":1}}", 0, "only strings")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, "impossibly large")]
    public void Malformed_headers_are_refused_with_the_reason(string header, int dataBytes, string reason)
    {
        // a stream is read exactly as far as the header says, so only a file can show bytes after the last tensor
        var ex = ReadFails(File_(header, dataBytes), "bad.safetensors", alsoFromStream: reason != "after the last tensor");
        Assert.Contains(reason, ex.Message);
    }

    [Fact]
    public void Missing_file_is_a_FileNotFoundException()
    {
        var ex = Assert.Throws<FileNotFoundException>(() => SafeTensors.Read(Temp("nope.safetensors")));
        Assert.Contains("nope.safetensors", ex.Message);
    }

    sealed class NonSeekableStream(Stream inner) : Stream
    {
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        // return short reads on purpose, as network and decompression streams do
        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, Math.Min(count, 1000));
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        protected override void Dispose(bool disposing) { if (disposing) inner.Dispose(); base.Dispose(disposing); }
    }
}
