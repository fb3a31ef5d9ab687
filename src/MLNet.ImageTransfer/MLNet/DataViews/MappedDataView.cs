using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.ImageTransfer.MLNet.DataViews;

/// <summary>
/// The lazy view returned by <see cref="RowMappingTransformer{TInput, TResult}.Transform"/>: the input's columns
/// passed through, plus the mapping's columns, computed only when read.
/// </summary>
/// <remarks>
/// <para>
/// <b>Batching.</b> When the mapping wants batches and one of its columns is requested, a cursor reads ahead on a
/// second cursor over the same input that has only the source column active: at the first row whose result is
/// needed it reads that row and the next <c>BatchSize - 1</c> source values, maps them in one call, and serves the
/// results as the main cursor reaches those rows. The main cursor still provides every pass-through column, so an
/// expensive upstream column (a decoded image) is computed once, on the read-ahead cursor.
/// </para>
/// <para>
/// Correctness never depends on the two cursors agreeing: each batched result is stored with its row id
/// (<see cref="DataViewRow.GetIdGetter"/>, unique per row by ML.NET's contract) and served only to the main-cursor
/// row with the same position and id. On any disagreement (an input whose order differs between cursors, e.g. a
/// shuffle that is not reproducible from its seed) the cursor drops the read-ahead and continues row by row. A source
/// value that cannot be read (a corrupt image) ends the batch before that row; that row is then computed from the
/// main cursor, so the error is raised at the row it belongs to. A failing <c>Map</c> call is retried row by row for
/// the same reason.
/// </para>
/// <para>
/// A batched request for a cursor set returns a single cursor (ML.NET allows fewer than asked): a split input cannot
/// be read ahead, and the batched network is itself parallel.
/// </para>
/// </remarks>
internal sealed class MappedDataView<TInput, TResult>(
    RowMappingTransformer<TInput, TResult> mapping, ColumnBindings<TResult> bindings, IDataView input) : IDataView
{
    public bool CanShuffle => input.CanShuffle;

    /// <summary>The view the mapping reads.</summary>
    internal IDataView Input => input;

    /// <summary>The transformer whose columns this view adds.</summary>
    internal RowMappingTransformer<TInput, TResult> Mapping => mapping;

    public DataViewSchema Schema => bindings.OutputSchema;

    public long? GetRowCount() => input.GetRowCount();

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        var (active, any, inputNeeded) = bindings.Dependencies(columnsNeeded);
        if (!any || mapping.EffectiveBatchSize == 1)
            return new Cursor(mapping, bindings, input.GetRowCursor(inputNeeded, rand), active, openReadAhead: null);

        // Both cursors get a Random with the same seed, so that an input that shuffles reproducibly shuffles alike.
        int? seed = rand?.Next();
        var main = input.GetRowCursor(inputNeeded, seed is null ? null : new Random(seed.Value));
        return new Cursor(mapping, bindings, main, active,
            () => input.GetRowCursor([bindings.InputColumn], seed is null ? null : new Random(seed.Value)));
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null)
    {
        var requested = columnsNeeded.ToList();
        var (active, any, inputNeeded) = bindings.Dependencies(requested);
        if (any && mapping.EffectiveBatchSize > 1)
            return [GetRowCursor(requested, rand)];
        return input.GetRowCursorSet(inputNeeded, n, rand)
            .Select(c => (DataViewRowCursor)new Cursor(mapping, bindings, c, active, openReadAhead: null))
            .ToArray();
    }

    sealed class Cursor : DataViewRowCursor
    {
        readonly DataViewRowCursor _input;
        readonly RowOutputs<TInput, TResult> _outputs;
        readonly RowMappingTransformer<TInput, TResult> _mapping;

        // Read-ahead state (null _openReadAhead: row by row only).
        Func<DataViewRowCursor>? _openReadAhead;
        DataViewRowCursor? _ahead;
        ValueGetter<TInput>? _aheadInput;
        ValueGetter<DataViewRowId>? _aheadId, _mainId;
        TInput[] _batchInputs = [];
        TResult[] _batchResults = [];
        DataViewRowId[] _batchIds = [];
        long _batchStart;
        int _batchCount;
        long _rowByRowUntil = -1; // rows of a batch whose Map call failed are recomputed one by one
        bool _disposed;

        public Cursor(RowMappingTransformer<TInput, TResult> mapping, ColumnBindings<TResult> bindings, DataViewRowCursor input,
            bool[] outputActive, Func<DataViewRowCursor>? openReadAhead)
        {
            _mapping = mapping;
            _input = input;
            _openReadAhead = openReadAhead;
            _outputs = new RowOutputs<TInput, TResult>(mapping, bindings, input, outputActive, openReadAhead is null ? null : TryFromBatch);
        }

        public override long Position => _input.Position;
        public override long Batch => _input.Batch;
        public override DataViewSchema Schema => _outputs.Schema;
        public override bool MoveNext() => _input.MoveNext();
        public override ValueGetter<DataViewRowId> GetIdGetter() => _input.GetIdGetter();
        public override bool IsColumnActive(DataViewSchema.Column column) => _outputs.IsColumnActive(column);
        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column) => _outputs.GetGetter<TValue>(column);

        /// <summary>The result of row <paramref name="position"/> from a batch, reading ahead if needed; false → compute it alone.</summary>
        bool TryFromBatch(long position, out TResult result)
        {
            result = default!;
            if (_openReadAhead is null || position < _rowByRowUntil) return false;
            _mainId ??= _input.GetIdGetter();
            DataViewRowId id = default;
            _mainId(ref id);

            if (position < _batchStart || position >= _batchStart + _batchCount)
            {
                if (!FillBatch(position)) return false;
            }
            int k = (int)(position - _batchStart);
            if (!_batchIds[k].Equals(id))
            {
                StopReadingAhead(); // the cursors disagree: row by row from now on
                return false;
            }
            result = _batchResults[k];
            return true;
        }

        /// <summary>Reads rows <paramref name="position"/>.. on the read-ahead cursor and maps them; false if nothing to serve.</summary>
        bool FillBatch(long position)
        {
            _batchCount = 0;
            if (_ahead is null)
            {
                _ahead = _openReadAhead!();
                _aheadInput = _ahead.GetGetter<TInput>(_ahead.Schema[_outputs.InputColumnIndex]);
                _aheadId = _ahead.GetIdGetter();
                int n = _mapping.EffectiveBatchSize;
                _batchInputs = new TInput[n];
                _batchResults = new TResult[n];
                _batchIds = new DataViewRowId[n];
            }
            // The read-ahead cursor only moves forward; it can be behind (rows whose results nobody asked for), never
            // ahead, unless the cursors disagree.
            while (_ahead.Position < position)
            {
                if (!_ahead.MoveNext()) { StopReadingAhead(); return false; }
            }
            if (_ahead.Position != position) { StopReadingAhead(); return false; }

            _batchStart = position;
            while (true)
            {
                try
                {
                    _aheadInput!(ref _batchInputs[_batchCount]);
                }
                catch
                {
                    // Leave this row to the row-by-row path: it raises the error at the row it belongs to.
                    break;
                }
                _aheadId!(ref _batchIds[_batchCount]);
                _batchCount++;
                if (_batchCount == _batchInputs.Length || !_ahead.MoveNext()) break;
            }
            if (_batchCount == 0) return false;

            try
            {
                _mapping.MapBatch(_batchInputs.AsSpan(0, _batchCount), _batchResults.AsSpan(0, _batchCount));
            }
            catch
            {
                _rowByRowUntil = position + _batchCount;
                _batchCount = 0;
                return false;
            }
            return true;
        }

        void StopReadingAhead()
        {
            _openReadAhead = null;
            _batchCount = 0;
            _ahead?.Dispose();
            _ahead = null;
        }

        protected override void Dispose(bool disposing)
        {
            if (_disposed) return;
            _disposed = true;
            if (disposing)
            {
                _ahead?.Dispose();
                _input.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}

/// <summary>
/// The row-to-row mapper behind <c>CreatePredictionEngine</c> and <c>TransformerChain.GetRowToRowMapper</c>:
/// wraps a single input row; the result is computed on first read and kept for the row's position.
/// </summary>
internal sealed class MappedRowToRowMapper<TInput, TResult>(RowMappingTransformer<TInput, TResult> mapping, ColumnBindings<TResult> bindings)
    : IRowToRowMapper
{
    public DataViewSchema InputSchema => bindings.InputSchema;
    public DataViewSchema OutputSchema => bindings.OutputSchema;

    public IEnumerable<DataViewSchema.Column> GetDependencies(IEnumerable<DataViewSchema.Column> dependingColumns)
        => bindings.Dependencies(dependingColumns).InputNeeded;

    public DataViewRow GetRow(DataViewRow input, IEnumerable<DataViewSchema.Column> activeColumns)
    {
        ArgumentNullException.ThrowIfNull(input);
        // Rows are matched to our bindings by column index: the row must have this mapper's input schema's shape.
        int source = bindings.InputColumn.Index;
        if (input.Schema.Count != bindings.InputSchema.Count || input.Schema[source].Type.RawType != bindings.InputColumn.Type.RawType)
            throw new ArgumentException("The row's schema is not the schema this mapper was created for.", nameof(input));
        return new Row(new RowOutputs<TInput, TResult>(mapping, bindings, input, bindings.Dependencies(activeColumns).OutputActive, null), input);
    }

    sealed class Row(RowOutputs<TInput, TResult> outputs, DataViewRow input) : DataViewRow
    {
        public override long Position => input.Position;
        public override long Batch => input.Batch;
        public override DataViewSchema Schema => outputs.Schema;
        public override ValueGetter<DataViewRowId> GetIdGetter() => input.GetIdGetter();
        public override bool IsColumnActive(DataViewSchema.Column column) => outputs.IsColumnActive(column);
        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column) => outputs.GetGetter<TValue>(column);
    }
}

