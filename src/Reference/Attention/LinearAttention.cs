namespace Reference.Attention;

/// <summary>The feature map phi of linear attention.</summary>
public enum FeatureMap
{
    /// <summary>phi(x) = elu(x) + 1 = x + 1 for x &gt; 0, exp(x) otherwise (Katharopoulos et al. 2020). CLI <c>elu1</c>.</summary>
    Elu1,
    /// <summary>phi(x) = x. CLI <c>identity</c>.</summary>
    Identity,
}

/// <summary>Which of the three equivalent evaluation orders of linear attention to use.</summary>
public enum LinearForm
{
    /// <summary>The masked quadratic form: o_t = sum_{j&lt;=t} gamma^(t-j) (phi(q_t).phi(k_j)) v_j. CLI <c>parallel</c>.</summary>
    Parallel,
    /// <summary>The recurrence S_t = gamma S_{t-1} + phi(k_t) v_t^T, o_t = phi(q_t)^T S_t. CLI <c>recurrent</c>.</summary>
    Recurrent,
    /// <summary>Chunks of C positions: the recurrence across chunks, the parallel form inside. CLI <c>chunked</c>.</summary>
    Chunked,
}

/// <summary>Options of <see cref="LinearAttention"/> (CLI algorithm <c>linear</c>).</summary>
public sealed record LinearAttentionOptions
{
    /// <summary>The feature map. Default <see cref="FeatureMap.Elu1"/>.</summary>
    public FeatureMap FeatureMap { get; init; } = FeatureMap.Elu1;

    /// <summary>Divide by phi(q_t)^T z_t, z_t = sum_{j&lt;=t} gamma^(t-j) phi(k_j). Default true.</summary>
    public bool Normalize { get; init; } = true;

    /// <summary>The decay gamma in (0, 1]; 1 (the default) is plain causal linear attention.</summary>
    public double Decay { get; init; } = 1.0;

    /// <summary>The evaluation order. Default <see cref="LinearForm.Parallel"/>.</summary>
    public LinearForm Form { get; init; } = LinearForm.Parallel;

    /// <summary>The chunk length C of the chunked form, &gt;= 1. Default 64.</summary>
    public int Chunk { get; init; } = 64;
}

/// <summary>
/// Causal linear attention with a feature map, optional normalization and optional decay, in its parallel,
/// recurrent and chunked forms (CLI algorithm <c>linear</c>, proofs/attention-sparse.md, Definition: Linear attention).
/// </summary>
/// <remarks>
/// <para>Shapes: q, k [B, H, T, D], v [B, H, T, Dv], out [B, H, T, Dv].</para>
/// <para>Math, per (b, h), with phi applied element-wise:</para>
/// <code>
/// S_t = sum_{j&lt;=t} gamma^(t-j) phi(k_j) v_j^T     [D, Dv]
/// z_t = sum_{j&lt;=t} gamma^(t-j) phi(k_j)           [D]
/// o_t = phi(q_t)^T S_t  /  phi(q_t)^T z_t          (the division only when normalized)
/// </code>
/// <para>Parallel: o_t = sum_{j&lt;=t} gamma^(t-j) (phi(q_t).phi(k_j)) v_j, divided by the same sum without v_j.
/// Recurrent: S_t = gamma S_{t-1} + phi(k_t) v_t^T, z_t = gamma z_{t-1} + phi(k_t).
/// Chunked, chunk [s, e]: o_t = gamma^(t-s+1) phi(q_t)^T S_{s-1} + sum_{s&lt;=j&lt;=t} gamma^(t-j) (phi(q_t).phi(k_j)) v_j,
/// then S_e = gamma^(e-s+1) S_{s-1} + sum_{s&lt;=j&lt;=e} gamma^(e-j) phi(k_j) v_j^T (and z likewise).
/// The three are equal in exact arithmetic (proofs/attention-sparse.md, attention.linear-forms).</para>
/// <para>A normalized row whose denominator is exactly 0 (possible with the identity map) outputs 0; with
/// <see cref="FeatureMap.Elu1"/> the features are positive and the denominator never vanishes.</para>
/// <para>Sources: Katharopoulos et al. 2020, "Transformers are RNNs" (feature map elu+1, the recurrent form);
/// Sun et al. 2023, "Retentive Network" and Yang et al. 2024, "Gated Linear Attention" (decay, the chunked form).</para>
/// </remarks>
public static class LinearAttention
{
    /// <summary>Linear attention in double precision, in the form the options name.</summary>
    /// <param name="q">Queries [B, H, T, D], finite.</param>
    /// <param name="k">Keys [B, H, T, D], finite.</param>
    /// <param name="v">Values [B, H, T, Dv], finite.</param>
    /// <param name="options">Feature map, normalization, decay, form, chunk.</param>
    /// <returns>out [B, H, T, Dv].</returns>
    /// <exception cref="ArgumentException">Shapes do not match (k must have the heads and length of q), an entry is not
    /// finite, the decay is outside (0, 1], or the chunk is &lt; 1.</exception>
    public static double[,,,] Compute(double[,,,] q, double[,,,] k, double[,,,] v, LinearAttentionOptions options)
    {
        // 1. Validate.
        var dims = Validate(q, k, v, options);

        // 2. Features phi(q), phi(k).
        var fq = Features(q, options.FeatureMap);
        var fk = Features(k, options.FeatureMap);
        var output = new double[dims.B, dims.Hq, dims.Tq, dims.Dv];
        for (int b = 0; b < dims.B; b++)
        {
            for (int h = 0; h < dims.Hq; h++)
            {
                // 3. Numerator [T, Dv] and denominator [T] in the chosen form.
                var (num, den) = options.Form switch
                {
                    LinearForm.Recurrent => Recurrent(fq, fk, v, b, h, options.Decay),
                    LinearForm.Chunked => Chunked(fq, fk, v, b, h, options.Decay, options.Chunk),
                    _ => Parallel(fq, fk, v, b, h, options.Decay),
                };
                // 4. Normalize (a zero denominator gives 0).
                WriteHead(output, b, h, num, den, options.Normalize);
            }
        }

        return output;
    }

