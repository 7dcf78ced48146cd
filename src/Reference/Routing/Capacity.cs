namespace Reference.Routing;

/// <summary>Options for <see cref="Capacity.Route"/>. Defaults follow proofs/capacity.md, Definition: Parameters.</summary>
public sealed record CapacityOptions
{
    /// <summary>Experts per token, 1..E. Default 2.</summary>
    public int K { get; init; } = 2;

    /// <summary>How logits become scores. Default softmax.</summary>
    public ScoreFunction Score { get; init; } = ScoreFunction.Softmax;

    /// <summary>When the weights are renormalized. Default none.</summary>
    public Renormalization Normalize { get; init; } = Renormalization.None;

    /// <summary>An explicit capacity C (at least 0), used as given; null derives C from the factor. Default null.</summary>
    public int? Capacity { get; init; }

    /// <summary>The capacity factor cf, used when <see cref="Capacity"/> is null. Default 1.0.</summary>
    public double CapacityFactor { get; init; } = 1.0;

    /// <summary>How C is rounded from the factor. Default ceil.</summary>
    public CapacityRounding Rounding { get; init; } = CapacityRounding.Ceil;

    /// <summary>The smallest capacity the factor rule may give. Default 0.</summary>
    public int MinCapacity { get; init; }

    /// <summary>Which requests an over-subscribed expert keeps. Default choice-position.</summary>
    public DropPolicy Policy { get; init; } = DropPolicy.ChoicePosition;

    /// <summary>Optional selection bias b [E] (selects, never weighs, as in <see cref="TopKOptions.Bias"/>). Null means none.</summary>
    public IReadOnlyList<double>? Bias { get; init; }
}

/// <summary>The result of top-k routing with expert capacity.</summary>
/// <param name="Experts">[N, k]: token i's j-th choice where it was kept, -1 where it was dropped.</param>
/// <param name="Weights">[N, k]: the kept requests' weights (see <see cref="Renormalization"/>), 0 where dropped.</param>
/// <param name="Slots">[N, k]: the position 0..C-1 of the request in its expert's buffer, -1 where dropped.</param>
/// <param name="Load">[E]: how many requests each expert kept, at most C.</param>
/// <param name="Capacity">C, the capacity that was applied.</param>
/// <param name="Selected">[N, k]: the top-k selection before any dropping (what <see cref="TopK.Route"/> returns).</param>
public sealed record CapacityResult(int[,] Experts, double[,] Weights, int[,] Slots, int[] Load, int Capacity, int[,] Selected)
{
    /// <summary>P [N, E]: the router scores the routing ranked (top-k's: softmax or sigmoid of the logits), as computed; shared, do not modify. Null when
    /// the result was built elsewhere.</summary>
    public double[,]? Scores { get; init; }
}

/// <summary>
/// Token-choice top-k routing with expert capacity and dropping (proofs/capacity.md, Definition), the reference:
/// double precision, single-threaded, deterministic.
/// </summary>
/// <remarks>
/// <para>Every token i first selects k experts as <see cref="TopK.Route"/> does (P + b ranked, ties to the lower expert);
/// request (i, j) goes to expert e_ij with pre-drop weight w_ij = P[i, e_ij] (divided by sum_j P[i, e_ij] under
/// <see cref="Renormalization.Before"/>; renormalization is computed in log space by <see cref="RouterScores.Normalized"/>,
/// as in top-k, so that it survives scores that underflow). Expert e keeps the first C of its requests in the policy's priority order
/// (<see cref="DropPolicy"/>): with R_e its requests, kept_e = the C ≺-smallest of R_e, so load_e = min(C, |R_e|).</para>
/// <para>Slots number each expert's kept requests 0..load_e - 1 in dispatch order: (j, then i) for choice-position and
/// batch-priority (over the priority order of tokens), token order (i, then j) for position, score and logit. This matches
/// DeepSpeed's published dispatch masks (tests/unit/moe/test_moe.py, TestTopkGate).</para>
/// <para>Sources: Lepikhin et al. 2020 (GShard); Fedus et al. 2021 (Switch Transformer); Riquelme et al. 2021 (V-MoE, batch
/// prioritized routing); Megatron-LM <c>topk_softmax_with_capacity</c>; DeepSpeed <c>topkgating</c>; mesh-tensorflow, flaxformer, Tutel.</para>
/// </remarks>
public static class Capacity
{
    /// <summary>Routes every token to its top-k experts, then drops the requests that overflow an expert's capacity.</summary>
    /// <param name="logits">X, [N, E], finite.</param>
    /// <param name="options">k, score, normalization, capacity rule, policy and bias.</param>
    /// <returns>experts, weights and slots [N, k], load [E], C and the pre-drop selection.</returns>
    /// <exception cref="ArgumentException">A logit or bias is not finite, a shape disagrees, k is outside 1..E, or the capacity rule is invalid.</exception>
    public static CapacityResult Route(double[,] logits, CapacityOptions options)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(options);
        int n = logits.GetLength(0), e = logits.GetLength(1), k = options.K;

        // 1. Selection: exactly top-k's (which checks the logits, k and the bias), with raw scores as weights.
        var top = TopK.Route(logits, new TopKOptions { K = k, Score = options.Score, Normalize = false, Bias = options.Bias });
        int c = ExpertCapacity.Resolve(n, e, k, options.Capacity, options.CapacityFactor, options.Rounding, options.MinCapacity);

        // 2. Pre-drop weights w [N, k]: raw P, or renormalized over the k selected ("before"), in log space as top-k does.
        var w = (double[,])top.Weights.Clone();
        if (options.Normalize == Renormalization.Before)
        {
            for (int i = 0; i < n; i++)
            {
                var normalized = RouterScores.Normalized(SelectedLogits(logits, top.Experts, i, j => true), options.Score);
                for (int j = 0; j < k; j++)
                {
                    w[i, j] = normalized[j];
                }
            }
        }

