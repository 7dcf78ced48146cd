using System.Runtime.InteropServices;
using Reference.Numerics;

namespace Reference.Harness.Tensors;

/// <summary>
/// Helpers shared by the tensor file readers and writers: element bytes in little-endian order, shape
/// arithmetic that cannot overflow silently, and stream reads whose allocations grow only with the bytes that
/// actually arrive (so a file that merely claims to be large cannot make a reader allocate).
/// </summary>
internal static class TensorBytes
{
    /// <summary>The most bytes one array may occupy: the longest .NET byte array.</summary>
    internal static long MaxArrayBytes => Array.MaxLength;

    /// <summary>The first buffer a bounded read allocates; it doubles as bytes arrive.</summary>
    private const int InitialChunk = 64 * 1024;

    /// <summary>A shape written as numpy does: <c>()</c>, <c>(3,)</c>, <c>(2, 3)</c>.</summary>
    internal static string ShapeText(IReadOnlyList<long> dims) =>
        "(" + string.Join(", ", dims) + (dims.Count == 1 ? ",)" : ")");

    /// <summary>
    /// The number of bytes a shape of non-negative dimensions needs, or null when the product overflows 64 bits.
    /// A zero dimension makes the product zero whatever the others are.
    /// </summary>
    internal static long? ByteCount(IReadOnlyList<long> dims, int elementSize)
    {
        foreach (var d in dims)
        {
            if (d == 0)
            {
                return 0;
            }
        }
        long bytes = elementSize;
        foreach (var d in dims)
        {
            if (bytes > long.MaxValue / d)
            {
                return null;
            }
            bytes *= d;
        }
        return bytes;
    }

    /// <summary>The numpy dtype string of a dtype, or null for bf16, which numpy lacks.</summary>
    internal static string? NumpyDescr(DType dtype) => dtype switch
    {
        DType.F16 => "<f2",
        DType.F32 => "<f4",
        DType.F64 => "<f8",
        DType.I32 => "<i4",
        DType.I64 => "<i8",
        DType.U8 => "|u1",
        DType.Bool => "|b1",
        _ => null,
    };

    /// <summary>The flat position of the first byte that is neither 0 nor 1, or -1 when all are valid bools.</summary>
    internal static long FirstInvalidBool(ReadOnlySpan<byte> bytes)
    {
        for (int i = 0; i < bytes.Length; i++)
        {
            if (bytes[i] > 1)
            {
                return i;
            }
        }
        return -1;
    }

