using System.Globalization;
using ILGPU;
using ILGPU.Runtime;
using Reference.Kernels.Transport;
using Reference.Transport;

namespace Reference.Gpu.Transport;

/// <summary>The scalar arguments of the Sinkhorn kernel.</summary>
internal struct SinkhornArgs
{
    public int Rows, Columns, MaxIterations, CheckPeriod;
    public double Regularization, Tolerance;
}

/// <summary>
/// Log-domain Sinkhorn (proofs/sinkhorn.md, Definition: POT methods, method <c>log</c>) as one ILGPU kernel (proofs/sinkhorn.md,
/// "The gpu path"): a single group runs every iteration on the device, with no host loop. In units of reg, from
/// h = k = 0, each iteration is a column pass k_j = log b_j - logsumexp_i(Mr_ij + h_i) (threads over columns), a
/// barrier, a row pass h_i = log a_i - logsumexp_j(Mr_ij + k_j) (threads over rows), and a group vote
/// (<c>Group.BarrierOr</c>) on a non-finite potential (then the previous potentials are restored and the run stops with
/// numerical_error). On every 10th iteration (0 included) the column sums of G = exp(Mr + h + k) are formed (float32,
/// threads over columns), their squared errors against b are reduced over the group in shared memory (double), and the
/// run stops when ||G^T 1 - b||_2 &lt; tol. The plan and potentials in cost units are written at the end. This is the
/// iteration of <see cref="Reference.Kernels.Transport.Sinkhorn"/>: same order of updates, same stopping rule, same failure handling, in float32.
/// </summary>
/// <remarks>One group suits the small problems this path is meant for (N and E of a router); a grid-wide iteration
/// would need a grid barrier. Mr = -M/reg is formed on the device, row-major and transposed.</remarks>
public static class SinkhornGpu
{
    private const int CheckPeriod = 10;

    /// <summary>Solves the entropic problem for a cost matrix (method log) on the accelerator.</summary>
    /// <param name="gpu">The accelerator.</param>
    /// <param name="cost">M, [N * E] row-major, finite.</param>
    /// <param name="rows">N &gt;= 1.</param>
    /// <param name="columns">E &gt;= 1.</param>
    /// <param name="options">Method log, reg, max_iter, tol, optional marginals.</param>
    /// <returns>The plan, potentials, iterations, error and status, as the CPU kernel returns them.</returns>
    /// <exception cref="ArgumentException">A shape disagrees, the method is not log, or an input fails the reference's checks.</exception>
    public static SinkhornKernelResult Solve(GpuAccelerator gpu, float[] cost, int rows, int columns, SinkhornOptions options)
    {
        ArgumentNullException.ThrowIfNull(gpu);
        ArgumentNullException.ThrowIfNull(cost);
        ArgumentNullException.ThrowIfNull(options);
        int n = rows, e = columns;
        if (n < 1 || e < 1 || (long)n * e != cost.LongLength)
        {
            throw new ArgumentException($"cost has {cost.Length} elements, not N * E = {n} * {e} with N, E >= 1", nameof(cost));
        }
        for (int x = 0; x < cost.Length; x++)
        {
            if (!float.IsFinite(cost[x]))
            {
                throw new ArgumentException($"cost[{x / e}, {x % e}] is {Guard.Describe(cost[x])}; cost must be finite", nameof(cost));
            }
        }
        if (options.Method != SinkhornMethod.Log)
        {
            throw new ArgumentException($"the gpu Sinkhorn kernel implements method log only, not {options.Method}", nameof(options));
        }
        var settings = SinkhornSettings.Resolve(options, n, e, nameof(cost));
        double reg = settings.Reg, tol = settings.Tol;
        int maxIter = settings.MaxIter;
        double[] a = settings.A, b = settings.B;
        var logA = a.Select(x => (float)Math.Log(x)).ToArray();
        var logB = b.Select(x => (float)Math.Log(x)).ToArray();
        var args = new SinkhornArgs { Rows = n, Columns = e, MaxIterations = maxIter, CheckPeriod = CheckPeriod, Regularization = reg, Tolerance = tol };

        var kernel = gpu.Kernel("sinkhorn.log", acc => acc.LoadStreamKernel<
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<double>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<double>, ArrayView<int>, SinkhornArgs>(Kernel));
        lock (gpu.RunLock)
        {
            using var memory = new DeviceMemory(gpu.Accelerator);
            var dCost = memory.Upload(cost);
            var dLogA = memory.Upload(logA);
            var dLogB = memory.Upload(logB);
            var dB = memory.Upload(b);
            var mr = memory.Zeros<float>((long)n * e);
            var mrT = memory.Zeros<float>((long)n * e);
            var potentials = memory.Zeros<float>(2L * (n + e));      // h, k, then their previous values
            var plan = memory.Zeros<float>((long)n * e);
            var f = memory.Zeros<float>(n);
            var g = memory.Zeros<float>(e);
            var error = memory.Zeros<double>(1);
            var state = memory.Zeros<int>(2);                          // completed iterations, status
            int group = gpu.GroupSize;
            kernel(new KernelConfig(1, group, SharedMemoryConfig.RequestDynamic<double>(group)),
                dCost, dLogA, dLogB, dB, mr, mrT, potentials, plan, f, g, error, state, args);
            var planHost = memory.Download(plan, (long)n * e);
            var fHost = memory.Download(f, n);
            var gHost = memory.Download(g, e);
            double err = memory.Download(error, 1)[0];
            var st = memory.Download(state, 2);
            if (!planHost.All(float.IsFinite) || !fHost.All(float.IsFinite) || !gHost.All(float.IsFinite))
            {
                Array.Fill(planHost, float.NaN);
                Array.Fill(fHost, float.NaN);
                Array.Fill(gHost, float.NaN);
                return new SinkhornKernelResult(planHost, fHost, gHost, st[0], double.NaN, false, SinkhornStatus.NumericalError);
            }
            var status = (SinkhornStatus)st[1];
            return new SinkhornKernelResult(planHost, fHost, gHost, st[0], err, status == SinkhornStatus.Converged, status);
        }
    }

