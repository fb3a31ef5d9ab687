using System.Text.Json;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Weights;
using TorchSharp;
using static TorchSharp.torch;
using Xunit.Abstractions;

namespace MLNet.ImageTransfer.Tests.Models;

/// <summary>
/// Our TorchSharp modules against torchvision itself: same weights, same input → the logits PyTorch computed
/// (fixtures/generate_fixtures.py), in eval mode and in train mode (batch statistics, running-stat update).
/// </summary>
public class TorchvisionParityTests(ITestOutputHelper output)
{
    const double Tolerance = 1e-4;

    void AssertClose(string what, Tensor ours, Tensor pytorch)
    {
        double diff = MaxAbsDiff(ours, pytorch);
        output.WriteLine($"{what}: max |ours - pytorch| = {diff:E2}");
        Assert.InRange(diff, 0, Tolerance);
    }

    public static TheoryData<string> TinyModels => new(Fixtures.TinyModelNames);

    static (ImageClassifierModel Model, SafeTensorsFile Io) Load(string name) => Fixtures.LoadTinyModel(name);

    static double MaxAbsDiff(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    [Theory]
    [MemberData(nameof(TinyModels))]
    public void Eval_mode_logits_match_pytorch(string name)
    {
        var (model, io) = Load(name);
        using (model) using (io)
        {
            model.eval();
            using var _ = no_grad();
            using var logits = model.call(io.Tensors["input"]);
            AssertClose($"{name} eval logits", logits, io.Tensors["logits_eval"]);
            // A non-square input exercises adaptive pooling and stride arithmetic.
            using var rect = model.call(io.Tensors["input_rect"]);
            AssertClose($"{name} eval logits 40x72", rect, io.Tensors["logits_eval_rect"]);
        }
    }

    [Theory]
    [MemberData(nameof(TinyModels))]
    public void Train_mode_logits_and_batchnorm_running_stats_match_pytorch(string name)
    {
        var (model, io) = Load(name);
        using (model) using (io)
        {
            model.train();
            using var _ = no_grad();
            using var logits = model.call(io.Tensors["input"]);
            AssertClose($"{name} train-mode logits", logits, io.Tensors["logits_train"]);
            if (io.Metadata.TryGetValue("bn_layer", out var bnName))
            {
                var state = model.state_dict();
                AssertClose($"{name} {bnName}.running_mean", state[bnName + ".running_mean"], io.Tensors["running_mean_after_train"]);
                AssertClose($"{name} {bnName}.running_var", state[bnName + ".running_var"], io.Tensors["running_var_after_train"]);
            }
        }
    }

    [Theory]
    [MemberData(nameof(TinyModels))]
    public void Pooled_features_match_the_input_of_pytorchs_final_linear(string name)
    {
        var (model, io) = Load(name);
        using (model) using (io)
        {
            if (name.StartsWith("vgg")) return; // VGG's final Linear sees the hidden layer, not pooled backbone features
            model.eval();
            using var _ = no_grad();
            using var pooled = model.ForwardPooledFeatures(io.Tensors["input"]);
            AssertClose($"{name} pooled features", pooled, io.Tensors["pooled_eval"]);
        }
    }

    [Theory]
    [InlineData("densenet121")]
    [InlineData("resnet18")]
    [InlineData("resnet50")]
    [InlineData("vgg16")]
    [InlineData("vgg16_bn")]
    public void Full_size_state_dict_keys_and_shapes_equal_torchvision(string arch)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.Path_($"{arch}.keys.json")));
        var expected = ReadKeyList(doc.RootElement);
        using var model = Architectures.Create(arch, 1000);
        var ours = model.state_dict().ToDictionary(kv => kv.Key, kv => string.Join(",", kv.Value.shape));
        Assert.Equal(expected.Keys.OrderBy(k => k, StringComparer.Ordinal), ours.Keys.OrderBy(k => k, StringComparer.Ordinal));
        foreach (var (key, shape) in expected) Assert.True(ours[key] == shape, $"{key}: ours [{ours[key]}] vs torchvision [{shape}]");
    }

    static Dictionary<string, string> ReadKeyList(JsonElement root)
    {
        var list = root.ValueKind == JsonValueKind.Array ? root : root.GetProperty("keys");
        return list.EnumerateArray().ToDictionary(e => e[0].GetString()!, e => string.Join(",", e[1].EnumerateArray().Select(d => d.GetInt64())));
    }
}
