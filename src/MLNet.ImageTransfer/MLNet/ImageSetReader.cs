using System.Buffers;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;
using MLNet.ImageTransfer.Augmentation;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.MLNet.DataViews;
using MLNet.ImageTransfer.Training;

namespace MLNet.ImageTransfer;

/// <summary>
/// Reads an IDataView's image and label columns into <see cref="LabeledImageSet"/>s, in the geometry they are cached
/// at. Rows whose image is missing (<c>LoadImagesRobust</c> gives null for an unusable file) or whose image getter
/// throws (ML.NET's <c>LoadImages</c> on a corrupt file) are skipped and reported in <c>skipped</c>, with the path when
/// the data has one; one bad file never aborts training.
/// </summary>
/// <remarks>
/// <para>Decoding and resizing run on every core, in a bounded, order-keeping producer/consumer
/// (<see cref="OrderedParallel"/>): the cursor is read on the calling thread, a few images per worker are in flight,
/// and they are stored in row order, so the sets never depend on the number of threads.</para>
/// <para>When the image column comes straight from <c>LoadImagesRobust</c>, the files are decoded by the workers
/// themselves (file → cached bytes in one pass, uint8 throughout) rather than by the cursor; a file that cannot be
/// used is skipped with the decoder's reason (truncated, corrupt image data, …). Training images are then decoded
/// smaller by JPEG DCT scaling when they stay at least <see cref="TrainingReducingGap"/> times their cached size on
/// both sides; validation and evaluation images are always decoded at full size, exactly as scoring decodes them.
/// Other image columns (ML.NET's <c>LoadImages</c>, images from memory) are read through the cursor, their resizing
/// done by the workers.</para>
/// </remarks>
internal static class ImageSetReader
{
    /// <summary>
    /// How much larger than its cached size a training JPEG must stay when it is decoded smaller by DCT scaling
    /// (1/2, 1/4, 1/8): twice, on both sides. Pillow's <c>reducing_gap</c> idea; measured on weather4's photos with
    /// libjpeg-turbo's scaling, a 224-pixel evaluation crop after such a decode differs from the full decode by 0.25
    /// grey levels on average (single edge pixels by up to 17).
    /// </summary>
    public const double TrainingReducingGap = 2.0;

    /// <summary>One set at one geometry (null <paramref name="source"/>: the evaluation geometry, full-size decoding).</summary>
    public static LabeledImageSet Read(IDataView data, string imageColumn, string labelColumn, string[] classNames,
        ImagePreprocessing preprocessing, string what, out IReadOnlyList<SkippedFile> skipped, AugmentationSource? source = null, double reducingGap = 0)
    {
        var (set, _) = ReadSplit(data, imageColumn, labelColumn, classNames, preprocessing, what, out skipped,
            source ?? AugmentationSource.Evaluation(preprocessing), reducingGap, validationFraction: 0, seed: 0);
        return set;
    }

    public static LabeledImageSet Read(IDataView data, string imageColumn, string labelColumn, string[] classNames,
        ImagePreprocessing preprocessing, string what, AugmentationSource? source = null)
        => Read(data, imageColumn, labelColumn, classNames, preprocessing, what, out _, source);

