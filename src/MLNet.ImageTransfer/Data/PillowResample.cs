using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MLNet.ImageTransfer.Data;

/// <summary>
/// Pillow's bilinear resize of 8-bit images, bit for bit: what <c>Image.resize(size, Image.BILINEAR)</c> computes, and so
/// what torchvision's <c>transforms.Resize</c> (and <c>RandomResizedCrop</c>, <c>resized_crop</c>) do to a PIL image.
/// The arithmetic of Pillow's <c>libImaging/Resample.c</c> (9.x): a triangle filter whose support grows with the
/// reduction (antialiasing), weights normalised in double precision and rounded to 22-bit fixed point, the horizontal
/// pass first with its result rounded to 8 bits, then the vertical pass; only the source rows the output needs are
/// resampled horizontally. Scalar per output pixel, four channels at once in SIMD lanes; no allocation beyond one
/// pooled intermediate.
/// </summary>
/// <remarks>
/// Sources are interleaved pixels of 3 or 4 bytes; every byte of a pixel is resampled alike (channel order and a
/// fourth byte do not matter to the arithmetic). The <em>window</em> is the image Pillow sees: weights are clamped and
/// renormalised at its edges, so a window is a crop followed by a resize (torchvision's <c>resized_crop</c>). The
/// output can be a part of the resized window (<see cref="Axis"/>'s first/count): the centre crop after a resize
/// computes only the pixels it keeps, with the same coefficients as the whole resize.
/// </remarks>
internal static class PillowResample
{
    /// <summary>Pillow's <c>PRECISION_BITS</c>: 32 − 8 − 2.</summary>
    const int PrecisionBits = 22;
    const int Half = 1 << (PrecisionBits - 1);

    /// <summary>The taps of one axis: for each output pixel, the first input index, how many inputs, and their 22-bit weights.</summary>
    internal sealed class Axis
    {
        public required int[] Start { get; init; }
        public required int[] Count { get; init; }
        public required int[] Weights { get; init; }
        public required int KernelSize { get; init; }
        public int OutSize => Start.Length;

        /// <summary>First input index any output reads.</summary>
        public int First => Start[0];

        /// <summary>One past the last input index any output reads (Pillow's <c>ybox_last</c>).</summary>
        public int End => Start[^1] + Count[^1];

        /// <summary>True when the axis copies its inputs unchanged (same size, no offset): Pillow skips that pass.</summary>
        public bool IsIdentity { get; init; }
    }

    /// <summary>
    /// Pillow's <c>precompute_coeffs</c> + <c>normalize_coeffs_8bpc</c> for the bilinear filter: the axis of a resize of
    /// <paramref name="inSize"/> inputs, the interval [<paramref name="in0"/>, <paramref name="in1"/>) of them (Pillow's
    /// box), to <paramref name="outSize"/> outputs, of which outputs <paramref name="first"/>.. (<paramref name="count"/>
    /// of them) are computed.
    /// </summary>
    public static Axis Coefficients(int inSize, double in0, double in1, int outSize, int first = 0, int count = -1)
    {
        if (inSize < 1 || outSize < 1) throw new ArgumentOutOfRangeException(nameof(outSize), "Sizes must be positive.");
        if (count < 0) count = outSize - first;
        if (first < 0 || count < 1 || first + count > outSize) throw new ArgumentOutOfRangeException(nameof(count));
        double scale = (in1 - in0) / outSize;
        double filterScale = scale < 1.0 ? 1.0 : scale;
        double support = 1.0 * filterScale; // bilinear: support 1
        int kernelSize = (int)Math.Ceiling(support) * 2 + 1;
        var starts = new int[count];
        var counts = new int[count];
        var weights = new int[count * kernelSize];
        Span<double> k = kernelSize <= 256 ? stackalloc double[kernelSize] : new double[kernelSize];
        double ss = 1.0 / filterScale;
        for (int i = 0; i < count; i++)
        {
            int xx = first + i;
            double center = in0 + (xx + 0.5) * scale;
            int xmin = (int)(center - support + 0.5); // C's (int): truncation toward zero, as Pillow
            if (xmin < 0) xmin = 0;
            int xmax = (int)(center + support + 0.5);
            if (xmax > inSize) xmax = inSize;
            xmax -= xmin;
            double ww = 0;
            for (int x = 0; x < xmax; x++)
            {
                double w = Triangle((x + xmin - center + 0.5) * ss);
                k[x] = w;
                ww += w;
            }
            for (int x = 0; x < xmax; x++)
            {
                if (ww != 0.0) k[x] /= ww;
                weights[i * kernelSize + x] = k[x] < 0 ? (int)(-0.5 + k[x] * (1 << PrecisionBits)) : (int)(0.5 + k[x] * (1 << PrecisionBits));
            }
            starts[i] = xmin;
            counts[i] = Math.Max(xmax, 0);
        }
        return new Axis
        {
            Start = starts, Count = counts, Weights = weights, KernelSize = kernelSize,
            IsIdentity = in0 == 0 && in1 == inSize && outSize == inSize && first == 0 && count == outSize,
        };
    }

