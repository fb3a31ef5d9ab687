using System.Diagnostics;
using MLNet.ImageTransfer.Augmentation;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Training;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

// Not "…Tests.Training": that namespace would shadow MLNet.ImageTransfer.Training in sibling test namespaces.
namespace MLNet.ImageTransfer.Tests.FineTuningControls;

/// <summary>
/// The bottleneck cache: with a frozen backbone, frozen BatchNorm statistics and no augmentation, the backbone runs in
/// the first epoch only (counted by a hook on its first convolution) and the trained head equals the uncached run's.
/// </summary>
public class FeatureCacheTests(ITestOutputHelper output)
{
    static readonly ImagePreprocessing Preprocessing = ImagePreprocessing.TorchVision(32) with { Resize = ResizeMode.Stretch };

    static LabeledImageSet RandomImages(int count, int seed, int size = 32)
    {
        var set = new LabeledImageSet();
        var generator = new torch.Generator((ulong)seed);
        for (int i = 0; i < count; i++)
            set.Add(torch.randint(0, 256, [3, size, size], generator: generator).to_type(ScalarType.Byte), i % 3);
        return set;
    }

    sealed record Run(ImageClassifierModel Network, TrainingHistory History, List<int> StemCallsPerEpoch);

    /// <summary>Trains a tiny ResNet with a Keras MLP head (dropout draws must line up too), counting stem convolutions per epoch.</summary>
    static Run Train(Action<TrainingOptions> configure, ArchitectureConfig? architecture = null, int trainCount = 20, int validationCount = 7,
        ImagePreprocessing? preprocessing = null, int epochs = 3)
    {
        preprocessing ??= Preprocessing;
        using var train = RandomImages(trainCount, seed: 5, preprocessing.ImageSize);
        using var validation = RandomImages(validationCount, seed: 6, preprocessing.ImageSize);
        var options = new TrainingOptions { Epochs = epochs, BatchSize = 8, LearningRate = 3e-3, FreezeBackbone = true, KeepBestBy = BestModelMetric.None };
        configure(options);
        var calls = 0;
        var perEpoch = new List<int>();
        options.EpochCompleted = _ => { perEpoch.Add(calls); calls = 0; };
        lock (Engine.GlobalGenerator.Gate)
        {
            torch.manual_seed(3);
            var network = (architecture ?? TestData.TinyResNet).Build(3, HeadSpec.KerasMlp(hiddenUnits: 16, dropout: 0.3));
            var stem = (nn.Module<Tensor, Tensor>)network.named_modules().First(m => m.name is "conv1" or "features.conv0" or "features.0").module;
            stem.register_forward_pre_hook((_, x) => { calls++; return x; });
            torch.manual_seed(11); // dropout
            var history = ClassifierTrainingLoop.Fit(network, train, validation, preprocessing, options, CPU, seed: 1);
            return new Run(network, history, perEpoch);
        }
    }

    static double MaxHeadDifference(ImageClassifierModel a, ImageClassifierModel b) => MaxDifference(a, b, a.ClassifierName + ".");

    static double MaxDifference(ImageClassifierModel a, ImageClassifierModel b, string prefix)
    {
        var bState = b.state_dict();
        return a.state_dict().Where(kv => kv.Key.StartsWith(prefix) && kv.Value.is_floating_point())
            .Max(kv => kv.Value.sub(bState[kv.Key]).abs().max().item<float>());
    }

    [Fact]
    public void The_backbone_runs_only_in_the_first_epoch_and_the_head_trains_as_without_the_cache()
    {
        var plain = Train(o => o.CacheBackboneFeatures = false);
        var cached = Train(o => o.CacheBackboneFeatures = true);
        int steps = 3, validationBatches = 1;
        output.WriteLine($"stem calls per epoch: without cache {string.Join(", ", plain.StemCallsPerEpoch)}; with cache {string.Join(", ", cached.StemCallsPerEpoch)}");

        Assert.Equal([steps + validationBatches, steps + validationBatches, steps + validationBatches], plain.StemCallsPerEpoch);
        Assert.Equal([steps + validationBatches, 0, 0], cached.StemCallsPerEpoch);
        Assert.Equal([steps, steps, steps], plain.History.Epochs.Select(e => e.BackboneBatches));
        Assert.Equal([steps, 0, 0], cached.History.Epochs.Select(e => e.BackboneBatches));
        Assert.Contains("cached features", cached.History.Epochs[1].ToString());

        double max = MaxHeadDifference(plain.Network, cached.Network);
        output.WriteLine($"max |head weight difference| = {max:E2}");
        Assert.InRange(max, 0, 1e-5);
        foreach (var (p, c) in plain.History.Epochs.Zip(cached.History.Epochs))
        {
            Assert.Equal(p.TrainLoss, c.TrainLoss, 5);
            Assert.Equal(p.ValidationLoss!.Value, c.ValidationLoss!.Value, 5);
        }
    }

