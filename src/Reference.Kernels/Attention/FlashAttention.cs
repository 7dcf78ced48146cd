using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Reference.Attention;
using Reference.Numerics;

namespace Reference.Kernels.Attention;

/// <summary>
/// Tiled attention with an online softmax (FlashAttention-2) in float32 on flat row-major buffers, with causal and
/// sliding-window masks, grouped-query heads, an element mask, a FlexAttention <see cref="BlockMask"/> walk, and a
/// split-KV ("flash-decoding") path. The optimized twin of <see cref="DenseAttention"/> and
/// <see cref="BlockSparseAttention"/>.
/// </summary>
/// <remarks>
/// <para>Shapes: q [B, Hq, Tq, D], k [B, Hkv, Tk, D], v [B, Hkv, Tk, Dv], out [B, Hq, Tq, Dv], lse [B, Hq, Tq]; see
/// <see cref="AttentionShape"/>. Query head h reads kv head h / (Hq / Hkv).</para>
/// <para>Algorithm, for each (b, h) and query tile of BlockQ rows: keep per row a running maximum m, a running sum l
/// and an unnormalized accumulator a[Dv]; for each visited key tile compute the scores s_j of the row against the
/// tile (masked entries -Inf), then</para>
/// <code>
/// m' = max(m, max_j s_j);   alpha = exp(m - m');   p_j = exp(s_j - m')
/// l  = alpha*l + sum_j p_j;  a = alpha*a + sum_j p_j v_j;  m = m'
/// out = a / l;  lse = m + ln l          (a row that saw no allowed key: out 0, lse -Inf)
/// </code>
/// <para>In exact arithmetic this equals the two-pass softmax (proofs/attention.md, attention.online-softmax-exact).
/// Key tiles that the causal/window rule excludes for a row are skipped for that row; with a block mask, absent tiles
/// are never read and full tiles skip the element mask. All arithmetic is float32; half and bfloat16 inputs are
/// widened exactly to float32 first. Dot products, exp, tanh and the value update use
/// <see cref="TensorPrimitives"/>. Work items are (b, h, query tile) (and the split, for <c>SplitKv</c>); each is
/// computed independently in a fixed order, so the result is the same with and without threads.</para>
/// <para>Limits: float32 has no headroom beyond its range, so inputs whose scores |scale * q.k| overflow float32
/// (about 3.4e38) give Inf/NaN here while the double reference does not; FlashAttention has the same limit.</para>
/// <para>Split-KV: the key tiles are cut into contiguous groups; each group yields a partial (out_s, lse_s) and the
/// partials are merged by lse = ln sum_s exp(lse_s), out = sum_s exp(lse_s - lse) out_s
/// (proofs/attention.md, attention.split-kv-combine).</para>
/// <para>Sources: Dao 2023, "FlashAttention-2"; Dao et al. 2023, "Flash-Decoding for long-context inference";
/// Milakov and Gimelshein 2018, "Online normalizer calculation for softmax"; PyTorch FlexAttention (block masks).</para>
/// </remarks>
public static unsafe class FlashAttention
{
    /// <summary>Below this many multiply-adds (B*Hq*Tq*Tk*(D+Dv)) a call runs on one thread.</summary>
    private const long ParallelThreshold = 1L << 18;

    /// <summary>Attention of float32 inputs, written into <paramref name="output"/> and <paramref name="lse"/>.</summary>
    /// <param name="q">Queries, [B, Hq, Tq, D] row-major, finite.</param>
    /// <param name="k">Keys, [B, Hkv, Tk, D] row-major, finite.</param>
    /// <param name="v">Values, [B, Hkv, Tk, Dv] row-major, finite.</param>
    /// <param name="shape">The sizes.</param>
    /// <param name="options">Masks, scale, softcap, tiles.</param>
    /// <param name="output">Receives out, [B, Hq, Tq, Dv].</param>
    /// <param name="lse">Receives lse, [B, Hq, Tq].</param>
    /// <exception cref="ArgumentException">A length or size does not match, an input is NaN or infinite (the message
    /// names the array and the index), a mask does not fit, or an option is out of range.</exception>
    public static void Forward(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, AttentionShape shape,
                               FlashAttentionOptions options, Span<float> output, Span<float> lse) =>
        Run(q, k, v, shape, options, splits: 1, TiledSupported, output, lse);

    /// <summary>Attention of float16 inputs: widened exactly to float32, computed and written in float32.</summary>
    /// <param name="q">Queries, [B, Hq, Tq, D] row-major, finite.</param>
    /// <param name="k">Keys, [B, Hkv, Tk, D] row-major, finite.</param>
    /// <param name="v">Values, [B, Hkv, Tk, Dv] row-major, finite.</param>
    /// <param name="shape">The sizes.</param>
    /// <param name="options">Masks, scale, softcap, tiles.</param>
    /// <param name="output">Receives out, [B, Hq, Tq, Dv].</param>
    /// <param name="lse">Receives lse, [B, Hq, Tq].</param>
    public static void Forward(ReadOnlySpan<Half> q, ReadOnlySpan<Half> k, ReadOnlySpan<Half> v, AttentionShape shape,
                               FlashAttentionOptions options, Span<float> output, Span<float> lse) =>
        Forward(Widen(q), Widen(k), Widen(v), shape, options, output, lse);

