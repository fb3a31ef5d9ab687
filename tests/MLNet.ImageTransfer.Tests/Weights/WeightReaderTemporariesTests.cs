using MLNet.ImageTransfer.Models;
using MLNet.ImageTransfer.Weights;
using TorchSharp;

namespace MLNet.ImageTransfer.Tests.Weights;

/// <summary>
/// The weight readers leave no tensor to the finalizer: every intermediate (an <c>as_strided</c> view, a transpose, a
/// permute) is named and disposed. TorchSharp 0.107 does not keep a tensor alive across the native call that reads
/// it, so an unnamed temporary — <c>storage.as_strided(…).clone()</c> — can be finalized by a collection on another
/// thread while libtorch still reads it: the long fuzz run's test host died of that (a segfault in
/// <c>at::native::clone</c> under <c>PyTorchCheckpoint.Extract</c>). The race itself cannot be forced from a test; an
/// undisposed intermediate, its precondition, can be counted: a dispose scope tracks every tensor created in it.
/// </summary>
public sealed class WeightReaderTemporariesTests
{
    [Theory]
    [InlineData("resnet_micro_basic.legacy.pth", "resnet_micro_basic")] // as_strided views cloned per tensor
    [InlineData("vgg_micro_bn.pth", "vgg_micro_bn")]
    [InlineData("vgg_micro_bn.safetensors", "vgg_micro_bn")]
    [InlineData("vgg_micro_bn.onnx", "vgg_micro_bn")] // transposed Gemm weights, flattened biases
    [InlineData("keras_vgg_micro.h5", "keras_vgg_micro")] // permuted kernels, fc1's re-ordered inputs
    public void Reading_and_loading_a_file_leaves_no_tensor_undisposed(string fixture, string io)
    {
        var path = WeightFormatParityTests.W(fixture);
        ArchitectureConfig config;
        using (var probe = PretrainedWeightFile.Open(path)) config = probe.Adapt(WeightFormatParityTests.ConfigOf(io));
        using var network = config.Build(5, HeadSpec.Default with { Dropout = 0 });

        using var scope = torch.NewDisposeScope();
        using (var file = PretrainedWeightFile.Open(path))
        {
            Assert.NotEmpty(file.Tensors);
            Assert.True(scope.DisposablesCount >= file.Tensors.Count); // the scope does see the reader's tensors
            PretrainedWeights.Load(network, file);
        }
        Assert.Equal(0, scope.DisposablesCount);
    }
}
