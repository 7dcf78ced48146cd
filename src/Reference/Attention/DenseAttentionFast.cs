using System.Runtime.Intrinsics;

namespace Reference.Attention;

/// <summary>
/// Dense attention in double precision, blocked, vectorized and parallel: bit for bit equal to the readable reference
/// <see cref="DenseAttention.Compute(double[,,,], double[,,,], double[,,,], AttentionOptions)"/>
/// (proofs/attention.md, theorem attention.fast-reference-identical). Used by <c>check attention</c> beyond the size
/// documented there, where the readable reference takes many seconds.
/// </summary>
/// <remarks>
/// <para>Shapes, options, validation and errors are those of <see cref="DenseAttention"/>.</para>
/// <para>Why the results are identical: every output element is computed by the same sequence of IEEE double operations
/// as in the readable reference, only several at once. A score's dot product is accumulated from d = 0 up, one key per
/// vector lane (keys transposed to [D, Tk]); the scaling is a lane-wise product; tanh, exp and log are the scalar
/// <see cref="Math"/> functions; the row maximum, the sum l (ascending keys) and the divisions are scalar and in the
/// reference's order; out[d] = sum_n w_n v[j_n, d] is accumulated in ascending key order, one d per lane. Vector256
/// operations are lane-wise IEEE operations without fused multiply-add (the JIT does not contract a*b+c), so the result
/// does not depend on the hardware's vector width. Rows are independent and each is finished by one thread, so it does
/// not depend on the number of threads either. Scores of keys outside a row's causal/window range or mask are computed
/// in the same blocks but never read.</para>
/// </remarks>
public static class DenseAttentionFast
{
    /// <summary>Query rows per parallel task.</summary>
    private const int RowBlock = 32;

    /// <summary>Query rows of one score micro-kernel.</summary>
    private const int RowTile = 4;

    /// <summary>Keys of one score micro-kernel (two vectors of four doubles); Tk is padded to a multiple of it.</summary>
    private const int KeyTile = 8;

    /// <summary>Keys per cache block of the transposed keys.</summary>
    private const int KeyBlock = 256;

    /// <summary>Dense attention in double precision, equal bit for bit to <see cref="DenseAttention.Compute(double[,,,], double[,,,], double[,,,], AttentionOptions)"/>.</summary>
    /// <param name="q">Queries, shape [B, Hq, Tq, D], finite.</param>
    /// <param name="k">Keys, shape [B, Hkv, Tk, D], finite; Hkv divides Hq.</param>
    /// <param name="v">Values, shape [B, Hkv, Tk, Dv], finite.</param>
    /// <param name="options">Causal, window, scale, softcap and explicit mask; see <see cref="AttentionOptions"/>.</param>
    /// <returns>out [B, Hq, Tq, Dv] and lse [B, Hq, Tq].</returns>
    /// <exception cref="ArgumentException">As for <see cref="DenseAttention"/>.</exception>
    public static AttentionResult Compute(double[,,,] q, double[,,,] k, double[,,,] v, AttentionOptions options)
    {
        // 1. Validate exactly as the readable reference does.
        ArgumentNullException.ThrowIfNull(options);
        var dims = AttentionCore.ValidateInputs(q, k, v);
        if (options.WindowLeft < -1)
            throw new ArgumentException($"WindowLeft must be -1 (unbounded) or >= 0, got {options.WindowLeft}", nameof(options));
        if (options.WindowRight < -1)
            throw new ArgumentException($"WindowRight must be -1 (unbounded) or >= 0, got {options.WindowRight}", nameof(options));
        double scale = AttentionCore.ResolveScale(options.Scale, options.Softcap, dims.D, nameof(options), nameof(options));
        AttentionCore.ValidateMask(options.Mask, "mask", dims.B, dims.Hq, dims.Tq, dims.Tk);

        // 2. Flat copies: q, v as given, k transposed to [B, Hkv, D, Tkp] with Tkp a multiple of the key tile.
        int d = dims.D, dv = dims.Dv, tk = dims.Tk, tq = dims.Tq, hq = dims.Hq, group = dims.Group;
        int tkp = (tk + KeyTile - 1) / KeyTile * KeyTile;
        var qf = Flat(q);
        var vf = Flat(v);
        var kf = Flat(k);
        var kt = new double[(long)dims.B * dims.Hkv * d * tkp];
        Parallel.For(0, dims.B * dims.Hkv, bg =>
        {
            long src = (long)bg * tk * d, dst = (long)bg * d * tkp;
            for (int j = 0; j < tk; j++)
            {
                for (int e = 0; e < d; e++) kt[dst + (long)e * tkp + j] = kf[src + (long)j * d + e];
            }
        });
        var mask = options.Mask is null ? null : new FlatMask(options.Mask);

        // 3. Rows in blocks of RowBlock, in parallel; each row is finished by one thread.
        var output = new double[(long)dims.B * hq * tq * dv];
        var lse = new double[(long)dims.B * hq * tq];
        int blocks = (tq + RowBlock - 1) / RowBlock;
        Parallel.For(0, (long)dims.B * hq * blocks, () => new Work(tkp), (task, _, w) =>
        {
            int bh = (int)(task / blocks), i0 = (int)(task % blocks) * RowBlock;
            int b = bh / hq, h = bh % hq, g = h / group;
            int rows = Math.Min(RowBlock, tq - i0);
            var ctx = new RowContext(qf, kt, vf, output, lse, mask, options, dims, scale, tkp, b, h, g);
            BlockRows(ctx, i0, rows, w);
            return w;
        }, _ => { });

        var outArray = new double[dims.B, hq, tq, dv];
        var lseArray = new double[dims.B, hq, tq];
        Buffer.BlockCopy(output, 0, outArray, 0, output.Length * sizeof(double));
        Buffer.BlockCopy(lse, 0, lseArray, 0, lse.Length * sizeof(double));
        return new AttentionResult(outArray, lseArray);
    }

