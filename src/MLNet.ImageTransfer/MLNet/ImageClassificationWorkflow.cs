using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Reporting;
using MLNet.ImageTransfer.Training;

namespace MLNet.ImageTransfer;

/// <summary>A pipeline trained on an image folder, with what it was trained on.</summary>
public sealed record TrainedPipeline(ITransformer Model, DataViewSchema InputSchema, TrainingHistory History, IReadOnlyList<string> ClassNames, IDataView? ValidationData)
{
    /// <summary>What starting from a saved model did (<see cref="ImageTransferTrainerOptions.InitialModel"/>), or null.</summary>
    public InitialModelLoad? InitialModel { get; init; }

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

/// <summary>
/// ML.NET's multiclass metrics with class names: what <c>evaluate</c> prints and writes as JSON. The confusion matrix's
/// rows are true classes, its columns predicted ones; <see cref="TopLosses"/> lists the images the model got most wrong.
/// </summary>
public sealed record EvaluationReport(
    double MicroAccuracy, double MacroAccuracy, double LogLoss, double LogLossReduction, double? TopKAccuracy,
    IReadOnlyList<ClassMetrics> PerClass, IReadOnlyList<string> ClassNames, long[][] ConfusionMatrix,
    [property: JsonIgnore] string FormattedConfusionTable)
{
    /// <summary>The images with the highest loss −ln p(true class), worst first (empty when the data has no image paths).</summary>
    public IReadOnlyList<TopLoss> TopLosses { get; init; } = [];

    public string ToJson() => JsonSerializer.Serialize(this, new JsonSerializerOptions { WriteIndented = true });

    /// <summary>Writes report.json, the confusion heatmaps, top_losses.csv and (with a history) the curves into a folder.</summary>
    public IReadOnlyList<string> Save(string directory, TrainingHistory? history = null) => EvaluationReportFiles.Save(this, directory, history);
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
        IDataView train = mlContext.Data.LoadFromEnumerable(AbsolutePathRows.Of(scan)), validation = null!;
        if (validationScan is not null)
            validation = mlContext.Data.LoadFromEnumerable(AbsolutePathRows.Of(validationScan));
        else if (validationSplit > 0)
        {
            // The same split as ImageFolder.StratifiedSplit over these rows, without copying them through a data view.
            var (trainRows, validationRows) = ImageFolder.StratifiedSplit(scan.Images, validationSplit, splitSeed);
            (train, validation) = (mlContext.Data.LoadFromEnumerable(new AbsolutePathRows(scan.Root, trainRows)),
                mlContext.Data.LoadFromEnumerable(new AbsolutePathRows(scan.Root, validationRows)));
        }

        var prefix = Preprocessing(mlContext, options.LabelColumnName, options.ImageColumnName, folderOptions.Decode);
        if (validation is not null) options.ValidationSet = prefix.Fit(train).Transform(validation);
        var trainer = mlContext.MulticlassClassification.Trainers.ImageTransfer(options);
        var pipeline = prefix.Append(trainer).Append(mlContext.Transforms.Conversion.MapKeyToValue(options.PredictedLabelColumnName));
        var model = pipeline.Fit(train);
        return new TrainedPipeline(model, train.Schema, trainer.LastHistory!, scan.ClassNames, validation)
        {
            InitialModel = trainer.LastInitialModelLoad,
            TrainingScan = scan,
            ValidationScan = validationScan,
            SkippedRows = trainer.LastSkippedRows,
        };
    }

    /// <summary>Evaluates a fitted pipeline on a class-per-subfolder dataset with ML.NET's multiclass evaluator (unusable files are left out, as in training).</summary>
    public static EvaluationReport Evaluate(MLContext mlContext, ITransformer model, string dataDir, int topK = 0, int topLosses = 10, ImageFolderOptions? folderOptions = null)
        => Evaluate(mlContext, model, mlContext.Data.LoadFromEnumerable(AbsolutePathRows.Of(ImageFolder.Scan(dataDir, folderOptions))), topK, topLosses);

