namespace Reference.Attention;

/// <summary>
/// LeanK attention with the query heads in parallel: equal to the readable reference <see cref="LeanK.Compute"/> bit for
/// bit (proofs/attention-sparse.md, theorem attention.leank-fast-reference-identical). Used by <c>check leank</c> beyond
/// the size documented in proofs/cli.md ("Fast references beyond a size").
/// </summary>
/// <remarks>
/// <para>The checks, the scale and the zero heads are the reference's <see cref="LeanK.Prepare"/>. Each query head (b, h)
/// reads only the inputs and writes only out[b, h] and lse[b, h], so the heads run in parallel.</para>
/// <para>Within a head, every output value is computed by the same IEEE double operations in the same order as the
/// reference's <see cref="LeanK.Head"/> and <c>AttentionCore.SoftmaxRow</c> (exact rounding): the same keys in ascending
/// order by the same rules; each score accumulated from 0.0 over d = 0.. of q_d times k_jd (full keys) or times
/// k_jd·m_gd with m_gd in {1.0, 0.0} (computed once per key and channel instead of once per query: the same product),
/// then times the scale; the row maximum; p_n = exp(s_n - m) and l summed in key order; w_n = p_n / l; out_d accumulated
/// from 0.0 in key order; lse = m + ln l. Only the storage differs (the head's rows copied to flat arrays, and out_d
/// accumulated for all d at once, each d still in key order).</para>
/// </remarks>
public static class LeanKFast
{
    /// <summary>Computes <see cref="LeanK.Compute"/>'s result.</summary>
    /// <param name="q">Queries [B, Hq, Tq, D], finite.</param>
    /// <param name="k">Keys [B, Hkv, Tk, D], finite.</param>
    /// <param name="v">Values [B, Hkv, Tk, Dv], finite.</param>
    /// <param name="channelMask">The static channel mask [Hkv, D], true = channel kept.</param>
    /// <param name="options">Sink, recent, causal, zero-head mode, scale.</param>
    /// <returns>out [B, Hq, Tq, Dv] and lse [B, Hq, Tq].</returns>
    /// <exception cref="ArgumentException">As for <see cref="LeanK.Compute"/>.</exception>
    public static AttentionResult Compute(double[,,,] q, double[,,,] k, double[,,,] v, bool[,] channelMask, LeanKOptions options)
    {
        var (dims, scale, zeroHead) = LeanK.Prepare(q, k, v, channelMask, options);
        var output = new double[dims.B, dims.Hq, dims.Tq, dims.Dv];
        var lse = new double[dims.B, dims.Hq, dims.Tq];
        Parallel.For(0, dims.B * dims.Hq, bh => Head(bh / dims.Hq, bh % dims.Hq, q, k, v, channelMask, options, dims, scale, zeroHead, output, lse));
        return new AttentionResult(output, lse);
    }

    /// <summary>Query head (b, h), as <see cref="LeanK.Head"/> computes it (see the remarks), on flat copies of its rows.</summary>
    private static void Head(
        int b, int h, double[,,,] q, double[,,,] k, double[,,,] v, bool[,] channelMask, LeanKOptions options, AttentionCore.Dims dims,
        double scale, bool[] zeroHead, double[,,,] output, double[,,] lse)
    {
        int g = h / dims.Group, d = dims.D, dv = dims.Dv, tk = dims.Tk;
        var qh = new double[dims.Tq * d];
        var kFull = new double[tk * d];
        var kKept = new double[tk * d];
        var vh = new double[tk * dv];
        for (int i = 0; i < dims.Tq; i++)
        {
            for (int c = 0; c < d; c++) qh[i * d + c] = q[b, h, i, c];
        }
        for (int j = 0; j < tk; j++)
        {
            for (int c = 0; c < d; c++)
            {
                kFull[j * d + c] = k[b, g, j, c];
                kKept[j * d + c] = k[b, g, j, c] * (channelMask[g, c] ? 1.0 : 0.0);
            }
            for (int c = 0; c < dv; c++) vh[j * dv + c] = v[b, g, j, c];
        }
        var keys = new int[tk];
        var scores = new double[tk];
        var p = new double[tk];
        var acc = new double[dv];
        for (int i = 0; i < dims.Tq; i++)
        {
            long pos = CausalAlignments.QueryPosition(i, dims.Tq, tk, options.CausalAlign);
            var qi = qh.AsSpan(i * d, d);
            int count = 0;
            for (int j = 0; j < tk; j++)
            {
                if (options.Causal && j > pos) continue;
                bool full = j < options.Sink || (j > pos - options.Recent && j <= pos);
                if (!full && zeroHead[g] && options.ZeroHead == LeanKZeroHead.Drop) continue;
                var kj = (full ? kFull : kKept).AsSpan(j * d, d);
                double dot = 0.0;
                for (int c = 0; c < d; c++) dot += qi[c] * kj[c];
                keys[count] = j;
                scores[count++] = dot * scale;
            }
            if (count == 0)
            {
                for (int c = 0; c < dv; c++) output[b, h, i, c] = 0.0;
                lse[b, h, i] = double.NegativeInfinity;
                continue;
            }
            double m = double.NegativeInfinity;
            for (int n = 0; n < count; n++) m = Math.Max(m, scores[n]);
            double l = 0.0;
            for (int n = 0; n < count; n++)
            {
                p[n] = Math.Exp(scores[n] - m);
                l += p[n];
            }
            Array.Clear(acc);
            for (int n = 0; n < count; n++)
            {
                double w = p[n] / l;
                var vj = vh.AsSpan(keys[n] * dv, dv);
                for (int c = 0; c < dv; c++) acc[c] += w * vj[c];
            }
            for (int c = 0; c < dv; c++) output[b, h, i, c] = acc[c];
            lse[b, h, i] = m + Math.Log(l);
        }
    }
}
