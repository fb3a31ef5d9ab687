using System.Text.Json;
using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Tests.Weights;
using MLNet.ImageTransfer.Weights;

namespace MLNet.ImageTransfer.Tests.Cli;

/// <summary><c>weights inspect</c> and the fine-tuning / weights flags of <c>train</c>, through the real CLI process.</summary>
public class WeightsCliTests
{
    [Fact]
    public void Weights_inspect_lists_tensors_and_the_matching_architecture()
    {
        var (code, stdout, stderr) = CliProcess.Run("weights", "inspect", WeightFormatParityTests.W("keras_resnet_micro.h5"));
        Assert.True(code == 0, stderr + stdout);
        Assert.Contains("Format:        KerasH5", stdout);
        Assert.Contains("stride on the first 1×1 convolution", stdout);
        Assert.Contains("Match:         exact", stdout);
        Assert.Contains("keras-caffe", stdout);
        Assert.Contains("conv1_conv/conv1_conv/kernel:0", stdout);
        Assert.Contains("[7, 7, 3, 2]", stdout);

        var json = CliProcess.Run("weights", "inspect", WeightFormatParityTests.W("resnet_micro.onnx"), "--json");
        Assert.True(json.ExitCode == 0, json.StdErr + json.StdOut);
        using var doc = JsonDocument.Parse(json.StdOut);
        Assert.Equal("Onnx", doc.RootElement.GetProperty("Format").GetString());
        Assert.Equal(5, doc.RootElement.GetProperty("NumClasses").GetInt32());
        Assert.True(doc.RootElement.GetProperty("Match").GetProperty("IsExact").GetBoolean());
        Assert.Equal(64, doc.RootElement.GetProperty("Sha256").GetString()!.Length);
    }

    [Fact]
    public void Weights_inspect_names_registered_architectures()
    {
        // A full-size key set (no values needed for inspection of the layout): resnet18 written with zeros.
        var dir = TestData.NewTempDir("inspect");
        var path = Path.Combine(dir, "resnet18.safetensors");
        using (var network = Architectures.Create("resnet18", 1000))
            SafeTensors.Write(path, network.state_dict().Select(kv => (kv.Key, kv.Value)).ToList());
        var (code, stdout, stderr) = CliProcess.Run("weights", "inspect", path);
        Assert.True(code == 0, stderr + stdout);
        Assert.Contains("Architecture:  resnet18", stdout);
        Assert.Contains("1000 classes", stdout);
    }

    [Fact]
    public void Weights_inspect_refuses_an_unsafe_pickle_with_one_clear_line()
    {
        var (code, stdout, stderr) = CliProcess.Run("weights", "inspect", WeightFormatParityTests.W("malicious_os_system.pth"));
        Assert.Equal(1, code);
        Assert.StartsWith("error: ", stderr);
        Assert.Contains("posix.system", stderr);
        Assert.Empty(stdout);
    }

    [Fact]
    public void Train_takes_weights_and_fine_tuning_flags()
    {
        var root = TestData.ShapesFolder();
        var dir = TestData.NewTempDir("cli-weights");
        var weights = Path.Combine(dir, "resnet18.pth.safetensors");
        using (var network = Architectures.Create("resnet18", 1000))
            SafeTensors.Write(weights, network.state_dict().Select(kv => (kv.Key, kv.Value)).ToList());
        var modelPath = Path.Combine(dir, "m.zip");
        var train = CliProcess.Run("train", "--data", root, "--arch", "resnet18", "--weights", weights, "--image-size", "32",
            "--epochs", "2", "--freeze-epochs", "1", "--trainable-blocks", "2", "--layer-decay", "0.5", "--lr-mult", "stem=0.1",
            "--batch-size", "8", "--seed", "2", "--quiet", "--out", modelPath);
        Assert.True(train.ExitCode == 0, train.StdErr + train.StdOut);
        Assert.Contains("[frozen]", train.StdOut);
        Assert.Contains("[fine-tune, cached features]", train.StdOut); // the frozen blocks' output is kept from epoch 1

        var ml = new Microsoft.ML.MLContext();
        var model = ImageClassificationWorkflow.LoadModel(ml, modelPath, out _);
        var description = ((IEnumerable<Microsoft.ML.ITransformer>)model).OfType<ImageClassifierTransformer>().Single().Classifier.Description;
        Assert.Equal("resnet18.pth.safetensors", description.InitialWeights);
        Assert.Equal("SafeTensors", description.InitialWeightsFormat);
        Assert.Equal("torchvision", description.Preprocessing.Name);
        var phases = description.FineTuning!.Phases;
        Assert.Equal(["head"], phases[0].TrainableGroups);
        Assert.Equal(["layer4.0", "layer4.1", "head"], phases[1].TrainableGroups); // resnet18's last two residual blocks
        Assert.Equal(1e-3 * 0.25, phases[1].LearningRates["layer4.0"], 12);

        var mismatch = CliProcess.Run("train", "--data", root, "--arch", "resnet50", "--weights", WeightFormatParityTests.W("keras_resnet_micro.h5"),
            "--preprocess", "torchvision", "--epochs", "1", "--out", modelPath);
        Assert.Equal(1, mismatch.ExitCode);
        Assert.Contains("keras-caffe", mismatch.StdErr);
        Assert.Contains("--allow-preprocess-mismatch", mismatch.StdErr);

        // Keras weights of another width than resnet50: refused with the keys named (after the Keras variant was chosen: no 'unexpected conv bias').
        var wrongSize = CliProcess.Run("train", "--data", root, "--arch", "resnet50", "--weights", WeightFormatParityTests.W("keras_resnet_micro.h5"),
            "--image-size", "32", "--epochs", "1", "--out", modelPath);
        Assert.Equal(1, wrongSize.ExitCode);
        Assert.Contains("mismatched shapes", wrongSize.StdErr);
        Assert.DoesNotContain("unexpected", wrongSize.StdErr);

        var badFreeze = CliProcess.Run("train", "--data", root, "--freeze", "sometimes", "--out", modelPath);
        Assert.Equal(1, badFreeze.ExitCode);
        Assert.Contains("--freeze", badFreeze.StdErr);
    }
}
