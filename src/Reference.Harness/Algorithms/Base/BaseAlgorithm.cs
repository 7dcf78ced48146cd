using Reference.Harness.Comparison;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Routing;

namespace Reference.Harness.Algorithms;

/// <summary>The options of <c>base</c>.</summary>
/// <param name="Method">The method word: exact or auction.</param>
public sealed record BaseOptions(string Method = "exact");

/// <summary>The outputs of <c>base</c>, from any path.</summary>
/// <param name="Experts">[N, 1] each token's expert.</param>
/// <param name="Objective">[] the total score.</param>
/// <param name="Rounds">[] auction only: rounds that raised prices.</param>
/// <param name="Gap">[] auction only: the exact optimum minus the auction's objective.</param>
public sealed record BaseOutput(NdArray Experts, NdArray Objective, NdArray? Rounds = null, NdArray? Gap = null);

/// <summary>The registry entry for <c>base</c> (proofs/base.md, Definition).</summary>
/// <remarks>
/// <para><c>method=exact</c> outputs experts [N, 1] and objective; <c>method=auction</c> adds rounds [] (fairseq's counter when it
/// stopped) and gap [] (the exact optimum minus the auction's objective), the measured gap of proofs/base.md, Definition: Auction method.</para>
/// <para>Validation: exact experts by the certificate (<see cref="MaxScoreCertificate"/> with k = 1, C = N / E), so any optimal
/// assignment passes; the objective within <see cref="MaxScoreValidator.ObjectivePolicy"/>. The auction is deterministic (ties
/// by index), so its experts and rounds must equal the reference's; its objective and gap are compared within the tolerance.</para>
/// </remarks>
public static class BaseAlgorithm
{
    /// <summary>The typed declaration.</summary>
    public static AlgorithmEntry<BaseOptions, BaseOutput> Entry { get; } = new()
    {
        Name = "base",
        Summary = "BASE layers' balanced assignment: exact (min-cost flow, certified) or fairseq's auction",
        Section = "proofs/base.md, Definition",
        Seed = _ => new BaseOptions(),
        Parameters =
        [
            Param<BaseOptions>.Choice("method", "exact", "exact (MaxScore with k = 1, C = N/E) or auction (fairseq)",
                [("exact", "exact"), ("auction", "auction")], (o, v) => o with { Method = v }),
        ],
        Inputs =
        [
            new InputSpec("scores", "N,E", ArrayKind.Float, false, "token-expert affinities S, finite; E divides N"),
        ],
        Outputs =
        [
            OutputSpec<BaseOutput>.Of("experts", "N,1", ArrayKind.Integer, OutputComparison.Validated, "each token's expert", r => r.Experts),
            OutputSpec<BaseOutput>.Of("objective", "", ArrayKind.Float, OutputComparison.Validated, "total score", r => r.Objective),
            OutputSpec<BaseOutput>.Of("rounds", "", ArrayKind.Integer, OutputComparison.Validated, "auction only: rounds that raised prices", r => r.Rounds),
            OutputSpec<BaseOutput>.Of("gap", "", ArrayKind.Float, OutputComparison.Validated, "auction only: exact optimum minus the auction's objective", r => r.Gap),
        ],
        Reference = (call, options) => RunReference(call, options),
        Oracle = (call, options) => RunOracle(call, options),
        Paths =
        [
            new PathOf<BaseOptions, BaseOutput>("fast", "the fast exact MaxScore solver with k = 1, C = N/E (Reference.Kernels)", (call, _) => RunFast(call))
            {
                Supports = call => call.Parameters.GetChoice("method") == "exact",
            },
            new PathOf<BaseOptions, BaseOutput>("ortools", "OR-Tools SimpleMinCostFlow with k = 1, C = N/E, costs -round(S 2^q) with max|S| 2^q < 2^40; " +
                "proven optimal by the exact certificate; scores within 2^60 of the largest in magnitude", (call, _) => RunOrTools(call))
            {
                Supports = call => call.Parameters.GetChoice("method") == "exact" && MaxScoreAlgorithm.OrToolsResolves(call),
            },
        ],
        Validate = new BaseValidator(),
        Generate = Generate,
    };

    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = Entry.ToAlgorithm();

    /// <summary>
    /// What <c>check base</c> judges against, as output arrays: for method=exact beyond the reference's reach
    /// (<see cref="MaxScoreAlgorithm.BeyondReference"/> with k = 1), the fast solver's assignment once
    /// <see cref="MaxScoreCertificate"/> proves it optimal in exact arithmetic (every optimum has the reference's objective);
    /// otherwise, or if the proof fails, the reference.
    /// </summary>
    public static IReadOnlyDictionary<string, NdArray> Oracle(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return Entry.Emit(call, RunOracle(call, Entry.Options(call)), "oracle");
    }

