using Microsoft.ML;
using Microsoft.ML.Data;

namespace MLNet.ImageTransfer.MLNet.DataViews;

/// <summary>
/// The two columns of ML.NET's multiclass contract, computed from a row's class probabilities (a <c>float[K]</c>):
/// <list type="bullet">
/// <item><c>Score</c>: known-size <c>Vector&lt;float, K&gt;</c> whose <c>SlotNames</c> annotation holds the class names
/// (the confusion table and <c>Evaluate</c>'s per-class metrics take the names from there);</item>
/// <item><c>PredictedLabel</c>: <c>Key&lt;uint, K&gt;</c> = 1 + the arg-max, whose <c>KeyValues</c> annotation holds the
/// class names (needed by <c>MapKeyToValue</c>); 0 (missing) when every probability is NaN.</item>
/// </list>
/// </summary>
internal static class ClassificationColumns
{
    public const string DefaultScoreColumnName = "Score";
    public const string DefaultPredictedLabelColumnName = "PredictedLabel";

    // ML.NET's annotation kind names; its constants (AnnotationUtils.Kinds) and AddSlotNames/AddKeyValues are internal.
    public const string SlotNamesKind = "SlotNames";
    public const string KeyValuesKind = "KeyValues";

    /// <summary>Score and PredictedLabel for <paramref name="classNames"/>; results must hold K probabilities.</summary>
    public static IReadOnlyList<OutputColumn<float[]>> Create(IReadOnlyList<string> classNames,
        string scoreColumnName = DefaultScoreColumnName, string predictedLabelColumnName = DefaultPredictedLabelColumnName)
    {
        ArgumentNullException.ThrowIfNull(classNames);
        int k = classNames.Count;
        if (k < 2) throw new ArgumentException($"A classifier needs at least two classes, got {k}.", nameof(classNames));
        if (scoreColumnName == predictedLabelColumnName)
            throw new ArgumentException($"Score and predicted label columns must differ (both '{scoreColumnName}').");

        var names = classNames.Select(n => (n ?? "").AsMemory()).ToArray();
        ValueGetter<VBuffer<ReadOnlyMemory<char>>> getNames = (ref VBuffer<ReadOnlyMemory<char>> value)
            => new VBuffer<ReadOnlyMemory<char>>(k, (ReadOnlyMemory<char>[])names.Clone()).CopyTo(ref value);

        var namesType = new VectorDataViewType(TextDataViewType.Instance, k);
        var slotNames = new DataViewSchema.Annotations.Builder();
        slotNames.Add(SlotNamesKind, namesType, getNames);
        var keyValues = new DataViewSchema.Annotations.Builder();
        keyValues.Add(KeyValuesKind, namesType, getNames);

        var score = OutputColumn<float[]>.Create(scoreColumnName, new VectorDataViewType(NumberDataViewType.Single, k),
            (float[] probabilities, ref VBuffer<float> value) =>
            {
                CheckLength(probabilities, k);
                var editor = VBufferEditor.Create(ref value, k); // reuses the caller's buffer when large enough
                probabilities.AsSpan().CopyTo(editor.Values);
                value = editor.Commit();
            },
            slotNames.ToAnnotations());

        var predicted = OutputColumn<float[]>.Create(predictedLabelColumnName, new KeyDataViewType(typeof(uint), k),
            (float[] probabilities, ref uint value) =>
            {
                CheckLength(probabilities, k);
                value = ArgMaxKey(probabilities);
            },
            keyValues.ToAnnotations());

        return [score, predicted];
    }

    /// <summary>
    /// <paramref name="input"/> plus the Score and PredictedLabel columns, for an estimator's <c>GetOutputSchema</c>
    /// (a shape carries neither the number of classes nor their names, so none are needed).
    /// </summary>
    public static SchemaShape AppendShape(SchemaShape input,
        string scoreColumnName = DefaultScoreColumnName, string predictedLabelColumnName = DefaultPredictedLabelColumnName)
        => SchemaShapes.Append(input, Create(["class 1", "class 2"], scoreColumnName, predictedLabelColumnName));

    /// <summary>1 + the index of the largest probability (the first on ties); 0 when all are NaN.</summary>
    public static uint ArgMaxKey(ReadOnlySpan<float> probabilities)
    {
        int best = -1;
        for (int i = 0; i < probabilities.Length; i++)
            if (!float.IsNaN(probabilities[i]) && (best < 0 || probabilities[i] > probabilities[best])) best = i;
        return (uint)(best + 1);
    }

    static void CheckLength(float[] probabilities, int k)
    {
        if (probabilities is null || probabilities.Length != k)
            throw new InvalidOperationException($"The classifier produced {probabilities?.Length ?? 0} probabilities for {k} classes.");
    }
}
