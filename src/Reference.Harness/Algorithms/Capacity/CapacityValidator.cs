using Reference.Harness.Comparison;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Numerics;
using Reference.Routing;
using static Reference.Harness.Algorithms.RoutingSupport;

namespace Reference.Harness.Algorithms;

/// <summary>The verdict of a routing validator: what is wrong with a candidate (empty when it is a valid routing), and the
/// float output (weights or gates) that the candidate's own index choice implies, for a tolerance comparison by the caller.</summary>
/// <param name="Problems">Human-readable violations, the first few only; empty means valid.</param>
/// <param name="ExpectedWeights">The weights (or gates) the candidate's choice implies, in the candidate's output shape.</param>
public sealed record RoutingCheck(IReadOnlyList<string> Problems, double[,] ExpectedWeights)
{
    /// <summary>True when no violation was found.</summary>
    public bool Valid => Problems.Count == 0;

    /// <summary>For renormalized weights: per row, the sum of the raw scores the row's weights renormalize (the floor of
    /// <see cref="RoutingSupport.RenormalizationFloor"/>); null when the weights are not renormalized.</summary>
    public IReadOnlyList<double>? RowSums { get; init; }
}

/// <summary>
/// Judges a candidate capacity routing directly against the logits (proofs/tolerance.md, Definition: Decisions and near-ties): where two keys that decide
/// something are equal, or within the candidate's rounding error of each other, either decision passes; any other
/// deviation from <see cref="Capacity.Route"/> fails.
/// </summary>
/// <remarks>
/// <para>The candidate's experts [N, k] show only the kept requests (-1 where dropped). The validator completes each row to a
/// selection S_i: a kept position keeps the candidate's expert, a dropped position gets the best-ranked expert not yet in the
/// row that the candidate has filled to C (preferring, among near-ties, one whose drop is consistent with the policy).
/// It then checks, with slack δ for every comparison of computed values:</para>
/// <para>(1) S_i is a valid top-k choice of the keys P_i + b (descending, nothing unchosen beats the weakest chosen);
/// (2) every expert keeps at most C requests, and an expert with a dropped request keeps exactly C;
/// (3) no dropped request of an expert comes before one of its kept requests in the policy's priority order;
/// (4) slots, when given, number each expert's kept requests 0..load-1 in dispatch order;
/// (5) load, when given, counts the kept requests.</para>
/// <para>Slack: selection keys δ = 2(E + 4)·u·max_e |P_ie + b_e| per row (as the top-k validator), for comparisons within a row.
/// Values compared across tokens (the weights of the score policy, the first-choice scores of batch-priority) carry an
/// uncertainty relative to the value v itself, (2|X_ie| + 2·max_e |X_ie| + E + 2k + 8)·u·v, plus the format's smallest normal
/// number (subnormal results); logits u·|X_ie|.
/// u is the candidate's unit roundoff (2^-24 for float32, 2^-53 for float64). Renormalized weights are computed in log
/// space (as the reference does), so they stay accurate when the scores underflow.
/// Known limit: the completion of a dropped position is greedy, so a candidate whose dropped request went to one of two
/// near-tied full experts, where only the other one makes the drop consistent, can be rejected although valid. Where the
/// completion decides a value another check compares, the validator ranges over the near-tied full experts instead: the
/// "before" weights of a row with a dropped choice, and batch-priority's first-choice score of a token whose first
/// choice was dropped.</para>
/// </remarks>
public sealed class CapacityValidator : IValidator
{
    /// <summary>Judges the candidate with <see cref="Check(double[,], CapacityOptions, int[,], int[,], int[], NumberFormat, CapacityResult, double[,])"/>:
    /// a candidate without experts is judged with the reference's experts as its choice.</summary>
    /// <param name="context">The call, reference outputs and candidate outputs.</param>
    /// <returns>One report for each of experts, weights, slots and load that the candidate contains.</returns>
    public IReadOnlyList<ComparisonReport> Judge(CheckContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var call = context.Call;
        var c = context.Candidate;
        var expected = context.Expected;
        var experts = c.TryGetValue("experts", out var ex) ? ex : expected["experts"];
        var check = Check(
            call.Matrix("logits"), CapacityAlgorithm.Options(call), IntMatrix(experts),
            c.TryGetValue("slots", out var sl) ? IntMatrix(sl) : null,
            c.TryGetValue("load", out var ld) ? IntVector(ld) : null,
            context.Format, CapacityAlgorithm.OracleResult(call),
            c.TryGetValue("weights", out var cw) && cw.Shape.Count == 2 ? Matrix(cw) : null);
        var reports = new List<ComparisonReport>();
        foreach (var name in new[] { "experts", "slots", "load" })
        {
            if (c.TryGetValue(name, out var array))
            {
                reports.Add(IndexReport(name, array, expected[name], check));
            }
        }
        if (c.TryGetValue("weights", out var w))
        {
            reports.Add(FloatReport("weights", w, expected["weights"], check, context.FormatOf("weights"), call.Array("logits").Shape[1]));
        }
        return reports;
    }

    /// <summary>The most problems reported; the check stops describing after this many.</summary>
    private const int MaxProblems = 20;

