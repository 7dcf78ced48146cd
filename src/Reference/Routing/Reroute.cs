namespace Reference.Routing;

/// <summary>Options for <see cref="Reroute.Route"/>. Defaults follow proofs/reroute.md, Definition: Parameters.</summary>
public sealed record RerouteOptions
{
    /// <summary>Experts per token, 1..E. Default 2.</summary>
    public int K { get; init; } = 2;

    /// <summary>How logits become scores. Default softmax.</summary>
    public ScoreFunction Score { get; init; } = ScoreFunction.Softmax;

    /// <summary>An explicit capacity C (at least 0), used as given; null derives C from the factor. Default null.</summary>
    public int? Capacity { get; init; }

    /// <summary>The capacity factor cf, used when <see cref="Capacity"/> is null. Default 1.0.</summary>
    public double CapacityFactor { get; init; } = 1.0;

    /// <summary>How C is rounded from the factor. Default ceil.</summary>
    public CapacityRounding Rounding { get; init; } = CapacityRounding.Ceil;

    /// <summary>The smallest capacity the factor rule may give. Default 0.</summary>
    public int MinCapacity { get; init; }
}

/// <summary>The result of iterative rerouting.</summary>
/// <param name="Experts">[N, k]: token i's j-th expert, -1 where none could be found.</param>
/// <param name="Weights">[N, k]: P at those experts (not renormalized), 0 where -1.</param>
/// <param name="Load">[E]: how many requests each expert accepted, at most C.</param>
/// <param name="Capacity">C, the capacity that was applied.</param>
public sealed record RerouteResult(int[,] Experts, double[,] Weights, int[] Load, int Capacity);

/// <summary>
/// Iterative rerouting (proofs/reroute.md, Definition): a dropped later choice is sent to the token's next best expert that still
/// has room. The reference: double precision, single-threaded, deterministic.
/// </summary>
/// <remarks>
/// <para>Scores P = softmax(X) or sigmoid(X); each token ranks the experts by P (larger first, ties to the lower index).</para>
/// <para>Choice 1: tokens in index order each propose their top-ranked expert, accepted while its load is below C (exactly
/// <see cref="Capacity.Route"/> with <see cref="DropPolicy.ChoicePosition"/> for the first choices); a dropped first choice stays -1.</para>
/// <para>Choice j = 2..k: up to E - 1 rounds. In a round, every token still lacking its j-th expert proposes its best-ranked
/// expert that it has neither been assigned nor proposed to before (in any choice: an expert that refused once was full,
/// and loads never decrease, so it would refuse again); the proposals are accepted in token order while the expert's
/// load is below C. A token with nothing left to propose stops. A token still lacking its j-th expert after the rounds gets -1.
/// Because each token proposes in its own ranking order, the experts it has proposed to are always a prefix of that order,
/// and E - 1 rounds always suffice to exhaust it.</para>
/// <para>Source: the iterative rerouting baseline that the MaxScore routing paper compares against (dropped choices go to
/// the next best expert with room); the round structure and tie rules above are this project's documented choice
/// (proofs/reroute.md).</para>
/// </remarks>
public static class Reroute
{
    /// <summary>Routes every token's k choices, rerouting later choices that find their expert full.</summary>
    /// <param name="logits">X, [N, E], finite.</param>
    /// <param name="options">k, score and capacity rule.</param>
    /// <returns>experts and weights [N, k], load [E] and C.</returns>
    /// <exception cref="ArgumentException">A logit is not finite, k is outside 1..E, E = 0, or the capacity rule is invalid.</exception>
    public static RerouteResult Route(double[,] logits, RerouteOptions options)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(options);
        int n = logits.GetLength(0), e = logits.GetLength(1), k = options.K;

        // 1. Check the inputs; C.
        CheckOptions(e, options);
        var p = RouterScores.Compute(logits, options.Score); // [N, E]; checks the logits
        int c = ExpertCapacity.Resolve(n, e, k, options.Capacity, options.CapacityFactor, options.Rounding, options.MinCapacity);

        // 2. Each token's ranking of the experts by P, and its proposal state.
        var ranking = new int[n][];            // [N][E]
        var proposed = new bool[n, e];         // [N, E]: assigned or refused
        for (int i = 0; i < n; i++)
        {
            ranking[i] = Ranking.Order(Enumerable.Range(0, e).Select(x => p[i, x]).ToArray());
        }
        var experts = new int[n, k];           // [N, k]
        var load = new int[e];                 // [E]
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < k; j++)
            {
                experts[i, j] = -1;
            }
        }

        // 3. Choice 1: top-ranked expert, accepted in token order while there is room.
        for (int i = 0; i < n; i++)
        {
            int x = ranking[i][0];
            proposed[i, x] = true;
            if (load[x] < c)
            {
                experts[i, 0] = x;
                load[x]++;
            }
        }

        // 4. Choices 2..k: rounds of proposals to the best expert not yet proposed to, accepted in token order.
        for (int j = 1; j < k; j++)
        {
            for (int round = 0; round < e - 1; round++)
            {
                bool anyProposal = false;
                for (int i = 0; i < n; i++)
                {
                    if (experts[i, j] >= 0)
                    {
                        continue; // already has its j-th expert
                    }
                    int x = FirstUnproposed(ranking[i], proposed, i);
                    if (x < 0)
                    {
                        continue; // nothing left to propose to
                    }
                    anyProposal = true;
                    proposed[i, x] = true;
                    if (load[x] < c)
                    {
                        experts[i, j] = x;
                        load[x]++;
                    }
                }
                if (!anyProposal)
                {
                    break;
                }
            }
        }

        // 5. Weights: P at the assigned experts.
        var weights = new double[n, k];        // [N, k]
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < k; j++)
            {
                weights[i, j] = experts[i, j] >= 0 ? p[i, experts[i, j]] : 0.0;
            }
        }
        return new RerouteResult(experts, weights, load, c);
    }

    /// <summary>Token i's best-ranked expert it has not proposed to yet, or -1.</summary>
    /// <summary>The checks of step 1 before the logits': E, then k (shared with <see cref="RerouteFast"/>, which must
    /// reject the same inputs with the same messages).</summary>
    internal static void CheckOptions(int e, RerouteOptions options)
    {
        if (e == 0)
        {
            throw new ArgumentException("logits has E = 0 experts; routing needs at least one", "logits");
        }
        Guard.InRange(options.K, 1, e, "k");
    }

    private static int FirstUnproposed(int[] ranking, bool[,] proposed, int i)
    {
        foreach (int x in ranking)
        {
            if (!proposed[i, x])
            {
                return x;
            }
        }
        return -1;
    }
}
