using Reference.Harness.Comparison;
using Reference.Harness.Registry;
using Reference.Numerics;
using Reference.Routing;

namespace Reference.Harness.Algorithms;

/// <summary>
/// Judges a SoftTopk candidate's y and Jacobian against the reference with a tolerance derived from the call (k, tau,
/// the scale of x, the method) and the candidate's precision, instead of a fixed preset: the error any implementation
/// must have grows like u / tau, so no fixed atol fits every tau (proofs/softtopk.md, theorem softtopk.kernel-equals-reference).
/// </summary>
/// <remarks>
/// <para>Write tau' = tau (threshold) or tau/2 (entropic), and S' = max_e |x_e| + tau (ln E + 1) (threshold) or
/// 1 + tau' (ln E + 1) (entropic, whose scores are normalized to [0, 1]); S' bounds the magnitude of the scores and of
/// the threshold. An implementation that rounds to unit roundoff u has, per entry of y, an error of at most
/// eps(u) = u ((S' + 2) / (2 tau') + E (k + 6) + 5) for the threshold operator: a threshold resolved to adjacent
/// doubles (2u S') moves each y_e by at most 2u S' / (4 tau') (sigmoid' &lt;= 1/4); the computed sum of the E sigmoids,
/// which decides the threshold, is off by at most E (k + 6) u, and no single y_e moves more than the sum does;
/// evaluating one sigmoid costs 5u more. The entropic operator adds u (10 / (2 tau') + 2 ln E + 5): its sigmoid argument
/// (g_1 - C_e1 + C_e0)/tau is assembled from the normalized scores (3u) and the costs (up to 9u) by subtractions of
/// numbers of magnitude up to |g_1| + 1, and its log-domain row update exp(z_1 - logsumexp(z_0, z_1)) rounds
/// exponents of magnitude up to (|g_1| + 1)/tau (proofs/softtopk.md, the reference-accuracy lemma). The candidate's y
/// must lie within eps(u_candidate) + eps(2^-53) of the reference's (the second term is the reference's own error).</para>
/// <para>The Jacobian is compared after scaling row i by tau' R_i (R_i = max - min of the row for the entropic operator,
/// 1 for the threshold one), which makes it dimensionless with entries of magnitude at most 5/4; the same perturbation
/// of the sigmoid arguments that moves y by eps moves each scaled entry by at most 16 eps (q = y (1 - y) and the
/// rank-one term each move by at most 3 times the error of y, and the normalization's chain rule adds at most 5 such
/// terms).</para>
/// </remarks>
public sealed class SoftTopKValidator : IValidator
{
    /// <summary>Judges y and jacobian (those the candidate contains) with <see cref="Validate"/>.</summary>
    /// <param name="context">The call, reference outputs and candidate outputs.</param>
    /// <returns>One report for each of y and jacobian that the candidate contains.</returns>
    public IReadOnlyList<ComparisonReport> Judge(CheckContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var call = context.Call;
        return Validate(
            call.Matrix("x"), SoftTopKAlgorithm.Options(call), context.Expected["y"].ToDoubles(),
            context.Expected.TryGetValue("jacobian", out var ej) ? ej.ToDoubles() : null,
            context.Candidate.TryGetValue("y", out var y) ? y.ToDoubles() : null,
            context.Candidate.TryGetValue("jacobian", out var j) ? j.ToDoubles() : null,
            context.FormatOf);
    }

    private static double MaxScale(double[] scale) => scale.Length == 0 ? 0.0 : scale.Max();

    /// <summary>The derived bound eps(u) on the error of one entry of y, for one row.</summary>
    /// <param name="row">The row of x (any length E &gt;= 2).</param>
    /// <param name="k">k.</param>
    /// <param name="tau">tau.</param>
    /// <param name="method">The operator.</param>
    /// <param name="unitRoundoff">u of the implementation's precision.</param>
    /// <returns>eps(u) = u ((S' + 2) / (2 tau') + E (k + 6) + 5), plus u (10 / (2 tau') + 2 ln E + 5) for the entropic
    /// operator.</returns>
    public static double OutputError(IReadOnlyList<double> row, int k, double tau, SoftTopKMethod method, double unitRoundoff)
    {
        ArgumentNullException.ThrowIfNull(row);
        int e = row.Count;
        bool entropic = method == SoftTopKMethod.Entropic;
        double tauPrime = entropic ? tau / 2 : tau;
        double scale = entropic ? 1.0 : row.Max(Math.Abs);
        double s = scale + tauPrime * (Math.Log(e) + 1.0);
        double entropicExtra = entropic ? 10.0 / (2.0 * tauPrime) + 2.0 * Math.Log(e) + 5.0 : 0.0;
        return unitRoundoff * ((s + 2.0) / (2.0 * tauPrime) + (double)e * (k + 6) + 5.0 + entropicExtra);
    }

