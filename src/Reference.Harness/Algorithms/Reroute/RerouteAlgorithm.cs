using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Routing;
using static Reference.Harness.Algorithms.RoutingSupport;

namespace Reference.Harness.Algorithms;

/// <summary>The outputs of <c>reroute</c>, from any path.</summary>
/// <param name="Experts">[N, k] token i's j-th expert, -1 where none had room.</param>
/// <param name="Weights">[N, k] P at those experts, 0 where -1.</param>
/// <param name="Load">[E] accepted requests per expert.</param>
public sealed record RerouteOutput(NdArray Experts, NdArray Weights, NdArray Load);

/// <summary>The registry entry for <c>reroute</c> (proofs/reroute.md, Definition).</summary>
/// <remarks>Indices are compared exactly: a near-tie inside one token's ranking can change every later token's outcome
/// through the loads, so no small validator can accept "any valid" answer (proofs/reroute.md, reroute.kernel-equals-reference).
/// The generated cases therefore use grid logits, whose rows are separated in float32 and double alike.</remarks>
public static class RerouteAlgorithm
{
    /// <summary>The typed declaration.</summary>
    public static AlgorithmEntry<RerouteOptions, RerouteOutput> Entry { get; } = new()
    {
        Name = "reroute",
        Summary = "iterative rerouting: later choices that find their expert full go to the next best expert with room",
        Section = "proofs/reroute.md, Definition",
        Seed = _ => new RerouteOptions(),
        Parameters =
        [
            Param<RerouteOptions>.Int("k", "2", "experts per token, 1..E", (o, v) => o with { K = v }),
            ScoreParameter<RerouteOptions>((o, v) => o with { Score = v }),
            .. CapacityRuleParameters<RerouteOptions>(
                (o, v) => o with { Capacity = v }, (o, v) => o with { CapacityFactor = v },
                (o, v) => o with { Rounding = v }, (o, v) => o with { MinCapacity = v }),
        ],
        Inputs = [new InputSpec("logits", "N,E", ArrayKind.Float, false, "router logits X")],
        Outputs =
        [
            OutputSpec<RerouteOutput>.Of("experts", "N,k", ArrayKind.Integer, OutputComparison.Exact, "token i's j-th expert, -1 where none had room", r => r.Experts),
            OutputSpec<RerouteOutput>.Of("weights", "N,k", ArrayKind.Float, OutputComparison.Tolerance, "P at those experts, 0 where -1", r => r.Weights),
            OutputSpec<RerouteOutput>.Of("load", "E", ArrayKind.Integer, OutputComparison.Exact, "accepted requests per expert, at most C", r => r.Load),
        ],
        Reference = (call, options) => Output(Reroute.Route(call.Matrix("logits"), options)),
        // Beyond FastReference.RoutingWork (work N E): RerouteFast, equal to the reference bit for bit (proofs/reroute.md,
        // reroute.fast-reference-identical).
        Oracle = (call, options) => Output(FastReference.RoutingOracle(call, ("oracle", nameof(RerouteAlgorithm)),
            () => Reroute.Route(call.Matrix("logits"), options), x => RerouteFast.Route(x, options))),
        Paths =
        [
            new PathOf<RerouteOptions, RerouteOutput>("kernel", "float32 scores, per-row rankings in parallel, one cursor per token", (call, options) =>
            {
                var logits = call.Array("logits");
                int n = logits.Shape[0], e = logits.Shape[1];
                var r = Reference.Kernels.Routing.Reroute.Route(call.Floats("logits"), n, e, options);
                return new RerouteOutput(NdArray.Create(r.Experts, n, options.K), NdArray.Create(r.Weights, n, options.K), NdArray.Create(r.Load, e));
            }),
        ],
        // Weights: the routing weights' tolerance from E, k and their precision (proofs/topk.md, topk.weights-tolerance),
        // not the fixed preset; experts are exact, so the weights are compared at the reference's experts.
        CompareInContext = new RerouteValidator(),
        Generate = Generate,
    };

    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = Entry.ToAlgorithm();

    /// <summary>The outputs of a routing: integers as i32, weights as f64.</summary>
    private static RerouteOutput Output(RerouteResult r) =>
        new(NdArray.FromMatrix(r.Experts), NdArray.FromMatrix(r.Weights), NdArray.FromVector(r.Load));

    /// <summary>The reference options from the call's parameters, parsed once per call.</summary>
    public static RerouteOptions Options(AlgorithmCall call) => Entry.Options(call);

    /// <summary>A random case on separated grid logits (see the remarks), awkward shapes, every rounding, sometimes an
    /// explicit capacity.</summary>
    private static GeneratedCase Generate(int seed)
    {
        var rng = new Random(seed);
        int n = TokenChoices[rng.Next(TokenChoices.Length)];
        int e = ExpertChoices[rng.Next(ExpertChoices.Length)];
        int k = 1 + rng.Next(e);
        var parameters = new Dictionary<string, string>
        {
            ["k"] = Text(k),
            ["score"] = rng.Next(3) == 0 ? "sigmoid" : "softmax",
        };
        if (rng.Next(3) == 0)
        {
            parameters["capacity"] = Text(rng.Next(n * k + 2));
        }
        else
        {
            parameters["capacity_factor"] = Text(new[] { 0.5, 0.75, 1.0, 1.25, 2.0 }[rng.Next(5)]);
            parameters["rounding"] = new[] { "ceil", "floor", "round", "tutel", "ceil-f32" }[rng.Next(5)];
        }
        var inputs = new Dictionary<string, NdArray> { ["logits"] = NdArray.Create(GridLogits(rng, n, e), n, e) };
        return new GeneratedCase($"seed {seed}: N={n} E={e} k={k} {parameters["score"]} grid", inputs, parameters);
    }
}
