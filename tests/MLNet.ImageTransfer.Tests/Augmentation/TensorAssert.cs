using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.Augmentation;

internal static class TensorAssert
{
    /// <summary>Same shape, same dtype-independent values (torch.equal).</summary>
    public static bool Same(this Tensor a, Tensor b)
        => a.shape.SequenceEqual(b.shape) && a.to_type(ScalarType.Float64).eq(b.to_type(ScalarType.Float64)).all().item<bool>();
}
