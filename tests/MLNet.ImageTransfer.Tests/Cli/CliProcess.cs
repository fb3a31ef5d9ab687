namespace MLNet.ImageTransfer.Tests.Cli;

/// <summary>Runs the CLI (built next to the tests) as a separate process: a fresh process with nothing registered.</summary>
internal static class CliProcess
{
    public static (int ExitCode, string StdOut, string StdErr) Run(params string[] args)
        => ChildProcess.RunDotnet([Path.Combine(AppContext.BaseDirectory, "mlnet-imagetransfer.dll"), .. args], TimeSpan.FromMinutes(5));
}
