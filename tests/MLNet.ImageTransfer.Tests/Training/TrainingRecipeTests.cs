using Microsoft.ML;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Training;

namespace MLNet.ImageTransfer.Tests.FineTuningControls;

/// <summary>
/// The trainer picks its schedule by situation: from pretrained weights with no schedule set, the head first on cached
/// features and then the last layer group at a lower rate; from scratch, or with any schedule option set, the options
/// as given. It says which it picked.
/// </summary>
public class TrainingRecipeTests
{
    static string W(string name) => Weights.WeightFormatParityTests.W(name);

    [Fact]
    public void Pretrained_weights_with_no_schedule_get_the_transfer_learning_recipe()
    {
        var options = new TrainingOptions { Epochs = 5, LearningRate = 1e-3 };
        Assert.Equal(TrainingRecipe.HeadThenLastBlock, TrainingRecipes.Resolve(options, pretrained: true));
        Assert.Equal(TrainingRecipe.AsGiven, TrainingRecipes.Resolve(options, pretrained: false));

        var (recipe, description) = TrainingRecipes.Apply(options, pretrained: true);
        Assert.Equal(4, recipe.FrozenEpochs);
        Assert.Equal(TrainingRecipes.FineTunedGroups, recipe.TrainableBlocks);
        Assert.Equal(1e-3 * TrainingRecipes.HeadLearningRateFactor, recipe.LearningRate, 12);
        Assert.Equal(1e-5, recipe.FineTuneLearningRate!.Value, 12);
        Assert.False(recipe.FineTuneBatchNormStatistics);
        Assert.False(recipe.AugmentFrozenEpochs); // the head's epochs stay on cached features
        Assert.Contains("pretrained weights", description);
        Assert.Contains("4 epochs training the head alone on cached backbone features (lr 0.003)", description);
        Assert.Contains("1 epoch training the last layer group of the backbone and the head (lr 1E-05, BatchNorm statistics kept)", description);

        // The caller's options are not changed.
        Assert.Equal(0, options.FrozenEpochs);
        Assert.Null(options.TrainableBlocks);
        Assert.Equal(1e-3, options.LearningRate);
        Assert.True(options.FineTuneBatchNormStatistics);
    }

    [Theory]
    [InlineData(1, 1)]   // a single epoch trains the head only
    [InlineData(2, 1)]
    [InlineData(5, 4)]
    [InlineData(10, 7)]  // the last third fine-tunes
    [InlineData(30, 20)]
    public void The_head_gets_the_first_two_thirds_of_the_epochs(int epochs, int headEpochs)
    {
        var (recipe, _) = TrainingRecipes.Apply(new TrainingOptions { Epochs = epochs }, pretrained: true);
        Assert.Equal(headEpochs, recipe.FrozenEpochs);
        recipe.Validate();
    }

    [Fact]
    public void Any_schedule_option_the_user_sets_means_the_options_as_given()
    {
        foreach (var set in new Action<TrainingOptions>[]
                 {
                     o => o.FrozenEpochs = 2,
                     o => o.FreezeBackbone = true,
                     o => o.TrainableBlocks = 2,
                     o => o.FineTuneLearningRate = 1e-5,
                     o => o.LayerLearningRateDecay = 0.7,
                     o => o.LearningRateMultipliers = new Dictionary<string, double> { ["layer4"] = 0.5 },
                     o => o.Recipe = TrainingRecipe.AsGiven,
                 })
        {
            var options = new TrainingOptions { Epochs = 5 };
            set(options);
            var (recipe, description) = TrainingRecipes.Apply(options, pretrained: true);
            Assert.Same(options, recipe);
            Assert.Contains("as set", description);
        }

        var (scratch, why) = TrainingRecipes.Apply(new TrainingOptions { Epochs = 3 }, pretrained: false);
        Assert.Equal(0, scratch.FrozenEpochs);
        Assert.Contains("no pretrained weights: every layer trains from the first epoch", why);
        Assert.Contains("3 epochs training the whole network (lr 0.001)", why);

        // Chosen explicitly, the recipe applies without pretrained weights too, and keeps what the user set.
        var (chosen, _) = TrainingRecipes.Apply(new TrainingOptions { Epochs = 6, Recipe = TrainingRecipe.HeadThenLastBlock, TrainableBlocks = 2 }, pretrained: false);
        Assert.Equal(4, chosen.FrozenEpochs);
        Assert.Equal(2, chosen.TrainableBlocks);
    }

    [Fact]
    public void Training_from_weights_follows_the_recipe_and_records_it()
    {
        var ml = new MLContext(seed: 1);
        var root = TestData.ShapesFolder();
        var messages = new List<string>();
        ml.Log += (_, e) => { if (e.Message.Contains("Recipe (")) messages.Add(e.Message); };
        var options = new ImageTransferTrainer.Options
        {
            CustomArchitecture = Weights.WeightFormatParityTests.ConfigOf("resnet_micro"),
            Weights = W("resnet_micro.safetensors"),
            ImageSize = 32,
            Epochs = 3,
            BatchSize = 8,
            Seed = 1,
        };
        var trainer = ml.MulticlassClassification.Trainers.ImageTransfer(options);
        TestData.Prefix(ml, root).Append(trainer).Fit(ImageFolder.Load(ml, root));

        var history = trainer.LastHistory!;
        var phases = history.Schedule!.Phases;
        Assert.Equal(2, phases.Count);
        Assert.True(phases[0].HeadOnly);
        Assert.Equal((1, 2), (phases[0].FromEpoch, phases[0].ToEpoch));
        Assert.Equal(3, phases[1].FromEpoch);
        Assert.Equal(2, phases[1].TrainableGroups.Count); // the last backbone group and the head
        Assert.Equal("head", phases[1].TrainableGroups[^1]);
        Assert.Equal(options.LearningRate * TrainingRecipes.FineTuneLearningRateFactor, phases[1].HeadLearningRate, 12);
        Assert.False(history.Schedule.FineTuneBatchNormStatistics);
        Assert.StartsWith("Recipe (pretrained weights)", history.Recipe);
        Assert.Contains(history.Recipe!, messages.Single()); // the ML.NET log says it too
        Assert.Null(options.TrainableBlocks); // the user's options are unchanged
    }
}
