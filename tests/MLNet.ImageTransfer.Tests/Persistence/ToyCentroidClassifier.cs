using System.Text;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;
using MLNet.ImageTransfer.MLNet.DataViews;
using MLNet.ImageTransfer.MLNet.Persistence;

namespace MLNet.ImageTransfer.Tests.Persistence;

/// <summary>
/// A stand-in for the image classifier, without TorchSharp: a nearest-centroid classifier over a float-vector column.
/// It has learned state (class names and one centroid per class), adds Score/PredictedLabel through
/// <see cref="RowMappingTransformer{TInput, TResult}"/>, and persists through <see cref="ImageTransferModelFormat"/>
/// exactly as the real transformers do.
/// </summary>
internal sealed class ToyCentroidEstimator(IHostEnvironment env, string featureColumnName = "Features", string labelColumnName = "Label", int batchSize = 1)
    : IEstimator<ToyCentroidTransformer>
{
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        if (!inputSchema.TryFindColumn(featureColumnName, out var features)
            || features.Kind != SchemaShape.Column.VectorKind.Vector || features.ItemType != NumberDataViewType.Single)
            throw new ArgumentException($"Need a known-size float vector column '{featureColumnName}'.");
        if (!inputSchema.TryFindColumn(labelColumnName, out var label) || !label.IsKey)
            throw new ArgumentException($"Need a key label column '{labelColumnName}'.");
        return ClassificationColumns.AppendShape(inputSchema);
    }

    public ToyCentroidTransformer Fit(IDataView input)
    {
        var labelColumn = input.Schema[labelColumnName];
        var featureColumn = input.Schema[featureColumnName];
        VBuffer<ReadOnlyMemory<char>> keyValues = default;
        labelColumn.GetKeyValues(ref keyValues);
        string[] classNames = keyValues.DenseValues().Select(v => v.ToString()).ToArray();
        int dims = ((VectorDataViewType)featureColumn.Type).Size;

        var sums = new double[classNames.Length, dims];
        var counts = new int[classNames.Length];
        using (var cursor = input.GetRowCursor([labelColumn, featureColumn]))
        {
            var getLabel = cursor.GetGetter<uint>(labelColumn);
            var getFeatures = cursor.GetGetter<VBuffer<float>>(featureColumn);
            uint key = 0;
            VBuffer<float> x = default;
            while (cursor.MoveNext())
            {
                getLabel(ref key);
                getFeatures(ref x);
                if (key == 0) continue;
                int c = (int)key - 1;
                counts[c]++;
                var values = x.DenseValues().ToArray();
                for (int d = 0; d < dims; d++) sums[c, d] += values[d];
            }
        }
        var centroids = new float[classNames.Length * dims];
        for (int c = 0; c < classNames.Length; c++)
            for (int d = 0; d < dims; d++)
                centroids[c * dims + d] = counts[c] == 0 ? float.NaN : (float)(sums[c, d] / counts[c]);
        return new ToyCentroidTransformer(env, featureColumnName, classNames, centroids, batchSize);
    }
}

/// <summary>Scores = softmax(−squared distance to each centroid).</summary>
internal sealed class ToyCentroidTransformer : RowMappingTransformer<VBuffer<float>, float[]>
{
    public const string LoaderSignature = "IMGTRANSFER-TEST-TOY";

    /// <summary>The toy's persisted format (test formats register with AddLoader; ours with an assembly attribute).</summary>
    public static readonly ModelEntryFormat Format = new(LoaderSignature, "TOYCNTRD", version: 1, minReadableVersion: 1, load: Load);

    readonly int _batchSize;
    int _mapCalls, _mappedRows;

