using System.Numerics.Tensors;
using Reference.Routing;

namespace Reference.Kernels.Routing;

/// <summary>The flat result of the block-routing kernel.</summary>
/// <param name="Experts">[N * k], row-major [N, k].</param>
/// <param name="Weights">[N * k]: float32, renormalized per token.</param>
/// <param name="BlockExperts">[nb * kb], row-major [nb, kb].</param>
/// <param name="UniquePerBlock">[nb].</param>
/// <param name="TokenLevelUnique">[nb].</param>
public sealed record BlockRoutingKernelResult(int[] Experts, float[] Weights, int[] BlockExperts, int[] UniquePerBlock, int[] TokenLevelUnique);

/// <summary>
/// Block-level routing (proofs/block-routing.md, Definition), optimized: float32 softmax (SIMD), blocks handled in parallel; a block's
/// score is a vector sum of its rows divided by its length; sets and token choices by insertion top-k.
/// It computes what <see cref="Reference.Routing.BlockRouting"/> computes up to float32 rounding; at a near-tie of block
/// scores or token scores it may take the other, which <c>Reference.Harness.Algorithms.BlockRoutingValidator</c> accepts.
/// </summary>
public static class BlockRouting
{
    /// <summary>Routes blocks of tokens to shared expert sets, then each token within its block's set.</summary>
    /// <param name="logits">X, [N * E] row-major, finite.</param>
    /// <param name="tokens">N.</param>
    /// <param name="experts">E.</param>
    /// <param name="options">k, B and kb.</param>
    /// <returns>The flat outputs.</returns>
    /// <exception cref="ArgumentException">A shape disagrees, a logit is not finite, or k, kb or B is out of range.</exception>
    public static BlockRoutingKernelResult Route(float[] logits, int tokens, int experts, BlockRoutingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        int n = tokens, e = experts, k = options.K;
        KernelScores.CheckLogits(logits, n, e);
        Guard.InRange(k, 1, e, "k");
        int kb = options.BlockK ?? k;
        Guard.InRange(kb, k, e, "block_k");
        int b = options.BlockSize;
        Guard.InRange(b, 1, int.MaxValue, "block_size");
        int nb = (int)(((long)n + b - 1) / b);

        var p = KernelScores.Compute(logits, n, e, ScoreFunction.Softmax);
        var result = new BlockRoutingKernelResult(new int[n * k], new float[n * k], new int[nb * kb], new int[nb], new int[nb]);
        int blocksPerItem = Math.Max(1, KernelScores.RowsPerBlock / b);
        KernelScores.ForRanges(nb, (long)n * e, blocksPerItem, (first, last) =>
        {
            var q = new float[e];
            var members = new int[kb];
            var values = new float[kb];
            var chosen = new int[k];
            var chosenLogits = new float[k];
            var used = new bool[e];
            var usedPlain = new bool[e];
            for (int blk = first; blk < last; blk++)
            {
                int start = blk * b, end = (int)Math.Min(n, (long)start + b);

                // 1. Block score and set.
                Array.Clear(q);
                for (int i = start; i < end; i++)
                {
                    TensorPrimitives.Add(q, p.AsSpan(i * e, e), q);
                }
                TensorPrimitives.Divide(q, end - start, q);
                var set = result.BlockExperts.AsSpan(blk * kb, kb);
                KernelScores.SelectTop(q, set);
                set.CopyTo(members);
                Array.Sort(members); // ascending expert index, so ties among members go to the lower expert

                // 2. Tokens: top-k of P over the members, renormalized; and plain top-k for the comparison count.
                Array.Clear(used);
                Array.Clear(usedPlain);
                for (int i = start; i < end; i++)
                {
                    var row = p.AsSpan(i * e, e);
                    for (int r = 0; r < kb; r++)
                    {
                        values[r] = row[members[r]];
                    }
                    KernelScores.SelectTop(values, chosen);
                    var ex = result.Experts.AsSpan(i * k, k);
                    for (int j = 0; j < k; j++)
                    {
                        ex[j] = members[chosen[j]];
                        chosenLogits[j] = logits[i * e + ex[j]];
                        used[ex[j]] = true;
                    }
                    KernelScores.NormalizeFromLogits(chosenLogits, result.Weights.AsSpan(i * k, k), ScoreFunction.Softmax);
                    KernelScores.SelectTop(row, chosen);
                    foreach (int x in chosen)
                    {
                        usedPlain[x] = true;
                    }
                }
                result.UniquePerBlock[blk] = used.Count(v => v);
                result.TokenLevelUnique[blk] = usedPlain.Count(v => v);
            }
        });
        return result;
    }
}
