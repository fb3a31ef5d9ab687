using PureHDF;
using PureHDF.VOL.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Weights.Keras;

/// <summary>One Keras layer's weights in the file's order: names as stored (<c>conv1/conv/kernel:0</c>) and values in Keras layout.</summary>
internal sealed record KerasLayer(string Name, IReadOnlyList<(string Name, Tensor Value, string DType)> Weights);

/// <summary>The layers of a Keras weight file, in <c>layer_names</c> order (layers without weights omitted).</summary>
internal sealed class KerasWeightFile(IReadOnlyList<KerasLayer> layers, string? kerasVersion, string? backend, int layerCount) : IDisposable
{
    public IReadOnlyList<KerasLayer> Layers { get; } = layers;
    public string? KerasVersion { get; } = kerasVersion;
    public string? Backend { get; } = backend;
    /// <summary>All layers named in <c>layer_names</c>, with or without weights.</summary>
    public int LayerCount { get; } = layerCount;

    public void Dispose()
    {
        foreach (var l in Layers) foreach (var w in l.Weights) w.Value.Dispose();
    }
}

/// <summary>
/// Reader of Keras 2 HDF5 weight files, as written by <c>model.save_weights("x.h5")</c>, <c>model.save("x.h5")</c>
/// (weights under <c>/model_weights</c>) and published by <c>keras.applications</c>: the root attribute
/// <c>layer_names</c> lists the layers; each layer's group has the attribute <c>weight_names</c>, and each weight is the
/// dataset at <c>/LAYER/WEIGHT_NAME</c> (names may contain '/', i.e. nested groups). Long attribute lists split into
/// <c>layer_names0</c>, <c>layer_names1</c>… (HDF5's 64 KB header limit) are joined. F32, F16 and F64 weights are read as F32.
/// </summary>
internal static class KerasH5
{
    static ReadOnlySpan<byte> Signature => [0x89, (byte)'H', (byte)'D', (byte)'F', (byte)'\r', (byte)'\n', 0x1a, (byte)'\n'];

    /// <summary>HDF5's signature, at offset 0 (or after a user block of 512, 1024, 2048… bytes, checked by the caller).</summary>
    public static bool IsHdf5(ReadOnlySpan<byte> head) => head.Length >= 8 && head[..8].SequenceEqual(Signature);

    /// <summary>Largest weight accepted from one dataset (elements), a guard against corrupt dimensions.</summary>
    const long MaxElements = 1L << 31;

    /// <summary>
    /// How many times its file's size a dataset may decode to. Keras writes weights uncompressed (1×); HDF5's gzip filter
    /// cannot make float weights 64 times smaller. A larger claim is a corrupt dataspace, refused before PureHDF allocates it.
    /// </summary>
    const long MaxExpansion = 64;

    public static KerasWeightFile Read(string path)
    {
        NativeFile file;
        try { file = H5File.Open(new ReadBudgetStream(path), leaveOpen: false); }
        catch (Exception e) when (e is not WeightFileException)
        {
            throw new WeightFileException(path, $"the HDF5 file cannot be opened ({e.Message}).", e);
        }
        using (file)
        {
            try
            {
                return ReadLayers(file, path);
            }
            catch (OutOfMemoryException e)
            {
                // PureHDF allocates a header message's buffer from its length field before checking it against the file
                // (up to 2 GB): a corrupt field fails that one allocation, which leaves nothing else broken.
                throw new WeightFileException(path, "the HDF5 file declares a structure too large to allocate; it is corrupt.", e);
            }
            catch (Exception e) when (e is not WeightFileException)
            {
                // PureHDF is a third-party parser: whatever it throws on a corrupt file (its own Exception, format,
                // overflow, range errors) means the file is not a readable Keras weight file.
                throw new WeightFileException(path, $"the HDF5 file is not a readable Keras weight file ({e.GetType().Name}: {e.Message}).", e);
            }
        }
    }

