using System.Globalization;
using MLNet.ImageTransfer.Data;

namespace MLNet.ImageTransfer.Weights;

/// <summary>Who publishes a catalog entry's file, which decides how it is obtained.</summary>
public enum WeightPublisher
{
    /// <summary>torchvision's <c>*_Weights</c> files on download.pytorch.org (downloaded and cached).</summary>
    Torchvision,
    /// <summary><c>keras.applications</c>' <c>.h5</c> files (downloaded and cached).</summary>
    Keras,
    /// <summary>A file inside a NuGet package: found in the application folder or the NuGet packages folder, never downloaded.</summary>
    NuGetPackage,
}

/// <summary>How a publisher states the expected content of a file.</summary>
public enum WeightHashAlgorithm
{
    /// <summary>The first hex digits of the SHA-256 (torchvision puts them in the file name; <c>torch.hub</c> checks them).</summary>
    Sha256Prefix,
    /// <summary>The whole SHA-256.</summary>
    Sha256,
    /// <summary>MD5 (Keras' <c>file_hash</c> of 32 hex digits).</summary>
    Md5,
}

/// <summary>The expected hash of a published file, as its publisher gives it.</summary>
public sealed record WeightHash(WeightHashAlgorithm Algorithm, string Value)
{
    /// <summary>True when a file with these lower-case hex digests is the published file.</summary>
    public bool Matches(string sha256, string md5) => Algorithm switch
    {
        WeightHashAlgorithm.Sha256Prefix => sha256.StartsWith(Value, StringComparison.OrdinalIgnoreCase),
        WeightHashAlgorithm.Sha256 => sha256.Equals(Value, StringComparison.OrdinalIgnoreCase),
        _ => md5.Equals(Value, StringComparison.OrdinalIgnoreCase),
    };

    /// <summary>The digest of the same kind, for messages: the SHA-256 or the MD5.</summary>
    public string Actual(string sha256, string md5) => Algorithm == WeightHashAlgorithm.Md5 ? $"md5 {md5}" : $"sha256 {sha256}";

    public override string ToString() => Algorithm switch
    {
        WeightHashAlgorithm.Sha256Prefix => $"sha256 {Value}…",
        WeightHashAlgorithm.Sha256 => $"sha256 {Value}",
        _ => $"md5 {Value}",
    };
}

/// <summary>
/// The preprocessing a published file was trained with, as its publisher states it: a mode whose numbers (channel
/// order, scale, mean, std) are the library's presets, and the geometry. torchvision's V2 weights differ from V1 only
/// here (resize 232 instead of 256 before the 224 crop).
/// </summary>
/// <param name="Mode"><c>torchvision</c> (torchvision's <c>ImageClassification</c>), <c>caffe</c> or <c>torch</c>
/// (Keras' <c>preprocess_input</c> modes), or <c>onnx-graph</c> (a preprocessing graph shipped beside the weights).</param>
/// <param name="Resize">torchvision: the shorter side before the centre crop; Keras: both sides (no crop).</param>
/// <param name="Crop">The centre crop's side, or null when the image is resized to the input size directly.</param>
/// <param name="Interpolation">The resize interpolation the publisher names (torchvision: bilinear), or null when it names none.</param>
/// <param name="Graph">For <c>onnx-graph</c>: the file name of the preprocessing graph.</param>
public sealed record PretrainedPreprocessing(string Mode, int Resize, int? Crop, string? Interpolation, string? Graph)
{
    /// <summary>The mode of weights whose preprocessing is a graph shipped beside them (ML.NET's ResNet18).</summary>
    public const string OnnxGraphMode = "onnx-graph";

    /// <summary>
    /// The library's preprocessing for these weights at the published input size, or null for <c>onnx-graph</c>
    /// (read from the graph itself).
    /// </summary>
    public ImagePreprocessing? ToImagePreprocessing() => Mode switch
    {
        "torchvision" when Crop is int crop => ImagePreprocessing.TorchVision(crop) with { CropFraction = (double)crop / Resize },
        "caffe" => ImagePreprocessing.KerasCaffe(Resize),
        "torch" => ImagePreprocessing.KerasTorch(Resize),
        _ => null,
    };

