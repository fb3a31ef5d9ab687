using System.CommandLine;
using Microsoft.ML.Data;
using MLNet.ImageTransfer.Explain;

namespace MLNet.ImageTransfer.Cli.Commands;

internal static class ExplainCommand
{
    public static Command Create()
    {
        var model = new Option<FileInfo>("--model") { Description = "Trained model (.zip)", Required = true };
        var image = new Option<FileInfo?>("--image") { Description = "Image to explain (for --gradcam and --activations)" };
        var gradcam = new Option<bool>("--gradcam") { Description = "Grad-CAM heatmap over the image for the predicted class (or --class)" };
        var className = new Option<string?>("--class") { Description = "Class to explain with --gradcam (default: the predicted one)" };
        var layer = new Option<string?>("--layer") { Description = "Layer for --gradcam (default: the last convolutional stage)" };
        var activations = new Option<string?>("--activations") { Description = "Grid of the channel maps of this layer (torchvision path, e.g. layer2 or features.denseblock2)" };
        var filters = new Option<string?>("--filters") { Description = "Patterns that maximise this layer's first channels, by gradient ascent" };
        var count = new Option<int>("--count") { Description = "Channels shown by --activations / --filters", DefaultValueFactory = _ => 16 };
        var listLayers = new Option<bool>("--list-layers") { Description = "List the layers that can be named, with their output shapes" };
        var output = new Option<FileInfo?>("--out") { Description = "PNG file to write" };
        var command = new Command("explain", "Grad-CAM heatmaps, activation maps and filter patterns of a trained model")
            { model, image, gradcam, className, layer, activations, filters, count, listLayers, output };
        command.SetAction(r => Cli.Run(() =>
        {
            var ml = Cli.NewContext();
            var loaded = ImageClassificationWorkflow.LoadModel(ml, r.GetValue(model)!.FullName, out _);
            var classifier = ImageClassificationWorkflow.FindClassifier(loaded);
            var explainer = new ModelExplainer(classifier);
            if (r.GetValue(listLayers))
            {
                foreach (var l in explainer.Layers()) Console.WriteLine($"{l.Name,-45} [{string.Join(", ", l.OutputShape)}]");
                return 0;
            }
            var modes = new[] { r.GetValue(gradcam), r.GetValue(activations) is not null, r.GetValue(filters) is not null }.Count(m => m);
            if (modes != 1) throw new ArgumentException("Choose exactly one of --gradcam, --activations LAYER, --filters LAYER (or --list-layers).");
            var outPath = r.GetValue(output)?.FullName ?? throw new ArgumentException("--out FILE.png is required.");
            if (r.GetValue(filters) is { } filterLayer)
            {
                using var patterns = explainer.FilterPatterns(filterLayer, r.GetValue(count));
                ExplanationImages.SaveFilters(patterns, outPath);
                Console.WriteLine($"Wrote {patterns.shape[0]} filter patterns of {filterLayer} to {outPath}");
                return 0;
            }
            var imagePath = r.GetValue(image)?.FullName ?? throw new ArgumentException("--image IMAGE is required for --gradcam and --activations.");
            if (!File.Exists(imagePath)) throw new FileNotFoundException($"Image '{imagePath}' does not exist.", imagePath);
            using var picture = MLImage.CreateFromFile(imagePath);
            if (r.GetValue(gradcam))
            {
                using var cam = explainer.GradCam(picture, r.GetValue(className), r.GetValue(layer));
                ExplanationImages.SaveGradCam(cam, outPath);
                Console.WriteLine($"Grad-CAM of class '{cam.ClassName}' (p = {cam.Probability:P1}) at {cam.Layer} written to {outPath}");
                return 0;
            }
            using var maps = explainer.Activations(picture, r.GetValue(activations)!);
            ExplanationImages.SaveActivations(maps, outPath, r.GetValue(count));
            Console.WriteLine($"Wrote {Math.Min(maps.shape[0], r.GetValue(count))} of {maps.shape[0]} channel maps of {r.GetValue(activations)} [{maps.shape[1]}x{maps.shape[2]}] to {outPath}");
            return 0;
        }));
        return command;
    }
}
