using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;

namespace MLNet.ImageTransfer;

/// <summary>
/// Reads an IDataView's image and label columns into a <see cref="Training.LabeledImageSet"/>, preprocessed. Rows
/// whose image is missing (<c>LoadImagesRobust</c> gives null for an unusable file) or whose image getter throws
/// (ML.NET's <c>LoadImages</c> on a corrupt file) are skipped and reported in <c>skipped</c>, with the path when the
/// data has an <c>ImagePath</c> column; one bad file never aborts training.
/// </summary>
internal static class ImageSetReader
{
    // toTensor: how an image becomes the cached tensor; null = ImageTensors.ToResizedBytes with the preprocessing
    // (augmentation that crops caches training images larger, see Augmentation/AugmentationSource).
    public static Training.LabeledImageSet Read(IDataView data, string imageColumn, string labelColumn, string[] classNames,
        Data.ImagePreprocessing preprocessing, string what, Func<MLImage, TorchSharp.torch.Tensor>? toTensor = null)
        => Read(data, imageColumn, labelColumn, classNames, preprocessing, what, out _, toTensor);

    public static Training.LabeledImageSet Read(IDataView data, string imageColumn, string labelColumn, string[] classNames,
        Data.ImagePreprocessing preprocessing, string what, out IReadOnlyList<Data.SkippedFile> skipped, Func<MLImage, TorchSharp.torch.Tensor>? toTensor = null)
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

        // The path column, when present, names skipped rows (ImageFolder's rows and the workflow's have it).
        var pathColumn = schema.GetColumnOrNull(Data.ImageFolder.ImagePathColumn) is { Type: TextDataViewType } p ? p : (DataViewSchema.Column?)null;
        var skips = new List<Data.SkippedFile>();
        skipped = skips;
        var set = new Training.LabeledImageSet(expectedCount: (int)Math.Min(data.GetRowCount() ?? 0, 1 << 24));
        try
        {
            using var cursor = data.GetRowCursor(pathColumn is { } pc ? [image, label, pc] : [image, label]);
            var getImage = cursor.GetGetter<MLImage>(image);
            var getLabel = labelReader(cursor);
            var getPath = pathColumn is { } pathCol ? cursor.GetGetter<ReadOnlyMemory<char>>(pathCol) : null;
            MLImage img = null!;
            ReadOnlyMemory<char> path = default;
            int row = 0, missingLabels = 0, missingImages = 0;
            string RowName()
            {
                getPath?.Invoke(ref path);
                return getPath is null || path.IsEmpty ? $"row {row}" : path.ToString();
            }
            while (cursor.MoveNext())
            {
                row++;
                int y = -1;
                getLabel(ref y);
                if (y < 0) { missingLabels++; continue; }
                try
                {
#pragma warning disable CS8601 // ML.NET's getters are not nullable-annotated; a missing image comes back as null and is checked below.
                    getImage(ref img);
#pragma warning restore CS8601
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    // ML.NET's LoadImages throws for a corrupt file; the cursor itself can go on.
                    img = null!;
                    missingImages++;
                    skips.Add(new(RowName(), $"cannot be decoded: {e.GetBaseException().Message}"));
                    continue;
                }
                if (img is null || img.Width == 0 || img.Height == 0)
                {
                    missingImages++;
                    skips.Add(new(RowName(), "missing, unreadable or not a usable image"));
                    continue;
                }
                set.Add(toTensor is null ? Data.ImageTensors.ToResizedBytes(img, preprocessing) : toTensor(img), y);
            }
            if (set.Count == 0)
                throw new InvalidOperationException($"The {what} has no usable rows ({row} rows: {missingLabels} without label, {missingImages} without image"
                    + (skips.Count > 0 ? $", e.g. {skips[0].Path}: {skips[0].Reason}" : "") + ").");
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
