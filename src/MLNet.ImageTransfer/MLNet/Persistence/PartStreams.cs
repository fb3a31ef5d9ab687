using System.Security.Cryptography;

namespace MLNet.ImageTransfer.MLNet.Persistence;

/// <summary>
/// Write-only pass-through stream that counts and hashes (SHA-256) what a part writer writes, so that the payload is
/// checked on load without buffering it (payloads can be hundreds of MB). Disposing it leaves the target open:
/// part writers commonly wrap their stream in a <see cref="BinaryWriter"/> they dispose.
/// </summary>
internal sealed class HashingWriteStream(Stream target) : Stream
{
    readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    long _length;
    bool _completed;

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => !_completed;
    public override long Length => _length;
    public override long Position { get => _length; set => throw new NotSupportedException(); }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        if (_completed) throw new ObjectDisposedException(nameof(HashingWriteStream), "The part has already been written.");
        target.Write(buffer);
        _hash.AppendData(buffer);
        _length += buffer.Length;
    }

    public override void WriteByte(byte value) => Write([value]);
    public override void Flush() => target.Flush();

    /// <summary>Ends the part: flushes, and returns its length and SHA-256.</summary>
    public (long Length, byte[] Sha256) Complete()
    {
        if (!_completed)
        {
            target.Flush();
            _completed = true;
        }
        return (_length, _hash.GetCurrentHash());
    }

    protected override void Dispose(bool disposing)
    {
        // Leave the target open (ML.NET owns it) and keep the hash readable until Complete().
        if (disposing && !_completed) target.Flush();
        base.Dispose(disposing);
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}

/// <summary>
/// Read-only stream over a stored part that hashes what is read and never reads past the recorded length; after the
/// part reader is done, <see cref="DrainAndVerify"/> reads the rest and compares length and SHA-256 with the table of
/// contents. Not seekable: part readers read sequentially (copy to a <see cref="MemoryStream"/> if you must seek).
/// </summary>
internal sealed class VerifyingReadStream(Stream source, long expectedLength) : Stream
{
    readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    long _read;

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => expectedLength;
    public override long Position { get => _read; set => throw new NotSupportedException("Part streams are read sequentially."); }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        long left = expectedLength - _read;
        if (left <= 0 || buffer.Length == 0) return 0;
        if (buffer.Length > left) buffer = buffer[..(int)left];
        int n = source.Read(buffer);
        _hash.AppendData(buffer[..n]);
        _read += n;
        return n;
    }

    public override int ReadByte()
    {
        Span<byte> one = stackalloc byte[1];
        return Read(one) == 1 ? one[0] : -1;
    }

    /// <summary>
    /// Reads whatever the part reader left, then checks the part: exactly <c>expectedLength</c> bytes, nothing after,
    /// and the recorded SHA-256. Returns null when intact, else what is wrong.
    /// </summary>
    public string? DrainAndVerify(byte[] expectedSha256)
    {
        var buffer = new byte[81920];
        while (Read(buffer, 0, buffer.Length) > 0) { }
        if (_read != expectedLength)
            return $"it ends after {_read} bytes, {expectedLength} expected";
        if (source.Read(buffer, 0, 1) != 0)
            return $"it is longer than the {expectedLength} bytes recorded";
        return _hash.GetCurrentHash().AsSpan().SequenceEqual(expectedSha256) ? null : "its SHA-256 does not match";
    }

    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException("Part streams are read sequentially.");
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
