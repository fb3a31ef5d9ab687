using Microsoft.ML;
using Microsoft.ML.Data;
using MLNet.ImageTransfer.MLNet.DataViews;

namespace MLNet.ImageTransfer.Tests.Persistence;

/// <summary>The lazy view, its batching read-ahead, and the row-to-row mapper of <see cref="RowMappingTransformer{TInput, TResult}"/>.</summary>
public sealed class MappedDataViewTests
{
    static readonly MLContext Ml = new(seed: 1);
    static readonly float[] Centroids = [0, 0, 0, 0, 3, 3, 0, 0, 0, 3, 3, 3];

    static ToyCentroidTransformer Toy(int batchSize) => new(Ml, "Features", ToyData.Classes, Centroids, batchSize);

    /// <summary>Reads Features, Score and PredictedLabel of every row; checks each row's outputs against its own features.</summary>
    static List<(float[] Features, float[] Score, uint Key)> ReadAll(IDataView view, DataViewRowCursor cursor, ToyCentroidTransformer reference)
    {
        var getFeatures = cursor.GetGetter<VBuffer<float>>(view.Schema["Features"]);
        var getScore = cursor.GetGetter<VBuffer<float>>(view.Schema["Score"]);
        var getKey = cursor.GetGetter<uint>(view.Schema["PredictedLabel"]);
        var rows = new List<(float[], float[], uint)>();
        VBuffer<float> f = default, s = default;
        uint key = 0;
        while (cursor.MoveNext())
        {
            getFeatures(ref f);
            getScore(ref s);
            getKey(ref key);
            var features = f.DenseValues().ToArray();
            var score = s.DenseValues().ToArray();
            Assert.Equal(Expected(reference, features), score);
            Assert.Equal(ClassificationColumns.ArgMaxKey(score), key);
            rows.Add((features, score, key));
        }
        return rows;
    }

    public sealed class KeyPrediction
    {
        public uint PredictedLabel { get; set; }
        public float[] Score { get; set; } = [];
    }

    static readonly DataViewSchema RowSchema = Ml.Data.LoadFromEnumerable(Array.Empty<ToyRow>()).Schema;

    /// <summary>The reference result: the same transformer through the prediction engine (row-to-row mapper, no batching).</summary>
    static float[] Expected(ToyCentroidTransformer reference, float[] features)
        => Ml.Model.CreatePredictionEngine<ToyRow, KeyPrediction>(reference, RowSchema).Predict(new ToyRow { Features = features }).Score;

    [Theory]
    [InlineData(1)]
    [InlineData(8)]
    [InlineData(64)]
    public void Batched_results_equal_row_by_row_results_and_each_row_is_computed_once(int batchSize)
    {
        var data = Ml.Data.LoadFromEnumerable(ToyData.Make(37, seed: 7));
        var toy = Toy(batchSize);
        var view = toy.Transform(data);
        using (var cursor = view.GetRowCursor(view.Schema))
            Assert.Equal(37, ReadAll(view, cursor, Toy(1)).Count);

        Assert.Equal(37, toy.MappedRows); // Score and PredictedLabel share one computation per row
        Assert.Equal((37 + batchSize - 1) / batchSize, toy.MapCalls);
    }

    [Fact]
    public void Nothing_is_computed_when_only_input_columns_are_read()
    {
        var toy = Toy(8);
        var view = toy.Transform(Ml.Data.LoadFromEnumerable(ToyData.Make(10, seed: 1)));
        using var cursor = view.GetRowCursor([view.Schema["Label"]]);
        while (cursor.MoveNext()) { }
        Assert.Equal(0, toy.MapCalls);
        Assert.False(cursor.IsColumnActive(view.Schema["Score"]));
        Assert.Throws<InvalidOperationException>(() => cursor.GetGetter<VBuffer<float>>(view.Schema["Score"]));
    }

    [Fact]
    public void Rows_skipped_by_the_consumer_are_skipped_by_the_read_ahead()
    {
        var toy = Toy(4);
        var view = toy.Transform(Ml.Data.LoadFromEnumerable(ToyData.Make(40, seed: 2)));
        using var cursor = view.GetRowCursor(view.Schema);
        var getFeatures = cursor.GetGetter<VBuffer<float>>(view.Schema["Features"]);
        var getScore = cursor.GetGetter<VBuffer<float>>(view.Schema["Score"]);
        var reference = Toy(1);
        VBuffer<float> f = default, s = default;
        while (cursor.MoveNext())
        {
            if (cursor.Position % 10 >= 3) continue; // read rows 0-2, 10-12, ...
            getFeatures(ref f);
            getScore(ref s);
            Assert.Equal(Expected(reference, f.DenseValues().ToArray()), s.DenseValues().ToArray());
        }
        Assert.True(toy.MappedRows <= 4 * 8, $"mapped {toy.MappedRows} rows"); // one batch per group of requested rows
    }

