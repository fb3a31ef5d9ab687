using System.Runtime.InteropServices;

namespace MLNet.ImageTransfer.Engine;

/// <summary>
/// The loaded libtorch CPU library, and the switches of its global context that TorchSharp does not expose (exported
/// C++ members of <c>at::Context</c>, called through their mangled names).
/// </summary>
internal static unsafe class LibTorchNative
{
    public const string CpuLibrary = "libtorch_cpu.so";
    public const string GlobalContextSymbol = "_ZN2at13globalContextEv"; // at::globalContext()

    /// <summary>The file libtorch's CPU library was mapped from (from /proc/self/maps), or null before TorchSharp loaded it or off Linux.</summary>
    public static string? LoadedPath
    {
        get
        {
            if (!OperatingSystem.IsLinux()) return null;
            try
            {
                foreach (var line in File.ReadLines("/proc/self/maps"))
                {
                    int slash = line.IndexOf('/');
                    if (slash >= 0 && line.EndsWith("/" + CpuLibrary, StringComparison.Ordinal) && File.Exists(line[slash..])) return line[slash..];
                }
            }
            catch (IOException) { }
            return null;
        }
    }

    /// <summary>A handle to the already-loaded library (by its path, so that it is the copy TorchSharp uses).</summary>
    public static nint Handle
    {
        get
        {
            var path = LoadedPath;
            if (path is not null && NativeLibrary.TryLoad(path, out var byPath)) return byPath;
            if (NativeLibrary.TryLoad(CpuLibrary, out var byName)) return byName;
            throw new ConvolutionEngineFaultException($"{CpuLibrary} is not loaded, so its convolution settings cannot be changed.");
        }
    }

    /// <summary>Turns oneDNN (MKLDNN) off for every later operation of this process: libtorch's reference kernels run instead.</summary>
    public static void DisableOneDnn() => SetContextFlag("_ZN2at7Context20setUserEnabledMkldnnEb", enabled: false);

    /// <summary>Turns NNPACK off, so libtorch never tries to initialise it (and never prints that it could not).</summary>
    public static void DisableNnpack() => SetContextFlag("_ZN2at7Context20setUserEnabledNNPACKEb", enabled: false);

    /// <summary>Whether oneDNN is enabled in libtorch's global context.</summary>
    public static bool OneDnnEnabled => GetContextFlag("_ZNK2at7Context17userEnabledMkldnnEv");

    static nint Export(string symbol) =>
        NativeLibrary.TryGetExport(Handle, symbol, out var address)
            ? address
            : throw new ConvolutionEngineFaultException($"{CpuLibrary} does not export {symbol}: not the libtorch build this library was made for.");

    static nint Context() => ((delegate* unmanaged<nint>)Export(GlobalContextSymbol))();

    static void SetContextFlag(string setter, bool enabled) =>
        ((delegate* unmanaged<nint, byte, void>)Export(setter))(Context(), enabled ? (byte)1 : (byte)0);

    static bool GetContextFlag(string getter) => ((delegate* unmanaged<nint, byte>)Export(getter))(Context()) != 0;
}
