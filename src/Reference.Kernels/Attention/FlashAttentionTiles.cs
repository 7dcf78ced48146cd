using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Reference.Kernels.Attention;

/// <summary>
/// The register-tiled Vector512 micro-kernels of <see cref="FlashAttention"/>'s tiled path: the score tile
/// S = Q_tile K_tile^T over a packed K^T tile, a fused row softmax step with a vectorized exp, and the value update
/// A += P V_tile. Each kernel keeps a block of 4 rows x 64 columns (16 accumulators of 16 floats) in registers and
/// broadcasts one element of the left operand per step (the BLIS/GotoBLAS register-tiling scheme).
/// </summary>
/// <remarks>
/// <para>Every dot product and every value sum is accumulated in float32 with fused multiply-adds in index order, the
/// same sums the row-by-row path forms (in another order), so the kernel's error bound (proofs/attention.md,
/// attention.kernel-matches-reference) covers both. Used only where <see cref="Vector512.IsHardwareAccelerated"/>.</para>
/// <para>Sources: Goto and van de Geijn 2008, "Anatomy of high-performance matrix multiplication"; Van Zee and van de
/// Geijn 2015, "BLIS"; Cody and Waite 1980 (exp range reduction).</para>
/// </remarks>
internal static unsafe class FlashAttentionTiles
{
    /// <summary>Floats per vector.</summary>
    public const int Lanes = 16;

    /// <summary>Rounds <paramref name="n"/> up to a multiple of <see cref="Lanes"/>.</summary>
    public static int Padded(int n) => (n + Lanes - 1) / Lanes * Lanes;

    /// <summary>
    /// Packs key rows [j0, j0 + cols) of one (b, kv head) as K^T: <c>kt[p * ldk + j] = k[(j0 + j) * d + p]</c>, columns
    /// [cols, ldk) zero.
    /// </summary>
    /// <param name="k">The first key row of the head, [Tk, D].</param>
    /// <param name="j0">The tile's first key.</param>
    /// <param name="cols">Keys in the tile.</param>
    /// <param name="d">D.</param>
    /// <param name="kt">Receives [D, ldk].</param>
    /// <param name="ldk">The packed row stride, a multiple of <see cref="Lanes"/>, &gt;= cols.</param>
    public static void PackKeys(float* k, int j0, int cols, int d, float* kt, int ldk)
    {
        for (int p = 0; p < d; p++)
        {
            float* dst = kt + (long)p * ldk;
            float* src = k + (long)j0 * d + p;
            for (int j = 0; j < cols; j++) dst[j] = src[(long)j * d];
            for (int j = cols; j < ldk; j++) dst[j] = 0f;
        }
    }

