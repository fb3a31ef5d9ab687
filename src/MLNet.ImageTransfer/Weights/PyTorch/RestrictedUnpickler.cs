using System.Buffers.Binary;
using System.Globalization;
using System.Numerics;
using System.Text;

namespace MLNet.ImageTransfer.Weights.PyTorch;

// ------------------------------------------------------------------------------------------------------------------
// The Python values a state dict is made of. Nothing here can run code: these are plain data holders.
// ------------------------------------------------------------------------------------------------------------------

/// <summary>Python's None inside containers (a dictionary key or a list item).</summary>
internal sealed class PyNone
{
    public static readonly PyNone Value = new();
    PyNone() { }
    public override string ToString() => "None";
}

/// <summary>An immutable Python tuple, compared by value (so it can be a dictionary key).</summary>
/// <remarks>
/// Equality, hashing and <see cref="ToString"/> recurse into nested tuples, so the unpickler bounds <see cref="Depth"/>
/// (a pickle of a million nested tuples would otherwise overflow the stack) and only small tuples may be dict keys.
/// </remarks>
internal sealed class PyTuple : IEquatable<PyTuple>
{
    int? _hash;

    public PyTuple(object?[] items)
    {
        Items = items;
        foreach (var i in items)
            if (i is PyTuple t)
            {
                Depth = Math.Max(Depth, t.Depth + 1);
                Size = t.Size > long.MaxValue - Size ? long.MaxValue : Size + t.Size; // shared sub-tuples can make it astronomic
            }
        Size = Size > long.MaxValue - items.Length ? long.MaxValue : Size + items.Length;
    }

    public object?[] Items { get; }
    public int Count => Items.Length;
    public object? this[int i] => Items[i];
    /// <summary>Levels of tuples inside this one (0: no nested tuple).</summary>
    public int Depth { get; }
    /// <summary>Items in this tuple and its nested tuples: the cost of comparing or hashing it.</summary>
    public long Size { get; }
    public bool Equals(PyTuple? other) => other is not null && (ReferenceEquals(this, other)
        || (Items.Length == other.Items.Length && GetHashCode() == other.GetHashCode() && Items.Zip(other.Items).All(p => Equals(p.First, p.Second))));
    public override bool Equals(object? obj) => obj is PyTuple t && Equals(t);
    public override int GetHashCode() => _hash ??= Items.Aggregate(17, (h, i) => h * 31 + (i?.GetHashCode() ?? 0));
    public override string ToString() => Size > 64 ? $"tuple({Count} items)" : "(" + string.Join(", ", Items.Select(i => i?.ToString() ?? "None")) + ")";
}

/// <summary>A Python dict or OrderedDict: insertion-ordered.</summary>
internal sealed class PyDict
{
    public OrderedDictionary<object, object?> Items { get; } = new();
    /// <summary>Instance attributes set by BUILD (a state dict's <c>_metadata</c>); kept, never interpreted.</summary>
    public PyDict? Attributes { get; set; }
    public override string ToString() => $"dict({Items.Count} items)";
}

/// <summary>A Python set or frozenset (only ever data).</summary>
internal sealed class PySet
{
    public HashSet<object> Items { get; } = new();
}

/// <summary>A reference to one of the few allowed globals (a function or class the reader implements itself).</summary>
internal sealed record PyGlobal(string Module, string Name)
{
    public string FullName => $"{Module}.{Name}";
    public override string ToString() => FullName;
}

/// <summary>A reference to a tensor storage (PyTorch's persistent id): element type, key, element count.</summary>
internal sealed record StorageRef(string Key, PyTorchDType DType, long ElementCount, string Location, long ElementOffset = 0);

/// <summary>A tensor to be built from a storage: <c>storage.as_strided(Size, Stride, Offset)</c>.</summary>
internal sealed record TensorRef(StorageRef Storage, long Offset, long[] Size, long[] Stride);

/// <summary>The pickle's bytes ran out: the data given is a prefix of the pickle (or the file is truncated).</summary>
internal sealed class TruncatedPickleException(string source, string problem) : WeightFileException(source, problem);

