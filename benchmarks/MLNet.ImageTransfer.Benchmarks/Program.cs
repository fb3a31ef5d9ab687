using BenchmarkDotNet.Running;
using MLNet.ImageTransfer.Benchmarks;
using MLNet.ImageTransfer.Benchmarks.Compare;

// Side by side with PyTorch (writes benchmarks/RESULTS.md; see benchmarks/README.md):
//   dotnet run -c Release --project benchmarks/MLNet.ImageTransfer.Benchmarks -- compare [--quick]
// BenchmarkDotNet suite (the full job by default, the quick job with --quick):
//   dotnet run -c Release --project benchmarks/MLNet.ImageTransfer.Benchmarks -- --filter '*'
//   dotnet run -c Release --project benchmarks/MLNet.ImageTransfer.Benchmarks -- --filter '*Pipeline*' --quick
if (args.Length > 0 && args[0] == "compare") return CompareRunner.Run(args[1..]);
if (args.Length > 0 && args[0] == "load-predict") return CompareRunner.LoadPredictChild(args[1..]);
// ONNX Runtime vs TorchSharp for scoring, saved-model start-up, frozen-backbone epochs (writes benchmarks/results/DEPLOYMENT.md):
//   dotnet run -c Release --project benchmarks/MLNet.ImageTransfer.Benchmarks -- deploy [--quick]
if (args.Length > 0 && args[0] == "deploy") return MLNet.ImageTransfer.Benchmarks.Deployment.DeploymentRunner.Run(args[1..]);
if (args.Length > 0 && args[0] == "probe-infer") return MLNet.ImageTransfer.Benchmarks.Deployment.DeploymentRunner.ProbeInference(args[1..]);
// Peak RSS of training at 2,000 vs 20,000 images, each in a child process (MemoryScaling.cs):
//   dotnet run -c Release --project benchmarks/MLNet.ImageTransfer.Benchmarks -- rss [--sizes 2000,20000] [--image-size 32]
if (args.Length > 0 && args[0] == "rss") return MemoryScaling.Run(args[1..]);
if (args.Length > 0 && args[0] == "rss-child") return MemoryScaling.Child(args[1..]);

// Transfer learning from ML.NET's ResNet18 on photo folders, ours beside ML.NET's DnnFeaturizeImage route (Transfer/):
//   dotnet run -c Release --project benchmarks/MLNet.ImageTransfer.Benchmarks -- transfer --data DIR [--data DIR] [--repeat N]
if (args.Length > 0 && args[0] == "transfer") return MLNet.ImageTransfer.Benchmarks.Transfer.TransferLearningRunner.Run(args[1..]);
if (args.Length > 0 && args[0] == "transfer-child") return MLNet.ImageTransfer.Benchmarks.Transfer.TransferLearningRunner.Child(args[1..]);

// From scratch on photo folders, ours beside PyTorch with the same recipe and several seeds (Accuracy/):
//   dotnet run -c Release --project benchmarks/MLNet.ImageTransfer.Benchmarks -- from-scratch --data DIR [--seeds 3]
if (args.Length > 0 && args[0] == "from-scratch") return MLNet.ImageTransfer.Benchmarks.Accuracy.FromScratchAccuracyRunner.Run(args[1..]);
if (args.Length > 0 && args[0] == "from-scratch-child") return MLNet.ImageTransfer.Benchmarks.Accuracy.FromScratchAccuracyRunner.Child(args[1..]);

SuiteConfig.Quick = args.Contains("--quick");
var summaries = BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args.Where(a => a != "--quick").ToArray());
return summaries.Any(s => s.HasCriticalValidationErrors || s.Reports.Any(r => !r.Success)) ? 1 : 0;
