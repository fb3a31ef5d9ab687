using System.CommandLine;
using System.Globalization;
using MLNet.ImageTransfer.Data;

namespace MLNet.ImageTransfer.Cli.Commands;

internal static class PredictCommand
{
    public static Command Create()
    {
        var model = new Option<FileInfo>("--model") { Description = "Trained model (.zip)", Required = true };
        var input = new Argument<string>("path") { Description = "An image file, or a folder whose images (recursively) are all predicted" };
        var top = new Option<int>("--top") { Description = "How many classes to show per image", DefaultValueFactory = _ => 3 };
        var csv = new Option<FileInfo?>("--csv") { Description = "Also write the predictions to this CSV file" };
        var command = new Command("predict", "Predict the class of an image or of every image in a folder") { model, input, top, csv };
        command.SetAction(r => Cli.Run(() =>
        {
            var path = r.GetValue(input)!;
            var images = ImageFiles(path);
            var ml = Cli.NewContext();
            var loaded = ImageClassificationWorkflow.LoadModel(ml, r.GetValue(model)!.FullName, out _);
            var predictions = ImageClassificationWorkflow.Predict(ml, loaded, images, r.GetValue(top));
            foreach (var p in predictions)
                Console.WriteLine($"{p.ImagePath}: " + string.Join("  ", p.Top.Select(t => $"{t.Class} {t.Probability:P1}")));
            if (r.GetValue(csv) is { } file) WriteCsv(file.FullName, predictions);
            return 0;
        }));
        return command;
    }

    static List<string> ImageFiles(string path)
    {
        if (File.Exists(path))
        {
            if (ImageFormatSniffer.Detect(path, out var problem) is null) throw new InvalidDataException($"'{path}' is not an image: {problem}.");
            return [path];
        }
        if (!Directory.Exists(path)) throw new FileNotFoundException($"'{path}' is neither an image file nor a folder.", path);
        var candidates = Directory.EnumerateFiles(path, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal)
            .Where(f => !Path.GetFileName(f).StartsWith('.') && ImageFormatSniffer.Detect(f, out _) is not null).ToList();
        // Corrupt or truncated images are left out with a note, as in training.
        var problems = candidates.AsParallel().AsOrdered().Select(f => (File: f, Problem: ImageDecoder.Check(f))).ToList();
        var bad = problems.Where(p => p.Problem is not null).ToList();
        if (bad.Count > 0)
            Console.Error.WriteLine($"Skipped {bad.Count} file(s) that are not usable images: " + string.Join("; ", bad.Take(5).Select(b => $"{b.File}: {b.Problem}")) + (bad.Count > 5 ? $"; and {bad.Count - 5} more." : "."));
        var files = problems.Where(p => p.Problem is null).Select(p => p.File).ToList();
        return files.Count > 0 ? files : throw new InvalidDataException($"Folder '{path}' contains no usable images.");
    }

    static void WriteCsv(string path, IReadOnlyList<ImagePrediction> predictions)
    {
        int k = predictions.Max(p => p.Top.Count);
        using var w = new StreamWriter(path);
        w.WriteLine("image," + string.Join(",", Enumerable.Range(1, k).Select(i => $"class{i},probability{i}")));
        foreach (var p in predictions)
            w.WriteLine(Quote(p.ImagePath) + "," + string.Join(",", p.Top.Select(t => $"{Quote(t.Class)},{t.Probability.ToString("R", CultureInfo.InvariantCulture)}")));
    }

    static string Quote(string s) => s.Contains(',') || s.Contains('"') ? "\"" + s.Replace("\"", "\"\"") + "\"" : s;
}
