using System.Globalization;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Routing;

namespace Reference.Harness.Algorithms;

/// <summary>The options of <c>maxscore</c>: the routing options and the mode.</summary>
public sealed record MaxScoreEntryOptions
{
    /// <summary>k, the capacity and normalization, as the reference takes them.</summary>
    public MaxScoreOptions Routing { get; init; } = new();

    /// <summary>The mode word: exact or two-stage.</summary>
    public string Mode { get; init; } = "exact";
}

/// <summary>The outputs of <c>maxscore</c>, from any path.</summary>
/// <param name="Experts">[N, k] each token's experts, -1 padding (two-stage: [stage 1, stage 2]).</param>
/// <param name="Weights">[N, k] S at those experts, normalized when asked.</param>
/// <param name="Load">[E] tokens per expert (two-stage: slots).</param>
/// <param name="Objective">[] the total score.</param>
/// <param name="Prices">[E] exact only: certificate prices.</param>
/// <param name="Repeated">[] two-stage only: tokens given the same expert twice.</param>
/// <param name="Gap">[] two-stage only: the exact optimum minus the two-stage objective.</param>
public sealed record MaxScoreOutput(
    NdArray Experts, NdArray Weights, NdArray Load, NdArray Objective, NdArray? Prices = null, NdArray? Repeated = null, NdArray? Gap = null);

/// <summary>The registry entry for <c>maxscore</c> (proofs/maxscore.md, Definition).</summary>
/// <remarks>
/// <para>Outputs of <c>mode=exact</c>: experts, weights, load, objective, prices. <c>mode=two-stage</c> outputs experts
/// ([stage 1, stage 2]), weights, load, objective, repeated and gap (the exact optimum minus the two-stage objective); it has no
/// prices, since a heuristic routing has no optimality certificate.</para>
/// <para>All outputs are validated (<see cref="MaxScoreValidator"/>): several routings can be optimal, so a candidate is judged
/// by feasibility, by the exact certificate (<see cref="MaxScoreCertificate"/>) and by its objective against the reference's.</para>
/// </remarks>
public static class MaxScoreAlgorithm
{
    /// <summary>The typed declaration.</summary>
    public static AlgorithmEntry<MaxScoreEntryOptions, MaxScoreOutput> Entry { get; } = new()
    {
        Name = "maxscore",
        Summary = "MaxScore routing: the maximum flow of largest total score (exact, min-cost flow), or the released two-stage heuristic",
        Section = "proofs/maxscore.md, Definition",
        Seed = _ => new MaxScoreEntryOptions(),
        Parameters =
        [
            Param<MaxScoreEntryOptions>.Int("k", "2", "experts per token, 1..E (two-stage: 2)", (o, v) => o with { Routing = o.Routing with { K = v } }),
            Param<MaxScoreEntryOptions>.OptionalInt("capacity", "expert capacity C >= 0; default ceil(capacity_factor * N * k / E)",
                (o, v) => o with { Routing = o.Routing with { Capacity = v } }),
            Param<MaxScoreEntryOptions>.Double("capacity_factor", "1.0", "cf >= 0, used when capacity is absent",
                (o, v) => o with { Routing = o.Routing with { CapacityFactor = v } }),
            Param<MaxScoreEntryOptions>.Choice("mode", "exact",
                "exact (min-cost maximum flow, certified) or two-stage (the released code's heuristic; k = 2, C*E = 2N)",
                [("exact", "exact"), ("two-stage", "two-stage")], (o, v) => o with { Mode = v }),
            Param<MaxScoreEntryOptions>.Bool("normalize", "false", "divide each token's weights by their sum (when not 0)",
                (o, v) => o with { Routing = o.Routing with { Normalize = v } }),
        ],
        Inputs =
        [
            new InputSpec("scores", "N,E", ArrayKind.Float, false, "router scores S, finite (usually softmax probabilities)"),
        ],
        Outputs =
        [
            OutputSpec<MaxScoreOutput>.Of("experts", "N,k", ArrayKind.Integer, OutputComparison.Validated,
                "each token's experts by descending score, -1 padding (two-stage: [stage 1, stage 2])", r => r.Experts),
            OutputSpec<MaxScoreOutput>.Of("weights", "N,k", ArrayKind.Float, OutputComparison.Validated, "S at those experts, normalized when asked", r => r.Weights),
            OutputSpec<MaxScoreOutput>.Of("load", "E", ArrayKind.Integer, OutputComparison.Validated, "tokens per expert (two-stage: slots)", r => r.Load),
            OutputSpec<MaxScoreOutput>.Of("objective", "", ArrayKind.Float, OutputComparison.Validated,
                "total score (two-stage: a repeated expert counts once)", r => r.Objective),
            OutputSpec<MaxScoreOutput>.Of("prices", "E", ArrayKind.Float, OutputComparison.Validated, "exact only: certificate prices lambda >= 0", r => r.Prices),
            OutputSpec<MaxScoreOutput>.Of("repeated", "", ArrayKind.Integer, OutputComparison.Validated, "two-stage only: tokens given the same expert twice",
                r => r.Repeated),
            OutputSpec<MaxScoreOutput>.Of("gap", "", ArrayKind.Float, OutputComparison.Validated, "two-stage only: exact optimum minus the two-stage objective",
                r => r.Gap),
        ],
        Reference = (call, options) => RunReference(call, options),
        Oracle = (call, options) => RunOracle(call, options),
        Paths =
        [
            new PathOf<MaxScoreEntryOptions, MaxScoreOutput>("fast",
                "exact solver: approximate prices, contracted shortest paths, exact finish; stand-in experts when C*E < k*N (Reference.Kernels)",
                (call, options) => RunFast(call, options.Routing))
            {
                Supports = call => Mode(call) == "exact" && FastSupports(call),
            },
            new PathOf<MaxScoreEntryOptions, MaxScoreOutput>("ortools", "OR-Tools SimpleMinCostFlow on the section 8 network, int64 costs -round(S 2^q) with max|S| 2^q < 2^40; " +
                "the routing proven optimal by the exact certificate, which also gives the prices; scores within 2^60 of the largest in magnitude",
                (call, options) => RunOrTools(call, options.Routing))
            {
                Supports = call => Mode(call) == "exact" && FastSupports(call) && OrToolsResolves(call),
            },
        ],
        Validate = new MaxScoreValidator(),
        Generate = Generate,
    };

    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = Entry.ToAlgorithm();

