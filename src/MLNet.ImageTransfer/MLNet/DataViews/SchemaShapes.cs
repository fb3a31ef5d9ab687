using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.ImageTransfer.MLNet.DataViews;

/// <summary>
/// <see cref="SchemaShape"/>s for our estimators' <c>GetOutputSchema</c>, built with ML.NET's public API only.
/// </summary>
/// <remarks>
/// Both ways ML.NET builds shapes itself are internal (<c>SchemaShape.Create(DataViewSchema)</c> and the
/// <c>SchemaShape.Column</c> constructor). The public route used here: a data loader whose schema is the wanted one,
/// put in front of an empty estimator chain — <see cref="LearningPipelineExtensions.Append{TSource, TTrans}(IDataLoader{TSource}, IEstimator{TTrans})"/>
/// — and asked for its output shape; ML.NET converts the schema (types, key-ness, annotations) exactly as it does for
/// its own components. The shape's columns are then combined with the public <see cref="SchemaShape(IEnumerable{SchemaShape.Column})"/>.
/// </remarks>
internal static class SchemaShapes
{
    /// <summary>The shape of <paramref name="schema"/> (its visible columns), like ML.NET's internal <c>SchemaShape.Create</c>.</summary>
    public static SchemaShape FromSchema(DataViewSchema schema)
    {
        ArgumentNullException.ThrowIfNull(schema);
        return new SchemaOnlyLoader(schema).Append(new EstimatorChain<ITransformer>()).GetOutputSchema();
    }

    /// <summary>
    /// <paramref name="input"/> with <paramref name="added"/>'s columns appended, replacing same-named input columns —
    /// what an estimator that adds these columns returns from <c>GetOutputSchema</c>.
    /// </summary>
    public static SchemaShape Append(SchemaShape input, DataViewSchema added)
    {
        ArgumentNullException.ThrowIfNull(input);
        var addedShape = FromSchema(added);
        var names = new HashSet<string>(addedShape.Select(c => c.Name));
        return new SchemaShape(input.Where(c => !names.Contains(c.Name)).Concat(addedShape));
    }

    /// <summary><see cref="Append(SchemaShape, DataViewSchema)"/> for a mapping's output columns.</summary>
    public static SchemaShape Append<TResult>(SchemaShape input, IEnumerable<OutputColumn<TResult>> added)
    {
        var builder = new DataViewSchema.Builder();
        foreach (var column in added)
            builder.AddColumn(column.Name, column.Type, column.Annotations);
        return Append(input, builder.ToSchema());
    }

    /// <summary>Finds a column by name (ML.NET's <c>SchemaShape.TryFindColumn</c> is internal).</summary>
    public static bool TryFindColumn(this SchemaShape shape, string name, out SchemaShape.Column column)
    {
        ArgumentNullException.ThrowIfNull(shape);
        foreach (var candidate in shape)
        {
            if (candidate.Name == name)
            {
                column = candidate;
                return true;
            }
        }
        column = default;
        return false;
    }

    /// <summary>Whether the column has an annotation of this kind (e.g. <c>"KeyValues"</c>, <c>"SlotNames"</c>).</summary>
    public static bool HasAnnotation(this SchemaShape.Column column, string kind)
        => column.Annotations is { } annotations && annotations.TryFindColumn(kind, out _);

    /// <summary>A loader that only has a schema: it exists to be turned into a shape by ML.NET's pipeline code.</summary>
    sealed class SchemaOnlyLoader(DataViewSchema schema) : IDataLoader<int>
    {
        public DataViewSchema GetOutputSchema() => schema;
        public IDataView Load(int input) => throw new NotSupportedException("This loader only describes a schema.");
        void ICanSaveModel.Save(ModelSaveContext ctx) => throw new NotSupportedException("This loader only describes a schema.");
    }
}