    /// <summary>
    /// The file as PureHDF sees it, with a cap on the bytes it may read in total: a few times the file, as parsing a
    /// Keras file reads each dataset once and its small metadata a few times. A corrupt file whose B-tree or heap links
    /// form a cycle would keep PureHDF reading forever; the cap turns that into an error. Reads past the end of the file
    /// are refused at once.
    /// </summary>
    sealed class ReadBudgetStream(string path) : Stream
    {
        readonly FileStream _file = new(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        long _budget = -1;

        long Budget => _budget >= 0 ? _budget : _budget = 8 * _file.Length + (64L << 20);
        long _read;

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            // A structure that runs past the end of the file is corrupt: say so at once, rather than let PureHDF go on
            // (it allocates each structure's buffer from its length field before reading it).
            if (buffer.Length > _file.Length - _file.Position)
                throw new WeightFileException(path, $"an HDF5 structure of {buffer.Length:N0} bytes at offset {_file.Position:N0} runs past the end of the {_file.Length:N0}-byte file; it is corrupt or truncated.");
            int n = _file.Read(buffer);
            _read += Math.Max(n, 1); // a zero-byte read counts too, or a loop of them would never end
            if (_read > Budget)
                throw new WeightFileException(path, $"reading its HDF5 structure goes over {_read:N0} bytes of a {_file.Length:N0}-byte file (cyclic or corrupt links); it is corrupt.");
            return n;
        }

