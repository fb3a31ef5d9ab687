using ScottPlot;
using SkiaSharp;

namespace MLNet.ImageTransfer.Reporting;

/// <summary>
/// The embedded DejaVu Sans as a ScottPlot font. Servers and CI images often have no fonts installed, and the Skia
/// native library used here (no fontconfig) finds only what lies under /usr/share/fonts: ScottPlot's default font is
/// then an empty typeface that draws nothing. The charts therefore name this font for every piece of text, and a
/// font resolver registered with ScottPlot answers that name from the library's own resource — no system font is
/// looked up for it.
/// </summary>
internal static class ChartFont
{
    /// <summary>
    /// The name the charts ask ScottPlot for: not the family name, so that an installed "DejaVu Sans" never stands in,
    /// and so that resolving it leaves every other name (an application's own plots) to ScottPlot's resolvers.
    /// </summary>
    public const string Name = "MLNet.ImageTransfer DejaVu Sans";

    const string FontResource = "MLNet.ImageTransfer.Reporting.DejaVuSans.ttf";
    static readonly Lazy<SKData> FontData = new(LoadFont);
    static readonly Lock Gate = new();
    static bool registered;

    /// <summary>Adds the resolver for <see cref="Name"/> to ScottPlot's list (once per process), ahead of the system one.</summary>
    public static void Register()
    {
        lock (Gate)
        {
            if (registered) return;
            Fonts.FontResolvers.Insert(0, new EmbeddedFontResolver());
            registered = true;
        }
    }

    /// <summary>A new typeface of the embedded font (the font's bytes are read once per process).</summary>
    public static SKTypeface CreateTypeface()
        => SKTypeface.FromData(FontData.Value) ?? throw new InvalidOperationException("The embedded chart font could not be read.");

    /// <summary>
    /// Sets the embedded font on every text element of <paramref name="plot"/>: title, axis labels and tick labels
    /// (colour bars' included), legend, and plottables that carry text. Call it once the plot is complete.
    /// </summary>
    public static void Apply(Plot plot)
    {
        Register();
        Use(plot.Axes.Title.Label);
        foreach (var axis in plot.Axes.GetAxes())
        {
            Use(axis.Label);
            Use(axis.TickLabelStyle);
        }
        foreach (var panel in plot.Axes.GetPanels())
            if (panel is ScottPlot.Panels.ColorBar colorBar)
            {
                Use(colorBar.Axis.Label);
                Use(colorBar.Axis.TickLabelStyle);
            }
        plot.Legend.FontName = Name;
        foreach (var text in plot.GetPlottables().OfType<LabelStyleProperties>()) Use(text.LabelStyle);
    }

    /// <summary>The label's size in pixels in the embedded font (what ScottPlot measures when it lays the plot out).</summary>
    public static PixelSize Measure(string text, float size)
    {
        Register();
        using var paint = Paint.NewDisposablePaint();
        var label = new LabelStyle { FontSize = size };
        Use(label);
        return label.Measure(text, paint).Size;
    }

    /// <summary>
    /// Draws <paramref name="label"/> (in the embedded font) on a canvas outside any plot, with
    /// <paramref name="anchor"/> at the point its <see cref="LabelStyle.Alignment"/> names.
    /// </summary>
    public static void Render(LabelStyle label, SKCanvas canvas, Pixel anchor)
    {
        Register();
        Use(label);
        using var paint = Paint.NewDisposablePaint();
        label.Render(canvas, anchor, paint);
    }

    static void Use(LabelStyle label)
    {
        label.FontName = Name;
        // A typeface set here would win over the name (ScottPlot copies Fonts.DefaultFontStyle into new labels).
        label.Font = null;
    }

    sealed class EmbeddedFontResolver : IFontResolver
    {
        // DejaVuSans.ttf is the regular face only: bold or italic requests get it too, rather than another font.
        public SKTypeface? CreateTypeface(string fontName, FontWeight weight, FontSlant slant, FontSpacing spacing)
            => fontName == Name ? ChartFont.CreateTypeface() : null;

        public SKTypeface? CreateTypeface(string fontName, bool bold, bool italic)
            => fontName == Name ? ChartFont.CreateTypeface() : null;
    }

    static SKData LoadFont()
    {
        using var resource = typeof(ChartFont).Assembly.GetManifestResourceStream(FontResource)
            ?? throw new InvalidOperationException($"The chart font resource '{FontResource}' is missing from {typeof(ChartFont).Assembly.GetName().Name}.");
        // Skia reads glyphs from the data lazily: it lives as long as the process.
        return SKData.Create(resource) ?? throw new InvalidOperationException("The embedded chart font could not be read.");
    }
}
