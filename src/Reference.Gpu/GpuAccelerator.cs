using System.Collections.Concurrent;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using Reference.Harness.Registry;

namespace Reference.Gpu;

/// <summary>
/// The ILGPU accelerator a <c>gpu</c> path runs on: ILGPU's CPU accelerator for <c>--device cpu</c> (a faithful simulator
/// of groups, shared memory and barriers: each group's threads are real threads; slow), its CUDA accelerator for
/// <c>--device cuda</c>. One context and accelerator per device and process, created on first use (registration creates
/// none); kernels are compiled once per accelerator and cached. Runs are serialized per device (one stream).
/// </summary>
public sealed class GpuAccelerator
{
    private static readonly Lock CreateLock = new();
    private static readonly Dictionary<string, GpuAccelerator> Created = new(StringComparer.Ordinal);

    private readonly Context context;
    private readonly ConcurrentDictionary<string, Delegate> kernels = new(StringComparer.Ordinal);

    private GpuAccelerator(Context context, Accelerator accelerator, string device)
    {
        this.context = context;
        Accelerator = accelerator;
        Device = device;
        // The CPU accelerator simulates groups of at most MaxNumThreadsPerGroup threads (16 by default): use them all.
        // On a GPU, 128 threads per group is a common size for these small per-row kernels.
        GroupSize = Math.Min(accelerator.MaxNumThreadsPerGroup, accelerator.AcceleratorType == AcceleratorType.CPU ? 16 : 128);
    }

    /// <summary>The ILGPU accelerator.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>The device name (<see cref="Devices"/>).</summary>
    public string Device { get; }

    /// <summary>Threads per group the kernels launch with: the CPU accelerator's maximum (16 by default), or 128 on a GPU.</summary>
    public int GroupSize { get; }

    /// <summary>Serializes the runs on this accelerator: a path's kernels and copies run as one unit.</summary>
    public Lock RunLock { get; } = new();

    /// <summary>The accelerator for a device, created on first use and reused for the rest of the process (thread-safe).</summary>
    /// <param name="device"><c>cpu</c> or <c>cuda</c>.</param>
    /// <returns>The accelerator.</returns>
    /// <exception cref="InputException">The device is <c>cuda</c> and ILGPU finds no CUDA device (the CLI exits 2), or
    /// the device is unknown.</exception>
    public static GpuAccelerator For(string device)
    {
        device = Devices.Parse(device);
        lock (CreateLock)
        {
            if (Created.TryGetValue(device, out var known))
            {
                return known;
            }
            var created = device == Devices.Cuda ? CreateCuda() : CreateCpu();
            Created[device] = created;
            return created;
        }
    }

    /// <summary>A kernel compiled for this accelerator, loaded once per name.</summary>
    /// <typeparam name="TKernel">The launcher's delegate type.</typeparam>
    /// <param name="name">A unique name for the kernel.</param>
    /// <param name="load">Loads it (e.g. <c>a =&gt; a.LoadStreamKernel&lt;...&gt;(Method)</c>).</param>
    /// <returns>The launcher.</returns>
    public TKernel Kernel<TKernel>(string name, Func<Accelerator, TKernel> load)
        where TKernel : Delegate =>
        (TKernel)kernels.GetOrAdd(name, _ => load(Accelerator));

    private static GpuAccelerator CreateCpu()
    {
        var context = Context.Create(builder => builder.CPU().EnableAlgorithms().Math(MathMode.Default));
        return new GpuAccelerator(context, context.CreateCPUAccelerator(0), Devices.Cpu);
    }

    private static GpuAccelerator CreateCuda()
    {
        Context? context = null;
        try
        {
            context = Context.Create(builder => builder.Cuda().EnableAlgorithms().Math(MathMode.Default));
            if (context.GetCudaDevices().Count == 0)
            {
                throw new InputException("--device cuda: ILGPU finds no CUDA device on this machine (no NVIDIA GPU or driver); use --device cpu");
            }
            return new GpuAccelerator(context, context.CreateCudaAccelerator(0), Devices.Cuda);
        }
        catch (Exception ex) when (ex is not InputException)
        {
            context?.Dispose();
            throw new InputException($"--device cuda: ILGPU cannot open a CUDA device ({ex.GetType().Name}: {ex.Message.Split('\n')[0]}); use --device cpu", ex);
        }
        catch (InputException)
        {
            context?.Dispose();
            throw;
        }
    }

    /// <summary>For the log: the accelerator's name and group size.</summary>
    public override string ToString() => $"{Accelerator.Name} ({Device}, {GroupSize} threads per group, context {context.GetHashCode()})";
}