    /// <summary>The allowed key range [lo, hi] of query row i by the causal and window rules (empty when hi &lt; lo).</summary>
    internal static (int Lo, int Hi) KeyRange(AttentionOptions options, int i, int tq, int tk)
    {
        long p = CausalAlignments.QueryPosition(i, tq, tk, options.CausalAlign);
        long lo = 0, hi = tk - 1L;
        if (options.Causal) hi = Math.Min(hi, p);
        if (options.WindowLeft >= 0) lo = Math.Max(lo, p - options.WindowLeft);
        if (options.WindowRight >= 0) hi = Math.Min(hi, p + options.WindowRight);
        if (hi < lo) return (0, -1);
        return ((int)lo, (int)hi);
    }

    private static void BlockRows(in RowContext c, int i0, int rows, Work w)
    {
        // 1. The rows' key ranges and their union, widened to whole key tiles.
        int lo = int.MaxValue, hi = -1;
        for (int r = 0; r < rows; r++)
        {
            var (a, z) = KeyRange(c.Options, i0 + r, c.Dims.Tq, c.Dims.Tk);
            w.Lo[r] = a;
            w.Hi[r] = z;
            if (z >= a)
            {
                lo = Math.Min(lo, a);
                hi = Math.Max(hi, z);
            }
        }

        // 2. Scores s = (sum_d q_d k_jd) * scale of every key in the union, KeyTile keys x RowTile rows at a time.
        if (hi >= 0)
        {
            int start = lo / KeyTile * KeyTile, end = (hi / KeyTile + 1) * KeyTile;
            for (int jb = start; jb < end; jb += KeyBlock)
            {
                int je = Math.Min(end, jb + KeyBlock);
                for (int r = 0; r < rows; r += RowTile) ScoreTile(c, i0, r, rows, jb, je, w.Scores);
            }
        }

        // 3. Each row: softcap, mask, softmax and the weighted sum, in the readable reference's order.
        for (int r = 0; r < rows; r++) FinishRow(c, i0 + r, w.Lo[r], w.Hi[r], new ReadOnlySpan<double>(w.Scores, r * c.Tkp, c.Tkp), w);
    }

    private static void ScoreTile(in RowContext c, int i0, int r0, int rows, int jb, int je, double[] scores)
    {
        int d = c.Dims.D, tkp = c.Tkp;
        long qBase = (((long)c.B * c.Dims.Hq + c.H) * c.Dims.Tq + i0) * d;
        long kBase = ((long)c.B * c.Dims.Hkv + c.G) * d * tkp;
        // Rows past the block's end repeat the last row (computed twice, written to the same place).
        int ra = r0, rb = Math.Min(r0 + 1, rows - 1), rc = Math.Min(r0 + 2, rows - 1), rd = Math.Min(r0 + 3, rows - 1);
        long qa = qBase + (long)ra * d, qb = qBase + (long)rb * d, qc = qBase + (long)rc * d, qd = qBase + (long)rd * d;
        var scale = Vector256.Create(c.Scale);
        var qf = c.Q;
        var kt = c.KT;
        for (int j = jb; j < je; j += KeyTile)
        {
            Vector256<double> a0 = Vector256<double>.Zero, a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0, d1 = a0;
            long kp = kBase + j;
            for (int e = 0; e < d; e++, kp += tkp)
            {
                var k0 = Vector256.Create(kt, (int)kp);
                var k1 = Vector256.Create(kt, (int)kp + 4);
                var x = Vector256.Create(qf[qa + e]);
                a0 += x * k0;
                a1 += x * k1;
                x = Vector256.Create(qf[qb + e]);
                b0 += x * k0;
                b1 += x * k1;
                x = Vector256.Create(qf[qc + e]);
                c0 += x * k0;
                c1 += x * k1;
                x = Vector256.Create(qf[qd + e]);
                d0 += x * k0;
                d1 += x * k1;
            }
            (a0 * scale).CopyTo(scores, ra * tkp + j);
            (a1 * scale).CopyTo(scores, ra * tkp + j + 4);
            (b0 * scale).CopyTo(scores, rb * tkp + j);
            (b1 * scale).CopyTo(scores, rb * tkp + j + 4);
            (c0 * scale).CopyTo(scores, rc * tkp + j);
            (c1 * scale).CopyTo(scores, rc * tkp + j + 4);
            (d0 * scale).CopyTo(scores, rd * tkp + j);
            (d1 * scale).CopyTo(scores, rd * tkp + j + 4);
        }
    }