    public override string ToString()
    {
        var geometry = Crop is int crop ? $"resize {Resize}, crop {crop}" : $"resize to {Resize}×{Resize}";
        var interpolation = Interpolation is null ? "" : $", {Interpolation}";
        return Mode switch
        {
            OnnxGraphMode => $"read from {Graph} ({Resize}×{Resize} input)",
            "torchvision" => $"torchvision: {geometry}{interpolation}, ImageNet mean/std",
            _ => $"keras {Mode}: {geometry}{interpolation}",
        };
    }
}

/// <summary>A file inside a NuGet package, and where the package's build step copies it in the application folder.</summary>
/// <param name="Path">Inside the package (and its folder in the NuGet packages folder), e.g. <c>tools/DnnImageModels/…</c>.</param>
/// <param name="OutputPath">Relative to the application folder, where the package's build props copy it.</param>
public sealed record PackageFile(string Path, string OutputPath);

/// <summary>The NuGet package that ships an entry's file, with the files that must be beside it.</summary>
public sealed record NuGetPackageLocation(string Id, string Version, PackageFile File, IReadOnlyList<PackageFile> Companions);

/// <summary>
/// One published pretrained-weight file: what it is (architecture of our registry, classes, preprocessing, published
/// accuracy), where it comes from (URL or NuGet package) and how to recognise it (file name and hash as published).
/// The entries live in the catalog's data (<see cref="PretrainedWeightCatalog"/>), not in code.
/// </summary>
public sealed record PretrainedWeightEntry
{
    /// <summary>timm-style <c>architecture.tag</c>, e.g. <c>resnet50.tv2_in1k</c>, <c>densenet121_keras.keras_in1k</c>.</summary>
    public required string Name { get; init; }
    /// <summary>Other names accepted for it (torchvision's <c>ResNet50_Weights.IMAGENET1K_V2</c>, <c>mlnet-resnet18</c>).</summary>
    public IReadOnlyList<string> Aliases { get; init; } = [];
    /// <summary>The registered architecture these weights load into as they are (e.g. <c>resnet50_keras</c> for Keras' ResNet50).</summary>
    public required string Architecture { get; init; }
    public required WeightPublisher Source { get; init; }
    /// <summary>How the publisher names these weights (e.g. <c>torchvision.models.ResNet50_Weights.IMAGENET1K_V2</c>).</summary>
    public string? PublisherName { get; init; }
    public required WeightFormat Format { get; init; }
    /// <summary>Where the file is downloaded from; null for files found in a NuGet package.</summary>
    public string? Url { get; init; }
    /// <summary>The published file name: the name in the cache folder, and the name torch.hub / Keras give it in theirs.</summary>
    public required string FileName { get; init; }
    /// <summary>For <see cref="WeightPublisher.NuGetPackage"/>: the package and the file's place in it.</summary>
    public NuGetPackageLocation? Package { get; init; }
    public required WeightHash Hash { get; init; }
    /// <summary>File size in MB exactly as the publisher states it (torchvision's <c>_file_size</c>); not a byte count.</summary>
    public double? FileSizeMB { get; init; }
    /// <summary>File size in bytes where it is known exactly.</summary>
    public long? FileBytes { get; init; }
    /// <summary>The entry <c>imagenet</c> means for <see cref="Architecture"/> (torchvision's DEFAULT; the Keras file for <c>_keras</c> variants).</summary>
    public bool IsDefault { get; init; }
    /// <summary>Outputs of the file's classifier, or null when it has none (Keras "notop" files, feature extractors).</summary>
    public int? NumClasses { get; init; }
    /// <summary>The class-names set of the classifier (<c>imagenet-1k</c>), or null without one; see <see cref="PretrainedWeightCatalog.ClassNames"/>.</summary>
    public string? ClassNames { get; init; }
    /// <summary>Published ImageNet-1k top-1 accuracy in percent, where the publisher gives one.</summary>
    public double? Top1Accuracy { get; init; }
    public required PretrainedPreprocessing Preprocessing { get; init; }

    /// <summary>The class names of the classifier, in class-index order, or null without a classifier.</summary>
    public IReadOnlyList<string>? GetClassNames() => ClassNames is null ? null : PretrainedWeightCatalog.ClassNames(ClassNames);

    /// <summary>The size for display: published MB, or bytes as MB, or null.</summary>
    public string? DisplaySize => FileSizeMB is double mb ? mb.ToString("0.#", CultureInfo.InvariantCulture) + " MB"
        : FileBytes is long b ? (b / 1024.0 / 1024.0).ToString("0.#", CultureInfo.InvariantCulture) + " MiB" : null;

    public override string ToString() => Name;
}
