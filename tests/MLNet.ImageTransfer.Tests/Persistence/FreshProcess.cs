using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ImageTransfer.MLNet.Persistence;

namespace MLNet.ImageTransfer.Tests.Persistence;

/// <summary>
/// Runs code of this test assembly in a fresh process, to prove that a saved model loads where nothing of the training
/// process exists (no registered loaders, no touched types, a new ML.NET component catalog).
/// </summary>
/// <remarks>
/// The test assembly is itself the child program: test projects build as executables (Microsoft.NET.Test.Sdk gives
/// them an empty <c>Main</c>, plus runtimeconfig and deps files), so <c>dotnet MLNet.ImageTransfer.Tests.dll</c>
/// starts it. A module initializer — which runs before <c>Main</c> — recognises the child by an environment variable,
/// does the work and exits. Nothing extra to build, no network, and the child always runs the code under test.
/// Inside the test runner the variable is absent and the initializer does nothing.
/// </remarks>
internal static class FreshProcess
{
    const string ModeVariable = "MLNET_IMAGETRANSFER_TEST_CHILD";
    const string ArgumentVariable = "MLNET_IMAGETRANSFER_TEST_CHILD_ARGS";

#pragma warning disable CA2255 // Module initializers in application code: this is the documented entry of the child process.
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void RunIfChild()
    {
        var mode = Environment.GetEnvironmentVariable(ModeVariable);
        if (string.IsNullOrEmpty(mode)) return;
        // Not inline: until the initializer returns, any other thread touching a type of this assembly (ML.NET's
        // worker threads calling the toy transformer) would wait for it — a deadlock. A foreground thread keeps the
        // process alive after the (empty) Main returns, and ends it with the child's exit code.
        new Thread(() => RunChild(mode)) { IsBackground = false, Name = "fresh-process child" }.Start();
    }

    static void RunChild(string mode)
    {
        int exitCode;
        try
        {
            var args = JsonSerializer.Deserialize<string[]>(Environment.GetEnvironmentVariable(ArgumentVariable) ?? "[]")!;
            exitCode = mode switch
            {
                "load-and-predict" => ChildLoadAndPredict(args[0], args[1], args[2]),
                TrainingLoop.KillResumeTests.ChildMode => TrainingLoop.KillResumeTests.RunChild(args),
                Memory.NativeAllocatorTests.ChildMode => Memory.NativeAllocatorTests.RunChild(args),
                SavedClassifierScoringTests.ChildMode => SavedClassifierScoringTests.RunChildProcess(args),
                Onnx.OnnxScoringTests.ChildMode => Onnx.OnnxScoringTests.RunChildProcess(args),
                Platform.ConvolutionEngineCheckTests.ChildMode => Platform.ConvolutionEngineCheckTests.RunChild(args),
                Reporting.ChartsWithoutSystemFontsTests.ChildMode => Reporting.ChartsWithoutSystemFontsTests.RunChild(args),
                _ => 2,
            };
        }
        catch (Exception e)
        {
            Console.Error.WriteLine(e);
            exitCode = 3;
        }
        Environment.Exit(exitCode);
    }

    /// <summary>Starts this assembly as a child in <paramref name="mode"/>; returns its exit code and output.</summary>
    public static (int ExitCode, string Output) Run(string mode, params string[] args) => Run(mode, args, environment: null);

