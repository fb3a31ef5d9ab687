using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using System.Text;

namespace MLNet.ImageTransfer.Engine;

/// <summary>
/// The CPU cache sizes that libtorch's oneDNN sizes its convolution kernels by, and their repair on machines whose
/// CPUID hides them.
/// </summary>
/// <remarks>
/// <para>libtorch 2.10 (TorchSharp 0.107) bundles oneDNN 3.7.1, whose CPU detection (Xbyak's <c>Cpu</c> class, one
/// static object behind the local function <c>dnnl::impl::cpu::x64::cpu()</c>) always assumes three data-cache levels
/// on AMD and sizes each from CPUID leaf 0x8000001D. Some hypervisors return zeros there; each level then measures
/// (0+1)·(0+1)·(0+1)·(0+1) = 1 byte. With 1-byte caches oneDNN's blocking heuristics pick kernels that leave parts of
/// a convolution's gradient unwritten when a blocked layout pads channels (counts not a multiple of 8 on AVX2, 16 on
/// AVX-512) and divide by zero while planning ResNet-50's stride-2 1×1 backward convolution (SIGFPE: the process dies).</para>
/// <para>oneDNN 3.8 treats such a leaf as unknown — no cache levels — and falls back to built-in sizes (32 KiB,
/// 512 KiB, 1 MiB per core). The repair does exactly that to the live object: it sets the level count to 0, after
/// checking that the object's layout is the one this code knows (the object's size, and the level/size/sharing
/// fields agreeing with what <c>get_per_core_cache_size</c> returns) and that the sizes are the broken ones. Nothing
/// is written on a healthy machine, and nothing at all if any check fails.</para>
/// <para>The object is not exported: it is found through the library's full symbol table (<see cref="ElfSymbolTable"/>),
/// relative to an exported anchor symbol whose address the dynamic loader gives.</para>
/// </remarks>
internal sealed unsafe class OneDnnCacheInfo
{
        const string CpuObjectSymbol = "_ZZN4dnnl4impl3cpu3x643cpuEvE4cpu_";                    // dnnl::impl::cpu::x64::cpu()::cpu_
    const string CacheSizeFunctionSymbol = "_ZN4dnnl4impl3cpu8platform23get_per_core_cache_sizeEi"; // dnnl::impl::cpu::platform::get_per_core_cache_size(int)
    const string AnchorSymbol = LibTorchNative.GlobalContextSymbol;

    // Xbyak::util::Cpu as bundled in oneDNN 3.2–3.7 (read from the machine code of get_per_core_cache_size):
    // Type (16 bytes), x2APIC flag, numCores_[2], then dataCacheSize_[10], coresSharingDataCache_[10], dataCacheLevels_.
    const ulong CpuObjectSize = 0x90;
    const int DataCacheSizeOffset = 0x1C, CoresSharingOffset = 0x44, DataCacheLevelsOffset = 0x6C, MaxLevels = 10;

    /// <summary>Below this a cache size is not a measurement but CPUID's zeros run through Xbyak's formula.</summary>
    internal const uint ImplausibleCacheBytes = 1024;

    readonly byte* _cpu;
    readonly delegate* unmanaged<int, uint> _perCoreCacheSize;

    OneDnnCacheInfo(byte* cpu, delegate* unmanaged<int, uint> perCoreCacheSize)
    {
        _cpu = cpu;
        _perCoreCacheSize = perCoreCacheSize;
    }

    /// <summary>
    /// Finds oneDNN's CPU object in the loaded libtorch and checks that its layout is the known one. Returns null, with
    /// the reason, when libtorch is not loaded from a file, has no symbol table, or is a build this code does not know.
    /// </summary>
    public static OneDnnCacheInfo? TryLocate(out string reason)
    {
        var path = LibTorchNative.LoadedPath;
        if (path is null) { reason = $"{LibTorchNative.CpuLibrary} is not loaded from a file this process can see"; return null; }
        IReadOnlyDictionary<string, ElfSymbolTable.Symbol> symbols;
        try { symbols = ElfSymbolTable.Find(path, [CpuObjectSymbol, CacheSizeFunctionSymbol, AnchorSymbol]); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            reason = $"could not read the symbol table of {path}: {e.Message}";
            return null;
        }
        if (!symbols.TryGetValue(CpuObjectSymbol, out var cpu) || !symbols.TryGetValue(CacheSizeFunctionSymbol, out var function)
            || !symbols.TryGetValue(AnchorSymbol, out var anchor))
        {
            reason = $"{path} has no symbol table entry for oneDNN's CPU information (a stripped or different libtorch build)";
            return null;
        }
        if (cpu.Size != CpuObjectSize)
        {
            reason = $"oneDNN's CPU information in {path} is {cpu.Size} bytes, not the {CpuObjectSize} of the known layout";
            return null;
        }
        if (!NativeLibrary.TryGetExport(LibTorchNative.Handle, AnchorSymbol, out var anchorAddress))
        {
            reason = $"{AnchorSymbol} is not exported by {path}";
            return null;
        }
        byte* loadBase = (byte*)anchorAddress - anchor.Value;
        var info = new OneDnnCacheInfo(loadBase + cpu.Value, (delegate* unmanaged<int, uint>)(loadBase + function.Value));
        // The first call constructs the object (a function-local static), so the fields read below are final.
        if (!info.LayoutAgrees(out reason)) return null;
        reason = "";
        return info;
    }

