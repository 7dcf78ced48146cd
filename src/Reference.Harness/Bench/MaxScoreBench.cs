using System.Diagnostics;
using Reference.Kernels.Native;
using Reference.Kernels.Routing;
using Reference.Routing;

namespace Reference.Harness.Bench;

/// <summary>One benchmark size: N tokens, E experts, k per token (C = ceil(N k / E)).</summary>
/// <param name="Tokens">N.</param>
/// <param name="Experts">E.</param>
/// <param name="K">k.</param>
public sealed record BenchSize(int Tokens, int Experts, int K)
{
    /// <summary>C = ceil(N k / E), capacity factor 1.</summary>
    public int Capacity => (int)(((long)Tokens * K + Experts - 1) / Experts);

    /// <summary>"N/E/k".</summary>
    public override string ToString() => $"{Tokens}/{Experts}/{K}";

    /// <summary>Parses "N/E/k".</summary>
    /// <exception cref="FormatException">Not three positive integers with k &lt;= E.</exception>
    public static BenchSize Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = text.Split('/');
        if (parts.Length != 3 || !int.TryParse(parts[0], out int n) || !int.TryParse(parts[1], out int e) || !int.TryParse(parts[2], out int k)
            || n < 1 || e < 1 || k < 1 || k > e)
        {
            throw new FormatException($"size '{text}' is not N/E/k with 1 <= k <= E");
        }
        return new BenchSize(n, e, k);
    }
}

/// <summary>One solver's timings on one size.</summary>
/// <param name="Solver">The solver's name.</param>
/// <param name="MedianMilliseconds">The median wall time of the repeats (after one warm-up run), or NaN when not run.</param>
/// <param name="Repeats">How many timed runs the median is over.</param>
/// <param name="Objective">The total score of its routing (recomputed from the routing in double).</param>
/// <param name="Note">Why it was not run, or what it reports besides (e.g. repeated experts).</param>
/// <param name="Exact">True for exact solvers, whose objective must equal the fast solver's.</param>
public sealed record BenchTiming(string Solver, double MedianMilliseconds, int Repeats, double Objective, string? Note, bool Exact);

/// <summary>All solvers on one size, with the ratios against the fast solver.</summary>
/// <param name="Size">The size.</param>
/// <param name="Timings">One entry per solver.</param>
public sealed record BenchRow(BenchSize Size, IReadOnlyList<BenchTiming> Timings);

/// <summary>A solver the benchmark can run: returns the experts [N * k] (flat, -1 padded) of its routing.</summary>
/// <param name="Name">The name in the report.</param>
/// <param name="Solve">Solves one instance: scores [N * E], N, E, k, C.</param>
/// <param name="Skip">Returns a reason to skip a size (too slow, unavailable), or null to run it.</param>
/// <param name="Exact">True when the solver is exact (its objective must match the fast solver's).</param>
public sealed record BenchSolver(string Name, Func<double[], BenchSize, int[]> Solve, Func<BenchSize, string?> Skip, bool Exact = true);

/// <summary>
/// <c>reference bench maxscore</c>: median solve times of MaxScore solvers on identical skewed-router instances, side by side.
/// Instances: logits X_ie = sigma z_ie + a_e with z, a standard normal (seeded), a_e a per-expert bias of scale <c>skew</c>,
/// scores S = softmax(X) per token. Speed is data here, never an assertion.
/// </summary>
public static class MaxScoreBench
{
    /// <summary>The sizes the issue names.</summary>
    public static IReadOnlyList<BenchSize> DefaultSizes { get; } =
        [new BenchSize(512, 16, 2), new BenchSize(4096, 64, 8), new BenchSize(16384, 64, 8)];

    /// <summary>LEMON works on int64 costs: scores are scaled by 2^40 and rounded (resolution 1e-12, far below score gaps).</summary>
    public const double LemonCostScale = 1099511627776.0;

    /// <summary>A skewed router's scores [N * E].</summary>
    public static double[] Instance(BenchSize size, int seed, double sigma = 1.0, double skew = 1.0)
    {
        ArgumentNullException.ThrowIfNull(size);
        var rng = new Random(seed);
        double Gaussian() => Math.Sqrt(-2.0 * Math.Log(1.0 - rng.NextDouble())) * Math.Cos(2.0 * Math.PI * rng.NextDouble());
        int n = size.Tokens, e = size.Experts;
        var bias = new double[e];
        for (int x = 0; x < e; x++)
        {
            bias[x] = skew * Gaussian();
        }
        var s = new double[n * e];
        for (int i = 0; i < n; i++)
        {
            double max = double.NegativeInfinity;
            for (int x = 0; x < e; x++)
            {
                s[i * e + x] = sigma * Gaussian() + bias[x];
                max = Math.Max(max, s[i * e + x]);
            }
            double sum = 0;
            for (int x = 0; x < e; x++)
            {
                s[i * e + x] = Math.Exp(s[i * e + x] - max);
                sum += s[i * e + x];
            }
            for (int x = 0; x < e; x++)
            {
                s[i * e + x] /= sum;
            }
        }
        return s;
    }

