using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Weights;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.Weights;

/// <summary>
/// ML.NET's pretrained ResNet18 (the NuGet package Microsoft.ML.DnnImageFeaturizer.ResNet18, which this test project
/// references, so its files are in the test output as they are in any application's): read into resnet18_mlnet, it
/// computes what ONNX Runtime computes on the original graph, and on real photos what ML.NET's own DnnFeaturizeImage
/// pipeline computes.
/// </summary>
public class MLNetResNet18Tests(ITestOutputHelper output)
{
    static readonly string PhotoFolder = Path.Combine(AppContext.BaseDirectory, "fixtures", "flowers");

    static ResolvedWeights Package() => PretrainedWeightSource.Resolve(MLNetResNet18.ShortName);

    [Fact]
    public void The_short_name_finds_the_package_files_in_the_application_folder_offline()
    {
        var resolved = Package();
        Assert.Equal(WeightOrigin.Package, resolved.Origin);
        Assert.Equal(Path.Combine(AppContext.BaseDirectory, "DnnImageModels", "ResNet18Onnx", MLNetResNet18.WeightsFileName), resolved.Path);
        Assert.Equal(MLNetResNet18.ArchitectureName, resolved.Entry!.Architecture);
        Assert.Equal(MLNetResNet18.PreprocessFileName, Path.GetFileName(Assert.Single(resolved.Companions)));
        // The file is the package's: the catalog's SHA-256 identifies it by content too.
        Assert.Equal(resolved.Entry, PretrainedWeightSource.Identify(resolved.Path));
    }

    [Fact]
    public void The_file_holds_resnet18_mlnet_and_its_preprocessing_is_the_graphs_BGR_minus_mean_image()
    {
        var path = Package().Path;
        var inferred = ArchitectureInference.OfFile(path);
        Assert.Equal(MLNetResNet18.ArchitectureName, inferred.Name);
        Assert.Null(inferred.NumClasses); // stops at global pooling

        var preprocessing = WeightPreprocessing.ImpliedBy(path, "resnet");
        Assert.Equal(MLNetResNet18.PreprocessingName, preprocessing.Name);
        Assert.Equal(ChannelOrder.Bgr, preprocessing.Channels);
        Assert.Equal(1f, preprocessing.Scale);
        Assert.Equal(3 * 224 * 224, preprocessing.MeanImage!.Length);
        Assert.Equal(ResizeMode.ShorterSideThenCenterCrop, preprocessing.Resize);
        Assert.Equal(1.0, preprocessing.CropFraction); // ML.NET's ResizeImages default: IsoCrop, centre
        // Per-channel averages of the mean image (B, G, R), as read from the graph with ONNX's own tooling.
        Assert.Equal(103.06, preprocessing.Mean[0], 1);
        Assert.Equal(115.90, preprocessing.Mean[1], 1);
        Assert.Equal(123.15, preprocessing.Mean[2], 1);
        // The same preprocessing by name, without a path.
        Assert.Equal(preprocessing, WeightPreprocessing.ImpliedBy(MLNetResNet18.ShortName, "resnet"));
        // At another size the mean image is resized with the images.
        Assert.Equal(3 * 160 * 160, WeightPreprocessing.ImpliedBy(path, "resnet", 160).MeanImage!.Length);
    }

    [Fact]
    public void Pooled_features_equal_ONNX_Runtime_on_the_original_graph()
    {
        var path = Package().Path;
        using var scope = NewDisposeScope();
        using var network = Architectures.Create(MLNetResNet18.ArchitectureName, 2);
        PretrainedWeights.LoadInto(network, path);
        network.eval();
        // An input on the scale the network sees (0–255 minus a mean image), without random numbers.
        var input = arange(2 * 3 * 224 * 224, dtype: ScalarType.Float32).mul_(0.013f).sin_().mul_(60f).view(2, 3, 224, 224);
        torch.Tensor ours;
        using (no_grad()) ours = network.ForwardPooledFeatures(input);

        using var session = new InferenceSession(path);
        var values = input.data<float>().ToArray();
        double worst = 0;
        for (int i = 0; i < 2; i++)
        {
            var one = new DenseTensor<float>(values.AsMemory(i * 3 * 224 * 224, 3 * 224 * 224), [1, 3, 224, 224]);
            using var result = session.Run([NamedOnnxValue.CreateFromTensor(session.InputMetadata.Keys.Single(), one)]);
            var reference = result.Single().AsEnumerable<float>().ToArray();
            var mine = ours[i].data<float>().ToArray();
            Assert.Equal(reference.Length, mine.Length);
            double scale = reference.Max(v => Math.Abs(v));
            worst = Math.Max(worst, reference.Zip(mine).Max(p => Math.Abs(p.First - p.Second)) / scale);
        }
        output.WriteLine($"max relative difference to ONNX Runtime: {worst:E2}");
        Assert.True(worst < 1e-4, $"relative difference {worst:E2}");
    }

