using Reference.Attention;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;

namespace Reference.Harness.Algorithms;

/// <summary>The outputs of <c>nsa</c>, from any path.</summary>
/// <param name="Out">[B, Hq, T, Dv] the gated sum of the three branches.</param>
/// <param name="Selected">[B, Hkv, T, nb] the blocks each query's kv group selected.</param>
public sealed record NsaOutput(NdArray Out, NdArray Selected);

/// <summary>The registry entry for <c>nsa</c>: Native Sparse Attention's three gated branches (proofs/attention-sparse.md, Definition: NSA).</summary>
/// <remarks>No optimized path. A candidate is judged by <see cref="NsaValidator"/>: <c>selected</c> must equal the
/// reference's except where a tie or near-tie within the candidate's precision allows another valid choice, and
/// <c>out</c> is compared (allclose preset of the candidate's format) with NSA under the selection so accepted.</remarks>
public static class NsaAlgorithm
{
    /// <summary>The typed declaration.</summary>
    public static AlgorithmEntry<NsaOptions, NsaOutput> Entry { get; } = new()
    {
        Name = "nsa",
        Summary = "NSA: gated sum of compressed (mean-pooled blocks), selected (top-n blocks per kv group) and sliding-window attention",
        Section = "proofs/attention-sparse.md, Definition: NSA",
        Seed = _ => new NsaOptions(),
        Parameters =
        [
            Param<NsaOptions>.Int("block_size", "64", "block size BS of compression and selection, >= 1", (o, v) => o with { BlockSize = v }),
            Param<NsaOptions>.Int("top_n", "16", "blocks selected per query and kv group, >= 1 (the own block included)", (o, v) => o with { TopN = v }),
            Param<NsaOptions>.Int("window", "512", "sliding window W >= 0: keys t-W+1..t; 0 turns the branch off", (o, v) => o with { Window = v }),
            Param<NsaOptions>.OptionalDouble("scale", "score scale of all branches; absent means 1/sqrt(D)", (o, v) => o with { Scale = v }),
        ],
        Inputs =
        [
            new InputSpec("q", "B,Hq,T,D", ArrayKind.Float, false, "queries"),
            new InputSpec("k", "B,Hkv,T,D", ArrayKind.Float, false, "keys; Hkv divides Hq"),
            new InputSpec("v", "B,Hkv,T,Dv", ArrayKind.Float, false, "values"),
            new InputSpec("gates", "B,Hq,T,_", ArrayKind.Float, false, "branch gates (g_cmp, g_slc, g_win), last dimension 3"),
        ],
        Outputs =
        [
            OutputSpec<NsaOutput>.Of("out", "B,Hq,T,Dv", ArrayKind.Float, OutputComparison.Validated, "g_cmp o_cmp + g_slc o_slc + g_win o_win", r => r.Out),
            OutputSpec<NsaOutput>.Of("selected", "B,Hkv,T,nb", ArrayKind.Bool, OutputComparison.Validated, "the blocks each query's kv group selected, nb = ceil(T/block_size)", r => r.Selected),
        ],
        Reference = (call, options) =>
        {
            var result = Nsa.Compute(
                AttentionArrays.Double4(call, "q"), AttentionArrays.Double4(call, "k"), AttentionArrays.Double4(call, "v"),
                AttentionArrays.Double4(call, "gates"), options);
            return new NsaOutput(AttentionArrays.ToArray(result.Out), AttentionArrays.ToArray(result.Selected));
        },
        Oracle = (call, _) =>
        {
            var result = OracleResult(call);
            return new NsaOutput(AttentionArrays.ToArray(result.Out), AttentionArrays.ToArray(result.Selected));
        },
        Validate = new NsaValidator(),
        Generate = Generate,
    };

    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = Entry.ToAlgorithm();

    /// <summary>What <c>check</c> judges against, computed once per call (the oracle's outputs and the validator share it):
    /// beyond <see cref="FastReference.AttentionWork"/> (work B Hq T^2 (D + Dv)) <see cref="NsaFast"/>, equal to the
    /// reference bit for bit (proofs/attention-sparse.md, attention.nsa-fast-reference-identical); otherwise
    /// <see cref="Nsa.Compute"/>.</summary>
    /// <param name="call">The call.</param>
    /// <returns>The result.</returns>
    public static NsaResult OracleResult(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return call.Memo(("oracle", nameof(NsaAlgorithm)), () => (AttentionAlgorithm.Fast(call)
            ? (Func<double[,,,], double[,,,], double[,,,], double[,,,], NsaOptions, NsaResult>)NsaFast.Compute
            : Nsa.Compute)(
            AttentionArrays.Double4(call, "q"), AttentionArrays.Double4(call, "k"), AttentionArrays.Double4(call, "v"),
            AttentionArrays.Double4(call, "gates"), Options(call)));
    }

    /// <summary>The reference options from the call's parameters, parsed once per call.</summary>
    public static NsaOptions Options(AlgorithmCall call) => Entry.Options(call);

    /// <summary>A random case: GQA, awkward lengths and block sizes, top_n from 1 up, windows from 0 up, random gates.</summary>
    private static GeneratedCase Generate(int seed)
    {
        var rng = new Random(seed);
        int[] lengths = [1, 3, 7, 12, 17, 25];
        int t = lengths[rng.Next(lengths.Length)];
        int b = 1 + rng.Next(2), hkv = 1 + rng.Next(2), hq = hkv * (1 + rng.Next(3));
        int d = new[] { 1, 2, 4, 8 }[rng.Next(4)], dv = new[] { 1, 2, 4 }[rng.Next(3)];
        int bs = new[] { 1, 2, 3, 4, 8 }[rng.Next(5)];
        string kind = new[] { "uniform", "ties" }[rng.Next(2)];
        double Draw() => kind == "ties" ? rng.Next(-1, 2) : rng.NextDouble() * 4.0 - 2.0;
        var inputs = new Dictionary<string, NdArray>
        {
            ["q"] = AttentionCases.RandomArray(Draw, DType.F32, b, hq, t, d),
            ["k"] = AttentionCases.RandomArray(Draw, DType.F32, b, hkv, t, d),
            ["v"] = AttentionCases.RandomArray(Draw, DType.F32, b, hkv, t, dv),
            ["gates"] = AttentionCases.RandomArray(rng.NextDouble, DType.F32, b, hq, t, 3),
        };
        var parameters = new Dictionary<string, string>
        {
            ["block_size"] = AttentionCases.Text(bs),
            ["top_n"] = AttentionCases.Text(1 + rng.Next(4)),
            ["window"] = AttentionCases.Text(rng.Next(0, t + 2)),
        };
        return new GeneratedCase(
            $"seed {seed}: B={b} Hq={hq} Hkv={hkv} T={t} D={d} Dv={dv} {kind} " + string.Join(" ", parameters.Select(p => $"{p.Key}={p.Value}")),
            inputs, parameters);
    }
}
