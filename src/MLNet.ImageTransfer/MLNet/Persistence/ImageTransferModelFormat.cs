using System.Reflection;
using System.Runtime.CompilerServices;
using System.Text;
using Microsoft.ML;
using Microsoft.ML.Runtime;

namespace MLNet.ImageTransfer.MLNet.Persistence;

/// <summary>
/// Our own model entries inside ML.NET's model <c>.zip</c>: writing them from <see cref="ICanSaveModel.Save"/>, and
/// registering the loader that ML.NET calls for them in <c>mlContext.Model.Load</c>. Versioned from day one.
/// </summary>
/// <remarks>
/// <para><b>Layout of one entry</b> (a directory of the zip, e.g. <c>TransformerChain/Transformer1/</c>):</para>
/// <list type="bullet">
/// <item><c>Model.key</c> — ML.NET's main stream: ML.NET's 256-byte header (model signature, format version, loader
/// signature, loader assembly <c>MLNet.ImageTransfer</c>), then our <em>envelope</em>: the magic <c>IMGTRANS</c>,
/// envelope version (uint32, currently 1), loader signature, model signature, format version (uint32), "written by"
/// text, and the table of contents: for each part its name, length (int64) and SHA-256 (32 bytes).</item>
/// <item>One zip entry per named part (e.g. <c>weights.bin</c>): the payload bytes exactly as the transformer wrote them.</item>
/// </list>
/// <para>
/// Parts are streamed in both directions (ML.NET spools each zip entry through a temporary file, so a 500 MB payload is
/// never held in memory by this code). On load every part's length and SHA-256 are checked, so a damaged file gives
/// one clear <see cref="InvalidDataException"/> instead of whatever the payload parser makes of garbage. A format
/// version outside the loader's range gives a <see cref="NotSupportedException"/> naming both versions.
/// </para>
/// <para>
/// <b>Dispatch</b>: every loader signature is registered in a catalog with the same create method,
/// <see cref="LoadEntry"/>, which reads the envelope and hands over to the <see cref="ModelEntryFormat"/> named there.
/// </para>
/// </remarks>
internal static class ImageTransferModelFormat
{
    /// <summary>Version of the envelope layout itself (not of any payload).</summary>
    public const uint EnvelopeVersion = 1;

    static ReadOnlySpan<byte> Magic => "IMGTRANS"u8;

    /// <summary>
    /// ML.NET calls <c>Assembly.Load</c> on this name when it meets one of our entries. The simple name, without
    /// version: a model saved by v1.2 must still resolve the assembly under v1.3.
    /// </summary>
    static readonly string LoaderAssemblyName = typeof(ImageTransferModelFormat).Assembly.GetName().Name!;

    static readonly string WrittenBy =
        $"MLNet.ImageTransfer {typeof(ImageTransferModelFormat).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "?"}";

    // ---- Save --------------------------------------------------------------------------------------------------

    /// <summary>
    /// Writes a transformer's entry. Call it from <see cref="ICanSaveModel.Save"/> with ML.NET's context; each part's
    /// <c>write</c> receives a write-only, forward-only stream (it may wrap and dispose it).
    /// </summary>
    /// <param name="ctx">The context ML.NET passed to <see cref="ICanSaveModel.Save"/>.</param>
    /// <param name="format">The transformer's format (signatures and version to write).</param>
    /// <param name="parts">Named payload streams; names are file names (letters, digits, <c>._-</c>), unique, case-insensitively.</param>
    public static void Save(ModelSaveContext ctx, ModelEntryFormat format, IReadOnlyList<(string Name, Action<Stream> Write)> parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        Save(ctx, format, parts.Select(p => new ModelPart(p.Name, p.Write)).ToList());
    }