    /// <summary>Step 1 of <see cref="Compute"/> (shared with <see cref="LinearAttentionFast"/>, which must reject the same
    /// inputs with the same messages).</summary>
    internal static AttentionCore.Dims Validate(double[,,,] q, double[,,,] k, double[,,,] v, LinearAttentionOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var dims = AttentionCore.ValidateInputs(q, k, v);
        if (dims.Hkv != dims.Hq) throw new ArgumentException($"k has {dims.Hkv} heads but q has {dims.Hq}", nameof(k));
        if (dims.Tk != dims.Tq) throw new ArgumentException($"k has {dims.Tk} positions but q has {dims.Tq}", nameof(k));
        if (!(options.Decay > 0.0 && options.Decay <= 1.0))
            throw new ArgumentException($"decay must be in (0, 1], got {options.Decay}", nameof(options));
        if (options.Chunk < 1) throw new ArgumentException($"chunk must be >= 1, got {options.Chunk}", nameof(options));
        return dims;
    }

    /// <summary>Step 4 of <see cref="Compute"/> for head (b, h): out = num / den, or num, and 0 where den = 0.</summary>
    internal static void WriteHead(double[,,,] output, int b, int h, double[,] num, double[] den, bool normalize)
    {
        for (int t = 0; t < den.Length; t++)
        {
            for (int e = 0; e < num.GetLength(1); e++)
                output[b, h, t, e] = !normalize ? num[t, e] : den[t] == 0.0 ? 0.0 : num[t, e] / den[t];
        }
    }

    /// <summary>phi applied element-wise.</summary>
    /// <param name="x">Any array [B, H, T, D].</param>
    /// <param name="map">The feature map.</param>
    /// <returns>phi(x), same shape.</returns>
    public static double[,,,] Features(double[,,,] x, FeatureMap map)
    {
        ArgumentNullException.ThrowIfNull(x);
        var y = new double[x.GetLength(0), x.GetLength(1), x.GetLength(2), x.GetLength(3)];
        for (int a = 0; a < x.GetLength(0); a++)
        {
            for (int b = 0; b < x.GetLength(1); b++)
            {
                for (int c = 0; c < x.GetLength(2); c++)
                {
                    for (int d = 0; d < x.GetLength(3); d++)
                    {
                        double value = x[a, b, c, d];
                        y[a, b, c, d] = map == FeatureMap.Identity ? value : value > 0 ? value + 1.0 : Math.Exp(value);
                    }
                }
            }
        }

        return y;
    }

