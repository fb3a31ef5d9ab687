using System.Reflection;
using Microsoft.ML;
using Microsoft.ML.Runtime;

namespace MLNet.ImageTransfer.MLNet.Persistence;

/// <summary>
/// The only code in the product that touches ML.NET internals, through reflection.
/// </summary>
/// <remarks>
/// <para>
/// Why this exists: <see cref="ITransformer"/> requires <see cref="ICanSaveModel.Save(ModelSaveContext)"/>, but every
/// useful member of <see cref="ModelSaveContext"/> is internal, and so are the load side (<c>ModelLoadContext</c>,
/// <c>SignatureLoadModel</c>, <c>VersionInfo</c>) and the way components get into a <see cref="ComponentCatalog"/>
/// (<c>LoadableClassAttribute</c>, which only ML.NET's own assemblies can apply). Without these, a third-party
/// transformer cannot survive <c>mlContext.Model.Save</c>/<c>Load</c> inside a <c>TransformerChain</c>.
/// </para>
/// <para>
/// Every name used is listed in <see cref="Required"/> and resolved all at once, on first use: if ML.NET's internals
/// changed, the first save, load or registration fails with one <see cref="InvalidOperationException"/> that names
/// the ML.NET version this was written against, the version found, and every member that is missing — rather than a
/// <see cref="NullReferenceException"/> half-way through writing a model.
/// </para>
/// <para>
/// Verified against ML.NET 6.0.0 (Microsoft.ML.Core informational version 6.0.0+6eff5cce), by behaviour: the
/// persistence tests, fresh-process save/load round trips, and the committed model files saved by earlier versions.
/// Earlier: ML.NET 5.0.1 (5.0.1+a4f730ec).
/// </para>
/// </remarks>
internal static class MLNetInternals
{
    /// <summary>
    /// The ML.NET release these internals were verified against: <c>MLNetVersion</c> of Directory.Packages.props (the
    /// version the library is built with), stamped into this assembly as <c>[AssemblyMetadata("SupportedMLNetVersion")]</c>.
    /// </summary>
    public static string SupportedMLNetVersion { get; } = typeof(MLNetInternals).Assembly
        .GetCustomAttributes<AssemblyMetadataAttribute>().SingleOrDefault(a => a.Key == "SupportedMLNetVersion")?.Value
        ?? throw new InvalidOperationException("MLNet.ImageTransfer was built without its SupportedMLNetVersion metadata.");

    const BindingFlags Instance = BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic;
    const BindingFlags Static = BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic;

    /// <summary>Human-readable list of every internal ML.NET member the bridge relies on (also used in docs and tests).</summary>
    public static readonly IReadOnlyList<string> Required =
    [
        "type Microsoft.ML.VersionInfo (Microsoft.ML.Core) and its 7-argument constructor",
        "method ModelSaveContext.SetVersionInfo(VersionInfo)",
        "field ModelSaveContext.Writer",
        "method ModelSaveContext.SaveBinaryStream(string, Action<BinaryWriter>)",
        "type Microsoft.ML.ModelLoadContext (Microsoft.ML.Core)",
        "field ModelLoadContext.Reader",
        "method ModelLoadContext.TryLoadBinaryStream(string, Action<BinaryReader>)",
        "type Microsoft.ML.SignatureLoadModel (Microsoft.ML.Core)",
        "type Microsoft.ML.LoadableClassAttribute (Microsoft.ML.Core) and its (Type, Type, Type, Type, string, string[]) constructor",
        "type Microsoft.ML.LoadableClassAttributeBase (Microsoft.ML.Core)",
        "type ComponentCatalog.LoadableClassInfo and its (LoadableClassAttributeBase, MethodInfo, ConstructorInfo, MethodInfo, bool) constructor",
        "method ComponentCatalog.AddClass(LoadableClassInfo, string[], bool) (private)",
        "field ComponentCatalog._lock (private)",
        "interface Microsoft.ML.Data.IInternalCatalog (Microsoft.ML.Data) and its Environment property",
    ];

