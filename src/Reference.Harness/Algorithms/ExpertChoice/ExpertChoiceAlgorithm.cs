using Reference.Harness.Comparison;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Routing;
using static Reference.Harness.Algorithms.RoutingSupport;

namespace Reference.Harness.Algorithms;

/// <summary>The registry entry for <c>expert-choice</c> (SEMANTICS.md sections 4 and 12).</summary>
public static class ExpertChoiceAlgorithm
{
    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = new()
    {
        Name = "expert-choice",
        Summary = "expert-choice routing: every expert takes its top-C tokens by softmax score",
        Section = "SEMANTICS.md section 4",
        Parameters =
        [
            new ParameterSpec("capacity", ParameterKind.Int, null, "explicit C in 0..N; absent: min(N, ceil(capacity_factor N k / E))"),
            new ParameterSpec("capacity_factor", ParameterKind.Double, "1.0", "cf for the derived capacity"),
            new ParameterSpec("k", ParameterKind.Int, "1", "average experts per token for the derived capacity"),
        ],
        Inputs = [new InputSpec("logits", "N,E", ArrayKind.Float, false, "router logits X")],
        Outputs =
        [
            new OutputSpec("tokens", "E,C", ArrayKind.Integer, OutputComparison.Validated, "each expert's tokens, best first"),
            new OutputSpec("gates", "E,C", ArrayKind.Float, OutputComparison.Validated, "P at those (expert, token) pairs"),
            new OutputSpec("count", "N", ArrayKind.Integer, OutputComparison.Validated, "experts per token, 0..E"),
        ],
        Reference = call =>
        {
            var r = ReferenceResult(call);
            return new Dictionary<string, NdArray>
            {
                ["tokens"] = NdArray.Create(Flat(r.Tokens).Select(v => (int)v).ToArray(), r.Tokens.GetLength(0), r.Capacity),
                ["gates"] = NdArray.Create(Flat(r.Gates), r.Gates.GetLength(0), r.Capacity),
                ["count"] = NdArray.FromVector(r.Count),
            };
        },
        Paths =
        [
            new OptimizedPath("kernel", "float32 softmax, transpose, per-expert sort in parallel", call =>
            {
                var logits = call.Array("logits");
                int n = logits.Shape[0], e = logits.Shape[1];
                var r = Reference.Kernels.Routing.ExpertChoice.Route(call.Floats("logits"), n, e, Options(call));
                return new Dictionary<string, NdArray>
                {
                    ["tokens"] = NdArray.Create(r.Tokens, e, r.Capacity),
                    ["gates"] = NdArray.Create(r.Gates, e, r.Capacity),
                    ["count"] = NdArray.Create(r.Count, n),
                };
            }),
        ],
        Validate = new ExpertChoiceValidator(),
        Generate = seed =>
        {
            var rng = new Random(seed);
            int n = TokenChoices[rng.Next(TokenChoices.Length)];
            int e = ExpertChoices[rng.Next(ExpertChoices.Length)];
            int style = rng.Next(3);
            var parameters = new Dictionary<string, string>();
            if (rng.Next(3) == 0)
            {
                parameters["capacity"] = Text(rng.Next(n + 1));
            }
            else
            {
                parameters["capacity_factor"] = Text(new[] { 0.5, 1.0, 1.25, 2.0, 8.0 }[rng.Next(5)]);
                parameters["k"] = Text(1 + rng.Next(3));
            }
            var inputs = new Dictionary<string, NdArray> { ["logits"] = NdArray.Create(Logits(rng, n, e, style), n, e) };
            return new GeneratedCase($"seed {seed}: N={n} E={e}{(style == 0 ? " ties" : "")}", inputs, parameters);
        },
    };

    /// <summary>The reference's routing of the call, computed once per call (<see cref="AlgorithmCall.Memo{T}"/>): the
    /// reference's outputs and the validator's C and scores come from it.</summary>
    public static ExpertChoiceResult ReferenceResult(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return call.Memo(("reference", nameof(ExpertChoiceAlgorithm)), () => ExpertChoice.Route(call.Matrix("logits"), Options(call)));
    }

    /// <summary>The reference options from the call's parameters. Parsed once per call (<see cref="AlgorithmCall.Memo{T}"/>).</summary>
    public static ExpertChoiceOptions Options(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return call.Memo(("options", nameof(ExpertChoiceAlgorithm)), () => ReadOptions(call));
    }

    private static ExpertChoiceOptions ReadOptions(AlgorithmCall call)
    {
        return new ExpertChoiceOptions
        {
            Capacity = call.Parameters.TryGetInt("capacity"),
            CapacityFactor = call.Parameters.GetDouble("capacity_factor"),
            K = call.Parameters.GetInt("k"),
        };
    }
}
