using MLNet.ImageTransfer.Augmentation;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.Augmentation;

/// <summary>
/// Seeding of the training batches as the training loop draws them (<see cref="EpochBatches"/>): each epoch gets fresh
/// draws, equal seeds give equal draws, and the background workers change nothing but speed.
/// </summary>
public class AugmentationRandomnessTests
{
    static readonly AugmentationPipeline Spec = AugmentationPipeline.Parse("hflip,rotate=25,zoom=0.2,brightness=0.3,erase");
    static readonly ImagePreprocessing Preprocessing = ImagePreprocessing.TorchVision(16) with { Resize = ResizeMode.Stretch };

    static LabeledImageSet Set(int count = 20)
    {
        var set = new LabeledImageSet();
        using var images = AugmentationOpTests.Images(n: count, size: 16, seed: 11);
        for (int i = 0; i < count; i++) set.Add(images[i].clone(), i % 3);
        return set;
    }

    /// <summary>All batches of one epoch, stacked (images float, labels).</summary>
    static (float[] Images, long[] Labels) Epoch(LabeledImageSet set, AugmentationPipeline? augmentation, int seed, int epoch, int batchSize = 6)
    {
        var order = Enumerable.Range(0, set.Count).Reverse().ToArray();
        using var scope = NewDisposeScope();
        using var batches = EpochBatches.Create(set, order, batchSize, augmentation, Preprocessing, seed, epoch);
        var images = new List<float>();
        var labels = new List<long>();
        for (int b = 0; b < batches.Count; b++)
        {
            var (x, y) = batches.Next();
            images.AddRange(x.to_type(ScalarType.Float32).data<float>().ToArray());
            labels.AddRange(y.data<long>().ToArray());
        }
        return (images.ToArray(), labels.ToArray());
    }

    [Fact]
    public void Each_epoch_draws_afresh_and_the_same_seed_draws_the_same()
    {
        using var set = Set();
        var epoch1 = Epoch(set, Spec, seed: 5, epoch: 1);
        var epoch2 = Epoch(set, Spec, seed: 5, epoch: 2);
        Assert.Equal(epoch1.Labels, epoch2.Labels);          // same rows in the same order…
        Assert.NotEqual(epoch1.Images, epoch2.Images);       // …augmented differently
        Assert.Equal(epoch1.Images, Epoch(set, Spec, seed: 5, epoch: 1).Images);
        Assert.NotEqual(epoch1.Images, Epoch(set, Spec, seed: 6, epoch: 1).Images);
        // A pipeline's own seed wins over the trainer's.
        var seeded = Spec.WithSeed(42);
        Assert.Equal(Epoch(set, seeded, seed: 1, epoch: 1).Images, Epoch(set, seeded, seed: 2, epoch: 1).Images);
    }

    [Fact]
    public void The_number_of_workers_never_changes_the_draws()
    {
        using var set = Set(30);
        var one = Epoch(set, Spec with { Workers = 1 }, seed: 3, epoch: 4, batchSize: 4);
        var four = Epoch(set, Spec with { Workers = 4 }, seed: 3, epoch: 4, batchSize: 4);
        Assert.Equal(one.Images, four.Images);
        Assert.Equal(one.Labels, four.Labels);
    }

    [Fact]
    public void Without_augmentation_the_batches_are_the_cached_images_as_before()
    {
        using var set = Set();
        var order = Enumerable.Range(0, set.Count).ToArray();
        using var scope = NewDisposeScope();
        using var batches = EpochBatches.Create(set, order, 8, null, Preprocessing, 1, 1);
        var (x, _) = batches.Next();
        Assert.Equal(ScalarType.Byte, x.dtype);
        Assert.True(x.Same(set.Batch(order.AsSpan(0, 8)).Images));
        // A pipeline whose ops never fire gives the same pixel values (as float).
        using var noop = EpochBatches.Create(set, order, 8, AugmentationPipeline.Parse("hflip@0,rotate=0"), Preprocessing, 1, 1);
        Assert.True(noop.Next().Images.Same(x.to_type(ScalarType.Float32)));
    }

    [Fact]
    public void A_failing_batch_surfaces_its_error_and_stops_the_workers()
    {
        using var set = Set();
        // A 20-pixel crop cannot come out of 16-pixel images: the worker's error reaches the training thread.
        var error = Assert.Throws<InvalidOperationException>(() => Epoch(set, AugmentationPipeline.Parse("crop=20"), 1, 1));
        Assert.Contains("does not fit", error.Message);
    }
}
