using System.Globalization;
using Reference.Attention;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Kernels.Attention;
using Reference.Numerics;

namespace Reference.Harness.Algorithms;

/// <summary>The registry entry for <c>attention</c>: dense attention (SEMANTICS.md sections 10 and 12).</summary>
/// <remarks>
/// Float outputs are judged by <see cref="AttentionTolerance"/>: the calibrated baseline rule for float32, float16 and
/// bfloat16 candidates, the derived error bound of proofs/attention.md for float64 candidates.
/// </remarks>
public static class AttentionAlgorithm
{
    /// <summary>Key tile of the <c>kernel</c> path (and query tile).</summary>
    internal const int KernelTile = 32;

    /// <summary>Key tile of the <c>split-kv</c> path: small, so that small cases still split.</summary>
    internal const int SplitTile = 8;

    /// <summary>Number of key groups of the <c>split-kv</c> path.</summary>
    internal const int Splits = 3;

    /// <summary>The descriptor.</summary>
    public static Algorithm Descriptor { get; } = new()
    {
        Name = "attention",
        Summary = "dense scaled dot-product attention: GQA, causal and sliding windows (bottom-right or top-left aligned), softcap, boolean mask",
        Section = "SEMANTICS.md section 10",
        Parameters =
        [
            new ParameterSpec("causal", ParameterKind.Bool, "false", "key j allowed only when j <= p_i (p_i = i + Tk - Tq, or i when top-left)"),
            new ParameterSpec("causal_align", ParameterKind.Choice, "bottom-right",
                "where query i sits when Tq != Tk, for causal and the window: bottom-right (FlashAttention, p_i = i + Tk - Tq) or top-left (PyTorch SDPA is_causal, torch.tril: p_i = i)",
                ["bottom-right", "top-left"]),
            new ParameterSpec("window_left", ParameterKind.Int, "-1", "keys allowed to the left: j >= p_i - window_left; -1 unbounded"),
            new ParameterSpec("window_right", ParameterKind.Int, "-1", "keys allowed to the right: j <= p_i + window_right; -1 unbounded"),
            new ParameterSpec("scale", ParameterKind.Double, null, "score scale; absent means 1/sqrt(D)"),
            new ParameterSpec("softcap", ParameterKind.Double, "0", "c > 0 maps a score s to c*tanh(s/c) before masking; 0 none"),
        ],
        Inputs =
        [
            new InputSpec("q", "B,Hq,Tq,D", ArrayKind.Float, false, "queries"),
            new InputSpec("k", "B,Hkv,Tk,D", ArrayKind.Float, false, "keys; Hkv divides Hq, query head h reads kv head h/(Hq/Hkv)"),
            new InputSpec("v", "B,Hkv,Tk,Dv", ArrayKind.Float, false, "values"),
            new InputSpec("mask", "_,_,_,_", ArrayKind.Bool, true, "true = allowed, broadcastable to [B,Hq,Tq,Tk] (each dimension 1 or full)"),
        ],
        Outputs =
        [
            new OutputSpec("out", "B,Hq,Tq,Dv", ArrayKind.Float, OutputComparison.Tolerance, "softmax-weighted values; 0 for a row with no allowed key"),
            new OutputSpec("lse", "B,Hq,Tq", ArrayKind.Float, OutputComparison.Tolerance, "natural log of the sum of exp over allowed keys; -Inf for an empty row"),
        ],
        Reference = call =>
        {
            var result = DenseAttention.Compute(
                AttentionArrays.Double4(call, "q"), AttentionArrays.Double4(call, "k"), AttentionArrays.Double4(call, "v"), Options(call));
            return Outputs(result);
        },
        Paths =
        [
            new OptimizedPath("kernel", $"float32 FlashAttention-2 (tiled online softmax, {KernelTile}x{KernelTile} tiles), parallel",
                call => Kernel(call, KernelOptions(call, KernelTile), 1)),
            new OptimizedPath("split-kv", $"float32 flash-decoding: {Splits} key groups of {SplitTile}-key tiles merged by lse, parallel",
                call => Kernel(call, KernelOptions(call, SplitTile), Splits)),
        ],
        CompareInContext = new AttentionValidator(),
        Generate = Generate,
    };

    /// <summary>The reference options from the call's parameters and inputs. Parsed once per call (<see cref="AlgorithmCall.Memo{T}"/>).</summary>
    public static AttentionOptions Options(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return call.Memo(("options", nameof(AttentionAlgorithm)), () => ReadOptions(call));
    }

    private static AttentionOptions ReadOptions(AlgorithmCall call)
    {
        var p = call.Parameters;
        return new AttentionOptions
        {
            Causal = p.GetBool("causal"),
            CausalAlign = CausalAlignments.Parse(p.GetChoice("causal_align")),
            WindowLeft = p.GetInt("window_left"),
            WindowRight = p.GetInt("window_right"),
            Scale = p.TryGetDouble("scale"),
            Softcap = p.GetDouble("softcap"),
            Mask = AttentionArrays.OptionalBool4(call, "mask"),
        };
    }

