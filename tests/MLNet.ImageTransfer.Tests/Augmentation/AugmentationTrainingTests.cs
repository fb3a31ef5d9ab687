using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ImageTransfer.Augmentation;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.Augmentation;

/// <summary>
/// Augmentation inside real ML.NET pipelines: it changes training only. Evaluation, Transform, the prediction engine
/// and a saved-and-loaded .zip never augment, so they are deterministic and equal to the same model without the
/// augmentation step; the training draws are seeded.
/// </summary>
public class AugmentationTrainingTests
{
    sealed class Row
    {
        public string ImagePath { get; set; } = "";
        public string Label { get; set; } = "";
    }

    sealed class Prediction
    {
        public float[] Score { get; set; } = [];
    }

    const string Spec = "hflip,rotate=20,zoom=0.2,brightness=0.3,erase";

    static (TrainTestSplit Split, IEstimator<ITransformer> Prefix) Data(MLContext ml, string root)
        => (ImageFolder.StratifiedSplit(ml, ImageFolder.Load(ml, root), 0.25, seed: 3), TestData.Prefix(ml, root));

    static float[] Scores(MLContext ml, ITransformer model, IDataView data)
        => ml.Data.CreateEnumerable<Prediction>(model.Transform(data), reuseRowObject: false).SelectMany(p => p.Score).ToArray();

    static float[] TrainAndScore(ImageTransferTrainer.Options options, Func<MLContext, IEstimator<ITransformer>, IEstimator<ITransformer>>? beforeTrainer = null)
    {
        var ml = new MLContext(seed: 1);
        var root = TestData.ShapesFolder();
        var (split, prefix) = Data(ml, root);
        var pipeline = (beforeTrainer?.Invoke(ml, prefix) ?? prefix).Append(ml.MulticlassClassification.Trainers.ImageTransfer(options));
        var model = pipeline.Fit(split.TrainSet);
        return Scores(ml, model, split.TestSet);
    }

    [Fact]
    public void Evaluation_prediction_and_a_loaded_model_never_augment()
    {
        var ml = new MLContext(seed: 1);
        var root = TestData.ShapesFolder();
        var (split, prefix) = Data(ml, root);
        var options = TestData.TinyOptions(epochs: 2);
        var pipeline = prefix
            .Append(ml.Transforms.AugmentImages(Spec))
            .Append(ml.MulticlassClassification.Trainers.ImageTransfer(options))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"));
        var model = pipeline.Fit(split.TrainSet);
        var steps = ((IEnumerable<ITransformer>)model).ToList();
        var augment = steps.OfType<AugmentImagesTransformer>().Single();
        Assert.Equal(AugmentationPipeline.Parse(Spec), augment.Augmentation);
        var classifier = steps.OfType<ImageClassifierTransformer>().Single();
        Assert.Equal(AugmentationPipeline.Parse(Spec).ToSpec(), classifier.Classifier.Description.Augmentation);

        // Deterministic: the same data scores the same every time.
        var scores = Scores(ml, model, split.TestSet);
        Assert.Equal(scores, Scores(ml, model, split.TestSet));
        // Equal to the same fitted model without the augmentation step.
        var withoutAugmentation = new TransformerChain<ITransformer>(steps.Where(t => t is not AugmentImagesTransformer).ToArray());
        Assert.Equal(scores, Scores(ml, withoutAugmentation, split.TestSet));
        // The training data too: Transform of it is not augmented either.
        Assert.Equal(Scores(ml, model, split.TrainSet), Scores(ml, withoutAugmentation, split.TrainSet));
        // ML.NET's evaluator sees the same numbers.
        var m1 = ml.MulticlassClassification.Evaluate(model.Transform(split.TestSet));
        var m2 = ml.MulticlassClassification.Evaluate(withoutAugmentation.Transform(split.TestSet));
        Assert.Equal(m2.LogLoss, m1.LogLoss);

        // The prediction engine, row by row.
        using (var engine = ml.Model.CreatePredictionEngine<Row, Prediction>(model))
        {
            var rows = ml.Data.CreateEnumerable<Row>(split.TestSet, reuseRowObject: false).ToList();
            var single = rows.SelectMany(r => engine.Predict(r).Score).ToArray();
            Assert.Equal(scores.Length, single.Length);
            for (int i = 0; i < scores.Length; i++) Assert.Equal(scores[i], single[i], 5);
            Assert.Equal(single, rows.SelectMany(r => engine.Predict(r).Score).ToArray());
        }

        // Saved and loaded in a fresh context: same steps, same scores.
        var path = Path.Combine(TestData.NewTempDir("augment-zip"), "model.zip");
        ml.Model.Save(model, split.TrainSet.Schema, path);
        var fresh = new MLContext().RegisterImageTransfer();
        var loaded = fresh.Model.Load(path, out _);
        Assert.Equal(augment.Augmentation, ((IEnumerable<ITransformer>)loaded).OfType<AugmentImagesTransformer>().Single().Augmentation);
        var test = fresh.Data.LoadFromEnumerable(ml.Data.CreateEnumerable<Row>(split.TestSet, false));
        // The loaded classifier scores on ONNX Runtime: equal up to float rounding (augmenting would move scores by far more).
        var loadedScores = Scores(fresh, loaded, test);
        Assert.Equal(scores.Length, loadedScores.Length);
        for (int i = 0; i < scores.Length; i++) Assert.Equal(scores[i], loadedScores[i], 5);
    }

