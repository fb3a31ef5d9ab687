using System.Text.Json;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Weights;

namespace MLNet.ImageTransfer.Tests;

/// <summary>Paths of the committed reference fixtures (made by fixtures/generate_fixtures.py with Debian's PyTorch).</summary>
internal static class Fixtures
{
    public static string Dir => Path.Combine(AppContext.BaseDirectory, "fixtures");
    public static string Path_(string name) => Path.Combine(Dir, name);

    /// <summary>The tiny torchvision-layout networks of every family: DenseNet, ResNet basic and bottleneck, VGG without and with BatchNorm.</summary>
    public static readonly string[] TinyModelNames = ["densenet_tiny", "resnet_tiny_basic", "resnet_tiny_bottleneck", "vgg_tiny", "vgg_tiny_bn"];

    /// <summary>
    /// A tiny fixture network built from the configuration recorded by the generator, with PyTorch's weights loaded
    /// strictly by name, and the fixture's inputs and PyTorch outputs (<c>&lt;name&gt;.io.safetensors</c>).
    /// </summary>
    public static (ImageClassifierModel Model, SafeTensorsFile Io) LoadTinyModel(string name)
    {
        var io = SafeTensors.Read(Path_($"{name}.io.safetensors"));
        var config = ConfigFromFixture(io.Metadata["config"]);
        using var weights = SafeTensors.Read(Path_($"{name}.safetensors"));
        var model = config.Build((int)io.Tensors["logits_eval"].shape[1], HeadSpec.Default with { Dropout = 0 });
        StateDictLoader.Load(model, weights.Tensors, strict: true);
        return (model, io);
    }

    static ArchitectureConfig ConfigFromFixture(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var c = doc.RootElement;
        int[] Ints(string name) => c.GetProperty(name).EnumerateArray().Select(e => e.ValueKind == JsonValueKind.String ? VggConfig.MaxPool : e.GetInt32()).ToArray();
        return c.GetProperty("family").GetString() switch
        {
            "densenet" => new DenseNetConfig(c.GetProperty("growth_rate").GetInt32(), Ints("block_config"), c.GetProperty("num_init_features").GetInt32(),
                c.GetProperty("bn_size").GetInt32(), c.GetProperty("drop_rate").GetDouble()),
            "resnet" => new ResNetConfig(c.GetProperty("block").GetString() == "basic" ? ResNetBlock.Basic : ResNetBlock.Bottleneck, Ints("layers"), c.GetProperty("base_width").GetInt32()),
            "vgg" => new VggConfig(Ints("cfg"), c.GetProperty("batch_norm").GetBoolean(), c.GetProperty("classifier_hidden").GetInt32(), c.GetProperty("avgpool")[0].GetInt32()),
            var f => throw new InvalidDataException($"unknown family {f}"),
        };
    }
}
