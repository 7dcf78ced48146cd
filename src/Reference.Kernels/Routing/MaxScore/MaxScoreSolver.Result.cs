// The result of the MaxScore fast solver: each token's experts by descending score (stand-ins reported as -1), the loads,
// the prices that phase 3 (MaxScoreSolver.ExactFinish.cs) left, and the objective summed exactly (ExactTotal,
// MaxScoreExact.cs) and rounded once to double.

using System.Numerics;

namespace Reference.Kernels.Routing;

public static partial class MaxScoreSolver
{
    private sealed partial class State
    {
        public MaxScoreFastResult Result(int sweeps, int augmentations, int cycles)
        {
            // The objective exactly, rounded once: N k integers below 2^Bits sum below 2^(Bits + bits of N k).
            exact ??= new ExactScores(s);
            long terms = (long)n * k;
            bool narrow = exact.Bits + (64 - BitOperations.LeadingZeroCount((ulong)terms)) < ExactScores.Room<Int128>();
            var experts = new int[n * k];
            double objective = narrow ? Rows<Int128>(exact, experts) : Rows<BigInteger>(exact, experts);
            return new MaxScoreFastResult(experts, (int[])load.Clone(), objective, (double[])lambda.Clone(), sweeps, augmentations, cycles)
            {
                WideFinish = WideFinish,
            };
        }

        /// <summary>Writes each token's experts by descending score (ties to the lower index) into experts [N, k] and returns
        /// the routing's total score, exact in T and rounded once to double.</summary>
        private double Rows<T>(ExactScores scores, int[] experts) where T : IBinaryInteger<T>
        {
            var total = new ExactTotal<T>(scores);
            Span<int> row = e <= 256 ? stackalloc int[e] : new int[e];
            for (int i = 0; i < n; i++)
            {
                Chosen(i, row);
                // Descending score, ties to the lower index (insertion sort on k entries).
                for (int a = 1; a < k; a++)
                {
                    int v = row[a], b = a - 1;
                    while (b >= 0 && s[i * e + row[b]] < s[i * e + v])
                    {
                        row[b + 1] = row[b];
                        b--;
                    }
                    row[b + 1] = v;
                }
                for (int j = 0; j < k; j++)
                {
                    bool standIn = row[j] >= real; // lowest score, so last in the row
                    experts[i * k + j] = standIn ? -1 : row[j];
                    if (!standIn)
                    {
                        total.Add(i * e + row[j]);
                    }
                }
            }
            return scores.ToDouble(total.Value);
        }
    }
}