    /// <summary>The number of data-cache levels oneDNN believes in (0: unknown, built-in sizes are used).</summary>
    public uint Levels => Read(DataCacheLevelsOffset);

    /// <summary>Per-core size of cache level 1–3 as oneDNN's kernels see it.</summary>
    public uint PerCoreCacheSize(int level) => _perCoreCacheSize(level);

    /// <summary>Whether the recorded sizes are CPUID's hidden-cache zeros run through Xbyak's formula.</summary>
    public bool HoldsHiddenCacheSizes
    {
        get
        {
            uint levels = Levels;
            if (levels == 0) return false;
            for (int l = 0; l < levels; l++)
                if (Read(DataCacheSizeOffset + 4 * l) < ImplausibleCacheBytes) return true;
            return false;
        }
    }

    /// <summary>The per-core sizes of levels 1–3, for messages.</summary>
    public string Describe() => $"L1/L2/L3 {PerCoreCacheSize(1) / 1024}/{PerCoreCacheSize(2) / 1024}/{PerCoreCacheSize(3) / 1024} KiB per core";

    /// <summary>
    /// Makes oneDNN use its built-in cache sizes, as oneDNN 3.8+ does when CPUID hides the caches. Only acts on the
    /// broken values; returns whether oneDNN now reports plausible sizes for every level.
    /// </summary>
    public bool RepairHiddenCacheSizes()
    {
        if (HoldsHiddenCacheSizes) Write(DataCacheLevelsOffset, 0);
        for (int level = 1; level <= 3; level++)
            if (PerCoreCacheSize(level) < ImplausibleCacheBytes) return false;
        return true;
    }

    /// <summary>
    /// Test seam: writes what a machine whose CPUID hides its caches leaves in the object (three levels of 1 byte,
    /// each unshared), so that the detection, the repair and the fallback can be exercised on a healthy machine.
    /// Must run before the process's first convolution: oneDNN caches the kernels it plans.
    /// </summary>
    internal void SimulateHiddenCacheSizes()
    {
        for (int l = 0; l < 3; l++)
        {
            Write(DataCacheSizeOffset + 4 * l, 1);
            Write(CoresSharingOffset + 4 * l, 1);
        }
        Write(DataCacheLevelsOffset, 3);
    }

    bool LayoutAgrees(out string reason)
    {
        uint first = PerCoreCacheSize(1); // constructs the object if nothing has yet
        uint levels = Levels;
        if (levels > MaxLevels) { reason = $"oneDNN's CPU information reads {levels} cache levels: not the known layout"; return false; }
        for (int level = 1; level <= Math.Min(levels, 3u); level++)
        {
            uint sharing = Read(CoresSharingOffset + 4 * (level - 1));
            uint expected = sharing == 0 ? uint.MaxValue : Read(DataCacheSizeOffset + 4 * (level - 1)) / sharing;
            uint actual = level == 1 ? first : PerCoreCacheSize(level);
            if (sharing == 0 || actual != expected)
            {
                reason = $"oneDNN reports {actual} bytes for cache level {level} but the known layout gives {expected}: not the known layout";
                return false;
            }
        }
        reason = "";
        return true;
    }

    uint Read(int offset) => *(uint*)(_cpu + offset);

    void Write(int offset, uint value) => *(uint*)(_cpu + offset) = value;

    /// <summary>
    /// Whether this CPU's CPUID hides the data-cache sizes from oneDNN 3.7's detection: an AMD (or Hygon) processor
    /// whose leaf 0x8000001D reports no cache for the L1 data, L2 or L3 sub-leaf. A cheap, process-wide hint that
    /// needs no libtorch; <see cref="HoldsHiddenCacheSizes"/> is the proof.
    /// </summary>
    public static bool CpuidHidesCacheSizes()
    {
        if (!X86Base.IsSupported) return false;
        var (_, b, c, d) = X86Base.CpuId(0, 0);
        Span<byte> vendor = stackalloc byte[12];
        MemoryMarshal.Write(vendor, b);
        MemoryMarshal.Write(vendor[4..], d);
        MemoryMarshal.Write(vendor[8..], c);
        var name = Encoding.ASCII.GetString(vendor);
        if (name is not ("AuthenticAMD" or "HygonGenuine")) return false;
        foreach (int subLeaf in new[] { 0, 2, 3 })
        {
            var (eax, ebx, ecx, _) = X86Base.CpuId(unchecked((int)0x8000001D), subLeaf);
            ulong bytes = ((ulong)((uint)ebx >> 22) + 1) * (((uint)ebx >> 12 & 0x3FF) + 1) * (((uint)ebx & 0xFFF) + 1) * ((ulong)(uint)ecx + 1);
            if ((eax & 0x1F) == 0 || bytes < ImplausibleCacheBytes) return true;
        }
        return false;
    }
}
