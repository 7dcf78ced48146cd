using System.Runtime.Intrinsics;
using Reference.Attention;
using Reference.Numerics;

namespace Reference.Harness.Algorithms;

/// <summary>
/// Which keys a query row attends, and with which key vector: fills <paramref name="kinds"/> (length Tk) with
/// 0 (not allowed), 1 (allowed, scored with k) or 2 (allowed, scored with the alternative keys, e.g. LeanK's pruned
/// channels). Called once per row, possibly from several threads at once.
/// </summary>
/// <param name="b">The batch index.</param>
/// <param name="h">The query head.</param>
/// <param name="i">The query position.</param>
/// <param name="kinds">The row's key kinds, to be filled completely.</param>
public delegate void AttentionRowKeys(int b, int h, int i, Span<byte> kinds);

/// <summary>
/// The baseline of the attention family's tolerance (proofs/attention.md, "How the registry judges out and lse"):
/// attention computed naively in a candidate's precision, the way real kernels compute it.
/// <list type="bullet">
/// <item>float32: float arithmetic throughout (each operation rounds to float32): q, k, v rounded to float32, the
/// scale rounded to float32; s = (q . k) * scale with the dot product in 8 interleaved float32 partial sums (lane
/// d mod 8) added pairwise at the end; the softcap c tanh(s / c) in float32; m = max s, p = exp(s - m), l = sum p in
/// key order, w = p / l, out = sum w v in key order, lse = m + ln l.</item>
/// <item>float16, bfloat16 (mixed precision, as torch's fp16 matmul and softmax and FlashAttention): q, k, v rounded
/// to the format; the dot product as above in float32, its result rounded to the format, multiplied by the scale
/// and rounded again (the score tensor of a half-precision matmul); the softcap in float32 and rounded; the softmax
/// in float32; the probabilities w rounded to the format before the P.V product, which accumulates in float32; out
/// rounded to the format; lse = m + ln l in float32, rounded to the format.</item>
/// </list>
/// Rows are independent and each is computed by one thread in a fixed order, so the result does not depend on the
/// number of threads. Vector256 operations are lane-wise IEEE operations without fused multiply-add, so the result
/// is the same with or without hardware vectors.
/// </summary>
public static class AttentionBaseline
{
    /// <summary>A short name of the baseline for <paramref name="format"/>, written in reports.</summary>
    /// <param name="format">The candidate's precision.</param>
    /// <returns><c>naive-f32</c>, or <c>naive-f16-f32acc</c> / <c>naive-bf16-f32acc</c> (float32 accumulation).</returns>
    public static string Kind(NumberFormat format) => format switch
    {
        NumberFormat.Float16 => "naive-f16-f32acc",
        NumberFormat.BFloat16 => "naive-bf16-f32acc",
        NumberFormat.Float64 => "naive-f64",
        _ => "naive-f32",
    };

    /// <summary>
    /// Attention of q over the keys each row allows, computed naively in <paramref name="format"/> (class summary).
    /// </summary>
    /// <param name="q">Queries [B, Hq, Tq, D].</param>
    /// <param name="k">Keys [B, Hkv, Tk, D]; Hkv divides Hq, query head h reads kv head h / (Hq / Hkv).</param>
    /// <param name="v">Values [B, Hkv, Tk, Dv].</param>
    /// <param name="scale">The score scale.</param>
    /// <param name="softcap">The softcap c (0 = none).</param>
    /// <param name="rows">The allowed keys of each row.</param>
    /// <param name="keyAlt">The alternative keys [B, Hkv, Tk, D] for kind 2, or null.</param>
    /// <param name="format">Float32, Float16 or BFloat16 (Float64 is computed like Float32).</param>
    /// <returns>out [B, Hq, Tq, Dv] and lse [B, Hq, Tq], flat in C order; an empty row gives 0 and -Infinity.</returns>
    public static (double[] Out, double[] Lse) Compute(
        double[,,,] q, double[,,,] k, double[,,,] v, double scale, double softcap, AttentionRowKeys rows,
        double[,,,]? keyAlt, NumberFormat format)
    {
        var (output, lse, _) = Compute(q, k, v, scale, softcap, rows, keyAlt, format, 0);
        return (output, lse);
    }

