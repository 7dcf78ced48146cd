// The MaxScore certificate's check of prices: the reduced-cost conditions, as an exact duality gap. For prices lambda the
// dual bound D(lambda) is computed exactly (with the threshold sigma when C*E < k*N); the gap D - score is 0 exactly iff
// the prices certify the routing. Check uses it twice: on the prices read from MaxScoreCertificate.ContractedGraph.cs's
// potentials (which must give 0) and on the prices a candidate brings. Doubles only screen which reduced scores can be
// among a token's k largest; values are exact integers at the common scale (MaxScoreCertificate.Grid.cs).

using System.Numerics;

namespace Reference.Harness.Algorithms;

public static partial class MaxScoreCertificate
{
    private sealed partial class Problem
    {
        /// <summary>
        /// The exact duality gap of prices lambda for a feasible membership with score <paramref name="objective"/>, the first sign
        /// problem, and the threshold sigma that minimizes the dual bound when C*E &lt; k*N.
        /// </summary>
        public (BigInteger Gap, string? Problem, BigInteger Sigma) PriceGap(BigInteger objective, BigInteger[] lambda)
        {
            string? problem = null;
            if (EveryTokenFull)
            {
                // D = C sum lambda+ + sum_i (k largest S_i - lambda+); a negative price is a violation (and is read as 0).
                var lp = new BigInteger[e];
                for (int j = 0; j < e; j++)
                {
                    if (lambda[j] < 0)
                    {
                        problem ??= $"prices[{j}] < 0";
                    }
                    lp[j] = BigInteger.Max(lambda[j], BigInteger.Zero);
                }
                var bound = c * Sum(lp);
                var roundedLp = lp.Select(grid.ToDouble).ToArray();
                for (int i = 0; i < n; i++)
                {
                    bound += Sum(LargestReduced(i, lp, roundedLp));
                }
                return (bound - objective, problem, BigInteger.Zero);
            }

            // C*E < k*N: D(sigma) = C E sigma + C sum lambda + sum_{m in M} max(0, m - sigma), M = every token's k largest reduced
            // scores; its minimum over sigma is at the (C E)-th largest element of M (for C E = 0 the bound is 0).
            var multiset = new List<BigInteger>(n * k);
            var roundedLambda = lambda.Select(grid.ToDouble).ToArray();
            for (int i = 0; i < n; i++)
            {
                multiset.AddRange(LargestReduced(i, lambda, roundedLambda));
            }
            long flow = (long)c * e;
            if (flow == 0)
            {
                return (-objective, problem, BigInteger.Zero);
            }
            multiset.Sort((u, v) => v.CompareTo(u)); // largest first
            var sorted = multiset;
            var sigma = sorted[(int)(flow - 1)];
            var d = flow * sigma + c * Sum(lambda);
            foreach (var m in sorted)
            {
                if (m > sigma)
                {
                    d += m - sigma;
                }
            }
            return (d - objective, problem, sigma);
        }

        private static BigInteger Sum(IEnumerable<BigInteger> values)
        {
            var total = BigInteger.Zero;
            foreach (var v in values)
            {
                total += v;
            }
            return total;
        }

        /// <summary>The k-th largest of the values (1 &lt;= k &lt;= length), by insertion into a descending list of k.</summary>
        private static double KthLargest(double[] values, int k)
        {
            var top = new double[k];
            Array.Fill(top, double.NegativeInfinity);
            foreach (double v in values)
            {
                if (!(v > top[k - 1]))
                {
                    continue;
                }
                int p = k - 1;
                for (; p > 0 && v > top[p - 1]; p--)
                {
                    top[p] = top[p - 1];
                }
                top[p] = v;
            }
            return top[k - 1];
        }

        /// <summary>
        /// Token i's k largest reduced scores S_ij - lambda_j, exact, largest first. Doubles only screen (proofs/maxscore.md,
        /// theorem maxscore.screened-checker): each rounded reduced score r~_j = fl(S_ij - fl(lambda_j)) is within delta / 2
        /// of the exact one, so an expert with r~_j below the k-th largest r~ minus 4 delta (computed in doubles, which costs at
        /// most 2 delta) has k experts exactly above it and is not needed. The rest are compared exactly. Anything not finite
        /// in the screen keeps every expert.
        /// </summary>
        private List<BigInteger> LargestReduced(int i, BigInteger[] lambda, double[] roundedLambda)
        {
            var r = new double[e];
            double widest = 0;
            for (int j = 0; j < e; j++)
            {
                r[j] = rounded[i, j] - roundedLambda[j];
                widest = Math.Max(widest, Math.Abs(r[j]) + Math.Abs(roundedLambda[j]));
            }
            // Two roundings (lambda to double, then the subtraction) err by at most 2^-52 (|r~_j| + |lambda~_j|) + 2^-1074,
            // at most delta / 2.
            double delta = Math.ScaleB(widest, -50) + Math.ScaleB(1.0, -1070);
            double cut = KthLargest(r, k) - 4 * delta;
            var kept = new List<BigInteger>();
            for (int j = 0; j < e; j++)
            {
                if (!double.IsFinite(cut) || !(r[j] < cut))
                {
                    kept.Add(S(i, j) - lambda[j]);
                }
            }
            kept.Sort((u, v) => v.CompareTo(u)); // largest first
            return kept.GetRange(0, k);
        }
    }
}
