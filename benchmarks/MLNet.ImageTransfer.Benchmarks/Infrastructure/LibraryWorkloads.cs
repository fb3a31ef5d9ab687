using System.Diagnostics;
using Microsoft.ML;
using MLNet.ImageTransfer.Augmentation;
using MLNet.ImageTransfer.Data;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Benchmarks.Infrastructure;

/// <summary>
/// Training-time augmentation as the trainer runs it: images decoded once into the trainer's cache (at the larger
/// source size crops need), then every epoch <c>EpochBatches</c> produces augmented, normalised float batches on its
/// background workers (the library's default count). One <see cref="Epoch"/> = one pass over the cache.
/// </summary>
public sealed class AugmentedEpochs : IDisposable
{
    readonly Training.LabeledImageSet _set;
    readonly AugmentationPipeline _pipeline;
    readonly ImagePreprocessing _preprocessing;
    readonly int[] _order;
    int _epoch;

    public AugmentedEpochs(MLContext ml, IDataView folderRows, int imageSize, string spec)
    {
        _preprocessing = ImagePreprocessing.TorchVision(imageSize);
        _pipeline = AugmentationPipeline.Parse(spec);
        var view = ImageClassificationWorkflow.Preprocessing(ml).Fit(folderRows).Transform(folderRows);
        var classNames = ClassSchema.ClassNames(view.Schema["Label"]);
        _set = ImageSetReader.Read(view, "Image", "Label", classNames, _preprocessing, "benchmark data", out _,
            AugmentationSource.For(_preprocessing, _pipeline), ImageSetReader.TrainingReducingGap);
        _order = Enumerable.Range(0, _set.Count).ToArray();
    }

    public int Count => _set.Count;

    /// <summary>Draws every augmented batch of one epoch; returns the number of images.</summary>
    public int Epoch(int batchSize)
    {
        using var batches = EpochBatches.Create(_set, _order, batchSize, _pipeline, _preprocessing, seed: 1, epoch: ++_epoch);
        for (int b = 0; b < batches.Count; b++)
        {
            using var scope = NewDisposeScope();
            batches.Next();
        }
        return _set.Count;
    }

    public void Dispose() => _set.Dispose();
}

/// <summary>
/// Our side of the data-pipeline, end-to-end and load/predict measurements, through the library's public paths
/// (the same code the trainers and the CLI run), shared by the BenchmarkDotNet classes and the side-by-side runner.
/// </summary>
public static class LibraryWorkloads
{
    /// <summary>
    /// What training consumes from a folder, for every image: ML.NET's <c>LoadImages</c> (SkiaSharp decode), the
    /// preset's geometry (resize shorter side to size/0.875, centre crop, uint8 [3,S,S] — what the trainer caches),
    /// then batches stacked and normalised to float network input. Returns the number of images.
    /// </summary>
    public static int DecodeResizeNormalize(MLContext ml, IDataView folderRows, int imageSize, int batchSize)
    {
        var preprocessing = ImagePreprocessing.TorchVision(imageSize);
        var prep = ImageClassificationWorkflow.Preprocessing(ml);
        var view = prep.Fit(folderRows).Transform(folderRows);
        var classNames = ClassSchema.ClassNames(view.Schema["Label"]);
        using var set = ImageSetReader.Read(view, "Image", "Label", classNames, preprocessing, "benchmark data", out _,
            AugmentationSource.Evaluation(preprocessing), ImageSetReader.TrainingReducingGap);
        var rows = Enumerable.Range(0, set.Count).ToArray();
        for (int start = 0; start < rows.Length; start += batchSize)
        {
            using var scope = NewDisposeScope();
            var (bytes, labels) = set.Batch(rows.AsSpan(start, Math.Min(batchSize, rows.Length - start)));
            ImageTensors.Normalize(bytes, preprocessing);
        }
        return set.Count;
    }

    /// <summary>Rows (absolute ImagePath, Label) of a class-per-subfolder folder, as the CLI and TrainFromFolder read them.</summary>
    public static IDataView FolderRows(MLContext ml, string root)
    {
        var scan = ImageFolder.Scan(root);
        return ml.Data.LoadFromEnumerable(scan.Images.Select(e => new ImageFolderEntry { ImagePath = Path.Combine(scan.Root, e.ImagePath), Label = e.Label }).ToList());
    }

    /// <summary>Options of the end-to-end epoch (and of the model saved for load/predict): no validation, Adam, torchvision preset.</summary>
    public static ImageTransferTrainer.Options TrainerOptions(string architecture, int imageSize, int batchSize, int epochs = 1, int seed = 0) => new()
    {
        Architecture = architecture,
        ImageSize = imageSize,
        BatchSize = batchSize,
        Epochs = epochs,
        LearningRate = 1e-3,
        Seed = seed,
        KeepBestBy = Training.BestModelMetric.None,
    };

    /// <summary>One epoch from a JPEG folder through the library's folder workflow (what <c>train --data DIR</c> runs). Returns images trained on.</summary>
    public static int TrainOneEpochFromFolder(string root, string architecture, int imageSize, int batchSize, int seed = 0)
    {
        var ml = new MLContext(seed);
        var trained = ImageClassificationWorkflow.TrainFromFolder(ml, root, TrainerOptions(architecture, imageSize, batchSize, 1, seed));
        (trained.Model as IDisposable)?.Dispose();
        return ImageFolder.Scan(root).Images.Count;
    }

    /// <summary>Trains <paramref name="architecture"/> for one epoch on <paramref name="root"/> and saves the ML.NET .zip (the artefact a user ships).</summary>
    public static void SaveTrainedModel(string root, string architecture, int imageSize, int batchSize, string zipPath)
    {
        var ml = new MLContext(0);
        var trained = ImageClassificationWorkflow.TrainFromFolder(ml, root, TrainerOptions(architecture, imageSize, batchSize));
        trained.Save(ml, zipPath);
    }

    /// <summary>
    /// Loads a saved .zip in a new MLContext and predicts one image, as a scoring service does at start-up.
    /// Returns (load seconds, first-prediction seconds).
    /// </summary>
    public static (double LoadSeconds, double PredictSeconds, string Predicted) LoadAndPredictOnce(string zipPath, string imagePath)
    {
        long t0 = Stopwatch.GetTimestamp();
        var ml = new MLContext();
        var model = ImageClassificationWorkflow.LoadModel(ml, zipPath, out _);
        double load = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        long t1 = Stopwatch.GetTimestamp();
        var prediction = ImageClassificationWorkflow.Predict(ml, model, [imagePath], top: 1);
        double predict = Stopwatch.GetElapsedTime(t1).TotalSeconds;
        (model as IDisposable)?.Dispose();
        return (load, predict, prediction[0].PredictedClass);
    }
}
