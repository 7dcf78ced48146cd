namespace Reference.Attention;

/// <summary>What a head whose channel mask is all zero does with its non-full keys (proofs/attention-sparse.md, Definition: LeanK).</summary>
public enum LeanKZeroHead
{
    /// <summary>The training formula: q.(k*0) = 0, so those keys get logit 0 and stay in the softmax (CLI <c>zero-logit</c>).</summary>
    ZeroLogit,
    /// <summary>The deployed kernel: those keys are dropped, only the full region is attended (CLI <c>drop</c>).</summary>
    Drop,
}

/// <summary>Options of <see cref="LeanK"/> (CLI algorithm <c>leank</c>).</summary>
public sealed record LeanKOptions
{
    /// <summary>Keys j &lt; Sink keep every channel (attention sinks). &gt;= 0, default 64.</summary>
    public int Sink { get; init; } = 64;

    /// <summary>The last Recent keys up to the query (p - Recent &lt; j &lt;= p) keep every channel. &gt;= 0, default 256.</summary>
    public int Recent { get; init; } = 256;

    /// <summary>Causal masking (bottom-right aligned: j &lt;= p_i = i + Tk - Tq). Default true.</summary>
    public bool Causal { get; init; } = true;

    /// <summary>Where query row i sits when Tq != Tk: bottom-right (default, p_i = i + Tk - Tq) or top-left (p_i = i).</summary>
    public CausalAlignment CausalAlign { get; init; } = CausalAlignment.BottomRight;

    /// <summary>What a head with an all-zero channel mask does with its non-full keys. Default <see cref="LeanKZeroHead.ZeroLogit"/>.</summary>
    public LeanKZeroHead ZeroHead { get; init; } = LeanKZeroHead.ZeroLogit;

    /// <summary>The score scale; null (the default) means 1/sqrt(D) with the full D (pruning does not change it).</summary>
    public double? Scale { get; init; }
}

/// <summary>
/// LeanK attention: keys outside the full region are scored on the channels their kv head's static mask keeps
/// (CLI algorithm <c>leank</c>, proofs/attention-sparse.md, Definition: LeanK).
/// </summary>
/// <remarks>
/// <para>Shapes: q [B, Hq, Tq, D], k [B, Hkv, Tk, D], v [B, Hkv, Tk, Dv], channel mask m [Hkv, D]; GQA as in
/// <see cref="DenseAttention"/> (query head h reads kv head g = h / (Hq / Hkv) and its mask row).</para>
/// <para>Math, for query row i at p = i + Tk - Tq:</para>
/// <code>
/// full(j)  = j &lt; sink  or  p - recent &lt; j &lt;= p
/// s_ij     = scale * q_i . k_j                 if full(j)
///          = scale * sum_d q_id (k_jd m_gd)   otherwise         (scale = 1/sqrt(D), D the full dimension)
/// A_i      = { j : not causal or j &lt;= p },  minus the non-full keys when m_g = 0 and zero_head = drop
/// out, lse = softmax over A_i, as in <see cref="DenseAttention"/>
/// </code>
/// <para>Every score is accumulated left to right over d and finished by the same row routine as
/// <see cref="DenseAttention"/>; since k_jd * 1 = k_jd exactly, an all-ones mask reproduces dense attention bit for bit.
/// Without causal masking, keys after p are outside the full region and use the mask.</para>
/// <para>Source: Zhang et al. 2025, "LeanK: Learnable K Cache Channel Pruning for Efficient Decoding" (Microsoft,
/// MInference); the sink and recent windows follow its decoding kernel.</para>
/// </remarks>
public static class LeanK
{
    /// <summary>LeanK attention in double precision.</summary>
    /// <param name="q">Queries [B, Hq, Tq, D], finite.</param>
    /// <param name="k">Keys [B, Hkv, Tk, D], finite.</param>
    /// <param name="v">Values [B, Hkv, Tk, Dv], finite.</param>
    /// <param name="channelMask">The static channel mask [Hkv, D], true = channel kept.</param>
    /// <param name="options">Sink, recent, causal, zero-head mode, scale.</param>
    /// <returns>out [B, Hq, Tq, Dv] and lse [B, Hq, Tq].</returns>
    /// <exception cref="ArgumentException">A shape does not match, an entry is not finite, or an option is out of range.</exception>
    public static AttentionResult Compute(double[,,,] q, double[,,,] k, double[,,,] v, bool[,] channelMask, LeanKOptions options)
    {
        // 1. Validate; 2. heads whose mask keeps no channel.
        var (dims, scale, zeroHead) = Prepare(q, k, v, channelMask, options);
        var output = new double[dims.B, dims.Hq, dims.Tq, dims.Dv];
        var lse = new double[dims.B, dims.Hq, dims.Tq];
        var keys = new List<int>(dims.Tk);
        var scores = new List<double>(dims.Tk);
        for (int b = 0; b < dims.B; b++)
        {
            for (int h = 0; h < dims.Hq; h++)
            {
                Head(b, h, q, k, v, channelMask, options, dims, scale, zeroHead, keys, scores, output, lse);
            }
        }

        return new AttentionResult(output, lse);
    }

