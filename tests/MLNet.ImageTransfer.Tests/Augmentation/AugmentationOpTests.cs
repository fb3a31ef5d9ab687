using MLNet.ImageTransfer.Augmentation;
using MLNet.ImageTransfer.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace MLNet.ImageTransfer.Tests.Augmentation;

/// <summary>
/// Every op's exact geometric or colour effect on synthetic images: flips mirror pixels exactly, quarter turns are
/// transpose + flip, affine ops move a linear ramp exactly where their formula says, fill modes fill as named, colour
/// ops compute their formula, and zero-range ops are the identity.
/// </summary>
public class AugmentationOpTests
{
    const int Size = 16;

    /// <summary>Random uint8 images [n,3,size,size].</summary>
    internal static Tensor Images(int n = 3, int size = Size, int seed = 3, int width = 0)
    {
        using var generator = new Generator((ulong)seed, CPU);
        return randint(0, 256, [n, 3, size, width == 0 ? size : width], dtype: ScalarType.Byte, generator: generator);
    }

    /// <summary>A float ramp image: value(x, y) = 4x + 2y + 10 in every channel (bilinear interpolation reproduces it exactly).</summary>
    static Tensor Ramp(int size = Size)
    {
        var x = arange(size, dtype: ScalarType.Float32).view(1, 1, 1, size);
        var y = arange(size, dtype: ScalarType.Float32).view(1, 1, size, 1);
        return (x * 4 + y * 2 + 10).expand(1, 3, size, size).contiguous();
    }

    static float RampValue(double x, double y) => (float)(4 * x + 2 * y + 10);

    internal static Tensor Run(AugmentationPipeline pipeline, Tensor images, int? outputSize = null, int seed = 0, ChannelOrder channels = ChannelOrder.Rgb)
        => new ImageAugmenter(pipeline, outputSize ?? (int)images.shape[3], channels).Apply(images, new Random(seed));

    static AugmentationPipeline Only(AugmentationOp op, FillMode fill = FillMode.Nearest, double cval = 0)
        => new AugmentationPipeline([op]) { Fill = fill, FillValue = cval };

    static void AssertClose(Tensor expected, Tensor actual, double tolerance = 0)
    {
        Assert.Equal(expected.shape, actual.shape);
        double diff = (expected.to_type(ScalarType.Float64) - actual.to_type(ScalarType.Float64)).abs().max().item<double>();
        Assert.True(diff <= tolerance, $"max |difference| {diff} > {tolerance}");
    }

    /// <summary>Checks out(x, y) = expected(x, y) wherever <paramref name="inside"/>(x, y), on every channel.</summary>
    static void AssertPixels(Tensor output, Func<int, int, (bool Inside, float Value)> expected, double tolerance = 1e-3)
    {
        var data = output.to_type(ScalarType.Float32).contiguous().data<float>().ToArray();
        int h = (int)output.shape[2], w = (int)output.shape[3];
        int checkedPixels = 0;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                {
                    var (inside, value) = expected(x, y);
                    if (!inside) continue;
                    checkedPixels++;
                    float actual = data[(c * h + y) * w + x];
                    Assert.True(Math.Abs(actual - value) <= tolerance, $"pixel ({x},{y}) channel {c}: {actual}, expected {value}");
                }
        Assert.True(checkedPixels > 0);
    }

    // ---- Geometry -------------------------------------------------------------------------------------------------

    [Fact]
    public void Horizontal_and_vertical_flips_mirror_pixels_exactly()
    {
        using var images = Images();
        AssertClose(images.flip(3), Run(Only(new HorizontalFlip { Probability = 1 }), images));
        AssertClose(images.flip(2), Run(Only(new VerticalFlip { Probability = 1 }), images));
        AssertClose(images.flip(2, 3), Run(new AugmentationPipeline().HorizontalFlip(1).VerticalFlip(1), images));
    }

    [Fact]
    public void Flips_with_probability_half_mirror_about_half_the_images_and_leave_the_rest_untouched()
    {
        using var images = Images(n: 200, size: 4);
        var output = Run(Only(new HorizontalFlip()), images);
        int flipped = 0;
        for (int i = 0; i < 200; i++)
        {
            bool same = output[i].Same(images[i].to_type(ScalarType.Float32));
            bool mirrored = output[i].Same(images[i].flip(2).to_type(ScalarType.Float32));
            Assert.True(same || mirrored, $"image {i} is neither itself nor its mirror");
            if (!same) flipped++;
        }
        Assert.InRange(flipped, 70, 130);
    }

