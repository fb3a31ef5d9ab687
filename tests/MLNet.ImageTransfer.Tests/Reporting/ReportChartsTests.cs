using MLNet.ImageTransfer.Reporting;
using ScottPlot;
using SkiaSharp;

namespace MLNet.ImageTransfer.Tests.Reporting;

/// <summary>
/// The charts decode as PNGs of the promised size and their text is really drawn: with no usable font SkiaSharp
/// draws nothing, so regions that hold only text (title, legend, class names) must contain dark pixels.
/// </summary>
public class ReportChartsTests
{
    static readonly byte[] PngSignature = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    internal static SKBitmap Decode(byte[] png)
    {
        Assert.Equal(PngSignature, png.Take(8));
        return SKBitmap.Decode(png) ?? throw new Xunit.Sdk.XunitException("Not a decodable PNG.");
    }

    /// <summary>Pixels darker than mid-grey in a rectangle (text is black on white).</summary>
    internal static int DarkPixels(SKBitmap bitmap, SKRectI region) => Count(bitmap, region, IsDark);

    /// <summary>Columns of the rectangle with at least one dark pixel.</summary>
    internal static int DarkColumns(SKBitmap bitmap, SKRectI region) => InkColumns(bitmap, region).Count;

    /// <summary>From the first to the last column with a dark pixel: how wide the text in the rectangle is.</summary>
    internal static int InkWidth(SKBitmap bitmap, SKRectI region) => InkColumns(bitmap, region) is { Count: > 0 } c ? c[^1] - c[0] + 1 : 0;

    static List<int> InkColumns(SKBitmap bitmap, SKRectI region)
        => [.. Enumerable.Range(region.Left, region.Width).Where(x => Enumerable.Range(region.Top, region.Height).Any(y => IsDark(bitmap.GetPixel(x, y))))];

    static bool IsDark(SKColor c) => c.Red + c.Green + c.Blue < 3 * 110;

    static int Count(SKBitmap bitmap, SKRectI region, Func<SKColor, bool> predicate)
    {
        int n = 0;
        for (int y = region.Top; y < region.Bottom; y++)
            for (int x = region.Left; x < region.Right; x++)
                if (predicate(bitmap.GetPixel(x, y))) n++;
        return n;
    }

    [Fact]
    public void The_embedded_font_is_what_ScottPlot_resolves_for_the_chart_font_name()
    {
        ChartFont.Register();
        ChartFont.Register(); // once per process, however often called
        Assert.Single(Fonts.FontResolvers, r => r.CreateTypeface(ChartFont.Name, bold: false, italic: false) is not null);
        var typeface = Fonts.GetTypeface(ChartFont.Name, bold: false, italic: false);
        Assert.Equal("DejaVu Sans", typeface.FamilyName);
        // Every character the charts print has a glyph (no .notdef boxes): digits, ×, →, the ellipsis of shortened names.
        Assert.True(typeface.ContainsGlyphs("Training history: 0123456789, kept epoch (val_loss val_accuracy) × → … é"));
        // Other names are left to ScottPlot's other resolvers.
        Assert.All(Fonts.FontResolvers.Take(1), r => Assert.Null(r.CreateTypeface("Some Other Font", false, false)));
        // Text is measured in it: "epoch 12" at 16 px is as wide as Skia says for DejaVu Sans.
        using var font = new SKFont(typeface, 16);
        Assert.InRange(ChartFont.Measure("epoch 12", 16).Width, font.MeasureText("epoch 12") - 0.5, font.MeasureText("epoch 12") + 0.5);
    }

