using Reference.Attention;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;

namespace Reference.Harness.Algorithms;

/// <summary>The parameters of <c>leank-mask</c> (the reference takes them as arguments).</summary>
/// <param name="Ratio">The quantile level in [0, 1] of the threshold.</param>
/// <param name="Align">Per-head channel counts are rounded to a multiple of this.</param>
public sealed record LeanKMaskOptions(double Ratio, int Align);

/// <summary>The output of <c>leank-mask</c>.</summary>
/// <param name="ChannelMask">[layers, Hkv, D] true = channel kept.</param>
public sealed record LeanKMaskOutput(NdArray ChannelMask);

/// <summary>The registry entry <c>leank-mask</c>: LeanK's channel mask from learned importances (proofs/attention-sparse.md, Definition: LeanK mask).</summary>
/// <remarks>No optimized path; the mask is compared exactly.</remarks>
public static class LeanKMaskAlgorithm
{
    /// <summary>The typed declaration.</summary>
    public static AlgorithmEntry<LeanKMaskOptions, LeanKMaskOutput> Entry { get; } = new()
    {
        Name = "leank-mask",
        Summary = "LeanK mask: global quantile threshold of alpha, per-head counts rounded to the alignment, top channels",
        Section = "proofs/attention-sparse.md, Definition: LeanK mask",
        Seed = _ => new LeanKMaskOptions(0.7, 32),
        Parameters =
        [
            Param<LeanKMaskOptions>.Double("ratio", "0.7", "quantile level in [0, 1] of the threshold tau", (o, v) => o with { Ratio = v }),
            Param<LeanKMaskOptions>.Int("align", "32", "per-head channel counts are rounded to a multiple of align (capped at D), >= 1", (o, v) => o with { Align = v }),
        ],
        Inputs =
        [
            new InputSpec("alpha", "layers,Hkv,D", ArrayKind.Float, false, "learned channel importances"),
        ],
        Outputs =
        [
            OutputSpec<LeanKMaskOutput>.Of("channel_mask", "layers,Hkv,D", ArrayKind.Bool, OutputComparison.Exact, "true = channel kept", r => r.ChannelMask),
        ],
        Reference = (call, options) => new LeanKMaskOutput(AttentionArrays.ToArray(LeanKMask.Binarize(
            AttentionArrays.Double3(call, "alpha"), options.Ratio, options.Align))),
        Generate = Generate,
    };

    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = Entry.ToAlgorithm();

    /// <summary>A random alpha with ties (coarse grid) or spread values; alignments that do and do not divide D.</summary>
    private static GeneratedCase Generate(int seed)
    {
        var rng = new Random(seed);
        int layers = 1 + rng.Next(3), hkv = 1 + rng.Next(3), d = new[] { 4, 8, 12, 64 }[rng.Next(4)];
        bool ties = rng.Next(2) == 0;
        var alpha = AttentionCases.RandomArray(() => ties ? rng.Next(0, 5) * 0.25 : rng.NextDouble(), DType.F32, layers, hkv, d);
        var parameters = new Dictionary<string, string>
        {
            ["ratio"] = new[] { "0", "0.3", "0.7", "1" }[rng.Next(4)],
            ["align"] = AttentionCases.Text(new[] { 1, 2, 4, 32 }[rng.Next(4)]),
        };
        return new GeneratedCase($"seed {seed}: layers={layers} Hkv={hkv} D={d}{(ties ? " ties" : "")} ratio={parameters["ratio"]} align={parameters["align"]}",
            new Dictionary<string, NdArray> { ["alpha"] = alpha }, parameters);
    }
}
