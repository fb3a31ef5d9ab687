using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.TrainingLoop;

/// <summary>Tiny in-memory image sets and models for the training-loop tests (seconds on a CPU).</summary>
internal static class TrainingTestKit
{
    public static readonly ImagePreprocessing Preprocessing = ImagePreprocessing.TorchVision(32) with { Resize = ResizeMode.Stretch };

    /// <summary>Random 32² images with labels i % classes (or the given labels).</summary>
    public static LabeledImageSet RandomImages(int count = 12, int seed = 5, int classes = 3, Func<int, int>? label = null)
    {
        var set = new LabeledImageSet();
        var generator = new torch.Generator((ulong)seed);
        for (int i = 0; i < count; i++)
            set.Add(torch.randint(0, 256, [3, 32, 32], generator: generator).to_type(ScalarType.Byte), label?.Invoke(i) ?? i % classes);
        return set;
    }

    /// <summary>A tiny ResNet; with <paramref name="dropout"/>, a Keras-style MLP head with dropout (draws from the global generator).</summary>
    public static ImageClassifierModel NewModel(int seed = 3, int classes = 3, bool dropout = false)
    {
        lock (Engine.GlobalGenerator.Gate)
        {
            torch.manual_seed(seed);
            return TestData.TinyResNet.Build(classes, dropout ? HeadSpec.KerasMlp(16, 0.5) : null);
        }
    }

    public static Dictionary<string, Tensor> Snapshot(ImageClassifierModel m) => m.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());

    public static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    public static void AssertSameWeights(IReadOnlyDictionary<string, Tensor> expected, IReadOnlyDictionary<string, Tensor> actual, string what)
    {
        Assert.Equal(expected.Keys.OrderBy(k => k), actual.Keys.OrderBy(k => k));
        foreach (var (key, t) in expected) Assert.True(Same(t, actual[key]), $"{what}: '{key}' differs");
    }

    public static Dictionary<string, Tensor> ReadWeights(string safetensorsPath)
    {
        using var file = global::MLNet.ImageTransfer.Weights.SafeTensors.Read(safetensorsPath);
        return file.Detach().ToDictionary(kv => kv.Key, kv => kv.Value);
    }
}
