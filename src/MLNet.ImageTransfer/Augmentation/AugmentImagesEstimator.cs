using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using Microsoft.ML.Transforms.Image;
using MLNet.ImageTransfer;
using MLNet.ImageTransfer.Augmentation;
using MLNet.ImageTransfer.MLNet.DataViews;
using MLNet.ImageTransfer.MLNet.Persistence;

[assembly: ImageTransferModelEntry(typeof(AugmentImagesTransformer), nameof(AugmentImagesTransformer.Format))]

namespace MLNet.ImageTransfer;

/// <summary><c>mlContext.Transforms.AugmentImages(…)</c>: image augmentation as a pipeline step.</summary>
public static class ImageAugmentationCatalog
{
    /// <summary>
    /// Augments the images of <paramref name="imageColumnName"/> while the image trainer that follows trains on them —
    /// and only then. Put it between <c>LoadImages</c> and the DenseNet/ResNet/VGG trainer:
    /// <code>
    /// ml.Transforms.LoadImages("Image", folder, "ImagePath")
    ///     .Append(ml.Transforms.AugmentImages(AugmentationPipeline.Parse("hflip,rotate=20,zoom=0.2")))
    ///     .Append(ml.MulticlassClassification.Trainers.ResNet(options))
    /// </code>
    /// Its <c>Transform</c> passes every row through unchanged (it only records the augmentation on the image column,
    /// where the trainer reads it), so evaluation, <c>Transform</c> of test data, prediction engines and the saved
    /// model never augment and stay deterministic. Same as setting the trainer's <c>Augmentation</c> option.
    /// </summary>
    public static AugmentImagesEstimator AugmentImages(this TransformsCatalog catalog, AugmentationPipeline augmentation, string imageColumnName = "Image")
        => new(ImageTransferModelRegistration.EnsureRegistered(catalog), augmentation, imageColumnName);

    /// <summary><see cref="AugmentImages(TransformsCatalog, AugmentationPipeline, string)"/> from a spec string, e.g. <c>"hflip,rotate=20,zoom=0.2"</c> (see <see cref="AugmentationSpec"/>).</summary>
    public static AugmentImagesEstimator AugmentImages(this TransformsCatalog catalog, string augmentation, string imageColumnName = "Image")
        => catalog.AugmentImages(AugmentationPipeline.Parse(augmentation), imageColumnName);
}

/// <summary>Estimator of <see cref="AugmentImagesTransformer"/>; fitting learns nothing.</summary>
public sealed class AugmentImagesEstimator : IEstimator<AugmentImagesTransformer>
{
    readonly IHostEnvironment _env;

    internal AugmentImagesEstimator(IHostEnvironment env, AugmentationPipeline augmentation, string imageColumnName)
    {
        ArgumentNullException.ThrowIfNull(augmentation);
        ArgumentException.ThrowIfNullOrWhiteSpace(imageColumnName);
        augmentation.Validate();
        _env = env;
        Augmentation = augmentation;
        ImageColumnName = imageColumnName;
    }

    public AugmentationPipeline Augmentation { get; }
    public string ImageColumnName { get; }

    public AugmentImagesTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        GetOutputSchema(SchemaShapes.FromSchema(input.Schema));
        return new AugmentImagesTransformer(_env, Augmentation, ImageColumnName);
    }

    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        if (!inputSchema.TryFindColumn(ImageColumnName, out var column))
            throw new ArgumentException($"AugmentImages: input has no column '{ImageColumnName}'. Put ml.Transforms.LoadImages(\"{ImageColumnName}\", …) before it.");
        if (column.ItemType is not ImageDataViewType || column.Kind != SchemaShape.Column.VectorKind.Scalar)
            throw new ArgumentException($"AugmentImages: column '{ImageColumnName}' must hold images (from LoadImages), but is {column.ItemType}.");
        return inputSchema;
    }
}

/// <summary>
/// Passes its input through unchanged and marks the image column with the augmentation (a
/// <see cref="AnnotationName"/> annotation holding the spec string); the image trainers read that mark and augment
/// their training images, per epoch. Nothing else ever augments: scoring, evaluation and loaded models see the
/// images exactly as they come. Saved in the model <c>.zip</c> (as its spec), so a loaded pipeline has the same steps.
/// </summary>
public sealed class AugmentImagesTransformer : ITransformer
{
    /// <summary>Name of the annotation on the image column that carries the augmentation spec.</summary>
    public const string AnnotationName = "ImageAugmentation";

    internal static readonly ModelEntryFormat Format = new("IMGTRANSFER-AUGMENT", "IMGAUGMT", version: 1, minReadableVersion: 1, load: Load);
    const string SettingsPart = "augmentation.json";

    readonly IHost _host;

    internal AugmentImagesTransformer(IHostEnvironment env, AugmentationPipeline augmentation, string imageColumnName)
    {
        ArgumentNullException.ThrowIfNull(env);
        _host = env.Register(nameof(AugmentImagesTransformer));
        Augmentation = augmentation;
        ImageColumnName = imageColumnName;
        ImageTransferModelRegistration.EnsureRegistered(env);
    }

    public AugmentationPipeline Augmentation { get; }
    public string ImageColumnName { get; }

