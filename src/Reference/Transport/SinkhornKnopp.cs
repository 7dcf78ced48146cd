namespace Reference.Transport;

/// <summary>
/// Sinkhorn-Knopp matrix scaling (proofs/sinkhorn.md, Definition: POT methods, method <c>knopp</c>), following POT 0.8.2
/// <c>ot.bregman.sinkhorn_knopp</c>.
/// </summary>
/// <remarks>
/// <para>With K = exp(-M/reg) [N,E], u = 1/N [N] and v = 1/E [E], each iteration t = 0, 1, ... does</para>
/// <para>v = b / (K^T u),   u = a / (K v),</para>
/// <para>and on every 10th iteration, t = 0 included, measures err = ||G^T 1 - b||_2 with G = diag(u) K diag(v) and stops
/// when err &lt; tol (strict). Row sums are exact after the u-update, so only the column sums are measured.</para>
/// <para>Failure: when K^T u has a zero entry, or u or v has a non-finite entry, the previous u, v are restored and the
/// run ends with <see cref="SinkhornStatus.NumericalError"/> (POT warns and does the same). This happens once |M|/reg
/// exceeds about 745, where exp underflows to 0 (or overflows to +Inf for negative costs). If even the initial
/// plan diag(1/N) K diag(1/E) is not finite (K overflowed), the result is all NaN: there is no finite iterate.</para>
/// <para>Cuturi 2013, "Sinkhorn Distances: Lightspeed Computation of Optimal Transport", algorithm 1.</para>
/// </remarks>
internal static class SinkhornKnopp
{
    /// <summary>POT checks the error on every 10th iteration, iteration 0 included.</summary>
    public const int CheckPeriod = 10;

    public static SinkhornResult Solve(SinkhornProblem p)
    {
        int n = p.N, e = p.E;
        var a = p.A;           // [N]
        var b = p.B;           // [E]

        // 1. The Gibbs kernel K = exp(-M / reg), [N, E]. Under- and overflow here are what the failure check catches.
        var kernel = new double[n, e];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < e; j++)
            {
                kernel[i, j] = Math.Exp(p.Cost[i, j] / -p.Reg);
            }
        }

        // 2. Initial scalings: u = 1/N, v = 1/E (POT's choice, whatever a and b are).
        var u = new double[n];         // [N]
        var v = new double[e];         // [E]
        Array.Fill(u, 1.0 / n);
        Array.Fill(v, 1.0 / e);
        var ktu = new double[e];       // [E]: K^T u
        var uPrevious = new double[n];
        var vPrevious = new double[e];

        var status = SinkhornStatus.MaxIterations;
        int completed = 0;
        for (int t = 0; t < p.MaxIter; t++)
        {
            Array.Copy(u, uPrevious, n);
            Array.Copy(v, vPrevious, e);

            // 3. Column update: v = b / (K^T u).
            for (int j = 0; j < e; j++)
            {
                double s = 0;
                for (int i = 0; i < n; i++)
                {
                    s += kernel[i, j] * u[i];
                }
                ktu[j] = s;
                v[j] = b[j] / s;
            }

            // 4. Row update: u = a / (K v).
            for (int i = 0; i < n; i++)
            {
                double s = 0;
                for (int j = 0; j < e; j++)
                {
                    s += kernel[i, j] * v[j];
                }
                u[i] = a[i] / s;
            }

            // 5. Machine precision reached: come back to the previous scalings and stop.
            if (Array.IndexOf(ktu, 0.0) >= 0 || !SinkhornProblem.AllFinite(u) || !SinkhornProblem.AllFinite(v))
            {
                Array.Copy(uPrevious, u, n);
                Array.Copy(vPrevious, v, e);
                status = SinkhornStatus.NumericalError;
                break;
            }
            completed = t + 1;

            // 6. Every 10th iteration: the column-marginal error of the current plan, strict comparison.
            if (t % CheckPeriod == 0 && SinkhornProblem.ColumnError(Plan(kernel, u, v), b) < p.Tol)
            {
                status = SinkhornStatus.Converged;
                break;
            }
        }

        // 7. The plan G = diag(u) K diag(v) and the potentials f = reg log u, g = reg log v.
        var plan = Plan(kernel, u, v);
        var f = u.Select(x => p.Reg * Math.Log(x)).ToArray();
        var g = v.Select(x => p.Reg * Math.Log(x)).ToArray();
        return p.Finish(plan, f, g, completed, SinkhornProblem.ColumnError(plan, b), status);
    }

    /// <summary>G_ij = u_i K_ij v_j, [N, E].</summary>
    private static double[,] Plan(double[,] kernel, double[] u, double[] v)
    {
        var plan = new double[u.Length, v.Length];
        for (int i = 0; i < u.Length; i++)
        {
            for (int j = 0; j < v.Length; j++)
            {
                plan[i, j] = u[i] * kernel[i, j] * v[j];
            }
        }
        return plan;
    }
}
