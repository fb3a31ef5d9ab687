using System.Security.Cryptography;
using System.Text.Json;

namespace MLNet.ImageTransfer.Training.Checkpoints;

/// <summary>
/// A folder of training checkpoints, each a subfolder written whole and then renamed into place (a crash or SIGKILL
/// never leaves a half-written checkpoint under a checkpoint's name):
/// <code>
/// DIR/epoch-0003/            last checkpoints (the newest two are kept): checkpoint.json + model.safetensors + optimizer.bin
/// DIR/epoch-0004-step-00005/ written when the run is interrupted (Ctrl+C) mid-epoch
/// DIR/best-epoch-0002/       the best epoch's weights (Keras' save_best_only): checkpoint.json + model.safetensors
/// </code>
/// <c>checkpoint.json</c> (<see cref="TrainingCheckpoint"/>) is written last and lists the SHA-256 of every other file;
/// reading verifies them, and a folder that fails is skipped in favour of the previous checkpoint.
/// </summary>
public sealed class CheckpointDirectory
{
    public const string LastKind = "last";
    public const string BestKind = "best";
    const string TempPrefix = ".tmp-", TrashPrefix = ".trash-";
    static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    /// <summary>Opens (does not create) a checkpoint folder.</summary>
    public CheckpointDirectory(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        Path = System.IO.Path.GetFullPath(path);
    }

    public string Path { get; }

    /// <summary>Last checkpoints kept (the newest ones); older ones are deleted after a new one is in place. Default 2.</summary>
    public int KeepLast { get; init; } = 2;

    /// <summary>Opens every file the writer creates (tests inject failures here; a full disk looks the same).</summary>
    internal Func<string, Stream> OpenWrite { get; init; } = p => new FileStream(p, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);

    /// <summary>Problems found while reading (skipped folders and why).</summary>
    public List<string> Problems { get; } = new();

    /// <summary>True when <see cref="Path"/> holds at least one valid resumable checkpoint.</summary>
    public bool HasCheckpoint => Latest() is not null;

    /// <summary>The newest valid <c>last</c> checkpoint, or null. Invalid folders are skipped and noted in <see cref="Problems"/>.</summary>
    public TrainingCheckpoint? Latest() => ValidCheckpoints(LastKind).FirstOrDefault();

    /// <summary>The valid <c>best</c> checkpoint of <paramref name="epoch"/>, or null.</summary>
    public TrainingCheckpoint? Best(int epoch) => ValidCheckpoints(BestKind).FirstOrDefault(c => c.EpochsCompleted == epoch);

    /// <summary>The newest valid <c>best</c> checkpoint, or null.</summary>
    public TrainingCheckpoint? Best() => ValidCheckpoints(BestKind).FirstOrDefault();

    /// <summary>Valid checkpoints of a kind, newest first.</summary>
    public IEnumerable<TrainingCheckpoint> ValidCheckpoints(string kind) => Checkpoints(kind, verifyHashes: true);

    IEnumerable<TrainingCheckpoint> Checkpoints(string kind, bool verifyHashes)
    {
        if (!System.IO.Directory.Exists(Path)) yield break;
        var prefix = kind == BestKind ? "best-epoch-" : "epoch-";
        var candidates = new List<TrainingCheckpoint>();
        foreach (var dir in System.IO.Directory.EnumerateDirectories(Path, prefix + "*"))
        {
            var checkpoint = TryRead(dir, out var problem, verifyHashes);
            if (checkpoint is null || checkpoint.Kind != kind) { if (problem is not null) Problems.Add(problem); continue; }
            candidates.Add(checkpoint);
        }
        foreach (var c in candidates.OrderByDescending(c => c.Position)) yield return c;
    }

    /// <summary>Reads and verifies one checkpoint folder; null (and why) when it is not a complete checkpoint.</summary>
    /// <param name="folder">The checkpoint folder.</param>
    /// <param name="problem">Why it is not usable, when null is returned.</param>
    /// <param name="verifyHashes">False: check the manifest and file sizes only (pruning, which reads every folder after every epoch).</param>
    public static TrainingCheckpoint? TryRead(string folder, out string? problem, bool verifyHashes = true)
    {
        problem = null;
        var manifestPath = System.IO.Path.Combine(folder, TrainingCheckpoint.ManifestFileName);
        if (!File.Exists(manifestPath)) { problem = $"{folder}: no {TrainingCheckpoint.ManifestFileName} (an incomplete checkpoint)"; return null; }
        TrainingCheckpoint? manifest;
        try { manifest = JsonSerializer.Deserialize<TrainingCheckpoint>(File.ReadAllBytes(manifestPath), Json); }
        catch (Exception e) when (e is JsonException or IOException or NotSupportedException)
        {
            problem = $"{manifestPath}: unreadable ({e.Message})";
            return null;
        }
        if (manifest is null) { problem = $"{manifestPath}: empty"; return null; }
        if (manifest.FormatVersion != TrainingCheckpoint.CurrentFormatVersion)
        {
            problem = $"{manifestPath}: format version {manifest.FormatVersion}, this library reads {TrainingCheckpoint.CurrentFormatVersion}";
            return null;
        }
        foreach (var (name, expected) in manifest.Files)
        {
            var file = System.IO.Path.Combine(folder, name);
            if (!File.Exists(file)) { problem = $"{file}: missing"; return null; }
            var length = new FileInfo(file).Length;
            if (length != expected.Bytes) { problem = $"{file}: {length} bytes, the manifest says {expected.Bytes}"; return null; }
            if (verifyHashes && Sha256Of(file) != expected.Sha256) { problem = $"{file}: SHA-256 differs from the manifest (corrupt)"; return null; }
        }
        return manifest with { Directory = folder };
    }

