using MLNet.ImageTransfer.Reporting;
using MLNet.ImageTransfer.Tests.Persistence;
using ScottPlot;
using SkiaSharp;

namespace MLNet.ImageTransfer.Tests.Reporting;

/// <summary>
/// The charts where no font is installed, as on a bare server or container image. Skia's Linux native library without
/// fontconfig finds fonts only under /usr/share/fonts; a child process of this assembly runs in its own user and mount
/// namespaces (unshare, no privileges needed) with an empty file system mounted over the font folders, and renders
/// there. It must draw the same pixels as this process, text included.
/// </summary>
public class ChartsWithoutSystemFontsTests
{
    internal const string ChildMode = "charts-without-system-fonts";

    /// <summary>Hides the font folders, then runs the rest of the command line.</summary>
    static readonly string[] WithoutFonts =
    [
        "unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
        """for d in /usr/share/fonts /usr/local/share/fonts; do if [ -d "$d" ]; then mount -t tmpfs none "$d" || exit 97; fi; done; exec "$@" """,
        "sh",
    ];

    static readonly string[] Names = ["cat", "dog", "horse"];
    static readonly long[][] Counts = [[8, 1, 1], [0, 9, 1], [2, 0, 8]];

    [Fact]
    public void Charts_draw_their_text_in_the_embedded_font_where_no_system_font_exists()
    {
        if (!OperatingSystem.IsLinux()) return; // elsewhere Skia asks the system's font service: no folder to hide
        var probe = ChildProcess.Run(WithoutFonts[0], [.. WithoutFonts.Skip(1), "true"], TimeSpan.FromSeconds(30));
        Assert.True(probe.ExitCode == 0, $"cannot hide the system fonts here (unshare exited with {probe.ExitCode}): {probe.StdErr}");

        var dir = TestData.NewTempDir("no-fonts");
        var (code, output) = FreshProcess.RunThrough(WithoutFonts, ChildMode, dir);
        Assert.True(code == 0, $"the child exited with {code}: {output}");

        // The child saw no font at all...
        Assert.Equal("", File.ReadAllText(Path.Combine(dir, "families.txt")));
        // ...so ScottPlot's default font drew nothing there: no title above the frame (what the charts would be without theirs).
        using (var control = ReportChartsTests.Decode(File.ReadAllBytes(Path.Combine(dir, "control.png"))))
            Assert.Equal(0, ReportChartsTests.DarkPixels(control, new SKRectI(0, 0, control.Width, 20)));
        // The charts have their title text...
        var curves = File.ReadAllBytes(Path.Combine(dir, "curves.png"));
        using (var bitmap = ReportChartsTests.Decode(curves))
            Assert.True(ReportChartsTests.DarkColumns(bitmap, new SKRectI(0, 0, bitmap.Width, 34)) > 300, "the curves' title is missing");
        // ...and are the very pixels drawn here, where system fonts may exist: no system font was used for them.
        Assert.Equal(ReportCharts.TrainingCurves(ReportFilesTests.SampleHistory(), 1000, 420), curves);
        Assert.Equal(ReportCharts.ConfusionMatrix(Names, Counts, normalize: true), File.ReadAllBytes(Path.Combine(dir, "confusion.png")));
    }

    internal static int RunChild(string[] args)
    {
        var dir = args[0];
        File.WriteAllText(Path.Combine(dir, "families.txt"), string.Join("\n", SKFontManager.Default.FontFamilies));
        var control = new Plot();
        control.Title("epoch 12 accuracy");
        File.WriteAllBytes(Path.Combine(dir, "control.png"), control.GetImageBytes(400, 200, ImageFormat.Png));
        File.WriteAllBytes(Path.Combine(dir, "curves.png"), ReportCharts.TrainingCurves(ReportFilesTests.SampleHistory(), 1000, 420));
        File.WriteAllBytes(Path.Combine(dir, "confusion.png"), ReportCharts.ConfusionMatrix(Names, Counts, normalize: true));
        return 0;
    }
}
