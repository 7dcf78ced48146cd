namespace Reference.Routing;

/// <summary>Options for <see cref="BlockRouting.Route"/>. Defaults follow proofs/block-routing.md, Definition: Parameters.</summary>
public sealed record BlockRoutingOptions
{
    /// <summary>Experts per token, 1..kb. Default 2.</summary>
    public int K { get; init; } = 2;

    /// <summary>B, the tokens per block (at least 1); the last block may be shorter. Required (no default).</summary>
    public required int BlockSize { get; init; }

    /// <summary>kb, the experts each block keeps, k..E; null means k. Default null.</summary>
    public int? BlockK { get; init; }
}

/// <summary>The result of block-level routing.</summary>
/// <param name="Experts">[N, k]: each token's experts, taken from its block's set, by descending P.</param>
/// <param name="Weights">[N, k]: P at those, renormalized to sum 1 per token.</param>
/// <param name="BlockExperts">[nb, kb]: each block's experts, by descending block score.</param>
/// <param name="UniquePerBlock">[nb]: distinct experts the block's tokens use (at most kb).</param>
/// <param name="TokenLevelUnique">[nb]: distinct experts plain token-level top-k would use in the block.</param>
public sealed record BlockRoutingResult(int[,] Experts, double[,] Weights, int[,] BlockExperts, int[] UniquePerBlock, int[] TokenLevelUnique)
{
    /// <summary>P [N, E]: the router scores the routing ranked (softmax of the logits), as computed; shared, do not modify. Null when
    /// the result was built elsewhere.</summary>
    public double[,]? Scores { get; init; }
}

/// <summary>
/// Block-level routing for diffusion language models (proofs/block-routing.md, Definition): tokens of a block share a small expert set,
/// so a block activates at most kb experts. The reference: double precision, single-threaded, deterministic.
/// </summary>
/// <remarks>
/// <para>P = softmax(X) [N, E]. The tokens are cut into nb = ceil(N / B) consecutive blocks; block b holds tokens
/// bB .. min(N, (b+1)B) - 1. Its score is Q_be = (1/|b|) sum_{i in b} P_ie, and its set S_b = the top-kb experts of Q_b
/// (ranking rule: larger first, ties to the lower expert index), listed in rank order.</para>
/// <para>Token i in block b takes the k experts of S_b with the largest P_ie (ties to the lower expert index), by descending
/// P, weighted P_ie / sum over its k (computed in log space by <see cref="RouterScores.Normalized"/>). With B = 1 and any kb &gt;= k this is exactly
/// <see cref="TopK.Route"/> with softmax and normalize = true.</para>
/// <para>Reported next to it: the number of distinct experts the block's tokens use, and the number that plain token-level
/// top-k would use in the same block.</para>
/// <para>Source: the dMoE abstract (block-level expert routing for diffusion LMs); its exact aggregation is not public, and
/// the mean of the tokens' P is this project's documented choice.</para>
/// </remarks>
public static class BlockRouting
{
    /// <summary>Routes blocks of tokens to shared expert sets, then each token within its block's set.</summary>
    /// <param name="logits">X, [N, E], finite.</param>
    /// <param name="options">k, B and kb.</param>
    /// <returns>token routing [N, k], block sets [nb, kb] and the two distinct-expert counts [nb].</returns>
    /// <exception cref="ArgumentException">A logit is not finite, E = 0, B &lt; 1, kb outside k..E, or k outside 1..E.</exception>
    public static BlockRoutingResult Route(double[,] logits, BlockRoutingOptions options)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(options);
        int n = logits.GetLength(0), e = logits.GetLength(1), k = options.K;

        // 1. Check the inputs.
        var (kb, b) = CheckOptions(e, options);
        var p = RouterScores.Compute(logits, ScoreFunction.Softmax); // [N, E]; checks the logits
        int nb = (int)(((long)n + b - 1) / b);

        // 2. Plain token-level top-k, for the comparison column.
        var plain = TopK.Route(logits, new TopKOptions { K = k, Score = ScoreFunction.Softmax, Normalize = true });

