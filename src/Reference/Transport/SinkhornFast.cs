namespace Reference.Transport;

/// <summary>
/// Sinkhorn in parallel: equal to the readable reference <see cref="Sinkhorn.Solve"/> bit for bit in every output (plan,
/// potentials, iterations, error, status, experts, weights) for every method (proofs/sinkhorn.md, theorem
/// sinkhorn.fast-reference-identical). Used by <c>check sinkhorn</c> beyond the size documented in proofs/cli.md ("Fast
/// references beyond a size"): the readable reference updates the columns through stride-E reads of the [N, E] matrix,
/// single-threaded; this one keeps a transposed copy for the columns and runs columns, rows and the plan in parallel.
/// </summary>
/// <remarks>
/// <para>Shapes, options, validation and errors are those of <see cref="Sinkhorn.Solve"/> and
/// <see cref="Sinkhorn.SolveLogits"/> (the same checks are called in the same order).</para>
/// <para>Why the outputs are identical: every value is computed by the same operations on the same operands in the same
/// order as in the readable variant. A column update (k_j = log b_j - logsumexp_i(Mr_ij + h_i) for log, sum_i K_ij u_i for
/// knopp, stabilized and S-BASE) reads column j of a transposed copy, which holds the same doubles, summing over i in
/// increasing order as the reference does; a row update sums over j in increasing order. Distinct columns (rows) of one
/// half-step read only the previous half-step's vector, so computing them in parallel changes no value. The marginal
/// errors keep one sequential sum per column (row), in increasing row (column) order, and then add the squares in
/// increasing index order, as <see cref="SinkhornProblem.ColumnError"/> and <see cref="SinkhornProblem.RowError"/> do.
/// Everything sequential in the reference that is not a sum over the matrix (the finiteness tests, the restores, the
/// absorption test, S-BASE's error, the status logic, <see cref="SinkhornProblem.Finish"/>) is kept sequential, or called
/// as is.</para>
/// <para>No fused multiply-add is used anywhere: .NET does not contract a * b + c on its own.</para>
/// </remarks>
public static partial class SinkhornFast
{
    /// <summary>Rows per parallel work item.</summary>
    private const int RowsPerBlock = 512;

    /// <summary>Columns per parallel work item of the column sums of a row-major matrix (one accumulator each).</summary>
    private const int ColumnsPerBlock = 8;

    /// <summary>Solves as <see cref="Sinkhorn.Solve"/> does, with the same result.</summary>
    /// <param name="cost">M, [N, E], finite, N &gt;= 1 and E &gt;= 1.</param>
    /// <param name="options">Method, regularization, iteration cap, tolerance, marginals, k.</param>
    /// <returns>The plan, potentials, iteration count, error and status; experts and weights for S-BASE and ssr.</returns>
    /// <exception cref="ArgumentException">As for <see cref="Sinkhorn.Solve"/>.</exception>
    public static SinkhornResult Solve(double[,] cost, SinkhornOptions options)
    {
        Guard.Finite(cost, nameof(cost));
        return Run(SinkhornProblem.Create(cost, nameof(cost), options));
    }

    /// <summary>Solves as <see cref="Sinkhorn.SolveLogits"/> does (the cost is M = -X), with the same result.</summary>
    /// <param name="logits">X, [N, E], finite.</param>
    /// <param name="options">Method, regularization, iteration cap, tolerance, marginals, k.</param>
    /// <returns>The same as <see cref="Solve"/>.</returns>
    /// <exception cref="ArgumentException">As for <see cref="Sinkhorn.SolveLogits"/>.</exception>
    public static SinkhornResult SolveLogits(double[,] logits, SinkhornOptions options)
    {
        Guard.Finite(logits, nameof(logits));
        int n = logits.GetLength(0), e = logits.GetLength(1);
        var cost = new double[n, e]; // [N, E]
        ForRows(n, (start, end) =>
        {
            for (int i = start; i < end; i++)
            {
                for (int j = 0; j < e; j++)
                {
                    cost[i, j] = -logits[i, j];
                }
            }
        });
        return Run(SinkhornProblem.Create(cost, nameof(logits), options));
    }

    private static SinkhornResult Run(SinkhornProblem problem) => problem.Method switch
    {
        SinkhornMethod.Knopp => Knopp(problem),
        SinkhornMethod.Log => Log(problem),
        SinkhornMethod.Stabilized => Stabilized(problem, problem.Reg, problem.MaxIter, problem.Tol, new double[problem.N], new double[problem.E]),
        SinkhornMethod.EpsilonScaling => EpsilonScaling(problem),
        SinkhornMethod.SBase => SBase(problem),
        SinkhornMethod.Selective => Selective(problem),
        _ => throw new ArgumentOutOfRangeException(nameof(problem), problem.Method, "unknown Sinkhorn method"),
    };

    // ---- parallel helpers ---------------------------------------------------------------------------------------

