using System.Numerics.Tensors;
using Reference.Routing;

namespace Reference.Kernels.Routing;

/// <summary>
/// Pieces the routing kernels share: input checks, float32 router scores (the same operations, in the same order, as the
/// top-k kernel, so every kernel sees bit-identical scores), an insertion top-k, and a parallel loop over ranges.
/// </summary>
internal static class KernelScores
{
    /// <summary>Below this much work the kernels run on one thread: the fork/join costs more than it saves.</summary>
    internal const int ParallelThreshold = 1 << 15;

    /// <summary>Rows per parallel work item.</summary>
    internal const int RowsPerBlock = 64;

    /// <summary>Throws unless logits holds N·E finite values and E &gt;= 1, naming the first offending index.</summary>
    internal static void CheckLogits(float[] logits, int tokens, int experts)
    {
        ArgumentNullException.ThrowIfNull(logits);
        if (tokens < 0 || experts < 1 || (long)tokens * experts != logits.LongLength)
        {
            throw new ArgumentException($"logits has {logits.Length} elements, not N * E = {tokens} * {experts}", nameof(logits));
        }
        for (int f = 0; f < logits.Length; f++)
        {
            if (!float.IsFinite(logits[f]))
            {
                throw new ArgumentException(
                    $"logits[{f / experts}, {f % experts}] is {Guard.Describe(logits[f])}; logits must be finite", nameof(logits));
            }
        }
    }

    /// <summary>Scores one row: softmax (max-shifted) or sigmoid, vectorized.</summary>
    internal static void ScoreRow(ReadOnlySpan<float> row, Span<float> scores, ScoreFunction score)
    {
        if (score == ScoreFunction.Softmax)
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
    }

    /// <summary>P [N·E] for all rows, parallel over blocks of rows when large.</summary>
    internal static float[] Compute(float[] logits, int n, int e, ScoreFunction score)
    {
        var p = new float[logits.Length];
        ForRanges(n, (long)n * e, RowsPerBlock, (start, end) =>
        {
            for (int i = start; i < end; i++)
            {
                ScoreRow(logits.AsSpan(i * e, e), p.AsSpan(i * e, e), score);
            }
        });
        return p;
    }

    /// <summary>Renormalized weights of a few selected experts, in log space as the top-k kernel computes them:
    /// w_j = exp(l_j - max l) / sum exp(l - max l), with l = x (softmax) or log sigmoid(x), so underflowing scores keep
    /// their ratios. An empty selection gives nothing.</summary>
    internal static void NormalizeFromLogits(ReadOnlySpan<float> selectedLogits, Span<float> weights, ScoreFunction score)
    {
        int k = selectedLogits.Length;
        if (k == 0)
        {
            return;
        }
        float maxLog = float.NegativeInfinity;
        for (int j = 0; j < k; j++)
        {
            float x = selectedLogits[j];
            weights[j] = score == ScoreFunction.Softmax ? x : LogSigmoid(x);
            maxLog = MathF.Max(maxLog, weights[j]);
        }
        var w = weights[..k];
        TensorPrimitives.Subtract(w, maxLog, w);
        TensorPrimitives.Exp(w, w);
        TensorPrimitives.Divide(w, TensorPrimitives.Sum(w), w);
    }

    /// <summary>log sigmoid(x) = -log(1 + exp(-x)) in float32, stable for large |x|.</summary>
    private static float LogSigmoid(float x) =>
        x >= 0 ? -MathF.Log(1f + MathF.Exp(-x)) : x - MathF.Log(1f + MathF.Exp(x));

    /// <summary>Writes the indices of the largest keys into <paramref name="chosen"/> (its length is k), best first, ties to the
    /// lower index: scanning indices upwards, a later index enters only if strictly larger than the one it displaces.</summary>
    internal static void SelectTop(ReadOnlySpan<float> keys, Span<int> chosen)
    {
        int k = chosen.Length, count = 0;
        if (k == 0)
        {
            return;
        }
        for (int x = 0; x < keys.Length; x++)
        {
            float key = keys[x];
            if (count == k && !(key > keys[chosen[k - 1]]))
            {
                continue;
            }
            int pos = count == k ? k - 1 : count;
            while (pos > 0 && key > keys[chosen[pos - 1]])
            {
                chosen[pos] = chosen[pos - 1];
                pos--;
            }
            chosen[pos] = x;
            if (count < k)
            {
                count++;
            }
        }
    }

    /// <summary>Runs body over [0, count) cut into ranges of <paramref name="chunk"/>, in parallel when the total work is
    /// large. Ranges are disjoint and each is handled sequentially, so a body that writes only its own range is race-free
    /// and deterministic.</summary>
    internal static void ForRanges(int count, long work, int chunk, Action<int, int> body)
    {
        if (work < ParallelThreshold || count <= chunk)
        {
            body(0, count);
            return;
        }
        int ranges = (count + chunk - 1) / chunk;
        Parallel.For(0, ranges, r => body(r * chunk, Math.Min(count, (r + 1) * chunk)));
    }
}
