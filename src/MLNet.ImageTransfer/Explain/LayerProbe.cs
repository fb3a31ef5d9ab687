using MLNet.ImageTransfer.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Explain;

/// <summary>A module path and the shape of its output for one image.</summary>
public sealed record LayerInfo(string Name, long[] OutputShape);

/// <summary>
/// Captures the output of a named module (torchvision path, e.g. <c>layer4</c>, <c>features.denseblock3</c>,
/// <c>features.28</c>) during a forward pass, through a forward hook. The captured tensor stays part of the autograd
/// graph, so gradients with respect to it can be taken (Grad-CAM, gradient ascent).
/// </summary>
internal sealed class LayerProbe : IDisposable
{
    readonly Action _removeHook;
    Tensor? _output;

    public LayerProbe(ImageClassifierModel model, string layer)
    {
        var module = Find(model, layer);
        // The forward passes dispose intermediate handles as they go; an alias keeps the same tensor (and its autograd
        // node) alive for us.
        var hook = module.register_forward_hook((m, input, output) =>
        {
            _output?.Dispose();
            _output = output.alias();
            return null!; // null: keep the module's output unchanged
        });
        _removeHook = hook.remove;
    }

    /// <summary>The output of the layer in the last forward pass.</summary>
    public Tensor Output => _output ?? throw new InvalidOperationException("The layer did not run in the forward pass (it is not used by this network's forward).");

    public static nn.Module<Tensor, Tensor> Find(ImageClassifierModel model, string layer)
    {
        foreach (var (name, module) in model.named_modules())
            if (name == layer)
                return module as nn.Module<Tensor, Tensor> ?? throw new ArgumentException($"Layer '{layer}' is not a tensor-to-tensor module.");
        throw new ArgumentException($"The network has no layer '{layer}'. Layers are torchvision module paths such as {string.Join(", ", ExampleNames(model))}; list them with `explain --list-layers`.");
    }

    static IEnumerable<string> ExampleNames(ImageClassifierModel model)
        => model.named_modules().Select(n => n.name).Where(n => n.Length > 0 && n.Count(c => c == '.') <= 1).Take(8);

    /// <summary>Every module that produces an output when an image of <paramref name="imageSize"/> goes through the network, in execution order.</summary>
    public static IReadOnlyList<LayerInfo> ListLayers(ImageClassifierModel model, int imageSize)
    {
        var seen = new List<LayerInfo>();
        var removers = new List<Action>();
        foreach (var (name, module) in model.named_modules())
        {
            if (name.Length == 0 || module is not nn.Module<Tensor, Tensor> m) continue;
            removers.Add(m.register_forward_hook((_, _, output) => { seen.Add(new LayerInfo(name, output.shape)); return null!; }).remove);
        }
        try
        {
            bool training = model.training;
            model.eval();
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            model.call(zeros(1, 3, imageSize, imageSize, device: model.parameters().First().device));
            model.train(training);
        }
        finally
        {
            foreach (var remove in removers) remove();
        }
        return seen;
    }

    public void Dispose()
    {
        _removeHook();
        _output?.Dispose();
    }
}