    /// <summary>The kernel options (tiles of <paramref name="tile"/>) from the call.</summary>
    private static FlashAttentionOptions KernelOptions(AlgorithmCall call, int tile)
    {
        var p = call.Parameters;
        return new FlashAttentionOptions
        {
            Causal = p.GetBool("causal"),
            CausalAlign = CausalAlignments.Parse(p.GetChoice("causal_align")),
            WindowLeft = p.GetInt("window_left"),
            WindowRight = p.GetInt("window_right"),
            Scale = p.TryGetDouble("scale") is double s ? (float)s : null,
            Softcap = (float)p.GetDouble("softcap"),
            BlockQ = tile,
            BlockK = tile,
            Mask = FlatMaskOf(call, "mask"),
        };
    }

    /// <summary>An optional bool input as a kernel mask.</summary>
    internal static FlatMask? FlatMaskOf(AlgorithmCall call, string name)
    {
        if (!call.Has(name)) return null;
        var a = call.Array(name);
        var values = new bool[a.Length];
        for (long i = 0; i < values.LongLength; i++) values[i] = a.GetDouble(i) != 0.0;
        return new FlatMask(values, a.Shape[0], a.Shape[1], a.Shape[2], a.Shape[3]);
    }

    /// <summary>
    /// Runs the FlashAttention kernel (forward when <paramref name="splits"/> = 1, split-KV otherwise) on the call's q, k, v:
    /// float16 and bfloat16 inputs go to the kernel's own overloads (widened exactly), others are read as float32.
    /// Returns out and lse as float32 arrays.
    /// </summary>
    internal static IReadOnlyDictionary<string, NdArray> Kernel(AlgorithmCall call, FlashAttentionOptions options, int splits)
    {
        NdArray q = call.Array("q"), k = call.Array("k"), v = call.Array("v");
        var shape = new AttentionShape(q.Shape[0], q.Shape[1], k.Shape[1], q.Shape[2], k.Shape[2], q.Shape[3], v.Shape[3]);
        var output = new float[checked((int)shape.OutputElements)];
        var lse = new float[checked((int)shape.LseElements)];
        if (q.DType == DType.F16 && k.DType == DType.F16 && v.DType == DType.F16)
        {
            FlashAttention.SplitKv(q.Values<Half>(), k.Values<Half>(), v.Values<Half>(), shape, options, splits, output, lse);
        }
        else if (q.DType == DType.BF16 && k.DType == DType.BF16 && v.DType == DType.BF16)
        {
            FlashAttention.SplitKv(q.Values<BFloat16>(), k.Values<BFloat16>(), v.Values<BFloat16>(), shape, options, splits, output, lse);
        }
        else
        {
            FlashAttention.SplitKv(call.Floats("q"), call.Floats("k"), call.Floats("v"), shape, options, splits, output, lse);
        }
        return new Dictionary<string, NdArray>
        {
            ["out"] = NdArray.Create(output, shape.Batch, shape.QueryHeads, shape.QueryLength, shape.ValueDim),
            ["lse"] = NdArray.Create(lse, shape.Batch, shape.QueryHeads, shape.QueryLength),
        };
    }

    /// <summary>The reference result as output arrays.</summary>
    internal static Dictionary<string, NdArray> Outputs(AttentionResult result) => new()
    {
        ["out"] = AttentionArrays.ToArray(result.Out),
        ["lse"] = AttentionArrays.ToArray(result.Lse),
    };

    /// <summary>
    /// A random case: GQA groups 1..3, Tq and Tk independent (awkward lengths), float32, float16, bfloat16 or float64
    /// inputs, values uniform, on a coarse grid (exact ties) or sharp; causal, windows, softcap, scale and a broadcast
    /// mask (sometimes with an empty row) at random.
    /// </summary>
    private static GeneratedCase Generate(int seed)
    {
        var rng = new Random(seed);
        var (inputs, dims, text) = RandomQkv(rng);
        var parameters = new Dictionary<string, string>();
        if (rng.Next(3) == 0) parameters["causal"] = "true";
        if (rng.Next(3) == 0)
        {
            parameters["window_left"] = Text(rng.Next(-1, dims.Tk + 1));
            parameters["window_right"] = Text(rng.Next(-1, dims.Tk + 1));
        }
        RandomScaleAndSoftcap(rng, parameters);
        if (rng.Next(3) == 0)
        {
            inputs["mask"] = RandomMask(rng, dims.B, dims.Hq, dims.Tq, dims.Tk);
        }
        if (rng.Next(4) == 0 && (parameters.ContainsKey("causal") || parameters.ContainsKey("window_left")))
        {
            parameters["causal_align"] = "top-left";
        }
        string name = $"seed {seed}: {text} {string.Join(" ", parameters.Select(kv => $"{kv.Key}={kv.Value}"))}"
                      + (inputs.ContainsKey("mask") ? " mask" : "");
        return new GeneratedCase(name, inputs, parameters);
    }

