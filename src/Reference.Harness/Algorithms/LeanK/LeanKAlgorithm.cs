using Reference.Attention;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;

namespace Reference.Harness.Algorithms;

/// <summary>The registry entry <c>leank</c>: attention with a static key-channel mask (proofs/attention-sparse.md, Definition: LeanK).</summary>
/// <remarks>No optimized path. Float outputs are judged by <see cref="AttentionTolerance"/>: the calibrated baseline
/// rule, with the baseline scoring pruned keys on their head's kept channels like the reference.</remarks>
public static class LeanKAlgorithm
{
    /// <summary>The typed declaration.</summary>
    public static AlgorithmEntry<LeanKOptions, AttentionOutput> Entry { get; } = new()
    {
        Name = "leank",
        Summary = "LeanK attention: keys outside the sink and recent windows are scored on their head's kept channels only",
        Section = "proofs/attention-sparse.md, Definition: LeanK",
        Seed = _ => new LeanKOptions(),
        Parameters =
        [
            Param<LeanKOptions>.Int("sink", "64", "keys j < sink keep every channel, >= 0", (o, v) => o with { Sink = v }),
            Param<LeanKOptions>.Int("recent", "256", "the last recent keys up to the query keep every channel, >= 0", (o, v) => o with { Recent = v }),
            Param<LeanKOptions>.Bool("causal", "true", "key j allowed only when j <= p_i (p_i = i + Tk - Tq, or i when top-left)", (o, v) => o with { Causal = v }),
            Param<LeanKOptions>.Choice("causal_align", "bottom-right",
                "where query i sits when Tq != Tk, for causal and the recent window: bottom-right (FlashAttention, p_i = i + Tk - Tq) or top-left (PyTorch, p_i = i)",
                [("bottom-right", CausalAlignments.Parse("bottom-right")), ("top-left", CausalAlignments.Parse("top-left"))],
                (o, v) => o with { CausalAlign = v }),
            Param<LeanKOptions>.Choice("zero_head", "zero-logit",
                "a head whose mask keeps no channel: its pruned keys get logit 0 (training formula) or are dropped (kernel)",
                [("zero-logit", LeanKZeroHead.ZeroLogit), ("drop", LeanKZeroHead.Drop)], (o, v) => o with { ZeroHead = v }),
            Param<LeanKOptions>.OptionalDouble("scale", "score scale; absent means 1/sqrt(D) with the full D", (o, v) => o with { Scale = v }),
        ],
        Inputs =
        [
            new InputSpec("q", "B,Hq,Tq,D", ArrayKind.Float, false, "queries"),
            new InputSpec("k", "B,Hkv,Tk,D", ArrayKind.Float, false, "keys; Hkv divides Hq"),
            new InputSpec("v", "B,Hkv,Tk,Dv", ArrayKind.Float, false, "values"),
            new InputSpec("channel_mask", "Hkv,D", ArrayKind.Bool, false, "the static key-channel mask, true = kept"),
        ],
        Outputs = AttentionAlgorithm.OutputsOf("softmax-weighted values; 0 for an empty row", "natural log of the sum of exp of the scores; -Inf for an empty row"),
        Reference = (call, options) => AttentionAlgorithm.Output(LeanK.Compute(
            AttentionArrays.Double4(call, "q"), AttentionArrays.Double4(call, "k"), AttentionArrays.Double4(call, "v"),
            AttentionArrays.Bool2(call, "channel_mask"), options)),
        // Beyond FastReference.AttentionWork: LeanKFast, equal to the reference bit for bit (proofs/attention-sparse.md,
        // attention.leank-fast-reference-identical).
        Oracle = (call, options) => AttentionAlgorithm.Output((AttentionAlgorithm.Fast(call)
            ? (Func<double[,,,], double[,,,], double[,,,], bool[,], LeanKOptions, AttentionResult>)LeanKFast.Compute
            : LeanK.Compute)(
            AttentionArrays.Double4(call, "q"), AttentionArrays.Double4(call, "k"), AttentionArrays.Double4(call, "v"),
            AttentionArrays.Bool2(call, "channel_mask"), options)),
        CompareInContext = new LeanKValidator(),
        Generate = Generate,
    };

    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = Entry.ToAlgorithm();