    [Fact]
    public void Training_curves_are_a_png_of_the_requested_size_with_title_legend_and_both_curves()
    {
        var history = ReportFilesTests.SampleHistory();
        var png = ReportCharts.TrainingCurves(history, 1000, 420);
        File.WriteAllBytes(Path.Combine(TestData.NewTempDir("curves"), "curves.png"), png); // to look at when this fails
        using var bitmap = Decode(png);
        Assert.Equal(1000, bitmap.Width);
        Assert.Equal(420, bitmap.Height);
        using (var standard = Decode(ReportCharts.TrainingCurves(history))) Assert.Equal((1200, 500), (standard.Width, standard.Height));

        // The title, centred at the top: as wide as its text in the embedded font (glyphs, not empty boxes or nothing).
        const string title = "Training history: 4 epochs, kept epoch 2 (val_loss 0.5000, val_accuracy 0.8125)";
        float titleWidth = ChartFont.Measure(title, 17).Width;
        Assert.InRange(InkWidth(bitmap, new SKRectI(0, 0, 1000, 34)), titleWidth * 0.85, titleWidth + 2);
        Assert.True(DarkColumns(bitmap, new SKRectI(0, 0, 1000, 34)) > titleWidth * 0.6, "the title has gaps where letters should be");
        Assert.Equal(0, DarkColumns(bitmap, new SKRectI(0, 0, (int)(500 - titleWidth / 2) - 3, 34)));

        // The legends along the bottom: text in both halves.
        Assert.True(DarkPixels(bitmap, new SKRectI(0, 385, 500, 420)) > 100, "the loss legend is missing");
        Assert.True(DarkPixels(bitmap, new SKRectI(500, 385, 1000, 420)) > 100, "the accuracy legend is missing");

        foreach (var panel in new[] { new SKRectI(60, 60, 490, 330), new SKRectI(560, 60, 990, 330) })
        {
            // Train (blue) and validation (orange) curves.
            Assert.True(Count(bitmap, panel, c => c.Blue > 150 && c.Red < 60) > 100, "a train curve is missing");
            Assert.True(Count(bitmap, panel, c => c.Red > 230 && c.Blue < 40) > 100, "a validation curve is missing");
            // The fine-tune epochs (3 and 4) shaded grey, the frozen ones not.
            // (The shade is a lighter grey than the grid lines.)
            var shaded = (SKColor c) => c.Red is > 235 and < 245 && c.Red == c.Green && c.Green == c.Blue;
            Assert.True(Count(bitmap, new SKRectI(panel.Right - 40, panel.Top, panel.Right - 10, panel.Bottom), shaded) > 1000, "the fine-tune phase is not shaded");
            Assert.True(Count(bitmap, new SKRectI(panel.Left + 10, panel.Top, panel.Left + 40, panel.Bottom), shaded) < 50, "the frozen phase is shaded");
        }
    }

    [Fact]
    public void The_kept_epoch_is_a_dashed_vertical_line_between_the_curves_points()
    {
        using var bitmap = Decode(ReportCharts.TrainingCurves(ReportFilesTests.SampleHistory(), 1000, 420));
        // A column of dark grey dashes inside each panel's plot area: the kept epoch (2 of 1..4) lies left of the middle.
        foreach (var (left, right) in new[] { (60, 490), (560, 990) })
        {
            var columns = Enumerable.Range(left, right - left)
                .Select(x => (X: x, Dark: Count(bitmap, new SKRectI(x, 80, x + 1, 320), c => c.Red is > 40 and < 110 && c.Red == c.Blue)))
                .Where(c => c.Dark > 60).ToList();
            Assert.NotEmpty(columns);
            Assert.InRange(columns.Average(c => c.X), left + (right - left) * 0.2, left + (right - left) * 0.5);
        }
    }

