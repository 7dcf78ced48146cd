using Reference.Transport;

namespace Reference.Routing;

/// <summary>The result of the released two-stage MaxScore heuristic.</summary>
/// <param name="Experts">[N, 2]: each token's stage-1 expert, then its stage-2 expert (the two are equal for a repeated token).</param>
/// <param name="Weights">[N, 2]: S at those experts (normalized by the row sum when asked and that sum is not 0).</param>
/// <param name="Load">[E]: slots per expert; a repeated token fills two slots of its expert. Always C.</param>
/// <param name="Objective">The total score of the distinct (token, expert) pairs: a repeated expert counts once.</param>
/// <param name="Repeated">Tokens whose stage-2 expert is their stage-1 expert.</param>
/// <param name="MatchingWeight">The stage-2 matching's total weight (S, with 0 for a token's own stage-1 expert).</param>
public sealed record MaxScoreTwoStageResult(int[,] Experts, double[,] Weights, int[] Load, double Objective, int Repeated, double MatchingWeight);

/// <summary>
/// The two-stage algorithm of the released MaxScore code, for reproduction (proofs/maxscore.md, Definition: Two-stage heuristic, <c>mode=two-stage</c>;
/// k = 2 and C E = 2 N only). It is a heuristic: its objective can fall below the exact optimum of <see cref="MaxScore.Route"/>.
/// </summary>
/// <remarks>
/// <para>Stage 1, in token order: each token takes the expert of largest S_ie among those with load &lt; C (ties to the lower
/// index). Stage 2: the N leftover slots (expert e repeated C - load_e times) are matched to the N tokens by a maximum-weight
/// perfect matching (<see cref="LinearSumAssignment"/>, scipy's <c>linear_sum_assignment(maximize=True)</c> semantics) with
/// weight S_ie, except a token's own stage-1 expert, whose weight is 0: the released code zeroes it rather than forbidding it,
/// so a token can get the same expert twice (<see cref="MaxScoreTwoStageResult.Repeated"/>).</para>
/// <para>Decisions (proofs/maxscore.md, section "Two-stage"): experts are listed as [stage 1, stage 2], not by score, because
/// the released gate schedule weighs the stage-2 expert (<see cref="MaxScoreGateSchedule"/>); the objective counts a repeated
/// expert once, so that without repeats it is the score of a feasible routing and at most the exact optimum (with repeats the
/// routing is not feasible for the exact problem and can score above it). Among several maximum-weight matchings the one the
/// Hungarian method finds is returned; another optimal matching is an equally valid reproduction.</para>
/// </remarks>
public static class MaxScoreTwoStage
{
    /// <summary>Routes with the two-stage heuristic.</summary>
    /// <param name="scores">S [N, E], finite.</param>
    /// <param name="options">K must be 2; the capacity (explicit or from the factor) must give C E = 2 N.</param>
    /// <returns>The routing, its objective and the number of repeated tokens.</returns>
    /// <exception cref="ArgumentException">A score is not finite, k != 2, or C E != 2 N.</exception>
    public static MaxScoreTwoStageResult Route(double[,] scores, MaxScoreOptions options)
    {
        ArgumentNullException.ThrowIfNull(scores);
        ArgumentNullException.ThrowIfNull(options);
        int n = scores.GetLength(0), e = scores.GetLength(1);

        // 1. Check: k = 2, C E = 2 N.
        if (e == 0)
        {
            throw new ArgumentException("scores has E = 0 experts; routing needs at least one", nameof(scores));
        }
        Guard.Finite(scores, nameof(scores));
        if (options.K != 2)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.K, $"two-stage needs k = 2, not {options.K}");
        }
        int c = MaxScore.CapacityFor(n, e, options);
        if ((long)c * e != 2L * n)
        {
            throw new ArgumentException($"two-stage needs C * E = 2 * N, but C = {c}, E = {e}, N = {n}", nameof(options));
        }

        // 2. Stage 1: tokens in order, each to its best expert with room (ties to the lower index).
        var first = new int[n];
        var load = new int[e];
        for (int i = 0; i < n; i++)
        {
            int best = -1;
            for (int j = 0; j < e; j++)
            {
                if (load[j] < c && (best < 0 || scores[i, j] > scores[i, best]))
                {
                    best = j;
                }
            }
            first[i] = best; // some expert has room: the N tokens use N of the 2N slots
            load[best]++;
        }

        // 3. Stage 2: the leftover slots, expert by expert; weight S_ie, 0 at the token's stage-1 expert.
        var slotExpert = new List<int>();
        for (int j = 0; j < e; j++)
        {
            for (int t = load[j]; t < c; t++)
            {
                slotExpert.Add(j);
            }
        }
        var weight = new double[n, n];   // [token, slot]
        for (int i = 0; i < n; i++)
        {
            for (int t = 0; t < n; t++)
            {
                weight[i, t] = slotExpert[t] == first[i] ? 0.0 : scores[i, slotExpert[t]];
            }
        }
        var matching = LinearSumAssignment.Solve(weight, maximize: true);

        // 4. Outputs.
        var experts = new int[n, 2];
        var weights = new double[n, 2];
        var slots = new int[e];
        double objective = 0;
        int repeated = 0;
        for (int p = 0; p < matching.Rows.Length; p++)
        {
            int i = matching.Rows[p];
            int second = slotExpert[matching.Columns[p]];
            MaxScore.WriteRow(scores, i, [first[i], second], options.Normalize, experts, weights);
            slots[first[i]]++;
            slots[second]++;
            if (second == first[i])
            {
                repeated++;
                objective += scores[i, first[i]];
            }
            else
            {
                objective += scores[i, first[i]] + scores[i, second];
            }
        }
        return new MaxScoreTwoStageResult(experts, weights, slots, objective, repeated, matching.Total);
    }
}