/// <summary>Looks up the result of row <c>position</c> in a batch (reading ahead if needed); false → compute it alone.</summary>
internal delegate bool BatchLookup<TResult>(long position, out TResult result);

/// <summary>
/// Getter plumbing shared by the cursor and the mapper's row: pass-through columns come from the input row; our
/// columns read the current row's result, computed once per position (from a batch when one is available).
/// </summary>
internal sealed class RowOutputs<TInput, TResult>
{
    readonly RowMappingTransformer<TInput, TResult> _mapping;
    readonly ColumnBindings<TResult> _bindings;
    readonly DataViewRow _input;
    readonly bool[] _outputActive;
    readonly BatchLookup<TResult>? _fromBatch;
    readonly Delegate?[] _getters;
    ValueGetter<TInput>? _inputGetter;
    TInput _inputValue = default!;
    long _resultPosition = long.MinValue;
    TResult _result = default!;

    public RowOutputs(RowMappingTransformer<TInput, TResult> mapping, ColumnBindings<TResult> bindings, DataViewRow input,
        bool[] outputActive, BatchLookup<TResult>? fromBatch)
    {
        _mapping = mapping;
        _bindings = bindings;
        _input = input;
        _outputActive = outputActive;
        _fromBatch = fromBatch;
        _getters = new Delegate?[bindings.Outputs.Count];
        for (int i = 0; i < _getters.Length; i++)
            if (outputActive[i]) _getters[i] = bindings.Outputs[i].MakeGetter(Current);
    }

