using Microsoft.Win32.SafeHandles;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Training;

/// <summary>
/// Images already resized for the network (uint8 [3,S,S], 3·S² bytes each) with their class indices. The training
/// loop draws batches from it every epoch without decoding again. When augmentation crops, a training set holds
/// larger sources instead (<see cref="Source"/>: the whole image, interleaved, each at its own size), which the
/// augmentation reads one by one (<see cref="Read"/>).
/// </summary>
/// <remarks>
/// Memory stays bounded whatever the dataset's size: the first <see cref="MemoryBudgetBytes"/> of pixels are kept in
/// memory, the rest go to a temporary file (deleted on dispose) that batches read back with positioned reads. The OS
/// page cache keeps that file in RAM when there is room, without counting against the process, so a large dataset
/// costs disk I/O only under real memory pressure. The file goes to <see cref="Path.GetTempPath"/> (<c>TMPDIR</c>):
/// where that is a RAM-backed tmpfs, point <c>TMPDIR</c> at a disk for datasets larger than memory. <see cref="Batch"/> is safe to call from several threads (the
/// augmentation prefetch workers); <see cref="Add(Tensor, int)"/> and <see cref="Extract"/> are not.
/// </remarks>
public sealed class LabeledImageSet : IDisposable
{
    /// <summary>
    /// Default <see cref="MemoryBudgetBytes"/>: 1 MiB of pixels (≈ 340 images at 32², 6 at 224²). Small on purpose:
    /// the page cache does the real caching of the file, outside the process, and reading it back costs about what a
    /// managed copy does; the budget only spares tiny sets a file. Each set has its own (a run holds a training and a
    /// validation set). At 8 MiB, the pixels held in the managed heap were the largest part of the memory that grew
    /// between 2,000 and 20,000 training images (benchmark runner <c>rss</c>).
    /// </summary>
    public const long DefaultMemoryBudgetBytes = 1L << 20;

    readonly record struct Entry(int Label, int Height, int Width, byte[]? Pixels, long FileOffset);

    readonly List<Entry> _entries;
    readonly List<int> _labels;
    long _inMemoryBytes;
    FileStream? _spill;
    string? _spillPath;
    long _spillLength;

    /// <param name="memoryBudgetBytes">Pixels kept in memory before the rest spill to a temporary file (0: all on disk).</param>
    /// <param name="expectedCount">Rows expected, when known: the row lists are allocated once rather than regrown (each regrowth of a large list leaves garbage on the large-object heap).</param>
    public LabeledImageSet(long memoryBudgetBytes = DefaultMemoryBudgetBytes, int expectedCount = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(memoryBudgetBytes);
        _entries = new List<Entry>(Math.Max(0, expectedCount));
        _labels = new List<int>(Math.Max(0, expectedCount));
        MemoryBudgetBytes = memoryBudgetBytes;
    }

    /// <summary>Bytes of pixels kept in memory; beyond them, images are stored in a temporary file.</summary>
    public long MemoryBudgetBytes { get; }

    /// <summary>What each stored image is: the evaluation geometry (null, the default), or a source augmentation crops from.</summary>
    internal Augmentation.AugmentationSource? Source { get; init; }

    /// <summary>True when every image is [3,S,S] in the evaluation geometry, so rows can be stacked as they are (<see cref="Batch"/>).</summary>
    internal bool HoldsEvaluationGeometry => Source is null or { IsEvaluation: true };

    public int Count => _entries.Count;
    public IReadOnlyList<int> Labels => _labels;

    /// <summary>How many images are stored in the temporary file rather than in memory.</summary>
    public int SpilledCount { get; private set; }

    /// <summary>Adds an image (its pixels are copied; the tensor is disposed: the set takes ownership, as before).</summary>
    public void Add(Tensor resizedImage, int label)
    {
        if (resizedImage.dtype != ScalarType.Byte || resizedImage.dim() != 3 || resizedImage.size(0) != 3)
            throw new ArgumentException("Expected a uint8 tensor [3,S,S].", nameof(resizedImage));
        try
        {
            using var cpu = resizedImage.device_type == TorchSharp.DeviceType.CPU ? resizedImage.contiguous() : resizedImage.cpu().contiguous();
            Store(cpu.bytes, (int)resizedImage.size(1), (int)resizedImage.size(2), label);
        }
        finally
        {
            resizedImage.Dispose();
        }
    }

    /// <summary>Adds an image's bytes: 3·<paramref name="height"/>·<paramref name="width"/> of them (planes [3,H,W] or interleaved [H,W,3], as <see cref="Source"/> says).</summary>
    internal void Add(ReadOnlySpan<byte> pixels, int height, int width, int label)
    {
        if (pixels.Length != 3 * height * width) throw new ArgumentException($"Expected 3×{height}×{width} bytes, got {pixels.Length}.", nameof(pixels));
        Store(pixels, height, width, label);
    }

    /// <summary>The stored size of row <paramref name="row"/>.</summary>
    internal (int Height, int Width) SizeOf(int row) => (_entries[row].Height, _entries[row].Width);

    /// <summary>Copies row <paramref name="row"/>'s bytes (3·H·W) into <paramref name="destination"/>. Thread-safe, as <see cref="Batch"/>.</summary>
    internal void Read(int row, Span<byte> destination)
    {
        var entry = _entries[row];
        int size = 3 * entry.Height * entry.Width;
        if (destination.Length < size) throw new ArgumentException("The destination is too small.", nameof(destination));
        if (entry.Pixels is { } pixels) pixels.CopyTo(destination);
        else ReadSpilled(entry.FileOffset, destination[..size]);
    }

