using System.Buffers.Binary;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Weights;

namespace MLNet.ImageTransfer.Tests.Weights;

/// <summary>
/// Broken weight files of every format — truncated, with absurd header or length fields, or for another architecture —
/// give a clear error naming the file and the problem, without allocating what the corrupt fields claim.
/// </summary>
public sealed class BrokenWeightFileTests : IDisposable
{
    readonly string _dir = TestData.NewTempDir("broken-weights");

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    static string W(string name) => WeightFormatParityTests.W(name);

    string Write(string name, byte[] bytes)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    /// <summary>Opening fails with the library's error, which names the file; returns the problem.</summary>
    static string OpenFails(string path)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.ThrowsAny<WeightFileException>(() => PretrainedWeightFile.Open(path));
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, 64L << 20);
        Assert.Contains(path, e.Message);
        Assert.Equal(path, e.FilePath);
        return e.Problem;
    }

    public static TheoryData<string> Fixtures => new()
    {
        "vgg_micro_bn.pth", "resnet_micro_basic.legacy.pth", "vgg_micro_bn.safetensors", "keras_vgg_micro.h5", "vgg_micro_bn.onnx",
    };

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void A_truncated_file_of_any_format_is_refused_with_its_name(string fixture)
    {
        var bytes = File.ReadAllBytes(W(fixture));
        foreach (double fraction in new[] { 0.0, 0.001, 0.1, 0.5, 0.9, 0.99 })
        {
            int length = (int)(bytes.Length * fraction);
            if (fraction > 0) length = Math.Max(length, 9);
            var problem = OpenFails(Write($"cut{length}-{fixture}", bytes[..length]));
            if (length == 0) Assert.Equal("the file is empty.", problem);
        }
        // A one-byte cut loses the end of the tensor data (or the zip's central directory).
        OpenFails(Write($"cut-1-{fixture}", bytes[..^1]));
    }

    [Fact]
    public void Truncation_messages_say_what_is_missing()
    {
        var safetensors = File.ReadAllBytes(W("vgg_micro_bn.safetensors"));
        Assert.Contains("truncated", OpenFails(Write("a.safetensors", safetensors[..^100])));
        var legacy = File.ReadAllBytes(W("resnet_micro_basic.legacy.pth"));
        Assert.Contains("truncated", OpenFails(Write("a.pth", legacy[..^100])));
        var zip = File.ReadAllBytes(W("vgg_micro_bn.pth"));
        Assert.Contains("zip structure is invalid", OpenFails(Write("b.pth", zip[..^100])));
        var onnx = File.ReadAllBytes(W("vgg_micro_bn.onnx"));
        Assert.Contains("overruns the message", OpenFails(Write("a.onnx", onnx[..(onnx.Length / 2)])));
    }

    [Theory]
    [InlineData(1UL << 60)]
    [InlineData(ulong.MaxValue)]
    [InlineData(100_000_001UL)]
    [InlineData(50_000UL)] // plausible, but beyond the file
    public void A_safetensors_header_length_beyond_reason_is_refused_before_allocating(ulong headerLength)
    {
        var bytes = File.ReadAllBytes(W("vgg_micro_bn.safetensors"));
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, headerLength);
        var problem = OpenFails(Write("absurd.safetensors", bytes));
        Assert.Contains($"header length field says {headerLength:N0} bytes", problem);
    }

    [Fact]
    public void Safetensors_offsets_and_shapes_that_disagree_with_the_file_are_refused()
    {
        byte[] File_(string header, int dataBytes)
        {
            var h = System.Text.Encoding.UTF8.GetBytes(header);
            return [.. BitConverter.GetBytes((ulong)h.Length), .. h, .. new byte[dataBytes]];
        }
        Assert.Contains("needs data bytes", OpenFails(Write("o.safetensors", File_("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 4))));
        Assert.Contains("data_offsets [0,1152921504606846976]", OpenFails(Write("p.safetensors", File_("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,1152921504606846976]}}""", 8))));
        Assert.Contains("impossibly large shape", OpenFails(Write("q.safetensors", File_("""{"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}""", 8))));
        var invalidUtf8 = File_("""{"wX":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8);
        invalidUtf8[8 + 3] = 0xff; // the X of the tensor name
        Assert.Contains("not valid UTF-8", OpenFails(Write("r.safetensors", invalidUtf8)));
    }

    /// <summary>A protobuf varint.</summary>
    static byte[] Varint(ulong v)
    {
        var list = new List<byte>();
        do { byte b = (byte)(v & 0x7f); v >>= 7; list.Add(v == 0 ? b : (byte)(b | 0x80)); } while (v != 0);
        return [.. list];
    }

    static byte[] Field(int number, byte[] content) => [(byte)(number << 3 | 2), .. Varint((ulong)content.Length), .. content];

    [Fact]
    public void An_onnx_length_field_beyond_the_file_is_refused()
    {
        // ir_version 7, producer "x", then the graph field (7) declaring 2^60 bytes.
        byte[] model = [0x08, 0x07, .. Field(2, "x"u8.ToArray()), 0x3a, .. Varint(1UL << 60), 0x0a, 0x00];
        Assert.Contains("overruns the message", OpenFails(Write("huge-graph.onnx", model)));
        // An initializer (TensorProto) whose dims multiply beyond 64 bits, without data: refused before any tensor is made.
        byte[] tensor = [0x08, .. Varint(1UL << 40), 0x08, .. Varint(1UL << 40), 0x10, 0x01, .. Field(8, "w"u8.ToArray())];
        byte[] graph = Field(5, tensor);
        Assert.Contains("impossibly large shape", OpenFails(Write("huge-dims.onnx", [0x08, 0x07, .. Field(2, "x"u8.ToArray()), .. Field(7, graph)])));
    }

    [Fact]
    public void Deeply_nested_onnx_messages_are_not_recursed_into()
    {
        // 100,000 levels of node → attribute → subgraph → node… (an If/Loop body bomb): the reader only looks at the
        // top-level graph's nodes and initializers, so nesting costs nothing and cannot overflow the stack.
        // Built back to front (each level prefixes its tag and length to what is inside it), so building is linear.
        var reversed = new List<byte>();
        void Prefix(params byte[] bytes) { for (int i = bytes.Length - 1; i >= 0; i--) reversed.Add(bytes[i]); }
        for (int level = 0; level < 100_000; level++)
        {
            Prefix([6 << 3 | 2, .. Varint((ulong)reversed.Count)]);     // AttributeProto.g (a subgraph)
            Prefix(Field(1, "a"u8.ToArray()));                          // AttributeProto.name
            Prefix([5 << 3 | 2, .. Varint((ulong)reversed.Count)]);     // NodeProto.attribute
            Prefix([1 << 3 | 2, .. Varint((ulong)reversed.Count)]);     // GraphProto.node
        }
        reversed.Reverse();
        var problem = OpenFails(Write("nested.onnx", [0x08, 0x07, .. Field(2, "x"u8.ToArray()), .. Field(7, [.. reversed])]));
        Assert.Contains("no input", problem);
    }

    [Fact]
    public void An_hdf5_dataset_claiming_a_huge_shape_is_refused_before_reading_it()
    {
        // The dataspace message of the first convolution's kernel (3, 3, 3, 4) claims a first dimension of 2^40.
        var bytes = File.ReadAllBytes(W("keras_vgg_micro.h5"));
        byte[] dims = [.. new ulong[] { 3, 3, 3, 4 }.SelectMany(BitConverter.GetBytes)];
        int at = bytes.AsSpan().IndexOf(dims);
        Assert.True(at > 0);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(at), 1UL << 40);
        Assert.Contains("implausible shape [1099511627776, 3, 3, 4]", OpenFails(Write("huge.h5", bytes)));
        // Large enough to need more bytes than the file has, small enough to be a plausible shape.
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(at), 100_000);
        Assert.Contains("far more than the file can hold", OpenFails(Write("large.h5", bytes)));
    }

    [Fact]
    public void Two_spellings_of_the_same_key_are_refused_as_a_file_error()
    {
        // torchvision's original DenseNet spelling (norm.1) and today's (norm1) of the same parameter in one file.
        var path = Path.Combine(_dir, "twice.safetensors");
        using (var a = TorchSharp.torch.ones(4))
        using (var b = TorchSharp.torch.ones(4))
            SafeTensors.Write(path, [("features.denseblock1.denselayer1.norm.1.weight", a), ("features.denseblock1.denselayer1.norm1.weight", b)]);
        Assert.Contains("map to 'features.denseblock1.denselayer1.norm1.weight'", OpenFails(path));
    }

    [Fact]
    public void Layer_numbers_not_backed_by_tensors_describe_no_architecture()
    {
        // A ResNet state dict whose key claims block 999,999,999,999 of layer1: no million-block network is inferred
        // (weights inspect would build it), and loading lists the key as unexpected.
        var path = Path.Combine(_dir, "renumbered.safetensors");
        using (var file = SafeTensors.Read(W("resnet_micro.safetensors")))
        {
            var entries = file.Tensors.Select(kv => (kv.Key == "layer1.0.conv1.weight" ? "layer1.999999999999.conv1.weight" : kv.Key, kv.Value)).ToList();
            SafeTensors.Write(path, entries);
        }
        using var weights = PretrainedWeightFile.Open(path);
        Assert.Null(weights.Architecture);
        using var network = WeightFormatParityTests.ConfigOf("resnet_micro").Build(5);
        var e = Assert.Throws<WeightLoadException>(() => PretrainedWeights.Load(network, weights));
        Assert.Contains("layer1.999999999999.conv1.weight", e.Report.Unexpected);
        Assert.Contains("layer1.0.conv1.weight", e.Report.Missing);
    }

    public static TheoryData<string> ResNetFiles => new()
    {
        "resnet_micro.safetensors", "resnet_micro.pth", "resnet_micro.onnx", "resnet_micro_basic.legacy.pth", "keras_resnet_micro.h5",
    };

    [Theory]
    [MemberData(nameof(ResNetFiles))]
    public void ResNet_weights_into_a_DenseNet_are_refused_naming_both(string file)
    {
        using var densenet = WeightFormatParityTests.ConfigOf("densenet_micro").Build(5);
        var e = Assert.Throws<WeightLoadException>(() => PretrainedWeights.LoadInto(densenet, W(file)));
        Assert.Contains(file, e.Message);
        Assert.Contains("are for a resnet", e.Message);
        Assert.Contains("network is a densenet", e.Message);
        // The trainers adapt the architecture first: the same refusal, as an argument error naming the file.
        using var weights = PretrainedWeightFile.Open(W(file));
        var adapt = Assert.Throws<ArgumentException>(() => weights.Adapt(Architectures.Get("densenet121")));
        Assert.Contains(file, adapt.Message);
        Assert.Contains("Choose the matching architecture", adapt.Message);
    }

    [Fact]
    public void Weights_of_another_variant_of_the_family_list_the_keys_that_do_not_fit()
    {
        // A basic-block ResNet's weights into a bottleneck ResNet: same family, other layout.
        using var bottleneck = WeightFormatParityTests.ConfigOf("resnet_micro").Build(5);
        var e = Assert.Throws<WeightLoadException>(() => PretrainedWeights.LoadInto(bottleneck, W("resnet_micro_basic.legacy.pth")));
        Assert.Contains("resnet_micro_basic.legacy.pth", e.Message);
        Assert.Contains("layer1.0.conv3.weight", e.Report.Missing);
        Assert.NotEmpty(e.Report.ShapeMismatches);
    }
}
