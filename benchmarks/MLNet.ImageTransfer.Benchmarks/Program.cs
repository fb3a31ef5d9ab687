using BenchmarkDotNet.Running;

// dotnet run -c Release --project benchmarks/MLNet.ImageTransfer.Benchmarks -- --filter '*'        (full jobs)
// dotnet run -c Release --project benchmarks/MLNet.ImageTransfer.Benchmarks -- --filter '*' --job short
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
