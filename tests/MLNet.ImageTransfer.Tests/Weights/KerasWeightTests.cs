using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Weights;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.Weights;

/// <summary>Keras <c>.h5</c> specifics beyond the parity tests: other namings, the <c>model.save</c> layout, refusals.</summary>
public sealed class KerasWeightTests : IDisposable
{
    readonly string _dir = TestData.NewTempDir("keras");

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    static string W(string name) => WeightFormatParityTests.W(name);

    /// <summary>tf.keras' resnet.py names → keras-applications 1.0's resnet50.py (Caffe) names; the fixture script's rule.</summary>
    static string? CaffeName(string name)
    {
        if (name == "conv1_conv") return "conv1";
        if (name == "conv1_bn") return "bn_conv1";
        if (name == "predictions") return "fc1000";
        var parts = name.Split('_');
        if (parts.Length != 4 || !parts[1].StartsWith("block", StringComparison.Ordinal)) return null;
        string stage = parts[0][4..];
        char letter = (char)('a' + int.Parse(parts[1][5..], System.Globalization.CultureInfo.InvariantCulture) - 1);
        string branch = parts[2] switch { "0" => "1", "1" => "2a", "2" => "2b", _ => "2c" };
        return $"{(parts[3] == "conv" ? "res" : "bn")}{stage}{letter}_branch{branch}";
    }

    [Fact]
    public void Caffe_named_keras_resnet50_files_load_with_their_own_epsilon()
    {
        var path = Path.Combine(_dir, "resnet50_caffe_names.h5");
        KerasH5Writer.Copy(W("keras_resnet_micro.h5"), path, CaffeName);
        using var file = PretrainedWeightFile.Open(path);
        var config = Assert.IsType<ResNetConfig>(file.Adapt(WeightFormatParityTests.ConfigOf("keras_resnet_micro")));
        Assert.Equal(1e-3, config.Epsilon);
        Assert.True(config.StrideOnFirstConv && config.ConvBias);
        using var model = config.Build(5);
        Assert.True(PretrainedWeights.Load(model, file).Report.IsExact);
        model.eval();
        using var _ = no_grad();
        using var x = WeightFormatParityTests.Input("keras_resnet_micro");
        using var logits = model.call(x);
        using var expected = WeightFormatParityTests.Expected("keras_resnet_micro", "logits_caffe");
        Assert.InRange((logits - expected).abs().max().item<float>(), 0, 1e-4);
    }

    [Fact]
    public void Files_saved_with_model_save_keep_their_weights_under_model_weights()
    {
        var path = Path.Combine(_dir, "full_model.h5");
        KerasH5Writer.Copy(W("keras_vgg_micro.h5"), path, n => n, underModelWeights: true);
        using var file = PretrainedWeightFile.Open(path);
        Assert.Equal(WeightFormatParityTests.ConfigOf("keras_vgg_micro"), file.Architecture);
        Assert.Equal(5, file.NumClasses);
    }

    [Fact]
    public void Layers_outside_the_map_are_reported_as_unexpected_by_name()
    {
        var path = Path.Combine(_dir, "extra.h5");
        KerasH5Writer.Copy(W("keras_vgg_micro.h5"), path, n => n == "fc2" ? "my_dense" : n);
        using var file = PretrainedWeightFile.Open(path);
        Assert.Contains(file.Notes, n => n.Contains("my_dense"));
        using var model = file.Adapt(WeightFormatParityTests.ConfigOf("keras_vgg_micro")).Build(5);
        // classifier.3 is missing (so the classifier is re-initialised as a whole module set) and my_dense is unexpected.
        var e = Assert.Throws<WeightLoadException>(() => PretrainedWeights.Load(model, file));
        Assert.Contains("my_dense/my_dense/kernel:0", e.Report.Unexpected);
    }

    [Fact]
    public void An_hdf5_file_that_is_not_keras_weights_is_refused_clearly()
    {
        var path = Path.Combine(_dir, "data.h5");
        var h5 = new PureHDF.H5File { ["values"] = new float[] { 1, 2, 3 } };
        h5.Write(path);
        Assert.Equal(WeightFormat.KerasH5, PretrainedWeightFile.DetectFormat(path));
        var e = Assert.Throws<WeightFileException>(() => PretrainedWeightFile.Open(path));
        Assert.Contains("no 'layer_names' attribute", e.Message);
    }

    [Fact]
    public void Keras_weights_for_an_unknown_network_are_refused_clearly()
    {
        var path = Path.Combine(_dir, "mobilenet.h5");
        KerasH5Writer.Write(path, [("conv_dw_1", [("conv_dw_1/depthwise_kernel:0", new float[9], [3, 3, 1, 1])])]);
        var e = Assert.Throws<WeightFileException>(() => PretrainedWeightFile.Open(path));
        Assert.Contains("not those of keras.applications' DenseNet, ResNet or VGG", e.Message);
    }
}