    void Store(ReadOnlySpan<byte> pixels, int height, int width, int label)
    {
        if (_inMemoryBytes + pixels.Length <= MemoryBudgetBytes)
        {
            _entries.Add(new Entry(label, height, width, pixels.ToArray(), -1));
            _inMemoryBytes += pixels.Length;
        }
        else
        {
            if (_spill is null)
            {
                _spillPath = Path.Combine(Path.GetTempPath(), $"mlnet-imagetransfer-images-{Environment.ProcessId}-{Guid.NewGuid():N}.bin");
                _spill = new FileStream(_spillPath, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 16, FileOptions.DeleteOnClose);
            }
            RandomAccess.Write(_spill.SafeFileHandle, pixels, _spillLength);
            _entries.Add(new Entry(label, height, width, null, _spillLength));
            _spillLength += pixels.Length;
            SpilledCount++;
        }
        _labels.Add(label);
    }

    /// <summary>Stacks the given rows into a uint8 batch [N,3,S,S] and an int64 label vector.</summary>
    public (Tensor Images, Tensor Labels) Batch(ReadOnlySpan<int> rows)
    {
        if (rows.Length == 0) throw new ArgumentException("A batch needs at least one row.", nameof(rows));
        var first = _entries[rows[0]];
        int h = first.Height, w = first.Width, bytesPerImage = 3 * h * w;
        var labels = new long[rows.Length];
        var images = empty([rows.Length, 3, h, w], ScalarType.Byte);
        try
        {
            var target = images.bytes;
            for (int i = 0; i < rows.Length; i++)
            {
                var entry = _entries[rows[i]];
                if (entry.Height != h || entry.Width != w)
                    throw new InvalidOperationException($"Cannot batch images of different sizes ({w}×{h} and {entry.Width}×{entry.Height}).");
                var slot = target.Slice(i * bytesPerImage, bytesPerImage);
                if (entry.Pixels is { } pixels) pixels.CopyTo(slot);
                else ReadSpilled(entry.FileOffset, slot);
                labels[i] = entry.Label;
            }
        }
        catch
        {
            images.Dispose();
            throw;
        }
        return (images, tensor(labels));
    }

    void ReadSpilled(long offset, Span<byte> destination)
    {
        SafeFileHandle handle = _spill?.SafeFileHandle ?? throw new ObjectDisposedException(nameof(LabeledImageSet));
        while (destination.Length > 0)
        {
            int n = RandomAccess.Read(handle, destination, offset);
            if (n <= 0) throw new IOException($"The image cache file '{_spillPath}' ended early (was it deleted or truncated?).");
            destination = destination[n..];
            offset += n;
        }
    }

    /// <summary>
    /// Moves the given rows into a new set (stratified validation split); they leave this one. The two sets share this
    /// set's memory budget: the new one gets what the rows left here do not use.
    /// </summary>
    public LabeledImageSet Extract(IReadOnlyCollection<int> rows)
    {
        var taken = new HashSet<int>(rows);
        long stayingInMemory = _inMemoryBytes - taken.Where(i => _entries[i].Pixels is not null).Sum(i => (long)_entries[i].Pixels!.Length);
        var result = new LabeledImageSet(Math.Max(0, MemoryBudgetBytes - stayingInMemory)) { Source = Source };
        var keep = new List<Entry>();
        var buffer = Array.Empty<byte>();
        try
        {
            for (int i = 0; i < _entries.Count; i++)
            {
                var e = _entries[i];
                if (!taken.Contains(i)) { keep.Add(e); continue; }
                int size = 3 * e.Height * e.Width;
                if (e.Pixels is { } pixels)
                {
                    result.Store(pixels, e.Height, e.Width, e.Label);
                    _inMemoryBytes -= size;
                }
                else
                {
                    if (buffer.Length < size) buffer = new byte[size];
                    ReadSpilled(e.FileOffset, buffer.AsSpan(0, size));
                    result.Store(buffer.AsSpan(0, size), e.Height, e.Width, e.Label);
                    SpilledCount--; // its bytes stay in the file as dead space until dispose
                }
            }
        }
        catch
        {
            result.Dispose();
            throw;
        }
        _entries.Clear();
        _entries.AddRange(keep);
        _labels.Clear();
        _labels.AddRange(keep.Select(e => e.Label));
        return result;
    }

    /// <summary>Rows for a stratified validation split: per class, round(fraction·n) rows, at least one when the class has two or more.</summary>
    public IReadOnlyCollection<int> StratifiedSample(double fraction, Random random) => StratifiedSample(_labels, fraction, random);

    /// <summary><see cref="StratifiedSample(double, Random)"/> of rows with these labels (indices into <paramref name="labels"/>).</summary>
    internal static IReadOnlyCollection<int> StratifiedSample(IReadOnlyList<int> labels, double fraction, Random random)
    {
        var chosen = new List<int>();
        foreach (var group in Enumerable.Range(0, labels.Count).GroupBy(i => labels[i]).OrderBy(g => g.Key))
        {
            var rows = group.ToArray();
            random.Shuffle(rows);
            int n = rows.Length < 2 ? 0 : Math.Clamp((int)Math.Round(rows.Length * fraction), 1, rows.Length - 1);
            chosen.AddRange(rows.Take(n));
        }
        return chosen;
    }

    public void Dispose()
    {
        _entries.Clear();
        _labels.Clear();
        _inMemoryBytes = 0;
        SpilledCount = 0;
        _spill?.Dispose(); // DeleteOnClose removes the file
        _spill = null;
    }
}
