using Microsoft.ML;
using MLNet.ImageTransfer.Weights;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.Weights;

/// <summary>
/// Pretrained weights used as published, without training (Keras' <c>decode_predictions</c>, torchvision's
/// categories): the classifier in the file is loaded, not replaced, and predicts by class name; saved and loaded like
/// a trained pipeline. Full-size ImageNet files are downloaded only in the Slow test.
/// </summary>
public class PretrainedClassifierTests
{
    static string W(string name) => WeightFormatParityTests.W(name);
    static readonly string[] Five = ["alpha", "beta", "gamma", "delta", "epsilon"];

    [Fact]
    public void A_file_with_its_classifier_predicts_what_PyTorch_computes_and_names_the_classes()
    {
        var ml = new MLContext(seed: 1);
        var model = ImageClassificationWorkflow.FromPretrained(ml, W("resnet_micro.safetensors"), classNames: Five,
            customArchitecture: WeightFormatParityTests.ConfigOf("resnet_micro"));

        // The file's own classifier: the logits PyTorch computed for the fixture input (not a fresh head).
        var classifier = ImageClassificationWorkflow.FindClassifier(model);
        Assert.Equal(Five, classifier.ClassNames);
        using (no_grad())
        {
            using var x = WeightFormatParityTests.Input("resnet_micro");
            using var reference = WeightFormatParityTests.Expected("resnet_micro");
            using var logits = classifier.Network.call(x);
            Assert.InRange((logits - reference).abs().max().item<float>(), 0, WeightFormatParityTests.Tolerance);
        }

        // Predictions by name on a real photo, and the same after saving and loading.
        var photo = Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "fixtures", "flowers", "daisy"))[0];
        var before = Assert.Single(ImageClassificationWorkflow.Predict(ml, model, [photo], top: 5));
        Assert.Equal(Five.Order(), before.Top.Select(t => t.Class).Order());
        Assert.Equal(1.0, before.Top.Sum(t => t.Probability), 4);
        var path = Path.Combine(TestData.NewTempDir("pretrained-classifier"), "model.zip");
        ml.Model.Save(model, null, path);
        var loaded = ImageClassificationWorkflow.LoadModel(new MLContext(), path, out _);
        var after = Assert.Single(ImageClassificationWorkflow.Predict(new MLContext(), loaded, [photo], top: 5));
        Assert.Equal(before.Top.Select(t => t.Class), after.Top.Select(t => t.Class));
        Assert.Equal(before.Top.Select(t => (double)t.Probability), after.Top.Select(t => (double)t.Probability), new ToleranceComparer(1e-5));
    }

    [Fact]
    public void Weights_without_a_classifier_or_without_class_names_say_so()
    {
        var ml = new MLContext(seed: 1);
        var headless = Assert.Throws<InvalidOperationException>(() => ImageClassificationWorkflow.FromPretrained(ml, MLNetResNet18.ShortName));
        Assert.Contains("has no classifier", headless.Message);
        var unnamed = Assert.Throws<InvalidOperationException>(() => ImageClassificationWorkflow.FromPretrained(ml, W("resnet_micro.safetensors"),
            customArchitecture: WeightFormatParityTests.ConfigOf("resnet_micro")));
        Assert.Contains("classNames", unnamed.Message);
        var wrongCount = Assert.Throws<InvalidOperationException>(() => ImageClassificationWorkflow.FromPretrained(ml, W("resnet_micro.safetensors"),
            classNames: ["a", "b"], customArchitecture: WeightFormatParityTests.ConfigOf("resnet_micro")));
        Assert.Contains("no 2-class classifier", wrongCount.Message);
    }

    [Fact]
    [Trait("Category", "Slow")] // downloads torchvision's ResNet-18 (45 MB) once into the weight cache
    public void Torchvision_ResNet18_names_a_daisy_with_ImageNets_class_names()
    {
        var ml = new MLContext(seed: 1);
        var model = ImageClassificationWorkflow.FromPretrained(ml, "resnet18.tv_in1k");
        var photos = Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "fixtures", "flowers", "daisy"));
        var predictions = ImageClassificationWorkflow.Predict(ml, model, photos, top: 5);
        Assert.Equal(1000, ImageClassificationWorkflow.FindClassifier(model).ClassNames.Count);
        Assert.Contains(predictions, p => p.Top[0].Class == "daisy");
    }

    sealed class ToleranceComparer(double tolerance) : IEqualityComparer<double>
    {
        public bool Equals(double x, double y) => Math.Abs(x - y) <= tolerance;
        public int GetHashCode(double obj) => 0;
    }
}
