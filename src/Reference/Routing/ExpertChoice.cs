namespace Reference.Routing;

/// <summary>Options for <see cref="ExpertChoice.Route"/>. Defaults follow proofs/expert-choice.md, Definition: Parameters.</summary>
public sealed record ExpertChoiceOptions
{
    /// <summary>An explicit capacity C in 0..N, the tokens every expert takes; null derives C from the factor. Default null.</summary>
    public int? Capacity { get; init; }

    /// <summary>The capacity factor cf: C = min(N, ceil((N·k / E)·cf)). Default 1.0.</summary>
    public double CapacityFactor { get; init; } = 1.0;

    /// <summary>The average number of experts per token that the factor rule aims at, at least 1. Default 1.</summary>
    public int K { get; init; } = 1;
}

/// <summary>The result of expert-choice routing.</summary>
/// <param name="Tokens">[E, C]: the tokens each expert takes, by descending score (ties to the lower token index).</param>
/// <param name="Gates">[E, C]: P at those (expert, token) pairs.</param>
/// <param name="Count">[N]: how many experts took each token, 0..E.</param>
/// <param name="Capacity">C.</param>
public sealed record ExpertChoiceResult(int[,] Tokens, double[,] Gates, int[] Count, int Capacity)
{
    /// <summary>P [N, E]: the router scores the routing ranked (softmax of the logits), as computed; shared, do not modify. Null when
    /// the result was built elsewhere.</summary>
    public double[,]? Scores { get; init; }
}

/// <summary>
/// Expert-choice routing (proofs/expert-choice.md, Definition): each expert picks its C best tokens, so every expert is exactly full and a
/// token may be taken by 0..E experts. The reference: double precision, single-threaded, deterministic.
/// </summary>
/// <remarks>
/// <para>P = softmax(X) over the experts of each token. For every expert e, tokens[e, :] = the C indices i with the largest
/// P_ie, in descending order, ties to the lower token index; gates[e, c] = P[tokens[e, c], e];
/// count_i = #{(e, c) : tokens[e, c] = i}.</para>
/// <para>C is explicit (0..N), or min(N, ceil((N·k / E)·cf)): the factor rule is clamped to N because an expert cannot take
/// more tokens than there are (an explicit C above N is rejected instead, since the caller asked for the impossible).</para>
/// <para>Source: Zhou et al. 2022, "Mixture-of-Experts with Expert Choice Routing"; flaxformer's experts-choose router.</para>
/// </remarks>
public static class ExpertChoice
{
    /// <summary>Lets every expert choose its top-C tokens.</summary>
    /// <param name="logits">X, [N, E], finite.</param>
    /// <param name="options">The capacity, explicit or from the factor and k.</param>
    /// <returns>tokens and gates [E, C], count [N] and C.</returns>
    /// <exception cref="ArgumentException">A logit is not finite, E = 0, k &lt; 1, or the capacity is outside 0..N or its factor invalid.</exception>
    public static ExpertChoiceResult Route(double[,] logits, ExpertChoiceOptions options)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(options);
        int n = logits.GetLength(0), e = logits.GetLength(1);

        // 1. Check the inputs; C.
        if (e == 0)
        {
            throw new ArgumentException("logits has E = 0 experts; routing needs at least one", nameof(logits));
        }
        int c = ResolveCapacity(n, e, options);

        // 2. Scores P [N, E], softmax over the experts of each token.
        var p = RouterScores.Compute(logits, ScoreFunction.Softmax);

        // 3. Every expert ranks the tokens by its column of P and keeps the first C.
        var tokens = new int[e, c];      // [E, C]
        var gates = new double[e, c];    // [E, C]
        var count = new int[n];          // [N]
        var column = new double[n];      // [N]
        for (int x = 0; x < e; x++)
        {
            for (int i = 0; i < n; i++)
            {
                column[i] = p[i, x];
            }
            var top = Ranking.Top(column, c);
            for (int slot = 0; slot < c; slot++)
            {
                tokens[x, slot] = top[slot];
                gates[x, slot] = column[top[slot]];
                count[top[slot]]++;
            }
        }
        return new ExpertChoiceResult(tokens, gates, count, c) { Scores = p };
    }

    /// <summary>C for N tokens and E experts: the explicit capacity (checked to lie in 0..N), or min(N, ceil((N·k / E)·cf)).</summary>
    /// <param name="tokens">N.</param>
    /// <param name="experts">E, at least 1.</param>
    /// <param name="options">The capacity options.</param>
    /// <returns>C in 0..N.</returns>
    /// <exception cref="ArgumentException">The explicit capacity is outside 0..N, k &lt; 1, or the factor is negative or not finite.</exception>
    public static int ResolveCapacity(int tokens, int experts, ExpertChoiceOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Guard.InRange(options.K, 1, int.MaxValue, "k");
        if (options.Capacity is { } explicitCapacity)
        {
            Guard.InRange(explicitCapacity, 0, tokens, "capacity");
            return explicitCapacity;
        }
        return Math.Min(tokens, ExpertCapacity.FromFactor(tokens, experts, options.K, options.CapacityFactor, CapacityRounding.Ceil, 0));
    }
}
