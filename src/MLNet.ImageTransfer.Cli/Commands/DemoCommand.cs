using System.CommandLine;
using System.Diagnostics;
using MLNet.ImageTransfer.Data;

namespace MLNet.ImageTransfer.Cli.Commands;

/// <summary>
/// The whole product in one command on built-in data: generate a synthetic shapes dataset, train with a progress
/// display, evaluate, print the confusion table, save the .zip, load it into a fresh MLContext and predict.
/// </summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var dir = new Option<DirectoryInfo?>("--dir") { Description = "Where to write the dataset and model (default: a new temporary folder)" };
        var arch = new Option<string>("--arch") { Description = "Architecture to train", DefaultValueFactory = _ => "resnet18" };
        var epochs = new Option<int>("--epochs") { Description = "Epochs", DefaultValueFactory = _ => 10 };
        var perClass = new Option<int>("--images-per-class") { Description = "Synthetic images per class", DefaultValueFactory = _ => 300 };
        var size = new Option<int>("--image-size") { Description = "Image and network input size", DefaultValueFactory = _ => 48 };
        var seed = new Option<int>("--seed") { Description = "Random seed", DefaultValueFactory = _ => 1 };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "Plain output, no progress bar" };
        var command = new Command("demo", "Train, evaluate, save, reload and predict on a generated dataset of coloured shapes (a few minutes on 2 cores)")
            { dir, arch, epochs, perClass, size, seed, quiet };
        command.SetAction(r => Cli.Run(() =>
        {
            var total = Stopwatch.StartNew();
            var root = r.GetValue(dir)?.FullName ?? Path.Combine(Path.GetTempPath(), "mlnet-imagetransfer-demo-" + DateTime.UtcNow.ToString("yyyyMMdd-HHmmss"));
            int imageSize = r.GetValue(size);
            var dataDir = Path.Combine(root, "shapes");
            var scan = SyntheticShapes.Generate(dataDir, r.GetValue(perClass), imageSize, r.GetValue(seed));
            Console.WriteLine($"Dataset: {scan.Images.Count} images of {string.Join(", ", scan.ClassNames)} in {dataDir}");

            var options = new ImageTransferTrainer.Options
            {
                Architecture = r.GetValue(arch)!,
                Preprocessing = ImagePreprocessing.TorchVision(imageSize) with { Resize = ResizeMode.Stretch },
                Epochs = r.GetValue(epochs),
                BatchSize = 16,
                LearningRate = 1e-3,
                Seed = r.GetValue(seed),
            };
            var ml = Cli.NewContext(options.Seed);
            Console.WriteLine($"Training {options.Architecture} from scratch at {imageSize}px, {options.Epochs} epochs, 25% held out for validation…");
            var trainWatch = Stopwatch.StartNew();
            var trained = TrainingDisplay.Run(options, r.GetValue(quiet),
                () => ImageClassificationWorkflow.TrainFromFolder(ml, dataDir, options, validationSplit: 0.25, splitSeed: r.GetValue(seed)));
            Console.WriteLine($"Training took {trainWatch.Elapsed.TotalSeconds:F0}s; kept epoch {trained.History.KeptEpoch}.");

            Console.WriteLine();
            Console.WriteLine("Validation metrics (ML.NET's multiclass evaluator):");
            var report = ImageClassificationWorkflow.Evaluate(ml, trained.Model, trained.ValidationData!);
            EvaluateCommand.Print(report);

            var modelPath = Path.Combine(root, "shapes-model.zip");
            trained.Save(ml, modelPath);
            Console.WriteLine($"Saved {modelPath} ({new FileInfo(modelPath).Length / 1024} KiB)");
            var reportDir = Path.Combine(root, "report");
            var written = report.Save(reportDir, trained.History).Concat(Reporting.TrainingHistoryFiles.SaveNextToModel(trained.History, modelPath));
            Console.WriteLine($"Wrote the validation report and training curves: {string.Join(", ", written.Select(f => Path.GetRelativePath(root, f)))}");

            // A new MLContext, as a scoring service would have: load the .zip and predict a few images.
            var scoring = Cli.NewContext();
            var loaded = ImageClassificationWorkflow.LoadModel(scoring, modelPath, out _);
            // One held-out image per class (never seen in training).
            var heldOut = ml.Data.CreateEnumerable<ImageFolderEntry>(trained.ValidationData!, reuseRowObject: false).ToList();
            var samples = scan.ClassNames.SelectMany(c => heldOut.Where(e => e.Label == c).Take(2)).ToList();
            Console.WriteLine("Predictions of the reloaded model on held-out images:");
            var predictions = ImageClassificationWorkflow.Predict(scoring, loaded, samples.Select(s => s.ImagePath), top: 2);
            foreach (var (p, truth) in predictions.Zip(samples))
                Console.WriteLine($"  {(p.PredictedClass == truth.Label ? "right" : "WRONG"),-5} {Path.GetRelativePath(scan.Root, p.ImagePath),-28} → "
                    + string.Join("  ", p.Top.Select(t => $"{t.Class} {t.Probability:P1}")));
            Console.WriteLine($"Demo finished in {total.Elapsed.TotalSeconds:F0}s. Accuracy on held-out images: {report.MicroAccuracy:P1}.");
            return 0;
        }));
        return command;
    }
}
