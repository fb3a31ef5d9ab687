using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using MLNet.ImageTransfer.Training;

namespace MLNet.ImageTransfer.Reporting;

/// <summary>
/// A training run's epochs as files next to the model (<c>model.zip</c> → <c>model.history.csv</c>,
/// <c>model.history.json</c>, <c>model.curves.png</c>), in Keras' CSVLogger vocabulary: one row per epoch with
/// <c>epoch, phase, steps, duration_s, lr, loss, accuracy, val_loss, val_accuracy, improved, kept</c>
/// (validation fields empty without validation). The JSON holds the same rows under <c>epochs</c> plus
/// <c>kept_epoch</c>, so <c>pandas.read_csv</c> or <c>pd.DataFrame(json["epochs"])</c> read either.
/// </summary>
public static class TrainingHistoryFiles
{
    /// <summary>The columns, in file order: one place for both formats.</summary>
    static readonly (string Name, Func<EpochSummary, TrainingHistory, object?> Value)[] Columns =
    [
        ("epoch", (e, _) => e.Epoch),
        ("epochs", (e, _) => e.Epochs),
        ("phase", (e, _) => PhaseName(e.Phase)),
        ("steps", (e, _) => e.Steps),
        ("duration_s", (e, _) => e.Duration.TotalSeconds),
        ("lr", (e, _) => e.LearningRate),
        ("loss", (e, _) => e.TrainLoss),
        ("accuracy", (e, _) => e.TrainAccuracy),
        ("val_loss", (e, _) => e.ValidationLoss),
        ("val_accuracy", (e, _) => e.ValidationAccuracy),
        ("improved", (e, _) => e.IsBest),
        ("kept", (e, h) => e.Epoch == h.KeptEpoch),
    ];

    /// <summary>Where <see cref="SaveNextToModel"/> writes for <paramref name="modelPath"/>: (csv, json, png).</summary>
    public static (string Csv, string Json, string Curves) PathsFor(string modelPath)
    {
        var stem = Path.ChangeExtension(Path.GetFullPath(modelPath), null);
        return (stem + ".history.csv", stem + ".history.json", stem + ".curves.png");
    }

    /// <summary>Writes the history as CSV and JSON and the loss/accuracy curves as PNG next to the model; returns the paths.</summary>
    public static IReadOnlyList<string> SaveNextToModel(TrainingHistory history, string modelPath)
    {
        var (csv, json, curves) = PathsFor(modelPath);
        WriteCsv(history, csv);
        WriteJson(history, json);
        ReportFiles.WriteAtomically(curves, ReportCharts.TrainingCurves(history));
        return [csv, json, curves];
    }

    public static string ToCsv(TrainingHistory history)
    {
        var text = new System.Text.StringBuilder();
        text.Append(string.Join(",", Columns.Select(c => c.Name))).Append('\n');
        foreach (var e in history.Epochs)
            text.Append(string.Join(",", Columns.Select(c => Format(c.Value(e, history))))).Append('\n');
        return text.ToString();
    }

    public static string ToJson(TrainingHistory history)
    {
        var epochs = new JsonArray();
        foreach (var e in history.Epochs)
        {
            var row = new JsonObject();
            foreach (var (name, value) in Columns) row[name] = JsonValue(value(e, history));
            epochs.Add(row);
        }
        return new JsonObject { ["kept_epoch"] = history.KeptEpoch, ["epochs"] = epochs }.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    public static void WriteCsv(TrainingHistory history, string path) => ReportFiles.WriteText(path, ToCsv(history));
    public static void WriteJson(TrainingHistory history, string path) => ReportFiles.WriteText(path, ToJson(history));

    /// <summary>Reads a file written by <see cref="WriteCsv"/>; the kept epoch is the row marked kept (else the last).</summary>
    public static TrainingHistory ReadCsv(string path)
    {
        var rows = ReportFiles.ParseCsv(File.ReadAllText(path));
        if (rows.Count == 0) throw new InvalidDataException($"History file '{path}' is empty.");
        var header = rows[0];
        var epochs = new List<EpochSummary>();
        int? kept = null;
        for (int i = 1; i < rows.Count; i++)
        {
            if (rows[i].Length != header.Length) throw new InvalidDataException($"History file '{path}' line {i + 1} has {rows[i].Length} fields; the header has {header.Length}.");
            var fields = header.Zip(rows[i]).ToDictionary(p => p.First, p => p.Second.Length == 0 ? null : p.Second);
            epochs.Add(Parse(fields, path));
            if (fields.GetValueOrDefault("kept") == "true") kept = epochs[^1].Epoch;
        }
        return new TrainingHistory(epochs, kept ?? epochs.LastOrDefault()?.Epoch ?? 0);
    }

    /// <summary>Reads a file written by <see cref="WriteJson"/>.</summary>
    public static TrainingHistory ReadJson(string path)
    {
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new InvalidDataException($"History file '{path}' is not valid JSON: {e.Message}", e); }
        if (root?["epochs"] is not JsonArray rows) throw new InvalidDataException($"History file '{path}' has no 'epochs' array.");
        var epochs = rows.Select(r => Parse(((JsonObject)r!).ToDictionary(p => p.Key, p => p.Value is null ? null : p.Value.GetValueKind() == JsonValueKind.String ? p.Value.GetValue<string>() : p.Value.ToJsonString()), path)).ToList();
        var kept = root["kept_epoch"]?.GetValue<int>() ?? epochs.LastOrDefault()?.Epoch ?? 0;
        return new TrainingHistory(epochs, kept);
    }

    static EpochSummary Parse(Dictionary<string, string?> f, string path)
    {
        string Need(string name) => f.GetValueOrDefault(name) ?? throw new InvalidDataException($"History file '{path}' lacks '{name}' in a row.");
        double D(string name) => double.Parse(Need(name), CultureInfo.InvariantCulture);
        double? Optional(string name) => f.GetValueOrDefault(name) is { } v ? double.Parse(v, CultureInfo.InvariantCulture) : null;
        try
        {
            return new EpochSummary(int.Parse(Need("epoch"), CultureInfo.InvariantCulture), int.Parse(Need("epochs"), CultureInfo.InvariantCulture),
                Need("phase") == PhaseName(TrainingPhase.Frozen) ? TrainingPhase.Frozen : TrainingPhase.FineTune,
                int.Parse(Need("steps"), CultureInfo.InvariantCulture), TimeSpan.FromSeconds(D("duration_s")), D("lr"),
                D("loss"), D("accuracy"), Optional("val_loss"), Optional("val_accuracy"), Need("improved") == "true");
        }
        catch (FormatException e)
        {
            throw new InvalidDataException($"History file '{path}' has a malformed number: {e.Message}", e);
        }
    }

    static string PhaseName(TrainingPhase phase) => phase == TrainingPhase.Frozen ? "frozen" : "fine-tune";

    static string Format(object? value) => value switch
    {
        null => "",
        bool b => b ? "true" : "false",
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        IFormattable x => x.ToString(null, CultureInfo.InvariantCulture),
        _ => ReportFiles.CsvField(value.ToString()!),
    };

    static JsonNode? JsonValue(object? value) => value switch
    {
        null => null,
        bool b => b,
        int i => i,
        double d when double.IsFinite(d) => d,
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        _ => value.ToString(),
    };
}
