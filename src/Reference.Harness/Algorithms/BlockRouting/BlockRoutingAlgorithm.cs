using Reference.Harness.Comparison;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Routing;
using static Reference.Harness.Algorithms.RoutingSupport;

namespace Reference.Harness.Algorithms;

/// <summary>The outputs of <c>block-routing</c>, from any path.</summary>
/// <param name="Experts">[N, k] each token's experts within its block's set.</param>
/// <param name="Weights">[N, k] P at those, renormalized per token.</param>
/// <param name="BlockExperts">[nb, kb] each block's experts.</param>
/// <param name="UniquePerBlock">[nb] distinct experts a block's tokens use.</param>
/// <param name="TokenLevelUnique">[nb] distinct experts plain top-k would use.</param>
public sealed record BlockRoutingOutput(NdArray Experts, NdArray Weights, NdArray BlockExperts, NdArray UniquePerBlock, NdArray TokenLevelUnique);

/// <summary>The registry entry for <c>block-routing</c> (proofs/block-routing.md, Definition).</summary>
public static class BlockRoutingAlgorithm
{
    /// <summary>The typed declaration.</summary>
    public static AlgorithmEntry<BlockRoutingOptions, BlockRoutingOutput> Entry { get; } = new()
    {
        Name = "block-routing",
        Summary = "block-level routing for diffusion LMs: blocks of B tokens share their top-kb experts by mean score",
        Section = "proofs/block-routing.md, Definition",
        Seed = _ => new BlockRoutingOptions { BlockSize = 0 },
        Parameters =
        [
            Param<BlockRoutingOptions>.Int("k", "2", "experts per token, 1..block_k", (o, v) => o with { K = v }),
            Param<BlockRoutingOptions>.Int("block_size", null, "B, tokens per block (required, at least 1)", (o, v) => o with { BlockSize = v }),
            Param<BlockRoutingOptions>.OptionalInt("block_k", "kb, experts per block, k..E (absent: k)", (o, v) => o with { BlockK = v }),
        ],
        Inputs = [new InputSpec("logits", "N,E", ArrayKind.Float, false, "router logits X")],
        Outputs =
        [
            OutputSpec<BlockRoutingOutput>.Of("experts", "N,k", ArrayKind.Integer, OutputComparison.Validated, "each token's experts within its block's set, best first", r => r.Experts),
            OutputSpec<BlockRoutingOutput>.Of("weights", "N,k", ArrayKind.Float, OutputComparison.Validated, "P at those, renormalized per token", r => r.Weights),
            OutputSpec<BlockRoutingOutput>.Of("block_experts", "nb,kb", ArrayKind.Integer, OutputComparison.Validated, "each block's experts, best first", r => r.BlockExperts),
            OutputSpec<BlockRoutingOutput>.Of("unique_per_block", "nb", ArrayKind.Integer, OutputComparison.Validated, "distinct experts a block's tokens use", r => r.UniquePerBlock),
            OutputSpec<BlockRoutingOutput>.Of("token_level_unique", "nb", ArrayKind.Integer, OutputComparison.Validated, "distinct experts plain top-k would use", r => r.TokenLevelUnique),
        ],
        Reference = (call, _) => Output(ReferenceResult(call)),
        Oracle = (call, _) => Output(OracleResult(call)),
        Paths =
        [
            new PathOf<BlockRoutingOptions, BlockRoutingOutput>("kernel", "float32 softmax, blocks in parallel", (call, options) =>
            {
                var logits = call.Array("logits");
                int n = logits.Shape[0], e = logits.Shape[1];
                var r = Reference.Kernels.Routing.BlockRouting.Route(call.Floats("logits"), n, e, options);
                int nb = r.UniquePerBlock.Length, kb = options.BlockK ?? options.K;
                return new BlockRoutingOutput(NdArray.Create(r.Experts, n, options.K), NdArray.Create(r.Weights, n, options.K),
                    NdArray.Create(r.BlockExperts, nb, kb), NdArray.Create(r.UniquePerBlock, nb), NdArray.Create(r.TokenLevelUnique, nb));
            }),
        ],
        Validate = new BlockRoutingValidator(),
        Generate = Generate,
    };

    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = Entry.ToAlgorithm();

    /// <summary>The outputs of a routing: integers as i32, weights as f64.</summary>
    private static BlockRoutingOutput Output(BlockRoutingResult r) =>
        new(NdArray.FromMatrix(r.Experts), NdArray.FromMatrix(r.Weights), NdArray.FromMatrix(r.BlockExperts),
            NdArray.FromVector(r.UniquePerBlock), NdArray.FromVector(r.TokenLevelUnique));

    /// <summary>The reference options from the call's parameters, parsed once per call.</summary>
    public static BlockRoutingOptions Options(AlgorithmCall call) => Entry.Options(call);

    /// <summary>The reference's routing of the call, computed once per call (<see cref="AlgorithmCall.Memo{T}"/>): the
    /// reference's outputs and the validator's blocks and scores come from it.</summary>
    public static BlockRoutingResult ReferenceResult(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return call.Memo(("reference", nameof(BlockRoutingAlgorithm)), () => BlockRouting.Route(call.Matrix("logits"), Options(call)));
    }

    /// <summary>What <c>check</c> judges against, computed once per call: beyond <see cref="FastReference.RoutingWork"/>
    /// (work N E) the routing of <see cref="BlockRoutingFast"/>, equal to the reference's bit for bit (proofs/block-routing.md,
    /// block-routing.fast-reference-identical); otherwise <see cref="ReferenceResult"/>.</summary>
    /// <param name="call">The call.</param>
    /// <returns>The routing.</returns>
    public static BlockRoutingResult OracleResult(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return FastReference.RoutingOracle(call, ("oracle", nameof(BlockRoutingAlgorithm)), () => ReferenceResult(call),
            x => BlockRoutingFast.Route(x, Options(call)));
    }

    /// <summary>A random case: awkward shapes, grid, gaussian or wide logits, block sizes 1..64, sometimes a block_k above k.</summary>
    private static GeneratedCase Generate(int seed)
    {
        var rng = new Random(seed);
        int n = TokenChoices[rng.Next(TokenChoices.Length)];
        int e = ExpertChoices[rng.Next(ExpertChoices.Length)];
        int k = 1 + rng.Next(e);
        int style = rng.Next(3);
        var parameters = new Dictionary<string, string>
        {
            ["k"] = Text(k),
            ["block_size"] = Text(new[] { 1, 2, 3, 4, 8, 16, 64 }[rng.Next(7)]),
        };
        if (rng.Next(3) != 0)
        {
            parameters["block_k"] = Text(k + rng.Next(e - k + 1));
        }
        var inputs = new Dictionary<string, NdArray> { ["logits"] = NdArray.Create(Logits(rng, n, e, style), n, e) };
        return new GeneratedCase($"seed {seed}: N={n} E={e} k={k} B={parameters["block_size"]}{(style == 0 ? " ties" : "")}", inputs, parameters);
    }
}