    /// <summary>Steps 1 and 2 of <see cref="Compute"/>: the checks, the scale, and the heads whose mask keeps no channel
    /// (shared with <see cref="LeanKFast"/>, which must reject the same inputs with the same messages).</summary>
    internal static (AttentionCore.Dims Dims, double Scale, bool[] ZeroHead) Prepare(
        double[,,,] q, double[,,,] k, double[,,,] v, bool[,] channelMask, LeanKOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(channelMask);
        var dims = AttentionCore.ValidateInputs(q, k, v);
        if (channelMask.GetLength(0) != dims.Hkv || channelMask.GetLength(1) != dims.D)
        {
            throw new ArgumentException(
                $"channelMask has shape [{channelMask.GetLength(0)}, {channelMask.GetLength(1)}], expected [{dims.Hkv}, {dims.D}]", nameof(channelMask));
        }

        if (options.Sink < 0) throw new ArgumentException($"sink must be >= 0, got {options.Sink}", nameof(options));
        if (options.Recent < 0) throw new ArgumentException($"recent must be >= 0, got {options.Recent}", nameof(options));
        double scale = AttentionCore.ResolveScale(options.Scale, 0.0, dims.D, nameof(options), nameof(options));

        var zeroHead = new bool[dims.Hkv];
        for (int g = 0; g < dims.Hkv; g++)
        {
            zeroHead[g] = true;
            for (int d = 0; d < dims.D; d++) zeroHead[g] &= !channelMask[g, d];
        }

        return (dims, scale, zeroHead);
    }

    /// <summary>Steps 3 to 5 of <see cref="Compute"/> for query head (b, h): writes only out[b, h] and lse[b, h].</summary>
    internal static void Head(
        int b, int h, double[,,,] q, double[,,,] k, double[,,,] v, bool[,] channelMask, LeanKOptions options, AttentionCore.Dims dims,
        double scale, bool[] zeroHead, List<int> keys, List<double> scores, double[,,,] output, double[,,] lse)
    {
        int g = h / dims.Group;
        for (int i = 0; i < dims.Tq; i++)
        {
            long p = CausalAlignments.QueryPosition(i, dims.Tq, dims.Tk, options.CausalAlign);
            keys.Clear();
            scores.Clear();
            for (int j = 0; j < dims.Tk; j++)
            {
                // 3. The causal rule, the full region, and the zero-head mode.
                if (options.Causal && j > p) continue;
                bool full = j < options.Sink || (j > p - options.Recent && j <= p);
                if (!full && zeroHead[g] && options.ZeroHead == LeanKZeroHead.Drop) continue;

                // 4. The score on all channels (full) or on the kept channels (k_jd * m_gd).
                double dot = 0.0;
                for (int d = 0; d < dims.D; d++)
                    dot += q[b, h, i, d] * (full ? k[b, g, j, d] : k[b, g, j, d] * (channelMask[g, d] ? 1.0 : 0.0));
                keys.Add(j);
                scores.Add(dot * scale);
            }

            // 5. Softmax and weighted sum (0 and -Inf for an empty row).
            AttentionCore.SoftmaxRow(keys, scores, v, b, g, output, lse, h, i, AttentionCore.Exact);
        }
    }
}
