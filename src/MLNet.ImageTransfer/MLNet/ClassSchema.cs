using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;

namespace MLNet.ImageTransfer;

/// <summary>Class names as ML.NET carries them: the KeyValues annotation of a key-typed label column.</summary>
internal static class ClassSchema
{
    /// <summary>The K class names of a key column (its KeyValues as text; "0".."K-1" when it has none).</summary>
    public static string[] ClassNames(DataViewSchema.Column keyColumn)
    {
        if (keyColumn.Type is not KeyDataViewType key)
            throw new ArgumentException($"Column '{keyColumn.Name}' must be a key (use MapValueToKey), but is {keyColumn.Type}.");
        if (key.Count == 0 || key.Count > int.MaxValue)
            throw new ArgumentException($"Key column '{keyColumn.Name}' has an unknown or unbounded number of classes.");
        int k = (int)key.Count;
        var annotation = keyColumn.Annotations.Schema.GetColumnOrNull("KeyValues");
        if (annotation is null) return Enumerable.Range(0, k).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        if (annotation.Value.Type is VectorDataViewType { ItemType: TextDataViewType })
        {
            VBuffer<ReadOnlyMemory<char>> values = default;
            keyColumn.GetKeyValues(ref values);
            return values.DenseValues().Select(v => v.ToString()).ToArray();
        }
        // Keys over numbers (e.g. MapValueToKey on an int label): render the values as text.
        var itemType = ((VectorDataViewType)annotation.Value.Type).ItemType.RawType;
        var read = typeof(ClassSchema).GetMethod(nameof(KeyValuesAsText), System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!.MakeGenericMethod(itemType);
        return (string[])read.Invoke(null, [keyColumn])!;
    }

    static string[] KeyValuesAsText<T>(DataViewSchema.Column keyColumn)
    {
        VBuffer<T> values = default;
        keyColumn.GetKeyValues(ref values);
        return values.DenseValues().Select(v => Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture) ?? "").ToArray();
    }
}