    /// <summary>
    /// The baseline in one of two naive orders: 0 is the order of the class summary; 1 accumulates each dot product from d = 0 up
    /// in one float32 sum, adds the row sum l and the weighted values from the last allowed key to the first, and in
    /// float32 divides once at the end (out = (sum p v) / l). Also returns, per row, the magnitude
    /// |scale| sum_d |q_d k_jd| of the row's largest score (0 for an empty row), the scale of that score's rounding error.
    /// </summary>
    /// <param name="q">Queries [B, Hq, Tq, D].</param>
    /// <param name="k">Keys [B, Hkv, Tk, D].</param>
    /// <param name="v">Values [B, Hkv, Tk, Dv].</param>
    /// <param name="scale">The score scale.</param>
    /// <param name="softcap">The softcap c (0 = none).</param>
    /// <param name="rows">The allowed keys of each row.</param>
    /// <param name="keyAlt">The alternative keys for kind 2, or null.</param>
    /// <param name="format">The precision.</param>
    /// <param name="order">0 or 1.</param>
    /// <returns>out and lse flat, and the per-row magnitude of the largest score [B, Hq, Tq] flat.</returns>
    public static (double[] Out, double[] Lse, double[] MaxScoreMagnitude) Compute(
        double[,,,] q, double[,,,] k, double[,,,] v, double scale, double softcap, AttentionRowKeys rows,
        double[,,,]? keyAlt, NumberFormat format, int order)
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
        float[] qf = Flat(q, inputFormat), kf = Flat(k, inputFormat), vf = Flat(v, inputFormat);
        float[]? kaf = keyAlt is null ? null : Flat(keyAlt, inputFormat);
        float scaleF = (float)scale, cap = (float)softcap;
        var output = new double[(long)bsz * hq * tq * dv];
        var lse = new double[(long)bsz * hq * tq];
        var magnitude = new double[(long)bsz * hq * tq];
        bool reverse = order == 1;