    [Fact]
    public void Confusion_heatmap_shows_class_names_values_and_a_colour_scale()
    {
        string[] names = ["cat", "dog", "horse"];
        long[][] counts = [[8, 1, 1], [0, 9, 1], [2, 0, 8]];
        foreach (var normalize in new[] { false, true })
        {
            using var bitmap = Decode(ReportCharts.ConfusionMatrix(names, counts, normalize));
            Assert.InRange(bitmap.Width, 300, 1200);
            Assert.InRange(bitmap.Height, 300, 1200);
            // The grid: its top-left cell (8 of 10, or 0.80) dark blue, the one right of it (1, 0.10) pale.
            var grid = GridBounds(bitmap);
            Assert.InRange(grid.Width - grid.Height, -2, 2);
            float cell = grid.Width / 3f;
            Assert.True(bitmap.GetPixel((int)(grid.Left + 4), (int)(grid.Top + 4)) is { Blue: > 80, Red: < 80 }, "the first cell should be dark");
            Assert.True(bitmap.GetPixel((int)(grid.Left + cell + 4), (int)(grid.Top + 4)) is { Red: > 200 }, "a small cell should be pale");
            // Each cell's value printed in its middle: light on the dark diagonal, dark elsewhere.
            Assert.True(Count(bitmap, CellMiddle(grid, cell, 0, 0), c => c.Red > 150) > 10, "the diagonal value is missing");
            Assert.True(DarkPixels(bitmap, CellMiddle(grid, cell, 0, 1)) > 10, "an off-diagonal value is missing");
            // Class names left of each row, as wide as the embedded font makes them, and under each column.
            for (int i = 0; i < 3; i++)
            {
                var rowName = new SKRectI(grid.Left - 60, (int)(grid.Top + i * cell + cell / 3), grid.Left - 6, (int)(grid.Top + (i + 1) * cell - cell / 3));
                Assert.InRange(InkWidth(bitmap, rowName), ChartFont.Measure(names[i], 14).Width * 0.6, ChartFont.Measure(names[i], 14).Width + 2);
                var columnName = new SKRectI((int)(grid.Left + i * cell), grid.Bottom + 6, (int)(grid.Left + (i + 1) * cell), grid.Bottom + 30);
                Assert.True(DarkPixels(bitmap, columnName) > 20, $"the name under column {i} is missing");
            }
            // The axis titles: "predicted class" under the names, "true class" left of them.
            Assert.True(DarkPixels(bitmap, new SKRectI(grid.Left, grid.Bottom + 34, grid.Right, bitmap.Height)) > 50, "the x axis title is missing");
            Assert.True(DarkPixels(bitmap, new SKRectI(0, grid.Top, grid.Left - 60, grid.Bottom)) > 50, "the y axis title is missing");

            // The colour bar at the right: dark blue at its top, near white at its bottom, tick labels beside it.
            var bar = Enumerable.Range(grid.Right + 4, bitmap.Width - grid.Right - 4).Where(x => bitmap.GetPixel(x, grid.Top + 3) is var c && c.Blue - c.Red > 80).ToList();
            Assert.NotEmpty(bar);
            Assert.True(bitmap.GetPixel(bar[bar.Count / 2], grid.Bottom - 3).Red > 230, "the colour scale should fade to white at 0");
            Assert.True(DarkPixels(bitmap, new SKRectI(bar.Max() + 4, grid.Top - 8, bitmap.Width, grid.Bottom + 8)) > 40, "colour bar ticks are missing");
        }
    }

    [Fact]
    public void Long_class_names_make_the_heatmap_wider_and_taller_and_very_long_ones_are_shortened()
    {
        long[][] counts = Enumerable.Range(0, 8).Select(i => Enumerable.Range(0, 8).Select(j => (long)(i == j ? 20 : (i + j) % 3)).ToArray()).ToArray();
        var shortNames = Enumerable.Range(0, 8).Select(i => $"c{i}").ToArray();
        var longNames = Enumerable.Range(0, 8).Select(i => $"a rather long class name {i}").ToArray();
        var veryLongNames = Enumerable.Range(0, 8).Select(i => $"a class name far longer than any axis should have to hold, number {i}").ToArray();
        using var small = Decode(ReportCharts.ConfusionMatrix(shortNames, counts, normalize: false));
        var largePng = ReportCharts.ConfusionMatrix(longNames, counts, normalize: false);
        File.WriteAllBytes(Path.Combine(TestData.NewTempDir("heatmap"), "long-names.png"), largePng); // to look at when this fails
        using var large = Decode(largePng);
        Assert.True(large.Width > small.Width + 100);
        Assert.True(large.Height > small.Height + 100, "rotated column names need room below the grid");
        // Names beyond the label width are shortened, so the picture stops growing with them.
        using var veryLong = Decode(ReportCharts.ConfusionMatrix(veryLongNames, counts, normalize: false));
        Assert.InRange(veryLong.Width, large.Width, large.Width + 100);
        Assert.InRange(veryLong.Height, large.Height, large.Height + 100);
    }

    [Fact]
    public void A_small_heatmap_is_wide_enough_for_its_whole_title()
    {
        foreach (var normalize in new[] { false, true })
        {
            using var bitmap = Decode(ReportCharts.ConfusionMatrix(["only"], [[5]], normalize));
            var title = normalize ? "Confusion matrix (each row normalised by its true class)" : "Confusion matrix (counts, 5 images)";
            var band = new SKRectI(0, 0, bitmap.Width, 40);
            Assert.InRange(InkWidth(bitmap, band), ChartFont.Measure(title, 17).Width * 0.85, ChartFont.Measure(title, 17).Width + 2);
            Assert.Equal(0, DarkPixels(bitmap, new SKRectI(0, 0, 10, 40)) + DarkPixels(bitmap, new SKRectI(bitmap.Width - 10, 0, bitmap.Width, 40)));
        }
    }