    /// <inheritdoc cref="Save(ModelSaveContext, ModelEntryFormat, IReadOnlyList{ValueTuple{string, Action{Stream}}})"/>
    /// <remarks>
    /// A part marked <see cref="ModelPart.Uncompressed"/> is stored without Deflate where ML.NET's internals allow it
    /// (<see cref="MLNetInternals.TryCreateStoredPart"/>): for large binary payloads (weights barely compress, and
    /// inflating them costs more than reading them). Readers of any version read it the same way.
    /// </remarks>
    public static void Save(ModelSaveContext ctx, ModelEntryFormat format, IReadOnlyList<ModelPart> parts)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ArgumentNullException.ThrowIfNull(format);
        ArgumentNullException.ThrowIfNull(parts);
        ValidatePartNames(parts.Select(p => p.Name));
        MLNetInternals.Verify();

        // Header fields follow ML.NET's conventions, for tools that read them; our own checks use the envelope.
        MLNetInternals.SetVersionInfo(ctx, format.ModelSignature, versionWritten: format.Version, versionReadable: format.Version,
            versionWeCanReadBack: format.MinReadableVersion, LoaderAssemblyName, format.LoaderSignature);

        var table = new List<PartInfo>(parts.Count);
        foreach (var (name, write, uncompressed) in parts)
        {
            ArgumentNullException.ThrowIfNull(write, nameof(parts));
            (long Length, byte[] Sha256) written = (0, []);
            Stream? stored = uncompressed ? MLNetInternals.TryCreateStoredPart(ctx, name) : null;
            if (stored is not null)
            {
                using (stored)
                {
                    using var stream = new HashingWriteStream(stored);
                    write(stream);
                    written = stream.Complete();
                }
            }
            else
            {
                MLNetInternals.SaveBinaryStream(ctx, name, writer =>
                {
                    using var stream = new HashingWriteStream(writer.BaseStream);
                    write(stream);
                    written = stream.Complete();
                });
            }
            table.Add(new PartInfo(name, written.Length, written.Sha256));
        }