    /// <summary>Validates a candidate capacity routing.</summary>
    /// <param name="logits">X [N, E], finite.</param>
    /// <param name="options">The routing options the candidate claims to implement.</param>
    /// <param name="experts">The candidate's experts [N, k], -1 where dropped.</param>
    /// <param name="slots">The candidate's slots [N, k], or null when it has none.</param>
    /// <param name="load">The candidate's load [E], or null when it has none.</param>
    /// <param name="format">The candidate's precision, which sets the slack.</param>
    /// <returns>The problems found and the weights the candidate's choice implies.</returns>
    /// <param name="weights">The candidate's weights [N, k], or null; used only to resolve the ambiguity of "before" weights (see the other overload).</param>
    public static RoutingCheck Check(
        double[,] logits, CapacityOptions options, int[,] experts, int[,]? slots, int[]? load, NumberFormat format, double[,]? weights = null)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(experts);
        // The reference validates every argument; its C is the one the candidate must respect.
        return Check(logits, options, experts, slots, load, format, Capacity.Route(logits, options), weights);
    }

    /// <summary>Validates a candidate capacity routing, given the reference's routing of the same logits and options
    /// (its C and its scores P; the check path computes them once, for the reference's outputs and for this).</summary>
    /// <param name="logits">X [N, E], finite.</param>
    /// <param name="options">The routing options the candidate claims to implement.</param>
    /// <param name="experts">The candidate's experts [N, k], -1 where dropped.</param>
    /// <param name="slots">The candidate's slots [N, k], or null when it has none.</param>
    /// <param name="load">The candidate's load [E], or null when it has none.</param>
    /// <param name="format">The candidate's precision, which sets the slack.</param>
    /// <param name="reference"><see cref="Capacity.Route"/> of <paramref name="logits"/> and <paramref name="options"/>.</param>
    /// <param name="weights">The candidate's weights [N, k], or null. With renormalization "before", a kept weight depends on the
    /// experts of the row's dropped requests, which the candidate does not report (-1): where a dropped position could have gone to
    /// any of several near-tied full experts, each choice implies other weights, and the expected weights are those of the
    /// choice nearest the candidate's (or, with very many choices, the candidate's weight clamped to their interval) (proofs/capacity.md, Theorem: kernel-equals-reference). Without weights, the greedy
    /// completion's weights are expected.</param>
    /// <returns>The problems found and the weights the candidate's choice implies.</returns>
    public static RoutingCheck Check(
        double[,] logits, CapacityOptions options, int[,] experts, int[,]? slots, int[]? load, NumberFormat format, CapacityResult reference,
        double[,]? weights = null)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(experts);
        ArgumentNullException.ThrowIfNull(reference);
        int n = logits.GetLength(0), e = logits.GetLength(1), k = options.K;
        int c = reference.Capacity;
        var problems = new List<string>();
        void Fail(string message)
        {
            if (problems.Count < MaxProblems)
            {
                problems.Add(message);
            }
        }
        var expected = new double[n, k];
        if (experts.GetLength(0) != n || experts.GetLength(1) != k)
        {
            Fail($"experts has shape [{experts.GetLength(0)}, {experts.GetLength(1)}], not [N, k] = [{n}, {k}]");
            return new RoutingCheck(problems, expected);
        }
        var ctx = new Context(logits, options, Precision.UnitRoundoff(format), Precision.SmallestNormal(format), c, reference.Scores);

        // 1. Row structure: every entry in -1..E-1, kept experts distinct. The candidate's kept requests, per expert.
        var rowOk = new bool[n];
        var keptOf = new List<(int I, int J)>[e];
        var droppedOf = new List<(int I, int J)>[e];
        for (int x = 0; x < e; x++)
        {
            keptOf[x] = [];
            droppedOf[x] = [];
        }
        for (int i = 0; i < n; i++)
        {
            rowOk[i] = true;
            for (int j = 0; j < k; j++)
            {
                int x = experts[i, j];
                if (x < -1 || x >= e)
                {
                    Fail($"experts[{i}, {j}] = {x} is outside -1..{e - 1}");
                    rowOk[i] = false;
                }
                for (int jj = 0; jj < j && x >= 0; jj++)
                {
                    if (experts[i, jj] == x)
                    {
                        Fail($"experts[{i}, {j}] = {x} repeats experts[{i}, {jj}]");
                        rowOk[i] = false;
                    }
                }
            }
            for (int j = 0; j < k && rowOk[i]; j++)
            {
                if (experts[i, j] >= 0)
                {
                    keptOf[experts[i, j]].Add((i, j));
                }
            }
        }

        // Capacity first, expert by expert: what a capacity bug breaks is an expert's load, so name it before any token.
        for (int x = 0; x < e; x++)
        {
            if (keptOf[x].Count > c)
            {
                Fail($"expert {x} keeps {keptOf[x].Count} requests, more than its capacity C = {c}");
            }
        }

        // 2. Complete every row to a selection S_i (dropped positions get a full expert) and check it is a top-k choice.
        //    Once the completion's per-expert summaries are built, rows are independent: they run in parallel, and the
        //    problems are reported in token order below.
        var sel = new int[n, k];
        ctx.PrepareCompletion(experts, keptOf);
        var fault = new RowFault[n];
        RowBlocks.For(n, i =>
        {
            if (rowOk[i])
            {
                fault[i] = !ctx.Complete(i, experts, keptOf, sel) ? RowFault.NoFullExpert
                    : !ctx.IsValidTopK(i, sel) ? RowFault.NotTopK : RowFault.None;
            }
        });
        for (int i = 0; i < n; i++)
        {
            if (fault[i] == RowFault.NoFullExpert)
            {
                // The expert the dropped choice most plausibly went to: the best one outside the row; it has room.
                int wanted = Enumerable.Range(0, e).Where(x => Enumerable.Range(0, k).All(j => experts[i, j] != x))
                    .OrderByDescending(x => ctx.Key[i, x]).ThenBy(x => x).First();
                Fail($"token {i} had a choice dropped, but expert {wanted} (its best expert outside the row) keeps only "
                     + $"{keptOf[wanted].Count} < C = {c} requests, and no expert outside the row is full");
                rowOk[i] = false;
            }
            else if (fault[i] == RowFault.NotTopK)
            {
                Fail($"token {i}: the experts [{string.Join(", ", Enumerable.Range(0, k).Select(j => sel[i, j]))}] (dropped choices completed) "
                     + "are not a top-k choice of P + b");
                rowOk[i] = false;
            }
        }

        // 3. Pre-drop weights w [N, k] and first-choice scores of the completed selection; the dropped requests per expert.
        var w = new double[n, k];
        var top1 = new double[n];
        RowBlocks.For(n, i =>
        {
            if (!rowOk[i])
            {
                return;
            }
            for (int j = 0; j < k; j++)
            {
                w[i, j] = ctx.P[i, sel[i, j]];
            }
            if (options.Normalize == Renormalization.Before)
            {
                var selected = new double[k];
                for (int j = 0; j < k; j++)
                {
                    selected[j] = logits[i, sel[i, j]];
                }
                var normalized = RouterScores.Normalized(selected, options.Score);
                for (int j = 0; j < k; j++)
                {
                    w[i, j] = normalized[j];
                }
            }
            top1[i] = ctx.P[i, sel[i, 0]];
        });
        for (int i = 0; i < n; i++)
        {
            if (!rowOk[i])
            {
                continue;
            }
            for (int j = 0; j < k; j++)
            {
                if (experts[i, j] < 0)
                {
                    droppedOf[sel[i, j]].Add((i, j));
                }
            }
            if (experts[i, 0] < 0 && options.Policy == DropPolicy.BatchPriority)
            {
                ctx.WidenFirstChoice(i, experts, keptOf);
            }
        }
        if (options.Policy == DropPolicy.Score && options.Normalize == Renormalization.Before)
        {
            // A row with dropped positions near-tied at its top-k boundary may have been completed differently by the
            // candidate (a float32 sigmoid saturates to 1 and ties keys that differ in double): its weights are known only
            // up to the range over its valid completions.
            var scale = new (double Low, double High)[n];
            RowBlocks.For(n, i => scale[i] = rowOk[i] ? BeforeScaleRange(i, experts, sel, keptOf, ctx) : (1.0, 1.0));
            ctx.WidenBeforeWeights(scale);
        }

        // 4. Capacity and priority, expert by expert (at most C kept was checked first): a drop only from a full expert; no dropped request
        //    definitely before a kept one.
        //    Experts are independent: they run in parallel, and the problems are reported in expert order.
        ForEachInOrder(e, (x, fail) =>
        {
            if (droppedOf[x].Count == 0)
            {
                return;
            }
            if (keptOf[x].Count < c)
            {
                var d = droppedOf[x][0];
                fail($"request ({d.I}, {d.J}) to expert {x} was dropped while expert {x} keeps only {keptOf[x].Count} < C = {c}");
            }
            var kept = new List<Priority>(keptOf[x].Count);
            foreach (var r in keptOf[x])
            {
                if (rowOk[r.I])
                {
                    kept.Add(ctx.PriorityOf(r.I, r.J, x, w[r.I, r.J], top1[r.I]));
                }
            }
            var summary = new KeptSummary(kept);
            foreach (var d in droppedOf[x])
            {
                var pd = ctx.PriorityOf(d.I, d.J, x, w[d.I, d.J], top1[d.I]);
                if (summary.Contradicts(pd))
                {
                    var a = kept.First(pd.DefinitelyBefore);
                    fail($"expert {x} dropped request ({d.I}, {d.J}) but kept ({a.Token}, {a.Choice}), "
                         + $"which the {options.Policy} policy ranks after it");
                }
            }
        }, Fail, MaxProblems);

        // 5. Slots: -1 where dropped; each expert's kept requests numbered 0..load-1 without repeats, in dispatch order.
        if (slots is not null)
        {
            CheckSlots(ctx, slots, experts, keptOf, rowOk, top1, Fail);
        }

        // 6. Load.
        if (load is not null)
        {
            if (load.Length != e)
            {
                Fail($"load has length {load.Length}, not E = {e}");
            }
            for (int x = 0; x < Math.Min(e, load.Length); x++)
            {
                if (load[x] != keptOf[x].Count)
                {
                    Fail($"load[{x}] = {load[x]} but expert {x} keeps {keptOf[x].Count} requests");
                    break;
                }
            }
        }

        // 7. The weights the candidate's choice implies (rows in parallel: each writes only its own row).
        var rowSums = options.Normalize == Renormalization.None ? null : new double[n];
        RowBlocks.For(n, i =>
        {
            if (!rowOk[i])
            {
                return;
            }
            if (rowSums is not null)
            {
                for (int j = 0; j < k; j++)
                {
                    bool renormalized = options.Normalize == Renormalization.Before || experts[i, j] >= 0;
                    rowSums[i] += renormalized ? ctx.P[i, options.Normalize == Renormalization.Before ? sel[i, j] : experts[i, j]] : 0.0;
                }
            }
            for (int j = 0; j < k; j++)
            {
                expected[i, j] = experts[i, j] >= 0 ? w[i, j] : 0.0;
            }
            if (options.Normalize == Renormalization.After)
            {
                var keptLogits = Enumerable.Range(0, k).Where(j => experts[i, j] >= 0).Select(j => logits[i, experts[i, j]]).ToArray();
                var normalized = RouterScores.Normalized(keptLogits, options.Score);
                for (int j = 0, q = 0; j < k; j++)
                {
                    expected[i, j] = experts[i, j] >= 0 ? normalized[q++] : 0.0;
                }
            }
            else if (options.Normalize == Renormalization.Before && weights is not null)
            {
                ExpectWithinDroppedAmbiguity(i, logits, options, experts, sel, keptOf, ctx, weights, expected);
            }
        });
        return new RoutingCheck(problems, expected) { RowSums = rowSums };
    }

    /// <summary>A request's place in an order, with the candidate's rounding: a group (compared exactly, smaller first), then a
    /// value known only within [Low, High] (larger first). Request a is definitely before b when its group is smaller, or the
    /// groups are equal and a's value is above b's by more than both uncertainties.</summary>
    private readonly record struct Priority(int Token, int Choice, long Group, double Low, double High)
    {
        public bool DefinitelyBefore(Priority other) => Group < other.Group || (Group == other.Group && Low > other.High);
    }

    /// <summary>An expert's kept requests, summarized for one question: is a dropped request definitely before one of them?
    /// It is when some kept request's group is larger, or one of its own group has a High below the dropped request's Low;
    /// so the largest group and, per group, the smallest High suffice, and each question costs O(1), not O(C).</summary>
    private sealed class KeptSummary
    {
        private readonly long maxGroup = long.MinValue;
        private readonly Dictionary<long, double> minHigh = [];

        public KeptSummary(IEnumerable<Priority> kept)
        {
            foreach (var a in kept)
            {
                maxGroup = Math.Max(maxGroup, a.Group);
                minHigh[a.Group] = Math.Min(a.High, minHigh.GetValueOrDefault(a.Group, double.PositiveInfinity));
            }
        }

        /// <summary>True when <paramref name="dropped"/> is definitely before some kept request.</summary>
        public bool Contradicts(Priority dropped) =>
            dropped.Group < maxGroup || dropped.Low > minHigh.GetValueOrDefault(dropped.Group, double.PositiveInfinity);
    }

    /// <summary>Row faults of step 2, found in parallel and reported in token order.</summary>
    private enum RowFault : byte
    {
        None,
        NoFullExpert,
        NotTopK,
    }

    /// <summary>What every check needs: scores, keys, slacks and C.</summary>
    /// <summary>A rank-2 candidate output widened to double [rows, cols].</summary>
    private static double[,] Matrix(NdArray array)
    {
        var flat = array.ToDoubles();
        int rows = array.Shape[0], cols = array.Shape[1];
        var m = new double[rows, cols];
        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < cols; j++)
            {
                m[i, j] = flat[i * cols + j];
            }
        }
        return m;
    }

    /// <summary>Above this many completions of a row's dropped positions, "before" weights are judged against an interval.</summary>
    private const int MaxCompletions = 256;

    private static long Choose(int n, int m)
    {
        long c = 1;
        for (int q = 1; q <= m; q++)
        {
            c = c * (n - m + q) / q;
            if (c > MaxCompletions)
            {
                return c;
            }
        }
        return c;
    }

    private static IEnumerable<List<int>> Combinations(List<int> items, int m)
    {
        if (m == 0)
        {
            yield return [];
            yield break;
        }
        for (int first = 0; first + m <= items.Count; first++)
        {
            foreach (var rest in Combinations(items.GetRange(first + 1, items.Count - first - 1), m - 1))
            {
                rest.Insert(0, items[first]);
                yield return rest;
            }
        }
    }

    /// <summary>The near-tie ambiguity of row i's dropped positions. The full experts outside the kept ones whose key is within
    /// the slack of the completed selection's weakest key form a band; experts of the band above the weakest key by more than
    /// the slack are in every valid completion (forced), and the remaining dropped positions may hold any m of the others
    /// (free, by ascending score). Null when the row has no dropped position, or the greedy completion is not of that shape.</summary>
    private static (List<int> Kept, List<int> Forced, List<int> Free, int M)? DroppedBand(
        int i, int[,] experts, int[,] sel, List<(int I, int J)>[] keptOf, Context ctx)
    {
        int k = ctx.K;
        var kept = new List<int>(k); // in position order
        double weakest = double.PositiveInfinity;
        for (int j = 0; j < k; j++)
        {
            if (experts[i, j] >= 0)
            {
                kept.Add(experts[i, j]);
            }
            weakest = Math.Min(weakest, ctx.Key[i, sel[i, j]]);
        }
        int dropped = k - kept.Count;
        if (dropped == 0)
        {
            return null;
        }
        double slack = ctx.KeySlack[i];
        var forced = new List<int>();
        var free = new List<int>();
        for (int x = 0; x < ctx.E; x++)
        {
            if (!kept.Contains(x) && keptOf[x].Count == ctx.C && ctx.Key[i, x] >= weakest - slack)
            {
                (ctx.Key[i, x] > weakest + slack ? forced : free).Add(x);
            }
        }
        free.Sort((a, b) => ctx.P[i, a] != ctx.P[i, b] ? ctx.P[i, a].CompareTo(ctx.P[i, b]) : a.CompareTo(b));
        int m = dropped - forced.Count;
        return m < 0 || m > free.Count ? null : (kept, forced, free, m);
    }

    /// <summary>For the score policy with "before": the pre-drop weights of row i are P / S, S the score sum of the row's
    /// selection, and a row with dropped positions may have any completion of <see cref="DroppedBand"/>. Returns
    /// (S_g / S_max, S_g / S_min), S_g the greedy completion's sum and S_min, S_max the smallest and largest sum over the
    /// band's choices, so that w·(S_g / S_max) .. w·(S_g / S_min) holds the weight of every valid completion; (1, 1) when the
    /// row is unambiguous. Sums in log space, as <see cref="RouterScores.Normalized"/> computes them.</summary>
    private static (double Low, double High) BeforeScaleRange(int i, int[,] experts, int[,] sel, List<(int I, int J)>[] keptOf, Context ctx)
    {
        if (DroppedBand(i, experts, sel, keptOf, ctx) is not { } ambiguity || ambiguity.M == 0 || ambiguity.M == ambiguity.Free.Count)
        {
            return (1.0, 1.0); // one completion only: the greedy one
        }
        var (kept, forced, free, m) = ambiguity;
        var fixedSet = kept.Concat(forced).ToList();
        double greedy = ctx.LogScoreSum(i, Enumerable.Range(0, ctx.K).Select(j => sel[i, j]).ToArray());
        double smallest = ctx.LogScoreSum(i, [.. fixedSet, .. free.Take(m)]);
        double largest = ctx.LogScoreSum(i, [.. fixedSet, .. free.Skip(free.Count - m)]);
        return (Math.Min(1.0, Math.Exp(greedy - largest)), Math.Max(1.0, Math.Exp(greedy - smallest)));
    }

    /// <summary>"before" weights of row i when its dropped positions are ambiguous. The full experts outside the kept ones whose
    /// key is within the slack of the completed selection's weakest key form a band; experts of the band above the weakest key
    /// by more than the slack must be in the selection, and the remaining dropped positions may hold any others of the band.
    /// Up to <see cref="MaxCompletions"/> completions: the expected weights are those of the completion nearest the candidate's.
    /// More: the completions with the smallest and the largest score sum bound every kept weight, and the expected weight is the
    /// candidate's weight clamped to those bounds (so a valid completion's weights always pass).</summary>
    private static void ExpectWithinDroppedAmbiguity(
        int i, double[,] logits, CapacityOptions options, int[,] experts, int[,] sel, List<(int I, int J)>[] keptOf, Context ctx,
        double[,] weights, double[,] expected)
    {
        int k = options.K;
        if (weights.GetLength(0) != experts.GetLength(0) || weights.GetLength(1) != k
            || DroppedBand(i, experts, sel, keptOf, ctx) is not { } ambiguity || ambiguity.Kept.Count == 0)
        {
            return; // nothing dropped, nothing kept, or not the shape the completion produced: the greedy completion's weights
        }
        var (kept, forced, free, m) = ambiguity;
        double[] Bound(IEnumerable<int> chosen)
        {
            var all = kept.Concat(forced).Concat(chosen).Select(x => logits[i, x]).ToArray();
            var normalized = RouterScores.Normalized(all, options.Score);
            var keptLogits = Enumerable.Range(0, k).Where(j => experts[i, j] >= 0).ToArray();
            var result = new double[k];
            for (int q = 0; q < keptLogits.Length; q++)
            {
                result[keptLogits[q]] = normalized[q];
            }
            return result;
        }
        // Few completions: the one whose weights are nearest the candidate's (a discrete set, so a weight between two
        // valid completions still fails). Many: the interval between the smallest- and the largest-sum completion.
        if (Choose(free.Count, m) <= MaxCompletions)
        {
            double[]? best = null;
            double bestDistance = double.PositiveInfinity;
            foreach (var chosen in Combinations(free, m))
            {
                var candidate = Bound(chosen);
                double distance = Enumerable.Range(0, k).Where(j => experts[i, j] >= 0).Max(j => Math.Abs(candidate[j] - weights[i, j]));
                if (!(distance >= bestDistance))
                {
                    (best, bestDistance) = (candidate, distance);
                }
            }
            for (int j = 0; j < k; j++)
            {
                if (experts[i, j] >= 0)
                {
                    expected[i, j] = best![j];
                }
            }
            return;
        }
        var high = Bound(free.Take(m)); // smallest sum: largest weights
        var low = Bound(free.Skip(free.Count - m));
        for (int j = 0; j < k; j++)
        {
            if (experts[i, j] >= 0)
            {
                expected[i, j] = Math.Clamp(weights[i, j], Math.Min(low[j], high[j]), Math.Max(low[j], high[j]));
            }
        }
    }

    private sealed class Context
    {
        public Context(double[,] logits, CapacityOptions options, double u, double tiny, int capacity, double[,]? scores)
        {
            Logits = logits;
            Options = options;
            U = u;
            Tiny = tiny;
            C = capacity;
            N = logits.GetLength(0);
            E = logits.GetLength(1);
            K = options.K;
            P = scores ?? RouterScores.Compute(logits, options.Score);
            Key = new double[N, E];
            RowMax = new double[N];
            MaxAbsLogit = new double[N];
            KeySlack = new double[N];
            TopKey = new int[N];
            var bias = options.Bias?.ToArray() ?? new double[E]; // [E], 0 without a bias
            RowBlocks.For(N, i =>
            {
                double maxAbs = 0;
                for (int x = 0; x < E; x++)
                {
                    Key[i, x] = P[i, x] + bias[x];
                    // The magnitude of the terms, not of the key: P + b can cancel (proofs/topk.md, topk.kernel-equals-reference).
                    maxAbs = Math.Max(maxAbs, Math.Abs(P[i, x]) + Math.Abs(bias[x]));
                    RowMax[i] = Math.Max(RowMax[i], P[i, x]);
                    MaxAbsLogit[i] = Math.Max(MaxAbsLogit[i], Math.Abs(logits[i, x]));
                }
                KeySlack[i] = 2.0 * (E + 4) * u * maxAbs;
                // The best-ranked expert: the largest key, ties to the lower index (Ranking.Top(keys, 1)).
                int top = 0;
                for (int x = 1; x < E; x++)
                {
                    top = Key[i, x] > Key[i, top] ? x : top;
                }
                TopKey[i] = top;
            });
        }

        public double[,] Logits { get; }
        public CapacityOptions Options { get; }
        public double U { get; }
        public double Tiny { get; }
        public int C { get; }
        public int N { get; }
        public int E { get; }
        public int K { get; }
        public double[,] P { get; }
        public double[,] Key { get; }
        public double[] RowMax { get; }
        public double[] MaxAbsLogit { get; }
        public double[] KeySlack { get; }

        /// <summary>[N] score policy with "before" only, once the rows are completed: the range of a row's weights over its valid
        /// completions, relative to the greedy completion's (<see cref="BeforeScaleRange"/>); null before then.</summary>
        private (double Low, double High)[]? beforeScale;

        /// <summary>Sets <see cref="beforeScale"/>: from now on <see cref="PriorityOf"/> widens the score policy's values by it.</summary>
        public void WidenBeforeWeights((double Low, double High)[] scale) => beforeScale = scale;

        /// <summary>[N] batch-priority only: for a token whose first choice was dropped, the smallest and largest score P over
        /// the experts that could have been that first choice (NaN otherwise).</summary>
        private double[]? firstChoiceLow, firstChoiceHigh;

        /// <summary>
        /// Batch-priority orders a token's requests by its first-choice score. When the candidate dropped token i's first
        /// choice, that choice is any full expert outside the row whose key is within the slack of the row's best key, and
        /// with a bias such near-tied keys can carry scores orders of magnitude apart (saturated sigmoids, a bias on a grid).
        /// The token's priority is then known only up to the range of their scores: <see cref="PriorityOf"/> and
        /// <see cref="DispatchOf"/> use the whole range (erring towards acceptance; the reference's own choice is in it).
        /// </summary>
        public void WidenFirstChoice(int i, int[,] experts, List<(int I, int J)>[] keptOf)
        {
            double best = Key[i, TopKey[i]];
            double low = double.PositiveInfinity, high = double.NegativeInfinity;
            for (int x = 0; x < E; x++)
            {
                bool inRow = Enumerable.Range(0, K).Any(j => experts[i, j] == x);
                if (!inRow && keptOf[x].Count == C && Key[i, x] >= best - KeySlack[i])
                {
                    low = Math.Min(low, P[i, x]);
                    high = Math.Max(high, P[i, x]);
                }
            }
            if (low > high)
            {
                return; // no full expert in the band: the completion failed or chose outside it, and the checks say so
            }
            firstChoiceLow ??= Enumerable.Repeat(double.NaN, N).ToArray();
            firstChoiceHigh ??= Enumerable.Repeat(double.NaN, N).ToArray();
            firstChoiceLow[i] = low;
            firstChoiceHigh[i] = high;
        }

        /// <summary>Batch-priority's value of token i, given its completed first-choice score: an interval with the slack,
        /// widened to the band of <see cref="WidenFirstChoice"/> when its first choice was dropped.</summary>
        private (double Low, double High) FirstChoiceRange(int i, double top1)
        {
            double low = top1 - ValueSlack(i, TopKey[i], top1), high = top1 + ValueSlack(i, TopKey[i], top1);
            if (firstChoiceLow is not null && !double.IsNaN(firstChoiceLow[i]))
            {
                low = Math.Min(low, firstChoiceLow[i] - ValueSlack(i, TopKey[i], firstChoiceLow[i]));
                high = Math.Max(high, firstChoiceHigh![i] + ValueSlack(i, TopKey[i], firstChoiceHigh[i]));
            }
            return (low, high);
        }
        public int[] TopKey { get; }

        /// <summary>Uncertainty of a weight w of token i at expert x, relative to w: (2|X_ix| + 2 max_e |X_ie| + E + 2k + 8)·u·w
        /// plus the smallest normal number. The logit terms bound the error of an exponential whose argument is a difference
        /// of logits (softmax, log-space renormalization) or a logit (sigmoid); the rest the sums and divisions.</summary>
        private double ValueSlack(int i, int x, double w) => (2 * Math.Abs(Logits[i, x]) + 2 * MaxAbsLogit[i] + E + 2 * K + 8) * U * w + Tiny;

        /// <summary>The priority of request (i, j) to expert x under the policy, given its pre-drop weight and its token's
        /// first-choice score.</summary>
        public Priority PriorityOf(int i, int j, int x, double weight, double top1)
        {
            switch (Options.Policy)
            {
                case DropPolicy.Position:
                    return new Priority(i, j, (long)i * K + j, 0, 0);
                case DropPolicy.ChoicePosition:
                    return new Priority(i, j, (long)j * N + i, 0, 0);
                case DropPolicy.Score:
                    double lowWeight = weight * (beforeScale?[i].Low ?? 1.0), highWeight = weight * (beforeScale?[i].High ?? 1.0);
                    return new Priority(i, j, 0, lowWeight - ValueSlack(i, x, lowWeight), highWeight + ValueSlack(i, x, highWeight));
                case DropPolicy.Logit:
                    double lx = Logits[i, x], s = U * Math.Abs(lx);
                    return new Priority(i, j, 0, lx - s, lx + s);
                case DropPolicy.BatchPriority:
                    var (low, high) = FirstChoiceRange(i, top1);
                    return new Priority(i, j, j, low, high);
                default:
                    throw new ArgumentOutOfRangeException(nameof(Options), Options.Policy, "unknown drop policy");
            }
        }

        /// <summary>The dispatch position of kept request (i, j): (i, j) for position, score and logit; (j, i) for
        /// choice-position; (j, first-choice score) for batch-priority.</summary>
        public Priority DispatchOf(int i, int j, double[] top1)
        {
            switch (Options.Policy)
            {
                case DropPolicy.ChoicePosition:
                    return new Priority(i, j, (long)j * N + i, 0, 0);
                case DropPolicy.BatchPriority:
                    var (low, high) = FirstChoiceRange(i, top1[i]);
                    return new Priority(i, j, j, low, high);
                default:
                    return new Priority(i, j, (long)i * K + j, 0, 0);
            }
        }

        /// <summary>Fills the dropped positions of row i of sel with the best-ranked full expert not yet in the row, preferring,
        /// among those within the key slack of the best, one whose drop no kept request of that expert contradicts
        /// (judged on raw scores). False when a dropped position has no full expert left.</summary>
        public bool Complete(int i, int[,] experts, List<(int I, int J)>[] keptOf, int[,] sel)
        {
            bool anyDropped = false;
            for (int j = 0; j < K; j++)
            {
                sel[i, j] = experts[i, j];
                anyDropped |= sel[i, j] < 0;
            }
            if (!anyDropped)
            {
                return true; // nothing to complete (most rows): no ranking needed
            }
            var used = new bool[E];
            for (int j = 0; j < K; j++)
            {
                if (sel[i, j] >= 0)
                {
                    used[sel[i, j]] = true;
                }
            }
            var band = new List<int>();
            for (int j = 0; j < K; j++)
            {
                if (sel[i, j] >= 0)
                {
                    continue;
                }
                // Only an expert filled to C can have dropped a request. The best-ranked such expert outside the row, then
                // the band of those within the key slack of it, in rank order: the first whose drop is not contradicted.
                int best = -1;
                for (int x = 0; x < E; x++)
                {
                    if (!used[x] && keptOf[x].Count == C && (best < 0 || Ranking.RanksBefore(Key[i, x], x, Key[i, best], best)))
                    {
                        best = x;
                    }
                }
                if (best < 0)
                {
                    return false;
                }
                band.Clear();
                for (int x = 0; x < E; x++)
                {
                    if (!used[x] && keptOf[x].Count == C && Key[i, x] >= Key[i, best] - KeySlack[i])
                    {
                        band.Add(x);
                    }
                }
                band.Sort((a, b) => Ranking.RanksBefore(Key[i, a], a, Key[i, b], b) ? -1 : Ranking.RanksBefore(Key[i, b], b, Key[i, a], a) ? 1 : 0);
                int pick = best;
                foreach (int x in band)
                {
                    if (!DropContradicted(i, j, x, sel))
                    {
                        pick = x;
                        break;
                    }
                }
                sel[i, j] = pick;
                used[pick] = true;
            }
            return true;
        }

        /// <summary>Builds what the completion heuristic reads, before rows are completed in parallel: with renormalization
        /// "before", every row's normalizer; for every expert filled to C, the summary of its kept requests. Nothing when no
        /// row has a dropped position.</summary>
        public void PrepareCompletion(int[,] experts, List<(int I, int J)>[] keptOf)
        {
            bool anyDropped = false;
            for (int i = 0; i < N && !anyDropped; i++)
            {
                for (int j = 0; j < K; j++)
                {
                    anyDropped |= experts[i, j] < 0;
                }
            }
            if (!anyDropped)
            {
                return;
            }
            if (Options.Normalize == Renormalization.Before)
            {
                var normalizer = new double[N];
                RowBlocks.For(N, i => normalizer[i] = BeforeLogNormalizer(i));
                beforeLogNormalizer = normalizer;
            }
            // x's kept requests are never token i's when x is outside row i, so their priorities do not depend on the row
            // being completed: one summary per expert, and completing every row costs O(C) per expert, not per drop.
            var summaries = new KeptSummary?[E];
            Parallel.For(0, E, x =>
            {
                if (keptOf[x].Count == C)
                {
                    summaries[x] = new KeptSummary(keptOf[x].Select(a =>
                    {
                        double top1 = experts[a.I, 0] >= 0 ? P[a.I, experts[a.I, 0]] : P[a.I, TopKey[a.I]];
                        return PriorityOf(a.I, a.J, x, PreDropWeight(a.I, x), top1);
                    }));
                }
            });
            keptSummary = summaries;
        }

        /// <summary>For the completion heuristic: would a drop of (i, j) at the full expert x contradict one of x's kept
        /// requests, judged with raw scores as weights and the first choices the candidate kept? First-choice scores: token
        /// i's own completed first choice; another token's kept first choice, or else its best-ranked expert (what its first
        /// choice is, up to near-ties).</summary>
        private bool DropContradicted(int i, int j, int x, int[,] sel)
        {
            var summary = keptSummary?[x] ?? throw new InvalidOperationException("PrepareCompletion was not called");
            return summary.Contradicts(PriorityOf(i, j, x, PreDropWeight(i, x), P[i, j == 0 ? x : sel[i, 0]]));
        }

        /// <summary>For the completion heuristic: the pre-drop weight of token i's request to expert x, without the row's
        /// completion. P[i, x]; with renormalization "before", P renormalized over the row's top-k by key, in log space as
        /// <see cref="RouterScores.Normalized"/> computes it. The top-k's logits do not depend on how exact key ties are
        /// broken (equal keys without a bias are equal scores, hence equal logits), so the score policy's comparisons in
        /// the heuristic are the ones step 6 makes with the completed rows.</summary>
        private double PreDropWeight(int i, int x) => Options.Normalize != Renormalization.Before
            ? P[i, x]
            : Math.Exp(LogScore(i, x) - (beforeLogNormalizer?[i] ?? throw new InvalidOperationException("PrepareCompletion was not called")));

        /// <summary>With renormalization "before": log of the sum of the scores of row i's top-k by key.</summary>
        private double BeforeLogNormalizer(int i)
        {
            var key = new double[E];
            for (int y = 0; y < E; y++)
            {
                key[y] = Key[i, y];
            }
            var top = new int[K];
            Ranking.TopInto(key, top);
            return LogScoreSum(i, top);
        }

        /// <summary>Log of the sum of row i's scores at <paramref name="experts"/> (up to the row's constant, as
        /// <see cref="LogScore"/>): the largest log-score m plus the log of the sum of exp(log-score - m) in the given order,
        /// as <see cref="RouterScores.Normalized"/> computes its normalizer.</summary>
        public double LogScoreSum(int i, int[] experts)
        {
            double m = double.NegativeInfinity;
            foreach (int y in experts)
            {
                m = Math.Max(m, LogScore(i, y));
            }
            double sum = 0;
            foreach (int y in experts)
            {
                sum += Math.Exp(LogScore(i, y) - m);
            }
            return m + Math.Log(sum);
        }

        /// <summary>[N] with renormalization "before": per row, log of the sum of the top-k's scores (set by
        /// <see cref="PrepareCompletion"/>).</summary>
        private double[]? beforeLogNormalizer;

        /// <summary>The log of the score of token i at expert x up to the row's constant: the logit (softmax) or its log-sigmoid.</summary>
        private double LogScore(int i, int x) =>
            Options.Score == ScoreFunction.Softmax ? Logits[i, x] : RouterScores.LogSigmoid(Logits[i, x]);

        /// <summary>[E] the summaries of the experts filled to C (null for the others), set by <see cref="PrepareCompletion"/>.</summary>
        private KeptSummary?[]? keptSummary;

        /// <summary>True when row i of sel is a top-k choice of the keys within the slack: descending, and no unchosen expert
        /// beats the weakest chosen one.</summary>
        public bool IsValidTopK(int i, int[,] sel)
        {
            Span<bool> chosen = E <= 1024 ? stackalloc bool[E] : new bool[E];
            double weakest = double.PositiveInfinity;
            for (int j = 0; j < K; j++)
            {
                chosen[sel[i, j]] = true;
                weakest = Math.Min(weakest, Key[i, sel[i, j]]);
                if (j + 1 < K && Key[i, sel[i, j]] < Key[i, sel[i, j + 1]] - KeySlack[i])
                {
                    return false;
                }
            }
            for (int x = 0; x < E; x++)
            {
                if (!chosen[x] && Key[i, x] > weakest + KeySlack[i])
                {
                    return false;
                }
            }
            return true;
        }
    }

    /// <summary>Checks the slots: -1 exactly where dropped; per expert the kept slots are 0..load-1 without repeats, and no
    /// request holds a later slot than one it definitely precedes in dispatch order.</summary>
    private static void CheckSlots(
        Context ctx, int[,] slots, int[,] experts, List<(int I, int J)>[] keptOf, bool[] rowOk, double[] top1, Action<string> fail)
    {
        int n = ctx.N, k = ctx.K;
        if (slots.GetLength(0) != n || slots.GetLength(1) != k)
        {
            fail($"slots has shape [{slots.GetLength(0)}, {slots.GetLength(1)}], not [N, k] = [{n}, {k}]");
            return;
        }
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < k; j++)
            {
                if (experts[i, j] == -1 && slots[i, j] != -1)
                {
                    fail($"slots[{i}, {j}] = {slots[i, j]} but the request was dropped (expected -1)");
                }
            }
        }
        // Experts in parallel, each reporting its first problem; reported in expert order.
        ForEachInOrder(ctx.E, (x, expertFail) =>
        {
            // The expert's kept requests by slot (a stable sort: requests with equal slots keep their token order).
            var bySlot = keptOf[x].ToArray();
            var slotOf = Array.ConvertAll(bySlot, r => slots[r.I, r.J]);
            var order = Enumerable.Range(0, bySlot.Length).ToArray();
            Array.Sort(order, (a, b) => slotOf[a] != slotOf[b] ? slotOf[a].CompareTo(slotOf[b]) : a.CompareTo(b));
            for (int s = 0; s < order.Length; s++)
            {
                var r = bySlot[order[s]];
                if (slotOf[order[s]] != s)
                {
                    expertFail($"expert {x}'s slots are not 0..{bySlot.Length - 1} without repeats: slots[{r.I}, {r.J}] = {slots[r.I, r.J]}");
                    return;
                }
                var a = s > 0 ? bySlot[order[s - 1]] : default;
                if (s > 0 && rowOk[r.I] && rowOk[a.I] && ctx.DispatchOf(r.I, r.J, top1).DefinitelyBefore(ctx.DispatchOf(a.I, a.J, top1)))
                {
                    expertFail($"expert {x}: request ({r.I}, {r.J}) has slot {s}, after ({a.I}, {a.J}), although it comes first in dispatch order");
                    return;
                }
            }
        }, fail, 1);
    }
}
