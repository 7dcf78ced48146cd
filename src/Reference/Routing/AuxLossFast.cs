namespace Reference.Routing;

/// <summary>
/// The auxiliary losses with the selection of <see cref="TopKFast"/>, mean scores summed row by row and log-partition
/// functions computed rows in parallel: equal to the readable reference <see cref="AuxLoss.Compute"/> bit for bit in every
/// output (proofs/aux-loss.md, theorem aux-loss.fast-reference-identical). Used by <c>check aux-loss</c> beyond the size
/// documented in proofs/cli.md ("Fast references beyond a size").
/// </summary>
/// <remarks>
/// <para>Shapes, options, validation and errors are those of <see cref="AuxLoss.Compute"/>.</para>
/// <para>Why the outputs are identical: the selection and P are <see cref="TopKFast"/>'s, equal to <see cref="TopK.Route"/>'s;
/// each Pbar_e is the same sum over tokens in increasing order (the loop over tokens is outside the loop over experts here,
/// which reads P row by row instead of column by column, but every accumulator still adds P_0e, P_1e, ... in turn); the
/// counts, fractions and losses are the same operations; each token's log-sum-exp is <see cref="AuxLoss.LogSumExp"/>, and
/// their squares are added in token order.</para>
/// </remarks>
public static class AuxLossFast
{
    /// <summary>Computes what <see cref="AuxLoss.Compute"/> computes, with the same result.</summary>
    /// <param name="logits">X, [N, E], finite.</param>
    /// <param name="options">k and the variant.</param>
    /// <returns>Both losses, the fractions, the mean scores and P.</returns>
    /// <exception cref="ArgumentException">As for <see cref="AuxLoss.Compute"/>.</exception>
    public static AuxLossResult Compute(double[,] logits, AuxLossOptions options)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(options);
        int n = logits.GetLength(0), e = logits.GetLength(1), k = options.K;

        var top = TopKFast.Route(logits, new TopKOptions { K = k, Score = ScoreFunction.Softmax, Normalize = false });
        var p = top.Scores!;
        if (n == 0)
        {
            return new AuxLossResult(0.0, 0.0, new double[e], new double[e]) { Scores = p };
        }

        // Pbar_e: each column's sum in token order, read row by row.
        var sums = new double[e];
        for (int i = 0; i < n; i++)
        {
            for (int x = 0; x < e; x++)
            {
                sums[x] += p[i, x];
            }
        }
        var meanScore = new double[e];
        for (int x = 0; x < e; x++)
        {
            meanScore[x] = sums[x] / n;
        }

        int counted = options.Variant is AuxLossVariant.Megatron or AuxLossVariant.Hf ? k : 1;
        var counts = new int[e];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < counted; j++)
            {
                counts[top.Experts[i, j]]++;
            }
        }
        var fraction = new double[e];
        for (int x = 0; x < e; x++)
        {
            fraction[x] = (double)counts[x] / ((double)n * counted);
        }

        double loss;
        switch (options.Variant)
        {
            case AuxLossVariant.Megatron:
            case AuxLossVariant.Hf:
                double dot = 0;
                for (int x = 0; x < e; x++)
                {
                    dot += counts[x] * meanScore[x];
                }
                loss = options.Variant == AuxLossVariant.Megatron ? e * (dot / ((double)n * k)) : e * (dot / n);
                break;
            case AuxLossVariant.DeepSpeedTop1:
            case AuxLossVariant.DeepSpeedTop2:
                double sum = 0;
                for (int x = 0; x < e; x++)
                {
                    sum += meanScore[x] * fraction[x];
                }
                loss = options.Variant == AuxLossVariant.DeepSpeedTop1 ? sum * e : sum / e * e * e;
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(options), options.Variant, "unknown aux-loss variant");
        }

        // z-loss: the log-sum-exps in parallel, their squares added in token order.
        var lse = new double[n];
        RowBlocks.For(n, i => lse[i] = AuxLoss.LogSumExp(logits, i));
        double z = 0;
        for (int i = 0; i < n; i++)
        {
            z += lse[i] * lse[i];
        }
        return new AuxLossResult(loss, z / n, fraction, meanScore) { Scores = p };
    }
}
