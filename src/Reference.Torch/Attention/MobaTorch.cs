using Reference.Attention;
using Reference.Harness.Algorithms;
using Reference.Harness.Registry;
using static TorchSharp.torch;

namespace Reference.Torch.Attention;

/// <summary>
/// MoBA (proofs/attention-sparse.md, Definition: MoBA) as batched tensor code: the chunks' mean keys, the gate q . mean
/// for every query and chunk at once, -Inf for chunks not complete at the query and +Inf for its own chunk, the top
/// min(top_k, nc) chunks by the ranking rule, and attention under the resulting boolean mask (selected chunk and j &lt;= t)
/// through <see cref="TorchAttention.Attend"/> (SDPA).
/// </summary>
/// <remarks>
/// The gate is computed in float64 (the inputs widened exactly), the mean as the chunk's sum divided by its length, and
/// q . mean accumulated over d from d = 0 up, one batched tensor operation per d: the reference's order, so that
/// chunks whose gates tie exactly tie here too. The selection then follows the ranking rule exactly: chunk c's rank is
/// the number of chunks with a larger gate plus the number of lower-indexed chunks with an equal one, and c is selected
/// when its rank is below min(top_k, nc). (<c>torch.topk</c> promises no order among ties, and MoBA's validator judges
/// the outputs under the reference's selection.)
/// </remarks>
public static class MobaTorch
{
    /// <summary>MoBA of the call's q, k, v on its device.</summary>
    /// <param name="call">The bound call (q, k, v).</param>
    /// <param name="options">Chunk size, top_k, scale.</param>
    /// <returns>out [B, H, T, Dv] and lse [B, H, T].</returns>
    public static AttentionOutput Run(AlgorithmCall call, MobaOptions options)
    {
        ArgumentNullException.ThrowIfNull(call);
        ArgumentNullException.ThrowIfNull(options);
        TorchAttention.Validate(call, options.Scale, 0.0);
        if (options.ChunkSize < 1) throw new ArgumentException($"chunk size must be >= 1, got {options.ChunkSize}", "chunk_size");
        if (options.TopK < 1) throw new ArgumentException($"top_k must be >= 1, got {options.TopK}", "top_k");
        var device = TorchDevice.For(call.Device);
        using var scope = NewDisposeScope();
        var q = TorchAttention.Floats(call, "q", device);
        var k = TorchAttention.Floats(call, "k", device);
        var v = TorchAttention.Floats(call, "v", device);
        var allowed = Mask(TorchAttention.Doubles(call, "q", device), TorchAttention.Doubles(call, "k", device), options);
        return TorchAttention.Attend(q, k, v, allowed, options.Scale, 0.0, TorchAttention.ComputeType(call));
    }

    /// <summary>The keys each query attends: bool [B, H, T, T].</summary>
    /// <param name="q">Queries [B, H, T, D], float64.</param>
    /// <param name="k">Keys [B, H, T, D], float64.</param>
    /// <param name="options">Chunk size and top_k.</param>
    /// <returns>allowed[b, h, t, j] = j &lt;= t and chunk(j) selected for (b, h, t).</returns>
    internal static Tensor Mask(Tensor q, Tensor k, MobaOptions options)
    {
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], d = q.shape[3], bc = options.ChunkSize;
        long chunks = (t + bc - 1) / bc, keep = Math.Min(options.TopK, chunks);
        var device = q.device;

        // 1. Mean keys [B, H, nc, D]: zero-padded to nc * Bc, summed per chunk, divided by the chunk's length.
        var padded = nn.functional.pad(k, [0, 0, 0, chunks * bc - t]);
        var sums = padded.view(b, h, chunks, bc, d).sum(3);
        var starts = arange(chunks, ScalarType.Int64, device) * bc;
        var lengths = (starts + bc).clamp_max(t) - starts;
        var mean = sums / lengths.to(ScalarType.Float64).view(1, 1, chunks, 1);

        // 2. Gates [B, H, T, nc], accumulated over d in the reference's order.
        var gate = zeros([b, h, t, chunks], ScalarType.Float64, device);
        for (long e = 0; e < d; e++)
        {
            gate = gate + q.select(3, e).unsqueeze(-1) * mean.select(3, e).unsqueeze(2);
        }
        var position = arange(t, ScalarType.Int64, device).view(t, 1);                      // t  [T, 1]
        var chunk = arange(chunks, ScalarType.Int64, device).view(1, chunks);               // c  [1, nc]
        gate = gate.masked_fill(position < (chunk + 1) * bc, double.NegativeInfinity);     // not complete at t
        gate = gate.masked_fill(chunk == position.div(bc, rounding_mode: RoundingMode.floor), double.PositiveInfinity);

        // 3. Ranking rule: rank(c) = #{c' : g[c'] > g[c]} + #{c' < c : g[c'] == g[c]}; selected when rank < keep.
        var gi = gate.unsqueeze(-1);   // g[c]  [.., nc, 1]
        var gj = gate.unsqueeze(-2);   // g[c'] [.., 1, nc]
        var lower = (chunk.view(1, chunks) < chunk.view(chunks, 1)).view(1, 1, 1, chunks, chunks);   // c' < c
        var ahead = (gj > gi).logical_or((gj == gi).logical_and(lower));
        var selected = ahead.sum(-1) < keep;                                                 // [B, H, T, nc]

        // 4. Key j allowed when its chunk is selected and j <= t.
        var keyChunk = arange(t, ScalarType.Int64, device).div(bc, rounding_mode: RoundingMode.floor);
        var causal = arange(t, ScalarType.Int64, device).view(1, t) <= position;
        return selected.index_select(3, keyChunk).logical_and(causal);
    }
}
