using MLNet.ImageTransfer.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Training;

/// <summary>A stretch of epochs with the same trainable layer groups and learning rates.</summary>
/// <param name="FromEpoch">First epoch (1-based).</param>
/// <param name="ToEpoch">Last epoch, inclusive.</param>
/// <param name="TrainableGroups">Layer groups whose parameters train (the head always does).</param>
/// <param name="LearningRates">Learning rate of each trainable group.</param>
public sealed record FineTuningPhase(int FromEpoch, int ToEpoch, IReadOnlyList<string> TrainableGroups, IReadOnlyDictionary<string, double> LearningRates)
{
    /// <summary>The head's learning rate (the rate reported per epoch).</summary>
    public double HeadLearningRate { get; init; }

    /// <summary>True when only the head trains (a frozen backbone: feature extraction, or the first epochs of a freeze-then-unfreeze schedule).</summary>
    public bool HeadOnly { get; init; }

    public override string ToString() =>
        $"epochs {FromEpoch}–{ToEpoch}: train {string.Join(", ", TrainableGroups.Select(g => $"{g} (lr {LearningRates[g]:G3})"))}";
}

/// <summary>
/// The fine-tuning schedule of a run, computed from <see cref="TrainingOptions"/> and the model's layer groups
/// (stem, stages / blocks …, head) and saved with the model: which groups train in which epochs, at which learning
/// rates.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>Feature extraction (<see cref="TrainingOptions.FreezeBackbone"/>): only the head ever trains (Keras' frozen VGG16).</item>
/// <item>Freeze, then unfreeze (<see cref="TrainingOptions.FrozenEpochs"/>): the head alone for N epochs, then the
/// backbone too, at <see cref="TrainingOptions.FineTuneLearningRate"/> (Keras' fine-tuning advice; the optimiser restarts, as
/// Keras' recompile does).</item>
/// <item>Partial unfreezing (<see cref="TrainingOptions.TrainableBlocks"/>): once the backbone trains, only its last K
/// groups do (Keras' VGG16 fine-tuning trains block5: K = 1; fastai's <c>freeze_to</c>).</item>
/// <item>Discriminative learning rates (<see cref="TrainingOptions.LayerLearningRateDecay"/>,
/// <see cref="TrainingOptions.LearningRateMultipliers"/>): the group k steps below the head gets rate × decay^k (timm's
/// layer decay), or an explicit multiplier per group name (fastai's lr_mult).</item>
/// </list>
/// BatchNorm layers of frozen groups stay in eval mode when <see cref="TrainingOptions.FreezeBatchNormStatistics"/> is set,
/// and those of trained groups too when <see cref="TrainingOptions.FineTuneBatchNormStatistics"/> is not.
/// </remarks>
public sealed record FineTuningSchedule(IReadOnlyList<string> LayerGroups, IReadOnlyList<FineTuningPhase> Phases, bool FreezeBatchNormStatistics)
{
    /// <summary>Whether the BatchNorm layers of trained groups update their statistics (see <see cref="TrainingOptions.FineTuneBatchNormStatistics"/>).</summary>
    public bool FineTuneBatchNormStatistics { get; init; } = true;

    /// <summary>The phase an epoch belongs to.</summary>
    public FineTuningPhase PhaseOf(int epoch)
        => Phases.FirstOrDefault(p => epoch >= p.FromEpoch && epoch <= p.ToEpoch)
           ?? throw new ArgumentOutOfRangeException(nameof(epoch), epoch, $"The schedule covers epochs 1–{Phases[^1].ToEpoch}.");

    /// <summary>Computes the schedule for a model's layer groups.</summary>
    /// <exception cref="ArgumentException">An option names a group the model does not have, or asks for more blocks than it has.</exception>
    public static FineTuningSchedule Create(IReadOnlyList<LayerGroup> groups, TrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(groups);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var backbone = groups.Where(g => !g.IsHead).Select(g => g.Name).ToList();
        var head = groups.Where(g => g.IsHead).Select(g => g.Name).ToList();
        var names = backbone.Concat(head).ToList();
        if (options.TrainableBlocks is int k && k > backbone.Count)
            throw new ArgumentException($"TrainableBlocks is {k} but the model's backbone has {backbone.Count} groups ({string.Join(", ", backbone)}).", nameof(options));
        // A multiplier names a group, or a stage whose blocks are groups (layer4 → layer4.0, layer4.1, …).
        static bool Covers(string name, string group) => group == name || group.StartsWith(name + ".", StringComparison.Ordinal);
        if (options.LearningRateMultipliers is { } multipliers)
            foreach (var name in multipliers.Keys)
                if (!names.Any(g => Covers(name, g)))
                    throw new ArgumentException($"LearningRateMultipliers names the group '{name}', which this model does not have. Its groups: {string.Join(", ", names)}.", nameof(options));

        double Multiplier(string group)
        {
            if (options.LearningRateMultipliers is { } m)
            {
                if (m.TryGetValue(group, out var exact)) return exact;
                // The longest name that covers the group wins (layer4.2 over layer4).
                var covering = m.Where(kv => Covers(kv.Key, group)).OrderByDescending(kv => kv.Key.Length).Select(kv => (double?)kv.Value).FirstOrDefault();
                if (covering is double stage) return stage;
            }
            int index = backbone.IndexOf(group);
            if (index < 0 || options.LayerLearningRateDecay is not double decay) return 1;
            return Math.Pow(decay, backbone.Count - index); // the last backbone group is one step below the head
        }

        FineTuningPhase Phase(int from, int to, IEnumerable<string> trainable, double lr, bool headOnly)
        {
            var list = trainable.ToList();
            return new FineTuningPhase(from, to, list, list.ToDictionary(g => g, g => lr * Multiplier(g)))
            {
                HeadLearningRate = lr,
                HeadOnly = headOnly,
            };
        }

        var phases = new List<FineTuningPhase>();
        int frozen = options.HeadOnlyEpochs;
        if (frozen > 0) phases.Add(Phase(1, frozen, head, options.LearningRate, headOnly: true));
        if (frozen < options.Epochs)
        {
            double lr = frozen > 0 ? options.FineTuneLearningRate ?? options.LearningRate : options.LearningRate;
            var unfrozen = options.TrainableBlocks is int blocks ? backbone.Skip(backbone.Count - blocks) : backbone;
            phases.Add(Phase(frozen + 1, options.Epochs, unfrozen.Concat(head), lr, headOnly: false));
        }
        return new FineTuningSchedule(names, phases, options.FreezeBatchNormStatistics) { FineTuneBatchNormStatistics = options.FineTuneBatchNormStatistics };
    }

