using MLNet.ImageTransfer.Training;
using SkiaSharp;

namespace MLNet.ImageTransfer.Reporting;

/// <summary>
/// The report's pictures as PNG bytes: training curves (loss and accuracy panels, train and validation, the kept epoch
/// marked) and the confusion-matrix heatmap with class names (counts, or each row normalised by the true class).
/// </summary>
public static class ReportCharts
{
    static readonly SKColor Train = new(31, 119, 180), Validation = new(255, 127, 14), Marker = new(60, 60, 60),
        Grid = new(225, 225, 225), Axis = new(90, 90, 90);

    /// <summary>Two panels side by side, loss and accuracy per epoch, train and (when present) validation.</summary>
    public static byte[] TrainingCurves(TrainingHistory history, int width = 1200, int height = 500)
    {
        ArgumentNullException.ThrowIfNull(history);
        if (history.Epochs.Count == 0) throw new ArgumentException("The training history has no epochs to plot.", nameof(history));
        var epochs = history.Epochs;
        var x = epochs.Select(e => (double)e.Epoch).ToArray();
        var hasValidation = epochs.Any(e => e.ValidationLoss is not null);
        var kept = epochs.FirstOrDefault(e => e.Epoch == history.KeptEpoch);
        // Where fine-tuning starts after frozen epochs (a schedule's phase change shows on the curves).
        var fineTuneStart = epochs.Zip(epochs.Skip(1)).FirstOrDefault(p => p.First.Phase == TrainingPhase.Frozen && p.Second.Phase == TrainingPhase.FineTune).Second?.Epoch;

        using var chart = new ChartCanvas(width, height);
        var title = $"Training history: {epochs.Count} epochs";
        if (kept is not null)
            title += $", kept epoch {kept.Epoch}" + (kept.ValidationLoss is { } vl ? $" (val_loss {vl:F4}, val_accuracy {kept.ValidationAccuracy:F4})" : "");
        chart.Text(title, width / 2f, 20, 17, SKTextAlign.Center, bold: true);

        var lossSeries = new List<Series> { new("train loss", x, epochs.Select(e => (double?)e.TrainLoss).ToArray(), Train) };
        var accuracySeries = new List<Series> { new("train accuracy", x, epochs.Select(e => (double?)e.TrainAccuracy).ToArray(), Train) };
        if (hasValidation)
        {
            lossSeries.Add(new("validation loss", x, epochs.Select(e => e.ValidationLoss).ToArray(), Validation));
            accuracySeries.Add(new("validation accuracy", x, epochs.Select(e => e.ValidationAccuracy).ToArray(), Validation));
        }
        float half = width / 2f;
        LinePanel(chart, new SKRect(0, 40, half, height), "Loss", "loss", double.PositiveInfinity, lossSeries, kept?.Epoch, fineTuneStart);
        LinePanel(chart, new SKRect(half, 40, width, height), "Accuracy", "accuracy", 1, accuracySeries, kept?.Epoch, fineTuneStart);
        return chart.EncodePng();
    }

