using System.Security.Cryptography;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Weights.Keras;
using MLNet.ImageTransfer.Weights.Onnx;
using MLNet.ImageTransfer.Weights.PyTorch;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Weights;

/// <summary>Pretrained-weight file formats, recognised by content (never by extension).</summary>
public enum WeightFormat
{
    /// <summary>safetensors (Hugging Face, timm): torchvision key names.</summary>
    SafeTensors,
    /// <summary><c>torch.save</c> zip format (PyTorch ≥ 1.6): <c>.pth</c>, <c>.pt</c>, <c>.pth.tar</c>.</summary>
    PyTorch,
    /// <summary><c>torch.save</c> legacy format (before 1.6, or <c>_use_new_zipfile_serialization=False</c>).</summary>
    PyTorchLegacy,
    /// <summary>Keras 2 HDF5 weights (<c>keras.applications</c>' <c>.h5</c> files, <c>model.save_weights</c>).</summary>
    KerasH5,
    /// <summary>ONNX model (<c>torch.onnx.export</c>, ONNX model zoo).</summary>
    Onnx,
}

/// <summary>One tensor as the file stores it: its name there, element type, shape.</summary>
public sealed record WeightTensorInfo(string Name, string DType, long[] Shape)
{
    public override string ToString() => $"{Name}: {DType} [{string.Join(", ", Shape)}]";
}

/// <summary>
/// A pretrained weight file of any supported format, read and translated to our (torchvision) key names: the
/// tensors, the architecture they describe, the format's conventions (which decide the preprocessing and the
/// architecture variant to build), and the file's SHA-256. Disposing it disposes the tensors.
/// </summary>
public sealed class PretrainedWeightFile : IDisposable
{
    string? _sha256;

    PretrainedWeightFile(string path, WeightFormat format, OrderedDictionary<string, Tensor> tensors, IReadOnlyList<WeightTensorInfo> entries,
        ArchitectureConfig? architecture, int? numClasses, IReadOnlyList<string> notes)
    {
        Path = path;
        Format = format;
        Tensors = tensors;
        Entries = entries;
        Architecture = architecture;
        NumClasses = numClasses;
        Notes = notes;
    }

    /// <summary>The file's path as given.</summary>
    public string Path { get; }
    public WeightFormat Format { get; }
    /// <summary>The tensors under our key names (float weights as float32), in the file's order.</summary>
    public OrderedDictionary<string, Tensor> Tensors { get; }
    /// <summary>The tensors as stored in the file (names, element types and shapes before any translation).</summary>
    public IReadOnlyList<WeightTensorInfo> Entries { get; }
    /// <summary>The architecture the file describes (inferred from its keys, layer names or graph), or null if none is recognised.</summary>
    public ArchitectureConfig? Architecture { get; }
    /// <summary>The registered name of <see cref="Architecture"/> (e.g. <c>resnet50</c>, <c>resnet50_keras</c>), if any.</summary>
    public string? ArchitectureName => Architecture is null ? null : Architectures.NameOf(Architecture);
    /// <summary>Outputs of the file's classifier, or null when it has none (Keras' <c>include_top=False</c> "notop" files).</summary>
    public int? NumClasses { get; }
    /// <summary>What the reader did to find and translate the weights (prefixes removed, layouts converted…).</summary>
    public IReadOnlyList<string> Notes { get; }

    /// <summary>True for Keras files: Keras layouts and Keras preprocessing modes.</summary>
    public bool IsKeras => Format == WeightFormat.KerasH5;

    /// <summary>SHA-256 of the file's bytes (lower-case hex), computed on first use.</summary>
    public string Sha256 => _sha256 ??= ComputeSha256(Path);

