using Reference.Attention;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Kernels.Attention;

namespace Reference.Harness.Algorithms;

/// <summary>The registry entry for <c>moba</c>: Mixture of Block Attention (proofs/attention-sparse.md, Definition: MoBA).</summary>
/// <remarks>
/// The <c>kernel</c> path selects the chunks like the reference (in double) and runs the float32 FlashAttention kernel
/// under the resulting mask. Float outputs are judged by <see cref="AttentionTolerance"/>; the baseline is dense
/// attention under the reference's selection, computed in the candidate's precision.
/// </remarks>
public static class MobaAlgorithm
{
    /// <summary>The typed declaration.</summary>
    public static AlgorithmEntry<MobaOptions, AttentionOutput> Entry { get; } = new()
    {
        Name = "moba",
        Summary = "MoBA: each query attends causally to its top-k key chunks by a mean-key gate (own chunk always kept)",
        Section = "proofs/attention-sparse.md, Definition: MoBA",
        Seed = _ => new MobaOptions { ChunkSize = 0, TopK = 0 },
        Parameters =
        [
            Param<MobaOptions>.Int("chunk_size", null, "chunk size Bc >= 1 (required)", (o, v) => o with { ChunkSize = v }),
            Param<MobaOptions>.Int("top_k", null, "chunks per query >= 1, the own chunk included (required)", (o, v) => o with { TopK = v }),
            Param<MobaOptions>.OptionalDouble("scale", "attention score scale; absent means 1/sqrt(D) (the gate is unscaled)", (o, v) => o with { Scale = v }),
        ],
        Inputs =
        [
            new InputSpec("q", "B,H,T,D", ArrayKind.Float, false, "queries"),
            new InputSpec("k", "B,H,T,D", ArrayKind.Float, false, "keys (self-attention, one kv head per query head)"),
            new InputSpec("v", "B,H,T,Dv", ArrayKind.Float, false, "values"),
        ],
        Outputs =
        [
            OutputSpec<AttentionOutput>.Of("out", "B,H,T,Dv", ArrayKind.Float, OutputComparison.Tolerance, "attention over the selected chunks' keys j <= t", r => r.Out),
            OutputSpec<AttentionOutput>.Of("lse", "B,H,T", ArrayKind.Float, OutputComparison.Tolerance, "natural log of the sum of exp over those keys", r => r.Lse),
        ],
        Reference = (call, options) => AttentionAlgorithm.Output(Moba.Compute(
            AttentionArrays.Double4(call, "q"), AttentionArrays.Double4(call, "k"), AttentionArrays.Double4(call, "v"), options)),
        // Beyond FastReference.AttentionWork: MobaFast, equal to the reference bit for bit (proofs/attention-sparse.md,
        // attention.moba-fast-reference-identical).
        Oracle = (call, options) => AttentionAlgorithm.Output((AttentionAlgorithm.Fast(call)
            ? (Func<double[,,,], double[,,,], double[,,,], MobaOptions, AttentionResult>)MobaFast.Compute
            : Moba.Compute)(
            AttentionArrays.Double4(call, "q"), AttentionArrays.Double4(call, "k"), AttentionArrays.Double4(call, "v"), options)),
        Paths =
        [
            new PathOf<MobaOptions, AttentionOutput>("kernel", "chunk selection in double, then float32 FlashAttention under the selection's mask",
                (call, options) =>
                {
                    var mask = Moba.Mask(AttentionArrays.Double4(call, "q"), AttentionArrays.Double4(call, "k"), AttentionArrays.Double4(call, "v"), options);
                    var kernel = new FlashAttentionOptions
                    {
                        Scale = options.Scale is double s ? (float)s : null,
                        BlockQ = AttentionAlgorithm.KernelTile,
                        BlockK = AttentionAlgorithm.KernelTile,
                        Mask = FlatMask.FromArray(mask),
                    };
                    return AttentionAlgorithm.KernelOutput(call, kernel, 1);
                }),
        ],
        CompareInContext = new MobaValidator(),
        Generate = Generate,
    };

    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = Entry.ToAlgorithm();

    /// <summary>The reference options from the call's parameters, parsed once per call.</summary>
    public static MobaOptions Options(AlgorithmCall call) => Entry.Options(call);

    /// <summary>A random case: awkward lengths and chunk sizes, top_k from 1 to beyond the chunk count, tied or sharp values.</summary>
    private static GeneratedCase Generate(int seed)
    {
        var rng = new Random(seed);
        int[] lengths = [1, 2, 5, 7, 13, 16, 31];
        int t = lengths[rng.Next(lengths.Length)];
        int b = 1 + rng.Next(2), h = 1 + rng.Next(3), d = new[] { 1, 2, 4, 8 }[rng.Next(4)], dv = new[] { 1, 3, 4 }[rng.Next(3)];
        int chunk = new[] { 1, 2, 3, 4, 5, 8 }[rng.Next(6)];
        int chunks = (t + chunk - 1) / chunk;
        int topK = 1 + rng.Next(chunks + 1);
        string kind = new[] { "uniform", "ties", "sharp" }[rng.Next(3)];
        double Draw() => kind switch
        {
            "ties" => rng.Next(-1, 2),
            "sharp" => rng.NextDouble() * 12.0 - 6.0,
            _ => rng.NextDouble() * 4.0 - 2.0,
        };
        var dtype = new[] { DType.F32, DType.F64, DType.BF16 }[rng.Next(3)];
        var inputs = new Dictionary<string, NdArray>
        {
            ["q"] = AttentionCases.RandomArray(Draw, dtype, b, h, t, d),
            ["k"] = AttentionCases.RandomArray(Draw, dtype, b, h, t, d),
            ["v"] = AttentionCases.RandomArray(Draw, dtype, b, h, t, dv),
        };
        var parameters = new Dictionary<string, string>
        {
            ["chunk_size"] = AttentionCases.Text(chunk),
            ["top_k"] = AttentionCases.Text(topK),
        };
        if (rng.Next(3) == 0) parameters["scale"] = "0.5";
        return new GeneratedCase($"seed {seed}: B={b} H={h} T={t} D={d} Dv={dv} {dtype} {kind} chunk={chunk} top_k={topK}", inputs, parameters);
    }
}
