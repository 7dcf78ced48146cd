namespace Reference.Routing;

/// <summary>
/// The entropic (optimal-transport) SoftTopk operator (proofs/softtopk.md, Definition: Entropic operator), the reference: double precision,
/// single-threaded, deterministic.
/// </summary>
/// <remarks>
/// <para>For a row x in R^E, 0 &lt; k &lt; E and tau &gt; 0:</para>
/// <para>1. Min-max normalization: m = min x, M = max x, R = M - m, xh_e = (x_e - m)/R in [0, 1].
/// A constant row (R = 0) gives y = k/E (the transport problem below then has identical rows) and the Jacobian 0
/// (the operator is not continuous there, so no derivative exists; 0 is the documented choice).</para>
/// <para>2. Costs to the two anchors 0 and 1: C_e0 = xh_e^2, C_e1 = (xh_e - 1)^2.</para>
/// <para>3. The entropic transport plan G [E, 2] = argmin &lt;G, C&gt; + tau sum G log G subject to G 1 = a = 1/E and
/// G^T 1 = b = ((E - k)/E, k/E); then y_e = E G_e1, the share of entry e sent to the "top" anchor.</para>
/// <para>Its dual potentials f [E], g [2] satisfy the Sinkhorn fixed point G_ej = exp((f_e + g_j - C_ej)/tau) with both
/// marginals met. Plain Sinkhorn iterations contract the marginal error only by the factor 1 - V E/(k(E - k)) per
/// iteration, V = sum_e y_e (1 - y_e), which is 1 - (tiny) once tau is small against the gaps of xh
/// (proofs/softtopk.md, theorem softtopk.entropic-sinkhorn-rate). So the reference keeps Sinkhorn's exact row update
/// (log domain: f_e = tau log a_e - tau logsumexp_j((g_j - C_ej)/tau)) and replaces the column update by a Newton step
/// for g_1 (the gauge is g_0 = 0), safeguarded by a bisection bracket. The fixed point is the same; the iteration
/// stops when |sum_e y_e - k| &lt;= E 2^-53 (the rounding level of that sum), when the next step would change g_1 by
/// less than one unit in the last place, or when the bracket has collapsed.</para>
/// <para>Jacobian: by implicit differentiation of the fixed-point equations (rows and column 1) in (f, g_1), chained
/// with dC/dxh and the derivative of the normalization. The min and max are taken at the lowest index attaining them
/// (a subgradient where several entries tie for the min or the max; it is the derivative of the branch in which the
/// other tied entries lie strictly inside). The derivation (proofs/softtopk.md) gives, with w_e = y_e (1 - y_e) and
/// V = sum w: dy/dxh = (2/tau) (diag(w) - w w^T / V), and
/// dxh_c/dx_b = (delta_cb - (1 - xh_c) delta_{b,argmin} - xh_c delta_{b,argmax}) / R.
/// If V underflows to 0, the Jacobian is returned as 0, its limit.</para>
/// <para>Equivalence (theorem softtopk.entropic-is-threshold): y = SoftTopKThreshold(xh, tau/2). The tests use it as an
/// independent cross-check; this class does not.</para>
/// <para>Sources: Xie, Dai, Chen, Dai, Zhao, Zha, Wei and Pfister 2020, "Differentiable top-k with optimal transport"
/// (NeurIPS), the SOFT top-k operator; Cuturi 2013 (Sinkhorn distances); Peyre and Cuturi 2019, "Computational optimal
/// transport", section 4.4 (log-domain Sinkhorn); the MaxScore paper's SoftTopk, as this repository fixes it.</para>
/// </remarks>
public static class SoftTopKEntropic
{
    /// <summary>Computes y (and the Jacobian when asked) for every row of x.</summary>
    /// <param name="x">Scores, [N, E], finite, E &gt;= 2.</param>
    /// <param name="options">k, tau, the iteration cap and whether to compute the Jacobian;
    /// <see cref="SoftTopKOptions.Method"/> is ignored.</param>
    /// <returns>y [N, E], the Jacobian [N, E, E] when asked, the solver iterations, |sum y - k| and convergence per row.</returns>
    /// <exception cref="ArgumentException">x holds NaN or an infinity, k is not in 1..E-1, or tau is not a positive
    /// normal double.</exception>
    public static SoftTopKResult Compute(double[,] x, SoftTopKOptions options)
    {
        // 1. Check the inputs.
        SoftTopK.Validate(x, options);
        int n = x.GetLength(0), e = x.GetLength(1), k = options.K;
        double tau = options.Tau;

        var y = new double[n, e];                                     // [N, E]
        var jacobian = options.Jacobian ? new double[n, e, e] : null; // [N, E, E]
        var iterations = new int[n];                                  // [N]
        var sumError = new double[n];                                 // [N]
        var converged = new bool[n];                                  // [N]
        for (int i = 0; i < n; i++)
        {
            // 2. Min and max of the row, each at the lowest index attaining it.
            int argMin = 0, argMax = 0;
            for (int j = 1; j < e; j++)
            {
                if (x[i, j] < x[i, argMin])
                {
                    argMin = j;
                }
                if (x[i, j] > x[i, argMax])
                {
                    argMax = j;
                }
            }
            double min = x[i, argMin], max = x[i, argMax];

            // 3. A constant row: y = k/E, Jacobian 0, nothing to solve.
            if (min == max)
            {
                double uniform = (double)k / e;
                double constantSum = 0.0;
                for (int j = 0; j < e; j++)
                {
                    y[i, j] = uniform;
                    constantSum += uniform;
                }
                sumError[i] = Math.Abs(constantSum - k);
                converged[i] = true;
                continue;
            }

            // 4. Normalized scores xh [E] in [0, 1]. R may overflow for x near -+1.8e308: then normalize the halves.
            double range = max - min;
            bool halve = double.IsInfinity(range);
            if (halve)
            {
                range = 0.5 * max - 0.5 * min;
            }
            var xh = new double[e]; // [E]
            for (int j = 0; j < e; j++)
            {
                xh[j] = halve ? (0.5 * x[i, j] - 0.5 * min) / range : (x[i, j] - min) / range;
            }

            // 5. Costs to the anchors 0 and 1, C [E, 2].
            var cost = new double[e, 2];
            for (int j = 0; j < e; j++)
            {
                cost[j, 0] = xh[j] * xh[j];
                cost[j, 1] = (xh[j] - 1.0) * (xh[j] - 1.0);
            }

            // 6. The transport plan, as row-normalized shares rho [E, 2] = G / a (rho_e1 = y_e, rho_e0 = 1 - y_e).
            var plan = SolvePlan(cost, k, tau, options.MaxIterations);
            iterations[i] = plan.Iterations;
            converged[i] = plan.Converged;
            double sum = 0.0;
            for (int j = 0; j < e; j++)
            {
                y[i, j] = plan.Rho[j, 1];
                sum += y[i, j];
            }
            sumError[i] = Math.Abs(sum - k);

            // 7. The Jacobian, by implicit differentiation of the fixed point.
            if (jacobian is not null)
            {
                Differentiate(plan.Rho, xh, tau, argMin, argMax, range, halve, jacobian, i);
            }
        }
        return new SoftTopKResult(y, jacobian, iterations, sumError, converged);
    }

