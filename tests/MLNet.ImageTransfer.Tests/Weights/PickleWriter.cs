using System.IO.Compression;
using System.Text;

namespace MLNet.ImageTransfer.Tests.Weights;

/// <summary>
/// Writes pickles opcode by opcode, as an attacker would, in protocol 2 (globals as <c>GLOBAL</c> text lines) or
/// protocol 4 (<c>FRAME</c>, <c>SHORT_BINUNICODE</c>, <c>STACK_GLOBAL</c>, <c>MEMOIZE</c>), and wraps them in a
/// torch.save-shaped zip.
/// </summary>
internal sealed class PickleWriter
{
    readonly MemoryStream _s = new();

    public PickleWriter(int protocol = 2)
    {
        Protocol = protocol;
        _s.WriteByte(0x80);
        _s.WriteByte((byte)protocol);
    }

    public int Protocol { get; }

    public PickleWriter Op(char c) { _s.WriteByte((byte)c); return this; }
    public PickleWriter Raw(params byte[] b) { _s.Write(b); return this; }
    public PickleWriter Text(string s) { _s.Write(Encoding.UTF8.GetBytes(s)); return this; }

    /// <summary>A global: <c>GLOBAL module\nname\n</c> in protocol 2, two strings and <c>STACK_GLOBAL</c> in protocol 4.</summary>
    public PickleWriter Global(string module, string name)
    {
        if (Protocol < 4) return Op('c').Text($"{module}\n{name}\n");
        return Str(module).Memoize().Str(name).Memoize().Raw(0x93).Memoize();
    }

    /// <summary>A string: <c>BINUNICODE</c> in protocol 2, <c>SHORT_BINUNICODE</c> in protocol 4 (when short).</summary>
    public PickleWriter Str(string s)
    {
        var b = Encoding.UTF8.GetBytes(s);
        if (Protocol >= 4 && b.Length < 256) { _s.WriteByte(0x8c); _s.WriteByte((byte)b.Length); }
        else { _s.WriteByte((byte)'X'); _s.Write(BitConverter.GetBytes(b.Length)); }
        _s.Write(b);
        return this;
    }

    public PickleWriter Int(int v) { _s.WriteByte((byte)'J'); _s.Write(BitConverter.GetBytes(v)); return this; }
    public PickleWriter Tuple(int n) { _s.WriteByte(n switch { 1 => 0x85, 2 => 0x86, 3 => 0x87, _ => throw new ArgumentOutOfRangeException(nameof(n)) }); return this; }
    public PickleWriter Memoize() { if (Protocol >= 4) _s.WriteByte(0x94); return this; }
    public PickleWriter Reduce() => Op('R');
    public byte[] Stop() { _s.WriteByte((byte)'.'); return _s.ToArray(); }

    /// <summary><c>_rebuild_tensor_v2(('storage', FloatStorage, key, 'cpu', numel), 0, (size,), (stride,), False, OrderedDict())</c></summary>
    public PickleWriter Tensor(string key, int numel, int size, int stride = 1)
    {
        Global("torch._utils", "_rebuild_tensor_v2");
        Op('(');
        Op('(').Str("storage").Global("torch", "FloatStorage").Str(key).Str("cpu").Int(numel).Op('t').Op('Q');
        Int(0).Int(size).Tuple(1).Int(stride).Tuple(1).Op((char)0x89);
        Global("collections", "OrderedDict").Op(')').Op('R');
        Op('t').Op('R');
        return this;
    }

    public static byte[] Floats(params float[] v) => v.SelectMany(BitConverter.GetBytes).ToArray();

    /// <summary>A torch.save-shaped zip (<c>archive/data.pkl</c>, <c>archive/version</c>, <c>archive/data/KEY</c>) in <paramref name="dir"/>.</summary>
    public static string TorchZip(string dir, byte[] pickle, params (string Key, byte[] Data)[] storages)
        => Zip(dir, [("archive/data.pkl", pickle), ("archive/version", "3\n"u8.ToArray()), .. storages.Select(s => ($"archive/data/{s.Key}", s.Data))]);

    /// <summary>A zip of the given entries, names written exactly as given (unsafe names included).</summary>
    public static string Zip(string dir, IEnumerable<(string Name, byte[] Data)> entries)
    {
        var path = Path.Combine(dir, Guid.NewGuid().ToString("N") + ".pth");
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Create))
            foreach (var (name, data) in entries)
            {
                using var s = zip.CreateEntry(name, CompressionLevel.NoCompression).Open();
                s.Write(data);
            }
        return path;
    }
}