        // The envelope goes last so that it can carry the parts' lengths and hashes; ML.NET's header (written by
        // ML.NET when Save returns) records where the main stream's block ends.
        var main = MLNetInternals.MainWriter(ctx);
        main.Write(Magic);
        main.Write(EnvelopeVersion);
        main.Write(format.LoaderSignature);
        main.Write(format.ModelSignature);
        main.Write(format.Version);
        main.Write(WrittenBy);
        main.Write(table.Count);
        foreach (var part in table)
        {
            main.Write(part.Name);
            main.Write(part.Length);
            main.Write(part.Sha256);
        }
    }

    internal static void ValidatePartNames(IEnumerable<string> names)
    {
        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var name in names)
        {
            if (string.IsNullOrEmpty(name) || name.Length > 100 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-')
                || name.StartsWith('.'))
                throw new ArgumentException($"Part name '{name}' must be 1-100 ASCII letters, digits, '.', '_' or '-', not starting with '.'.");
            // ML.NET's own streams in every entry directory.
            if (name.Equals("Model.key", StringComparison.OrdinalIgnoreCase) || name.Equals("Model.bin", StringComparison.OrdinalIgnoreCase))
                throw new ArgumentException($"Part name '{name}' is reserved by ML.NET.");
            if (!seen.Add(name))
                throw new ArgumentException($"Part name '{name}' appears twice (names are compared case-insensitively).");
        }
    }

    // ---- Load --------------------------------------------------------------------------------------------------

    /// <summary>
    /// The create method ML.NET invokes (by reflection, as <c>create(env, ctx)</c>) for every loader signature we
    /// register. <paramref name="loadContext"/> is ML.NET's internal <c>ModelLoadContext</c>, positioned at our envelope.
    /// </summary>
    internal static ITransformer LoadEntry(IHostEnvironment env, object loadContext)
    {
        // A process loading our entries scores on ONNX Runtime (saved classifiers and featurizers): start it on the
        // other core while ML.NET loads the rest of the chain on this one.
        Onnx.OrtScoringGraph.WarmUpInBackground();
        var envelope = ReadEnvelope(MLNetInternals.MainReader(loadContext));
        var format = FindFormat(envelope.LoaderSignature)
            ?? throw new InvalidOperationException(
                $"The model contains an MLNet.ImageTransfer component '{envelope.LoaderSignature}' (written by {envelope.WrittenBy}) " +
                $"that this version ({WrittenBy}) does not know. Load it with the version that saved it or a newer one.");
        if (!string.Equals(envelope.ModelSignature, format.ModelSignature, StringComparison.Ordinal))
            throw new InvalidDataException(
                $"The model's '{format.LoaderSignature}' entry has model signature '{envelope.ModelSignature}', '{format.ModelSignature}' expected: the file is corrupt or not what it claims.");
        if (envelope.FormatVersion > format.Version || envelope.FormatVersion < format.MinReadableVersion)
        {
            string age = envelope.FormatVersion > format.Version ? "newer" : "older";
            throw new NotSupportedException(
                $"The model's '{format.LoaderSignature}' component was saved in format version {envelope.FormatVersion} (by {envelope.WrittenBy}), " +
                $"which is {age} than this version ({WrittenBy}) can read: it reads format versions {format.MinReadableVersion} to {format.Version}. " +
                (age == "newer" ? "Update the MLNet.ImageTransfer package to load this model." : "Load and re-save it with an MLNet.ImageTransfer that reads both versions."));
        }

        var parts = new LoadedParts(loadContext, format.LoaderSignature, envelope.FormatVersion, envelope.WrittenBy, envelope.Parts);
        try
        {
            return format.Load(env, parts)
                ?? throw new InvalidOperationException($"The loader of '{format.LoaderSignature}' returned null.");
        }
        finally
        {
            parts.Close(); // ML.NET closes the entry when we return: parts cannot be read later.
        }
    }

    sealed record Envelope(string LoaderSignature, string ModelSignature, uint FormatVersion, string WrittenBy, IReadOnlyList<PartInfo> Parts);

    internal sealed record PartInfo(string Name, long Length, byte[] Sha256);

    static Envelope ReadEnvelope(BinaryReader reader)
    {
        try
        {
            byte[] magic = reader.ReadBytes(Magic.Length);
            if (!magic.AsSpan().SequenceEqual(Magic))
                throw new InvalidDataException($"The model entry does not start with the MLNet.ImageTransfer marker '{Encoding.ASCII.GetString(Magic)}': the file is corrupt.");
            uint envelopeVersion = reader.ReadUInt32();
            if (envelopeVersion != EnvelopeVersion)
                throw new NotSupportedException(
                    $"The model was written by a newer MLNet.ImageTransfer (entry layout version {envelopeVersion}; this version, {WrittenBy}, reads layout version {EnvelopeVersion}). Update the MLNet.ImageTransfer package.");
            string loaderSignature = reader.ReadString();
            string modelSignature = reader.ReadString();
            uint formatVersion = reader.ReadUInt32();
            string writtenBy = reader.ReadString();
            int count = reader.ReadInt32();
            if (count is < 0 or > 10_000) throw new InvalidDataException($"The model entry lists {count} parts: the file is corrupt.");
            var parts = new PartInfo[count];
            for (int i = 0; i < count; i++)
            {
                string name = reader.ReadString();
                long length = reader.ReadInt64();
                byte[] sha = reader.ReadBytes(32);
                if (length < 0 || sha.Length != 32) throw new InvalidDataException("The model entry's table of parts is corrupt.");
                parts[i] = new PartInfo(name, length, sha);
            }
            return new Envelope(loaderSignature, modelSignature, formatVersion, writtenBy, parts);
        }
        catch (Exception e) when (e is EndOfStreamException or FormatException or DecoderFallbackException)
        {
            throw new InvalidDataException("The MLNet.ImageTransfer entry of the model is truncated or corrupt.", e);
        }
    }

    // ---- Registry of formats, and registration in catalogs -------------------------------------------------------

    static readonly object _gate = new();
    static readonly Dictionary<string, ModelEntryFormat> _formats = new(StringComparer.OrdinalIgnoreCase); // ML.NET matches case-insensitively
    static bool _assemblyScanned;
    static readonly ConditionalWeakTable<ComponentCatalog, HashSet<string>> _registeredIn = new();
    static readonly MethodInfo _loadEntry = typeof(ImageTransferModelFormat).GetMethod(nameof(LoadEntry), BindingFlags.Static | BindingFlags.NonPublic)!;

    /// <summary>
    /// Adds a format to the list that <see cref="RegisterAll"/> (and so <c>RegisterImageTransfer()</c>) registers. Our
    /// own transformers are found through <see cref="ImageTransferModelEntryAttribute"/>; this is for formats declared
    /// elsewhere (tests, extensions). Idempotent for the same instance.
    /// </summary>
    public static void AddLoader(ModelEntryFormat format)
    {
        ArgumentNullException.ThrowIfNull(format);
        lock (_gate)
        {
            ScanAssemblyLocked();
            AddLocked(format);
        }
    }

    /// <summary>
    /// Registers the loader of <paramref name="format"/> in <paramref name="catalog"/> (and adds it to the list of
    /// known formats). Idempotent.
    /// </summary>
    public static void RegisterLoader(ComponentCatalog catalog, ModelEntryFormat format)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        AddLoader(format);
        lock (_gate)
            RegisterLocked(catalog, format);
    }

    /// <summary>Registers every known format's loader in <paramref name="catalog"/>. Idempotent; cheap when nothing is new.</summary>
    public static void RegisterAll(ComponentCatalog catalog)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        MLNetInternals.Verify(); // fail here, at registration, if ML.NET's internals differ — not in the middle of a Save.
        lock (_gate)
        {
            ScanAssemblyLocked();
            foreach (var format in _formats.Values)
                RegisterLocked(catalog, format);
        }
    }

    /// <summary>The formats known so far (for diagnostics and tests).</summary>
    public static IReadOnlyList<ModelEntryFormat> KnownFormats()
    {
        lock (_gate)
        {
            ScanAssemblyLocked();
            return _formats.Values.ToArray();
        }
    }

    static ModelEntryFormat? FindFormat(string loaderSignature)
    {
        lock (_gate)
        {
            ScanAssemblyLocked();
            return _formats.GetValueOrDefault(loaderSignature);
        }
    }

    static void RegisterLocked(ComponentCatalog catalog, ModelEntryFormat format)
    {
        var done = _registeredIn.GetOrCreateValue(catalog);
        if (done.Contains(format.LoaderSignature)) return;
        MLNetInternals.AddModelLoader(catalog, format.LoaderSignature, $"MLNet.ImageTransfer {format.LoaderSignature}", _loadEntry);
        done.Add(format.LoaderSignature);
    }

    static void AddLocked(ModelEntryFormat format)
    {
        if (_formats.TryGetValue(format.LoaderSignature, out var existing))
        {
            if (!ReferenceEquals(existing, format))
                throw new InvalidOperationException($"Two MLNet.ImageTransfer model formats use loader signature '{format.LoaderSignature}': {existing} and {format}.");
            return;
        }
        _formats.Add(format.LoaderSignature, format);
    }

    /// <summary>Reads the <see cref="ImageTransferModelEntryAttribute"/>s of this assembly, once.</summary>
    static void ScanAssemblyLocked()
    {
        if (_assemblyScanned) return;
        _assemblyScanned = true;
        foreach (var attribute in typeof(ImageTransferModelFormat).Assembly.GetCustomAttributes<ImageTransferModelEntryAttribute>())
        {
            const BindingFlags flags = BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic;
            var type = attribute.DeclaringType;
            object? value = type.GetField(attribute.FormatMemberName, flags)?.GetValue(null)
                ?? type.GetProperty(attribute.FormatMemberName, flags)?.GetValue(null);
            if (value is not ModelEntryFormat format)
            {
                _assemblyScanned = false;
                throw new InvalidOperationException(
                    $"[assembly: ImageTransferModelEntry(typeof({type.Name}), \"{attribute.FormatMemberName}\")] does not name a static {nameof(ModelEntryFormat)} field or property.");
            }
            AddLocked(format);
        }
    }
}

