using System.IO.MemoryMappedFiles;
using System.Text;

namespace MLNet.ImageTransfer.Engine;

/// <summary>
/// Looks up a few named symbols — local ones included — in the full symbol table (<c>.symtab</c>) of an ELF64
/// little-endian shared library, to reach objects a library does not export.
/// </summary>
/// <remarks>
/// Written here rather than taken from an ELF package because of the size of the job: libtorch_cpu.so's
/// <c>.symtab</c> holds over half a million entries and a 79 MB string table, and a general reader materialises a
/// string per symbol. This maps the file and searches the string table for the wanted names' bytes (a vectorised
/// scan), then reads only the symbol entries whose name offsets matched. Nothing is written; the file stays mapped
/// only for the duration of <see cref="Find"/>.
/// </remarks>
internal static class ElfSymbolTable
{
    const uint SectionSymbolTable = 2; // SHT_SYMTAB

    /// <summary>One symbol: its value (the address relative to the library's load base) and size in bytes.</summary>
    internal readonly record struct Symbol(ulong Value, ulong Size);

    /// <summary>
    /// Finds each of <paramref name="names"/> in the library's <c>.symtab</c>. Names not defined there are absent from
    /// the result; a file that is not ELF64 little-endian, or has no <c>.symtab</c> (a stripped library), gives an
    /// empty result.
    /// </summary>
    public static unsafe IReadOnlyDictionary<string, Symbol> Find(string path, IReadOnlyCollection<string> names)
    {
        var found = new Dictionary<string, Symbol>(StringComparer.Ordinal);
        using var file = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        using var view = file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        byte* start = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref start);
        try
        {
            long length = (long)view.SafeMemoryMappedViewHandle.ByteLength;
            var image = new ReadOnlySpanOver(start + view.PointerOffset, length);
            if (length < 64 || image.U32(0) != 0x464C457F || image.U8(4) != 2 || image.U8(5) != 1) return found;

            long sectionTable = (long)image.U64(0x28);
            int sectionSize = image.U16(0x3A), sectionCount = image.U16(0x3C);
            for (int s = 0; s < sectionCount; s++)
            {
                long header = sectionTable + (long)s * sectionSize;
                if (image.U32(header + 4) != SectionSymbolTable) continue;
                long symbols = (long)image.U64(header + 0x18), symbolsLength = (long)image.U64(header + 0x20);
                long entrySize = (long)image.U64(header + 0x38);
                long strings = (long)image.U64(sectionTable + (long)image.U32(header + 0x28) * sectionSize + 0x18);
                long stringsLength = (long)image.U64(sectionTable + (long)image.U32(header + 0x28) * sectionSize + 0x20);
                if (entrySize < 24 || symbols + symbolsLength > length || strings + stringsLength > length) return found;

                var nameOffsets = FindNameOffsets(image.Slice(strings, stringsLength), names);
                if (nameOffsets.Count == 0) return found;
                for (long entry = symbols; entry + entrySize <= symbols + symbolsLength; entry += entrySize)
                {
                    if (!nameOffsets.TryGetValue(image.U32(entry), out var name) || found.ContainsKey(name)) continue;
                    if (image.U16(entry + 6) == 0) continue; // SHN_UNDEF: a reference, not the definition
                    found[name] = new Symbol(image.U64(entry + 8), image.U64(entry + 16));
                }
                return found;
            }
            return found;
        }
        finally
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
        }
    }

    /// <summary>Every offset in the string table where one of the names starts and is NUL-terminated.</summary>
    static Dictionary<uint, string> FindNameOffsets(ReadOnlySpanOver table, IReadOnlyCollection<string> names)
    {
        var offsets = new Dictionary<uint, string>();
        foreach (var name in names)
        {
            var needle = Encoding.ASCII.GetBytes(name + "\0");
            // Linkers merge string tails, so a name may also start inside a longer string: every match counts.
            for (long from = 0; ;)
            {
                long at = table.IndexOf(needle, from);
                if (at < 0) break;
                offsets[(uint)at] = name;
                from = at + 1;
            }
        }
        return offsets;
    }

    /// <summary>A bounds-checked little-endian view of mapped memory larger than a <see cref="Span{T}"/> can index.</summary>
    readonly unsafe struct ReadOnlySpanOver(byte* start, long length)
    {
        readonly byte* _start = start;
        public long Length { get; } = length;

        byte* At(long offset, int size) =>
            offset >= 0 && offset + size <= Length ? _start + offset : throw new InvalidDataException("ELF structure points outside the file.");

        public byte U8(long offset) => *At(offset, 1);
        public ushort U16(long offset) => *(ushort*)At(offset, 2);
        public uint U32(long offset) => *(uint*)At(offset, 4);
        public ulong U64(long offset) => *(ulong*)At(offset, 8);
        public ReadOnlySpanOver Slice(long offset, long length) => new(At(offset, 0), length <= Length - offset ? length : throw new InvalidDataException("ELF section outside the file."));

        /// <summary>The first index at or after <paramref name="from"/> where <paramref name="needle"/> starts, or -1.</summary>
        public long IndexOf(ReadOnlySpan<byte> needle, long from)
        {
            const int Chunk = 1 << 30;
            for (long chunkStart = from; chunkStart < Length; chunkStart += Chunk - needle.Length)
            {
                int size = (int)Math.Min(Chunk, Length - chunkStart);
                int hit = new ReadOnlySpan<byte>(_start + chunkStart, size).IndexOf(needle);
                if (hit >= 0) return chunkStart + hit;
                if (chunkStart + size >= Length) break;
            }
            return -1;
        }
    }
}