    /// <summary>
    /// Evaluates a fitted pipeline on rows with <c>ImagePath</c> and <c>Label</c>: ML.NET's metrics, per-class
    /// precision/recall/F1 from its confusion matrix, and the <paramref name="topLosses"/> worst images.
    /// </summary>
    public static EvaluationReport Evaluate(MLContext mlContext, ITransformer model, IDataView data, int topK = 0, int topLosses = 10)
    {
        // Cached: the evaluator and the per-image pass read the same scores; the network runs once.
        var scored = mlContext.Data.Cache(model.Transform(data), "Label", "Score", "PredictedLabel");
        var m = mlContext.MulticlassClassification.Evaluate(scored, topKPredictionCount: topK);
        var names = ScoreSlotNames(scored.Schema);
        var counts = m.ConfusionMatrix.Counts.Select(r => r.Select(c => (long)Math.Round(c)).ToArray()).ToArray();
        return new EvaluationReport(m.MicroAccuracy, m.MacroAccuracy, m.LogLoss, m.LogLossReduction,
            topK > 0 ? m.TopKAccuracy : null, ClassificationMetrics.PerClass(names, counts), names, counts, m.ConfusionMatrix.GetFormattedConfusionTable())
        {
            TopLosses = topLosses > 0 && scored.Schema.GetColumnOrNull(ImageFolder.ImagePathColumn) is not null
                ? ClassificationMetrics.TopLosses(ScoredImages(scored), names, topLosses)
                : [],
        };
    }

