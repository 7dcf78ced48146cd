using System.Numerics.Tensors;
using Reference.Numerics;

namespace Reference.Harness.Tensors;

/// <summary>
/// A dense, C-ordered array of one of the supported <see cref="DType"/>s, with its shape: the non-generic
/// value that tensor files hold and the registry passes around. <see cref="ToTensor{T}"/> and
/// <see cref="FromTensor{T}"/> convert to and from <see cref="Tensor{T}"/>, the public interchange type.
/// A 0-d array (a scalar) has an empty shape and one element.
/// </summary>
public sealed class NdArray
{
    private readonly Array data;

    private NdArray(DType dtype, int[] shape, Array data)
    {
        DType = dtype;
        this.shape = shape;
        this.data = data;
    }

    private readonly int[] shape;

    /// <summary>The element type.</summary>
    public DType DType { get; }

    /// <summary>The shape, outermost dimension first. Empty for a scalar.</summary>
    public IReadOnlyList<int> Shape => shape;

    /// <summary>The number of dimensions.</summary>
    public int Rank => shape.Length;

    /// <summary>The number of elements (1 for a scalar).</summary>
    public long Length => data.LongLength;

    /// <summary>The shape written as numpy does, e.g. <c>(3, 4)</c> or <c>()</c>.</summary>
    public string ShapeText => "(" + string.Join(", ", shape) + (shape.Length == 1 ? ",)" : ")");

    /// <summary>The .NET element type for a dtype.</summary>
    public static Type ElementType(DType dtype) => dtype switch
    {
        DType.F16 => typeof(Half),
        DType.BF16 => typeof(BFloat16),
        DType.F32 => typeof(float),
        DType.F64 => typeof(double),
        DType.I32 => typeof(int),
        DType.I64 => typeof(long),
        DType.U8 => typeof(byte),
        DType.Bool => typeof(bool),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>The dtype for a .NET element type.</summary>
    /// <exception cref="ArgumentException">The type is not one of the supported element types.</exception>
    public static DType DTypeOf(Type elementType) =>
        elementType == typeof(Half) ? DType.F16
        : elementType == typeof(BFloat16) ? DType.BF16
        : elementType == typeof(float) ? DType.F32
        : elementType == typeof(double) ? DType.F64
        : elementType == typeof(int) ? DType.I32
        : elementType == typeof(long) ? DType.I64
        : elementType == typeof(byte) ? DType.U8
        : elementType == typeof(bool) ? DType.Bool
        : throw new ArgumentException($"element type {elementType.Name} is not supported", nameof(elementType));

    /// <summary>The size in bytes of one element.</summary>
    public static int ElementSize(DType dtype) => dtype switch
    {
        DType.F16 or DType.BF16 => 2,
        DType.F32 or DType.I32 => 4,
        DType.F64 or DType.I64 => 8,
        DType.U8 or DType.Bool => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>Wraps a flat C-ordered array (not copied) with a shape.</summary>
    /// <param name="values">The elements, in C order; its length must equal the product of <paramref name="shape"/>.</param>
    /// <param name="shape">The shape; empty for a scalar. Every dimension must be non-negative.</param>
    public static NdArray Create<T>(T[] values, params int[] shape)
    {
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(shape);
        var dtype = DTypeOf(typeof(T));
        long count = 1;
        foreach (var d in shape)
        {
            if (d < 0)
            {
                throw new ArgumentException($"shape ({string.Join(", ", shape)}) has a negative dimension", nameof(shape));
            }
            count *= d;
        }
        if (count != values.LongLength)
        {
            throw new ArgumentException(
                $"shape ({string.Join(", ", shape)}) holds {count} elements but {values.LongLength} were given", nameof(values));
        }
        return new NdArray(dtype, (int[])shape.Clone(), values);
    }

    /// <summary>A 0-d array holding one value.</summary>
    public static NdArray Scalar<T>(T value) => Create(new[] { value });

    /// <summary>A 1-d array of shape [values.Length] over the values (not copied).</summary>
    public static NdArray FromVector<T>(T[] values)
    {
        ArgumentNullException.ThrowIfNull(values);
        return Create(values, values.Length);
    }

    /// <summary>Copies a 2-d .NET array (row-major) into an array of shape [rows, cols].</summary>
    public static NdArray FromMatrix<T>(T[,] matrix)
    {
        ArgumentNullException.ThrowIfNull(matrix);
        int rows = matrix.GetLength(0), cols = matrix.GetLength(1);
        var flat = new T[rows * cols];
        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < cols; j++)
            {
                flat[i * cols + j] = matrix[i, j];
            }
        }
        return Create(flat, rows, cols);
    }

    /// <summary>Copies a <see cref="Tensor{T}"/> (any strides) into a dense C-ordered array.</summary>
    public static NdArray FromTensor<T>(Tensor<T> tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        var values = new T[tensor.FlattenedLength];
        tensor.FlattenTo(values);
        var lengths = tensor.Lengths;
        var shape = new int[lengths.Length];
        for (int i = 0; i < shape.Length; i++)
        {
            shape[i] = checked((int)lengths[i]);
        }
        return Create(values, shape);
    }

    /// <summary>A dense <see cref="Tensor{T}"/> over a copy of the elements.</summary>
    /// <exception cref="InvalidOperationException">T is not this array's element type.</exception>
    public Tensor<T> ToTensor<T>()
    {
        var values = (T[])Values<T>().Clone();
        var lengths = new nint[shape.Length];
        for (int i = 0; i < shape.Length; i++)
        {
            lengths[i] = shape[i];
        }
        return Tensor.Create(values, lengths);
    }

    /// <summary>The flat C-ordered elements (not a copy).</summary>
    /// <exception cref="InvalidOperationException">T is not this array's element type.</exception>
    public T[] Values<T>() => data as T[]
        ?? throw new InvalidOperationException($"array holds {DType}, not {typeof(T).Name}");

    /// <summary>The raw element storage, for code that dispatches on <see cref="DType"/>.</summary>
    public Array RawValues => data;

    /// <summary>The element at a flat C-order position, widened exactly to double (bool as 0/1).</summary>
    public double GetDouble(long flatIndex) => data switch
    {
        double[] d => d[flatIndex],
        float[] f => f[flatIndex],
        Half[] h => (double)h[flatIndex],
        BFloat16[] b => b[flatIndex].ToDouble(),
        int[] i => i[flatIndex],
        long[] l => l[flatIndex],
        byte[] u => u[flatIndex],
        bool[] z => z[flatIndex] ? 1.0 : 0.0,
        _ => throw new InvalidOperationException("unknown storage"),
    };

    /// <summary>All elements widened exactly to double (int64 beyond 2^53 rounds), in C order.</summary>
    public double[] ToDoubles()
    {
        var result = new double[data.LongLength];
        for (long i = 0; i < result.LongLength; i++)
        {
            result[i] = GetDouble(i);
        }
        return result;
    }

    /// <summary>True for F16, BF16, F32 and F64.</summary>
    public bool IsFloatingPoint => DType is DType.F16 or DType.BF16 or DType.F32 or DType.F64;

    /// <summary>The index of a flat position as a tuple text, e.g. <c>(2, 0)</c>.</summary>
    public static string IndexText(IReadOnlyList<int> shape, long flatIndex)
    {
        ArgumentNullException.ThrowIfNull(shape);
        var index = new long[shape.Count];
        for (int d = shape.Count - 1; d >= 0; d--)
        {
            int n = Math.Max(shape[d], 1);
            index[d] = flatIndex % n;
            flatIndex /= n;
        }
        return "(" + string.Join(", ", index) + ")";
    }
}