    [Fact]
    public void The_augment_step_passes_rows_through_and_only_marks_the_image_column()
    {
        var ml = new MLContext(seed: 1);
        var root = TestData.ShapesFolder();
        var (split, prefix) = Data(ml, root);
        var loaded = prefix.Fit(split.TrainSet).Transform(split.TestSet);
        var marked = ml.Transforms.AugmentImages(AugmentationPipeline.Parse("hflip,rotate=10")).Fit(loaded).Transform(loaded);
        Assert.Equal(loaded.Schema.Select(c => (c.Name, c.Type)), marked.Schema.Select(c => (c.Name, c.Type)));
        Assert.Null(AugmentImagesTransformer.FromAnnotation(loaded.Schema["Image"]));
        Assert.Equal(AugmentationPipeline.Parse("hflip,rotate=10"), AugmentImagesTransformer.FromAnnotation(marked.Schema["Image"]));
        // Same pixels, row for row.
        var before = loaded.GetColumn<MLImage>("Image").Select(i => i.Pixels.ToArray()).ToList();
        var after = marked.GetColumn<MLImage>("Image").Select(i => i.Pixels.ToArray()).ToList();
        Assert.Equal(before, after);
        // A missing or non-image column fails early with ML.NET-style messages.
        Assert.Throws<ArgumentException>(() => ml.Transforms.AugmentImages("hflip", "Nope").Fit(loaded));
        Assert.Throws<ArgumentException>(() => ml.Transforms.AugmentImages("hflip", "ImagePath").Fit(loaded));
    }

    [Fact]
    public void Augmentation_that_changes_nothing_trains_exactly_the_model_without_augmentation()
    {
        // Proves the augmented path (background workers, float batches) feeds the network the same numbers when the
        // ops do nothing: any difference in the models would come from augmentation alone.
        var plain = TrainAndScore(TestData.TinyOptions());
        var options = TestData.TinyOptions();
        options.Augmentation = AugmentationPipeline.Parse("hflip@0,rotate=0,brightness=1:1");
        Assert.Equal(plain, TrainAndScore(options));
    }

    [Fact]
    public void Augmentation_changes_training_and_equal_seeds_reproduce_it()
    {
        var plain = TrainAndScore(TestData.TinyOptions());
        float[] Augmented(int? augmentationSeed)
        {
            var options = TestData.TinyOptions();
            options.Augmentation = AugmentationPipeline.Parse(Spec).WithSeed(augmentationSeed);
            return TrainAndScore(options);
        }
        var a = Augmented(null);
        Assert.NotEqual(plain, a);
        Assert.Equal(a, Augmented(null));
        var seeded = Augmented(9);
        Assert.NotEqual(a, seeded);
        Assert.Equal(seeded, Augmented(9));
        // The option and the pipeline step are the same thing.
        var options = TestData.TinyOptions();
        Assert.Equal(a, TrainAndScore(options, (ml, prefix) => prefix.Append(ml.Transforms.AugmentImages(Spec))));
    }

    [Fact]
    public void Giving_two_different_augmentations_is_an_error()
    {
        var options = TestData.TinyOptions(epochs: 1);
        options.Augmentation = AugmentationPipeline.Parse("vflip");
        var error = Assert.Throws<ArgumentException>(() => TrainAndScore(options, (ml, prefix) => prefix.Append(ml.Transforms.AugmentImages("hflip"))));
        Assert.Contains("twice", error.Message);
    }