    /// <summary>The reference options from the call's parameters. Parsed once per call (<see cref="AlgorithmCall.Memo{T}"/>).</summary>
    public static MaxScoreOptions Options(AlgorithmCall call) => Entry.Options(call).Routing;

    /// <summary>The mode word: exact or two-stage.</summary>
    public static string Mode(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return call.Parameters.GetChoice("mode");
    }

    /// <summary>Runs the reference, as output arrays: <see cref="MaxScore.Route"/>, or <see cref="MaxScoreTwoStage.Route"/> with the gap to it.</summary>
    public static IReadOnlyDictionary<string, NdArray> Run(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return Entry.Emit(call, RunReference(call, Entry.Options(call)), "reference");
    }

    private static MaxScoreOutput RunReference(AlgorithmCall call, MaxScoreEntryOptions options)
    {
        var scores = call.Matrix("scores");
        if (options.Mode == "exact")
        {
            return ExactOutput(MaxScore.Route(scores, options.Routing));
        }
        var heuristic = MaxScoreTwoStage.Route(scores, options.Routing);
        var exact = MaxScore.Route(scores, options.Routing);
        return new MaxScoreOutput(
            NdArray.FromMatrix(heuristic.Experts),
            NdArray.FromMatrix(heuristic.Weights),
            NdArray.FromVector(heuristic.Load),
            NdArray.Scalar(heuristic.Objective),
            Repeated: NdArray.Scalar(heuristic.Repeated),
            Gap: NdArray.Scalar(exact.Objective - heuristic.Objective));
    }

    /// <summary>Problems whose work N k * N E exceeds this are judged against the fast solver's certified optimum. The
    /// readable reference runs N k shortest paths over the whole network of N E arcs; measured at this work it takes about
    /// a second (1024/16/2 0.9 s, 512/32/4 0.8 s, whole process), while 2048/8/2 takes 2.8 s, 4096/4/2 8.5 s and
    /// 16384/1/1 51 s.</summary>
    public const long OracleWork = 1L << 25;