    /// <summary>The fast exact solver.</summary>
    public static BenchSolver Fast { get; } = new("fast (exact)", (s, z) =>
        MaxScoreSolver.Solve(s, z.Tokens, z.Experts, z.K, z.Capacity).Experts, _ => null);

    /// <summary>The readable reference (min-cost flow with an exact finish). Successive shortest paths cost O(N k) Dijkstra
    /// runs over N E arcs, so it is run only up to <see cref="ReferenceLimit"/> token-expert pairs.</summary>
    public static BenchSolver Reference { get; } = new("reference (exact)", (s, z) =>
        Flatten(MaxScore.Route(ToMatrix(s, z), new MaxScoreOptions { K = z.K, Capacity = z.Capacity }).Experts),
        z => (long)z.Tokens * z.Experts > ReferenceLimit ? $"skipped: N*E = {(long)z.Tokens * z.Experts} > {ReferenceLimit}; the readable solver is quadratic there" : null);

    /// <summary>The largest N*E the bench runs the reference on.</summary>
    public const long ReferenceLimit = 1L << 16;

    /// <summary>The released code's two-stage heuristic (k = 2 and C E = 2 N only).</summary>
    public static BenchSolver TwoStage { get; } = new("two-stage (heuristic)", (s, z) =>
        Flatten(MaxScoreTwoStage.Route(ToMatrix(s, z), new MaxScoreOptions { K = z.K, Capacity = z.Capacity }).Experts),
        z => z.K == 2 && (long)z.Capacity * z.Experts == 2L * z.Tokens ? null : "skipped: two-stage needs k = 2 and C*E = 2N", Exact: false);

    /// <summary>OR-Tools' SimpleMinCostFlow in process, on the network of proofs/maxscore.md, Definition: Exact routing with costs -round(S 2^q), max|S| 2^q &lt; 2^40
    /// (<see cref="OrToolsMaxScore"/>); timed without the certificate, like LEMON.</summary>
    public static BenchSolver OrTools { get; } = new("ortools min cost flow", (s, z) =>
        OrToolsMaxScore.Solve(s, z.Tokens, z.Experts, z.K, z.Capacity).Experts, _ => null);

    /// <summary>Every solver, in report order.</summary>
    public static IReadOnlyList<BenchSolver> Solvers { get; } =
        [Fast, OrTools, LemonSolver(LemonAlgorithm.NetworkSimplex), Reference, TwoStage];

    private static double[,] ToMatrix(double[] s, BenchSize z)
    {
        var m = new double[z.Tokens, z.Experts];
        for (int i = 0; i < z.Tokens; i++)
        {
            for (int x = 0; x < z.Experts; x++)
            {
                m[i, x] = s[i * z.Experts + x];
            }
        }
        return m;
    }

    private static int[] Flatten(int[,] experts)
    {
        var flat = new int[experts.Length];
        int cols = experts.GetLength(1);
        for (int i = 0; i < experts.GetLength(0); i++)
        {
            for (int j = 0; j < cols; j++)
            {
                flat[i * cols + j] = experts[i, j];
            }
        }
        return flat;
    }

    /// <summary>LEMON's network simplex (or cost scaling) through the native shim, on the network of proofs/maxscore.md, Definition: Exact routing.</summary>
    public static BenchSolver LemonSolver(LemonAlgorithm algorithm) => new(
        algorithm == LemonAlgorithm.NetworkSimplex ? "lemon network simplex" : "lemon cost scaling",
        (s, z) => SolveWithLemon(algorithm, s, z),
        _ => Lemon.IsAvailable ? null : $"LEMON shim unavailable: {Lemon.UnavailableReason}; build it with {Lemon.BuildCommand}");

    /// <summary>Timed runs continue past the requested repeats until they add up to this much wall time (at most
    /// <see cref="MaxRuns"/> runs), the same rule for every solver: a sub-millisecond median from five runs on a shared
    /// machine is mostly noise.</summary>
    public const double MinTotalMilliseconds = 300;

    /// <summary>The most timed runs of one solver on one size.</summary>
    public const int MaxRuns = 1000;

    /// <summary>Solvers take turns timing runs for about this long each, so that a slow phase of a shared machine (seconds
    /// long) falls on every solver alike instead of on whichever ran then; the ratios compare like with like.</summary>
    public const double SliceMilliseconds = 20;