    public bool IsRowToRowMapper => true;

    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        var image = inputSchema.GetColumnOrNull(ImageColumnName)
            ?? throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Could not find input column '{ImageColumnName}'.");
        if (image.Type is not ImageDataViewType)
            throw new ArgumentException($"AugmentImages: column '{ImageColumnName}' must hold images (from LoadImages), but is {image.Type}.", nameof(inputSchema));
        var spec = Augmentation.ToSpec().AsMemory();
        var builder = new DataViewSchema.Builder();
        foreach (var column in inputSchema)
        {
            if (column.Index != image.Index)
            {
                builder.AddColumn(column.Name, column.Type, column.Annotations);
                continue;
            }
            var annotations = new DataViewSchema.Annotations.Builder();
            annotations.Add(column.Annotations, name => name != AnnotationName);
            annotations.Add(AnnotationName, TextDataViewType.Instance, (ref ReadOnlyMemory<char> value) => value = spec);
            builder.AddColumn(column.Name, column.Type, annotations.ToAnnotations());
        }
        return builder.ToSchema();
    }

    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return new MarkedDataView(input, GetOutputSchema(input.Schema));
    }

    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema) => new Mapper(inputSchema, GetOutputSchema(inputSchema));

    void ICanSaveModel.Save(ModelSaveContext ctx)
        => ImageTransferModelFormat.Save(ctx, Format,
            [(SettingsPart, s => JsonSerializer.Serialize(s, new Settings(ImageColumnName, Augmentation.ToSpec())))]);

    static ITransformer Load(IHostEnvironment env, LoadedParts parts)
    {
        var settings = parts.Read(SettingsPart, s => JsonSerializer.Deserialize<Settings>(s))
            ?? throw new InvalidDataException("The augmentation entry has no settings.");
        AugmentationPipeline augmentation;
        try
        {
            augmentation = AugmentationPipeline.Parse(settings.Spec);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"The model's augmentation '{settings.Spec}' cannot be read by this version: {e.Message}", e);
        }
        return new AugmentImagesTransformer(env, augmentation, settings.ImageColumn);
    }

    /// <summary>The augmentation an <see cref="AugmentImagesTransformer"/> recorded on this column, or null.</summary>
    public static AugmentationPipeline? FromAnnotation(DataViewSchema.Column imageColumn)
    {
        var annotation = imageColumn.Annotations.Schema.GetColumnOrNull(AnnotationName);
        if (annotation is null || annotation.Value.Type is not TextDataViewType) return null;
        ReadOnlyMemory<char> spec = default;
        imageColumn.Annotations.GetValue(AnnotationName, ref spec);
        return AugmentationPipeline.Parse(spec.ToString());
    }

    sealed record Settings(string ImageColumn, string Spec);

    /// <summary>The input, rows untouched, under the marked schema (same columns, same indices).</summary>
    sealed class MarkedDataView(IDataView input, DataViewSchema schema) : IDataView
    {
        public bool CanShuffle => input.CanShuffle;
        public DataViewSchema Schema => schema;
        public long? GetRowCount() => input.GetRowCount();

        public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
            => new MarkedCursor(input.GetRowCursor(Inner(columnsNeeded), rand), schema);

        public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null)
            => input.GetRowCursorSet(Inner(columnsNeeded), n, rand).Select(c => (DataViewRowCursor)new MarkedCursor(c, schema)).ToArray();

        IEnumerable<DataViewSchema.Column> Inner(IEnumerable<DataViewSchema.Column> columns) => columns.Select(c => input.Schema[c.Index]).ToList();
    }

    sealed class MarkedCursor(DataViewRowCursor inner, DataViewSchema schema) : DataViewRowCursor
    {
        public override DataViewSchema Schema => schema;
        public override long Position => inner.Position;
        public override long Batch => inner.Batch;
        public override ValueGetter<DataViewRowId> GetIdGetter() => inner.GetIdGetter();
        public override bool IsColumnActive(DataViewSchema.Column column) => inner.IsColumnActive(inner.Schema[column.Index]);
        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column) => inner.GetGetter<TValue>(inner.Schema[column.Index]);
        public override bool MoveNext() => inner.MoveNext();
        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }
    }

    sealed class MarkedRow(DataViewRow inner, DataViewSchema schema) : DataViewRow
    {
        public override DataViewSchema Schema => schema;
        public override long Position => inner.Position;
        public override long Batch => inner.Batch;
        public override ValueGetter<DataViewRowId> GetIdGetter() => inner.GetIdGetter();
        public override bool IsColumnActive(DataViewSchema.Column column) => inner.IsColumnActive(inner.Schema[column.Index]);
        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column) => inner.GetGetter<TValue>(inner.Schema[column.Index]);
        // The input row belongs to the caller (as with the other row mappers): not disposed here.
    }

    sealed class Mapper(DataViewSchema inputSchema, DataViewSchema outputSchema) : IRowToRowMapper
    {
        public DataViewSchema InputSchema => inputSchema;
        public DataViewSchema OutputSchema => outputSchema;
        public IEnumerable<DataViewSchema.Column> GetDependencies(IEnumerable<DataViewSchema.Column> dependingColumns)
            => dependingColumns.Select(c => inputSchema[c.Index]).ToList();
        public DataViewRow GetRow(DataViewRow input, IEnumerable<DataViewSchema.Column> activeColumns) => new MarkedRow(input, outputSchema);
    }
}