    /// <summary>True when the readable reference is too slow for the call (work above <see cref="OracleWork"/>).</summary>
    public static bool BeyondReference(int tokens, int experts, int k) => (long)tokens * k * tokens * experts > OracleWork;

    /// <summary>
    /// What <c>check maxscore</c> judges against: for mode=exact beyond the reference's reach (<see cref="BeyondReference"/>),
    /// the fast solver's routing once <see cref="MaxScoreCertificate"/> (independent of every solver) proves it optimal in
    /// exact arithmetic; every optimal routing has the same exact objective, so the judgment is the reference's. Otherwise,
    /// or if the proof fails, the reference.
    /// </summary>
    public static IReadOnlyDictionary<string, NdArray> Oracle(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return Entry.Emit(call, RunOracle(call, Entry.Options(call)), "oracle");
    }

    private static MaxScoreOutput RunOracle(AlgorithmCall call, MaxScoreEntryOptions options)
    {
        var shape = call.Array("scores").Shape;
        if (options.Mode != "exact" || !FastSupports(call) || !BeyondReference(shape[0], shape[1], options.Routing.K))
        {
            return RunReference(call, options);
        }
        var fast = RunFast(call, options.Routing);
        return CertifiedOptimal(call, fast.Experts, options.Routing.K, MaxScore.CapacityFor(shape[0], shape[1], options.Routing))
            ? fast
            : RunReference(call, options);
    }

    /// <summary>True when <see cref="MaxScoreCertificate"/> proves the routing <paramref name="experts"/> ([N, k], -1 padded)
    /// optimal for the call's scores, k and capacity, in exact arithmetic.</summary>
    internal static bool CertifiedOptimal(AlgorithmCall call, NdArray experts, int k, int capacity)
    {
        var scores = call.Matrix("scores");
        var routing = MaxScoreValidator.ToMatrix(experts.ToDoubles(), scores.GetLength(0), k);
        return routing is not null && MaxScoreCertificate.Check(scores, k, capacity, routing).Optimal;
    }

    /// <summary>The outputs of an exact routing.</summary>
    public static MaxScoreOutput ExactOutput(MaxScoreResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        return new MaxScoreOutput(
            NdArray.FromMatrix(result.Experts),
            NdArray.FromMatrix(result.Weights),
            NdArray.FromVector(result.Load),
            NdArray.Scalar(result.Objective),
            NdArray.FromVector(result.Prices));
    }

    /// <summary>True when the fast solver covers the call: valid k and C, in every capacity regime (bad input is left to the
    /// reference, which names it).</summary>
    private static bool FastSupports(AlgorithmCall call)
    {
        var shape = call.Array("scores").Shape;
        int n = shape[0], e = shape[1];
        var options = Options(call);
        if (e < 1 || options.K < 1 || options.K > e || options.Capacity < 0
            || !(double.IsFinite(options.CapacityFactor) && options.CapacityFactor >= 0))
        {
            return false;
        }
        return true;
    }

    /// <summary>The fast exact solver (<see cref="Reference.Kernels.Routing.MaxScoreSolver"/>), double precision.</summary>
    private static MaxScoreOutput RunFast(AlgorithmCall call, MaxScoreOptions options)
    {
        var scores = call.Matrix("scores");
        int n = scores.GetLength(0), e = scores.GetLength(1);
        int k = options.K, c = MaxScore.CapacityFor(n, e, options);
        var flat = call.Doubles("scores");
        var result = Reference.Kernels.Routing.MaxScoreSolver.Solve(flat, n, e, k, c);
        var experts = new int[n, k];
        var weights = new double[n, k];
        for (int i = 0; i < n; i++)
        {
            double sum = 0;
            for (int j = 0; j < k; j++)
            {
                experts[i, j] = result.Experts[i * k + j];
                sum += experts[i, j] >= 0 ? scores[i, experts[i, j]] : 0.0;
            }
            for (int j = 0; j < k; j++)
            {
                double w = experts[i, j] >= 0 ? scores[i, experts[i, j]] : 0.0; // -1 padding weighs 0
                weights[i, j] = options.Normalize && sum != 0 ? w / sum : w;
            }
        }
        return new MaxScoreOutput(
            NdArray.FromMatrix(experts),
            NdArray.FromMatrix(weights),
            NdArray.Create(result.Load, e),
            NdArray.Scalar(result.Objective),
            NdArray.Create(result.Prices, e));
    }

