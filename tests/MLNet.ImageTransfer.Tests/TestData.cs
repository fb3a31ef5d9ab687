using Microsoft.ML;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;

namespace MLNet.ImageTransfer.Tests;

/// <summary>Tiny, seeded datasets and networks so that end-to-end tests train in seconds.</summary>
internal static class TestData
{
    static readonly object Gate = new();
    static readonly Dictionary<string, string> Folders = new();

    /// <summary>A synthetic shapes folder (cached per process): <paramref name="perClass"/> PNGs of <paramref name="size"/>² per class.</summary>
    public static string ShapesFolder(int perClass = 12, int size = 32, int seed = 7, int classes = 3)
    {
        var key = $"{perClass}-{size}-{seed}-{classes}";
        lock (Gate)
        {
            if (Folders.TryGetValue(key, out var dir)) return dir;
            dir = Path.Combine(Path.GetTempPath(), "mlnet-imagetransfer-tests", $"{Environment.ProcessId}-shapes-{key}");
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
            SyntheticShapes.Generate(dir, perClass, size, seed, SyntheticShapes.Classes.Take(classes).ToArray());
            Folders[key] = dir;
            return dir;
        }
    }

    public static string NewTempDir(string name)
    {
        var dir = Path.Combine(Path.GetTempPath(), "mlnet-imagetransfer-tests", $"{Environment.ProcessId}-{name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>A ResNet with one BasicBlock per stage and widths 4..32: the smallest real ResNet.</summary>
    public static ResNetConfig TinyResNet => new(ResNetBlock.Basic, [1, 1, 1, 1], BaseWidth: 4);

    /// <summary>Options for a tiny, fast, deterministic run on 32-pixel images.</summary>
    public static ImageTransferTrainer.Options TinyOptions(int epochs = 2, int seed = 1) => new()
    {
        CustomArchitecture = TinyResNet,
        Preprocessing = ImagePreprocessing.TorchVision(32) with { Resize = ResizeMode.Stretch },
        Epochs = epochs,
        BatchSize = 8,
        LearningRate = 3e-3,
        Seed = seed,
    };

    /// <summary>MapValueToKey(Label) → LoadImages(Image) on relative paths under <paramref name="root"/>.</summary>
    public static IEstimator<ITransformer> Prefix(MLContext ml, string root)
        => ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Transforms.LoadImages("Image", root, "ImagePath"));

    /// <summary>
    /// The whole classification pipeline (<see cref="Prefix"/> → the tiny ImageTransfer trainer → PredictedLabel back to
    /// class names) fitted on every image under <paramref name="root"/>; returns the model and the data it was fitted on.
    /// </summary>
    public static (ITransformer Model, IDataView Data) FitTinyPipeline(MLContext ml, string root, int epochs)
    {
        var all = ImageFolder.Load(ml, root);
        var model = Prefix(ml, root)
            .Append(ml.MulticlassClassification.Trainers.ImageTransfer(TinyOptions(epochs)))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"))
            .Fit(all);
        return (model, all);
    }
}