    /// <summary>The factor tau' R_i that makes row i of the Jacobian dimensionless (R_i = 1 for the threshold operator,
    /// and for a constant row of the entropic one).</summary>
    /// <param name="row">The row of x.</param>
    /// <param name="tau">tau.</param>
    /// <param name="method">The operator.</param>
    public static double JacobianScale(IReadOnlyList<double> row, double tau, SoftTopKMethod method)
    {
        ArgumentNullException.ThrowIfNull(row);
        if (method != SoftTopKMethod.Entropic)
        {
            return tau;
        }
        double range = row.Max() - row.Min();
        return tau / 2 * (range > 0 && double.IsFinite(range) ? range : 1.0);
    }

    /// <summary>Compares candidate y and/or Jacobian with the reference's.</summary>
    /// <param name="x">X [N, E].</param>
    /// <param name="options">k, tau, method.</param>
    /// <param name="expectedY">The reference's y [N * E].</param>
    /// <param name="expectedJacobian">The reference's Jacobian [N * E * E], or null.</param>
    /// <param name="y">The candidate's y [N * E], or null.</param>
    /// <param name="jacobian">The candidate's Jacobian [N * E * E], or null.</param>
    /// <param name="formatOf">The precision each candidate array (y, jacobian) is judged in.</param>
    /// <returns>One report for each array the candidate has (and the reference has).</returns>
    public static IReadOnlyList<ComparisonReport> Validate(
        double[,] x, SoftTopKOptions options, double[] expectedY, double[]? expectedJacobian, double[]? y, double[]? jacobian,
        Func<string, NumberFormat> formatOf)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(expectedY);
        int n = x.GetLength(0), e = x.GetLength(1);
        double u64 = Precision.UnitRoundoff(NumberFormat.Float64);

        // 1. The largest per-row bound on y for a computation in the given format, and the per-row scale of the Jacobian.
        var scale = new double[n];
        double YBound(NumberFormat format)
        {
            double u = Precision.UnitRoundoff(format == NumberFormat.Float64 ? NumberFormat.Float64 : NumberFormat.Float32), largest = 0.0;
            var row = new double[e];
            for (int i = 0; i < n; i++)
            {
                for (int j = 0; j < e; j++)
                {
                    row[j] = x[i, j];
                }
                largest = Math.Max(largest, OutputError(row, options.K, options.Tau, options.Method, u)
                    + OutputError(row, options.K, options.Tau, options.Method, u64));
            }
            return largest;
        }
        for (int i = 0; i < n; i++)
        {
            var row = new double[e];
            for (int j = 0; j < e; j++)
            {
                row[j] = x[i, j];
            }
            scale[i] = JacobianScale(row, options.Tau, options.Method);
        }

        // A float16/bfloat16 (or float32) candidate is modelled as torch computes it: float32 throughout, the result
        // rounded once to the format it carries (relative u_v). A float64 candidate: the bound with its own u.
        double uc(NumberFormat format) => Precision.UnitRoundoff(format == NumberFormat.Float64 ? NumberFormat.Float64 : NumberFormat.Float32);
        double Carried(NumberFormat format) => format == NumberFormat.Float64 ? 0.0 : Precision.UnitRoundoff(format);
        double Floor(NumberFormat format) => 2.0 * Carried(format) * Precision.SmallestNormal(format);
        var reports = new List<ComparisonReport>();
        if (y is not null)
        {
            var format = formatOf("y");
            var policy = new AllClosePolicy(YBound(format) + Floor(format), Carried(format));
            reports.Add(policy.Compare("y", y, expectedY, new[] { n, e }) with { Detail = Detail(format, policy) });
        }
        if (jacobian is not null && expectedJacobian is not null)
        {
            // 2. Scale row i by tau' R_i on both sides; the bound is 16 times the bound on y, plus the result's rounding.
            var c = new double[jacobian.Length];
            var r = new double[expectedJacobian.Length];
            for (int f = 0; f < c.Length && f < r.Length; f++)
            {
                double s = scale[f / (e * e)];
                c[f] = jacobian[f] * s;
                r[f] = expectedJacobian[f] * s;
            }
            var format = formatOf("jacobian");
            var policy = new AllClosePolicy(16.0 * YBound(format) + Floor(format) * MaxScale(scale), Carried(format));
            reports.Add(policy.Compare("jacobian * tau' R (dimensionless)", c, r, new[] { n, e, e }) with { Detail = Detail(format, policy) });
        }
        string Detail(NumberFormat format, AllClosePolicy policy) =>
            $"computation in {(uc(format) == Precision.UnitRoundoff(NumberFormat.Float64) ? "float64" : "float32")}, "
            + $"rounded to {FormatNames.Short(format)} (atol={ComparisonReport.Number(policy.Atol)}, rtol={ComparisonReport.Number(policy.Rtol)})";
        return reports;
    }
}
