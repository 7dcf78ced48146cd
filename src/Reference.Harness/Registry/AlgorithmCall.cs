using Reference.Harness.Tensors;
using Reference.Numerics;

namespace Reference.Harness.Registry;

/// <summary>
/// One call of an algorithm: its input arrays, checked against the <see cref="InputSpec"/>s, and its parameter values.
/// The accessors widen floating-point inputs exactly to double for the references, or give float32 for the kernels.
/// </summary>
public sealed class AlgorithmCall
{
    private readonly IReadOnlyDictionary<string, NdArray> inputs;

    /// <summary>Creates a call; use <see cref="Algorithm.Bind(IReadOnlyDictionary{string, NdArray}, IEnumerable{KeyValuePair{string, string}}, string)"/> to check the arrays first.</summary>
    /// <param name="inputs">The input arrays by name.</param>
    /// <param name="parameters">The checked parameter values.</param>
    /// <param name="source">Where the inputs came from (a file path), for messages.</param>
    public AlgorithmCall(IReadOnlyDictionary<string, NdArray> inputs, ParameterValues parameters, string source)
    {
        this.inputs = inputs;
        Parameters = parameters;
        Source = source;
    }

    /// <summary>The parameter values.</summary>
    public ParameterValues Parameters { get; }

    /// <summary>Where the inputs came from, for messages.</summary>
    public string Source { get; }

    /// <summary>The device an optimized path runs on (<c>--device</c>, <see cref="Devices"/>); <c>cpu</c> unless set.
    /// The reference always runs on the CPU.</summary>
    public string Device { get; init; } = Devices.Cpu;

    /// <summary>The input arrays by name.</summary>
    public IReadOnlyDictionary<string, NdArray> Inputs => inputs;

    /// <summary>True when an (optional) input is present.</summary>
    public bool Has(string name) => inputs.ContainsKey(name);

    /// <summary>An input array.</summary>
    public NdArray Array(string name) =>
        inputs.TryGetValue(name, out var a) ? a : throw new InputException($"{Source}: array '{name}' is missing");

    /// <summary>
    /// The precision the float inputs carry (<see cref="Formats.Effective"/>; the most precise of them), or Float64 when
    /// there are none: bfloat16 tensors saved as float32, as numpy needs, are bfloat16 inputs.
    /// </summary>
    public NumberFormat InputFormat =>
        inputFormat ??= inputs.Values.Where(a => a.IsFloatingPoint).Select(Formats.Effective).DefaultIfEmpty(NumberFormat.Float64).Min();

    private NumberFormat? inputFormat;

