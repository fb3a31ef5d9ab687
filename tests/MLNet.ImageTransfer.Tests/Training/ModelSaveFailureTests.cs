using Microsoft.ML;

namespace MLNet.ImageTransfer.Tests.TrainingLoop;

/// <summary>
/// Saving a model never destroys the previous one: a write that fails part-way (a full disk, simulated by a stream that
/// throws ENOSPC's message after some bytes — no tmpfs can be mounted without root here) or an unwritable path gives an
/// IOException naming the path, and the old file stays byte-identical with no temporary file left behind.
/// </summary>
/// <remarks>The tests run as root in CI, where file permissions do not stop writes; the unwritable case is a path whose parent is a regular file.</remarks>
public class ModelSaveFailureTests
{
    sealed class Row { public float X { get; set; } }

    static (MLContext, ITransformer, DataViewSchema) TinyModel()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(new[] { new Row { X = 1 }, new Row { X = 2 } });
        var model = ml.Transforms.CopyColumns("Y", "X").Fit(data);
        return (ml, model, data.Schema);
    }

    [Fact]
    public void A_save_that_fails_part_way_keeps_the_previous_model_file()
    {
        var (ml, model, schema) = TinyModel();
        var dir = TestData.NewTempDir("save-fail");
        var path = Path.Combine(dir, "model.zip");
        ImageClassificationWorkflow.SaveModel(ml, model, schema, path);
        var before = File.ReadAllBytes(path);

        var e = Assert.Throws<IOException>(() => ImageClassificationWorkflow.SaveModel(ml, model, schema, path,
            p => new CheckpointResumeTests.FullDiskStream(new FileStream(p, FileMode.CreateNew), 100)));
        Assert.Contains(path, e.Message);
        Assert.Contains("No space left on device", e.Message);
        Assert.Contains("previous file there is unchanged", e.Message);
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal(["model.zip"], Directory.GetFiles(dir).Select(Path.GetFileName));
        // The saved file still loads.
        Assert.NotNull(ml.Model.Load(path, out _));
    }

    [Fact]
    public void An_unwritable_output_path_gives_a_clear_error()
    {
        var (ml, model, schema) = TinyModel();
        var dir = TestData.NewTempDir("save-unwritable");
        var file = Path.Combine(dir, "not-a-folder");
        File.WriteAllText(file, "x");
        var path = Path.Combine(file, "model.zip");
        var e = Assert.Throws<IOException>(() => ImageClassificationWorkflow.SaveModel(ml, model, schema, path));
        Assert.Contains("Could not save the model to '" + path + "'", e.Message);
        Assert.Equal("x", File.ReadAllText(file));
    }
}