    /// <summary>The sizes of a generated case.</summary>
    internal readonly record struct Dims(int B, int Hq, int Hkv, int Tq, int Tk, int D, int Dv);

    /// <summary>Random q, k, v: sizes, dtype and value distribution drawn from <paramref name="rng"/>.</summary>
    internal static (Dictionary<string, NdArray> Inputs, Dims Dims, string Text) RandomQkv(Random rng)
    {
        int[] lengths = [1, 2, 3, 5, 7, 8, 13, 17, 33, 40];
        int[] dimsChoice = [1, 2, 3, 4, 8, 16];
        int b = 1 + rng.Next(2), hkv = 1 + rng.Next(2), group = 1 + rng.Next(3);
        var dims = new Dims(b, hkv * group, hkv, lengths[rng.Next(lengths.Length)], lengths[rng.Next(lengths.Length)],
            dimsChoice[rng.Next(dimsChoice.Length)], dimsChoice[rng.Next(dimsChoice.Length)]);
        string[] kinds = ["uniform", "ties", "sharp"];
        string kind = kinds[rng.Next(kinds.Length)];
        DType[] dtypes = [DType.F32, DType.F32, DType.F16, DType.BF16, DType.F64];
        var dtype = dtypes[rng.Next(dtypes.Length)];
        double Draw() => kind switch
        {
            "ties" => rng.Next(-1, 2),
            "sharp" => rng.NextDouble() * 16.0 - 8.0,
            _ => rng.NextDouble() * 4.0 - 2.0,
        };
        var inputs = new Dictionary<string, NdArray>
        {
            ["q"] = RandomArray(Draw, dtype, dims.B, dims.Hq, dims.Tq, dims.D),
            ["k"] = RandomArray(Draw, dtype, dims.B, dims.Hkv, dims.Tk, dims.D),
            ["v"] = RandomArray(Draw, dtype, dims.B, dims.Hkv, dims.Tk, dims.Dv),
        };
        string text = $"B={dims.B} Hq={dims.Hq} Hkv={dims.Hkv} Tq={dims.Tq} Tk={dims.Tk} D={dims.D} Dv={dims.Dv} {dtype} {kind}";
        return (inputs, dims, text);
    }

    /// <summary>Sometimes a scale (positive, negative or 0.5) and sometimes a softcap.</summary>
    internal static void RandomScaleAndSoftcap(Random rng, Dictionary<string, string> parameters)
    {
        switch (rng.Next(4))
        {
            case 0: parameters["scale"] = "0.5"; break;
            case 1: parameters["scale"] = Text(Math.Round(rng.NextDouble() * 2.0 - 1.0, 3)); break;
        }
        if (rng.Next(3) == 0) parameters["softcap"] = Text(Math.Round(1.0 + 9.0 * rng.NextDouble(), 2));
    }

    /// <summary>A random bool mask of shape [1 or B, 1 or H, 1 or Tq, 1 or Tk] with random density, sometimes with an all-false row.</summary>
    internal static NdArray RandomMask(Random rng, int b, int h, int tq, int tk)
    {
        int bm = rng.Next(2) == 0 ? 1 : b, hm = rng.Next(2) == 0 ? 1 : h;
        int tqm = rng.Next(6) == 0 ? 1 : tq, tkm = rng.Next(6) == 0 ? 1 : tk;
        double density = rng.NextDouble();
        var mask = new bool[bm * hm * tqm * tkm];
        for (int n = 0; n < mask.Length; n++) mask[n] = rng.NextDouble() < density;
        if (rng.Next(3) == 0)
        {
            int row = rng.Next(tqm);
            for (int a = 0; a < bm * hm; a++)
                for (int j = 0; j < tkm; j++)
                    mask[(a * tqm + row) * tkm + j] = false;
        }
        return NdArray.Create(mask, bm, hm, tqm, tkm);
    }

    /// <summary>An array of the given dtype filled by <paramref name="draw"/> (values rounded to the dtype).</summary>
    internal static NdArray RandomArray(Func<double> draw, DType dtype, params int[] shape)
    {
        int n = shape.Aggregate(1, (a, x) => a * x);
        switch (dtype)
        {
            case DType.F16:
                {
                    var x = new Half[n];
                    for (int i = 0; i < n; i++) x[i] = (Half)draw();
                    return NdArray.Create(x, shape);
                }
            case DType.BF16:
                {
                    var x = new BFloat16[n];
                    for (int i = 0; i < n; i++) x[i] = BFloat16.FromDouble(draw());
                    return NdArray.Create(x, shape);
                }
            case DType.F64:
                {
                    var x = new double[n];
                    for (int i = 0; i < n; i++) x[i] = draw();
                    return NdArray.Create(x, shape);
                }
            default:
                {
                    var x = new float[n];
                    for (int i = 0; i < n; i++) x[i] = (float)draw();
                    return NdArray.Create(x, shape);
                }
        }
    }

    /// <summary>A number in invariant culture.</summary>
    internal static string Text(double x) => x.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>An integer in invariant culture.</summary>
    internal static string Text(int x) => x.ToString(CultureInfo.InvariantCulture);
}