    [Fact]
    public void A_quarter_turn_is_a_transpose_and_a_flip_and_a_half_turn_flips_both_axes()
    {
        using var images = Images();
        // +90° turns the content counter-clockwise: out[y, x] = in[x, W−1−y] = transpose, then flip rows.
        AssertClose(images.transpose(2, 3).flip(2), Run(Only(new Rotate(ParameterRange.Fixed(90))), images));
        AssertClose(images.transpose(2, 3).flip(3), Run(Only(new Rotate(ParameterRange.Fixed(-90))), images));
        AssertClose(images.flip(2, 3), Run(Only(new Rotate(ParameterRange.Fixed(180))), images));
        AssertClose(images.rot90(1, (2, 3)), Run(Only(new Rotate(ParameterRange.Fixed(90))), images));
    }

    [Theory]
    [InlineData(30.0)]
    [InlineData(-17.5)]
    public void Rotation_samples_the_input_at_the_rotated_position(double degrees)
    {
        using var ramp = Ramp();
        var output = Run(Only(new Rotate(ParameterRange.Fixed(degrees))), ramp);
        double t = degrees * Math.PI / 180, c = (Size - 1) / 2.0;
        AssertPixels(output, (x, y) =>
        {
            double dx = x - c, dy = y - c;
            double ix = c + Math.Cos(t) * dx - Math.Sin(t) * dy, iy = c + Math.Sin(t) * dx + Math.Cos(t) * dy;
            return (ix is >= 0 and <= Size - 1 && iy is >= 0 and <= Size - 1, RampValue(ix, iy));
        });
    }

    [Fact]
    public void Rotation_turns_content_counter_clockwise()
    {
        // A bright dot right of the centre ends up above the centre after +90°.
        using var image = zeros(1, 3, 9, 9, dtype: ScalarType.Byte);
        image[0].narrow(1, 4, 1).narrow(2, 7, 1).fill_(255);
        var output = Run(Only(new Rotate(ParameterRange.Fixed(90))), image);
        Assert.Equal(255f, output[0, 0, 1, 4].item<float>());
    }

    [Fact]
    public void Shift_moves_content_by_whole_pixels_and_fills_with_the_constant()
    {
        using var ramp = Ramp();
        var output = Run(Only(new Shift(ParameterRange.Fixed(3), ParameterRange.Fixed(-2)), FillMode.Constant, cval: 7), ramp);
        AssertPixels(output, (x, y) =>
        {
            int ix = x - 3, iy = y + 2;
            bool inside = ix is >= 0 and < Size && iy is >= 0 and < Size;
            return (true, inside ? RampValue(ix, iy) : 7f);
        });
        // Fractions (< 1) are of the image size: 0.25 of 16 = 4 pixels.
        var quarter = Run(Only(new Shift(ParameterRange.Fixed(0.25), ParameterRange.Fixed(0)), FillMode.Constant), ramp);
        AssertPixels(quarter, (x, y) => (x >= 4, RampValue(x - 4, y)));
    }

    [Fact]
    public void Fill_modes_fill_as_keras_names_them()
    {
        using var images = Images(n: 2, size: 8);
        var input = images.to_type(ScalarType.Float32);
        AugmentationPipeline ShiftRight(FillMode fill) => Only(new Shift(ParameterRange.Fixed(3), ParameterRange.Fixed(0)), fill, cval: 99);

        // wrap: a periodic shift, i.e. torch.roll.
        AssertClose(input.roll(3, 3), Run(ShiftRight(FillMode.Wrap), images), 1e-3);
        var shifted = input.narrow(3, 0, 5);
        // nearest: aaa|abcd — the first column repeated.
        var nearest = Run(ShiftRight(FillMode.Nearest), images);
        AssertClose(shifted, nearest.narrow(3, 3, 5), 1e-3);
        AssertClose(input.narrow(3, 0, 1).expand(2, 3, 8, 3), nearest.narrow(3, 0, 3), 1e-3);
        // reflect: cba|abcd — mirrored about the edge.
        var reflect = Run(ShiftRight(FillMode.Reflect), images);
        AssertClose(shifted, reflect.narrow(3, 3, 5), 1e-3);
        AssertClose(input.narrow(3, 0, 3).flip(3), reflect.narrow(3, 0, 3), 1e-3);
        // constant: kkk|abcd with cval.
        var constant = Run(ShiftRight(FillMode.Constant), images);
        AssertClose(shifted, constant.narrow(3, 3, 5), 1e-3);
        AssertClose(full(new long[] { 2, 3, 8, 3 }, 99f), constant.narrow(3, 0, 3), 1e-3);
    }

