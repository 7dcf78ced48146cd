using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Routing;
using static Reference.Harness.Algorithms.RoutingSupport;

namespace Reference.Harness.Algorithms;

/// <summary>The outputs of <c>capacity</c>, from any path.</summary>
/// <param name="Experts">[N, k] kept experts, -1 where dropped.</param>
/// <param name="Weights">[N, k] the kept requests' weights, 0 where dropped.</param>
/// <param name="Slots">[N, k] position in the expert's buffer, -1 where dropped.</param>
/// <param name="Load">[E] kept requests per expert.</param>
public sealed record CapacityOutput(NdArray Experts, NdArray Weights, NdArray Slots, NdArray Load);

/// <summary>The registry entry for <c>capacity</c> (proofs/capacity.md, Definition).</summary>
public static class CapacityAlgorithm
{
    /// <summary>The typed declaration.</summary>
    public static AlgorithmEntry<CapacityOptions, CapacityOutput> Entry { get; } = new()
    {
        Name = "capacity",
        Summary = "top-k routing with expert capacity C and dropping: five drop policies, five capacity roundings, none/before/after renormalization",
        Section = "proofs/capacity.md, Definition",
        Seed = call => new CapacityOptions { Bias = call.OptionalDoubles("bias") },
        Parameters =
        [
            Param<CapacityOptions>.Int("k", "2", "experts per token, 1..E", (o, v) => o with { K = v }),
            ScoreParameter<CapacityOptions>((o, v) => o with { Score = v }),
            Param<CapacityOptions>.Choice("normalize", "none", "none, before (over the k selected; mesh, Tutel) or after (over the kept; DeepSpeed)",
                [("none", Renormalization.None), ("before", Renormalization.Before), ("after", Renormalization.After)],
                (o, v) => o with { Normalize = v }),
            .. CapacityRuleParameters<CapacityOptions>(
                (o, v) => o with { Capacity = v }, (o, v) => o with { CapacityFactor = v },
                (o, v) => o with { Rounding = v }, (o, v) => o with { MinCapacity = v }),
            Param<CapacityOptions>.Choice("policy", "choice-position",
                "which C requests an expert keeps: position, choice-position, score, logit, batch-priority",
                [("position", DropPolicy.Position), ("choice-position", DropPolicy.ChoicePosition), ("score", DropPolicy.Score),
                 ("logit", DropPolicy.Logit), ("batch-priority", DropPolicy.BatchPriority)],
                (o, v) => o with { Policy = v }),
        ],
        Inputs =
        [
            new InputSpec("logits", "N,E", ArrayKind.Float, false, "router logits X"),
            new InputSpec("bias", "E", ArrayKind.Float, true, "selection bias b: selects, never weighs (DeepSeek-V3)"),
        ],
        Outputs =
        [
            OutputSpec<CapacityOutput>.Of("experts", "N,k", ArrayKind.Integer, OutputComparison.Validated, "kept experts, -1 where dropped", r => r.Experts),
            OutputSpec<CapacityOutput>.Of("weights", "N,k", ArrayKind.Float, OutputComparison.Validated, "the kept requests' weights, 0 where dropped", r => r.Weights),
            OutputSpec<CapacityOutput>.Of("slots", "N,k", ArrayKind.Integer, OutputComparison.Validated, "position in the expert's buffer, 0..C-1, -1 where dropped", r => r.Slots),
            OutputSpec<CapacityOutput>.Of("load", "E", ArrayKind.Integer, OutputComparison.Validated, "kept requests per expert, at most C", r => r.Load),
        ],
        Reference = (call, _) =>
        {
            var r = ReferenceResult(call);
            return new CapacityOutput(NdArray.FromMatrix(r.Experts), NdArray.FromMatrix(r.Weights), NdArray.FromMatrix(r.Slots), NdArray.FromVector(r.Load));
        },
        Oracle = (call, _) =>
        {
            var r = OracleResult(call);
            return new CapacityOutput(NdArray.FromMatrix(r.Experts), NdArray.FromMatrix(r.Weights), NdArray.FromMatrix(r.Slots), NdArray.FromVector(r.Load));
        },
        Paths =
        [
            new PathOf<CapacityOptions, CapacityOutput>("kernel", "float32 top-k kernel, counting sort into per-expert buckets, parallel over experts", (call, options) =>
            {
                var logits = call.Array("logits");
                int n = logits.Shape[0], e = logits.Shape[1];
                var r = Reference.Kernels.Routing.Capacity.Route(call.Floats("logits"), n, e, options);
                return new CapacityOutput(
                    NdArray.Create(r.Experts, n, options.K), NdArray.Create(r.Weights, n, options.K), NdArray.Create(r.Slots, n, options.K), NdArray.Create(r.Load, e));
            }),
        ],
        Validate = new CapacityValidator(),
        Generate = Generate,
    };

    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = Entry.ToAlgorithm();

