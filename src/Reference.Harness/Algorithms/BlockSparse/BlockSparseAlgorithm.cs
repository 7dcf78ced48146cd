using Reference.Attention;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Kernels.Attention;

namespace Reference.Harness.Algorithms;

/// <summary>The registry entry for <c>block-sparse</c>: attention under a FlexAttention BlockMask (SEMANTICS.md sections 10 and 12).</summary>
/// <remarks>
/// Float outputs are judged like <c>attention</c>'s (<see cref="AttentionTolerance"/>); the baseline in the
/// candidate's precision is dense attention under the block mask's expanded mask, which block-sparse attention equals exactly
/// (proofs/attention.md, attention.block-sparse-equivalence).
/// </remarks>
public static class BlockSparseAlgorithm
{
    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = new()
    {
        Name = "block-sparse",
        Summary = "block-sparse attention with FlexAttention BlockMask semantics (partial and full tiles, element mask)",
        Section = "SEMANTICS.md section 10",
        Parameters =
        [
            new ParameterSpec("block_q", ParameterKind.Int, "128", "query tile size QB, >= 1"),
            new ParameterSpec("block_k", ParameterKind.Int, "128", "key tile size KB, >= 1"),
            new ParameterSpec("scale", ParameterKind.Double, null, "score scale; absent means 1/sqrt(D)"),
            new ParameterSpec("softcap", ParameterKind.Double, "0", "c > 0 maps a score s to c*tanh(s/c) before masking; 0 none"),
        ],
        Inputs =
        [
            new InputSpec("q", "B,Hq,Tq,D", ArrayKind.Float, false, "queries"),
            new InputSpec("k", "B,Hkv,Tk,D", ArrayKind.Float, false, "keys; Hkv divides Hq"),
            new InputSpec("v", "B,Hkv,Tk,Dv", ArrayKind.Float, false, "values"),
            new InputSpec("kv_num_blocks", "Bm,Hm,nq", ArrayKind.Integer, false,
                "partial tiles listed per query tile; Bm in {1,B}, Hm in {1,Hq}, nq = ceil(Tq/QB)"),
            new InputSpec("kv_indices", "Bm,Hm,nq,nk", ArrayKind.Integer, false,
                "partial key-tile indices, the first kv_num_blocks strictly ascending; nk = ceil(Tk/KB)"),
            new InputSpec("full_kv_num_blocks", "Bm,Hm,nq", ArrayKind.Integer, true, "full tiles listed per query tile (element mask skipped)"),
            new InputSpec("full_kv_indices", "Bm,Hm,nq,nk", ArrayKind.Integer, true, "full key-tile indices; given with full_kv_num_blocks"),
            new InputSpec("mask", "_,_,_,_", ArrayKind.Bool, true, "element mask inside partial tiles, broadcastable to [B,Hq,Tq,Tk]"),
        ],
        Outputs =
        [
            new OutputSpec("out", "B,Hq,Tq,Dv", ArrayKind.Float, OutputComparison.Tolerance, "softmax-weighted values; 0 for a row with no allowed key"),
            new OutputSpec("lse", "B,Hq,Tq", ArrayKind.Float, OutputComparison.Tolerance, "natural log of the sum of exp over allowed keys; -Inf for an empty row"),
        ],
        Reference = call =>
        {
            var mask = Mask(call);
            var result = BlockSparseAttention.Compute(
                AttentionArrays.Double4(call, "q"), AttentionArrays.Double4(call, "k"), AttentionArrays.Double4(call, "v"),
                mask, AttentionArrays.OptionalBool4(call, "mask"), call.Parameters.TryGetDouble("scale"), call.Parameters.GetDouble("softcap"));
            return AttentionAlgorithm.Outputs(result);
        },
        Paths =
        [
            new OptimizedPath("kernel", "float32 FlashAttention-2 walking the block mask's tiles (absent tiles skipped), parallel",
                call => AttentionAlgorithm.Kernel(call, KernelOptions(call), 1)),
            new OptimizedPath("split-kv", $"float32 flash-decoding over the block mask: {AttentionAlgorithm.Splits} groups of key tiles merged by lse",
                call => AttentionAlgorithm.Kernel(call, KernelOptions(call), AttentionAlgorithm.Splits)),
        ],
        CompareInContext = new BlockSparseValidator(),
        Generate = Generate,
    };

