namespace Reference.Attention;

/// <summary>
/// Causal linear attention with the heads in parallel: equal to the readable reference <see cref="LinearAttention.Compute"/>
/// bit for bit in every form (proofs/attention-sparse.md, theorem attention.linear-fast-reference-identical). Used by
/// <c>check linear</c> beyond the size documented in proofs/cli.md ("Fast references beyond a size"): the reference's
/// parallel form costs T^2 (D + Dv) per head through four-dimensional indexing and a power per pair, single-threaded.
/// </summary>
/// <remarks>
/// <para>Shapes, options, validation and errors are those of <see cref="LinearAttention.Compute"/>
/// (<see cref="LinearAttention.Validate"/>), and the features are its <see cref="LinearAttention.Features"/>.</para>
/// <para>Why the outputs are identical: every head (b, h) reads only its own rows and writes only its own output, so heads
/// run in parallel. The recurrent and chunked forms call the reference's own per-head methods. The parallel form computes
/// the same operations in the same order as the reference's: for each query i and key j &lt;= i in ascending order, the dot
/// product phi(q_i).phi(k_j) summed over d from 0 upwards, times gamma^(i-j), added to den_i and (times v_j) to num_i;
/// only the storage differs (each head's rows copied to flat arrays), and gamma^m is <see cref="Math.Pow(double, double)"/>
/// of the same arguments, computed once per m instead of once per pair. Normalization is the reference's
/// <see cref="LinearAttention.WriteHead"/>.</para>
/// </remarks>
public static class LinearAttentionFast
{
    /// <summary>Computes <see cref="LinearAttention.Compute"/>'s result.</summary>
    /// <param name="q">Queries [B, H, T, D], finite.</param>
    /// <param name="k">Keys [B, H, T, D], finite.</param>
    /// <param name="v">Values [B, H, T, Dv], finite.</param>
    /// <param name="options">Feature map, normalization, decay, form, chunk.</param>
    /// <returns>out [B, H, T, Dv].</returns>
    /// <exception cref="ArgumentException">As for <see cref="LinearAttention.Compute"/>.</exception>
    public static double[,,,] Compute(double[,,,] q, double[,,,] k, double[,,,] v, LinearAttentionOptions options)
    {
        var dims = LinearAttention.Validate(q, k, v, options);
        var fq = LinearAttention.Features(q, options.FeatureMap);
        var fk = LinearAttention.Features(k, options.FeatureMap);
        var output = new double[dims.B, dims.Hq, dims.Tq, dims.Dv];
        var powers = new double[dims.Tq]; // gamma^m, m = 0..T-1
        for (int m = 0; m < powers.Length; m++)
        {
            powers[m] = Math.Pow(options.Decay, m);
        }
        Parallel.For(0, dims.B * dims.Hq, bh =>
        {
            int b = bh / dims.Hq, h = bh % dims.Hq;
            var (num, den) = options.Form switch
            {
                LinearForm.Recurrent => LinearAttention.Recurrent(fq, fk, v, b, h, options.Decay),
                LinearForm.Chunked => LinearAttention.Chunked(fq, fk, v, b, h, options.Decay, options.Chunk),
                _ => ParallelForm(fq, fk, v, b, h, powers),
            };
            LinearAttention.WriteHead(output, b, h, num, den, options.Normalize);
        });
        return output;
    }

    /// <summary>The masked quadratic form of head (b, h), in the reference's order, on flat copies of the head's rows.</summary>
    private static (double[,] Num, double[] Den) ParallelForm(double[,,,] fq, double[,,,] fk, double[,,,] v, int b, int h, double[] powers)
    {
        int t = fq.GetLength(2), d = fq.GetLength(3), dv = v.GetLength(3);
        double[] qh = Rows(fq, b, h), kh = Rows(fk, b, h), vh = Rows(v, b, h);
        var num = new double[t, dv];
        var den = new double[t];
        var row = new double[dv];
        for (int i = 0; i < t; i++)
        {
            var qi = qh.AsSpan(i * d, d);
            double deni = 0.0;
            Array.Clear(row);
            for (int j = 0; j <= i; j++)
            {
                var kj = kh.AsSpan(j * d, d);
                double dot = 0.0;
                for (int a = 0; a < d; a++)
                {
                    dot += qi[a] * kj[a];
                }
                double w = powers[i - j] * dot;
                deni += w;
                var vj = vh.AsSpan(j * dv, dv);
                for (int e = 0; e < dv; e++)
                {
                    row[e] += w * vj[e];
                }
            }
            den[i] = deni;
            for (int e = 0; e < dv; e++)
            {
                num[i, e] = row[e];
            }
        }
        return (num, den);
    }

    /// <summary>Head (b, h) of x [B, H, T, D] as a flat [T * D] array.</summary>
    private static double[] Rows(double[,,,] x, int b, int h)
    {
        int t = x.GetLength(2), d = x.GetLength(3);
        var rows = new double[t * d];
        for (int i = 0; i < t; i++)
        {
            for (int a = 0; a < d; a++)
            {
                rows[i * d + a] = x[b, h, i, a];
            }
        }
        return rows;
    }
}