    public ToyCentroidTransformer(IHostEnvironment env, string featureColumnName, string[] classNames, float[] centroids, int batchSize = 1)
        : base(env, nameof(ToyCentroidTransformer), featureColumnName)
    {
        ImageTransferModelFormat.AddLoader(Format);
        ImageTransferModelRegistration.EnsureRegistered(env); // as the product's transformers do: a training context can load
        ClassNames = classNames;
        Centroids = centroids;
        Dimensions = centroids.Length / classNames.Length;
        _batchSize = batchSize;
        Outputs = ClassificationColumns.Create(classNames);
    }

    public string[] ClassNames { get; }
    public float[] Centroids { get; }
    public int Dimensions { get; }

    /// <summary>Test hook: save with another format (e.g. a "future" version) than the one registered for loading.</summary>
    public ModelEntryFormat SaveAs { get; set; } = Format;

    /// <summary>Test hook: fail Map when a batch contains an input whose first value is this.</summary>
    public float? FailOnFirstValue { get; set; }

    public int MapCalls => _mapCalls;
    public int MappedRows => _mappedRows;

    IReadOnlyList<OutputColumn<float[]>> Outputs { get; }

    protected override IReadOnlyList<OutputColumn<float[]>> OutputColumns => Outputs;

    protected override int BatchSize => _batchSize;

    protected override void CheckInputColumn(DataViewSchema.Column column)
    {
        base.CheckInputColumn(column);
        if (column.Type is not VectorDataViewType { ItemType: NumberDataViewType, Size: var size } || size != Dimensions)
            throw new ArgumentException($"Column '{column.Name}' must be a vector of {Dimensions} floats, but is {column.Type}.");
    }

    protected override void Map(ReadOnlySpan<VBuffer<float>> inputs, Span<float[]> results)
    {
        Interlocked.Increment(ref _mapCalls);
        Interlocked.Add(ref _mappedRows, inputs.Length);
        for (int i = 0; i < inputs.Length; i++)
        {
            var x = inputs[i].DenseValues().ToArray();
            if (FailOnFirstValue is { } bad && x[0] == bad && inputs.Length > 1)
                throw new InvalidOperationException("Batch failure (test).");
            var logits = new double[ClassNames.Length];
            for (int c = 0; c < ClassNames.Length; c++)
            {
                double d2 = 0;
                for (int d = 0; d < Dimensions; d++)
                {
                    double diff = x[d] - Centroids[c * Dimensions + d];
                    d2 += diff * diff;
                }
                logits[c] = -d2;
            }
            double max = logits.Max();
            var exp = logits.Select(l => Math.Exp(l - max)).ToArray();
            double sum = exp.Sum();
            results[i] = exp.Select(e => (float)(e / sum)).ToArray();
        }
    }

    protected override void SaveModel(ModelSaveContext ctx) => ImageTransferModelFormat.Save(ctx, SaveAs,
    [
        ("header.bin", stream =>
        {
            using var w = new BinaryWriter(stream, Encoding.UTF8);
            w.Write(InputColumnName);
            w.Write(ClassNames.Length);
            foreach (var name in ClassNames) w.Write(name);
            w.Write(Dimensions);
            w.Write(_batchSize);
        }),
        ("centroids.bin", stream =>
        {
            using var w = new BinaryWriter(stream);
            foreach (var v in Centroids) w.Write(v);
        }),
    ]);

    static ToyCentroidTransformer Load(IHostEnvironment env, LoadedParts parts)
    {
        var (column, classNames, dims, batchSize) = parts.Read("header.bin", stream =>
        {
            using var r = new BinaryReader(stream, Encoding.UTF8);
            string column = r.ReadString();
            var names = new string[r.ReadInt32()];
            for (int i = 0; i < names.Length; i++) names[i] = r.ReadString();
            return (column, names, r.ReadInt32(), r.ReadInt32());
        });
        var centroids = parts.Read("centroids.bin", stream =>
        {
            using var r = new BinaryReader(stream);
            var values = new float[classNames.Length * dims];
            for (int i = 0; i < values.Length; i++) values[i] = r.ReadSingle();
            return values;
        });
        return new ToyCentroidTransformer(env, column, classNames, centroids, batchSize);
    }
}
