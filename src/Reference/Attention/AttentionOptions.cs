namespace Reference.Attention;

/// <summary>Where query row i sits relative to the keys when Tq != Tk (the causal rule and the window use it).</summary>
public enum CausalAlignment
{
    /// <summary>p_i = i + Tk - Tq: the last query row lines up with the last key (FlashAttention, the default).</summary>
    BottomRight,
    /// <summary>p_i = i: the first query row lines up with the first key (PyTorch SDPA's <c>is_causal</c>,
    /// <c>torch.tril</c> of a [Tq, Tk] matrix).</summary>
    TopLeft,
}

/// <summary>Query positions under a <see cref="CausalAlignment"/>.</summary>
public static class CausalAlignments
{
    /// <summary>The absolute position p_i of query row i: i + Tk - Tq (bottom-right) or i (top-left).</summary>
    /// <param name="i">The query row.</param>
    /// <param name="tq">Tq, the number of queries.</param>
    /// <param name="tk">Tk, the number of keys.</param>
    /// <param name="alignment">The alignment.</param>
    public static long QueryPosition(int i, int tq, int tk, CausalAlignment alignment) =>
        alignment == CausalAlignment.TopLeft ? i : (long)i + tk - tq;

    /// <summary>Parses the CLI spelling <c>bottom-right</c> or <c>top-left</c>.</summary>
    /// <param name="text">The parameter value.</param>
    /// <exception cref="ArgumentException">Any other text.</exception>
    public static CausalAlignment Parse(string text) => text switch
    {
        "bottom-right" => CausalAlignment.BottomRight,
        "top-left" => CausalAlignment.TopLeft,
        _ => throw new ArgumentException($"causal_align must be bottom-right or top-left, got '{text}'", nameof(text)),
    };
}

/// <summary>
/// Options of dense attention (<see cref="DenseAttention"/>), the CLI algorithm <c>attention</c>.
/// Every restriction that is given applies at once: a key is allowed when the causal rule, the window and the
/// explicit mask all allow it (proofs/attention.md, Definition: Masks and empty rows).
/// </summary>
/// <remarks>
/// Positions are bottom-right aligned as in FlashAttention by default: query row i sits at absolute position
/// p_i = i + Tk - Tq, so the last query row lines up with the last key. With Tq = Tk this is p_i = i.
/// <see cref="CausalAlign"/> = <see cref="CausalAlignment.TopLeft"/> uses p_i = i instead (PyTorch's convention).
/// </remarks>
public sealed record AttentionOptions
{
    /// <summary>Causal masking: key j is allowed only when j &lt;= p_i. Equal to the window (WindowLeft = -1, WindowRight = 0).
    /// Default false.</summary>
    public bool Causal { get; init; }

    /// <summary>Where query row i sits when Tq != Tk, for the causal rule and the window: bottom-right (default,
    /// p_i = i + Tk - Tq) or top-left (p_i = i).</summary>
    public CausalAlignment CausalAlign { get; init; } = CausalAlignment.BottomRight;

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
