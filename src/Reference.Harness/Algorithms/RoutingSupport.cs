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
    /// <summary>The capacity, capacity_factor, rounding and min_capacity parameters (proofs/capacity.md, Definition: Capacity rule),
    /// declared against an options record.</summary>
    /// <typeparam name="TOptions">The options record.</typeparam>
    /// <param name="capacity">Sets the explicit capacity (null when absent).</param>
    /// <param name="factor">Sets the capacity factor.</param>
    /// <param name="rounding">Sets the rounding.</param>
    /// <param name="minCapacity">Sets the minimum capacity.</param>
    internal static Parameter<TOptions>[] CapacityRuleParameters<TOptions>(
        Func<TOptions, int?, TOptions> capacity, Func<TOptions, double, TOptions> factor,
        Func<TOptions, CapacityRounding, TOptions> rounding, Func<TOptions, int, TOptions> minCapacity) =>
    [
        Param<TOptions>.OptionalInt("capacity", "explicit expert capacity C >= 0, used as given; absent: from capacity_factor", capacity),
        Param<TOptions>.Double("capacity_factor", "1.0", "cf: C = rounding(cf N k / E), computed exactly", factor),
        Param<TOptions>.Choice("rounding", "ceil",
            "ceil (exact; Megatron, DeepSpeed), floor (mesh), round (flaxformer, half to even), tutel (k floor(cf ceil(N/E))), "
            + "ceil-f32 (DeepSpeed's _capacity as it runs: ceil(fl32(fl32(N/E) fl32(cf k))))",
            [("ceil", CapacityRounding.Ceil), ("floor", CapacityRounding.Floor), ("round", CapacityRounding.Round),
             ("tutel", CapacityRounding.Tutel), ("ceil-f32", CapacityRounding.CeilF32)], rounding),
        Param<TOptions>.Int("min_capacity", "0", "the factor rule gives at least this", minCapacity),
    ];

    /// <summary>The score parameter (softmax or sigmoid), declared against an options record.</summary>
    /// <typeparam name="TOptions">The options record.</typeparam>
    /// <param name="set">Sets the score function on the options.</param>
    internal static Parameter<TOptions> ScoreParameter<TOptions>(Func<TOptions, ScoreFunction, TOptions> set) =>
        Param<TOptions>.Choice("score", "softmax", "softmax over experts, or element-wise sigmoid",
            [("softmax", ScoreFunction.Softmax), ("sigmoid", ScoreFunction.Sigmoid)], set);

    /// <summary>Runs <paramref name="body"/> for every item 0..count-1 (experts, say) in parallel, each with its own list of
    /// problems, and then passes the problems to <paramref name="fail"/> in item order, so that the report does not depend on
    /// the schedule. Each item keeps at most <paramref name="maxPerItem"/> problems.</summary>
    /// <param name="count">The number of items.</param>
    /// <param name="body">The work of one item: its index, and where it reports a problem.</param>
    /// <param name="fail">Receives the problems, in item order.</param>
    /// <param name="maxPerItem">The most problems kept from one item.</param>
    internal static void ForEachInOrder(int count, Action<int, Action<string>> body, Action<string> fail, int maxPerItem = 20)
    {
        var found = new List<string>[count];
        Parallel.For(0, count, x =>
        {
            var list = new List<string>();
            body(x, message =>
            {
                if (list.Count < maxPerItem)
                {
                    list.Add(message);
                }
            });
            found[x] = list;
        });
        foreach (var message in found.SelectMany(list => list))
        {
            fail(message);
        }
    }

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
    /// when its routing is valid, else with the reference's, under <see cref="WeightsPolicy"/> of its precision, with
    /// <paramref name="experts"/> scores per row (E) and the output's last dimension (k) as the reductions' lengths.</summary>
    internal static ComparisonReport FloatReport(
        string name, NdArray candidate, NdArray reference, RoutingCheck check, Reference.Numerics.NumberFormat format, int experts)
    {
        var expected = check.Valid ? Flat(check.ExpectedWeights) : reference.ToDoubles();
        int k = reference.Shape.Count > 0 ? reference.Shape[^1] : 1;
        return WeightsReport(name, candidate.ToDoubles(), expected, reference.Shape, format, experts + k, check.Valid ? check.RowSums : null);
    }

    /// <summary>
    /// The tolerance for routing weights and gates (scores at the chosen experts, softmax or sigmoid, optionally
    /// renormalized over the k chosen) of a candidate whose values carry <paramref name="format"/>; proofs/topk.md,
    /// theorem topk.weights-tolerance.
    /// </summary>
    /// <param name="format">The precision the weights carry.</param>
    /// <param name="terms">E + k: the lengths of the two sums (softmax denominator, renormalization).</param>
    /// <returns>
    /// Float64: the preset <see cref="AllClosePolicy.For"/>. Otherwise the candidate model of torch routers (HF Mixtral,
    /// DeepSeek, vLLM fused_topk): scores and renormalization in float32 (u_c = 2^-24), the result rounded to its format
    /// (u_v). First-order running bound: each weight has relative error (terms + 6)·u_c plus |x - m|·u_c from the
    /// exponent's argument, and w·|x - m| &lt;= 1/e, hence atol = u_c; rounding to float16/bfloat16 adds u_v per rounding,
    /// and a candidate may round twice (scores stored in its format, then renormalized and rounded again; measured
    /// 2.84 u_v), hence 3 u_v; the subnormal floor 2 u_v·(smallest normal) covers gradual underflow.
    /// Measured over torch-like orders (proofs/topk.md): rounding once stays below 1.0 u_v, rounding twice below 2.9 u_v.
    /// bfloat16: rtol = 1.17e-2 (3 u_v, was the torch preset 1.6e-2); float16: 1.47e-3 (was 1e-3, which a candidate that
    /// renormalizes in float16 exceeds); float32: (terms + 6)·u_c, atol 6e-8 (was 1e-5).
    /// </returns>
    internal static AllClosePolicy WeightsPolicy(Reference.Numerics.NumberFormat format, int terms)
    {
        if (format == Reference.Numerics.NumberFormat.Float64)
        {
            return AllClosePolicy.For(format);
        }
        double uc = Reference.Numerics.Precision.UnitRoundoff(Reference.Numerics.NumberFormat.Float32);
        double uv = Reference.Numerics.Precision.UnitRoundoff(format);
        bool coarser = format != Reference.Numerics.NumberFormat.Float32;
        double rtol = (coarser ? WeightsRoundings * uv : 0.0) + (terms + 6) * uc;
        double atol = uc + 2.0 * uv * Reference.Numerics.Precision.SmallestNormal(format);
        return new AllClosePolicy(atol, rtol);
    }

    /// <summary>How many roundings to its own format a float16/bfloat16 weight may carry (see <see cref="WeightsPolicy"/>).</summary>
    internal const double WeightsRoundings = 3.0;

    /// <summary>
    /// Compares weights under <see cref="WeightsPolicy"/>, the bound's inputs in the detail. With
    /// <paramref name="rowSums"/> (renormalized weights: per row, the sum of the raw scores the row renormalizes), each
    /// row's atol also carries <see cref="RenormalizationFloor"/>.
    /// </summary>
    internal static ComparisonReport WeightsReport(
        string name, ReadOnlySpan<double> candidate, ReadOnlySpan<double> expected, IReadOnlyList<int> shape,
        Reference.Numerics.NumberFormat format, int terms, IReadOnlyList<double>? rowSums = null)
    {
        var policy = WeightsPolicy(format, terms);
        string detail = $"weights in {FormatNames.Short(format)}: float32 computation with {terms} summed terms, "
                        + $"rounded to the output format (atol={ComparisonReport.Number(policy.Atol)}, rtol={ComparisonReport.Number(policy.Rtol)})";
        int cols = shape.Count > 0 ? Math.Max(1, shape[^1]) : 1;
        if (rowSums is null || format == Reference.Numerics.NumberFormat.Float64 || rowSums.Count * cols != expected.Length)
        {
            return policy.Compare(name, candidate, expected, shape) with { Detail = detail };
        }
        var floors = rowSums.Select(sum => RenormalizationFloor(format, cols, sum)).ToArray();
        double atol = policy.Atol, rtol = policy.Rtol;
        double Allowed(int i, double r) => atol + floors[i / cols] + rtol * Math.Abs(r);
        double largest = floors.Length == 0 ? 0.0 : floors.Max();
        if (largest > 0.0)
        {
            detail += $"; renormalized from stored subnormal scores: per-row atol up to +{ComparisonReport.Number(largest)}";
        }
        return Elementwise.Compare(name, policy.Name, candidate, expected, shape,
            (i, c, r) => !(Math.Abs(c - r) <= Allowed(i, r)), detail, Allowed);
    }

    /// <summary>
    /// The absolute error a renormalized float16/bfloat16 weight may carry from scores stored in its format before the
    /// renormalization (DeepSeek-style sigmoid routers: <c>scores = logits.sigmoid()</c> in the model's dtype) when those
    /// scores are subnormal: each stored score is off by up to u_v·(smallest normal) absolutely, and dividing by the row's
    /// sum s turns that into (k + 1)·u_v·(smallest normal) / s in each weight (its numerator and the sum). Zero for
    /// float32/float64 (scores kept in float32) and for rows whose scores are all normal (then the relative rtol covers it);
    /// proofs/topk.md, theorem topk.weights-tolerance.
    /// </summary>
    /// <param name="format">The precision the weights carry.</param>
    /// <param name="k">The number of renormalized weights in the row.</param>
    /// <param name="sum">The sum of the row's raw scores (before renormalization).</param>
    internal static double RenormalizationFloor(Reference.Numerics.NumberFormat format, int k, double sum)
    {
        if (format is not (Reference.Numerics.NumberFormat.Float16 or Reference.Numerics.NumberFormat.BFloat16)
            || !(sum > 0.0) || !double.IsFinite(sum))
        {
            return 0.0;
        }
        double smallest = Reference.Numerics.Precision.SmallestNormal(format);
        return (k + 1) * Reference.Numerics.Precision.UnitRoundoff(format) * smallest / sum;
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