    [Fact]
    public void Shear_uses_keras_geometry_in_degrees()
    {
        using var ramp = Ramp();
        var output = Run(Only(new Shear(ParameterRange.Fixed(20))), ramp);
        double s = 20 * Math.PI / 180, c = (Size - 1) / 2.0;
        AssertPixels(output, (x, y) =>
        {
            double ix = c + Math.Cos(s) * (x - c), iy = y - Math.Sin(s) * (x - c);
            return (iy is >= 0 and <= Size - 1, RampValue(ix, iy));
        });
    }

    [Fact]
    public void Zoom_scales_about_the_centre_with_keras_semantics()
    {
        using var ramp = Ramp();
        double c = (Size - 1) / 2.0;
        // Factor 0.5 samples the central half: zoomed in 2×.
        var zoomIn = Run(Only(new Zoom(ParameterRange.Fixed(0.5))), ramp);
        AssertPixels(zoomIn, (x, y) => (true, RampValue(c + 0.5 * (x - c), c + 0.5 * (y - c))));
        // Factor 2 zooms out; outside pixels take the fill value.
        var zoomOut = Run(Only(new Zoom(ParameterRange.Fixed(2)), FillMode.Constant, cval: 0), ramp);
        AssertPixels(zoomOut, (x, y) =>
        {
            double ix = c + 2 * (x - c), iy = c + 2 * (y - c);
            bool inside = ix is >= 0 and <= Size - 1 && iy is >= 0 and <= Size - 1;
            bool outside = ix < -1 || ix > Size || iy < -1 || iy > Size;
            return (inside || outside, inside ? RampValue(ix, iy) : 0f);
        });
        // Without keep-aspect, width and height draw separate factors (Keras): a 0.5–2 range makes them differ.
        var pipeline = Only(new Zoom(new ParameterRange(0.5, 2)));
        var a = Run(pipeline, ramp, seed: 1);
        var kept = Run(Only(new Zoom(new ParameterRange(0.5, 2), KeepAspectRatio: true)), ramp, seed: 1);
        Assert.False(a.Same(kept));
    }

    [Fact]
    public void Random_crop_copies_a_window_of_the_larger_source_exactly_and_skipped_images_get_the_centre()
    {
        using var images = Images(n: 4, size: 20);
        var output = Run(Only(new RandomCrop()), images, outputSize: 12, seed: 5);
        Assert.Equal([4L, 3, 12, 12], output.shape);
        var offsets = new HashSet<(int, int)>();
        for (int i = 0; i < 4; i++)
        {
            var found = Enumerable.Range(0, 9).SelectMany(top => Enumerable.Range(0, 9).Select(left => (top, left)))
                .Where(o => output[i].Same(images[i].narrow(1, o.top, 12).narrow(2, o.left, 12).to_type(ScalarType.Float32))).ToList();
            Assert.Single(found);
            offsets.Add(found[0]);
        }
        Assert.True(offsets.Count > 1, "every image got the same window");
        // Probability 0: the centre window (the evaluation crop).
        var skipped = Run(Only(new RandomCrop { Probability = 0 }), images, outputSize: 12);
        AssertClose(images.narrow(2, 4, 12).narrow(3, 4, 12), skipped);
        // A window larger than the image is refused with a clear message.
        var error = Assert.Throws<InvalidOperationException>(() => Run(Only(new RandomCrop(30)), images, outputSize: 12));
        Assert.Contains("does not fit", error.Message);
    }

    [Fact]
    public void Random_resized_crop_resamples_its_window_to_the_output_size()
    {
        using var ramp = Ramp(20);
        // Scale 1, ratio 1: the whole 20-pixel image resized to 10 pixels, with Pillow's antialiased bilinear: a
        // symmetric triangle over 4 pixels reproduces the ramp at each output pixel's centre; at the border Pillow
        // renormalises the cut filter, so the outermost pixels lean inwards (by under 2 grey levels here).
        var whole = Run(Only(new RandomResizedCrop(ParameterRange.Fixed(1), ParameterRange.Fixed(1))), ramp, outputSize: 10);
        AssertPixels(whole, (x, y) => (x is > 0 and < 9 && y is > 0 and < 9, RampValue((x + 0.5) * 2 - 0.5, (y + 0.5) * 2 - 0.5)));
        AssertPixels(whole, (x, y) => (true, RampValue((x + 0.5) * 2 - 0.5, (y + 0.5) * 2 - 0.5)), tolerance: 2);
        // Any window of a constant image is that constant; windows differ between draws.
        var constant = full(new long[] { 2, 3, 20, 20 }, 77f);
        AssertClose(full(new long[] { 2, 3, 10, 10 }, 77f), Run(Only(new RandomResizedCrop()), constant, outputSize: 10), 1e-4);
        using var images = Images(n: 2, size: 20);
        Assert.False(Run(Only(new RandomResizedCrop()), images, 10, seed: 1).Same(Run(Only(new RandomResizedCrop()), images, 10, seed: 2)));
    }

