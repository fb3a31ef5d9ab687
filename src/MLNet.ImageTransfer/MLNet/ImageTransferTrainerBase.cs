using Microsoft.ML;
using Microsoft.ML.Runtime;
using Microsoft.ML.Data;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Engine;
using MLNet.ImageTransfer.MLNet.DataViews;
using Microsoft.ML.Transforms.Image;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Training;
using MLNet.ImageTransfer.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer;

/// <summary>
/// The estimator behind every family's trainer: reads the image and key label columns, trains the network with
/// <see cref="ClassifierTrainingLoop"/>, and returns an <see cref="ImageClassifierTransformer"/> that adds
/// <c>Score</c> (class probabilities, slot names = class names) and <c>PredictedLabel</c> (key with class names).
/// </summary>
public abstract class ImageTransferTrainerBase<TOptions> : IEstimator<ImageClassifierTransformer>
    where TOptions : ImageTransferTrainerOptions
{
    readonly IHost _host;

    private protected ImageTransferTrainerBase(IHostEnvironment env, TOptions options, string name)
    {
        ArgumentNullException.ThrowIfNull(env);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _ = options.ResolveArchitecture(); // fail at construction for an unknown or wrong-family architecture
        _host = env.Register(name);
        TrainerOptions = options;
        ImageTransferModelRegistration.EnsureRegistered(env);
    }

    /// <summary>The options this trainer was created with.</summary>
    public TOptions TrainerOptions { get; }

    /// <summary>The history of the last <see cref="Fit"/> (per-epoch losses and accuracies).</summary>
    public TrainingHistory? LastHistory { get; private set; }

    /// <summary>
    /// Rows the last <see cref="Fit"/> skipped because their image was missing or could not be decoded (training data,
    /// then validation set), with the file path when the data has an <c>ImagePath</c> column. Empty when none.
    /// </summary>
    public IReadOnlyList<SkippedFile> LastSkippedRows { get; private set; } = [];

    /// <summary>What loading the pretrained weights did in the last <see cref="Fit"/> (null without weights): keys loaded, classifier re-initialised, notes.</summary>
    public PretrainedLoadResult? LastWeightLoad { get; private set; }

    /// <summary>What starting from <see cref="ImageTransferTrainerOptions.InitialModel"/> did in the last <see cref="Fit"/> (null without one).</summary>
    public InitialModelLoad? LastInitialModelLoad { get; private set; }

    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        var o = TrainerOptions;
        if (Find(inputSchema, o.ImageColumnName) is not { } image)
            throw new ArgumentException($"Input has no column '{o.ImageColumnName}'. Add ml.Transforms.LoadImages(\"{o.ImageColumnName}\", imageFolder, \"ImagePath\") before the trainer.");
        if (image.ItemType is not ImageDataViewType || image.Kind != SchemaShape.Column.VectorKind.Scalar)
            throw new ArgumentException($"Column '{o.ImageColumnName}' must hold images (from LoadImages), but is {image.ItemType}.");
        if (Find(inputSchema, o.LabelColumnName) is not { } label)
            throw new ArgumentException($"Input has no label column '{o.LabelColumnName}'.");
        if (!label.IsKey)
            throw new ArgumentException($"Label column '{o.LabelColumnName}' must be a key; add ml.Transforms.Conversion.MapValueToKey(\"{o.LabelColumnName}\") before the trainer.");
        // A shape carries no key counts or class names (ML.NET's own SchemaShape.Create drops them too): any K describes
        // the same shape; the real K and names are set at Fit.
        var placeholders = new[] { "0", "1" };
        return SchemaShapes.Append(inputSchema, ClassificationColumns.Create(placeholders, o.ScoreColumnName, o.PredictedLabelColumnName));
    }

    static SchemaShape.Column? Find(SchemaShape shape, string name)
    {
        foreach (var column in shape) if (column.Name == name) return column;
        return null;
    }

    /// <summary><see cref="ClassifierDescription.InitialWeightsFormat"/> of a model trained on from a saved model.</summary>
    internal const string InitialModelFormatName = "ImageTransferModel";

    public ImageClassifierTransformer Fit(IDataView input)
    {
        var o = TrainerOptions;
        GetOutputSchema(SchemaShapes.FromSchema(input.Schema));
        var labelColumn = input.Schema[o.LabelColumnName];
        var classNames = ClassSchema.ClassNames(labelColumn);
        if (classNames.Length < 2) throw new InvalidOperationException($"Label column '{o.LabelColumnName}' has {classNames.Length} class(es); classification needs at least two.");

        int seed = o.Seed ?? _host.Rand.Next();
        var device = ComputeDevice.Resolve(o.Device);
        if (device.type == DeviceType.CPU) NativeAllocator.TuneForTraining(); // Engine/NativeAllocator.cs: no page faults per step
        // Continuing from a saved model: its architecture, head and preprocessing (checked against the options).
        using var initial = o.InitialModel is null ? null : InitialModelFile.Open(o.InitialModel);
        var preprocessing = initial is null ? o.ResolvePreprocessing() : o.Preprocessing ?? initial.Description.Preprocessing;
        var (architecture, head) = initial?.Check(o.ResolveArchitecture(), o.Head) ?? (o.ResolveArchitecture(), o.Head);
        // Pretrained weights decide the variant to build (Keras files: Keras' conventions). Read before the images, so
        // that a bad or unsafe file fails fast.
        using var weights = o.ResolveWeights() is { } resolved ? PretrainedWeightFile.Open(resolved.Path) : null;
        if (weights is not null) architecture = weights.Adapt(architecture);

        // Augmentation: the option or an AugmentImages step's mark; crops need the training images cached larger (the
        // whole image). A validation split is drawn first and its rows read at the evaluation geometry.
        var augmentation = Augmentation.TrainingAugmentation.Resolve(o.Augmentation, input.Schema[o.ImageColumnName]);
        double split = o.ValidationSet is null && o.ValidationFraction > 0 ? o.ValidationFraction : 0;
        var (train, validation) = ImageSetReader.ReadSplit(input, o.ImageColumnName, o.LabelColumnName, classNames, preprocessing, "training data",
            out var skippedTraining, Augmentation.AugmentationSource.For(preprocessing, augmentation), ImageSetReader.TrainingReducingGap, split, seed);
        using var _ = train;
        LastSkippedRows = skippedTraining;
        try
        {
            LastWeightLoad = null;
            LastInitialModelLoad = null;
            if (o.ValidationSet is not null)
            {
                validation = ImageSetReader.Read(o.ValidationSet, o.ImageColumnName, o.LabelColumnName, classNames, preprocessing, "validation set", out var skippedValidation);
                LastSkippedRows = [.. skippedTraining, .. skippedValidation];
            }

            ImageClassifierModel network;
            // Initialisation draws from TorchSharp's process-wide generator: seed and build as one step so that
            // another trainer in the same process cannot interleave its draws.
            lock (GlobalGenerator.Gate)
            {
                torch.manual_seed(seed);
                network = architecture.Build(classNames.Length, head);
            }
            try
            {
                if (weights is not null)
                {
                    LastWeightLoad = PretrainedWeights.Load(network, weights);
                    weights.Dispose(); // the network holds the values now
                }
                if (initial is not null) LastInitialModelLoad = initial.LoadInto(network, classNames);
                network.to(device);
                // Pretrained weights with no schedule chosen: the transfer-learning recipe (Training/TrainingRecipe.cs).
                var (recipe, plan) = TrainingRecipes.Apply(o.WithAugmentation(augmentation), pretrained: weights is not null);
                using (var channel = _host.Start("Training")) channel.Info(MessageSensitivity.None, plan);
                LastHistory = ClassifierTrainingLoop.Fit(network, train, validation, preprocessing, recipe, device, seed) with { Recipe = plan };
            }
            catch
            {
                network.Dispose();
                throw;
            }
            var description = new ClassifierDescription
            {
                FormatVersion = ClassifierDescription.FormatVersionFor(architecture),
                ArchitectureName = Architectures.NameOf(architecture),
                Architecture = architecture,
                Head = head,
                ClassNames = classNames,
                Preprocessing = preprocessing,
                InitialWeights = o.Weights is { } named && !File.Exists(named) ? named : (o.Weights ?? o.InitialModel) is { } start ? Path.GetFileName(start) : null,
                InitialWeightsSha256 = LastWeightLoad?.Sha256 ?? LastInitialModelLoad?.Sha256,
                InitialWeightsFormat = LastWeightLoad?.Format.ToString() ?? (LastInitialModelLoad is null ? null : InitialModelFormatName),
                FineTuning = LastHistory.Schedule,
                Augmentation = augmentation?.ToSpec(),
                History = LastHistory.Epochs,
                KeptEpoch = LastHistory.KeptEpoch,
            };
            var fitted = new FittedClassifier(network, description, device);
            return new ImageClassifierTransformer(_host, fitted, o.ImageColumnName, o.ScoreColumnName, o.PredictedLabelColumnName);
        }
        finally
        {
            validation?.Dispose();
        }
    }
}