    /// <summary>Attention of bfloat16 inputs: widened exactly to float32, computed and written in float32.</summary>
    /// <param name="q">Queries, [B, Hq, Tq, D] row-major, finite.</param>
    /// <param name="k">Keys, [B, Hkv, Tk, D] row-major, finite.</param>
    /// <param name="v">Values, [B, Hkv, Tk, Dv] row-major, finite.</param>
    /// <param name="shape">The sizes.</param>
    /// <param name="options">Masks, scale, softcap, tiles.</param>
    /// <param name="output">Receives out, [B, Hq, Tq, Dv].</param>
    /// <param name="lse">Receives lse, [B, Hq, Tq].</param>
    public static void Forward(ReadOnlySpan<BFloat16> q, ReadOnlySpan<BFloat16> k, ReadOnlySpan<BFloat16> v, AttentionShape shape,
                               FlashAttentionOptions options, Span<float> output, Span<float> lse) =>
        Forward(Widen(q), Widen(k), Widen(v), shape, options, output, lse);

    /// <summary>
    /// Split-KV attention (flash-decoding): the key tiles are cut into <paramref name="splits"/> contiguous groups of
    /// equal tile count (the last may be shorter; more splits than tiles are clamped), each group is attended
    /// separately, and the partial results are merged by their log-sum-exp. Meant for decoding (small Tq, long Tk), but
    /// valid for any shape and any mask the forward path takes.
    /// </summary>
    /// <param name="q">Queries, [B, Hq, Tq, D] row-major, finite.</param>
    /// <param name="k">Keys, [B, Hkv, Tk, D] row-major, finite.</param>
    /// <param name="v">Values, [B, Hkv, Tk, Dv] row-major, finite.</param>
    /// <param name="shape">The sizes.</param>
    /// <param name="options">Masks, scale, softcap, tiles.</param>
    /// <param name="splits">The number of key groups, &gt;= 1.</param>
    /// <param name="output">Receives out, [B, Hq, Tq, Dv].</param>
    /// <param name="lse">Receives lse, [B, Hq, Tq].</param>
    public static void SplitKv(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, AttentionShape shape,
                               FlashAttentionOptions options, int splits, Span<float> output, Span<float> lse)
    {
        if (splits < 1) throw new ArgumentException($"splits must be >= 1, got {splits}", nameof(splits));
        Run(q, k, v, shape, options, splits, TiledSupported, output, lse);
    }

    /// <summary>Split-KV attention of float16 inputs (widened exactly to float32).</summary>
    /// <param name="q">Queries, [B, Hq, Tq, D] row-major, finite.</param>
    /// <param name="k">Keys, [B, Hkv, Tk, D] row-major, finite.</param>
    /// <param name="v">Values, [B, Hkv, Tk, Dv] row-major, finite.</param>
    /// <param name="shape">The sizes.</param>
    /// <param name="options">Masks, scale, softcap, tiles.</param>
    /// <param name="splits">The number of key groups, &gt;= 1.</param>
    /// <param name="output">Receives out, [B, Hq, Tq, Dv].</param>
    /// <param name="lse">Receives lse, [B, Hq, Tq].</param>
    public static void SplitKv(ReadOnlySpan<Half> q, ReadOnlySpan<Half> k, ReadOnlySpan<Half> v, AttentionShape shape,
                               FlashAttentionOptions options, int splits, Span<float> output, Span<float> lse) =>
        SplitKv(Widen(q), Widen(k), Widen(v), shape, options, splits, output, lse);

    /// <summary>Split-KV attention of bfloat16 inputs (widened exactly to float32).</summary>
    /// <param name="q">Queries, [B, Hq, Tq, D] row-major, finite.</param>
    /// <param name="k">Keys, [B, Hkv, Tk, D] row-major, finite.</param>
    /// <param name="v">Values, [B, Hkv, Tk, Dv] row-major, finite.</param>
    /// <param name="shape">The sizes.</param>
    /// <param name="options">Masks, scale, softcap, tiles.</param>
    /// <param name="splits">The number of key groups, &gt;= 1.</param>
    /// <param name="output">Receives out, [B, Hq, Tq, Dv].</param>
    /// <param name="lse">Receives lse, [B, Hq, Tq].</param>
    public static void SplitKv(ReadOnlySpan<BFloat16> q, ReadOnlySpan<BFloat16> k, ReadOnlySpan<BFloat16> v, AttentionShape shape,
                               FlashAttentionOptions options, int splits, Span<float> output, Span<float> lse) =>
        SplitKv(Widen(q), Widen(k), Widen(v), shape, options, splits, output, lse);

    /// <summary>Convenience form of <c>Forward</c> on arrays: allocates and returns out and lse.</summary>
    /// <param name="q">Queries, [B, Hq, Tq, D] row-major, finite.</param>
    /// <param name="k">Keys, [B, Hkv, Tk, D] row-major, finite.</param>
    /// <param name="v">Values, [B, Hkv, Tk, Dv] row-major, finite.</param>
    /// <param name="shape">The sizes.</param>
    /// <param name="options">Masks, scale, softcap, tiles.</param>
    /// <returns>out [B, Hq, Tq, Dv] and lse [B, Hq, Tq], flat.</returns>
    public static FlashAttentionResult Compute(float[] q, float[] k, float[] v, AttentionShape shape, FlashAttentionOptions options) =>
        ComputeSplitKv(q, k, v, shape, options, 1);

