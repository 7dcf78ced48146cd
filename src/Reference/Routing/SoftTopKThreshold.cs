namespace Reference.Routing;

/// <summary>
/// The threshold SoftTopk operator (proofs/softtopk.md, Definition: Threshold operator), the reference: double precision, single-threaded,
/// deterministic.
/// </summary>
/// <remarks>
/// <para>For a row x in R^E, 0 &lt; k &lt; E and tau &gt; 0:</para>
/// <para>y_e = sigmoid((x_e - t)/tau), where t is the unique real with sum_e sigmoid((x_e - t)/tau) = k.</para>
/// <para>The left side is continuous and strictly decreasing in t, from E to 0, so t exists and is unique. With
/// L = logit(k/E) = log k - log(E - k), every y_e &gt; k/E at t = min x - tau (L + 1) and every y_e &lt; k/E at
/// t = max x - tau (L - 1), so t lies strictly between; the reference bisects that bracket until its width is at most
/// u max(|t|, tau), u = 2^-53 (about 55 halvings for moderate x; at most about 1100 when the spread of x spans the
/// whole double range), and returns the endpoint whose computed sum is closer to k.</para>
/// <para>Jacobian (implicit differentiation of sum_e y_e = k): with d_e = y_e (1 - y_e)/tau and D = diag(d),
/// dt/dx_b = d_b / sum(d), hence J = dy/dx = D - d d^T / sum(d). It is symmetric, has non-negative diagonal and
/// non-positive off-diagonal entries, and J 1 = 0 (adding a constant to x changes nothing). The reference computes
/// y_e (1 - y_e) as sigmoid(s_e) sigmoid(-s_e), which keeps full relative accuracy where y_e is close to 1, the
/// diagonal as d_a (sum_{b != a} d_b) / sum(d) (no cancellation), and the off-diagonal as -p_a p_b / tau with
/// p = q / sqrt(sum q), so that the computed J is exactly symmetric with exactly signed entries.
/// If every d_e underflows to 0 (tau tiny against the gaps of x) the Jacobian is returned as 0, its limit.</para>
/// <para>Sources: Amos, Koltun and Kolter 2019, "The limited multi-label projection layer" (the sigmoid with a
/// calibrated threshold, solved by bisection); the MaxScore paper's SoftTopk, as this repository fixes it.</para>
/// </remarks>
public static class SoftTopKThreshold
{
    /// <summary>Computes y (and the Jacobian when asked) for every row of x.</summary>
    /// <param name="x">Scores, [N, E], finite, E &gt;= 2.</param>
    /// <param name="options">k, tau and whether to compute the Jacobian; <see cref="SoftTopKOptions.Method"/> is ignored.</param>
    /// <returns>y [N, E], the Jacobian [N, E, E] when asked, the bisection halvings and |sum y - k| per row.</returns>
    /// <exception cref="ArgumentException">x holds NaN or an infinity, k is not in 1..E-1, tau is not a positive
    /// normal double, or x and tau put the threshold outside the range of double.</exception>
    public static SoftTopKResult Compute(double[,] x, SoftTopKOptions options)
    {
        // 1. Check the inputs.
        SoftTopK.Validate(x, options);
        int n = x.GetLength(0), e = x.GetLength(1), k = options.K;
        double tau = options.Tau;

        var y = new double[n, e];                                 // [N, E]
        var jacobian = options.Jacobian ? new double[n, e, e] : null; // [N, E, E]
        var iterations = new int[n];                              // [N]
        var sumError = new double[n];                             // [N]
        var converged = new bool[n];                              // [N]
        var row = new double[e];                                  // [E]: x of one row
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < e; j++)
            {
                row[j] = x[i, j];
            }

            // 2. The threshold t of this row.
            var solve = Solve(row, k, tau, i);
            iterations[i] = solve.Iterations;
            converged[i] = true;

            // 3. y_e = sigmoid(s_e), s_e = (x_e - t)/tau.
            double sum = 0.0;
            for (int j = 0; j < e; j++)
            {
                y[i, j] = SoftTopK.Sigmoid((row[j] - solve.T) / tau);
                sum += y[i, j];
            }
            sumError[i] = Math.Abs(sum - k);

