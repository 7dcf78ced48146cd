using ILGPU;
using ILGPU.Runtime;
using Reference.Harness.Registry;
using Reference.Kernels.Attention;

namespace Reference.Gpu.Attention;

/// <summary>Options of <see cref="FlashAttentionGpu"/>; the masking options mean what they mean in
/// <see cref="Reference.Attention.AttentionOptions"/> (proofs/attention.md, Definition), all applied at once.</summary>
public sealed record FlashAttentionGpuOptions
{
    /// <summary>Causal masking: key j allowed only when j &lt;= p_i.</summary>
    public bool Causal { get; init; }

    /// <summary>Query positions top-left aligned (p_i = i) instead of bottom-right (p_i = i + Tk - Tq, the default).</summary>
    public bool TopLeft { get; init; }

    /// <summary>Left window: j &gt;= p_i - WindowLeft; -1 (default) unbounded.</summary>
    public int WindowLeft { get; init; } = -1;

    /// <summary>Right window: j &lt;= p_i + WindowRight; -1 (default) unbounded.</summary>
    public int WindowRight { get; init; } = -1;

    /// <summary>Score scale; null (default) means 1/sqrt(D), rounded to float32.</summary>
    public float? Scale { get; init; }

    /// <summary>Softcap c &gt; 0 maps a score s to c tanh(s/c) before masking; 0 (default) none.</summary>
    public float Softcap { get; init; }

    /// <summary>An element mask [Bm, Hm, Tqm, Tkm] flat row-major, true = allowed, each dimension 1 (broadcast) or full;
    /// null (default) none.</summary>
    public bool[]? Mask { get; init; }

    /// <summary>The mask's shape [Bm, Hm, Tqm, Tkm] when <see cref="Mask"/> is given.</summary>
    public int[]? MaskShape { get; init; }
}

/// <summary>The scalar arguments of the attention kernels (one struct, passed by value).</summary>
internal struct AttentionArgs
{
    public int Batch, QueryHeads, KvHeads, QueryLength, KeyLength, HeadDim, ValueDim;
    public float Scale, Softcap;
    public int Causal, TopLeft, WindowLeft, WindowRight;
    public int BlockQ, BlockK, QueryTiles, KeyTiles;
    public int HasMask, MaskBatch, MaskHeads, MaskQueries, MaskKeys;
}

/// <summary>
/// FlashAttention-2 forward as ILGPU kernels (proofs/attention.md, "The gpu path"): one group per (batch, query head,
/// query tile of BlockQ rows), one thread per query row; key and value tiles of BlockK keys are loaded cooperatively into
/// shared memory, and each thread keeps its row's online-softmax state (running maximum m and sum l in registers, the
/// unnormalized accumulator in shared memory). Tiles are skipped as a whole: those outside the union of the group's
/// causal/window ranges are never visited, and an element mask is first reduced on the device into a block mask
/// (FlexAttention's: empty, partial or full per query tile and key tile, by <c>Group.BarrierOr/BarrierAnd</c>) whose
/// empty tiles are skipped and whose full tiles are computed without reading the mask. Returns out and lse (ln of the
/// sum of exp over the allowed keys; -Inf and out 0 for a row with none). All arithmetic is float32.
/// </summary>
/// <remarks>Sources: Dao 2023, "FlashAttention-2"; Milakov and Gimelshein 2018 (online softmax); PyTorch FlexAttention
/// (block masks). The CPU twin is <see cref="FlashAttention"/>.</remarks>
public static class FlashAttentionGpu
{
    /// <summary>Keys per tile.</summary>
    internal const int BlockK = 16;

