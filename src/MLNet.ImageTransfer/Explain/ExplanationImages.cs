using SkiaSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Explain;

/// <summary>Renders explanations as PNG files: Grad-CAM overlays, activation-map grids, filter-pattern grids.</summary>
public static class ExplanationImages
{
    /// <summary>
    /// Writes the image as the network saw it next to the same image with the Grad-CAM heatmap (jet colours, 45 %
    /// opacity) over it, each scaled to <paramref name="displaySize"/> pixels.
    /// </summary>
    public static void SaveGradCam(GradCamResult result, string path, int displaySize = 224)
    {
        using var scope = NewDisposeScope();
        var image = Upscale(result.Image.to_type(ScalarType.Float32), displaySize);
        var heat = Upscale(result.Heatmap.unsqueeze(0), displaySize).squeeze(0).clamp(0, 1);
        var overlay = image * 0.55f + Jet(heat) * (0.45f * 255f);
        SavePng(Grid([image, overlay], columns: 2, gap: 4), path);
    }

    /// <summary>
    /// Writes a grid of the first <paramref name="maxChannels"/> channel maps of an activation [C,h,w], each
    /// standardised on its own (Keras' recipe: mean 128, 64 per standard deviation) and shown in viridis-like colours.
    /// </summary>
    public static void SaveActivations(Tensor activations, string path, int maxChannels = 64, int cellSize = 96)
    {
        using var scope = NewDisposeScope();
        long channels = Math.Min(activations.shape[0], maxChannels);
        var cells = new List<Tensor>();
        for (long c = 0; c < channels; c++)
        {
            var map = activations[c].to_type(ScalarType.Float32);
            var std = map.std().item<float>();
            var standardised = std > 0 ? (map - map.mean()) / std * 64f + 128f : zeros_like(map) + 128f;
            var unit = (standardised.clamp(0, 255) / 255f).unsqueeze(0);
            cells.Add(Viridis(Upscale(unit, cellSize, nearest: true)) * 255f);
        }
        SavePng(Grid(cells, columns: (int)Math.Min(channels, 8), gap: 2), path);
    }

    /// <summary>Writes a grid of filter patterns (RGB bytes [N,3,S,S] from <see cref="ModelExplainer.FilterPatterns"/>).</summary>
    public static void SaveFilters(Tensor patterns, string path, int cellSize = 128)
    {
        using var scope = NewDisposeScope();
        var cells = Enumerable.Range(0, (int)patterns.shape[0]).Select(i => Upscale(patterns[i].to_type(ScalarType.Float32), cellSize)).ToList();
        SavePng(Grid(cells, columns: Math.Min(cells.Count, 8), gap: 2), path);
    }

    static Tensor Upscale(Tensor chw, int size, bool nearest = false)
        => nn.functional.interpolate(chw.unsqueeze(0), new long[] { size, size },
            mode: nearest ? InterpolationMode.Nearest : InterpolationMode.Bilinear, align_corners: nearest ? null : false).squeeze(0);

    /// <summary>Tiles equally sized [3,H,W] float images (0–255) into one, on a white background.</summary>
    static Tensor Grid(IReadOnlyList<Tensor> cells, int columns, int gap)
    {
        long h = cells[0].shape[1], w = cells[0].shape[2];
        int rows = (cells.Count + columns - 1) / columns;
        var canvas = full(new long[] { 3, rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap }, 255f);
        for (int i = 0; i < cells.Count; i++)
        {
            long top = i / columns * (h + gap), left = i % columns * (w + gap);
            canvas.narrow(1, top, h).narrow(2, left, w).copy_(cells[i]);
        }
        return canvas;
    }

    /// <summary>The jet colour map of values in [0,1] [H,W] → [3,H,W] in [0,1] (blue → cyan → yellow → red).</summary>
    static Tensor Jet(Tensor v)
    {
        Tensor Channel(float centre) => (1.5f - (v * 4f - centre).abs()).clamp(0, 1);
        return stack([Channel(3f), Channel(2f), Channel(1f)]);
    }

    /// <summary>A viridis-like map from 5 anchor colours, linearly interpolated: [1,H,W] in [0,1] → [3,H,W] in [0,1].</summary>
    static Tensor Viridis(Tensor v)
    {
        float[,] anchors = { { 0.267f, 0.005f, 0.329f }, { 0.229f, 0.322f, 0.546f }, { 0.128f, 0.567f, 0.551f }, { 0.369f, 0.789f, 0.383f }, { 0.993f, 0.906f, 0.144f } };
        var x = v.squeeze(0) * 4f;
        var index = x.floor().clamp(0, 3);
        var t = x - index;
        var lo = index.to_type(ScalarType.Int64);
        var table = tensor(anchors);
        var a = table.index_select(0, lo.flatten()).view(v.shape[1], v.shape[2], 3);
        var b = table.index_select(0, (lo + 1).flatten()).view(v.shape[1], v.shape[2], 3);
        return (a + (b - a) * t.unsqueeze(2)).permute(2, 0, 1);
    }

    /// <summary>Writes a float [3,H,W] (0–255) RGB image as PNG, through a temporary file so a crash never leaves half a file.</summary>
    public static void SavePng(Tensor rgb, string path)
    {
        var hwc = rgb.clamp(0, 255).round().to_type(ScalarType.Byte).permute(1, 2, 0).contiguous();
        int h = (int)hwc.shape[0], w = (int)hwc.shape[1];
        var rgbBytes = hwc.data<byte>().ToArray();
        var rgba = new byte[h * w * 4];
        for (int i = 0; i < h * w; i++)
        {
            rgba[4 * i] = rgbBytes[3 * i];
            rgba[4 * i + 1] = rgbBytes[3 * i + 1];
            rgba[4 * i + 2] = rgbBytes[3 * i + 2];
            rgba[4 * i + 3] = 255;
        }
        using var bitmap = new SKBitmap(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Opaque));
        System.Runtime.InteropServices.Marshal.Copy(rgba, 0, bitmap.GetPixels(), rgba.Length);
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var temp = full + ".tmp";
        using (var file = File.Create(temp)) data.SaveTo(file);
        File.Move(temp, full, overwrite: true);
    }
}
