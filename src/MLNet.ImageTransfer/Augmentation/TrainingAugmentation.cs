using Microsoft.ML;

namespace MLNet.ImageTransfer.Augmentation;

/// <summary>Which augmentation a trainer applies: its <c>Augmentation</c> option, or an <c>AugmentImages</c> step before it.</summary>
internal static class TrainingAugmentation
{
    /// <summary>
    /// The option when set (an empty pipeline switches a pipeline step off); otherwise the mark an
    /// <see cref="AugmentImagesTransformer"/> left on the image column. Null when there is nothing to apply.
    /// </summary>
    /// <exception cref="ArgumentException">Both are set, to different non-empty pipelines.</exception>
    public static AugmentationPipeline? Resolve(AugmentationPipeline? option, DataViewSchema.Column imageColumn)
    {
        AugmentationPipeline? marked;
        try
        {
            marked = AugmentImagesTransformer.FromAnnotation(imageColumn);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"The augmentation recorded on column '{imageColumn.Name}' is not valid: {e.Message}", e);
        }
        if (option is { IsEmpty: false } && marked is { IsEmpty: false } && !option.Equals(marked))
            throw new ArgumentException(
                $"Augmentation is given twice: by an AugmentImages step in the pipeline ('{marked}') and by the trainer's Augmentation option ('{option}'). Use one of them.");
        var chosen = option ?? marked;
        return chosen is { IsEmpty: false } ? chosen : null;
    }
}
