using MLNet.ImageTransfer.Training;

namespace MLNet.ImageTransfer.Reporting;

/// <summary>
/// An evaluation written to a folder: <c>report.json</c> (<see cref="EvaluationReport.ToJson"/>),
/// <c>confusion_counts.png</c>, <c>confusion_normalized.png</c>, <c>top_losses.csv</c>, and with a training history
/// <c>curves.png</c> plus <c>history.csv</c>/<c>history.json</c>.
/// </summary>
public static class EvaluationReportFiles
{
    /// <summary>Writes the report's files into <paramref name="directory"/> (created if needed); returns their paths.</summary>
    public static IReadOnlyList<string> Save(EvaluationReport report, string directory, TrainingHistory? history = null)
    {
        ArgumentNullException.ThrowIfNull(report);
        var written = new List<string>
        {
            ReportFiles.WriteText(Path.Combine(directory, "report.json"), report.ToJson()),
            ReportFiles.WriteAtomically(Path.Combine(directory, "confusion_counts.png"), ReportCharts.ConfusionMatrix(report.ClassNames, report.ConfusionMatrix, normalize: false)),
            ReportFiles.WriteAtomically(Path.Combine(directory, "confusion_normalized.png"), ReportCharts.ConfusionMatrix(report.ClassNames, report.ConfusionMatrix, normalize: true)),
            ReportFiles.WriteText(Path.Combine(directory, "top_losses.csv"), ReportCsv.TopLosses(report.TopLosses)),
        };
        if (history is { Epochs.Count: > 0 })
        {
            written.Add(ReportFiles.WriteAtomically(Path.Combine(directory, "curves.png"), ReportCharts.TrainingCurves(history)));
            written.Add(ReportFiles.WriteText(Path.Combine(directory, "history.csv"), TrainingHistoryFiles.ToCsv(history)));
            written.Add(ReportFiles.WriteText(Path.Combine(directory, "history.json"), TrainingHistoryFiles.ToJson(history)));
        }
        return written;
    }
}