    /// <summary>
    /// The training set at <paramref name="trainSource"/>'s geometry and, with <paramref name="validationFraction"/>
    /// &gt; 0, a stratified validation split at the evaluation geometry, in one pass: the split is drawn from the
    /// labels first (per class, <c>round(fraction·n)</c> rows, seeded), so each image is decoded once, straight into
    /// the geometry of its set.
    /// </summary>
    public static (LabeledImageSet Train, LabeledImageSet? Validation) ReadSplit(IDataView data, string imageColumn, string labelColumn,
        string[] classNames, ImagePreprocessing preprocessing, string what, out IReadOnlyList<SkippedFile> skipped,
        AugmentationSource trainSource, double reducingGap, double validationFraction, int seed)
    {
        var schema = data.Schema;
        var image = schema.GetColumnOrNull(imageColumn)
            ?? throw new ArgumentException($"The {what} has no column '{imageColumn}'. It must be transformed with the same LoadImages as the training data (e.g. prefix.Fit(train).Transform({what.Replace(' ', '_')})).");
        if (image.Type is not ImageDataViewType)
            throw new ArgumentException($"Column '{imageColumn}' of the {what} must hold images (from LoadImages), but is {image.Type}.");
        var label = schema.GetColumnOrNull(labelColumn) ?? throw new ArgumentException($"The {what} has no label column '{labelColumn}'.");
        CheckLabel(label, labelColumn, classNames, what);

        var files = FileSource.Of(data, imageColumn, label);
        // The validation split, drawn from the labels alone (a cursor that decodes nothing).
        HashSet<int>? validationRows = null;
        if (validationFraction > 0)
        {
            var labels = ReadLabels(files?.Input ?? data, labelColumn, classNames, what);
            validationRows = [.. LabeledImageSet.StratifiedSample(labels, validationFraction, new Random(seed))];
        }

        var evaluation = AugmentationSource.Evaluation(preprocessing);
        long validationBudget = validationRows is null ? 0 : (long)(LabeledImageSet.DefaultMemoryBudgetBytes * validationFraction);
        int expected = (int)Math.Min(data.GetRowCount() ?? 0, 1 << 24);
        var train = new LabeledImageSet(LabeledImageSet.DefaultMemoryBudgetBytes - validationBudget, expected) { Source = trainSource.IsEvaluation ? null : trainSource };
        var validation = validationRows is null ? null : new LabeledImageSet(validationBudget);
        var skips = new List<SkippedFile>();
        skipped = skips;
        int rows = 0, missingLabels = 0, missingImages = 0;
        try
        {
            OrderedParallel.Run(
                files is not null
                    ? files.Rows(classNames, what, () => rows++, () => missingLabels++)
                    : CursorRows(data, image, label, classNames, what, () => rows++, () => missingLabels++),
                row =>
                {
                    bool toValidation = validationRows?.Contains(row.Labelled) == true;
                    return Prepare(row, toValidation ? evaluation : trainSource, toValidation ? 0 : reducingGap, files);
                },
                (row, result) =>
                {
                    if (result.Bytes is null)
                    {
                        missingImages++;
                        skips.Add(new(row.Name, result.Problem ?? "missing, unreadable or not a usable image"));
                        return;
                    }
                    try
                    {
                        var target = validationRows?.Contains(row.Labelled) == true ? validation! : train;
                        target.Add(result.Bytes.AsSpan(0, 3 * result.Height * result.Width), result.Height, result.Width, row.Label);
                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(result.Bytes);
                    }
                },
                OrderedParallel.DefaultWorkers, window: 2 * OrderedParallel.DefaultWorkers + 2,
                discard: result => { if (result.Bytes is not null) ArrayPool<byte>.Shared.Return(result.Bytes); });

            if (train.Count == 0)
                throw new InvalidOperationException($"The {what} has no usable rows ({rows} rows: {missingLabels} without label, {missingImages} without image"
                    + (skips.Count > 0 ? $", e.g. {skips[0].Path}: {skips[0].Reason}" : "") + ").");
            return (train, validation);
        }
        catch
        {
            train.Dispose();
            validation?.Dispose();
            throw;
        }
    }

    /// <summary>One row to read: its label, the index among labelled rows, its name for reports, and what to decode.</summary>
    sealed record Row(int Label, int Labelled, string Name)
    {
        /// <summary>The file to decode (rows of a <c>LoadImagesRobust</c> column).</summary>
        public string? File { get; init; }

        /// <summary>A copy of the image's pixels, from the shared pool (rows read through the cursor).</summary>
        public byte[]? Pixels { get; init; }
        public int Width { get; init; }
        public int Height { get; init; }
        public bool IsRgba { get; init; }

        /// <summary>Why the cursor gave no image.</summary>
        public string? Problem { get; init; }
    }

    readonly record struct Prepared(byte[]? Bytes, int Width, int Height, string? Problem);

