using System.Diagnostics;

namespace MLNet.ImageTransfer.Benchmarks.Infrastructure;

/// <summary>
/// A command run as a fresh process and timed from outside, from start to exit (runtime start-up, native libraries and
/// imports included, as a user pays them); the runners' child modes are started through <see cref="OwnCommand"/>.
/// </summary>
internal static class TimedProcess
{
    public sealed record Result(int ExitCode, string StdOut, string StdErr, double Seconds)
    {
        /// <summary>The command's output for an error message.</summary>
        public string Output => StdErr + StdOut;
    }

    /// <summary>This benchmark program with <paramref name="args"/> (through <c>dotnet x.dll</c> when it runs that way).</summary>
    public static string[] OwnCommand(params string[] args)
    {
        var path = Environment.ProcessPath!;
        return Path.GetFileNameWithoutExtension(path) == "dotnet"
            ? [path, typeof(TimedProcess).Assembly.Location, .. args]
            : [path, .. args];
    }

    /// <summary>Runs <paramref name="command"/> (program, then arguments) to its exit.</summary>
    public static Result Run(IReadOnlyList<string> command)
    {
        var start = new ProcessStartInfo(command[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in command.Skip(1)) start.ArgumentList.Add(a);
        var watch = Stopwatch.StartNew();
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        process.WaitForExit();
        double seconds = watch.Elapsed.TotalSeconds;
        return new Result(process.ExitCode, stdout.Result, stderr.Result, seconds);
    }
}