    public DataViewSchema Schema => _bindings.OutputSchema;

    public int InputColumnIndex => _bindings.InputColumn.Index;

    public bool IsColumnActive(DataViewSchema.Column column)
    {
        CheckColumn(column);
        return _bindings.IsOutput(column.Index, out int o) ? _outputActive[o] : _input.IsColumnActive(_input.Schema[column.Index]);
    }

    public ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
    {
        CheckColumn(column);
        if (!_bindings.IsOutput(column.Index, out int o))
            return _input.GetGetter<TValue>(_input.Schema[column.Index]);
        if (_getters[o] is null)
            throw new InvalidOperationException($"Column '{column.Name}' was not requested when this cursor was created.");
        return _getters[o] as ValueGetter<TValue>
            ?? throw new InvalidOperationException(
                $"Invalid TValue in GetGetter<TValue>: column '{column.Name}' holds {_bindings.Outputs[o].ValueType.Name}, requested {typeof(TValue).Name}.");
    }

    void CheckColumn(DataViewSchema.Column column)
    {
        if (column.Index < 0 || column.Index >= _bindings.OutputSchema.Count)
            throw new ArgumentOutOfRangeException(nameof(column), $"Column '{column.Name}' (index {column.Index}) is not in this schema.");
    }

    /// <summary>The current row's result: computed at most once per position.</summary>
    TResult Current()
    {
        long position = _input.Position;
        // Not on a row: the input's own getter decides whether that is an error; nothing is cached.
        if (position >= 0 && position == _resultPosition) return _result;

        if (_fromBatch is null || position < 0 || !_fromBatch(position, out var result))
        {
            _inputGetter ??= _input.GetGetter<TInput>(_input.Schema[_bindings.InputColumn.Index]);
            _inputGetter(ref _inputValue);
            result = _mapping.MapOne(ref _inputValue);
        }
        if (position >= 0)
        {
            _result = result;
            _resultPosition = position;
        }
        return result;
    }
}
