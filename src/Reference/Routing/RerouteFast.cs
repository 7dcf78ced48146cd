namespace Reference.Routing;

/// <summary>
/// Iterative rerouting with the per-token work in parallel: equal to the readable reference <see cref="Reroute.Route"/> bit
/// for bit in every output (proofs/reroute.md, theorem reroute.fast-reference-identical). Used by <c>check reroute</c>
/// beyond the size documented in proofs/cli.md ("Fast references beyond a size").
/// </summary>
/// <remarks>
/// <para>Shapes, options, validation and errors are those of <see cref="Reroute.Route"/>: the same option checks
/// (<see cref="Reroute.CheckOptions"/>), then the logits' check with <see cref="RouterScores.Compute"/>'s call and message,
/// then C.</para>
/// <para>Why the outputs are identical: each row of P is computed by <see cref="RouterScores.ComputeRow"/>, the reference's
/// own row computation, reading only that row. Each token's ranking is the reference's: a primitive sort of the negated
/// scores, whose runs of equal scores are then put in index order, is the order "larger first, ties to the lower index"
/// of <see cref="Ranking.Order"/> (a strict total order has one sorted arrangement). The proposals are made in the same
/// sequence as the reference's (choice 1 in token order, then the same rounds in token order), and a token's next proposal
/// is read from a cursor into its ranking instead of a scan for the first expert not yet proposed to: the experts a token
/// has proposed to are always a prefix of its ranking (the reference's remarks), so both give the same expert. The
/// weights are P at the assigned experts.</para>
/// </remarks>
public static class RerouteFast
{
    /// <summary>Rows per parallel work item.</summary>
    private const int RowsPerBlock = 256;

    /// <summary>Routes as <see cref="Reroute.Route"/> does, with the same result.</summary>
    /// <param name="logits">X, [N, E], finite.</param>
    /// <param name="options">k, score and capacity rule.</param>
    /// <returns>experts and weights [N, k], load [E] and C.</returns>
    /// <exception cref="ArgumentException">As for <see cref="Reroute.Route"/>.</exception>
    public static RerouteResult Route(double[,] logits, RerouteOptions options)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(options);
        int n = logits.GetLength(0), e = logits.GetLength(1), k = options.K;
        Reroute.CheckOptions(e, options);
        Guard.Finite(logits, nameof(logits)); // as RouterScores.Compute, first thing, with the same message
        var p = new double[n, e];
        var ranking = new int[n][];
        int blocks = (n + RowsPerBlock - 1) / RowsPerBlock;
        Parallel.For(0, blocks, () => new double[e], (block, _, negated) =>
        {
            for (int i = block * RowsPerBlock, end = Math.Min(n, i + RowsPerBlock); i < end; i++)
            {
                RouterScores.ComputeRow(logits, p, i, options.Score);
                ranking[i] = Rank(p, i, negated);
            }
            return negated;
        }, _ => { });
        int c = ExpertCapacity.Resolve(n, e, k, options.Capacity, options.CapacityFactor, options.Rounding, options.MinCapacity);

        var experts = new int[n, k];
        var load = new int[e];
        var next = new int[n]; // [N]: how many of its ranking the token has proposed to
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < k; j++)
            {
                experts[i, j] = -1;
            }
        }

        // Choice 1, then choices 2..k in rounds, as the reference.
        for (int i = 0; i < n; i++)
        {
            int x = ranking[i][next[i]++];
            if (load[x] < c)
            {
                experts[i, 0] = x;
                load[x]++;
            }
        }
        for (int j = 1; j < k; j++)
        {
            for (int round = 0; round < e - 1; round++)
            {
                bool anyProposal = false;
                for (int i = 0; i < n; i++)
                {
                    if (experts[i, j] >= 0 || next[i] == e)
                    {
                        continue; // already has its j-th expert, or nothing left to propose to
                    }
                    anyProposal = true;
                    int x = ranking[i][next[i]++];
                    if (load[x] < c)
                    {
                        experts[i, j] = x;
                        load[x]++;
                    }
                }
                if (!anyProposal)
                {
                    break;
                }
            }
        }

        var weights = new double[n, k];
        RowBlocks.For(n, i =>
        {
            for (int j = 0; j < k; j++)
            {
                weights[i, j] = experts[i, j] >= 0 ? p[i, experts[i, j]] : 0.0;
            }
        });
        return new RerouteResult(experts, weights, load, c);
    }

    /// <summary>Row i's experts by <see cref="Ranking.RanksBefore"/> on P (<see cref="Ranking.SortNegated"/>).</summary>
    private static int[] Rank(double[,] p, int i, double[] negated)
    {
        var order = new int[negated.Length];
        for (int x = 0; x < negated.Length; x++)
        {
            negated[x] = -p[i, x];
            order[x] = x;
        }
        Ranking.SortNegated(negated, order);
        return order;
    }
}