        public override bool CanRead => true;
        public override bool CanSeek => true;
        public override bool CanWrite => false;
        public override long Length => _file.Length;
        public override long Position { get => _file.Position; set => _file.Position = value; }
        public override long Seek(long offset, SeekOrigin origin) => _file.Seek(offset, origin);
        public override void Flush() { }
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing) _file.Dispose();
            base.Dispose(disposing);
        }
    }

    static KerasWeightFile ReadLayers(NativeFile file, string path)
    {
        long maxDatasetBytes = new FileInfo(path).Length * MaxExpansion + (1 << 20);
        IH5Group root = file;
        if (!HasStrings(root, "layer_names") && root.LinkExists("model_weights"))
            root = file.Group("model_weights"); // model.save("x.h5"): weights under /model_weights
        if (!HasStrings(root, "layer_names"))
        {
            if (root.LinkExists("layers") || root.LinkExists("_layer_checkpoint_dependencies"))
                throw new WeightFileException(path, "this is a Keras 3 '.weights.h5' file (groups 'layers/…/vars'), whose layout is not supported; save the weights with Keras 2 / tf.keras (model.save_weights('x.h5')) or export ONNX.");
            throw new WeightFileException(path, "the HDF5 file has no 'layer_names' attribute; it is not a Keras weight file.");
        }
        var layerNames = ReadStrings(root, "layer_names", path);
        string? version = TryReadString(file, "keras_version", path) ?? TryReadString(root, "keras_version", path);
        string? backend = TryReadString(file, "backend", path) ?? TryReadString(root, "backend", path);

        var layers = new List<KerasLayer>();
        try
        {
            foreach (var layerName in layerNames)
            {
                if (!root.LinkExists(layerName))
                    throw new WeightFileException(path, $"layer '{layerName}' is listed in layer_names but has no group.");
                var group = root.Group(layerName);
                var weightNames = HasStrings(group, "weight_names") ? ReadStrings(group, "weight_names", path) : [];
                if (weightNames.Count == 0) continue;
                var weights = new List<(string, Tensor, string)>();
                layers.Add(new KerasLayer(layerName, weights));
                foreach (var weightName in weightNames)
                {
                    if (!group.LinkExists(weightName))
                        throw new WeightFileException(path, $"weight '{weightName}' of layer '{layerName}' is listed but missing.");
                    var (tensor, dtype) = ReadDataset(group.Dataset(weightName), $"{layerName}/{weightName}", path, maxDatasetBytes);
                    weights.Add((weightName, tensor, dtype));
                }
            }
        }
        catch
        {
            foreach (var l in layers) foreach (var w in l.Weights) w.Value.Dispose();
            throw;
        }
        return new KerasWeightFile(layers, version, backend, layerNames.Count);
    }

    static (Tensor, string) ReadDataset(IH5Dataset dataset, string name, string path, long maxBytes)
    {
        var dimensions = dataset.Space.Type == H5DataspaceType.Scalar ? [] : dataset.Space.Dimensions;
        var dims = dimensions.Select(d => (long)Math.Min(d, long.MaxValue)).ToArray();
        if (dims.Length > 8 || ElementCount(dimensions) is not { } elements || elements > MaxElements)
            throw new WeightFileException(path, $"weight '{name}' has an implausible shape [{string.Join(", ", dimensions)}].");
        if (dataset.Type.Class != H5DataTypeClass.FloatingPoint)
            throw new WeightFileException(path, $"weight '{name}' has HDF5 type {dataset.Type.Class}; only floating-point weights are supported.");
        if (elements * dataset.Type.Size > maxBytes)
            throw new WeightFileException(path, $"weight '{name}' declares shape [{string.Join(", ", dims)}] = {elements * dataset.Type.Size:N0} bytes, far more than the file can hold; it is corrupt.");
        float[] values;
        string dtype;
        switch (dataset.Type.Size)
        {
            case 4: values = dataset.Read<float[]>(); dtype = "F32"; break;
            case 2: values = dataset.Read<Half[]>().Select(h => (float)h).ToArray(); dtype = "F16"; break;
            case 8: values = dataset.Read<double[]>().Select(d => (float)d).ToArray(); dtype = "F64"; break;
            default: throw new WeightFileException(path, $"weight '{name}' has a {dataset.Type.Size}-byte float type, which is not supported.");
        }
        if (values.LongLength != elements) throw new WeightFileException(path, $"weight '{name}' has {values.LongLength} values for shape [{string.Join(", ", dims)}].");
        return (tensor(values, dims, ScalarType.Float32), dtype);
    }

    /// <summary>The product of HDF5 dimensions, or null when it does not fit a long.</summary>
    static long? ElementCount(IEnumerable<ulong> dimensions)
    {
        ulong n = 1;
        foreach (var d in dimensions)
        {
            if (d != 0 && n > long.MaxValue / d) return null;
            n *= d;
        }
        return (long)n;
    }

    static bool HasStrings(IH5Object o, string name) => o.AttributeExists(name) || o.AttributeExists(name + "0");

    /// <summary>A list-of-strings attribute, joined from name0, name1… when Keras split it.</summary>
    static List<string> ReadStrings(IH5Object o, string name, string path)
    {
        if (o.AttributeExists(name)) return ReadStringArray(o.Attribute(name), path);
        var all = new List<string>();
        for (int i = 0; o.AttributeExists(name + i); i++) all.AddRange(ReadStringArray(o.Attribute(name + i), path));
        return all;
    }

    static List<string> ReadStringArray(IH5Attribute a, string path)
    {
        // Keras writes an empty list as an empty float64 array.
        if (a.Space.Type == H5DataspaceType.Null || (a.Space.Type == H5DataspaceType.Simple && ElementCount(a.Space.Dimensions) == 0))
            return [];
        // Each string takes at least a byte of the file: more strings than bytes is a corrupt dataspace.
        if (a.Space.Type == H5DataspaceType.Simple && !(ElementCount(a.Space.Dimensions) <= new FileInfo(path).Length))
            throw new WeightFileException(path, $"the attribute '{a.Name}' declares {string.Join(" × ", a.Space.Dimensions)} strings, more than the file can hold; it is corrupt.");
        if (a.Type.Class is not (H5DataTypeClass.String or H5DataTypeClass.VariableLength))
            return [];
        if (a.Space.Type == H5DataspaceType.Scalar) return [a.Read<string>().TrimEnd('\0')];
        return a.Read<string[]>().Select(s => s.TrimEnd('\0')).ToList();
    }

    static string? TryReadString(IH5Object o, string name, string path)
    {
        try { return o.AttributeExists(name) ? ReadStringArray(o.Attribute(name), path).FirstOrDefault() : null; }
        catch (Exception) { return null; }
    }
}