    /// <summary>The BlockMask from the call's arrays and tile sizes; argument names in messages are the CLI's array names.</summary>
    /// <exception cref="ArgumentException">The lists are invalid (out of range, not ascending, a tile both partial and full).</exception>
    public static BlockMask Mask(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        var q = call.Array("q");
        var k = call.Array("k");
        bool hasFull = call.Has("full_kv_num_blocks"), hasFullIndices = call.Has("full_kv_indices");
        if (hasFull != hasFullIndices)
        {
            throw new InputException($"{call.Source}: full_kv_num_blocks and full_kv_indices must be given together");
        }
        try
        {
            return new BlockMask(
                AttentionArrays.Int3(call, "kv_num_blocks"), AttentionArrays.Int4(call, "kv_indices"),
                hasFull ? AttentionArrays.Int3(call, "full_kv_num_blocks") : null,
                hasFull ? AttentionArrays.Int4(call, "full_kv_indices") : null,
                call.Parameters.GetInt("block_q"), call.Parameters.GetInt("block_k"), q.Shape[2], k.Shape[2]);
        }
        catch (ArgumentException e)
        {
            // The reference's names are C# parameter names; the CLI user knows the arrays and parameters.
            string message = e.Message;
            int note = message.IndexOf(" (Parameter '", StringComparison.Ordinal);
            if (note >= 0) message = message[..note];
            message = message.Replace("fullKvNumBlocks", "full_kv_num_blocks", StringComparison.Ordinal)
                .Replace("fullKvIndices", "full_kv_indices", StringComparison.Ordinal)
                .Replace("kvNumBlocks", "kv_num_blocks", StringComparison.Ordinal)
                .Replace("kvIndices", "kv_indices", StringComparison.Ordinal)
                .Replace("blockQ", "block_q", StringComparison.Ordinal)
                .Replace("blockK", "block_k", StringComparison.Ordinal);
            throw new ArgumentException(message, e.ParamName, e);
        }
    }

    private static FlashAttentionOptions KernelOptions(AlgorithmCall call) => new()
    {
        Scale = call.Parameters.TryGetDouble("scale") is double s ? (float)s : null,
        Softcap = (float)call.Parameters.GetDouble("softcap"),
        Mask = AttentionAlgorithm.FlatMaskOf(call, "mask"),
        BlockMask = Mask(call),
    };

    /// <summary>
    /// A random case: the q, k, v of <c>attention</c>'s generator, awkward tile sizes, each tile absent, partial or full
    /// at random, index entries past the counts filled with garbage (which must be ignored), sometimes no full lists,
    /// sometimes an element mask.
    /// </summary>
    private static GeneratedCase Generate(int seed)
    {
        var rng = new Random(seed);
        var (inputs, dims, text) = AttentionAlgorithm.RandomQkv(rng);
        int[] tiles = [1, 2, 3, 4, 5, 16, 128];
        int bq = tiles[rng.Next(tiles.Length)], bk = tiles[rng.Next(tiles.Length)];
        var parameters = new Dictionary<string, string>
        {
            ["block_q"] = AttentionAlgorithm.Text(bq),
            ["block_k"] = AttentionAlgorithm.Text(bk),
        };
        AttentionAlgorithm.RandomScaleAndSoftcap(rng, parameters);

        int bm = rng.Next(2) == 0 ? 1 : dims.B, hm = rng.Next(2) == 0 ? 1 : dims.Hq;
        int nq = (dims.Tq + bq - 1) / bq, nk = (dims.Tk + bk - 1) / bk;
        bool withFull = rng.Next(4) != 0;
        var counts = new int[bm * hm * nq];
        var indices = new int[bm * hm * nq * nk];
        var fullCounts = new int[bm * hm * nq];
        var fullIndices = new int[bm * hm * nq * nk];
        for (int n = 0; n < indices.Length; n++)
        {
            indices[n] = rng.Next(-3, nk + 3);
            fullIndices[n] = rng.Next(-3, nk + 3);
        }
        double density = rng.NextDouble();
        for (int row = 0; row < counts.Length; row++)
            for (int c = 0; c < nk; c++)
            {
                if (rng.NextDouble() >= density) continue;
                if (withFull && rng.Next(2) == 0) fullIndices[row * nk + fullCounts[row]++] = c;
                else indices[row * nk + counts[row]++] = c;
            }
        inputs["kv_num_blocks"] = NdArray.Create(counts, bm, hm, nq);
        inputs["kv_indices"] = NdArray.Create(indices, bm, hm, nq, nk);
        if (withFull)
        {
            inputs["full_kv_num_blocks"] = NdArray.Create(fullCounts, bm, hm, nq);
            inputs["full_kv_indices"] = NdArray.Create(fullIndices, bm, hm, nq, nk);
        }
        if (rng.Next(2) == 0)
        {
            inputs["mask"] = AttentionAlgorithm.RandomMask(rng, dims.B, dims.Hq, dims.Tq, dims.Tk);
        }
        string name = $"seed {seed}: {text} QB={bq} KB={bk}{(withFull ? " full" : "")}{(inputs.ContainsKey("mask") ? " mask" : "")} "
                      + string.Join(" ", parameters.Where(kv => kv.Key is "scale" or "softcap").Select(kv => $"{kv.Key}={kv.Value}"));
        return new GeneratedCase(name, inputs, parameters);
    }
}
