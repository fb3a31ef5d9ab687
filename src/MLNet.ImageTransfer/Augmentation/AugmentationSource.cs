using MLNet.ImageTransfer.Engine;
using Microsoft.ML.Data;
using MLNet.ImageTransfer.Data;
using MLNet.ImageTransfer.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Augmentation;

/// <summary>
/// The geometry training images are cached at when augmentation crops. Evaluation's torchvision-style geometry is
/// "shorter side → R, centre crop S" (R = 256 for S = 224); crop ops (torchvision's RandomResizedCrop, RandomCrop)
/// should see the whole R-pixel square, not only the S-pixel centre. So training images are cached as the R×R
/// square of the same resize, placed so that the evaluation crop is exactly its centre S×S window at
/// <see cref="EvaluationOffset"/>: cutting that window out gives, bit for bit, what evaluation computes. Stretch presets
/// (Keras) already show the whole image, so their cache stays at S.
/// </summary>
internal static class AugmentationSource
{
    /// <summary>Side of the cached training images for this preprocessing and augmentation.</summary>
    public static int SourceSize(ImagePreprocessing preprocessing, AugmentationPipeline? augmentation)
        => augmentation is { NeedsLargerSource: true } && preprocessing.Resize == ResizeMode.ShorterSideThenCenterCrop
            ? Math.Max(preprocessing.ResizeShorterSide, preprocessing.ImageSize)
            : preprocessing.ImageSize;

    /// <summary>Where the evaluation crop sits in a source square of <paramref name="sourceSize"/> (same rounding as <see cref="ImageTensors.ResizeAndCrop"/>).</summary>
    public static int EvaluationOffset(int sourceSize, int imageSize) => (int)Math.Round((sourceSize - imageSize) / 2.0);

    /// <summary>How the training reader turns an image into a cached tensor; null = the evaluation geometry (<see cref="ImageTensors.ToResizedBytes"/>).</summary>
    public static Func<MLImage, Tensor>? Reader(ImagePreprocessing preprocessing, AugmentationPipeline? augmentation)
    {
        int source = SourceSize(preprocessing, augmentation);
        return source == preprocessing.ImageSize ? null : image => ToSourceBytes(image, preprocessing, source);
    }

    /// <summary>uint8 [3,R,R]: the resize evaluation uses, cropped to an R×R square whose centre S×S window is the evaluation crop.</summary>
    public static Tensor ToSourceBytes(MLImage image, ImagePreprocessing preprocessing, int sourceSize)
    {
        int size = preprocessing.ImageSize;
        var (nw, nh) = ResizeCrop.ShorterSide(image.Width, image.Height, preprocessing.ResizeShorterSide);
        int inner = EvaluationOffset(sourceSize, size);
        int top = (int)Math.Round((nh - size) / 2.0) - inner, left = (int)Math.Round((nw - size) / 2.0) - inner;
        if (nh < sourceSize || nw < sourceSize || top < 0 || left < 0 || top + sourceSize > nh || left + sourceSize > nw)
            throw new InvalidOperationException($"Internal error: a {sourceSize}-pixel training source does not fit the {nw}×{nh} resized image.");
        var result = torch.empty(new long[] { 3, sourceSize, sourceSize }, ScalarType.Byte);
        try
        {
            using var pixels = ImageGeometry.OpaquePixels.Of(image);
            ImageGeometry.Resample(pixels.Source, new ResizeCrop(nw, nh, left, top, sourceSize, sourceSize), result.bytes,
                PillowResample.OutputLayout.Planar3, preprocessing.Channels);
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Turns a set cached at the source size into the evaluation geometry (validation rows split off the training
    /// data): the centre window, exactly what <see cref="ImageTensors.ToResizedBytes"/> gives. Disposes <paramref name="set"/>.
    /// </summary>
    public static LabeledImageSet ToEvaluationGeometry(LabeledImageSet set, ImagePreprocessing preprocessing)
    {
        if (set.Count == 0 || AllAtSize(set, preprocessing.ImageSize)) return set;
        var result = new LabeledImageSet();
        try
        {
            int size = preprocessing.ImageSize;
            for (int i = 0; i < set.Count; i++)
            {
                using var scope = NewDisposeScope();
                var (images, _) = set.Batch([i]);
                int source = (int)images.size(2);
                int offset = EvaluationOffset(source, size);
                var window = images[0].narrow(1, offset, size).narrow(2, offset, size).contiguous();
                result.Add(window.MoveToOuterDisposeScope(), set.Labels[i]);
            }
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
        finally
        {
            set.Dispose();
        }
    }

    static bool AllAtSize(LabeledImageSet set, int size)
    {
        using var scope = NewDisposeScope();
        var (first, _) = set.Batch([0]);
        return first.size(2) == size && first.size(3) == size;
    }
}
