// MSBuild inline task (compiled by RoslynCodeTaskFactory, see TorchSharp.LinuxCompat.targets).
// Marks one symbol-version requirement of an ELF64 little-endian shared library as weak, so that the dynamic loader
// accepts the library on a system whose libstdc++ lacks that version. Only the vna_flags field of the matching
// Vernaux entry changes; everything else is byte-identical.
using System;
using System.IO;
using System.Linq;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

public class MarkElfVersionNeedWeak : Task
{
    [Required] public ITaskItem[] Files { get; set; }
    [Required] public string VersionName { get; set; }

    const uint ShtGnuVerneed = 0x6ffffffe;
    const ushort VerFlgWeak = 0x2;

    static readonly string[] SystemLibstdcxxPaths =
    {
        "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/aarch64-linux-gnu/libstdc++.so.6",
        "/usr/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6",
    };

    public override bool Execute()
    {
        if (SystemProvidesVersion())
        {
            Log.LogMessage(MessageImportance.Low, $"System libstdc++ provides {VersionName}; TorchSharp native left as shipped.");
            return true;
        }
        foreach (var item in Files)
        {
            var path = item.ItemSpec;
            try
            {
                var bytes = File.ReadAllBytes(path);
                switch (MarkWeak(bytes, VersionName))
                {
                    case PatchResult.Patched:
                        var tmp = path + ".patching";
                        File.WriteAllBytes(tmp, bytes);
                        // Replace, never write through: the output file may be a hard link into the NuGet cache.
                        File.Delete(path);
                        File.Move(tmp, path);
                        Log.LogMessage(MessageImportance.Normal, $"Marked {VersionName} weak in {path} (system libstdc++ is older than GCC 13).");
                        break;
                    case PatchResult.AlreadyWeak:
                    case PatchResult.NotReferenced:
                        break;
                }
            }
            catch (Exception e)
            {
                Log.LogWarning($"Could not adapt {path} to this system's libstdc++: {e.Message}. TorchSharp may fail to load.");
            }
        }
        return !Log.HasLoggedErrors;
    }

    bool SystemProvidesVersion()
    {
        var needle = Encoding.ASCII.GetBytes(VersionName + "\0");
        foreach (var p in SystemLibstdcxxPaths)
        {
            if (!File.Exists(p)) continue;
            var data = File.ReadAllBytes(p);
            return IndexOf(data, needle) >= 0;
        }
        return false; // no system libstdc++ found where we look: patching is harmless, so patch
    }

    static int IndexOf(byte[] haystack, byte[] needle)
    {
        for (int i = 0; i <= haystack.Length - needle.Length; i++)
        {
            int j = 0;
            while (j < needle.Length && haystack[i + j] == needle[j]) j++;
            if (j == needle.Length) return i;
        }
        return -1;
    }

    public enum PatchResult { Patched, AlreadyWeak, NotReferenced }

    public static PatchResult MarkWeak(byte[] elf, string versionName)
    {
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
            throw new InvalidDataException("not an ELF file");
        if (elf[4] != 2 || elf[5] != 1) throw new InvalidDataException("only ELF64 little-endian is supported");

        ulong shoff = BitConverter.ToUInt64(elf, 0x28);
        int shentsize = BitConverter.ToUInt16(elf, 0x3A);
        int shnum = BitConverter.ToUInt16(elf, 0x3C);
        for (int s = 0; s < shnum; s++)
        {
            int sh = checked((int)shoff + s * shentsize);
            if (BitConverter.ToUInt32(elf, sh + 4) != ShtGnuVerneed) continue;
            int secOffset = checked((int)BitConverter.ToUInt64(elf, sh + 0x18));
            int link = (int)BitConverter.ToUInt32(elf, sh + 0x28);          // index of the string table (.dynstr)
            int entries = (int)BitConverter.ToUInt32(elf, sh + 0x2C);       // sh_info: number of Verneed entries
            int strSh = checked((int)shoff + link * shentsize);
            int strOffset = checked((int)BitConverter.ToUInt64(elf, strSh + 0x18));

            int vn = secOffset;
            for (int i = 0; i < entries; i++)
            {
                int cnt = BitConverter.ToUInt16(elf, vn + 2);
                int aux = vn + (int)BitConverter.ToUInt32(elf, vn + 8);
                for (int a = 0; a < cnt; a++)
                {
                    int nameOffset = strOffset + (int)BitConverter.ToUInt32(elf, aux + 8);
                    if (ReadCString(elf, nameOffset) == versionName)
                    {
                        ushort flags = BitConverter.ToUInt16(elf, aux + 4);
                        if ((flags & VerFlgWeak) != 0) return PatchResult.AlreadyWeak;
                        flags |= VerFlgWeak;
                        elf[aux + 4] = (byte)(flags & 0xff);
                        elf[aux + 5] = (byte)(flags >> 8);
                        return PatchResult.Patched;
                    }
                    int next = (int)BitConverter.ToUInt32(elf, aux + 12);
                    if (next == 0) break;
                    aux += next;
                }
                int vnNext = (int)BitConverter.ToUInt32(elf, vn + 12);
                if (vnNext == 0) break;
                vn += vnNext;
            }
        }
        return PatchResult.NotReferenced;
    }

    static string ReadCString(byte[] data, int offset)
    {
        int end = offset;
        while (end < data.Length && data[end] != 0) end++;
        return Encoding.ASCII.GetString(data, offset, end - offset);
    }
}
