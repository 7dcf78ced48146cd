using Reference.Attention;
using Reference.Harness.Algorithms;
using Reference.Harness.Registry;
using TorchSharp;
using static TorchSharp.torch;

namespace Reference.Torch.Attention;

/// <summary>
/// Causal linear attention (proofs/attention-sparse.md, Definition: Linear attention) in the chunked form GPU kernels use
/// (fla's <c>chunk</c> mode), in float32: within a chunk of C positions the masked quadratic form
/// ((phi(Q) phi(K)^T) * Gamma) V with Gamma[i, j] = gamma^(i-j) for j &lt;= i, across chunks the state S [D, Dv] (and z [D])
/// carried by a loop over chunks: o_i += gamma^(i+1) phi(q_i) S, then S = gamma^C S + sum_j gamma^(C-1-j) phi(k_j) v_j^T.
/// Every (b, h) is computed at once. The chunk length is the call's <c>chunk</c> parameter.
/// </summary>
/// <remarks>Always float32: the inputs are widened (or, for float64, rounded) to float32, as the <c>kernel</c> path
/// does. A normalized row whose denominator is exactly 0 outputs 0, as the Definition says.</remarks>
public static class LinearTorch
{
    /// <summary>Linear attention of the call's q, k, v on its device.</summary>
    /// <param name="call">The bound call (q, k, v).</param>
    /// <param name="options">Feature map, normalization, decay, chunk.</param>
    /// <returns>out [B, H, T, Dv].</returns>
    public static LinearOutput Run(AlgorithmCall call, LinearAttentionOptions options)
    {
        ArgumentNullException.ThrowIfNull(call);
        ArgumentNullException.ThrowIfNull(options);
        if (!(options.Decay > 0.0 && options.Decay <= 1.0)) throw new ArgumentException($"decay must be in (0, 1], got {options.Decay}", "decay");
        if (options.Chunk < 1) throw new ArgumentException($"chunk must be >= 1, got {options.Chunk}", "chunk");
        var device = TorchDevice.For(call.Device);
        using var scope = NewDisposeScope();
        var q = Feature(TorchAttention.Floats(call, "q", device), options.FeatureMap);
        var k = Feature(TorchAttention.Floats(call, "k", device), options.FeatureMap);
        var v = TorchAttention.Floats(call, "v", device);
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], d = q.shape[3], dv = v.shape[3];
        if (t == 0 || b == 0 || h == 0 || dv == 0)
        {
            return new LinearOutput(TorchAttention.ToArray(zeros([b, h, t, dv], ScalarType.Float32, device)));
        }

        double gamma = options.Decay;
        var state = zeros([b, h, d, dv], ScalarType.Float32, device);
        var norm = zeros([b, h, d, 1], ScalarType.Float32, device);
        var pieces = new List<Tensor>();
        for (long start = 0; start < t; start += options.Chunk)
        {
            long c = Math.Min(options.Chunk, t - start);
            var qc = q.narrow(2, start, c);
            var kc = k.narrow(2, start, c);
            var vc = v.narrow(2, start, c);
            var (within, entering, leaving) = Decays(gamma, c, device);

            // Inside the chunk: the masked quadratic form; from earlier chunks: the carried state, decayed.
            var a = qc.matmul(kc.transpose(-2, -1)) * within;                   // [B, H, C, C]
            var numerator = a.matmul(vc) + qc.matmul(state) * entering;          // [B, H, C, Dv]
            if (options.Normalize)
            {
                var denominator = a.sum(-1, keepdim: true) + qc.matmul(norm) * entering;   // [B, H, C, 1]
                var zero = denominator == 0.0;
                numerator = (numerator / denominator.masked_fill(zero, 1.0)).masked_fill(zero, 0.0);
            }
            pieces.Add(numerator);

            // Carry the state past the chunk.
            var weighted = kc * leaving;                                         // gamma^(C-1-j) phi(k_j)
            state = state * Math.Pow(gamma, c) + weighted.transpose(-2, -1).matmul(vc);
            norm = norm * Math.Pow(gamma, c) + weighted.sum(2).unsqueeze(-1);
        }
        return new LinearOutput(TorchAttention.ToArray(cat(pieces, 2)));
    }

    /// <summary>phi: elu(x) + 1 or the identity.</summary>
    private static Tensor Feature(Tensor x, FeatureMap map) => map == FeatureMap.Elu1 ? nn.functional.elu(x, 1.0, false) + 1.0 : x;

    /// <summary>
    /// The decay factors of a chunk of length c: within [c, c] = gamma^(i-j) for j &lt;= i and 0 above the diagonal,
    /// entering [c, 1] = gamma^(i+1), leaving [c, 1] = gamma^(c-1-j); computed in double and rounded to float32.
    /// </summary>
    private static (Tensor Within, Tensor Entering, Tensor Leaving) Decays(double gamma, long c, Device device)
    {
        var i = arange(c, ScalarType.Float64, device);
        var gap = i.view(c, 1) - i.view(1, c);
        var within = tensor(gamma, ScalarType.Float64, device).pow(gap.clamp_min(0.0)).masked_fill(gap < 0.0, 0.0);
        var entering = tensor(gamma, ScalarType.Float64, device).pow(i + 1.0).view(c, 1);
        var leaving = tensor(gamma, ScalarType.Float64, device).pow((c - 1.0) - i).view(c, 1);
        return (within.to(ScalarType.Float32), entering.to(ScalarType.Float32), leaving.to(ScalarType.Float32));
    }
}
