// The fast exact MaxScore solver: the public entry (Solve, which reduces C * E < k * N to the full case with stand-in
// experts) and the order of its phases (Run). The solver's state and each phase live beside this file, one idea each:
//   MaxScoreSolver.State.cs          the mutable state (prices, membership, holders, the pair lists' storage) and its
//                                    basic operations: Add, Remove, a token's ranking, a token's chosen experts
//   MaxScoreSolver.PriceSweeps.cs    phase 1: approximate prices by coordinate steps on the dual
//   MaxScoreSolver.Assignment.cs     phase 2a: every token takes a top k of its reduced scores under those prices
//   MaxScoreSolver.ExcessRouting.cs  phase 2b: successive shortest paths on the contracted graph repair the capacities
//   MaxScoreSolver.PairLists.cs      the contracted graph's token arcs: per pair of experts the cheapest moves, kept
//                                    current as tokens move (read by phases 2b and 3)
//   MaxScoreSolver.ExactFinish.cs    phase 3: exact Bellman-Ford cancels negative cycles and certifies with exact prices
//   MaxScoreSolver.Result.cs         the result: each token's experts in order, and the objective summed exactly
// MaxScoreExact.cs holds the exact integer arithmetic the finish and the result use (ExactScores, ExactTotal,
// ContractedGraph).

namespace Reference.Kernels.Routing;

/// <summary>The result of the fast exact MaxScore solver.</summary>
/// <param name="Experts">[N * k] row-major [N, k]: each token's experts by descending score (ties to the lower index), -1 padding after them when C * E &lt; k * N.</param>
/// <param name="Load">[E]: tokens per expert.</param>
/// <param name="Objective">The total score of the routing, computed exactly and rounded once to double (as the reference
/// <c>Reference.Routing.MaxScore.Route</c> reports it, so both give the identical double for the same optimum).</param>
/// <param name="Prices">[E]: the certificate's prices lambda, rounded to double from the exact rational potentials.</param>
/// <param name="Sweeps">Price sweeps of phase 1 over all tokens.</param>
/// <param name="Augmentations">Shortest-path augmentations of phase 2.</param>
/// <param name="CyclesCanceled">Negative cycles found and canceled by the exact finish (usually 0).</param>
public sealed record MaxScoreFastResult(int[] Experts, int[] Load, double Objective, double[] Prices, int Sweeps, int Augmentations, int CyclesCanceled)
{
    /// <summary>True when the exact finish computed in BigInteger because the scores' binary range (largest over smallest
    /// nonzero |score|) was too wide for Int128 to hold every exact sum provably; false when Int128 sufficed.</summary>
    public bool WideFinish { get; init; }
}

/// <summary>
/// A fast exact MaxScore solver for the case C*E &gt;= k*N (every token gets k distinct experts, loads at most C), exploiting
/// few experts and many tokens: (1) prices found approximately by coordinate steps on the dual, (2) the top-k assignment under
/// those prices repaired by successive shortest paths on the E-node contracted residual graph, (3) an exact finish: the
/// contracted graph's edge weights are computed exactly (doubles as integers at a common binary scale) and exact Bellman-Ford
/// either finds a negative cycle, which is canceled, or certifies optimality with exact prices.
/// See proofs/maxscore.md for why the contraction and the certificate are exact.
/// </summary>
public static partial class MaxScoreSolver
{
    /// <summary>The most phase-1 sweeps over all tokens (a sweep steps every expert's price once); it stops earlier once
    /// few tokens are over capacity.</summary>
    public const int DefaultSweeps = 8;

    /// <summary>Solves exactly: among the maximum flows, one of largest total score (proofs/maxscore.md, Definition: Exact routing), in every
    /// capacity regime.</summary>
    /// <param name="scores">S, [N * E] row-major, finite.</param>
    /// <param name="tokens">N.</param>
    /// <param name="experts">E.</param>
    /// <param name="k">Experts per token, 1..E.</param>
    /// <param name="capacity">C &gt;= 0. With C * E &lt; k * N every expert ends full and tokens get fewer than k experts.</param>
    /// <param name="sweeps">The most phase-1 sweeps over all tokens (0 disables phase 1; the result is exact either way).</param>
    /// <returns>The optimal routing (rows padded with -1 when C * E &lt; k * N) and its certificate prices.</returns>
    /// <exception cref="ArgumentException">Bad shapes, k out of range, a negative capacity, or non-finite scores.</exception>
    /// <remarks>
    /// C * E &lt; k * N is reduced to the full case: k stand-in experts for an empty slot, each of capacity N, with one score D
    /// for every token, low enough that a maximum flow of the real network is always worth more than any routing that leaves
    /// it short (D &lt; min S - (E - 1)(max S - min S); proofs/maxscore.md, theorem maxscore.fast-solver-short). Stand-ins
    /// are reported as -1. Their price is 0 (never full but at C = 0), so the threshold of the certificate is D; the real prices
    /// are returned less their minimum (every real expert is full, so a common shift certifies as well).
    /// </remarks>
    public static MaxScoreFastResult Solve(double[] scores, int tokens, int experts, int k, int capacity, int sweeps = DefaultSweeps)
    {
        ArgumentNullException.ThrowIfNull(scores);
        if (tokens < 0 || experts < 1 || (long)tokens * experts != scores.LongLength)
        {
            throw new ArgumentException($"scores has {scores.Length} elements, not N * E = {tokens} * {experts}", nameof(scores));
        }
        Guard.InRange(k, 1, experts, nameof(k));
        if (capacity < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(capacity), capacity, $"capacity C = {capacity} must be >= 0");
        }
        for (int i = 0; i < scores.Length; i++)
        {
            if (!double.IsFinite(scores[i]))
            {
                throw new ArgumentException($"scores[{i / experts}, {i % experts}] is {Guard.Describe(scores[i])}; scores must be finite", nameof(scores));
            }
        }
        if ((long)capacity * experts >= (long)k * tokens)
        {
            return Run(scores, tokens, experts, k, Enumerable.Repeat(capacity, experts).ToArray(), experts, sweeps);
        }

        // Short of capacity: k stand-ins of score D and capacity N.
        double low = scores.Length == 0 ? 0 : scores.Min(), high = scores.Length == 0 ? 0 : scores.Max();
        double bound = Math.Abs(low) + experts * (high - low) + 1; // D = -2^p <= -bound < min S - (E - 1)(max S - min S)
        double d = -Math.ScaleB(1.0, Math.ILogB(bound) + 1);
        int wide = experts + k;
        var padded = new double[tokens * wide];
        for (int i = 0; i < tokens; i++)
        {
            Array.Copy(scores, i * experts, padded, i * wide, experts);
            Array.Fill(padded, d, i * wide + experts, k);
        }
        var caps = new int[wide];
        Array.Fill(caps, capacity, 0, experts);
        Array.Fill(caps, tokens, experts, k);
        var r = Run(padded, tokens, wide, k, caps, experts, sweeps);
        var prices = r.Prices[..experts];
        double shift = prices.Length == 0 ? 0 : prices.Min();
        return r with { Load = r.Load[..experts], Prices = prices.Select(p => p - shift).ToArray() };
    }

    private static MaxScoreFastResult Run(double[] scores, int tokens, int experts, int k, int[] capacity, int real, int sweeps)
    {
        var state = new State(scores, tokens, experts, k, capacity, real);
        int done = state.ApproximatePrices(sweeps);
        state.AssignTopK();
        int augmentations = state.RouteExcess();
        int cycles = state.FinishExactly();
        return state.Result(done, augmentations, cycles);
    }
}
