using Microsoft.ML;
using MLNet.ImageTransfer.Augmentation;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.Determinism;

/// <summary>The same seed and data on the CPU give bit-identical weights after training.</summary>
public class DeterminismTests
{
    static Dictionary<string, Tensor> TrainWeights(int seed, string root)
    {
        var options = TestData.TinyOptions(epochs: 2, seed: seed);
        options.FrozenEpochs = 1;                                       // freeze → unfreeze switch
        options.Augmentation = AugmentationPipeline.Parse("hflip,rotate=15,zoom=0.1"); // background augmentation workers
        options.Device = "cpu";
        var trained = ImageClassificationWorkflow.TrainFromFolder(new MLContext(seed: 1), root, options, validationSplit: 0.25, splitSeed: 1);
        var network = ImageClassificationWorkflow.FindClassifier(trained.Model).Network;
        return network.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().cpu().clone());
    }

    [Fact]
    public void Same_seed_same_data_gives_identical_weights_and_another_seed_does_not()
    {
        var root = TestData.ShapesFolder();
        var a = TrainWeights(3, root);
        var b = TrainWeights(3, root);
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        Assert.True(a.Count > 10);
        foreach (var (key, tensor) in a)
        {
            Assert.Equal(tensor.shape, b[key].shape);
            Assert.True(tensor.eq(b[key]).all().item<bool>(), $"'{key}' differs between two runs with the same seed");
        }
        // The comparison can fail: another seed changes the learned weights.
        var c = TrainWeights(4, root);
        Assert.Contains(a, kv => kv.Value.is_floating_point() && !kv.Value.eq(c[kv.Key]).all().item<bool>());
    }
}
