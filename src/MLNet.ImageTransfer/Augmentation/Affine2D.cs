namespace MLNet.ImageTransfer.Augmentation;

/// <summary>
/// A 2-D affine map from output pixel coordinates to input pixel coordinates (backward mapping, as samplers use):
/// <c>x_in = A·x + B·y + C</c>, <c>y_in = D·x + E·y + F</c>. Pixel centres sit at integer coordinates: x is the
/// column, y the row, both from 0.
/// </summary>
internal readonly record struct Affine2D(double A, double B, double C, double D, double E, double F)
{
    public static readonly Affine2D Identity = new(1, 0, 0, 0, 1, 0);

    /// <summary>
    /// <c>this ∘ inner</c>: first <paramref name="inner"/> (the map of an op applied <em>after</em> this one, from the
    /// final output to this op's output), then this map. For ops applied in the order op1, op2: total = M1.Compose(M2).
    /// </summary>
    public Affine2D Compose(Affine2D inner) => new(
        A * inner.A + B * inner.D, A * inner.B + B * inner.E, A * inner.C + B * inner.F + C,
        D * inner.A + E * inner.D, D * inner.B + E * inner.E, D * inner.C + E * inner.F + F);

    /// <summary>
    /// A linear map (p q; r s) about the image centre, then a translation of the content by (tx, ty) pixels:
    /// <c>in − c = L·(out − t − c)</c>. Input and output have the same size.
    /// </summary>
    public static Affine2D AboutCentre(double p, double q, double r, double s, int width, int height, double tx = 0, double ty = 0)
    {
        double cx = (width - 1) / 2.0, cy = (height - 1) / 2.0;
        // in = c + L·(out − c − t)
        double ox = -cx - tx, oy = -cy - ty;
        return new(p, q, cx + p * ox + q * oy, r, s, cy + r * ox + s * oy);
    }

    /// <summary>Resamples the window (left, top, w, h) of the input (in pixels, edges not centres) to an output of <paramref name="outWidth"/>×<paramref name="outHeight"/>.</summary>
    public static Affine2D Window(double left, double top, double w, double h, int outWidth, int outHeight)
    {
        double sx = w / outWidth, sy = h / outHeight;
        return new(sx, 0, left + 0.5 * sx - 0.5, 0, sy, top + 0.5 * sy - 0.5);
    }

    /// <summary>
    /// Whether the map only permutes/mirrors axes and moves by whole pixels with every output pixel inside the input:
    /// then the output is an exact copy of input pixels (crop, flip, 90° rotation) and needs no interpolation.
    /// </summary>
    public bool TryAsPixelCopy(int inWidth, int inHeight, int outWidth, int outHeight, out Affine2D exact)
    {
        exact = default;
        if (!TrySnap(A, out var a) || !TrySnap(B, out var b) || !TrySnap(C, out var c)
            || !TrySnap(D, out var d) || !TrySnap(E, out var e) || !TrySnap(F, out var f)) return false;
        bool straight = Math.Abs(a) == 1 && b == 0 && d == 0 && Math.Abs(e) == 1;
        bool swapped = a == 0 && Math.Abs(b) == 1 && Math.Abs(d) == 1 && e == 0;
        if (!straight && !swapped) return false;
        // Corners of the output map to corners of the input's used rectangle.
        foreach (var (x, y) in new[] { (0, 0), (outWidth - 1, 0), (0, outHeight - 1), (outWidth - 1, outHeight - 1) })
        {
            double ix = a * x + b * y + c, iy = d * x + e * y + f;
            if (ix < 0 || ix > inWidth - 1 || iy < 0 || iy > inHeight - 1) return false;
        }
        exact = new(a, b, c, d, e, f);
        return true;
    }

    static bool TrySnap(double value, out double snapped)
    {
        snapped = Math.Round(value);
        return Math.Abs(value - snapped) < 1e-9;
    }
}
