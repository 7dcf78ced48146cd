using Reference.Attention;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;

namespace Reference.Harness.Algorithms;

/// <summary>The registry entry <c>leank-mask</c>: LeanK's channel mask from learned importances (SEMANTICS.md sections 10 and 12).</summary>
/// <remarks>No optimized path; the mask is compared exactly.</remarks>
public static class LeanKMaskAlgorithm
{
    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = new()
    {
        Name = "leank-mask",
        Summary = "LeanK mask: global quantile threshold of alpha, per-head counts rounded to the alignment, top channels",
        Section = "SEMANTICS.md section 10",
        Parameters =
        [
            new ParameterSpec("ratio", ParameterKind.Double, "0.7", "quantile level in [0, 1] of the threshold tau"),
            new ParameterSpec("align", ParameterKind.Int, "32", "per-head channel counts are rounded to a multiple of align (capped at D), >= 1"),
        ],
        Inputs =
        [
            new InputSpec("alpha", "layers,Hkv,D", ArrayKind.Float, false, "learned channel importances"),
        ],
        Outputs =
        [
            new OutputSpec("channel_mask", "layers,Hkv,D", ArrayKind.Bool, OutputComparison.Exact, "true = channel kept"),
        ],
        Reference = call => new Dictionary<string, NdArray>
        {
            ["channel_mask"] = AttentionArrays.ToArray(LeanKMask.Binarize(
                AttentionArrays.Double3(call, "alpha"), call.Parameters.GetDouble("ratio"), call.Parameters.GetInt("align"))),
        },
        Generate = Generate,
    };

    /// <summary>A random alpha with ties (coarse grid) or spread values; alignments that do and do not divide D.</summary>
    private static GeneratedCase Generate(int seed)
    {
        var rng = new Random(seed);
        int layers = 1 + rng.Next(3), hkv = 1 + rng.Next(3), d = new[] { 4, 8, 12, 64 }[rng.Next(4)];
        bool ties = rng.Next(2) == 0;
        var alpha = AttentionAlgorithm.RandomArray(() => ties ? rng.Next(0, 5) * 0.25 : rng.NextDouble(), DType.F32, layers, hkv, d);
        var parameters = new Dictionary<string, string>
        {
            ["ratio"] = new[] { "0", "0.3", "0.7", "1" }[rng.Next(4)],
            ["align"] = AttentionAlgorithm.Text(new[] { 1, 2, 4, 32 }[rng.Next(4)]),
        };
        return new GeneratedCase($"seed {seed}: layers={layers} Hkv={hkv} D={d}{(ties ? " ties" : "")} ratio={parameters["ratio"]} align={parameters["align"]}",
            new Dictionary<string, NdArray> { ["alpha"] = alpha }, parameters);
    }
}