        // 3. The priority order of all N·k requests, a strict total order, and the dispatch order used for slots.
        var requests = new Request[n * k];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < k; j++)
            {
                requests[i * k + j] = new Request(i, j, top.Experts[i, j]);
            }
        }
        var tokenRank = TokenRank(top.Weights, options.Policy); // [N]: position of token i in the batch-priority order
        var priority = (Request[])requests.Clone();
        Array.Sort(priority, (a, b) => Compare(a, b, options.Policy, w, logits, tokenRank));
        var dispatch = (Request[])requests.Clone();
        Array.Sort(dispatch, (a, b) => CompareDispatch(a, b, options.Policy, tokenRank));

        // 4. Keep: walk the priority order; a request is kept while its expert has room.
        var kept = new bool[n, k];
        var load = new int[e];
        foreach (var r in priority)
        {
            if (load[r.Expert] < c)
            {
                kept[r.Token, r.Choice] = true;
                load[r.Expert]++;
            }
        }

        // 5. Slots: walk the dispatch order; each kept request takes the next free position of its expert's buffer.
        var experts = new int[n, k];  // [N, k]
        var slots = new int[n, k];    // [N, k]
        var weights = new double[n, k]; // [N, k]
        var next = new int[e];        // [E]
        foreach (var r in dispatch)
        {
            experts[r.Token, r.Choice] = kept[r.Token, r.Choice] ? r.Expert : -1;
            slots[r.Token, r.Choice] = kept[r.Token, r.Choice] ? next[r.Expert]++ : -1;
            weights[r.Token, r.Choice] = kept[r.Token, r.Choice] ? w[r.Token, r.Choice] : 0.0;
        }

        // 6. "after": renormalize over the kept requests, in log space (a token with nothing kept keeps zeros).
        if (options.Normalize == Renormalization.After)
        {
            for (int i = 0; i < n; i++)
            {
                var keptLogits = SelectedLogits(logits, top.Experts, i, j => kept[i, j]);
                var normalized = RouterScores.Normalized(keptLogits, options.Score);
                for (int j = 0, q = 0; j < k; j++)
                {
                    weights[i, j] = kept[i, j] ? normalized[q++] : 0.0;
                }
            }
        }
        return new CapacityResult(experts, weights, slots, load, c, top.Experts) { Scores = top.Scores };
    }

    /// <summary>One request: token i's j-th choice, sent to an expert.</summary>
    private readonly record struct Request(int Token, int Choice, int Expert);

    /// <summary>X at token i's selected experts, for the positions j that pass the filter, in order.</summary>
    private static double[] SelectedLogits(double[,] logits, int[,] selection, int i, Func<int, bool> include)
    {
        var list = new List<double>();
        for (int j = 0; j < selection.GetLength(1); j++)
        {
            if (include(j))
            {
                list.Add(logits[i, selection[i, j]]);
            }
        }
        return [.. list];
    }

    /// <summary>For batch-priority: the rank of each token when tokens are ordered by their first-choice score P[i, e_i1],
    /// larger first, ties to the lower token index. Other policies do not use it (all zeros).</summary>
    private static int[] TokenRank(double[,] rawWeights, DropPolicy policy)
    {
        int n = rawWeights.GetLength(0);
        var rank = new int[n];
        if (policy != DropPolicy.BatchPriority)
        {
            return rank;
        }
        var top1 = new double[n];
        for (int i = 0; i < n; i++)
        {
            top1[i] = rawWeights[i, 0];
        }
        var order = Ranking.Order(top1);
        for (int r = 0; r < n; r++)
        {
            rank[order[r]] = r;
        }
        return rank;
    }

    /// <summary>The priority order: negative when request a comes before b. Every policy ends with (token, choice), so no two
    /// distinct requests compare equal and the unstable sort cannot reorder anything.</summary>
    private static int Compare(Request a, Request b, DropPolicy policy, double[,] w, double[,] logits, int[] tokenRank)
    {
        int byValue = policy switch
        {
            DropPolicy.Position => 0,
            DropPolicy.ChoicePosition => a.Choice.CompareTo(b.Choice),
            // Larger value first.
            DropPolicy.Score => w[b.Token, b.Choice].CompareTo(w[a.Token, a.Choice]),
            DropPolicy.Logit => logits[b.Token, b.Expert].CompareTo(logits[a.Token, a.Expert]),
            DropPolicy.BatchPriority => a.Choice != b.Choice ? a.Choice.CompareTo(b.Choice) : tokenRank[a.Token].CompareTo(tokenRank[b.Token]),
            _ => throw new ArgumentOutOfRangeException(nameof(policy), policy, "unknown drop policy"),
        };
        return byValue != 0 ? byValue : a.Token != b.Token ? a.Token.CompareTo(b.Token) : a.Choice.CompareTo(b.Choice);
    }

    /// <summary>The dispatch order that numbers the slots: (j, i) for choice-position, (j, token rank) for batch-priority,
    /// (i, j) for the others.</summary>
    private static int CompareDispatch(Request a, Request b, DropPolicy policy, int[] tokenRank)
    {
        switch (policy)
        {
            case DropPolicy.ChoicePosition:
                return a.Choice != b.Choice ? a.Choice.CompareTo(b.Choice) : a.Token.CompareTo(b.Token);
            case DropPolicy.BatchPriority:
                return a.Choice != b.Choice ? a.Choice.CompareTo(b.Choice) : tokenRank[a.Token].CompareTo(tokenRank[b.Token]);
            default:
                return a.Token != b.Token ? a.Token.CompareTo(b.Token) : a.Choice.CompareTo(b.Choice);
        }
    }
}
