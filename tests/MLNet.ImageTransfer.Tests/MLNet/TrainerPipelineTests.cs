using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Training;

namespace MLNet.ImageTransfer.Tests.MLNet;

/// <summary>The trainers inside real ML.NET pipelines: evaluation contract, prediction engine, determinism, preprocessing parity.</summary>
public class TrainerPipelineTests
{
    sealed class Row
    {
        public string ImagePath { get; set; } = "";
        public string Label { get; set; } = "";
    }

    sealed class Prediction
    {
        public string PredictedLabel { get; set; } = "";
        public float[] Score { get; set; } = [];
    }

    static (ITransformer Model, IDataView Train, IDataView Test, ImageTransferTrainer Trainer) Fit(MLContext ml, ImageTransferTrainer.Options options, string root)
    {
        var split = ImageFolder.StratifiedSplit(ml, ImageFolder.Load(ml, root), 0.25, seed: 3);
        var prefix = TestData.Prefix(ml, root);
        options.ValidationSet = prefix.Fit(split.TrainSet).Transform(split.TestSet);
        var trainer = ml.MulticlassClassification.Trainers.ImageTransfer(options);
        var model = prefix.Append(trainer).Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel")).Fit(split.TrainSet);
        return (model, split.TrainSet, split.TestSet, trainer);
    }

