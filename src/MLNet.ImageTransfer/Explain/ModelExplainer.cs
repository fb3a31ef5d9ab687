using Microsoft.ML.Data;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Explain;

/// <summary>A Grad-CAM map: where in the image the evidence for one class lies.</summary>
/// <param name="ClassName">The class explained.</param>
/// <param name="Probability">The model's probability for that class on this image.</param>
/// <param name="Layer">The layer whose activations the map is computed from.</param>
/// <param name="Heatmap">Values in [0,1], [S,S] at the network's input size (S = preprocessing image size).</param>
/// <param name="Image">The image as the network saw it: RGB bytes [3,S,S] after resizing/cropping.</param>
public sealed record GradCamResult(string ClassName, float Probability, string Layer, Tensor Heatmap, Tensor Image) : IDisposable
{
    public void Dispose()
    {
        Heatmap.Dispose();
        Image.Dispose();
    }
}

/// <summary>
/// The three views Keras' CNN-visualisation workflow gives of a trained classifier: Grad-CAM heatmaps, intermediate activation maps of a named
/// layer, and filter patterns found by gradient ascent. Layer names are torchvision module paths.
/// </summary>
public sealed class ModelExplainer
{
    readonly FittedClassifier _classifier;

    public ModelExplainer(FittedClassifier classifier) => _classifier = classifier;

    ImageClassifierModel Network => _classifier.Network;
    ImagePreprocessing Preprocessing => _classifier.Preprocessing;

    /// <summary>Modules that run in the forward pass, with their output shapes (what <c>--activations</c>/<c>--filters</c> accept).</summary>
    public IReadOnlyList<LayerInfo> Layers() => LayerProbe.ListLayers(Network, Preprocessing.ImageSize);

