using MLNet.ImageTransfer.Augmentation;

namespace MLNet.ImageTransfer.Training;

public enum OptimizerKind
{
    /// <summary>Adam (Keras' and most transfer-learning recipes' default).</summary>
    Adam,
    /// <summary>SGD with momentum (torchvision's reference recipe).</summary>
    Sgd,
    /// <summary>
    /// AdamW: Adam with decoupled weight decay (Loshchilov &amp; Hutter; PyTorch's AdamW, Keras' AdamW). With Adam,
    /// <see cref="TrainingOptions.WeightDecay"/> is an L2 term added to the gradient (PyTorch's Adam(weight_decay)),
    /// which Adam's per-parameter scaling weakens; AdamW shrinks the weights directly by lr × decay each step.
    /// </summary>
    AdamW,
}

/// <summary>Which validation number decides the "best" epoch whose weights are kept.</summary>
public enum BestModelMetric
{
    /// <summary>Keep the weights of the last epoch.</summary>
    None,
    /// <summary>Lowest validation loss (Keras ModelCheckpoint(monitor="val_loss", save_best_only=True)).</summary>
    ValidationLoss,
    /// <summary>Highest validation accuracy (torchvision's fine-tuning tutorial keeps that epoch).</summary>
    ValidationAccuracy,
}

/// <summary>
/// How the network is trained. Independent of ML.NET: the trainers' Options derive from this class, and the training
/// loop reads nothing else.
/// </summary>
public class TrainingOptions
{
    /// <summary>Passes over the training set. Default 10.</summary>
    public int Epochs { get; set; } = 10;

    /// <summary>Images per optimisation step. Default 32.</summary>
    public int BatchSize { get; set; } = 32;

    /// <summary>Learning rate. Default 1e-3 (Adam's default).</summary>
    public double LearningRate { get; set; } = 1e-3;

    /// <summary>Optimiser. Default Adam.</summary>
    public OptimizerKind Optimizer { get; set; } = OptimizerKind.Adam;

    /// <summary>SGD momentum (ignored by Adam). Default 0.9.</summary>
    public double Momentum { get; set; } = 0.9;

    /// <summary>
    /// Weight decay. Default 0. Adam and SGD: an L2 penalty added to the gradient (PyTorch's <c>weight_decay</c>);
    /// AdamW: decoupled decay (weights × (1 − lr·decay) each step; PyTorch's AdamW default is 0.01).
    /// </summary>
    public double WeightDecay { get; set; }

    /// <summary>
    /// How the schedule options left at their defaults are filled in. Default <see cref="TrainingRecipe.Auto"/>: from
    /// pretrained weights with no schedule set, <see cref="TrainingRecipe.HeadThenLastBlock"/> (head on cached features,
    /// then the last block at a hundredth of the rate); from scratch, the options as set. The run says which it picked
    /// (<see cref="TrainingHistory.Recipe"/>, and the ML.NET log).
    /// </summary>
    public TrainingRecipe Recipe { get; set; } = TrainingRecipe.Auto;

    /// <summary>
    /// Epochs at the start during which the backbone is frozen and only the head trains (Keras' fine-tuning advice: train the
    /// new head first, then fine-tune everything). Default 0: everything trains from the first epoch.
    /// </summary>
    public int FrozenEpochs { get; set; }

    /// <summary>
    /// Learning rate once the backbone is unfrozen; null keeps <see cref="LearningRate"/>. Fine-tuning usually wants a
    /// rate ~10× lower. The optimiser restarts at the switch, as Keras' recompile does.
    /// </summary>
    public double? FineTuneLearningRate { get; set; }

    /// <summary>While the backbone is frozen, its BatchNorm layers use their running statistics (Keras semantics). Default true.</summary>
    public bool FreezeBatchNormStatistics { get; set; } = true;

    /// <summary>
    /// Whether the BatchNorm layers of the groups being fine-tuned update their statistics from each batch (PyTorch's
    /// <c>model.train()</c>). Default true. False keeps every BatchNorm in inference mode while its weights train — the
    /// advice of Keras' fine-tuning guide: on small datasets, batch statistics of a few dozen images pull a pretrained
    /// network's normalisation away from what its later layers expect.
    /// </summary>
    public bool FineTuneBatchNormStatistics { get; set; } = true;

    /// <summary>
    /// Feature extraction: the backbone never trains, only the head does (Keras' <c>base_model.trainable = False</c>;
    /// Keras' frozen VGG16). Default false.
    /// </summary>
    public bool FreezeBackbone { get; set; }

    /// <summary>
    /// When the backbone trains, only its last K layer groups do, counted from the head (see
    /// <see cref="Models.ImageClassifierModel.LayerGroups"/>): a ResNet's residual blocks (K = 3 is layer4 of a
    /// ResNet-50), a DenseNet's dense blocks with their transitions, a VGG's blocks (fine-tuning VGG16's block5 is
    /// K = 1). 0 is feature extraction. Null (default): the whole backbone.
    /// </summary>
    public int? TrainableBlocks { get; set; }

