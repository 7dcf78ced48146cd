using System.Buffers;
using System.Numerics.Tensors;
using Reference.Routing;

namespace Reference.Kernels.Routing;

/// <summary>The flat result of the top-k kernel.</summary>
/// <param name="Experts">[N * k], row-major [N, k]: each token's experts, best first.</param>
/// <param name="Weights">[N * k], row-major [N, k]: float32 scores at those experts, normalized when asked.</param>
public sealed record TopKKernelResult(int[] Experts, float[] Weights);

/// <summary>
/// Token-choice top-k routing (proofs/topk.md, Definition), optimized: float32, batched over tokens, SIMD through
/// <see cref="TensorPrimitives"/> for the softmax or sigmoid, parallel over blocks of tokens.
/// It computes what <see cref="Reference.Routing.TopK"/> computes, up to float32 rounding: the scores carry a few ulps of
/// error, so at a near-tie the kernel may pick the other expert. The harness's top-k validator accepts exactly those choices.
/// </summary>
public static class TopK
{
    /// <summary>Routes N tokens over E experts.</summary>
    /// <param name="logits">X, [N * E] row-major, finite.</param>
    /// <param name="tokens">N.</param>
    /// <param name="experts">E.</param>
    /// <param name="options">k, score function, normalization, optional bias [E] (narrowed to float32).</param>
    /// <returns>experts [N, k] and weights [N, k], flat.</returns>
    /// <exception cref="ArgumentException">A shape disagrees, k is outside 1..E, or a logit or bias is not finite.</exception>
    public static TopKKernelResult Route(float[] logits, int tokens, int experts, TopKOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        KernelScores.CheckLogits(logits, tokens, experts);
        int k = options.K;
        Guard.InRange(k, 1, experts, "k");
        float[]? bias = null;
        if (options.Bias is { } b)
        {
            Guard.Length(b.Count, experts, "bias", $"logits has E = {experts} columns");
            Guard.Finite(b, "bias");
            bias = b.Select(x => (float)x).ToArray();
        }

        var result = new TopKKernelResult(new int[tokens * k], new float[tokens * k]);
        KernelScores.ForRanges(tokens, (long)tokens * experts, KernelScores.RowsPerBlock,
            (start, end) => RouteRows(logits, start, end, experts, options, bias, result));
        return result;
    }

    /// <summary>Routes rows [start, end) into the result; one scratch buffer per call.</summary>
    private static void RouteRows(float[] logits, int start, int end, int e, TopKOptions options, float[]? bias, TopKKernelResult result)
    {
        int k = options.K;
        float[] scratch = ArrayPool<float>.Shared.Rent(2 * e + k);
        try
        {
            var scores = scratch.AsSpan(0, e);   // [E]: P of one row
            var keys = scratch.AsSpan(e, e);     // [E]: P + b
            var selectedLogits = scratch.AsSpan(2 * e, k); // [k]: X at the chosen experts
            for (int i = start; i < end; i++)
            {
                var row = logits.AsSpan(i * e, e);
                // 1. Scores, vectorized.
                KernelScores.ScoreRow(row, scores, options.Score);

                // 2. Selection keys.
                if (bias is null)
                {
                    scores.CopyTo(keys);
                }
                else
                {
                    TensorPrimitives.Add(scores, bias, keys);
                }

                // 3. Top-k by insertion into a sorted list of length k: one pass over E, O(E * k).
                var chosen = result.Experts.AsSpan(i * k, k);
                var weights = result.Weights.AsSpan(i * k, k);
                KernelScores.SelectTop(keys, chosen);

                // 4. Weights from the scores. Normalized weights are computed in log space, as the reference does:
                //    w_j = exp(l_j - max l) / sum, with l = x (softmax) or log sigmoid(x), so underflowing scores keep their ratios.
                if (!options.Normalize)
                {
                    for (int j = 0; j < k; j++)
                    {
                        weights[j] = scores[chosen[j]];
                    }
                    continue;
                }
                for (int j = 0; j < k; j++)
                {
                    selectedLogits[j] = row[chosen[j]];
                }
                KernelScores.NormalizeFromLogits(selectedLogits, weights, options.Score);
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(scratch);
        }
    }
}