    /// <summary>Convenience form of <c>SplitKv</c> on arrays: allocates and returns out and lse.</summary>
    /// <param name="q">Queries, [B, Hq, Tq, D] row-major, finite.</param>
    /// <param name="k">Keys, [B, Hkv, Tk, D] row-major, finite.</param>
    /// <param name="v">Values, [B, Hkv, Tk, Dv] row-major, finite.</param>
    /// <param name="shape">The sizes.</param>
    /// <param name="options">Masks, scale, softcap, tiles.</param>
    /// <param name="splits">The number of key groups, &gt;= 1 (1 is the plain forward path).</param>
    /// <returns>out [B, Hq, Tq, Dv] and lse [B, Hq, Tq], flat.</returns>
    public static FlashAttentionResult ComputeSplitKv(float[] q, float[] k, float[] v, AttentionShape shape,
                                                      FlashAttentionOptions options, int splits)
    {
        ArgumentNullException.ThrowIfNull(shape);
        var output = new float[checked((int)shape.OutputElements)];
        var lse = new float[checked((int)shape.LseElements)];
        SplitKv(q, k, v, shape, options, splits, output, lse);
        return new FlashAttentionResult(output, lse);
    }

    /// <summary>Whether this machine runs the tiled Vector512 path (<see cref="FlashAttentionTiles"/>); elsewhere every
    /// call takes the row-by-row path (<see cref="TensorPrimitives"/>, which uses the widest vectors there are).</summary>
    internal static bool TiledSupported => Vector512.IsHardwareAccelerated;

    /// <summary><c>ComputeSplitKv</c> on a chosen path, so that tests run both on one machine: <paramref name="tiled"/>
    /// true takes the tiled path (only where <see cref="TiledSupported"/>), false the row-by-row path.</summary>
    internal static FlashAttentionResult ComputeOnPath(float[] q, float[] k, float[] v, AttentionShape shape,
                                                       FlashAttentionOptions options, int splits, bool tiled)
    {
        ArgumentNullException.ThrowIfNull(shape);
        if (splits < 1) throw new ArgumentException($"splits must be >= 1, got {splits}", nameof(splits));
        if (tiled && !TiledSupported) throw new PlatformNotSupportedException("the tiled path needs Vector512 hardware");
        var output = new float[checked((int)shape.OutputElements)];
        var lse = new float[checked((int)shape.LseElements)];
        Run(q, k, v, shape, options, splits, tiled, output, lse);
        return new FlashAttentionResult(output, lse);
    }

    // ------------------------------------------------------------------------------------------------------------
    // Implementation
    // ------------------------------------------------------------------------------------------------------------

    /// <summary>Everything a work item needs: sizes, resolved options and the addresses of the pinned buffers.</summary>
    private sealed class Plan
    {
        public required AttentionShape Shape;
        public required int BlockQ, BlockK, QueryTiles, KeyTiles, Splits, TilesPerSplit;
        public required float Scale, Softcap;
        public required bool Causal;
        public required Reference.Attention.CausalAlignment CausalAlign;
        public required int WindowLeft, WindowRight;
        public required FlatMask? Mask;
        public required BlockMask? BlockMask;
        public nint Q, K, V;
        public nint Out, Lse;        // where the work items write: the final buffers, or the per-split partials
        public bool Tiled;           // the Vector512 tiled path (FlashAttentionTiles) instead of the row-by-row one
        public int Ldk;              // tiled: packed key tile stride, BlockK rounded up to 16
        public nint PackedK;         // tiled: K^T per (b, kv head, key tile), [B, Hkv, KeyTiles, D, Ldk]
    }

    /// <summary>Per-thread scratch, sized for one query tile and one key tile.</summary>
    private sealed class Scratch(int blockQ, int blockK, int valueDim, int keyTiles, int ldk)
    {
        public readonly float[] Tile = new float[ldk == 0 ? 0 : (long)blockQ * ldk];   // tiled: S, then P, [BlockQ, Ldk]
        public readonly int[] From = new int[blockQ];                                    // tiled: allowed keys of each row
        public readonly int[] Count = new int[blockQ];
        public readonly float[] Scores = new float[blockK];
        public readonly float[] Max = new float[blockQ];
        public readonly float[] Sum = new float[blockQ];
        public readonly float[] Acc = new float[blockQ * valueDim];
        public readonly int[] Tiles = new int[Math.Max(keyTiles, 1)];
        public readonly bool[] TileFull = new bool[Math.Max(keyTiles, 1)];
    }

