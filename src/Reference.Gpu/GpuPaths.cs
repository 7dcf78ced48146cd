using Reference.Attention;
using Reference.Gpu.Attention;
using Reference.Gpu.Routing;
using Reference.Gpu.Transport;
using Reference.Harness.Algorithms;
using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Kernels.Attention;
using Reference.Routing;
using Reference.Transport;

namespace Reference.Gpu;

/// <summary>
/// The <c>gpu</c> paths (ILGPU kernels) of the registered algorithms: <c>attention</c> (FlashAttention forward),
/// <c>sinkhorn</c> (log-domain, method log) and <c>capacity</c> (top-k and capacity dispatch by prefix sums). They run
/// on ILGPU's CPU accelerator for <c>--device cpu</c> and on its CUDA accelerator for <c>--device cuda</c>
/// (<see cref="GpuAccelerator"/>). Each path's <c>Supports</c> limits it to the sizes the CPU simulator runs in
/// reasonable time (and to the modes it implements); the other calls are left to the other paths.
/// </summary>
public static class GpuPaths
{
    /// <summary>The path's name (<c>--path gpu</c>).</summary>
    public const string Name = "gpu";

    /// <summary>The devices the paths run on.</summary>
    public static IReadOnlyList<string> Devices { get; } = [Harness.Registry.Devices.Cpu, Harness.Registry.Devices.Cuda];

    /// <summary>Largest Tq * Tk * (D + Dv) * B * Hq an attention call may have for the gpu path (the simulator's budget).</summary>
    internal const long AttentionBudget = 1L << 24;

    /// <summary>Adds the <c>gpu</c> paths to the registered algorithms. Idempotent; creates no ILGPU context (the
    /// accelerator is created on the first run).</summary>
    public static void Register()
    {
        AttentionAlgorithm.Descriptor.AddPath(AttentionAlgorithm.Entry.ToPath(AttentionPath));
        SinkhornAlgorithm.Descriptor.AddPath(SinkhornAlgorithm.Entry.ToPath(SinkhornPath));
        CapacityAlgorithm.Descriptor.AddPath(CapacityAlgorithm.Entry.ToPath(CapacityPath));
    }

    /// <summary>Why the gpu paths cannot run on a device here (<see cref="OptimizedPath.Unavailable"/>): cuda without a
    /// CUDA device ILGPU can open; null when they can. Creates the device's accelerator (<see cref="GpuAccelerator.For"/>),
    /// which the runs then reuse.</summary>
    /// <param name="device"><c>cpu</c> or <c>cuda</c>.</param>
    /// <returns>The one-line reason, or null.</returns>
    internal static string? Unavailable(string device)
    {
        try
        {
            GpuAccelerator.For(device);
            return null;
        }
        catch (InputException ex)
        {
            return ex.Message;
        }
    }

    /// <summary>The attention path.</summary>
    internal static PathOf<AttentionOptions, AttentionOutput> AttentionPath { get; } =
        new(Name, $"ILGPU FlashAttention-2 forward, float32: a group per (b, h, {FlashAttentionGpu.BlockK}-row query tile), K/V tiles and accumulators in shared memory, causal/window/block-mask tile skipping",
            RunAttention)
        {
            Devices = Devices,
            Unavailable = Unavailable,
            Supports = call => AttentionWork(call) <= AttentionBudget,
        };

    /// <summary>Largest N * E a Sinkhorn call may have for the gpu path (one group runs the whole iteration).</summary>
    internal const long SinkhornBudget = 1L << 14;

    /// <summary>The Sinkhorn path: method log only.</summary>
    internal static PathOf<SinkhornOptions, SinkhornOutput> SinkhornPath { get; } =
        new(Name, "ILGPU log-domain Sinkhorn, float32: one group iterates on the device (column and row log-sum-exp passes, barrier votes, error reduced in shared memory)",
            RunSinkhorn)
        {
            Devices = Devices,
            Unavailable = Unavailable,
            Supports = call => call.Parameters.GetChoice("method") == "log" && SinkhornSize(call) <= SinkhornBudget,
        };

    /// <summary>N * E of a Sinkhorn call (0 when it has neither cost nor logits: the run reports that).</summary>
    private static long SinkhornSize(AlgorithmCall call)
    {
        var m = call.Has("cost") ? call.Array("cost") : call.Has("logits") ? call.Array("logits") : null;
        return m is null ? 0 : (long)m.Shape[0] * m.Shape[1];
    }

