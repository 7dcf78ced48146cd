namespace Reference.Kernels.Attention;

/// <summary>
/// The sizes of an attention call on flat row-major buffers: q [B, Hq, Tq, D], k [B, Hkv, Tk, D], v [B, Hkv, Tk, Dv],
/// out [B, Hq, Tq, Dv], lse [B, Hq, Tq].
/// </summary>
/// <param name="Batch">B, &gt;= 1.</param>
/// <param name="QueryHeads">Hq, &gt;= 1, a multiple of <paramref name="KvHeads"/>.</param>
/// <param name="KvHeads">Hkv, &gt;= 1; query head h reads kv head h / (Hq / Hkv).</param>
/// <param name="QueryLength">Tq, &gt;= 0.</param>
/// <param name="KeyLength">Tk, &gt;= 0.</param>
/// <param name="HeadDim">D, &gt;= 1.</param>
/// <param name="ValueDim">Dv, &gt;= 0.</param>
public sealed record AttentionShape(int Batch, int QueryHeads, int KvHeads, int QueryLength, int KeyLength, int HeadDim, int ValueDim)
{
    /// <summary>Elements of q: B*Hq*Tq*D.</summary>
    public long QueryElements => (long)Batch * QueryHeads * QueryLength * HeadDim;

    /// <summary>Elements of k: B*Hkv*Tk*D.</summary>
    public long KeyElements => (long)Batch * KvHeads * KeyLength * HeadDim;

    /// <summary>Elements of v: B*Hkv*Tk*Dv.</summary>
    public long ValueElements => (long)Batch * KvHeads * KeyLength * ValueDim;

    /// <summary>Elements of out: B*Hq*Tq*Dv.</summary>
    public long OutputElements => (long)Batch * QueryHeads * QueryLength * ValueDim;

    /// <summary>Elements of lse: B*Hq*Tq.</summary>
    public long LseElements => (long)Batch * QueryHeads * QueryLength;
}

/// <summary>
/// A boolean element mask on a flat row-major buffer of shape [Bm, Hm, Tqm, Tkm], each dimension either 1 (broadcast)
/// or the full size of [B, Hq, Tq, Tk]; true = allowed. The kernel counterpart of
/// <see cref="Reference.Attention.AttentionOptions.Mask"/>.
/// </summary>
public sealed class FlatMask
{
    private readonly bool[] values;

    /// <summary>Wraps a flat mask (copied).</summary>
    /// <param name="values">The entries, row-major, length Bm*Hm*Tqm*Tkm.</param>
    /// <param name="batch">Bm, &gt;= 1.</param>
    /// <param name="heads">Hm, &gt;= 1.</param>
    /// <param name="queries">Tqm, &gt;= 0.</param>
    /// <param name="keys">Tkm, &gt;= 0.</param>
    /// <exception cref="ArgumentException">The length does not match the shape or a size is out of range.</exception>
    public FlatMask(bool[] values, int batch, int heads, int queries, int keys)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (batch < 1 || heads < 1 || queries < 0 || keys < 0)
            throw new ArgumentException($"mask shape [{batch}, {heads}, {queries}, {keys}] is invalid", nameof(values));
        if (values.LongLength != (long)batch * heads * queries * keys)
            throw new ArgumentException($"mask has {values.LongLength} entries but shape [{batch}, {heads}, {queries}, {keys}]", nameof(values));
        this.values = (bool[])values.Clone();
        Batch = batch;
        Heads = heads;
        Queries = queries;
        Keys = keys;
    }

    /// <summary>Copies a [Bm, Hm, Tqm, Tkm] array into a flat mask.</summary>
    /// <param name="mask">The mask.</param>
    public static FlatMask FromArray(bool[,,,] mask)
    {
        ArgumentNullException.ThrowIfNull(mask);
        var flat = new bool[mask.Length];
        int n = 0;
        foreach (bool x in mask) flat[n++] = x;   // row-major enumeration
        return new FlatMask(flat, mask.GetLength(0), mask.GetLength(1), mask.GetLength(2), mask.GetLength(3));
    }

    /// <summary>Bm.</summary>
    public int Batch { get; }

    /// <summary>Hm.</summary>
    public int Heads { get; }

    /// <summary>Tqm.</summary>
    public int Queries { get; }

    /// <summary>Tkm.</summary>
    public int Keys { get; }

    /// <summary>The entry for (b, h, i, j) with broadcasting: a dimension of size 1 is read at 0.</summary>
    /// <param name="b">Batch index.</param>
    /// <param name="h">Query head index.</param>
    /// <param name="i">Query index.</param>
    /// <param name="j">Key index.</param>
    public bool this[int b, int h, int i, int j] =>
        values[(((long)(Batch == 1 ? 0 : b) * Heads + (Heads == 1 ? 0 : h)) * Queries + (Queries == 1 ? 0 : i)) * Keys
               + (Keys == 1 ? 0 : j)];
}

