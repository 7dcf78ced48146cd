using Reference.Routing;

namespace Reference.Kernels.Routing;

/// <summary>The flat result of the rerouting kernel.</summary>
/// <param name="Experts">[N * k], row-major [N, k]: token i's j-th expert, -1 where none was found.</param>
/// <param name="Weights">[N * k]: float32 P at those experts, 0 where -1.</param>
/// <param name="Load">[E]: accepted requests per expert.</param>
/// <param name="Capacity">C.</param>
public sealed record RerouteKernelResult(int[] Experts, float[] Weights, int[] Load, int Capacity);

/// <summary>
/// Iterative rerouting (SEMANTICS.md section 3), optimized: float32 scores and each token's full ranking come from the top-k
/// kernel with k = E (parallel over tokens, SIMD softmax); the proposal rounds then use one cursor per token into its
/// ranking, because the experts a token has proposed to are always a prefix of that ranking (proofs/routing.md), so a
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

        // 1. Every token's full ranking (k = E) with its scores.
        var ranked = TopK.Route(logits, n, e, new TopKOptions { K = e, Score = options.Score, Normalize = false });
        var cursor = new int[n];     // [N]: how many of token i's ranked experts it has proposed to
        var result = new RerouteKernelResult(new int[n * k], new float[n * k], new int[e], c);
        Array.Fill(result.Experts, -1);
        var load = result.Load;

        // 2. Choice 1 in token order.
        for (int i = 0; i < n; i++)
        {
            int x = ranked.Experts[i * e];
            cursor[i] = 1;
            if (load[x] < c)
            {
                result.Experts[i * k] = x;
                result.Weights[i * k] = ranked.Weights[i * e];
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
                    int at = i * e + cursor[i]++;
                    int x = ranked.Experts[at];
                    if (load[x] < c)
                    {
                        result.Experts[i * k + j] = x;
                        result.Weights[i * k + j] = ranked.Weights[at];
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