    private static void Run(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, AttentionShape shape,
                            FlashAttentionOptions options, int splits, bool tiled, Span<float> output, Span<float> lse)
    {
        // 1. Validate and resolve the options.
        Plan plan = Prepare(q, k, v, shape, options, splits, output, lse);
        var s = plan.Shape;
        int rows = checked((int)s.LseElements);
        plan.Tiled = tiled && s.QueryLength > 0 && s.KeyLength > 0;
        plan.Ldk = plan.Tiled ? FlashAttentionTiles.Padded(plan.BlockK) : 0;
        float[] packed = plan.Tiled ? GC.AllocateUninitializedArray<float>(checked(s.Batch * s.KvHeads * plan.KeyTiles * s.HeadDim * plan.Ldk)) : [];

        fixed (float* pq = q, pk = k, pv = v, po = output, pl = lse, pp = packed)
        {
            plan.Q = (nint)pq;
            plan.K = (nint)pk;
            plan.V = (nint)pv;
            plan.PackedK = (nint)pp;
            if (plan.Tiled) PackKeys(plan, options.Parallel);
            if (plan.Splits == 1)
            {
                // 2a. One split: the work items write the final buffers directly.
                plan.Out = (nint)po;
                plan.Lse = (nint)pl;
                RunItems(plan, options.Parallel);
                return;
            }

            // 2b. Several splits: partial results [splits, B, Hq, Tq, Dv] and [splits, B, Hq, Tq], then the merge.
            var partialOut = new float[(long)plan.Splits * s.OutputElements];
            var partialLse = new float[(long)plan.Splits * rows];
            fixed (float* ppo = partialOut, ppl = partialLse)
            {
                plan.Out = (nint)ppo;
                plan.Lse = (nint)ppl;
                RunItems(plan, options.Parallel);
            }
            Combine(partialOut, partialLse, plan.Splits, rows, s.ValueDim, output, lse);
        }
    }

    /// <summary>Runs every (split, b, h, query tile) item, on several threads when the call is large.</summary>
    private static void RunItems(Plan plan, bool allowParallel)
    {
        var s = plan.Shape;
        long items = (long)plan.Splits * s.Batch * s.QueryHeads * plan.QueryTiles;
        long work = (long)s.Batch * s.QueryHeads * s.QueryLength * s.KeyLength * (s.HeadDim + s.ValueDim);
        if (items == 0) return;
        if (!allowParallel || items == 1 || work < ParallelThreshold)
        {
            var scratch = NewScratch(plan);
            for (long item = 0; item < items; item++) RunItem(plan, item, scratch);
            return;
        }
        Parallel.For(0L, items, () => NewScratch(plan), (item, _, scratch) =>
        {
            RunItem(plan, item, scratch);
            return scratch;
        }, _ => { });
    }

    private static Scratch NewScratch(Plan plan) => new(plan.BlockQ, plan.BlockK, plan.Shape.ValueDim, plan.KeyTiles, plan.Ldk);

    /// <summary>Tiled path: packs every key tile of every (b, kv head) as K^T (zero-padded to Ldk columns).</summary>
    private static void PackKeys(Plan plan, bool allowParallel)
    {
        var s = plan.Shape;
        int heads = s.Batch * s.KvHeads;
        long tileFloats = (long)s.HeadDim * plan.Ldk;
        void PackHead(int bh)
        {
            float* k = (float*)plan.K + (long)bh * s.KeyLength * s.HeadDim;
            for (int t = 0; t < plan.KeyTiles; t++)
            {
                int j0 = t * plan.BlockK, cols = Math.Min(plan.BlockK, s.KeyLength - j0);
                FlashAttentionTiles.PackKeys(k, j0, cols, s.HeadDim, (float*)plan.PackedK + ((long)bh * plan.KeyTiles + t) * tileFloats, plan.Ldk);
            }
        }
        if (allowParallel && heads > 1 && s.KeyElements >= ParallelThreshold) System.Threading.Tasks.Parallel.For(0, heads, PackHead);
        else for (int bh = 0; bh < heads; bh++) PackHead(bh);
    }

    /// <summary>Decodes an item index as (split, b, h, query tile), query tile fastest, and runs it.</summary>
    private static void RunItem(Plan plan, long item, Scratch scratch)
    {
        var s = plan.Shape;
        int r = (int)(item % plan.QueryTiles);
        long rest = item / plan.QueryTiles;
        int h = (int)(rest % s.QueryHeads);
        rest /= s.QueryHeads;
        int b = (int)(rest % s.Batch);
        int split = (int)(rest / s.Batch);
        int firstTile = split * plan.TilesPerSplit;
        int endTile = Math.Min(plan.KeyTiles, firstTile + plan.TilesPerSplit);
        if (plan.Tiled) TiledQueryTile(plan, split, b, h, r, firstTile, endTile, scratch);
        else QueryTile(plan, split, b, h, r, firstTile, endTile, scratch);
    }

