using Reference.Harness.Comparison;
using Reference.Harness.Registry;
using Reference.Numerics;
using Reference.Routing;
using static Reference.Harness.Algorithms.RoutingSupport;

namespace Reference.Harness.Algorithms;

/// <summary>
/// Judges a candidate block routing directly against the logits (proofs/tolerance.md, Definition: Decisions and near-ties): where two block scores or two
/// token scores are equal or within the candidate's rounding error, either choice passes.
/// </summary>
/// <remarks>
/// <para>Block sets: each row of block_experts must be kb distinct experts forming a top-kb choice of Q_b within the slack
/// 2((E + B + 6)·u·max_e Q_be + t) (the softmax error plus the mean over up to B tokens; t, the format's smallest normal
/// number, covers subnormal results). Without block_experts, the experts the
/// block's tokens use must number at most kb and each lie within that slack of the kb-th largest Q_be.</para>
/// <para>Tokens: k distinct experts of the block's set, a top-k choice of P_i over the set within 2((E + 4)·u·max_e P_ie + t).
/// unique_per_block must be what the candidate's experts imply. token_level_unique must equal the reference's, except in
/// a block where some token has a near-tie at its plain top-k boundary (then any value passes).</para>
/// </remarks>
public sealed class BlockRoutingValidator : IValidator
{
    /// <summary>The most problems reported; the check stops describing after this many.</summary>
    private const int MaxProblems = 20;

    /// <summary>Judges the candidate with <see cref="Check(double[,], BlockRoutingOptions, int[,], int[,], int[], int[], NumberFormat, BlockRoutingResult)"/>: a candidate without experts is judged with the reference's experts as its choice.</summary>
    /// <param name="context">The call, reference outputs and candidate outputs.</param>
    /// <returns>One report for each of experts, weights, block_experts, unique_per_block and token_level_unique that the candidate contains.</returns>
    public IReadOnlyList<ComparisonReport> Judge(CheckContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var call = context.Call;
        var c = context.Candidate;
        var expected = context.Expected;
        var experts = c.TryGetValue("experts", out var ex) ? ex : expected["experts"];
        var check = Check(
            call.Matrix("logits"), BlockRoutingAlgorithm.Options(call), IntMatrix(experts),
            c.TryGetValue("block_experts", out var be) ? IntMatrix(be) : null,
            c.TryGetValue("unique_per_block", out var up) ? IntVector(up) : null,
            c.TryGetValue("token_level_unique", out var tl) ? IntVector(tl) : null,
            context.Format, BlockRoutingAlgorithm.OracleResult(call));
        var reports = new List<ComparisonReport>();
        foreach (var name in new[] { "experts", "block_experts", "unique_per_block", "token_level_unique" })
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

    /// <summary>Validates a candidate block routing.</summary>
    /// <param name="logits">X [N, E], finite.</param>
    /// <param name="options">The options the candidate claims to implement.</param>
    /// <param name="experts">The candidate's experts [N, k].</param>
    /// <param name="blockExperts">The candidate's block sets [nb, kb], or null.</param>
    /// <param name="uniquePerBlock">The candidate's unique_per_block [nb], or null.</param>
    /// <param name="tokenLevelUnique">The candidate's token_level_unique [nb], or null.</param>
    /// <param name="format">The candidate's precision.</param>
    /// <returns>The problems found and the weights [N, k] the candidate's experts imply.</returns>
    public static RoutingCheck Check(
        double[,] logits, BlockRoutingOptions options, int[,] experts, int[,]? blockExperts, int[]? uniquePerBlock,
        int[]? tokenLevelUnique, NumberFormat format)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(experts);
        return Check(logits, options, experts, blockExperts, uniquePerBlock, tokenLevelUnique, format,
            BlockRouting.Route(logits, options)); // validates the arguments
    }

