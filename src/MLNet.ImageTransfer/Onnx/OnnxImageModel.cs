using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;

namespace MLNet.ImageTransfer.Onnx;

/// <summary>
/// An exported model running on ONNX Runtime: batches of float32 [N,3,S,S] in, one row per image out. Reads the
/// class names and preprocessing from the model's metadata. Uses no TorchSharp (libtorch is never loaded by it).
/// Thread-safe: ONNX Runtime sessions may run concurrently.
/// </summary>
public sealed class OnnxImageModel : IDisposable
{
    readonly InferenceSession _session;
    readonly long[] _sampleShape;
    // An ORT-format model whose initializers ONNX Runtime reads in place: kept alive (and pinned) as long as the session.
    readonly byte[]? _modelBytes;
    readonly Lazy<IReadOnlyDictionary<string, string>> _metadata;
    readonly Lazy<IReadOnlyList<string>?> _classNames;
    readonly Lazy<ImagePreprocessing?> _preprocessing;

    OnnxImageModel(InferenceSession session, byte[]? modelBytes = null)
    {
        _session = session;
        _modelBytes = modelBytes;
        var input = session.InputMetadata.Single();
        InputName = input.Key;
        var dims = input.Value.Dimensions;
        if (dims.Length != 4 || dims[1] != 3 || dims[2] < 1 || dims[2] != dims[3])
            throw new InvalidDataException($"The ONNX model's input '{InputName}' has shape [{string.Join(", ", dims)}]; [N,3,S,S] expected.");
        _sampleShape = [3, dims[2], dims[3]];
        ImageSize = dims[2];
        FixedBatchSize = dims[0] > 0 ? dims[0] : null;
        OutputNames = session.OutputMetadata.Keys.ToArray();
        OutputWidths = session.OutputMetadata.ToDictionary(o => o.Key, o => o.Value.Dimensions.Length == 2 && o.Value.Dimensions[1] > 0L
            ? (long)o.Value.Dimensions[1]
            : throw new InvalidDataException($"The ONNX model's output '{o.Key}' has shape [{string.Join(", ", o.Value.Dimensions)}]; [N,K] expected."));
        // Metadata is read on first use: a saved classifier scores from its own description and never needs it.
        _metadata = new(() => session.ModelMetadata.CustomMetadataMap.ToDictionary(kv => kv.Key, kv => kv.Value));
        _classNames = new(() => Metadata.TryGetValue(OnnxMetadataKeys.ClassNames, out var names) ? JsonSerializer.Deserialize<string[]>(names) : null);
        _preprocessing = new(() => Metadata.TryGetValue(OnnxMetadataKeys.Preprocessing, out var prep)
            ? JsonSerializer.Deserialize<ImagePreprocessing>(prep, ClassifierDescription.Json) : null);
    }

