using ILGPU;
using ILGPU.Runtime;

namespace Reference.Gpu;

/// <summary>The device buffers of one run: allocated on an accelerator, freed together at the end of the run.</summary>
internal sealed class DeviceMemory(Accelerator accelerator) : IDisposable
{
    private readonly List<MemoryBuffer> buffers = [];

    /// <summary>A device copy of a host array (at least one element: ILGPU cannot allocate empty buffers usefully).</summary>
    public ArrayView<T> Upload<T>(T[] data)
        where T : unmanaged
    {
        if (data.Length == 0)
        {
            return Zeros<T>(1);
        }
        var buffer = accelerator.Allocate1D(data);
        buffers.Add(buffer);
        return buffer.View;
    }

    /// <summary>A zeroed device buffer of <paramref name="length"/> elements (at least one).</summary>
    public ArrayView<T> Zeros<T>(long length)
        where T : unmanaged
    {
        var buffer = accelerator.Allocate1D<T>(Math.Max(1, length));
        buffer.MemSetToZero();
        buffers.Add(buffer);
        return buffer.View;
    }

    /// <summary>Waits for the stream and copies the first <paramref name="length"/> elements of a view to the host.</summary>
    public T[] Download<T>(ArrayView<T> view, long length)
        where T : unmanaged
    {
        accelerator.Synchronize();
        var all = view.GetAsArray();
        return length == all.Length ? all : all[..(int)length];
    }

    /// <summary>Frees every buffer.</summary>
    public void Dispose()
    {
        foreach (var b in buffers)
        {
            b.Dispose();
        }
        buffers.Clear();
    }
}
