using System.Diagnostics;

namespace MLNet.ImageTransfer.Tests;

/// <summary>Runs a .NET assembly in a separate process with the dotnet host running the tests.</summary>
internal static class ChildProcess
{
    public static (int ExitCode, string StdOut, string StdErr) RunDotnet(IEnumerable<string> arguments, TimeSpan timeout,
        IReadOnlyDictionary<string, string>? environment = null, string? workingDirectory = null)
        => Run(DotnetHost(), arguments, timeout, environment, workingDirectory);

    /// <summary>Runs <paramref name="program"/> (a path, or a name looked up on PATH) to its end; returns its exit code and output.</summary>
    public static (int ExitCode, string StdOut, string StdErr) Run(string program, IEnumerable<string> arguments, TimeSpan timeout,
        IReadOnlyDictionary<string, string>? environment = null, string? workingDirectory = null)
    {
        var start = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? AppContext.BaseDirectory,
        };
        foreach (var a in arguments) start.ArgumentList.Add(a);
        foreach (var (k, v) in environment ?? new Dictionary<string, string>()) start.Environment[k] = v;
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {string.Join(' ', start.ArgumentList)} did not finish in {timeout}.");
        }
        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>The dotnet host running us (the SDK sets DOTNET_HOST_PATH for test runs), else the one on PATH.</summary>
    internal static string DotnetHost()
    {
        var fromSdk = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(fromSdk) && File.Exists(fromSdk)) return fromSdk;
        var self = Environment.ProcessPath;
        if (self is not null && Path.GetFileNameWithoutExtension(self).Equals("dotnet", StringComparison.OrdinalIgnoreCase)) return self;
        return "dotnet";
    }
}
