using System.Globalization;

namespace MLNet.ImageTransfer.Reporting;

/// <summary>
/// The CSV files of predictions and top losses (RFC 4180: comma-separated, fields with commas or quotes quoted,
/// numbers in invariant culture, probabilities as round-trippable floats).
/// </summary>
public static class ReportCsv
{
    /// <summary>
    /// Predictions, one row per image: <c>path,class1,probability1,…,classK,probabilityK</c>, classes most probable
    /// first (class1 is the prediction). K is the largest top-k among the rows; shorter rows leave fields empty.
    /// </summary>
    public static string Predictions(IReadOnlyList<ImagePrediction> predictions)
    {
        int k = predictions.Count == 0 ? 1 : predictions.Max(p => p.Top.Count);
        var text = new System.Text.StringBuilder("path," + string.Join(",", Enumerable.Range(1, k).Select(i => $"class{i},probability{i}")) + "\n");
        foreach (var p in predictions)
        {
            var fields = new List<string> { ReportFiles.CsvField(p.ImagePath) };
            for (int i = 0; i < k; i++)
                fields.AddRange(i < p.Top.Count ? [ReportFiles.CsvField(p.Top[i].Class), p.Top[i].Probability.ToString("R", CultureInfo.InvariantCulture)] : ["", ""]);
            text.Append(string.Join(",", fields)).Append('\n');
        }
        return text.ToString();
    }

    public static string WritePredictions(string path, IReadOnlyList<ImagePrediction> predictions) => ReportFiles.WriteText(path, Predictions(predictions));

    /// <summary>Reads a file written by <see cref="WritePredictions"/>.</summary>
    public static IReadOnlyList<ImagePrediction> ReadPredictions(string path)
    {
        var rows = ReportFiles.ParseCsv(File.ReadAllText(path));
        if (rows.Count == 0 || rows[0].Length < 3 || rows[0][0] != "path")
            throw new InvalidDataException($"'{path}' is not a predictions CSV: its header must start with path,class1,probability1.");
        return rows.Skip(1).Select((r, line) =>
        {
            var top = new List<(string, float)>();
            for (int i = 1; i + 1 < r.Length && r[i].Length > 0; i += 2)
                top.Add((r[i], float.TryParse(r[i + 1], NumberStyles.Float, CultureInfo.InvariantCulture, out var p) ? p
                    : throw new InvalidDataException($"'{path}' line {line + 2}: '{r[i + 1]}' is not a probability.")));
            return new ImagePrediction(r[0], top);
        }).ToList();
    }

    /// <summary>Top losses, worst first: <c>rank,path,actual,predicted,p_actual,p_predicted,loss</c>.</summary>
    public static string TopLosses(IReadOnlyList<TopLoss> losses)
    {
        var text = new System.Text.StringBuilder("rank,path,actual,predicted,p_actual,p_predicted,loss\n");
        for (int i = 0; i < losses.Count; i++)
        {
            var t = losses[i];
            text.Append(string.Join(",", (i + 1).ToString(CultureInfo.InvariantCulture), ReportFiles.CsvField(t.ImagePath), ReportFiles.CsvField(t.Actual),
                ReportFiles.CsvField(t.Predicted), t.ActualProbability.ToString("R", CultureInfo.InvariantCulture),
                t.PredictedProbability.ToString("R", CultureInfo.InvariantCulture), t.Loss.ToString("R", CultureInfo.InvariantCulture))).Append('\n');
        }
        return text.ToString();
    }
}
