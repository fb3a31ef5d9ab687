using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Training;

namespace MLNet.ImageTransfer;

/// <summary>A pipeline trained on an image folder, with what it was trained on.</summary>
public sealed record TrainedPipeline(ITransformer Model, DataViewSchema InputSchema, TrainingHistory History, IReadOnlyList<string> ClassNames, IDataView? ValidationData)
{
    /// <summary>Saves the whole pipeline as an ML.NET .zip (written to a temporary file, then moved into place).</summary>
    public void Save(MLContext mlContext, string path) => ImageClassificationWorkflow.SaveModel(mlContext, Model, InputSchema, path);
}

/// <summary>Metrics of one class.</summary>
public sealed record ClassMetrics(string Class, double Precision, double Recall, double F1, long Support);

/// <summary>ML.NET's multiclass metrics with class names: what <c>evaluate</c> prints and writes as JSON.</summary>
public sealed record EvaluationReport(
    double MicroAccuracy, double MacroAccuracy, double LogLoss, double LogLossReduction, double? TopKAccuracy,
    IReadOnlyList<ClassMetrics> PerClass, IReadOnlyList<string> ClassNames, long[][] ConfusionMatrix,
    [property: JsonIgnore] string FormattedConfusionTable)
{
    public string ToJson() => JsonSerializer.Serialize(this, new JsonSerializerOptions { WriteIndented = true });
}

/// <summary>One image's prediction: the top classes with their probabilities.</summary>
public sealed record ImagePrediction(string ImagePath, IReadOnlyList<(string Class, float Probability)> Top)
{
    public string PredictedClass => Top[0].Class;
}

/// <summary>
/// The folder-to-model workflows of the CLI as library calls (the CLI is a thin shell over these): the standard
/// pipeline <c>MapValueToKey(Label) → LoadImages(Image) → trainer → MapKeyToValue(PredictedLabel)</c> on a
/// class-per-subfolder dataset, evaluation with ML.NET's metrics, and top-k prediction.
/// Image paths are absolute, so a saved model scores images from any folder.
/// </summary>
public static class ImageClassificationWorkflow
{
    /// <summary>Label → key, image loading: the part of the pipeline before the trainer.</summary>
    public static IEstimator<ITransformer> Preprocessing(MLContext mlContext, string labelColumn = "Label", string imageColumn = "Image")
        => mlContext.Transforms.Conversion.MapValueToKey(labelColumn, keyOrdinality: Microsoft.ML.Transforms.ValueToKeyMappingEstimator.KeyOrdinality.ByValue)
            .Append(mlContext.Transforms.LoadImages(imageColumn, imageFolder: null, inputColumnName: ImageFolder.ImagePathColumn));

    /// <summary>
    /// Trains on <paramref name="trainDir"/>. Validation comes from <paramref name="validationDir"/>, or a stratified
    /// <paramref name="validationSplit"/> of the training folder, or none.
    /// </summary>
    public static TrainedPipeline TrainFromFolder(MLContext mlContext, string trainDir, ImageTransferTrainer.Options options,
        string? validationDir = null, double validationSplit = 0, int splitSeed = 0)
    {
        var scan = ImageFolder.Scan(trainDir);
        IDataView all = mlContext.Data.LoadFromEnumerable(Absolute(scan));
        IDataView train = all, validation = null!;
        if (validationDir is not null)
            validation = mlContext.Data.LoadFromEnumerable(Absolute(ImageFolder.Scan(validationDir)));
        else if (validationSplit > 0)
            (train, validation) = ImageFolder.StratifiedSplit(mlContext, all, validationSplit, splitSeed);

        var prefix = Preprocessing(mlContext, options.LabelColumnName, options.ImageColumnName);
        if (validation is not null) options.ValidationSet = prefix.Fit(train).Transform(validation);
        var trainer = mlContext.MulticlassClassification.Trainers.ImageTransfer(options);
        var pipeline = prefix.Append(trainer).Append(mlContext.Transforms.Conversion.MapKeyToValue(options.PredictedLabelColumnName));
        var model = pipeline.Fit(train);
        return new TrainedPipeline(model, train.Schema, trainer.LastHistory!, scan.ClassNames, validation);
    }

    /// <summary>Evaluates a fitted pipeline on a class-per-subfolder dataset with ML.NET's multiclass evaluator.</summary>
    public static EvaluationReport Evaluate(MLContext mlContext, ITransformer model, string dataDir, int topK = 0)
        => Evaluate(mlContext, model, mlContext.Data.LoadFromEnumerable(Absolute(ImageFolder.Scan(dataDir))), topK);

