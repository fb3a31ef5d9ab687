using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.ImageTransfer.MLNet.DataViews;

/// <summary>Copies one output value out of a row's computed result (ML.NET getter style: reuse <paramref name="value"/>'s buffers).</summary>
public delegate void ResultValueGetter<TResult, TValue>(TResult result, ref TValue value);

/// <summary>
/// One column a <see cref="RowMappingTransformer{TInput, TResult}"/> adds to its input: its name, ML.NET type,
/// annotations, and how to read its value from the row's computed <typeparamref name="TResult"/>. All output columns
/// of a row read the same result, which is computed once per row.
/// </summary>
public abstract class OutputColumn<TResult>
{
    private protected OutputColumn(string name, DataViewType type, DataViewSchema.Annotations? annotations)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(type);
        Name = name;
        Type = type;
        Annotations = annotations ?? DataViewSchema.Annotations.Empty;
    }

    public string Name { get; }
    public DataViewType Type { get; }
    public DataViewSchema.Annotations Annotations { get; }

    /// <summary>The .NET type of the values (<c>Type.RawType</c>), e.g. <c>VBuffer&lt;float&gt;</c> or <c>uint</c>.</summary>
    internal abstract Type ValueType { get; }

    /// <summary>A <c>ValueGetter&lt;TValue&gt;</c> reading this column from <paramref name="currentResult"/>.</summary>
    internal abstract Delegate MakeGetter(Func<TResult> currentResult);

    /// <summary>Describes a column whose values <paramref name="get"/> reads from the row's result.</summary>
    /// <typeparam name="TValue">Must be <paramref name="type"/>'s raw type (checked).</typeparam>
    public static OutputColumn<TResult> Create<TValue>(string name, DataViewType type, ResultValueGetter<TResult, TValue> get,
        DataViewSchema.Annotations? annotations = null)
        => new Typed<TValue>(name, type, get, annotations);

    public override string ToString() => $"{Name}: {Type}";

    sealed class Typed<TValue> : OutputColumn<TResult>
    {
        readonly ResultValueGetter<TResult, TValue> _get;

        public Typed(string name, DataViewType type, ResultValueGetter<TResult, TValue> get, DataViewSchema.Annotations? annotations)
            : base(name, type, annotations)
        {
            ArgumentNullException.ThrowIfNull(get);
            if (type.RawType != typeof(TValue))
                throw new ArgumentException($"Column '{name}' of type {type} holds {type.RawType.Name} values, but its getter produces {typeof(TValue).Name}.", nameof(get));
            _get = get;
        }

        internal override Type ValueType => typeof(TValue);

        internal override Delegate MakeGetter(Func<TResult> currentResult)
            => (ValueGetter<TValue>)((ref TValue value) => _get(currentResult(), ref value));
    }
}
