using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace MLNet.ImageTransfer.Benchmarks.Compare;

/// <summary>
/// The PyTorch side: one long-lived <c>pytorch_reference.py --worker</c> process (so torch is imported once), sent one
/// JSON case per line and answering one JSON line. Idle (blocked on stdin) while our side runs.
/// </summary>
public sealed class PyTorchWorker : IDisposable
{
    readonly Process _process;

    public PyTorchWorker(string python, string script, int threads)
    {
        Python = python;
        Script = script;
        var start = new ProcessStartInfo(python)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { "-u", script, "--worker", "--threads", threads.ToString() }) start.ArgumentList.Add(a);
        // One BLAS/OpenMP configuration for both sides: intra-op threads come from set_num_threads, nothing else.
        start.Environment.Remove("OMP_NUM_THREADS");
        start.Environment.Remove("MKL_NUM_THREADS");
        _process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {python}.");
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.Error.WriteLine("  [pytorch] " + e.Data); };
        _process.BeginErrorReadLine();
        var ready = _process.StandardOutput.ReadLine()
            ?? throw new InvalidOperationException($"{python} {script} exited before it was ready (is python3-torch installed? `apt-get install python3-torch python3-torchvision`).");
        Versions = JsonNode.Parse(ready)!.AsObject();
    }

    public string Python { get; }
    public string Script { get; }
    public int ProcessId => _process.Id;

    /// <summary>What the worker reported at start: python, torch, torchvision, pillow, threads, oneDNN, BLAS.</summary>
    public JsonObject Versions { get; }

    public JsonObject Run(JsonObject request)
    {
        _process.StandardInput.WriteLine(request.ToJsonString());
        _process.StandardInput.Flush();
        var line = _process.StandardOutput.ReadLine() ?? throw new InvalidOperationException("The PyTorch worker exited.");
        var result = JsonNode.Parse(line)!.AsObject();
        if (result["ok"]?.GetValue<bool>() != true)
            throw new InvalidOperationException("PyTorch: " + (result["error"]?.GetValue<string>() ?? line));
        return result;
    }

    public static double[] Doubles(JsonNode? node) => node?.AsArray().Select(n => n!.GetValue<double>()).ToArray() ?? [];

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.StandardInput.WriteLine(JsonSerializer.Serialize(new { kind = "exit" }));
                _process.StandardInput.Flush();
                if (!_process.WaitForExit(10_000)) _process.Kill();
            }
        }
        catch (InvalidOperationException) { }
        catch (IOException) { }
        _process.Dispose();
    }
}