    [Fact]
    public void Features_beyond_the_memory_limit_go_to_disk_with_the_same_result()
    {
        var plain = Train(o => o.CacheBackboneFeatures = false);
        var spilled = Train(o => o.FeatureCacheMemoryLimit = 5_000); // a few rows in memory, the rest in the temporary file
        Assert.Equal([4, 0, 0], spilled.StemCallsPerEpoch);
        Assert.InRange(MaxHeadDifference(plain.Network, spilled.Network), 0, 1e-5);
    }

    [Fact]
    public void No_cache_when_the_features_would_change_between_epochs()
    {
        // Augmentation: other pixels every epoch.
        var augmented = Train(o => o.Augmentation = AugmentationPipeline.Parse("fliplr"));
        Assert.All(augmented.History.Epochs, e => Assert.Equal(3, e.BackboneBatches));
        // BatchNorm statistics updating in the frozen backbone.
        var updating = Train(o => o.FreezeBatchNormStatistics = false);
        Assert.All(updating.History.Epochs, e => Assert.Equal(3, e.BackboneBatches));
        // The backbone unfreezes after the first epoch.
        var unfreezing = Train(o => { o.FreezeBackbone = false; o.FrozenEpochs = 1; });
        Assert.All(unfreezing.History.Epochs, e => Assert.Equal(3, e.BackboneBatches));
        Assert.Equal([4, 4, 4], unfreezing.StemCallsPerEpoch);
    }

    [Fact]
    public void Head_first_then_the_last_stage_reads_the_images_once_and_trains_as_without_the_cache()
    {
        // Epoch 1 trains the head (and keeps both the last stage's input and the backbone's output); epochs 2–3
        // fine-tune layer4 on the kept layer3 output.
        void Recipe(TrainingOptions o) { o.FreezeBackbone = false; o.FrozenEpochs = 1; o.TrainableBlocks = 1; }
        var plain = Train(o => { Recipe(o); o.CacheBackboneFeatures = false; });
        var cached = Train(Recipe);
        output.WriteLine($"stem calls per epoch: without cache {string.Join(", ", plain.StemCallsPerEpoch)}; with cache {string.Join(", ", cached.StemCallsPerEpoch)}");
        Assert.Equal([4, 4, 4], plain.StemCallsPerEpoch);
        Assert.Equal([4, 0, 0], cached.StemCallsPerEpoch);
        Assert.Equal([3, 0, 0], cached.History.Epochs.Select(e => e.BackboneBatches));

        double head = MaxHeadDifference(plain.Network, cached.Network), layer4 = MaxDifference(plain.Network, cached.Network, "layer4.");
        output.WriteLine($"max |difference|: head {head:E2}, layer4 {layer4:E2}");
        Assert.InRange(head, 0, 1e-5);
        Assert.InRange(layer4, 0, 1e-5);
        Assert.InRange(MaxDifference(plain.Network, cached.Network, "layer1."), 0, 0); // frozen throughout
        foreach (var (p, c) in plain.History.Epochs.Zip(cached.History.Epochs))
        {
            Assert.Equal(p.TrainLoss, c.TrainLoss, 5);
            Assert.Equal(p.ValidationLoss!.Value, c.ValidationLoss!.Value, 5);
        }
    }

    [Fact]
    public void Head_epochs_without_augmentation_use_the_cache_and_fine_tuning_epochs_augment()
    {
        var run = Train(o =>
        {
            o.FreezeBackbone = false;
            o.FrozenEpochs = 2;
            o.Augmentation = AugmentationPipeline.Parse("fliplr");
            o.AugmentFrozenEpochs = false;
        }, epochs: 4);
        // Epoch 1 fills the cache, epoch 2 reads it; epochs 3–4 train the whole network on augmented images.
        Assert.Equal([3, 0, 3, 3], run.History.Epochs.Select(e => e.BackboneBatches));
        Assert.Equal([4, 0, 4, 4], run.StemCallsPerEpoch);
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void Epoch_times_with_and_without_the_cache()
    {
        var resnet18 = Architectures.Get("resnet18");
        var p = ImagePreprocessing.TorchVision(96) with { Resize = ResizeMode.Stretch };
        foreach (bool cache in new[] { false, true })
        {
            var run = Train(o => o.CacheBackboneFeatures = cache, resnet18, trainCount: 96, validationCount: 0, preprocessing: p, epochs: 4);
            output.WriteLine($"resnet18 @96px, 96 images, batch 8, cache {(cache ? "on " : "off")}: epochs " +
                string.Join(", ", run.History.Epochs.Select(e => $"{e.Duration.TotalMilliseconds:F0} ms")));
            if (cache) Assert.True(run.History.Epochs.Skip(1).Max(e => e.Duration) < run.History.Epochs[0].Duration / 4, "cached epochs should be much faster");
        }
    }
}