    /// <summary>True when every nonzero score is at least 2^-60 times the largest in magnitude, so that int64 costs can resolve
    /// them (scores spanning a wider range, e.g. 2^-1000 beside 1, are left to the reference and the fast path).</summary>
    internal static bool OrToolsResolves(AlgorithmCall call)
    {
        var flat = call.Doubles("scores");
        double maxAbs = flat.Length == 0 ? 0 : flat.Max(Math.Abs);
        double floor = Math.ScaleB(maxAbs, -60);
        return flat.All(v => v == 0 || Math.Abs(v) >= floor);
    }

    /// <summary>OR-Tools' routing (<see cref="Reference.Kernels.Routing.OrToolsMaxScore"/>) for k and C, proven optimal by
    /// <see cref="MaxScoreCertificate"/> in exact arithmetic. If the default cost scale 2^q rounded two scores together and the
    /// proof fails, OR-Tools runs once more at the largest scale the int64 ranges allow; if the proof still fails, a clear error.</summary>
    /// <returns>The routing [N, k] (experts in index order, -1 padded) and the certificate's verdict (optimal).</returns>
    /// <exception cref="InvalidOperationException">OR-Tools' routing is not optimal for the exact scores at either scale.</exception>
    internal static (int[,] Experts, MaxScoreCheck Check) CertifiedOrToolsRouting(AlgorithmCall call, int k, int capacity)
    {
        var scores = call.Matrix("scores");
        var flat = call.Doubles("scores");
        int n = scores.GetLength(0), e = scores.GetLength(1);
        var result = Reference.Kernels.Routing.OrToolsMaxScore.Solve(flat, n, e, k, capacity);
        var experts = MaxScoreValidator.ToMatrix(result.Experts.Select(x => (double)x).ToArray(), n, k)!;
        var check = MaxScoreCertificate.Check(scores, k, capacity, experts);
        double maxAbs = flat.Length == 0 ? 0 : flat.Max(Math.Abs);
        if (!check.Optimal && maxAbs > 0)
        {
            long flow = Math.Min((long)k * n, (long)capacity * e);
            int most = Reference.Kernels.Routing.OrToolsMaxScore.MaxScaleExponent(maxAbs, n, e, flow);
            if (most > result.ScaleExponent)
            {
                result = Reference.Kernels.Routing.OrToolsMaxScore.Solve(flat, n, e, k, capacity, most);
                experts = MaxScoreValidator.ToMatrix(result.Experts.Select(x => (double)x).ToArray(), n, k)!;
                check = MaxScoreCertificate.Check(scores, k, capacity, experts);
            }
        }
        if (!check.Optimal)
        {
            throw new InvalidOperationException(
                $"OR-Tools' routing at cost scale 2^{result.ScaleExponent} is not optimal for the exact scores ({check.Describe()}): " +
                "scores closer than the int64 cost resolution; use the reference or --path fast");
        }
        return (experts, check);
    }

    /// <summary>The OR-Tools path: <see cref="CertifiedOrToolsRouting"/>, rows by descending score, the certificate's exact
    /// objective and prices.</summary>
    private static MaxScoreOutput RunOrTools(AlgorithmCall call, MaxScoreOptions options)
    {
        var scores = call.Matrix("scores");
        int n = scores.GetLength(0), e = scores.GetLength(1);
        int k = options.K, c = MaxScore.CapacityFor(n, e, options);
        var (routed, check) = CertifiedOrToolsRouting(call, k, c);
        var experts = new int[n, k];
        var weights = new double[n, k];
        for (int i = 0; i < n; i++)
        {
            var row = Enumerable.Range(0, k).Select(j => routed[i, j]).Where(x => x >= 0).ToList();
            row.Sort((a, b) => Ranking.RanksBefore(scores[i, a], a, scores[i, b], b) ? -1 : a == b ? 0 : 1);
            double sum = row.Sum(x => scores[i, x]);
            for (int j = 0; j < k; j++)
            {
                experts[i, j] = j < row.Count ? row[j] : -1;
                double w = j < row.Count ? scores[i, row[j]] : 0.0;
                weights[i, j] = options.Normalize && sum != 0 ? w / sum : w;
            }
        }
        var load = new int[e];
        foreach (int x in routed)
        {
            if (x >= 0)
            {
                load[x]++;
            }
        }
        return new MaxScoreOutput(
            NdArray.FromMatrix(experts),
            NdArray.FromMatrix(weights),
            NdArray.FromVector(load),
            NdArray.Scalar(check.Objective),
            NdArray.FromVector(check.Prices!));
    }