            // 4. J = D - d d^T / sum(d), with d_e = q_e / tau and q_e = sigmoid(s_e) sigmoid(-s_e) = y_e (1 - y_e).
            if (jacobian is not null)
            {
                var q = new double[e]; // [E]
                double sumQ = 0.0;
                for (int j = 0; j < e; j++)
                {
                    double s = (row[j] - solve.T) / tau;
                    q[j] = SoftTopK.Sigmoid(s) * SoftTopK.Sigmoid(-s);
                    sumQ += q[j];
                }
                if (sumQ == 0.0)
                {
                    continue; // every d_e underflowed: J = 0, its limit (the array is zero-initialized)
                }
                // d_a d_b / sum(d) = p_a p_b / tau with p = q / sqrt(sum q): the product commutes, so J is symmetric bit
                // for bit, and p_e <= sqrt(q_e) keeps it from underflowing where q_a q_b alone would.
                var p = new double[e]; // [E]
                double root = Math.Sqrt(sumQ);
                for (int j = 0; j < e; j++)
                {
                    p[j] = q[j] / root;
                }
                for (int a = 0; a < e; a++)
                {
                    // The diagonal d_a - d_a^2/sum(d) = d_a (sum_{b != a} d_b) / sum(d): no cancellation, never negative.
                    double others = 0.0;
                    for (int b = 0; b < e; b++)
                    {
                        others += b == a ? 0.0 : q[b];
                        jacobian[i, a, b] = -(p[a] * p[b]) / tau;
                    }
                    jacobian[i, a, a] = q[a] * (others / sumQ) / tau;
                }
            }
        }
        return new SoftTopKResult(y, jacobian, iterations, sumError, converged);
    }

    /// <summary>The threshold of one row and the number of halvings it took.</summary>
    private readonly record struct Threshold(double T, int Iterations);

    /// <summary>
    /// Solves sum_e sigmoid((x_e - t)/tau) = k for t by bisection. Invariant: the computed f(lo) &gt;= 0 &gt;= f(hi),
    /// f(t) = sum_e sigmoid((x_e - t)/tau) - k. Stops when hi - lo &lt;= u max(|lo|, |hi|, tau) with u = 2^-53, when lo
    /// and hi are adjacent doubles, or when f(mid) = 0 exactly.
    /// </summary>
    private static Threshold Solve(double[] x, int k, double tau, int rowIndex)
    {
        int e = x.Length;
        double min = x.Min(), max = x.Max();
        double logit = SoftTopK.Logit(k, e);

        // 1. The bracket: at lo every y_e >= sigmoid(L + 1) > k/E, at hi every y_e <= sigmoid(L - 1) < k/E.
        //    If rounding (tau tiny against |x|) defeats a margin, widen that side until the computed sign holds.
        double lo = min - tau * (logit + 1.0), hi = max - tau * (logit - 1.0);
        for (double step = tau; F(x, k, tau, lo) < 0.0; step *= 2.0)
        {
            lo -= step;
            CheckFinite(lo, rowIndex, tau);
        }
        for (double step = tau; F(x, k, tau, hi) > 0.0; step *= 2.0)
        {
            hi += step;
            CheckFinite(hi, rowIndex, tau);
        }
        CheckFinite(lo, rowIndex, tau);
        CheckFinite(hi, rowIndex, tau);
        // 2. Bisection, keeping f(lo) >= 0 >= f(hi), until hi - lo <= u max(|lo|, |hi|, tau): then t is known to a unit
        //    roundoff of its own magnitude, or to u tau when t is near 0 (which moves every y_e by at most u/4).
        const double u = 1.1102230246251565E-16; // 2^-53
        int iterations = 0;
        double fLo = F(x, k, tau, lo), fHi = F(x, k, tau, hi);
        while (hi - lo > u * Math.Max(tau, Math.Max(Math.Abs(lo), Math.Abs(hi))))
        {
            double mid = 0.5 * lo + 0.5 * hi; // no overflow even when lo and hi are near -+1.8e308
            if (mid <= lo || mid >= hi)
            {
                break; // lo and hi are adjacent doubles
            }
            iterations++;
            double fMid = F(x, k, tau, mid);
            if (fMid == 0.0)
            {
                return new Threshold(mid, iterations);
            }
            if (fMid > 0.0)
            {
                (lo, fLo) = (mid, fMid);
            }
            else
            {
                (hi, fHi) = (mid, fMid);
            }
        }

        // 3. The end whose computed sum is closer to k.
        return new Threshold(Math.Abs(fLo) <= Math.Abs(fHi) ? lo : hi, iterations);
    }

    /// <summary>f(t) = sum_e sigmoid((x_e - t)/tau) - k, summed in index order.</summary>
    private static double F(double[] x, int k, double tau, double t)
    {
        double sum = 0.0;
        foreach (double v in x)
        {
            sum += SoftTopK.Sigmoid((v - t) / tau);
        }
        return sum - k;
    }

    private static void CheckFinite(double t, int rowIndex, double tau)
    {
        if (!double.IsFinite(t))
        {
            throw new ArgumentException(
                $"x[{rowIndex}, :] with tau = {Guard.Describe(tau)} puts the threshold outside the range of double", "x");
        }
    }
}
