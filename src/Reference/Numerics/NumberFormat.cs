namespace Reference.Numerics;

/// <summary>The floating-point formats a candidate can be computed in.</summary>
public enum NumberFormat
{
    /// <summary>IEEE binary64, the references' own precision.</summary>
    Float64,
    /// <summary>IEEE binary32.</summary>
    Float32,
    /// <summary>IEEE binary16 (<see cref="System.Half"/>).</summary>
    Float16,
    /// <summary>bfloat16 (<see cref="BFloat16"/>).</summary>
    BFloat16,
}
