using System.Runtime.Intrinsics;
using Reference.Numerics;

namespace Reference.Harness.Algorithms;

/// <summary>
/// The two naive orders of <see cref="AttentionBaseline"/> in one pass, blocked and vectorized over keys: bit for bit
/// equal to <c>AttentionBaseline.Compute(..., order)</c> for order 0 and 1 (proofs/attention.md, theorem
/// attention.fast-baseline-identical). Used for the attention family's tolerance beyond
/// <see cref="FastReference.AttentionWork"/>.
/// </summary>
/// <remarks>
/// Each dot product is evaluated by the very float32 operations of <see cref="AttentionBaseline"/>, one key per vector
/// lane (keys transposed to [D, Tk]): order 0 keeps the 8 partial sums of lane d mod 8 as 8 vectors, adds them pairwise
/// in the same tree and then the tail d = 8 floor(D/8) .. D-1 in order; order 1 sums from d = 0 up. Keys of kind 2
/// (alternative keys) are scored by the scalar functions of <see cref="AttentionBaseline"/> themselves. Everything after
/// the dot product (scale, rounding to the format, softcap, max, exp, sums, divisions, the weighted sum) is the same code
/// in the same order. Vector256 operations are lane-wise IEEE operations without fused multiply-add.
/// </remarks>
public static class AttentionBaselineFast
{
    private const int RowBlock = 16;
    private const int KeyTile = 32;

