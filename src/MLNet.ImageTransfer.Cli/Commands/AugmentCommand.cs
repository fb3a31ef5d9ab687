using System.CommandLine;
using MLNet.ImageTransfer.Augmentation;
using MLNet.ImageTransfer.Data;

namespace MLNet.ImageTransfer.Cli.Commands;

/// <summary>
/// <c>augment --data DIR --out grid.png [--augment SPEC]</c>: a PNG grid of original vs augmented samples, drawn by the
/// same code that augments training batches.
/// </summary>
internal static class AugmentCommand
{
    public static Command Create()
    {
        var data = new Option<FileSystemInfo>("--data") { Description = "A class-per-subfolder image folder (a few images per class are shown), or one image file", Required = true };
        var output = new Option<FileInfo>("--out") { Description = "Where to write the PNG grid", Required = true };
        var augment = new Option<string>("--augment") { Description = "Augmentation spec: " + AugmentationSpec.Help, DefaultValueFactory = _ => "default" };
        var rows = new Option<int>("--rows") { Description = "Images (rows) to show", DefaultValueFactory = _ => 4 };
        var samples = new Option<int>("--samples") { Description = "Augmented versions per image (columns after the original)", DefaultValueFactory = _ => 5 };
        var imageSize = new Option<int>("--image-size") { Description = "Network input size in pixels", DefaultValueFactory = _ => 224 };
        var preprocess = new Option<string>("--preprocess") { Description = "Preprocessing preset: torchvision, keras-caffe, keras-torch, keras-tf, rescale", DefaultValueFactory = _ => "torchvision" };
        var seed = new Option<int>("--seed") { Description = "Random seed of the draws", DefaultValueFactory = _ => 1 };
        var command = new Command("augment", "Write a PNG grid of original vs augmented samples, to check an --augment spec before training")
            { data, output, augment, rows, samples, imageSize, preprocess, seed };
        command.SetAction(r => Cli.Run(() =>
        {
            var pipeline = AugmentationPipeline.Parse(r.GetValue(augment)!);
            var preprocessing = ImagePreprocessing.FromPreset(r.GetValue(preprocess)!, r.GetValue(imageSize));
            var input = r.GetValue(data)!;
            if (r.GetValue(rows) < 1) throw new ArgumentException("--rows must be at least 1.");
            IReadOnlyList<string> images = input switch
            {
                FileInfo { Exists: true } file => [file.FullName],
                DirectoryInfo { Exists: true } dir => AugmentationPreview.PickImages(dir.FullName, r.GetValue(rows), r.GetValue(seed)),
                _ when File.Exists(input.FullName) => [input.FullName],
                _ when Directory.Exists(input.FullName) => AugmentationPreview.PickImages(input.FullName, r.GetValue(rows), r.GetValue(seed)),
                _ => throw new DirectoryNotFoundException($"'{input.FullName}' is neither an image folder nor an image file."),
            };
            if (images.Count == 0) throw new InvalidDataException($"No images found in '{input.FullName}'.");
            var path = r.GetValue(output)!.FullName;
            AugmentationPreview.SaveGrid(path, images, pipeline, preprocessing, r.GetValue(samples), r.GetValue(seed));
            Console.WriteLine($"Augmentation: {pipeline.ToSpec()}");
            Console.WriteLine($"Wrote {path}: {images.Count} row(s); first column = the image as evaluated ({preprocessing.Name} {preprocessing.ImageSize}px), then {r.GetValue(samples)} augmented draw(s) as training sees them.");
            return 0;
        }));
        return command;
    }
}
