using Reference.Routing;

namespace Reference.Kernels.Routing;

/// <summary>The flat result of the capacity kernel.</summary>
/// <param name="Experts">[N * k], row-major [N, k]: kept experts, -1 where dropped.</param>
/// <param name="Weights">[N * k]: float32 weights, 0 where dropped.</param>
/// <param name="Slots">[N * k]: buffer positions 0..C-1, -1 where dropped.</param>
/// <param name="Load">[E]: kept requests per expert.</param>
/// <param name="Capacity">C.</param>
public sealed record CapacityKernelResult(int[] Experts, float[] Weights, int[] Slots, int[] Load, int Capacity);

/// <summary>
/// Top-k routing with expert capacity (proofs/capacity.md, Definition), optimized: float32 scores and selection from the top-k
/// kernel, then a counting sort of the N·k requests into per-expert buckets and an independent pass per expert (parallel
/// over experts when large). It computes what <see cref="Reference.Routing.Capacity"/> computes up to float32 rounding:
/// at a near-tie of scores (selection, or the score and batch-priority orders) it may take the other valid decision,
/// which <c>Reference.Harness.Algorithms.CapacityValidator</c> accepts.
/// </summary>
/// <remarks>
/// Each bucket lists an expert's requests in a fixed order: the priority order itself for position, choice-position and
/// batch-priority (so the kept requests are the bucket's first C and their slots are their bucket positions), and token
/// order for score and logit (the dispatch order; the kept C are then chosen by value, ties to the earlier bucket entry,
/// i.e. the lower token, and numbered in bucket order).
/// </remarks>
public static class Capacity
{
    /// <summary>Routes N tokens over E experts with capacity.</summary>
    /// <param name="logits">X, [N * E] row-major, finite.</param>
    /// <param name="tokens">N.</param>
    /// <param name="experts">E.</param>
    /// <param name="options">k, score, normalization, capacity rule, policy, optional bias (narrowed to float32).</param>
    /// <returns>experts, weights and slots [N, k] flat, load [E] and C.</returns>
    /// <exception cref="ArgumentException">A shape disagrees, k is outside 1..E, a logit or bias is not finite, or the capacity rule is invalid.</exception>
    public static CapacityKernelResult Route(float[] logits, int tokens, int experts, CapacityOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        int n = tokens, e = experts, k = options.K;

        // 1. Selection with raw float32 scores (the top-k kernel checks the logits, k and the bias).
        var top = TopK.Route(logits, n, e, new TopKOptions { K = k, Score = options.Score, Normalize = false, Bias = options.Bias });
        int c = ExpertCapacity.Resolve(n, e, k, options.Capacity, options.CapacityFactor, options.Rounding, options.MinCapacity);
        var rawTop1 = new float[n];
        for (int i = 0; i < n; i++)
        {
            rawTop1[i] = top.Weights[i * k];
        }
        var w = top.Weights; // [N * k]: pre-drop weights, renormalized in place (log space) for "before"
        if (options.Normalize == Renormalization.Before)
        {
            RenormalizeRows(logits, top.Experts, w, n, e, k, options.Score, keep: null);
        }

        // 2. The order in which requests enter the buckets.
        var order = BucketOrder(n, k, options.Policy, rawTop1); // [N * k] flat request indices i * k + j

        // 3. Counting sort into per-expert buckets, preserving that order.
        var start = new int[e + 1];
        foreach (int x in top.Experts)
        {
            start[x + 1]++;
        }
        for (int x = 0; x < e; x++)
        {
            start[x + 1] += start[x];
        }
        var bucket = new int[n * k];
        var fill = (int[])start.Clone();
        foreach (int r in order)
        {
            bucket[fill[top.Experts[r]]++] = r;
        }

        // 4. Per expert: which requests are kept, and their slots. Experts own disjoint requests, so this runs in parallel.
        var result = new CapacityKernelResult(new int[n * k], new float[n * k], new int[n * k], new int[e], c);
        Array.Fill(result.Experts, -1);
        Array.Fill(result.Slots, -1);
        bool byValue = options.Policy is DropPolicy.Score or DropPolicy.Logit;
        KernelScores.ForRanges(e, (long)n * k * (byValue ? 8 : 1), 1, (first, last) =>
        {
            for (int x = first; x < last; x++)
            {
                var mine = bucket.AsSpan(start[x], start[x + 1] - start[x]);
                var kept = byValue && mine.Length > c ? KeepByValue(mine, c, x, options.Policy, w, logits, e, k) : null;
                int slot = 0;
                for (int pos = 0; pos < mine.Length; pos++)
                {
                    bool keep = kept is null ? pos < c : kept[pos];
                    if (keep)
                    {
                        int r = mine[pos];
                        result.Experts[r] = x;
                        result.Slots[r] = slot++;
                        result.Weights[r] = w[r];
                    }
                }
                result.Load[x] = slot;
            }
        });

        // 5. "after": renormalize over the kept requests (log space; a token with nothing kept keeps zeros).
        if (options.Normalize == Renormalization.After)
        {
            RenormalizeRows(logits, result.Experts, result.Weights, n, e, k, options.Score, keep: result.Experts);
        }
        return result;
    }