    /// <summary>Both naive orders (see <see cref="AttentionBaseline.Compute(double[,,,], double[,,,], double[,,,], double, double, AttentionRowKeys, double[,,,], NumberFormat, int)"/>).</summary>
    /// <param name="q">Queries [B, Hq, Tq, D].</param>
    /// <param name="k">Keys [B, Hkv, Tk, D].</param>
    /// <param name="v">Values [B, Hkv, Tk, Dv].</param>
    /// <param name="scale">The score scale.</param>
    /// <param name="softcap">The softcap c (0 = none).</param>
    /// <param name="rows">The allowed keys of each row.</param>
    /// <param name="keyAlt">The alternative keys for kind 2, or null.</param>
    /// <param name="format">The precision.</param>
    /// <returns>Order 0 and order 1: out and lse flat, and the per-row magnitude of the largest score.</returns>
    public static ((double[] Out, double[] Lse, double[] MaxScoreMagnitude) Order0, (double[] Out, double[] Lse, double[] MaxScoreMagnitude) Order1)
        ComputeBoth(double[,,,] q, double[,,,] k, double[,,,] v, double scale, double softcap, AttentionRowKeys rows,
                    double[,,,]? keyAlt, NumberFormat format)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        ArgumentNullException.ThrowIfNull(rows);
        int bsz = q.GetLength(0), hq = q.GetLength(1), tq = q.GetLength(2), d = q.GetLength(3);
        int hkv = k.GetLength(1), tk = k.GetLength(2), dv = v.GetLength(3);
        int group = Math.Max(1, hq / Math.Max(1, hkv));
        bool mixed = format is NumberFormat.Float16 or NumberFormat.BFloat16;
        var inputFormat = mixed ? format : NumberFormat.Float32;
        float[] qf = AttentionBaseline.Flat(q, inputFormat), kf = AttentionBaseline.Flat(k, inputFormat), vf = AttentionBaseline.Flat(v, inputFormat);
        float[]? kaf = keyAlt is null ? null : AttentionBaseline.Flat(keyAlt, inputFormat);
        int tkp = (tk + KeyTile - 1) / KeyTile * KeyTile;
        var kt = new float[(long)bsz * hkv * d * tkp];
        Parallel.For(0, bsz * hkv, bg =>
        {
            long src = (long)bg * tk * d, dst = (long)bg * d * tkp;
            for (int j = 0; j < tk; j++)
            {
                for (int e = 0; e < d; e++) kt[dst + (long)e * tkp + j] = kf[src + (long)j * d + e];
            }
        });
        long nRows = (long)bsz * hq * tq;
        var r0 = (new double[nRows * dv], new double[nRows], new double[nRows]);
        var r1 = (new double[nRows * dv], new double[nRows], new double[nRows]);
        var shared = new Shared(qf, kt, kf, kaf, vf, bsz, hq, hkv, tq, tk, tkp, d, dv, group, scale, (float)scale, (float)softcap, format, mixed);
        int blocks = (tq + RowBlock - 1) / RowBlock;
        Parallel.For(0, (long)bsz * hq * blocks, () => new Work(tk, tkp, dv), (task, _, w) =>
        {
            int bh = (int)(task / blocks), i0 = (int)(task % blocks) * RowBlock;
            int count = Math.Min(RowBlock, tq - i0);
            Block(shared, rows, bh, i0, count, w, r0, r1);
            return w;
        }, _ => { });
        return (r0, r1);
    }

    private static void Block(Shared c, AttentionRowKeys rows, int bh, int i0, int count, Work w,
                              (double[] Out, double[] Lse, double[] Mag) r0, (double[] Out, double[] Lse, double[] Mag) r1)
    {
        int b = bh / c.Hq, h = bh % c.Hq, g = h / c.Group;
        // 1. Each row's key kinds, and the union of the rows' allowed keys.
        int lo = int.MaxValue, hi = -1;
        for (int r = 0; r < count; r++)
        {
            var kinds = w.Kinds.AsSpan(r * c.Tk, c.Tk);
            rows(b, h, i0 + r, kinds);
            int first = kinds.IndexOfAnyExcept((byte)0);
            if (first < 0) continue;
            lo = Math.Min(lo, first);
            hi = Math.Max(hi, kinds.LastIndexOfAnyExcept((byte)0));
        }

        // 2. The float32 dot products of every row with every key of the union, in both orders.
        if (hi >= 0)
        {
            int start = lo / KeyTile * KeyTile, end = (hi / KeyTile + 1) * KeyTile;
            for (int r = 0; r < count; r++) Dots(c, bh, g, i0 + r, start, end, w.Dot0.AsSpan(r * c.Tkp, c.Tkp), w.Dot1.AsSpan(r * c.Tkp, c.Tkp));
        }

        // 3. Each row in each order, as AttentionBaseline.Compute.
        for (int r = 0; r < count; r++)
        {
            long row = (long)bh * c.Tq + i0 + r;
            var kinds = w.Kinds.AsSpan(r * c.Tk, c.Tk);
            Row(c, bh, g, row, kinds, w.Dot0.AsSpan(r * c.Tkp, c.Tkp), false, w, r0);
            Row(c, bh, g, row, kinds, w.Dot1.AsSpan(r * c.Tkp, c.Tkp), true, w, r1);
        }
    }

    private static void Dots(Shared c, int bh, int g, int i, int start, int end, Span<float> dot0, Span<float> dot1)
    {
        int d = c.D, tkp = c.Tkp, d8 = d / 8 * 8;
        int b = bh / c.Hq;
        int qb = (int)(((long)bh * c.Tq + i) * d);
        int kb = (int)(((long)b * c.Hkv + g) * d * tkp);
        var qf = c.Q;
        var kt = c.KT;
        for (int j = start; j < end; j += 8)
        {
            // Order 0: partial sums of lane d mod 8, added pairwise, then the tail in order.
            Vector256<float> sum;
            if (d >= 8)
            {
                Vector256<float> p0 = Vector256<float>.Zero, p1 = p0, p2 = p0, p3 = p0, p4 = p0, p5 = p0, p6 = p0, p7 = p0;
                for (int e = 0; e < d8; e += 8)
                {
                    int kp = kb + e * tkp + j;
                    p0 += Vector256.Create(qf[qb + e]) * Vector256.Create(kt, kp);
                    p1 += Vector256.Create(qf[qb + e + 1]) * Vector256.Create(kt, kp + tkp);
                    p2 += Vector256.Create(qf[qb + e + 2]) * Vector256.Create(kt, kp + 2 * tkp);
                    p3 += Vector256.Create(qf[qb + e + 3]) * Vector256.Create(kt, kp + 3 * tkp);
                    p4 += Vector256.Create(qf[qb + e + 4]) * Vector256.Create(kt, kp + 4 * tkp);
                    p5 += Vector256.Create(qf[qb + e + 5]) * Vector256.Create(kt, kp + 5 * tkp);
                    p6 += Vector256.Create(qf[qb + e + 6]) * Vector256.Create(kt, kp + 6 * tkp);
                    p7 += Vector256.Create(qf[qb + e + 7]) * Vector256.Create(kt, kp + 7 * tkp);
                }
                sum = ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7));
            }
            else
            {
                sum = Vector256<float>.Zero;
            }
            for (int e = d8; e < d; e++) sum += Vector256.Create(qf[qb + e]) * Vector256.Create(kt, kb + e * tkp + j);
            sum.CopyTo(dot0.Slice(j, 8));

            // Order 1: one sum from d = 0 up.
            var s1 = Vector256<float>.Zero;
            for (int e = 0; e < d; e++) s1 += Vector256.Create(qf[qb + e]) * Vector256.Create(kt, kb + e * tkp + j);
            s1.CopyTo(dot1.Slice(j, 8));
        }
    }

    private static void Row(Shared c, int bh, int g, long row, ReadOnlySpan<byte> kinds, ReadOnlySpan<float> dots, bool reverse, Work w,
                            (double[] Out, double[] Lse, double[] Mag) result)
    {
        int b = bh / c.Hq, d = c.D, dv = c.Dv;
        long kvBase = ((long)b * c.Hkv + g) * c.Tk;
        var format = c.Format;
        bool mixed = c.Mixed;
        float scaleF = c.ScaleF, cap = c.Cap;
        var qi = new ReadOnlySpan<float>(c.Q, (int)(row * d), d);

        // 1. Scores of the allowed keys, and their maximum.
        int count = 0, best = -1;
        float m = float.NegativeInfinity;
        for (int j = 0; j < kinds.Length; j++)
        {
            byte kind = kinds[j];
            if (kind == 0) continue;
            float s;
            if (kind == 2 && c.KAlt is { } alt)
            {
                var kj = new ReadOnlySpan<float>(alt, (int)((kvBase + j) * d), d);
                s = reverse ? AttentionBaseline.DotSequential(qi, kj) : AttentionBaseline.Dot(qi, kj);
            }
            else
            {
                s = dots[j];
            }
            s = AttentionBaseline.ScaledScore(s, scaleF, cap, mixed, format);
            w.Keys[count] = j;
            w.Scores[count++] = s;
            if (s > m || count == 1) best = j;
            m = MathF.Max(m, s);
        }
        long outBase = row * dv;
        if (count == 0)
        {
            result.Lse[row] = double.NegativeInfinity;
            return;
        }
        result.Mag[row] = AttentionBaseline.Magnitude(qi, kinds[best] == 2 && c.KAlt is not null ? c.KAlt : c.K, (kvBase + best) * d, c.Scale);

        // 2. The softmax in float32.
        float l = AttentionBaseline.Softmax(w.Scores, count, m, reverse, mixed, format, out bool divideLast);

        // 3. out = sum_n w_n v_n in key order (order 1: from the last key), in float32.
        // Thirty-two e (four vectors) at a time in registers; each acc[e] sees the same sums as in AttentionBaseline.Axpy.
        float[] acc = w.Acc, vf = c.V, ws = w.Scores;
        int[] keys = w.Keys;
        int vb = (int)(kvBase * dv), e0 = 0, step = reverse ? -1 : 1, first = reverse ? count - 1 : 0;
        for (; e0 + 32 <= dv; e0 += 32)
        {
            Vector256<float> x0 = Vector256<float>.Zero, x1 = x0, x2 = x0, x3 = x0;
            for (int x = 0, n = first; x < count; x++, n += step)
            {
                var wn = Vector256.Create(ws[n]);
                int vp = vb + keys[n] * dv + e0;
                x0 += wn * Vector256.Create(vf, vp);
                x1 += wn * Vector256.Create(vf, vp + 8);
                x2 += wn * Vector256.Create(vf, vp + 16);
                x3 += wn * Vector256.Create(vf, vp + 24);
            }
            x0.CopyTo(acc, e0);
            x1.CopyTo(acc, e0 + 8);
            x2.CopyTo(acc, e0 + 16);
            x3.CopyTo(acc, e0 + 24);
        }
        for (; e0 + 8 <= dv; e0 += 8)
        {
            var x0 = Vector256<float>.Zero;
            for (int x = 0, n = first; x < count; x++, n += step)
                x0 += Vector256.Create(ws[n]) * Vector256.Create(vf, vb + keys[n] * dv + e0);
            x0.CopyTo(acc, e0);
        }
        for (; e0 < dv; e0++)
        {
            float a = 0f;
            for (int x = 0, n = first; x < count; x++, n += step) a += ws[n] * vf[vb + keys[n] * dv + e0];
            acc[e0] = a;
        }
        AttentionBaseline.Finish(acc.AsSpan(0, dv), l, m, divideLast, mixed, format, result.Out, outBase, result.Lse, row);
    }

    private sealed record Shared(
        float[] Q, float[] KT, float[] K, float[]? KAlt, float[] V, int B, int Hq, int Hkv, int Tq, int Tk, int Tkp, int D, int Dv,
        int Group, double Scale, float ScaleF, float Cap, NumberFormat Format, bool Mixed);

    private sealed class Work(int tk, int tkp, int dv)
    {
        public byte[] Kinds { get; } = new byte[RowBlock * tk];
        public float[] Dot0 { get; } = new float[RowBlock * tkp];
        public float[] Dot1 { get; } = new float[RowBlock * tkp];
        public int[] Keys { get; } = new int[tk];
        public float[] Scores { get; } = new float[tk];
        public float[] Acc { get; } = new float[dv];
    }
}