/// <summary>Options of <see cref="FlashAttention"/>. The masking options mean what they mean in
/// <see cref="Reference.Attention.AttentionOptions"/>; all given restrictions apply at once.</summary>
public sealed record FlashAttentionOptions
{
    /// <summary>Causal masking, bottom-right aligned: key j allowed iff j &lt;= i + Tk - Tq. Default false.</summary>
    public bool Causal { get; init; }

    /// <summary>Where query row i sits when Tq != Tk: bottom-right (default, p_i = i + Tk - Tq) or top-left (p_i = i).</summary>
    public Reference.Attention.CausalAlignment CausalAlign { get; init; } = Reference.Attention.CausalAlignment.BottomRight;

    /// <summary>Left window: j &gt;= p_i - WindowLeft; -1 (default) unbounded.</summary>
    public int WindowLeft { get; init; } = -1;

    /// <summary>Right window: j &lt;= p_i + WindowRight; -1 (default) unbounded.</summary>
    public int WindowRight { get; init; } = -1;

    /// <summary>Score scale; null (default) means 1/sqrt(D), computed in float32.</summary>
    public float? Scale { get; init; }

    /// <summary>Softcap c &gt; 0 replaces s by c*tanh(s/c) before masking; 0 (default) means none.</summary>
    public float Softcap { get; init; }

    /// <summary>Query tile size when no <see cref="BlockMask"/> is given, &gt;= 1. Default 64.</summary>
    public int BlockQ { get; init; } = 64;

    /// <summary>Key tile size when no <see cref="BlockMask"/> is given, &gt;= 1. Default 64.</summary>
    public int BlockK { get; init; } = 64;

    /// <summary>An element mask, broadcastable to [B, Hq, Tq, Tk]; with a <see cref="BlockMask"/> it is consulted only
    /// inside partial tiles. Null (default) means none.</summary>
    public FlatMask? Mask { get; init; }

    /// <summary>A FlexAttention block mask. When given, its tiles are the kernel's tiles (BlockQ and BlockK above are
    /// not used), absent tiles are skipped and full tiles skip the element mask. Null (default) means every tile.</summary>
    public Reference.Attention.BlockMask? BlockMask { get; init; }

    /// <summary>Whether large calls may run on several threads (over batch, head and query tile; or also split for
    /// <see cref="FlashAttention.SplitKv(ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, AttentionShape, FlashAttentionOptions, int, Span{float}, Span{float})"/>).
    /// The result does not depend on it. Default true.</summary>
    public bool Parallel { get; init; } = true;
}

/// <summary>The outputs of a kernel call, as flat float32 arrays.</summary>
/// <param name="Out">out, [B, Hq, Tq, Dv] row-major.</param>
/// <param name="Lse">lse, [B, Hq, Tq] row-major (natural log; -Infinity for a row with no allowed key).</param>
public sealed record FlashAttentionResult(float[] Out, float[] Lse);
