namespace MLNet.ImageTransfer.Training;

/// <summary>How the trainer fills in the schedule a user left at its defaults (see <see cref="TrainingOptions.Recipe"/>).</summary>
public enum TrainingRecipe
{
    /// <summary>
    /// Pick by situation (default): <see cref="HeadThenLastBlock"/> when training starts from pretrained weights and no
    /// schedule option is set (<see cref="TrainingOptions.FreezeBackbone"/>, <see cref="TrainingOptions.FrozenEpochs"/>,
    /// <see cref="TrainingOptions.TrainableBlocks"/>, <see cref="TrainingOptions.FineTuneLearningRate"/>, layer decay or
    /// multipliers); otherwise <see cref="AsGiven"/>.
    /// </summary>
    Auto,

    /// <summary>The options exactly as set. With their defaults every layer trains from the first epoch at one learning rate (training from scratch).</summary>
    AsGiven,

    /// <summary>
    /// Transfer learning as a careful practitioner does it on a small dataset (Keras' transfer-learning guide; timm's
    /// and fastai's fine-tuning): the new head first, trained on the backbone's features computed once and cached;
    /// then the last layer group of the backbone with the head, at a hundredth of the learning rate (the head itself at
    /// three times it: see <see cref="TrainingRecipes.HeadLearningRateFactor"/>) and with its BatchNorm
    /// layers kept in inference mode, for the last third of the epochs (at least one); the best epoch by
    /// <see cref="TrainingOptions.KeepBestBy"/> is kept. Augmentation, when set, applies to the fine-tuning epochs only,
    /// so that the head's epochs stay on cached features. Schedule options the user set are kept.
    /// </summary>
    HeadThenLastBlock,
}

/// <summary>The recipes' settings (one place for each) and how a run's options are completed by its recipe.</summary>
public static class TrainingRecipes
{
    /// <summary>Layer groups of the backbone that <see cref="TrainingRecipe.HeadThenLastBlock"/> fine-tunes (a ResNet's last residual block, a VGG's block5, a DenseNet's last dense block).</summary>
    public const int FineTunedGroups = 1;

    /// <summary>
    /// The head's learning rate as a multiple of <see cref="TrainingOptions.LearningRate"/>. A new linear layer on fixed
    /// features needs larger steps than a network does: on two photo sets (ResNet18 features, Adam, batch 32), 3e-3
    /// reached in 5 epochs the validation loss that 1e-3 reached in 30; 1e-2 was no better and less steady.
    /// </summary>
    public const double HeadLearningRateFactor = 3;

    /// <summary>
    /// The fine-tuning learning rate as a fraction of <see cref="TrainingOptions.LearningRate"/>: 1e-5 for Adam's 1e-3,
    /// as Keras' fine-tuning guide uses. The optimiser restarts at the switch, and Adam's first steps move every weight
    /// by about the learning rate: at 1e-4 one epoch on the last ResNet18 block raised the validation loss on a
    /// weather photo set (0.10 → 0.14); at 1e-5 it lowered it (0.10 → 0.08).
    /// </summary>
    public const double FineTuneLearningRateFactor = 0.01;

    /// <summary>
    /// Epochs of fine-tuning out of <paramref name="epochs"/>: the last third, at least one (none for a single epoch).
    /// Head epochs on cached features cost little; a fine-tuning epoch costs a forward and backward pass through the
    /// fine-tuned block for every image, so the head gets most of the epochs.
    /// </summary>
    public static int FineTuneEpochs(int epochs) => epochs < 2 ? 0 : Math.Max(1, epochs / 3);

    /// <summary>The recipe <paramref name="options"/> resolve to, for a run that does or does not start from pretrained weights.</summary>
    public static TrainingRecipe Resolve(TrainingOptions options, bool pretrained)
    {
        ArgumentNullException.ThrowIfNull(options);
        return options.Recipe switch
        {
            TrainingRecipe.Auto => pretrained && ScheduleIsDefault(options) ? TrainingRecipe.HeadThenLastBlock : TrainingRecipe.AsGiven,
            var chosen => chosen,
        };
    }

    /// <summary>
    /// The options the run trains with: a copy completed by the resolved recipe (the caller's options are not changed),
    /// and a sentence saying what the run will do and why, for the log.
    /// </summary>
    public static (TrainingOptions Options, string Description) Apply(TrainingOptions options, bool pretrained)
    {
        var recipe = Resolve(options, pretrained);
        if (recipe == TrainingRecipe.AsGiven)
            return (options, Describe(options, pretrained ? "the schedule as set" : "no pretrained weights: every layer trains from the first epoch"));

        var completed = options.With(o =>
        {
            if (!o.FreezeBackbone && o.FrozenEpochs == 0) o.FrozenEpochs = o.Epochs - FineTuneEpochs(o.Epochs);
            o.TrainableBlocks ??= FineTunedGroups;
            o.FineTuneLearningRate ??= o.LearningRate * FineTuneLearningRateFactor;
            o.LearningRate *= HeadLearningRateFactor; // the head's epochs (and a feature-extraction run)
            o.FineTuneBatchNormStatistics = false;
            o.AugmentFrozenEpochs = false;
        });
        return (completed, Describe(completed, "pretrained weights"));
    }

    static string Describe(TrainingOptions o, string why)
    {
        int frozen = o.HeadOnlyEpochs;
        var parts = new List<string>();
        if (frozen > 0)
            parts.Add($"{Epochs(frozen)} training the head alone" + (o.CacheBackboneFeatures && !(o.Augmentation is { IsEmpty: false } && o.AugmentFrozenEpochs) ? " on cached backbone features" : "") + $" (lr {o.LearningRate:G3})");
        if (frozen < o.Epochs)
        {
            string which = o.TrainableBlocks is int k ? $"the last {(k == 1 ? "layer group" : $"{k} layer groups")} of the backbone" : "the whole network";
            double lr = frozen > 0 ? o.FineTuneLearningRate ?? o.LearningRate : o.LearningRate;
            parts.Add($"{Epochs(o.Epochs - frozen)} training {which}" + (frozen > 0 ? " and the head" : "") + $" (lr {lr:G3}"
                + (o.FineTuneBatchNormStatistics ? "" : ", BatchNorm statistics kept")
                + (o.Augmentation is { IsEmpty: false } ? ", augmented" : "") + ")");
        }
        string kept = o.KeepBestBy switch
        {
            BestModelMetric.ValidationLoss => "; with validation data, the epoch with the lowest validation loss is kept",
            BestModelMetric.ValidationAccuracy => "; with validation data, the epoch with the highest validation accuracy is kept",
            _ => "",
        };
        return $"Recipe ({why}): {string.Join(", then ", parts)}{kept}.";

        static string Epochs(int n) => n == 1 ? "1 epoch" : $"{n} epochs";
    }

    static bool ScheduleIsDefault(TrainingOptions o)
        => !o.FreezeBackbone && o.FrozenEpochs == 0 && o.TrainableBlocks is null && o.FineTuneLearningRate is null
           && o.LayerLearningRateDecay is null && o.LearningRateMultipliers is null;
}
