namespace Reference.Transport;

/// <summary>
/// Log-domain Sinkhorn (proofs/sinkhorn.md, Definition: POT methods, method <c>log</c>), following POT 0.8.2 <c>ot.bregman.sinkhorn_log</c>.
/// The numerically stable reference for small reg, and the default method.
/// </summary>
/// <remarks>
/// <para>Work in units of reg: h = f/reg [N], k = g/reg [E], and Mr = -M/reg [N,E]. Start from h = k = 0; each iteration
/// t = 0, 1, ... does</para>
/// <para>k_j = log b_j - logsumexp_i(Mr_ij + h_i),   then   h_i = log a_i - logsumexp_j(Mr_ij + k_j),</para>
/// <para>which is g = reg (log b - logsumexp_i((f_i - M_ij)/reg)) and the same for f. The plan is
/// G_ij = exp(Mr_ij + h_i + k_j). Stopping rule as for <c>knopp</c>: on every 10th iteration, t = 0 included,
/// err = ||G^T 1 - b||_2, stop when err &lt; tol.</para>
/// <para>In exact arithmetic this is the knopp iteration with u = exp(h), v = exp(k), started from u = 1 instead of 1/N.
/// Scaling u by c scales v by 1/c and leaves every plan unchanged, so the two methods produce the same plans, and
/// f_knopp = f_log - reg log N, g_knopp = g_log + reg log N (proofs/sinkhorn.md, sinkhorn.variants-agree).</para>
/// <para>Failure: POT does not check; this reference does. If an update produces a non-finite potential (only when
/// |M|/reg overflows a double, or a whole row of Mr is -Inf), the previous potentials are restored and the run ends
/// with <see cref="SinkhornStatus.NumericalError"/>.</para>
/// <para>Peyré and Cuturi 2019, "Computational Optimal Transport", section 4.4 (log-domain stabilization).</para>
/// </remarks>
internal static class SinkhornLog
{
    /// <summary>POT checks the error on every 10th iteration, iteration 0 included.</summary>
    public const int CheckPeriod = 10;

    /// <summary>Runs the log-domain iteration on a checked problem.</summary>
    public static SinkhornResult Solve(SinkhornProblem p)
    {
        int n = p.N, e = p.E;

        // 1. Mr = -M / reg [N, E]; log a [N]; log b [E].
        var mr = new double[n, e];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < e; j++)
            {
                mr[i, j] = -p.Cost[i, j] / p.Reg;
            }
        }
        var logA = p.A.Select(x => Math.Log(x)).ToArray();
        var logB = p.B.Select(x => Math.Log(x)).ToArray();

        // 2. Potentials in units of reg, starting at 0.
        var h = new double[n];          // [N]: f / reg
        var k = new double[e];          // [E]: g / reg
        var hPrevious = new double[n];
        var kPrevious = new double[e];
        var column = new double[n];     // [N]: one column of Mr + h
        var row = new double[e];        // [E]: one row of Mr + k

        var status = SinkhornStatus.MaxIterations;
        int completed = 0;
        for (int t = 0; t < p.MaxIter; t++)
        {
            Array.Copy(h, hPrevious, n);
            Array.Copy(k, kPrevious, e);

            // 3. Column update: k_j = log b_j - logsumexp_i(Mr_ij + h_i).
            for (int j = 0; j < e; j++)
            {
                for (int i = 0; i < n; i++)
                {
                    column[i] = mr[i, j] + h[i];
                }
                k[j] = logB[j] - SinkhornProblem.LogSumExp(column);
            }

            // 4. Row update: h_i = log a_i - logsumexp_j(Mr_ij + k_j).
            for (int i = 0; i < n; i++)
            {
                for (int j = 0; j < e; j++)
                {
                    row[j] = mr[i, j] + k[j];
                }
                h[i] = logA[i] - SinkhornProblem.LogSumExp(row);
            }

            // 5. A non-finite potential: restore the previous ones and stop.
            if (!SinkhornProblem.AllFinite(h) || !SinkhornProblem.AllFinite(k))
            {
                Array.Copy(hPrevious, h, n);
                Array.Copy(kPrevious, k, e);
                status = SinkhornStatus.NumericalError;
                break;
            }
            completed = t + 1;

            // 6. Every 10th iteration: the column-marginal error, strict comparison.
            if (t % CheckPeriod == 0 && SinkhornProblem.ColumnError(Plan(mr, h, k), p.B) < p.Tol)
            {
                status = SinkhornStatus.Converged;
                break;
            }
        }

        // 7. The plan and the potentials in cost units.
        var plan = Plan(mr, h, k);
        var f = h.Select(x => p.Reg * x).ToArray();
        var g = k.Select(x => p.Reg * x).ToArray();
        return p.Finish(plan, f, g, completed, SinkhornProblem.ColumnError(plan, p.B), status);
    }

    /// <summary>G_ij = exp(Mr_ij + h_i + k_j), [N, E].</summary>
    private static double[,] Plan(double[,] mr, double[] h, double[] k)
    {
        var plan = new double[h.Length, k.Length];
        for (int i = 0; i < h.Length; i++)
        {
            for (int j = 0; j < k.Length; j++)
            {
                plan[i, j] = Math.Exp(mr[i, j] + h[i] + k[j]);
            }
        }
        return plan;
    }
}
