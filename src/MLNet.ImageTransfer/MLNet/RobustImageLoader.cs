using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using Microsoft.ML.Transforms.Image;
using MLNet.ImageTransfer;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.MLNet.DataViews;
using MLNet.ImageTransfer.MLNet.Persistence;

[assembly: ImageTransferModelEntry(typeof(RobustImageLoadingTransformer), nameof(RobustImageLoadingTransformer.Format))]

namespace MLNet.ImageTransfer;

/// <summary><c>mlContext.Transforms.LoadImagesRobust(…)</c>: ML.NET's <c>LoadImages</c> for real-world folders.</summary>
public static class RobustImageLoadingCatalog
{
    /// <summary>
    /// Loads the image files named in <paramref name="inputColumnName"/> into an image column, like ML.NET's
    /// <c>LoadImages</c> (same column type, so every image transform and the DenseNet/ResNet/VGG trainers accept it),
    /// but through <see cref="ImageDecoder"/>: format by content, EXIF orientation applied, grayscale / palette /
    /// 16-bit / CMYK / animated images handled, transparency over white, huge images bounded by
    /// <paramref name="decodeOptions"/>. A file that cannot be used yields a missing image (null) instead of aborting
    /// the pass: the trainers skip such rows and say so, the classifier scores them as missing (NaN).
    /// </summary>
    /// <param name="catalog">The transforms catalog (<c>mlContext.Transforms</c>).</param>
    /// <param name="outputColumnName">The image column to add.</param>
    /// <param name="imageFolder">Folder relative paths are resolved against; null for absolute paths.</param>
    /// <param name="inputColumnName">Text column with the file paths.</param>
    /// <param name="decodeOptions">Limits (decompression-bomb guard, largest side); saved with the model.</param>
    public static RobustImageLoadingEstimator LoadImagesRobust(this TransformsCatalog catalog, string outputColumnName, string? imageFolder,
        string inputColumnName, ImageDecodeOptions? decodeOptions = null)
        => new(ImageTransferModelRegistration.EnsureRegistered(catalog), outputColumnName, imageFolder, inputColumnName, decodeOptions ?? ImageDecodeOptions.Default);
}

/// <summary>Estimator of <see cref="RobustImageLoadingTransformer"/>; fitting learns nothing.</summary>
public sealed class RobustImageLoadingEstimator : IEstimator<RobustImageLoadingTransformer>
{
    readonly IHostEnvironment _env;

    internal RobustImageLoadingEstimator(IHostEnvironment env, string outputColumnName, string? imageFolder, string inputColumnName, ImageDecodeOptions decodeOptions)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(outputColumnName);
        ArgumentException.ThrowIfNullOrWhiteSpace(inputColumnName);
        decodeOptions.Validate();
        _env = env;
        OutputColumnName = outputColumnName;
        ImageFolder = imageFolder;
        InputColumnName = inputColumnName;
        DecodeOptions = decodeOptions;
    }

    public string OutputColumnName { get; }
    public string? ImageFolder { get; }
    public string InputColumnName { get; }
    public ImageDecodeOptions DecodeOptions { get; }

    public RobustImageLoadingTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var transformer = new RobustImageLoadingTransformer(_env, OutputColumnName, ImageFolder, InputColumnName, DecodeOptions);
        transformer.GetOutputSchema(input.Schema); // validates the input column
        return transformer;
    }

    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        if (!inputSchema.TryFindColumn(InputColumnName, out var column))
            throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Could not find input column '{InputColumnName}'.");
        if (column.ItemType is not TextDataViewType || column.Kind != SchemaShape.Column.VectorKind.Scalar)
            throw new ArgumentException($"LoadImagesRobust: column '{InputColumnName}' must hold file paths (text), but is {column.ItemType}.");
        return SchemaShapes.Append(inputSchema, RobustImageLoadingTransformer.Columns(OutputColumnName));
    }
}

/// <summary>
/// Adds an image column decoded by <see cref="ImageDecoder"/> from a column of file paths; an unusable file gives a
/// missing (null) image. Images follow ML.NET's <c>LoadImages</c> ownership rule: the getter disposes the image it
/// handed out for the previous row when it is called for the next one. Saved in the model <c>.zip</c> (column names,
/// folder and decode limits), so a loaded pipeline decodes exactly as training did.
/// </summary>
public sealed class RobustImageLoadingTransformer : RowMappingTransformer<ReadOnlyMemory<char>, MLImage?>
{
    internal static readonly ModelEntryFormat Format = new("IMGTRANSFER-IMAGELOADER", "IMGLOADR", version: 1, minReadableVersion: 1, load: Load);
    const string SettingsPart = "loader.json";