    [Fact]
    public void Crops_train_from_the_whole_image_and_validation_split_uses_the_evaluation_crop()
    {
        // torchvision preprocessing at 32: resize the shorter side to 37, centre crop 32. RandomResizedCrop samples
        // the whole image; the held-out rows are read at exactly what evaluation computes.
        var options = TestData.TinyOptions(epochs: 2);
        options.Preprocessing = ImagePreprocessing.TorchVision(32);
        options.ValidationFraction = 0.25;
        options.Augmentation = AugmentationPipeline.Parse("resized-crop=0.3,hflip");
        var ml = new MLContext(seed: 1);
        var root = TestData.ShapesFolder();
        var trainer = ml.MulticlassClassification.Trainers.ImageTransfer(options);
        var model = TestData.Prefix(ml, root).Append(trainer).Fit(ImageFolder.Load(ml, root));
        Assert.All(trainer.LastHistory!.Epochs, e => Assert.True(double.IsFinite(e.ValidationLoss!.Value)));
        Assert.Equal(SourceKind.Whole, AugmentationSource.For(options.Preprocessing, options.Augmentation).Kind);

        // The reader behind it: training rows cached whole (32×32 shapes: smaller than any crop needs, kept as they
        // are), validation rows at the evaluation geometry, bit for bit, and the split drawn as before (per class).
        var view = TestData.Prefix(ml, root).Fit(ImageFolder.Load(ml, root)).Transform(ImageFolder.Load(ml, root));
        var classes = ClassSchema.ClassNames(view.Schema["Label"]);
        var (train, validation) = ImageSetReader.ReadSplit(view, "Image", "Label", classes, options.Preprocessing, "training data", out _,
            AugmentationSource.For(options.Preprocessing, options.Augmentation), ImageSetReader.TrainingReducingGap, 0.25, seed: 5);
        using (train)
        using (validation)
        {
            Assert.Equal(36, train.Count + validation!.Count);
            Assert.Equal(3 * 3, validation.Count); // round(0.25 · 12) per class
            Assert.False(train.HoldsEvaluationGeometry);
            Assert.Equal((32, 32), train.SizeOf(0));
            Assert.Equal([1L, 3, 32, 32], validation.Batch([0]).Images.shape);
        }
    }

    [Theory]
    [InlineData(40, 30)]
    [InlineData(31, 47)]
    [InlineData(37, 37)]
    [InlineData(64, 45)]
    [InlineData(33, 90)]
    public void The_cached_source_holds_the_evaluation_crop_bit_for_bit(int width, int height)
    {
        var random = new Random(width * 100 + height);
        var bgra = new byte[width * height * 4];
        random.NextBytes(bgra);
        for (int i = 3; i < bgra.Length; i += 4) bgra[i] = 255;
        using var image = MLImage.CreateFromPixels(width, height, MLPixelFormat.Bgra32, bgra);
        foreach (var preprocessing in new[] { ImagePreprocessing.TorchVision(32), ImagePreprocessing.TorchVision(30) with { CropFraction = 0.8 } })
            foreach (var spec in new[] { "crop", "resized-crop" })
            {
                var source = AugmentationSource.For(preprocessing, AugmentationPipeline.Parse(spec));
                Assert.Equal(spec == "crop" ? SourceKind.ShorterSide : SourceKind.Whole, source.Kind);
                var plan = source.Plan(width, height);
                // crop: torchvision's Resize(R) of the whole image; resized-crop: these small images whole, as they are.
                Assert.Equal(spec == "crop" ? ResizeCrop.ShorterSide(width, height, preprocessing.ResizeShorterSide) : (width, height), (plan.Width, plan.Height));
                var cached = new byte[3 * plan.Width * plan.Height];
                using (var pixels = ImageGeometry.OpaquePixels.Of(image))
                    ImageGeometry.Resample(pixels.Source, plan, cached, source.Layout, preprocessing.Channels);
                var evaluation = new byte[3 * preprocessing.ImageSize * preprocessing.ImageSize];
                source.ToEvaluation(cached, plan.Width, plan.Height, evaluation);
                using var expected = ImageTensors.ToResizedBytes(image, preprocessing);
                Assert.True(evaluation.AsSpan().SequenceEqual(expected.data<byte>().ToArray()), $"{width}×{height}, {spec}, {preprocessing.ImageSize}/{preprocessing.CropFraction}");
            }
        // Stretch presets show the whole image already: crop works on the evaluation geometry; no augmentation, no source.
        Assert.True(AugmentationSource.For(ImagePreprocessing.KerasTf(32), AugmentationPipeline.Parse("crop")).IsEvaluation);
        Assert.True(AugmentationSource.For(ImagePreprocessing.TorchVision(32), AugmentationPipeline.Parse("hflip")).IsEvaluation);
    }
}