internal enum PyTorchDType { Float32, Float64, Float16, BFloat16, Int64, Int32, Int16, Int8, UInt8, Bool }

/// <summary>
/// A pickle reader that only builds what a PyTorch state dict is made of, and never executes anything.
/// </summary>
/// <remarks>
/// <para>
/// Python's unpickler imports any module and calls any callable a pickle names (<c>os.system</c>, <c>builtins.eval</c>…),
/// which is why loading an untrusted <c>.pth</c> with <c>torch.load(weights_only=False)</c> runs arbitrary code. This
/// reader implements the pickle virtual machine (protocols 0–5) but resolves globals against a short allow-list of
/// names whose behaviour it implements itself, as data: <c>collections.OrderedDict</c>, PyTorch's tensor/parameter
/// rebuild functions, the typed storage classes (only as tags in persistent ids), <c>torch.Size</c>,
/// <c>torch.device</c> and <c>_codecs.encode</c>. A pickle asking for any other global is rejected before anything is
/// built, naming the global.
/// </para>
/// <para>
/// Allocations and time are bounded by the pickle's size: the input is a byte array already in memory; every length
/// prefix is checked against the bytes left; text fields and integers have length caps; the memo, stack and marks have
/// caps; tuples nest at most <see cref="MaxNesting"/> deep (equality and hashing recurse); and every operation that
/// copies or walks a container is charged to a work budget proportional to the pickle's length, so that a small pickle
/// reusing a memoized container a million times ("billion laughs") is refused instead of running for hours.
/// </para>
/// </remarks>
internal sealed class RestrictedUnpickler
{
    /// <summary>A ResNet-152 state dict's pickle memoizes a few thousand objects; a million is far beyond any real file.</summary>
    public const int MaxMemoEntries = 1_000_000;
    public const int MaxStackDepth = 1_000_000;
    /// <summary>Tuples inside tuples: a state dict nests three or four deep.</summary>
    public const int MaxNesting = 64;
    /// <summary>Items of a tuple used as a dict key or set item (equality and hashing walk them).</summary>
    public const int MaxKeyTupleSize = 64;
    const int MaxLongBytes = 64;
    /// <summary>Container items copied or walked per byte of pickle: each item of a real pickle was pushed by an opcode of at least one byte.</summary>
    const long WorkPerByte = 8;
    /// <summary>Longest text line holding a number (protocol 0's INT, LONG, FLOAT, PUT, GET).</summary>
    const int MaxNumberLine = 256;
    /// <summary>Longest text line holding a module or global name.</summary>
    const int MaxNameLine = 1024;

    readonly byte[] _data;
    int _pos;
    readonly string _source;
    readonly Func<object?, object?> _persistentLoad;
    readonly List<object?> _stack = new();
    readonly Stack<int> _marks = new();
    readonly Dictionary<long, object?> _memo = new();
    readonly long _workBudget;
    long _work;

    /// <param name="data">The pickle bytes.</param>
    /// <param name="start">Where the pickle starts (several pickles can follow each other, as in PyTorch's legacy format).</param>
    /// <param name="source">The file name for errors.</param>
    /// <param name="persistentLoad">Resolves a persistent id (PyTorch: a storage reference); may throw.</param>
    public RestrictedUnpickler(byte[] data, int start, string source, Func<object?, object?> persistentLoad)
    {
        _data = data;
        _pos = start;
        _source = source;
        _persistentLoad = persistentLoad;
        _workBudget = WorkPerByte * (data.Length - start) + 1_000_000;
    }

    /// <summary>Offset just past the last STOP read.</summary>
    public int Position => _pos;

    /// <summary>Globals the reader implements (module, name).</summary>
    public static readonly IReadOnlySet<string> AllowedGlobals = new HashSet<string>(StringComparer.Ordinal)
    {
        "collections.OrderedDict",
        "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
        "torch._tensor._rebuild_from_type_v2", "torch.Tensor", "torch.nn.parameter.Parameter",
        "torch.Size", "torch.device", "_codecs.encode",
        "torch.FloatStorage", "torch.DoubleStorage", "torch.HalfStorage", "torch.BFloat16Storage", "torch.LongStorage",
        "torch.IntStorage", "torch.ShortStorage", "torch.CharStorage", "torch.ByteStorage", "torch.BoolStorage",
        "torch.UntypedStorage",
    };

