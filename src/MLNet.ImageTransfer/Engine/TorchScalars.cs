using TorchSharp;

namespace MLNet.ImageTransfer.Engine;

/// <summary>
/// Scalars that stay alive across the native call that reads them.
/// </summary>
/// <remarks>
/// TorchSharp 0.107's <see cref="Scalar"/> is a finalizable wrapper of a native pointer with no <c>GC.KeepAlive</c> in
/// the methods that pass it to libtorch, and its implicit conversions (<c>255f - t</c>, <c>t.add(u)</c>'s hidden
/// <c>alpha = 1</c>) create temporaries that nothing references once their pointer is read. A garbage collection on
/// another thread at that moment (decoding and augmentation threads allocate a lot) lets the finalizer free the scalar
/// while libtorch still reads it: "Expected false to be true … Exception raised from toFloat at c10/core/Scalar.h".
/// The first side-by-side benchmark run failed three data-pipeline rows that way (TorchSharp PR #1434 is the upstream
/// fix, unmerged). On the per-image and per-batch paths, pass these rooted constants, or a <c>using var</c> scalar,
/// whose <c>Dispose</c> at the end of the scope keeps it reachable until then.
/// </remarks>
internal static class TorchScalars
{
    /// <summary>The <c>alpha</c> of add/sub: static, so rooted for the life of the process.</summary>
    public static readonly Scalar One = 1.ToScalar();
    public static readonly Scalar Zero = 0.ToScalar();
    public static readonly Scalar ByteMax = 255.ToScalar();
}