    [Fact]
    public void Fitted_pipeline_meets_mlnets_multiclass_contract_with_class_names()
    {
        var ml = new MLContext(seed: 1);
        var root = TestData.ShapesFolder();
        var (model, _, test, _) = Fit(ml, TestData.TinyOptions(), root);
        var scored = model.Transform(test);

        var score = scored.Schema["Score"];
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 3), score.Type);
        VBuffer<ReadOnlyMemory<char>> slots = default;
        score.GetSlotNames(ref slots);
        Assert.Equal(["circle", "square", "star"], slots.DenseValues().Select(s => s.ToString()));

        var metrics = ml.MulticlassClassification.Evaluate(scored);
        Assert.InRange(metrics.MicroAccuracy, 0, 1);
        var table = metrics.ConfusionMatrix.GetFormattedConfusionTable();
        Assert.Contains("circle", table);
        Assert.Contains("star", table);

        // Probabilities sum to one; PredictedLabel (after MapKeyToValue) is the arg-max class name.
        var rows = ml.Data.CreateEnumerable<Prediction>(scored, reuseRowObject: false).ToList();
        Assert.NotEmpty(rows);
        foreach (var r in rows)
        {
            Assert.InRange(r.Score.Sum(), 0.999f, 1.001f);
            Assert.Equal(new[] { "circle", "square", "star" }[Array.IndexOf(r.Score, r.Score.Max())], r.PredictedLabel);
        }

        using var engine = ml.Model.CreatePredictionEngine<Row, Prediction>(model);
        var first = ml.Data.CreateEnumerable<Row>(test, reuseRowObject: false).First();
        var single = engine.Predict(first);
        Assert.Equal(rows[0].Score.Length, single.Score.Length);
        for (int i = 0; i < single.Score.Length; i++) Assert.Equal(rows[0].Score[i], single.Score[i], 5); // batched vs single forward
        Assert.Equal(rows[0].PredictedLabel, single.PredictedLabel);
    }

    [Fact]
    public void Saved_model_reproduces_the_trainers_own_validation_numbers()
    {
        // Preprocessing is part of the model: the loss and accuracy the training loop computed on the validation images
        // (in memory, before saving) must equal ML.NET's evaluation of the saved-and-reloaded pipeline on the same images.
        var ml = new MLContext(seed: 1);
        var root = TestData.ShapesFolder();
        var options = TestData.TinyOptions(epochs: 3);
        var (model, train, test, trainer) = Fit(ml, options, root);
        var kept = trainer.LastHistory!.Kept;

        var path = Path.Combine(TestData.NewTempDir("parity"), "model.zip");
        ml.Model.Save(model, train.Schema, path);
        var fresh = new MLContext().RegisterImageTransfer();
        var loaded = fresh.Model.Load(path, out _);
        var metrics = fresh.MulticlassClassification.Evaluate(loaded.Transform(fresh.Data.LoadFromEnumerable(ml.Data.CreateEnumerable<Row>(test, false))));

        Assert.Equal(kept.ValidationAccuracy!.Value, metrics.MicroAccuracy, 6);
        Assert.Equal(kept.ValidationLoss!.Value, metrics.LogLoss, 4);
    }

    [Fact]
    public void Same_seed_gives_the_same_model_and_another_seed_does_not()
    {
        var root = TestData.ShapesFolder();
        float[] Scores(int seed)
        {
            var ml = new MLContext(seed: 1);
            var (model, _, test, _) = Fit(ml, TestData.TinyOptions(seed: seed), root);
            return ml.Data.CreateEnumerable<Prediction>(model.Transform(test), false).SelectMany(p => p.Score).ToArray();
        }
        var a = Scores(5);
        Assert.Equal(a, Scores(5));
        Assert.NotEqual(a, Scores(6));
    }

    [Fact]
    public void Epochs_are_reported_with_train_and_validation_metrics()
    {
        var ml = new MLContext(seed: 1);
        var seen = new List<EpochSummary>();
        var steps = 0;
        var options = TestData.TinyOptions(epochs: 2);
        options.EpochCompleted = seen.Add;
        options.StepCompleted = _ => steps++;
        Fit(ml, options, TestData.ShapesFolder());
        Assert.Equal([1, 2], seen.Select(e => e.Epoch));
        Assert.All(seen, e =>
        {
            Assert.True(e.TrainLoss > 0 && double.IsFinite(e.TrainLoss));
            Assert.InRange(e.TrainAccuracy, 0, 1);
            Assert.NotNull(e.ValidationLoss);
            Assert.InRange(e.ValidationAccuracy!.Value, 0, 1);
        });
        Assert.Equal(seen.Sum(e => e.Steps), steps);
    }

    [Fact]
    public void Training_reduces_the_loss_on_an_easy_task()
    {
        var ml = new MLContext(seed: 1);
        var options = TestData.TinyOptions(epochs: 6);
        options.KeepBestBy = BestModelMetric.None;
        var (_, _, _, trainer) = Fit(ml, options, TestData.ShapesFolder());
        var epochs = trainer.LastHistory!.Epochs;
        Assert.True(epochs[^1].TrainLoss < epochs[0].TrainLoss * 0.8, string.Join("\n", epochs));
    }

    [Fact]
    public void Frozen_epochs_train_only_the_head()
    {
        var ml = new MLContext(seed: 1);
        var root = TestData.ShapesFolder();
        var options = TestData.TinyOptions(epochs: 1);
        options.FrozenEpochs = 1;
        options.KeepBestBy = BestModelMetric.None;
        // Same seed → same initial network; compare the trained one with a freshly built one.
        var (model, _, _, trainer) = Fit(ml, options, root);
        var trained = ((IEnumerable<ITransformer>)model).OfType<ImageClassifierTransformer>().Single().Classifier.Network;
        TorchSharp.torch.manual_seed(options.Seed!.Value);
        using var initial = TestData.TinyResNet.Build(3);
        var before = initial.state_dict();
        foreach (var (key, value) in trained.state_dict())
        {
            bool same = value.eq(before[key]).all().item<bool>();
            if (key.StartsWith("fc.")) Assert.False(same, $"head parameter {key} did not train");
            else Assert.True(same, $"backbone tensor {key} changed while frozen");
        }
        Assert.Equal(TrainingPhase.Frozen, trainer.LastHistory!.Epochs[0].Phase);
    }

    [Fact]
    public void Missing_columns_and_bad_options_fail_with_clear_messages()
    {
        var ml = new MLContext(seed: 1);
        var data = ImageFolder.Load(ml, TestData.ShapesFolder());
        var noImages = ml.Transforms.Conversion.MapValueToKey("Label").Fit(data).Transform(data);
        var error = Assert.Throws<ArgumentException>(() => ml.MulticlassClassification.Trainers.ImageTransfer(TestData.TinyOptions()).Fit(noImages));
        Assert.Contains("LoadImages", error.Message);

        var textLabel = ml.Transforms.LoadImages("Image", TestData.ShapesFolder(), "ImagePath").Fit(data).Transform(data);
        error = Assert.Throws<ArgumentException>(() => ml.MulticlassClassification.Trainers.ImageTransfer(TestData.TinyOptions()).Fit(textLabel));
        Assert.Contains("MapValueToKey", error.Message);

        Assert.Throws<ArgumentException>(() => ml.MulticlassClassification.Trainers.ImageTransfer(new ImageTransferTrainer.Options { Architecture = "resnet9000" }));
        Assert.Throws<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.ImageTransfer(new ImageTransferTrainer.Options { Epochs = 0 }));
        var onCuda = TestData.TinyOptions();
        onCuda.Device = "cuda";
        var cuda = Assert.Throws<InvalidOperationException>(() => Fit(ml, onCuda, TestData.ShapesFolder()));
        Assert.Contains("TorchSharp-cuda", cuda.Message);
    }
}
