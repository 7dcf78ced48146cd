using Reference.Harness.Registry;
using Reference.Harness.Tensors;
using Reference.Numerics;
using static TorchSharp.torch;

namespace Reference.Torch.Routing;

/// <summary>
/// The precision of the routing torch paths, as routers are written in PyTorch: the router input (logits, cost or x)
/// arrives in the model's dtype, the router math runs in float32 (Hugging Face Mixtral's
/// <c>softmax(router_logits, dtype=torch.float)</c>, DeepSeek-V3's float32 gate and sigmoid, DeepSpeed's float32
/// gate, Megatron-LM's float32 probabilities and losses), dispatch positions in int64, and the weights the experts'
/// outputs are multiplied by are cast back with <c>.to(dtype)</c>. So a float16 or bfloat16 input gives float16 or
/// bfloat16 weights (stored in that dtype, and judged in it); any other input dtype gives float32.
/// </summary>
internal static class TorchRouting
{
    /// <summary>The model dtype: float16 or bfloat16 when the array has that dtype, else float32.</summary>
    /// <param name="call">The call.</param>
    /// <param name="name">The router input's name.</param>
    /// <returns>The scalar type the weights are returned in.</returns>
    internal static ScalarType ModelType(AlgorithmCall call, string name) => call.Array(name).DType switch
    {
        DType.F16 => ScalarType.Float16,
        DType.BF16 => ScalarType.BFloat16,
        _ => ScalarType.Float32,
    };

    /// <summary>A float32 tensor cast to <paramref name="dtype"/> (<c>.to(dtype)</c>) and stored as an array of that
    /// dtype: float16, bfloat16 or float32.</summary>
    /// <param name="x">The tensor (any float dtype).</param>
    /// <param name="dtype">The dtype to cast to.</param>
    /// <param name="shape">The array's shape.</param>
    /// <returns>The array.</returns>
    internal static NdArray Stored(Tensor x, ScalarType dtype, params int[] shape)
    {
        // Cast on the device as the model does, then widen exactly to float32 to copy the values out.
        var values = x.numel() == 0 ? [] : x.to(dtype).to(ScalarType.Float32).contiguous().cpu().data<float>().ToArray();
        return dtype switch
        {
            ScalarType.Float16 => NdArray.Create(values.Select(v => (Half)v).ToArray(), shape),
            ScalarType.BFloat16 => NdArray.Create(values.Select(BFloat16.FromSingle).ToArray(), shape),
            _ => NdArray.Create(values, shape),
        };
    }
}