        Parallel.For(0, bsz * hq, () => new RowBuffers(tk, dv), (bh, _, buf) =>
        {
            int b = bh / hq, h = bh % hq, g = h / group;
            long kvBase = ((long)b * hkv + g) * tk;
            for (int i = 0; i < tq; i++)
            {
                long row = (long)bh * tq + i;
                rows(b, h, i, buf.Kinds);
                var qi = new ReadOnlySpan<float>(qf, (int)(row * d), d);

                // 1. Scores of the allowed keys, and their maximum.
                int count = 0, best = -1;
                float m = float.NegativeInfinity;
                for (int j = 0; j < tk; j++)
                {
                    byte kind = buf.Kinds[j];
                    if (kind == 0) continue;
                    var keys = kind == 2 && kaf is not null ? kaf : kf;
                    var kj = new ReadOnlySpan<float>(keys, (int)((kvBase + j) * d), d);
                    float s = ScaledScore(reverse ? DotSequential(qi, kj) : Dot(qi, kj), scaleF, cap, mixed, format);
                    buf.Keys[count] = j;
                    buf.Scores[count++] = s;
                    if (s > m || count == 1) best = j;
                    m = MathF.Max(m, s);
                }
                long outBase = row * dv;
                if (count == 0)
                {
                    lse[row] = double.NegativeInfinity;
                    continue;
                }
                magnitude[row] = Magnitude(qi, buf.Kinds[best] == 2 && kaf is not null ? kaf : kf, (kvBase + best) * d, scale);

                // 2. The softmax in float32: p = exp(s - m), l = sum p, w = p / l (rounded to the format if mixed).
                float l = Softmax(buf.Scores, count, m, reverse, mixed, format, out bool divideLast);

                // 3. out = sum_n w_n v_n in key order (order 1: from the last key), in float32.
                Span<float> acc = buf.Acc;
                acc.Clear();
                for (int x = 0; x < count; x++)
                {
                    int n = reverse ? count - 1 - x : x;
                    Axpy(buf.Scores[n], new ReadOnlySpan<float>(vf, (int)((kvBase + buf.Keys[n]) * dv), dv), acc);
                }
                Finish(acc, l, m, divideLast, mixed, format, output, outBase, lse, row);
            }
            return buf;
        }, _ => { });
        return (output, lse, magnitude);
    }

    /// <summary>A float32 dot product q·k scaled (rounded to the format first and after when mixed) and soft-capped.</summary>
    internal static float ScaledScore(float dot, float scaleF, float cap, bool mixed, NumberFormat format)
    {
        float s = mixed ? Round(Round(dot, format) * scaleF, format) : dot * scaleF;
        if (cap > 0f)
        {
            s = cap * MathF.Tanh(s / cap);
            if (mixed) s = Round(s, format);
        }
        return s;
    }

    /// <summary>The rounding scale of a row's largest score: |scale| sum_e |q_e k_e| in double, k at <paramref name="keyOffset"/>.</summary>
    internal static double Magnitude(ReadOnlySpan<float> qi, float[] keys, long keyOffset, double scale)
    {
        double sum = 0.0;
        for (int e = 0; e < qi.Length; e++) sum += Math.Abs((double)qi[e] * keys[keyOffset + e]);
        return Math.Abs(scale) * sum;
    }

    /// <summary>Step 2 of a row in float32: scores become p = exp(s - m), l = sum p in key order (from the last key when
    /// <paramref name="reverse"/>), then w = p / l (rounded when mixed) unless the division is left to the end
    /// (<paramref name="divideLast"/>: order 1 in float32). Returns l.</summary>
    internal static float Softmax(float[] scores, int count, float m, bool reverse, bool mixed, NumberFormat format, out bool divideLast)
    {
        float l = 0f;
        for (int n = 0; n < count; n++) scores[n] = MathF.Exp(scores[n] - m);
        for (int x = 0; x < count; x++) l += scores[reverse ? count - 1 - x : x];
        divideLast = reverse && !mixed;
        if (!divideLast)
        {
            for (int n = 0; n < count; n++)
            {
                float w = scores[n] / l;
                scores[n] = mixed ? Round(w, format) : w;
            }
        }
        return l;
    }

    /// <summary>Step 4 of a row: out = acc (divided by l when the division was left to the end) and lse = m + ln l, each
    /// rounded to the format when mixed.</summary>
    internal static void Finish(ReadOnlySpan<float> acc, float l, float m, bool divideLast, bool mixed, NumberFormat format,
                                double[] output, long outBase, double[] lse, long row)
    {
        for (int e = 0; e < acc.Length; e++)
        {
            float o = divideLast ? acc[e] / l : acc[e];
            output[outBase + e] = mixed ? Round(o, format) : o;
        }
        float lseF = m + MathF.Log(l);
        lse[row] = mixed ? Round(lseF, format) : lseF;
    }

    /// <summary>The row keys of dense attention (<see cref="DenseAttention"/>): causal and window rules (bottom-right
    /// aligned) and the broadcast mask of <paramref name="options"/>.</summary>
    /// <param name="options">The attention options.</param>
    /// <param name="tq">The number of queries.</param>
    /// <param name="tk">The number of keys.</param>
    /// <returns>The row keys (kind 1 for every allowed key).</returns>
    public static AttentionRowKeys DenseRows(AttentionOptions options, int tq, int tk)
    {
        ArgumentNullException.ThrowIfNull(options);
        var mask = options.Mask;
        return (b, h, i, kinds) =>
        {
            long p = CausalAlignments.QueryPosition(i, tq, tk, options.CausalAlign);
            for (int j = 0; j < kinds.Length; j++)
            {
                bool allowed = !(options.Causal && j > p)
                               && !(options.WindowLeft >= 0 && j < p - options.WindowLeft)
                               && !(options.WindowRight >= 0 && j > p + options.WindowRight);
                if (allowed && mask is not null)
                {
                    allowed = mask[mask.GetLength(0) == 1 ? 0 : b, mask.GetLength(1) == 1 ? 0 : h,
                                   mask.GetLength(2) == 1 ? 0 : i, mask.GetLength(3) == 1 ? 0 : j];
                }
                kinds[j] = allowed ? (byte)1 : (byte)0;
            }
        };
    }

    /// <summary>x rounded to <paramref name="format"/> (nearest, ties to even), for Float16 and BFloat16; others unchanged.</summary>
    /// <param name="x">A float32 value.</param>
    /// <param name="format">The format.</param>
    /// <returns>The rounded value as a float32.</returns>
    public static float Round(float x, NumberFormat format)
    {
        switch (format)
        {
            case NumberFormat.Float16:
                return (float)(Half)x;
            case NumberFormat.BFloat16:
                {
                    if (float.IsNaN(x)) return x;
                    uint bits = BitConverter.SingleToUInt32Bits(x);
                    bits += 0x7FFFu + ((bits >> 16) & 1u);
                    return BitConverter.UInt32BitsToSingle(bits & 0xFFFF0000u);
                }
            default:
                return x;
        }
    }

    /// <summary>The dot product in float32: 8 partial sums (lane d mod 8), added pairwise, then the tail in order.</summary>
    internal static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        int n = a.Length, d = 0;
        float sum = 0f;
        if (n >= 8)
        {
            var acc = Vector256<float>.Zero;
            for (; d + 8 <= n; d += 8)
                acc += Vector256.Create(a.Slice(d, 8)) * Vector256.Create(b.Slice(d, 8));
            sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        }
        for (; d < n; d++) sum += a[d] * b[d];
        return sum;
    }

    /// <summary>The dot product in float32 in one sum from d = 0 up.</summary>
    internal static float DotSequential(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        float sum = 0f;
        for (int d = 0; d < a.Length; d++) sum += a[d] * b[d];
        return sum;
    }

    /// <summary>acc[e] = acc[e] + w * x[e] (a product and a sum, each rounded to float32).</summary>
    internal static void Axpy(float w, ReadOnlySpan<float> x, Span<float> acc)
    {
        int n = x.Length, e = 0;
        var wv = Vector256.Create(w);
        for (; e + 8 <= n; e += 8)
        {
            var r = Vector256.Create((ReadOnlySpan<float>)acc.Slice(e, 8)) + wv * Vector256.Create(x.Slice(e, 8));
            r.CopyTo(acc.Slice(e, 8));
        }
        for (; e < n; e++) acc[e] += w * x[e];
    }

    /// <summary>The entries rounded to <paramref name="format"/> (float32 unless Float16/BFloat16), flat in C order.</summary>
    internal static float[] Flat(double[,,,] x, NumberFormat format)
    {
        var flat = new float[x.Length];
        int n = 0;
        bool low = format is NumberFormat.Float16 or NumberFormat.BFloat16;
        foreach (double value in x) flat[n++] = low ? (float)Precision.Round(value, format) : (float)value;
        return flat;
    }

    private sealed class RowBuffers(int tk, int dv)
    {
        public byte[] Kinds { get; } = new byte[tk];
        public int[] Keys { get; } = new int[tk];
        public float[] Scores { get; } = new float[tk];
        public float[] Acc { get; } = new float[dv];
    }
}
