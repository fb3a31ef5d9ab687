using MLNet.ImageTransfer.Weights;
using MLNet.ImageTransfer.Weights.PyTorch;

namespace MLNet.ImageTransfer.Tests.Weights;

/// <summary>
/// Attack shapes of malicious <c>.pth</c> pickles, written byte by byte in protocols 2 and 4: each is refused with a
/// <see cref="WeightFileException"/> that names the file and what it asked for, and nothing it asked for ran — every
/// payload would create a marker file, which must not exist afterwards. Also resource attacks (absurd lengths, deep
/// nesting, memo and mark floods, containers reused a million times) that must be refused quickly and cheaply.
/// </summary>
public sealed class HostilePickleTests : IDisposable
{
    readonly string _dir = TestData.NewTempDir("hostile-pickle");
    readonly string _marker;

    public HostilePickleTests()
    {
        _marker = Path.Combine(_dir, "pwned");
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    /// <summary>The shell command every payload carries.</summary>
    string Payload => $"touch {_marker}";

    /// <summary>Opens the pickle as a .pth file and as a trainer would load it: both refuse; returns the refusal; checks that nothing ran.</summary>
    WeightFileException Refused(byte[] pickle, params (string Key, byte[] Data)[] storages)
    {
        var path = PickleWriter.TorchZip(_dir, pickle, storages);
        var e = Assert.ThrowsAny<WeightFileException>(() => PretrainedWeightFile.Open(path));
        Assert.Contains(Path.GetFileName(path), e.Message);
        using var network = WeightFormatParityTests.ConfigOf("resnet_micro_basic").Build(5);
        Assert.ThrowsAny<WeightFileException>(() => PretrainedWeights.LoadInto(network, path));
        Assert.False(File.Exists(_marker), "a payload ran");
        return e;
    }

    public static TheoryData<int, string, string> CodeGlobals()
    {
        var data = new TheoryData<int, string, string>();
        foreach (int protocol in new[] { 2, 4 })
            foreach (var (module, name) in new[]
            {
                ("os", "system"), ("posix", "system"), ("nt", "system"), ("os", "popen"), ("os", "execv"),
                ("subprocess", "Popen"), ("subprocess", "check_output"), ("subprocess", "run"),
                ("builtins", "eval"), ("builtins", "exec"), ("builtins", "getattr"), ("builtins", "__import__"), ("builtins", "compile"),
                ("builtins", "open"), ("runpy", "_run_code"), ("pickle", "loads"), ("torch", "load"), ("importlib", "import_module"),
                ("webbrowser", "open"), ("socket", "create_connection"),
            })
                data.Add(protocol, module, name);
        return data;
    }

    [Theory]
    [MemberData(nameof(CodeGlobals))]
    public void A_global_that_runs_code_is_refused_by_name(int protocol, string module, string name)
    {
        // GLOBAL / STACK_GLOBAL, then REDUCE with the payload: the classic __reduce__ exploit.
        var pickle = new PickleWriter(protocol).Global(module, name).Str(Payload).Tuple(1).Reduce().Stop();
        var e = Refused(pickle);
        Assert.Contains($"'{module}.{name}'", e.Message);
        Assert.Contains("arbitrary code execution", e.Message);
    }

    [Theory]
    [InlineData("__builtin__", "eval", "builtins.eval")]       // Python 2 names are mapped as Python's fix_imports does
    [InlineData("exceptions", "eval", "builtins.eval")]
    [InlineData("os\r", "system\r", "os.system")]              // CRLF line endings
    [InlineData("torch._utils", "_rebuild_tensor_v2.__globals__", "torch._utils._rebuild_tensor_v2.__globals__")] // attribute walk from an allowed name
    [InlineData("collections", "OrderedDict.__init__.__globals__", "collections.OrderedDict.__init__.__globals__")]
    [InlineData("torch", "FloatStorage.__reduce__", "torch.FloatStorage.__reduce__")]
    [InlineData("collections ", "OrderedDict", "collections .OrderedDict")] // look-alike of an allowed name
    public void Disguised_globals_are_refused_by_name(string module, string name, string shown)
    {
        var pickle = new PickleWriter(2).Op('c').Text($"{module}\n{name}\n").Str(Payload).Tuple(1).Reduce().Stop();
        Assert.Contains($"'{shown}'", Refused(pickle).Message);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public void Instance_creation_opcodes_are_refused_at_their_class(int protocol)
    {
        // INST: class named inline, arguments after a MARK.
        var inst = new PickleWriter(protocol).Op('(').Str(Payload).Op('i').Text("os\nsystem\n").Stop();
        Assert.Contains("'os.system'", Refused(inst).Message);
        // OBJ: MARK, class, arguments.
        var obj = new PickleWriter(protocol).Op('(').Global("subprocess", "Popen").Str(Payload).Op('o').Stop();
        Assert.Contains("'subprocess.Popen'", Refused(obj).Message);
        // NEWOBJ: cls.__new__(cls, *args).
        var newobj = new PickleWriter(protocol).Global("subprocess", "Popen").Str(Payload).Tuple(1).Raw(0x81).Stop();
        Assert.Contains("'subprocess.Popen'", Refused(newobj).Message);
        // NEWOBJ_EX: cls.__new__(cls, *args, **kwargs).
        var newobjEx = new PickleWriter(protocol).Global("os", "system").Str(Payload).Tuple(1).Op('}').Raw(0x92).Stop();
        Assert.Contains("'os.system'", Refused(newobjEx).Message);
        // NEWOBJ and OBJ on an allowed name that is not a class we build: still refused.
        var storage = new PickleWriter(protocol).Global("torch", "FloatStorage").Int(1 << 30).Tuple(1).Raw(0x81).Stop();
        Assert.Contains("torch.FloatStorage(...)", Refused(storage).Message);
        var device = new PickleWriter(protocol).Op('(').Global("torch", "device").Global("torch", "Size").Op('o').Stop();
        Assert.Contains("torch.device(...) called with unexpected arguments", Refused(device).Message);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public void Allowed_callables_with_unexpected_arguments_are_refused(int protocol)
    {
        string Reduced(Func<PickleWriter, PickleWriter> args, string module, string name)
            => Refused(args(new PickleWriter(protocol).Global(module, name)).Reduce().Stop()).Message;

        Assert.Contains("OrderedDict(...) called with unexpected arguments", Reduced(p => p.Str(Payload).Str("x").Tuple(2), "collections", "OrderedDict"));
        Assert.Contains("OrderedDict(...) given something other than (key, value) pairs", Reduced(p => p.Op(']').Str(Payload).Op('a').Tuple(1), "collections", "OrderedDict"));
        Assert.Contains("_codecs.encode with encoding 'rot13'", Reduced(p => p.Str(Payload).Str("rot13").Tuple(2), "_codecs", "encode"));
        Assert.Contains("_rebuild_tensor_v2 needs at least 4 arguments", Reduced(p => p.Str(Payload).Tuple(1), "torch._utils", "_rebuild_tensor_v2"));
        Assert.Contains("first argument is a string, not a storage", Reduced(p => p.Op('(').Str(Payload).Int(0).Int(1).Tuple(1).Int(1).Tuple(1).Op('t'), "torch._utils", "_rebuild_tensor_v2"));
        // _rebuild_from_type_v2(func, type, args, state) calls func(*args): func must itself be allowed, and type a tensor class.
        Assert.Contains("tensor subclass global collections.OrderedDict",
            Reduced(p => p.Op('(').Global("collections", "OrderedDict").Global("collections", "OrderedDict").Op(')').Op('}').Op('t'), "torch._tensor", "_rebuild_from_type_v2"));
        Assert.Contains("'os.system'",
            Reduced(p => p.Op('(').Global("os", "system").Global("torch", "Tensor").Str(Payload).Tuple(1).Op('}').Op('t'), "torch._tensor", "_rebuild_from_type_v2"));
        // Arguments that are not a tuple.
        Assert.Contains("are a string, not a tuple", Reduced(p => p.Str(Payload), "collections", "OrderedDict"));
        // Calling something that is not a global at all.
        Assert.Contains("calls a string", Refused(new PickleWriter(protocol).Str("os.system").Str(Payload).Tuple(1).Reduce().Stop()).Message);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public void Build_and_setstate_tricks_are_refused(int protocol)
    {
        // BUILD on a class (Python would call its __setstate__ or set attributes on the class itself).
        var onGlobal = new PickleWriter(protocol).Global("collections", "OrderedDict").Op('}').Str("__setstate__").Str(Payload).Op('s').Op('b').Stop();
        Assert.Contains("sets the state of a global collections.OrderedDict", Refused(onGlobal).Message);
        // BUILD on a list / string / storage class tag.
        Assert.Contains("sets the state of a list", Refused(new PickleWriter(protocol).Op(']').Op('}').Op('b').Stop()).Message);
        Assert.Contains("sets the state of a global torch.FloatStorage", Refused(new PickleWriter(protocol).Global("torch", "FloatStorage").Op('}').Op('b').Stop()).Message);
        // BUILD on a dict with (state, slotstate), the form that sets arbitrary attributes through setattr.
        var slots = new PickleWriter(protocol).Op('}').Op('N').Op('}').Str("__class__").Str(Payload).Op('s').Tuple(2).Op('b').Stop();
        Assert.Contains("sets the state of a dict", Refused(slots).Message);
    }

    [Fact]
    public void A_setstate_dict_on_a_state_dict_is_kept_as_data_and_never_called()
    {
        // state_dict()._metadata arrives as BUILD on the OrderedDict: a '__setstate__' or '__reduce__' key there is an
        // ordinary string key of an attribute dict, never looked up as a method.
        var pickle = new PickleWriter(4).Global("collections", "OrderedDict").Op(')').Reduce()
            .Op('}').Str("__setstate__").Str(Payload).Op('s').Str("__reduce__").Str(Payload).Op('s').Op('b')
            .Op('(').Str("w").Tensor("0", 3, 3).Op('u').Stop();
        using var file = PretrainedWeightFile.Open(PickleWriter.TorchZip(_dir, pickle, ("0", PickleWriter.Floats(1, 2, 3))));
        Assert.Equal([1f, 2f, 3f], file.Tensors["w"].data<float>().ToArray());
        Assert.False(File.Exists(_marker));
    }

    [Theory]
    [InlineData(0x82, new byte[] { 1 })]          // EXT1
    [InlineData(0x83, new byte[] { 1, 0 })]       // EXT2
    [InlineData(0x84, new byte[] { 1, 0, 0, 0 })] // EXT4
    public void Extension_registry_opcodes_are_refused(byte opcode, byte[] code)
    {
        // copyreg's extension registry maps small integers to globals (a way to name os.system without its name).
        var pickle = new PickleWriter(2).Raw(opcode).Raw(code).Str(Payload).Tuple(1).Reduce().Stop();
        Assert.Contains("extension registry", Refused(pickle).Message);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public void Persistent_ids_that_are_not_storages_are_refused(int protocol)
    {
        // PERSID: a text id (the persistent_load of other libraries resolves these to arbitrary objects).
        Assert.Contains("persistent id is a string", Refused(new PickleWriter(protocol).Op('P').Text("os.system\n").Stop()).Message);
        // BINPERSID of a non-tuple, of a tuple of another kind, of a storage "type" that is not a storage class.
        Assert.Contains("persistent id is a global torch.Size", Refused(new PickleWriter(protocol).Global("torch", "Size").Op('Q').Stop()).Message);
        Assert.Contains("persistent id is a tuple", Refused(new PickleWriter(protocol).Op('(').Str("module").Str(Payload).Op('t').Op('Q').Stop()).Message);
        var oddType = new PickleWriter(protocol).Op('(').Str("storage").Global("collections", "OrderedDict").Str("0").Str("cpu").Int(3).Op('t').Op('Q').Stop();
        Assert.Contains("storage has type global collections.OrderedDict", Refused(oddType).Message);
        // Storage keys that would address another entry or a file outside the archive.
        foreach (var key in new[] { "../../etc/passwd", "/etc/passwd", "..", "0/../../x", "C:\\x" })
        {
            var pickle = new PickleWriter(protocol).Op('}').Op('(').Str("w").Tensor(key, 3, 3).Op('u').Stop();
            Assert.Contains("not a plain name", Refused(pickle, ("0", PickleWriter.Floats(1, 2, 3))).Message);
        }
    }

    [Theory]
    [InlineData("archive/data/../../x")]
    [InlineData("../../x")]
    [InlineData("archive/../../../tmp/x")]
    [InlineData("/etc/passwd")]
    [InlineData("/archive/data/0")]
    [InlineData("C:/Windows/x")]
    [InlineData("archive\\data\\..\\..\\x")]
    public void A_zip_whose_entry_leaves_the_archive_is_refused_before_reading(string entryName)
    {
        var pickle = new PickleWriter().Op('}').Op('(').Str("w").Tensor("0", 3, 3).Op('u').Stop();
        var path = PickleWriter.Zip(_dir, [("archive/data.pkl", pickle), ("archive/data/0", PickleWriter.Floats(1, 2, 3)), (entryName, "pwned"u8.ToArray())]);
        var e = Assert.ThrowsAny<WeightFileException>(() => PretrainedWeightFile.Open(path));
        Assert.Contains($"'{entryName}'", e.Message);
        Assert.Contains("leaves the archive", e.Message);
        Assert.Empty(Directory.GetFiles(_dir, "x", SearchOption.AllDirectories)); // nothing extracted anywhere
    }

    // ---- resource attacks --------------------------------------------------------------------------------------------

    static byte[] Le(ulong v, int width) => BitConverter.GetBytes(v)[..width];

    public static TheoryData<string, byte[], string> HugeLengths => new()
    {
        { "BINUNICODE8 of 2^60 bytes", [0x8d, .. Le(1UL << 60, 8)], "remain" },
        { "BINBYTES8 of 2^60 bytes", [0x8e, .. Le(1UL << 60, 8)], "remain" },
        { "BYTEARRAY8 of 2^63-1 bytes", [0x96, .. Le(long.MaxValue, 8)], "remain" },
        { "BINUNICODE of 4 GB", [(byte)'X', .. Le(uint.MaxValue, 4)], "remain" },
        { "BINBYTES of 4 GB", [(byte)'B', .. Le(uint.MaxValue, 4)], "remain" },
        { "BINSTRING of 4 GB", [(byte)'T', .. Le(uint.MaxValue, 4)], "remain" },
        { "LONG4 of 2 GB", [0x8b, .. Le(int.MaxValue, 4)], "remain" },
        { "LONG4 of 4 GB", [0x8b, .. Le(uint.MaxValue, 4)], "remain" },
        { "FRAME of 2^60 bytes", [0x95, .. Le(1UL << 60, 8)], "remain" },
        { "SHORT_BINBYTES past the end", [(byte)'C', 200], "remain" },
    };

    [Theory]
    [MemberData(nameof(HugeLengths))]
    public void Absurd_lengths_are_refused_before_allocating(string what, byte[] opcodes, string reason)
    {
        _ = what;
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Refused(new PickleWriter(4).Raw(opcodes).Raw(new byte[64]).Stop());
        Assert.Contains(reason, e.Message);
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, 32L << 20);
    }

    [Fact]
    public void Deeply_nested_tuples_are_refused_without_overflowing_the_stack()
    {
        // A million nested 1-tuples would overflow the stack when hashed, compared or printed (a crash no catch can stop).
        var deep = new PickleWriter(4).Op('}').Op(')');
        for (int i = 0; i < 1_000_000; i++) deep.Tuple(1);
        Assert.Contains($"nests tuples more than {RestrictedUnpickler.MaxNesting} deep", Refused(deep.Int(1).Op('s').Stop()).Message);
        // Lists and dicts nest freely (nothing recurses into them) and are simply not a state dict.
        var lists = new PickleWriter(4);
        for (int i = 0; i < 100_000; i++) lists.Op(']');
        for (int i = 0; i < 99_999; i++) lists.Op('a');
        Assert.Contains("holds a list, not a state dict", Refused(lists.Stop()).Message);
    }

    [Fact]
    public void Memo_mark_and_stack_floods_are_capped()
    {
        var memo = new PickleWriter(4).Op('N');
        for (uint i = 0; i <= RestrictedUnpickler.MaxMemoEntries; i++) memo.Op('r').Raw(BitConverter.GetBytes(i));
        Assert.Contains("memo grows beyond the allowed size", Refused(memo.Stop()).Message);

        var marks = new PickleWriter(4);
        for (int i = 0; i <= RestrictedUnpickler.MaxStackDepth; i++) marks.Op('(');
        Assert.Contains("more MARKs than allowed", Refused(marks.Stop()).Message);

        var stack = new PickleWriter(4);
        for (int i = 0; i <= RestrictedUnpickler.MaxStackDepth; i++) stack.Op('N');
        Assert.Contains("stack grows beyond the allowed size", Refused(stack.Stop()).Message);
    }

    [Fact]
    public void A_container_reused_a_million_times_is_refused_in_proportion_to_the_file()
    {
        // "Billion laughs": a 10,000-pair list memoized once, then OrderedDict(list) 10,000 times — a 450 KB pickle
        // asking for 100 million dict insertions. Refused by the work budget, quickly.
        var p = new PickleWriter(4).Op(']');
        p.Op('(');
        for (int i = 0; i < 10_000; i++) p.Int(i).Int(i).Tuple(2);
        p.Op('e').Memoize().Op('0');
        for (int i = 0; i < 10_000; i++) p.Global("collections", "OrderedDict").Raw((byte)'h', 0).Tuple(1).Reduce().Op('0');
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Assert.Contains("out of proportion", Refused(p.Op('N').Stop()).Message);
        Assert.InRange(clock.Elapsed.TotalSeconds, 0, 20);
    }

    [Fact]
    public void Huge_text_fields_are_refused_without_parsing_them()
    {
        // Protocol 0 integers and memo indices are text lines; a megabyte of digits is not a number a state dict holds.
        var digits = new string('9', 1 << 20);
        Assert.Contains("text field longer than", Refused(new PickleWriter(2).Op('L').Text(digits + "\n").Stop()).Message);
        Assert.Contains("text field longer than", Refused(new PickleWriter(2).Op('p').Text(digits + "\n").Stop()).Message);
        Assert.Contains("where an integer belongs", Refused(new PickleWriter(2).Op('I').Text("12x\n").Stop()).Message);
        Assert.Contains("where a float belongs", Refused(new PickleWriter(2).Op('F').Text("nan-ish\n").Stop()).Message);
        Assert.Contains("invalid escape", Refused(new PickleWriter(2).Op('V').Text("\\uZZZZ!\n").Stop()).Message);
    }

    [Fact]
    public void A_broadcast_stride_cannot_inflate_a_storage()
    {
        // Stride 0 makes every element of a 2^30-element tensor the storage's first float: copying it out would take 4 GB.
        var pickle = new PickleWriter().Op('}').Op('(').Str("w").Tensor("0", 3, 1 << 30, stride: 0).Op('u').Stop();
        Assert.Contains("has 1,073,741,824 elements but its storage '0' only 3", Refused(pickle, ("0", PickleWriter.Floats(1, 2, 3))).Message);
    }

    [Fact]
    public void A_zip_bomb_storage_costs_no_more_than_the_tensor_the_pickle_declares()
    {
        // The storage entry is a deflated 64 MB of zeros claiming to be the 3-float storage the pickle declares: only the
        // 12 bytes the pickle needs are read.
        var pickle = new PickleWriter().Op('}').Op('(').Str("w").Tensor("0", 3, 3).Op('u').Stop();
        var path = Path.Combine(_dir, "bomb.pth");
        using (var zip = System.IO.Compression.ZipFile.Open(path, System.IO.Compression.ZipArchiveMode.Create))
        {
            using (var s = zip.CreateEntry("archive/data.pkl", System.IO.Compression.CompressionLevel.NoCompression).Open()) s.Write(pickle);
            using (var s = zip.CreateEntry("archive/data/0", System.IO.Compression.CompressionLevel.Optimal).Open())
            {
                var zeros = new byte[1 << 20];
                for (int i = 0; i < 64; i++) s.Write(zeros);
            }
        }
        Assert.InRange(new FileInfo(path).Length, 0, 1 << 20);
        long before = GC.GetAllocatedBytesForCurrentThread();
        using var file = PretrainedWeightFile.Open(path);
        Assert.Equal([0f, 0f, 0f], file.Tensors["w"].data<float>().ToArray());
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, 16L << 20);
    }
}