    [Fact]
    public void Geometric_ops_in_a_row_are_fused_into_one_map()
    {
        // hflip then a 90° turn (both exact) = one exact pixel permutation.
        using var images = Images();
        var output = Run(new AugmentationPipeline([new HorizontalFlip { Probability = 1 }, new Rotate(ParameterRange.Fixed(90))]), images);
        AssertClose(images.flip(3).rot90(1, (2, 3)), output);
    }

    // ---- Colour ------------------------------------------------------------------------------------------------

    [Fact]
    public void Brightness_scales_values_by_the_factor_and_clips()
    {
        using var images = Images();
        var f = images.to_type(ScalarType.Float32);
        AssertClose((f * 1.5f).clamp(0, 255), Run(Only(new Brightness(ParameterRange.Fixed(1.5))), images), 1e-4);
        AssertClose(f * 0.25f, Run(Only(new Brightness(ParameterRange.Fixed(0.25))), images), 1e-4);
    }

    [Fact]
    public void Contrast_and_saturation_blend_with_the_mean_grey_and_the_grey_image()
    {
        using var images = Images();
        var f = images.to_type(ScalarType.Float32);
        var gray = f.narrow(1, 0, 1) * 0.299f + f.narrow(1, 1, 1) * 0.587f + f.narrow(1, 2, 1) * 0.114f;
        var mean = gray.mean([1, 2, 3], keepdim: true);
        AssertClose((f * 0.6f + mean * 0.4f).clamp(0, 255), Run(Only(new Contrast(ParameterRange.Fixed(0.6))), images), 1e-3);
        AssertClose(gray.expand_as(f), Run(Only(new Saturation(ParameterRange.Fixed(0))), images), 1e-3);
        AssertClose((f * 1.3f - gray * 0.3f).clamp(0, 255), Run(Only(new Saturation(ParameterRange.Fixed(1.3))), images), 1e-3);
    }

    static Tensor Solid(float r, float g, float b) => tensor(new[] { r, g, b }).view(1, 3, 1, 1).expand(1, 3, 4, 4).contiguous();

    [Fact]
    public void Hue_rotates_the_colour_circle_and_respects_bgr_order()
    {
        using var red = Solid(255, 0, 0);
        AssertClose(Solid(0, 255, 0), Run(Only(new Hue(ParameterRange.Fixed(1.0 / 3))), red), 1e-2);
        AssertClose(Solid(0, 0, 255), Run(Only(new Hue(ParameterRange.Fixed(-1.0 / 3))), red), 1e-2);
        AssertClose(Solid(0, 255, 255), Run(Only(new Hue(ParameterRange.Fixed(0.5))), red), 1e-2);
        // Greys have no hue.
        using var grey = Solid(90, 90, 90);
        AssertClose(grey, Run(Only(new Hue(ParameterRange.Fixed(0.3))), grey), 1e-3);
        // The same red stored BGR (keras-caffe preset): still turns green.
        using var redBgr = Solid(0, 0, 255);
        AssertClose(Solid(0, 255, 0), Run(Only(new Hue(ParameterRange.Fixed(1.0 / 3))), redBgr, channels: ChannelOrder.Bgr), 1e-2);
        AssertClose(Solid(255, 0, 0), Run(Only(new Hue(ParameterRange.Fixed(-1.0 / 3))), redBgr, channels: ChannelOrder.Bgr), 1e-2);
    }

    [Fact]
    public void Grayscale_sets_every_channel_to_the_luma()
    {
        using var images = Images();
        var f = images.to_type(ScalarType.Float32);
        var gray = f.narrow(1, 0, 1) * 0.299f + f.narrow(1, 1, 1) * 0.587f + f.narrow(1, 2, 1) * 0.114f;
        AssertClose(gray.expand_as(f), Run(Only(new Grayscale { Probability = 1 }), images), 1e-3);
        // BGR input: the weights follow the colours, not the positions.
        AssertClose(gray.expand_as(f), Run(Only(new Grayscale { Probability = 1 }), images.flip(1), channels: ChannelOrder.Bgr), 1e-3);
    }