    /// <summary>Validates a candidate block routing, given the reference's routing of the same logits and options (its
    /// blocks and its scores P; the check path computes them once, for the reference's outputs and for this).</summary>
    /// <param name="logits">X [N, E], finite.</param>
    /// <param name="options">The options the candidate claims to implement.</param>
    /// <param name="experts">The candidate's experts [N, k].</param>
    /// <param name="blockExperts">The candidate's block sets [nb, kb], or null.</param>
    /// <param name="uniquePerBlock">The candidate's unique_per_block [nb], or null.</param>
    /// <param name="tokenLevelUnique">The candidate's token_level_unique [nb], or null.</param>
    /// <param name="format">The candidate's precision.</param>
    /// <param name="reference"><see cref="BlockRouting.Route"/> of <paramref name="logits"/> and <paramref name="options"/>.</param>
    /// <returns>The problems found and the weights [N, k] the candidate's experts imply.</returns>
    public static RoutingCheck Check(
        double[,] logits, BlockRoutingOptions options, int[,] experts, int[,]? blockExperts, int[]? uniquePerBlock,
        int[]? tokenLevelUnique, NumberFormat format, BlockRoutingResult reference)
    {
        ArgumentNullException.ThrowIfNull(logits);
        double unitRoundoff = Precision.UnitRoundoff(format), tiny = Precision.SmallestNormal(format);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(experts);
        ArgumentNullException.ThrowIfNull(reference);
        int n = logits.GetLength(0), e = logits.GetLength(1), k = options.K, kb = options.BlockK ?? k, b = options.BlockSize;
        int nb = reference.BlockExperts.GetLength(0);
        var problems = new List<string>();
        var weights = new double[n, k];
        if (experts.GetLength(0) != n || experts.GetLength(1) != k)
        {
            problems.Add($"experts has shape [{experts.GetLength(0)}, {experts.GetLength(1)}], not [N, k] = [{n}, {k}]");
            return new RoutingCheck(problems, weights);
        }
        if (blockExperts is not null && (blockExperts.GetLength(0) != nb || blockExperts.GetLength(1) != kb))
        {
            problems.Add($"block_experts has shape [{blockExperts.GetLength(0)}, {blockExperts.GetLength(1)}], not [nb, kb] = [{nb}, {kb}]");
            return new RoutingCheck(problems, weights);
        }
        var p = reference.Scores ?? RouterScores.Compute(logits, ScoreFunction.Softmax);
        var rowSums = new double[n];

        // Blocks are independent (each writes only its own tokens' weights and sums): they run in parallel, and the problems
        // are reported in block order.
        ForEachInOrder(nb, (blk, fail) =>
        {
            int start = blk * b, end = (int)Math.Min(n, (long)start + b);
            var q = new double[e];
            for (int x = 0; x < e; x++)
            {
                for (int i = start; i < end; i++)
                {
                    q[x] += p[i, x];
                }
                q[x] /= end - start;
            }
            double qSlack = 2.0 * ((e + b + 6) * unitRoundoff * q.Max() + tiny);
            double kbth = q[Ranking.Top(q, kb)[kb - 1]];

            // 1. The block's set: the candidate's, checked; or the experts its tokens use, checked against the kb-th score.
            var inSet = new bool[e];
            if (blockExperts is not null)
            {
                var set = Enumerable.Range(0, kb).Select(r => blockExperts[blk, r]).ToArray();
                if (!IsTopChoice(set, q, qSlack))
                {
                    fail($"block {blk}: block_experts [{string.Join(", ", set)}] are not a top-{kb} choice of the block scores");
                    return;
                }
                foreach (int x in set)
                {
                    inSet[x] = true;
                }
            }
            else
            {
                for (int i = start; i < end; i++)
                {
                    for (int j = 0; j < k; j++)
                    {
                        int x = experts[i, j];
                        if (x >= 0 && x < e && q[x] >= kbth - qSlack)
                        {
                            inSet[x] = true;
                        }
                    }
                }
                if (inSet.Count(v => v) > kb)
                {
                    fail($"block {blk}: its tokens use {inSet.Count(v => v)} experts, more than block_k = {kb}");
                    return;
                }
            }

            // 2. Tokens: k distinct experts of the set, a top-k choice of P over the set.
            var used = new HashSet<int>();
            bool nearTie = false;
            for (int i = start; i < end; i++)
            {
                var row = Enumerable.Range(0, k).Select(j => experts[i, j]).ToArray();
                double maxP = Enumerable.Range(0, e).Max(x => p[i, x]);
                double slack = 2.0 * ((e + 4) * unitRoundoff * maxP + tiny);
                if (row.Any(x => x < 0 || x >= e || !inSet[x]) || row.Distinct().Count() != k)
                {
                    fail($"token {i}: experts [{string.Join(", ", row)}] are not {k} distinct experts of block {blk}'s set");
                    continue;
                }
                var masked = Enumerable.Range(0, e).Select(x => inSet[x] ? p[i, x] : double.NegativeInfinity).ToArray();
                if (!IsTopChoice(row, masked, slack))
                {
                    fail($"token {i}: experts [{string.Join(", ", row)}] are not a top-{k} choice of P within block {blk}'s set");
                    continue;
                }
                var normalized = RouterScores.Normalized(row.Select(x => logits[i, x]).ToArray(), ScoreFunction.Softmax);
                for (int j = 0; j < k; j++)
                {
                    weights[i, j] = normalized[j];
                    rowSums[i] += p[i, row[j]];
                    used.Add(row[j]);
                }
                // Plain top-k near-tie at the boundary: the token-level count may legitimately differ.
                if (k < e)
                {
                    var pRow = new double[e];
                    for (int x = 0; x < e; x++)
                    {
                        pRow[x] = p[i, x];
                    }
                    var best = new int[k + 1]; // the k + 1 largest scores, descending
                    Ranking.TopInto(pRow, best);
                    nearTie |= pRow[best[k - 1]] - pRow[best[k]] <= slack;
                }
            }

            // 3. The counts.
            if (uniquePerBlock is not null && (uniquePerBlock.Length != nb || uniquePerBlock[blk] != used.Count))
            {
                fail($"unique_per_block[{blk}] disagrees with the {used.Count} distinct experts the block's tokens use");
            }
            if (tokenLevelUnique is not null && (tokenLevelUnique.Length != nb
                || (!nearTie && tokenLevelUnique[blk] != reference.TokenLevelUnique[blk])))
            {
                fail($"token_level_unique[{blk}] should be {reference.TokenLevelUnique[blk]}");
            }
        }, message =>
        {
            if (problems.Count < MaxProblems)
            {
                problems.Add(message);
            }
        }, MaxProblems);
        return new RoutingCheck(problems, weights) { RowSums = rowSums };
    }

    /// <summary>True when the listed indices are distinct, in descending order of value, and no unlisted index beats the
    /// weakest listed one, each comparison within the slack.</summary>
    private static bool IsTopChoice(int[] listed, double[] value, double slack)
    {
        if (listed.Any(x => x < 0 || x >= value.Length) || listed.Distinct().Count() != listed.Length)
        {
            return false;
        }
        for (int j = 0; j + 1 < listed.Length; j++)
        {
            if (value[listed[j]] < value[listed[j + 1]] - slack)
            {
                return false;
            }
        }
        double weakest = listed.Min(x => value[x]);
        return Enumerable.Range(0, value.Length).All(x => listed.Contains(x) || value[x] <= weakest + slack);
    }
}
