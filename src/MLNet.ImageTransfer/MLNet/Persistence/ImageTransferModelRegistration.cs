using Microsoft.ML;
using Microsoft.ML.Runtime;
using MLNet.ImageTransfer.MLNet.Persistence;

namespace MLNet.ImageTransfer;

/// <summary>
/// Makes <c>mlContext.Model.Load</c> understand models that contain MLNet.ImageTransfer components.
/// </summary>
public static class ImageTransferModelRegistration
{
    /// <summary>
    /// Registers the loaders of all MLNet.ImageTransfer components in this context, so that
    /// <c>mlContext.Model.Load(...)</c> can rebuild models that contain them. Call it once per <see cref="MLContext"/>,
    /// before loading, in any process that loads such a model without having trained it with the same context.
    /// Calling it again does nothing.
    /// </summary>
    /// <remarks>
    /// <para>
    /// ML.NET keeps the loaders it knows per <see cref="MLContext"/> and discovers them only through attributes that
    /// only ML.NET's own assemblies can declare; third-party components must therefore be registered explicitly.
    /// Contexts used to create or train MLNet.ImageTransfer components are registered automatically.
    /// </para>
    /// <para>
    /// Without it, ML.NET cannot tell what is missing: <c>Model.Load</c> throws <c>InvalidOperationException</c>
    /// "Error during class instantiation", whose innermost exception is <c>FormatException</c>
    /// "Couldn't load model: 'TransformerChain/Transform_001'" (the chain entry that holds our component).
    /// </para>
    /// </remarks>
    /// <returns>The same context, so that <c>var ml = new MLContext().RegisterImageTransfer();</c> reads naturally.</returns>
    /// <exception cref="InvalidOperationException">This ML.NET version's internals differ from the supported version's.</exception>
    /// <example>
    /// <code>
    /// var ml = new MLContext();
    /// ml.RegisterImageTransfer();
    /// ITransformer model = ml.Model.Load("model.zip", out var inputSchema);
    /// </code>
    /// </example>
    public static MLContext RegisterImageTransfer(this MLContext mlContext)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ImageTransferModelFormat.RegisterAll(mlContext.ComponentCatalog);
        return mlContext;
    }

    /// <summary>
    /// Registers our loaders in the catalog behind <paramref name="env"/> (an <see cref="MLContext"/> or any host of it).
    /// Called by our estimators and transformers, so that a context that trained a model can also load it.
    /// </summary>
    internal static void EnsureRegistered(IHostEnvironment env)
    {
        ArgumentNullException.ThrowIfNull(env);
        ImageTransferModelFormat.RegisterAll(env.ComponentCatalog);
    }

    /// <summary>
    /// Same, for an ML.NET catalog object (<c>mlContext.Transforms</c>, <c>mlContext.MulticlassClassification.Trainers</c>, …),
    /// as received by catalog extension methods. Returns the catalog's environment, which such methods usually need too.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="catalog"/> is not an ML.NET catalog.</exception>
    internal static IHostEnvironment EnsureRegistered(object catalog)
    {
        var env = MLNetInternals.EnvironmentOf(catalog)
            ?? throw new ArgumentException($"{catalog.GetType().FullName} is not an ML.NET catalog.", nameof(catalog));
        EnsureRegistered(env);
        return env;
    }
}