    /// <summary>Runs <paramref name="body"/>(start, end) over blocks of <see cref="RowsPerBlock"/> rows, in parallel.</summary>
    private static void ForRows(int n, Action<int, int> body)
    {
        int blocks = (n + RowsPerBlock - 1) / RowsPerBlock;
        if (blocks <= 1)
        {
            body(0, n);
            return;
        }
        Parallel.For(0, blocks, block => body(block * RowsPerBlock, Math.Min(n, (block + 1) * RowsPerBlock)));
    }

    /// <summary>Runs <paramref name="body"/>(j) for every column j, in parallel.</summary>
    private static void ForColumns(int e, Action<int> body)
    {
        if (e == 1)
        {
            body(0);
            return;
        }
        Parallel.For(0, e, body);
    }

    /// <summary>The transposed copy of a row-major [N, E] matrix: [E, N] row-major, the same doubles.</summary>
    private static double[] Transpose(double[] m, int n, int e)
    {
        var t = new double[e * n];
        ForRows(n, (start, end) =>
        {
            for (int j = 0; j < e; j++)
            {
                for (int i = start; i < end; i++)
                {
                    t[j * n + i] = m[i * e + j];
                }
            }
        });
        return t;
    }

    // ---- marginal errors ----------------------------------------------------------------------------------------

    /// <summary>
    /// <see cref="SinkhornProblem.ColumnError"/> with the same value: each column's sum in increasing row order (one
    /// accumulator per column, a block of columns per work item, the rows read in order), then the squares added in
    /// increasing column order.
    /// </summary>
    internal static double ColumnError(double[,] plan, double[] b)
    {
        var sums = ColumnSums(plan);
        double sumSquares = 0;
        for (int j = 0; j < sums.Length; j++)
        {
            double column = sums[j];
            sumSquares += (column - b[j]) * (column - b[j]);
        }
        return Math.Sqrt(sumSquares);
    }

    /// <summary>The column sums of a plan, each over the rows in increasing order starting from 0.</summary>
    private static double[] ColumnSums(double[,] plan)
    {
        int n = plan.GetLength(0), e = plan.GetLength(1);
        var sums = new double[e];
        int blocks = (e + ColumnsPerBlock - 1) / ColumnsPerBlock;
        Parallel.For(0, blocks, block =>
        {
            int start = block * ColumnsPerBlock, end = Math.Min(e, start + ColumnsPerBlock);
            Span<double> column = stackalloc double[ColumnsPerBlock];
            column.Clear();
            for (int i = 0; i < n; i++)
            {
                for (int j = start; j < end; j++)
                {
                    column[j - start] += plan[i, j];
                }
            }
            for (int j = start; j < end; j++)
            {
                sums[j] = column[j - start];
            }
        });
        return sums;
    }

    /// <summary><see cref="SinkhornProblem.RowError"/> with the same value: the row sums in parallel (each over the
    /// columns in increasing order), then the squares added in increasing row order.</summary>
    internal static double RowError(double[,] plan, double[] a)
    {
        int n = plan.GetLength(0), e = plan.GetLength(1);
        var sums = new double[n];
        ForRows(n, (start, end) =>
        {
            for (int i = start; i < end; i++)
            {
                double row = 0;
                for (int j = 0; j < e; j++)
                {
                    row += plan[i, j];
                }
                sums[i] = row;
            }
        });
        double sumSquares = 0;
        for (int i = 0; i < n; i++)
        {
            double row = sums[i];
            sumSquares += (row - a[i]) * (row - a[i]);
        }
        return Math.Sqrt(sumSquares);
    }

    /// <summary>
    /// <see cref="SinkhornProblem.LogSumExp"/> of the values x_t + y_t, t in increasing order, without storing them: the
    /// same maximum (Math.Max in order), the same early return, the same sum of exp(x_t + y_t - max) in order, the same
    /// final log + max. Each x_t + y_t is recomputed from the same operands, so it is the same double both times.
    /// </summary>
    private static double LogSumExpOfSum(ReadOnlySpan<double> x, ReadOnlySpan<double> y)
    {
        double max = double.NegativeInfinity;
        for (int t = 0; t < x.Length; t++)
        {
            max = Math.Max(max, x[t] + y[t]);
        }
        if (double.IsNegativeInfinity(max) || double.IsNaN(max))
        {
            return max;
        }
        double sum = 0;
        for (int t = 0; t < x.Length; t++)
        {
            sum += Math.Exp(x[t] + y[t] - max);
        }
        return Math.Log(sum) + max;
    }

    /// <summary><see cref="SinkhornProblem.TopExperts"/>, rows in parallel (each row by the same
    /// <see cref="SinkhornProblem.TopExpertsRow"/>).</summary>
    private static int[,] TopExperts(double[,] plan, int k)
    {
        int n = plan.GetLength(0), e = plan.GetLength(1);
        var experts = new int[n, k];
        ForRows(n, (start, end) =>
        {
            var row = new double[e];
            for (int i = start; i < end; i++)
            {
                SinkhornProblem.TopExpertsRow(plan, k, i, experts, row);
            }
        });
        return experts;
    }
}