/// <summary>One named part of a model entry to save, and whether to store it uncompressed (large binary payloads).</summary>
internal readonly record struct ModelPart(string Name, Action<Stream> Write, bool Uncompressed = false);

/// <summary>
/// The saved parts of one entry, handed to <see cref="ModelEntryFormat.Load"/>. Valid only during that call (ML.NET
/// closes the entry afterwards). Each read checks the part's recorded length and SHA-256.
/// </summary>
internal sealed class LoadedParts
{
    readonly object _loadContext;
    readonly Dictionary<string, ImageTransferModelFormat.PartInfo> _parts;
    bool _closed;

    internal LoadedParts(object loadContext, string loaderSignature, uint formatVersion, string writtenBy, IReadOnlyList<ImageTransferModelFormat.PartInfo> parts)
    {
        _loadContext = loadContext;
        LoaderSignature = loaderSignature;
        FormatVersion = formatVersion;
        WrittenBy = writtenBy;
        _parts = new Dictionary<string, ImageTransferModelFormat.PartInfo>(StringComparer.OrdinalIgnoreCase);
        foreach (var part in parts)
            if (!_parts.TryAdd(part.Name, part))
                throw new InvalidDataException($"The model's '{loaderSignature}' entry lists part '{part.Name}' twice: the file is corrupt.");
        Names = parts.Select(p => p.Name).ToArray();
    }

