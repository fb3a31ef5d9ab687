using Microsoft.ML;
using Microsoft.ML.Runtime;

namespace MLNet.ImageTransfer.MLNet.Persistence;

/// <summary>
/// How one kind of our transformers is stored as an entry of ML.NET's model <c>.zip</c>: its signatures, its format
/// version, and how to rebuild it. One instance per transformer type, shared by its save and load code, so that the
/// constants live in exactly one place.
/// </summary>
/// <example>
/// <code>
/// // In the transformer:
/// internal static readonly ModelEntryFormat Format =
///     new("IMGTRANSFER-CLASSIFIER", "IMGCLSFR", version: 1, minReadableVersion: 1, load: Load);
/// void ICanSaveModel.Save(ModelSaveContext ctx) => ImageTransferModelFormat.Save(ctx, Format, [("weights.bin", WriteWeights)]);
/// static ImageClassifierTransformer Load(IHostEnvironment env, LoadedParts parts) => …;
///
/// // Anywhere in the same file, so that RegisterImageTransfer() finds it without the type having been touched:
/// [assembly: ImageTransferModelEntry(typeof(ImageClassifierTransformer), nameof(ImageClassifierTransformer.Format))]
/// </code>
/// </example>
internal sealed class ModelEntryFormat
{
    /// <param name="loaderSignature">
    /// The name ML.NET looks the loader up by (case-insensitive), at most 24 Latin-1 characters, unique among all
    /// ML.NET components: prefix it, e.g. <c>"IMGTRANSFER-CLASSIFIER"</c>. Never change it once models exist.
    /// </param>
    /// <param name="modelSignature">Exactly 8 Latin-1 characters identifying the payload's file type, e.g. <c>"IMGCLSFR"</c>.</param>
    /// <param name="version">The format version written by this build (starts at 1; bump on any payload change).</param>
    /// <param name="minReadableVersion">The oldest format version <paramref name="load"/> can still read.</param>
    /// <param name="load">Rebuilds the transformer from the saved parts (see <see cref="LoadedParts"/>).</param>
    public ModelEntryFormat(string loaderSignature, string modelSignature, uint version, uint minReadableVersion,
        Func<IHostEnvironment, LoadedParts, ITransformer> load)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(loaderSignature);
        ArgumentNullException.ThrowIfNull(modelSignature);
        ArgumentNullException.ThrowIfNull(load);
        // ML.NET packs the loader signature into 24 bytes and the model signature into 8 of its header.
        if (loaderSignature.Length > 24 || loaderSignature.Any(c => c > 0xFF || char.IsWhiteSpace(c)))
            throw new ArgumentException($"Loader signature '{loaderSignature}' must be at most 24 Latin-1 characters without spaces.", nameof(loaderSignature));
        if (modelSignature.Length != 8 || modelSignature.Any(c => c > 0xFF || c == ' '))
            throw new ArgumentException($"Model signature '{modelSignature}' must be exactly 8 Latin-1 characters without spaces.", nameof(modelSignature));
        if (version == 0 || minReadableVersion == 0 || minReadableVersion > version)
            throw new ArgumentOutOfRangeException(nameof(minReadableVersion), $"Need 1 <= minReadableVersion ({minReadableVersion}) <= version ({version}).");
        LoaderSignature = loaderSignature;
        ModelSignature = modelSignature;
        Version = version;
        MinReadableVersion = minReadableVersion;
        Load = load;
    }

    public string LoaderSignature { get; }
    public string ModelSignature { get; }
    public uint Version { get; }
    public uint MinReadableVersion { get; }
    public Func<IHostEnvironment, LoadedParts, ITransformer> Load { get; }

    public override string ToString() => $"{LoaderSignature} ({ModelSignature}, format v{MinReadableVersion}..v{Version})";
}

/// <summary>
/// Declares, on our assembly, a transformer whose <see cref="ModelEntryFormat"/> <see cref="ImageTransferModelRegistration.RegisterImageTransfer"/>
/// must register: <c>[assembly: ImageTransferModelEntry(typeof(T), nameof(T.Format))]</c>.
/// </summary>
/// <remarks>
/// An assembly attribute rather than a static constructor: in a fresh process that only loads a model, nothing has
/// touched the transformer type yet, so a static constructor would not have run when the loaders are registered.
/// </remarks>
[AttributeUsage(AttributeTargets.Assembly, AllowMultiple = true)]
internal sealed class ImageTransferModelEntryAttribute(Type declaringType, string formatMemberName) : Attribute
{
    /// <summary>The type declaring the static <see cref="ModelEntryFormat"/> field or property.</summary>
    public Type DeclaringType { get; } = declaringType;

    /// <summary>The name of that static member (use <c>nameof</c>).</summary>
    public string FormatMemberName { get; } = formatMemberName;
}
