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

    OnnxImageModel(InferenceSession session)
    {
        _session = session;
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
        Metadata = session.ModelMetadata.CustomMetadataMap.ToDictionary(kv => kv.Key, kv => kv.Value);
        if (Metadata.TryGetValue(OnnxMetadataKeys.ClassNames, out var names)) ClassNames = JsonSerializer.Deserialize<string[]>(names);
        if (Metadata.TryGetValue(OnnxMetadataKeys.Preprocessing, out var prep))
            Preprocessing = JsonSerializer.Deserialize<ImagePreprocessing>(prep, ClassifierDescription.Json);
    }

    /// <summary>Opens an ONNX file.</summary>
    /// <param name="path">The .onnx file.</param>
    /// <param name="intraOpThreads">Threads per inference (ONNX Runtime's default, 0, uses the physical cores).</param>
    public static OnnxImageModel Load(string path, int intraOpThreads = 0)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"ONNX model '{path}' does not exist.", path);
        return Load(File.ReadAllBytes(path), intraOpThreads);
    }

    /// <summary>Opens an ONNX model held in memory.</summary>
    public static OnnxImageModel Load(byte[] model, int intraOpThreads = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var options = new SessionOptions { IntraOpNumThreads = intraOpThreads, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        var session = new InferenceSession(model, options);
        try
        {
            return new OnnxImageModel(session);
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

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
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Class names (classifier exports), in output order.</summary>
    public IReadOnlyList<string>? ClassNames { get; }

    /// <summary>The preprocessing the model was trained with.</summary>
    public ImagePreprocessing? Preprocessing { get; }

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

    public void Dispose() => _session.Dispose();
}
