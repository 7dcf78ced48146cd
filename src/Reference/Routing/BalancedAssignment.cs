namespace Reference.Routing;

/// <summary>The exact balanced assignment of BASE layers.</summary>
/// <param name="Experts">[N]: each token's expert.</param>
/// <param name="Objective">The total score, computed exactly and rounded once to double.</param>
/// <param name="Prices">[E]: certificate prices from <see cref="MaxScore.Route"/>: every token's expert maximizes S_ie - lambda_e.</param>
public sealed record BalancedAssignmentResult(int[] Experts, double Objective, double[] Prices);

/// <summary>
/// BASE layers' balanced assignment, exact (proofs/base.md, Definition: Exact method, <c>method=exact</c>): k = 1, E divides N, every expert gets
/// exactly N / E tokens, and the total score is the largest possible. It is <see cref="MaxScore.Route"/> with k = 1 and
/// C = N / E (then C E = N = k N, so the maximum flow fills every token and every expert).
/// </summary>
/// <remarks>Source: Lewis et al. 2021, "BASE Layers: Simplifying Training of Large, Sparse Models", section 2.</remarks>
public static class BalancedAssignment
{
    /// <summary>Assigns every token to one expert, N / E tokens per expert, maximizing the total score.</summary>
    /// <param name="scores">S [N, E], finite, with E dividing N.</param>
    /// <returns>The assignment, its total score and its certificate prices.</returns>
    /// <exception cref="ArgumentException">A score is not finite, E = 0, or E does not divide N.</exception>
    public static BalancedAssignmentResult Exact(double[,] scores)
    {
        ArgumentNullException.ThrowIfNull(scores);
        int n = scores.GetLength(0), e = scores.GetLength(1);
        CheckBalanced(n, e);
        var routed = MaxScore.Route(scores, new MaxScoreOptions { K = 1, Capacity = n / e });
        var experts = new int[n];
        for (int i = 0; i < n; i++)
        {
            experts[i] = routed.Experts[i, 0];
        }
        return new BalancedAssignmentResult(experts, routed.Objective, routed.Prices);
    }

    /// <summary>Throws unless E &gt;= 1 divides N.</summary>
    internal static void CheckBalanced(int n, int e)
    {
        if (e == 0)
        {
            throw new ArgumentException("scores has E = 0 experts; routing needs at least one", "scores");
        }
        if (n % e != 0)
        {
            throw new ArgumentException($"scores has N = {n} tokens and E = {e} experts; balanced assignment needs E to divide N", "scores");
        }
    }
}
