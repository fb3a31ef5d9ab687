using System.Globalization;
using MLNet.ImageTransfer.Training;
using ScottPlot;
using ScottPlot.TickGenerators;
using SkiaSharp;

namespace MLNet.ImageTransfer.Reporting;

/// <summary>
/// The report's pictures as PNG bytes, drawn with ScottPlot in the embedded font (<see cref="ChartFont"/>): training
/// curves (loss and accuracy panels, train and validation, the kept epoch marked, the fine-tune phase shaded) and the
/// confusion-matrix heatmap with class names (counts, or each row normalised by the true class).
/// </summary>
public static class ReportCharts
{
    static readonly Color Train = Color.FromHex("#1f77b4"), Validation = Color.FromHex("#ff7f0e"), Marker = Color.FromHex("#3c3c3c"),
        FineTune = Color.FromHex("#9e9e9e").WithAlpha(0.16);

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

        var title = $"Training history: {epochs.Count} epochs";
        if (kept is not null)
            title += $", kept epoch {kept.Epoch}" + (kept.ValidationLoss is { } vl ? $" (val_loss {vl:F4}, val_accuracy {kept.ValidationAccuracy:F4})" : "");

        var lossSeries = new List<Series> { new("train loss", x, epochs.Select(e => (double?)e.TrainLoss).ToArray(), Train) };
        var accuracySeries = new List<Series> { new("train accuracy", x, epochs.Select(e => (double?)e.TrainAccuracy).ToArray(), Train) };
        if (hasValidation)
        {
            lossSeries.Add(new("validation loss", x, epochs.Select(e => e.ValidationLoss).ToArray(), Validation));
            accuracySeries.Add(new("validation accuracy", x, epochs.Select(e => e.ValidationAccuracy).ToArray(), Validation));
        }