    /// <summary>Runs the reference, as output arrays.</summary>
    public static IReadOnlyDictionary<string, NdArray> Run(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return Entry.Emit(call, RunReference(call, Entry.Options(call)), "reference");
    }

    /// <summary>The oracle (see <see cref="Oracle(AlgorithmCall)"/>).</summary>
    private static BaseOutput RunOracle(AlgorithmCall call, BaseOptions options)
    {
        var shape = call.Array("scores").Shape;
        int n = shape[0], e = shape[1];
        if (options.Method != "exact" || e == 0 || n % e != 0 || !MaxScoreAlgorithm.BeyondReference(n, e, 1))
        {
            return RunReference(call, options);
        }
        var fast = RunFast(call);
        return MaxScoreAlgorithm.CertifiedOptimal(call, fast.Experts, 1, n / e) ? fast : RunReference(call, options);
    }

    /// <summary>The reference: the exact assignment, or the auction with its rounds and its gap to the exact optimum.</summary>
    private static BaseOutput RunReference(AlgorithmCall call, BaseOptions options)
    {
        var scores = call.Matrix("scores");
        if (options.Method == "exact")
        {
            var exact = BalancedAssignment.Exact(scores);
            return Output(exact.Experts, exact.Objective);
        }
        var auction = BalancedAssignmentAuction.Assign(scores);
        var optimum = BalancedAssignment.Exact(scores);
        return Output(auction.Experts, auction.Objective) with
        {
            Rounds = NdArray.Scalar(auction.Rounds),
            Gap = NdArray.Scalar(optimum.Objective - auction.Objective),
        };
    }

    private static BaseOutput Output(int[] experts, double objective) =>
        new(NdArray.Create(experts, experts.Length, 1), NdArray.Scalar(objective));

    private static BaseOutput RunFast(AlgorithmCall call)
    {
        var shape = call.Array("scores").Shape;
        int n = shape[0], e = shape[1];
        if (e == 0 || n % e != 0)
        {
            throw new ArgumentException($"scores has N = {n} tokens and E = {e} experts; balanced assignment needs E to divide N", "scores");
        }
        var result = Reference.Kernels.Routing.MaxScoreSolver.Solve(call.Doubles("scores"), n, e, 1, n / e);
        return Output(result.Experts, result.Objective);
    }

    private static BaseOutput RunOrTools(AlgorithmCall call)
    {
        var shape = call.Array("scores").Shape;
        int n = shape[0], e = shape[1];
        if (e == 0 || n % e != 0)
        {
            throw new ArgumentException($"scores has N = {n} tokens and E = {e} experts; balanced assignment needs E to divide N", "scores");
        }
        var (routed, check) = MaxScoreAlgorithm.CertifiedOrToolsRouting(call, 1, n / e);
        var experts = new int[n];
        for (int i = 0; i < n; i++)
        {
            experts[i] = routed[i, 0];
        }
        return Output(experts, check.Objective);
    }

    /// <summary>A random case: E in 1..8, N/E in 1..9, scores continuous, on a coarse grid (ties) or in a narrow range
    /// (eps = 1e-4 floor), either method.</summary>
    private static GeneratedCase Generate(int seed)
    {
        var rng = new Random(seed);
        int[] expertChoices = [1, 2, 3, 4, 8];
        int e = expertChoices[rng.Next(expertChoices.Length)];
        int n = e * (1 + rng.Next(9));
        int kind = rng.Next(3);
        var values = new double[n * e];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = kind switch
            {
                0 => TopKAlgorithm.Gaussian(rng),
                1 => rng.Next(0, 4) * 0.25,
                _ => 1e-3 * rng.NextDouble(),
            };
        }
        string method = rng.Next(2) == 0 ? "exact" : "auction";
        bool f32 = rng.Next(3) == 0;
        var scores = f32 ? NdArray.Create(values.Select(v => (float)v).ToArray(), n, e) : NdArray.Create(values, n, e);
        string[] kinds = ["normal", "grid", "narrow"];
        return new GeneratedCase($"seed {seed}: N={n} E={e} {method} {kinds[kind]}{(f32 ? " f32" : "")}",
            new Dictionary<string, NdArray> { ["scores"] = scores }, new Dictionary<string, string> { ["method"] = method });
    }
}
