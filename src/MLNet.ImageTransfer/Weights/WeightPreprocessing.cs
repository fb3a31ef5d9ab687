using System.Globalization;
using MLNet.ImageTransfer.Data;

namespace MLNet.ImageTransfer.Weights;

/// <summary>
/// Ties preprocessing to the source of the weights, so that a mismatch cannot happen by accident: ML.NET's ResNet18
/// (an ONNX file with its preprocessing graph beside it) to the mean image that graph subtracts; Keras
/// <c>.h5</c> weights were trained on Keras' <c>preprocess_input</c> of their family ("caffe" for VGG and ResNet,
/// "torch" for DenseNet); PyTorch, safetensors and other ONNX weights (torchvision, timm, the ONNX model zoo) on
/// torchvision's ImageNet normalisation.
/// </summary>
public static class WeightPreprocessing
{
    /// <summary>The preprocessing that weights of <paramref name="format"/> for <paramref name="family"/> expect.</summary>
    public static ImagePreprocessing Implied(WeightFormat format, string family, int imageSize = 224) => format switch
    {
        WeightFormat.KerasH5 => family switch
        {
            "densenet" => ImagePreprocessing.KerasTorch(imageSize),
            _ => ImagePreprocessing.KerasCaffe(imageSize), // keras.applications' VGG16/19 and ResNet50/101/152
        },
        _ => ImagePreprocessing.TorchVision(imageSize),
    };

    /// <summary>
    /// The preprocessing the <paramref name="weights"/> were trained with, keyed by what identifies
    /// the file: a published file of the catalog (by its name's hash prefix or its content) gets its publisher's
    /// preprocessing (torchvision's newer weights resize to 232, not 256); ML.NET's ResNet18 the graph shipped beside it;
    /// any other file the convention of its format.
    /// </summary>
    /// <param name="weights">A weight file, or a catalog name (resolved without downloading: its entry says how it was trained).</param>
    /// <param name="family">The architecture's family, for files that only their format describes.</param>
    /// <param name="imageSize">The network input size to train at.</param>
    /// <param name="architecture">The registered architecture, which <c>imagenet</c> needs.</param>
    public static ImagePreprocessing ImpliedBy(string weights, string family, int imageSize = 224, string? architecture = null)
    {
        if (!File.Exists(weights)) return ImpliedBy(PretrainedWeightSource.Select(weights, architecture), family, imageSize);
        var weightsPath = weights;
        var format = PretrainedWeightFile.DetectFormat(weightsPath);
        var published = PretrainedWeightSource.Identify(weightsPath)?.Preprocessing;
        var graph = MLNetResNet18.PreprocessGraphFor(weightsPath);
        if (graph is not null && (published?.Mode == PretrainedPreprocessing.OnnxGraphMode || format == WeightFormat.Onnx))
            return MLNetResNet18.ReadPreprocessing(graph, imageSize);
        if (published?.Mode == PretrainedPreprocessing.OnnxGraphMode)
            throw new WeightFileException(weightsPath, $"these weights are ML.NET's ResNet18, whose preprocessing is the graph {published.Graph} " +
                $"that the package {MLNetResNet18.PackageId} ships beside them; it is not next to the file nor in ../{Path.GetFileName(MLNetResNet18.PreprocessFolder)}/. " +
                $"Copy it there, or use the weights by name ({MLNetResNet18.ShortName}).");
        if (published?.ToImagePreprocessing() is { } preset) return preset.AtImageSize(imageSize);
        return Implied(format, family, imageSize);
    }

    /// <summary>The preprocessing a catalog entry's publisher trained with (a package's graph is read where the package is).</summary>
    public static ImagePreprocessing ImpliedBy(PretrainedWeightEntry entry, string family, int imageSize = 224)
    {
        if (entry.Preprocessing.Mode == PretrainedPreprocessing.OnnxGraphMode)
        {
            var local = PretrainedWeightSource.Resolve(entry.Name); // a package entry: found, never downloaded
            return ImpliedBy(local.Path, family, imageSize);
        }
        return entry.Preprocessing.ToImagePreprocessing()?.AtImageSize(imageSize) ?? Implied(entry.Format, family, imageSize);
    }

    /// <summary>
    /// True when two preprocessings give the network the same numbers for the same pixels: same channel order, scale,
    /// mean and std. Geometry (image size, resize mode) may differ.
    /// </summary>
    public static bool SameNormalization(ImagePreprocessing a, ImagePreprocessing b)
    {
        static bool Close(float x, float y) => Math.Abs(x - y) <= 1e-6f * Math.Max(1f, Math.Max(Math.Abs(x), Math.Abs(y)));
        bool sameMeanImage = a.MeanImage is null ? b.MeanImage is null : b.MeanImage is not null && a.MeanImage.AsSpan().SequenceEqual(b.MeanImage);
        return sameMeanImage && a.Channels == b.Channels && Close(a.Scale, b.Scale)
            && a.Mean.Zip(b.Mean).All(p => Close(p.First, p.Second)) && a.Std.Zip(b.Std).All(p => Close(p.First, p.Second));
    }

    /// <summary>
    /// The preprocessing to train with. Without pretrained weights: <paramref name="requested"/> or torchvision's
    /// preset. With weights: null gives the preset the weights imply; an explicit preprocessing must normalise the same
    /// way, unless <paramref name="allowMismatch"/> is set.
    /// </summary>
    /// <exception cref="ArgumentException">An explicit preprocessing contradicts the weights and no override was given.</exception>
    public static ImagePreprocessing Resolve(ImagePreprocessing? requested, int imageSize, string? weightsPath, string family, bool allowMismatch, string? architecture = null)
    {
        if (weightsPath is null) return requested ?? ImagePreprocessing.TorchVision(imageSize);
        var format = File.Exists(weightsPath) ? PretrainedWeightFile.DetectFormat(weightsPath) : PretrainedWeightSource.Select(weightsPath, architecture).Format;
        var implied = ImpliedBy(weightsPath, family, requested?.ImageSize ?? imageSize, architecture);
        if (requested is null) return implied;
        if (allowMismatch || SameNormalization(requested, implied)) return requested;
        throw new ArgumentException(
            $"Preprocessing '{requested.Name}' ({Describe(requested)}) contradicts the weights '{Path.GetFileName(weightsPath)}': " +
            $"{(format == WeightFormat.KerasH5 ? $"Keras {family} weights" : implied.MeanImage is not null ? "ML.NET's ResNet18" : $"{format} weights (torchvision convention)")} expect '{implied.Name}' ({Describe(implied)}). " +
            "Leave the preprocessing unset to use the weights' own, or set the explicit override (AllowPreprocessingMismatch / --allow-preprocess-mismatch) if the weights were trained otherwise.");
    }

    /// <summary>One line: channel order, scale, mean, std.</summary>
    public static string Describe(ImagePreprocessing p)
    {
        string F(float v) => v.ToString("0.######", CultureInfo.InvariantCulture);
        string scale = Math.Abs(p.Scale - 1f) < 1e-9 ? "0–255" : Math.Abs(p.Scale - 1f / 255f) < 1e-9 ? "/255" : $"×{F(p.Scale)}";
        string mean = p.MeanImage is null ? $"mean [{string.Join(", ", p.Mean.Select(F))}]" : $"minus a {p.ImageSize}×{p.ImageSize} mean image (channel averages [{string.Join(", ", p.Mean.Select(v => v.ToString("0.##", CultureInfo.InvariantCulture)))}])";
        return $"{p.Channels.ToString().ToUpperInvariant()}, {scale}, {mean}, std [{string.Join(", ", p.Std.Select(F))}]";
    }
}
