using System.CommandLine;
using MLNet.ImageTransfer.Onnx;

namespace MLNet.ImageTransfer.Cli.Commands;

internal static class ExportCommand
{
    public static Command Create()
    {
        var model = new Option<FileInfo>("--model") { Description = "Trained model (.zip) holding an image classifier or an image featurizer", Required = true };
        var onnx = new Option<FileInfo>("--onnx") { Description = "ONNX file to write", Required = true };
        var opset = new Option<int>("--opset") { Description = $"ONNX opset ({OnnxExporter.MinOpset}-{OnnxExporter.MaxOpset})", DefaultValueFactory = _ => OnnxExporter.MinOpset };
        var outputs = new Option<string>("--outputs") { Description = "Classifier outputs: both, probabilities or logits", DefaultValueFactory = _ => "both" };
        var noPreprocessing = new Option<bool>("--no-preprocessing") { Description = "Input the normalised tensor instead of raw RGB pixels 0-255 (normalisation left out of the graph)" };
        var noFold = new Option<bool>("--no-fold-bn") { Description = "Keep every BatchNorm as a BatchNormalization node instead of folding it into the convolution before it" };
        var batchSize = new Option<int?>("--batch-size") { Description = "A fixed batch size (default: any, symbolic N)" };
        var noVerify = new Option<bool>("--no-verify") { Description = "Skip running the exported graph on ONNX Runtime against TorchSharp" };
        var command = new Command("export", "Export a trained model to ONNX (opset 13+), with its preprocessing and class names, checked on ONNX Runtime")
            { model, onnx, opset, outputs, noPreprocessing, noFold, batchSize, noVerify };
        command.SetAction(r => Cli.Run(() =>
        {
            var options = new OnnxExportOptions
            {
                Opset = r.GetValue(opset),
                IncludePreprocessing = !r.GetValue(noPreprocessing),
                FoldBatchNorm = !r.GetValue(noFold),
                BatchSize = r.GetValue(batchSize),
                Outputs = r.GetValue(outputs)!.ToLowerInvariant() switch
                {
                    "both" => OnnxClassifierOutputs.Both,
                    "probabilities" => OnnxClassifierOutputs.Probabilities,
                    "logits" => OnnxClassifierOutputs.Logits,
                    var o => throw new ArgumentException($"Unknown --outputs '{o}': use both, probabilities or logits."),
                },
            };
            var ml = Cli.NewContext();
            var loaded = ImageClassificationWorkflow.LoadModel(ml, r.GetValue(model)!.FullName, out _);
            var path = r.GetValue(onnx)!.FullName;
            var export = OnnxModelExport.FromPipeline(loaded);
            var summary = export.Write(path, options);
            Console.WriteLine($"Wrote {path}: {summary}");
            if (summary.Metadata.TryGetValue(OnnxMetadataKeys.ClassNames, out var classes)) Console.WriteLine($"Classes: {classes}");
            Console.WriteLine($"Input: {summary.Metadata[OnnxMetadataKeys.InputDescription]}");
            if (!r.GetValue(noVerify))
            {
                var report = export.Verify(File.ReadAllBytes(path));
                Console.WriteLine($"Checked on ONNX Runtime against TorchSharp, {report}");
                if (report.Max > 1e-3)
                {
                    Console.Error.WriteLine($"error: the exported graph differs from the model by {report.Max:E2} (more than 1e-3).");
                    return 1;
                }
            }
            return 0;
        }));
        return command;
    }
}
