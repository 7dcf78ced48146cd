using System.Globalization;

namespace Reference.Transport;

/// <summary>
/// A checked Sinkhorn problem: the cost M [N,E], the marginals a [N] and b [E], and the resolved options.
/// Shared by the six variants, together with the small helpers they all need (marginal errors, log-sum-exp,
/// the all-NaN result of a run with no finite iterate).
/// </summary>
internal sealed record SinkhornProblem(
    double[,] Cost,
    double[] A,
    double[] B,
    SinkhornMethod Method,
    double Reg,
    int MaxIter,
    double Tol,
    int K,
    double Tau,
    double Epsilon0,
    int InnerMaxIter)
{
    /// <summary>N, the number of rows (tokens).</summary>
    public int N => Cost.GetLength(0);

    /// <summary>E, the number of columns (experts).</summary>
    public int E => Cost.GetLength(1);

    /// <summary>Checks the options against the cost and resolves the method-dependent defaults.</summary>
    /// <param name="cost">M [N, E], already checked finite.</param>
    /// <param name="costName">The argument name to use in messages about shapes: <c>cost</c> or <c>logits</c>.</param>
    /// <param name="options">The caller's options.</param>
    public static SinkhornProblem Create(double[,] cost, string costName, SinkhornOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var s = SinkhornSettings.Resolve(options, cost.GetLength(0), cost.GetLength(1), costName);
        return new SinkhornProblem(cost, s.A, s.B, options.Method, s.Reg, s.MaxIter, s.Tol, options.K, options.Tau,
            options.Epsilon0, options.InnerMaxIterations);
    }

    /// <summary>The CLI name of a method.</summary>
    public static string Name(SinkhornMethod method) => method switch
    {
        SinkhornMethod.Knopp => "knopp",
        SinkhornMethod.Log => "log",
        SinkhornMethod.Stabilized => "stabilized",
        SinkhornMethod.EpsilonScaling => "eps-scaling",
        SinkhornMethod.SBase => "sbase",
        _ => "ssr",
    };

    private static string Format(double x) => x.ToString("R", CultureInfo.InvariantCulture);

    // ---- helpers shared by the variants -------------------------------------------------------------------------

    /// <summary>||G^T 1 - b||_2: the column-marginal violation that POT's stopping rule measures.</summary>
    public static double ColumnError(double[,] plan, double[] b)
    {
        double sumSquares = 0;
        for (int j = 0; j < plan.GetLength(1); j++)
        {
            double column = 0;
            for (int i = 0; i < plan.GetLength(0); i++)
            {
                column += plan[i, j];
            }
            sumSquares += (column - b[j]) * (column - b[j]);
        }
        return Math.Sqrt(sumSquares);
    }

    /// <summary>||G 1 - a||_2: the row-marginal violation.</summary>
    public static double RowError(double[,] plan, double[] a)
    {
        double sumSquares = 0;
        for (int i = 0; i < plan.GetLength(0); i++)
        {
            double row = 0;
            for (int j = 0; j < plan.GetLength(1); j++)
            {
                row += plan[i, j];
            }
            sumSquares += (row - a[i]) * (row - a[i]);
        }
        return Math.Sqrt(sumSquares);
    }

    /// <summary>log sum_t exp(x_t), shifted by the maximum so that no exp overflows (scipy.special.logsumexp's recipe).</summary>
    public static double LogSumExp(double[] x)
    {
        double max = double.NegativeInfinity;
        foreach (double t in x)
        {
            max = Math.Max(max, t);
        }
        if (double.IsNegativeInfinity(max) || double.IsNaN(max))
        {
            return max;
        }
        double sum = 0;
        foreach (double t in x)
        {
            sum += Math.Exp(t - max);
        }
        return Math.Log(sum) + max;
    }

    /// <summary>True when every element is finite.</summary>
    public static bool AllFinite(double[] x)
    {
        foreach (double t in x)
        {
            if (!double.IsFinite(t))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>True when every element is finite.</summary>
    public static bool AllFinite(double[,] x)
    {
        foreach (double t in x)
        {
            if (!double.IsFinite(t))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>
    /// The result of a run that ended with the given state. Builds nothing new; it only decides the status honestly:
    /// a plan or potential that is not finite turns any status into <see cref="SinkhornStatus.NumericalError"/>, and then
    /// the plan, the potentials and the error become NaN (there is no finite iterate to return).
    /// </summary>
    public SinkhornResult Finish(double[,] plan, double[] f, double[] g, int iterations, double error, SinkhornStatus status)
    {
        if (!AllFinite(plan) || !AllFinite(f) || !AllFinite(g))
        {
            return NoFiniteIterate(iterations);
        }
        return new SinkhornResult(plan, f, g, iterations, error, status == SinkhornStatus.Converged, status, null, null);
    }

    /// <summary>
    /// Top-k routing on a plan: each row's k largest plan values, best first, ties to the lower expert
    /// (<see cref="Routing.Ranking"/>). A NaN plan (no finite iterate) gives experts -1.
    /// </summary>
    /// <param name="plan">G [N, E].</param>
    /// <param name="k">Experts per token, 1..E.</param>
    /// <returns>experts [N, k].</returns>
    public static int[,] TopExperts(double[,] plan, int k)
    {
        int n = plan.GetLength(0), e = plan.GetLength(1);
        var experts = new int[n, k];   // [N, k]
        var row = new double[e];       // [E]
        for (int i = 0; i < n; i++)
        {
            TopExpertsRow(plan, k, i, experts, row);
        }
        return experts;
    }

    /// <summary>Row i of <see cref="TopExperts"/> (the fast path calls it per row, rows in parallel).</summary>
    /// <param name="plan">G [N, E].</param>
    /// <param name="k">Experts per token, 1..E.</param>
    /// <param name="i">The row.</param>
    /// <param name="experts">[N, k]: row i is written.</param>
    /// <param name="row">Scratch [E].</param>
    public static void TopExpertsRow(double[,] plan, int k, int i, int[,] experts, double[] row)
    {
        for (int j = 0; j < row.Length; j++)
        {
            row[j] = plan[i, j];
        }
        if (!AllFinite(row))
        {
            for (int slot = 0; slot < k; slot++)
            {
                experts[i, slot] = -1;
            }
            return;
        }
        var top = Routing.Ranking.Top(row, k);
        for (int slot = 0; slot < k; slot++)
        {
            experts[i, slot] = top[slot];
        }
    }

    /// <summary>The all-NaN result: no iterate with finite values exists.</summary>
    public SinkhornResult NoFiniteIterate(int iterations)
    {
        var plan = new double[N, E];
        for (int i = 0; i < N; i++)
        {
            for (int j = 0; j < E; j++)
            {
                plan[i, j] = double.NaN;
            }
        }
        var f = new double[N];
        var g = new double[E];
        Array.Fill(f, double.NaN);
        Array.Fill(g, double.NaN);
        return new SinkhornResult(plan, f, g, iterations, double.NaN, false, SinkhornStatus.NumericalError, null, null);
    }
}
