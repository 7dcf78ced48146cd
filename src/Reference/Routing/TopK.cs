namespace Reference.Routing;

/// <summary>Options for <see cref="TopK.Route"/>. Defaults follow proofs/topk.md, Definition: Parameters.</summary>
public sealed record TopKOptions
{
    /// <summary>Experts per token, 1..E. Default 2.</summary>
    public int K { get; init; } = 2;

    /// <summary>How logits become scores. Default softmax.</summary>
    public ScoreFunction Score { get; init; } = ScoreFunction.Softmax;

    /// <summary>Divide each token's k weights by their sum. Default true.</summary>
    public bool Normalize { get; init; } = true;

    /// <summary>Optional selection bias b [E]: it changes which experts are chosen, never their weights
    /// (DeepSeek-V3's auxiliary-loss-free balancing). Null means no bias.</summary>
    public IReadOnlyList<double>? Bias { get; init; }
}

/// <summary>The result of token-choice top-k routing.</summary>
/// <param name="Experts">[N, k]: each token's experts, best first.</param>
/// <param name="Weights">[N, k]: P at those experts, normalized per row when asked.</param>
/// <param name="BoundaryTie">[N]: true where the k-th and (k+1)-th ranked keys of a row are equal, so that another
/// choice at the boundary would be just as valid. False when k = E.</param>
public sealed record TopKResult(int[,] Experts, double[,] Weights, bool[] BoundaryTie)
{
    /// <summary>P [N, E]: the router scores the routing ranked (softmax or sigmoid of the logits), as computed; shared, do not modify. Null when
    /// the result was built elsewhere.</summary>
    public double[,]? Scores { get; init; }
}

/// <summary>
/// Token-choice top-k routing (proofs/topk.md, Definition), the reference: double precision, single-threaded, deterministic.
/// </summary>
/// <remarks>
/// <para>For logits X [N,E], scores P = softmax(X) or sigmoid(X), and an optional bias b [E]:</para>
/// <para>experts[i, :] = the k indices e with the largest P_ie + b_e, in descending order, ties to the lower index;</para>
/// <para>weights[i, j] = P[i, experts[i, j]], divided by sum_j of them when <see cref="TopKOptions.Normalize"/> is set
/// (computed in log space by <see cref="RouterScores.Normalized"/>, so the ratio survives when the scores underflow).</para>
/// <para>Megatron-LM's router with pre_softmax = false (softmax over the k selected logits) equals softmax with normalize = true;
/// pre_softmax = true equals softmax with normalize = false. The bias follows DeepSeek-V3: it selects, it never weighs.</para>
/// <para>Sources: Shazeer et al. 2017 (noisy top-k gating, without the noise); Megatron-LM <c>topk_softmax_with_capacity</c>;
/// DeepSeek-AI 2024, DeepSeek-V3 technical report, section 2.1.2.</para>
/// </remarks>
public static class TopK
{
    /// <summary>Routes every token to its top-k experts.</summary>
    /// <param name="logits">X, [N, E], finite.</param>
    /// <param name="options">k, score function, normalization and bias.</param>
    /// <returns>experts [N, k], weights [N, k] and the rows with a tie at the boundary.</returns>
    /// <exception cref="ArgumentException">A logit or bias is not finite, the bias length is not E, or k is outside 1..E.</exception>
    public static TopKResult Route(double[,] logits, TopKOptions options)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(options);
        int n = logits.GetLength(0), e = logits.GetLength(1), k = options.K;

        // 1. Check the inputs.
        CheckOptions(e, options);
        var bias = options.Bias;

        // 2. Scores P [N, E].
        var p = RouterScores.Compute(logits, options.Score);

        var experts = new int[n, k];      // [N, k]
        var weights = new double[n, k];   // [N, k]
        var boundaryTie = new bool[n];    // [N]
        var key = new double[e];          // [E]: the selection key of one row
        for (int i = 0; i < n; i++)
        {
            // 3. Selection key P_ie + b_e, ranked larger first, ties to the lower expert.
            for (int j = 0; j < e; j++)
            {
                key[j] = p[i, j] + (bias?[j] ?? 0.0);
            }
            var ranked = Ranking.Order(key);
            boundaryTie[i] = k < e && key[ranked[k - 1]] == key[ranked[k]];

            // 4-5. The experts and their weights.
            WriteRow(logits, p, i, ranked, options, experts, weights, new double[k]);
        }
        return new TopKResult(experts, weights, boundaryTie) { Scores = p };
    }

    /// <summary>Checks k (in 1..E, E &gt;= 1) and the bias (length E, finite) against logits with E columns; the fast
    /// path checks with it too, so both reject the same inputs with the same messages.</summary>
    /// <param name="e">E, the logits' columns.</param>
    /// <param name="options">k and the optional bias.</param>
    internal static void CheckOptions(int e, TopKOptions options)
    {
        Guard.InRange(options.K, 1, Math.Max(e, 1), "k");
        if (e == 0)
        {
            throw new ArgumentException("logits has E = 0 experts; routing needs at least one", "logits");
        }
        if (options.Bias is { } bias)
        {
            Guard.Length(bias.Count, e, "bias", $"logits has E = {e} columns");
            Guard.Finite(bias, "bias");
        }
    }

    /// <summary>Row i of the result from its first k ranked experts: experts[i, :] and their weights. The fast path
    /// (<see cref="TopKFast"/>) writes its rows with it too.</summary>
    /// <param name="logits">X, [N, E].</param>
    /// <param name="p">P, [N, E].</param>
    /// <param name="i">The row.</param>
    /// <param name="ranked">At least k experts, best first.</param>
    /// <param name="options">k, the score function and the renormalization.</param>
    /// <param name="experts">[N, k]: row i is written.</param>
    /// <param name="weights">[N, k]: row i is written.</param>
    /// <param name="selectedLogits">Scratch of length k.</param>
    internal static void WriteRow(double[,] logits, double[,] p, int i, int[] ranked, TopKOptions options,
                                  int[,] experts, double[,] weights, double[] selectedLogits)
    {
        int k = options.K;
        // 4. Weights come from P, never from the bias.
        for (int j = 0; j < k; j++)
        {
            experts[i, j] = ranked[j];
            weights[i, j] = p[i, ranked[j]];
            selectedLogits[j] = logits[i, ranked[j]];
        }

        // 5. Optional renormalization over the k selected: P_j / sum P, computed in log space so that
        //    selected scores that underflow (a bias can select an expert with softmax mass e^-800) keep their ratios.
        if (options.Normalize)
        {
            var normalized = RouterScores.Normalized(selectedLogits, options.Score);
            for (int j = 0; j < k; j++)
            {
                weights[i, j] = normalized[j];
            }
        }
    }
}