    /// <summary>
    /// A value computed once per call: the first request runs <paramref name="create"/>, later ones (with an equal
    /// <paramref name="key"/>) return its result. The check path reads inputs, options and the reference's own results
    /// through it, so that the reference and the validators share one conversion and one computation. A
    /// <paramref name="create"/> that throws stores nothing. Values are shared: callers must not modify them.
    /// </summary>
    /// <typeparam name="T">The value's type.</typeparam>
    /// <param name="key">What the value is (e.g. a tuple of a kind and an input name); equal keys must mean equal values.</param>
    /// <param name="create">Computes the value.</param>
    /// <returns>The value.</returns>
    public T Memo<T>(object key, Func<T> create)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(create);
        lock (memo)
        {
            if (memo.TryGetValue(key, out var known))
            {
                return (T)known!;
            }
        }
        var value = create();
        lock (memo)
        {
            if (memo.TryGetValue(key, out var known))
            {
                return (T)known!;
            }
            memo[key] = value;
        }
        return value;
    }

    /// <summary>A value <see cref="Memo{T}"/> has already computed for <paramref name="key"/>, without computing it.</summary>
    /// <typeparam name="T">The value's type.</typeparam>
    /// <param name="key">The key given to <see cref="Memo{T}"/>.</param>
    /// <param name="value">The value, when there is one.</param>
    /// <returns>True when the value is known.</returns>
    public bool TryGetMemo<T>(object key, [System.Diagnostics.CodeAnalysis.MaybeNullWhen(false)] out T value)
    {
        ArgumentNullException.ThrowIfNull(key);
        lock (memo)
        {
            if (memo.TryGetValue(key, out var known) && known is T typed)
            {
                value = typed;
                return true;
            }
        }
        value = default;
        return false;
    }

    private readonly Dictionary<object, object?> memo = [];

    /// <summary>A rank-2 input widened exactly to double [rows, cols]; converted once per call (<see cref="Memo{T}"/>):
    /// do not modify it.</summary>
    public double[,] Matrix(string name) => Memo(("matrix", name), () => ReadMatrix(name));

    private double[,] ReadMatrix(string name)
    {
        var a = Array(name);
        int rows = a.Shape[0], cols = a.Shape[1];
        var m = new double[rows, cols];
        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < cols; j++)
            {
                m[i, j] = a.GetDouble((long)i * cols + j);
            }
        }
        return m;
    }

    /// <summary>An input of any rank, widened exactly to double, flat in C order; converted once per call
    /// (<see cref="Memo{T}"/>): do not modify it.</summary>
    public double[] Doubles(string name) => Memo(("doubles", name), () => Array(name).ToDoubles());

    /// <summary>An optional input widened to double, or null when absent.</summary>
    public double[]? OptionalDoubles(string name) => Has(name) ? Doubles(name) : null;

    /// <summary>An input of any rank as float32, flat in C order: exact for f16, bf16 and f32, rounded for f64.</summary>
    public float[] Floats(string name)
    {
        var a = Array(name);
        if (a.DType == DType.F32)
        {
            return (float[])a.Values<float>().Clone();
        }
        var result = new float[a.Length];
        for (long i = 0; i < result.LongLength; i++)
        {
            result[i] = (float)a.GetDouble(i);
        }
        return result;
    }
}

/// <summary>Maps dtypes to number formats.</summary>
public static class Formats
{
    /// <summary>The number format of a floating-point dtype (Float64 for non-float dtypes).</summary>
    public static NumberFormat Of(DType dtype) => dtype switch
    {
        DType.F16 => NumberFormat.Float16,
        DType.BF16 => NumberFormat.BFloat16,
        DType.F32 => NumberFormat.Float32,
        _ => NumberFormat.Float64,
    };

    /// <summary>
    /// The precision an array's values actually carry: the least precise of bfloat16, float16, float32 and its own dtype
    /// that holds every value exactly (non-finite values fit every format). numpy has no bfloat16, so a bfloat16 kernel's
    /// output is saved as float32, and <c>.double()</c> or <c>.item()</c> stores float32 results as float64; such an
    /// array is judged in the precision it was computed in. A float16 array stays float16. Integer arrays: Float64.
    /// </summary>
    /// <param name="array">The array.</param>
    /// <returns>Its effective format.</returns>
    public static NumberFormat Effective(NdArray array)
    {
        ArgumentNullException.ThrowIfNull(array);
        var own = Of(array.DType);
        if (!array.IsFloatingPoint || own is NumberFormat.Float16 or NumberFormat.BFloat16)
        {
            return own;
        }
        bool bf16 = true, f16 = true, f32 = true;
        for (long i = 0; i < array.Length; i++)
        {
            double x = array.GetDouble(i);
            if (!double.IsFinite(x))
            {
                continue;
            }
            bf16 = bf16 && Precision.Round(x, NumberFormat.BFloat16) == x;
            f16 = f16 && Precision.Round(x, NumberFormat.Float16) == x;
            f32 = f32 && (double)(float)x == x;
            if (!bf16 && !f16 && (!f32 || own == NumberFormat.Float32))
            {
                // Neither half format holds it: float64 data is float32 only if every value is; float32 data always is.
                return f32 ? NumberFormat.Float32 : NumberFormat.Float64;
            }
        }
        return bf16 ? NumberFormat.BFloat16 : f16 ? NumberFormat.Float16 : NumberFormat.Float32;
    }

    /// <summary>The short name used in reports: f64, f32, f16, bf16.</summary>
    public static string Name(NumberFormat format) => format switch
    {
        NumberFormat.Float32 => "f32",
        NumberFormat.Float16 => "f16",
        NumberFormat.BFloat16 => "bf16",
        _ => "f64",
    };
}
