using Reference.Attention;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Kernels.Attention;

namespace Reference.Harness.Algorithms;

/// <summary>The registry entry for <c>moba</c>: Mixture of Block Attention (SEMANTICS.md sections 10 and 12).</summary>
/// <remarks>
/// The <c>kernel</c> path selects the chunks like the reference (in double) and runs the float32 FlashAttention kernel
/// under the resulting mask. Float outputs are judged by <see cref="AttentionTolerance"/>; the baseline is dense
/// attention under the reference's selection, computed in the candidate's precision.
/// </remarks>
public static class MobaAlgorithm
{
    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = new()
    {
        Name = "moba",
        Summary = "MoBA: each query attends causally to its top-k key chunks by a mean-key gate (own chunk always kept)",
        Section = "SEMANTICS.md section 10",
        Parameters =
        [
            new ParameterSpec("chunk_size", ParameterKind.Int, null, "chunk size Bc >= 1 (required)"),
            new ParameterSpec("top_k", ParameterKind.Int, null, "chunks per query >= 1, the own chunk included (required)"),
            new ParameterSpec("scale", ParameterKind.Double, null, "attention score scale; absent means 1/sqrt(D) (the gate is unscaled)"),
        ],
        Inputs =
        [
            new InputSpec("q", "B,H,T,D", ArrayKind.Float, false, "queries"),
            new InputSpec("k", "B,H,T,D", ArrayKind.Float, false, "keys (self-attention, one kv head per query head)"),
            new InputSpec("v", "B,H,T,Dv", ArrayKind.Float, false, "values"),
        ],
        Outputs =
        [
            new OutputSpec("out", "B,H,T,Dv", ArrayKind.Float, OutputComparison.Tolerance, "attention over the selected chunks' keys j <= t"),
            new OutputSpec("lse", "B,H,T", ArrayKind.Float, OutputComparison.Tolerance, "natural log of the sum of exp over those keys"),
        ],
        Reference = call => AttentionAlgorithm.Outputs(Moba.Compute(
            AttentionArrays.Double4(call, "q"), AttentionArrays.Double4(call, "k"), AttentionArrays.Double4(call, "v"), Options(call))),
        Paths =
        [
            new OptimizedPath("kernel", "chunk selection in double, then float32 FlashAttention under the selection's mask",
                call =>
                {
                    var mask = Moba.Mask(AttentionArrays.Double4(call, "q"), AttentionArrays.Double4(call, "k"), AttentionArrays.Double4(call, "v"), Options(call));
                    var options = new FlashAttentionOptions
                    {
                        Scale = call.Parameters.TryGetDouble("scale") is double s ? (float)s : null,
                        BlockQ = AttentionAlgorithm.KernelTile,
                        BlockK = AttentionAlgorithm.KernelTile,
                        Mask = FlatMask.FromArray(mask),
                    };
                    return AttentionAlgorithm.Kernel(call, options, 1);
                }),
        ],
        CompareInContext = new MobaValidator(),
        Generate = Generate,
    };

    /// <summary>The reference options from the call's parameters. Parsed once per call (<see cref="AlgorithmCall.Memo{T}"/>).</summary>
    public static MobaOptions Options(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return call.Memo(("options", nameof(MobaAlgorithm)), () => ReadOptions(call));
    }

    private static MobaOptions ReadOptions(AlgorithmCall call)
    {
        return new MobaOptions
        {
            ChunkSize = call.Parameters.GetInt("chunk_size"),
            TopK = call.Parameters.GetInt("top_k"),
            Scale = call.Parameters.TryGetDouble("scale"),
        };
    }

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
            ["q"] = AttentionAlgorithm.RandomArray(Draw, dtype, b, h, t, d),
            ["k"] = AttentionAlgorithm.RandomArray(Draw, dtype, b, h, t, d),
            ["v"] = AttentionAlgorithm.RandomArray(Draw, dtype, b, h, t, dv),
        };
        var parameters = new Dictionary<string, string>
        {
            ["chunk_size"] = AttentionAlgorithm.Text(chunk),
            ["top_k"] = AttentionAlgorithm.Text(topK),
        };
        if (rng.Next(3) == 0) parameters["scale"] = "0.5";
        return new GeneratedCase($"seed {seed}: B={b} H={h} T={t} D={d} Dv={dv} {dtype} {kind} chunk={chunk} top_k={topK}", inputs, parameters);
    }
}