    /// <summary>
    /// The confusion matrix as a heatmap: rows are true classes, columns predicted ones (ML.NET's layout), each cell
    /// printed; <paramref name="normalize"/> divides each row by its total (per-class recall on the diagonal).
    /// </summary>
    public static byte[] ConfusionMatrix(IReadOnlyList<string> classNames, long[][] counts, bool normalize)
    {
        ArgumentNullException.ThrowIfNull(classNames);
        ArgumentNullException.ThrowIfNull(counts);
        int k = classNames.Count;
        if (k == 0 || counts.Length != k || counts.Any(r => r.Length != k))
            throw new ArgumentException($"The confusion matrix must be {k}×{k} for {k} class names.", nameof(counts));
        var values = counts.Select(row =>
        {
            double total = row.Sum();
            return row.Select(c => normalize ? (total == 0 ? 0 : c / total) : c).ToArray();
        }).ToArray();
        double vmax = normalize ? 1 : Math.Max(1, values.Max(r => r.Max()));

        const float labelSize = 14, titleSize = 17, axisTitleSize = 15;
        float cell = Math.Clamp(520f / k, 26, 90);
        float valueSize = Math.Clamp(cell * 0.28f, 8, 16);
        float longest = classNames.Max(n => ChartCanvas.MeasureText(n, labelSize));
        // Column names go under the columns, turned 45° when they are wider than a column.
        bool rotate = longest > cell - 6;
        float bottomLabels = rotate ? longest * 0.71f + labelSize : labelSize + 8;
        float left = 20 + axisTitleSize + 12 + longest + 10, top = 56;
        float gridSize = cell * k;
        float barLeft = left + gridSize + 24, barWidth = 18;
        var barTicks = ColourBarTicks(vmax, normalize);
        float barLabels = barTicks.Max(t => ChartCanvas.MeasureText(t.Label, 12));
        int width = (int)Math.Ceiling(Math.Max(barLeft + barWidth + 8 + barLabels + 16, 420));
        int height = (int)Math.Ceiling(top + gridSize + 8 + bottomLabels + 12 + axisTitleSize + 16);
        if (rotate) width = (int)Math.Max(width, left + longest * 0.71f + 20);

        using var chart = new ChartCanvas(width, height);
        chart.Text(normalize ? "Confusion matrix (each row normalised by its true class)" : $"Confusion matrix (counts, {counts.Sum(r => r.Sum())} images)",
            width / 2f, 22, titleSize, SKTextAlign.Center, bold: true);
        for (int i = 0; i < k; i++)
            for (int j = 0; j < k; j++)
            {
                var rect = SKRect.Create(left + j * cell, top + i * cell, cell, cell);
                double t = values[i][j] / vmax;
                chart.Fill(rect, Blues(t));
                var text = normalize ? values[i][j].ToString("F2", System.Globalization.CultureInfo.InvariantCulture) : counts[i][j].ToString(System.Globalization.CultureInfo.InvariantCulture);
                if (ChartCanvas.MeasureText(text, valueSize) < cell - 2)
                    chart.Text(text, rect.MidX, rect.MidY, valueSize, SKTextAlign.Center, t > 0.55 ? SKColors.White : SKColors.Black);
            }
        chart.Stroke(SKRect.Create(left, top, gridSize, gridSize), Axis);

        for (int i = 0; i < k; i++)
        {
            chart.Text(classNames[i], left - 8, top + (i + 0.5f) * cell, labelSize, SKTextAlign.Right);
            float cx = left + (i + 0.5f) * cell, below = top + gridSize + 8;
            if (rotate) chart.Text(classNames[i], cx + labelSize * 0.3f, below + 2, labelSize, SKTextAlign.Right, rotation: -45);
            else chart.Text(classNames[i], cx, below + labelSize / 2, labelSize, SKTextAlign.Center);
        }
        chart.Text("predicted class", left + gridSize / 2, height - 16, axisTitleSize, SKTextAlign.Center);
        chart.Text("true class", 22, top + gridSize / 2, axisTitleSize, SKTextAlign.Center, rotation: -90);

        // Colour bar: the scale of the cell colours, 0 at the bottom.
        for (int y = 0; y < (int)gridSize; y++)
            chart.Fill(SKRect.Create(barLeft, top + y, barWidth, 1.5f), Blues(1 - y / (gridSize - 1)));
        chart.Stroke(SKRect.Create(barLeft, top, barWidth, gridSize), Axis);
        foreach (var (value, label) in barTicks)
        {
            float y = top + gridSize * (float)(1 - value / vmax);
            chart.Line(barLeft + barWidth, y, barLeft + barWidth + 4, y, Axis);
            chart.Text(label, barLeft + barWidth + 7, y, 12);
        }
        return chart.EncodePng();
    }

    sealed record Series(string Name, double[] X, double?[] Y, SKColor Color);