    /// <summary>
    /// Image path, true class index and probabilities of each scored row. Score slot c belongs to label key c+1;
    /// rows whose label is not one of the model's classes (key 0) have no loss and are left out.
    /// </summary>
    static IEnumerable<ScoredImage> ScoredImages(IDataView scored, string labelColumn = "Label", string scoreColumn = "Score")
    {
        var schema = scored.Schema;
        using var cursor = scored.GetRowCursor([schema[ImageFolder.ImagePathColumn], schema[labelColumn], schema[scoreColumn]]);
        var path = cursor.GetGetter<ReadOnlyMemory<char>>(schema[ImageFolder.ImagePathColumn]);
        var label = cursor.GetGetter<uint>(schema[labelColumn]);
        var score = cursor.GetGetter<VBuffer<float>>(schema[scoreColumn]);
        ReadOnlyMemory<char> p = default;
        uint key = 0;
        VBuffer<float> s = default;
        var rows = new List<ScoredImage>();
        while (cursor.MoveNext())
        {
            path(ref p); label(ref key); score(ref s);
            if (key > 0) rows.Add(new ScoredImage(p.ToString(), (int)key - 1, s.DenseValues().ToArray()));
        }
        return rows;
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

    /// <summary>
    /// Top-<paramref name="top"/> classes for an image file, or for every image under a folder (recursively, sorted by
    /// path; files are recognised by content, others skipped).
    /// </summary>
    public static IReadOnlyList<ImagePrediction> PredictPath(MLContext mlContext, ITransformer model, string imageOrFolder, int top = 3)
        => Predict(mlContext, model, ImageFiles(imageOrFolder), top);

    /// <summary>The image file itself, or the usable images under a folder; a clear error when there are none.</summary>
    public static IReadOnlyList<string> ImageFiles(string imageOrFolder) => ImageFiles(imageOrFolder, out _);

    /// <summary>
    /// The image file itself, or the images under a folder (recursively, sorted by path, hidden files left out) that
    /// decode (<see cref="ImageDecoder.Check"/>); <paramref name="skipped"/> lists the corrupt or truncated ones left out.
    /// </summary>
    public static IReadOnlyList<string> ImageFiles(string imageOrFolder, out IReadOnlyList<(string Path, string Problem)> skipped)
    {
        skipped = [];
        if (File.Exists(imageOrFolder))
        {
            if (ImageFormatSniffer.Detect(imageOrFolder, out var problem) is null) throw new InvalidDataException($"'{imageOrFolder}' is not an image: {problem}.");
            return [imageOrFolder];
        }
        if (!Directory.Exists(imageOrFolder)) throw new FileNotFoundException($"'{imageOrFolder}' is neither an image file nor a folder.", imageOrFolder);
        var candidates = Directory.EnumerateFiles(imageOrFolder, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal)
            .Where(f => !Path.GetFileName(f).StartsWith('.') && ImageFormatSniffer.Detect(f, out _) is not null).ToList();
        var checkedFiles = candidates.AsParallel().AsOrdered().Select(f => (Path: f, Problem: ImageDecoder.Check(f))).ToList();
        skipped = checkedFiles.Where(c => c.Problem is not null).Select(c => (c.Path, c.Problem!)).ToList();
        var files = checkedFiles.Where(c => c.Problem is null).Select(c => c.Path).ToList();
        return files.Count > 0 ? files : throw new InvalidDataException($"Folder '{imageOrFolder}' contains no usable images.");
    }

    /// <summary>
    /// The training history saved inside a fitted or loaded model (TorchSharp or ONNX-scored classifier), or null when
    /// it has none.
    /// </summary>
    public static TrainingHistory? HistoryOf(ITransformer model)
    {
        var description = Parts(model).Select(p => p switch
        {
            ImageClassifierTransformer c => c.Description, // not .Classifier: that rebuilds the TorchSharp network
            Onnx.OnnxImageClassifierTransformer o => o.Description,
            _ => null,
        }).OfType<Models.ClassifierDescription>().FirstOrDefault();
        if (description?.History is not { Count: > 0 } epochs) return null;
        return new TrainingHistory(epochs, description.KeptEpoch ?? epochs[^1].Epoch) { Schedule = description.FineTuning };
    }

    /// <summary>
    /// Saves atomically: the .zip is written to a temporary file beside <paramref name="path"/>, flushed, then renamed
    /// over it. A crash, a full disk or an unwritable folder never leaves a broken .zip where a good one was: the
    /// previous file stays as it was, and the error (an <see cref="IOException"/>) names the path.
    /// </summary>
    public static void SaveModel(MLContext mlContext, ITransformer model, DataViewSchema inputSchema, string path)
        => SaveModel(mlContext, model, inputSchema, path, p => new FileStream(p, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16));

    /// <summary>The atomic save with an injectable writer.</summary>
    /// <param name="mlContext">The context that saves.</param>
    /// <param name="model">The fitted pipeline.</param>
    /// <param name="inputSchema">Its input schema.</param>
    /// <param name="path">Where the .zip goes.</param>
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

    /// <summary>
    /// A classifier as published, without training: pretrained weights that include their classifier (torchvision's
    /// files, Keras' files with top) predict the classes their publisher trained, by name — ImageNet's for the catalog's
    /// files (Keras' <c>decode_predictions</c>, torchvision's <c>weights.meta["categories"]</c>). The pipeline reads
    /// an <c>ImagePath</c> column like a trained one and can be saved and loaded the same way.
    /// </summary>
    /// <param name="mlContext">The context the pipeline belongs to.</param>
    /// <param name="weights">A catalog name (<c>resnet50.tv2_in1k</c>; <c>imagenet</c> with <paramref name="architecture"/>) or a weight file.</param>
    /// <param name="architecture">The registered architecture; null: the one the weights name.</param>
    /// <param name="classNames">The classes of a file the catalog does not know, in output order; null for catalog files.</param>
    /// <param name="customArchitecture">An architecture that is not registered (instead of <paramref name="architecture"/>).</param>
    /// <param name="source">Where named weights are looked for and downloaded (cache folder, offline mode); null: the defaults.</param>
    /// <exception cref="InvalidOperationException">The weights have no classifier (a headless file), or no known class names.</exception>
    public static ITransformer FromPretrained(MLContext mlContext, string weights, string? architecture = null, IReadOnlyList<string>? classNames = null,
        Models.ArchitectureConfig? customArchitecture = null, Weights.PretrainedWeightOptions? source = null)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentException.ThrowIfNullOrWhiteSpace(weights);
        var options = new ImageTransferTrainer.Options { Weights = weights, Architecture = architecture, CustomArchitecture = customArchitecture, WeightSource = source };
        options.Validate();
        var resolved = options.ResolveWeights()!;
        var names = classNames?.ToArray() ?? resolved.Entry?.GetClassNames()?.ToArray()
            ?? throw new InvalidOperationException(resolved.Entry is { } entry
                ? $"'{weights}' ({entry.Name}) has no classifier: it stops at the backbone's features. Train a classifier on it, or use FeaturizeImage."
                : $"The class names of '{resolved.Path}' are not known: pass classNames (in the order of the classifier's outputs).");
        using var file = Weights.PretrainedWeightFile.Open(resolved.Path);
        var config = file.Adapt(options.ResolveArchitecture());
        var preprocessing = options.ResolvePreprocessing();
        Models.ImageClassifierModel network;
        lock (Engine.GlobalGenerator.Gate) network = config.Build(names.Length, Models.HeadSpec.Default);
        try
        {
            var load = Weights.PretrainedWeights.Load(network, file);
            if (load.HeadReplaced)
                throw new InvalidOperationException($"'{resolved.Path}' has no {names.Length}-class classifier that fits {Models.Architectures.NameOf(config)} "
                    + $"(not loaded: {string.Join(", ", load.ReinitializedHead)}); a file without its top cannot predict classes.");
            var description = new Models.ClassifierDescription
            {
                FormatVersion = Models.ClassifierDescription.FormatVersionFor(config),
                ArchitectureName = Models.Architectures.NameOf(config),
                Architecture = config,
                Head = Models.HeadSpec.Default,
                ClassNames = names,
                Preprocessing = preprocessing,
                InitialWeights = File.Exists(weights) ? Path.GetFileName(weights) : weights,
                InitialWeightsSha256 = load.Sha256,
                InitialWeightsFormat = load.Format.ToString(),
            };
            var classifier = new ImageClassifierTransformer(mlContext, new Models.FittedClassifier(network, description), "Image", "Score", "PredictedLabel");
            var images = mlContext.Data.LoadFromEnumerable(Array.Empty<ImageFolderEntry>());
            var loader = mlContext.Transforms.LoadImagesRobust("Image", null, nameof(ImageFolderEntry.ImagePath)).Fit(images);
            return new TransformerChain<ITransformer>(loader, classifier);
        }
        catch
        {
            network.Dispose();
            throw;
        }
    }