    /// <summary>The reference options from the call's parameters and inputs, parsed once per call.</summary>
    public static CapacityOptions Options(AlgorithmCall call) => Entry.Options(call);

    /// <summary>The reference's routing of the call, computed once per call (<see cref="AlgorithmCall.Memo{T}"/>): the
    /// reference's outputs and the validator's C and scores come from it.</summary>
    public static CapacityResult ReferenceResult(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return call.Memo(("reference", nameof(CapacityAlgorithm)), () => Capacity.Route(call.Matrix("logits"), Options(call)));
    }

    /// <summary>What <c>check</c> judges against, computed once per call: beyond <see cref="FastReference.RoutingWork"/>
    /// (work N E) the routing of <see cref="CapacityFast"/>, equal to the reference's bit for bit (proofs/capacity.md,
    /// capacity.fast-reference-identical); otherwise <see cref="ReferenceResult"/>.</summary>
    /// <param name="call">The call.</param>
    /// <returns>The routing.</returns>
    public static CapacityResult OracleResult(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return FastReference.RoutingOracle(call, ("oracle", nameof(CapacityAlgorithm)), () => ReferenceResult(call), x => CapacityFast.Route(x, Options(call)));
    }

    /// <summary>A random case: awkward shapes, grid logits with ties in a third of the cases, every policy, normalization
    /// and rounding, sometimes an explicit capacity or a bias.</summary>
    private static GeneratedCase Generate(int seed)
    {
        var rng = new Random(seed);
        int n = TokenChoices[rng.Next(TokenChoices.Length)];
        int e = ExpertChoices[rng.Next(ExpertChoices.Length)];
        int k = 1 + rng.Next(e);
        int style = rng.Next(3);
        var inputs = new Dictionary<string, NdArray> { ["logits"] = NdArray.Create(Logits(rng, n, e, style), n, e) };
        string[] policies = ["position", "choice-position", "score", "logit", "batch-priority"];
        string[] normalizations = ["none", "before", "after"];
        string[] roundings = ["ceil", "floor", "round", "tutel", "ceil-f32"];
        var parameters = new Dictionary<string, string>
        {
            ["k"] = Text(k),
            ["score"] = rng.Next(3) == 0 ? "sigmoid" : "softmax",
            ["normalize"] = normalizations[rng.Next(3)],
            ["policy"] = policies[rng.Next(policies.Length)],
        };
        if (rng.Next(3) == 0)
        {
            parameters["capacity"] = Text(rng.Next(n * k + 2));
        }
        else
        {
            parameters["capacity_factor"] = Text(new[] { 0.5, 0.75, 1.0, 1.25, 2.0 }[rng.Next(5)]);
            parameters["rounding"] = roundings[rng.Next(roundings.Length)];
            parameters["min_capacity"] = Text(new[] { 0, 0, 1, 3 }[rng.Next(4)]);
        }
        if (rng.Next(4) == 0)
        {
            var bias = new float[e];
            for (int j = 0; j < e; j++)
            {
                bias[j] = rng.Next(-2, 3) * 0.125f;
            }
            inputs["bias"] = NdArray.Create(bias, e);
        }
        string name = $"seed {seed}: N={n} E={e} k={k} {parameters["policy"]} {parameters["normalize"]}"
                      + (style == 0 ? " ties" : style == 2 ? " wide" : "") + (inputs.ContainsKey("bias") ? " bias" : "");
        return new GeneratedCase(name, inputs, parameters);
    }
}
