using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Explain;
using MLNet.ImageTransfer.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.Explain;

public class ExplainTests
{
    static readonly ImagePreprocessing Pre = ImagePreprocessing.TorchVision(64) with { Resize = ResizeMode.Stretch };

    static FittedClassifier TinyClassifier(int seed = 3)
    {
        torch.manual_seed(seed);
        var network = new ResNetConfig(ResNetBlock.Basic, [1, 1, 1, 1], BaseWidth: 4).Build(2);
        var description = new ClassifierDescription
        {
            Architecture = network.Config, Head = HeadSpec.Default, ClassNames = ["marked", "plain"], Preprocessing = Pre,
        };
        return new FittedClassifier(network, description);
    }

    /// <summary>Grey noise, and for "marked" a white square somewhere in the top-left quadrant.</summary>
    static MLImage Synthetic(bool marked, Random random, int size = 64) => Synthetic(marked, random, out _, size);

    static MLImage Synthetic(bool marked, Random random, out (float X, float Y) squareCentre, int size = 64)
    {
        squareCentre = (float.NaN, float.NaN);
        var px = new byte[size * size * 4];
        for (int i = 0; i < size * size; i++)
        {
            byte v = (byte)random.Next(40, 120);
            px[4 * i] = v; px[4 * i + 1] = v; px[4 * i + 2] = v; px[4 * i + 3] = 255;
        }
        if (marked)
        {
            int s = 12, x0 = random.Next(2, size / 2 - s - 2), y0 = random.Next(2, size / 2 - s - 2);
            squareCentre = (x0 + s / 2f, y0 + s / 2f);
            for (int y = y0; y < y0 + s; y++)
                for (int x = x0; x < x0 + s; x++)
                    for (int c = 0; c < 3; c++) px[4 * (y * size + x) + c] = 250;
        }
        return MLImage.CreateFromPixels(size, size, MLPixelFormat.Bgra32, px);
    }

    [Fact]
    public void Grad_cam_equals_the_hand_computed_class_activation_map()
    {
        // With global average pooling and a linear classifier, ∂score_c/∂A_k(i,j) = w_ck / (h·w) everywhere, so
        // Grad-CAM reduces to ReLU(Σ_k w_ck/(h·w) · A_k) / max — computed here from the fc weights, without autograd.
        using var classifier = TinyClassifier();
        using var image = Synthetic(true, new Random(1));
        var explainer = new ModelExplainer(classifier);
        int nonTrivial = 0;
        for (int c = 0; c < 2; c++)
        {
            using var result = explainer.GradCam(image, classifier.ClassNames[c], "layer4");
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var x = ImageTensors.Normalize(ImageTensors.ToResizedBytes(image, Pre).unsqueeze(0), Pre);
            var a = classifier.Network.ForwardFeatures(x)[0];                     // [C,h,w]
            var w = classifier.Network.state_dict()["fc.weight"][c];
            var cam = nn.functional.relu((w.view(-1, 1, 1) / (a.shape[1] * a.shape[2]) * a).sum(0L)); // 0L: a literal 0 would bind to sum(ScalarType)
            var max = cam.max().item<float>();
            if (max > 0) { cam = cam / max; nonTrivial++; }
            var expected = nn.functional.interpolate(cam.unsqueeze(0).unsqueeze(0), new long[] { 64, 64 }, mode: InterpolationMode.Bilinear, align_corners: false)[0, 0];

            Assert.Equal(new long[] { 64, 64 }, result.Heatmap.shape);
            var diff = (result.Heatmap - expected).abs().max().item<float>();
            Assert.True(diff < 1e-5, $"class {c}: max difference {diff}");
            Assert.Equal(classifier.ClassNames[c], result.ClassName);
        }
        Assert.True(nonTrivial > 0, "both maps were all zero: the comparison tested nothing");
    }

    [Fact]
    public void Grad_cam_of_the_static_map_follows_the_definition_on_a_handmade_graph()
    {
        // score = Σ (G ⊙ A) with a fixed G: ∂score/∂A = G, α_k = mean(G_k); map = ReLU(Σ_k α_k A_k) / max.
        using var scope = NewDisposeScope();
        var a = tensor(new float[] { 1, 2, 3, 4, /* k=1 */ 4, 0, 0, 1 }).view(1, 2, 2, 2).requires_grad_(true);
        var g = tensor(new float[] { 1, 1, 1, 1, /* k=1 */ -2, -2, -2, -2 }).view(1, 2, 2, 2);
        var score = (g * a).sum();
        var map = ModelExplainer.GradCamMap(score, a);
        // α = (1, -2): 1·[1,2,3,4] − 2·[4,0,0,1] = [−7, 2, 3, 2] → ReLU → [0,2,3,2] → /3
        Assert.Equal(new[] { 0f, 2f / 3, 1f, 2f / 3 }, map.flatten().data<float>().ToArray());
    }

