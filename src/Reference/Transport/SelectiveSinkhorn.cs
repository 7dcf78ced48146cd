namespace Reference.Transport;

/// <summary>
/// Selective Sinkhorn Routing (proofs/sinkhorn.md, Definition: SSR, method <c>ssr</c>): route by the entropic transport plan.
/// </summary>
/// <remarks>
/// <para>For logits X [N,E] (or a cost M = -X), the plan G solves the entropic problem with reg = xi on M = -X, row
/// marginal a (default 1/N) and column marginal b (default 1/E); it is computed by <see cref="SinkhornLog"/> with the same
/// max_iter, tol and stopping rule, so its plan, potentials, iterations, error and status are exactly the log method's.
/// Then</para>
/// <para>experts[i, :] = the k largest G_ie of row i, best first, ties to the lower expert;</para>
/// <para>weights[i, s] = G[i, experts[i, s]] / sum_s' G[i, experts[i, s']]  (the plan renormalized over the k).</para>
/// <para>The paper's probability-of-use schedule (when to apply Sinkhorn during training) belongs to training, not to
/// this operator. A plan row whose k selected values all underflow to 0 cannot occur: the row sums to a_i &gt; 0 up to
/// rounding, so its largest entry is at least a_i / E.</para>
/// <para>Selective Sinkhorn Routing: "Selective Sinkhorn Routing for Improved Sparse Mixture of Experts" (2025).</para>
/// </remarks>
internal static class SelectiveSinkhorn
{
    public static SinkhornResult Solve(SinkhornProblem p)
    {
        // 1. The log-domain plan at reg = xi.
        var result = SinkhornLog.Solve(p);

        // 2. Top-k of each plan row.
        var experts = SinkhornProblem.TopExperts(result.Plan, p.K);
        return Weigh(p, result, experts);
    }

    /// <summary>Step 3 of <see cref="Solve"/>: the weights at the chosen experts (shared with the fast path).</summary>
    /// <param name="p">The problem.</param>
    /// <param name="result">The log-domain run.</param>
    /// <param name="experts">[N, k] the top-k of each plan row.</param>
    /// <returns>The run with experts and weights.</returns>
    public static SinkhornResult Weigh(SinkhornProblem p, SinkhornResult result, int[,] experts)
    {
        // 3. Weights: the plan values renormalized over the k selected.
        var weights = new double[p.N, p.K];
        for (int i = 0; i < p.N; i++)
        {
            double sum = 0;
            for (int slot = 0; slot < p.K; slot++)
            {
                int x = experts[i, slot];
                weights[i, slot] = x < 0 ? double.NaN : result.Plan[i, x];
                sum += weights[i, slot];
            }
            for (int slot = 0; slot < p.K; slot++)
            {
                weights[i, slot] /= sum;
            }
        }
        return result with { Experts = experts, Weights = weights };
    }
}
