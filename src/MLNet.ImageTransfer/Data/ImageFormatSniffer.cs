namespace MLNet.ImageTransfer.Data;

public enum ImageFileFormat { Jpeg, Png, Gif, Bmp, Webp }

/// <summary>Recognises image files by their first bytes, not their extension (real folders hold PNGs named .jpg).</summary>
public static class ImageFormatSniffer
{
    /// <summary>The reason given for a file whose first bytes are not one of the decoded formats.</summary>
    public const string NotAnImage = "not a JPEG, PNG, GIF, BMP or WebP image (checked by content)";

    /// <summary>The format of the file, or null with a reason (empty, unreadable, not an image format we decode).</summary>
    public static ImageFileFormat? Detect(string path, out string? problem)
    {
        Span<byte> head = stackalloc byte[12];
        int read;
        try
        {
            // A bare handle and one positioned read: File.OpenRead would allocate a 4 KiB FileStream buffer per call,
            // which is most of the garbage of scanning a folder of small images.
            using var handle = File.OpenHandle(path);
            read = RandomAccess.Read(handle, head, 0);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            problem = $"unreadable: {e.Message}";
            return null;
        }
        if (read == 0) { problem = "empty file"; return null; }
        var format = Detect(head[..read]);
        problem = format is null ? NotAnImage : null;
        return format;
    }

    public static ImageFileFormat? Detect(ReadOnlySpan<byte> head)
    {
        if (head.Length >= 3 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF) return ImageFileFormat.Jpeg;
        if (head.Length >= 8 && head[..8].SequenceEqual(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A })) return ImageFileFormat.Png;
        if (head.Length >= 6 && (head[..6].SequenceEqual("GIF87a"u8) || head[..6].SequenceEqual("GIF89a"u8))) return ImageFileFormat.Gif;
        if (head.Length >= 2 && head[0] == (byte)'B' && head[1] == (byte)'M') return ImageFileFormat.Bmp;
        if (head.Length >= 12 && head[..4].SequenceEqual("RIFF"u8) && head[8..12].SequenceEqual("WEBP"u8)) return ImageFileFormat.Webp;
        return null;
    }
}
