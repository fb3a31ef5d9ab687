using System.Buffers.Binary;
using System.IO.Compression;
using System.Text.RegularExpressions;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Weights.PyTorch;

/// <summary>The state dict found in a PyTorch file, with what was done to find it.</summary>
internal sealed class PyTorchStateDict(OrderedDictionary<string, Tensor> tensors, IReadOnlyList<WeightTensorInfo> entries, IReadOnlyList<string> notes) : IDisposable
{
    /// <summary>Tensors by key (prefixes such as <c>module.</c> removed), in the file's order, with their stored dtype.</summary>
    public OrderedDictionary<string, Tensor> Tensors { get; } = tensors;
    /// <summary>The tensors as stored: original key, dtype, shape.</summary>
    public IReadOnlyList<WeightTensorInfo> Entries { get; } = entries;
    public IReadOnlyList<string> Notes { get; } = notes;

    public void Dispose()
    {
        foreach (var t in Tensors.Values) t.Dispose();
        Tensors.Clear();
    }
}

/// <summary>
/// Reader of files written by <c>torch.save</c>: the zip format (PyTorch ≥ 1.6: <c>ARCHIVE/data.pkl</c> plus one
/// entry per storage, <c>ARCHIVE/data/KEY</c>) and the legacy format (a sequence of pickles followed by the raw
/// storages). Only the state dict is read, through <see cref="RestrictedUnpickler"/>, which never executes anything:
/// the file may hold a bare <c>state_dict()</c> or a checkpoint dict (<c>{"state_dict": …}</c>, <c>{"model": …}</c>…),
/// and the <c>module.</c> prefix of DataParallel / DistributedDataParallel (or <c>_orig_mod.</c> of torch.compile)
/// is removed.
/// </summary>
internal static class PyTorchCheckpoint
{
    /// <summary>Largest pickle accepted (a state dict's pickle is kilobytes to a few megabytes).</summary>
    public const int MaxPickleBytes = 256 << 20;

    /// <summary>Keys of a checkpoint dict under which a state dict is looked for, in this order.</summary>
    public static readonly string[] StateDictKeys = ["state_dict", "model_state_dict", "model", "module", "net", "network", "weights", "params"];

    static readonly string[] WrapperPrefixes = ["module.", "_orig_mod."];

