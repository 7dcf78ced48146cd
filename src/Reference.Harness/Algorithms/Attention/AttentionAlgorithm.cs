using Reference.Attention;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Kernels.Attention;
using Reference.Numerics;

namespace Reference.Harness.Algorithms;

/// <summary>The outputs of dense attention and of the sparse attention entries whose outputs are out and lse, from any path.</summary>
/// <param name="Out">[B, Hq, Tq, Dv] softmax-weighted values.</param>
/// <param name="Lse">[B, Hq, Tq] log of the sum of exp over the allowed keys.</param>
public sealed record AttentionOutput(NdArray Out, NdArray Lse);

/// <summary>The registry entry for <c>attention</c>: dense attention (proofs/attention.md, Definition).</summary>
/// <remarks>
/// Float outputs are judged by <see cref="AttentionTolerance"/>: the calibrated baseline rule for float32, float16 and
/// bfloat16 candidates, the derived error bound of proofs/attention.md for float64 candidates.
/// </remarks>
public static class AttentionAlgorithm
{
    /// <summary>Key tile of the <c>kernel</c> path (and query tile).</summary>
    internal const int KernelTile = 32;

    /// <summary>Key tile of the <c>split-kv</c> path: small, so that small cases still split.</summary>
    internal const int SplitTile = 8;

    /// <summary>Number of key groups of the <c>split-kv</c> path.</summary>
    internal const int Splits = 3;

    /// <summary>The typed declaration.</summary>
    public static AlgorithmEntry<AttentionOptions, AttentionOutput> Entry { get; } = new()
    {
        Name = "attention",
        Summary = "dense scaled dot-product attention: GQA, causal and sliding windows (bottom-right or top-left aligned), softcap, boolean mask",
        Section = "proofs/attention.md, Definition",
        Seed = call => new AttentionOptions { Mask = AttentionArrays.OptionalBool4(call, "mask") },
        Parameters =
        [
            Param<AttentionOptions>.Bool("causal", "false", "key j allowed only when j <= p_i (p_i = i + Tk - Tq, or i when top-left)",
                (o, v) => o with { Causal = v }),
            Param<AttentionOptions>.Choice("causal_align", "bottom-right",
                "where query i sits when Tq != Tk, for causal and the window: bottom-right (FlashAttention, p_i = i + Tk - Tq) or top-left (PyTorch SDPA is_causal, torch.tril: p_i = i)",
                [("bottom-right", CausalAlignments.Parse("bottom-right")), ("top-left", CausalAlignments.Parse("top-left"))],
                (o, v) => o with { CausalAlign = v }),
            Param<AttentionOptions>.Int("window_left", "-1", "keys allowed to the left: j >= p_i - window_left; -1 unbounded",
                (o, v) => o with { WindowLeft = v }),
            Param<AttentionOptions>.Int("window_right", "-1", "keys allowed to the right: j <= p_i + window_right; -1 unbounded",
                (o, v) => o with { WindowRight = v }),
            Param<AttentionOptions>.OptionalDouble("scale", "score scale; absent means 1/sqrt(D)", (o, v) => o with { Scale = v }),
            Param<AttentionOptions>.Double("softcap", "0", "c > 0 maps a score s to c*tanh(s/c) before masking; 0 none", (o, v) => o with { Softcap = v }),
        ],
        Inputs =
        [
            new InputSpec("q", "B,Hq,Tq,D", ArrayKind.Float, false, "queries"),
            new InputSpec("k", "B,Hkv,Tk,D", ArrayKind.Float, false, "keys; Hkv divides Hq, query head h reads kv head h/(Hq/Hkv)"),
            new InputSpec("v", "B,Hkv,Tk,Dv", ArrayKind.Float, false, "values"),
            new InputSpec("mask", "_,_,_,_", ArrayKind.Bool, true, "true = allowed, broadcastable to [B,Hq,Tq,Tk] (each dimension 1 or full)"),
        ],
        Outputs = OutputsOf("softmax-weighted values; 0 for a row with no allowed key", "natural log of the sum of exp over allowed keys; -Inf for an empty row"),
        Reference = (call, options) => Output(DenseAttention.Compute(
            AttentionArrays.Double4(call, "q"), AttentionArrays.Double4(call, "k"), AttentionArrays.Double4(call, "v"), options)),
        Oracle = (call, options) => Output(Fast(call)
            ? DenseAttentionFast.Compute(AttentionArrays.Double4(call, "q"), AttentionArrays.Double4(call, "k"), AttentionArrays.Double4(call, "v"), options)
            : DenseAttention.Compute(AttentionArrays.Double4(call, "q"), AttentionArrays.Double4(call, "k"), AttentionArrays.Double4(call, "v"), options)),
        Paths =
        [
            new PathOf<AttentionOptions, AttentionOutput>("kernel", $"float32 FlashAttention-2 (tiled online softmax, {KernelTile}x{KernelTile} tiles), parallel",
                (call, options) => KernelOutput(call, KernelOptions(call, options, KernelTile), 1)),
            new PathOf<AttentionOptions, AttentionOutput>("split-kv", $"float32 flash-decoding: {Splits} key groups of {SplitTile}-key tiles merged by lse, parallel",
                (call, options) => KernelOutput(call, KernelOptions(call, options, SplitTile), Splits)),
        ],
        CompareInContext = new AttentionValidator(),
        Generate = AttentionCases.Generate,
    };

    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = Entry.ToAlgorithm();

