namespace Reference.Attention;

/// <summary>
/// Dense scaled dot-product attention with causal, sliding-window, explicit-mask and softcap options and
/// grouped-query heads: the reference for the CLI algorithm <c>attention</c> (proofs/attention.md, Definition).
/// </summary>
/// <remarks>
/// <para>Shapes: q [B, Hq, Tq, D], k [B, Hkv, Tk, D], v [B, Hkv, Tk, Dv], Hkv divides Hq, and query head h reads
/// kv head h / (Hq / Hkv) (grouped-query attention, Ainslie et al. 2023; Hkv = 1 is multi-query attention).</para>
/// <para>Math, for each (b, h, i) with kv head g = h / (Hq / Hkv) and position p_i = i + Tk - Tq (bottom-right aligned,
/// as in FlashAttention 2.1+):</para>
/// <code>
/// s_ij   = scale * q[b,h,i,:] . k[b,g,j,:]                 scale = 1/sqrt(D) unless given
/// s_ij   = c * tanh(s_ij / c)                              only when softcap c &gt; 0, before masking
/// A_i    = { j : (not causal or j &lt;= p_i), (wl = -1 or j &gt;= p_i - wl), (wr = -1 or j &lt;= p_i + wr), mask[b,h,i,j] }
/// lse_i  = ln sum_{j in A_i} exp(s_ij)                     (-Inf when A_i is empty)
/// out_i  = sum_{j in A_i} exp(s_ij - lse_i) v[b,g,j,:]     (0 when A_i is empty)
/// </code>
/// <para>The computation is the plain two-pass one (FlashAttention's <c>attention_ref</c>: scores, max, exp,
/// normalize, weighted sum), single-threaded and deterministic. The overload with a rounding hook evaluates the very
/// same sequence of operations with the hook applied after each one, which emulates a naive low-precision
/// computation: the "baseline" of proofs/tolerance.md, Definition: Policies.</para>
/// <para>Sources: Vaswani et al. 2017 (attention); Dao 2023, FlashAttention-2 (mask alignment, windows, softcap);
/// PyTorch <c>scaled_dot_product_attention</c> and FlexAttention (empty rows give 0 and -Inf).</para>
/// </remarks>
public static class DenseAttention
{
    /// <summary>Dense attention in double precision.</summary>
    /// <param name="q">Queries, shape [B, Hq, Tq, D], finite.</param>
    /// <param name="k">Keys, shape [B, Hkv, Tk, D], finite; Hkv divides Hq.</param>
    /// <param name="v">Values, shape [B, Hkv, Tk, Dv], finite.</param>
    /// <param name="options">Causal, window, scale, softcap and explicit mask; see <see cref="AttentionOptions"/>.</param>
    /// <returns>out [B, Hq, Tq, Dv] and lse [B, Hq, Tq].</returns>
    /// <exception cref="ArgumentException">A shape does not match, an entry is NaN or infinite (the message names the
    /// array and the first offending index), the mask does not broadcast, or an option is out of range.</exception>
    public static AttentionResult Compute(double[,,,] q, double[,,,] k, double[,,,] v, AttentionOptions options) =>
        Compute(q, k, v, options, AttentionCore.Exact);

    /// <summary>
    /// Dense attention with <paramref name="round"/> applied after every arithmetic operation (each product and sum of
    /// the dot product, the scaling, the softcap's division, tanh and product, each subtraction and exp, each sum, the
    /// division by the row sum, each product and sum of the weighted sum, the log and the final addition).
    /// With <c>x =&gt; (double)(float)x</c> this is attention computed naively in float32.
    /// </summary>
    /// <param name="q">Queries, shape [B, Hq, Tq, D], finite.</param>
    /// <param name="k">Keys, shape [B, Hkv, Tk, D], finite; Hkv divides Hq.</param>
    /// <param name="v">Values, shape [B, Hkv, Tk, Dv], finite.</param>
    /// <param name="options">Causal, window, scale, softcap and explicit mask; see <see cref="AttentionOptions"/>.</param>
    /// <param name="round">The rounding applied after each operation; the identity gives the double-precision reference.
    /// Inputs are used as given: round them first if they should be in the low precision too.</param>
    /// <returns>out [B, Hq, Tq, Dv] and lse [B, Hq, Tq].</returns>
    /// <exception cref="ArgumentException">As for the overload without a hook.</exception>
    public static AttentionResult Compute(double[,,,] q, double[,,,] k, double[,,,] v, AttentionOptions options,
                                          Func<double, double> round)
    {
        // 1. Validate shapes, finiteness and options.
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(round);
        var dims = AttentionCore.ValidateInputs(q, k, v);
        if (options.WindowLeft < -1)
            throw new ArgumentException($"WindowLeft must be -1 (unbounded) or >= 0, got {options.WindowLeft}", nameof(options));
        if (options.WindowRight < -1)
            throw new ArgumentException($"WindowRight must be -1 (unbounded) or >= 0, got {options.WindowRight}", nameof(options));
        double scale = AttentionCore.ResolveScale(options.Scale, options.Softcap, dims.D, nameof(options), nameof(options));
        AttentionCore.ValidateMask(options.Mask, "mask", dims.B, dims.Hq, dims.Tq, dims.Tk);

        var output = new double[dims.B, dims.Hq, dims.Tq, dims.Dv];   // [B, Hq, Tq, Dv]
        var lse = new double[dims.B, dims.Hq, dims.Tq];               // [B, Hq, Tq]
        var keys = new List<int>(dims.Tk);
        var scores = new List<double>(dims.Tk);

        for (int b = 0; b < dims.B; b++)
        {
            for (int h = 0; h < dims.Hq; h++)
            {
                int kvh = h / dims.Group;                              // the kv head this query head reads
                for (int i = 0; i < dims.Tq; i++)
                {
                    // 2. Collect the allowed keys A_i in ascending order, with their (softcapped) scores.
                    long position = CausalAlignments.QueryPosition(i, dims.Tq, dims.Tk, options.CausalAlign); // p_i
                    keys.Clear();
                    scores.Clear();
                    for (int j = 0; j < dims.Tk; j++)
                    {
                        if (!Allowed(options, position, j)) continue;
                        if (options.Mask is not null && !AttentionCore.MaskAt(options.Mask, b, h, i, j)) continue;
                        keys.Add(j);
                        scores.Add(AttentionCore.Score(q, k, b, h, i, kvh, j, scale, options.Softcap, round));
                    }

                    // 3. Softmax over A_i and the weighted sum of values (0 and -Inf when A_i is empty).
                    AttentionCore.SoftmaxRow(keys, scores, v, b, kvh, output, lse, h, i, round);
                }
            }
        }

        return new AttentionResult(output, lse);
    }

    /// <summary>The causal and window rules for the query at absolute position p and key j.</summary>
    private static bool Allowed(AttentionOptions options, long position, int j)
    {
        if (options.Causal && j > position) return false;
        if (options.WindowLeft >= 0 && j < position - options.WindowLeft) return false;
        if (options.WindowRight >= 0 && j > position + options.WindowRight) return false;
        return true;
    }
}
