using Reference.Harness.Algorithms;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Routing;
using Reference.Transport;
using static TorchSharp.torch;

namespace Reference.Torch.Routing;

/// <summary>
/// Entropic optimal transport (proofs/sinkhorn.md, Definition) as GPU users write it: whole-matrix tensor updates, one
/// iteration per step of a host loop, in float32. Methods <c>log</c> (POT's <c>sinkhorn_log</c>: potentials updated by
/// <c>torch.logsumexp</c> over the columns, then the rows) and <c>sbase</c> (Megatron-LM's <c>sinkhorn</c> in moe_utils
/// and its router's <c>sinkhorn_load_balancing</c>: scalings d0, d1 of exp(X), top-k of the plan, sigmoid or softmax
/// gates).
/// </summary>
/// <remarks>
/// <para>log: in units of reg, h = f/reg [N], k = g/reg [E], Mr = -M/reg [N, E]; from h = k = 0 each iteration sets
/// k = log b - logsumexp_i(Mr + h), then h = log a - logsumexp_j(Mr + k); on every 10th iteration (0 included) the
/// column error ||G^T 1 - b||_2 of G = exp(Mr + h + k) is read back and the run stops when it is below tol (strict),
/// POT's rule. A non-finite potential restores the previous iterate and ends the run with status 2.</para>
/// <para>sbase: C = exp(X) with no shift, d0 = 1, d1 = 1; each iteration d0 = a / (C d1 + 1e-8), d1 = b / (C^T d0 + 1e-8),
/// err = mean |d1_old - d1|, until err &lt;= tol or max_iter (Megatron has no cap). Plan d1 · C · d0, f = log d0,
/// g = log d1; experts = top-k of each plan row; weights = sigmoid(X) (k = 1) or softmax(X) (k &gt; 1) there.</para>
/// <para>A float32 run cannot reach tol = 1e-9 and runs to its cap; the validator compares its plan with the reference's
/// iterate after the same number of iterations (proofs/sinkhorn.md, sinkhorn.kernel-equals-reference).
/// The other methods (knopp, stabilized, eps-scaling, ssr) are not implemented here (<see cref="Supports"/>), nor is
/// sbase on logits above 88 (float32's exp overflows there; Megatron's float32 code fails the same way, the double
/// reference does not).</para>
/// <para>Precision: the iteration runs in float32 for every input dtype, as Megatron-LM's
/// <c>sinkhorn(logits.to(dtype=torch.float32))</c> and POT on float32 tensors do (a float16 or bfloat16 input is widened
/// exactly; in float16, exp(X) overflows above X = 11 and the plan's small entries underflow, so S-BASE and the log
/// updates are not iterated in half precision): plan, f, g and err are float32. The sbase gates are
/// computed as Megatron's router does, sigmoid or softmax of the logits, and returned in the logits' dtype
/// (<c>.to(dtype)</c>; <see cref="TorchRouting"/>).</para>
/// </remarks>
public static class SinkhornTorch
{
    /// <summary>Megatron's guard against division by zero in S-BASE.</summary>
    private const float SBaseEpsilon = 1e-8f;

    /// <summary>The error is checked on every 10th iteration, 0 included (POT's rule).</summary>
    private const int CheckPeriod = 10;

    /// <summary>The calls this path computes: method log, or sbase with every logit (-cost) at most 88.</summary>
    /// <param name="call">The bound call.</param>
    /// <returns>True when the path supports it.</returns>
    public static bool Supports(AlgorithmCall call)
    {
        ArgumentNullException.ThrowIfNull(call);
        return call.Parameters.GetChoice("method") switch
        {
            "log" => true,
            "sbase" => call.Has("cost") ? call.Floats("cost").All(m => -m <= 88f) : call.Floats("logits").All(x => x <= 88f),
            _ => false,
        };
    }

