using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;

namespace MLNet.ImageTransfer.MLNet.DataViews;

/// <summary>
/// Base of our transformers that compute a few columns from one input column, row by row or in batches: "given the
/// value of column <see cref="InputColumnName"/>, produce these <see cref="OutputColumns"/>". It provides everything
/// else <see cref="ITransformer"/> needs, with ML.NET's public API only: the output schema, a lazy
/// <see cref="Transform"/> (all input columns pass through, ours are appended), and a row-to-row mapper so that
/// <c>mlContext.Model.CreatePredictionEngine</c> works.
/// </summary>
/// <remarks>
/// <para>
/// Each row's <typeparamref name="TResult"/> is computed once, however many of our columns are read. When
/// <see cref="BatchSize"/> &gt; 1, cursors of <see cref="Transform"/>'s view read ahead on a second cursor over the
/// input and compute <see cref="BatchSize"/> rows per <see cref="Map"/> call (see <c>MappedDataView</c> for how this
/// stays correct); the prediction engine maps one row at a time.
/// </para>
/// <para>
/// <see cref="Map"/> may run concurrently on several cursors, so it must be thread-safe. The inputs it receives are
/// the upstream getters' buffers, reused for later rows: copy what must outlive the call. They are not disposed here
/// (an upstream <c>LoadImages</c> disposes its images itself).
/// </para>
/// </remarks>
/// <typeparam name="TInput">The input column's value type, e.g. <c>MLImage</c> or <c>VBuffer&lt;float&gt;</c>.</typeparam>
/// <typeparam name="TResult">What is computed per row, e.g. <c>float[]</c> probabilities; read by every output column.</typeparam>
public abstract class RowMappingTransformer<TInput, TResult> : ITransformer
{
    // Private protected: persistence relies on our internal bridge, so deriving outside this library makes no sense.
    private protected RowMappingTransformer(IHostEnvironment env, string registrationName, string inputColumnName)
    {
        ArgumentNullException.ThrowIfNull(env);
        ArgumentException.ThrowIfNullOrWhiteSpace(registrationName);
        ArgumentException.ThrowIfNullOrWhiteSpace(inputColumnName);
        Host = env.Register(registrationName);
        InputColumnName = inputColumnName;
    }

    /// <summary>This component's host in the ML.NET environment.</summary>
    protected IHost Host { get; }

    /// <summary>The column the outputs are computed from.</summary>
    public string InputColumnName { get; }

    /// <summary>The columns this transformer adds, in order; the same for every input schema.</summary>
    protected abstract IReadOnlyList<OutputColumn<TResult>> OutputColumns { get; }

    /// <summary>How many rows <see cref="Map"/> should receive at once in <see cref="Transform"/>'s cursors (1 = row by row).</summary>
    protected virtual int BatchSize => 1;

    /// <summary>Validates the input column; by default its values must be <typeparamref name="TInput"/>.</summary>
    /// <exception cref="ArgumentException">The column cannot be used.</exception>
    protected virtual void CheckInputColumn(DataViewSchema.Column column)
    {
        if (column.Type.RawType != typeof(TInput))
            throw new ArgumentException($"Column '{column.Name}' must hold {typeof(TInput).Name} values, but is {column.Type}.", nameof(column));
    }

    /// <summary>Computes <paramref name="results"/>[i] from <paramref name="inputs"/>[i] (same lengths). Must be thread-safe.</summary>
    protected abstract void Map(ReadOnlySpan<TInput> inputs, Span<TResult> results);

    /// <summary>Writes the model entry (normally through <c>ImageTransferModelFormat.Save</c>).</summary>
    protected abstract void SaveModel(ModelSaveContext ctx);

    /// <inheritdoc/>
    public bool IsRowToRowMapper => true;

    /// <inheritdoc/>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema) => Bind(inputSchema).OutputSchema;

    /// <inheritdoc/>
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return new MappedDataView<TInput, TResult>(this, Bind(input.Schema), input);
    }

    /// <inheritdoc/>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema) => new MappedRowToRowMapper<TInput, TResult>(this, Bind(inputSchema));

    void ICanSaveModel.Save(ModelSaveContext ctx) => SaveModel(ctx);

    internal int EffectiveBatchSize => Math.Max(1, BatchSize);

    internal void MapBatch(ReadOnlySpan<TInput> inputs, Span<TResult> results) => Map(inputs, results);

    /// <summary>Maps a single value (the row-at-a-time path).</summary>
    internal TResult MapOne(ref TInput input)
    {
        TResult result = default!;
        Map(new ReadOnlySpan<TInput>(ref input), new Span<TResult>(ref result));
        return result;
    }

    ColumnBindings<TResult> Bind(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        // Same exception type and wording as ML.NET's own transformers for a missing column.
        var column = inputSchema.GetColumnOrNull(InputColumnName)
            ?? throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Could not find input column '{InputColumnName}'.");
        CheckInputColumn(column);
        return new ColumnBindings<TResult>(inputSchema, column, OutputColumns);
    }
}
