using MLNet.ImageTransfer.Reporting;
using SkiaSharp;

namespace MLNet.ImageTransfer.Tests.Reporting;

/// <summary>
/// The charts decode as PNGs of the promised size and their text is really drawn: with no usable font SkiaSharp
/// draws nothing, so regions that hold only text (title, legend, class names) must contain dark pixels.
/// </summary>
public class ReportChartsTests
{
    static readonly byte[] PngSignature = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    static SKBitmap Decode(byte[] png)
    {
        Assert.Equal(PngSignature, png.Take(8));
        return SKBitmap.Decode(png) ?? throw new Xunit.Sdk.XunitException("Not a decodable PNG.");
    }

    /// <summary>Pixels darker than mid-grey in a rectangle (text is black on white).</summary>
    static int DarkPixels(SKBitmap bitmap, SKRectI region) => Count(bitmap, region, c => c.Red + c.Green + c.Blue < 3 * 110);

    static int Count(SKBitmap bitmap, SKRectI region, Func<SKColor, bool> predicate)
    {
        int n = 0;
        for (int y = region.Top; y < region.Bottom; y++)
            for (int x = region.Left; x < region.Right; x++)
                if (predicate(bitmap.GetPixel(x, y))) n++;
        return n;
    }

    [Fact]
    public void The_embedded_font_draws_text()
    {
        using var canvas = new ChartCanvas(200, 40);
        using (var blank = SKBitmap.Decode(canvas.EncodePng())) Assert.Equal(0, DarkPixels(blank, new SKRectI(0, 0, 200, 40)));
        canvas.Text("epoch 12", 10, 20, 16);
        using var bitmap = Decode(canvas.EncodePng());
        Assert.Equal("DejaVu Sans", ChartCanvas.Typeface.FamilyName);
        Assert.InRange(DarkPixels(bitmap, new SKRectI(0, 0, 200, 40)), 60, 2000);
        // Left-aligned at x = 10: nothing left of it, and the text ends where the font's metrics say.
        Assert.Equal(0, DarkPixels(bitmap, new SKRectI(0, 0, 9, 40)));
        int end = (int)Math.Ceiling(10 + ChartCanvas.MeasureText("epoch 12", 16));
        Assert.Equal(0, DarkPixels(bitmap, new SKRectI(end + 2, 0, 200, 40)));
    }

    [Fact]
    public void Training_curves_are_a_png_of_the_requested_size_with_title_and_legend_text()
    {
        var png = ReportCharts.TrainingCurves(ReportFilesTests.SampleHistory(), 1000, 420);
        File.WriteAllBytes(Path.Combine(TestData.NewTempDir("curves"), "curves.png"), png); // to look at when this fails
        using var bitmap = Decode(png);
        Assert.Equal(1000, bitmap.Width);
        Assert.Equal(420, bitmap.Height);
        Assert.True(DarkPixels(bitmap, new SKRectI(250, 0, 750, 34)) > 200, "the title is missing");
        Assert.True(DarkPixels(bitmap, new SKRectI(0, 382, 1000, 404)) > 100, "the legends are missing");
        // Both panels have their train (blue) and validation (orange) curves.
        foreach (var panel in new[] { new SKRectI(60, 60, 490, 330), new SKRectI(560, 60, 990, 330) })
        {
            Assert.True(Count(bitmap, panel, c => c.Blue > 150 && c.Red < 60) > 100, "a train curve is missing");
            Assert.True(Count(bitmap, panel, c => c.Red > 230 && c.Blue < 40) > 100, "a validation curve is missing");
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
            // Class names left of the grid: the strip of the first cell row, left of x = 90.
            Assert.True(DarkPixels(bitmap, new SKRectI(30, 60, 100, 200)) > 50, "row class names are missing");
            // The colour bar at the right: dark blue at its top, near white at its bottom, tick labels beside it.
            var right = Enumerable.Range(bitmap.Width - 110, 110);
            var bar = right.Where(x => bitmap.GetPixel(x, 62) is var c && c.Blue - c.Red > 80).ToList();
            Assert.NotEmpty(bar);
            var barBottom = Enumerable.Range(0, bitmap.Height).Last(y => bitmap.GetPixel(bar[bar.Count / 2], y) is var c && c.Blue - c.Red > 2);
            // (A few pixels above the frame's antialiased edge.)
            Assert.True(bitmap.GetPixel(bar[bar.Count / 2], barBottom - 4).Red > 230, "the colour scale should fade to white at 0");
            Assert.True(DarkPixels(bitmap, new SKRectI(bar.Max() + 4, 40, bitmap.Width, bitmap.Height - 40)) > 40, "colour bar ticks are missing");
        }
    }

    [Fact]
    public void Long_class_names_make_the_heatmap_wider_and_taller_not_overlapping()
    {
        long[][] counts = Enumerable.Range(0, 8).Select(i => Enumerable.Range(0, 8).Select(j => (long)(i == j ? 20 : (i + j) % 3)).ToArray()).ToArray();
        var shortNames = Enumerable.Range(0, 8).Select(i => $"c{i}").ToArray();
        var longNames = Enumerable.Range(0, 8).Select(i => $"a rather long class name {i}").ToArray();
        using var small = Decode(ReportCharts.ConfusionMatrix(shortNames, counts, normalize: false));
        var largePng = ReportCharts.ConfusionMatrix(longNames, counts, normalize: false);
        File.WriteAllBytes(Path.Combine(TestData.NewTempDir("heatmap"), "long-names.png"), largePng); // to look at when this fails
        using var large = Decode(largePng);
        Assert.True(large.Width > small.Width + 100);
        Assert.True(large.Height > small.Height + 100, "rotated column names need room below the grid");
    }

    [Fact]
    public void Nice_scale_gives_round_ticks_covering_the_data()
    {
        var (min, max, step) = NiceScale.Range(0.437, 2.51);
        Assert.Equal((0.0, 3.0, 0.5), (min, max, step));
        Assert.Equal([0, 0.5, 1, 1.5, 2, 2.5, 3], NiceScale.Ticks(min, max, step));
        Assert.Equal("0.5", NiceScale.Format(0.5, step));
        Assert.Equal(5, NiceScale.Range(1, 20, ticks: 8, minStep: 1).Step);
        Assert.Equal(1, NiceScale.Range(1, 3, ticks: 8, minStep: 1).Step);
        // No "-0" tick label.
        Assert.Equal("0.0", NiceScale.Format(NiceScale.Ticks(-0.0, 1, 0.2).First(), 0.2));
    }
}
