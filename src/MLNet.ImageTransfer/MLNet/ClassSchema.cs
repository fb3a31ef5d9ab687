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

/// <summary>Reads an IDataView's image and label columns into a <see cref="Training.LabeledImageSet"/>, preprocessed.</summary>
internal static class ImageSetReader
{
    public static Training.LabeledImageSet Read(IDataView data, string imageColumn, string labelColumn, string[] classNames,
        Data.ImagePreprocessing preprocessing, string what)
    {
        var schema = data.Schema;
        var image = schema.GetColumnOrNull(imageColumn)
            ?? throw new ArgumentException($"The {what} has no column '{imageColumn}'. It must be transformed with the same LoadImages as the training data (e.g. prefix.Fit(train).Transform({what.Replace(' ', '_')})).");
        if (image.Type is not ImageDataViewType)
            throw new ArgumentException($"Column '{imageColumn}' of the {what} must hold images (from LoadImages), but is {image.Type}.");
        var label = schema.GetColumnOrNull(labelColumn) ?? throw new ArgumentException($"The {what} has no label column '{labelColumn}'.");
        Func<DataViewRowCursor, ValueGetter<int>> labelReader = label.Type switch
        {
            KeyDataViewType key when key.Count == (ulong)classNames.Length => c => KeyLabel(c, label, classNames, what),
            KeyDataViewType key => throw new ArgumentException($"The {what}'s label column '{labelColumn}' has {key.Count} classes but the training data has {classNames.Length}."),
            TextDataViewType => c => TextLabel(c, label, classNames, what),
            _ => throw new ArgumentException($"The {what}'s label column '{labelColumn}' must be a key or text, but is {label.Type}."),
        };

        var set = new Training.LabeledImageSet();
        try
        {
            using var cursor = data.GetRowCursor([image, label]);
            var getImage = cursor.GetGetter<MLImage>(image);
            var getLabel = labelReader(cursor);
            MLImage img = null!;
            int row = 0, missingLabels = 0, missingImages = 0;
            while (cursor.MoveNext())
            {
                row++;
                int y = -1;
                getLabel(ref y);
                if (y < 0) { missingLabels++; continue; }
                getImage(ref img);
                if (img is null || img.Width == 0 || img.Height == 0) { missingImages++; continue; }
                set.Add(Data.ImageTensors.ToResizedBytes(img, preprocessing), y);
            }
            if (set.Count == 0)
                throw new InvalidOperationException($"The {what} has no usable rows ({row} rows: {missingLabels} without label, {missingImages} without image).");
            return set;
        }
        catch
        {
            set.Dispose();
            throw;
        }
    }

    static ValueGetter<int> KeyLabel(DataViewRowCursor cursor, DataViewSchema.Column column, string[] classNames, string what)
    {
        var get = cursor.GetGetter<uint>(column);
        uint key = 0;
        return (ref int value) => { get(ref key); value = key == 0 ? -1 : (int)key - 1; };
    }

    static ValueGetter<int> TextLabel(DataViewRowCursor cursor, DataViewSchema.Column column, string[] classNames, string what)
    {
        var index = classNames.Select((n, i) => (n, i)).ToDictionary(p => p.n, p => p.i, StringComparer.Ordinal);
        var get = cursor.GetGetter<ReadOnlyMemory<char>>(column);
        ReadOnlyMemory<char> text = default;
        return (ref int value) =>
        {
            get(ref text);
            var s = text.ToString();
            if (s.Length == 0) { value = -1; return; }
            value = index.TryGetValue(s, out var i) ? i
                : throw new InvalidDataException($"The {what} has label '{s}', which is not among the training classes ({string.Join(", ", classNames)}).");
        };
    }
}
