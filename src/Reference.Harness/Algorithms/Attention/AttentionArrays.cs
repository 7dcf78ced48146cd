using Reference.Harness.Registry;
using Reference.Harness.Tensors;

namespace Reference.Harness.Algorithms;

/// <summary>
/// Conversions between the registry's flat <see cref="NdArray"/>s and the multi-dimensional .NET arrays of the
/// attention references (double[,,,] for [B,H,T,D], bool[,,,] for masks, int[,,] and int[,,,] for block lists).
/// </summary>
internal static class AttentionArrays
{
    /// <summary>A rank-4 float input widened exactly to double, once per call (<see cref="AlgorithmCall.Memo{T}"/>):
    /// do not modify it.</summary>
    internal static double[,,,] Double4(AlgorithmCall call, string name) => call.Memo(("double4", name), () => Double4(call.Array(name)));

    /// <summary>A rank-4 float array widened exactly to double.</summary>
    internal static double[,,,] Double4(NdArray a)
    {
        var s = a.Shape;
        var x = new double[s[0], s[1], s[2], s[3]];
        long n = 0;
        for (int i = 0; i < s[0]; i++)
        {
            for (int j = 0; j < s[1]; j++)
            {
                for (int k = 0; k < s[2]; k++)
                {
                    for (int l = 0; l < s[3]; l++)
                        x[i, j, k, l] = a.GetDouble(n++);
                }
            }
        }

        return x;
    }

    /// <summary>A rank-3 float input widened exactly to double, once per call: do not modify it.</summary>
    internal static double[,,] Double3(AlgorithmCall call, string name) => call.Memo(("double3", name), () => ReadDouble3(call, name));

    private static double[,,] ReadDouble3(AlgorithmCall call, string name)
    {
        var a = call.Array(name);
        var s = a.Shape;
        var x = new double[s[0], s[1], s[2]];
        long n = 0;
        for (int i = 0; i < s[0]; i++)
        {
            for (int j = 0; j < s[1]; j++)
            {
                for (int k = 0; k < s[2]; k++)
                    x[i, j, k] = a.GetDouble(n++);
            }
        }

        return x;
    }

    /// <summary>A rank-4 bool input (b1, or u1 holding 0/1), read once per call: do not modify it.</summary>
    internal static bool[,,,] Bool4(AlgorithmCall call, string name) => call.Memo(("bool4", name), () => ReadBool4(call, name));

    private static bool[,,,] ReadBool4(AlgorithmCall call, string name)
    {
        var a = call.Array(name);
        var s = a.Shape;
        var x = new bool[s[0], s[1], s[2], s[3]];
        long n = 0;
        for (int i = 0; i < s[0]; i++)
        {
            for (int j = 0; j < s[1]; j++)
            {
                for (int k = 0; k < s[2]; k++)
                {
                    for (int l = 0; l < s[3]; l++)
                        x[i, j, k, l] = a.GetDouble(n++) != 0.0;
                }
            }
        }

        return x;
    }

    /// <summary>A rank-2 bool input (b1, or u1 holding 0/1), read once per call: do not modify it.</summary>
    internal static bool[,] Bool2(AlgorithmCall call, string name) => call.Memo(("bool2", name), () => ReadBool2(call, name));

    private static bool[,] ReadBool2(AlgorithmCall call, string name)
    {
        var a = call.Array(name);
        var x = new bool[a.Shape[0], a.Shape[1]];
        long n = 0;
        for (int i = 0; i < a.Shape[0]; i++)
        {
            for (int j = 0; j < a.Shape[1]; j++)
                x[i, j] = a.GetDouble(n++) != 0.0;
        }

        return x;
    }

    /// <summary>An optional rank-4 bool input, or null.</summary>
    internal static bool[,,,]? OptionalBool4(AlgorithmCall call, string name) => call.Has(name) ? Bool4(call, name) : null;

    /// <summary>A rank-3 integer input (i32, or i64 within the int32 range), read once per call: do not modify it.</summary>
    /// <exception cref="InputException">An int64 entry does not fit in int32.</exception>
    internal static int[,,] Int3(AlgorithmCall call, string name) => call.Memo(("int3", name), () => ReadInt3(call, name));

