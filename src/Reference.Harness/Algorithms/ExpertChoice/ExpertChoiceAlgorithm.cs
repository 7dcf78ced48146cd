using Reference.Harness.Comparison;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Routing;
using static Reference.Harness.Algorithms.RoutingSupport;

namespace Reference.Harness.Algorithms;

/// <summary>The outputs of <c>expert-choice</c>, from any path.</summary>
/// <param name="Tokens">[E, C] each expert's tokens, best first.</param>
/// <param name="Gates">[E, C] P at those pairs.</param>
/// <param name="Count">[N] experts per token.</param>
public sealed record ExpertChoiceOutput(NdArray Tokens, NdArray Gates, NdArray Count);

/// <summary>The registry entry for <c>expert-choice</c> (proofs/expert-choice.md, Definition).</summary>
public static class ExpertChoiceAlgorithm
{
    /// <summary>The typed declaration.</summary>
    public static AlgorithmEntry<ExpertChoiceOptions, ExpertChoiceOutput> Entry { get; } = new()
    {
        Name = "expert-choice",
        Summary = "expert-choice routing: every expert takes its top-C tokens by softmax score",
        Section = "proofs/expert-choice.md, Definition",
        Seed = _ => new ExpertChoiceOptions(),
        Parameters =
        [
            Param<ExpertChoiceOptions>.OptionalInt("capacity", "explicit C in 0..N; absent: min(N, ceil(capacity_factor N k / E))", (o, v) => o with { Capacity = v }),
            Param<ExpertChoiceOptions>.Double("capacity_factor", "1.0", "cf for the derived capacity", (o, v) => o with { CapacityFactor = v }),
            Param<ExpertChoiceOptions>.Int("k", "1", "average experts per token for the derived capacity", (o, v) => o with { K = v }),
        ],
        Inputs = [new InputSpec("logits", "N,E", ArrayKind.Float, false, "router logits X")],
        Outputs =
        [
            OutputSpec<ExpertChoiceOutput>.Of("tokens", "E,C", ArrayKind.Integer, OutputComparison.Validated, "each expert's tokens, best first", r => r.Tokens),
            OutputSpec<ExpertChoiceOutput>.Of("gates", "E,C", ArrayKind.Float, OutputComparison.Validated, "P at those (expert, token) pairs", r => r.Gates),
            OutputSpec<ExpertChoiceOutput>.Of("count", "N", ArrayKind.Integer, OutputComparison.Validated, "experts per token, 0..E", r => r.Count),
        ],
        Reference = (call, _) => Output(ReferenceResult(call)),
        Oracle = (call, _) => Output(OracleResult(call)),
        Paths =
        [
            new PathOf<ExpertChoiceOptions, ExpertChoiceOutput>("kernel", "float32 softmax, transpose, per-expert sort in parallel", (call, options) =>
            {
                var logits = call.Array("logits");
                int n = logits.Shape[0], e = logits.Shape[1];
                var r = Reference.Kernels.Routing.ExpertChoice.Route(call.Floats("logits"), n, e, options);
                return new ExpertChoiceOutput(NdArray.Create(r.Tokens, e, r.Capacity), NdArray.Create(r.Gates, e, r.Capacity), NdArray.Create(r.Count, n));
            }),
        ],
        Validate = new ExpertChoiceValidator(),
        Generate = Generate,
    };

    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = Entry.ToAlgorithm();

    /// <summary>The reference options from the call's parameters, parsed once per call.</summary>
    public static ExpertChoiceOptions Options(AlgorithmCall call) => Entry.Options(call);

    /// <summary>The reference's routing of the call, computed once per call (<see cref="AlgorithmCall.Memo{T}"/>): the
    /// reference's outputs and the validator's C and scores come from it.</summary>
    public static ExpertChoiceResult ReferenceResult(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return call.Memo(("reference", nameof(ExpertChoiceAlgorithm)), () => ExpertChoice.Route(call.Matrix("logits"), Options(call)));
    }

    /// <summary>What <c>check</c> judges against, computed once per call: beyond <see cref="FastReference.ExpertChoiceWork"/>
    /// (work E C N) the routing of <see cref="ExpertChoiceFast"/>, equal to the reference's (proofs/expert-choice.md,
    /// expert-choice.fast-reference-identical); otherwise <see cref="ReferenceResult"/>.</summary>
    /// <param name="call">The call.</param>
    /// <returns>The routing.</returns>
    public static ExpertChoiceResult OracleResult(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        var shape = call.Array("logits").Shape;
        if (shape.Count != 2 || shape[1] == 0)
        {
            return ReferenceResult(call);
        }
        var options = Options(call);
        int n = shape[0], e = shape[1], c;
        try
        {
            c = ExpertChoice.ResolveCapacity(n, e, options);
        }
        catch (ArgumentException)
        {
            return ReferenceResult(call); // the reference names the bad option
        }
        if (!FastReference.Beyond((long)e * c * n, FastReference.ExpertChoiceWork))
        {
            return ReferenceResult(call);
        }
        return call.Memo(("oracle", nameof(ExpertChoiceAlgorithm)), () => ExpertChoiceFast.Route(call.Matrix("logits"), options));
    }

    private static ExpertChoiceOutput Output(ExpertChoiceResult r) => new(
        NdArray.Create(Flat(r.Tokens).Select(v => (int)v).ToArray(), r.Tokens.GetLength(0), r.Capacity),
        NdArray.Create(Flat(r.Gates), r.Gates.GetLength(0), r.Capacity),
        NdArray.FromVector(r.Count));

    /// <summary>A random case: awkward shapes, grid, gaussian or wide logits, an explicit capacity or a factor and k.</summary>
    private static GeneratedCase Generate(int seed)
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
    }
}