    /// <summary>Runs attention on the accelerator.</summary>
    /// <param name="gpu">The accelerator.</param>
    /// <param name="q">[B, Hq, Tq, D] flat, finite.</param>
    /// <param name="k">[B, Hkv, Tk, D] flat, finite.</param>
    /// <param name="v">[B, Hkv, Tk, Dv] flat, finite.</param>
    /// <param name="shape">The sizes (Hkv divides Hq).</param>
    /// <param name="options">Masks, scale, softcap.</param>
    /// <returns>out [B, Hq, Tq, Dv] and lse [B, Hq, Tq], flat.</returns>
    /// <exception cref="ArgumentException">A size, a length or an option is invalid, or an input is not finite.</exception>
    /// <exception cref="InputException">The tiles do not fit the accelerator's shared memory.</exception>
    public static FlashAttentionResult Forward(GpuAccelerator gpu, float[] q, float[] k, float[] v, AttentionShape shape, FlashAttentionGpuOptions options)
    {
        ArgumentNullException.ThrowIfNull(gpu);
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(options);
        var args = Prepare(q, k, v, shape, options, gpu.GroupSize);
        var result = new FlashAttentionResult(new float[shape.OutputElements], new float[shape.LseElements]);
        if (shape.OutputElements == 0 && shape.LseElements == 0)
        {
            return result;
        }
        long shared = ((long)BlockK * (args.HeadDim + args.ValueDim) + (long)args.BlockQ * (BlockK + args.ValueDim)) * sizeof(float);
        if (shared > gpu.Accelerator.MaxSharedMemoryPerGroup)
        {
            throw new InputException(
                $"gpu attention: D = {args.HeadDim}, Dv = {args.ValueDim} need {shared} bytes of shared memory per group; {gpu.Accelerator.Name} has {gpu.Accelerator.MaxSharedMemoryPerGroup}");
        }

        var blockMapKernel = gpu.Kernel("attention.block-map",
            a => a.LoadStreamKernel<ArrayView<byte>, ArrayView<byte>, AttentionArgs>(BlockMapKernel));
        var forwardKernel = gpu.Kernel("attention.forward",
            a => a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<byte>, ArrayView<byte>, ArrayView<float>, ArrayView<float>, AttentionArgs>(ForwardKernel));
        lock (gpu.RunLock)
        {
            using var memory = new DeviceMemory(gpu.Accelerator);
            var dq = memory.Upload(q);
            var dk = memory.Upload(k);
            var dv = memory.Upload(v);
            var mask = memory.Upload(options.Mask is { } m ? m.Select(x => x ? (byte)1 : (byte)0).ToArray() : [0]);
            long mapLength = (long)args.MaskBatch * args.MaskHeads * args.QueryTiles * args.KeyTiles;
            var map = memory.Zeros<byte>(args.HasMask != 0 ? mapLength : 1);
            var outView = memory.Zeros<float>(shape.OutputElements);
            var lseView = memory.Zeros<float>(shape.LseElements);
            if (args.HasMask != 0)
            {
                int groups = args.MaskBatch * args.MaskHeads * args.QueryTiles;
                blockMapKernel(new KernelConfig(groups, args.BlockQ), mask, map, args);
            }
            int items = args.Batch * args.QueryHeads * args.QueryTiles;
            var config = new KernelConfig(items, args.BlockQ,
                SharedMemoryConfig.RequestDynamic<float>(BlockK * (args.HeadDim + args.ValueDim) + args.BlockQ * (BlockK + args.ValueDim)));
            forwardKernel(config, dq, dk, dv, mask, map, outView, lseView, args);
            return new FlashAttentionResult(memory.Download(outView, shape.OutputElements), memory.Download(lseView, shape.LseElements));
        }
    }