    /// <summary>
    /// One query tile of (b, h) against key tiles [firstTile, endTile): the online-softmax loop. Writes the normalized
    /// rows and their lse into the item's output (partial buffer <paramref name="split"/> when splitting).
    /// </summary>
    private static void QueryTile(Plan plan, int split, int b, int h, int r, int firstTile, int endTile, Scratch scratch)
    {
        var s = plan.Shape;
        int d = s.HeadDim, dv = s.ValueDim, tq = s.QueryLength, tk = s.KeyLength;
        int kvh = h / (s.QueryHeads / s.KvHeads);
        int i0 = r * plan.BlockQ, rows = Math.Min(plan.BlockQ, tq - i0);

        var q = new ReadOnlySpan<float>((float*)plan.Q, checked((int)s.QueryElements));
        var k = new ReadOnlySpan<float>((float*)plan.K, checked((int)s.KeyElements));
        var v = new ReadOnlySpan<float>((float*)plan.V, checked((int)s.ValueElements));
        long rowBase = ((long)split * s.Batch * s.QueryHeads + (long)b * s.QueryHeads + h) * tq + i0;   // first row of the tile
        var outRows = new Span<float>((float*)plan.Out + rowBase * dv, rows * dv);                      // [rows, Dv]
        var lseRows = new Span<float>((float*)plan.Lse + rowBase, rows);                                // [rows]
        long kvBase = ((long)b * s.KvHeads + kvh) * tk;                                                  // row of key 0

        // 1. Running state per row: m = -Inf, l = 0, a = 0.
        Span<float> m = scratch.Max.AsSpan(0, rows), l = scratch.Sum.AsSpan(0, rows), acc = scratch.Acc.AsSpan(0, rows * dv);
        m.Fill(float.NegativeInfinity);
        l.Clear();
        acc.Clear();

        // 2. The key tiles to visit, ascending (listed ones only, with a block mask).
        int tileCount = VisitedTiles(plan, b, h, r, firstTile, endTile, scratch.Tiles, scratch.TileFull);

        for (int t = 0; t < tileCount; t++)
        {
            int j0 = scratch.Tiles[t] * plan.BlockK, cols = Math.Min(plan.BlockK, tk - j0);
            bool consultMask = plan.Mask is not null && !scratch.TileFull[t];
            Span<float> scores = scratch.Scores.AsSpan(0, cols);                                         // [cols] of the tile

            for (int row = 0; row < rows; row++)
            {
                int i = i0 + row;
                // 3. The key range the causal/window rule allows this row, clipped to the tile; skip if empty.
                long position = Reference.Attention.CausalAlignments.QueryPosition(i, tq, tk, plan.CausalAlign);
                long lo = plan.WindowLeft >= 0 ? Math.Max(j0, position - plan.WindowLeft) : j0;
                long hi = j0 + cols - 1;
                if (plan.Causal) hi = Math.Min(hi, position);
                if (plan.WindowRight >= 0) hi = Math.Min(hi, position + plan.WindowRight);
                if (lo > hi) continue;

                // 4. Scores of the allowed range: s_j = scale * q_i . k_j, softcapped; -Inf elsewhere.
                var qRow = q.Slice((int)((((long)b * s.QueryHeads + h) * tq + i) * d), d);
                int from = (int)(lo - j0), count = (int)(hi - lo + 1);
                Span<float> live = scores.Slice(from, count);                  // only the allowed range is computed
                for (int n = 0; n < count; n++)
                    live[n] = TensorPrimitives.Dot(qRow, k.Slice((int)((kvBase + lo + n) * d), d));
                TensorPrimitives.Multiply(live, plan.Scale, live);
                if (plan.Softcap > 0)
                {
                    TensorPrimitives.Divide(live, plan.Softcap, live);
                    // MathF.Tanh, not TensorPrimitives.Tanh: the vectorized tanh is accurate only to about u in
                    // absolute terms (tanh(0) = -2^-24), which softcap scales to a score error of softcap u beyond
                    // the calibrated baseline's rounding floors (issue 12; seed 240993143 of the registry property).
                    for (int n = 0; n < count; n++) live[n] = MathF.Tanh(live[n]);
                    TensorPrimitives.Multiply(live, plan.Softcap, live);
                }
                if (consultMask)
                {
                    for (int n = 0; n < count; n++)
                        if (!plan.Mask![b, h, i, (int)lo + n]) live[n] = float.NegativeInfinity;
                }

                // 5. Online softmax update: m' = max(m, max s), alpha = exp(m - m'), p = exp(s - m').
                float tileMax = TensorPrimitives.Max(live);
                if (float.IsNegativeInfinity(tileMax)) continue;          // every key of the range masked
                float mOld = m[row], mNew = Math.Max(mOld, tileMax);
                float alpha = MathF.Exp(mOld - mNew);                     // exp(-Inf) = 0 on the first visited tile
                TensorPrimitives.Subtract(live, mNew, live);
                TensorPrimitives.Exp(live, live);                         // masked entries: exp(-Inf) = 0
                l[row] = alpha * l[row] + TensorPrimitives.Sum(live);

                // 6. a = alpha * a + sum_j p_j v_j.
                Span<float> accRow = acc.Slice(row * dv, dv);
                if (alpha != 1f) TensorPrimitives.Multiply(accRow, alpha, accRow);
                for (int n = 0; n < count; n++)
                {
                    if (live[n] != 0f)
                        TensorPrimitives.MultiplyAdd(v.Slice((int)((kvBase + lo + n) * dv), dv), live[n], accRow, accRow);
                }

                m[row] = mNew;
            }
        }

        // 7. Finish: out = a / l, lse = m + ln l; a row that met no allowed key gives 0 and -Inf.
        for (int row = 0; row < rows; row++)
        {
            Span<float> outRow = outRows.Slice(row * dv, dv);
            if (float.IsNegativeInfinity(m[row]))
            {
                outRow.Clear();
                lseRows[row] = float.NegativeInfinity;
                continue;
            }
            TensorPrimitives.Divide(acc.Slice(row * dv, dv), l[row], outRow);
            lseRows[row] = m[row] + MathF.Log(l[row]);
        }
    }

