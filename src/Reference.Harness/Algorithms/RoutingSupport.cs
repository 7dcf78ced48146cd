using System.Globalization;
using Reference.Harness.Comparison;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Routing;

namespace Reference.Harness.Algorithms;

/// <summary>Pieces the routing-suite registry entries share: the capacity-rule parameters, array conversions, reports
/// built from a validator's verdict, and seeded logits.</summary>
internal static class RoutingSupport
{
    /// <summary>The capacity, capacity_factor, rounding and min_capacity parameters (SEMANTICS.md sections 2, 3, 12).</summary>
    internal static ParameterSpec[] CapacityRuleParameters =>
    [
        new ParameterSpec("capacity", ParameterKind.Int, null, "explicit expert capacity C >= 0, used as given; absent: from capacity_factor"),
        new ParameterSpec("capacity_factor", ParameterKind.Double, "1.0", "cf: C = rounding(cf N k / E), computed exactly"),
        new ParameterSpec("rounding", ParameterKind.Choice, "ceil",
            "ceil (exact; Megatron, DeepSpeed), floor (mesh), round (flaxformer, half to even), tutel (k floor(cf ceil(N/E))), "
            + "ceil-f32 (DeepSpeed's _capacity as it runs: ceil(fl32(fl32(N/E) fl32(cf k))))",
            ["ceil", "floor", "round", "tutel", "ceil-f32"]),
        new ParameterSpec("min_capacity", ParameterKind.Int, "0", "the factor rule gives at least this"),
    ];

    /// <summary>The score parameter's value.</summary>
    internal static ScoreFunction Score(AlgorithmCall call) =>
        call.Parameters.GetChoice("score") == "sigmoid" ? ScoreFunction.Sigmoid : ScoreFunction.Softmax;

    /// <summary>The rounding parameter's value.</summary>
    internal static CapacityRounding Rounding(AlgorithmCall call) => call.Parameters.GetChoice("rounding") switch
    {
        "floor" => CapacityRounding.Floor,
        "round" => CapacityRounding.Round,
        "tutel" => CapacityRounding.Tutel,
        "ceil-f32" => CapacityRounding.CeilF32,
        _ => CapacityRounding.Ceil,
    };

    /// <summary>Flat values as an int matrix [rows, cols]; a non-integer value becomes int.MinValue, which every
    /// validator rejects as out of range.</summary>
    internal static int[,] IntMatrix(NdArray array)
    {
        var flat = array.ToDoubles();
        int rows = array.Shape[0], cols = array.Shape[1];
        var m = new int[rows, cols];
        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < cols; j++)
            {
                m[i, j] = AsInt(flat[i * cols + j]);
            }
        }
        return m;
    }

    /// <summary>Flat values as an int vector (non-integers become int.MinValue).</summary>
    internal static int[] IntVector(NdArray array) => array.ToDoubles().Select(AsInt).ToArray();

    private static int AsInt(double v) => v == Math.Floor(v) && v >= int.MinValue && v <= int.MaxValue ? (int)v : int.MinValue;

    /// <summary>The flat doubles of a matrix.</summary>
    internal static double[] Flat<T>(T[,] m) where T : struct, IConvertible
    {
        var flat = new double[m.Length];
        int cols = m.GetLength(1), f = 0;
        for (int i = 0; i < m.GetLength(0); i++)
        {
            for (int j = 0; j < cols; j++)
            {
                flat[f++] = m[i, j].ToDouble(CultureInfo.InvariantCulture);
            }
        }
        return flat;
    }

    /// <summary>
    /// The report for a validated index output: when the validator accepted the candidate, the candidate is its own
    /// expectation (a valid alternative at a tie passes); otherwise it is compared with the reference's array and the
    /// validator's first problems are attached as the report's detail.
    /// </summary>
    internal static ComparisonReport IndexReport(string name, NdArray candidate, NdArray reference, RoutingCheck check)
    {
        var expected = check.Valid ? candidate.ToDoubles() : reference.ToDoubles();
        var report = new ExactPolicy().Compare(name, candidate.ToDoubles(), expected, reference.Shape);
        return check.Valid ? report : report with
        {
            Detail = "invalid routing: " + string.Join("; ", check.Problems.Take(3)),
            // A candidate equal to the reference cannot be invalid; if it ever were, the report must still fail.
            MismatchCount = Math.Max(report.MismatchCount, 1),
        };
    }

    /// <summary>The report for a validated float output: compared with the values the candidate's own choice implies
    /// when its routing is valid, else with the reference's, under the allclose preset of its precision.</summary>
    internal static ComparisonReport FloatReport(
        string name, NdArray candidate, NdArray reference, RoutingCheck check, Reference.Numerics.NumberFormat format)
    {
        var expected = check.Valid ? Flat(check.ExpectedWeights) : reference.ToDoubles();
        return AllClosePolicy.For(format).Compare(name, candidate.ToDoubles(), expected, reference.Shape);
    }

    /// <summary>Seeded logits [N * E] as float32: a coarse grid (exact ties within rows), gaussian, or wide (up to +-30,
    /// where softmax scores underflow in float32).</summary>
    internal static float[] Logits(Random rng, int n, int e, int style)
    {
        var x = new float[n * e];
        for (int f = 0; f < x.Length; f++)
        {
            x[f] = style switch
            {
                0 => rng.Next(-3, 4) * 0.5f,
                1 => (float)(2.0 * TopKAlgorithm.Gaussian(rng)),
                _ => (float)(30.0 * (2.0 * rng.NextDouble() - 1.0)),
            };
        }
        return x;
    }

    /// <summary>Grid logits whose rows are separated in float32 and double alike: multiples of 1/2 in [-4, 4] (proofs/reroute.md).</summary>
    internal static float[] GridLogits(Random rng, int n, int e)
    {
        var x = new float[n * e];
        for (int f = 0; f < x.Length; f++)
        {
            x[f] = rng.Next(-8, 9) * 0.5f;
        }
        return x;
    }

    internal static string Text(int v) => v.ToString(CultureInfo.InvariantCulture);

    internal static string Text(double v) => v.ToString("R", CultureInfo.InvariantCulture);

    internal static readonly int[] TokenChoices = [1, 2, 3, 7, 16, 33, 97];
    internal static readonly int[] ExpertChoices = [1, 2, 3, 4, 7, 8, 16, 64];
}
