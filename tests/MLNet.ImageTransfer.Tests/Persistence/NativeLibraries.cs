namespace MLNet.ImageTransfer.Tests.Persistence;

/// <summary>The shared objects mapped into this process, for the tests that prove a scoring process never loads libtorch.</summary>
internal static class NativeLibraries
{
    /// <summary>File names of the .so files in /proc/self/maps, sorted.</summary>
    public static List<string> Mapped() => File.ReadLines("/proc/self/maps")
        .Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        .Where(fields => fields.Length >= 6 && fields[5].Contains(".so"))
        .Select(fields => Path.GetFileName(fields[5])).Distinct().Order().ToList();

    /// <summary>libtorch's libraries and TorchSharp's native bridge.</summary>
    public static bool IsTorch(string library)
        => library.Contains("libtorch", StringComparison.OrdinalIgnoreCase) || library.Contains("LibTorchSharp", StringComparison.OrdinalIgnoreCase);
}
