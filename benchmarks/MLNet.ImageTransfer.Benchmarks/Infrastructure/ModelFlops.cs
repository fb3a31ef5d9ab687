using MLNet.ImageTransfer.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Benchmarks.Infrastructure;

/// <summary>
/// Model FLOP counts for utilisation figures. The published numbers are torchvision's "GFLOPS" column (which, like
/// most papers, counts multiply-accumulates of convolutions and fully connected layers for one 224×224 image with
/// 1000 classes). For other sizes and class counts we count the same thing with forward hooks on our own modules,
/// and check that the count at 224/1000 equals the published one.
/// </summary>
public static class ModelFlops
{
    /// <summary>torchvision's published GMACs ("GFLOPS") at 224×224, 1000 classes.</summary>
    public static readonly IReadOnlyDictionary<string, double> PublishedGMacs = new Dictionary<string, double>(StringComparer.OrdinalIgnoreCase)
    {
        ["resnet18"] = 1.81,
        ["resnet50"] = 4.09,
        ["densenet121"] = 2.83,
        ["vgg16"] = 15.47,
        ["vgg11"] = 7.61,
    };

    /// <summary>Multiply-accumulates of Conv2d and Linear layers for one image of <paramref name="imageSize"/>².</summary>
    public static long CountMacs(string architecture, int imageSize, int classes)
    {
        using var model = Architectures.Create(architecture, classes);
        long macs = 0;
        var removers = new List<Action>();
        foreach (var (_, module) in model.named_modules())
        {
            switch (module)
            {
                case Conv2d conv:
                    removers.Add(conv.register_forward_hook((m, input, output) =>
                    {
                        macs += conv.weight!.numel() * output.shape[2] * output.shape[3];
                        return null!;
                    }).remove);
                    break;
                case Linear linear:
                    removers.Add(linear.register_forward_hook((m, input, output) =>
                    {
                        macs += linear.weight!.numel();
                        return null!;
                    }).remove);
                    break;
            }
        }
        try
        {
            model.eval();
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            model.call(zeros(1, 3, imageSize, imageSize));
        }
        finally
        {
            foreach (var remove in removers) remove();
        }
        return macs;
    }

    /// <summary>
    /// FLOP of one training step per image: forward 2·MACs, backward ≈ twice the forward (gradients with respect to
    /// inputs and to weights), so 3 × 2 × MACs — the usual convention for model FLOP utilisation.
    /// </summary>
    public static double TrainFlopPerImage(long macs) => 6.0 * macs;

    /// <summary>FLOP of one inference (forward) per image.</summary>
    public static double InferenceFlopPerImage(long macs) => 2.0 * macs;
}