    /// <summary>
    /// The block mask of an element mask: one group per (mask batch, mask head, query tile), one thread per query row;
    /// for each key tile the group votes (<c>BarrierOr</c>: some allowed entry; <c>BarrierAnd</c>: every entry of the
    /// valid rows allowed) and writes 0 (empty), 1 (partial) or 2 (full) to map [Bm, Hm, QueryTiles, KeyTiles].
    /// </summary>
    internal static void BlockMapKernel(ArrayView<byte> mask, ArrayView<byte> map, AttentionArgs a)
    {
        int item = Grid.IdxX, t = Group.IdxX;
        int r = item % a.QueryTiles;
        int hb = item / a.QueryTiles;                  // mb * MaskHeads + mh
        int i = r * a.BlockQ + t;
        bool valid = i < a.QueryLength;
        long rowBase = ((long)hb * a.MaskQueries + (a.MaskQueries == 1 ? 0 : i)) * a.MaskKeys;
        for (int c = 0; c < a.KeyTiles; c++)
        {
            int j0 = c * a.BlockK, j1 = Math.Min(a.KeyLength, j0 + a.BlockK);
            bool any = false, all = true;
            if (valid)
            {
                for (int j = j0; j < j1; j++)
                {
                    bool allowed = mask[rowBase + (a.MaskKeys == 1 ? 0 : j)] != 0;
                    any |= allowed;
                    all &= allowed;
                }
            }
            bool groupAny = Group.BarrierOr(any);
            bool groupAll = Group.BarrierAnd(all);
            if (t == 0)
            {
                map[(long)item * a.KeyTiles + c] = (byte)(groupAny ? groupAll ? 2 : 1 : 0);
            }
        }
    }

    /// <summary>The forward kernel: one group per (b, h, query tile), one thread per query row (see the class remarks).</summary>
    internal static void ForwardKernel(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<byte> mask, ArrayView<byte> map,
                                       ArrayView<float> output, ArrayView<float> lse, AttentionArgs a)
    {
        int item = Grid.IdxX, t = Group.IdxX;
        int r = item % a.QueryTiles;
        int h = item / a.QueryTiles % a.QueryHeads;
        int b = item / a.QueryTiles / a.QueryHeads;
        int d = a.HeadDim, dv = a.ValueDim, bk = a.BlockK, tq = a.QueryLength, tk = a.KeyLength;
        int kvh = h / (a.QueryHeads / a.KvHeads);
        int i0 = r * a.BlockQ, i = i0 + t;
        int last = Math.Min(tq, i0 + a.BlockQ) - 1;
        bool valid = i < tq;

        // Shared memory: K tile [bk, D], V tile [bk, Dv], scores [BlockQ, bk], accumulators [BlockQ, Dv].
        var shared = SharedMemory.GetDynamic<float>();
        var kTile = shared.SubView(0, bk * d);
        var vTile = shared.SubView(bk * d, bk * dv);
        var scores = shared.SubView(bk * (d + dv), a.BlockQ * bk);
        var acc = shared.SubView(bk * (d + dv) + a.BlockQ * bk, a.BlockQ * dv);
        for (int n = 0; n < dv; n++)
        {
            acc[t * dv + n] = 0f;
        }

        // This row's allowed key range [rowLo, rowHi] under causal and window; the group's union [groupLo, groupHi]
        // (query positions increase with i, so the union lies between the first row's lo and the last row's hi).
        long rowLo = Lowest(i, a), rowHi = Highest(i, a);
        long groupLo = Lowest(i0, a), groupHi = Highest(last, a);
        int firstTile = groupLo > groupHi ? 1 : (int)(Math.Max(0L, groupLo) / bk);
        int lastTile = groupLo > groupHi ? 0 : (int)(Math.Min(tk - 1L, groupHi) / bk);

        long qBase = (((long)b * a.QueryHeads + h) * tq + i) * d;
        long kvBase = ((long)b * a.KvHeads + kvh) * tk;
        long mapBase = a.HasMask != 0
            ? (((long)(a.MaskBatch == 1 ? 0 : b) * a.MaskHeads + (a.MaskHeads == 1 ? 0 : h)) * a.QueryTiles + r) * a.KeyTiles
            : 0;
        long maskRow = a.HasMask != 0
            ? (((long)(a.MaskBatch == 1 ? 0 : b) * a.MaskHeads + (a.MaskHeads == 1 ? 0 : h)) * a.MaskQueries + (a.MaskQueries == 1 || !valid ? 0 : i)) * a.MaskKeys
            : 0;
        float m = float.NegativeInfinity, l = 0f;

        for (int c = firstTile; c <= lastTile; c++)
        {
            int kind = a.HasMask != 0 ? map[mapBase + c] : 2;   // 0 empty, 1 partial, 2 full
            if (kind == 0)
            {
                continue;                                     // the same decision in every thread of the group
            }
            int j0 = c * bk, cols = Math.Min(bk, tk - j0);
            for (int e = t; e < cols * d; e += a.BlockQ)
            {
                kTile[e] = k[(kvBase + j0) * d + e];
            }
            for (int e = t; e < cols * dv; e += a.BlockQ)
            {
                vTile[e] = v[(kvBase + j0) * dv + e];
            }
            Group.Barrier();

            long lo = Math.Max(j0, rowLo), hi = Math.Min(j0 + cols - 1L, rowHi);
            if (valid && lo <= hi)
            {
                float tileMax = float.NegativeInfinity;
                for (int n = 0; n < cols; n++)
                {
                    float s = float.NegativeInfinity;
                    if (j0 + n >= lo && j0 + n <= hi && (kind == 2 || mask[maskRow + (a.MaskKeys == 1 ? 0 : j0 + n)] != 0))
                    {
                        float dot = 0f;
                        for (int e = 0; e < d; e++)
                        {
                            dot += q[qBase + e] * kTile[n * d + e];
                        }
                        s = dot * a.Scale;
                        if (a.Softcap > 0f)
                        {
                            s = MathF.Tanh(s / a.Softcap) * a.Softcap;
                        }
                    }
                    scores[t * bk + n] = s;
                    tileMax = Math.Max(tileMax, s);
                }
                if (tileMax > float.NegativeInfinity)
                {
                    // Online softmax: m' = max(m, max s), alpha = exp(m - m'), p = exp(s - m'); l = alpha l + sum p,
                    // acc = alpha acc + sum p v.
                    float mNew = Math.Max(m, tileMax);
                    float alpha = MathF.Exp(m - mNew);
                    float sum = 0f;
                    for (int n = 0; n < cols; n++)
                    {
                        float p = MathF.Exp(scores[t * bk + n] - mNew);
                        scores[t * bk + n] = p;
                        sum += p;
                    }
                    l = alpha * l + sum;
                    for (int e = 0; e < dv; e++)
                    {
                        float x = alpha * acc[t * dv + e];
                        for (int n = 0; n < cols; n++)
                        {
                            x += scores[t * bk + n] * vTile[n * dv + e];
                        }
                        acc[t * dv + e] = x;
                    }
                    m = mNew;
                }
            }
            Group.Barrier();                                  // the next tile overwrites kTile and vTile
        }

        if (!valid)
        {
            return;
        }
        long row = ((long)b * a.QueryHeads + h) * tq + i;
        if (m == float.NegativeInfinity)
        {
            for (int e = 0; e < dv; e++)
            {
                output[row * dv + e] = 0f;
            }
            lse[row] = float.NegativeInfinity;
            return;
        }
        for (int e = 0; e < dv; e++)
        {
            output[row * dv + e] = acc[t * dv + e] / l;
        }
        lse[row] = m + MathF.Log(l);
    }