    /// <summary>Loads a saved pipeline (registers this library's loaders with the context first).</summary>
    public static ITransformer LoadModel(MLContext mlContext, string path, out DataViewSchema inputSchema)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Model file '{path}' does not exist.", path);
        mlContext.RegisterImageTransfer();
        return mlContext.Model.Load(path, out inputSchema);
    }

    /// <summary>
    /// The description of the classifier in a saved model <c>.zip</c>: architecture, head, class names, preprocessing,
    /// training history. Reads the file through ML.NET without loading libtorch.
    /// </summary>
    public static Models.ClassifierDescription ReadDescription(string modelPath)
    {
        var model = LoadModel(new MLContext(), modelPath, out _);
        IEnumerable<ITransformer> Flatten(ITransformer t) => t is IEnumerable<ITransformer> chain ? chain.SelectMany(Flatten) : [t];
        var found = Flatten(model).OfType<ImageClassifierTransformer>().ToList();
        return found.Count == 1
            ? found[0].Description
            : throw new InvalidOperationException($"Model '{modelPath}' contains {found.Count} image classifiers; exactly one expected.");
    }

    /// <summary>The trained classifier inside a fitted or loaded pipeline (for explanations, export, inspection).</summary>
    public static Models.FittedClassifier FindClassifier(ITransformer model)
    {
        var found = Parts(model).OfType<ImageClassifierTransformer>().ToList();
        return found.Count switch
        {
            1 => found[0].Classifier,
            0 => throw new InvalidOperationException("The model contains no MLNet.ImageTransfer image classifier."),
            _ => throw new InvalidOperationException($"The model contains {found.Count} image classifiers; pick one from the chain."),
        };
    }

    /// <summary>The transformers of a chain, one level of nested chains flattened.</summary>
    static IEnumerable<ITransformer> Parts(ITransformer model)
    {
        IEnumerable<ITransformer> parts = model is IEnumerable<ITransformer> chain ? chain : [model];
        return parts.SelectMany(p => p is IEnumerable<ITransformer> nested ? nested : [p]);
    }

    static string[] ScoreSlotNames(DataViewSchema schema, string scoreColumn = "Score")
    {
        var column = schema[scoreColumn];
        VBuffer<ReadOnlyMemory<char>> slots = default;
        column.GetSlotNames(ref slots);
        return slots.DenseValues().Select(s => s.ToString()).ToArray();
    }
}

/// <summary>
/// A scan's rows with absolute image paths, made as a cursor reads them. The scan already holds every path once
/// (relative); an absolute copy built up front stayed alive beside it for the whole run, about 200 bytes per image
/// (the largest per-image cost in the benchmark runner's <c>rss</c> at 20,000 images). A read-only collection rather
/// than a lazy sequence, so that ML.NET's <c>LoadFromEnumerable</c> still knows the row count.
/// </summary>
internal sealed class AbsolutePathRows(string root, IReadOnlyList<ImageFolderEntry> relativeRows) : ICollection<ImageFolderEntry>
{
    public static AbsolutePathRows Of(ImageFolderScan scan) => new(scan.Root, scan.Images);

    public int Count => relativeRows.Count;
    public bool IsReadOnly => true;

    public IEnumerator<ImageFolderEntry> GetEnumerator()
    {
        foreach (var row in relativeRows)
            yield return new ImageFolderEntry { ImagePath = Path.Combine(root, row.ImagePath), Label = row.Label };
    }

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    public bool Contains(ImageFolderEntry item) => this.Any(r => r.ImagePath == item.ImagePath && r.Label == item.Label);
    public void CopyTo(ImageFolderEntry[] array, int arrayIndex) { foreach (var row in this) array[arrayIndex++] = row; }
    public void Add(ImageFolderEntry item) => throw new NotSupportedException("The rows of a folder scan are read-only.");
    public bool Remove(ImageFolderEntry item) => throw new NotSupportedException("The rows of a folder scan are read-only.");
    public void Clear() => throw new NotSupportedException("The rows of a folder scan are read-only.");
}