    /// <summary>The entry's loader signature.</summary>
    public string LoaderSignature { get; }

    /// <summary>The format version the entry was saved with (between the format's MinReadableVersion and Version).</summary>
    public uint FormatVersion { get; }

    /// <summary>Which library version saved the entry, e.g. "MLNet.ImageTransfer 1.0.0+abc" (informational).</summary>
    public string WrittenBy { get; }

    /// <summary>The names of the saved parts, in the order they were written.</summary>
    public IReadOnlyList<string> Names { get; }

    public bool Contains(string name) => _parts.ContainsKey(name);

    /// <summary>
    /// Reads part <paramref name="name"/> with <paramref name="read"/>, which gets a forward-only stream of exactly the
    /// saved bytes. Throws <see cref="InvalidDataException"/> if the part is missing from the file, or its length or
    /// SHA-256 differ from what was saved (also when <paramref name="read"/> failed because of that damage).
    /// </summary>
    public T Read<T>(string name, Func<Stream, T> read)
    {
        ArgumentNullException.ThrowIfNull(read);
        if (_closed) throw new InvalidOperationException("Model parts can only be read while the model is loading (inside the load callback).");
        if (!_parts.TryGetValue(name, out var info))
            throw new KeyNotFoundException($"The model's '{LoaderSignature}' entry (format v{FormatVersion}) has no part '{name}'; it has: {string.Join(", ", Names)}.");

        T result = default!;
        bool found = MLNetInternals.TryLoadBinaryStream(_loadContext, info.Name, reader =>
        {
            var stream = new VerifyingReadStream(reader.BaseStream, info.Length);
            try
            {
                result = read(stream);
            }
            catch (Exception e)
            {
                // A parser choking on damaged bytes should report the damage, not its own confusion. The parser's
                // error goes into the message, not InnerException, so that GetBaseException() (the innermost
                // exception, under ML.NET's reflection wrappers) is this one.
                string? damage;
                try { damage = stream.DrainAndVerify(info.Sha256); }
                catch (IOException) { damage = "it cannot be read"; }
                if (damage is not null) throw Corrupt(info.Name, $"{damage} (reading it failed with {e.GetType().Name}: {e.Message})");
                throw;
            }
            var problem = stream.DrainAndVerify(info.Sha256);
            if (problem is not null) throw Corrupt(info.Name, problem);
        });
        if (!found) throw Corrupt(info.Name, "it is missing from the file");
        return result;
    }

    /// <inheritdoc cref="Read{T}(string, Func{Stream, T})"/>
    public void Read(string name, Action<Stream> read)
    {
        ArgumentNullException.ThrowIfNull(read);
        Read<object?>(name, stream => { read(stream); return null; });
    }