    [Fact]
    public void Shortened_class_names_keep_their_start_and_end_and_stay_apart()
    {
        string[] names = ["cat", "great white shark, white shark, man-eater, Carcharodon carcharias",
            "a class name far longer than any axis should have to hold, number 1", "a class name far longer than any axis should have to hold, number 2"];
        var labels = ReportCharts.ClassLabels(names, 14);
        Assert.Equal("cat", labels[0]);
        Assert.All(labels, l => Assert.True(ChartFont.Measure(l, 14).Width <= 220, $"'{l}' is wider than a label may be"));
        Assert.StartsWith("great white shark", labels[1]);
        Assert.EndsWith("carcharias", labels[1]);
        Assert.Contains("…", labels[1]);
        Assert.NotEqual(labels[2], labels[3]);
        Assert.EndsWith("number 1", labels[2]);
    }

    [Fact]
    public void Thirty_classes_render_every_name_and_value()
    {
        var names = Enumerable.Range(0, 30).Select(i => $"class {i}").ToArray();
        long[][] counts = Enumerable.Range(0, 30).Select(i => Enumerable.Range(0, 30).Select(j => (long)(i == j ? 300 : (i * j) % 5)).ToArray()).ToArray();
        using var bitmap = Decode(ReportCharts.ConfusionMatrix(names, counts, normalize: true));
        var grid = GridBounds(bitmap);
        float cell = grid.Width / 30f;
        Assert.InRange(cell, 25.5, 26.5); // the smallest cell, where the values still fit
        for (int i = 0; i < 30; i++)
        {
            var rowName = new SKRectI(0, (int)(grid.Top + i * cell + 4), grid.Left - 6, (int)(grid.Top + (i + 1) * cell - 4));
            Assert.True(DarkPixels(bitmap, rowName) > 20, $"row name {i} is missing");
            Assert.True(Count(bitmap, CellMiddle(grid, cell, i, i), c => c.Red > 150) > 10, $"diagonal value {i} is missing");
        }
        // The rotated column names: each ends just under its column.
        for (int j = 0; j < 30; j++)
            Assert.True(DarkPixels(bitmap, new SKRectI((int)(grid.Left + j * cell), grid.Bottom + 6, (int)(grid.Left + (j + 1) * cell), grid.Bottom + 16)) > 10, $"column name {j} is missing");
    }

    /// <summary>The heatmap's grid: the bounding box of the cells' blue (bluer than red by a margin) near the picture's middle row.</summary>
    static SKRectI GridBounds(SKBitmap bitmap)
    {
        static bool Cell(SKColor c) => c.Blue - c.Red > 6 && c.Blue > 200 || c.Blue - c.Red > 40;
        // The first row of cells is never pale throughout (its diagonal cell is the row's largest): scan along the
        // picture's vertical middle for the grid's horizontal extent, then down its first column.
        int midY = bitmap.Height / 2;
        var xs = Enumerable.Range(0, bitmap.Width).Where(x => Cell(bitmap.GetPixel(x, midY))).ToList();
        // The colour bar is separate, right of a white gap: the grid is the first contiguous run.
        int left = xs[0], right = left;
        foreach (var x in xs.Skip(1)) { if (x > right + 10) break; right = x; } // (printed values interrupt the blue briefly)
        int colX = left + 3;
        var ys = Enumerable.Range(0, bitmap.Height).Where(y => Cell(bitmap.GetPixel(colX, y))).ToList();
        return new SKRectI(left, ys.First(), right + 1, ys.Last() + 1);
    }

    static SKRectI CellMiddle(SKRectI grid, float cell, int row, int column)
        => new((int)(grid.Left + (column + 0.25f) * cell), (int)(grid.Top + (row + 0.3f) * cell), (int)(grid.Left + (column + 0.75f) * cell), (int)(grid.Top + (row + 0.7f) * cell));
}