    /// <summary>On a worker: the row's image in the set's geometry, as pooled bytes.</summary>
    static Prepared Prepare(Row row, AugmentationSource geometry, double reducingGap, FileSource? files)
    {
        if (row.File is { } file)
        {
            var bytes = ImageDecoder.DecodeResampled(file, files!.Options, geometry.Plan, reducingGap, geometry.Layout, geometry.Preprocessing.Channels,
                out var plan, out var problem);
            return new(bytes, plan.Width, plan.Height, problem);
        }
        if (row.Pixels is not { } pixels) return new(null, 0, 0, row.Problem);
        try
        {
            var plan = geometry.Plan(row.Width, row.Height);
            var result = ArrayPool<byte>.Shared.Rent(3 * plan.Width * plan.Height);
            var source = new PixelSource(pixels.AsSpan(0, row.Width * row.Height * 4), row.Width, row.Height, row.Width * 4, 4,
                red: row.IsRgba ? 0 : 2, green: 1, blue: row.IsRgba ? 2 : 0);
            ImageGeometry.Resample(source, plan, result, geometry.Layout, geometry.Preprocessing.Channels);
            return new(result, plan.Width, plan.Height, null);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(pixels);
        }
    }

    /// <summary>Rows read through the cursor: the image getter decodes (one image at a time); its pixels are copied, composited over white, for a worker to resize.</summary>
    static IEnumerable<Row> CursorRows(IDataView data, DataViewSchema.Column image, DataViewSchema.Column label, string[] classNames, string what,
        Action counted, Action unlabelled)
    {
        // The path column, when present, names skipped rows (ImageFolder's rows and the workflow's have it).
        var pathColumn = data.Schema.GetColumnOrNull(ImageFolder.ImagePathColumn) is { Type: TextDataViewType } p ? p : (DataViewSchema.Column?)null;
        using var cursor = data.GetRowCursor(pathColumn is { } pc ? [image, label, pc] : [image, label]);
        var getImage = cursor.GetGetter<MLImage>(image);
        var getLabel = LabelReader(cursor, label, classNames, what);
        var getPath = pathColumn is { } pathCol ? cursor.GetGetter<ReadOnlyMemory<char>>(pathCol) : null;
        MLImage img = null!;
        ReadOnlyMemory<char> path = default;
        int row = 0, labelled = 0;
        string RowName()
        {
            getPath?.Invoke(ref path);
            return getPath is null || path.IsEmpty ? $"row {row}" : path.ToString();
        }
        while (cursor.MoveNext())
        {
            row++;
            counted();
            int y = -1;
            getLabel(ref y);
            if (y < 0) { unlabelled(); continue; }
            int index = labelled++;
            string? problem = null;
            try
            {
#pragma warning disable CS8601 // ML.NET's getters are not nullable-annotated; a missing image comes back as null and is checked below.
                getImage(ref img);
#pragma warning restore CS8601
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // ML.NET's LoadImages throws for a corrupt file; the cursor itself can go on.
                img = null!;
                problem = $"cannot be decoded: {e.GetBaseException().Message}";
            }
            if (problem is not null || img is null || img.Width == 0 || img.Height == 0)
            {
                yield return new Row(y, index, RowName()) { Problem = problem };
                continue;
            }
            // The getter disposes this image when it is called for the next row: copy its pixels (opaque) for the worker.
            var (copy, isRgba) = CopyOpaque(img);
            yield return new Row(y, index, RowName()) { Pixels = copy, Width = img.Width, Height = img.Height, IsRgba = isRgba };
        }
    }

    /// <summary>The image's pixels, composited over white, rows packed, in a pooled buffer.</summary>
    static (byte[] Pixels, bool IsRgba) CopyOpaque(MLImage image)
    {
        using var opaque = ImageGeometry.OpaquePixels.Of(image);
        var source = opaque.Source;
        var copy = ArrayPool<byte>.Shared.Rent(image.Width * image.Height * 4);
        for (int r = 0; r < image.Height; r++)
            source.Data.Slice(r * source.RowBytes, image.Width * 4).CopyTo(copy.AsSpan(r * image.Width * 4));
        return (copy, source.Red == 0);
    }

    /// <summary>Labels of the labelled rows, in order (what the validation split is drawn from).</summary>
    static List<int> ReadLabels(IDataView data, string labelColumn, string[] classNames, string what)
    {
        var label = data.Schema[labelColumn];
        using var cursor = data.GetRowCursor([label]);
        var getLabel = LabelReader(cursor, label, classNames, what);
        var labels = new List<int>();
        while (cursor.MoveNext())
        {
            int y = -1;
            getLabel(ref y);
            if (y >= 0) labels.Add(y);
        }
        return labels;
    }

