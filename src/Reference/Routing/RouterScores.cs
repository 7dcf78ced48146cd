namespace Reference.Routing;

/// <summary>
/// Router scores P [N,E] from logits X [N,E] (SEMANTICS.md section 0), in double precision.
/// </summary>
public static class RouterScores
{
    /// <summary>Computes P from X with the given score function.</summary>
    /// <param name="logits">X, [N, E], finite.</param>
    /// <param name="score">Softmax over each row, or an element-wise sigmoid.</param>
    /// <returns>P, [N, E].</returns>
    /// <exception cref="ArgumentException">A logit is NaN or infinite.</exception>
    public static double[,] Compute(double[,] logits, ScoreFunction score)
    {
        Guard.Finite(logits, nameof(logits));
        int n = logits.GetLength(0), e = logits.GetLength(1);
        var p = new double[n, e]; // [N, E]
        for (int i = 0; i < n; i++)
        {
            if (score == ScoreFunction.Sigmoid)
            {
                for (int j = 0; j < e; j++)
                {
                    p[i, j] = Sigmoid(logits[i, j]);
                }
                continue;
            }
            // Softmax, shifted by the row maximum so that no exp overflows.
            double max = double.NegativeInfinity;
            for (int j = 0; j < e; j++)
            {
                max = Math.Max(max, logits[i, j]);
            }
            double sum = 0;
            for (int j = 0; j < e; j++)
            {
                p[i, j] = Math.Exp(logits[i, j] - max);
                sum += p[i, j];
            }
            for (int j = 0; j < e; j++)
            {
                p[i, j] /= sum;
            }
        }
        return p;
    }

    /// <summary>The logistic function 1/(1+exp(-x)), written to avoid overflow for large |x|.</summary>
    public static double Sigmoid(double x) =>
        x >= 0 ? 1.0 / (1.0 + Math.Exp(-x)) : Math.Exp(x) / (1.0 + Math.Exp(x));
}
