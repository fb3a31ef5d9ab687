using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Weights.Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Weights;

/// <summary>
/// ML.NET's own pretrained ResNet18, the network behind <c>mlContext.Transforms.DnnFeaturizeImage(...)</c>: NuGet
/// package <c>Microsoft.ML.DnnImageFeaturizer.ResNet18</c>, which ships the backbone as <c>ResNet18.onnx</c> (up to
/// global average pooling, no classifier) and its preprocessing as a second graph, <c>ResNetPreprocess.onnx</c>.
/// </summary>
/// <remarks>
/// The backbone loads into the registered <c>resnet18_mlnet</c> (basic blocks, stages [2, 2, 2, 3]). Its
/// preprocessing is read from the package's own graph rather than written down here: the graph splits the RGB planes,
/// concatenates them as B, G, R, and subtracts a 224×224 mean image (0–255 scale). ML.NET's documented featurizer
/// pipeline feeds it <c>ResizeImages(224, 224)</c> — scale the shorter side to 224 and cut the centre square, ML.NET's
/// default <c>IsoCrop</c> — and <c>ExtractPixels()</c> (RGB planes, 0–255), which is the geometry used here.
/// </remarks>
public static class MLNetResNet18
{
    /// <summary>The NuGet package that ships the network.</summary>
    public const string PackageId = "Microsoft.ML.DnnImageFeaturizer.ResNet18";

    /// <summary>The package's version this library is built against, where the weights catalog looks for it.</summary>
    public static string PackageVersion => PretrainedWeightCatalog.BuiltAgainst(PackageId)
        ?? throw new InvalidOperationException($"MLNet.ImageTransfer was built without the version of {PackageId}.");

    /// <summary>The registered architecture the backbone loads into.</summary>
    public const string ArchitectureName = "resnet18_mlnet";

    /// <summary>The short name that finds the network in the package, offline (the catalog's alias).</summary>
    public const string ShortName = "mlnet-resnet18";

    /// <summary>Name of the preset built from the preprocessing graph.</summary>
    public const string PreprocessingName = "mlnet-resnet18";

    /// <summary>The backbone's file name, and where the package (and a build output that references it) keeps it.</summary>
    public const string WeightsFileName = "ResNet18.onnx";
    internal const string WeightsFolder = "DnnImageModels/ResNet18Onnx";

    /// <summary>The preprocessing graph's file name, and its folder beside the backbone's.</summary>
    public const string PreprocessFileName = "ResNetPreprocess.onnx";
    internal const string PreprocessFolder = "DnnImageModels/ResNetPrepOnnx";

    /// <summary>The input side the network and its mean image were made for.</summary>
    public const int NativeImageSize = 224;

    /// <summary>
    /// The preprocessing graph that belongs to the backbone at <paramref name="weightsPath"/>: beside it, or where the
    /// package lays it out (<c>../ResNetPrepOnnx/ResNetPreprocess.onnx</c>); null if neither exists.
    /// </summary>
    public static string? PreprocessGraphFor(string weightsPath)
    {
        var folder = Path.GetDirectoryName(Path.GetFullPath(weightsPath)) ?? ".";
        foreach (var candidate in new[]
                 {
                     Path.Combine(folder, PreprocessFileName),
                     Path.Combine(folder, "..", Path.GetFileName(PreprocessFolder), PreprocessFileName),
                 })
            if (File.Exists(candidate)) return Path.GetFullPath(candidate);
        return null;
    }

    /// <summary>
    /// Reads the preprocessing graph: channel order from its Split/Concat, the mean image from its Sub. At another
    /// <paramref name="imageSize"/> the mean image is resized (bilinear, antialiased), as the images are.
    /// </summary>
    /// <exception cref="WeightFileException">The file is not the Split → Concat → Sub graph the package ships.</exception>
    public static ImagePreprocessing ReadPreprocessing(string preprocessGraphPath, int imageSize = NativeImageSize)
    {
        var graph = OnnxReader.Read(preprocessGraphPath);
        var split = Single(graph, "Split", preprocessGraphPath);
        var concat = Single(graph, "Concat", preprocessGraphPath);
        var sub = Single(graph, "Sub", preprocessGraphPath);
        if (split.Int("axis") != 1 || concat.Int("axis") != 1 || split.Outputs.Count != 3 || concat.Inputs.Count != 3
            || sub.Inputs.Count != 2 || sub.Inputs[0] != concat.Outputs[0] || !graph.Initializers.TryGetValue(sub.Inputs[1], out var meanTensor))
            throw new WeightFileException(preprocessGraphPath, "expected the preprocessing graph of ML.NET's ResNet18: Split the channels, Concat them in a new order, Sub a mean image.");

        // The graph's input is RGB planes (ExtractPixels' default order); the Concat says where each one goes.
        var order = concat.Inputs.Select(input => split.Outputs.ToList().IndexOf(input)).ToArray();
        ChannelOrder channels = order switch
        {
            [0, 1, 2] => ChannelOrder.Rgb,
            [2, 1, 0] => ChannelOrder.Bgr,
            _ => throw new WeightFileException(preprocessGraphPath, $"the graph reorders the channels as [{string.Join(", ", order)}], which is neither RGB nor BGR."),
        };
        if (meanTensor.Dims is not [1, 3, var h, var w] || h != w)
            throw new WeightFileException(preprocessGraphPath, $"the mean image has shape [{string.Join(", ", meanTensor.Dims)}], expected [1, 3, S, S].");

        using var scope = NewDisposeScope();
        var mean = meanTensor.ToFloat32(preprocessGraphPath);
        var values = mean.contiguous().data<float>().ToArray();
        var channelMeans = mean.mean([0L, 2L, 3L]).data<float>().ToArray();
        return new ImagePreprocessing
        {
            Name = PreprocessingName,
            ImageSize = (int)h,
            Resize = ResizeMode.ShorterSideThenCenterCrop,
            CropFraction = 1.0,
            Channels = channels,
            Scale = 1f,
            Mean = channelMeans,
            Std = [1f, 1f, 1f],
            MeanImage = values,
        }.AtImageSize(imageSize);
    }

    static OnnxNode Single(OnnxModel graph, string opType, string path)
    {
        var nodes = graph.Nodes.Where(n => n.OpType == opType).ToList();
        return nodes.Count == 1 ? nodes[0] : throw new WeightFileException(path, $"expected one {opType} node in ML.NET's ResNet18 preprocessing graph, found {nodes.Count}.");
    }
}
