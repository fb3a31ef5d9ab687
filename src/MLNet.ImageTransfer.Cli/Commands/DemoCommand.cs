using System.CommandLine;
using System.Diagnostics;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Weights;

namespace MLNet.ImageTransfer.Cli.Commands;

/// <summary>
/// The whole product in one command, offline, on photos that ship with the tool: start from ML.NET's pretrained
/// ResNet18 (its NuGet package, referenced by the tool), train with the transfer-learning recipe and a progress display,
/// evaluate with ML.NET's evaluator, print the confusion table, save the .zip, load it into a fresh MLContext and
/// predict; then train the same network from scratch for the same epochs, so the gain of starting pretrained is seen.
/// </summary>
internal static class DemoCommand
{
    /// <summary>The bundled photos (CC BY 2.0, credited in their ATTRIBUTION.md): train/ and val/, one folder per class.</summary>
    internal static string PhotoFolder => Path.Combine(AppContext.BaseDirectory, "DemoData", "flowers");

    public static Command Create()
    {
        var dir = new Option<DirectoryInfo?>("--dir") { Description = "Where to write the model and reports (default: a new temporary folder)" };
        var epochs = new Option<int>("--epochs") { Description = "Epochs of each training run", DefaultValueFactory = _ => 5 };
        var seed = new Option<int>("--seed") { Description = "Random seed", DefaultValueFactory = _ => 1 };
        var skipScratch = new Option<bool>("--skip-from-scratch") { Description = "Leave out the comparison run that trains the same network from random weights" };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "Plain output, no progress bar" };
        var command = new Command("demo", "Transfer learning on 200 bundled flower photos, offline: fine-tune ML.NET's pretrained ResNet18, evaluate, save, "
            + "reload and predict, then compare with the same network trained from scratch (a few minutes on 2 cores)")
            { dir, epochs, seed, skipScratch, quiet };
        command.SetAction(r => Cli.Run(() =>
        {
            var total = Stopwatch.StartNew();
            var root = r.GetValue(dir)?.FullName ?? Path.Combine(Path.GetTempPath(), "mlnet-imagetransfer-demo-" + DateTime.UtcNow.ToString("yyyyMMdd-HHmmss"));
            Directory.CreateDirectory(root);
            string trainDir = Path.Combine(PhotoFolder, "train"), valDir = Path.Combine(PhotoFolder, "val");
            var trainScan = ImageFolder.Scan(trainDir);
            var valScan = ImageFolder.Scan(valDir);
            Console.WriteLine($"Dataset: {trainScan.Images.Count} training and {valScan.Images.Count} validation photos of {string.Join(", ", trainScan.ClassNames)} "
                + $"(CC BY 2.0, credits in {Path.Combine(PhotoFolder, "ATTRIBUTION.md")})");

            var options = new ImageTransferTrainer.Options
            {
                Weights = MLNetResNet18.ShortName, // the architecture and preprocessing come with the weights
                Epochs = r.GetValue(epochs),
                BatchSize = 16,
                Seed = r.GetValue(seed),
            };
            var ml = Cli.NewContext(options.Seed);
            Console.WriteLine($"Starting from ML.NET's pretrained ResNet18 ({MLNetResNet18.ShortName}, ImageNet), {options.Epochs} epochs.");
            Console.WriteLine(Training.TrainingRecipes.Apply(options, pretrained: true).Description);
            var trainWatch = Stopwatch.StartNew();
            var trained = TrainingDisplay.Run(options, r.GetValue(quiet), () => ImageClassificationWorkflow.TrainFromFolder(ml, trainDir, options, valDir));
            var pretrainedTime = trainWatch.Elapsed;
            Console.WriteLine($"Training took {pretrainedTime.TotalSeconds:F0}s; kept epoch {trained.History.KeptEpoch}.");

            Console.WriteLine();
            Console.WriteLine("Validation metrics (ML.NET's multiclass evaluator):");
            var report = ImageClassificationWorkflow.Evaluate(ml, trained.Model, trained.ValidationData!);
            EvaluateCommand.Print(report);

            var modelPath = Path.Combine(root, "flowers-model.zip");
            trained.Save(ml, modelPath);
            Console.WriteLine($"Saved {modelPath} ({new FileInfo(modelPath).Length / (1024 * 1024.0):F1} MiB)");
            var reportDir = Path.Combine(root, "report");
            var written = report.Save(reportDir, trained.History).Concat(Reporting.TrainingHistoryFiles.SaveNextToModel(trained.History, modelPath));
            Console.WriteLine($"Wrote the validation report and training curves: {string.Join(", ", written.Select(f => Path.GetRelativePath(root, f)))}");

            // A new MLContext, as a scoring service would have: load the .zip and predict a few held-out photos.
            var scoring = Cli.NewContext();
            var loaded = ImageClassificationWorkflow.LoadModel(scoring, modelPath, out _);
            var samples = valScan.ClassNames.SelectMany(c => valScan.Images.Where(e => e.Label == c).Take(1)).ToList();
            Console.WriteLine("Predictions of the reloaded model on held-out photos:");
            var predictions = ImageClassificationWorkflow.Predict(scoring, loaded, samples.Select(s => Path.Combine(valScan.Root, s.ImagePath)), top: 2);
            foreach (var (p, truth) in predictions.Zip(samples))
                Console.WriteLine($"  {(p.PredictedClass == truth.Label ? "right" : "WRONG"),-5} {Path.GetRelativePath(valScan.Root, p.ImagePath),-40} → "
                    + string.Join("  ", p.Top.Select(t => $"{t.Class} {t.Probability:P1}")));

            string summary = $"Accuracy on held-out photos: {report.MicroAccuracy:P1} from the pretrained network ({pretrainedTime.TotalSeconds:F0}s of training)";
            if (!r.GetValue(skipScratch))
            {
                // The same architecture and preprocessing from random weights, same epochs, every layer training.
                var scratch = new ImageTransferTrainer.Options
                {
                    Architecture = MLNetResNet18.ArchitectureName,
                    Preprocessing = ImageClassificationWorkflow.FindClassifier(trained.Model).Description.Preprocessing,
                    Epochs = options.Epochs,
                    BatchSize = options.BatchSize,
                    Seed = options.Seed,
                };
                Console.WriteLine();
                Console.WriteLine($"For comparison: the same network from random weights, {scratch.Epochs} epochs.");
                Console.WriteLine(Training.TrainingRecipes.Apply(scratch, pretrained: false).Description);
                var scratchWatch = Stopwatch.StartNew();
                var fromScratch = TrainingDisplay.Run(scratch, r.GetValue(quiet), () => ImageClassificationWorkflow.TrainFromFolder(Cli.NewContext(scratch.Seed), trainDir, scratch, valDir));
                var scratchReport = ImageClassificationWorkflow.Evaluate(ml, fromScratch.Model, fromScratch.ValidationData!);
                summary += $", {scratchReport.MicroAccuracy:P1} from scratch ({scratchWatch.Elapsed.TotalSeconds:F0}s): "
                    + $"{(report.MicroAccuracy - scratchReport.MicroAccuracy) * 100:+0.0;-0.0} points from starting pretrained";
            }
            Console.WriteLine();
            Console.WriteLine(summary + ".");
            Console.WriteLine($"Demo finished in {total.Elapsed.TotalSeconds:F0}s.");
            return 0;
        }));
        return command;
    }
}