    /// <summary>The reference options from the call's parameters, parsed once per call.</summary>
    public static LeanKOptions Options(AlgorithmCall call) => Entry.Options(call);

    /// <summary>
    /// The baseline's rows and alternative keys: a key in the full region (j &lt; sink or among the last recent keys up
    /// to the query) is scored with k (kind 1), any other allowed key with k masked to the head's kept channels (kind 2);
    /// in drop mode a head that keeps no channel drops those keys; causal keys after the query are not allowed.
    /// </summary>
    internal static (AttentionRowKeys Rows, double[,,,] Pruned) BaselineRows(double[,,,] k, bool[,] channelMask, LeanKOptions options, int hq, int tq)
    {
        int bsz = k.GetLength(0), hkv = k.GetLength(1), tk = k.GetLength(2), d = k.GetLength(3);
        var pruned = new double[bsz, hkv, tk, d];
        var zeroHead = new bool[hkv];
        for (int g = 0; g < hkv; g++)
        {
            zeroHead[g] = true;
            for (int c = 0; c < d; c++) zeroHead[g] &= !channelMask[g, c];
        }
        for (int b = 0; b < bsz; b++)
        {
            for (int g = 0; g < hkv; g++)
            {
                for (int j = 0; j < tk; j++)
                {
                    for (int c = 0; c < d; c++)
                        pruned[b, g, j, c] = channelMask[g, c] ? k[b, g, j, c] : 0.0;
                }
            }
        }

        int group = Math.Max(1, hq / Math.Max(1, hkv));
        AttentionRowKeys rows = (b, h, i, kinds) =>
        {
            long p = CausalAlignments.QueryPosition(i, tq, tk, options.CausalAlign);
            bool drop = zeroHead[h / group] && options.ZeroHead == LeanKZeroHead.Drop;
            for (int j = 0; j < kinds.Length; j++)
            {
                bool full = j < options.Sink || (j > p - options.Recent && j <= p);
                kinds[j] = (options.Causal && j > p) || (!full && drop) ? (byte)0 : full ? (byte)1 : (byte)2;
            }
        };
        return (rows, pruned);
    }

    /// <summary>A random case: GQA, Tq &lt;= Tk, small sink and recent windows, random masks with all-zero and all-one heads.</summary>
    private static GeneratedCase Generate(int seed)
    {
        var rng = new Random(seed);
        int b = 1 + rng.Next(2), hkv = 1 + rng.Next(2), hq = hkv * (1 + rng.Next(2));
        int tk = new[] { 1, 4, 9, 20 }[rng.Next(4)], tq = 1 + rng.Next(tk), d = new[] { 2, 4, 8 }[rng.Next(3)], dv = new[] { 1, 3 }[rng.Next(2)];
        double Draw() => rng.NextDouble() * 4.0 - 2.0;
        var mask = new bool[hkv * d];
        for (int g = 0; g < hkv; g++)
        {
            int style = rng.Next(4);   // 0: none kept, 1: all kept, else random
            for (int c = 0; c < d; c++) mask[g * d + c] = style == 1 || (style > 1 && rng.Next(2) == 0);
        }
        var inputs = new Dictionary<string, NdArray>
        {
            ["q"] = AttentionCases.RandomArray(Draw, DType.F32, b, hq, tq, d),
            ["k"] = AttentionCases.RandomArray(Draw, DType.F32, b, hkv, tk, d),
            ["v"] = AttentionCases.RandomArray(Draw, DType.F32, b, hkv, tk, dv),
            ["channel_mask"] = NdArray.Create(mask, hkv, d),
        };
        var parameters = new Dictionary<string, string>
        {
            ["sink"] = AttentionCases.Text(rng.Next(0, 4)),
            ["recent"] = AttentionCases.Text(rng.Next(0, 6)),
            ["causal"] = rng.Next(4) == 0 ? "false" : "true",
            ["zero_head"] = rng.Next(2) == 0 ? "drop" : "zero-logit",
        };
        return new GeneratedCase(
            $"seed {seed}: B={b} Hq={hq} Hkv={hkv} Tq={tq} Tk={tk} D={d} Dv={dv} " + string.Join(" ", parameters.Select(p => $"{p.Key}={p.Value}")),
            inputs, parameters);
    }
}