    /// <summary>True when the call's work B Hq Tq Tk (D + Dv) is beyond <see cref="FastReference.AttentionWork"/>: <c>check</c>
    /// then judges against <see cref="DenseAttentionFast"/>, equal bit for bit to the reference (proofs/attention.md,
    /// attention.fast-reference-identical).</summary>
    /// <param name="call">The call.</param>
    /// <returns>True to use the fast path.</returns>
    public static bool Fast(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        var q = call.Array("q").Shape;
        var k = call.Array("k").Shape;
        var v = call.Array("v").Shape;
        return q.Count == 4 && k.Count == 4 && v.Count == 4
               && FastReference.Beyond(FastReference.AttentionWorkOf(q, k, v), FastReference.AttentionWork);
    }

    /// <summary>The reference options from the call's parameters and inputs, parsed once per call.</summary>
    public static AttentionOptions Options(AlgorithmCall call) => Entry.Options(call);

    /// <summary>The out and lse outputs of an attention entry, with their documentation.</summary>
    /// <param name="outDoc">One line for out.</param>
    /// <param name="lseDoc">One line for lse.</param>
    internal static OutputSpec<AttentionOutput>[] OutputsOf(string outDoc, string lseDoc) =>
    [
        OutputSpec<AttentionOutput>.Of("out", "B,Hq,Tq,Dv", ArrayKind.Float, OutputComparison.Tolerance, outDoc, r => r.Out),
        OutputSpec<AttentionOutput>.Of("lse", "B,Hq,Tq", ArrayKind.Float, OutputComparison.Tolerance, lseDoc, r => r.Lse),
    ];

    /// <summary>The kernel options (tiles of <paramref name="tile"/>) from the call's options.</summary>
    private static FlashAttentionOptions KernelOptions(AlgorithmCall call, AttentionOptions options, int tile) => new()
    {
        Causal = options.Causal,
        CausalAlign = options.CausalAlign,
        WindowLeft = options.WindowLeft,
        WindowRight = options.WindowRight,
        Scale = options.Scale is double s ? (float)s : null,
        Softcap = (float)options.Softcap,
        BlockQ = tile,
        BlockK = tile,
        Mask = FlatMaskOf(call, "mask"),
    };

    /// <summary>An optional bool input as a kernel mask.</summary>
    internal static FlatMask? FlatMaskOf(AlgorithmCall call, string name)
    {
        if (!call.Has(name)) return null;
        var a = call.Array(name);
        var values = new bool[a.Length];
        for (long i = 0; i < values.LongLength; i++) values[i] = a.GetDouble(i) != 0.0;
        return new FlatMask(values, a.Shape[0], a.Shape[1], a.Shape[2], a.Shape[3]);
    }

    /// <summary>
    /// Runs the FlashAttention kernel (forward when <paramref name="splits"/> = 1, split-KV otherwise) on the call's q, k, v:
    /// float16 and bfloat16 inputs go to the kernel's own overloads (widened exactly), others are read as float32.
    /// Returns out and lse as float32 arrays.
    /// </summary>
    internal static IReadOnlyDictionary<string, NdArray> Kernel(AlgorithmCall call, FlashAttentionOptions options, int splits) =>
        Outputs(KernelOutput(call, options, splits));

    /// <summary>The FlashAttention kernel's out and lse (see <see cref="Kernel"/>).</summary>
    internal static AttentionOutput KernelOutput(AlgorithmCall call, FlashAttentionOptions options, int splits)
    {
        NdArray q = call.Array("q"), k = call.Array("k"), v = call.Array("v");
        var shape = new AttentionShape(q.Shape[0], q.Shape[1], k.Shape[1], q.Shape[2], k.Shape[2], q.Shape[3], v.Shape[3]);
        var output = new float[checked((int)shape.OutputElements)];
        var lse = new float[checked((int)shape.LseElements)];
        if (q.DType == DType.F16 && k.DType == DType.F16 && v.DType == DType.F16)
        {
            FlashAttention.SplitKv(q.Values<Half>(), k.Values<Half>(), v.Values<Half>(), shape, options, splits, output, lse);
        }
        else if (q.DType == DType.BF16 && k.DType == DType.BF16 && v.DType == DType.BF16)
        {
            FlashAttention.SplitKv(q.Values<BFloat16>(), k.Values<BFloat16>(), v.Values<BFloat16>(), shape, options, splits, output, lse);
        }
        else
        {
            FlashAttention.SplitKv(call.Floats("q"), call.Floats("k"), call.Floats("v"), shape, options, splits, output, lse);
        }
        return new AttentionOutput(
            NdArray.Create(output, shape.Batch, shape.QueryHeads, shape.QueryLength, shape.ValueDim),
            NdArray.Create(lse, shape.Batch, shape.QueryHeads, shape.QueryLength));
    }

    /// <summary>The reference result as output arrays.</summary>
    internal static Dictionary<string, NdArray> Outputs(AttentionResult result) => Outputs(Output(result));

    /// <summary>The reference result as the typed output.</summary>
    internal static AttentionOutput Output(AttentionResult result) =>
        new(AttentionArrays.ToArray(result.Out), AttentionArrays.ToArray(result.Lse));

    /// <summary>A typed output as named arrays, for the entries not yet declared with <see cref="AlgorithmEntry{TOptions, TResult}"/>.</summary>
    internal static Dictionary<string, NdArray> Outputs(AttentionOutput output) => new()
    {
        ["out"] = output.Out,
        ["lse"] = output.Lse,
    };
}