    /// <summary>
    /// Tiled path of <see cref="QueryTile"/>: the same online-softmax loop, one key tile at a time for the whole query
    /// tile: S = Q_tile K_tile^T by a register-tiled micro-kernel over the packed K^T, then per row the scale, softcap,
    /// element mask and causal/window range (-Inf outside), the running max and p = exp(s - m') with a vectorized exp,
    /// and finally A = alpha A + P V_tile by a second micro-kernel. Key tiles in which no row has an allowed key are skipped.
    /// </summary>
    private static void TiledQueryTile(Plan plan, int split, int b, int h, int r, int firstTile, int endTile, Scratch scratch)
    {
        var s = plan.Shape;
        int d = s.HeadDim, dv = s.ValueDim, tq = s.QueryLength, tk = s.KeyLength, ldk = plan.Ldk;
        int kvh = h / (s.QueryHeads / s.KvHeads);
        int i0 = r * plan.BlockQ, rows = Math.Min(plan.BlockQ, tq - i0);
        long rowBase = ((long)split * s.Batch * s.QueryHeads + (long)b * s.QueryHeads + h) * tq + i0;   // first row of the tile
        var outRows = new Span<float>((float*)plan.Out + rowBase * dv, rows * dv);                      // [rows, Dv]
        var lseRows = new Span<float>((float*)plan.Lse + rowBase, rows);                                // [rows]
        long kvHead = (long)b * s.KvHeads + kvh;
        float* qTile = (float*)plan.Q + (((long)b * s.QueryHeads + h) * tq + i0) * d;                    // [rows, D]
        float* vHead = (float*)plan.V + kvHead * tk * dv;                                                // [Tk, Dv]
        float* packedHead = (float*)plan.PackedK + kvHead * plan.KeyTiles * d * ldk;                     // [KeyTiles, D, Ldk]

        // 1. Running state per row: m = -Inf, l = 0, a = 0.
        Span<float> m = scratch.Max.AsSpan(0, rows), l = scratch.Sum.AsSpan(0, rows), acc = scratch.Acc.AsSpan(0, rows * dv);
        m.Fill(float.NegativeInfinity);
        l.Clear();
        acc.Clear();
        int tileCount = VisitedTiles(plan, b, h, r, firstTile, endTile, scratch.Tiles, scratch.TileFull);

        fixed (float* tile = scratch.Tile, pAcc = scratch.Acc)
        {
            for (int t = 0; t < tileCount; t++)
            {
                int j0 = scratch.Tiles[t] * plan.BlockK, cols = Math.Min(plan.BlockK, tk - j0);
                bool consultMask = plan.Mask is not null && !scratch.TileFull[t];

                // 2. The key range the causal/window rule allows each row, within the tile; skip the tile if all are empty.
                bool any = false;
                for (int row = 0; row < rows; row++)
                {
                    long position = Reference.Attention.CausalAlignments.QueryPosition(i0 + row, tq, tk, plan.CausalAlign);
                    long lo = plan.WindowLeft >= 0 ? Math.Max(j0, position - plan.WindowLeft) : j0;
                    long hi = j0 + cols - 1;
                    if (plan.Causal) hi = Math.Min(hi, position);
                    if (plan.WindowRight >= 0) hi = Math.Min(hi, position + plan.WindowRight);
                    scratch.From[row] = (int)(lo - j0);
                    scratch.Count[row] = lo > hi ? 0 : (int)(hi - lo + 1);
                    any |= lo <= hi;
                }
                if (!any) continue;

                // 3. S[rows, Ldk] = Q_tile K_tile^T (unscaled).
                FlashAttentionTiles.Scores(qTile, rows, d, packedHead + (long)scratch.Tiles[t] * d * ldk, ldk, tile);

                for (int row = 0; row < rows; row++)
                {
                    Span<float> scores = new(tile + (long)row * ldk, ldk);
                    int from = scratch.From[row], count = scratch.Count[row];
                    if (count == 0)
                    {
                        scores.Clear();                                       // p = 0: the row is unchanged by this tile
                        continue;
                    }

                    // 4. s_j = scale * q_i . k_j, softcapped, element-masked on the allowed range; -Inf elsewhere.
                    float* sRow = tile + (long)row * ldk;
                    float tileMax;
                    if (plan.Softcap > 0 || consultMask)
                    {
                        Span<float> live = scores.Slice(from, count);
                        TensorPrimitives.Multiply(live, plan.Scale, live);
                        if (plan.Softcap > 0)
                        {
                            TensorPrimitives.Divide(live, plan.Softcap, live);
                            for (int n = 0; n < count; n++) live[n] = MathF.Tanh(live[n]);   // MathF.Tanh: see QueryTile
                            TensorPrimitives.Multiply(live, plan.Softcap, live);
                        }
                        if (consultMask)
                        {
                            for (int n = 0; n < count; n++)
                                if (!plan.Mask![b, h, i0 + row, j0 + from + n]) live[n] = float.NegativeInfinity;
                        }
                        scores[..from].Fill(float.NegativeInfinity);
                        scores[(from + count)..].Fill(float.NegativeInfinity);
                        tileMax = FlashAttentionTiles.Max(sRow, ldk);
                    }
                    else
                    {
                        tileMax = FlashAttentionTiles.ScaleRangeMax(sRow, ldk, plan.Scale, from, from + count);   // fused
                    }

                    // 5. Online softmax update: m' = max(m, max s), alpha = exp(m - m'), p = exp(s - m').
                    if (float.IsNegativeInfinity(tileMax))
                    {
                        scores.Clear();                                       // every key of the range masked
                        continue;
                    }
                    float mOld = m[row], mNew = Math.Max(mOld, tileMax);
                    float alpha = MathF.Exp(mOld - mNew);                     // exp(-Inf) = 0 on the first visited tile
                    l[row] = alpha * l[row] + FlashAttentionTiles.ExpSum(sRow, ldk, mNew);
                    if (alpha != 1f)
                    {
                        Span<float> accRow = acc.Slice(row * dv, dv);
                        TensorPrimitives.Multiply(accRow, alpha, accRow);
                    }
                    m[row] = mNew;
                }

                // 6. A += P V_tile.
                FlashAttentionTiles.Accumulate(tile, ldk, rows, cols, vHead + (long)j0 * dv, dv, pAcc);
            }
        }

        // 7. Finish: out = a / l, lse = m + ln l; a row that met no allowed key gives 0 and -Inf.
        for (int row = 0; row < rows; row++)
        {
            Span<float> outRow = outRows.Slice(row * dv, dv);
            if (float.IsNegativeInfinity(m[row]))
            {
                outRow.Clear();
                lseRows[row] = float.NegativeInfinity;
                continue;
            }
            TensorPrimitives.Divide(acc.Slice(row * dv, dv), l[row], outRow);
            lseRows[row] = m[row] + MathF.Log(l[row]);
        }
    }

