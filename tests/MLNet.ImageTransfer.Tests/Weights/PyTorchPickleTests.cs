using System.IO.Compression;
using System.Text;
using MLNet.ImageTransfer.Weights;
using MLNet.ImageTransfer.Weights.PyTorch;

namespace MLNet.ImageTransfer.Tests.Weights;

/// <summary>
/// The PyTorch reader's refusals: pickles that ask for code (written by Python's own pickler and hand-made), zip
/// entries that leave the archive, and corrupt or oversized declarations — each a <see cref="WeightFileException"/>
/// naming the problem, before anything is built or run.
/// </summary>
public sealed class PyTorchPickleTests : IDisposable
{
    const string Marker = "/tmp/mlnet-imagetransfer-pwned"; // what the malicious fixtures would create if run
    readonly string _dir = TestData.NewTempDir("pickle");

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    static string W(string name) => WeightFormatParityTests.W(name);

    [Theory]
    [InlineData("malicious_os_system.pth", "posix.system")]
    [InlineData("malicious_eval.pth", "builtins.eval")]
    public void A_pickle_that_asks_for_code_is_refused_without_running_it(string file, string global)
    {
        if (File.Exists(Marker)) File.Delete(Marker);
        var e = Assert.ThrowsAny<WeightFileException>(() => PretrainedWeightFile.Open(W(file)));
        Assert.Contains($"'{global}'", e.Message);
        Assert.Contains("arbitrary code execution", e.Message);
        Assert.Contains(file, e.Message);
        Assert.False(File.Exists(Marker));
        // The trainer's entry point refuses it the same way.
        using var network = WeightFormatParityTests.ConfigOf("resnet_micro").Build(5);
        Assert.ThrowsAny<WeightFileException>(() => PretrainedWeights.LoadInto(network, W(file)));
    }

    [Fact]
    public void A_zip_entry_that_leaves_the_archive_is_refused()
    {
        var e = Assert.ThrowsAny<WeightFileException>(() => PretrainedWeightFile.Open(W("path_traversal.pth")));
        Assert.Contains("'../../evil.txt'", e.Message);
        Assert.Contains("leaves the archive", e.Message);
    }

    [Theory]
    [InlineData("archive/data/../../x")]
    [InlineData("/etc/passwd")]
    [InlineData("archive\\data\\0")]
    [InlineData("C:/temp/x")]
    public void Unsafe_entry_names_are_recognised(string name) => Assert.True(PyTorchCheckpoint.IsUnsafeEntryName(name));

    [Theory]
    [InlineData("archive/data.pkl")]
    [InlineData("resnet50-0676ba61/data/94252390960336")]
    [InlineData("archive/.data/serialization_id")]
    public void Ordinary_entry_names_are_accepted(string name) => Assert.False(PyTorchCheckpoint.IsUnsafeEntryName(name));

    // ---- hand-made pickles ------------------------------------------------------------------------------------------

    /// <summary>A torch.save-shaped zip around the given data.pkl (and storages).</summary>
    string Zip(byte[] pickle, params (string Key, byte[] Data)[] storages) => PickleWriter.TorchZip(_dir, pickle, storages);

    static byte[] Floats(params float[] v) => PickleWriter.Floats(v);

    [Fact]
    public void A_hand_made_state_dict_pickle_reads()
    {
        var pickle = new PickleWriter().Op('}').Op('(').Str("w").Tensor("0", 3, 3).Op('u').Stop();
        using var file = PretrainedWeightFile.Open(Zip(pickle, ("0", Floats(1, 2, 3))));
        Assert.Equal([1f, 2f, 3f], file.Tensors["w"].data<float>().ToArray());
        Assert.Equal(WeightFormat.PyTorch, file.Format);
    }

    [Theory]
    [InlineData("os", "system")]
    [InlineData("subprocess", "Popen")]
    [InlineData("builtins", "exec")]
    [InlineData("builtins", "getattr")]
    [InlineData("torch", "load")]
    [InlineData("torch.storage", "_load_from_bytes")]
    [InlineData("numpy.core.multiarray", "_reconstruct")]
    public void Any_global_outside_the_allow_list_is_refused(string module, string name)
    {
        var pickle = new PickleWriter().Global(module, name).Str("echo pwned").Tuple(1).Op('R').Stop();
        var e = Assert.ThrowsAny<WeightFileException>(() => PretrainedWeightFile.Open(Zip(pickle)));
        Assert.Contains($"'{module}.{name}'", e.Message);
    }