    private static void FinishRow(in RowContext c, int i, int lo, int hi, ReadOnlySpan<double> rowScores, Work w)
    {
        int dv = c.Dims.Dv;
        long row = ((long)c.B * c.Dims.Hq + c.H) * c.Dims.Tq + i;
        long outBase = row * dv;
        double softcap = c.Options.Softcap;

        // 1. The allowed keys in ascending order with their (softcapped) scores, and their maximum.
        int count = 0;
        double m = double.NegativeInfinity;
        for (int j = lo; j <= hi; j++)
        {
            if (c.Mask is { } mask && !mask.At(c.B, c.H, i, j)) continue;
            double s = rowScores[j];
            if (softcap > 0) s = softcap * Math.Tanh(s / softcap);
            w.Keys[count] = j;
            w.P[count++] = s;
            m = Math.Max(m, s);
        }
        if (count == 0)
        {
            // The output is already 0; lse is -Inf.
            c.Lse[row] = double.NegativeInfinity;
            return;
        }

        // 2. p_n = exp(s_n - m), l = sum_n p_n in key order, w_n = p_n / l.
        double l = 0.0;
        for (int n = 0; n < count; n++)
        {
            double p = Math.Exp(w.P[n] - m);
            w.P[n] = p;
            l += p;
        }
        for (int n = 0; n < count; n++) w.P[n] /= l;

        // 3. out[e] = sum_n w_n v[j_n, e] in ascending key order, sixteen e (four vectors) at a time.
        long vBase = ((long)c.B * c.Dims.Hkv + c.G) * c.Dims.Tk * dv;
        var vf = c.V;
        int e0 = 0;
        for (; e0 + 16 <= dv; e0 += 16)
        {
            Vector256<double> x0 = Vector256<double>.Zero, x1 = x0, x2 = x0, x3 = x0;
            for (int n = 0; n < count; n++)
            {
                var wn = Vector256.Create(w.P[n]);
                int vp = (int)(vBase + (long)w.Keys[n] * dv + e0);
                x0 += wn * Vector256.Create(vf, vp);
                x1 += wn * Vector256.Create(vf, vp + 4);
                x2 += wn * Vector256.Create(vf, vp + 8);
                x3 += wn * Vector256.Create(vf, vp + 12);
            }
            int op = (int)(outBase + e0);
            x0.CopyTo(c.Out, op);
            x1.CopyTo(c.Out, op + 4);
            x2.CopyTo(c.Out, op + 8);
            x3.CopyTo(c.Out, op + 12);
        }
        for (; e0 + 4 <= dv; e0 += 4)
        {
            var x0 = Vector256<double>.Zero;
            for (int n = 0; n < count; n++)
                x0 += Vector256.Create(w.P[n]) * Vector256.Create(vf, (int)(vBase + (long)w.Keys[n] * dv + e0));
            x0.CopyTo(c.Out, (int)(outBase + e0));
        }
        for (; e0 < dv; e0++)
        {
            double acc = 0.0;
            for (int n = 0; n < count; n++) acc += w.P[n] * vf[vBase + (long)w.Keys[n] * dv + e0];
            c.Out[outBase + e0] = acc;
        }

        // 4. lse = m + ln l.
        c.Lse[row] = m + Math.Log(l);
    }

    /// <summary>The entries of a rank-4 array, flat in C order.</summary>
    private static double[] Flat(double[,,,] x)
    {
        var flat = new double[x.Length];
        Buffer.BlockCopy(x, 0, flat, 0, flat.Length * sizeof(double));
        return flat;
    }

    /// <summary>A broadcast mask [Bm, Hm, Tqm, Tkm] flattened, read as mask[b, h, i, j].</summary>
    private sealed class FlatMask
    {
        private readonly bool[] values;
        private readonly int b, h, t, k;

        public FlatMask(bool[,,,] mask)
        {
            b = mask.GetLength(0);
            h = mask.GetLength(1);
            t = mask.GetLength(2);
            k = mask.GetLength(3);
            values = new bool[mask.Length];
            Buffer.BlockCopy(mask, 0, values, 0, values.Length);
        }

        public bool At(int bi, int hi, int i, int j) =>
            values[(((long)(b == 1 ? 0 : bi) * h + (h == 1 ? 0 : hi)) * t + (t == 1 ? 0 : i)) * k + (k == 1 ? 0 : j)];
    }

    private readonly record struct RowContext(
        double[] Q, double[] KT, double[] V, double[] Out, double[] Lse, FlatMask? Mask, AttentionOptions Options,
        AttentionCore.Dims Dims, double Scale, int Tkp, int B, int H, int G);

    private sealed class Work(int tkp)
    {
        public double[] Scores { get; } = new double[RowBlock * tkp];
        public int[] Lo { get; } = new int[RowBlock];
        public int[] Hi { get; } = new int[RowBlock];
        public int[] Keys { get; } = new int[Math.Max(1, tkp)];
        public double[] P { get; } = new double[Math.Max(1, tkp)];
    }
}