    private static double Dot(double[,,,] x, double[,,,] y, int b, int h, int i, int j)
    {
        double dot = 0.0;
        for (int d = 0; d < x.GetLength(3); d++) dot += x[b, h, i, d] * y[b, h, j, d];
        return dot;
    }

    /// <summary>The masked quadratic form.</summary>
    private static (double[,] Num, double[] Den) Parallel(double[,,,] fq, double[,,,] fk, double[,,,] v, int b, int h, double gamma)
    {
        int t = fq.GetLength(2), dv = v.GetLength(3);
        var num = new double[t, dv];
        var den = new double[t];
        for (int i = 0; i < t; i++)
        {
            for (int j = 0; j <= i; j++)
            {
                double a = Math.Pow(gamma, i - j) * Dot(fq, fk, b, h, i, j);   // A_ij = gamma^(i-j) phi(q_i).phi(k_j)
                den[i] += a;
                for (int e = 0; e < dv; e++) num[i, e] += a * v[b, h, j, e];
            }
        }

        return (num, den);
    }

    /// <summary>The recurrence over the state S [D, Dv] and z [D].</summary>
    internal static (double[,] Num, double[] Den) Recurrent(double[,,,] fq, double[,,,] fk, double[,,,] v, int b, int h, double gamma)
    {
        int t = fq.GetLength(2), d = fq.GetLength(3), dv = v.GetLength(3);
        var s = new double[d, dv];
        var z = new double[d];
        var num = new double[t, dv];
        var den = new double[t];
        for (int i = 0; i < t; i++)
        {
            // S_i = gamma S_{i-1} + phi(k_i) v_i^T;  z_i = gamma z_{i-1} + phi(k_i)
            for (int a = 0; a < d; a++)
            {
                z[a] = gamma * z[a] + fk[b, h, i, a];
                for (int e = 0; e < dv; e++) s[a, e] = gamma * s[a, e] + fk[b, h, i, a] * v[b, h, i, e];
            }
            // o_i = phi(q_i)^T S_i;  den_i = phi(q_i)^T z_i
            for (int a = 0; a < d; a++)
            {
                den[i] += fq[b, h, i, a] * z[a];
                for (int e = 0; e < dv; e++) num[i, e] += fq[b, h, i, a] * s[a, e];
            }
        }
        return (num, den);
    }

    /// <summary>Chunks of c positions: the state before each chunk, plus the parallel form inside it.</summary>
    internal static (double[,] Num, double[] Den) Chunked(double[,,,] fq, double[,,,] fk, double[,,,] v, int b, int h, double gamma, int c)
    {
        int t = fq.GetLength(2), d = fq.GetLength(3), dv = v.GetLength(3);
        var s = new double[d, dv];   // S_{start-1}
        var z = new double[d];
        var num = new double[t, dv];
        var den = new double[t];
        for (int start = 0; start < t; start += c)
        {
            int end = Math.Min(t, start + c) - 1;
            for (int i = start; i <= end; i++)
            {
                // 1. Inter-chunk: gamma^(i-start+1) phi(q_i)^T S_{start-1}.
                double carry = Math.Pow(gamma, i - start + 1);
                for (int a = 0; a < d; a++)
                {
                    den[i] += carry * fq[b, h, i, a] * z[a];
                    for (int e = 0; e < dv; e++) num[i, e] += carry * fq[b, h, i, a] * s[a, e];
                }
                // 2. Intra-chunk: the masked quadratic form over start..i.
                for (int j = start; j <= i; j++)
                {
                    double w = Math.Pow(gamma, i - j) * Dot(fq, fk, b, h, i, j);
                    den[i] += w;
                    for (int e = 0; e < dv; e++) num[i, e] += w * v[b, h, j, e];
                }
            }
            // 3. The state after the chunk: S_end = gamma^(len) S_{start-1} + sum_j gamma^(end-j) phi(k_j) v_j^T.
            double decayAll = Math.Pow(gamma, end - start + 1);
            for (int a = 0; a < d; a++)
            {
                z[a] *= decayAll;
                for (int e = 0; e < dv; e++) s[a, e] *= decayAll;
                for (int j = start; j <= end; j++)
                {
                    double w = Math.Pow(gamma, end - j);
                    z[a] += w * fk[b, h, j, a];
                    for (int e = 0; e < dv; e++) s[a, e] += w * fk[b, h, j, a] * v[b, h, j, e];
                }
            }
        }
        return (num, den);
    }
}
