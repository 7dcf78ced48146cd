namespace Reference.Harness.Tensors;

/// <summary>The element types a tensor file may hold (the CLI contract's dtypes, plus u1 for .npy).</summary>
public enum DType
{
    /// <summary>IEEE binary16; numpy <c>f2</c>, safetensors <c>F16</c>. Element type <see cref="Half"/>.</summary>
    F16,
    /// <summary>bfloat16; safetensors <c>BF16</c> only. Element type <see cref="Reference.Numerics.BFloat16"/>.</summary>
    BF16,
    /// <summary>IEEE binary32; numpy <c>f4</c>, safetensors <c>F32</c>. Element type <see cref="float"/>.</summary>
    F32,
    /// <summary>IEEE binary64; numpy <c>f8</c>, safetensors <c>F64</c>. Element type <see cref="double"/>.</summary>
    F64,
    /// <summary>32-bit signed integer; numpy <c>i4</c>, safetensors <c>I32</c>. Element type <see cref="int"/>.</summary>
    I32,
    /// <summary>64-bit signed integer; numpy <c>i8</c>, safetensors <c>I64</c>. Element type <see cref="long"/>.</summary>
    I64,
    /// <summary>8-bit unsigned integer; numpy <c>u1</c>, safetensors <c>U8</c>. Element type <see cref="byte"/>.</summary>
    U8,
    /// <summary>Boolean, one byte each; numpy <c>b1</c>, safetensors <c>BOOL</c>. Element type <see cref="bool"/>.</summary>
    Bool,
}
