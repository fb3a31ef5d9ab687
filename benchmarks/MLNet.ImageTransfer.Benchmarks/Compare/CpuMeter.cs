using System.Diagnostics;

namespace MLNet.ImageTransfer.Benchmarks.Compare;

/// <summary>
/// How busy the machine was with other work while a row ran: CPU time of the whole machine (/proc/stat, including
/// hypervisor steal) minus the CPU time of the benchmark's own processes (this one, the PyTorch worker, and their
/// reaped children such as DataLoader workers), as a fraction of the row's wall time × cores. 0% means the
/// benchmark had the machine to itself. Linux only; elsewhere it reports NaN.
/// </summary>
public sealed class CpuMeter
{
    readonly int[] _pids;
    readonly Snapshot _start;

    CpuMeter(int[] pids)
    {
        _pids = pids;
        _start = Take(pids);
    }

    public static CpuMeter Start(params int[] pids) => new(pids);

    /// <summary>Other processes' CPU use since <see cref="Start"/>, as a fraction of all cores (0..1).</summary>
    public double OthersFraction()
    {
        var end = Take(_pids);
        double wall = (end.Wall - _start.Wall).TotalSeconds;
        if (double.IsNaN(end.MachineBusy) || wall <= 0) return double.NaN;
        double busy = (end.MachineBusy - _start.MachineBusy) / TicksPerSecond;
        double ours = (end.OwnCpu - _start.OwnCpu) / TicksPerSecond;
        return Math.Clamp((busy - ours) / (wall * Environment.ProcessorCount), 0, 1);
    }

    /// <summary>/proc/loadavg's first three fields, e.g. "1.02 0.87 0.61".</summary>
    public static string LoadAverage()
    {
        try { return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return "n/a"; }
        catch (UnauthorizedAccessException) { return "n/a"; }
    }

    const double TicksPerSecond = 100; // USER_HZ on Linux

    sealed record Snapshot(TimeSpan Wall, double MachineBusy, double OwnCpu);

    static Snapshot Take(int[] pids)
    {
        var wall = Stopwatch.GetElapsedTime(0);
        double busy = double.NaN, own = 0;
        try
        {
            // cpu  user nice system idle iowait irq softirq steal guest guest_nice
            var f = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries);
            busy = new[] { 1, 2, 3, 6, 7, 8 }.Sum(i => double.Parse(f[i]));
            foreach (var pid in pids.Append(Environment.ProcessId).Distinct())
            {
                var text = File.ReadAllText($"/proc/{pid}/stat");
                var rest = text[(text.LastIndexOf(')') + 2)..].Split(' ');
                // Fields 14..17 of stat (utime stime cutime cstime) are 11..14 after "pid (comm) ".
                own += double.Parse(rest[11]) + double.Parse(rest[12]) + double.Parse(rest[13]) + double.Parse(rest[14]);
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return new Snapshot(wall, busy, own);
    }
}
