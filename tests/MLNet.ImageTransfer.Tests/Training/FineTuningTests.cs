using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Training;
using TorchSharp;
using static TorchSharp.torch;

// Not "…Tests.Training": that namespace would shadow MLNet.ImageTransfer.Training in sibling test namespaces.
namespace MLNet.ImageTransfer.Tests.FineTuningControls;

/// <summary>
/// Fine-tuning controls, checked on the tensors themselves: frozen parameters are bit-identical after training,
/// unfrozen ones change, the freeze-then-unfreeze schedule switches at the right epoch, only the last K blocks train
/// when asked, BatchNorm statistics of frozen groups stay put (or not, by option), and each layer group gets its own
/// learning rate.
/// </summary>
public class FineTuningTests
{
    static readonly ImagePreprocessing Preprocessing = ImagePreprocessing.TorchVision(32) with { Resize = ResizeMode.Stretch };

    static LabeledImageSet RandomImages(int count = 12, int seed = 5)
    {
        var set = new LabeledImageSet();
        var generator = new torch.Generator((ulong)seed);
        for (int i = 0; i < count; i++)
            set.Add(torch.randint(0, 256, [3, 32, 32], generator: generator).to_type(ScalarType.Byte), i % 3);
        return set;
    }

    static ImageClassifierModel NewModel(int seed = 3)
    {
        lock (Engine.GlobalGenerator.Gate)
        {
            torch.manual_seed(seed);
            return TestData.TinyResNet.Build(3);
        }
    }