    /// <summary>
    /// Builds an array from little-endian element bytes (already checked: length = product(shape) * element size,
    /// bool bytes 0 or 1). The bytes are copied bit for bit, so NaN payloads, signed zeros and subnormals survive.
    /// </summary>
    internal static NdArray FromLittleEndian(DType dtype, int[] shape, ReadOnlySpan<byte> bytes) => dtype switch
    {
        DType.F16 => NdArray.Create(Copy<Half>(bytes), shape),
        DType.BF16 => NdArray.Create(Copy<BFloat16>(bytes), shape),
        DType.F32 => NdArray.Create(Copy<float>(bytes), shape),
        DType.F64 => NdArray.Create(Copy<double>(bytes), shape),
        DType.I32 => NdArray.Create(Copy<int>(bytes), shape),
        DType.I64 => NdArray.Create(Copy<long>(bytes), shape),
        DType.U8 => NdArray.Create(bytes.ToArray(), shape),
        DType.Bool => NdArray.Create(Copy<bool>(bytes), shape),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>Reverses the bytes of each element in place (big-endian to little-endian or back).</summary>
    /// <param name="bytes">The elements; its length is a multiple of <paramref name="elementSize"/>.</param>
    /// <param name="elementSize">The element size in bytes (1 leaves the bytes unchanged).</param>
    internal static void ReverseElementBytes(Span<byte> bytes, int elementSize)
    {
        if (elementSize <= 1)
        {
            return;
        }
        for (int at = 0; at + elementSize <= bytes.Length; at += elementSize)
        {
            bytes.Slice(at, elementSize).Reverse();
        }
    }

    /// <summary>
    /// Permutes elements stored in Fortran order (first index fastest) into C order (last index fastest).
    /// Element (i0, ..., i(n-1)) is read from Fortran offset sum_k i_k * prod_{j&lt;k} d_j and written at its C
    /// offset; the bytes of each element are moved unchanged.
    /// </summary>
    /// <param name="fortran">The elements in Fortran order: product(shape) * elementSize bytes.</param>
    /// <param name="shape">The shape (every dimension non-negative).</param>
    /// <param name="elementSize">The element size in bytes.</param>
    /// <returns>A new buffer holding the same elements in C order.</returns>
    internal static byte[] FortranToC(byte[] fortran, int[] shape, int elementSize)
    {
        var c = new byte[fortran.Length];
        int rank = shape.Length;
        if (c.Length == 0 || rank < 2)
        {
            fortran.CopyTo(c, 0);
            return c;
        }
        // Fortran strides in elements; the C walk below advances the last index fastest (an odometer).
        var stride = new long[rank];
        stride[0] = 1;
        for (int k = 1; k < rank; k++)
        {
            stride[k] = stride[k - 1] * shape[k - 1];
        }
        var index = new int[rank];
        long source = 0;
        long count = fortran.Length / elementSize;
        for (long target = 0; target < count; target++)
        {
            Buffer.BlockCopy(fortran, (int)(source * elementSize), c, (int)(target * elementSize), elementSize);
            for (int k = rank - 1; k >= 0; k--)
            {
                if (++index[k] < shape[k])
                {
                    source += stride[k];
                    break;
                }
                source -= stride[k] * (shape[k] - 1);
                index[k] = 0;
            }
        }
        return c;
    }

    /// <summary>The number of bytes an array's elements occupy.</summary>
    internal static long DataBytes(NdArray array) => array.Length * NdArray.ElementSize(array.DType);

    /// <summary>Writes the elements as little-endian bytes, in C order (bools as 0 and 1).</summary>
    internal static void WriteLittleEndian(Stream stream, NdArray array)
    {
        RequireLittleEndianHost();
        switch (array.RawValues)
        {
            case Half[] h: stream.Write(MemoryMarshal.AsBytes(h.AsSpan())); break;
            case BFloat16[] b: stream.Write(MemoryMarshal.AsBytes(b.AsSpan())); break;
            case float[] f: stream.Write(MemoryMarshal.AsBytes(f.AsSpan())); break;
            case double[] d: stream.Write(MemoryMarshal.AsBytes(d.AsSpan())); break;
            case int[] i: stream.Write(MemoryMarshal.AsBytes(i.AsSpan())); break;
            case long[] l: stream.Write(MemoryMarshal.AsBytes(l.AsSpan())); break;
            case byte[] u: stream.Write(u); break;
            case bool[] z:
                // A bool's storage byte is not guaranteed to be 0 or 1 (interop can set others), so normalize.
                var bytes = new byte[z.Length];
                for (int k = 0; k < z.Length; k++)
                {
                    bytes[k] = z[k] ? (byte)1 : (byte)0;
                }
                stream.Write(bytes);
                break;
            default: throw new InvalidOperationException("unknown storage");
        }
    }

    /// <summary>
    /// Reads up to <paramref name="count"/> bytes, fewer only at the end of the stream. The buffer starts small
    /// and doubles as bytes arrive, so a false <paramref name="count"/> on a short stream allocates at most about
    /// twice what the stream holds.
    /// </summary>
    internal static byte[] ReadBounded(Stream stream, long count)
    {
        if (count < 0 || count > MaxArrayBytes)
        {
            throw new ArgumentOutOfRangeException(nameof(count), count, "read size out of range");
        }
        var buffer = new byte[Math.Min(count, InitialChunk)];
        int filled = 0;
        while (filled < count)
        {
            if (filled == buffer.Length)
            {
                Array.Resize(ref buffer, (int)Math.Min(count, 2L * buffer.Length));
            }
            int n = stream.Read(buffer, filled, buffer.Length - filled);
            if (n == 0)
            {
                break;
            }
            filled += n;
        }
        if (filled < buffer.Length)
        {
            Array.Resize(ref buffer, filled);
        }
        return buffer;
    }

    /// <summary>Reads and discards the rest of a stream, counting at most <paramref name="cap"/> bytes.</summary>
    internal static long CountRemaining(Stream stream, long cap)
    {
        var scratch = new byte[8192];
        long total = 0;
        while (total < cap)
        {
            int n = stream.Read(scratch, 0, scratch.Length);
            if (n == 0)
            {
                break;
            }
            total += n;
        }
        return total;
    }

    private static T[] Copy<T>(ReadOnlySpan<byte> bytes) where T : struct
    {
        RequireLittleEndianHost();
        return MemoryMarshal.Cast<byte, T>(bytes).ToArray();
    }

    // The file formats are little-endian; the element copies above reinterpret memory directly.
    private static void RequireLittleEndianHost()
    {
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("tensor file I/O assumes a little-endian host");
        }
    }
}