    [Fact]
    public void Grad_cam_highlights_the_corner_that_holds_the_class_evidence()
    {
        var root = TestData.NewTempDir("corner");
        var random = new Random(5);
        foreach (var (label, marked) in new[] { ("marked", true), ("plain", false) })
        {
            Directory.CreateDirectory(Path.Combine(root, label));
            for (int i = 0; i < 40; i++)
            {
                using var img = Synthetic(marked, random);
                img.Save(Path.Combine(root, label, $"{i}.png"));
            }
        }
        var ml = new MLContext(seed: 1);
        var options = new ImageTransferTrainer.Options
        {
            CustomArchitecture = new ResNetConfig(ResNetBlock.Basic, [1, 1, 1, 1], BaseWidth: 8),
            Preprocessing = Pre, Epochs = 6, BatchSize = 8, LearningRate = 3e-3, Seed = 2,
        };
        var trained = ImageClassificationWorkflow.TrainFromFolder(ml, root, options);
        var explainer = new ModelExplainer(ImageClassificationWorkflow.FindClassifier(trained.Model));

        int checkedImages = 0;
        for (int i = 0; i < 5; i++)
        {
            using var image = Synthetic(true, new Random(100 + i), out var centre);
            using var cam = explainer.GradCam(image, "marked", "layer2");   // 8×8 map at 64 px
            if (cam.Probability < 0.5f) continue;                          // explain only what the model gets right
            checkedImages++;
            // The heat-weighted centre of the hot region (≥ half the peak) must fall on the square (12 px wide).
            using var hot = cam.Heatmap.where(cam.Heatmap >= 0.5f, zeros_like(cam.Heatmap));
            var ys = arange(64, dtype: ScalarType.Float32).view(64, 1);
            var xs = arange(64, dtype: ScalarType.Float32).view(1, 64);
            float total = hot.sum().item<float>();
            float cx = (hot * xs).sum().item<float>() / total, cy = (hot * ys).sum().item<float>() / total;
            // Tolerance: half the square plus half an 8-px cell (a stride-8 map's cells sit half a cell off bilinear upsampling's grid).
            Assert.True(Math.Abs(cx - centre.X) <= 10 && Math.Abs(cy - centre.Y) <= 10,
                $"image {i}: heat centred at ({cx:F1}, {cy:F1}), square centred at ({centre.X}, {centre.Y})");
        }
        Assert.True(checkedImages >= 3, $"the model classified only {checkedImages} of 5 marked images correctly");
    }

    [Fact]
    public void Activations_have_the_layers_shape_and_unknown_layers_are_named_in_the_error()
    {
        using var classifier = TinyClassifier();
        using var image = Synthetic(false, new Random(2));
        var explainer = new ModelExplainer(classifier);
        var layers = explainer.Layers();
        Assert.Contains(layers, l => l.Name == "layer2.0.conv1");
        using var maps = explainer.Activations(image, "layer2");
        Assert.Equal(layers.Single(l => l.Name == "layer2").OutputShape.Skip(1), maps.shape);

        var error = Assert.Throws<ArgumentException>(() => explainer.Activations(image, "layer9"));
        Assert.Contains("no layer 'layer9'", error.Message);
    }

    [Fact]
    public void Filter_patterns_are_deterministic_per_seed_and_differ_per_channel()
    {
        using var classifier = TinyClassifier();
        var explainer = new ModelExplainer(classifier);
        using var a = explainer.FilterPatterns("layer1", count: 2, steps: 5, seed: 1);
        using var b = explainer.FilterPatterns("layer1", count: 2, steps: 5, seed: 1);
        Assert.Equal(new long[] { 2, 3, 64, 64 }, a.shape);
        Assert.Equal(ScalarType.Byte, a.dtype);
        Assert.True(a.eq(b).all().item<bool>());
        Assert.False(a[0].eq(a[1]).all().item<bool>());
        Assert.True(classifier.Network.parameters().All(p => p.requires_grad), "weights must be trainable again afterwards");
    }

    public static TheoryData<string> Families => new() { "densenet", "resnet", "vgg", "vgg_bn" };

    [Theory]
    [MemberData(nameof(Families))]
    public void Every_family_explains_at_its_default_layer(string family)
    {
        ArchitectureConfig config = family switch
        {
            "densenet" => new DenseNetConfig(4, [2, 2, 2, 2], 8, 2),
            "resnet" => new ResNetConfig(ResNetBlock.Bottleneck, [1, 1, 1, 1], BaseWidth: 4),
            "vgg" => new VggConfig([8, 0, 16, 0, 16, 0, 32, 0, 32, 0], false, 16),
            _ => new VggConfig([8, 0, 16, 0, 16, 0, 32, 0, 32, 0], true, 16),
        };
        torch.manual_seed(1);
        using var classifier = new FittedClassifier(config.Build(2), new ClassifierDescription
        {
            Architecture = config, Head = HeadSpec.Default, ClassNames = ["marked", "plain"], Preprocessing = Pre,
        });
        using var image = Synthetic(true, new Random(4));
        using var cam = new ModelExplainer(classifier).GradCam(image);
        Assert.Equal(classifier.Network.DefaultCamLayer, cam.Layer);
        Assert.Equal(new long[] { 64, 64 }, cam.Heatmap.shape);
        Assert.InRange(cam.Heatmap.min().item<float>(), 0f, 1f);
        Assert.InRange(cam.Heatmap.max().item<float>(), 0f, 1f);
    }

    [Fact]
    public void Pngs_are_written_for_all_three_views()
    {
        using var classifier = TinyClassifier();
        using var image = Synthetic(true, new Random(3));
        var explainer = new ModelExplainer(classifier);
        var dir = TestData.NewTempDir("pngs");
        using (var cam = explainer.GradCam(image)) ExplanationImages.SaveGradCam(cam, Path.Combine(dir, "cam.png"));
        using (var maps = explainer.Activations(image, "layer1")) ExplanationImages.SaveActivations(maps, Path.Combine(dir, "act.png"));
        using (var f = explainer.FilterPatterns("layer1", count: 2, steps: 2)) ExplanationImages.SaveFilters(f, Path.Combine(dir, "filters.png"));
        foreach (var name in new[] { "cam.png", "act.png", "filters.png" })
        {
            using var png = MLImage.CreateFromFile(Path.Combine(dir, name));
            Assert.True(png.Width > 100 && png.Height > 50, name);
        }
    }
}
