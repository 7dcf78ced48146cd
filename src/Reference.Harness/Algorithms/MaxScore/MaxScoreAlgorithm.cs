using System.Globalization;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Routing;

namespace Reference.Harness.Algorithms;

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
    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = new()
    {
        Name = "maxscore",
        Summary = "MaxScore routing: the maximum flow of largest total score (exact, min-cost flow), or the released two-stage heuristic",
        Section = "proofs/maxscore.md, Definition",
        Parameters =
        [
            new ParameterSpec("k", ParameterKind.Int, "2", "experts per token, 1..E (two-stage: 2)"),
            new ParameterSpec("capacity", ParameterKind.Int, null, "expert capacity C >= 0; default ceil(capacity_factor * N * k / E)"),
            new ParameterSpec("capacity_factor", ParameterKind.Double, "1.0", "cf >= 0, used when capacity is absent"),
            new ParameterSpec("mode", ParameterKind.Choice, "exact",
                "exact (min-cost maximum flow, certified) or two-stage (the released code's heuristic; k = 2, C*E = 2N)", ["exact", "two-stage"]),
            new ParameterSpec("normalize", ParameterKind.Bool, "false", "divide each token's weights by their sum (when not 0)"),
        ],
        Inputs =
        [
            new InputSpec("scores", "N,E", ArrayKind.Float, false, "router scores S, finite (usually softmax probabilities)"),
        ],
        Outputs =
        [
            new OutputSpec("experts", "N,k", ArrayKind.Integer, OutputComparison.Validated,
                "each token's experts by descending score, -1 padding (two-stage: [stage 1, stage 2])"),
            new OutputSpec("weights", "N,k", ArrayKind.Float, OutputComparison.Validated, "S at those experts, normalized when asked"),
            new OutputSpec("load", "E", ArrayKind.Integer, OutputComparison.Validated, "tokens per expert (two-stage: slots)"),
            new OutputSpec("objective", "", ArrayKind.Float, OutputComparison.Validated, "total score (two-stage: a repeated expert counts once)"),
            new OutputSpec("prices", "E", ArrayKind.Float, OutputComparison.Validated, "exact only: certificate prices lambda >= 0"),
            new OutputSpec("repeated", "", ArrayKind.Integer, OutputComparison.Validated, "two-stage only: tokens given the same expert twice"),
            new OutputSpec("gap", "", ArrayKind.Float, OutputComparison.Validated, "two-stage only: exact optimum minus the two-stage objective"),
        ],
        Reference = Run,
        Oracle = Oracle,
        Paths =
        [
            new OptimizedPath("fast", "exact solver: approximate prices, contracted shortest paths, exact finish; stand-in experts when C*E < k*N (Reference.Kernels)", RunFast)
            {
                Supports = call => Mode(call) == "exact" && FastSupports(call),
            },
            new OptimizedPath("ortools", "OR-Tools SimpleMinCostFlow on the section 8 network, int64 costs -round(S 2^q) with max|S| 2^q < 2^40; " +
                "the routing proven optimal by the exact certificate, which also gives the prices; scores within 2^60 of the largest in magnitude", RunOrTools)
            {
                Supports = call => Mode(call) == "exact" && FastSupports(call) && OrToolsResolves(call),
            },
        ],
        Validate = new MaxScoreValidator(),
        Generate = Generate,
    };

    /// <summary>The reference options from the call's parameters. Parsed once per call (<see cref="AlgorithmCall.Memo{T}"/>).</summary>
    public static MaxScoreOptions Options(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return call.Memo(("options", nameof(MaxScoreAlgorithm)), () => ReadOptions(call));
    }

    private static MaxScoreOptions ReadOptions(AlgorithmCall call)
    {
        var p = call.Parameters;
        return new MaxScoreOptions
        {
            K = p.GetInt("k"),
            Capacity = p.TryGetInt("capacity"),
            CapacityFactor = p.GetDouble("capacity_factor"),
            Normalize = p.GetBool("normalize"),
        };
    }

    /// <summary>The mode word: exact or two-stage.</summary>
    public static string Mode(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return call.Parameters.GetChoice("mode");
    }

    /// <summary>Runs the reference: <see cref="MaxScore.Route"/>, or <see cref="MaxScoreTwoStage.Route"/> with the gap to it.</summary>
    public static IReadOnlyDictionary<string, NdArray> Run(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        var scores = call.Matrix("scores");
        var options = Options(call);
        if (Mode(call) == "exact")
        {
            return ExactOutputs(MaxScore.Route(scores, options));
        }
        var heuristic = MaxScoreTwoStage.Route(scores, options);
        var exact = MaxScore.Route(scores, options);
        return new Dictionary<string, NdArray>
        {
            ["experts"] = NdArray.FromMatrix(heuristic.Experts),
            ["weights"] = NdArray.FromMatrix(heuristic.Weights),
            ["load"] = NdArray.FromVector(heuristic.Load),
            ["objective"] = NdArray.Scalar(heuristic.Objective),
            ["repeated"] = NdArray.Scalar(heuristic.Repeated),
            ["gap"] = NdArray.Scalar(exact.Objective - heuristic.Objective),
        };
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
        var shape = call.Array("scores").Shape;
        if (Mode(call) != "exact" || !FastSupports(call) || !BeyondReference(shape[0], shape[1], Options(call).K))
        {
            return Run(call);
        }
        var fast = RunFast(call);
        var options = Options(call);
        return CertifiedOptimal(call, fast["experts"], options.K, MaxScore.CapacityFor(shape[0], shape[1], options)) ? fast : Run(call);
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
    public static Dictionary<string, NdArray> ExactOutputs(MaxScoreResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        return new Dictionary<string, NdArray>
        {
            ["experts"] = NdArray.FromMatrix(result.Experts),
            ["weights"] = NdArray.FromMatrix(result.Weights),
            ["load"] = NdArray.FromVector(result.Load),
            ["objective"] = NdArray.Scalar(result.Objective),
            ["prices"] = NdArray.FromVector(result.Prices),
        };
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
    private static IReadOnlyDictionary<string, NdArray> RunFast(AlgorithmCall call)
    {
        var scores = call.Matrix("scores");
        int n = scores.GetLength(0), e = scores.GetLength(1);
        var options = Options(call);
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
        return new Dictionary<string, NdArray>
        {
            ["experts"] = NdArray.FromMatrix(experts),
            ["weights"] = NdArray.FromMatrix(weights),
            ["load"] = NdArray.Create(result.Load, e),
            ["objective"] = NdArray.Scalar(result.Objective),
            ["prices"] = NdArray.Create(result.Prices, e),
        };
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
    private static IReadOnlyDictionary<string, NdArray> RunOrTools(AlgorithmCall call)
    {
        var scores = call.Matrix("scores");
        int n = scores.GetLength(0), e = scores.GetLength(1);
        var options = Options(call);
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
        return new Dictionary<string, NdArray>
        {
            ["experts"] = NdArray.FromMatrix(experts),
            ["weights"] = NdArray.FromMatrix(weights),
            ["load"] = NdArray.FromVector(load),
            ["objective"] = NdArray.Scalar(check.Objective),
            ["prices"] = NdArray.FromVector(check.Prices!),
        };
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
