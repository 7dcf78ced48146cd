namespace Reference.Routing;

/// <summary>
/// Top-k routing with expert capacity, without comparison sorts through delegates: equal to the readable reference
/// <see cref="Capacity.Route"/> bit for bit in every output (proofs/capacity.md, theorem capacity.fast-reference-identical).
/// Used by <c>check capacity</c> beyond the size documented in proofs/cli.md ("Fast references beyond a size").
/// </summary>
/// <remarks>
/// <para>Shapes, options, validation and errors are those of <see cref="Capacity.Route"/>; the selection is
/// <see cref="TopKFast.Route"/>'s, equal to <see cref="TopK.Route"/>'s.</para>
/// <para>Why the outputs are identical: the reference sorts the N k requests by a strict total order (each policy's key,
/// then token, then choice) and walks it; any construction of the same total order gives the same walk. Number request
/// (i, j) r = i k + j, so (token, choice) order is r order. Position is r order itself; choice-position enumerates j, then
/// i; batch-priority enumerates j, then the tokens by their rank (a permutation, built as the reference's by a primitive
/// sort of the first-choice scores whose runs of equal scores are then ordered by token); score and logit sort the
/// requests by the negated value with a primitive sort and order each run of equal values by r. The dispatch orders are
/// enumerated the same way. The weights, kept or renormalized, come from the same values and the same
/// <see cref="RouterScores.Normalized"/> calls, rows in parallel.</para>
/// </remarks>
public static class CapacityFast
{
    /// <summary>Routes as <see cref="Capacity.Route"/> does, with the same result.</summary>
    /// <param name="logits">X, [N, E], finite.</param>
    /// <param name="options">k, score, normalization, capacity rule, policy and bias.</param>
    /// <returns>experts, weights and slots [N, k], load [E], C and the pre-drop selection.</returns>
    /// <exception cref="ArgumentException">As for <see cref="Capacity.Route"/>.</exception>
    public static CapacityResult Route(double[,] logits, CapacityOptions options)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(options);
        int n = logits.GetLength(0), e = logits.GetLength(1), k = options.K;

        // 1. Selection and C, as the reference.
        var top = TopKFast.Route(logits, new TopKOptions { K = k, Score = options.Score, Normalize = false, Bias = options.Bias });
        int c = ExpertCapacity.Resolve(n, e, k, options.Capacity, options.CapacityFactor, options.Rounding, options.MinCapacity);
        var selected = top.Experts;

        // 2. Pre-drop weights.
        var w = (double[,])top.Weights.Clone();
        if (options.Normalize == Renormalization.Before)
        {
            RowBlocks.For(n, i =>
            {
                var selectedLogits = new double[k];
                for (int j = 0; j < k; j++)
                {
                    selectedLogits[j] = logits[i, selected[i, j]];
                }
                var normalized = RouterScores.Normalized(selectedLogits, options.Score);
                for (int j = 0; j < k; j++)
                {
                    w[i, j] = normalized[j];
                }
            });
        }

        // 3. The priority order of the requests r = i k + j, and the tokens in batch-priority order.
        var byRank = options.Policy == DropPolicy.BatchPriority ? TokensByFirstScore(top.Weights) : null;
        var priority = Priority(options.Policy, n, k, w, logits, selected, byRank);

        // 4. Keep.
        var kept = new bool[n * k];
        var load = new int[e];
        foreach (int r in priority)
        {
            int x = selected[r / k, r % k];
            if (load[x] < c)
            {
                kept[r] = true;
                load[x]++;
            }
        }

        // 5. Slots, in dispatch order.
        var experts = new int[n, k];
        var slots = new int[n, k];
        var weights = new double[n, k];
        var next = new int[e];
        void Dispatch(int i, int j)
        {
            int r = i * k + j, x = selected[i, j];
            experts[i, j] = kept[r] ? x : -1;
            slots[i, j] = kept[r] ? next[x]++ : -1;
            weights[i, j] = kept[r] ? w[i, j] : 0.0;
        }
        if (options.Policy is DropPolicy.ChoicePosition or DropPolicy.BatchPriority)
        {
            for (int j = 0; j < k; j++)
            {
                for (int t = 0; t < n; t++)
                {
                    Dispatch(byRank?[t] ?? t, j);
                }
            }
        }
        else
        {
            for (int i = 0; i < n; i++)
            {
                for (int j = 0; j < k; j++)
                {
                    Dispatch(i, j);
                }
            }
        }

        // 6. "after": renormalize over the kept requests.
        if (options.Normalize == Renormalization.After)
        {
            RowBlocks.For(n, i =>
            {
                var keptLogits = new List<double>(k);
                for (int j = 0; j < k; j++)
                {
                    if (kept[i * k + j])
                    {
                        keptLogits.Add(logits[i, selected[i, j]]);
                    }
                }
                var normalized = RouterScores.Normalized(keptLogits.ToArray(), options.Score);
                for (int j = 0, q = 0; j < k; j++)
                {
                    weights[i, j] = kept[i * k + j] ? normalized[q++] : 0.0;
                }
            });
        }
        return new CapacityResult(experts, weights, slots, load, c, selected) { Scores = top.Scores };
    }

    /// <summary>The requests r = i k + j in the policy's priority order (that of the reference's Compare).</summary>
    private static int[] Priority(DropPolicy policy, int n, int k, double[,] w, double[,] logits, int[,] selected, int[]? byRank)
    {
        var order = new int[n * k];
        switch (policy)
        {
            case DropPolicy.Position:
                for (int r = 0; r < order.Length; r++)
                {
                    order[r] = r;
                }
                return order;
            case DropPolicy.ChoicePosition:
            case DropPolicy.BatchPriority:
                for (int j = 0, r = 0; j < k; j++)
                {
                    for (int t = 0; t < n; t++)
                    {
                        order[r++] = (byRank?[t] ?? t) * k + j;
                    }
                }
                return order;
            case DropPolicy.Score:
            case DropPolicy.Logit:
                var keys = new double[n * k];
                for (int i = 0; i < n; i++)
                {
                    for (int j = 0; j < k; j++)
                    {
                        keys[i * k + j] = -(policy == DropPolicy.Score ? w[i, j] : logits[i, selected[i, j]]);
                        order[i * k + j] = i * k + j;
                    }
                }
                Ranking.SortNegated(keys, order);
                return order;
            default:
                throw new ArgumentOutOfRangeException(nameof(policy), policy, "unknown drop policy");
        }
    }

    /// <summary>The tokens ordered by their first-choice score P[i, e_i1], larger first, ties to the lower token
    /// (<see cref="Ranking.Order"/> of the reference's TokenRank).</summary>
    private static int[] TokensByFirstScore(double[,] rawWeights)
    {
        int n = rawWeights.GetLength(0);
        var keys = new double[n];
        var order = new int[n];
        for (int i = 0; i < n; i++)
        {
            keys[i] = -rawWeights[i, 0];
            order[i] = i;
        }
        Ranking.SortNegated(keys, order);
        return order;
    }
}