    /// <summary>
    /// Writes a checkpoint: each file into a temporary folder (flushed to disk), the manifest last, then one rename to
    /// its name. A failure leaves every existing checkpoint as it was and throws <see cref="IOException"/> naming the file.
    /// </summary>
    /// <returns>The written checkpoint (with its <see cref="TrainingCheckpoint.Directory"/>).</returns>
    internal TrainingCheckpoint Write(TrainingCheckpoint manifest, IReadOnlyList<(string Name, Action<Stream> Write)> files)
    {
        string finalName = TrainingCheckpoint.FolderName(manifest.Kind, manifest.EpochsCompleted, manifest.StepsIntoEpoch);
        string final = System.IO.Path.Combine(Path, finalName);
        string temp = System.IO.Path.Combine(Path, TempPrefix + finalName + "-" + Guid.NewGuid().ToString("N")[..8]);
        string current = Path;
        try
        {
            System.IO.Directory.CreateDirectory(Path);
            System.IO.Directory.CreateDirectory(temp);
            var recorded = new Dictionary<string, CheckpointFile>();
            foreach (var (name, write) in files)
            {
                current = System.IO.Path.Combine(temp, name);
                WriteFile(current, write);
                recorded[name] = new CheckpointFile(new FileInfo(current).Length, Sha256Of(current));
            }
            manifest = manifest with { Files = recorded, CreatedUtc = DateTimeOffset.UtcNow };
            current = System.IO.Path.Combine(temp, TrainingCheckpoint.ManifestFileName);
            WriteFile(current, s => JsonSerializer.Serialize(s, manifest, Json));
            current = final;
            if (System.IO.Directory.Exists(final)) Discard(final); // an invalid leftover of the same position
            System.IO.Directory.Move(temp, final);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(temp);
            throw new IOException($"Could not write the {manifest.Kind} checkpoint to '{final}': {e.Message} (at '{current}'). Earlier checkpoints in '{Path}' are unchanged.", e);
        }
        return manifest with { Directory = final };
    }

    /// <summary>
    /// Deletes what is no longer needed: last checkpoints beyond the newest <see cref="KeepLast"/>, best checkpoints no
    /// kept last checkpoint refers to, and leftovers of interrupted writes. Each folder is renamed away first, so that
    /// a half-deleted folder never carries a checkpoint's name.
    /// </summary>
    internal void Prune()
    {
        if (!System.IO.Directory.Exists(Path)) return;
        // Sizes and manifests only: every folder here was verified when it was written (or is older than the newest).
        var last = Checkpoints(LastKind, verifyHashes: false).ToList();
        var keep = last.Take(KeepLast).ToList();
        foreach (var old in last.Skip(KeepLast)) Discard(old.Directory!);
        var keptBest = keep.Select(c => c.KeptEpoch).ToHashSet();
        foreach (var best in Checkpoints(BestKind, verifyHashes: false).ToList())
            if (!keptBest.Contains(best.EpochsCompleted)) Discard(best.Directory!);
        RemoveLeftovers();
    }

    /// <summary>Creates the folder, or fails before any training with an <see cref="IOException"/> naming it (a file in the way, no permission).</summary>
    internal void EnsureWritable()
    {
        try
        {
            System.IO.Directory.CreateDirectory(Path);
            var probe = System.IO.Path.Combine(Path, TempPrefix + "probe-" + Guid.NewGuid().ToString("N")[..8]);
            using (OpenWrite(probe)) { }
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"The checkpoint folder '{Path}' cannot be written: {e.Message}", e);
        }
    }

    /// <summary>Deletes temporary and half-deleted folders of earlier, interrupted runs.</summary>
    internal void RemoveLeftovers()
    {
        if (!System.IO.Directory.Exists(Path)) return;
        foreach (var dir in System.IO.Directory.EnumerateDirectories(Path))
        {
            var name = System.IO.Path.GetFileName(dir);
            if (name.StartsWith(TempPrefix, StringComparison.Ordinal) || name.StartsWith(TrashPrefix, StringComparison.Ordinal)) TryDelete(dir);
        }
    }

    void Discard(string dir)
    {
        var trash = System.IO.Path.Combine(Path, TrashPrefix + System.IO.Path.GetFileName(dir) + "-" + Guid.NewGuid().ToString("N")[..8]);
        System.IO.Directory.Move(dir, trash);
        TryDelete(trash);
    }

    void WriteFile(string path, Action<Stream> write)
    {
        using var stream = OpenWrite(path);
        write(stream);
        stream.Flush();
        if (stream is FileStream fs) fs.Flush(flushToDisk: true);
    }

    static void TryDelete(string dir)
    {
        try { if (System.IO.Directory.Exists(dir)) System.IO.Directory.Delete(dir, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    static string Sha256Of(string file)
    {
        using var stream = File.OpenRead(file);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }
}
