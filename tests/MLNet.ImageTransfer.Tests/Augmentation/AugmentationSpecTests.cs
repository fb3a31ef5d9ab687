using MLNet.ImageTransfer.Augmentation;

namespace MLNet.ImageTransfer.Tests.Augmentation;

/// <summary>Spec strings: parsing, Keras vocabulary, canonical round trips, presets, and clear errors for bad parameters.</summary>
public class AugmentationSpecTests
{
    [Fact]
    public void Parses_ops_settings_and_probabilities()
    {
        var p = AugmentationPipeline.Parse("hflip, rotate=20, shift(width=0.1,height=3), zoom=0.2, brightness=0.5:1.5, grayscale@0.3, fill=reflect, cval=12, seed=7");
        Assert.Equal(
            new AugmentationOp[]
            {
                new HorizontalFlip(), new Rotate(ParameterRange.Symmetric(20)), new Shift(ParameterRange.Symmetric(0.1), ParameterRange.Symmetric(3)),
                new Zoom(new ParameterRange(0.8, 1.2)), new Brightness(new ParameterRange(0.5, 1.5)), new Grayscale { Probability = 0.3 },
            },
            p.Ops);
        Assert.Equal(0.5, p.Ops[0].Probability);
        Assert.Equal(FillMode.Reflect, p.Fill);
        Assert.Equal(12, p.FillValue);
        Assert.Equal(7, p.Seed);
    }

    [Fact]
    public void Keras_argument_names_work_as_written_in_the_seeds()
    {
        // The Keras VGG16 tutorial: ImageDataGenerator(rescale=1./255, rotation_range=20, width_shift_range=0.2, height_shift_range=0.2,
        //                              shear_range=0.2, zoom_range=0.2, horizontal_flip=True, fill_mode='nearest')
        var p = AugmentationPipeline.Parse("rescale=1/255,rotation_range=20,width_shift_range=0.2,height_shift_range=0.2,shear_range=0.2,zoom_range=0.2,horizontal_flip=True,fill_mode=nearest");
        Assert.Equal(
            [typeof(Rescale), typeof(Rotate), typeof(Shift), typeof(Shift), typeof(Shear), typeof(Zoom), typeof(HorizontalFlip)],
            p.Ops.Select(o => o.GetType()));
        Assert.Equal(1.0 / 255, ((Rescale)p.Ops[0]).Factor, 12);
        Assert.Equal(new ParameterRange(-0.2, 0.2), ((Shift)p.Ops[2]).Width);
        Assert.Equal(default, ((Shift)p.Ops[2]).Height);
        Assert.Equal(new ParameterRange(-0.2, 0.2), ((Shear)p.Ops[4]).Degrees);
        Assert.Equal(FillMode.Nearest, p.Fill);
        // horizontal_flip=False adds nothing.
        Assert.Empty(AugmentationPipeline.Parse("horizontal_flip=False").Ops);
        // The code API mirrors ImageDataGenerator's arguments.
        var keras = AugmentationPipeline.Keras(rotationRange: 20, widthShiftRange: 0.2, heightShiftRange: 0.2, shearRange: 0.2, zoomRange: 0.2, horizontalFlip: true);
        Assert.Equal("rotate=20,shift=0.2,shear=0.2,zoom=0.8:1.2,hflip", keras.ToSpec());
    }

    [Theory]
    [InlineData("hflip,rotate=20,zoom=0.2,fill=reflect")]
    [InlineData("resized-crop(scale=0.08:1,ratio=0.75:1.3333333333333333),hflip@0.3,vflip@1")]
    [InlineData("crop=200,blur(kernel=7,sigma=0.5:1.5)@0.2,erase(scale=0.1:0.2,ratio=0.5:2,value=random)")]
    [InlineData("shift(width=0.1,height=-2:5),shear=-3:10,hue=0.1,channel-shift=20,grayscale,contrast=0.9:1.1,saturation=0:2")]
    [InlineData("rescale=0.00392156862745098,zoom(factor=0.9:1.1,keep-aspect),fill=constant,cval=0.5,seed=3,workers=2")]
    [InlineData("none")]
    public void Canonical_specs_round_trip(string spec)
    {
        var p = AugmentationPipeline.Parse(spec);
        var canonical = p.ToSpec();
        var again = AugmentationPipeline.Parse(canonical);
        Assert.Equal(p, again);
        Assert.Equal(canonical, again.ToSpec());
        Assert.Equal(p.GetHashCode(), again.GetHashCode());
    }

