using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using MLNet.ImageTransfer.Weights;
using Spectre.Console;

namespace MLNet.ImageTransfer.Cli.Commands;

/// <summary>
/// <c>weights inspect FILE</c>: what a pretrained weight file holds and which architecture it matches;
/// <c>weights list</c>: the catalog of published weights by name; <c>weights download NAME</c>: fetch one into the cache.
/// </summary>
internal static class WeightsCommand
{
    public static Command Create()
    {
        var file = new Argument<FileInfo>("FILE") { Description = "Weight file: safetensors, PyTorch .pth/.pt, Keras .h5 or ONNX (recognised by content)" };
        var json = new Option<bool>("--json") { Description = "Print a machine-readable JSON report instead of text" };
        var all = new Option<bool>("--all") { Description = "List every tensor (default: the first 40)" };
        var inspect = new Command("inspect", "List a weight file's tensors (name, dtype, shape) and the architecture they match") { file, json, all };
        inspect.SetAction(r => Cli.Run(() =>
        {
            var path = r.GetValue(file)!.FullName;
            if (!File.Exists(path)) throw new FileNotFoundException($"Weight file '{path}' does not exist.", path);
            var report = WeightInspection.Inspect(path);
            if (r.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
                return 0;
            }
            Print(report, r.GetValue(all));
            return 0;
        }));
        return new Command("weights", "Pretrained weight files") { inspect, List(), Download() };
    }