    /// <summary>Solves the call's problem on its device, in float32 (sbase weights in the input's dtype).</summary>
    /// <param name="call">The bound call (cost or logits, optional marginals).</param>
    /// <param name="options">Method (log or sbase), reg, max_iter, tol, k, marginals.</param>
    /// <returns>plan, f, g, iterations, err, converged, status; experts and weights for sbase.</returns>
    public static SinkhornOutput Run(AlgorithmCall call, SinkhornOptions options)
    {
        ArgumentNullException.ThrowIfNull(call);
        ArgumentNullException.ThrowIfNull(options);
        var device = TorchDevice.For(call.Device);
        using var scope = NewDisposeScope();
        bool hasCost = call.Has("cost");
        string name = hasCost ? "cost" : "logits";
        var shape = call.Array(name).Shape;
        int n = shape[0], e = shape[1];
        var input = tensor(call.Floats(name), [n, e], ScalarType.Float32, device);
        var logits = hasCost ? input.neg() : input;                          // X = -M, exact
        var a = options.RowMarginal?.ToArray() ?? Enumerable.Repeat(1.0 / n, n).ToArray();
        var b = options.ColumnMarginal?.ToArray() ?? Enumerable.Repeat(1.0 / e, e).ToArray();
        return options.Method switch
        {
            SinkhornMethod.Log => Log(logits, a, b, options, n, e, device),
            SinkhornMethod.SBase => SBase(logits, a, b, options, n, e, device, TorchRouting.ModelType(call, name)),
            _ => throw new InputException($"the torch path of sinkhorn implements methods log and sbase, not {options.Method}"),
        };
    }

    private static SinkhornOutput Log(Tensor logits, double[] a, double[] b, SinkhornOptions options, int n, int e, Device device)
    {
        double reg = options.Regularization ?? throw new InputException("sinkhorn: reg is required for method log");
        int maxIter = options.MaxIterations ?? 1000;
        double tol = options.Tolerance ?? 1e-9;
        var mr = logits.div((float)reg);                                                          // [N, E]
        var logA = tensor(a.Select(x => (float)Math.Log(x)).ToArray(), [n], ScalarType.Float32, device);
        var logB = tensor(b.Select(x => (float)Math.Log(x)).ToArray(), [e], ScalarType.Float32, device);
        var h = zeros(n, ScalarType.Float32, device);
        var k = zeros(e, ScalarType.Float32, device);
        var status = SinkhornStatus.MaxIterations;
        int completed = 0;
        for (int t = 0; t < maxIter; t++)
        {
            var kNext = logB - (mr + h.unsqueeze(1)).logsumexp(0);                                // [E]
            var hNext = logA - (mr + kNext.unsqueeze(0)).logsumexp(1);                            // [N]
            if (!(hNext.isfinite().all().item<bool>() && kNext.isfinite().all().item<bool>()))
            {
                status = SinkhornStatus.NumericalError;
                break;
            }
            (h, k) = (hNext, kNext);
            completed = t + 1;
            if (t % CheckPeriod == 0 && ColumnError((mr + h.unsqueeze(1) + k.unsqueeze(0)).exp(), b) < tol)
            {
                status = SinkhornStatus.Converged;
                break;
            }
        }
        var plan = (mr + h.unsqueeze(1) + k.unsqueeze(0)).exp();                                  // [N, E]
        return Finish(plan, h.mul((float)reg), k.mul((float)reg), completed, ColumnError(plan, b), status, n, e);
    }