    [Fact]
    public void Presets_parse_and_can_be_combined()
    {
        Assert.True(AugmentationPipeline.Parse("none").IsEmpty);
        Assert.Equal(AugmentationPipeline.None, AugmentationPipeline.Parse("none"));
        var d = AugmentationPipeline.Default;
        Assert.IsType<RandomResizedCrop>(d.Ops[0]);
        Assert.True(d.NeedsLargerSource);
        Assert.Equal(new ParameterRange(0.35, 1), ((RandomResizedCrop)d.Ops[0]).Scale);
        Assert.IsType<HorizontalFlip>(d.Ops[1]);
        Assert.Equal("resized-crop(scale=0.08:1,ratio=0.75:1.3333333333333333),hflip", AugmentationPipeline.Parse("torchvision").ToSpec());
        Assert.Equal("rotate=20,shift=0.2,shear=0.2,zoom=0.8:1.2,hflip,grayscale@0.2", AugmentationPipeline.Parse("keras,grayscale@0.2").ToSpec());
        Assert.False(AugmentationPipeline.Parse("keras").NeedsLargerSource);
    }

    [Theory]
    [InlineData("rotate=-20", "cannot be negative")]
    [InlineData("rotate=30:10", "reversed")]
    [InlineData("hue=0.7", "at most 0.5")]
    [InlineData("blur=4", "odd")]
    [InlineData("zoom=0:1.2", "above 0")]
    [InlineData("zoom=1.5", "above 0")]
    [InlineData("brightness=-1:2", "at least 0")]
    [InlineData("resized-crop(scale=0.5:2)", "at most 1")]
    [InlineData("hflip@1.5", "probability")]
    [InlineData("rotate=abc", "not a number")]
    [InlineData("rotate", "needs a value")]
    [InlineData("twirl=3", "Unknown augmentation 'twirl=3'")]
    [InlineData("rotate(degrees=3,speed=2)", "unknown argument")]
    [InlineData("hflip,,vflip", "empty item")]
    [InlineData("blur(kernel=3", "unclosed")]
    [InlineData("fill=sideways", "nearest, constant, reflect or wrap")]
    [InlineData("  ", "empty")]
    [InlineData("shear=90", "at most 89")]
    [InlineData("workers=0", "Workers")]
    public void Bad_specs_fail_with_a_message_naming_the_problem(string spec, string expected)
    {
        var error = Assert.ThrowsAny<ArgumentException>(() => AugmentationPipeline.Parse(spec));
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void Ops_built_in_code_are_validated_with_clear_errors()
    {
        var reversed = Assert.ThrowsAny<ArgumentException>(() => new Rotate(-20).Validate());
        Assert.Contains("rotate", reversed.Message);
        Assert.Contains("reversed", reversed.Message);
        Assert.ThrowsAny<ArgumentException>(() => new AugmentationPipeline().Zoom(1.5));
        Assert.ThrowsAny<ArgumentException>(() => new AugmentationPipeline().HorizontalFlip(-0.1));
        Assert.ThrowsAny<ArgumentException>(() => new AugmentationPipeline().GaussianBlur(kernelSize: 0));
        Assert.ThrowsAny<ArgumentException>(() => new AugmentationPipeline().RandomErasing(minScale: 0.5, maxScale: 0.1));
        Assert.ThrowsAny<ArgumentException>(() => new AugmentationPipeline().Rescale(0));
        Assert.ThrowsAny<ArgumentException>(() => new AugmentationPipeline().RandomCrop(-3));
        Assert.ThrowsAny<ArgumentException>(() => new AugmentationPipeline { FillValue = double.NaN }.Validate());
        // The trainer options validate their augmentation.
        var options = new ImageTransferTrainer.Options { Augmentation = new AugmentationPipeline([new Hue(0.9)]) };
        Assert.ThrowsAny<ArgumentException>(options.Validate);
    }

    [Fact]
    public void Fluent_building_equals_parsing()
    {
        var built = new AugmentationPipeline().RandomResizedCrop(0.25).HorizontalFlip().ColorJitter(0.2, 0.2, 0.2).WithFill(FillMode.Wrap);
        Assert.Equal(AugmentationPipeline.Parse("resized-crop=0.25,hflip,brightness=0.2,contrast=0.2,saturation=0.2,fill=wrap"), built);
    }
}
