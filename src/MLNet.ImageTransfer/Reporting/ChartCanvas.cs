using SkiaSharp;

namespace MLNet.ImageTransfer.Reporting;

/// <summary>
/// A white SkiaSharp canvas with text in the embedded DejaVu Sans (servers and CI images often have no fonts, and
/// SkiaSharp's default typeface then draws nothing), encoded as PNG. SkiaSharp directly, the same major version as
/// ML.NET's ImageAnalytics (2.x and 3.x cannot share a process).
/// </summary>
internal sealed class ChartCanvas : IDisposable
{
    const string FontResource = "MLNet.ImageTransfer.Reporting.DejaVuSans.ttf";
    static readonly Lazy<SKTypeface> EmbeddedTypeface = new(LoadFont);

    readonly SKBitmap bitmap;

    public ChartCanvas(int width, int height)
    {
        bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Premul));
        Canvas = new SKCanvas(bitmap);
        Canvas.Clear(SKColors.White);
    }

    public SKCanvas Canvas { get; }
    public int Width => bitmap.Width;
    public int Height => bitmap.Height;

    /// <summary>The embedded font (loaded once per process).</summary>
    public static SKTypeface Typeface => EmbeddedTypeface.Value;

    /// <summary>
    /// The embedded font at <paramref name="size"/> pixels, antialiased; <paramref name="bold"/> is synthetic (emboldened
    /// outlines). Linear metrics: advances are not rounded to whole pixels by hinting, so text measures (and the charts
    /// lay out) as they did with SkiaSharp 2's SKPaint text.
    /// </summary>
    public static SKFont Font(float size, bool bold = false) => new(Typeface, size) { Edging = SKFontEdging.Antialias, LinearMetrics = true, Embolden = bold };

    /// <summary>The advance width of <paramref name="text"/> in the embedded font at <paramref name="size"/> pixels.</summary>
    public static float MeasureText(string text, float size)
    {
        using var font = Font(size);
        return font.MeasureText(text);
    }

    /// <summary>Draws text whose vertical middle is at <paramref name="y"/>, optionally rotated (degrees, clockwise) about (x, y).</summary>
    public void Text(string text, float x, float y, float size, SKTextAlign align = SKTextAlign.Left, SKColor? color = null, float rotation = 0, bool bold = false)
    {
        using var font = Font(size, bold);
        using var paint = new SKPaint { Color = color ?? SKColors.Black, IsAntialias = true };
        Canvas.Save();
        Canvas.Translate(x, y);
        if (rotation != 0) Canvas.RotateDegrees(rotation);
        Canvas.DrawText(text, 0, size * 0.36f, align, font, paint);
        Canvas.Restore();
    }

    public void Line(float x0, float y0, float x1, float y1, SKColor color, float width = 1, float[]? dash = null)
    {
        using var paint = new SKPaint { Color = color, StrokeWidth = width, IsAntialias = true, Style = SKPaintStyle.Stroke };
        if (dash is not null) paint.PathEffect = SKPathEffect.CreateDash(dash, 0);
        Canvas.DrawLine(x0, y0, x1, y1, paint);
    }

    public void Fill(SKRect rect, SKColor color)
    {
        using var paint = new SKPaint { Color = color, Style = SKPaintStyle.Fill };
        Canvas.DrawRect(rect, paint);
    }

    public void Stroke(SKRect rect, SKColor color, float width = 1)
    {
        using var paint = new SKPaint { Color = color, StrokeWidth = width, Style = SKPaintStyle.Stroke, IsAntialias = true };
        Canvas.DrawRect(rect, paint);
    }

    public byte[] EncodePng()
    {
        Canvas.Flush();
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    public void Dispose()
    {
        Canvas.Dispose();
        bitmap.Dispose();
    }

    static SKTypeface LoadFont()
    {
        using var resource = typeof(ChartCanvas).Assembly.GetManifestResourceStream(FontResource)
            ?? throw new InvalidOperationException($"The chart font resource '{FontResource}' is missing from {typeof(ChartCanvas).Assembly.GetName().Name}.");
        var copy = new MemoryStream();
        resource.CopyTo(copy);
        copy.Position = 0;
        // The typeface owns the stream from here on (SkiaSharp reads glyphs from it lazily).
        return SKTypeface.FromStream(copy) ?? throw new InvalidOperationException("The embedded chart font could not be read.");
    }
}

/// <summary>Axis ranges and ticks at 1, 2 or 5 × 10^k, so that tick labels are round numbers.</summary>
internal static class NiceScale
{
    /// <summary>A range covering [<paramref name="low"/>, <paramref name="high"/>] with about <paramref name="ticks"/> intervals of a round step.</summary>
    public static (double Min, double Max, double Step) Range(double low, double high, int ticks = 5, double minStep = 0)
    {
        if (!double.IsFinite(low) || !double.IsFinite(high)) (low, high) = (0, 1);
        if (high <= low)
        {
            var pad = low == 0 ? 1 : Math.Abs(low) * 0.1;
            (low, high) = (low - pad, high + pad);
        }
        var step = Math.Max(Step((high - low) / ticks), minStep);
        return (Math.Floor(low / step + 1e-9) * step, Math.Ceiling(high / step - 1e-9) * step, step);
    }

    /// <summary>The multiples of <paramref name="step"/> within [min, max].</summary>
    public static IEnumerable<double> Ticks(double min, double max, double step)
    {
        for (var k = Math.Ceiling(min / step - 1e-9); k * step <= max + step * 1e-9; k++)
            yield return Math.Round(k * step, 12) + 0.0; // + 0.0 turns −0 into 0, so no "-0" label
    }

    /// <summary>Enough decimals to tell ticks <paramref name="step"/> apart.</summary>
    public static string Format(double value, double step)
        => value.ToString("F" + Math.Clamp(-(int)Math.Floor(Math.Log10(step) + 1e-9), 0, 6), System.Globalization.CultureInfo.InvariantCulture);

    static double Step(double raw)
    {
        var magnitude = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        var f = raw / magnitude;
        return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * magnitude;
    }
}
