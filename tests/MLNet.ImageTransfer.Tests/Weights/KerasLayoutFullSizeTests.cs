using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Weights.Keras;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.Weights;

/// <summary>
/// The Keras key map at full depth: the layer names and weight shapes that keras.applications' DenseNet121/169/201,
/// ResNet50/101/152 and VGG16/19 save (written out here from keras.applications' source: densenet.py, resnet.py,
/// vgg16.py, vgg19.py) map onto exactly our network's keys and shapes, and describe exactly the registered
/// Keras-convention architecture.
/// </summary>
public class KerasLayoutFullSizeTests
{
    /// <summary>keras.applications' layers for a registered architecture: (layer, [(weight name, shape)]), in model order.</summary>
    static List<(string Layer, List<(string Weight, long[] Shape)> Weights)> KerasLayers(string name)
    {
        var layers = new List<(string, List<(string, long[])>)>();
        void Conv(string layer, long k, long cin, long cout, bool bias)
        {
            var w = new List<(string, long[])> { ($"{layer}/kernel:0", [k, k, cin, cout]) };
            if (bias) w.Add(($"{layer}/bias:0", [cout]));
            layers.Add((layer, w));
        }
        void Bn(string layer, long c) => layers.Add((layer, new[] { "gamma", "beta", "moving_mean", "moving_variance" }.Select(k => ($"{layer}/{k}:0", new[] { c })).ToList()));
        void Dense(string layer, long cin, long cout) => layers.Add((layer, [($"{layer}/kernel:0", [cin, cout]), ($"{layer}/bias:0", [cout])]));

        switch (name)
        {
            case "densenet121" or "densenet169" or "densenet201":
            {
                int[] blocks = name switch { "densenet121" => [6, 12, 24, 16], "densenet169" => [6, 12, 32, 32], _ => [6, 12, 48, 32] };
                Conv("conv1/conv", 7, 3, 64, false);
                Bn("conv1/bn", 64);
                long c = 64;
                for (int s = 0; s < 4; s++)
                {
                    for (int i = 1; i <= blocks[s]; i++)
                    {
                        string p = $"conv{s + 2}_block{i}";
                        Bn(p + "_0_bn", c);
                        Conv(p + "_1_conv", 1, c, 128, false);
                        Bn(p + "_1_bn", 128);
                        Conv(p + "_2_conv", 3, 128, 32, false);
                        c += 32;
                    }
                    if (s < 3)
                    {
                        Bn($"pool{s + 2}_bn", c);
                        Conv($"pool{s + 2}_conv", 1, c, c / 2, false);
                        c /= 2;
                    }
                }
                Bn("bn", c);
                Dense("predictions", c, 1000);
                break;
            }
            case "resnet50" or "resnet101" or "resnet152":
            {
                int[] stacks = name switch { "resnet50" => [3, 4, 6, 3], "resnet101" => [3, 4, 23, 3], _ => [3, 8, 36, 3] };
                Conv("conv1_conv", 7, 3, 64, true);
                Bn("conv1_bn", 64);
                long c = 64;
                for (int s = 0; s < 4; s++)
                {
                    long f = 64L << s;
                    for (int b = 1; b <= stacks[s]; b++)
                    {
                        string p = $"conv{s + 2}_block{b}";
                        if (b == 1) { Conv(p + "_0_conv", 1, c, 4 * f, true); Bn(p + "_0_bn", 4 * f); }
                        Conv(p + "_1_conv", 1, c, f, true); Bn(p + "_1_bn", f);
                        Conv(p + "_2_conv", 3, f, f, true); Bn(p + "_2_bn", f);
                        Conv(p + "_3_conv", 1, f, 4 * f, true); Bn(p + "_3_bn", 4 * f);
                        c = 4 * f;
                    }
                }
                Dense("predictions", c, 1000);
                break;
            }
            case "vgg16" or "vgg19":
            {
                int[] convs = name == "vgg16" ? [2, 2, 3, 3, 3] : [2, 2, 4, 4, 4];
                long[] widths = [64, 128, 256, 512, 512];
                long c = 3;
                for (int b = 0; b < 5; b++)
                    for (int i = 1; i <= convs[b]; i++) { Conv($"block{b + 1}_conv{i}", 3, c, widths[b], true); c = widths[b]; }
                Dense("fc1", 7 * 7 * 512, 4096);
                Dense("fc2", 4096, 4096);
                Dense("predictions", 4096, 1000);
                break;
            }
            default: throw new ArgumentException(name);
        }
        return layers;
    }

    static void Check(string name)
    {
        // Broadcast views: the shapes are real, the memory is one float per tensor (until the map converts them).
        var layers = KerasLayers(name).Select(l => new KerasLayer(l.Layer, l.Weights.Select(w => (w.Weight, zeros(1).expand(w.Shape), "F32")).ToList())).ToList();
        using var file = new KerasWeightFile(layers, "2.4.0", "tensorflow", layers.Count);
        var mapping = KerasKeyMap.Map(file, name + ".h5");
        try
        {
            var expected = name.StartsWith("vgg", StringComparison.Ordinal) ? Architectures.Get(name) : Architectures.Get(name + Architectures.KerasSuffix);
            Assert.Equal(expected, mapping.Architecture);
            using var model = expected.Build(1000);
            var target = model.state_dict();
            Assert.Equal(target.Keys.Order(), mapping.Tensors.Keys.Order());
            foreach (var (key, tensor) in target) Assert.True(tensor.shape.SequenceEqual(mapping.Tensors[key].shape), $"{key}: [{string.Join(",", tensor.shape)}] vs [{string.Join(",", mapping.Tensors[key].shape)}]");
        }
        finally
        {
            foreach (var t in mapping.Tensors.Values) t.Dispose();
        }
    }

    [Theory]
    [InlineData("densenet121")]
    [InlineData("resnet50")]
    public void Keras_applications_layouts_map_onto_the_keras_variants(string name) => Check(name);

    [Theory]
    [Trait("Category", "Slow")]
    [InlineData("densenet169")]
    [InlineData("densenet201")]
    [InlineData("resnet101")]
    [InlineData("resnet152")]
    [InlineData("vgg16")]
    [InlineData("vgg19")]
    public void Keras_applications_layouts_map_onto_the_keras_variants_full_size(string name) => Check(name);
}
