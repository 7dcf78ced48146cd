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
/// [E, N] so each expert reads a contiguous column, and per expert a histogram of the scores' top bits that keeps only the
/// tokens that can be among its best C, sorted as 64-bit keys (score bits, token), parallel over experts.
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

        // 2. Per expert: keep the tokens that can be among its best C (a histogram of the scores' top 16 bits finds the
        //    bucket of the C-th best), sort them by (score descending, token ascending) as one 64-bit key each, keep C.
        var result = new ExpertChoiceKernelResult(new int[e * c], new float[e * c], new int[n], c);
        KernelScores.ForRanges(e, (long)n * e * 8, 1, (first, last) =>
        {
            var histogram = new int[1 << 16];
            var keys = new ulong[n];
            for (int x = first; x < last && c > 0; x++)
            {
                var column = pt.AsSpan(x * n, n);
                Array.Clear(histogram);
                foreach (float v in column)
                {
                    histogram[BitConverter.SingleToUInt32Bits(v) >> 16]++;
                }
                int threshold = histogram.Length - 1;
                for (int above = histogram[threshold]; above < c; above += histogram[threshold])
                {
                    threshold--;
                }
                int m = 0;
                for (int i = 0; i < n; i++)
                {
                    uint bits = BitConverter.SingleToUInt32Bits(column[i]);
                    if (bits >> 16 >= threshold)
                    {
                        // P >= 0, so its bits order like its value: ~bits ascending is score descending, then the token.
                        keys[m++] = ((ulong)~bits << 32) | (uint)i;
                    }
                }
                Array.Sort(keys, 0, m);
                for (int s = 0; s < c; s++)
                {
                    int token = (int)(uint)keys[s];
                    result.Tokens[x * c + s] = token;
                    result.Gates[x * c + s] = column[token];
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