    /// <summary>The solved plan of one row: rho [E, 2] with rho_ej = G_ej / a_e, and the solver's diagnostics.</summary>
    private sealed record Plan(double[,] Rho, int Iterations, bool Converged);

    /// <summary>One evaluation of the fixed-point map at a column potential g_1 (with g_0 = 0): Sinkhorn's row update
    /// in log form, the column-1 residual sum_e rho_e1 - k (= E times the marginal error of column 1) and its
    /// derivative in g_1.</summary>
    private sealed record Evaluation(double[,] Rho, double Residual, double Slope);

    /// <summary>
    /// Solves the two-column entropic transport problem in the log domain. The row update is Sinkhorn's, exact:
    /// log rho_ej = (g_j - C_ej)/tau - logsumexp_l((g_l - C_el)/tau), i.e. f_e = tau log a_e - tau logsumexp(...).
    /// The column potential g_1 then solves sum_e rho_e1 = k by Newton's method on the residual (slope
    /// sum_e rho_e1 rho_e0 / tau &gt; 0), kept inside a bracket on which the residual changes sign.
    /// </summary>
    private static Plan SolvePlan(double[,] cost, int k, double tau, int maxIterations)
    {
        int e = cost.GetLength(0);
        double logit = SoftTopK.Logit(k, e);
        const double u = 1.1102230246251565E-16; // 2^-53

        // 1. A bracket for g_1. With D_e = C_e1 - C_e0 = 1 - 2 xh_e in [-1, 1], y_e = sigmoid((g_1 - D_e)/tau):
        //    at g_1 = -1 + tau (L - 1) every y_e <= sigmoid(L - 1) < k/E, at 1 + tau (L + 1) every y_e > k/E.
        //    Widen a side if rounding defeats its computed sign.
        double lo = -1.0 + tau * (logit - 1.0), hi = 1.0 + tau * (logit + 1.0);
        for (double widen = tau; Evaluate(cost, k, tau, lo).Residual > 0.0; widen *= 2.0)
        {
            lo -= widen;
        }
        for (double widen = tau; Evaluate(cost, k, tau, hi).Residual < 0.0; widen *= 2.0)
        {
            hi += widen;
        }

        // 2. Newton from the centre g_1 = tau L (where entries with xh = 1/2 get y = k/E), safeguarded as in
        //    Numerical Recipes' rtsafe: bisect when the Newton point leaves the bracket, or when the Newton step is not
        //    at most half the step before last (far from the root, in the exponential tails, Newton crawls by ~tau).
        double g1 = Math.Clamp(tau * logit, lo, hi);
        double step = hi - lo, stepBeforeLast = hi - lo;
        var current = Evaluate(cost, k, tau, g1);
        for (int iteration = 1; iteration <= maxIterations; iteration++)
        {
            if (Math.Abs(current.Residual) <= e * u)
            {
                return new Plan(current.Rho, iteration, true); // the marginal is met to the rounding level of its sum
            }
            if (current.Residual < 0.0)
            {
                lo = g1;
            }
            else
            {
                hi = g1;
            }
            stepBeforeLast = step;
            step = current.Residual / current.Slope;
            double next = g1 - step;
            if (!(next > lo && next < hi) || !(Math.Abs(2.0 * step) <= Math.Abs(stepBeforeLast)))
            {
                next = 0.5 * lo + 0.5 * hi;
                step = g1 - next;
            }
            double resolution = u * Math.Max(1.0, Math.Max(Math.Abs(lo), Math.Abs(hi)));
            if (Math.Abs(next - g1) <= resolution || hi - lo <= resolution)
            {
                return new Plan(current.Rho, iteration, true); // g_1 is resolved to one unit in the last place
            }
            g1 = next;
            current = Evaluate(cost, k, tau, g1);
        }
        return new Plan(current.Rho, maxIterations, false);
    }