    public static string ComputeSha256(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    /// <summary>Recognises a weight file's format from its first bytes.</summary>
    /// <exception cref="WeightFileException">The content is none of the supported formats.</exception>
    public static WeightFormat DetectFormat(string path)
    {
        using var stream = OpenRead(path);
        var head = new byte[64];
        int n = stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        var span = head.AsSpan(0, n);
        if (PyTorchCheckpoint.IsZip(span)) return WeightFormat.PyTorch;
        if (PyTorchCheckpoint.IsLegacy(span)) return WeightFormat.PyTorchLegacy;
        if (KerasH5.IsHdf5(span) || HasHdf5UserBlock(stream)) return WeightFormat.KerasH5;
        if (n >= 9 && BitConverter.ToUInt64(head, 0) is var headerLength && headerLength <= (ulong)SafeTensors.MaxHeaderLength
            && (long)headerLength <= stream.Length - 8 && head[8] == (byte)'{')
            return WeightFormat.SafeTensors;
        if (OnnxReader.LooksLikeOnnx(span)) return WeightFormat.Onnx;
        // A JSON header's '{' after 8 bytes, but a length field that is absurd or beyond the file: a corrupt or truncated
        // safetensors file, which its reader describes precisely.
        if (n >= 9 && head[8] == (byte)'{') return WeightFormat.SafeTensors;
        if (n == 0) throw new WeightFileException(path, "the file is empty.");
        throw new WeightFileException(path, "its content is not a supported weight format (safetensors, PyTorch .pth/.pt, Keras .h5, ONNX).");
    }

    static bool HasHdf5UserBlock(FileStream stream)
    {
        // HDF5 allows a user block of 512, 1024, 2048… bytes before the signature.
        Span<byte> sig = stackalloc byte[8];
        for (long offset = 512; offset < stream.Length && offset <= 1 << 20; offset *= 2)
        {
            stream.Position = offset;
            if (stream.ReadAtLeast(sig, 8, throwOnEndOfStream: false) == 8 && KerasH5.IsHdf5(sig)) return true;
        }
        return false;
    }

    static FileStream OpenRead(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"Pretrained weights file '{path}' does not exist.", path);
        return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 4096);
    }

    /// <summary>Reads a weight file of any supported format and translates it to our key names.</summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="WeightFileException">The file is not a supported format, or is corrupt, or is unsafe (a pickle asking for code).</exception>
    public static PretrainedWeightFile Open(string path)
    {
        var format = DetectFormat(path);
        var notes = new List<string>();
        switch (format)
        {
            case WeightFormat.SafeTensors:
            {
                using var file = SafeTensors.Read(path);
                var entries = file.Header.Entries.Select(e => new WeightTensorInfo(e.Name, e.DType.ToString(), e.Shape)).ToList();
                return FromTorchvisionKeys(path, format, file.Detach(), entries, notes);
            }
            case WeightFormat.PyTorch:
            case WeightFormat.PyTorchLegacy:
            {
                var sd = PyTorchCheckpoint.Read(path);
                notes.AddRange(sd.Notes);
                return FromTorchvisionKeys(path, format, sd.Tensors, sd.Entries, notes);
            }
            case WeightFormat.KerasH5:
            {
                using var keras = KerasH5.Read(path);
                var entries = keras.Layers.SelectMany(l => l.Weights.Select(w => new WeightTensorInfo($"{l.Name}/{w.Name}", w.DType, w.Value.shape))).ToList();
                var mapping = KerasKeyMap.Map(keras, path);
                notes.Add($"Keras layout ({mapping.Naming}) mapped to torchvision names: kernels HWIO → OIHW, BatchNorm gamma/beta/moving stats → weight/bias/running stats");
                notes.AddRange(mapping.Notes);
                int? classes = ClassifierOutputs(mapping.Tensors);
                if (classes is null) notes.Add("no classifier in the file (Keras include_top=False, a \"notop\" file): the classifier starts freshly initialised");
                return new PretrainedWeightFile(path, format, mapping.Tensors, entries, mapping.Architecture, classes, notes);
            }
            case WeightFormat.Onnx:
            {
                var model = OnnxReader.Read(path);
                var entries = model.InitializerList.Select(t => new WeightTensorInfo(t.Name, t.DTypeName, t.Dims)).ToList();
                var mapping = OnnxStructure.Map(model, path);
                notes.Add($"ONNX graph (producer '{model.Producer} {model.ProducerVersion}', IR {model.IrVersion}, opset {string.Join("/", model.Opsets.Where(o => o.Domain is "" or "ai.onnx").Select(o => o.Version))}) mapped to torchvision names by its structure");
                notes.AddRange(mapping.Notes);
                return new PretrainedWeightFile(path, format, mapping.Tensors, entries, mapping.Architecture, ClassifierOutputs(mapping.Tensors), notes);
            }
            default:
                throw new WeightFileException(path, $"format {format} is not supported.");
        }
    }

    static PretrainedWeightFile FromTorchvisionKeys(string path, WeightFormat format, OrderedDictionary<string, Tensor> tensors,
        IReadOnlyList<WeightTensorInfo> entries, List<string> notes)
    {
        try
        {
            var converted = new List<string>();
            foreach (var key in tensors.Keys.ToList())
            {
                var t = tensors[key];
                if (t.dtype is ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Float64)
                {
                    converted.Add($"{key} ({t.dtype})");
                    tensors[key] = t.to_type(ScalarType.Float32, disposeAfter: true);
                }
            }
            if (converted.Count > 0)
                notes.Add($"{converted.Count} tensor(s) converted to float32: {string.Join(", ", converted.Take(3))}{(converted.Count > 3 ? ", …" : "")}");
            tensors = TorchvisionKeyVariants.Normalize(tensors, notes, path);
            var inferred = ArchitectureInference.FromShapes(tensors.ToDictionary(kv => kv.Key, kv => kv.Value.shape, StringComparer.Ordinal));
            return new PretrainedWeightFile(path, format, tensors, entries, inferred.Architecture, inferred.NumClasses, notes);
        }
        catch
        {
            foreach (var t in tensors.Values) t.Dispose();
            throw;
        }
    }

    static int? ClassifierOutputs(IReadOnlyDictionary<string, Tensor> tensors)
    {
        foreach (var key in new[] { "classifier.6.weight", "classifier.weight", "fc.weight" })
            if (tensors.TryGetValue(key, out var w) && w.dim() == 2) return (int)w.shape[0];
        return null;
    }

    /// <summary>
    /// The network to build for these weights when <paramref name="requested"/> is asked for: the same architecture
    /// with the conventions the weights were trained with. Keras files give the Keras variant (BatchNorm epsilon
    /// 1.001e-5; for ResNet also v1 stride placement and convolution biases); ONNX graphs give what their structure
    /// shows (stride placement, biases, epsilon); PyTorch files with convolution biases give a ResNet with biases.
    /// Other architectures are returned unchanged.
    /// </summary>
    /// <exception cref="ArgumentException">The weights are for another family (e.g. DenseNet weights for a ResNet).</exception>
    public ArchitectureConfig Adapt(ArchitectureConfig requested)
    {
        ArgumentNullException.ThrowIfNull(requested);
        if (Architecture is { } file && file.Family != requested.Family)
            throw new ArgumentException($"The weights in '{System.IO.Path.GetFileName(Path)}' are for a {file.Family} ({ArchitectureName ?? "custom configuration"}), " +
                $"but the model is a {requested.Family} ({Architectures.NameOf(requested) ?? "custom configuration"}). Choose the matching architecture.");
        if (IsKeras)
        {
            double? eps = Architecture switch { ResNetConfig r => r.Epsilon, DenseNetConfig d => d.Epsilon, _ => null };
            return Architectures.KerasConvention(requested, eps);
        }
        return (requested, Architecture) switch
        {
            (ResNetConfig r, ResNetConfig f) when Format == WeightFormat.Onnx => r with { StrideOnFirstConv = f.StrideOnFirstConv, ConvBias = f.ConvBias, BatchNormEpsilon = f.BatchNormEpsilon ?? r.BatchNormEpsilon },
            (ResNetConfig r, ResNetConfig f) when f.ConvBias => r with { ConvBias = true },
            (DenseNetConfig d, DenseNetConfig f) when Format == WeightFormat.Onnx && f.BatchNormEpsilon is not null => d with { BatchNormEpsilon = f.BatchNormEpsilon },
            _ => requested,
        };
    }

    /// <summary>
    /// The tensors to load into a network of <paramref name="target"/>'s layout: <see cref="Tensors"/>, except for a VGG
    /// with BatchNorm read from an ONNX graph whose exporter folded the BatchNorms into the convolutions (the graph then
    /// looks like a VGG without BatchNorm): its convolutions move to the BatchNorm layout's indices and each BatchNorm is
    /// the identity. Tensors created here are added to <paramref name="created"/> for the caller to dispose.
    /// </summary>
    internal IReadOnlyDictionary<string, Tensor> TensorsFor(ArchitectureConfig target, List<Tensor> created, List<string> notes)
    {
        if (Format != WeightFormat.Onnx || target is not VggConfig { BatchNorm: true } vgg || Architecture is not VggConfig { BatchNorm: false } file
            || !file.Layers.SequenceEqual(vgg.Layers))
            return Tensors;
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (k, v) in Tensors) if (!k.StartsWith("features.", StringComparison.Ordinal)) result[k] = v;
        int from = 0, to = 0;
        using var identityVariance = (1.0 - ArchitectureConfig.TorchBatchNormEpsilon).ToScalar(); // rooted across the native calls (TorchScalars)
        foreach (var width in vgg.Layers)
        {
            if (width == VggConfig.MaxPool) { from++; to++; continue; }
            foreach (var suffix in new[] { ".weight", ".bias" })
                if (Tensors.TryGetValue($"features.{from}{suffix}", out var t)) result[$"features.{to}{suffix}"] = t;
            Tensor Add(Tensor t) { created.Add(t); return t; }
            result[$"features.{to + 1}.weight"] = Add(ones(width));
            result[$"features.{to + 1}.bias"] = Add(zeros(width));
            result[$"features.{to + 1}.running_mean"] = Add(zeros(width));
            result[$"features.{to + 1}.running_var"] = Add(full(width, identityVariance, ScalarType.Float32));
            result[$"features.{to + 1}.num_batches_tracked"] = Add(tensor(0L));
            from += 2;
            to += 3;
        }
        notes.Add("the ONNX graph has no BatchNorm nodes (folded into the convolutions by the exporter): the VGG's BatchNorms are loaded as the identity");
        return result;
    }

    /// <summary>The preprocessing these weights were trained with (see <see cref="WeightPreprocessing.ImpliedBy(string, string, int, string?)"/>).</summary>
    public ImagePreprocessing ImpliedPreprocessing(ArchitectureConfig architecture, int imageSize = 224)
        => WeightPreprocessing.ImpliedBy(Path, architecture.Family, imageSize);

    public void Dispose()
    {
        foreach (var t in Tensors.Values) t.Dispose();
        Tensors.Clear();
    }
}
