using Microsoft.ML;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Tests.Cli;
using TorchSharp;

namespace MLNet.ImageTransfer.Tests.MLNet;

/// <summary>
/// Training continues from a saved model (<c>InitialModel</c>, the CLI's <c>--init-model</c>): the weights come back
/// exactly from the saved file; other classes keep the backbone and re-initialise the classifier; a different
/// architecture, or weights and an initial model together, are clear errors.
/// </summary>
public class InitialModelTests
{
    sealed record Saved(string Zip, string Root, FittedClassifier Classifier);

    /// <summary>A tiny ResNet trained one epoch on three classes and saved with ml.Model.Save.</summary>
    static readonly Lazy<Saved> Model = new(() =>
    {
        var root = TestData.ShapesFolder(perClass: 6, size: 32);
        var ml = new MLContext(seed: 1);
        var all = ImageFolder.Load(ml, root);
        var model = TestData.Prefix(ml, root).Append(ml.MulticlassClassification.Trainers.ImageTransfer(TestData.TinyOptions(epochs: 1))).Fit(all);
        var zip = Path.Combine(TestData.NewTempDir("initial-model"), "a.zip");
        ml.Model.Save(model, all.Schema, zip);
        return new Saved(zip, root, ImageClassificationWorkflow.FindClassifier(model));
    });

    static bool Equal(torch.Tensor a, torch.Tensor b) => a.dtype == b.dtype && a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    static ImageClassifierTransformer Train(string root, ImageTransferTrainer.Options options, out ImageTransferTrainer trainer)
    {
        var ml = new MLContext(seed: 1);
        var data = ImageFolder.Load(ml, root);
        trainer = ml.MulticlassClassification.Trainers.ImageTransfer(options);
        return trainer.Fit(TestData.Prefix(ml, root).Fit(data).Transform(data));
    }

    [Fact]
    public void Weights_after_loading_equal_the_saved_ones_exactly()
    {
        var saved = Model.Value;
        using var file = InitialModelFile.Open(saved.Zip);
        var (architecture, head) = file.Check(TestData.TinyResNet, HeadSpec.Default);
        using var network = architecture.Build(saved.Classifier.NumClasses, head);
        var load = file.LoadInto(network, saved.Classifier.ClassNames);

        Assert.False(load.HeadReinitialized);
        var expected = saved.Classifier.Network.state_dict();
        Assert.Equal(expected.Count, load.Loaded.Count);
        foreach (var (key, tensor) in network.state_dict()) Assert.True(Equal(expected[key], tensor), key);
    }

    [Fact]
    public void A_trainer_starts_from_the_saved_weights()
    {
        var saved = Model.Value;
        var options = TestData.TinyOptions(epochs: 1);
        options.InitialModel = saved.Zip;
        options.FreezeBackbone = true; // the backbone (and its BatchNorm statistics) cannot move: it must be the saved one
        var fitted = Train(saved.Root, options, out var trainer);

        Assert.NotNull(trainer.LastInitialModelLoad);
        Assert.False(trainer.LastInitialModelLoad!.HeadReinitialized);
        Assert.Contains("all", trainer.LastInitialModelLoad.Describe());
        Assert.Equal("ImageTransferModel", fitted.Description.InitialWeightsFormat);
        Assert.Equal("a.zip", fitted.Description.InitialWeights);

        var before = saved.Classifier.Network.state_dict();
        var after = fitted.Classifier.Network.state_dict();
        string head = fitted.Classifier.Network.ClassifierName + ".";
        foreach (var (key, tensor) in after)
            if (!key.StartsWith(head)) Assert.True(Equal(before[key], tensor), $"backbone tensor {key} is not the saved one");
        Assert.False(Equal(before[head + "weight"], after[head + "weight"]), "the head should have trained on");
    }

    [Fact]
    public void Other_classes_keep_the_backbone_and_reinitialise_the_classifier()
    {
        var saved = Model.Value;
        var fourClasses = TestData.ShapesFolder(perClass: 4, size: 32, classes: 4);
        var options = TestData.TinyOptions(epochs: 1);
        options.InitialModel = saved.Zip;
        options.FreezeBackbone = true;
        var fitted = Train(fourClasses, options, out var trainer);

        Assert.True(trainer.LastInitialModelLoad!.HeadReinitialized);
        Assert.Contains("re-initialised", trainer.LastInitialModelLoad.Describe());
        Assert.Equal(4, fitted.ClassNames.Count);
        var before = saved.Classifier.Network.state_dict();
        var after = fitted.Classifier.Network.state_dict();
        Assert.Equal(new long[] { 4, before["fc.weight"].shape[1] }, after["fc.weight"].shape);
        foreach (var (key, tensor) in after)
            if (!key.StartsWith("fc.")) Assert.True(Equal(before[key], tensor), key);
    }

    [Fact]
    public void Mismatches_are_clear_errors()
    {
        var saved = Model.Value;
        var ml = new MLContext();

        var wider = TestData.TinyOptions(epochs: 1);
        wider.InitialModel = saved.Zip;
        wider.CustomArchitecture = TestData.TinyResNet with { BaseWidth = 8 };
        var e = Assert.Throws<ArgumentException>(() => Train(saved.Root, wider, out _));
        Assert.Contains(saved.Zip, e.Message);
        Assert.Contains("architecture", e.Message);

        var both = TestData.TinyOptions();
        both.InitialModel = saved.Zip;
        both.Weights = saved.Zip;
        Assert.Contains("not both", Assert.Throws<ArgumentException>(() => ml.MulticlassClassification.Trainers.ImageTransfer(both)).Message);

        var missing = TestData.TinyOptions();
        missing.InitialModel = Path.Combine(TestData.NewTempDir("nothing"), "none.zip");
        Assert.Throws<FileNotFoundException>(() => ml.MulticlassClassification.Trainers.ImageTransfer(missing));

        var notAModel = Path.Combine(TestData.NewTempDir("not-a-model"), "x.zip");
        File.WriteAllText(notAModel, "not a zip");
        var garbage = TestData.TinyOptions();
        garbage.InitialModel = notAModel;
        var bad = Assert.Throws<InvalidDataException>(() => Train(saved.Root, garbage, out _));
        Assert.Contains(notAModel, bad.Message);
    }

    [Fact]
    public void Cli_train_init_model_continues_from_a_saved_model_of_a_custom_architecture()
    {
        var saved = Model.Value;
        var output = Path.Combine(TestData.NewTempDir("cli-init"), "b.zip");
        // No --arch: the saved model's (custom, tiny) architecture is built.
        var (code, stdout, stderr) = CliProcess.Run("train", "--data", saved.Root, "--init-model", saved.Zip, "--epochs", "1",
            "--batch-size", "8", "--quiet", "--out", output);
        Assert.True(code == 0, stderr + stdout);
        Assert.Contains($"Started from 'a.zip': all {saved.Classifier.Network.state_dict().Count} tensors loaded", stdout);
        var description = ImageClassificationWorkflow.ReadDescription(output);
        Assert.Equal("ImageTransferModel", description.InitialWeightsFormat);
        Assert.Equal(System.Text.Json.JsonSerializer.Serialize(saved.Classifier.Description.Preprocessing), System.Text.Json.JsonSerializer.Serialize(description.Preprocessing));
    }
}