    private static SinkhornOutput RunSinkhorn(AlgorithmCall call, SinkhornOptions options)
    {
        bool hasCost = call.Has("cost"), hasLogits = call.Has("logits");
        if (hasCost == hasLogits)
        {
            throw new InputException(hasCost
                ? $"{call.Source}: holds both 'cost' and 'logits'; give exactly one (the cost is -logits)"
                : $"{call.Source}: array 'cost' or 'logits' is missing (sinkhorn needs one of them, float [N,E])");
        }
        var gpu = GpuAccelerator.For(call.Device);
        string name = hasCost ? "cost" : "logits";
        var shape = call.Array(name).Shape;
        int n = shape[0], e = shape[1];
        var result = hasCost
            ? SinkhornGpu.Solve(gpu, call.Floats("cost"), n, e, options)
            : SinkhornGpu.SolveLogits(gpu, call.Floats("logits"), n, e, options);
        return new SinkhornOutput(
            NdArray.Create(result.Plan, n, e),
            NdArray.Create(result.F, n),
            NdArray.Create(result.G, e),
            NdArray.Scalar(result.Iterations),
            NdArray.Scalar((float)result.Error),
            NdArray.Scalar(result.Converged),
            NdArray.Scalar((int)result.Status));
    }

    /// <summary>Largest N * E a capacity call may have for the gpu path.</summary>
    internal const long CapacityBudget = 1L << 16;

    /// <summary>The capacity path: every policy, capacity rule and renormalization.</summary>
    internal static PathOf<CapacityOptions, CapacityOutput> CapacityPath { get; } =
        new(Name, "ILGPU top-k (a thread per token) and capacity dispatch (a group per expert, prefix sums in shared memory over the priority order), float32",
            RunCapacity)
        {
            Devices = Devices,
            Unavailable = Unavailable,
            Supports = call => (long)call.Array("logits").Shape[0] * call.Array("logits").Shape[1] <= CapacityBudget,
        };

    private static CapacityOutput RunCapacity(AlgorithmCall call, CapacityOptions options)
    {
        var gpu = GpuAccelerator.For(call.Device);
        var logits = call.Array("logits");
        int n = logits.Shape[0], e = logits.Shape[1];
        var r = CapacityGpu.Route(gpu, call.Floats("logits"), n, e, options);
        return new CapacityOutput(
            NdArray.Create(r.Experts, n, options.K), NdArray.Create(r.Weights, n, options.K), NdArray.Create(r.Slots, n, options.K), NdArray.Create(r.Load, e));
    }

    /// <summary>B * Hq * Tq * Tk * (D + Dv) of an attention call.</summary>
    internal static long AttentionWork(AlgorithmCall call)
    {
        var q = call.Array("q");
        var k = call.Array("k");
        var v = call.Array("v");
        return (long)q.Shape[0] * q.Shape[1] * q.Shape[2] * k.Shape[2] * (q.Shape[3] + v.Shape[3]);
    }

    private static AttentionOutput RunAttention(AlgorithmCall call, AttentionOptions options)
    {
        var gpu = GpuAccelerator.For(call.Device);
        NdArray q = call.Array("q"), k = call.Array("k"), v = call.Array("v");
        var shape = new AttentionShape(q.Shape[0], q.Shape[1], k.Shape[1], q.Shape[2], k.Shape[2], q.Shape[3], v.Shape[3]);
        bool[]? mask = null;
        int[]? maskShape = null;
        if (call.Has("mask"))
        {
            var m = call.Array("mask");
            mask = new bool[m.Length];
            for (long n = 0; n < mask.LongLength; n++)
            {
                mask[n] = m.GetDouble(n) != 0.0;
            }
            maskShape = [.. m.Shape];
        }
        var gpuOptions = new FlashAttentionGpuOptions
        {
            Causal = options.Causal,
            TopLeft = options.CausalAlign == CausalAlignment.TopLeft,
            WindowLeft = options.WindowLeft,
            WindowRight = options.WindowRight,
            Scale = options.Scale is double s ? (float)s : null,
            Softcap = (float)options.Softcap,
            Mask = mask,
            MaskShape = maskShape,
        };
        var result = FlashAttentionGpu.Forward(gpu, call.Floats("q"), call.Floats("k"), call.Floats("v"), shape, gpuOptions);
        return new AttentionOutput(
            NdArray.Create(result.Out, shape.Batch, shape.QueryHeads, shape.QueryLength, shape.ValueDim),
            NdArray.Create(result.Lse, shape.Batch, shape.QueryHeads, shape.QueryLength));
    }
}