    /// <summary>
    /// ML.NET's documented featurizer pipeline (LoadImages → ResizeImages(224, 224) → ExtractPixels → DnnFeaturizeImage
    /// with ResNet18) against FeaturizeImage(weights: "mlnet-resnet18") on the same resized images: the same numbers.
    /// Then with our own decoding and resizing, whose pixels differ from ML.NET's resize (ML.NET 6 samples with a cubic
    /// filter, we with antialiased bilinear as PIL does): features still close, as the tolerance below says.
    /// </summary>
    [Fact]
    public void On_real_photos_the_frozen_features_equal_MLNETs_DnnFeaturizeImage()
    {
        var ml = new MLContext(seed: 1);
        var images = ImageFolder.Load(ml, PhotoFolder);
        var resize = ml.Transforms.LoadImages("Image", PhotoFolder, "ImagePath")
            .Append(ml.Transforms.ResizeImages("Image", 224, 224, "Image"));
        var theirs = resize
            .Append(ml.Transforms.ExtractPixels("Pixels", "Image"))
            .Append(ml.Transforms.DnnFeaturizeImage("Features", m => m.ModelSelector.ResNet18(ml, m.OutputColumn, m.InputColumn), "Pixels"));
        var ours = ml.Transforms.LoadImagesRobust("Image", PhotoFolder, "ImagePath")
            .Append(ml.Transforms.FeaturizeImage("Features", "Image", weights: MLNetResNet18.ShortName));

        var reference = theirs.Fit(images).Transform(images).GetColumn<VBuffer<float>>("Features").Select(v => v.DenseValues().ToArray()).ToArray();
        var own = ours.Fit(images).Transform(images).GetColumn<VBuffer<float>>("Features").Select(v => v.DenseValues().ToArray()).ToArray();
        Assert.Equal(10, reference.Length);
        Assert.All(reference, f => Assert.Equal(512, f.Length));

        // ML.NET's resized images, as ExtractPixels reads them. When ResizeImages enlarges a photo (a side under 224),
        // ML.NET 6 leaves its last row or column transparent; ExtractPixels ignores alpha (black there), while our
        // reading composites transparency over white. Made opaque, the pixels are exactly what DnnFeaturizeImage saw.
        var resized = resize.Fit(images).Transform(images);
        var featurizer = ml.Transforms.FeaturizeImage("Features", "Image", weights: MLNetResNet18.ShortName).Fit(resized);
        var theirPixels = OpaqueCopies(resized, "Image");
        var same = featurizer.Featurize(theirPixels);
        foreach (var image in theirPixels) image.Dispose();

        static double Relative(float[] a, float[] b) => a.Zip(b).Max(p => Math.Abs(p.First - p.Second)) / b.Max(v => Math.Abs(v));
        static double Cosine(float[] a, float[] b) => a.Zip(b).Sum(p => (double)p.First * p.Second) / Math.Sqrt(a.Sum(v => (double)v * v) * b.Sum(v => (double)v * v));
        double exact = same.Zip(reference).Max(p => Relative(p.First, p.Second));
        double worstCosine = own.Zip(reference).Min(p => Cosine(p.First, p.Second));
        double meanCosine = own.Zip(reference).Average(p => Cosine(p.First, p.Second));
        output.WriteLine($"same pixels: max relative difference {exact:E2}; own decode and resize: cosine similarity min {worstCosine:F4}, mean {meanCosine:F4}");
        // The network and its preprocessing: float32 noise only (measured 2.6e-7 to 1.7e-6).
        Assert.True(exact < 1e-4, $"relative difference {exact:E2} on ML.NET's own pixels");
        // Another resampling filter moves pixels by a few grey levels along edges; measured 0.975–0.998 per photo on these
        // ten (mean 0.991), and 1.0 for identical pixels. Unrelated photos of the same set score about 0.6–0.8.
        Assert.True(worstCosine > 0.95, $"cosine similarity {worstCosine:F4} with our own decode and resize");
    }

    /// <summary>Copies of a column's images with every pixel opaque (colours as stored), in row order.</summary>
    static List<MLImage> OpaqueCopies(IDataView view, string column)
    {
        var copies = new List<MLImage>();
        using var cursor = view.GetRowCursor([view.Schema[column]]);
        var getter = cursor.GetGetter<MLImage>(view.Schema[column]);
        MLImage image = null!;
        while (cursor.MoveNext())
        {
            getter(ref image);
            var pixels = image.Pixels.ToArray();
            Assert.Equal(image.Width * image.Height * 4, pixels.Length);
            for (int i = 3; i < pixels.Length; i += 4) pixels[i] = 255;
            copies.Add(MLImage.CreateFromPixels(image.Width, image.Height, image.PixelFormat, pixels));
        }
        return copies;
    }

    [Fact]
    public void Training_from_the_short_name_builds_the_files_architecture_with_its_preprocessing()
    {
        var ml = new MLContext(seed: 1);
        var options = new ImageTransferTrainer.Options
        {
            Weights = MLNetResNet18.ShortName, // no architecture chosen: the weights' own
            FreezeBackbone = true,
            Epochs = 2,
            BatchSize = 5,
            Seed = 1,
        };
        var trained = ImageClassificationWorkflow.TrainFromFolder(ml, PhotoFolder, options);
        var classifier = ImageClassificationWorkflow.FindClassifier(trained.Model);
        Assert.Equal(MLNetResNet18.ArchitectureName, classifier.Description.ArchitectureName);
        Assert.Equal(MLNetResNet18.PreprocessingName, classifier.Description.Preprocessing.Name);
        Assert.NotNull(classifier.Description.Preprocessing.MeanImage);
        Assert.Equal(MLNetResNet18.ShortName, classifier.Description.InitialWeights);
        Assert.Equal(PretrainedWeightSource.Identify(Package().Path)!.Hash.Value, classifier.Description.InitialWeightsSha256);
    }
}