    /// <summary>
    /// Reads part <paramref name="name"/> into one array of exactly its recorded length, straight from the archive
    /// where ML.NET's internals allow it (no temporary file, no intermediate buffers; see
    /// <see cref="MLNetInternals.TryOpenPartDirect"/>). The length is checked here; the SHA-256 is checked by
    /// <see cref="PartBytes.Verify"/> (or in the background from <see cref="PartBytes.StartVerification"/>), so that a
    /// caller can hash on another core while it uses the bytes, or hash only when it first needs them.
    /// </summary>
    /// <param name="name">The part.</param>
    /// <param name="pinned">Allocate the array on the pinned object heap (for native code that keeps pointers into it).</param>
    public PartBytes ReadBytes(string name, bool pinned = false)
    {
        if (_closed) throw new InvalidOperationException("Model parts can only be read while the model is loading (inside the load callback).");
        if (!_parts.TryGetValue(name, out var info))
            throw new KeyNotFoundException($"The model's '{LoaderSignature}' entry (format v{FormatVersion}) has no part '{name}'; it has: {string.Join(", ", Names)}.");
        if (info.Length > Array.MaxLength)
            throw new InvalidDataException($"Part '{info.Name}' of the model's '{LoaderSignature}' component is {info.Length} bytes, more than one array holds.");
        var bytes = GC.AllocateUninitializedArray<byte>((int)info.Length, pinned);

        // What is wrong with the part as read from source, or null when it has exactly the recorded length.
        string? Fill(Stream source)
        {
            try
            {
                int read = 0;
                while (read < bytes.Length)
                {
                    int n = source.Read(bytes, read, bytes.Length - read);
                    if (n == 0) return $"it ends after {read} bytes, {info.Length} expected";
                    read += n;
                }
                return source.ReadByte() >= 0 ? $"it is longer than the {info.Length} bytes recorded" : null;
            }
            catch (Exception e) when (e is IOException or InvalidDataException)
            {
                return $"it cannot be read ({e.Message})"; // e.g. the zip's own CRC or Deflate data is damaged
            }
        }

        string? problem;
        if (MLNetInternals.TryOpenPartDirect(_loadContext, info.Name, out var direct, out _))
        {
            if (direct is null) throw Corrupt(info.Name, "it is missing from the file");
            using (direct) problem = Fill(direct);
        }
        else
        {
            problem = null;
            if (!MLNetInternals.TryLoadBinaryStream(_loadContext, info.Name, reader => problem = Fill(reader.BaseStream)))
                throw Corrupt(info.Name, "it is missing from the file");
        }
        if (problem is not null) throw Corrupt(info.Name, problem);
        return new PartBytes(bytes, info.Sha256, problem => Corrupt(info.Name, problem));
    }

    internal void Close() => _closed = true;

    InvalidDataException Corrupt(string part, string problem)
        => new($"The model file is corrupt: part '{part}' of its '{LoaderSignature}' component: {problem}.");
}

/// <summary>
/// A part's bytes, read with their length checked and their SHA-256 checked on demand (<see cref="LoadedParts.ReadBytes"/>).
/// Thread-safe.
/// </summary>
internal sealed class PartBytes
{
    readonly byte[] _sha256;
    readonly Func<string, InvalidDataException> _corrupt;
    readonly Lazy<Task<string?>> _check;

    internal PartBytes(byte[] bytes, byte[] sha256, Func<string, InvalidDataException> corrupt)
    {
        Bytes = bytes;
        _sha256 = sha256;
        _corrupt = corrupt;
        _check = new(() => Task.Run(() => System.Security.Cryptography.SHA256.HashData(Bytes).AsSpan().SequenceEqual(_sha256) ? null : "its SHA-256 does not match"),
            LazyThreadSafetyMode.ExecutionAndPublication);
    }

    /// <summary>The bytes as saved (not yet known to be intact until <see cref="Verify"/> returns).</summary>
    public byte[] Bytes { get; }

    /// <summary>Starts hashing on the thread pool (idempotent); <see cref="Verify"/> then waits for it.</summary>
    public PartBytes StartVerification()
    {
        _ = _check.Value;
        return this;
    }

    /// <summary>Returns the bytes once their SHA-256 matches the saved one; throws <see cref="InvalidDataException"/> otherwise.</summary>
    public byte[] Verify()
    {
        var problem = _check.Value.GetAwaiter().GetResult();
        return problem is null ? Bytes : throw _corrupt(problem);
    }
}