    static double Triangle(double x)
    {
        if (x < 0.0) x = -x;
        return x < 1.0 ? 1.0 - x : 0.0;
    }

    /// <summary>Where the resized pixels go: interleaved 3-byte pixels, or three planes (CHW).</summary>
    internal enum OutputLayout { Interleaved3, Planar3 }

    /// <summary>
    /// Resamples a window of <paramref name="source"/> (interleaved, <paramref name="pixelBytes"/> 3 or 4 bytes per
    /// pixel, rows <paramref name="rowBytes"/> apart; the window starts at pixel (<paramref name="windowX"/>,
    /// <paramref name="windowY"/>) and is as wide and high as the axes' inputs) along <paramref name="horizontal"/> and
    /// <paramref name="vertical"/>, writing output channel c from source byte <paramref name="channelMap"/>[c] of each pixel.
    /// </summary>
    public static unsafe void Resample(ReadOnlySpan<byte> source, int rowBytes, int pixelBytes, int windowX, int windowY,
        Axis horizontal, Axis vertical, Span<byte> destination, OutputLayout layout, ReadOnlySpan<int> channelMap)
    {
        if (pixelBytes is not (3 or 4)) throw new ArgumentOutOfRangeException(nameof(pixelBytes));
        if (channelMap.Length != 3) throw new ArgumentException("Three output channels.", nameof(channelMap));
        int outW = horizontal.OutSize, outH = vertical.OutSize;
        if (destination.Length < 3 * outW * outH) throw new ArgumentException("The destination is too small.", nameof(destination));
        long lastByte = (long)(windowY + vertical.End - 1) * rowBytes + (long)(windowX + horizontal.End) * pixelBytes;
        if (windowX < 0 || windowY < 0 || lastByte > source.Length) throw new ArgumentException("The window lies outside the source.", nameof(source));

        int rows = vertical.End - vertical.First;
        fixed (byte* src = source)
        fixed (byte* dst = destination)
        {
            byte* windowRows = src + (long)(windowY + vertical.First) * rowBytes + (long)windowX * pixelBytes;
            if (horizontal.IsIdentity)
            {
                // Pillow skips the horizontal pass: the vertical one reads the source rows as they are.
                VerticalPassAndStore(windowRows, rowBytes, pixelBytes, outW, vertical, dst, layout, channelMap);
                return;
            }
            // Horizontal pass over the rows the vertical pass reads (Pillow's ybox_first..ybox_last) → 4-byte pixels.
            var intermediate = ArrayPool<byte>.Shared.Rent(outW * 4 * rows);
            try
            {
                fixed (byte* t = intermediate)
                {
                    HorizontalPass(windowRows, rowBytes, pixelBytes, rows, horizontal, t);
                    VerticalPassAndStore(t, outW * 4, 4, outW, vertical, dst, layout, channelMap);
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(intermediate);
            }
        }
    }

    static unsafe void HorizontalPass(byte* src, int rowBytes, int pixelBytes, int rows, Axis axis, byte* dst)
    {
        int outW = axis.OutSize, kernelSize = axis.KernelSize;
        fixed (int* weights = axis.Weights)
        fixed (int* starts = axis.Start)
        fixed (int* counts = axis.Count)
        {
            var half = Vector128.Create(Half);
            for (int r = 0; r < rows; r++)
            {
                byte* row = src + (long)r * rowBytes;
                uint* outRow = (uint*)(dst + (long)r * outW * 4);
                for (int xx = 0; xx < outW; xx++)
                {
                    int* k = weights + xx * kernelSize;
                    byte* p = row + starts[xx] * pixelBytes;
                    int n = counts[xx];
                    var acc = half;
                    if (pixelBytes == 4)
                        for (int j = 0; j < n; j++, p += 4) acc += Load4(p) * k[j];
                    else
                        for (int j = 0; j < n; j++, p += 3) acc += Load3(p) * k[j];
                    outRow[xx] = Clip(acc);
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe Vector128<int> Load4(byte* p)
        => Sse41.IsSupported ? Sse41.ConvertToVector128Int32(p)
            : Vector128.WidenLower(Vector128.WidenLower(Vector128.CreateScalarUnsafe(Unsafe.ReadUnaligned<uint>(p)).AsByte())).AsInt32();

    /// <summary>Three bytes (never reads past them: the last pixel of a buffer may be its last three bytes).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe Vector128<int> Load3(byte* p) => Vector128.Create(p[0], p[1], p[2], 0);

    /// <summary>Pillow's <c>clip8(ss >> PRECISION_BITS)</c> on four lanes, packed into four bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static uint Clip(Vector128<int> acc)
    {
        var v = Vector128.Min(Vector128.Max(Vector128.ShiftRightArithmetic(acc, PrecisionBits), Vector128<int>.Zero), Vector128.Create(255));
        var narrowed = Vector128.Narrow(Vector128.Narrow(v.AsUInt32(), v.AsUInt32()), Vector128<ushort>.Zero);
        return narrowed.AsUInt32().ToScalar();
    }

    /// <summary>The vertical pass, row by row into a pooled row buffer (every byte of a row alike), then stored in the output layout.</summary>
    static unsafe void VerticalPassAndStore(byte* input, int inRowBytes, int inPixelBytes, int outW, Axis axis, byte* dst, OutputLayout layout, ReadOnlySpan<int> channelMap)
    {
        int outH = axis.OutSize, kernelSize = axis.KernelSize, first = axis.First;
        int rowLength = outW * inPixelBytes;
        int c0 = channelMap[0], c1 = channelMap[1], c2 = channelMap[2];
        var rowBuffer = ArrayPool<byte>.Shared.Rent(rowLength);
        try
        {
            fixed (byte* row = rowBuffer)
            fixed (int* weights = axis.Weights)
            {
                for (int yy = 0; yy < outH; yy++)
                {
                    int* k = weights + yy * kernelSize;
                    byte* top = input + (long)(axis.Start[yy] - first) * inRowBytes;
                    int n = axis.Count[yy];
                    if (axis.IsIdentity) Buffer.MemoryCopy(top, row, rowLength, rowLength);
                    else VerticalRow(top, inRowBytes, n, k, row, rowLength);
                    Store(row, inPixelBytes, outW, dst, yy, outH, layout, c0, c1, c2);
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rowBuffer);
        }
    }

    /// <summary>out[i] = clip8(Σ_j in[j][i]·k[j]) for every byte i of a row: 16 bytes at a time, then the rest one by one.</summary>
    static unsafe void VerticalRow(byte* top, int inRowBytes, int n, int* k, byte* output, int length)
    {
        int i = 0;
        if (Vector128.IsHardwareAccelerated)
        {
            var half = Vector128.Create(Half);
            for (; i + 16 <= length; i += 16)
            {
                Vector128<int> a0 = half, a1 = half, a2 = half, a3 = half;
                byte* p = top + i;
                for (int j = 0; j < n; j++, p += inRowBytes)
                {
                    var bytes = Vector128.Load(p);
                    var (lo, hi) = Vector128.Widen(bytes);
                    var (w0, w1) = Vector128.Widen(lo);
                    var (w2, w3) = Vector128.Widen(hi);
                    var weight = Vector128.Create(k[j]);
                    a0 += w0.AsInt32() * weight;
                    a1 += w1.AsInt32() * weight;
                    a2 += w2.AsInt32() * weight;
                    a3 += w3.AsInt32() * weight;
                }
                var max = Vector128.Create(255);
                var v0 = Vector128.Min(Vector128.Max(Vector128.ShiftRightArithmetic(a0, PrecisionBits), Vector128<int>.Zero), max).AsUInt32();
                var v1 = Vector128.Min(Vector128.Max(Vector128.ShiftRightArithmetic(a1, PrecisionBits), Vector128<int>.Zero), max).AsUInt32();
                var v2 = Vector128.Min(Vector128.Max(Vector128.ShiftRightArithmetic(a2, PrecisionBits), Vector128<int>.Zero), max).AsUInt32();
                var v3 = Vector128.Min(Vector128.Max(Vector128.ShiftRightArithmetic(a3, PrecisionBits), Vector128<int>.Zero), max).AsUInt32();
                Vector128.Narrow(Vector128.Narrow(v0, v1), Vector128.Narrow(v2, v3)).Store(output + i);
            }
        }
        for (; i < length; i++)
        {
            int acc = Half;
            byte* p = top + i;
            for (int j = 0; j < n; j++, p += inRowBytes) acc += *p * k[j];
            acc >>= PrecisionBits;
            output[i] = (byte)(acc < 0 ? 0 : acc > 255 ? 255 : acc);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static unsafe void Store(byte* row, int pixelBytes, int outW, byte* dst, int y, int outH, OutputLayout layout, int c0, int c1, int c2)
    {
        if (layout == OutputLayout.Interleaved3)
        {
            byte* d = dst + (long)y * outW * 3;
            for (int x = 0; x < outW; x++, row += pixelBytes, d += 3)
            {
                d[0] = row[c0];
                d[1] = row[c1];
                d[2] = row[c2];
            }
        }
        else
        {
            long plane = (long)outW * outH;
            byte* d0 = dst + (long)y * outW, d1 = d0 + plane, d2 = d1 + plane;
            for (int x = 0; x < outW; x++, row += pixelBytes)
            {
                d0[x] = row[c0];
                d1[x] = row[c1];
                d2[x] = row[c2];
            }
        }
    }
}