    [Fact]
    public void Channel_shift_adds_one_intensity_clipped_to_the_images_range_as_keras()
    {
        using var images = Images();
        var f = images.to_type(ScalarType.Float32);
        var low = f.amin([1, 2, 3], keepdim: true);
        var high = f.amax([1, 2, 3], keepdim: true);
        AssertClose(minimum(f + 20, high), Run(Only(new ChannelShift(ParameterRange.Fixed(20))), images), 1e-4);
        AssertClose(maximum(f - 30, low), Run(Only(new ChannelShift(ParameterRange.Fixed(-30))), images), 1e-4);
    }

    [Fact]
    public void Rescale_sets_the_units_of_the_ops_after_it_and_is_undone_for_the_network()
    {
        using var images = Images();
        AssertClose(images, Run(Only(new Rescale(1.0 / 255)), images), 1e-4);
        var keras = Run(AugmentationPipeline.Parse("rescale=1/255,channel-shift=0.1:0.1"), images);
        var pixels = Run(AugmentationPipeline.Parse("channel-shift=25.5:25.5"), images);
        AssertClose(pixels, keras, 1e-3);
    }

    [Fact]
    public void Gaussian_blur_keeps_flat_images_and_spreads_a_dot_as_the_gaussian()
    {
        using var flat = full(new long[] { 1, 3, 12, 12 }, 40f);
        var blur = Only(new GaussianBlur(5, ParameterRange.Fixed(1)));
        AssertClose(flat, Run(blur, flat), 1e-4);

        using var dot = zeros(1, 3, 12, 12);
        dot[0].narrow(1, 6, 1).narrow(2, 6, 1).fill_(100);
        var output = Run(blur, dot);
        var k = Enumerable.Range(-2, 5).Select(i => Math.Exp(-0.5 * i * i)).ToArray();
        double sum = k.Sum();
        AssertPixels(output, (x, y) =>
        {
            int dx = x - 6, dy = y - 6;
            bool near = Math.Abs(dx) <= 2 && Math.Abs(dy) <= 2;
            return (true, near ? (float)(100 * k[dx + 2] / sum * k[dy + 2] / sum) : 0f);
        });
        Assert.Equal(300.0, output.sum().item<float>(), 2);
    }

    [Fact]
    public void Random_erasing_sets_one_rectangle_to_the_value()
    {
        using var images = Images(n: 1, size: 20);
        var before = images.to_type(ScalarType.Float32);
        var output = Run(Only(new RandomErasing { Probability = 1, Value = 255 }), images, seed: 4);
        var changed = output.ne(before).any(1)[0]; // [H,W]
        var rows = changed.any(1).nonzero().flatten().data<long>().ToArray();
        var cols = changed.any(0).nonzero().flatten().data<long>().ToArray();
        Assert.NotEmpty(rows);
        long top = rows.Min(), bottom = rows.Max(), left = cols.Min(), right = cols.Max();
        // The bounding box of the changes is all 255 and nothing outside it changed: exactly one rectangle.
        var expected = before.clone();
        expected[0].narrow(1, top, bottom - top + 1).narrow(2, left, right - left + 1).fill_(255);
        AssertClose(expected, output);
        double area = (bottom - top + 1) * (right - left + 1) / 400.0;
        Assert.InRange(area, 0.01, 0.4);
    }

    // ---- Identity --------------------------------------------------------------------------------------------------

    public static TheoryData<string> IdentitySpecs =>
    [
        "rotate=0", "shift=0", "shear=0", "zoom=1:1", "brightness=1:1", "contrast=1:1", "saturation=1:1", "hue=0",
        "channel-shift=0", "grayscale@0", "erase@0", "blur@0", "hflip@0", "vflip@0", "crop@0", "resized-crop@0",
        "rotate=0,shift=0,shear=0,zoom=1:1,hflip@0,fill=wrap", "rotate=360:360", "rotate=-360:-360",
    ];

    [Theory]
    [MemberData(nameof(IdentitySpecs))]
    public void Zero_range_ops_are_the_identity(string spec)
    {
        using var images = Images();
        AssertClose(images, Run(AugmentationPipeline.Parse(spec), images));
    }
}