    [Fact]
    public void Shuffled_cursors_stay_consistent()
    {
        var data = Ml.Data.Cache(Ml.Data.LoadFromEnumerable(ToyData.Make(50, seed: 3))); // the cache can shuffle
        Assert.True(data.CanShuffle);
        var toy = Toy(8);
        var view = toy.Transform(data);
        Assert.True(view.CanShuffle);
        using var cursor = view.GetRowCursor(view.Schema, new Random(42));
        var rows = ReadAll(view, cursor, Toy(1));
        Assert.Equal(50, rows.Count);
        var inOrder = ToyData.Make(50, seed: 3).Select(r => r.Features[0]).ToList();
        Assert.NotEqual(inOrder, rows.Select(r => r.Features[0]).ToList()); // really shuffled
    }

    public sealed class WeightedRow
    {
        public float Weight { get; set; }

        [VectorType(ToyData.Dimensions)]
        public float[] Features { get; set; } = [];
    }

    [Fact]
    public void A_filter_before_the_transformer_is_handled()
    {
        var rows = ToyData.Make(60, seed: 4).Select((r, i) => new WeightedRow { Weight = i % 7 == 3 ? 0 : 1, Features = r.Features });
        var data = Ml.Data.FilterRowsByColumn(Ml.Data.LoadFromEnumerable(rows), "Weight", lowerBound: 0.5, upperBound: 2);
        var view = Toy(8).Transform(data);
        using var cursor = view.GetRowCursor(view.Schema);
        Assert.Equal(60 - 9, ReadAll(view, cursor, Toy(1)).Count);
    }

    [Fact]
    public void Cursor_sets_cover_every_row_once()
    {
        var data = Ml.Data.LoadFromEnumerable(ToyData.Make(30, seed: 5));
        foreach (int batchSize in new[] { 1, 8 })
        {
            var view = Toy(batchSize).Transform(data);
            var cursors = view.GetRowCursorSet(view.Schema, 4);
            if (batchSize > 1) Assert.Single(cursors);
            int total = 0;
            foreach (var cursor in cursors)
                using (cursor)
                    total += ReadAll(view, cursor, Toy(1)).Count;
            Assert.Equal(30, total);
        }
    }

    [Fact]
    public void A_failing_batch_is_recomputed_row_by_row()
    {
        var rows = ToyData.Make(20, seed: 6);
        var toy = Toy(8);
        toy.FailOnFirstValue = rows[10].Features[0]; // fails only when mapped in a batch
        var view = toy.Transform(Ml.Data.LoadFromEnumerable(rows));
        using var cursor = view.GetRowCursor(view.Schema);
        Assert.Equal(20, ReadAll(view, cursor, Toy(1)).Count);
    }

    public sealed class RowWithBadFeatures
    {
        public static int BadRow = -1;
        public int Index { get; set; }

        [VectorType(ToyData.Dimensions)]
        public float[] Features => Index == BadRow ? throw new InvalidDataException($"row {Index} is unreadable") : [Index, 0, 0, 0];
    }

    [Fact]
    public void An_unreadable_input_fails_at_its_own_row()
    {
        RowWithBadFeatures.BadRow = 11;
        var data = Ml.Data.LoadFromEnumerable(Enumerable.Range(0, 20).Select(i => new RowWithBadFeatures { Index = i }).ToArray());
        var view = Toy(8).Transform(data);
        using var cursor = view.GetRowCursor(view.Schema);
        var getScore = cursor.GetGetter<VBuffer<float>>(view.Schema["Score"]);
        VBuffer<float> s = default;
        long failedAt = -1;
        Exception? error = null;
        while (cursor.MoveNext())
        {
            try { getScore(ref s); }
            catch (Exception e) { failedAt = cursor.Position; error = e; break; }
        }
        Assert.Equal(11, failedAt);
        Assert.Contains("row 11 is unreadable", error!.ToString());
    }

