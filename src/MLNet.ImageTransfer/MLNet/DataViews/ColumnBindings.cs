using Microsoft.ML;

namespace MLNet.ImageTransfer.MLNet.DataViews;

/// <summary>
/// How a mapping's output schema relates to its input schema: output columns <c>0..n-1</c> are the input's columns
/// (same indices, passed through; a same-named output hides the input column but keeps its index), then come the
/// added columns. Used by the data view, its cursors and the row-to-row mapper alike.
/// </summary>
internal sealed class ColumnBindings<TResult>
{
    public ColumnBindings(DataViewSchema inputSchema, DataViewSchema.Column inputColumn, IReadOnlyList<OutputColumn<TResult>> outputs)
    {
        InputSchema = inputSchema;
        InputColumn = inputColumn;
        Outputs = outputs;
        OutputSchema = BuildOutputSchema(inputSchema, outputs);
    }

    public DataViewSchema InputSchema { get; }
    public DataViewSchema OutputSchema { get; }

    /// <summary>The input column the results are computed from.</summary>
    public DataViewSchema.Column InputColumn { get; }

    public IReadOnlyList<OutputColumn<TResult>> Outputs { get; }

    public int InputCount => InputSchema.Count;

    public static DataViewSchema BuildOutputSchema(DataViewSchema inputSchema, IReadOnlyList<OutputColumn<TResult>> outputs)
    {
        var builder = new DataViewSchema.Builder();
        builder.AddColumns(inputSchema); // keeps indices, types, annotations; later same names hide earlier ones
        foreach (var column in outputs)
            builder.AddColumn(column.Name, column.Type, column.Annotations);
        return builder.ToSchema();
    }

    /// <summary>True when output column <paramref name="index"/> is one of ours, with its index among <see cref="Outputs"/>.</summary>
    public bool IsOutput(int index, out int outputIndex)
    {
        outputIndex = index - InputCount;
        return outputIndex >= 0;
    }

    /// <summary>
    /// For the requested output columns: which of our outputs are active, and which input columns the input cursor
    /// must provide (the pass-through ones, plus the source column when any output is active).
    /// </summary>
    public (bool[] OutputActive, bool AnyOutputActive, List<DataViewSchema.Column> InputNeeded) Dependencies(IEnumerable<DataViewSchema.Column> requested)
    {
        ArgumentNullException.ThrowIfNull(requested);
        var outputActive = new bool[Outputs.Count];
        var inputActive = new bool[InputCount];
        foreach (var column in requested)
        {
            if (column.Index < 0 || column.Index >= OutputSchema.Count)
                throw new ArgumentOutOfRangeException(nameof(requested), $"Column '{column.Name}' (index {column.Index}) is not in this schema.");
            if (IsOutput(column.Index, out int o)) outputActive[o] = true;
            else inputActive[column.Index] = true;
        }
        bool any = outputActive.Any(a => a);
        if (any) inputActive[InputColumn.Index] = true;
        var inputNeeded = InputSchema.Where(c => inputActive[c.Index]).ToList();
        return (outputActive, any, inputNeeded);
    }
}