    /// <summary>
    /// The key tiles a query tile visits within [firstTile, endTile), ascending, with a flag for full tiles. Without a
    /// block mask: every tile, none full (the element mask, if any, is consulted everywhere). With one: the merge of
    /// the partial and full lists.
    /// </summary>
    private static int VisitedTiles(Plan plan, int b, int h, int r, int firstTile, int endTile, int[] tiles, bool[] full)
    {
        int n = 0;
        var mask = plan.BlockMask;
        if (mask is null)
        {
            for (int c = firstTile; c < endTile; c++) { tiles[n] = c; full[n] = false; n++; }
            return n;
        }
        int bb = mask.Batch == 1 ? 0 : b, hh = mask.Heads == 1 ? 0 : h;
        int partialCount = mask.KvNumBlocks[bb, hh, r], fullCount = mask.FullKvNumBlocks?[bb, hh, r] ?? 0;
        int p = 0, f = 0;
        while (p < partialCount || f < fullCount)
        {
            int nextPartial = p < partialCount ? mask.KvIndices[bb, hh, r, p] : int.MaxValue;
            int nextFull = f < fullCount ? mask.FullKvIndices![bb, hh, r, f] : int.MaxValue;
            bool takeFull = nextFull < nextPartial;
            int c = takeFull ? nextFull : nextPartial;
            if (takeFull) f++; else p++;
            if (c < firstTile || c >= endTile) continue;
            tiles[n] = c;
            full[n] = takeFull;
            n++;
        }
        return n;
    }

    /// <summary>
    /// Merges per-split partials: lse = M + ln sum_s exp(lse_s - M) with M = max_s lse_s, and
    /// out = sum_s exp(lse_s - lse) out_s. Splits with lse_s = -Inf (no allowed key) weigh 0; if all are empty the row
    /// is 0 and -Inf.
    /// </summary>
    private static void Combine(float[] partialOut, float[] partialLse, int splits, int rows, int dv, Span<float> output, Span<float> lse)
    {
        var weights = new float[splits];
        for (int row = 0; row < rows; row++)
        {
            float max = float.NegativeInfinity;
            for (int sp = 0; sp < splits; sp++) max = Math.Max(max, partialLse[(long)sp * rows + row]);
            Span<float> outRow = output.Slice(row * dv, dv);
            outRow.Clear();
            if (float.IsNegativeInfinity(max))
            {
                lse[row] = float.NegativeInfinity;
                continue;
            }
            float total = 0f;
            for (int sp = 0; sp < splits; sp++)
            {
                weights[sp] = MathF.Exp(partialLse[(long)sp * rows + row] - max);   // in (0, 1], 0 for an empty split
                total += weights[sp];
            }
            for (int sp = 0; sp < splits; sp++)
            {
                if (weights[sp] != 0f)
                    TensorPrimitives.MultiplyAdd(partialOut.AsSpan((int)(((long)sp * rows + row) * dv), dv), weights[sp] / total, outRow, outRow);
            }

            lse[row] = max + MathF.Log(total);
        }
    }