    [Fact]
    public void Output_schema_follows_the_evaluation_contract()
    {
        var data = Ml.Data.LoadFromEnumerable(ToyData.Make(3, seed: 1));
        var schema = Toy(1).GetOutputSchema(data.Schema);

        Assert.Equal(data.Schema.Count + 2, schema.Count);
        var score = schema["Score"];
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 3), score.Type);
        VBuffer<ReadOnlyMemory<char>> slotNames = default;
        score.GetSlotNames(ref slotNames);
        Assert.Equal(ToyData.Classes, slotNames.DenseValues().Select(v => v.ToString()));
        var predicted = schema["PredictedLabel"];
        Assert.Equal(new KeyDataViewType(typeof(uint), 3), predicted.Type);
        VBuffer<ReadOnlyMemory<char>> keyValues = default;
        predicted.GetKeyValues(ref keyValues);
        Assert.Equal(ToyData.Classes, keyValues.DenseValues().Select(v => v.ToString()));
    }

    [Fact]
    public void Output_columns_hide_same_named_input_columns()
    {
        var data = Ml.Data.LoadFromEnumerable(ToyData.Make(3, seed: 1));
        var withScore = Ml.Transforms.CopyColumns("Score", "Features").Fit(data).Transform(data);
        var view = Toy(1).Transform(withScore);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 3), view.Schema["Score"].Type);
        Assert.True(view.Schema[withScore.Schema["Score"].Index].IsHidden);
        using var cursor = view.GetRowCursor(view.Schema);
        Assert.Equal(3, ReadAll(view, cursor, Toy(1)).Count);
    }

    [Fact]
    public void Missing_or_wrong_input_columns_are_reported()
    {
        var data = Ml.Data.LoadFromEnumerable(ToyData.Make(3, seed: 1));
        var renamed = Ml.Transforms.CopyColumns("Other", "Features").Fit(data).Transform(data);
        Assert.Throws<ArgumentOutOfRangeException>(() => new ToyCentroidTransformer(Ml, "Nope", ToyData.Classes, Centroids).GetOutputSchema(data.Schema));
        Assert.Throws<ArgumentException>(() => new ToyCentroidTransformer(Ml, "Label", ToyData.Classes, Centroids).Transform(renamed));
    }

    [Fact]
    public void The_prediction_engine_uses_the_row_mapper()
    {
        var toy = Toy(16); // batching does not apply to single rows
        var schema = Ml.Data.LoadFromEnumerable(Array.Empty<ToyRow>()).Schema;
        Assert.True(toy.IsRowToRowMapper);
        var engine = Ml.Model.CreatePredictionEngine<ToyRow, KeyPrediction>(toy, schema);
        var a = engine.Predict(new ToyRow { Features = [0, 0, 0, 0] });
        var b = engine.Predict(new ToyRow { Features = [3, 3, 0, 0] }); // same row object reused by the engine: not cached
        Assert.Equal(1u, a.PredictedLabel);
        Assert.Equal(2u, b.PredictedLabel);
        Assert.Equal(2, toy.MapCalls);
    }

    [Fact]
    public void SchemaShapes_converts_schemas_like_ML_NET()
    {
        var data = Ml.Data.LoadFromEnumerable(ToyData.Make(3, seed: 1));
        var keyed = Ml.Transforms.Conversion.MapValueToKey("Label").Fit(data).Transform(data);
        var shape = SchemaShapes.FromSchema(keyed.Schema);
        Assert.True(shape.TryFindColumn("Label", out var label));
        Assert.True(label.IsKey);
        Assert.True(label.HasAnnotation("KeyValues"));
        Assert.True(shape.TryFindColumn("Features", out var features));
        Assert.Equal(SchemaShape.Column.VectorKind.Vector, features.Kind);
        Assert.False(shape.TryFindColumn("Nope", out _));

        var appended = ClassificationColumns.AppendShape(shape);
        Assert.Equal(shape.Count + 2, appended.Count);
        Assert.True(appended.TryFindColumn("PredictedLabel", out var predicted) && predicted.IsKey && predicted.HasAnnotation("KeyValues"));
    }

    [Fact]
    public void ArgMax_handles_ties_and_NaN()
    {
        Assert.Equal(2u, ClassificationColumns.ArgMaxKey([0.1f, 0.5f, 0.5f]));
        Assert.Equal(3u, ClassificationColumns.ArgMaxKey([float.NaN, 0.1f, 0.2f]));
        Assert.Equal(0u, ClassificationColumns.ArgMaxKey([float.NaN, float.NaN]));
    }
}
