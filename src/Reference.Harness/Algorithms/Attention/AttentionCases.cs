using System.Globalization;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Numerics;

namespace Reference.Harness.Algorithms;

/// <summary>The generated cases of <c>attention</c>, and the random q, k, v, masks and parameters the other attention
/// entries draw theirs from.</summary>
internal static class AttentionCases
{
    /// <summary>
    /// A random case: GQA groups 1..3, Tq and Tk independent (awkward lengths), float32, float16, bfloat16 or float64
    /// inputs, values uniform, on a coarse grid (exact ties) or sharp; causal, windows, softcap, scale and a broadcast
    /// mask (sometimes with an empty row) at random.
    /// </summary>
    internal static GeneratedCase Generate(int seed)
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
            {
                for (int j = 0; j < tkm; j++)
                    mask[(a * tqm + row) * tkm + j] = false;
            }
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