    /// <summary>Runs the solvers on every size: one warm-up run each, then the median of at least <paramref name="repeats"/>
    /// timed runs (more for fast solvers, see <see cref="MinTotalMilliseconds"/>), the solvers taking turns in slices of
    /// <see cref="SliceMilliseconds"/>.</summary>
    public static IReadOnlyList<BenchRow> Run(IEnumerable<BenchSize> sizes, IReadOnlyList<BenchSolver> solvers, int repeats, int seed, Action<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(sizes);
        ArgumentNullException.ThrowIfNull(solvers);
        var rows = new List<BenchRow>();
        foreach (var size in sizes)
        {
            var scores = Instance(size, seed);
            var skips = solvers.Select(solver => solver.Skip(size)).ToArray();
            var experts = new int[solvers.Count][];
            var times = solvers.Select(_ => new List<double>()).ToArray();
            var totals = new double[solvers.Count];
            for (int s = 0; s < solvers.Count; s++)
            {
                if (skips[s] is null)
                {
                    progress?.Invoke($"{size}: {solvers[s].Name}");
                    experts[s] = solvers[s].Solve(scores, size); // warm-up, and the routing whose objective is reported
                }
            }
            GC.Collect();
            GC.WaitForPendingFinalizers();
            bool Needs(int s) => skips[s] is null
                && (times[s].Count < repeats || (totals[s] < MinTotalMilliseconds && times[s].Count < MaxRuns));
            while (Enumerable.Range(0, solvers.Count).Any(Needs))
            {
                for (int s = 0; s < solvers.Count; s++)
                {
                    for (double slice = 0; Needs(s) && slice < SliceMilliseconds;)
                    {
                        var clock = Stopwatch.StartNew();
                        solvers[s].Solve(scores, size);
                        double elapsed = clock.Elapsed.TotalMilliseconds;
                        times[s].Add(elapsed);
                        totals[s] += elapsed;
                        slice += elapsed;
                    }
                }
            }
            var timings = new List<BenchTiming>();
            for (int s = 0; s < solvers.Count; s++)
            {
                if (skips[s] is { } skip)
                {
                    timings.Add(new BenchTiming(solvers[s].Name, double.NaN, 0, double.NaN, skip, solvers[s].Exact));
                    continue;
                }
                times[s].Sort();
                timings.Add(new BenchTiming(solvers[s].Name, times[s][times[s].Count / 2], times[s].Count,
                    Objective(scores, size, experts[s]), null, solvers[s].Exact));
            }
            rows.Add(new BenchRow(size, timings));
        }
        return rows;
    }

    /// <summary>The total score of a routing, summed token by token.</summary>
    public static double Objective(double[] scores, BenchSize size, int[] experts)
    {
        ArgumentNullException.ThrowIfNull(scores);
        ArgumentNullException.ThrowIfNull(size);
        ArgumentNullException.ThrowIfNull(experts);
        double total = 0;
        for (int i = 0; i < size.Tokens; i++)
        {
            for (int j = 0; j < size.K; j++)
            {
                int x = experts[i * size.K + j];
                if (x >= 0)
                {
                    total += scores[i * size.Experts + x];
                }
            }
        }
        return total;
    }

    private static int[] SolveWithLemon(LemonAlgorithm algorithm, double[] s, BenchSize z)
    {
        // Nodes: 0 source, 1..N tokens, N+1..N+E experts, N+E+1 sink. Arcs: source->token (cap k), token->expert
        // (cap 1, cost -round(S * 2^40)), expert->sink (cap C). Supplies: the maximum flow min(N k, C E).
        int n = z.Tokens, e = z.Experts, nodes = n + e + 2, sink = n + e + 1;
        int m = n + n * e + e;
        var tails = new int[m];
        var heads = new int[m];
        var caps = new long[m];
        var costs = new long[m];
        int a = 0;
        for (int i = 0; i < n; i++)
        {
            tails[a] = 0; heads[a] = 1 + i; caps[a] = z.K; a++;
        }
        for (int i = 0; i < n; i++)
        {
            for (int x = 0; x < e; x++)
            {
                tails[a] = 1 + i; heads[a] = 1 + n + x; caps[a] = 1; costs[a] = -(long)Math.Round(s[i * e + x] * LemonCostScale); a++;
            }
        }
        for (int x = 0; x < e; x++)
        {
            tails[a] = 1 + n + x; heads[a] = sink; caps[a] = z.Capacity; a++;
        }
        long flow = Math.Min((long)n * z.K, (long)z.Capacity * e);
        var supplies = new long[nodes];
        supplies[0] = flow;
        supplies[sink] = -flow;
        var result = Lemon.MinCostFlow(algorithm, nodes, tails, heads, null, caps, costs, supplies);
        if (result.Status != LemonStatus.Optimal)
        {
            throw new InvalidOperationException($"LEMON returned {result.Status}");
        }
        var experts = new int[n * z.K];
        Array.Fill(experts, -1);
        for (int i = 0; i < n; i++)
        {
            int j = 0;
            for (int x = 0; x < e; x++)
            {
                if (result.Flows[n + i * e + x] > 0)
                {
                    experts[i * z.K + j++] = x;
                }
            }
        }
        return experts;
    }
}