    /// <summary>Checks every length, size and option; returns the plan without addresses.</summary>
    private static Plan Prepare(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, AttentionShape shape,
                                FlashAttentionOptions options, int splits, Span<float> output, Span<float> lse)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(options);
        var s = shape;
        if (s.Batch < 1 || s.QueryHeads < 1 || s.KvHeads < 1 || s.QueryLength < 0 || s.KeyLength < 0 || s.HeadDim < 1 || s.ValueDim < 0)
            throw new ArgumentException($"invalid shape {s}", nameof(shape));
        if (s.QueryHeads % s.KvHeads != 0)
            throw new ArgumentException($"KvHeads = {s.KvHeads} does not divide QueryHeads = {s.QueryHeads}", nameof(shape));
        RequireLength(q.Length, s.QueryElements, nameof(q));
        RequireLength(k.Length, s.KeyElements, nameof(k));
        RequireLength(v.Length, s.ValueElements, nameof(v));
        RequireLength(output.Length, s.OutputElements, nameof(output));
        RequireLength(lse.Length, s.LseElements, nameof(lse));
        RequireFinite(q, [s.Batch, s.QueryHeads, s.QueryLength, s.HeadDim], nameof(q));
        RequireFinite(k, [s.Batch, s.KvHeads, s.KeyLength, s.HeadDim], nameof(k));
        RequireFinite(v, [s.Batch, s.KvHeads, s.KeyLength, s.ValueDim], nameof(v));

        if (options.WindowLeft < -1 || options.WindowRight < -1)
            throw new ArgumentException($"windows must be -1 or >= 0, got ({options.WindowLeft}, {options.WindowRight})", nameof(options));
        float scale = options.Scale ?? (float)(1.0 / Math.Sqrt(s.HeadDim));
        if (!float.IsFinite(scale))
            throw new ArgumentException($"scale is {scale}", nameof(options));
        if (!float.IsFinite(options.Softcap) || options.Softcap < 0)
            throw new ArgumentException($"softcap must be finite and >= 0, got {options.Softcap}", nameof(options));
        if (options.Mask is { } mask)
        {
            int[] have = [mask.Batch, mask.Heads, mask.Queries, mask.Keys];
            int[] want = [s.Batch, s.QueryHeads, s.QueryLength, s.KeyLength];
            for (int dim = 0; dim < 4; dim++)
            {
                if (have[dim] != 1 && have[dim] != want[dim])
                {
                    throw new ArgumentException(
                        $"mask shape [{string.Join(", ", have)}] does not broadcast to [{string.Join(", ", want)}] (dimension {dim})", nameof(options));
                }
            }
        }

        int blockQ = options.BlockQ, blockK = options.BlockK;
        if (options.BlockMask is { } blockMask)
        {
            blockMask.RequireCompatible(s.Batch, s.QueryHeads, s.QueryLength, s.KeyLength, nameof(options));
            blockQ = blockMask.BlockQ;
            blockK = blockMask.BlockK;
        }
        if (blockQ < 1 || blockK < 1)
            throw new ArgumentException($"tile sizes must be >= 1, got BlockQ = {blockQ}, BlockK = {blockK}", nameof(options));

        int queryTiles = (s.QueryLength + blockQ - 1) / blockQ;
        int keyTiles = (s.KeyLength + blockK - 1) / blockK;
        int tilesPerSplit = Math.Max(1, (keyTiles + splits - 1) / splits);          // ceil(nk / splits)
        int actualSplits = Math.Max(1, (keyTiles + tilesPerSplit - 1) / tilesPerSplit);
        return new Plan
        {
            Shape = s,
            BlockQ = blockQ,
            BlockK = blockK,
            QueryTiles = queryTiles,
            KeyTiles = keyTiles,
            Splits = actualSplits,
            TilesPerSplit = tilesPerSplit,
            Scale = scale,
            Softcap = options.Softcap,
            Causal = options.Causal,
            CausalAlign = options.CausalAlign,
            WindowLeft = options.WindowLeft,
            WindowRight = options.WindowRight,
            Mask = options.Mask,
            BlockMask = options.BlockMask,
        };
    }

    private static void RequireLength(int actual, long expected, string name)
    {
        if (actual != expected)
            throw new ArgumentException($"{name} has {actual} elements, expected {expected}", name);
    }

    private static void RequireFinite(ReadOnlySpan<float> x, int[] shape, string name)
    {
        for (int n = 0; n < x.Length; n++)
        {
            if (float.IsFinite(x[n])) continue;
            int rest = n, last = rest % shape[3]; rest /= shape[3];
            int third = rest % shape[2]; rest /= shape[2];
            int second = rest % shape[1]; rest /= shape[1];
            string what = float.IsNaN(x[n]) ? "NaN" : x[n] > 0 ? "+Infinity" : "-Infinity";
            throw new ArgumentException($"{name}[{rest}, {second}, {third}, {last}] is {what}", name);
        }
    }

    private static float[] Widen(ReadOnlySpan<Half> x)
    {
        var wide = new float[x.Length];
        TensorPrimitives.ConvertToSingle(x, wide);          // exact: every half is a float
        return wide;
    }

    private static float[] Widen(ReadOnlySpan<BFloat16> x)
    {
        var bits = MemoryMarshal.Cast<BFloat16, ushort>(x);
        var wide = new float[x.Length];
        for (int n = 0; n < wide.Length; n++)
            wide[n] = BitConverter.UInt32BitsToSingle((uint)bits[n] << 16);   // exact: bf16 is the top half of a float
        return wide;
    }
}