    /// <summary>Solves for router logits: the cost is M = -X.</summary>
    /// <param name="gpu">The accelerator.</param>
    /// <param name="logits">X, [N * E] row-major, finite.</param>
    /// <param name="rows">N.</param>
    /// <param name="columns">E.</param>
    /// <param name="options">As for <see cref="Solve"/>.</param>
    /// <returns>As for <see cref="Solve"/>.</returns>
    public static SinkhornKernelResult SolveLogits(GpuAccelerator gpu, float[] logits, int rows, int columns, SinkhornOptions options)
    {
        ArgumentNullException.ThrowIfNull(logits);
        for (int x = 0; x < logits.Length; x++)
        {
            if (!float.IsFinite(logits[x]) && columns > 0)
            {
                throw new ArgumentException($"logits[{x / columns}, {x % columns}] is {Guard.Describe(logits[x])}; logits must be finite", nameof(logits));
            }
        }
        return Solve(gpu, logits.Select(x => -x).ToArray(), rows, columns, options);
    }

    /// <summary>The whole iteration in one group (see the class summary). potentials = [h (N), k (E), h' (N), k' (E)];
    /// state = [completed iterations, status]; shared memory: one double per thread for the error reduction.</summary>
    internal static void Kernel(ArrayView<float> cost, ArrayView<float> logA, ArrayView<float> logB, ArrayView<double> b,
                                ArrayView<float> mr, ArrayView<float> mrT, ArrayView<float> potentials, ArrayView<float> plan,
                                ArrayView<float> f, ArrayView<float> g, ArrayView<double> error, ArrayView<int> state, SinkhornArgs a)
    {
        int t = Group.IdxX, threads = Group.DimX, n = a.Rows, e = a.Columns;
        var partial = SharedMemory.GetDynamic<double>();
        var h = potentials.SubView(0, n);
        var k = potentials.SubView(n, e);
        var hPrevious = potentials.SubView(n + e, n);
        var kPrevious = potentials.SubView(2 * n + e, e);

        // 1. Mr = -M/reg (rounded once from double), row-major and transposed; h = k = 0.
        for (int x = t; x < n * e; x += threads)
        {
            int i = x / e, j = x % e;
            float m = (float)(-(double)cost[x] / a.Regularization);
            mr[x] = m;
            mrT[j * n + i] = m;
        }
        for (int x = t; x < n + e; x += threads)
        {
            potentials[x] = 0f;
        }
        Group.Barrier();

        int completed = 0, status = 1;                     // 1 = max_iter until something else happens
        for (int it = 0; it < a.MaxIterations; it++)
        {
            for (int i = t; i < n; i += threads)
            {
                hPrevious[i] = h[i];
            }
            for (int j = t; j < e; j += threads)
            {
                kPrevious[j] = k[j];
            }

            // 2. Column pass: k_j = log b_j - lse_i(MrT_ji + h_i).
            for (int j = t; j < e; j += threads)
            {
                k[j] = logB[j] - LogSumExp(mrT, j * n, n, h, 0f);
            }
            Group.Barrier();

            // 3. Row pass: h_i = log a_i - lse_j(Mr_ij + k_j).
            for (int i = t; i < n; i += threads)
            {
                h[i] = logA[i] - LogSumExp(mr, i * e, e, k, 0f);
            }

            // 4. A non-finite potential anywhere: restore the previous ones and stop (the vote is also a barrier).
            bool bad = false;
            for (int i = t; i < n; i += threads)
            {
                bad |= !IsFinite(h[i]);
            }
            for (int j = t; j < e; j += threads)
            {
                bad |= !IsFinite(k[j]);
            }
            if (Group.BarrierOr(bad))
            {
                for (int i = t; i < n; i += threads)
                {
                    h[i] = hPrevious[i];
                }
                for (int j = t; j < e; j += threads)
                {
                    k[j] = kPrevious[j];
                }
                status = 2;
                break;
            }
            completed = it + 1;

            // 5. Every CheckPeriod-th iteration: ||G^T 1 - b||_2 < tol stops.
            if (it % a.CheckPeriod == 0 && ColumnError(mrT, h, k, b, partial, n, e) < a.Tolerance)
            {
                status = 0;
                break;
            }
        }
        Group.Barrier();

        // 6. The plan G = exp((Mr + h) + k), the potentials in cost units, the error at the returned plan.
        for (int x = t; x < n * e; x += threads)
        {
            int i = x / e, j = x % e;
            plan[x] = MathF.Exp(mr[x] + h[i] + k[j]);
        }
        for (int i = t; i < n; i += threads)
        {
            f[i] = h[i] * (float)a.Regularization;
        }
        for (int j = t; j < e; j += threads)
        {
            g[j] = k[j] * (float)a.Regularization;
        }
        double err = ColumnError(mrT, h, k, b, partial, n, e);
        if (t == 0)
        {
            error[0] = err;
            state[0] = completed;
            state[1] = status;
        }
    }