    private static SinkhornOutput SBase(Tensor logits, double[] a, double[] b, SinkhornOptions options, int n, int e, Device device, ScalarType dtype)
    {
        int maxIter = options.MaxIterations ?? 10000;
        double tol = options.Tolerance ?? 1e-4;
        int topK = options.K;
        var cost = logits.exp();                                                                  // C = exp(X), no shift
        var ta = tensor(a.Select(x => (float)x).ToArray(), [n], ScalarType.Float32, device);
        var tb = tensor(b.Select(x => (float)x).ToArray(), [e], ScalarType.Float32, device);
        var d0 = ones(n, ScalarType.Float32, device);
        var d1 = ones(e, ScalarType.Float32, device);
        double err = 1e9;
        int completed = 0;
        var status = SinkhornStatus.MaxIterations;
        while (err > tol && completed < maxIter)
        {
            var d0Next = ta / ((d1.unsqueeze(0) * cost).sum(dim: 1) + SBaseEpsilon);                   // [N]
            var d1Next = tb / ((d0Next.unsqueeze(1) * cost).sum(dim: 0) + SBaseEpsilon);               // [E]
            double next = (d1 - d1Next).abs().mean().item<float>();
            if (!(d0Next.isfinite().all().item<bool>() && d1Next.isfinite().all().item<bool>()) || double.IsNaN(next))
            {
                status = SinkhornStatus.NumericalError;
                break;
            }
            (d0, d1, err) = (d0Next, d1Next, next);
            completed++;
        }
        if (status != SinkhornStatus.NumericalError && err <= tol)
        {
            status = SinkhornStatus.Converged;
        }
        var plan = d1.unsqueeze(0) * cost * d0.unsqueeze(1);                                      // [N, E]
        var output = Finish(plan, d0.log(), d1.log(), completed, completed == 0 ? double.NaN : err, status, n, e);
        if (output.Status.GetDouble(0) == (int)SinkhornStatus.NumericalError && double.IsNaN(output.Err.GetDouble(0)))
        {
            return output with
            {
                Experts = NdArray.Create(Enumerable.Repeat(-1, n * topK).ToArray(), n, topK),
                Weights = TorchRouting.Stored(full(n, topK, float.NaN, ScalarType.Float32, device), dtype, n, topK),
            };
        }
        var experts = plan.topk(topK, dim: -1, largest: true, sorted: true).indexes;             // [N, k]
        var gates = topK == 1 ? logits.sigmoid() : logits.softmax(-1);
        var weights = gates.gather(-1, experts);
        return output with
        {
            Experts = NdArray.Create(experts.to(ScalarType.Int32).cpu().data<int>().ToArray(), n, topK),
            Weights = TorchRouting.Stored(weights, dtype, n, topK),
        };
    }

    /// <summary>||G^T 1 - b||_2: column sums in float32 on the device, the squared differences in double on the host.</summary>
    private static double ColumnError(Tensor plan, double[] b)
    {
        var sums = plan.sum(dim: 0).cpu().data<float>().ToArray();
        double total = 0;
        for (int j = 0; j < sums.Length; j++)
        {
            total += (sums[j] - b[j]) * (sums[j] - b[j]);
        }
        return Math.Sqrt(total);
    }

    /// <summary>The outputs; all NaN when the returned iterate is not finite (status 2).</summary>
    private static SinkhornOutput Finish(Tensor plan, Tensor f, Tensor g, int completed, double err, SinkhornStatus status, int n, int e)
    {
        var planValues = plan.cpu().data<float>().ToArray();
        var fValues = f.cpu().data<float>().ToArray();
        var gValues = g.cpu().data<float>().ToArray();
        if (!planValues.All(float.IsFinite) || !fValues.All(float.IsFinite) || !gValues.All(float.IsFinite))
        {
            Array.Fill(planValues, float.NaN);
            Array.Fill(fValues, float.NaN);
            Array.Fill(gValues, float.NaN);
            (err, status) = (double.NaN, SinkhornStatus.NumericalError);
        }
        return new SinkhornOutput(
            NdArray.Create(planValues, n, e),
            NdArray.Create(fValues, n),
            NdArray.Create(gValues, e),
            NdArray.Scalar(completed),
            NdArray.Scalar((float)err),
            NdArray.Scalar(status == SinkhornStatus.Converged),
            NdArray.Scalar((int)status));
    }
}