    /// <summary>Opens an ONNX file.</summary>
    /// <param name="path">The .onnx file.</param>
    /// <param name="intraOpThreads">Threads per inference (ONNX Runtime's default, 0, uses the physical cores).</param>
    public static OnnxImageModel Load(string path, int intraOpThreads = 0)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"ONNX model '{path}' does not exist.", path);
        return Load(File.ReadAllBytes(path), intraOpThreads);
    }

    /// <summary>Opens an ONNX model held in memory (ONNX Runtime optimises the graph: all levels).</summary>
    public static OnnxImageModel Load(byte[] model, int intraOpThreads = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var options = CreateSessionOptions(intraOpThreads);
        options.GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL;
        return Open(new InferenceSession(model, options), null);
    }

    /// <summary>
    /// Opens a graph that ONNX Runtime already optimised and saved in its own (ORT) format, for this platform
    /// (<see cref="OrtScoringGraph"/>): no optimisation runs, and ONNX Runtime reads the weights in place from
    /// <paramref name="ortModel"/>, which must be pinned (<c>GC.AllocateArray(…, pinned: true)</c>) and is kept by
    /// the returned model.
    /// </summary>
    internal static OnnxImageModel LoadOptimized(byte[] ortModel, int intraOpThreads = 0)
    {
        ArgumentNullException.ThrowIfNull(ortModel);
        using var options = CreateSessionOptions(intraOpThreads);
        options.GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL;
        options.AddSessionConfigEntry("session.use_ort_model_bytes_directly", "1");
        options.AddSessionConfigEntry("session.use_ort_model_bytes_for_initializers", "1");
        return Open(new InferenceSession(ortModel, options), ortModel);
    }

    static OnnxImageModel Open(InferenceSession session, byte[]? modelBytes)
    {
        try
        {
            return new OnnxImageModel(session, modelBytes);
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The session options every scoring session of the library uses (one image or a batch at a time from one caller,
    /// on the CPU): <paramref name="intraOpThreads"/> threads per inference (0: ONNX Runtime's default, the physical
    /// cores), operators run one after another (no inter-op threads).
    /// </summary>
    internal static SessionOptions CreateSessionOptions(int intraOpThreads = 0) => new()
    {
        IntraOpNumThreads = intraOpThreads,
        InterOpNumThreads = 1,
        ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
    };

    /// <summary>The graph's input: <see cref="OnnxNames.Pixels"/> or <see cref="OnnxNames.NormalizedInput"/>.</summary>
    public string InputName { get; }

    /// <summary>Whether the input is raw RGB pixels 0–255 (normalisation inside the graph).</summary>
    public bool TakesRawPixels => InputName == OnnxNames.Pixels;

    /// <summary>Side S of the square input.</summary>
    public long ImageSize { get; }

    /// <summary>The batch size the graph requires, or null when it accepts any.</summary>
    public long? FixedBatchSize { get; }

    public IReadOnlyList<string> OutputNames { get; }

    /// <summary>Width K (or C) of each [N,K] output.</summary>
    public IReadOnlyDictionary<string, long> OutputWidths { get; }

    /// <summary>The model's <c>metadata_props</c>.</summary>
    public IReadOnlyDictionary<string, string> Metadata => _metadata.Value;

    /// <summary>Class names (classifier exports), in output order.</summary>
    public IReadOnlyList<string>? ClassNames => _classNames.Value;

    /// <summary>The preprocessing the model was trained with.</summary>
    public ImagePreprocessing? Preprocessing => _preprocessing.Value;

    /// <summary>Runs a batch: <paramref name="input"/> holds N×3×S×S floats (NCHW). Returns each requested output as N×K floats, row-major.</summary>
    public IReadOnlyDictionary<string, float[]> Run(float[] input, params string[] outputs)
    {
        ArgumentNullException.ThrowIfNull(input);
        long perImage = _sampleShape.Aggregate(1L, (a, d) => a * d);
        if (input.Length == 0 || input.Length % perImage != 0)
            throw new ArgumentException($"The input has {input.Length} values; a multiple of 3×{ImageSize}×{ImageSize} = {perImage} expected.", nameof(input));
        long n = input.Length / perImage;
        if (FixedBatchSize is { } fixedN && fixedN != n) throw new ArgumentException($"The model takes batches of exactly {fixedN} images, got {n}.");
        var names = outputs.Length > 0 ? outputs : OutputNames.ToArray();
        foreach (var name in names)
            if (!OutputWidths.ContainsKey(name)) throw new ArgumentException($"The model has no output '{name}'; it has {string.Join(", ", OutputNames)}.");

        using var inputValue = OrtValue.CreateTensorValueFromMemory(input, [n, .. _sampleShape]);
        using var runOptions = new RunOptions();
        using var results = _session.Run(runOptions, [InputName], [inputValue], names);
        var map = new Dictionary<string, float[]>(names.Length);
        for (int i = 0; i < names.Length; i++) map[names[i]] = results[i].GetTensorDataAsSpan<float>().ToArray();
        return map;
    }

    /// <summary>Runs a batch and returns one output as one array per image.</summary>
    public float[][] RunRows(float[] input, string output)
    {
        var flat = Run(input, output)[output];
        int k = (int)OutputWidths[output];
        return Enumerable.Range(0, flat.Length / k).Select(i => flat.AsSpan(i * k, k).ToArray()).ToArray();
    }

    public void Dispose()
    {
        _session.Dispose();
        GC.KeepAlive(_modelBytes);
    }
}