    static Dictionary<string, Tensor> Snapshot(ImageClassifierModel m) => m.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());

    static bool Same(Tensor a, Tensor b) => a.eq(b).all().item<bool>();

    /// <summary>Trains and returns the state after each epoch (index 0: before training).</summary>
    static (List<Dictionary<string, Tensor>> States, TrainingHistory History) Train(ImageClassifierModel model, TrainingOptions options)
    {
        options.BatchSize = 4;
        options.KeepBestBy = BestModelMetric.None;
        options.Seed = 1;
        var states = new List<Dictionary<string, Tensor>> { Snapshot(model) };
        options.EpochCompleted = _ => states.Add(Snapshot(model));
        using var data = RandomImages();
        var history = ClassifierTrainingLoop.Fit(model, data, null, Preprocessing, options, CPU, seed: 1);
        return (states, history);
    }

    static IEnumerable<string> KeysOf(ImageClassifierModel model, params string[] groups)
    {
        var names = model.named_modules().ToDictionary(m => (object)m.module, m => m.name, ReferenceEqualityComparer.Instance);
        // A stage's name covers its blocks' groups (layer4 → layer4.0, …).
        foreach (var g in model.LayerGroups.Where(g => groups.Any(name => g.Name == name || g.Name.StartsWith(name + ".", StringComparison.Ordinal))))
            foreach (var module in g.Modules)
            {
                string prefix = names[module];
                foreach (var (key, _) in module.state_dict()) yield return prefix.Length == 0 ? key : $"{prefix}.{key}";
            }
    }

    [Fact]
    public void Feature_extraction_keeps_every_backbone_tensor_bit_identical()
    {
        using var model = NewModel();
        var (states, history) = Train(model, new TrainingOptions { Epochs = 2, FreezeBackbone = true, LearningRate = 1e-2 });
        var backbone = KeysOf(model, "stem", "layer1", "layer2", "layer3", "layer4").ToList();
        Assert.Contains("layer1.0.bn1.running_mean", backbone);
        foreach (var key in backbone) Assert.True(Same(states[0][key], states[^1][key]), $"{key} changed while frozen");
        Assert.False(Same(states[0]["fc.weight"], states[^1]["fc.weight"]), "the head did not train");
        Assert.All(history.Epochs, e => Assert.Equal(TrainingPhase.Frozen, e.Phase));
        Assert.Single(history.Schedule!.Phases);
        Assert.Equal(["head"], history.Schedule.Phases[0].TrainableGroups);
    }

    [Fact]
    public void Freeze_then_unfreeze_switches_at_the_right_epoch()
    {
        using var model = NewModel();
        var (states, history) = Train(model, new TrainingOptions { Epochs = 3, FrozenEpochs = 2, LearningRate = 1e-2, FineTuneLearningRate = 1e-3 });
        var backbone = KeysOf(model, "stem", "layer1", "layer2", "layer3", "layer4").Where(k => k.EndsWith(".weight", StringComparison.Ordinal)).ToList();
        foreach (var key in backbone)
        {
            Assert.True(Same(states[0][key], states[1][key]), $"{key} changed in frozen epoch 1");
            Assert.True(Same(states[0][key], states[2][key]), $"{key} changed in frozen epoch 2");
        }
        Assert.Contains(backbone, key => !Same(states[2][key], states[3][key]));
        Assert.All(backbone.Where(k => k.Contains("conv")), key => Assert.False(Same(states[2][key], states[3][key]), $"{key} did not train after unfreezing"));
        Assert.False(Same(states[0]["fc.weight"], states[1]["fc.weight"]));
        Assert.Equal([TrainingPhase.Frozen, TrainingPhase.Frozen, TrainingPhase.FineTune], history.Epochs.Select(e => e.Phase));
        Assert.Equal([1e-2, 1e-2, 1e-3], history.Epochs.Select(e => e.LearningRate));
        Assert.Equal([(1, 2), (3, 3)], history.Schedule!.Phases.Select(p => (p.FromEpoch, p.ToEpoch)));
    }

    [Fact]
    public void Only_the_last_K_blocks_train_and_frozen_batchnorm_keeps_its_statistics()
    {
        using var model = NewModel();
        var (states, history) = Train(model, new TrainingOptions { Epochs = 1, TrainableBlocks = 1, LearningRate = 1e-2 });
        foreach (var key in KeysOf(model, "stem", "layer1", "layer2", "layer3"))
            Assert.True(Same(states[0][key], states[1][key]), $"{key} changed although its block is frozen");
        Assert.All(KeysOf(model, "layer4").Where(k => k.EndsWith("weight", StringComparison.Ordinal)),
            key => Assert.False(Same(states[0][key], states[1][key]), $"{key} did not train"));
        Assert.False(Same(states[0]["layer4.0.bn1.running_mean"], states[1]["layer4.0.bn1.running_mean"]));
        Assert.Equal(["layer4.0", "head"], history.Schedule!.Phases.Single().TrainableGroups);
        Assert.Equal(TrainingPhase.FineTune, history.Epochs[0].Phase);
    }

    [Fact]
    public void With_batchnorm_statistics_unfrozen_frozen_blocks_keep_their_weights_but_update_their_statistics()
    {
        using var model = NewModel();
        var (states, _) = Train(model, new TrainingOptions { Epochs = 1, TrainableBlocks = 1, FreezeBatchNormStatistics = false });
        Assert.True(Same(states[0]["layer1.0.bn1.weight"], states[1]["layer1.0.bn1.weight"]));
        Assert.True(Same(states[0]["layer1.0.conv1.weight"], states[1]["layer1.0.conv1.weight"]));
        Assert.False(Same(states[0]["layer1.0.bn1.running_mean"], states[1]["layer1.0.bn1.running_mean"]));
    }

    [Fact]
    public void Layer_groups_get_discriminative_learning_rates()
    {
        using var model = NewModel();
        var schedule = FineTuningSchedule.Create(model.LayerGroups, new TrainingOptions
        {
            Epochs = 4, FrozenEpochs = 1, LearningRate = 1e-2, FineTuneLearningRate = 1e-3, LayerLearningRateDecay = 0.5,
            LearningRateMultipliers = new Dictionary<string, double> { ["stem"] = 0.01 },
        });
        Assert.Equal(["stem", "layer1.0", "layer2.0", "layer3.0", "layer4.0", "head"], schedule.LayerGroups);
        var frozen = schedule.PhaseOf(1);
        Assert.True(frozen.HeadOnly);
        Assert.Equal(1e-2, frozen.LearningRates["head"]);
        var fine = schedule.PhaseOf(2);
        Assert.Same(fine, schedule.PhaseOf(4));
        Assert.Equal(1e-3, fine.LearningRates["head"], 12);
        Assert.Equal(1e-3 * 0.5, fine.LearningRates["layer4.0"], 12);
        Assert.Equal(1e-3 * 0.0625, fine.LearningRates["layer1.0"], 12);
        Assert.Equal(1e-5, fine.LearningRates["stem"], 12); // explicit multiplier wins over the decay

        // The optimiser really uses one rate per group: SGD without momentum moves each parameter by rate × gradient.
        FineTuningSchedule.ApplyFreezing(model, model.LayerGroups, fine);
        var options = new TrainingOptions { Optimizer = OptimizerKind.Sgd, Momentum = 0 };
        using var optimizer = FineTuningSchedule.CreateOptimizer(model, model.LayerGroups, fine, options);
        var before = Snapshot(model);
        foreach (var p in model.parameters()) p.grad = torch.ones_like(p);
        optimizer.step();
        var after = Snapshot(model);
        foreach (var (key, expected) in new[] { ("fc.weight", 1e-3), ("layer4.0.conv1.weight", 5e-4), ("layer1.0.conv1.weight", 6.25e-5), ("conv1.weight", 1e-5) })
            Assert.Equal(expected, (before[key] - after[key]).mean().item<float>(), 6);
    }

    [Fact]
    public void Options_that_name_missing_groups_or_too_many_blocks_are_refused()
    {
        using var model = NewModel();
        var tooMany = Assert.Throws<ArgumentException>(() => FineTuningSchedule.Create(model.LayerGroups, new TrainingOptions { TrainableBlocks = 6 }));
        Assert.Contains("stem, layer1.0, layer2.0, layer3.0, layer4.0", tooMany.Message);
        var unknown = Assert.Throws<ArgumentException>(() => FineTuningSchedule.Create(model.LayerGroups,
            new TrainingOptions { LearningRateMultipliers = new Dictionary<string, double> { ["block5"] = 0.1 } }));
        Assert.Contains("'block5'", unknown.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new TrainingOptions { LayerLearningRateDecay = 1.5 }.Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new TrainingOptions { TrainableBlocks = -1 }.Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new TrainingOptions { LearningRateMultipliers = new Dictionary<string, double> { ["head"] = 0 } }.Validate());
    }

    [Fact]
    public void Vgg_exposes_keras_block_names_for_fine_tuning_block5()
    {
        // vgg16's table with its widths divided by 16 (five blocks, as Keras names them block1..block5).
        const int M = VggConfig.MaxPool;
        using var vgg = new VggConfig([4, 4, M, 8, 8, M, 16, 16, 16, M, 32, 32, 32, M, 32, 32, 32, M], false, 16).Build(2);
        var schedule = FineTuningSchedule.Create(vgg.LayerGroups, new TrainingOptions { Epochs = 2, FrozenEpochs = 1, TrainableBlocks = 1 });
        Assert.Equal(["block5", "head"], schedule.PhaseOf(2).TrainableGroups);
    }
}