    /// <summary>
    /// Discriminative learning rates (timm's layer decay): the backbone group k steps below the head trains at
    /// rate × decay^k (the last block at rate × decay, the stem lowest). Null (default): one rate for all.
    /// </summary>
    public double? LayerLearningRateDecay { get; set; }

    /// <summary>
    /// Learning-rate multipliers by layer group name (<c>stem</c>, <c>layer4</c>, <c>block5</c>, <c>head</c>…; fastai's
    /// lr_mult). They override <see cref="LayerLearningRateDecay"/> for the groups they name.
    /// </summary>
    public IDictionary<string, double>? LearningRateMultipliers { get; set; }

    /// <summary>Which weights to keep at the end when a validation set exists. Default: lowest validation loss.</summary>
    public BestModelMetric KeepBestBy { get; set; } = BestModelMetric.ValidationLoss;

    /// <summary>Random seed for initialisation, shuffling and dropout; null takes one from the MLContext. Same seed, same data, CPU → same model.</summary>
    public int? Seed { get; set; }

    /// <summary>Compute device: <c>cpu</c>, <c>cuda</c> or <c>cuda:N</c> (CUDA needs the TorchSharp-cuda runtime package). Default cpu.</summary>
    public string Device { get; set; } = "cpu";

    /// <summary>
    /// Random image augmentation applied to the training images each epoch (flips, rotations, crops, colour, …;
    /// see <see cref="AugmentationPipeline"/>). Training only: validation, evaluation and prediction never
    /// augment. Null (default) or empty: none.
    /// </summary>
    public AugmentationPipeline? Augmentation { get; set; }

    /// <summary>
    /// Whether <see cref="Augmentation"/> also applies to the epochs that train the head alone (the first
    /// <see cref="FrozenEpochs"/>, or all of a feature-extraction run). Default true. False trains the new head on the
    /// unaugmented images, which lets those epochs use the <see cref="CacheBackboneFeatures">feature cache</see>
    /// even when fine-tuning follows, and keeps augmentation for the epochs that update the backbone.
    /// </summary>
    public bool AugmentFrozenEpochs { get; set; } = true;

    /// <summary>The epochs at the start in which only the head trains: all of them for feature extraction, else <see cref="FrozenEpochs"/>.</summary>
    internal int HeadOnlyEpochs => FreezeBackbone || TrainableBlocks == 0 ? Epochs : FrozenEpochs;

    /// <summary>Whether the training images of a phase are augmented.</summary>
    internal bool AugmentsPhase(FineTuningPhase phase) => Augmentation is { IsEmpty: false } && (AugmentFrozenEpochs || !phase.HeadOnly);

    /// <summary>
    /// Bottleneck cache: what frozen stages of the backbone compute is computed once per image and reused. Epochs that
    /// train the head alone (the first <see cref="FrozenEpochs"/>, or all of a feature-extraction run) run only the head
    /// after the first; epochs that fine-tune the last <see cref="TrainableBlocks"/> run only those blocks. Applies to
    /// a phase whose frozen stages keep their BatchNorm statistics (<see cref="FreezeBatchNormStatistics"/>) and whose
    /// images are not augmented (see <see cref="AugmentFrozenEpochs"/>). The result is the same as without it
    /// (Training/FeatureCache.cs). Default true.
    /// </summary>
    public bool CacheBackboneFeatures { get; set; } = true;

    /// <summary>Bytes of cached features held in memory; beyond them, features go to a temporary file. Default 2 GiB.</summary>
    public long FeatureCacheMemoryLimit { get; set; } = 2L << 30;

    /// <summary>
    /// Learning-rate schedule (<see cref="Schedules.StepSchedule"/>, <see cref="Schedules.CosineSchedule"/> with warm-up,
    /// <see cref="Schedules.OneCycleSchedule"/>, <see cref="Schedules.ReduceOnPlateauSchedule"/>): scales
    /// <see cref="LearningRate"/> (and <see cref="FineTuneLearningRate"/> once unfrozen). Null (default): constant.
    /// </summary>
    public Schedules.LearningRateSchedule? LearningRateSchedule { get; set; }

    /// <summary>Keras-style callbacks (<see cref="Callbacks.EarlyStopping"/> or your own <see cref="Callbacks.TrainingCallback"/>).</summary>
    public IList<Callbacks.TrainingCallback> Callbacks { get; set; } = new List<Callbacks.TrainingCallback>();

    /// <summary>Label smoothing ε in [0, 1) of the training loss (PyTorch / Keras definition). Default 0.</summary>
    public double LabelSmoothing { get; set; }

    /// <summary>Per-class loss weights (<see cref="Training.ClassWeights.Balanced"/> or explicit). Null (default): all 1.</summary>
    public ClassWeights? ClassWeights { get; set; }

    /// <summary>
    /// Draw each epoch's images with replacement so that every class is equally likely (PyTorch's
    /// WeightedRandomSampler with 1/n_class weights). Default false: each image once per epoch.
    /// </summary>
    public bool BalancedSampling { get; set; }

    /// <summary>Clip the gradients' total L2 norm to this value before each step (PyTorch's clip_grad_norm_). Null (default): no clipping.</summary>
    public double? GradientClipNorm { get; set; }