    /// <summary>
    /// Grad-CAM (Selvaraju et al. 2017) for <paramref name="className"/> (default: the predicted class) at
    /// <paramref name="layer"/> (default: the architecture's last convolutional stage): the layer's channels weighted by
    /// the spatial mean of the class score's gradient, summed, ReLU'd, scaled to [0,1] and upsampled to the input size.
    /// </summary>
    public GradCamResult GradCam(MLImage image, string? className = null, string? layer = null)
    {
        layer ??= Network.DefaultCamLayer;
        int target = -1;
        if (className is not null)
        {
            target = _classifier.ClassNames.ToList().IndexOf(className);
            if (target < 0) throw new ArgumentException($"Unknown class '{className}'. Classes: {string.Join(", ", _classifier.ClassNames)}.");
        }
        using var bytes = ImageTensors.ToResizedBytes(image, Preprocessing);
        using var probe = new LayerProbe(Network, layer);
        using var scope = NewDisposeScope();
        Network.eval();
        var input = ImageTensors.Normalize(bytes.unsqueeze(0), Preprocessing, _classifier.Device);
        Tensor heatmap;
        float probability;
        using (enable_grad())
        {
            var logits = Network.call(input);
            var probabilities = nn.functional.softmax(logits, 1);
            if (target < 0) target = (int)probabilities.argmax(1).item<long>();
            probability = probabilities[0, target].item<float>();
            heatmap = GradCamMap(logits[0, target], probe.Output);
        }
        var upsampled = nn.functional.interpolate(heatmap.unsqueeze(0).unsqueeze(0), new long[] { Preprocessing.ImageSize, Preprocessing.ImageSize },
            mode: InterpolationMode.Bilinear, align_corners: false).squeeze(0).squeeze(0).cpu();
        var rgb = ToRgb(bytes);
        return new GradCamResult(_classifier.ClassNames[target], probability, layer, upsampled.MoveToOuterDisposeScope(), rgb.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The Grad-CAM map [h,w] in [0,1] of a scalar class score with respect to one layer's activations [1,C,h,w]:
    /// ReLU(Σ_k α_k A_k) with α_k = mean over positions of ∂score/∂A_k, divided by its maximum (all zeros if none is positive).
    /// </summary>
    public static Tensor GradCamMap(Tensor score, Tensor activations)
    {
        using var scope = NewDisposeScope();
        var gradient = autograd.grad([score], [activations], retain_graph: true)[0];
        var weights = gradient.mean([2L, 3L], keepdim: true);               // α_k, [1,C,1,1]
        var cam = nn.functional.relu((weights * activations).sum(1)).squeeze(0).detach(); // [h,w]
        var max = cam.max();
        return (max.item<float>() > 0 ? cam / max : cam).MoveToOuterDisposeScope();
    }

    /// <summary>The output of <paramref name="layer"/> for an image: [C,h,w] (the maps plotted per channel).</summary>
    public Tensor Activations(MLImage image, string layer)
    {
        using var bytes = ImageTensors.ToResizedBytes(image, Preprocessing);
        using var probe = new LayerProbe(Network, layer);
        using var scope = NewDisposeScope();
        Network.eval();
        using (no_grad())
            Network.call(ImageTensors.Normalize(bytes.unsqueeze(0), Preprocessing, _classifier.Device));
        var output = probe.Output;
        if (output.dim() != 4) throw new ArgumentException($"Layer '{layer}' outputs shape [{string.Join(",", output.shape)}], not a feature map.");
        return output[0].detach().cpu().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Filter visualisation by gradient ascent (after Chollet): for each of the first <paramref name="count"/>
    /// channels of <paramref name="layer"/>, start from a grey noisy image and follow the normalised gradient of the
    /// channel's mean activation. Returns RGB bytes [count,3,S,S] of the patterns, standardised for display.
    /// </summary>
    public Tensor FilterPatterns(string layer, int count = 16, int steps = 40, double stepSize = 1.0, int seed = 0)
    {
        if (count < 1 || steps < 1) throw new ArgumentOutOfRangeException(nameof(count), "Need at least one filter and one step.");
        int size = Preprocessing.ImageSize;
        using var probe = new LayerProbe(Network, layer);
        Network.eval();
        var patterns = new List<Tensor>();
        var generator = new Generator((ulong)seed);
        // Freeze the weights so only the image receives gradients.
        var flags = Network.parameters().Select(p => (p, p.requires_grad)).ToList();
        foreach (var (p, _) in flags) p.requires_grad = false;
        try
        {
            for (int k = 0; k < count; k++)
            {
                using var scope = NewDisposeScope();
                // Start near the dataset mean in network space: 0 after normalisation, plus small noise.
                var x = (randn(new long[] { 1, 3, size, size }, generator: generator) * 0.1).to(_classifier.Device).requires_grad_(true);
                for (int s = 0; s < steps; s++)
                {
                    using var stepScope = NewDisposeScope();
                    using (enable_grad())
                    {
                        Network.call(x);
                        var output = probe.Output;
                        if (output.dim() != 4) throw new ArgumentException($"Layer '{layer}' outputs shape [{string.Join(",", output.shape)}], not a feature map.");
                        if (k >= output.shape[1]) throw new ArgumentException($"Layer '{layer}' has {output.shape[1]} channels; asked for {count}.");
                        var objective = output[0, k].mean();
                        var grad = autograd.grad([objective], [x])[0];
                        var normalised = grad / (grad.square().mean().sqrt() + 1e-5);
                        using (no_grad()) x.add_(normalised * stepSize);
                    }
                }
                patterns.Add(Deprocess(x.detach()[0].cpu()).MoveToOuterDisposeScope());
            }
        }
        finally
        {
            foreach (var (p, flag) in flags) p.requires_grad = flag;
        }
        var stacked = stack(patterns);
        foreach (var p in patterns) p.Dispose();
        return stacked;
    }

    /// <summary>Chollet's deprocess: standardise, scale to std 0.1 around 0.5, clip to [0,1], to bytes; channel order → RGB.</summary>
    Tensor Deprocess(Tensor chw)
    {
        using var scope = NewDisposeScope();
        var x = (chw - chw.mean()) / (chw.std() + 1e-5) * 0.1 + 0.5;
        var bytes = (x.clamp(0, 1) * 255).round().to_type(ScalarType.Byte);
        return ToRgb(bytes).MoveToOuterDisposeScope();
    }

    /// <summary>A [3,S,S] byte image in the preprocessing's channel order, as RGB.</summary>
    Tensor ToRgb(Tensor chw) => Preprocessing.Channels == ChannelOrder.Rgb ? chw.clone() : chw.flip(0);
}