    /// <summary>S[rows, ldk] = Q[rows, D] K^T[D, ldk]: the unscaled scores of a query tile against a packed key tile.</summary>
    /// <param name="q">The tile's first query row; rows are <paramref name="d"/> apart.</param>
    /// <param name="rows">Query rows.</param>
    /// <param name="d">D.</param>
    /// <param name="kt">Packed K^T, [D, ldk].</param>
    /// <param name="ldk">Its row stride (a multiple of <see cref="Lanes"/>); also the stride of <paramref name="s"/>.</param>
    /// <param name="s">Receives [rows, ldk].</param>
    public static void Scores(float* q, int rows, int d, float* kt, int ldk, float* s)
    {
        int r = 0;
        for (; r + 4 <= rows; r += 4)
        {
            int c = 0;
            for (; c + 4 * Lanes <= ldk; c += 4 * Lanes) Scores4x4(q + (long)r * d, d, kt + c, ldk, s + (long)r * ldk + c);
            for (; c < ldk; c += Lanes)
            {
                for (int rr = r; rr < r + 4; rr++) Scores1x1(q + (long)rr * d, d, kt + c, ldk, s + (long)rr * ldk + c);
            }
        }
        for (; r < rows; r++)
        {
            for (int c = 0; c < ldk; c += Lanes) Scores1x1(q + (long)r * d, d, kt + c, ldk, s + (long)r * ldk + c);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Scores4x4(float* q, int d, float* kt, int ldk, float* s)
    {
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default;
        Vector512<float> a30 = default, a31 = default, a32 = default, a33 = default;
        float* q1 = q + d, q2 = q1 + d, q3 = q2 + d;
        for (int p = 0; p < d; p++)
        {
            float* kp = kt + (long)p * ldk;
            var k0 = Vector512.Load(kp);
            var k1 = Vector512.Load(kp + Lanes);
            var k2 = Vector512.Load(kp + 2 * Lanes);
            var k3 = Vector512.Load(kp + 3 * Lanes);
            var b = Vector512.Create(q[p]);
            a00 = Vector512.FusedMultiplyAdd(b, k0, a00);
            a01 = Vector512.FusedMultiplyAdd(b, k1, a01);
            a02 = Vector512.FusedMultiplyAdd(b, k2, a02);
            a03 = Vector512.FusedMultiplyAdd(b, k3, a03);
            b = Vector512.Create(q1[p]);
            a10 = Vector512.FusedMultiplyAdd(b, k0, a10);
            a11 = Vector512.FusedMultiplyAdd(b, k1, a11);
            a12 = Vector512.FusedMultiplyAdd(b, k2, a12);
            a13 = Vector512.FusedMultiplyAdd(b, k3, a13);
            b = Vector512.Create(q2[p]);
            a20 = Vector512.FusedMultiplyAdd(b, k0, a20);
            a21 = Vector512.FusedMultiplyAdd(b, k1, a21);
            a22 = Vector512.FusedMultiplyAdd(b, k2, a22);
            a23 = Vector512.FusedMultiplyAdd(b, k3, a23);
            b = Vector512.Create(q3[p]);
            a30 = Vector512.FusedMultiplyAdd(b, k0, a30);
            a31 = Vector512.FusedMultiplyAdd(b, k1, a31);
            a32 = Vector512.FusedMultiplyAdd(b, k2, a32);
            a33 = Vector512.FusedMultiplyAdd(b, k3, a33);
        }
        Store4(s, a00, a01, a02, a03);
        Store4(s + ldk, a10, a11, a12, a13);
        Store4(s + 2 * ldk, a20, a21, a22, a23);
        Store4(s + 3 * ldk, a30, a31, a32, a33);
    }

    private static void Scores1x1(float* q, int d, float* kt, int ldk, float* s)
    {
        Vector512<float> a = default;
        for (int p = 0; p < d; p++) a = Vector512.FusedMultiplyAdd(Vector512.Create(q[p]), Vector512.Load(kt + (long)p * ldk), a);
        a.Store(s);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store4(float* s, Vector512<float> x0, Vector512<float> x1, Vector512<float> x2, Vector512<float> x3)
    {
        x0.Store(s);
        x1.Store(s + Lanes);
        x2.Store(s + 2 * Lanes);
        x3.Store(s + 3 * Lanes);
    }

    /// <summary>
    /// A[rows, Dv] += P[rows, cols] V[cols, Dv]: the value update of a query tile by one key tile's weights.
    /// </summary>
    /// <param name="p">The weights, rows <paramref name="ldp"/> apart.</param>
    /// <param name="ldp">Row stride of <paramref name="p"/>.</param>
    /// <param name="rows">Query rows.</param>
    /// <param name="cols">Keys in the tile.</param>
    /// <param name="v">The tile's first value row; rows are <paramref name="dv"/> apart.</param>
    /// <param name="dv">Dv; also the row stride of <paramref name="acc"/>.</param>
    /// <param name="acc">The accumulators, [rows, Dv].</param>
    public static void Accumulate(float* p, int ldp, int rows, int cols, float* v, int dv, float* acc)
    {
        int vectorCols = dv / Lanes * Lanes;
        int r = 0;
        for (; r + 4 <= rows; r += 4)
        {
            int c = 0;
            for (; c + 4 * Lanes <= vectorCols; c += 4 * Lanes) Accumulate4x4(p + (long)r * ldp, ldp, cols, v + c, dv, acc + (long)r * dv + c);
            for (; c < vectorCols; c += Lanes)
            {
                for (int rr = r; rr < r + 4; rr++) Accumulate1x1(p + (long)rr * ldp, cols, v + c, dv, acc + (long)rr * dv + c);
            }
        }
        for (; r < rows; r++)
        {
            for (int c = 0; c < vectorCols; c += Lanes) Accumulate1x1(p + (long)r * ldp, cols, v + c, dv, acc + (long)r * dv + c);
        }
        if (vectorCols == dv) return;
        // The last Dv mod 16 columns, scalar, in the same key order.
        for (r = 0; r < rows; r++)
        {
            float* pr = p + (long)r * ldp;
            float* ar = acc + (long)r * dv;
            for (int j = 0; j < cols; j++)
            {
                float w = pr[j];
                float* vj = v + (long)j * dv;
                for (int c = vectorCols; c < dv; c++) ar[c] = MathF.FusedMultiplyAdd(w, vj[c], ar[c]);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Accumulate4x4(float* p, int ldp, int cols, float* v, int dv, float* acc)
    {
        float* acc1 = acc + dv, acc2 = acc1 + dv, acc3 = acc2 + dv;
        var a00 = Vector512.Load(acc); var a01 = Vector512.Load(acc + Lanes); var a02 = Vector512.Load(acc + 2 * Lanes); var a03 = Vector512.Load(acc + 3 * Lanes);
        var a10 = Vector512.Load(acc1); var a11 = Vector512.Load(acc1 + Lanes); var a12 = Vector512.Load(acc1 + 2 * Lanes); var a13 = Vector512.Load(acc1 + 3 * Lanes);
        var a20 = Vector512.Load(acc2); var a21 = Vector512.Load(acc2 + Lanes); var a22 = Vector512.Load(acc2 + 2 * Lanes); var a23 = Vector512.Load(acc2 + 3 * Lanes);
        var a30 = Vector512.Load(acc3); var a31 = Vector512.Load(acc3 + Lanes); var a32 = Vector512.Load(acc3 + 2 * Lanes); var a33 = Vector512.Load(acc3 + 3 * Lanes);
        float* p1 = p + ldp, p2 = p1 + ldp, p3 = p2 + ldp;
        for (int j = 0; j < cols; j++)
        {
            float* vj = v + (long)j * dv;
            var v0 = Vector512.Load(vj);
            var v1 = Vector512.Load(vj + Lanes);
            var v2 = Vector512.Load(vj + 2 * Lanes);
            var v3 = Vector512.Load(vj + 3 * Lanes);
            var b = Vector512.Create(p[j]);
            a00 = Vector512.FusedMultiplyAdd(b, v0, a00);
            a01 = Vector512.FusedMultiplyAdd(b, v1, a01);
            a02 = Vector512.FusedMultiplyAdd(b, v2, a02);
            a03 = Vector512.FusedMultiplyAdd(b, v3, a03);
            b = Vector512.Create(p1[j]);
            a10 = Vector512.FusedMultiplyAdd(b, v0, a10);
            a11 = Vector512.FusedMultiplyAdd(b, v1, a11);
            a12 = Vector512.FusedMultiplyAdd(b, v2, a12);
            a13 = Vector512.FusedMultiplyAdd(b, v3, a13);
            b = Vector512.Create(p2[j]);
            a20 = Vector512.FusedMultiplyAdd(b, v0, a20);
            a21 = Vector512.FusedMultiplyAdd(b, v1, a21);
            a22 = Vector512.FusedMultiplyAdd(b, v2, a22);
            a23 = Vector512.FusedMultiplyAdd(b, v3, a23);
            b = Vector512.Create(p3[j]);
            a30 = Vector512.FusedMultiplyAdd(b, v0, a30);
            a31 = Vector512.FusedMultiplyAdd(b, v1, a31);
            a32 = Vector512.FusedMultiplyAdd(b, v2, a32);
            a33 = Vector512.FusedMultiplyAdd(b, v3, a33);
        }
        Store4(acc, a00, a01, a02, a03);
        Store4(acc1, a10, a11, a12, a13);
        Store4(acc2, a20, a21, a22, a23);
        Store4(acc3, a30, a31, a32, a33);
    }

    private static void Accumulate1x1(float* p, int cols, float* v, int dv, float* acc)
    {
        var a = Vector512.Load(acc);
        for (int j = 0; j < cols; j++) a = Vector512.FusedMultiplyAdd(Vector512.Create(p[j]), Vector512.Load(v + (long)j * dv), a);
        a.Store(acc);
    }

    /// <summary>
    /// s_j = scale * s_j for j in [from, end) and -Infinity elsewhere, in place over <paramref name="n"/> floats (a
    /// multiple of <see cref="Lanes"/>); returns the largest entry.
    /// </summary>
    /// <param name="s">The row.</param>
    /// <param name="n">Its length.</param>
    /// <param name="scale">The score scale.</param>
    /// <param name="from">The first allowed entry.</param>
    /// <param name="end">One past the last allowed entry.</param>
    public static float ScaleRangeMax(float* s, int n, float scale, int from, int end)
    {
        var sc = Vector512.Create(scale);
        var ninf = Vector512.Create(float.NegativeInfinity);
        var m = ninf;
        var index = Vector512<int>.Indices;
        var lo = Vector512.Create(from);
        var hi = Vector512.Create(end);
        for (int j = 0; j < n; j += Lanes)
        {
            var at = index + Vector512.Create(j);
            var inside = Vector512.GreaterThanOrEqual(at, lo) & Vector512.LessThan(at, hi);
            var x = Vector512.ConditionalSelect(inside.AsSingle(), Vector512.Load(s + j) * sc, ninf);
            x.Store(s + j);
            m = Vector512.Max(m, x);
        }
        return HorizontalMax(m);
    }

    private static float HorizontalMax(Vector512<float> m)
    {
        var h = Vector256.Max(m.GetLower(), m.GetUpper());
        var g = Vector128.Max(h.GetLower(), h.GetUpper());
        float best = Math.Max(Math.Max(g.GetElement(0), g.GetElement(1)), Math.Max(g.GetElement(2), g.GetElement(3)));
        return best;
    }

    /// <summary>The largest entry of a row of <paramref name="n"/> floats (a multiple of <see cref="Lanes"/>).</summary>
    /// <param name="s">The row.</param>
    /// <param name="n">Its length.</param>
    public static float Max(float* s, int n)
    {
        var m = Vector512.Create(float.NegativeInfinity);
        for (int j = 0; j < n; j += Lanes) m = Vector512.Max(m, Vector512.Load(s + j));
        return HorizontalMax(m);
    }

    /// <summary>s_j = exp(s_j - max) in place over <paramref name="n"/> floats (a multiple of <see cref="Lanes"/>);
    /// returns their sum. -Infinity entries give 0.</summary>
    /// <param name="s">The row.</param>
    /// <param name="n">Its length.</param>
    /// <param name="max">The row maximum, finite.</param>
    public static float ExpSum(float* s, int n, float max)
    {
        var mx = Vector512.Create(max);
        var sum = Vector512<float>.Zero;
        for (int j = 0; j < n; j += Lanes)
        {
            var e = Exp(Vector512.Load(s + j) - mx);
            e.Store(s + j);
            sum += e;
        }
        return Vector512.Sum(sum);
    }

    /// <summary>
    /// exp(x) for x &lt;= 0 (or -Infinity), within about 2 ulp: x = n ln 2 + r with |r| &lt;= ln2 / 2 (Cody-Waite, two
    /// constants), exp(r) by its degree-7 Taylor polynomial (truncation below 2^-27 relative), times 2^n built in the
    /// exponent bits. Results below 2^-126 (x &lt; -87.33) are 0, as are the results of -Infinity.
    /// </summary>
    /// <param name="x">The arguments, &lt;= 0.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x)
    {
        const float Log2E = 1.44269504088896341f;
        const float Ln2Hi = 0.693359375f;             // ln 2 rounded to 9 significant bits: n * Ln2Hi is exact
        const float Ln2Lo = -2.12194440e-4f;          // ln 2 - Ln2Hi
        var tooSmall = Vector512.LessThan(x, Vector512.Create(-87.33654f));   // ln(2^-126); also -Infinity
        var xc = Vector512.Max(x, Vector512.Create(-87.33654f));
        var n = Vector512.Round(xc * Vector512.Create(Log2E));                // in [-126, 0]
        var r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2Hi), xc);
        r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2Lo), r);
        var poly = Vector512.Create(1f / 5040f);
        poly = Vector512.FusedMultiplyAdd(poly, r, Vector512.Create(1f / 720f));
        poly = Vector512.FusedMultiplyAdd(poly, r, Vector512.Create(1f / 120f));
        poly = Vector512.FusedMultiplyAdd(poly, r, Vector512.Create(1f / 24f));
        poly = Vector512.FusedMultiplyAdd(poly, r, Vector512.Create(1f / 6f));
        poly = Vector512.FusedMultiplyAdd(poly, r, Vector512.Create(0.5f));
        poly = Vector512.FusedMultiplyAdd(poly, r, Vector512<float>.One);
        poly = Vector512.FusedMultiplyAdd(poly, r, Vector512<float>.One);
        var twoN = (Vector512.ConvertToInt32(n) + Vector512.Create(127)) << 23;
        var result = poly * twoN.AsSingle();
        return Vector512.ConditionalSelect(tooSmall.AsInt32(), Vector512<int>.Zero, result.AsInt32()).AsSingle();
    }
}