    /// <summary>Lowest key the causal/window rule allows query row i (may be below 0).</summary>
    private static long Lowest(int i, AttentionArgs a) =>
        a.WindowLeft >= 0 ? Position(i, a) - a.WindowLeft : 0L;

    /// <summary>Highest key the causal/window rule allows query row i (may be beyond Tk - 1).</summary>
    private static long Highest(int i, AttentionArgs a)
    {
        long hi = a.KeyLength - 1L, p = Position(i, a);
        if (a.Causal != 0)
        {
            hi = Math.Min(hi, p);
        }
        if (a.WindowRight >= 0)
        {
            hi = Math.Min(hi, p + a.WindowRight);
        }
        return hi;
    }

    /// <summary>Query position p_i: i + Tk - Tq (bottom-right) or i (top-left).</summary>
    private static long Position(int i, AttentionArgs a) => a.TopLeft != 0 ? i : (long)i + a.KeyLength - a.QueryLength;

    /// <summary>Checks sizes, lengths, options and finiteness; the kernel arguments.</summary>
    private static AttentionArgs Prepare(float[] q, float[] k, float[] v, AttentionShape s, FlashAttentionGpuOptions options, int groupSize)
    {
        if (s.Batch < 1 || s.QueryHeads < 1 || s.KvHeads < 1 || s.QueryLength < 0 || s.KeyLength < 0 || s.HeadDim < 1 || s.ValueDim < 0)
        {
            throw new ArgumentException($"invalid shape {s}", nameof(s));
        }
        if (s.QueryHeads % s.KvHeads != 0)
        {
            throw new ArgumentException($"KvHeads = {s.KvHeads} does not divide QueryHeads = {s.QueryHeads}", nameof(s));
        }
        RequireFinite(q, s.QueryElements, nameof(q));
        RequireFinite(k, s.KeyElements, nameof(k));
        RequireFinite(v, s.ValueElements, nameof(v));
        if (options.WindowLeft < -1 || options.WindowRight < -1)
        {
            throw new ArgumentException($"windows must be -1 or >= 0, got ({options.WindowLeft}, {options.WindowRight})", nameof(options));
        }
        float scale = options.Scale ?? (float)(1.0 / Math.Sqrt(s.HeadDim));
        if (!float.IsFinite(scale))
        {
            throw new ArgumentException($"scale is {scale}", nameof(options));
        }
        if (!float.IsFinite(options.Softcap) || options.Softcap < 0)
        {
            throw new ArgumentException($"softcap must be finite and >= 0, got {options.Softcap}", nameof(options));
        }
        int[] maskShape = [1, 1, 1, 1];
        if (options.Mask is { } mask)
        {
            maskShape = options.MaskShape ?? throw new ArgumentException("a mask needs its shape", nameof(options));
            int[] want = [s.Batch, s.QueryHeads, s.QueryLength, s.KeyLength];
            if (maskShape.Length != 4 || mask.LongLength != (long)maskShape[0] * maskShape[1] * maskShape[2] * maskShape[3])
            {
                throw new ArgumentException($"mask has {mask.Length} entries but shape [{string.Join(", ", maskShape)}]", nameof(options));
            }
            for (int dim = 0; dim < 4; dim++)
            {
                if (maskShape[dim] != 1 && maskShape[dim] != want[dim])
                {
                    throw new ArgumentException(
                        $"mask shape [{string.Join(", ", maskShape)}] does not broadcast to [{string.Join(", ", want)}] (dimension {dim})", nameof(options));
                }
            }
        }
        int blockQ = groupSize;
        return new AttentionArgs
        {
            Batch = s.Batch,
            QueryHeads = s.QueryHeads,
            KvHeads = s.KvHeads,
            QueryLength = s.QueryLength,
            KeyLength = s.KeyLength,
            HeadDim = s.HeadDim,
            ValueDim = s.ValueDim,
            Scale = scale,
            Softcap = options.Softcap,
            Causal = options.Causal ? 1 : 0,
            TopLeft = options.TopLeft ? 1 : 0,
            WindowLeft = options.WindowLeft,
            WindowRight = options.WindowRight,
            BlockQ = blockQ,
            BlockK = BlockK,
            QueryTiles = (s.QueryLength + blockQ - 1) / blockQ,
            KeyTiles = (s.KeyLength + BlockK - 1) / BlockK,
            HasMask = options.Mask is null ? 0 : 1,
            MaskBatch = maskShape[0],
            MaskHeads = maskShape[1],
            MaskQueries = maskShape[2],
            MaskKeys = maskShape[3],
        };
    }

    private static void RequireFinite(float[] x, long expected, string name)
    {
        if (x.LongLength != expected)
        {
            throw new ArgumentException($"{name} has {x.Length} elements, expected {expected}", name);
        }
        for (int n = 0; n < x.Length; n++)
        {
            if (!float.IsFinite(x[n]))
            {
                throw new ArgumentException($"{name}[{n}] (flat) is {x[n]}; inputs must be finite", name);
            }
        }
    }
}
