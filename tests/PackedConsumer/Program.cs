// A user's program on the packed library (see PackedConsumer.csproj).
//   train DATA MODEL.zip   class-per-folder images: train a tiny ResNet, evaluate with ML.NET, save, predict every image
//   score DATA MODEL.zip   in a fresh process: load the saved model and predict every image again
// Prediction lines: "prediction <relative path> <predicted class> <score,score,...>", scores round-trippable.
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ImageTransfer;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;

if (args.Length != 3 || args[0] is not ("train" or "score"))
{
    Console.Error.WriteLine("usage: PackedConsumer train|score DATA MODEL.zip");
    return 2;
}
var (command, data, modelPath) = (args[0], Path.GetFullPath(args[1]), Path.GetFullPath(args[2]));

MLContext ml;
ITransformer model;
if (command == "train")
{
    ml = new MLContext(seed: 1);
    IDataView all = ImageFolder.Load(ml, data);
    var split = ImageFolder.StratifiedSplit(ml, all, testFraction: 0.25, seed: 1);
    var pipeline = ml.Transforms.Conversion.MapValueToKey("Label")
        .Append(ml.Transforms.LoadImages("Image", data, "ImagePath"))
        .Append(ml.MulticlassClassification.Trainers.ResNet(new ResNetTrainer.Options
        {
            CustomArchitecture = new ResNetConfig(ResNetBlock.Basic, [1, 1, 1, 1], BaseWidth: 4),
            Preprocessing = ImagePreprocessing.TorchVision(32) with { Resize = ResizeMode.Stretch },
            Epochs = 2,
            BatchSize = 8,
            LearningRate = 3e-3,
            Seed = 1,
        }))
        .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"));
    model = pipeline.Fit(split.TrainSet);
    var metrics = ml.MulticlassClassification.Evaluate(model.Transform(split.TestSet));
    Console.WriteLine($"test accuracy {metrics.MicroAccuracy.ToString("F4", CultureInfo.InvariantCulture)}");
    Console.WriteLine(metrics.ConfusionMatrix.GetFormattedConfusionTable());
    ml.Model.Save(model, all.Schema, modelPath);
    Console.WriteLine($"saved {modelPath}");
}
else
{
    ml = new MLContext().RegisterImageTransfer();
    model = ml.Model.Load(modelPath, out _);
}

var engine = ml.Model.CreatePredictionEngine<ImageInput, ImagePrediction>(model);
foreach (var file in Directory.GetFiles(data, "*.png", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
{
    var relative = Path.GetRelativePath(data, file);
    var prediction = engine.Predict(new ImageInput { ImagePath = relative, Label = Path.GetFileName(Path.GetDirectoryName(file))! });
    var scores = string.Join(",", prediction.Score.Select(s => s.ToString("R", CultureInfo.InvariantCulture)));
    Console.WriteLine($"prediction {relative} {prediction.PredictedLabel} {scores}");
}
return 0;

class ImageInput
{
    public string ImagePath { get; set; } = "";
    public string Label { get; set; } = "";
}

class ImagePrediction
{
    public string PredictedLabel { get; set; } = "";
    public float[] Score { get; set; } = [];
}