    /// <summary>
    /// Folder for checkpoints (<see cref="Checkpoints.CheckpointDirectory"/>): after every epoch the model, optimizer
    /// state, RNG state and history (the newest two kept), the best epoch's weights when a best epoch is tracked, and
    /// a checkpoint when training is interrupted. Null (default): none.
    /// </summary>
    public string? CheckpointDirectory { get; set; }

    /// <summary>
    /// Continue from the newest valid checkpoint in <see cref="CheckpointDirectory"/> (Keras' BackupAndRestore): same
    /// seed, data and settings give the same final weights as an uninterrupted run (CPU). Without a checkpoint there, the
    /// run starts from scratch (noted in <see cref="TrainingHistory.Notes"/>). Default false.
    /// </summary>
    public bool Resume { get; set; }

    /// <summary>Stops training after the current step (checkpointed when <see cref="CheckpointDirectory"/> is set); the CLI wires Ctrl+C here.</summary>
    public CancellationToken Cancellation { get; set; }

    /// <summary>Called after every epoch with its losses and accuracies (Keras' fit line).</summary>
    public Action<EpochSummary>? EpochCompleted { get; set; }

    /// <summary>Called after every optimisation step (for progress bars).</summary>
    public Action<StepProgress>? StepCompleted { get; set; }

    public virtual void Validate()
    {
        if (Epochs < 1) throw new ArgumentOutOfRangeException(nameof(Epochs), Epochs, "Epochs must be at least 1.");
        if (BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, "Batch size must be at least 1.");
        if (!(LearningRate > 0) || double.IsInfinity(LearningRate)) throw new ArgumentOutOfRangeException(nameof(LearningRate), LearningRate, "Learning rate must be positive.");
        if (FineTuneLearningRate is { } ft && !(ft > 0)) throw new ArgumentOutOfRangeException(nameof(FineTuneLearningRate), ft, "Fine-tune learning rate must be positive.");
        if (Momentum is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(Momentum), Momentum, "Momentum must be in [0, 1).");
        if (WeightDecay < 0) throw new ArgumentOutOfRangeException(nameof(WeightDecay), WeightDecay, "Weight decay cannot be negative.");
        if (FrozenEpochs < 0 || FrozenEpochs > Epochs) throw new ArgumentOutOfRangeException(nameof(FrozenEpochs), FrozenEpochs, $"Frozen epochs must be between 0 and Epochs ({Epochs}).");
        if (TrainableBlocks < 0) throw new ArgumentOutOfRangeException(nameof(TrainableBlocks), TrainableBlocks, "Trainable blocks cannot be negative.");
        if (LayerLearningRateDecay is { } decay && !(decay > 0 && decay <= 1)) throw new ArgumentOutOfRangeException(nameof(LayerLearningRateDecay), decay, "Layer learning-rate decay must be in (0, 1].");
        if (LearningRateMultipliers?.FirstOrDefault(kv => !(kv.Value > 0) || double.IsInfinity(kv.Value)) is { Key: not null } bad)
            throw new ArgumentOutOfRangeException(nameof(LearningRateMultipliers), bad.Value, $"The learning-rate multiplier of '{bad.Key}' must be positive (freeze groups with TrainableBlocks instead).");
        if (FeatureCacheMemoryLimit < 0) throw new ArgumentOutOfRangeException(nameof(FeatureCacheMemoryLimit), FeatureCacheMemoryLimit, "The feature cache's memory limit cannot be negative.");
        if (!(LabelSmoothing >= 0 && LabelSmoothing < 1)) throw new ArgumentOutOfRangeException(nameof(LabelSmoothing), LabelSmoothing, "Label smoothing must be in [0, 1).");
        if (GradientClipNorm is { } clip && !(clip > 0)) throw new ArgumentOutOfRangeException(nameof(GradientClipNorm), clip, "The gradient clipping norm must be positive.");
        if (Resume && string.IsNullOrWhiteSpace(CheckpointDirectory)) throw new ArgumentException("Resume needs a CheckpointDirectory to resume from.", nameof(Resume));
        if (Callbacks is null) throw new ArgumentNullException(nameof(Callbacks));
        foreach (var early in Callbacks.OfType<Callbacks.EarlyStopping>()) early.Validate();
        LearningRateSchedule?.Validate();
        Augmentation?.Validate();
    }

    /// <summary>A shallow copy with a change (the caller's options stay as they were).</summary>
    internal TrainingOptions With(Action<TrainingOptions> change)
    {
        var copy = (TrainingOptions)MemberwiseClone();
        change(copy);
        return copy;
    }

    /// <summary>A shallow copy with another <see cref="Augmentation"/> (the trainers use it for augmentation that comes from the pipeline).</summary>
    internal TrainingOptions WithAugmentation(AugmentationPipeline? augmentation)
    {
        if (ReferenceEquals(augmentation, Augmentation)) return this;
        var copy = (TrainingOptions)MemberwiseClone();
        copy.Augmentation = augmentation;
        return copy;
    }
}