    private static int[,,] ReadInt3(AlgorithmCall call, string name)
    {
        var a = call.Array(name);
        var s = a.Shape;
        var x = new int[s[0], s[1], s[2]];
        long n = 0;
        for (int i = 0; i < s[0]; i++)
        {
            for (int j = 0; j < s[1]; j++)
            {
                for (int k = 0; k < s[2]; k++)
                    x[i, j, k] = ToInt(a, n++, call.Source, name);
            }
        }

        return x;
    }

    /// <summary>A rank-4 integer input (i32, or i64 within the int32 range), read once per call: do not modify it.</summary>
    /// <exception cref="InputException">An int64 entry does not fit in int32.</exception>
    internal static int[,,,] Int4(AlgorithmCall call, string name) => call.Memo(("int4", name), () => ReadInt4(call, name));

    private static int[,,,] ReadInt4(AlgorithmCall call, string name)
    {
        var a = call.Array(name);
        var s = a.Shape;
        var x = new int[s[0], s[1], s[2], s[3]];
        long n = 0;
        for (int i = 0; i < s[0]; i++)
        {
            for (int j = 0; j < s[1]; j++)
            {
                for (int k = 0; k < s[2]; k++)
                {
                    for (int l = 0; l < s[3]; l++)
                        x[i, j, k, l] = ToInt(a, n++, call.Source, name);
                }
            }
        }

        return x;
    }

    /// <summary>A double[,,,] as a flat f64 array of the same shape.</summary>
    internal static NdArray ToArray(double[,,,] x)
    {
        var flat = new double[x.Length];
        long n = 0;
        foreach (double value in x) flat[n++] = value;   // row-major enumeration
        return NdArray.Create(flat, x.GetLength(0), x.GetLength(1), x.GetLength(2), x.GetLength(3));
    }

    /// <summary>A double[,,] as a flat f64 array of the same shape.</summary>
    internal static NdArray ToArray(double[,,] x)
    {
        var flat = new double[x.Length];
        long n = 0;
        foreach (double value in x) flat[n++] = value;
        return NdArray.Create(flat, x.GetLength(0), x.GetLength(1), x.GetLength(2));
    }

    /// <summary>A bool[,,,] as a flat b1 array of the same shape.</summary>
    internal static NdArray ToArray(bool[,,,] x)
    {
        var flat = new bool[x.Length];
        long n = 0;
        foreach (bool value in x) flat[n++] = value;
        return NdArray.Create(flat, x.GetLength(0), x.GetLength(1), x.GetLength(2), x.GetLength(3));
    }

    /// <summary>A bool[,,] as a flat b1 array of the same shape.</summary>
    internal static NdArray ToArray(bool[,,] x)
    {
        var flat = new bool[x.Length];
        long n = 0;
        foreach (bool value in x) flat[n++] = value;
        return NdArray.Create(flat, x.GetLength(0), x.GetLength(1), x.GetLength(2));
    }

    /// <summary>Applies a function to every entry.</summary>
    internal static double[,,,] Map(double[,,,] x, Func<double, double> f)
    {
        var y = new double[x.GetLength(0), x.GetLength(1), x.GetLength(2), x.GetLength(3)];
        for (int i = 0; i < x.GetLength(0); i++)
        {
            for (int j = 0; j < x.GetLength(1); j++)
            {
                for (int k = 0; k < x.GetLength(2); k++)
                {
                    for (int l = 0; l < x.GetLength(3); l++)
                        y[i, j, k, l] = f(x[i, j, k, l]);
                }
            }
        }

        return y;
    }

    private static int ToInt(NdArray a, long flat, string source, string name)
    {
        double value = a.GetDouble(flat);
        if (value < int.MinValue || value > int.MaxValue)
        {
            throw new InputException($"{source}: array '{name}'{NdArray.IndexText(a.Shape, flat)} = {value} does not fit in int32");
        }
        return (int)value;
    }
}