    static readonly byte[] LegacyMagic = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]; // 0x1950a86a20f9469cfc6c, little-endian

    static readonly Regex SafeStorageKey = new("^[A-Za-z0-9_]{1,64}$", RegexOptions.CultureInvariant);

    public static bool IsZip(ReadOnlySpan<byte> head) => head.Length >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4;

    /// <summary>True for the start of a legacy (pre-1.6 / <c>_use_new_zipfile_serialization=False</c>) file.</summary>
    public static bool IsLegacy(ReadOnlySpan<byte> head)
        => head.Length >= 14 && head[0] == 0x80 && head[2] == 0x8a && head[3] == 10 && head.Slice(4, 10).SequenceEqual(LegacyMagic);

    public static PyTorchStateDict Read(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        Span<byte> head = stackalloc byte[16];
        int n = stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        stream.Position = 0;
        if (IsZip(head[..n])) return ReadZip(stream, path);
        if (IsLegacy(head[..n])) return ReadLegacy(stream, path);
        if (n >= 2 && head[0] == 0x80)
            throw new WeightFileException(path, "the file is a bare pickle without PyTorch's header (torch.save writes a zip or a legacy header); it cannot be read as weights.");
        throw new WeightFileException(path, "the file is neither a PyTorch zip (torch.save since 1.6) nor a legacy torch.save file.");
    }

    // ---- zip format ---------------------------------------------------------------------------------------------

    /// <summary>Largest expansion of a deflated entry (deflate's limit is about 1032:1); a larger claim is a zip bomb or corruption.</summary>
    const long MaxDeflateRatio = 1100;

    static PyTorchStateDict ReadZip(Stream stream, string path)
    {
        // .NET's zip reader reports a corrupt archive (bad headers, CRC mismatch, unknown compression method) while
        // entries are listed, opened or read: all of it is the file's fault.
        try { return ReadZipArchive(stream, path); }
        catch (InvalidDataException e) { throw new WeightFileException(path, $"the zip structure is invalid ({e.Message}).", e); }
        catch (NotSupportedException e) { throw new WeightFileException(path, $"the zip uses a feature that cannot be read ({e.Message}).", e); }
    }

    static PyTorchStateDict ReadZipArchive(Stream stream, string path)
    {
        using (var zip = new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: true))
        {
            var entries = new Dictionary<string, ZipArchiveEntry>(StringComparer.Ordinal);
            foreach (var e in zip.Entries)
            {
                string name = e.FullName;
                if (IsUnsafeEntryName(name))
                    throw new WeightFileException(path, $"the zip contains the entry '{name}', whose path leaves the archive (absolute, drive or '..' component); refusing the file.");
                if (!entries.TryAdd(name, e))
                    throw new WeightFileException(path, $"the zip contains the entry '{name}' twice; refusing the file.");
            }
            var pickles = entries.Keys.Where(k => k.EndsWith("/data.pkl", StringComparison.Ordinal) && k.Count(c => c == '/') == 1).ToList();
            if (pickles.Count == 0)
            {
                if (entries.ContainsKey("data.pkl")) pickles.Add("data.pkl");
                else if (entries.Keys.Any(k => k.EndsWith(".weights.h5", StringComparison.Ordinal) || k == "config.json"))
                    throw new WeightFileException(path, "the file is a zip without data.pkl: it looks like a Keras 3 '.keras' archive, not a PyTorch file. Save the weights with model.save_weights('x.weights.h5') in Keras 2 format, or export ONNX.");
                else
                    throw new WeightFileException(path, "the file is a zip without 'ARCHIVE/data.pkl'; it is not a file written by torch.save.");
            }
            if (pickles.Count > 1)
                throw new WeightFileException(path, $"the zip holds {pickles.Count} pickles ({string.Join(", ", pickles)}); expected one.");
            string prefix = pickles[0][..^"data.pkl".Length];

            if (entries.TryGetValue(prefix + "byteorder", out var byteorder))
            {
                var buffer = new char[16]; // "little" or "big": never read a (possibly huge) entry whole
                using var r = new StreamReader(byteorder.Open());
                var order = new string(buffer, 0, r.ReadBlock(buffer)).Trim();
                if (order != "little") throw new WeightFileException(path, $"the tensors were saved with byte order '{order}'; only little-endian files are supported.");
            }

            var pickleEntry = entries[pickles[0]];
            CheckDeclaredSize(pickleEntry, stream.Length, path);
            if (pickleEntry.Length > MaxPickleBytes)
                throw new WeightFileException(path, $"its data.pkl is {pickleEntry.Length:N0} bytes, more than the {MaxPickleBytes:N0} allowed for a state dict's pickle.");
            var pickle = ReadEntry(pickleEntry, (int)pickleEntry.Length, path);

            var storages = new Dictionary<string, StorageRef>(StringComparer.Ordinal);
            object? PersistentLoad(object? pid)
            {
                var storage = ParseStoragePid(pid, path);
                if (!SafeStorageKey.IsMatch(storage.Key))
                    throw new WeightFileException(path, $"a storage key '{storage.Key}' is not a plain name; refusing the file.");
                if (storages.TryGetValue(storage.Key, out var known))
                {
                    if (known.DType != storage.DType) throw new WeightFileException(path, $"storage '{storage.Key}' is referenced with two element types.");
                    return known;
                }
                if (!entries.TryGetValue(prefix + "data/" + storage.Key, out var entry))
                    throw new WeightFileException(path, $"storage '{storage.Key}' has no entry '{prefix}data/{storage.Key}' in the zip; the file is incomplete.");
                long bytes = CheckedBytes(storage, path);
                CheckDeclaredSize(entry, stream.Length, path);
                if (entry.Length < bytes)
                    throw new WeightFileException(path, $"storage '{storage.Key}' needs {bytes:N0} bytes but its entry has {entry.Length:N0}; the file is truncated or corrupt.");
                storages[storage.Key] = storage;
                return storage;
            }

            object? root = new RestrictedUnpickler(pickle, 0, path, PersistentLoad).Load();
            var loaded = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            try
            {
                Tensor LoadStorage(StorageRef s)
                {
                    if (loaded.TryGetValue(s.Key, out var t)) return t;
                    var entry = entries[prefix + "data/" + s.Key];
                    t = empty([s.ElementCount], ToScalarType(s.DType), CPU);
                    loaded[s.Key] = t;
                    using var es = entry.Open();
                    FillTensor(t, es, path, s.Key);
                    return t;
                }
                var notes = new List<string>();
                return Extract(FindStateDict(root, notes, path), notes, LoadStorage, path);
            }
            finally
            {
                foreach (var t in loaded.Values) t.Dispose();
            }
        }
    }

    /// <summary>
    /// Plausibility of an entry's declared sizes before anything is allocated from them: its compressed bytes lie in the
    /// file, and it expands no more than deflate can. The pickle's declared storage sizes then cap what is read (never
    /// more than a storage needs), so a zip bomb costs at most the tensors the pickle declares.
    /// </summary>
    static void CheckDeclaredSize(ZipArchiveEntry entry, long fileLength, string path)
    {
        if (entry.CompressedLength > fileLength)
            throw new WeightFileException(path, $"the zip entry '{entry.FullName}' declares {entry.CompressedLength:N0} compressed bytes in a {fileLength:N0}-byte file; it is corrupt.");
        if (entry.Length > entry.CompressedLength * MaxDeflateRatio + 4096)
            throw new WeightFileException(path, $"the zip entry '{entry.FullName}' declares {entry.Length:N0} bytes from {entry.CompressedLength:N0} compressed bytes, more than compression can give (a zip bomb or corruption); refusing the file.");
    }

    /// <summary>True for an entry name that is absolute, has a drive, a backslash or a '..' component.</summary>
    internal static bool IsUnsafeEntryName(string name)
        => name.Length == 0 || name.StartsWith('/') || name.StartsWith('\\') || name.Contains('\\') || name.Contains(':') || name.Contains('\0')
           || name.Split('/').Any(part => part == "..");

    static byte[] ReadEntry(ZipArchiveEntry entry, int length, string path)
    {
        var buffer = new byte[length];
        using var s = entry.Open();
        int got = s.ReadAtLeast(buffer, length, throwOnEndOfStream: false);
        if (got < length) throw new WeightFileException(path, $"the entry '{entry.FullName}' ends after {got:N0} of {length:N0} bytes; the file is truncated.");
        return buffer;
    }

    static void FillTensor(Tensor t, Stream source, string path, string key)
    {
        long length = t.NumberOfElements * t.ElementSize;
        if (length == 0) return;
        if (length <= int.MaxValue)
        {
            Span<byte> target = t.bytes;
            int got = source.ReadAtLeast(target, target.Length, throwOnEndOfStream: false);
            if (got < target.Length) throw new WeightFileException(path, $"storage '{key}' ends after {got:N0} of {length:N0} bytes; the file is truncated.");
        }
        else
        {
            try { t.ReadBytesFromStream(source, 1 << 20); }
            catch (EndOfStreamException) { throw new WeightFileException(path, $"storage '{key}' is truncated."); }
        }
    }

    // ---- legacy format ------------------------------------------------------------------------------------------

    static PyTorchStateDict ReadLegacy(Stream stream, string path)
    {
        // The pickles come first and are small; the storages follow. Read a prefix that holds the pickles (growing it
        // while they run past its end, up to MaxPickleBytes), then stream the storages.
        int prefixLength = (int)Math.Min(stream.Length, 4096);
        while (true)
        {
            stream.Position = 0;
            var head = new byte[prefixLength];
            stream.ReadExactly(head);
            try
            {
                return ReadLegacy(stream, path, head);
            }
            catch (TruncatedPickleException) when (prefixLength < Math.Min(stream.Length, MaxPickleBytes))
            {
                prefixLength = (int)Math.Min(Math.Min(stream.Length, MaxPickleBytes), 4L * prefixLength);
            }
        }
    }

    static PyTorchStateDict ReadLegacy(Stream stream, string path, byte[] head)
    {
        var storages = new Dictionary<string, StorageRef>(StringComparer.Ordinal);
        object? PersistentLoad(object? pid)
        {
            var s = ParseStoragePid(pid, path);
            if (storages.TryGetValue(s.Key, out var known))
            {
                if (known.DType != s.DType) throw new WeightFileException(path, $"storage '{s.Key}' is referenced with two element types.");
                return s with { ElementCount = known.ElementCount }; // a view keeps its own offset
            }
            CheckedBytes(s, path);
            storages[s.Key] = s with { ElementOffset = 0 };
            return s;
        }

        int pos = 0;
        object? Next(bool withStorages)
        {
            var u = new RestrictedUnpickler(head, pos, path, withStorages ? PersistentLoad : _ => throw new WeightFileException(path, "a header pickle refers to a storage."));
            try { return u.Load(); }
            finally { pos = u.Position; }
        }
        Next(false); // the magic number (checked by IsLegacy)
        var protocol = Next(false);
        if (protocol is not 1001L) throw new WeightFileException(path, $"legacy protocol version {protocol} is not supported (expected 1001).");
        if (Next(false) is PyDict sysInfo && sysInfo.Items.TryGetValue("little_endian", out var little) && little is false)
            throw new WeightFileException(path, "the file was written on a big-endian machine; only little-endian files are supported.");
        var root = Next(true);
        if (Next(false) is not List<object?> keys || keys.Any(k => k is not string))
            throw new WeightFileException(path, "the legacy file's list of storage keys is missing or malformed.");

        var notes = new List<string>();
        var dict = FindStateDict(root, notes, path);
        var needed = dict.Items.Values.OfType<TensorRef>().Select(r => r.Storage.Key).ToHashSet(StringComparer.Ordinal);
        var loaded = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            // Storages follow the pickles in the order of the key list, each as an int64 element count and the raw data;
            // those the state dict does not use (an optimizer's, say) are skipped.
            stream.Position = pos;
            Span<byte> sizeBytes = stackalloc byte[8];
            var listed = new HashSet<string>(StringComparer.Ordinal);
            foreach (string key in keys.Cast<string>())
            {
                if (!listed.Add(key)) throw new WeightFileException(path, $"the legacy file lists storage '{key}' twice.");
                if (!storages.TryGetValue(key, out var s))
                    throw new WeightFileException(path, $"the legacy file lists storage '{key}', which no tensor refers to; its element size is unknown.");
                if (stream.ReadAtLeast(sizeBytes, 8, throwOnEndOfStream: false) < 8)
                    throw new WeightFileException(path, $"the file ends before storage '{key}'; it is truncated.");
                long numel = BinaryPrimitives.ReadInt64LittleEndian(sizeBytes);
                int elementSize = ElementSize(s.DType);
                if (numel < 0 || numel > (stream.Length - stream.Position) / elementSize)
                    throw new WeightFileException(path, $"storage '{key}' declares {numel:N0} elements, more than the file holds; it is truncated or corrupt.");
                if (numel < s.ElementCount)
                    throw new WeightFileException(path, $"storage '{key}' holds {numel:N0} elements but is referenced with {s.ElementCount:N0}.");
                if (!needed.Contains(key))
                {
                    stream.Seek(numel * elementSize, SeekOrigin.Current);
                    continue;
                }
                var t = empty([numel], ToScalarType(s.DType), CPU);
                loaded[key] = t;
                FillTensor(t, stream, path, key);
            }
            return Extract(dict, notes, s =>
            {
                if (!loaded.TryGetValue(s.Key, out var t)) throw new WeightFileException(path, $"storage '{s.Key}' is missing from the file.");
                return t;
            }, path);
        }
        finally
        {
            foreach (var t in loaded.Values) t.Dispose();
        }
    }

    // ---- shared -------------------------------------------------------------------------------------------------

    /// <summary>('storage', storage_type, key, location, numel[, view_metadata]) → a storage reference.</summary>
    static StorageRef ParseStoragePid(object? pid, string path)
    {
        if (pid is not PyTuple t || t.Count < 5 || t[0] is not "storage")
            throw new WeightFileException(path, $"a persistent id is a {RestrictedUnpickler.Describe(pid)}, not a PyTorch storage reference.");
        if (t[1] is not PyGlobal type || RestrictedUnpickler.StorageDType(type) is not { } dtype)
            throw new WeightFileException(path, $"a storage has type {RestrictedUnpickler.Describe(t[1])}, which is not supported (float, half, bfloat16, double and integer storages are).");
        string key = t[2] as string ?? (t[2] is long l ? l.ToString(System.Globalization.CultureInfo.InvariantCulture) : throw new WeightFileException(path, "a storage key is not a string."));
        string location = t[3] as string ?? "cpu";
        if (t[4] is not long numel || numel < 0) throw new WeightFileException(path, $"storage '{key}' has an invalid element count.");
        long offset = 0;
        if (t.Count >= 6 && t[5] is PyTuple { Count: 3 } view && view[1] is long viewOffset && view[2] is long viewSize)
        {
            // legacy storage view: (view_key, offset, size) into the root storage
            if (viewOffset < 0 || viewSize < 0 || viewOffset + viewSize > numel) throw new WeightFileException(path, $"storage view of '{key}' is out of range.");
            offset = viewOffset;
        }
        if (!SafeStorageKey.IsMatch(key)) throw new WeightFileException(path, $"a storage key '{key}' is not a plain name; refusing the file.");
        return new StorageRef(key, dtype, numel, location, offset);
    }

    static long CheckedBytes(StorageRef s, string path)
    {
        try { return checked(s.ElementCount * ElementSize(s.DType)); }
        catch (OverflowException) { throw new WeightFileException(path, $"storage '{s.Key}' declares an impossible size."); }
    }

    static PyTorchStateDict Extract(PyDict dict, List<string> notes, Func<StorageRef, Tensor> loadStorage, string path)
    {
        var tensors = new OrderedDictionary<string, Tensor>();
        var entries = new List<WeightTensorInfo>();
        var skipped = new List<string>();
        try
        {
            foreach (var (k, v) in dict.Items)
            {
                if (k is not string key) { skipped.Add(k.ToString() ?? "?"); continue; }
                if (v is not TensorRef r) { skipped.Add(key); continue; }
                var storage = loadStorage(r.Storage);
                Tensor tensor;
                if (r.Size.Aggregate(1L, (a, d) => a * d) == 0) tensor = empty(r.Size, storage.dtype, CPU);
                else
                {
                    // The view is named and disposed, never a temporary: TorchSharp's clone() does not keep its receiver
                    // alive, so an unnamed view can be finalized (its native handle freed) by a collection on another
                    // thread while libtorch clones it — a segfault in at::native::clone (see TorchScalars).
                    using var view = storage.as_strided(r.Size, r.Stride, r.Storage.ElementOffset + r.Offset);
                    tensor = view.clone();
                }
                if (tensors.ContainsKey(key)) { tensor.Dispose(); throw new WeightFileException(path, $"the state dict has the key '{key}' twice."); }
                tensors.Add(key, tensor);
                entries.Add(new WeightTensorInfo(key, DTypeName(r.Storage.DType), r.Size));
            }
            if (tensors.Count == 0) throw new WeightFileException(path, "the state dict holds no tensors.");
            if (skipped.Count > 0) notes.Add($"ignored {skipped.Count} non-tensor entr{(skipped.Count == 1 ? "y" : "ies")} of the state dict: {string.Join(", ", skipped.Take(5))}{(skipped.Count > 5 ? ", …" : "")}");
            var stripped = StripWrapperPrefixes(tensors, notes);
            return new PyTorchStateDict(stripped, entries, notes);
        }
        catch
        {
            foreach (var t in tensors.Values) t.Dispose();
            throw;
        }
    }

    static PyDict FindStateDict(object? root, List<string> notes, string path)
    {
        if (root is not PyDict top)
            throw new WeightFileException(path, $"the file holds a {RestrictedUnpickler.Describe(root)}, not a state dict. Save model.state_dict().");
        if (IsStateDict(top)) return top;
        foreach (var key in StateDictKeys)
            if (top.Items.TryGetValue(key, out var inner) && inner is PyDict d && IsStateDict(d))
            {
                notes.Add($"state dict taken from the checkpoint's '{key}' entry (other entries: {string.Join(", ", top.Items.Keys.Where(k => !Equals(k, key)).Select(k => k.ToString()).Take(8))})");
                return d;
            }
        var keys = string.Join(", ", top.Items.Keys.Take(12).Select(k => $"'{k}'"));
        throw new WeightFileException(path, $"no state dict found: the file holds a dict with keys {keys}, none of which is a state dict (looked under {string.Join(", ", StateDictKeys)}).");
    }

    /// <summary>A dict whose values are mostly tensors (a few non-tensor entries, like _extra_state, are tolerated).</summary>
    static bool IsStateDict(PyDict d)
    {
        int tensors = d.Items.Values.Count(v => v is TensorRef);
        return tensors > 0 && tensors >= d.Items.Count - Math.Max(1, d.Items.Count / 10) && d.Items.Values.All(v => v is not PyDict);
    }

    static OrderedDictionary<string, Tensor> StripWrapperPrefixes(OrderedDictionary<string, Tensor> tensors, List<string> notes)
    {
        bool changed = true;
        while (changed)
        {
            changed = false;
            foreach (var prefix in WrapperPrefixes)
            {
                if (tensors.Count == 0 || !tensors.Keys.All(k => k.StartsWith(prefix, StringComparison.Ordinal))) continue;
                var renamed = new OrderedDictionary<string, Tensor>();
                foreach (var (k, v) in tensors) renamed.Add(k[prefix.Length..], v);
                tensors = renamed;
                notes.Add($"removed the '{prefix}' prefix of every key ({(prefix == "module." ? "DataParallel / DistributedDataParallel" : "torch.compile")})");
                changed = true;
            }
        }
        return tensors;
    }

    internal static int ElementSize(PyTorchDType d) => d switch
    {
        PyTorchDType.Float64 or PyTorchDType.Int64 => 8,
        PyTorchDType.Float32 or PyTorchDType.Int32 => 4,
        PyTorchDType.Float16 or PyTorchDType.BFloat16 or PyTorchDType.Int16 => 2,
        _ => 1,
    };

    internal static ScalarType ToScalarType(PyTorchDType d) => d switch
    {
        PyTorchDType.Float32 => ScalarType.Float32,
        PyTorchDType.Float64 => ScalarType.Float64,
        PyTorchDType.Float16 => ScalarType.Float16,
        PyTorchDType.BFloat16 => ScalarType.BFloat16,
        PyTorchDType.Int64 => ScalarType.Int64,
        PyTorchDType.Int32 => ScalarType.Int32,
        PyTorchDType.Int16 => ScalarType.Int16,
        PyTorchDType.Int8 => ScalarType.Int8,
        PyTorchDType.UInt8 => ScalarType.Byte,
        PyTorchDType.Bool => ScalarType.Bool,
        _ => throw new ArgumentOutOfRangeException(nameof(d)),
    };

    static string DTypeName(PyTorchDType d) => d switch
    {
        PyTorchDType.Float32 => "F32", PyTorchDType.Float64 => "F64", PyTorchDType.Float16 => "F16", PyTorchDType.BFloat16 => "BF16",
        PyTorchDType.Int64 => "I64", PyTorchDType.Int32 => "I32", PyTorchDType.Int16 => "I16", PyTorchDType.Int8 => "I8",
        PyTorchDType.UInt8 => "U8", _ => "BOOL",
    };
}
