using System.Buffers;
using System.Globalization;
using System.Numerics.Tensors;
using Reference.Transport;

namespace Reference.Kernels.Transport;

/// <summary>The flat result of the Sinkhorn kernel.</summary>
/// <param name="Plan">[N * E], row-major [N, E]: the float32 plan G_ij = exp((f_i + g_j - M_ij)/reg).</param>
/// <param name="F">[N]: the row potential f, cost units.</param>
/// <param name="G">[E]: the column potential g, cost units.</param>
/// <param name="Iterations">Completed iterations whose result is returned.</param>
/// <param name="Error">||G^T 1 - b||_2 of the returned plan, accumulated in double from the float32 plan.</param>
/// <param name="Converged">True exactly when <paramref name="Status"/> is <see cref="SinkhornStatus.Converged"/>.</param>
/// <param name="Status">Converged, iteration cap, or numerical error (then the values are the last finite iterate, or NaN).</param>
public sealed record SinkhornKernelResult(float[] Plan, float[] F, float[] G, int Iterations, double Error, bool Converged, SinkhornStatus Status);

/// <summary>
/// Log-domain Sinkhorn (proofs/sinkhorn.md, Definition: POT methods, method <c>log</c>), optimized: float32, the log-sum-exp of each column
/// and row vectorized with <see cref="TensorPrimitives"/>, columns and rows spread over threads for large problems.
/// It runs the iteration of <see cref="Reference.Transport.Sinkhorn"/> with <see cref="SinkhornMethod.Log"/>, same order of
/// updates, same stopping rule, same failure handling, in float32.
/// </summary>
/// <remarks>
/// <para>In units of reg: h = f/reg [N], k = g/reg [E], Mr = -M/reg [N,E] (rounded once to float32). From h = k = 0, each
/// iteration does k_j = log b_j - logsumexp_i(Mr_ij + h_i), then h_i = log a_i - logsumexp_j(Mr_ij + k_j); on every 10th
/// iteration (0 included) err = ||G^T 1 - b||_2 with G = exp(Mr + h + k), stop when err &lt; tol.</para>
/// <para>Precision: the column sums of a float32 plan carry a relative error of about 1e-7, so tol below about 1e-6 is
/// never reached and the run ends on the iteration cap (reported, not hidden). proofs/sinkhorn.md
/// (sinkhorn.kernel-equals-reference) bounds the distance to the double reference after the same number of iterations.</para>
/// <para>Memory: Mr is stored twice, row-major and transposed, so that both passes read contiguous spans.</para>
/// <para>Determinism: each column (row) update reads only the previous potentials and writes one entry, so splitting the
/// columns (rows) over threads gives bit-identical results on every run.</para>
/// </remarks>
public static class Sinkhorn
{
    /// <summary>Below this many cost entries the kernel runs on one thread: the fork/join costs more than it saves.</summary>
    private const int ParallelThreshold = 1 << 15;

    /// <summary>The error is checked on every 10th iteration, 0 included (POT's rule).</summary>
    private const int CheckPeriod = 10;

    /// <summary>Solves the entropic problem for a cost matrix with the log-domain iteration in float32.</summary>
    /// <param name="cost">M, [N * E] row-major, finite.</param>
    /// <param name="rows">N &gt;= 1.</param>
    /// <param name="columns">E &gt;= 1.</param>
    /// <param name="options">Method (must be <see cref="SinkhornMethod.Log"/>), reg, max_iter, tol, marginals (narrowed
    /// to float32 through their logarithms; the error is measured against the double marginals).</param>
    /// <returns>The flat plan, potentials, iteration count, error and status.</returns>
    /// <exception cref="ArgumentException">A shape disagrees, the method is not log, or an input fails the reference's checks.</exception>
    public static SinkhornKernelResult Solve(float[] cost, int rows, int columns, SinkhornOptions options)
    {
        ArgumentNullException.ThrowIfNull(cost);
        CheckShape(cost, rows, columns, nameof(cost));
        CheckFinite(cost, columns, nameof(cost));
        return Run(cost, rows, columns, options, nameof(cost));
    }

    /// <summary>Solves the entropic problem for router logits: the cost is M = -X.</summary>
    /// <param name="logits">X, [N * E] row-major, finite.</param>
    /// <param name="rows">N &gt;= 1.</param>
    /// <param name="columns">E &gt;= 1.</param>
    /// <param name="options">As for <see cref="Solve"/>.</param>
    /// <returns>As for <see cref="Solve"/>.</returns>
    /// <exception cref="ArgumentException">As for <see cref="Solve"/>, naming <c>logits</c>.</exception>
    public static SinkhornKernelResult SolveLogits(float[] logits, int rows, int columns, SinkhornOptions options)
    {
        ArgumentNullException.ThrowIfNull(logits);
        CheckShape(logits, rows, columns, nameof(logits));
        CheckFinite(logits, columns, nameof(logits));
        var cost = new float[logits.Length];
        TensorPrimitives.Negate(logits, cost);
        return Run(cost, rows, columns, options, nameof(logits));
    }

