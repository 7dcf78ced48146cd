using Reference.Attention;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Kernels.Attention;

namespace Reference.Harness.Algorithms;

/// <summary>The parameters of <c>block-sparse</c> (the reference takes them as arguments, with the BlockMask built from
/// the tile sizes and the index arrays).</summary>
/// <param name="BlockQ">QB, the query tile size.</param>
/// <param name="BlockK">KB, the key tile size.</param>
/// <param name="Scale">The score scale; null means 1/sqrt(D).</param>
/// <param name="Softcap">c &gt; 0 maps a score s to c tanh(s/c); 0 none.</param>
public sealed record BlockSparseOptions(int BlockQ, int BlockK, double? Scale, double Softcap);

/// <summary>The registry entry for <c>block-sparse</c>: attention under a FlexAttention BlockMask (proofs/attention.md, Definition: Block-sparse attention (BlockMask)).</summary>
/// <remarks>
/// Float outputs are judged like <c>attention</c>'s (<see cref="AttentionTolerance"/>); the baseline in the
/// candidate's precision is dense attention under the block mask's expanded mask, which block-sparse attention equals exactly
/// (proofs/attention.md, attention.block-sparse-equivalence).
/// </remarks>
public static class BlockSparseAlgorithm
{
    /// <summary>The typed declaration.</summary>
    public static AlgorithmEntry<BlockSparseOptions, AttentionOutput> Entry { get; } = new()
    {
        Name = "block-sparse",
        Summary = "block-sparse attention with FlexAttention BlockMask semantics (partial and full tiles, element mask)",
        Section = "proofs/attention.md, Definition: Block-sparse attention (BlockMask)",
        Seed = _ => new BlockSparseOptions(128, 128, null, 0.0),
        Parameters =
        [
            Param<BlockSparseOptions>.Int("block_q", "128", "query tile size QB, >= 1", (o, v) => o with { BlockQ = v }),
            Param<BlockSparseOptions>.Int("block_k", "128", "key tile size KB, >= 1", (o, v) => o with { BlockK = v }),
            Param<BlockSparseOptions>.OptionalDouble("scale", "score scale; absent means 1/sqrt(D)", (o, v) => o with { Scale = v }),
            Param<BlockSparseOptions>.Double("softcap", "0", "c > 0 maps a score s to c*tanh(s/c) before masking; 0 none", (o, v) => o with { Softcap = v }),
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
        Outputs = AttentionAlgorithm.OutputsOf("softmax-weighted values; 0 for a row with no allowed key", "natural log of the sum of exp over allowed keys; -Inf for an empty row"),
        Reference = (call, options) =>
        {
            var mask = Mask(call);
            var result = BlockSparseAttention.Compute(
                AttentionArrays.Double4(call, "q"), AttentionArrays.Double4(call, "k"), AttentionArrays.Double4(call, "v"),
                mask, AttentionArrays.OptionalBool4(call, "mask"), options.Scale, options.Softcap);
            return AttentionAlgorithm.Output(result);
        },
        // Beyond FastReference.AttentionWork: BlockSparseAttentionFast, equal to the reference bit for bit
        // (proofs/attention.md, attention.block-sparse-fast-reference-identical).
        Oracle = (call, options) => AttentionAlgorithm.Output((AttentionAlgorithm.Fast(call)
            ? (Func<double[,,,], double[,,,], double[,,,], BlockMask, bool[,,,]?, double?, double, AttentionResult>)BlockSparseAttentionFast.Compute
            : BlockSparseAttention.Compute)(
            AttentionArrays.Double4(call, "q"), AttentionArrays.Double4(call, "k"), AttentionArrays.Double4(call, "v"),
            Mask(call), AttentionArrays.OptionalBool4(call, "mask"), options.Scale, options.Softcap)),
        Paths =
        [
            new PathOf<BlockSparseOptions, AttentionOutput>("kernel", "float32 FlashAttention-2 walking the block mask's tiles (absent tiles skipped), parallel",
                (call, options) => AttentionAlgorithm.KernelOutput(call, KernelOptions(call, options), 1)),
            new PathOf<BlockSparseOptions, AttentionOutput>("split-kv", $"float32 flash-decoding over the block mask: {AttentionAlgorithm.Splits} groups of key tiles merged by lse",
                (call, options) => AttentionAlgorithm.KernelOutput(call, KernelOptions(call, options), AttentionAlgorithm.Splits)),
        ],
        CompareInContext = new BlockSparseValidator(),
        Generate = Generate,
    };

    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = Entry.ToAlgorithm();

    /// <summary>The call's tile sizes, scale and softcap, parsed once per call.</summary>
    public static BlockSparseOptions Options(AlgorithmCall call) => Entry.Options(call);

    /// <summary>The BlockMask from the call's arrays and tile sizes; argument names in messages are the CLI's array names.</summary>
    /// <exception cref="ArgumentException">The lists are invalid (out of range, not ascending, a tile both partial and full).</exception>
    public static BlockMask Mask(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return call.Memo(("blockmask", nameof(BlockSparseAlgorithm)), () => ReadMask(call));
    }

    private static BlockMask ReadMask(AlgorithmCall call)
    {
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
                Options(call).BlockQ, Options(call).BlockK, q.Shape[2], k.Shape[2]);
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

    private static FlashAttentionOptions KernelOptions(AlgorithmCall call, BlockSparseOptions options) => new()
    {
        Scale = options.Scale is double s ? (float)s : null,
        Softcap = (float)options.Softcap,
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
        var (inputs, dims, text) = AttentionCases.RandomQkv(rng);
        int[] tiles = [1, 2, 3, 4, 5, 16, 128];
        int bq = tiles[rng.Next(tiles.Length)], bk = tiles[rng.Next(tiles.Length)];
        var parameters = new Dictionary<string, string>
        {
            ["block_q"] = AttentionCases.Text(bq),
            ["block_k"] = AttentionCases.Text(bk),
        };
        AttentionCases.RandomScaleAndSoftcap(rng, parameters);

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
        {
            for (int c = 0; c < nk; c++)
            {
                if (rng.NextDouble() >= density) continue;
                if (withFull && rng.Next(2) == 0) fullIndices[row * nk + fullCounts[row]++] = c;
                else indices[row * nk + counts[row]++] = c;
            }
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
            inputs["mask"] = AttentionCases.RandomMask(rng, dims.B, dims.Hq, dims.Tq, dims.Tk);
        }
        string name = $"seed {seed}: {text} QB={bq} KB={bk}{(withFull ? " full" : "")}{(inputs.ContainsKey("mask") ? " mask" : "")} "
                      + string.Join(" ", parameters.Where(kv => kv.Key is "scale" or "softcap").Select(kv => $"{kv.Key}={kv.Value}"));
        return new GeneratedCase(name, inputs, parameters);
    }
}
