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
    /// <summary>The training folder's scan: its images and the files skipped (with reasons) before training.</summary>
    public ImageFolderScan? TrainingScan { get; init; }

    /// <summary>The validation folder's scan, when validation came from its own folder.</summary>
    public ImageFolderScan? ValidationScan { get; init; }

    /// <summary>Rows the trainer itself skipped (an image that failed to load after the scan); normally empty.</summary>
    public IReadOnlyList<SkippedFile> SkippedRows { get; init; } = [];

    /// <summary>Everything that was skipped, for people (null when nothing was): scans first, then the trainer's rows.</summary>
    public string? SkippedSummary(int maxListed = 5)
    {
        var parts = new[] { TrainingScan?.SkippedSummary(maxListed), ValidationScan?.SkippedSummary(maxListed),
            SkippedRows.Count == 0 ? null : $"The trainer skipped {SkippedRows.Count} row(s) whose image could not be loaded: "
                + string.Join("; ", SkippedRows.Take(maxListed).Select(s => $"{s.Path}: {s.Reason}")) + (SkippedRows.Count > maxListed ? $"; and {SkippedRows.Count - maxListed} more." : ".") };
        var present = parts.Where(p => p is not null).ToList();
        return present.Count == 0 ? null : string.Join(Environment.NewLine, present);
    }

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
/// pipeline <c>MapValueToKey(Label) → LoadImagesRobust(Image) → trainer → MapKeyToValue(PredictedLabel)</c> on a
/// class-per-subfolder dataset, evaluation with ML.NET's metrics, and top-k prediction.
/// Image paths are absolute, so a saved model scores images from any folder. Folders are scanned first
/// (<see cref="ImageFolder.Scan(string, ImageFolderOptions?)"/>): unusable files are skipped and reported, or stop the
/// run before training with <see cref="ImageFolderOptions.FailFast"/>.
/// </summary>
public static class ImageClassificationWorkflow
{
    /// <summary>
    /// Label → key, image loading (<see cref="RobustImageLoadingCatalog.LoadImagesRobust"/>: EXIF orientation, any
    /// colour format, bounded size, no abort on a bad file): the part of the pipeline before the trainer.
    /// </summary>
    public static IEstimator<ITransformer> Preprocessing(MLContext mlContext, string labelColumn = "Label", string imageColumn = "Image", ImageDecodeOptions? decodeOptions = null)
        => mlContext.Transforms.Conversion.MapValueToKey(labelColumn, keyOrdinality: Microsoft.ML.Transforms.ValueToKeyMappingEstimator.KeyOrdinality.ByValue)
            .Append(mlContext.Transforms.LoadImagesRobust(imageColumn, imageFolder: null, inputColumnName: ImageFolder.ImagePathColumn, decodeOptions));

    /// <summary>
    /// Trains on <paramref name="trainDir"/>. Validation comes from <paramref name="validationDir"/>, or a stratified
    /// <paramref name="validationSplit"/> of the training folder, or none. Files that are not usable images are
    /// skipped (see <see cref="TrainedPipeline.SkippedSummary"/>), or with <paramref name="folderOptions"/>.FailFast
    /// stop the run before training with the same report.
    /// </summary>
    public static TrainedPipeline TrainFromFolder(MLContext mlContext, string trainDir, ImageTransferTrainer.Options options,
        string? validationDir = null, double validationSplit = 0, int splitSeed = 0, ImageFolderOptions? folderOptions = null)
    {
        folderOptions ??= new ImageFolderOptions();
        var scan = ImageFolder.Scan(trainDir, folderOptions);
        var validationScan = validationDir is null ? null : ImageFolder.Scan(validationDir, folderOptions);
        var rows = Absolute(scan);
        IDataView train = mlContext.Data.LoadFromEnumerable(rows), validation = null!;
        if (validationScan is not null)
            validation = mlContext.Data.LoadFromEnumerable(Absolute(validationScan));
        else if (validationSplit > 0)
        {
            // The same split as ImageFolder.StratifiedSplit over these rows, without copying them through a data view.
            var (trainRows, validationRows) = ImageFolder.StratifiedSplit(rows, validationSplit, splitSeed);
            (train, validation) = (mlContext.Data.LoadFromEnumerable(trainRows), mlContext.Data.LoadFromEnumerable(validationRows));
        }

        var prefix = Preprocessing(mlContext, options.LabelColumnName, options.ImageColumnName, folderOptions.Decode);
        if (validation is not null) options.ValidationSet = prefix.Fit(train).Transform(validation);
        var trainer = mlContext.MulticlassClassification.Trainers.ImageTransfer(options);
        var pipeline = prefix.Append(trainer).Append(mlContext.Transforms.Conversion.MapKeyToValue(options.PredictedLabelColumnName));
        var model = pipeline.Fit(train);
        return new TrainedPipeline(model, train.Schema, trainer.LastHistory!, scan.ClassNames, validation)
        {
            TrainingScan = scan,
            ValidationScan = validationScan,
            SkippedRows = trainer.LastSkippedRows,
        };
    }

    /// <summary>Evaluates a fitted pipeline on a class-per-subfolder dataset with ML.NET's multiclass evaluator (unusable files are left out, as in training).</summary>
    public static EvaluationReport Evaluate(MLContext mlContext, ITransformer model, string dataDir, int topK = 0, ImageFolderOptions? folderOptions = null)
        => Evaluate(mlContext, model, mlContext.Data.LoadFromEnumerable(Absolute(ImageFolder.Scan(dataDir, folderOptions))), topK);

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
    /// <exception cref="InvalidDataException">An image cannot be used; the message names every such file and why.</exception>
    public static IReadOnlyList<ImagePrediction> Predict(MLContext mlContext, ITransformer model, IEnumerable<string> imagePaths, int top = 3, string scoreColumn = "Score")
    {
        var rows = imagePaths.Select(p => new ImageFolderEntry { ImagePath = Path.GetFullPath(p), Label = "" }).ToList();
        if (rows.Count == 0) return [];
        // A prediction for an unreadable file would be a row of NaNs: say which files and why instead.
        var bad = rows.Select(r => (r.ImagePath, Problem: File.Exists(r.ImagePath) ? ImageDecoder.Check(r.ImagePath) : "file not found"))
            .Where(b => b.Problem is not null).ToList();
        if (bad.Count > 0)
            throw new InvalidDataException($"{bad.Count} of {rows.Count} image(s) cannot be used: " + string.Join("; ", bad.Take(5).Select(b => $"{b.ImagePath}: {b.Problem}")) + (bad.Count > 5 ? $"; and {bad.Count - 5} more." : "."));
        var scored = model.Transform(mlContext.Data.LoadFromEnumerable(rows));
        var names = ScoreSlotNames(scored.Schema, scoreColumn);
        var scores = scored.GetColumn<float[]>(scoreColumn).ToList();
        return rows.Select((r, i) => new ImagePrediction(r.ImagePath,
            scores[i].Select((p, c) => (names[c], p)).OrderByDescending(t => t.p).Take(Math.Max(1, top)).ToList())).ToList();
    }

    /// <summary>Saves atomically: a crash mid-save never leaves a broken .zip where a good one was.</summary>
    public static void SaveModel(MLContext mlContext, ITransformer model, DataViewSchema inputSchema, string path)
    {
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var temp = full + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            mlContext.Model.Save(model, inputSchema, temp);
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
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

    static List<ImageFolderEntry> Absolute(ImageFolderScan scan)
        => scan.Images.Select(e => new ImageFolderEntry { ImagePath = Path.Combine(scan.Root, e.ImagePath), Label = e.Label }).ToList();
}