    /// <summary>Flat request indices in bucket order: (i, j) for position, score and logit; (j, i) for choice-position;
    /// (j, token rank by first-choice score) for batch-priority.</summary>
    private static int[] BucketOrder(int n, int k, DropPolicy policy, float[] top1)
    {
        var order = new int[n * k];
        int t = 0;
        switch (policy)
        {
            case DropPolicy.ChoicePosition:
            case DropPolicy.BatchPriority:
                int[] tokenOrder = Enumerable.Range(0, n).ToArray();
                if (policy == DropPolicy.BatchPriority)
                {
                    // Larger first-choice score first, ties to the lower token: a strict total order, so the sort is deterministic.
                    Array.Sort(tokenOrder, (a, b) => top1[a] > top1[b] ? -1 : top1[a] < top1[b] ? 1 : a.CompareTo(b));
                }
                for (int j = 0; j < k; j++)
                {
                    foreach (int i in tokenOrder)
                    {
                        order[t++] = i * k + j;
                    }
                }
                break;
            default:
                for (int r = 0; r < n * k; r++)
                {
                    order[r] = r;
                }
                break;
        }
        return order;
    }

    /// <summary>Marks the C requests of an over-full bucket (in token order) with the largest value, ties to the earlier entry.</summary>
    private static bool[] KeepByValue(ReadOnlySpan<int> mine, int c, int x, DropPolicy policy, float[] w, float[] logits, int e, int k)
    {
        var value = new float[mine.Length];
        for (int pos = 0; pos < mine.Length; pos++)
        {
            int r = mine[pos];
            value[pos] = policy == DropPolicy.Score ? w[r] : logits[(r / k) * e + x];
        }
        var rank = Enumerable.Range(0, mine.Length).ToArray();
        Array.Sort(rank, (a, b) => value[a] > value[b] ? -1 : value[a] < value[b] ? 1 : a.CompareTo(b));
        var kept = new bool[mine.Length];
        for (int q = 0; q < c; q++)
        {
            kept[rank[q]] = true;
        }
        return kept;
    }

    /// <summary>Replaces each row of weights [N, k] by the log-space renormalization over the positions whose expert is
    /// kept (keep[r] &gt;= 0), or over all k when keep is null; other positions are left as they are (0 for dropped).</summary>
    private static void RenormalizeRows(float[] logits, int[] experts, float[] weights, int n, int e, int k, ScoreFunction score, int[]? keep)
    {
        KernelScores.ForRanges(n, (long)n * k, KernelScores.RowsPerBlock, (first, last) =>
        {
            var selected = new float[k];
            var normalized = new float[k];
            for (int i = first; i < last; i++)
            {
                int count = 0;
                for (int j = 0; j < k; j++)
                {
                    int r = i * k + j;
                    if (keep is null || keep[r] >= 0)
                    {
                        selected[count++] = logits[i * e + experts[r]];
                    }
                }
                KernelScores.NormalizeFromLogits(selected.AsSpan(0, count), normalized, score);
                for (int j = 0, q = 0; j < k; j++)
                {
                    int r = i * k + j;
                    if (keep is null || keep[r] >= 0)
                    {
                        weights[r] = normalized[q++];
                    }
                }
            }
        });
    }
}
