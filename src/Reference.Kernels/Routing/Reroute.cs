using Reference.Routing;

namespace Reference.Kernels.Routing;

/// <summary>The flat result of the rerouting kernel.</summary>
/// <param name="Experts">[N * k], row-major [N, k]: token i's j-th expert, -1 where none was found.</param>
/// <param name="Weights">[N * k]: float32 P at those experts, 0 where -1.</param>
/// <param name="Load">[E]: accepted requests per expert.</param>
/// <param name="Capacity">C.</param>
public sealed record RerouteKernelResult(int[] Experts, float[] Weights, int[] Load, int Capacity);

/// <summary>
/// Iterative rerouting (proofs/reroute.md, Definition), optimized: float32 scores (SIMD softmax, the top-k kernel's operations) and
/// each token's full ranking by a per-row sort, parallel over tokens; the proposal rounds then use one cursor per token into its
/// ranking, because the experts a token has proposed to are always a prefix of that ranking (proofs/reroute.md, theorem reroute.exhausted-when-missing), so a
/// round costs O(N) instead of O(N·E). The rounds are inherently sequential in token order.
/// It computes what <see cref="Reference.Routing.Reroute"/> computes whenever the float32 ranking of every row equals the
/// double one (no near-ties within a row).
/// </summary>
public static class Reroute
{
    /// <summary>Routes N tokens over E experts, rerouting later choices that find their expert full.</summary>
    /// <param name="logits">X, [N * E] row-major, finite.</param>
    /// <param name="tokens">N.</param>
    /// <param name="experts">E.</param>
    /// <param name="options">k, score and capacity rule.</param>
    /// <returns>experts and weights [N, k] flat, load [E] and C.</returns>
    /// <exception cref="ArgumentException">A shape disagrees, k is outside 1..E, a logit is not finite, or the capacity rule is invalid.</exception>
    public static RerouteKernelResult Route(float[] logits, int tokens, int experts, RerouteOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        int n = tokens, e = experts, k = options.K;
        KernelScores.CheckLogits(logits, n, e);
        Guard.InRange(k, 1, e, "k");
        int c = ExpertCapacity.Resolve(n, e, k, options.Capacity, options.CapacityFactor, options.Rounding, options.MinCapacity);

        // 1. Every token's float32 scores and full ranking (larger first, ties to the lower expert), parallel over rows.
        var scores = KernelScores.Compute(logits, n, e, options.Score);
        var ranking = new int[n * e];
        KernelScores.ForRanges(n, (long)n * e * 8, KernelScores.RowsPerBlock, (first, last) =>
        {
            for (int i = first; i < last; i++)
            {
                var row = ranking.AsSpan(i * e, e);
                for (int x = 0; x < e; x++)
                {
                    row[x] = x;
                }
                int offset = i * e;
                row.Sort((a, b) => scores[offset + a] > scores[offset + b] ? -1 : scores[offset + a] < scores[offset + b] ? 1 : a.CompareTo(b));
            }
        });
        var cursor = new int[n];     // [N]: how many of token i's ranked experts it has proposed to
        var result = new RerouteKernelResult(new int[n * k], new float[n * k], new int[e], c);
        Array.Fill(result.Experts, -1);
        var load = result.Load;

        // 2. Choice 1 in token order.
        for (int i = 0; i < n; i++)
        {
            int x = ranking[i * e];
            cursor[i] = 1;
            if (load[x] < c)
            {
                result.Experts[i * k] = x;
                result.Weights[i * k] = scores[i * e + x];
                load[x]++;
            }
        }

        // 3. Choices 2..k: rounds in token order; a proposal is the next expert under the token's cursor.
        for (int j = 1; j < k; j++)
        {
            for (int round = 0; round < e - 1; round++)
            {
                bool anyProposal = false;
                for (int i = 0; i < n; i++)
                {
                    if (result.Experts[i * k + j] >= 0 || cursor[i] == e)
                    {
                        continue;
                    }
                    anyProposal = true;
                    int x = ranking[i * e + cursor[i]++];
                    if (load[x] < c)
                    {
                        result.Experts[i * k + j] = x;
                        result.Weights[i * k + j] = scores[i * e + x];
                        load[x]++;
                    }
                }
                if (!anyProposal)
                {
                    break;
                }
            }
        }
        return result;
    }
}
