using System.Globalization;
using Reference.Attention;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;

namespace Reference.Harness.Algorithms;

/// <summary>The outputs of <c>resa</c>, from any path.</summary>
/// <param name="Out">[B, Hq, 1, Dv] attention over the selected blocks' positions.</param>
/// <param name="Lse">[B, Hq, 1] log of the sum of exp over those positions.</param>
/// <param name="Selected">[B, Hkv, nb] the selected blocks of each kv group.</param>
public sealed record ResaOutput(NdArray Out, NdArray Lse, NdArray Selected);

/// <summary>The registry entry for <c>resa</c>: one Rectified Sparse Attention decode step (proofs/attention-sparse.md, Definition: ReSA).</summary>
/// <remarks>
/// No optimized path. A candidate is judged by <see cref="ResaValidator"/>: <c>selected</c> must equal the reference's
/// except where a tie or near-tie within the candidate's precision allows another valid choice, and out and lse are
/// compared (allclose preset of the candidate's format) with the step under the selection so accepted.
/// The multi-layer decode loop with rectification is <see cref="ResaModel"/> (a library API, not a CLI algorithm).
/// </remarks>
public static class ResaAlgorithm
{
    /// <summary>The typed declaration.</summary>
    public static AlgorithmEntry<ResaOptions, ResaOutput> Entry { get; } = new()
    {
        Name = "resa",
        Summary = "ReSA decode step: min/max block summaries, pooled-query block scores, local + top blocks, attention over them",
        Section = "proofs/attention-sparse.md, Definition: ReSA",
        Seed = _ => new ResaOptions(),
        Parameters =
        [
            Param<ResaOptions>.Int("block_size", "16", "block size b of the key cache, >= 1", (o, v) => o with { BlockSize = v }),
            Param<ResaOptions>.Double("sparsity", "0.1", "p in (0, 1]: at least ceil(nb p) blocks", (o, v) => o with { Sparsity = v }),
            Param<ResaOptions>.Int("n_local", "1", "the last n_local blocks are always selected, >= 0", (o, v) => o with { NLocal = v }),
            Param<ResaOptions>.Int("n_min", "16", "at least min(nb, n_min) blocks, >= 0", (o, v) => o with { NMin = v }),
            Param<ResaOptions>.OptionalDouble("scale", "attention score scale; absent means 1/sqrt(D) (block scores use D^-1/2)", (o, v) => o with { Scale = v }),
        ],
        Inputs =
        [
            new InputSpec("q", "B,Hq,_,D", ArrayKind.Float, false, "the new token's queries, one position"),
            new InputSpec("k", "B,Hkv,L,D", ArrayKind.Float, false, "the key cache, the new token's key last; Hkv divides Hq"),
            new InputSpec("v", "B,Hkv,L,Dv", ArrayKind.Float, false, "the value cache"),
        ],
        Outputs =
        [
            OutputSpec<ResaOutput>.Of("out", "B,Hq,_,Dv", ArrayKind.Float, OutputComparison.Validated, "attention over the selected blocks' positions", r => r.Out),
            OutputSpec<ResaOutput>.Of("lse", "B,Hq,_", ArrayKind.Float, OutputComparison.Validated, "natural log of the sum of exp over those positions", r => r.Lse),
            OutputSpec<ResaOutput>.Of("selected", "B,Hkv,nb", ArrayKind.Bool, OutputComparison.Validated, "the selected blocks of each kv group, nb = ceil(L/block_size)", r => r.Selected),
        ],
        Reference = (call, options) =>
        {
            var result = Resa.DecodeStep(
                AttentionArrays.Double4(call, "q"), AttentionArrays.Double4(call, "k"), AttentionArrays.Double4(call, "v"), options);
            return new ResaOutput(AttentionArrays.ToArray(result.Out), AttentionArrays.ToArray(result.Lse), AttentionArrays.ToArray(result.Selected));
        },
        Validate = new ResaValidator(),
        Generate = Generate,
    };

    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = Entry.ToAlgorithm();

    /// <summary>The reference options from the call's parameters, parsed once per call.</summary>
    public static ResaOptions Options(AlgorithmCall call) => Entry.Options(call);

    /// <summary>A random case: GQA, cache lengths that leave a partial last block, small n_min so that selection matters.</summary>
    private static GeneratedCase Generate(int seed)
    {
        var rng = new Random(seed);
        int b = 1 + rng.Next(2), hkv = 1 + rng.Next(2), hq = hkv * (1 + rng.Next(3));
        int l = new[] { 1, 5, 16, 33, 70 }[rng.Next(5)], d = new[] { 2, 4, 8 }[rng.Next(3)], dv = new[] { 1, 4 }[rng.Next(2)];
        int bs = new[] { 1, 4, 8, 16 }[rng.Next(4)];
        double Draw() => rng.NextDouble() * 4.0 - 2.0;
        var inputs = new Dictionary<string, NdArray>
        {
            ["q"] = AttentionCases.RandomArray(Draw, DType.F32, b, hq, 1, d),
            ["k"] = AttentionCases.RandomArray(Draw, DType.F32, b, hkv, l, d),
            ["v"] = AttentionCases.RandomArray(Draw, DType.F32, b, hkv, l, dv),
        };
        var parameters = new Dictionary<string, string>
        {
            ["block_size"] = AttentionCases.Text(bs),
            ["sparsity"] = new[] { "0.1", "0.25", "0.5", "1" }[rng.Next(4)],
            ["n_local"] = AttentionCases.Text(rng.Next(0, 3)),
            ["n_min"] = AttentionCases.Text(rng.Next(0, 5)),
        };
        return new GeneratedCase(
            string.Create(CultureInfo.InvariantCulture, $"seed {seed}: B={b} Hq={hq} Hkv={hkv} L={l} D={d} Dv={dv} ")
            + string.Join(" ", parameters.Select(p => $"{p.Key}={p.Value}")),
            inputs, parameters);
    }
}
