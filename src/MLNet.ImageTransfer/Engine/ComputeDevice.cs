using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Engine;

/// <summary>Resolves the user's device string (<c>cpu</c>, <c>cuda</c>, <c>cuda:N</c>) to a TorchSharp device.</summary>
public static class ComputeDevice
{
    /// <summary>
    /// Parses and checks a device string. CUDA needs TorchSharp's CUDA runtime package (TorchSharp-cuda-linux or
    /// TorchSharp-cuda-windows) in place of TorchSharp-cpu and a visible GPU; otherwise this throws a message saying so.
    /// </summary>
    public static Device Resolve(string? spec)
    {
        var s = (spec ?? "cpu").Trim().ToLowerInvariant();
        if (s is "" or "cpu") return CPU;
        if (s == "cuda" || s.StartsWith("cuda:", StringComparison.Ordinal))
        {
            int index = 0;
            if (s.Length > 4 && (!int.TryParse(s.AsSpan(5), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out index)))
                throw new ArgumentException($"Invalid device '{spec}': expected cpu, cuda or cuda:N with N a GPU index.");
            if (!cuda.is_available())
                throw new InvalidOperationException(
                    $"Device '{spec}' was requested but CUDA is not available to TorchSharp. This build references the CPU-only " +
                    "runtime (TorchSharp-cpu). To train on an NVIDIA GPU, reference TorchSharp-cuda-linux (or TorchSharp-cuda-windows) " +
                    "instead of TorchSharp-cpu, and check that the NVIDIA driver sees the GPU (nvidia-smi). Use --device cpu otherwise.");
            int count = cuda.device_count();
            if (index >= count)
                throw new ArgumentException($"Device '{spec}' was requested but only {count} CUDA device(s) are visible (cuda:0..cuda:{count - 1}).");
            return new Device(DeviceType.CUDA, index);
        }
        throw new ArgumentException($"Invalid device '{spec}': expected cpu, cuda or cuda:N.");
    }
}