    /// <summary>Evaluates a fitted pipeline on rows with <c>ImagePath</c> and <c>Label</c>.</summary>
    public static EvaluationReport Evaluate(MLContext mlContext, ITransformer model, IDataView data, int topK = 0)
    {
        var scored = model.Transform(data);
        var m = mlContext.MulticlassClassification.Evaluate(scored, topKPredictionCount: topK);
        var names = ScoreSlotNames(scored.Schema);
        var cm = m.ConfusionMatrix;
        var counts = cm.Counts.Select(r => r.Select(c => (long)Math.Round(c)).ToArray()).ToArray();
        var perClass = Enumerable.Range(0, cm.NumberOfClasses).Select(i =>
        {
            double p = cm.PerClassPrecision[i], r = cm.PerClassRecall[i];
            return new ClassMetrics(names[i], p, r, p + r == 0 ? 0 : 2 * p * r / (p + r), counts[i].Sum());
        }).ToArray();
        return new EvaluationReport(m.MicroAccuracy, m.MacroAccuracy, m.LogLoss, m.LogLossReduction,
            topK > 0 ? m.TopKAccuracy : null, perClass, names, counts, cm.GetFormattedConfusionTable());
    }

    /// <summary>Top-<paramref name="top"/> classes for each image file.</summary>
    public static IReadOnlyList<ImagePrediction> Predict(MLContext mlContext, ITransformer model, IEnumerable<string> imagePaths, int top = 3, string scoreColumn = "Score")
    {
        var rows = imagePaths.Select(p => new ImageFolderEntry { ImagePath = Path.GetFullPath(p), Label = "" }).ToList();
        if (rows.Count == 0) return [];
        var scored = model.Transform(mlContext.Data.LoadFromEnumerable(rows));
        var names = ScoreSlotNames(scored.Schema, scoreColumn);
        var scores = scored.GetColumn<float[]>(scoreColumn).ToList();
        return rows.Select((r, i) => new ImagePrediction(r.ImagePath,
            scores[i].Select((p, c) => (names[c], p)).OrderByDescending(t => t.p).Take(Math.Max(1, top)).ToList())).ToList();
    }

    /// <summary>
    /// Saves atomically: the .zip is written to a temporary file beside <paramref name="path"/>, flushed, then renamed
    /// over it. A crash, a full disk or an unwritable folder never leaves a broken .zip where a good one was: the
    /// previous file stays as it was, and the error (an <see cref="IOException"/>) names the path.
    /// </summary>
    public static void SaveModel(MLContext mlContext, ITransformer model, DataViewSchema inputSchema, string path)
        => SaveModel(mlContext, model, inputSchema, path, p => new FileStream(p, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16));

    /// <param name="openWrite">Opens the temporary file (tests inject a failing stream: a full disk looks the same).</param>
    internal static void SaveModel(MLContext mlContext, ITransformer model, DataViewSchema inputSchema, string path, Func<string, Stream> openWrite)
    {
        var full = Path.GetFullPath(path);
        var temp = full + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            using (var stream = openWrite(temp))
            {
                mlContext.Model.Save(model, inputSchema, stream);
                stream.Flush();
                if (stream is FileStream file) file.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            var previous = File.Exists(full) ? " The previous file there is unchanged." : "";
            throw new IOException($"Could not save the model to '{full}': {e.Message}{previous}", e);
        }
        finally
        {
            try { if (File.Exists(temp)) File.Delete(temp); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>Loads a saved pipeline (registers this library's loaders with the context first).</summary>
    public static ITransformer LoadModel(MLContext mlContext, string path, out DataViewSchema inputSchema)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Model file '{path}' does not exist.", path);
        mlContext.RegisterImageTransfer();
        return mlContext.Model.Load(path, out inputSchema);
    }

    /// <summary>The trained classifier inside a fitted or loaded pipeline (for explanations, export, inspection).</summary>
    public static Models.FittedClassifier FindClassifier(ITransformer model)
    {
        IEnumerable<ITransformer> parts = model is IEnumerable<ITransformer> chain ? chain : [model];
        var found = parts.SelectMany(p => p is IEnumerable<ITransformer> nested ? nested : [p]).OfType<ImageClassifierTransformer>().ToList();
        return found.Count switch
        {
            1 => found[0].Classifier,
            0 => throw new InvalidOperationException("The model contains no MLNet.ImageTransfer image classifier."),
            _ => throw new InvalidOperationException($"The model contains {found.Count} image classifiers; pick one from the chain."),
        };
    }

    static string[] ScoreSlotNames(DataViewSchema schema, string scoreColumn = "Score")
    {
        var column = schema[scoreColumn];
        VBuffer<ReadOnlyMemory<char>> slots = default;
        column.GetSlotNames(ref slots);
        return slots.DenseValues().Select(s => s.ToString()).ToArray();
    }

    static IEnumerable<ImageFolderEntry> Absolute(ImageFolderScan scan)
        => scan.Images.Select(e => new ImageFolderEntry { ImagePath = Path.Combine(scan.Root, e.ImagePath), Label = e.Label }).ToList();
}