    static readonly Lazy<Members> _members = new(Resolve, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Resolves (once) and returns every member; throws the version error if any is missing.</summary>
    static Members M => _members.Value;

    /// <summary>Checks up front that every internal member exists (throws <see cref="InvalidOperationException"/> if not).</summary>
    public static void Verify() => _ = M;

    // ---- Save side -------------------------------------------------------------------------------------------

    /// <summary>Writes ML.NET's model header fields: model signature, versions, loader signature and loader assembly.</summary>
    public static void SetVersionInfo(ModelSaveContext ctx, string modelSignature, uint versionWritten, uint versionReadable,
        uint versionWeCanReadBack, string loaderAssemblyName, string loaderSignature)
    {
        var m = M;
        // VersionInfo validates its arguments (8-char model signature, Latin-1); let its error surface unwrapped.
        object versionInfo = Invoke(() => m.VersionInfoCtor.Invoke(
            [modelSignature, versionWritten, versionReadable, versionWeCanReadBack, loaderAssemblyName, loaderSignature, null]))!;
        Invoke(() => m.SetVersionInfo.Invoke(ctx, [versionInfo]));
    }

    /// <summary>The writer of the entry's main stream (<c>Model.key</c>), positioned at the start of the model block.</summary>
    public static BinaryWriter MainWriter(ModelSaveContext ctx) => (BinaryWriter)M.SaveWriter.GetValue(ctx)!;

    /// <summary>Creates a named stream beside the main stream (a separate zip entry in the entry's directory).</summary>
    public static void SaveBinaryStream(ModelSaveContext ctx, string name, Action<BinaryWriter> write)
        => Invoke(() => M.SaveBinaryStream.Invoke(ctx, [name, write]));

    // ---- Load side (the context is ML.NET's internal ModelLoadContext, typed object here) -------------------------

    /// <summary>The reader of the entry's main stream, positioned at the start of the model block.</summary>
    public static BinaryReader MainReader(object loadContext) => (BinaryReader)M.LoadReader.GetValue(loadContext)!;

    /// <summary>Opens a named stream beside the main stream; false when the entry has no such stream.</summary>
    public static bool TryLoadBinaryStream(object loadContext, string name, Action<BinaryReader> read)
        => (bool)Invoke(() => M.TryLoadBinaryStream.Invoke(loadContext, [name, read]))!;

    // ---- Direct zip access (optional: speed only) ----------------------------------------------------------------
    //
    // ML.NET compresses every entry (Deflate) and, when loading, inflates each one into a temporary file before a
    // reader sees it. For a part of hundreds of MB that costs seconds: inflating weights (which barely compress), then
    // writing and reading back a file. The members below let large parts be written uncompressed and read straight
    // from the archive. They are private, so they are resolved separately from the required ones above: where one is
    // missing, TryCreateStoredPart and TryOpenPartDirect say so and the callers use SaveBinaryStream /
    // TryLoadBinaryStream, which give the same bytes, only slower. ModelPersistenceTests checks that they resolve.

    sealed record ZipMembers(FieldInfo SaveRepository, FieldInfo SaveDirectory, FieldInfo WriterArchive, MethodInfo WriterFlush, FieldInfo PathMap,
        FieldInfo LoadRepository, FieldInfo LoadDirectory, FieldInfo ReaderEntries);

    static readonly Lazy<ZipMembers?> _zip = new(ResolveZip, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Whether this ML.NET has the members for uncompressed parts and direct reads (false: the slower, documented paths are used).</summary>
    public static bool DirectZipAccess => _zip.Value is not null;

    static ZipMembers? ResolveZip()
    {
        try
        {
            var core = typeof(ModelSaveContext).Assembly;
            var repository = core.GetType("Microsoft.ML.Repository");
            var writer = core.GetType("Microsoft.ML.RepositoryWriter");
            var reader = core.GetType("Microsoft.ML.RepositoryReader");
            var loadContext = core.GetType("Microsoft.ML.ModelLoadContext");
            if (repository is null || writer is null || reader is null || loadContext is null) return null;
            var members = new ZipMembers(
                typeof(ModelSaveContext).GetField("Repository", Instance)!, typeof(ModelSaveContext).GetField("Directory", Instance)!,
                writer.GetField("_archive", Instance)!, writer.GetMethod("Flush", Instance, null, Type.EmptyTypes, null)!,
                repository.GetField("PathMap", Instance)!,
                loadContext.GetField("Repository", Instance)!, loadContext.GetField("Directory", Instance)!, reader.GetField("_entries", Instance)!);
            bool typesFit = members.SaveRepository?.FieldType == writer && members.SaveDirectory?.FieldType == typeof(string)
                && members.WriterArchive?.FieldType == typeof(System.IO.Compression.ZipArchive) && members.WriterFlush is not null
                && members.PathMap?.FieldType == typeof(System.Collections.Concurrent.ConcurrentDictionary<string, string>)
                && members.LoadRepository?.FieldType == reader && members.LoadDirectory?.FieldType == typeof(string)
                && members.ReaderEntries?.FieldType == typeof(Dictionary<string, System.IO.Compression.ZipArchiveEntry>);
            return typesFit ? members : null;
        }
        catch (Exception e) when (e is AmbiguousMatchException or TypeLoadException)
        {
            return null;
        }
    }

    /// <summary>The archive path ML.NET gives a stream named <paramref name="name"/> in directory <paramref name="dir"/>.</summary>
    static string EntryPath(string? dir, string name) => Path.Combine(dir ?? "", name).Replace('/', Path.DirectorySeparatorChar);

    /// <summary>
    /// Creates part <paramref name="name"/> of the entry being saved as an uncompressed zip entry and returns its write
    /// stream (dispose it to finish the entry); null when this ML.NET lacks the members (then use
    /// <see cref="SaveBinaryStream"/>). The part is read back by either <see cref="TryLoadBinaryStream"/> or
    /// <see cref="TryOpenPartDirect"/>, by this version or an older one: a stored entry is ordinary zip.
    /// </summary>
    public static Stream? TryCreateStoredPart(ModelSaveContext ctx, string name)
    {
        var m = _zip.Value;
        if (m is null) return null;
        var repository = m.SaveRepository.GetValue(ctx);
        if (repository is null) return null; // a context writing to a single stream, not to a repository
        string path = EntryPath((string?)m.SaveDirectory.GetValue(ctx), name);
        var pathMap = (System.Collections.Concurrent.ConcurrentDictionary<string, string>)m.PathMap.GetValue(repository)!;
        // What RepositoryWriter.CreateEntry does: refuse a duplicate name, then write the entries closed so far (the
        // archive allows one open entry at a time; ML.NET's own open entries are temporary files until then).
        if (!pathMap.TryAdd(path, ""))
            throw new ArgumentException($"Duplicate entry: '{path}'", nameof(name));
        Invoke(() => m.WriterFlush.Invoke(repository, null));
        var archive = (System.IO.Compression.ZipArchive)m.WriterArchive.GetValue(repository)!;
        return archive.CreateEntry(path, System.IO.Compression.CompressionLevel.NoCompression).Open();
    }

    /// <summary>
    /// Opens part <paramref name="name"/> of the entry being loaded straight from the archive (no temporary file; no
    /// inflating when it was stored uncompressed). Returns false when this ML.NET lacks the members (then use
    /// <see cref="TryLoadBinaryStream"/>); otherwise true, with <paramref name="stream"/> null when there is no such part.
    /// </summary>
    public static bool TryOpenPartDirect(object loadContext, string name, out Stream? stream, out long length)
    {
        stream = null;
        length = 0;
        var m = _zip.Value;
        if (m is null) return false;
        var repository = m.LoadRepository.GetValue(loadContext);
        if (repository is null) return false;
        var entries = (Dictionary<string, System.IO.Compression.ZipArchiveEntry>)m.ReaderEntries.GetValue(repository)!;
        string path = EntryPath((string?)m.LoadDirectory.GetValue(loadContext), name);
        // As RepositoryReader.OpenEntryOrNull: the normalised path, else the backslash form older Windows files use.
        if (!entries.TryGetValue(path, out var entry) && !entries.TryGetValue(path.Replace("/", "\\"), out entry)) return true;
        length = entry.Length;
        stream = entry.Open();
        return true;
    }

    // ---- Component catalog -----------------------------------------------------------------------------------

    /// <summary>
    /// Adds a loadable class to <paramref name="catalog"/> under <paramref name="loadName"/> for ML.NET's model-loading
    /// signature, so that <c>ModelLoadContext</c> finds it when an entry's header names that loader signature.
    /// <paramref name="create"/> must be a static method <c>(IHostEnvironment env, object loadContext) → ITransformer</c>.
    /// </summary>
    /// <remarks>
    /// This builds in code exactly what <see cref="ComponentCatalog.RegisterAssembly"/> builds from an ML.NET assembly's
    /// <c>[assembly: LoadableClass(typeof(ITransformer), typeof(Loader), null, typeof(SignatureLoadModel), …)]</c>
    /// attribute. The create method is handed over directly instead of being looked up by name, which lets its second
    /// parameter be typed <see cref="object"/> (we cannot name <c>ModelLoadContext</c>); ML.NET invokes it by reflection.
    /// </remarks>
    public static void AddModelLoader(ComponentCatalog catalog, string loadName, string userName, MethodInfo create)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        var m = M;
        object attribute = Invoke(() => m.LoadableClassAttributeCtor.Invoke(
            [typeof(ITransformer), create.DeclaringType!, null, m.SignatureLoadModel, userName, new[] { loadName }]))!;
        object info = Invoke(() => m.LoadableClassInfoCtor.Invoke([attribute, null, null, create, /* requireEnvironment */ true]))!;
        // Take the catalog's own lock: ML.NET may be registering an assembly into the same catalog on another thread.
        lock (m.CatalogLock.GetValue(catalog)!)
            Invoke(() => m.AddClass.Invoke(catalog, [info, new[] { loadName }, /* throwOnError */ false]));
    }

    // ---- Catalogs → environment --------------------------------------------------------------------------------

    /// <summary>
    /// The <see cref="IHostEnvironment"/> behind an ML.NET catalog object (<see cref="TransformsCatalog"/>, a trainers
    /// catalog such as <c>MulticlassClassificationCatalog.MulticlassClassificationTrainers</c>, …); null when
    /// <paramref name="catalog"/> is not one. ML.NET exposes it only through the internal <c>IInternalCatalog</c>.
    /// </summary>
    public static IHostEnvironment? EnvironmentOf(object catalog)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        if (catalog is IHostEnvironment env) return env; // MLContext itself
        var m = M;
        return m.InternalCatalog.IsInstanceOfType(catalog) ? (IHostEnvironment?)m.CatalogEnvironment.GetValue(catalog) : null;
    }