    /// <summary>The element type a storage class name stands for, or null.</summary>
    public static PyTorchDType? StorageDType(PyGlobal g) => g.Module != "torch" ? null : g.Name switch
    {
        "FloatStorage" => PyTorchDType.Float32,
        "DoubleStorage" => PyTorchDType.Float64,
        "HalfStorage" => PyTorchDType.Float16,
        "BFloat16Storage" => PyTorchDType.BFloat16,
        "LongStorage" => PyTorchDType.Int64,
        "IntStorage" => PyTorchDType.Int32,
        "ShortStorage" => PyTorchDType.Int16,
        "CharStorage" => PyTorchDType.Int8,
        "ByteStorage" or "UntypedStorage" => PyTorchDType.UInt8,
        "BoolStorage" => PyTorchDType.Bool,
        _ => null,
    };

    WeightFileException Error(string problem) => new(_source, problem);
    TruncatedPickleException Truncated(string problem) => new(_source, problem);

    /// <summary>Runs the pickle up to its STOP and returns the value it built.</summary>
    public object? Load()
    {
        while (true)
        {
            byte op = ReadByte();
            switch (op)
            {
                case 0x80: ReadByte(); break;                                  // PROTO
                case 0x95: ReadLength(8); break;                               // FRAME: its length must lie in the data; then read linearly
                case (byte)'.': return Pop();                                  // STOP
                case (byte)'(': if (_marks.Count >= MaxStackDepth) throw Error("the pickle sets more MARKs than allowed."); _marks.Push(_stack.Count); break; // MARK
                case (byte)'0': if (_marks.Count > 0 && _stack.Count == _marks.Peek()) _marks.Pop(); else Pop(); break; // POP (of an empty frame: its MARK)
                case (byte)'1': PopMark(); break;                              // POP_MARK
                case (byte)'2': Push(Peek()); break;                           // DUP
                case (byte)'N': Push(null); break;
                case 0x88: Push(true); break;
                case 0x89: Push(false); break;
                case (byte)'I': Push(ParseIntLine(ReadLine(MaxNumberLine))); break;
                case (byte)'L': Push(ParseLongLine(ReadLine(MaxNumberLine))); break;
                case (byte)'F': Push(ParseFloatLine(ReadLine(MaxNumberLine))); break;
                case (byte)'J': Push((long)BinaryPrimitives.ReadInt32LittleEndian(ReadBytes(4))); break;
                case (byte)'K': Push((long)ReadByte()); break;
                case (byte)'M': Push((long)BinaryPrimitives.ReadUInt16LittleEndian(ReadBytes(2))); break;
                case 0x8a: Push(ReadLong(ReadByte())); break;                  // LONG1
                case 0x8b: Push(ReadLong(ReadLength(4))); break;               // LONG4
                case (byte)'G': Push(BinaryPrimitives.ReadDoubleBigEndian(ReadBytes(8))); break;
                case (byte)'S': Push(ParseQuotedString(ReadLine(int.MaxValue))); break; // STRING (protocol 0)
                case (byte)'T': Push(Latin1(ReadBytes(ReadLength(4)))); break; // BINSTRING
                case (byte)'U': Push(Latin1(ReadBytes(ReadByte()))); break;    // SHORT_BINSTRING
                case (byte)'V': Push(UnescapePython(ReadLine(int.MaxValue))); break; // UNICODE (protocol 0)
                case (byte)'X': Push(Utf8(ReadBytes(ReadLength(4)))); break;   // BINUNICODE
                case 0x8c: Push(Utf8(ReadBytes(ReadByte()))); break;           // SHORT_BINUNICODE
                case 0x8d: Push(Utf8(ReadBytes(ReadLength(8)))); break;        // BINUNICODE8
                case (byte)'B': Push(ReadBytes(ReadLength(4)).ToArray()); break; // BINBYTES
                case (byte)'C': Push(ReadBytes(ReadByte()).ToArray()); break;  // SHORT_BINBYTES
                case 0x8e: Push(ReadBytes(ReadLength(8)).ToArray()); break;    // BINBYTES8
                case 0x96: Push(ReadBytes(ReadLength(8)).ToArray()); break;    // BYTEARRAY8
                case (byte)')': Push(Tuple([])); break;
                case (byte)'t': Push(Tuple(PopMark().ToArray())); break;
                case 0x85: { var a = Pop(); Push(Tuple([a])); break; }
                case 0x86: { var b = Pop(); var a = Pop(); Push(Tuple([a, b])); break; }
                case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); Push(Tuple([a, b, c])); break; }
                case (byte)']': Push(new List<object?>()); break;
                case (byte)'l': Push(PopMark()); break;
                case (byte)'a': { var v = Pop(); AsList(Peek()).Add(v); break; }
                case (byte)'e': { var items = PopMark(); AsList(Peek()).AddRange(items); break; }
                case (byte)'}': Push(new PyDict()); break;
                case (byte)'d': { var items = PopMark(); var d = new PyDict(); SetItems(d, items); Push(d); break; }
                case (byte)'s': { var v = Pop(); var k = Pop(); SetItem(AsDict(Peek()), k, v); break; }
                case (byte)'u': { var items = PopMark(); SetItems(AsDict(Peek()), items); break; }
                case 0x8f: Push(new PySet()); break;                           // EMPTY_SET
                case 0x90: { var items = PopMark(); AddToSet(Peek(), items); break; } // ADDITEMS
                case 0x91: { var s = new PySet(); AddToSet(s, PopMark()); Push(s); break; } // FROZENSET
                case (byte)'c': { var module = ReadLine(MaxNameLine); var name = ReadLine(MaxNameLine); Push(ResolveGlobal(module, name)); break; }
                case 0x93: { var name = Pop() as string; var module = Pop() as string; if (module is null || name is null) throw Error("STACK_GLOBAL needs two strings."); Push(ResolveGlobal(module, name)); break; }
                case (byte)'R': { var args = Pop(); var callable = Pop(); Push(Call(callable, args)); break; }   // REDUCE
                case 0x81: { var args = Pop(); var cls = Pop(); Push(Call(cls, args)); break; }                   // NEWOBJ
                case 0x92: { Pop(); var args = Pop(); var cls = Pop(); Push(Call(cls, args)); break; }           // NEWOBJ_EX (kwargs ignored)
                case (byte)'i': { var module = ReadLine(MaxNameLine); var name = ReadLine(MaxNameLine); var args = PopMark(); Push(Call(ResolveGlobal(module, name), Tuple(args.ToArray()))); break; } // INST
                case (byte)'o': { var items = PopMark(); if (items.Count == 0) throw Error("OBJ without a class."); Push(Call(items[0], Tuple(items.Skip(1).ToArray()))); break; } // OBJ
                case (byte)'b': { var state = Pop(); Build(Peek(), state); break; }    // BUILD
                case (byte)'P': Push(_persistentLoad(ReadLine(MaxNameLine))); break; // PERSID
                case (byte)'Q': Push(_persistentLoad(Pop())); break;            // BINPERSID
                case (byte)'p': Memo(ParseIndexLine(ReadLine(MaxNumberLine))); break; // PUT
                case (byte)'q': Memo(ReadByte()); break;                        // BINPUT
                case (byte)'r': Memo(BinaryPrimitives.ReadUInt32LittleEndian(ReadBytes(4))); break; // LONG_BINPUT
                case 0x94: Memo(_memo.Count); break;                            // MEMOIZE
                case (byte)'g': Push(Recall(ParseIndexLine(ReadLine(MaxNumberLine)))); break; // GET
                case (byte)'h': Push(Recall(ReadByte())); break;                // BINGET
                case (byte)'j': Push(Recall(BinaryPrimitives.ReadUInt32LittleEndian(ReadBytes(4)))); break; // LONG_BINGET
                case 0x82 or 0x83 or 0x84:
                    throw Error("the pickle uses the copyreg extension registry (EXT1/EXT2/EXT4), which a state dict never needs; refusing it.");
                case 0x97 or 0x98:
                    throw Error("the pickle uses out-of-band buffers (protocol 5), which a PyTorch file never contains.");
                default:
                    throw Error($"unknown pickle opcode 0x{op:x2} at byte {_pos - 1}; the file is corrupt or not a PyTorch pickle.");
            }
        }
    }

    // ---- globals and calls --------------------------------------------------------------------------------------

    PyGlobal ResolveGlobal(string module, string name)
    {
        // Protocol 0–2 pickles use Python 2's module names (Python's fix_imports maps them back).
        module = module switch { "__builtin__" or "exceptions" => "builtins", "copy_reg" => "copyreg", _ => module };
        string full = $"{module}.{name}";
        if (!AllowedGlobals.Contains(full))
            throw Error($"the pickle asks for the Python global '{full}', which a PyTorch state dict never needs. " +
                "Loading it with Python's pickle would import and run it (arbitrary code execution), so the file is refused. " +
                "If you trust the file, re-save only the weights in Python: torch.save(model.state_dict(), path) (or export safetensors).");
        return new PyGlobal(module, name);
    }

    object? Call(object? callable, object? argsObject)
    {
        if (callable is not PyGlobal g) throw Error($"the pickle calls a {Describe(callable)}, which is not callable here.");
        if (argsObject is not PyTuple args) throw Error($"the arguments to {g.FullName} are a {Describe(argsObject)}, not a tuple.");
        Charge(args.Count);
        switch (g.FullName)
        {
            case "collections.OrderedDict":
            {
                var d = new PyDict();
                if (args.Count == 1 && args[0] is List<object?> pairs)
                    foreach (var p in Charged(pairs))
                        if (p is PyTuple { Count: 2 } kv) SetItem(d, kv[0], kv[1]);
                        else throw Error("OrderedDict(...) given something other than (key, value) pairs.");
                else if (args.Count != 0) throw Error("OrderedDict(...) called with unexpected arguments.");
                return d;
            }
            case "torch._utils._rebuild_tensor_v2":
            case "torch._utils._rebuild_tensor":
            {
                if (args.Count < 4) throw Error($"{g.Name} needs at least 4 arguments, got {args.Count}.");
                if (args[0] is not StorageRef storage) throw Error($"{g.Name}'s first argument is a {Describe(args[0])}, not a storage.");
                long offset = AsLong(args[1], "storage offset");
                long[] size = AsLongs(args[2], "size");
                long[] stride = AsLongs(args[3], "stride");
                return MakeTensor(storage, offset, size, stride);
            }
            case "torch._utils._rebuild_parameter":
            case "torch._utils._rebuild_parameter_with_state":
                if (args.Count < 1 || args[0] is not TensorRef t) throw Error($"{g.Name}'s first argument is not a tensor.");
                return t;
            case "torch._tensor._rebuild_from_type_v2":
            {
                // (func, new_type, args, state): func(*args) must itself be an allowed rebuild function.
                if (args.Count < 3) throw Error("_rebuild_from_type_v2 needs (func, type, args, state).");
                if (args[1] is not PyGlobal { FullName: "torch.Tensor" or "torch.nn.parameter.Parameter" })
                    throw Error($"_rebuild_from_type_v2 asks for the tensor subclass {Describe(args[1])}; only plain tensors and parameters are read.");
                return Call(args[0], args[2]);
            }
            case "torch.Size":
                return args.Count == 1 && args[0] is PyTuple dims ? dims : args.Count == 0 ? new PyTuple([]) : throw Error("torch.Size(...) called with unexpected arguments.");
            case "torch.device":
                return args.Count <= 2 && args.Items.All(a => a is string or long)
                    ? string.Join(":", args.Items.Select(a => a?.ToString()))
                    : throw Error("torch.device(...) called with unexpected arguments.");
            case "_codecs.encode":
            {
                // protocol 2 writes Python 3 bytes as _codecs.encode(text, 'latin1').
                if (args.Count != 2 || args[0] is not string text || args[1] is not string encoding)
                    throw Error("_codecs.encode(...) called with unexpected arguments.");
                Charge(text.Length);
                return encoding.Replace("-", "").Equals("latin1", StringComparison.OrdinalIgnoreCase)
                    || encoding.Replace("-", "").Equals("iso88591", StringComparison.OrdinalIgnoreCase)
                    ? Encoding.Latin1.GetBytes(text)
                    : throw Error($"_codecs.encode with encoding '{encoding}' is not supported.");
            }
            default:
                // Storage classes and tensor types are only valid as tags (persistent ids, _rebuild_from_type_v2).
                throw Error($"the pickle calls {g.FullName}(...), which a state dict never does.");
        }
    }

    TensorRef MakeTensor(StorageRef storage, long offset, long[] size, long[] stride)
    {
        if (size.Length != stride.Length) throw Error($"a tensor has size [{string.Join(", ", size)}] but stride [{string.Join(", ", stride)}].");
        if (size.Length > 16) throw Error($"a tensor has {size.Length} dimensions.");
        if (offset < 0 || size.Any(s => s < 0) || stride.Any(s => s < 0)) throw Error("a tensor has a negative size, stride or offset.");
        long elements = 1;
        long lastIndex = storage.ElementOffset + offset; // a legacy storage view starts inside its root storage
        try
        {
            for (int i = 0; i < size.Length; i++)
            {
                elements = checked(elements * size[i]);
                if (size[i] > 0) lastIndex = checked(lastIndex + (size[i] - 1) * stride[i]);
            }
        }
        catch (OverflowException) { throw Error($"a tensor has an impossibly large shape [{string.Join(", ", size)}]."); }
        if (elements > 0 && lastIndex >= storage.ElementCount)
            throw Error($"a tensor of shape [{string.Join(", ", size)}] (offset {offset}, stride [{string.Join(", ", stride)}]) reaches element {lastIndex} of storage '{storage.Key}', which has {storage.ElementCount} elements.");
        // Stride-0 (broadcast) dimensions would let a 3-element storage describe a tensor of billions of elements, which
        // loading copies out: a state dict's tensor never has more elements than its storage.
        if (elements > Math.Max(storage.ElementCount, 1))
            throw Error($"a tensor of shape [{string.Join(", ", size)}] (stride [{string.Join(", ", stride)}]) has {elements:N0} elements but its storage '{storage.Key}' only {storage.ElementCount:N0}.");
        return new TensorRef(storage, offset, size, stride);
    }

    void Build(object? target, object? state)
    {
        switch (target)
        {
            case PyDict d when state is PyDict attributes:
                d.Attributes = attributes; // e.g. state_dict()._metadata: kept as data, not interpreted
                return;
            case TensorRef:
                return; // parameter state (requires_grad hooks…): irrelevant to the values
            default:
                throw Error($"the pickle sets the state of a {Describe(target)}, which a state dict never does.");
        }
    }

    // ---- containers ---------------------------------------------------------------------------------------------

    List<object?> AsList(object? o) => o as List<object?> ?? throw Error($"APPEND to a {Describe(o)}, not a list.");
    PyDict AsDict(object? o) => o as PyDict ?? throw Error($"SETITEM on a {Describe(o)}, not a dict.");

    PyTuple Tuple(object?[] items)
    {
        var t = new PyTuple(items);
        if (t.Depth > MaxNesting) throw Error($"the pickle nests tuples more than {MaxNesting} deep; a state dict never does.");
        return t;
    }

    void SetItems(PyDict d, List<object?> items)
    {
        if (items.Count % 2 != 0) throw Error("a dict is built from an odd number of items.");
        for (int i = 0; i < items.Count; i += 2) SetItem(d, items[i], items[i + 1]);
    }

    void SetItem(PyDict d, object? key, object? value)
    {
        var k = Hashable(key, "a dict key");
        d.Items[k] = value;
    }

    void AddToSet(object? target, List<object?> items)
    {
        if (target is not PySet set) throw Error($"ADDITEMS to a {Describe(target)}, not a set.");
        foreach (var i in items)
            set.Items.Add(Hashable(i, "a set item"));
    }

    /// <summary>A value usable as a dict key or set item: immutable, and (for tuples) cheap to hash and compare.</summary>
    object Hashable(object? value, string what)
    {
        var k = value ?? PyNone.Value;
        if (k is not (string or long or bool or double or PyTuple or PyNone or BigInteger))
            throw Error($"{what} is a {Describe(value)}, which is not hashable here.");
        if (k is PyTuple { Size: > MaxKeyTupleSize } t)
            throw Error($"{what} is a tuple of {t.Size:N0} items; a state dict's keys are names.");
        return k;
    }

    /// <summary>Counts work done on containers against the budget (see the class remarks).</summary>
    void Charge(long items)
    {
        _work += items;
        if (_work > _workBudget)
            throw Error($"the pickle makes the reader copy or walk more than {_workBudget:N0} items, out of proportion to its {_data.Length:N0} bytes (containers reused many times); refusing it.");
    }

    List<object?> Charged(List<object?> items)
    {
        Charge(items.Count);
        return items;
    }

    // ---- stack and memo -----------------------------------------------------------------------------------------

    void Push(object? value)
    {
        if (_stack.Count >= MaxStackDepth) throw Error("the pickle's stack grows beyond the allowed size.");
        _stack.Add(value);
    }

    object? Pop()
    {
        if (_stack.Count == 0 || (_marks.Count > 0 && _stack.Count <= _marks.Peek())) throw Error("the pickle pops from an empty stack; it is corrupt.");
        var v = _stack[^1];
        _stack.RemoveAt(_stack.Count - 1);
        return v;
    }

    object? Peek() => _stack.Count > 0 ? _stack[^1] : throw Error("the pickle reads an empty stack; it is corrupt.");

    List<object?> PopMark()
    {
        if (_marks.Count == 0) throw Error("the pickle uses a MARK that was never set; it is corrupt.");
        int mark = _marks.Pop();
        Charge(_stack.Count - mark);
        var items = _stack.GetRange(mark, _stack.Count - mark);
        _stack.RemoveRange(mark, _stack.Count - mark);
        return items;
    }

    void Memo(long index)
    {
        if (_memo.Count >= MaxMemoEntries && !_memo.ContainsKey(index)) throw Error("the pickle's memo grows beyond the allowed size.");
        _memo[index] = Peek();
    }

    object? Recall(long index) => _memo.TryGetValue(index, out var v) ? v : throw Error($"the pickle refers to memo entry {index}, which was never stored; it is corrupt.");

    // ---- raw reading --------------------------------------------------------------------------------------------

    byte ReadByte()
    {
        if (_pos >= _data.Length) throw Truncated("the pickle ends before its STOP opcode; the file is truncated.");
        return _data[_pos++];
    }

    ReadOnlySpan<byte> ReadBytes(long count)
    {
        if (count < 0) throw Error($"the pickle declares {count:N0} bytes.");
        if (count > _data.Length - _pos) throw Truncated($"the pickle declares {count:N0} bytes but only {_data.Length - _pos:N0} remain; the file is truncated or corrupt.");
        var span = _data.AsSpan(_pos, (int)count);
        _pos += (int)count;
        return span;
    }

    long ReadLength(int width)
    {
        var b = ReadBytes(width);
        long n = width switch
        {
            4 => BinaryPrimitives.ReadUInt32LittleEndian(b),
            8 => (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(b), long.MaxValue),
            _ => throw new ArgumentOutOfRangeException(nameof(width)),
        };
        if (n > _data.Length - _pos) throw Truncated($"the pickle declares {n:N0} bytes but only {_data.Length - _pos:N0} remain; the file is truncated or corrupt.");
        return n;
    }

    /// <summary>A protocol-0 text field up to its newline, of at most <paramref name="maxLength"/> bytes.</summary>
    string ReadLine(int maxLength)
    {
        int window = (int)Math.Min(_data.Length - _pos, (long)maxLength + 2); // + "\r\n"
        int end = Array.IndexOf(_data, (byte)'\n', _pos, window);
        if (end < 0)
        {
            if (window < maxLength + 2L) throw Truncated("the pickle ends inside a text field; the file is truncated.");
            throw Error($"the pickle has a text field longer than {maxLength:N0} bytes where a number or a name belongs; it is corrupt.");
        }
        var s = Encoding.UTF8.GetString(_data, _pos, end - _pos);
        _pos = end + 1;
        return s.EndsWith('\r') ? s[..^1] : s;
    }

    object ReadLong(long byteCount)
    {
        if (byteCount > MaxLongBytes) throw Error($"the pickle holds a {byteCount}-byte integer; refusing integers wider than {MaxLongBytes} bytes.");
        var b = ReadBytes(byteCount);
        if (b.Length == 0) return 0L;
        var big = new BigInteger(b, isUnsigned: false, isBigEndian: false);
        return big >= long.MinValue && big <= long.MaxValue ? (long)big : big;
    }

    object ParseIntLine(string s) => s switch
    {
        "00" => false,
        "01" => true,
        _ => ParseLongLine(s),
    };

    object ParseLongLine(string s)
    {
        if (!BigInteger.TryParse(s.TrimEnd('L'), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var big))
            throw Error($"the pickle has the text '{Clip(s)}' where an integer belongs; it is corrupt.");
        return big >= long.MinValue && big <= long.MaxValue ? (long)big : big;
    }

    double ParseFloatLine(string s) => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d
        : throw Error($"the pickle has the text '{Clip(s)}' where a float belongs; it is corrupt.");

    long ParseIndexLine(string s) => long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var i) ? i
        : throw Error($"the pickle has the text '{Clip(s)}' where a memo index belongs; it is corrupt.");

    /// <summary>Text from the file, shortened and with control characters escaped, for an error message.</summary>
    static string Clip(string s)
    {
        var shown = s.Length > 40 ? s[..40] + "…" : s;
        return string.Concat(shown.Select(c => char.IsControl(c) ? $"\\x{(int)c:x2}" : c.ToString()));
    }

    string ParseQuotedString(string s)
    {
        if (s.Length < 2 || (s[0] != '\'' && s[0] != '"') || s[^1] != s[0]) throw Error("a protocol-0 string is not quoted.");
        return UnescapePython(s[1..^1]);
    }

    string UnescapePython(string s)
    {
        if (!s.Contains('\\')) return s;
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] != '\\' || i + 1 >= s.Length) { sb.Append(s[i]); continue; }
            char c = s[++i];
            switch (c)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case 'x' when i + 2 < s.Length: sb.Append(Hex(s.Substring(i + 1, 2))); i += 2; break;
                case 'u' when i + 4 < s.Length: sb.Append(Hex(s.Substring(i + 1, 4))); i += 4; break;
                default: sb.Append('\\').Append(c); break;
            }
        }
        return sb.ToString();

        char Hex(string digits) => int.TryParse(digits, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int v) ? (char)v
            : throw Error($"a protocol-0 string has the invalid escape '\\{Clip(digits)}'.");
    }

    static string Latin1(ReadOnlySpan<byte> b) => Encoding.Latin1.GetString(b);

    string Utf8(ReadOnlySpan<byte> b)
    {
        try { return new UTF8Encoding(false, true).GetString(b); }
        catch (DecoderFallbackException) { throw Error("the pickle holds a string that is not valid UTF-8."); }
    }

    long AsLong(object? o, string what) => o is long l ? l : throw Error($"a tensor's {what} is a {Describe(o)}, not an integer.");

    long[] AsLongs(object? o, string what)
    {
        IReadOnlyList<object?> items = o switch { PyTuple t => t.Items, List<object?> l => l, _ => throw Error($"a tensor's {what} is a {Describe(o)}, not a tuple.") };
        if (items.Count > 16) throw Error($"a tensor's {what} has {items.Count:N0} dimensions.");
        return items.Select(i => AsLong(i, what)).ToArray();
    }

    internal static string Describe(object? o) => o switch
    {
        null => "None",
        string => "string",
        long or BigInteger => "integer",
        double => "float",
        bool => "bool",
        byte[] => "bytes",
        PyTuple => "tuple",
        List<object?> => "list",
        PyDict => "dict",
        PySet => "set",
        PyGlobal g => $"global {g.FullName}",
        StorageRef => "storage",
        TensorRef => "tensor",
        _ => o.GetType().Name,
    };
}