    static Command List()
    {
        var json = new Option<bool>("--json") { Description = "Print the catalog as JSON (every field of every entry)" };
        var arch = new Option<string?>("--arch") { Description = "Only the weights for this architecture" };
        var list = new Command("list", $"Published ImageNet weights by name (torchvision, Keras, ML.NET's NuGet ResNet18), and whether each is on this machine. Cache: {WeightCache.DefaultDirectory} ({WeightCache.EnvironmentVariable})") { json, arch };
        list.SetAction(r => Cli.Run(() =>
        {
            var entries = PretrainedWeightCatalog.Entries.AsEnumerable();
            if (r.GetValue(arch) is { } a)
                entries = entries.Where(e => e.Architecture.Equals(a, StringComparison.OrdinalIgnoreCase) || e.Architecture.Equals(a + Models.Architectures.KerasSuffix, StringComparison.OrdinalIgnoreCase));
            var cache = new WeightCache();
            var rows = entries.Select(e => (Entry: e, Local: LocalState(e, cache))).ToList();
            if (r.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(rows.Select(x => ToJson(x.Entry, x.Local, cache)), new JsonSerializerOptions { WriteIndented = true }));
                return 0;
            }
            PrintTable(rows);
            Console.WriteLine();
            Console.WriteLine($"Cache: {cache.Directory} (set {WeightCache.EnvironmentVariable} to move it). 'imagenet' = the default (*) of --arch.");
            return 0;
        }));
        return list;
    }

    static Command Download()
    {
        var name = new Argument<string>("NAME") { Description = "A name from 'weights list' (or an alias, an architecture for its default, or 'imagenet' with --arch)" };
        var arch = new Option<string?>("--arch") { Description = "The architecture 'imagenet' means the default weights of" };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "No progress bar" };
        var download = new Command("download", "Download published weights into the cache (verified against the publisher's hash) and print the file's path") { name, arch, quiet };
        download.SetAction(r => Cli.Run(() =>
        {
            var entry = PretrainedWeightSource.Select(r.GetValue(name)!, r.GetValue(arch));
            var resolved = Fetch(entry, r.GetValue(quiet));
            if (resolved.Origin == WeightOrigin.Package)
                Console.Error.WriteLine($"{entry.Name}: found in the NuGet package {entry.Package!.Id} {entry.Package.Version}" +
                    (resolved.Companions.Count > 0 ? $", with {string.Join(", ", resolved.Companions)}" : ""));
            else
                Console.Error.WriteLine($"{entry.Name}: {(resolved.Origin == WeightOrigin.Download ? "downloaded and verified" : "already in the cache")} ({entry.Hash})");
            Console.WriteLine(resolved.Path);
            return 0;
        }));
        return download;
    }

    /// <summary>
    /// Resolves an entry with a live download bar on stderr when it is a terminal, so that stdout carries only the path
    /// (<c>path=$(mlnet-imagetransfer weights download NAME)</c>).
    /// </summary>
    internal static ResolvedWeights Fetch(PretrainedWeightEntry entry, bool quiet)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        if (quiet || Console.IsErrorRedirected || !console.Profile.Capabilities.Interactive || entry.Url is null)
        {
            if (entry.Url is not null && !WeightCache.OfflineByEnvironment && PretrainedWeightSource.FindLocal(entry) is null)
                Console.Error.WriteLine($"{entry.Name}: downloading {entry.Url}{(entry.DisplaySize is { } size ? $" ({size})" : "")}…");
            return PretrainedWeightSource.Resolve(entry.Name);
        }
        ResolvedWeights resolved = null!;
        console.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new DownloadedColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(entry.Name), autoStart: false);
                var progress = new ImmediateProgress<WeightDownloadProgress>(p =>
                {
                    if (!task.IsStarted) task.StartTask();
                    if (p.TotalBytes is long total && total > 0) task.MaxValue = total;
                    task.IsIndeterminate = p.TotalBytes is null;
                    task.Value = p.BytesDone;
                    task.Description = Markup.Escape(p.Stage switch
                    {
                        WeightDownloadStage.WaitingForLock => $"{entry.Name}: another process is downloading it",
                        WeightDownloadStage.Verifying => $"{entry.Name}: verifying",
                        _ => p.Resumed ? $"{entry.Name} (resumed)" : entry.Name,
                    });
                });
                resolved = PretrainedWeightSource.Resolve(entry.Name, options: new PretrainedWeightOptions { Progress = progress });
                task.Value = task.MaxValue;
                task.StopTask();
            });
        return resolved;
    }

    /// <summary>Progress reported on the reporting thread, in order (System.Progress posts to the thread pool).</summary>
    sealed class ImmediateProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }

    static string LocalState(PretrainedWeightEntry entry, WeightCache cache)
    {
        if (entry.Source == WeightPublisher.NuGetPackage) return PretrainedWeightSource.FindLocal(entry) is null ? "no" : "package";
        return cache.StateOf(entry) switch
        {
            WeightCacheState.Verified => "yes",
            WeightCacheState.Unverified => "unverified",
            WeightCacheState.Partial => "partial",
            _ => "no",
        };
    }

    static void PrintTable(IReadOnlyList<(PretrainedWeightEntry Entry, string Local)> rows)
    {
        var c = CultureInfo.InvariantCulture;
        string[] header = ["NAME", "ARCHITECTURE", "SOURCE", "SIZE", "ACC@1", "CACHED"];
        var cells = rows.Select(x => new[]
        {
            x.Entry.Name + (x.Entry.IsDefault ? " *" : ""),
            x.Entry.Architecture,
            x.Entry.Source switch { WeightPublisher.Torchvision => "torchvision", WeightPublisher.Keras => "keras", _ => "nuget" },
            x.Entry.DisplaySize ?? "-",
            x.Entry.Top1Accuracy is double acc ? acc.ToString("0.0##", c) : "-",
            x.Local,
        }).ToList();
        var widths = header.Select((h, i) => cells.Select(row => row[i].Length).Append(h.Length).Max()).ToArray();
        foreach (var row in cells.Prepend(header))
            Console.WriteLine(string.Join("  ", row.Select((cell, i) => i is 3 or 4 ? cell.PadLeft(widths[i]) : cell.PadRight(widths[i]))).TrimEnd());
    }

    static object ToJson(PretrainedWeightEntry e, string local, WeightCache cache) => new
    {
        name = e.Name,
        aliases = e.Aliases,
        architecture = e.Architecture,
        source = e.Source.ToString(),
        publisherName = e.PublisherName,
        format = e.Format.ToString(),
        url = e.Url,
        fileName = e.FileName,
        package = e.Package is { } p ? $"{p.Id} {p.Version}" : null,
        hash = e.Hash.ToString(),
        fileSizeMB = e.FileSizeMB,
        fileBytes = e.FileBytes,
        isDefault = e.IsDefault,
        numClasses = e.NumClasses,
        classNames = e.ClassNames,
        top1Accuracy = e.Top1Accuracy,
        preprocessing = e.Preprocessing.ToString(),
        cached = local,
        path = e.Source == WeightPublisher.NuGetPackage ? PretrainedWeightSource.FindLocal(e)?.Path : cache.PathFor(e),
    };

    static void Print(WeightInspection report, bool all)
    {
        var c = CultureInfo.InvariantCulture;
        Console.WriteLine($"File:          {report.Path}");
        Console.WriteLine($"Size:          {report.FileBytes.ToString("N0", c)} bytes, sha256 {report.Sha256}");
        Console.WriteLine($"Format:        {report.Format}");
        Console.WriteLine($"Architecture:  {report.Architecture ?? "custom"} — {report.ArchitectureDetails}");
        if (report.Match is { } m)
            Console.WriteLine(m.IsExact
                ? $"Match:         exact ({m.Loaded.Count} tensors, keys and shapes equal to the network built for it)"
                : $"Match:         NOT exact — {m.Describe(10)}");
        Console.WriteLine($"Classifier:    {(report.NumClasses is int k ? $"{k} classes (re-initialised automatically when training on another number)" : "none (a \"notop\" file: training starts a fresh classifier)")}");
        if (report.Preprocessing is not null) Console.WriteLine($"Preprocessing: {report.Preprocessing}");
        foreach (var note in report.Notes) Console.WriteLine($"Note:          {note}");
        Console.WriteLine();
        Console.WriteLine($"{report.Tensors.Count.ToString("N0", c)} tensors, {report.Values.ToString("N0", c)} values:");
        int width = Math.Min(70, report.Tensors.Select(t => t.Name.Length).DefaultIfEmpty(10).Max());
        foreach (var t in all ? report.Tensors : report.Tensors.Take(40))
            Console.WriteLine($"  {t.Name.PadRight(width)}  {t.DType,-5} [{string.Join(", ", t.Shape)}]");
        if (!all && report.Tensors.Count > 40) Console.WriteLine($"  … {report.Tensors.Count - 40} more (--all lists them)");
    }
}