    /// <summary>Sets <c>requires_grad</c> for the phase: trainable groups on, the rest off.</summary>
    internal static void ApplyFreezing(ImageClassifierModel model, IReadOnlyList<LayerGroup> groups, FineTuningPhase phase)
    {
        var grouped = new HashSet<IntPtr>();
        foreach (var g in groups)
        {
            bool trainable = phase.TrainableGroups.Contains(g.Name);
            foreach (var p in g.Parameters())
            {
                p.requires_grad = trainable;
                grouped.Add(p.Handle);
            }
        }
        foreach (var p in model.parameters())
            if (!grouped.Contains(p.Handle)) p.requires_grad = true; // a parameter outside every group trains with the head
    }

    /// <summary>Puts the modules of frozen groups in eval mode (their BatchNorms then use, and keep, their running statistics).</summary>
    internal void ApplyBatchNormFreezing(IReadOnlyList<LayerGroup> groups, FineTuningPhase phase)
    {
        if (FreezeBatchNormStatistics)
            foreach (var g in groups)
                if (!phase.TrainableGroups.Contains(g.Name))
                    foreach (var m in g.Modules) m.eval();
        if (!FineTuneBatchNormStatistics)
            foreach (var g in groups.Where(g => !g.IsHead && phase.TrainableGroups.Contains(g.Name)))
                foreach (var root in g.Modules)
                    foreach (var m in root.modules().Prepend(root))
                        if (m.GetType().Name.StartsWith("BatchNorm", StringComparison.Ordinal)) m.eval();
    }

    /// <summary>The optimiser for a phase: one parameter group per layer group, each at its learning rate.</summary>
    internal static optim.Optimizer CreateOptimizer(ImageClassifierModel model, IReadOnlyList<LayerGroup> groups, FineTuningPhase phase, TrainingOptions options)
    {
        var rates = groups.Where(g => phase.TrainableGroups.Contains(g.Name))
            .Select(g => (Parameters: g.Parameters().Where(p => p.requires_grad).ToList(), Lr: phase.LearningRates[g.Name]))
            .Where(g => g.Parameters.Count > 0).ToList();
        var grouped = new HashSet<IntPtr>(groups.SelectMany(g => g.Parameters()).Select(p => p.Handle));
        var ungrouped = model.parameters().Where(p => !grouped.Contains(p.Handle)).ToList();
        if (ungrouped.Count > 0) rates.Add((ungrouped, phase.HeadLearningRate));

        // TorchSharp's optimizers with explicitly disposed scalars (Training/Optimizers/ScalarSafeOptimizers.cs).
        if (rates.All(r => r.Lr == phase.HeadLearningRate))
        {
            // One rate: the plain optimiser (identical to the loop before layer-wise rates existed).
            var all = rates.SelectMany(r => r.Parameters);
            return options.Optimizer switch
            {
                OptimizerKind.Adam => new Optimizers.Adam(all, phase.HeadLearningRate, options.WeightDecay),
                OptimizerKind.Sgd => new Optimizers.SGD(all, phase.HeadLearningRate, options.Momentum, options.WeightDecay),
                OptimizerKind.AdamW => new Optimizers.AdamW(all, phase.HeadLearningRate, options.WeightDecay),
                _ => throw new ArgumentOutOfRangeException(nameof(options), options.Optimizer, "Unknown optimizer."),
            };
        }
        return options.Optimizer switch
        {
            OptimizerKind.Adam => new Optimizers.Adam(rates.Select(r => new Adam.ParamGroup(r.Parameters, lr: r.Lr, weight_decay: options.WeightDecay)),
                phase.HeadLearningRate, options.WeightDecay),
            OptimizerKind.Sgd => new Optimizers.SGD(rates.Select(r => new SGD.ParamGroup(r.Parameters, lr: r.Lr, momentum: options.Momentum, weight_decay: options.WeightDecay)),
                phase.HeadLearningRate, options.Momentum, options.WeightDecay),
            OptimizerKind.AdamW => new Optimizers.AdamW(rates.Select(r => new AdamW.ParamGroup(r.Parameters, lr: r.Lr, weight_decay: options.WeightDecay)),
                phase.HeadLearningRate, options.WeightDecay),
            _ => throw new ArgumentOutOfRangeException(nameof(options), options.Optimizer, "Unknown optimizer."),
        };
    }
}