    /// <summary>A random case: awkward shapes; softmax scores (some skewed), dyadic-grid scores with ties, or small negative and
    /// positive reals; capacities below, at and above k N / E; a quarter two-stage cases (k = 2, C E = 2 N).</summary>
    private static GeneratedCase Generate(int seed)
    {
        var rng = new Random(seed);
        string Text(int v) => v.ToString(CultureInfo.InvariantCulture);
        var parameters = new Dictionary<string, string>();
        int n, e;
        if (rng.Next(4) == 0)
        {
            int[] expertChoices = [2, 3, 4, 8];
            e = expertChoices[rng.Next(expertChoices.Length)];
            int c = 1 + rng.Next(4);
            if (c * e % 2 == 1)
            {
                c++;
            }
            n = c * e / 2;
            parameters["mode"] = "two-stage";
            parameters["k"] = "2";
            parameters["capacity"] = Text(c);
        }
        else
        {
            int[] tokenChoices = [1, 2, 3, 7, 16, 33];
            int[] expertChoices = [1, 2, 3, 4, 7, 8];
            n = tokenChoices[rng.Next(tokenChoices.Length)];
            e = expertChoices[rng.Next(expertChoices.Length)];
            int k = 1 + rng.Next(Math.Min(e, 4));
            parameters["k"] = Text(k);
            if (rng.Next(2) == 0)
            {
                int fair = (n * k + e - 1) / e;
                parameters["capacity"] = Text(Math.Max(0, fair + rng.Next(-2, 3)));
            }
            else
            {
                parameters["capacity_factor"] = new[] { "0.5", "1.0", "1.25", "2.0" }[rng.Next(4)];
            }
        }
        if (rng.Next(3) == 0)
        {
            parameters["normalize"] = "true";
        }
        int kind = rng.Next(3);
        var values = new double[n * e];
        for (int i = 0; i < n; i++)
        {
            switch (kind)
            {
                case 0:
                    // Softmax of logits, skewed towards low expert indices in half of the cases.
                    double skew = rng.Next(2) == 0 ? 0.0 : 2.0;
                    var logits = Enumerable.Range(0, e).Select(j => 2.0 * TopKAlgorithm.Gaussian(rng) - skew * j / Math.Max(1, e - 1)).ToArray();
                    double max = logits.Max();
                    double sum = logits.Sum(x => Math.Exp(x - max));
                    for (int j = 0; j < e; j++)
                    {
                        values[i * e + j] = Math.Exp(logits[j] - max) / sum;
                    }
                    break;
                case 1:
                    for (int j = 0; j < e; j++)
                    {
                        values[i * e + j] = rng.Next(0, 5) * 0.125;
                    }
                    break;
                default:
                    for (int j = 0; j < e; j++)
                    {
                        values[i * e + j] = TopKAlgorithm.Gaussian(rng);
                    }
                    break;
            }
        }
        bool f32 = rng.Next(3) == 0;
        var scores = f32 ? NdArray.Create(values.Select(v => (float)v).ToArray(), n, e) : NdArray.Create(values, n, e);
        string[] kinds = ["softmax", "grid", "normal"];
        string name = $"seed {seed}: N={n} E={e} {string.Join(" ", parameters.Select(p => $"{p.Key}={p.Value}"))} {kinds[kind]}{(f32 ? " f32" : "")}";
        return new GeneratedCase(name, new Dictionary<string, NdArray> { ["scores"] = scores }, parameters);
    }
}
