// The MaxScore certificate's problem and its first check, feasibility. Problem holds the instance (N, E, k, C, the scores
// as doubles for screens and as exact integers at the common scale of MaxScoreCertificate.Grid.cs for every decision);
// Membership turns a candidate's [N, k] experts into x [N, E] or names its first infeasibility; Score sums it exactly.
// A feasible membership goes on to MaxScoreCertificate.ContractedGraph.cs (is it optimal?) and
// MaxScoreCertificate.Prices.cs (do given prices certify it?).

using System.Numerics;

namespace Reference.Harness.Algorithms;

public static partial class MaxScoreCertificate
{
    /// <summary>The problem. Every decision is made on the scores as exact integers at the common scale (<see cref="S"/>); the
    /// scores as doubles (<c>rounded</c>) only screen out candidates that provably cannot win, so that few need exact work.</summary>
    private sealed partial class Problem(int n, int e, int k, int c, double[,] rounded, Grid grid)
    {
        /// <summary>Score S_ij as an exact integer at the common scale.</summary>
        private BigInteger S(int i, int j) => grid.Of(rounded[i, j]);

        /// <summary>C*E &gt;= k*N: the maximum flow gives every token k experts (and prices must be &gt;= 0).</summary>
        public bool EveryTokenFull => (long)c * e >= (long)k * n;

        /// <summary>Membership x [N, E] of a candidate, or the first reason it is infeasible (x is null when an entry is out of range).</summary>
        public (bool[,]? Member, string? Problem) Membership(int[,] experts)
        {
            var x = new bool[n, e];
            var count = new int[n];
            var load = new int[e];
            for (int i = 0; i < n; i++)
            {
                for (int j = 0; j < k; j++)
                {
                    int v = experts[i, j];
                    if (v == -1)
                    {
                        continue;
                    }
                    if (v < 0 || v >= e)
                    {
                        return (null, $"experts[{i}, {j}] = {v} is neither -1 nor an expert index 0..{e - 1}");
                    }
                    if (x[i, v])
                    {
                        return (x, $"token {i} has expert {v} twice");
                    }
                    x[i, v] = true;
                    count[i]++;
                    load[v]++;
                }
            }
            for (int j = 0; j < e; j++)
            {
                if (load[j] > c)
                {
                    return (x, $"expert {j} holds {load[j]} tokens, more than C = {c}");
                }
            }
            if (EveryTokenFull)
            {
                for (int i = 0; i < n; i++)
                {
                    if (count[i] != k)
                    {
                        return (x, $"token {i} has {count[i]} experts; with C*E >= k*N the maximum flow gives every token k = {k}");
                    }
                }
            }
            else
            {
                for (int j = 0; j < e; j++)
                {
                    if (load[j] != c)
                    {
                        return (x, $"expert {j} holds {load[j]} tokens; with C*E < k*N the maximum flow fills every expert to C = {c}");
                    }
                }
            }
            return (x, null);
        }

        /// <summary>The exact total score of a membership.</summary>
        public BigInteger Score(bool[,] x)
        {
            var total = BigInteger.Zero;
            for (int i = 0; i < n; i++)
            {
                for (int j = 0; j < e; j++)
                {
                    if (x[i, j])
                    {
                        total += S(i, j);
                    }
                }
            }
            return total;
        }
    }
}