    /// <summary>As <see cref="Run(string, string[])"/>, with extra environment variables for the child.</summary>
    public static (int ExitCode, string Output) Run(string mode, string[] args, IReadOnlyDictionary<string, string>? environment)
    {
        var assembly = typeof(FreshProcess).Assembly.Location;
        var variables = new Dictionary<string, string> { [ModeVariable] = mode, [ArgumentVariable] = JsonSerializer.Serialize(args) };
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) variables[name] = value;
        var (code, stdout, stderr) = ChildProcess.RunDotnet(["exec", assembly], TimeSpan.FromMinutes(3), variables, Path.GetDirectoryName(assembly));
        return (code, stdout + stderr);
    }

    /// <summary>
    /// As <see cref="Run(string, string[])"/>, started through <paramref name="wrapper"/>: a program and its first
    /// arguments, which runs the rest of its command line (the dotnet host starting this assembly) in turn.
    /// </summary>
    public static (int ExitCode, string Output) RunThrough(IReadOnlyList<string> wrapper, string mode, params string[] args)
    {
        var assembly = typeof(FreshProcess).Assembly.Location;
        var variables = new Dictionary<string, string> { [ModeVariable] = mode, [ArgumentVariable] = JsonSerializer.Serialize(args) };
        var (code, stdout, stderr) = ChildProcess.Run(wrapper[0], [.. wrapper.Skip(1), ChildProcess.DotnetHost(), "exec", assembly],
            TimeSpan.FromMinutes(3), variables, Path.GetDirectoryName(assembly));
        return (code, stdout + stderr);
    }

    /// <summary>Runs a child that writes a JSON report to <paramref name="reportPath"/>; asserts it succeeded and returns the report.</summary>
    public static T RunForReport<T>(string mode, string reportPath, params string[] args)
    {
        var (code, output) = Run(mode, args);
        Assert.True(code == 0, $"child ({mode}) exited with {code}: {output}");
        return JsonSerializer.Deserialize<T>(File.ReadAllText(reportPath))!;
    }

    /// <summary>Starts this assembly as a child in <paramref name="mode"/> without waiting (standard output redirected): for tests that kill it.</summary>
    public static Process Start(string mode, params string[] args)
    {
        var assembly = typeof(FreshProcess).Assembly.Location;
        var start = new ProcessStartInfo(ChildProcess.DotnetHost())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = Path.GetDirectoryName(assembly)!,
        };
        start.ArgumentList.Add("exec");
        start.ArgumentList.Add(assembly);
        start.Environment[ModeVariable] = mode;
        start.Environment[ArgumentVariable] = JsonSerializer.Serialize(args);
        return Process.Start(start)!;
    }

    // ---- Child side ----------------------------------------------------------------------------------------------

    /// <summary>The child's findings, written as JSON for the parent to check.</summary>
    public sealed class LoadReport
    {
        public string[] UnregisteredErrorChain { get; set; } = [];
        public string[] TransformerTypes { get; set; } = [];
        public List<ToyPrediction> EnginePredictions { get; set; } = [];
        public List<ToyPrediction> TransformPredictions { get; set; } = [];
    }

    static int ChildLoadAndPredict(string modelPath, string inputPath, string reportPath)
    {
        var report = new LoadReport();
        var rows = JsonSerializer.Deserialize<ToyRow[]>(File.ReadAllText(inputPath))!;

        // 1. What a user sees without registering: kept for the README.
        try
        {
            new MLContext(seed: 1).Model.Load(modelPath, out _);
            report.UnregisteredErrorChain = ["(no error: the model loaded without registration)"];
        }
        catch (Exception e)
        {
            var chain = new List<string>();
            for (var x = e; x is not null; x = x.InnerException) chain.Add($"{x.GetType().FullName}: {x.Message}");
            report.UnregisteredErrorChain = chain.ToArray();
        }

        // 2. The documented way. Test-only formats are not declared on the library assembly, so add the toy's first.
        var ml = new MLContext(seed: 1);
        ImageTransferModelFormat.AddLoader(ToyCentroidTransformer.Format);
        ml.RegisterImageTransfer();
        var model = ml.Model.Load(modelPath, out var inputSchema);
        if (model is IEnumerable<ITransformer> transformers)
            report.TransformerTypes = transformers.Select(t => t.GetType().Name).ToArray();

        var engine = ml.Model.CreatePredictionEngine<ToyRow, ToyPrediction>(model, inputSchema);
        foreach (var row in rows) report.EnginePredictions.Add(engine.Predict(row));
        report.TransformPredictions = ml.Data
            .CreateEnumerable<ToyPrediction>(model.Transform(ml.Data.LoadFromEnumerable(rows)), reuseRowObject: false).ToList();

        File.WriteAllText(reportPath, JsonSerializer.Serialize(report));
        return 0;
    }
}