        var info = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Premul);
        using var surface = SKSurface.Create(info) ?? throw new InvalidOperationException($"Cannot create a {width}×{height} image.");
        surface.Canvas.Clear(SKColors.White);
        // The figure's title above both panels (ScottPlot titles belong to one plot).
        ChartFont.Render(new LabelStyle { Text = title, FontSize = 17, Alignment = Alignment.UpperCenter }, surface.Canvas, new Pixel(width / 2f, 9));
        const int titleBand = 38;
        int half = width / 2;
        var panels = new[]
        {
            (Plot: CurvePanel("Loss", "loss", double.PositiveInfinity, lossSeries, kept?.Epoch, fineTuneStart), Rect: new PixelRect(0, half, height, titleBand)),
            (Plot: CurvePanel("Accuracy", "accuracy", 1, accuracySeries, kept?.Epoch, fineTuneStart), Rect: new PixelRect(half, width, height, titleBand)),
        };
        foreach (var (plot, rect) in panels)
        {
            plot.RenderManager.ClearCanvasBeforeEachRender = false;
            plot.Render(surface.Canvas, rect);
        }
        using var image = new Image(surface);
        return image.GetImageBytes(ImageFormat.Png);
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
        var values = new double[k, k];
        for (int i = 0; i < k; i++)
        {
            double total = counts[i].Sum();
            for (int j = 0; j < k; j++) values[i, j] = normalize ? (total == 0 ? 0 : counts[i][j] / total) : counts[i][j];
        }
        double vmax = normalize ? 1 : Math.Max(1, counts.Max(r => r.Max()));

        const float labelSize = 14, titleSize = 17, axisTitleSize = 15, barTickSize = 12, barWidth = 18;
        float cell = Math.Clamp(520f / k, 26, 90);
        float valueSize = Math.Clamp(cell * 0.28f, 8, 16);
        var names = ClassLabels(classNames, labelSize);
        float longest = names.Max(n => ChartFont.Measure(n, labelSize).Width);
        // Column names go under the columns, turned 45° when they are wider than a column.
        bool rotate = longest > cell - 6;
        float gridSize = cell * k;

        var title = normalize ? "Confusion matrix (each row normalised by its true class)" : $"Confusion matrix (counts, {counts.Sum(r => r.Sum())} images)";
        var plot = new Plot();
        plot.Title(title, titleSize);
        plot.XLabel("predicted class", axisTitleSize);
        plot.YLabel("true class", axisTitleSize);
        plot.HideGrid();

        var heatmap = plot.Add.Heatmap(values);
        heatmap.Colormap = Blues;
        heatmap.ManualRange = new ScottPlot.Range(0, vmax);
        // Row 0 of the matrix is the top row; cell (i, j) is centred on x = j, y = k − 1 − i.
        plot.Axes.SetLimits(-0.5, k - 0.5, -0.5, k - 0.5);
        var columns = Enumerable.Range(0, k).Select(j => (double)j).ToArray();
        plot.Axes.Bottom.TickGenerator = new NumericManual(columns, names);
        plot.Axes.Left.TickGenerator = new NumericManual(columns.Select(i => k - 1 - i).ToArray(), names);
        foreach (var axis in new IAxis[] { plot.Axes.Bottom, plot.Axes.Left }) axis.TickLabelStyle.FontSize = labelSize;
        if (rotate)
        {
            // Each name ends at its column's tick and rises to the right.
            plot.Axes.Bottom.TickLabelStyle.Rotation = -45;
            plot.Axes.Bottom.TickLabelStyle.Alignment = Alignment.MiddleRight;
            plot.Axes.Bottom.TickLabelStyle.OffsetX = labelSize * 0.3f;
            plot.Axes.Bottom.TickLabelStyle.OffsetY = 4;
        }

        var fits = new Dictionary<string, bool>();
        for (int i = 0; i < k; i++)
            for (int j = 0; j < k; j++)
            {
                var text = normalize ? values[i, j].ToString("F2", CultureInfo.InvariantCulture) : counts[i][j].ToString(CultureInfo.InvariantCulture);
                if (!fits.TryGetValue(text, out var fit)) fits[text] = fit = ChartFont.Measure(text, valueSize).Width < cell - 2;
                if (!fit) continue; // too many digits for the cell: its colour tells
                var label = plot.Add.Text(text, j, k - 1 - i);
                label.LabelFontSize = valueSize;
                label.LabelAlignment = Alignment.MiddleCenter;
                label.LabelOffsetY = valueSize * 0.33f; // ScottPlot centres the line's box, which sits digits high
                label.LabelFontColor = IsDark(Blues.GetColor(values[i, j] / vmax)) ? Colors.White : Colors.Black;
            }

        var colorBar = plot.Add.ColorBar(heatmap);
        colorBar.Width = barWidth;
        colorBar.Axis.TickLabelStyle.FontSize = barTickSize;
        colorBar.Axis.MinorTickStyle.Length = 0;
        colorBar.Axis.TickGenerator = normalize
            ? new NumericManual([0, 0.2, 0.4, 0.6, 0.8, 1], ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"])
            : new NumericAutomatic { IntegerTicksOnly = true, TargetTickCount = 6 };

        // The layout, in pixels: a square grid of square cells, with room for the names, titles and colour bar.
        float tickLabels = 4 + 5; // tick mark, gap
        float left = 14 + axisTitleSize + 12 + longest + tickLabels + 4;
        float bottom = (rotate ? longest * 0.71f + labelSize * 0.6f : labelSize * 1.2f) + tickLabels + 16 + axisTitleSize + 14;
        float top = 56;
        float barGap = 24;
        float barLabels = new[] { normalize ? "0.0" : vmax.ToString("F0", CultureInfo.InvariantCulture), "0.0" }.Max(t => ChartFont.Measure(t, barTickSize).Width);
        float right = barGap + barWidth + 4 + 5 + barLabels + 16;
        // Rotated names of the first columns reach left of the grid: the margin holds them too.
        if (rotate) left = Math.Max(left, longest * 0.71f - cell / 2 + 12);
        FixSize(plot.Axes.Left, left);
        FixSize(plot.Axes.Bottom, bottom);
        FixSize(plot.Axes.Right, barGap);
        // A small grid still leaves room for the title (centred over the grid): equal margins on both sides.
        float widen = Math.Max(0, Math.Max(420, ChartFont.Measure(title, titleSize).Width + 40) - (left + gridSize + right)) / 2;
        plot.Layout.Fixed(new PixelPadding(left + widen, right + widen, bottom, top));
        int width = (int)Math.Ceiling(left + gridSize + right + 2 * widen), height = (int)Math.Ceiling(top + gridSize + bottom);

        ChartFont.Apply(plot);
        return plot.GetImageBytes(width, height, ImageFormat.Png);
    }

    /// <summary>matplotlib's "Blues" (its 5 anchors, linear in between): white for 0, dark blue for 1.</summary>
    static readonly IColormap Blues = new ScottPlot.Colormaps.CustomInterpolated(
        [Color.FromHex("#f7fbff"), Color.FromHex("#c6dbef"), Color.FromHex("#6baed6"), Color.FromHex("#2171b5"), Color.FromHex("#08306b")]);

    static bool IsDark(Color c) => 0.299 * c.Red + 0.587 * c.Green + 0.114 * c.Blue < 140;

    static void FixSize(IPanel panel, float size) => (panel.MinimumSize, panel.MaximumSize) = (size, size);

    /// <summary>The longest class name shown in full, in pixels at the label size; longer ones lose their middle.</summary>
    const float MaxLabelWidth = 220;

    /// <summary>
    /// Class names as axis labels: a name wider than <see cref="MaxLabelWidth"/> keeps its start and end around an
    /// ellipsis (names that share a long prefix or suffix stay apart). The full names are in report.json.
    /// </summary>
    internal static string[] ClassLabels(IReadOnlyList<string> names, float size)
        => [.. names.Select(n => Shorten(n.ReplaceLineEndings(" "), size))];

    static string Shorten(string name, float size)
    {
        if (ChartFont.Measure(name, size).Width <= MaxLabelWidth) return name;
        // Drop characters from the middle (a little more from the start's side) until it fits.
        for (int keep = name.Length - 1; keep > 2; keep--)
        {
            int tail = keep * 2 / 5, head = keep - tail;
            var shortened = name[..head].TrimEnd() + "…" + name[^tail..].TrimStart();
            if (ChartFont.Measure(shortened, size).Width <= MaxLabelWidth) return shortened;
        }
        return name[..1] + "…";
    }

    sealed record Series(string Name, double[] X, double?[] Y, Color Color);

    /// <summary>One line chart: x = epoch (integer ticks), y = value, legend below, kept epoch dashed and ringed, fine-tune shaded.</summary>
    static Plot CurvePanel(string title, string yTitle, double yCeiling, IReadOnlyList<Series> series, int? keptEpoch, int? fineTuneStart)
    {
        var plot = new Plot();
        plot.Title(title, 16);
        plot.XLabel("epoch", 14);
        plot.YLabel(yTitle, 14);
        plot.Axes.Bottom.TickLabelStyle.FontSize = 12;
        plot.Axes.Left.TickLabelStyle.FontSize = 12;
        plot.Axes.Bottom.TickGenerator = new NumericAutomatic { IntegerTicksOnly = true };
        plot.Axes.Bottom.MinorTickStyle.Length = 0; // no ticks between epochs
        plot.Axes.Left.TickGenerator = new EvenDecimals(new NumericAutomatic { TargetTickCount = 7 });

        var xs = series[0].X;
        var (xFirst, xLast) = xs.Length == 1 ? (xs[0] - 1, xs[0] + 1) : (xs.Min(), xs.Max());
        // Padding, so that the first and last points (and the kept-epoch marker) stand clear of the frame.
        double xPad = Math.Max(0.2, (xLast - xFirst) * 0.03), xMin = xFirst - xPad, xMax = xLast + xPad;
        var ys = series.SelectMany(s => s.Y).OfType<double>().Where(double.IsFinite).ToList();
        double yLow = ys.DefaultIfEmpty(0).Min(), yHigh = ys.DefaultIfEmpty(1).Max();
        if (yHigh - yLow < 1e-9) (yLow, yHigh) = (yLow - Math.Max(0.05, Math.Abs(yLow) * 0.1), yHigh + Math.Max(0.05, Math.Abs(yHigh) * 0.1));
        double yPad = (yHigh - yLow) * 0.06;
        // Loss and accuracy are never negative and accuracy never above 1: the padding stays within.
        double yMin = Math.Max(0, yLow - yPad), yMax = Math.Min(yCeiling, yHigh + yPad);
        if (yMax <= yMin) yMax = yMin + 1;

        foreach (var s in series)
        {
            // A run of epochs without a value (NaN, or no validation) leaves a gap in the line.
            bool named = false;
            foreach (var run in Runs(s))
            {
                var line = plot.Add.Scatter(run.Select(p => p.X).ToArray(), run.Select(p => p.Y).ToArray(), s.Color);
                line.LineWidth = 2.2f;
                line.MarkerSize = xs.Length > 60 ? 3 : 6;
                if (!named) line.LegendText = s.Name;
                named = true;
            }
        }

        if (keptEpoch is { } kept)
        {
            var marker = plot.Add.VerticalLine(kept, 1.5f, Marker, LinePattern.DenselyDashed);
            marker.LegendText = $"kept epoch ({kept})";
            // The kept epoch's value, ringed on each curve.
            var rings = series.Select(s => Array.IndexOf(s.X, (double)kept) is var i && i >= 0 && s.Y[i] is { } v && double.IsFinite(v) ? (X: s.X[i], Y: v) : ((double X, double Y)?)null)
                .OfType<(double X, double Y)>().ToArray();
            if (rings.Length > 0)
            {
                var ringed = plot.Add.Markers(rings.Select(r => r.X).ToArray(), rings.Select(r => r.Y).ToArray(), MarkerShape.OpenCircle, 15, Marker);
                ringed.MarkerLineWidth = 2;
            }
        }

        if (fineTuneStart is { } ft)
        {
            // Drawn first, behind the curves; listed last in the legend.
            var span = plot.Add.HorizontalSpan(ft - 0.5, xMax + 1, FineTune);
            span.LineWidth = 0;
            span.LegendText = "fine-tune";
            plot.MoveToBack(span);
            var items = plot.GetPlottables().SelectMany(p => p.LegendItems).Where(i => !string.IsNullOrEmpty(i.LabelText));
            plot.Legend.ManualItems.AddRange(items.OrderBy(i => i.Plottable == span));
            plot.Legend.DisplayPlottableLegendItems = false;
        }

        plot.Axes.SetLimits(xMin, xMax, yMin, yMax);
        // The legend under the plot, so it never hides a curve.
        var legend = plot.ShowLegend(Edge.Bottom);
        legend.Padding = new PixelPadding(0, 4);
        plot.Legend.FontSize = 13;
        plot.Legend.OutlineWidth = 0;
        plot.Legend.ShadowColor = Colors.Transparent;
        plot.Legend.TightHorizontalWrapping = true;
        ChartFont.Apply(plot);
        return plot;
    }

    /// <summary>Another generator's ticks, labelled with the same number of decimals ("1.0" beside "0.9", not "1").</summary>
    sealed class EvenDecimals(NumericAutomatic inner) : ITickGenerator
    {
        public Tick[] Ticks { get; private set; } = [];
        public int MaxTickCount { get => inner.MaxTickCount; set => inner.MaxTickCount = value; }

        public void Regenerate(CoordinateRange range, Edge edge, PixelLength size, Paint paint, LabelStyle labelStyle)
        {
            inner.Regenerate(range, edge, size, paint, labelStyle);
            var major = inner.Ticks.Where(t => t.IsMajor).ToArray();
            int decimals = major.Select(t => Decimals(t.Position)).DefaultIfEmpty(0).Max();
            Ticks = [.. inner.Ticks.Select(t => t.IsMajor ? Tick.Major(t.Position, (Math.Round(t.Position, decimals) + 0.0).ToString("F" + decimals, CultureInfo.InvariantCulture)) : t)];
        }

        static int Decimals(double value)
        {
            for (int d = 0; d < 6; d++)
                if (Math.Abs(Math.Round(value, d) - value) < 1e-9) return d;
            return 6;
        }
    }

    static IEnumerable<List<(double X, double Y)>> Runs(Series s)
    {
        var run = new List<(double X, double Y)>();
        for (int i = 0; i < s.X.Length; i++)
        {
            if (s.Y[i] is { } v && double.IsFinite(v)) { run.Add((s.X[i], v)); continue; }
            if (run.Count > 0) yield return run;
            run = [];
        }
        if (run.Count > 0) yield return run;
    }
}