    /// <summary>Sinkhorn's row update for the potentials (g_0, g_1) = (0, g1), and the column-1 residual.</summary>
    private static Evaluation Evaluate(double[,] cost, int k, double tau, double g1)
    {
        int e = cost.GetLength(0);
        var rho = new double[e, 2]; // [E, 2]
        double residual = -k, slope = 0.0;
        for (int j = 0; j < e; j++)
        {
            // log rho_ej = z_j - logsumexp(z_0, z_1), z_j = (g_j - C_ej)/tau: the row marginal a_e is met exactly.
            double z0 = (0.0 - cost[j, 0]) / tau;
            double z1 = (g1 - cost[j, 1]) / tau;
            double top = Math.Max(z0, z1);
            double lse = top + Math.Log(1.0 + Math.Exp(-Math.Abs(z0 - z1)));
            rho[j, 0] = Math.Exp(z0 - lse);
            rho[j, 1] = Math.Exp(z1 - lse);
            residual += rho[j, 1];
            slope += rho[j, 1] * rho[j, 0];
        }
        return new Evaluation(rho, residual, slope / tau);
    }

    /// <summary>
    /// Writes dy/dx of one row into jacobian[i, :, :], by implicit differentiation of the fixed point (proofs/softtopk.md,
    /// theorem softtopk.entropic-jacobian). With the gauge g_0 = 0, the unknowns are f [E] and g_1; the equations are the
    /// row marginals and the column-1 marginal. Their linearization, solved by eliminating df with the diagonal row block
    /// (Schur complement S = sum_e a_e rho_e1 rho_e0 = V/E):
    /// dg_1/dC_c0 = -w_c / V, dg_1/dC_c1 = +w_c / V, df_e/dC_cj = delta_ec rho_ej - rho_e1 dg_1/dC_cj,
    /// dy_e/dC_cj = (y_e/tau)(df_e/dC_cj + dg_1/dC_cj - delta_ec delta_j1)
    ///            = (w_e/tau)(delta_ec sgn_j + dg_1/dC_cj), sgn_0 = +1, sgn_1 = -1,
    /// using 1 - y_e = rho_e0 (the row marginal) to avoid the cancellation 1 - y. <paramref name="halved"/> says that
    /// <paramref name="range"/> holds R/2 because R overflowed.
    /// </summary>
    private static void Differentiate(
        double[,] rho, double[] xh, double tau, int argMin, int argMax, double range, bool halved, double[,,] jacobian, int i)
    {
        int e = xh.Length;

        // 1. w_e = y_e (1 - y_e) and V = sum w.
        var w = new double[e]; // [E]
        double v = 0.0;
        for (int j = 0; j < e; j++)
        {
            w[j] = rho[j, 1] * rho[j, 0];
            v += w[j];
        }
        if (v == 0.0)
        {
            return; // every w_e underflowed: the Jacobian is 0, its limit (the array is zero-initialized)
        }

        // 2. dg_1/dC [E, 2], from the Schur complement of the linearized fixed point.
        var dg = new double[e, 2];
        for (int c = 0; c < e; c++)
        {
            dg[c, 0] = -w[c] / v;
            dg[c, 1] = w[c] / v;
        }

        // 3. dy/dxh [E, E]: dy_e/dxh_c = sum_j dy_e/dC_cj dC_cj/dxh_c, with dC_c0/dxh_c = 2 xh_c, dC_c1/dxh_c = 2 (xh_c - 1).
        var dyDxh = new double[e, e];
        for (int a = 0; a < e; a++)
        {
            for (int c = 0; c < e; c++)
            {
                double dyDc0 = (w[a] / tau) * ((a == c ? 1.0 : 0.0) + dg[c, 0]);
                double dyDc1 = (w[a] / tau) * ((a == c ? -1.0 : 0.0) + dg[c, 1]);
                dyDxh[a, c] = dyDc0 * (2.0 * xh[c]) + dyDc1 * (2.0 * (xh[c] - 1.0));
            }
        }

        // 4. Chain with the normalization: J[a, b] = (dyDxh[a, b] - [b = argmin] sum_c dyDxh[a, c](1 - xh_c)
        //    - [b = argmax] sum_c dyDxh[a, c] xh_c) / R.
        for (int a = 0; a < e; a++)
        {
            double towardMin = 0.0, towardMax = 0.0;
            for (int c = 0; c < e; c++)
            {
                towardMin += dyDxh[a, c] * (1.0 - xh[c]);
                towardMax += dyDxh[a, c] * xh[c];
            }
            for (int b = 0; b < e; b++)
            {
                double value = dyDxh[a, b];
                if (b == argMin)
                {
                    value -= towardMin;
                }
                if (b == argMax)
                {
                    value -= towardMax;
                }
                // dxh/dx = 1/R; when R overflowed, range holds R/2 and xh was built from the halves.
                jacobian[i, a, b] = halved ? 0.5 * (value / range) : value / range;
            }
        }
    }
}
