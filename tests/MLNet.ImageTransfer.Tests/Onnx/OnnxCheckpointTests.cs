using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Onnx;
using MLNet.ImageTransfer.Weights.Onnx;
using TorchSharp;
using Xunit.Abstractions;

namespace MLNet.ImageTransfer.Tests.Onnx;

/// <summary>
/// The graph a model .zip stores keeps BatchNorm unfolded (so that training can continue from its initializers);
/// ONNX Runtime folds it into the convolutions when it creates the session, so scoring costs the same.
/// </summary>
public class OnnxCheckpointTests(ITestOutputHelper output)
{
    static FittedClassifier Classifier(ArchitectureConfig architecture, int size)
    {
        lock (Engine.GlobalGenerator.Gate)
        {
            torch.manual_seed(2);
            var network = architecture.Build(3);
            return new FittedClassifier(network, new ClassifierDescription
            {
                Architecture = architecture, Head = HeadSpec.Default, ClassNames = ["a", "b", "c"],
                Preprocessing = ImagePreprocessing.TorchVision(size) with { Resize = ResizeMode.Stretch },
            });
        }
    }

    static IReadOnlyList<string> OptimizedOperators(byte[] onnx)
    {
        var path = Path.Combine(TestData.NewTempDir("ort-optimized"), "optimized.onnx");
        using (var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, OptimizedModelFilePath = path })
        using (new InferenceSession(onnx, options)) { }
        return OnnxReader.Read(path).Nodes.Select(n => n.OpType).ToList();
    }

    [Fact]
    public void The_stored_graph_has_every_batchnorm_and_onnx_runtime_folds_them_all()
    {
        using var classifier = Classifier(TestData.TinyResNet, 32);
        var stored = OnnxCheckpoint.Export(classifier);
        var nodes = OnnxReader.Parse(stored, "stored").Nodes;
        int batchNorms = classifier.Network.named_modules().Count(m => m.module is TorchSharp.Modules.BatchNorm2d);
        Assert.Equal(batchNorms, nodes.Count(n => n.OpType == "BatchNormalization"));

        var optimized = OptimizedOperators(stored);
        output.WriteLine("after ONNX Runtime's optimisation: " + string.Join(", ", optimized.GroupBy(o => o).Select(g => $"{g.Key} {g.Count()}")));
        Assert.DoesNotContain("BatchNormalization", optimized);
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void Scoring_time_of_the_stored_graph_matches_an_export_folded_ahead_of_time()
    {
        using var classifier = Classifier(Architectures.Get("resnet18"), 224);
        var unfolded = OnnxImageModel.Load(OnnxCheckpoint.Export(classifier));
        var folded = OnnxImageModel.Load(OnnxExporter.ExportToBytes(classifier, OnnxCheckpoint.ExportOptions with { FoldBatchNorm = true }));
        var input = new float[8 * 3 * 224 * 224];
        for (int i = 0; i < input.Length; i++) input[i] = (i * 7919) % 256;
        double Time(OnnxImageModel m)
        {
            for (int i = 0; i < 3; i++) m.Run(input); // warm-up
            var times = new List<double>();
            for (int i = 0; i < 5; i++)
            {
                var sw = Stopwatch.StartNew();
                m.Run(input);
                times.Add(sw.Elapsed.TotalMilliseconds);
            }
            return times.Order().ElementAt(2);
        }
        // Interleaved, median of five, twice each: the machine is shared.
        double u1 = Time(unfolded), f1 = Time(folded), u2 = Time(unfolded), f2 = Time(folded);
        double u = Math.Min(u1, u2), f = Math.Min(f1, f2);
        output.WriteLine($"resnet18 @224, batch 8, ONNX Runtime: BatchNorm unfolded (stored) {u:F0} ms, folded at export {f:F0} ms, ratio {u / f:F2}");
        Assert.InRange(u / f, 0, 1.25);
        unfolded.Dispose();
        folded.Dispose();
    }
}
