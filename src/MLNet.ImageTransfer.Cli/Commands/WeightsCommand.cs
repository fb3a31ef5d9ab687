using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using MLNet.ImageTransfer.Weights;

namespace MLNet.ImageTransfer.Cli.Commands;

/// <summary><c>weights inspect FILE</c>: what a pretrained weight file holds and which architecture it matches.</summary>
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
        return new Command("weights", "Pretrained weight files") { inspect };
    }

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
