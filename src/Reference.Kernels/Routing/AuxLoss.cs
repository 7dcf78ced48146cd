using System.Numerics.Tensors;
using Reference.Routing;

namespace Reference.Kernels.Routing;

/// <summary>The result of the aux-loss kernel.</summary>
/// <param name="SwitchLoss">The Switch load-balancing loss, float32.</param>
/// <param name="ZLoss">The router z-loss, float32.</param>
public sealed record AuxLossKernelResult(float SwitchLoss, float ZLoss);

/// <summary>
/// Auxiliary router losses (proofs/aux-loss.md, Definition), optimized: float32 throughout. Blocks of 64 tokens are handled in
/// parallel; each computes its softmax rows (SIMD), its top-k counts, its column sums of P (vector adds) and its sum of
/// squared log-partition functions; the block partials are then added in block order, so the result does not depend on
/// the schedule. It computes what <see cref="Reference.Routing.AuxLoss"/> computes up to float32 rounding (and, at a
/// near-tie in a row's top-k, up to which of the tied experts is counted).
/// </summary>
public static class AuxLoss
{
    /// <summary>Computes the Switch load-balancing loss and the z-loss.</summary>
    /// <param name="logits">X, [N * E] row-major, finite.</param>
    /// <param name="tokens">N.</param>
    /// <param name="experts">E.</param>
    /// <param name="options">k and the variant.</param>
    /// <returns>The two losses.</returns>
    /// <exception cref="ArgumentException">A shape disagrees, a logit is not finite, or k is outside 1..E.</exception>
    public static AuxLossKernelResult Compute(float[] logits, int tokens, int experts, AuxLossOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        int n = tokens, e = experts, k = options.K;
        KernelScores.CheckLogits(logits, n, e);
        Guard.InRange(k, 1, e, "k");
        if (n == 0)
        {
            return new AuxLossKernelResult(0f, 0f);
        }
        int counted = options.Variant is AuxLossVariant.Megatron or AuxLossVariant.Hf ? k : 1;

        // 1. Per block of rows: column sums of P [E], counts [E], and the sum of lse².
        int rowsPer = KernelScores.RowsPerBlock;
        int blocks = (n + rowsPer - 1) / rowsPer;
        var colSums = new float[blocks * e];
        var counts = new int[blocks * e];
        var zSums = new float[blocks];
        KernelScores.ForRanges(blocks, (long)n * e, 1, (first, last) =>
        {
            var p = new float[e];
            var chosen = new int[counted];
            for (int blk = first; blk < last; blk++)
            {
                var sums = colSums.AsSpan(blk * e, e);
                float z = 0;
                for (int i = blk * rowsPer; i < Math.Min(n, (blk + 1) * rowsPer); i++)
                {
                    var row = logits.AsSpan(i * e, e);
                    KernelScores.ScoreRow(row, p, ScoreFunction.Softmax);
                    TensorPrimitives.Add(sums, p, sums);
                    KernelScores.SelectTop(p, chosen);
                    foreach (int x in chosen)
                    {
                        counts[blk * e + x]++;
                    }
                    // lse = m + log(sum exp(x - m)), vectorized.
                    float m = TensorPrimitives.Max(row);
                    TensorPrimitives.Subtract(row, m, p);
                    TensorPrimitives.Exp(p, p);
                    float lse = m + MathF.Log(TensorPrimitives.Sum(p));
                    z += lse * lse;
                }
                zSums[blk] = z;
            }
        });

        // 2. Combine the blocks in order.
        var meanScore = new float[e];
        var count = new int[e];
        float zTotal = 0;
        for (int blk = 0; blk < blocks; blk++)
        {
            TensorPrimitives.Add(meanScore, colSums.AsSpan(blk * e, e), meanScore);
            for (int x = 0; x < e; x++)
            {
                count[x] += counts[blk * e + x];
            }
            zTotal += zSums[blk];
        }
        TensorPrimitives.Divide(meanScore, n, meanScore);

        // 3. The Switch loss in the variant's order of operations.
        float loss;
        var fraction = new float[e];
        for (int x = 0; x < e; x++)
        {
            fraction[x] = count[x] / ((float)n * counted);
        }
        switch (options.Variant)
        {
            case AuxLossVariant.Megatron:
                var weighted = new float[e];
                for (int x = 0; x < e; x++)
                {
                    weighted[x] = count[x] * meanScore[x];
                }
                loss = e * (TensorPrimitives.Sum(weighted) / ((float)n * k));
                break;
            case AuxLossVariant.Hf:
                var weightedHf = new float[e];
                for (int x = 0; x < e; x++)
                {
                    weightedHf[x] = count[x] * meanScore[x];
                }
                loss = e * (TensorPrimitives.Sum(weightedHf) / n);
                break;
            case AuxLossVariant.DeepSpeedTop1:
                loss = TensorPrimitives.Dot(meanScore, fraction) * e;
                break;
            case AuxLossVariant.DeepSpeedTop2:
                loss = TensorPrimitives.Dot(meanScore, fraction) / e * e * e;
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(options), options.Variant, "unknown aux-loss variant");
        }
        return new AuxLossKernelResult(loss, zTotal / n);
    }
}
