using MLNet.ImageTransfer.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.Models;

/// <summary>
/// The backbone split into stages (one per backbone layer group): running them in two parts gives the whole
/// backbone's features, which is what lets training keep a frozen prefix's output and run only the rest.
/// </summary>
public class BackboneStageTests
{
    public static TheoryData<string> Families => new() { "densenet", "resnet-basic", "resnet-bottleneck", "vgg", "vgg-bn" };

    static ArchitectureConfig Tiny(string family) => family switch
    {
        "densenet" => new DenseNetConfig(4, [2, 2, 2], 8, BnSize: 2),
        "resnet-basic" => new ResNetConfig(ResNetBlock.Basic, [1, 1, 1, 1], BaseWidth: 4),
        "resnet-bottleneck" => new ResNetConfig(ResNetBlock.Bottleneck, [1, 2, 1, 1], BaseWidth: 4),
        "vgg" => new VggConfig([4, VggConfig.MaxPool, 8, 8, VggConfig.MaxPool, 8, VggConfig.MaxPool], false, ClassifierWidth: 16, PoolSize: 2),
        _ => new VggConfig([4, VggConfig.MaxPool, 8, 8, VggConfig.MaxPool, 8, VggConfig.MaxPool], true, ClassifierWidth: 16, PoolSize: 2),
    };

    [Theory]
    [MemberData(nameof(Families))]
    public void Stages_run_in_two_parts_give_the_whole_backbones_features(string family)
    {
        using var scope = NewDisposeScope();
        manual_seed(7);
        using var network = Tiny(family).Build(3);
        network.eval();
        var images = randn(2, 3, 32, 32);
        using var _ = no_grad();
        var whole = network.ForwardFeatures(images);
        int stages = network.StageCount;
        Assert.Equal(network.LayerGroups.Count - 1, stages);
        for (int split = 0; split <= stages; split++)
        {
            var prefix = network.ForwardStages(images, 0, split);
            var rest = network.ForwardStages(prefix, split, stages);
            Assert.Equal(whole.shape, rest.shape);
            Assert.True(whole.allclose(rest, rtol: 0, atol: 0), $"{family}: split after stage {split} differs");
        }
        Assert.False(images.IsInvalid, "the caller's input is never disposed");
    }
}