    // ---- Resolution --------------------------------------------------------------------------------------------

    sealed record Members(
        ConstructorInfo VersionInfoCtor,
        MethodInfo SetVersionInfo,
        FieldInfo SaveWriter,
        MethodInfo SaveBinaryStream,
        FieldInfo LoadReader,
        MethodInfo TryLoadBinaryStream,
        Type SignatureLoadModel,
        ConstructorInfo LoadableClassAttributeCtor,
        ConstructorInfo LoadableClassInfoCtor,
        MethodInfo AddClass,
        FieldInfo CatalogLock,
        Type InternalCatalog,
        PropertyInfo CatalogEnvironment);

    static Members Resolve() => Resolve(typeof(ModelSaveContext).Assembly, typeof(TransformsCatalog).Assembly);

    /// <summary>
    /// Resolves the internal types from the given assemblies (normally Microsoft.ML.Core and Microsoft.ML.Data). Tests
    /// pass other assemblies to see the error a different ML.NET would give.
    /// </summary>
    internal static void VerifyAgainst(Assembly core, Assembly data) => _ = Resolve(core, data);

    static Members Resolve(Assembly core, Assembly data)
    {
        var missing = new List<string>();

        T? Need<T>(T? found, string what) where T : class
        {
            if (found is null) missing.Add(what);
            return found;
        }

        var versionInfo = Need(core.GetType("Microsoft.ML.VersionInfo"), "type Microsoft.ML.VersionInfo");
        var loadContext = Need(core.GetType("Microsoft.ML.ModelLoadContext"), "type Microsoft.ML.ModelLoadContext");
        var signature = Need(core.GetType("Microsoft.ML.SignatureLoadModel"), "type Microsoft.ML.SignatureLoadModel");
        var attribute = Need(core.GetType("Microsoft.ML.LoadableClassAttribute"), "type Microsoft.ML.LoadableClassAttribute");
        var attributeBase = Need(core.GetType("Microsoft.ML.LoadableClassAttributeBase"), "type Microsoft.ML.LoadableClassAttributeBase");
        var classInfo = Need(typeof(ComponentCatalog).GetNestedType("LoadableClassInfo", BindingFlags.NonPublic | BindingFlags.Public),
            "type ComponentCatalog.LoadableClassInfo");
        var internalCatalog = Need(data.GetType("Microsoft.ML.Data.IInternalCatalog"), "type Microsoft.ML.Data.IInternalCatalog");

        var versionInfoCtor = versionInfo is null ? null : Need(versionInfo.GetConstructor(Instance, null,
            [typeof(string), typeof(uint), typeof(uint), typeof(uint), typeof(string), typeof(string), typeof(string)], null),
            "constructor VersionInfo(string, uint, uint, uint, string, string, string)");
        var setVersionInfo = versionInfo is null ? null : Need(typeof(ModelSaveContext).GetMethod("SetVersionInfo", Instance, null, [versionInfo], null),
            "method ModelSaveContext.SetVersionInfo(VersionInfo)");
        var saveWriter = Need(typeof(ModelSaveContext).GetField("Writer", Instance), "field ModelSaveContext.Writer");
        if (saveWriter is not null && saveWriter.FieldType != typeof(BinaryWriter)) { missing.Add("field ModelSaveContext.Writer of type BinaryWriter"); saveWriter = null; }
        var saveBinaryStream = Need(typeof(ModelSaveContext).GetMethod("SaveBinaryStream", Instance, null, [typeof(string), typeof(Action<BinaryWriter>)], null),
            "method ModelSaveContext.SaveBinaryStream(string, Action<BinaryWriter>)");
        var loadReader = loadContext is null ? null : Need(loadContext.GetField("Reader", Instance), "field ModelLoadContext.Reader");
        if (loadReader is not null && loadReader.FieldType != typeof(BinaryReader)) { missing.Add("field ModelLoadContext.Reader of type BinaryReader"); loadReader = null; }
        var tryLoadBinaryStream = loadContext is null ? null : Need(loadContext.GetMethod("TryLoadBinaryStream", Instance, null, [typeof(string), typeof(Action<BinaryReader>)], null),
            "method ModelLoadContext.TryLoadBinaryStream(string, Action<BinaryReader>)");
        if (signature is not null && loadContext is not null)
        {
            // The loader is invoked as create(env, ctx): the signature delegate must take exactly the load context.
            var parameters = signature.GetMethod("Invoke")?.GetParameters();
            if (parameters is not { Length: 1 } || parameters[0].ParameterType != loadContext)
                missing.Add("delegate SignatureLoadModel(ModelLoadContext)");
        }
        var attributeCtor = attribute is null ? null : Need(attribute.GetConstructor(Instance, null,
            [typeof(Type), typeof(Type), typeof(Type), typeof(Type), typeof(string), typeof(string[])], null),
            "constructor LoadableClassAttribute(Type, Type, Type, Type, string, params string[])");
        var classInfoCtor = classInfo is null || attributeBase is null ? null : Need(classInfo.GetConstructor(Instance, null,
            [attributeBase, typeof(MethodInfo), typeof(ConstructorInfo), typeof(MethodInfo), typeof(bool)], null),
            "constructor ComponentCatalog.LoadableClassInfo(LoadableClassAttributeBase, MethodInfo, ConstructorInfo, MethodInfo, bool)");
        var addClass = classInfo is null ? null : Need(typeof(ComponentCatalog).GetMethod("AddClass", Instance, null, [classInfo, typeof(string[]), typeof(bool)], null),
            "method ComponentCatalog.AddClass(LoadableClassInfo, string[], bool)");
        var catalogLock = Need(typeof(ComponentCatalog).GetField("_lock", Instance), "field ComponentCatalog._lock");
        var catalogEnvironment = internalCatalog is null ? null : Need(internalCatalog.GetProperty("Environment", Instance), "property IInternalCatalog.Environment");
        if (catalogEnvironment is not null && catalogEnvironment.PropertyType != typeof(IHostEnvironment)) { missing.Add("property IInternalCatalog.Environment of type IHostEnvironment"); catalogEnvironment = null; }

        if (missing.Count > 0)
            throw new InvalidOperationException(
                $"MLNet.ImageTransfer cannot save or load its model entries with the ML.NET found at run time " +
                $"({DescribeLoadedMLNet()}): it was built and tested against ML.NET {SupportedMLNetVersion}, whose internal " +
                $"model-persistence members it uses. Not found: {string.Join("; ", missing)}. " +
                $"Use Microsoft.ML {SupportedMLNetVersion}, or a version of MLNet.ImageTransfer built for your ML.NET.");

        return new Members(versionInfoCtor!, setVersionInfo!, saveWriter!, saveBinaryStream!, loadReader!, tryLoadBinaryStream!,
            signature!, attributeCtor!, classInfoCtor!, addClass!, catalogLock!, internalCatalog!, catalogEnvironment!);
    }

    /// <summary>"Microsoft.ML.Core 6.0.0+…", for error messages.</summary>
    public static string DescribeLoadedMLNet()
    {
        var core = typeof(ModelSaveContext).Assembly;
        var version = core.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
            ?? core.GetName().Version?.ToString() ?? "unknown version";
        return $"Microsoft.ML.Core {version}";
    }

    /// <summary>Invokes a reflected member, rethrowing the member's own exception instead of the reflection wrapper.</summary>
    static object? Invoke(Func<object?> call)
    {
        try { return call(); }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerException).Throw();
            throw; // unreachable
        }
    }
}
