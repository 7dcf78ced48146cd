using Reference.Routing;

namespace Reference.Kernels.Routing;

/// <summary>The flat result of the expert-choice kernel.</summary>
/// <param name="Tokens">[E * C], row-major [E, C]: each expert's tokens by descending score.</param>
/// <param name="Gates">[E * C]: float32 P at those pairs.</param>
/// <param name="Count">[N]: experts per token.</param>
/// <param name="Capacity">C.</param>
public sealed record ExpertChoiceKernelResult(int[] Tokens, float[] Gates, int[] Count, int Capacity);

/// <summary>
/// Expert-choice routing (proofs/expert-choice.md, Definition), optimized: float32 softmax (SIMD, parallel over tokens), a transpose to
/// [E, N] so each expert reads a contiguous column, and a per-expert sort of its column, parallel over experts.
/// It computes what <see cref="Reference.Routing.ExpertChoice"/> computes up to float32 rounding; at a near-tie of two
/// tokens' scores it may take the other, which <c>Reference.Harness.Algorithms.ExpertChoiceValidator</c> accepts.
/// </summary>
public static class ExpertChoice
{
    /// <summary>Lets every expert choose its top-C tokens.</summary>
    /// <param name="logits">X, [N * E] row-major, finite.</param>
    /// <param name="tokens">N.</param>
    /// <param name="experts">E.</param>
    /// <param name="options">The capacity, explicit or from the factor and k.</param>
    /// <returns>tokens and gates [E, C] flat, count [N] and C.</returns>
    /// <exception cref="ArgumentException">A shape disagrees, a logit is not finite, or the capacity is invalid.</exception>
    public static ExpertChoiceKernelResult Route(float[] logits, int tokens, int experts, ExpertChoiceOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        int n = tokens, e = experts;
        KernelScores.CheckLogits(logits, n, e);
        int c = Reference.Routing.ExpertChoice.ResolveCapacity(n, e, options);

        // 1. P [N, E], then its transpose [E, N].
        var p = KernelScores.Compute(logits, n, e, ScoreFunction.Softmax);
        var pt = new float[e * n];
        KernelScores.ForRanges(e, (long)n * e, 1, (first, last) =>
        {
            for (int x = first; x < last; x++)
            {
                for (int i = 0; i < n; i++)
                {
                    pt[x * n + i] = p[i * e + x];
                }
            }
        });

        // 2. Per expert: sort its tokens by (score descending, token ascending) and keep the first C.
        var result = new ExpertChoiceKernelResult(new int[e * c], new float[e * c], new int[n], c);
        KernelScores.ForRanges(e, (long)n * e * 8, 1, (first, last) =>
        {
            var order = new int[n];
            for (int x = first; x < last; x++)
            {
                var column = pt.AsSpan(x * n, n).ToArray();
                for (int i = 0; i < n; i++)
                {
                    order[i] = i;
                }
                Array.Sort(order, (a, b) => column[a] > column[b] ? -1 : column[a] < column[b] ? 1 : a.CompareTo(b));
                for (int s = 0; s < c; s++)
                {
                    result.Tokens[x * c + s] = order[s];
                    result.Gates[x * c + s] = column[order[s]];
                }
            }
        });

        // 3. Count.
        foreach (int t in result.Tokens)
        {
            result.Count[t]++;
        }
        return result;
    }
}