    /// <summary>log sum_x exp(m[start + x] + add[x] + shift) over x &lt; count: max, then the shifted sum (float32).</summary>
    private static float LogSumExp(ArrayView<float> m, int start, int count, ArrayView<float> add, float shift)
    {
        float max = float.NegativeInfinity;
        bool nan = false;
        for (int x = 0; x < count; x++)
        {
            float y = m[start + x] + add[x] + shift;
            nan |= float.IsNaN(y);
            max = Math.Max(max, y);
        }
        if (nan)
        {
            return float.NaN;
        }
        if (max == float.NegativeInfinity)
        {
            return max;
        }
        float sum = 0f;
        for (int x = 0; x < count; x++)
        {
            sum += MathF.Exp(m[start + x] + add[x] + shift - max);
        }
        return max + MathF.Log(sum);
    }

    /// <summary>||G^T 1 - b||_2: column sums of exp((MrT_j + h) + k_j) in float32 by the threads over columns, squared
    /// errors in double, summed over the group through shared memory in a fixed order (every thread gets the same value).</summary>
    private static double ColumnError(ArrayView<float> mrT, ArrayView<float> h, ArrayView<float> k, ArrayView<double> b, ArrayView<double> partial, int n, int e)
    {
        int t = Group.IdxX, threads = Group.DimX;
        double mine = 0;
        for (int j = t; j < e; j += threads)
        {
            float sum = 0f;
            for (int i = 0; i < n; i++)
            {
                sum += MathF.Exp(mrT[j * n + i] + h[i] + k[j]);
            }
            double diff = sum - b[j];
            mine += diff * diff;
        }
        partial[t] = mine;
        Group.Barrier();
        double total = 0;
        for (int x = 0; x < threads; x++)
        {
            total += partial[x];
        }
        Group.Barrier();                                   // partial is reused by the next reduction
        return Math.Sqrt(total);
    }

    private static bool IsFinite(float x) => !float.IsNaN(x) && !float.IsInfinity(x);
}
