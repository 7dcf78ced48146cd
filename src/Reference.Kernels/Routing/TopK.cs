using System.Buffers;
using System.Numerics.Tensors;
using Reference.Routing;

namespace Reference.Kernels.Routing;

/// <summary>The flat result of the top-k kernel.</summary>
/// <param name="Experts">[N * k], row-major [N, k]: each token's experts, best first.</param>
/// <param name="Weights">[N * k], row-major [N, k]: float32 scores at those experts, normalized when asked.</param>
public sealed record TopKKernelResult(int[] Experts, float[] Weights);

/// <summary>
/// Token-choice top-k routing (SEMANTICS.md section 1), optimized: float32, batched over tokens, SIMD through
/// <see cref="TensorPrimitives"/> for the softmax or sigmoid, parallel over blocks of tokens.
/// It computes what <see cref="Reference.Routing.TopK"/> computes, up to float32 rounding: the scores carry a few ulps of
/// error, so at a near-tie the kernel may pick the other expert. The harness's top-k validator accepts exactly those choices.
/// </summary>
public static class TopK
{
    /// <summary>Below this many logits the kernel runs on one thread: the fork/join costs more than it saves.</summary>
    private const int ParallelThreshold = 1 << 15;

    /// <summary>Rows handled per parallel work item.</summary>
    private const int RowsPerBlock = 64;

    /// <summary>Routes N tokens over E experts.</summary>
    /// <param name="logits">X, [N * E] row-major, finite.</param>
    /// <param name="tokens">N.</param>
    /// <param name="experts">E.</param>
    /// <param name="options">k, score function, normalization, optional bias [E] (narrowed to float32).</param>
    /// <returns>experts [N, k] and weights [N, k], flat.</returns>
    /// <exception cref="ArgumentException">A shape disagrees, k is outside 1..E, or a logit or bias is not finite.</exception>
    public static TopKKernelResult Route(float[] logits, int tokens, int experts, TopKOptions options)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(options);
        if (tokens < 0 || experts < 1 || (long)tokens * experts != logits.LongLength)
        {
            throw new ArgumentException($"logits has {logits.Length} elements, not N * E = {tokens} * {experts}", nameof(logits));
        }
        int k = options.K;
        Guard.InRange(k, 1, experts, "k");
        float[]? bias = null;
        if (options.Bias is { } b)
        {
            Guard.Length(b.Count, experts, "bias", $"logits has E = {experts} columns");
            Guard.Finite(b, "bias");
            bias = b.Select(x => (float)x).ToArray();
        }
        int bad = IndexOfNonFinite(logits);
        if (bad >= 0)
        {
            throw new ArgumentException(
                $"logits[{bad / experts}, {bad % experts}] is {Guard.Describe(logits[bad])}; logits must be finite", nameof(logits));
        }

        var result = new TopKKernelResult(new int[tokens * k], new float[tokens * k]);
        int blocks = (tokens + RowsPerBlock - 1) / RowsPerBlock;
        if ((long)tokens * experts < ParallelThreshold)
        {
            RouteRows(logits, 0, tokens, experts, options, bias, result);
        }
        else
        {
            Parallel.For(0, blocks, blk =>
            {
                int start = blk * RowsPerBlock;
                RouteRows(logits, start, Math.Min(tokens, start + RowsPerBlock), experts, options, bias, result);
            });
        }
        return result;
    }

    /// <summary>Routes rows [start, end) into the result; one scratch buffer per call.</summary>
    private static void RouteRows(float[] logits, int start, int end, int e, TopKOptions options, float[]? bias, TopKKernelResult result)
    {
        int k = options.K;
        float[] scratch = ArrayPool<float>.Shared.Rent(2 * e);
        try
        {
            var scores = scratch.AsSpan(0, e);   // [E]: P of one row
            var keys = scratch.AsSpan(e, e);     // [E]: P + b
            for (int i = start; i < end; i++)
            {
                var row = logits.AsSpan(i * e, e);
                // 1. Scores, vectorized.
                if (options.Score == ScoreFunction.Softmax)
                {
                    float max = TensorPrimitives.Max(row);
                    TensorPrimitives.Subtract(row, max, scores);
                    TensorPrimitives.Exp(scores, scores);
                    TensorPrimitives.Divide(scores, TensorPrimitives.Sum(scores), scores);
                }
                else
                {
                    TensorPrimitives.Sigmoid(row, scores);
                }

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
                SelectTop(keys, chosen);

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
                float maxLog = float.NegativeInfinity;
                for (int j = 0; j < k; j++)
                {
                    float x = row[chosen[j]];
                    weights[j] = options.Score == ScoreFunction.Softmax ? x : LogSigmoid(x);
                    maxLog = MathF.Max(maxLog, weights[j]);
                }
                TensorPrimitives.Subtract(weights, maxLog, weights);
                TensorPrimitives.Exp(weights, weights);
                TensorPrimitives.Divide(weights, TensorPrimitives.Sum(weights), weights);
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(scratch);
        }
    }

    /// <summary>Writes the indices of the largest keys into <paramref name="chosen"/> (its length is k), best first,
    /// ties to the lower index: scanning indices in increasing order, a later index enters only if strictly larger.</summary>
    private static void SelectTop(ReadOnlySpan<float> keys, Span<int> chosen)
    {
        int k = chosen.Length, count = 0;
        for (int e = 0; e < keys.Length; e++)
        {
            float key = keys[e];
            if (count == k && !(key > keys[chosen[k - 1]]))
            {
                continue;
            }
            // Find the insertion point: after every kept entry whose key is >= this one (equal keys keep index order).
            int pos = count == k ? k - 1 : count;
            while (pos > 0 && key > keys[chosen[pos - 1]])
            {
                chosen[pos] = chosen[pos - 1];
                pos--;
            }
            chosen[pos] = e;
            if (count < k)
            {
                count++;
            }
        }
    }

    /// <summary>log sigmoid(x) = -log(1 + exp(-x)) in float32, stable for large |x|.</summary>
    private static float LogSigmoid(float x) =>
        x >= 0 ? -MathF.Log(1f + MathF.Exp(-x)) : x - MathF.Log(1f + MathF.Exp(x));

    /// <summary>The first flat index holding NaN or an infinity, or -1.</summary>
    private static int IndexOfNonFinite(float[] values)
    {
        for (int i = 0; i < values.Length; i++)
        {
            if (!float.IsFinite(values[i]))
            {
                return i;
            }
        }
        return -1;
    }
}