    private static SinkhornKernelResult Run(float[] cost, int n, int e, SinkhornOptions options, string costName)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Method != SinkhornMethod.Log)
        {
            throw new ArgumentException($"the Sinkhorn kernel implements method log only, not {options.Method}", nameof(options));
        }
        var settings = SinkhornSettings.Resolve(options, n, e, costName);
        double reg = settings.Reg, tol = settings.Tol;
        int maxIter = settings.MaxIter;
        double[] a = settings.A, b = settings.B;

        // 1. Mr = -M/reg, rounded once from double, row-major [N, E] and transposed [E, N]; log a [N]; log b [E].
        var mr = new float[n * e];
        var mrT = new float[e * n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < e; j++)
            {
                float x = (float)(-(double)cost[i * e + j] / reg);
                mr[i * e + j] = x;
                mrT[j * n + i] = x;
            }
        }
        var logA = a.Select(x => (float)Math.Log(x)).ToArray();
        var logB = b.Select(x => (float)Math.Log(x)).ToArray();

        // 2. Potentials in units of reg.
        var h = new float[n];                 // [N]
        var k = new float[e];                 // [E]
        var hPrevious = new float[n];
        var kPrevious = new float[e];
        bool parallel = (long)n * e >= ParallelThreshold;

        var status = SinkhornStatus.MaxIterations;
        int completed = 0;
        for (int t = 0; t < maxIter; t++)
        {
            h.CopyTo(hPrevious, 0);
            k.CopyTo(kPrevious, 0);

            // 3. Column pass: k_j = log b_j - lse(MrT_j + h), vectorized over N.
            ForBlocks(e, n, parallel, (start, end, scratch) =>
            {
                for (int j = start; j < end; j++)
                {
                    TensorPrimitives.Add(mrT.AsSpan(j * n, n), h, scratch);
                    k[j] = logB[j] - LogSumExpInPlace(scratch);
                }
            });

            // 4. Row pass: h_i = log a_i - lse(Mr_i + k), vectorized over blocks of rows (one long span per column of MrT).
            RowPass(mrT, k, logA, h, parallel);

            // 5. A non-finite potential: restore and stop.
            if (!AllFinite(h) || !AllFinite(k))
            {
                hPrevious.CopyTo(h, 0);
                kPrevious.CopyTo(k, 0);
                status = SinkhornStatus.NumericalError;
                break;
            }
            completed = t + 1;

            // 6. Every 10th iteration: ||colsum - b||_2, strict.
            if (t % CheckPeriod == 0 && ColumnError(mrT, h, k, b, parallel) < tol)
            {
                status = SinkhornStatus.Converged;
                break;
            }
        }

        // 7. The plan G = exp((Mr + h) + k) row by row (the order ColumnError uses), and the potentials in cost units.
        var plan = new float[n * e];
        ForBlocks(n, e, parallel, (start, end, _) =>
        {
            for (int i = start; i < end; i++)
            {
                var dest = plan.AsSpan(i * e, e);
                TensorPrimitives.Add(mr.AsSpan(i * e, e), h[i], dest);
                TensorPrimitives.Add(dest, k, dest);
                TensorPrimitives.Exp(dest, dest);
            }
        });
        var f = new float[n];
        var g = new float[e];
        TensorPrimitives.Multiply(h, (float)reg, f);
        TensorPrimitives.Multiply(k, (float)reg, g);
        double error = ColumnError(mrT, h, k, b, parallel);
        if (!AllFinite(plan) || !AllFinite(f) || !AllFinite(g))
        {
            Array.Fill(plan, float.NaN);
            Array.Fill(f, float.NaN);
            Array.Fill(g, float.NaN);
            return new SinkhornKernelResult(plan, f, g, completed, double.NaN, false, SinkhornStatus.NumericalError);
        }
        return new SinkhornKernelResult(plan, f, g, completed, error, status == SinkhornStatus.Converged, status);
    }

    /// <summary>log sum exp(x), overwriting x: max, shift, exp and sum, each vectorized.</summary>
    private static float LogSumExpInPlace(Span<float> x)
    {
        float max = TensorPrimitives.Max(x);
        if (float.IsNegativeInfinity(max) || float.IsNaN(max))
        {
            return max;
        }
        TensorPrimitives.Subtract(x, max, x);
        TensorPrimitives.Exp(x, x);
        return max + MathF.Log(TensorPrimitives.Sum(x));
    }

    /// <summary>The rows of one row pass in a block (a long span of each column of MrT per vector operation).</summary>
    private const int RowsPerBlock = 1024;

    /// <summary>
    /// h_i = log a_i - lse_j(MrT_ji + k_j) for every row, computed for a block of rows at a time: the running maximum over
    /// the columns, then the sum of exp((MrT_ji + k_j) - max_i) column by column, each step one vector operation over the
    /// block. The same roundings as the log-sum-exp of each row (x = Mr_ij + k_j, x - max, exp, a sum of E positive terms
    /// in another order, log), so proofs/sinkhorn.md, sinkhorn.kernel-equals-reference, bounds it alike; it avoids E
    /// short vector calls per row, which cost more than the arithmetic when E is small.
    /// </summary>
    private static void RowPass(float[] mrT, float[] k, float[] logA, float[] h, bool parallel)
    {
        int n = h.Length, e = k.Length;
        int per = parallel ? RowsPerBlock : n;
        int blocks = (n + per - 1) / per;
        if (blocks == 1)
        {
            Block(0, n);
        }
        else
        {
            Parallel.For(0, blocks, blk => Block(blk * per, Math.Min(n, (blk + 1) * per)));
        }

        void Block(int start, int end)
        {
            int len = end - start;
            float[] buffer = ArrayPool<float>.Shared.Rent(3 * len);
            try
            {
                var max = buffer.AsSpan(0, len);
                var sum = buffer.AsSpan(len, len);
                var x = buffer.AsSpan(2 * len, len);
                TensorPrimitives.Add(mrT.AsSpan(start, len), k[0], max);
                for (int j = 1; j < e; j++)
                {
                    TensorPrimitives.Add(mrT.AsSpan(j * n + start, len), k[j], x);
                    TensorPrimitives.Max(max, x, max);
                }
                sum.Clear();
                for (int j = 0; j < e; j++)
                {
                    TensorPrimitives.Add(mrT.AsSpan(j * n + start, len), k[j], x);
                    TensorPrimitives.Subtract(x, max, x);
                    TensorPrimitives.Exp(x, x);
                    TensorPrimitives.Add(sum, x, sum);
                }
                for (int i = 0; i < len; i++)
                {
                    float m = max[i];
                    float lse = float.IsNegativeInfinity(m) || float.IsNaN(m) ? m : m + MathF.Log(sum[i]);
                    h[start + i] = logA[start + i] - lse;
                }
            }
            finally
            {
                ArrayPool<float>.Shared.Return(buffer);
            }
        }
    }

    /// <summary>||G^T 1 - b||_2 with column j of G = exp((MrT_j + h) + k_j) summed in float32, squared errors in double.</summary>
    private static double ColumnError(float[] mrT, float[] h, float[] k, double[] b, bool parallel)
    {
        int n = h.Length, e = k.Length;
        var sums = new double[e];
        ForBlocks(e, n, parallel, (start, end, scratch) =>
        {
            for (int j = start; j < end; j++)
            {
                TensorPrimitives.Add(mrT.AsSpan(j * n, n), h, scratch);
                TensorPrimitives.Add(scratch, k[j], scratch);
                TensorPrimitives.Exp(scratch, scratch);
                sums[j] = TensorPrimitives.Sum(scratch);
            }
        });
        double total = 0;
        for (int j = 0; j < e; j++)
        {
            total += (sums[j] - b[j]) * (sums[j] - b[j]);
        }
        return Math.Sqrt(total);
    }

    /// <summary>A body over [start, end) of <paramref name="count"/> items, each needing a scratch span of
    /// <paramref name="width"/> floats; one block on this thread when small, else blocks over the thread pool.</summary>
    private static void ForBlocks(int count, int width, bool parallel, BlockBody body)
    {
        if (!parallel)
        {
            RunBlock(0, count);
            return;
        }
        int perBlock = Math.Max(1, (1 << 13) / Math.Max(1, width));
        int blocks = (count + perBlock - 1) / perBlock;
        Parallel.For(0, blocks, blk => RunBlock(blk * perBlock, Math.Min(count, (blk + 1) * perBlock)));

        void RunBlock(int start, int end)
        {
            float[] scratch = ArrayPool<float>.Shared.Rent(width);
            try
            {
                body(start, end, scratch.AsSpan(0, width));
            }
            finally
            {
                ArrayPool<float>.Shared.Return(scratch);
            }
        }
    }

    private delegate void BlockBody(int start, int end, Span<float> scratch);

    private static void CheckShape(float[] values, int rows, int columns, string name)
    {
        if (rows < 1 || columns < 1 || (long)rows * columns != values.LongLength)
        {
            throw new ArgumentException(
                $"{name} has {values.Length} elements, not N * E = {rows} * {columns} with N, E >= 1", name);
        }
    }

    private static void CheckFinite(float[] values, int columns, string name)
    {
        for (int i = 0; i < values.Length; i++)
        {
            if (!float.IsFinite(values[i]))
            {
                throw new ArgumentException(
                    $"{name}[{i / columns}, {i % columns}] is {Guard.Describe(values[i])}; {name} must be finite", name);
            }
        }
    }

    private static bool AllFinite(float[] x)
    {
        foreach (float t in x)
        {
            if (!float.IsFinite(t))
            {
                return false;
            }
        }
        return true;
    }
}
