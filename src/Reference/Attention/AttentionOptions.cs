namespace Reference.Attention;

/// <summary>
/// Options of dense attention (<see cref="DenseAttention"/>), the CLI algorithm <c>attention</c>.
/// Every restriction that is given applies at once: a key is allowed when the causal rule, the window and the
/// explicit mask all allow it (SEMANTICS.md section 10).
/// </summary>
/// <remarks>
/// Positions are bottom-right aligned as in FlashAttention: query row i sits at absolute position
/// p_i = i + Tk - Tq, so the last query row lines up with the last key. With Tq = Tk this is p_i = i.
/// </remarks>
public sealed record AttentionOptions
{
    /// <summary>Causal masking: key j is allowed only when j &lt;= p_i. Equal to the window (WindowLeft = -1, WindowRight = 0).
    /// Default false.</summary>
    public bool Causal { get; init; }

    /// <summary>How many keys to the left of p_i a query may see: j &gt;= p_i - WindowLeft. -1 (the default) means unbounded.</summary>
    public int WindowLeft { get; init; } = -1;

    /// <summary>How many keys to the right of p_i a query may see: j &lt;= p_i + WindowRight. -1 (the default) means unbounded.</summary>
    public int WindowRight { get; init; } = -1;

    /// <summary>The factor applied to q.k before softcap and softmax; null (the default) means 1/sqrt(D). Must be finite.</summary>
    public double? Scale { get; init; }

    /// <summary>Softcap c: when c &gt; 0 a scaled score s becomes c*tanh(s/c) before masking (Gemma 2, FlashAttention
    /// <c>softcap</c>). 0 (the default) means none.</summary>
    public double Softcap { get; init; }

    /// <summary>An explicit boolean mask, true = allowed, of shape [Bm, Hm, Tqm, Tkm] where each dimension is either 1
    /// (broadcast) or the full size of [B, Hq, Tq, Tk]. Null (the default) means no explicit mask.</summary>
    public bool[,,,]? Mask { get; init; }
}

/// <summary>The outputs of an attention reference.</summary>
public sealed record AttentionResult
{
    /// <summary>Creates a result from its two arrays (stored, not copied).</summary>
    /// <param name="out">The attention output, shape [B, Hq, Tq, Dv].</param>
    /// <param name="lse">The log-sum-exp of the allowed scores, shape [B, Hq, Tq].</param>
    public AttentionResult(double[,,,] @out, double[,,] lse)
    {
        Out = @out;
        Lse = lse;
    }

    /// <summary>out[b,h,i,:] = sum_j softmax_j(s_ij) v[b,kv(h),j,:] over the allowed keys, shape [B, Hq, Tq, Dv];
    /// all zeros for a row with no allowed key.</summary>
    public double[,,,] Out { get; }

    /// <summary>lse[b,h,i] = ln sum_j exp(s_ij) over the allowed keys (natural log), shape [B, Hq, Tq];
    /// -Infinity for a row with no allowed key.</summary>
    public double[,,] Lse { get; }
}
