using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.Weights;

/// <summary>
/// Strict loading with reports by name, and the classifier replacement of transfer learning: another class count,
/// another head layout, or no classifier in the file (Keras "notop") leaves the classifier freshly initialised while
/// the backbone loads exactly.
/// </summary>
public sealed class PretrainedLoadingTests : IDisposable
{
    readonly string _dir = TestData.NewTempDir("pretrained");

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    static string W(string name) => WeightFormatParityTests.W(name);

    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    static Dictionary<string, Tensor> Snapshot(nn.Module m) => m.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());

    [Fact]
    public void Missing_unexpected_and_mismatched_keys_are_listed_by_name_and_nothing_is_modified()
    {
        var path = Path.Combine(_dir, "broken.safetensors");
        using (var file = SafeTensors.Read(W("resnet_micro.safetensors")))
        {
            var entries = file.Tensors.Where(kv => kv.Key != "layer1.0.conv2.weight")
                .Select(kv => (kv.Key, kv.Key == "layer2.0.bn1.weight" ? torch.ones(3) : kv.Value))
                .Append(("layer9.0.conv1.weight", torch.zeros(2, 2, 1, 1)))
                .ToList();
            SafeTensors.Write(path, entries);
        }
        using var network = WeightFormatParityTests.ConfigOf("resnet_micro").Build(5);
        var before = Snapshot(network);
        var e = Assert.Throws<WeightLoadException>(() => PretrainedWeights.LoadInto(network, path));
        Assert.Equal(["layer1.0.conv2.weight"], e.Report.Missing);
        Assert.Equal(["layer9.0.conv1.weight"], e.Report.Unexpected);
        var mismatch = Assert.Single(e.Report.ShapeMismatches);
        Assert.Equal("layer2.0.bn1.weight", mismatch.Key);
        Assert.Equal([4L], mismatch.ModelShape);
        Assert.Equal([3L], mismatch.FileShape);
        foreach (var name in new[] { "layer1.0.conv2.weight", "layer9.0.conv1.weight", "layer2.0.bn1.weight" }) Assert.Contains(name, e.Message);
        Assert.Contains("broken.safetensors", e.Message);
        foreach (var (k, v) in network.state_dict()) Assert.True(Same(v, before[k]), $"{k} was modified by a failed load");
    }

    [Fact]
    public void A_different_class_count_replaces_the_classifier_and_loads_the_backbone()
    {
        using var network = WeightFormatParityTests.ConfigOf("resnet_micro").Build(3);
        var before = Snapshot(network);
        using var file = PretrainedWeightFile.Open(W("resnet_micro.pth"));
        var result = PretrainedWeights.Load(network, file);

        Assert.True(result.HeadReplaced);
        Assert.Equal(["fc.weight", "fc.bias"], result.ReinitializedHead);
        Assert.Equal(["fc.weight", "fc.bias"], result.DroppedFromFile);
        Assert.Empty(result.Report.Missing);
        Assert.Empty(result.Report.Unexpected);
        foreach (var (k, v) in network.state_dict())
        {
            if (k.StartsWith("fc.", StringComparison.Ordinal)) Assert.True(Same(v, before[k]), $"{k} should keep its fresh initialisation");
            else Assert.True(Same(v, file.Tensors[k]), $"{k} should hold the file's values");
        }
        Assert.Contains("Classifier re-initialised", result.Describe());
    }

    [Fact]
    public void Vgg_keeps_the_pretrained_hidden_layers_and_replaces_only_the_last()
    {
        using var network = WeightFormatParityTests.ConfigOf("vgg_micro_bn").Build(3);
        using var file = PretrainedWeightFile.Open(W("vgg_micro_bn.safetensors"));
        var result = PretrainedWeights.Load(network, file);
        Assert.Equal(["classifier.6.weight", "classifier.6.bias"], result.ReinitializedHead);
        var state = network.state_dict();
        Assert.True(Same(state["classifier.0.weight"], file.Tensors["classifier.0.weight"]));
        Assert.True(Same(state["classifier.3.weight"], file.Tensors["classifier.3.weight"]));
    }

    [Fact]
    public void Another_head_layout_takes_nothing_from_the_files_classifier()
    {
        using var network = WeightFormatParityTests.ConfigOf("densenet_micro").Build(5, HeadSpec.KerasMlp(hiddenUnits: 6));
        using var file = PretrainedWeightFile.Open(W("densenet_micro.safetensors"));
        var result = PretrainedWeights.Load(network, file);
        Assert.Equal(["classifier.weight", "classifier.bias"], result.DroppedFromFile);
        Assert.Equal(["classifier.1.weight", "classifier.1.bias", "classifier.4.weight", "classifier.4.bias"], result.ReinitializedHead);
        Assert.True(result.Report.IsExact);
    }

    [Fact]
    public void Weights_for_another_family_are_refused_with_both_names()
    {
        using var network = WeightFormatParityTests.ConfigOf("resnet_micro").Build(5);
        using var file = PretrainedWeightFile.Open(W("densenet_micro.safetensors"));
        var e = Assert.Throws<WeightLoadException>(() => PretrainedWeights.Load(network, file));
        Assert.Contains("densenet", e.Message);
        Assert.Contains("resnet", e.Message);
        Assert.Throws<ArgumentException>(() => file.Adapt(Architectures.Get("resnet50")));
    }

    [Fact]
    public void Files_without_num_batches_tracked_load_as_pytorch_does()
    {
        // Checkpoints written before PyTorch 0.4.1 (e.g. torchvision's first ResNet/DenseNet files) have no num_batches_tracked.
        var path = Path.Combine(_dir, "old.safetensors");
        using (var file = SafeTensors.Read(W("resnet_micro.safetensors")))
            SafeTensors.Write(path, file.Tensors.Where(kv => !kv.Key.EndsWith("num_batches_tracked", StringComparison.Ordinal)).Select(kv => (kv.Key, kv.Value)).ToList());
        using var network = WeightFormatParityTests.ConfigOf("resnet_micro").Build(5);
        var report = PretrainedWeights.LoadInto(network, path);
        Assert.True(report.IsExact, report.Describe());
        Assert.Equal(0L, network.state_dict()["layer1.0.bn1.num_batches_tracked"].item<long>());
    }

    [Fact]
    public void A_notop_file_loads_the_backbone_and_leaves_the_classifier_fresh()
    {
        // keras.applications' *_notop.h5: the same layers without 'predictions' (include_top=False).
        var notop = Path.Combine(_dir, "densenet_notop.h5");
        KerasH5Writer.Copy(W("keras_densenet_micro.h5"), notop, layer => layer == "predictions" ? null : layer);

        using var file = PretrainedWeightFile.Open(notop);
        Assert.Null(file.NumClasses);
        Assert.Contains(file.Notes, n => n.Contains("notop"));
        var config = file.Adapt(WeightFormatParityTests.ConfigOf("keras_densenet_micro"));
        using var network = config.Build(3);
        var before = Snapshot(network);
        var result = PretrainedWeights.Load(network, file);
        Assert.Equal(["classifier.weight", "classifier.bias"], result.ReinitializedHead);
        Assert.Empty(result.DroppedFromFile);
        Assert.True(Same(network.state_dict()["classifier.weight"], before["classifier.weight"]));

        // The backbone is Keras' exactly: the pooled features equal the reference's.
        network.eval();
        using var _ = no_grad();
        using var x = WeightFormatParityTests.Input("keras_densenet_micro");
        using var pooled = network.ForwardPooledFeatures(x);
        using var expected = WeightFormatParityTests.Expected("keras_densenet_micro", "pooled");
        Assert.InRange((pooled - expected).abs().max().item<float>(), 0, 1e-4);
    }
}
