using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Onnx;

/// <summary>
/// Largest absolute differences between ONNX Runtime and TorchSharp on the same inputs, per output, and the largest
/// absolute TorchSharp value of each output (the scale the differences are relative to).
/// </summary>
public sealed record OnnxParityReport(int Images, IReadOnlyDictionary<string, double> MaxAbsDifference, IReadOnlyDictionary<string, double> MaxAbsValue)
{
    /// <summary>The largest difference over all compared outputs.</summary>
    public double Max => MaxAbsDifference.Count == 0 ? 0 : MaxAbsDifference.Values.Max();

    /// <summary>An output's largest difference relative to its largest value (logits of deep random networks can be huge).</summary>
    public double Relative(string output) => MaxAbsDifference[output] / Math.Max(MaxAbsValue[output], 1e-30);

    public override string ToString()
        => $"{Images} images: " + string.Join(", ", MaxAbsDifference.Select(kv => $"max |onnx - torchsharp| {kv.Key} {kv.Value:E2} (values up to {MaxAbsValue[kv.Key]:E2})"));
}

/// <summary>
/// Checks an exported graph against the TorchSharp network it came from: random pixel images (integers 0–255, as
/// decoded images are) through ONNX Runtime and through TorchSharp (<see cref="ImageTensors.Normalize"/>, the
/// network in eval mode, softmax), output by output.
/// </summary>
public static class OnnxParity
{
    /// <summary>Compares a classifier export (any of its outputs: probabilities, logits) with the classifier.</summary>
    public static OnnxParityReport Check(FittedClassifier classifier, byte[] onnxModel, int images = 4, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(classifier);
        return Check(classifier.Network, classifier.Preprocessing, onnxModel, images, seed);
    }

    /// <summary>
    /// Compares an export of <paramref name="network"/> (classifier outputs <c>probabilities</c>/<c>logits</c>, or a
    /// feature extractor's <c>features</c>) with the network, on <paramref name="images"/> random images.
    /// </summary>
    public static OnnxParityReport Check(ImageClassifierModel network, ImagePreprocessing preprocessing, byte[] onnxModel, int images = 4, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentNullException.ThrowIfNull(preprocessing);
        if (images < 1) throw new ArgumentOutOfRangeException(nameof(images));
        using var onnx = OnnxImageModel.Load(onnxModel);
        int size = (int)onnx.ImageSize;
        if (size != preprocessing.ImageSize) throw new ArgumentException($"The ONNX model takes {size}-pixel images, the preprocessing {preprocessing.ImageSize}.");
        int n = (int)(onnx.FixedBatchSize ?? images);

        var random = new Random(seed);
        var pixels = new float[n * 3 * size * size];
        for (int i = 0; i < pixels.Length; i++) pixels[i] = random.Next(256);

        var reference = Reference(network, preprocessing, pixels, n, size);
        var actual = onnx.Run(onnx.InputName == OnnxNames.Pixels ? pixels : Normalized(preprocessing, pixels, n, size));
        var diffs = new Dictionary<string, double>();
        var scales = new Dictionary<string, double>();
        foreach (var (name, values) in actual)
        {
            if (!reference.TryGetValue(name, out var expected)) continue;
            if (expected.Length != values.Length) throw new InvalidOperationException($"Output '{name}' has {values.Length} values, TorchSharp {expected.Length}.");
            double max = 0, scale = 0;
            for (int i = 0; i < values.Length; i++)
            {
                max = Math.Max(max, Math.Abs((double)values[i] - expected[i]));
                scale = Math.Max(scale, Math.Abs((double)expected[i]));
            }
            diffs[name] = max;
            scales[name] = scale;
        }
        return new OnnxParityReport(n, diffs, scales);
    }

    /// <summary>The network's outputs in TorchSharp for pixel images [n,3,S,S] (RGB 0–255): logits, probabilities and pooled features.</summary>
    internal static Dictionary<string, float[]> Reference(ImageClassifierModel network, ImagePreprocessing preprocessing, float[] pixels, int n, int size)
    {
        bool training = network.training;
        network.eval();
        try
        {
            using var scope = NewDisposeScope();
            using var grad = no_grad();
            var device = network.parameters().FirstOrDefault()?.device ?? CPU;
            var input = Normalize(preprocessing, pixels, n, size, device);
            var logits = network.call(input);
            var result = new Dictionary<string, float[]>
            {
                [OnnxNames.Logits] = logits.cpu().data<float>().ToArray(),
                [OnnxNames.Probabilities] = nn.functional.softmax(logits, 1).cpu().data<float>().ToArray(),
                [OnnxNames.Features] = network.ForwardPooledFeatures(input).cpu().data<float>().ToArray(),
            };
            return result;
        }
        finally
        {
            network.train(training);
        }
    }

    static float[] Normalized(ImagePreprocessing preprocessing, float[] pixels, int n, int size)
    {
        using var scope = NewDisposeScope();
        return Normalize(preprocessing, pixels, n, size, CPU).data<float>().ToArray();
    }

    /// <summary>RGB pixels → the network input, exactly as training and scoring do it (channel order, then <see cref="ImageTensors.Normalize"/>).</summary>
    static Tensor Normalize(ImagePreprocessing preprocessing, float[] pixels, int n, int size, Device device)
    {
        var rgb = torch.tensor(pixels, new long[] { n, 3, size, size });
        var ordered = preprocessing.Channels == ChannelOrder.Bgr ? rgb.flip(1) : rgb;
        return ImageTensors.Normalize(ordered, preprocessing, device);
    }
}
