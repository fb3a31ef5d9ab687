using System.Text.RegularExpressions;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Weights;

/// <summary>
/// Other spellings of torchvision's keys found in published files, renamed to today's torchvision names:
/// torchvision's own DenseNet checkpoints (<c>denselayer1.norm.1.weight</c> for <c>denselayer1.norm1.weight</c>, as
/// torchvision's <c>_load_state_dict</c> remaps them), and timm's VGG head (<c>pre_logits.fc1</c> as a 7×7
/// convolution, <c>pre_logits.fc2</c>, <c>head.fc</c>) for torchvision's <c>classifier.0/.3/.6</c>.
/// </summary>
internal static class TorchvisionKeyVariants
{
    static readonly Regex OldDenseLayer = new(@"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$", RegexOptions.CultureInvariant);

    public static OrderedDictionary<string, Tensor> Normalize(OrderedDictionary<string, Tensor> tensors, List<string> notes, string path)
    {
        int renamed = 0;
        var result = new OrderedDictionary<string, Tensor>();
        bool timmVgg = tensors.ContainsKey("pre_logits.fc1.weight") && tensors.ContainsKey("head.fc.weight");
        foreach (var (key, value) in tensors)
        {
            string k = key;
            var m = OldDenseLayer.Match(key);
            if (m.Success) { k = m.Groups[1].Value + m.Groups[2].Value; renamed++; }
            Tensor v = value;
            if (timmVgg)
            {
                switch (key)
                {
                    case "pre_logits.fc1.weight": k = "classifier.0.weight"; v = Flatten(value); break;
                    case "pre_logits.fc1.bias": k = "classifier.0.bias"; break;
                    case "pre_logits.fc2.weight": k = "classifier.3.weight"; v = Flatten(value); break;
                    case "pre_logits.fc2.bias": k = "classifier.3.bias"; break;
                    case "head.fc.weight": k = "classifier.6.weight"; break;
                    case "head.fc.bias": k = "classifier.6.bias"; break;
                }
            }
            if (!result.TryAdd(k, v)) throw new WeightFileException(path, $"two keys of the file ('{key}' and another) map to '{k}'.");
        }
        if (renamed > 0) notes.Add($"{renamed} keys of torchvision's original DenseNet checkpoints renamed (denselayerN.norm.1 → norm1, as torchvision does)");
        if (timmVgg) notes.Add("timm's VGG head (pre_logits.fc1/fc2 convolutions, head.fc) mapped to torchvision's classifier.0/.3/.6");
        return result;

        static Tensor Flatten(Tensor convWeight)
        {
            // [out, C, k, k] convolution over the pooled map = Linear over its C·k·k flattened values (PyTorch's order).
            if (convWeight.dim() != 4) return convWeight;
            using var view = convWeight.reshape(convWeight.shape[0], -1); // named and disposed, not a temporary: see PyTorchCheckpoint.Extract
            var flat = view.contiguous();
            convWeight.Dispose();
            return flat;
        }
    }
}
