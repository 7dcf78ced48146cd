namespace Reference.Routing;

/// <summary>
/// Token-choice top-k routing, row-parallel: equal to the readable reference <see cref="TopK.Route"/> bit for bit in every
/// output, scores included (proofs/topk.md, theorem topk.fast-reference-identical). Used by <c>check topk</c>,
/// <c>check capacity</c> and <c>check aux-loss</c> beyond the size documented in proofs/cli.md ("Fast references beyond a
/// size"): the reference ranks each row with a comparison sort through a delegate, single-threaded; this one selects the
/// k + 1 best of each row by insertion, rows in parallel.
/// </summary>
/// <remarks>
/// <para>Shapes, options, validation and errors are those of <see cref="TopK.Route"/>.</para>
/// <para>Why the outputs are identical: each row's scores are computed by the same operations in the same order as
/// <see cref="RouterScores.Compute"/> (a row never reads another row, so running rows in parallel changes nothing); the
/// selection key is the same expression P_ie + b_e; <see cref="Ranking.RanksBefore"/> is a strict total order, so the k + 1
/// first indices of the reference's full sort are the k + 1 best by that order, which the insertion selection finds
/// (scanning indices upwards, a later index passes an earlier one only when its key is strictly larger); experts, the
/// boundary tie and the weights are read off them as in the reference, and the renormalized weights come from the same
/// <see cref="RouterScores.Normalized"/>.</para>
/// </remarks>
public static class TopKFast
{
    /// <summary>Rows per parallel work item.</summary>
    private const int RowsPerBlock = 256;

    /// <summary>Routes as <see cref="TopK.Route"/> does, with the same result.</summary>
    /// <param name="logits">X, [N, E], finite.</param>
    /// <param name="options">k, score function, normalization and bias.</param>
    /// <returns>experts [N, k], weights [N, k], the rows with a tie at the boundary, and the scores P.</returns>
    /// <exception cref="ArgumentException">As for <see cref="TopK.Route"/>.</exception>
    public static TopKResult Route(double[,] logits, TopKOptions options)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(options);
        int n = logits.GetLength(0), e = logits.GetLength(1), k = options.K;
        TopK.CheckOptions(e, options);
        double[]? bias = options.Bias is { } b ? [.. b] : null;
        Guard.Finite(logits, nameof(logits)); // as RouterScores.Compute, first thing, with the same message

        var p = new double[n, e];
        var experts = new int[n, k];
        var weights = new double[n, k];
        var boundaryTie = new bool[n];
        int m = Math.Min(k + 1, e); // the k best and the next one, for the boundary tie
        int blocks = (n + RowsPerBlock - 1) / RowsPerBlock;
        Parallel.For(0, blocks, () => (new double[e], new int[m], new double[k]), (block, _, buffers) =>
        {
            var (key, top, selectedLogits) = buffers;
            for (int i = block * RowsPerBlock, end = Math.Min(n, i + RowsPerBlock); i < end; i++)
            {
                RouterScores.ComputeRow(logits, p, i, options.Score);
                for (int j = 0; j < e; j++)
                {
                    key[j] = p[i, j] + (bias?[j] ?? 0.0);
                }
                Ranking.TopInto(key, top);
                boundaryTie[i] = k < e && key[top[k - 1]] == key[top[k]];
                TopK.WriteRow(logits, p, i, top, options, experts, weights, selectedLogits);
            }
            return buffers;
        }, _ => { });
        return new TopKResult(experts, weights, boundaryTie) { Scores = p };
    }
}