    readonly IReadOnlyList<OutputColumn<MLImage?>> _outputs;

    internal RobustImageLoadingTransformer(IHostEnvironment env, string outputColumnName, string? imageFolder, string inputColumnName, ImageDecodeOptions decodeOptions)
        : base(env, nameof(RobustImageLoadingTransformer), inputColumnName)
    {
        decodeOptions.Validate();
        OutputColumnName = outputColumnName;
        ImageFolder = imageFolder;
        DecodeOptions = decodeOptions;
        _outputs = Columns(outputColumnName);
        ImageTransferModelRegistration.EnsureRegistered(env);
    }

    public string OutputColumnName { get; }
    public string? ImageFolder { get; }
    public ImageDecodeOptions DecodeOptions { get; }

    protected override IReadOnlyList<OutputColumn<MLImage?>> OutputColumns => _outputs;

    internal static IReadOnlyList<OutputColumn<MLImage?>> Columns(string name) =>
    [
        OutputColumn<MLImage?>.Create<MLImage>(name, new ImageDataViewType(), (MLImage? image, ref MLImage value) =>
        {
            // LoadImages' rule: the previous row's image, held in the caller's variable, is released now.
            if (!ReferenceEquals(value, image)) value?.Dispose();
            value = image!;
        }),
    ];

    protected override void CheckInputColumn(DataViewSchema.Column column)
    {
        if (column.Type is not TextDataViewType)
            throw new ArgumentException($"LoadImagesRobust: column '{column.Name}' must hold file paths (text), but is {column.Type}.", nameof(column));
    }

    protected override void Map(ReadOnlySpan<ReadOnlyMemory<char>> inputs, Span<MLImage?> results)
    {
        for (int i = 0; i < inputs.Length; i++)
        {
            var path = inputs[i].ToString();
            if (path.Length == 0) { results[i] = null; continue; }
            var full = ImageFolder is null ? path : Path.Combine(ImageFolder, path);
            ImageDecoder.TryDecode(full, DecodeOptions, out var image, out _);
            results[i] = image;
        }
    }

    protected override void SaveModel(ModelSaveContext ctx)
        => ImageTransferModelFormat.Save(ctx, Format,
            [(SettingsPart, s => JsonSerializer.Serialize(s, new Settings(OutputColumnName, ImageFolder, InputColumnName, DecodeOptions.MaxPixels, DecodeOptions.MaxSide, DecodeOptions.MaxAspectRatio)))]);

    static ITransformer Load(IHostEnvironment env, LoadedParts parts)
    {
        var s = parts.Read(SettingsPart, Settings.Read);
        var options = new ImageDecodeOptions { MaxPixels = s.MaxPixels, MaxSide = s.MaxSide, MaxAspectRatio = s.MaxAspectRatio };
        try
        {
            options.Validate();
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"The model's image loader settings are invalid: {e.Message}", e);
        }
        return new RobustImageLoadingTransformer(env, s.OutputColumn, s.ImageFolder, s.InputColumn, options);
    }

    sealed record Settings(string OutputColumn, string? ImageFolder, string InputColumn, long MaxPixels, int MaxSide, double MaxAspectRatio)
    {
        /// <summary>
        /// Reads what the serializer wrote, with <see cref="JsonDocument"/>: a scoring process loads this entry first, and
        /// the reflection serializer's first use costs more than the rest of loading a model. Property names match as the
        /// serializer matches constructor parameters (case-insensitively).
        /// </summary>
        public static Settings Read(Stream stream)
        {
            using var document = JsonDocument.Parse(stream);
            if (document.RootElement.ValueKind != JsonValueKind.Object) throw new InvalidDataException("The image loader entry has no settings.");
            var fields = document.RootElement.EnumerateObject().ToDictionary(p => p.Name, p => p.Value, StringComparer.OrdinalIgnoreCase);
            JsonElement Field(string name) => fields.TryGetValue(name, out var value) ? value : throw new InvalidDataException($"The image loader settings have no '{name}'.");
            try
            {
                return new Settings(Field(nameof(OutputColumn)).GetString()!, fields.TryGetValue(nameof(ImageFolder), out var folder) ? folder.GetString() : null,
                    Field(nameof(InputColumn)).GetString()!, Field(nameof(MaxPixels)).GetInt64(), Field(nameof(MaxSide)).GetInt32(), Field(nameof(MaxAspectRatio)).GetDouble());
            }
            catch (Exception e) when (e is InvalidOperationException or FormatException)
            {
                throw new InvalidDataException($"The image loader settings are invalid: {e.Message}", e);
            }
        }
    }
}