    [Fact]
    public void Allowed_names_used_as_something_else_are_refused()
    {
        // A storage class is only a tag in a persistent id; calling it is refused.
        var call = new PickleWriter().Global("torch", "FloatStorage").Int(5).Tuple(1).Op('R').Stop();
        Assert.Contains("torch.FloatStorage(...)", Assert.ThrowsAny<WeightFileException>(() => PretrainedWeightFile.Open(Zip(call))).Message);
        // BUILD on something that is not a dict or tensor.
        var build = new PickleWriter().Str("x").Op('}').Op('b').Stop();
        Assert.Contains("sets the state of a string", Assert.ThrowsAny<WeightFileException>(() => PretrainedWeightFile.Open(Zip(build))).Message);
        // Extension registry opcodes.
        var ext = new PickleWriter().Raw(0x82, 1).Stop();
        Assert.Contains("extension registry", Assert.ThrowsAny<WeightFileException>(() => PretrainedWeightFile.Open(Zip(ext))).Message);
    }

    [Fact]
    public void Corrupt_and_oversized_declarations_are_refused_before_allocating()
    {
        // A tensor reaching past its storage.
        var past = new PickleWriter().Op('}').Op('(').Str("w").Tensor("0", 3, 4).Op('u').Stop();
        Assert.Contains("reaches element 3", Assert.ThrowsAny<WeightFileException>(() => PretrainedWeightFile.Open(Zip(past, ("0", Floats(1, 2, 3))))).Message);
        // A storage declaring more elements than its entry holds (a 4 GB claim on 12 bytes).
        var huge = new PickleWriter().Op('}').Op('(').Str("w").Tensor("0", 1 << 30, 3).Op('u').Stop();
        Assert.Contains("storage '0' needs", Assert.ThrowsAny<WeightFileException>(() => PretrainedWeightFile.Open(Zip(huge, ("0", Floats(1, 2, 3))))).Message);
        // A missing storage entry.
        var missing = new PickleWriter().Op('}').Op('(').Str("w").Tensor("7", 3, 3).Op('u').Stop();
        Assert.Contains("no entry 'archive/data/7'", Assert.ThrowsAny<WeightFileException>(() => PretrainedWeightFile.Open(Zip(missing))).Message);
        // A storage key trying to walk the archive.
        var sneaky = new PickleWriter().Op('}').Op('(').Str("w").Tensor("../x", 3, 3).Op('u').Stop();
        Assert.Contains("not a plain name", Assert.ThrowsAny<WeightFileException>(() => PretrainedWeightFile.Open(Zip(sneaky))).Message);
        // A string length beyond the data.
        var longString = new PickleWriter().Raw((byte)'X', 0xff, 0xff, 0xff, 0x7f).Stop();
        Assert.Contains("only", Assert.ThrowsAny<WeightFileException>(() => PretrainedWeightFile.Open(Zip(longString))).Message);
        // A 10 KB integer.
        var bigInt = new PickleWriter().Raw(0x8b, 0x10, 0x27, 0, 0).Raw(new byte[10_000]).Stop();
        Assert.Contains("10000-byte integer", Assert.ThrowsAny<WeightFileException>(() => PretrainedWeightFile.Open(Zip(bigInt))).Message);
        // Truncated: no STOP.
        var truncated = new PickleWriter().Op('}').Op('(').Str("w").Stop()[..^1];
        Assert.Contains("truncated", Assert.ThrowsAny<WeightFileException>(() => PretrainedWeightFile.Open(Zip(truncated))).Message);
        // A memo reference that was never stored.
        var memo = new PickleWriter().Raw((byte)'h', 9).Stop();
        Assert.Contains("memo entry 9", Assert.ThrowsAny<WeightFileException>(() => PretrainedWeightFile.Open(Zip(memo))).Message);
    }

    [Fact]
    public void A_checkpoint_without_a_state_dict_names_its_keys()
    {
        var pickle = new PickleWriter().Op('}').Op('(').Str("epoch").Int(3).Str("lr").Int(1).Op('u').Stop();
        var e = Assert.ThrowsAny<WeightFileException>(() => PretrainedWeightFile.Open(Zip(pickle)));
        Assert.Contains("'epoch'", e.Message);
        Assert.Contains("no state dict found", e.Message);
    }

    [Fact]
    public void A_zip_that_is_not_a_torch_file_says_so()
    {
        var path = Path.Combine(_dir, "other.zip");
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Create))
        using (var s = zip.CreateEntry("readme.txt").Open())
            s.Write("hi"u8);
        Assert.Contains("not a file written by torch.save", Assert.ThrowsAny<WeightFileException>(() => PretrainedWeightFile.Open(path)).Message);
    }
}
