using Reference.Attention;
using Reference.Numerics;

namespace Reference.Harness.Algorithms;

/// <summary>
/// The baseline of <c>linear</c>'s tolerance (proofs/attention-sparse.md, attention.linear-baseline): causal linear
/// attention computed naively in a candidate's precision, the way real kernels compute it, in two orders.
/// <list type="bullet">
/// <item>float32: q, k, v and gamma rounded to float32, phi in float32, every operation rounded to float32.</item>
/// <item>float16, bfloat16 (mixed precision, as half-precision linear-attention kernels): q, k, v rounded to the
/// format, phi(q) and phi(k) computed in float32 and rounded to the format (the feature tensors), all products and sums
/// in float32, the output rounded to the format; in the parallel order the decayed score w_tj is rounded to the format
/// before it multiplies v (the score matrix of a half-precision matmul).</item>
/// </list>
/// Order 0 (parallel, masked quadratic form): w_tj = gamma^(t-j) (phi(q_t) . phi(k_j)) with MathF.Pow and an 8-lane
/// dot product, num = sum_j w_tj v_j and den = sum_j w_tj in ascending j, out = num / den (normalized) or num.
/// Order 1 (recurrent): S = gamma S + phi(k_t) v_t^T, z = gamma z + phi(k_t) (float32 state), num = phi(q_t)^T S and
/// den = phi(q_t) . z in ascending d. A zero denominator gives 0, as in the reference. Each (b, h) is one thread in a
/// fixed order, so the result does not depend on threading.
/// </summary>
public static class LinearBaseline
{
    /// <summary>
    /// Linear attention computed naively in <paramref name="format"/> in the given order (class summary), and the
    /// magnitude max over (b, h, t, e) of sum_j |w_tj v_je| (divided by |den_t| when normalized), the scale of a
    /// correct computation's last roundings.
    /// </summary>
    /// <param name="q">Queries [B, H, T, D].</param>
    /// <param name="k">Keys [B, H, T, D].</param>
    /// <param name="v">Values [B, H, T, Dv].</param>
    /// <param name="options">Feature map, normalization, decay (the form and chunk are ignored).</param>
    /// <param name="format">Float32, Float16 or BFloat16 (Float64 is computed like Float32).</param>
    /// <param name="order">0 (parallel) or 1 (recurrent).</param>
    /// <returns>out [B, H, T, Dv] flat in C order, and the magnitude (computed in order 0; 0 for order 1).</returns>
    public static (double[] Out, double Magnitude) Compute(double[,,,] q, double[,,,] k, double[,,,] v,
                                                           LinearAttentionOptions options, NumberFormat format, int order)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        ArgumentNullException.ThrowIfNull(options);
        int bsz = q.GetLength(0), heads = q.GetLength(1), t = q.GetLength(2), d = q.GetLength(3), dv = v.GetLength(3);
        bool mixed = format is NumberFormat.Float16 or NumberFormat.BFloat16;
        var inputFormat = mixed ? format : NumberFormat.Float32;
        float[] qf = AttentionBaseline.Flat(q, inputFormat), kf = AttentionBaseline.Flat(k, inputFormat);
        float[] vf = AttentionBaseline.Flat(v, inputFormat);
        for (int n = 0; n < qf.Length; n++)
        {
            qf[n] = AttentionBaseline.Round(Feature(qf[n], options.FeatureMap), format);
            kf[n] = AttentionBaseline.Round(Feature(kf[n], options.FeatureMap), format);
        }
        float gamma = (float)options.Decay;
        var output = new double[(long)bsz * heads * t * dv];
        var magnitudes = new double[bsz * heads];

        Parallel.For(0, bsz * heads, bh =>
        {
            long keyBase = (long)bh * t * d, valueBase = (long)bh * t * dv;
            var num = new float[dv];
            var abs = new double[dv];
            float[]? state = order == 1 ? new float[d * dv] : null;
            float[]? z = order == 1 ? new float[d] : null;
            double magnitude = 0.0;
            for (int i = 0; i < t; i++)
            {
                var qi = new ReadOnlySpan<float>(qf, (int)(keyBase + (long)i * d), d);
                float den = 0f;
                if (state is null)
                {
                    // Order 0: the masked quadratic form over j <= i.
                    Array.Clear(num);
                    Array.Clear(abs);
                    double denAbs = 0.0;
                    for (int j = 0; j <= i; j++)
                    {
                        float w = MathF.Pow(gamma, i - j) * AttentionBaseline.Dot(qi, new ReadOnlySpan<float>(kf, (int)(keyBase + (long)j * d), d));
                        if (mixed) w = AttentionBaseline.Round(w, format);
                        den += w;
                        denAbs += Math.Abs(w);
                        long vo = valueBase + (long)j * dv;
                        for (int e = 0; e < dv; e++)
                        {
                            num[e] += w * vf[vo + e];
                            abs[e] += Math.Abs((double)w * vf[vo + e]);
                        }
                    }
                    double scaleDen = options.Normalize ? Math.Abs((double)den) : 1.0;
                    if (scaleDen > 0.0)
                        for (int e = 0; e < dv; e++) magnitude = Math.Max(magnitude, abs[e] / scaleDen);
                }
                else
                {
                    // Order 1: the recurrence of the state, then the query's read-out in ascending d.
                    var ki = new ReadOnlySpan<float>(kf, (int)(keyBase + (long)i * d), d);
                    long vo = valueBase + (long)i * dv;
                    for (int a = 0; a < d; a++)
                    {
                        z![a] = gamma * z[a] + ki[a];
                        for (int e = 0; e < dv; e++) state[a * dv + e] = gamma * state[a * dv + e] + ki[a] * vf[vo + e];
                    }
                    Array.Clear(num);
                    for (int a = 0; a < d; a++)
                    {
                        den += qi[a] * z![a];
                        for (int e = 0; e < dv; e++) num[e] += qi[a] * state[a * dv + e];
                    }
                }
                long outBase = valueBase + (long)i * dv;
                for (int e = 0; e < dv; e++)
                {
                    float o = !options.Normalize ? num[e] : den == 0f ? 0f : num[e] / den;
                    output[outBase + e] = mixed ? AttentionBaseline.Round(o, format) : o;
                }
            }
            magnitudes[bh] = magnitude;
        });
        double worst = 0.0;
        foreach (double m in magnitudes) worst = Math.Max(worst, m);
        return (output, worst);
    }

    /// <summary>phi in float32: x + 1 for x &gt; 0, exp(x) otherwise (elu1), or x (identity).</summary>
    private static float Feature(float x, FeatureMap map) =>
        map == FeatureMap.Identity ? x : x > 0f ? x + 1f : MathF.Exp(x);
}
