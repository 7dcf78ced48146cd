using Reference.Harness.Comparison;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Routing;
using static Reference.Harness.Algorithms.RoutingSupport;

namespace Reference.Harness.Algorithms;

/// <summary>The registry entry for <c>block-routing</c> (SEMANTICS.md sections 9 and 12).</summary>
public static class BlockRoutingAlgorithm
{
    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = new()
    {
        Name = "block-routing",
        Summary = "block-level routing for diffusion LMs: blocks of B tokens share their top-kb experts by mean score",
        Section = "SEMANTICS.md section 9",
        Parameters =
        [
            new ParameterSpec("k", ParameterKind.Int, "2", "experts per token, 1..block_k"),
            new ParameterSpec("block_size", ParameterKind.Int, null, "B, tokens per block (required, at least 1)"),
            new ParameterSpec("block_k", ParameterKind.Int, null, "kb, experts per block, k..E (absent: k)"),
        ],
        Inputs = [new InputSpec("logits", "N,E", ArrayKind.Float, false, "router logits X")],
        Outputs =
        [
            new OutputSpec("experts", "N,k", ArrayKind.Integer, OutputComparison.Validated, "each token's experts within its block's set, best first"),
            new OutputSpec("weights", "N,k", ArrayKind.Float, OutputComparison.Validated, "P at those, renormalized per token"),
            new OutputSpec("block_experts", "nb,kb", ArrayKind.Integer, OutputComparison.Validated, "each block's experts, best first"),
            new OutputSpec("unique_per_block", "nb", ArrayKind.Integer, OutputComparison.Validated, "distinct experts a block's tokens use"),
            new OutputSpec("token_level_unique", "nb", ArrayKind.Integer, OutputComparison.Validated, "distinct experts plain top-k would use"),
        ],
        Reference = call =>
        {
            var r = ReferenceResult(call);
            return new Dictionary<string, NdArray>
            {
                ["experts"] = NdArray.FromMatrix(r.Experts),
                ["weights"] = NdArray.FromMatrix(r.Weights),
                ["block_experts"] = NdArray.FromMatrix(r.BlockExperts),
                ["unique_per_block"] = NdArray.FromVector(r.UniquePerBlock),
                ["token_level_unique"] = NdArray.FromVector(r.TokenLevelUnique),
            };
        },
        Paths =
        [
            new OptimizedPath("kernel", "float32 softmax, blocks in parallel", call =>
            {
                var logits = call.Array("logits");
                int n = logits.Shape[0], e = logits.Shape[1];
                var options = Options(call);
                var r = Reference.Kernels.Routing.BlockRouting.Route(call.Floats("logits"), n, e, options);
                int nb = r.UniquePerBlock.Length, kb = options.BlockK ?? options.K;
                return new Dictionary<string, NdArray>
                {
                    ["experts"] = NdArray.Create(r.Experts, n, options.K),
                    ["weights"] = NdArray.Create(r.Weights, n, options.K),
                    ["block_experts"] = NdArray.Create(r.BlockExperts, nb, kb),
                    ["unique_per_block"] = NdArray.Create(r.UniquePerBlock, nb),
                    ["token_level_unique"] = NdArray.Create(r.TokenLevelUnique, nb),
                };
            }),
        ],
        Validate = new BlockRoutingValidator(),
        Generate = seed =>
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
        },
    };

    /// <summary>The reference's routing of the call, computed once per call (<see cref="AlgorithmCall.Memo{T}"/>): the
    /// reference's outputs and the validator's blocks and scores come from it.</summary>
    public static BlockRoutingResult ReferenceResult(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return call.Memo(("reference", nameof(BlockRoutingAlgorithm)), () => BlockRouting.Route(call.Matrix("logits"), Options(call)));
    }

    /// <summary>The reference options from the call's parameters. Parsed once per call (<see cref="AlgorithmCall.Memo{T}"/>).</summary>
    public static BlockRoutingOptions Options(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return call.Memo(("options", nameof(BlockRoutingAlgorithm)), () => ReadOptions(call));
    }

    private static BlockRoutingOptions ReadOptions(AlgorithmCall call)
    {
        return new BlockRoutingOptions
        {
            K = call.Parameters.GetInt("k"),
            BlockSize = call.Parameters.GetInt("block_size"),
            BlockK = call.Parameters.TryGetInt("block_k"),
        };
    }
}