    /// <summary>One line chart: x = epoch (integer ticks), y = value (round ticks), legend below, kept epoch dashed.</summary>
    static void LinePanel(ChartCanvas chart, SKRect area, string title, string yTitle, double yCeiling, IReadOnlyList<Series> series, int? keptEpoch, int? fineTuneStart)
    {
        const float tickSize = 12, axisTitleSize = 14;
        var xs = series[0].X;
        var (xFirst, xLast) = xs.Length == 1 ? (xs[0] - 1, xs[0] + 1) : (xs.Min(), xs.Max());
        var (_, _, xStep) = NiceScale.Range(xFirst, xLast, ticks: 8, minStep: 1);
        // Padding, so that the first and last points (and the kept-epoch marker) stand clear of the frame.
        double xPad = Math.Max(0.2, (xLast - xFirst) * 0.03), xMin = xFirst - xPad, xMax = xLast + xPad;
        var ys = series.SelectMany(s => s.Y).OfType<double>().Where(double.IsFinite).ToList();
        double yLow = ys.DefaultIfEmpty(0).Min(), yHigh = ys.DefaultIfEmpty(1).Max(), yPad = (yHigh - yLow) * 0.04;
        // Loss and accuracy are never negative and accuracy never above 1: the padding stays within.
        var (yMin, yMax, yStep) = NiceScale.Range(Math.Max(0, yLow - yPad), Math.Min(yCeiling, yHigh + yPad));
        var yTicks = NiceScale.Ticks(yMin, yMax, yStep).ToList();
        float tickLabels = yTicks.Max(t => ChartCanvas.MeasureText(NiceScale.Format(t, yStep), tickSize));

        var plot = new SKRect(area.Left + 28 + tickLabels + 10, area.Top + 30, area.Right - 24, area.Bottom - 90);
        float X(double v) => plot.Left + (float)((v - xMin) / (xMax - xMin)) * plot.Width;
        float Y(double v) => plot.Bottom - (float)((v - yMin) / (yMax - yMin)) * plot.Height;

        chart.Text(title, plot.MidX, area.Top + 12, 16, SKTextAlign.Center, bold: true);
        foreach (var t in yTicks)
        {
            chart.Line(plot.Left, Y(t), plot.Right, Y(t), Grid);
            chart.Text(NiceScale.Format(t, yStep), plot.Left - 6, Y(t), tickSize, SKTextAlign.Right);
        }
        foreach (var t in NiceScale.Ticks(xMin, xMax, xStep))
        {
            chart.Line(X(t), plot.Bottom, X(t), plot.Bottom + 4, Axis);
            chart.Text(NiceScale.Format(t, xStep), X(t), plot.Bottom + 14, tickSize, SKTextAlign.Center);
        }
        chart.Stroke(plot, Axis);
        chart.Text("epoch", plot.MidX, plot.Bottom + 34, axisTitleSize, SKTextAlign.Center);
        chart.Text(yTitle, area.Left + 14, plot.MidY, axisTitleSize, SKTextAlign.Center, rotation: -90);

        if (fineTuneStart is { } ft)
        {
            float fx = X(ft - 0.5);
            chart.Line(fx, plot.Top, fx, plot.Bottom, new SKColor(150, 150, 150), 1, [2, 3]);
            chart.Text("fine-tune →", fx + 4, plot.Top + 10, 11, color: new SKColor(110, 110, 110));
        }
        if (keptEpoch is { } kept)
            chart.Line(X(kept), plot.Top, X(kept), plot.Bottom, Marker, 1.5f, [6, 4]);

        chart.Canvas.Save();
        chart.Canvas.ClipRect(plot);
        foreach (var s in series)
        {
            using var line = new SKPaint { Color = s.Color, StrokeWidth = 2.2f, IsAntialias = true, Style = SKPaintStyle.Stroke };
            using var dot = new SKPaint { Color = s.Color, IsAntialias = true, Style = SKPaintStyle.Fill };
            using var path = new SKPath();
            bool open = false;
            for (int i = 0; i < s.X.Length; i++)
            {
                if (s.Y[i] is not { } v || !double.IsFinite(v)) { open = false; continue; }
                if (open) path.LineTo(X(s.X[i]), Y(v)); else path.MoveTo(X(s.X[i]), Y(v));
                open = true;
                chart.Canvas.DrawCircle(X(s.X[i]), Y(v), s.X.Length > 60 ? 1.5f : 3, dot);
            }
            chart.Canvas.DrawPath(path, line);
            // The kept epoch's value, ringed on each curve.
            int k = keptEpoch is { } ke ? Array.IndexOf(s.X, (double)ke) : -1;
            if (k >= 0 && s.Y[k] is { } kv && double.IsFinite(kv))
            {
                using var ring = new SKPaint { Color = Marker, StrokeWidth = 2, IsAntialias = true, Style = SKPaintStyle.Stroke };
                chart.Canvas.DrawCircle(X(s.X[k]), Y(kv), 7, ring);
            }
        }
        chart.Canvas.Restore();

        // Legend under the plot, so it never hides a curve.
        var entries = series.Select(s => (s.Name, s.Color, Dashed: false)).ToList();
        if (keptEpoch is { } keptLabel) entries.Add(($"kept epoch ({keptLabel})", Marker, true));
        float legendWidth = entries.Sum(e => 34 + ChartCanvas.MeasureText(e.Name, 13) + 18) - 18;
        float lx = plot.MidX - legendWidth / 2, ly = plot.Bottom + 62;
        foreach (var (name, color, dashed) in entries)
        {
            chart.Line(lx, ly, lx + 26, ly, color, 2.2f, dashed ? [6, 4] : null);
            chart.Text(name, lx + 32, ly, 13);
            lx += 34 + ChartCanvas.MeasureText(name, 13) + 18;
        }
    }

    static List<(double Value, string Label)> ColourBarTicks(double vmax, bool normalize)
    {
        if (normalize) return [.. NiceScale.Ticks(0, 1, 0.2).Select(t => (t, NiceScale.Format(t, 0.2)))];
        var (_, _, step) = NiceScale.Range(0, vmax, ticks: 5, minStep: 1);
        return [.. NiceScale.Ticks(0, vmax, step).Select(t => (t, NiceScale.Format(t, step)))];
    }

    /// <summary>matplotlib's "Blues" colour map (5 anchors, linear in between): white for 0, dark blue for 1.</summary>
    static readonly byte[] BluesAnchors = [247, 251, 255, 198, 219, 239, 107, 174, 214, 33, 113, 181, 8, 48, 107];

    static SKColor Blues(double t)
    {
        t = Math.Clamp(double.IsFinite(t) ? t : 0, 0, 1) * 4;
        int i = Math.Min((int)t, 3);
        double f = t - i;
        byte C(int c) => (byte)Math.Round(BluesAnchors[3 * i + c] + (BluesAnchors[3 * (i + 1) + c] - BluesAnchors[3 * i + c]) * f);
        return new SKColor(C(0), C(1), C(2));
    }
}