        var result = new BlockRoutingResult(new int[n, k], new double[n, k], new int[nb, kb], new int[nb], new int[nb]) { Scores = p };
        var q = new double[e]; // [E]: one block's score
        for (int blk = 0; blk < nb; blk++)
        {
            RouteBlock(blk, logits, p, plain.Experts, k, kb, b, q, result);
        }
        return result;
    }

    /// <summary>Step 1 of <see cref="Route"/> without the logits: E, k, kb and B, in this order (shared with
    /// <see cref="BlockRoutingFast"/>, which must reject the same inputs with the same messages).</summary>
    /// <returns>kb and B.</returns>
    internal static (int Kb, int B) CheckOptions(int e, BlockRoutingOptions options)
    {
        if (e == 0)
        {
            throw new ArgumentException("logits has E = 0 experts; routing needs at least one", "logits");
        }
        Guard.InRange(options.K, 1, e, "k");
        int kb = options.BlockK ?? options.K;
        Guard.InRange(kb, options.K, e, "block_k");
        Guard.InRange(options.BlockSize, 1, int.MaxValue, "block_size");
        return (kb, options.BlockSize);
    }

    /// <summary>Steps 3 and 4 of <see cref="Route"/> for block <paramref name="blk"/>: writes its set, its tokens' experts and
    /// weights, and its two counts into <paramref name="result"/>, reading nothing another block writes.</summary>
    /// <param name="blk">The block.</param>
    /// <param name="logits">X [N, E].</param>
    /// <param name="p">P [N, E].</param>
    /// <param name="plainExperts">Plain top-k's experts [N, k].</param>
    /// <param name="k">Experts per token.</param>
    /// <param name="kb">Experts per block.</param>
    /// <param name="b">Tokens per block.</param>
    /// <param name="q">[E] scratch: the block's score.</param>
    /// <param name="result">The outputs, written at this block's rows.</param>
    internal static void RouteBlock(
        int blk, double[,] logits, double[,] p, int[,] plainExperts, int k, int kb, int b, double[] q, BlockRoutingResult result)
    {
        int n = logits.GetLength(0), e = logits.GetLength(1);
        int start = blk * b, end = (int)Math.Min(n, (long)start + b);

        // 3. Block score Q_b = mean of its tokens' P, and the block's set: top-kb of Q_b.
        for (int x = 0; x < e; x++)
        {
            double sum = 0;
            for (int i = start; i < end; i++)
            {
                sum += p[i, x];
            }
            q[x] = sum / (end - start);
        }
        var set = Ranking.Top(q, kb);
        for (int r = 0; r < kb; r++)
        {
            result.BlockExperts[blk, r] = set[r];
        }

        // 4. Each token: top-k of P within the set, ranked over the set's experts in index order (so ties go to the
        //    lower expert index), then renormalized.
        var members = set.OrderBy(x => x).ToArray();  // [kb], ascending expert index
        var values = new double[kb];
        var used = new HashSet<int>();
        var usedPlain = new HashSet<int>();
        for (int i = start; i < end; i++)
        {
            for (int r = 0; r < kb; r++)
            {
                values[r] = p[i, members[r]];
            }
            var chosen = Ranking.Top(values, k);
            var chosenLogits = new double[k];
            for (int j = 0; j < k; j++)
            {
                result.Experts[i, j] = members[chosen[j]];
                chosenLogits[j] = logits[i, result.Experts[i, j]];
                used.Add(result.Experts[i, j]);
                usedPlain.Add(plainExperts[i, j]);
            }
            // Renormalized in log space, exactly as top-k does (so B = 1 reproduces it bit for bit).
            var normalized = RouterScores.Normalized(chosenLogits, ScoreFunction.Softmax);
            for (int j = 0; j < k; j++)
            {
                result.Weights[i, j] = normalized[j];
            }
        }
        result.UniquePerBlock[blk] = used.Count;
        result.TokenLevelUnique[blk] = usedPlain.Count;
    }
}
