namespace Reference.Routing;

/// <summary>
/// Router scores P [N,E] from logits X [N,E] (proofs/conventions.md, Definition: Scores), in double precision.
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
            ComputeRow(logits, p, i, score);
        }
        return p;
    }

    /// <summary>Row i of <see cref="Compute"/>: P[i, :] from X[i, :] (the fast paths call it per row, so they compute the
    /// same operations in the same order).</summary>
    /// <param name="logits">X, [N, E], finite.</param>
    /// <param name="p">P, [N, E]: row i is written.</param>
    /// <param name="i">The row.</param>
    /// <param name="score">Softmax over the row, or an element-wise sigmoid.</param>
    internal static void ComputeRow(double[,] logits, double[,] p, int i, ScoreFunction score)
    {
        int e = logits.GetLength(1);
        if (score == ScoreFunction.Sigmoid)
        {
            for (int j = 0; j < e; j++)
            {
                p[i, j] = Sigmoid(logits[i, j]);
            }
            return;
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

    /// <summary>
    /// The scores of a few selected experts of one token, renormalized to sum to 1: w_j = P_j / sum_l P_l.
    /// Computed in log space, w_j = exp(l_j - max l) / sum exp(l - max l) with l = log P, so that scores too small to
    /// represent (softmax mass e^-800, or sigmoid of -800) still give their exact ratios instead of 0/0. For softmax,
    /// l_j = X_ij up to a shift that cancels; for sigmoid, l_j = -log(1 + exp(-X_ij)).
    /// </summary>
    /// <param name="selectedLogits">X at the selected experts of one token, [k], finite.</param>
    /// <param name="score">The score function.</param>
    /// <returns>The k normalized weights.</returns>
    public static double[] Normalized(IReadOnlyList<double> selectedLogits, ScoreFunction score)
    {
        ArgumentNullException.ThrowIfNull(selectedLogits);
        int k = selectedLogits.Count;
        var log = new double[k]; // [k]: log P up to a common shift
        double max = double.NegativeInfinity;
        for (int j = 0; j < k; j++)
        {
            log[j] = score == ScoreFunction.Sigmoid ? LogSigmoid(selectedLogits[j]) : selectedLogits[j];
            max = Math.Max(max, log[j]);
        }
        double sum = 0;
        var w = new double[k];
        for (int j = 0; j < k; j++)
        {
            w[j] = Math.Exp(log[j] - max);
            sum += w[j];
        }
        for (int j = 0; j < k; j++)
        {
            w[j] /= sum;
        }
        return w;
    }

    /// <summary>log(1/(1+exp(-x))) = -log(1 + exp(-x)), without overflow or cancellation for large |x|.</summary>
    public static double LogSigmoid(double x) =>
        x >= 0 ? -Math.Log(1.0 + Math.Exp(-x)) : x - Math.Log(1.0 + Math.Exp(x));

    /// <summary>The logistic function 1/(1+exp(-x)), written to avoid overflow for large |x|.</summary>
    public static double Sigmoid(double x) =>
        x >= 0 ? 1.0 / (1.0 + Math.Exp(-x)) : Math.Exp(x) / (1.0 + Math.Exp(x));
}