    /// <summary>
    /// The files behind an image column that <c>LoadImagesRobust</c> computes directly from a path column: then the
    /// workers decode the files themselves instead of the cursor decoding them one by one.
    /// </summary>
    sealed class FileSource(IDataView input, DataViewSchema.Column pathColumn, DataViewSchema.Column labelColumn, string? folder, ImageDecodeOptions options)
    {
        public IDataView Input => input;
        public ImageDecodeOptions Options => options;

        public static FileSource? Of(IDataView data, string imageColumn, DataViewSchema.Column label)
        {
            if (data is not MappedDataView<ReadOnlyMemory<char>, MLImage?> view || view.Mapping is not RobustImageLoadingTransformer loader
                || loader.OutputColumnName != imageColumn) return null;
            var input = view.Input;
            // The label must pass through the loader unchanged, and the paths must be text.
            if (input.Schema.GetColumnOrNull(label.Name) is not { } inputLabel || inputLabel.Index != label.Index || !inputLabel.Type.Equals(label.Type)) return null;
            if (input.Schema.GetColumnOrNull(loader.InputColumnName) is not { Type: TextDataViewType } paths) return null;
            return new FileSource(input, paths, inputLabel, loader.ImageFolder, loader.DecodeOptions);
        }

        public IEnumerable<Row> Rows(string[] classNames, string what, Action counted, Action unlabelled)
        {
            using var cursor = input.GetRowCursor([labelColumn, pathColumn]);
            var getLabel = LabelReader(cursor, labelColumn, classNames, what);
            var getPath = cursor.GetGetter<ReadOnlyMemory<char>>(pathColumn);
            ReadOnlyMemory<char> path = default;
            int row = 0, labelled = 0;
            while (cursor.MoveNext())
            {
                row++;
                counted();
                int y = -1;
                getLabel(ref y);
                if (y < 0) { unlabelled(); continue; }
                getPath(ref path);
                var name = path.IsEmpty ? $"row {row}" : path.ToString();
                if (path.IsEmpty)
                {
                    yield return new Row(y, labelled++, name);
                    continue;
                }
                yield return new Row(y, labelled++, name) { File = folder is null ? name : Path.Combine(folder, name) };
            }
        }
    }

    static void CheckLabel(DataViewSchema.Column label, string labelColumn, string[] classNames, string what)
    {
        switch (label.Type)
        {
            case KeyDataViewType key when key.Count == (ulong)classNames.Length:
            case TextDataViewType:
                return;
            case KeyDataViewType key:
                throw new ArgumentException($"The {what}'s label column '{labelColumn}' has {key.Count} classes but the training data has {classNames.Length}.");
            default:
                throw new ArgumentException($"The {what}'s label column '{labelColumn}' must be a key or text, but is {label.Type}.");
        }
    }

    static ValueGetter<int> LabelReader(DataViewRowCursor cursor, DataViewSchema.Column column, string[] classNames, string what)
        => column.Type is KeyDataViewType ? KeyLabel(cursor, column) : TextLabel(cursor, column, classNames, what);

    static ValueGetter<int> KeyLabel(DataViewRowCursor cursor, DataViewSchema.Column column)
    {
        var get = cursor.GetGetter<uint>(column);
        uint key = 0;
        return (ref int value) => { get(ref key); value = key == 0 ? -1 : (int)key - 1; };
    }

    static ValueGetter<int> TextLabel(DataViewRowCursor cursor, DataViewSchema.Column column, string[] classNames, string what)
    {
        var index = classNames.Select((n, i) => (n, i)).ToDictionary(p => p.n, p => p.i, StringComparer.Ordinal);
        var get = cursor.GetGetter<ReadOnlyMemory<char>>(column);
        ReadOnlyMemory<char> text = default;
        return (ref int value) =>
        {
            get(ref text);
            var s = text.ToString();
            if (s.Length == 0) { value = -1; return; }
            value = index.TryGetValue(s, out var i) ? i
                : throw new InvalidDataException($"The {what} has label '{s}', which is not among the training classes ({string.Join(", ", classNames)}).");
        };
    }
}
