namespace Reference.Routing;

/// <summary>
/// Block-level routing, blocks in parallel: equal to the readable reference <see cref="BlockRouting.Route"/> bit for bit in
/// every output, scores included (proofs/block-routing.md, theorem block-routing.fast-reference-identical). Used by
/// <c>check block-routing</c> beyond the size documented in proofs/cli.md ("Fast references beyond a size").
/// </summary>
/// <remarks>
/// <para>Shapes, options, validation and errors are those of <see cref="BlockRouting.Route"/>: the same option checks
/// (<see cref="BlockRouting.CheckOptions"/>), then the logits' check, which <see cref="TopKFast.Route"/> makes first with
/// <see cref="RouterScores.Compute"/>'s message.</para>
/// <para>Why the outputs are identical: P and plain top-k's experts come from <see cref="TopKFast.Route"/>, equal to
/// <see cref="RouterScores.Compute"/> and <see cref="TopK.Route"/> bit for bit (topk.fast-reference-identical); each block is
/// then routed by the reference's own <see cref="BlockRouting.RouteBlock"/>, which reads only P, X and plain top-k and writes
/// only its block's rows and entries, so running blocks in parallel changes no operation and no order.</para>
/// </remarks>
public static class BlockRoutingFast
{
    /// <summary>Routes as <see cref="BlockRouting.Route"/> does, with the same result.</summary>
    /// <param name="logits">X, [N, E], finite.</param>
    /// <param name="options">k, B and kb.</param>
    /// <returns>token routing [N, k], block sets [nb, kb], the two distinct-expert counts [nb], and the scores P.</returns>
    /// <exception cref="ArgumentException">As for <see cref="BlockRouting.Route"/>.</exception>
    public static BlockRoutingResult Route(double[,] logits, BlockRoutingOptions options)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(options);
        int n = logits.GetLength(0), e = logits.GetLength(1), k = options.K;
        var (kb, b) = BlockRouting.CheckOptions(e, options);
        var plain = TopKFast.Route(logits, new TopKOptions { K = k, Score = ScoreFunction.Softmax, Normalize = true });
        var p = plain.Scores!;
        int nb = (int)(((long)n + b - 1) / b);
        var result = new BlockRoutingResult(new int[n, k], new double[n, k], new int[nb, kb], new int[nb], new int[nb]) { Scores = p };
        Parallel.For(0, nb, () => new double[e], (blk, _, q) =>
        {
            BlockRouting.RouteBlock(blk, logits, p, plain.Experts, k, kb, b, q, result);
            return q;
        }, _ => { });
        return result;
    }
}
