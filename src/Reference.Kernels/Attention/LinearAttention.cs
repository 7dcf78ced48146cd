using System.Numerics.Tensors;
using Reference.Attention;

namespace Reference.Kernels.Attention;

/// <summary>The sizes of a linear-attention call on flat row-major buffers: q, k [B, H, T, D], v and out [B, H, T, Dv].</summary>
/// <param name="Batch">B, &gt;= 1.</param>
/// <param name="Heads">H, &gt;= 1.</param>
/// <param name="Length">T, &gt;= 0.</param>
/// <param name="KeyDim">D, &gt;= 1.</param>
/// <param name="ValueDim">Dv, &gt;= 0.</param>
public sealed record LinearAttentionShape(int Batch, int Heads, int Length, int KeyDim, int ValueDim)
{
    /// <summary>Elements of q and of k: B*H*T*D.</summary>
    public long KeyElements => (long)Batch * Heads * Length * KeyDim;

    /// <summary>Elements of v and of out: B*H*T*Dv.</summary>
    public long ValueElements => (long)Batch * Heads * Length * ValueDim;
}

/// <summary>
/// Chunked causal linear attention in float32 (the optimized twin of <see cref="Reference.Attention.LinearAttention"/>):
/// the state S [D, Dv] and z [D] are carried across chunks of C positions, the masked quadratic form is used inside a
/// chunk. <see cref="TensorPrimitives"/> for dot products and row updates, parallel over (b, h).
/// </summary>
/// <remarks>
/// <para>Per (b, h) and chunk [s, e] (phi the feature map, gamma the decay):</para>
/// <code>
/// num_i = gamma^(i-s+1) phi(q_i)^T S + sum_{s&lt;=j&lt;=i} gamma^(i-j) (phi(q_i).phi(k_j)) v_j    (den likewise with z, 1)
/// S    &lt;- gamma^(e-s+1) S + sum_{s&lt;=j&lt;=e} gamma^(e-j) phi(k_j) v_j^T,   z likewise
/// out_i = num_i / den_i when normalized (0 when den_i = 0), num_i otherwise
/// </code>
/// <para>Every (b, h) is computed by one thread in a fixed order, so results do not depend on threading.
/// The <see cref="LinearAttentionOptions.Form"/> option is ignored: this kernel is the chunked form with
/// <see cref="LinearAttentionOptions.Chunk"/>.</para>
/// <para>Sources: Katharopoulos et al. 2020; Yang et al. 2024, "Gated Linear Attention" (chunkwise form).</para>
/// </remarks>
public static class LinearAttention
{
    /// <summary>Below this many multiply-adds a call runs on one thread.</summary>
    private const long ParallelThreshold = 1 << 16;

    /// <summary>Chunked linear attention of float32 inputs.</summary>
    /// <param name="q">Queries [B, H, T, D] row-major, finite.</param>
    /// <param name="k">Keys [B, H, T, D] row-major, finite.</param>
    /// <param name="v">Values [B, H, T, Dv] row-major, finite.</param>
    /// <param name="shape">The sizes.</param>
    /// <param name="options">Feature map, normalization, decay, chunk (the form is ignored).</param>
    /// <param name="parallel">Whether large calls may use several threads; the result does not depend on it.</param>
    /// <returns>out [B, H, T, Dv] row-major.</returns>
    /// <exception cref="ArgumentException">A length does not match the shape, an input is not finite (naming the array
    /// and flat index), the decay is outside (0, 1], or the chunk is &lt; 1.</exception>
    public static float[] Chunked(float[] q, float[] k, float[] v, LinearAttentionShape shape, LinearAttentionOptions options, bool parallel = true)
    {
        // 1. Validate.
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(options);
        if (shape.Batch < 1 || shape.Heads < 1 || shape.Length < 0 || shape.KeyDim < 1 || shape.ValueDim < 0)
            throw new ArgumentException($"invalid shape {shape}", nameof(shape));
        Require(q, shape.KeyElements, nameof(q));
        Require(k, shape.KeyElements, nameof(k));
        Require(v, shape.ValueElements, nameof(v));
        if (!(options.Decay > 0.0 && options.Decay <= 1.0))
            throw new ArgumentException($"decay must be in (0, 1], got {options.Decay}", nameof(options));
        if (options.Chunk < 1) throw new ArgumentException($"chunk must be >= 1, got {options.Chunk}", nameof(options));

        var output = new float[shape.ValueElements];
        int items = shape.Batch * shape.Heads;
        long work = (long)items * shape.Length * (Math.Min(shape.Length, options.Chunk) + shape.KeyDim) * (shape.KeyDim + shape.ValueDim);
        if (parallel && work >= ParallelThreshold)
            Parallel.For(0, items, item => Head(q, k, v, shape, options, item, output));
        else
            for (int item = 0; item < items; item++) Head(q, k, v, shape, options, item, output);
        return output;
    }

    /// <summary>One (b, h): item = b * H + h.</summary>
    private static void Head(float[] q, float[] k, float[] v, LinearAttentionShape shape, LinearAttentionOptions options, int item, float[] output)
    {
        int t = shape.Length, d = shape.KeyDim, dv = shape.ValueDim, c = options.Chunk;
        float gamma = (float)options.Decay;
        long keyBase = (long)item * t * d, valueBase = (long)item * t * dv;

        // 1. Features of the head's queries and keys [T, D].
        var fq = new float[t * d];
        var fk = new float[t * d];
        for (int n = 0; n < t * d; n++)
        {
            fq[n] = Feature(q[keyBase + n], options.FeatureMap);
            fk[n] = Feature(k[keyBase + n], options.FeatureMap);
        }
        var values = new ReadOnlySpan<float>(v, (int)valueBase, t * dv);
        var state = new float[d * dv];
        var z = new float[d];
        var num = new float[dv];

        for (int start = 0; start < t; start += c)
        {
            int end = Math.Min(t, start + c) - 1;
            for (int i = start; i <= end; i++)
            {
                var qi = new ReadOnlySpan<float>(fq, i * d, d);
                // 2. Inter-chunk: gamma^(i-start+1) phi(q_i)^T [S | z].
                float carry = MathF.Pow(gamma, i - start + 1);
                Array.Clear(num);
                for (int a = 0; a < d; a++)
                    TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(state, a * dv, dv), qi[a], num, num);
                TensorPrimitives.Multiply(num, carry, num);
                float den = carry * TensorPrimitives.Dot(qi, z);

                // 3. Intra-chunk: the masked quadratic form over start..i.
                for (int j = start; j <= i; j++)
                {
                    float w = MathF.Pow(gamma, i - j) * TensorPrimitives.Dot(qi, new ReadOnlySpan<float>(fk, j * d, d));
                    den += w;
                    TensorPrimitives.MultiplyAdd(values.Slice(j * dv, dv), w, num, num);
                }

                // 4. Normalize and store.
                var target = new Span<float>(output, (int)(valueBase + (long)i * dv), dv);
                if (!options.Normalize) num.CopyTo(target);
                else if (den == 0.0f) target.Clear();
                else TensorPrimitives.Divide(num, den, target);
            }

            // 5. The state after the chunk.
            float decayAll = MathF.Pow(gamma, end - start + 1);
            TensorPrimitives.Multiply(state, decayAll, state);
            TensorPrimitives.Multiply(z, decayAll, z);
            for (int j = start; j <= end; j++)
            {
                float w = MathF.Pow(gamma, end - j);
                var kj = new ReadOnlySpan<float>(fk, j * d, d);
                TensorPrimitives.MultiplyAdd(kj, w, z, z);
                for (int a = 0; a < d; a++)
                {
                    var row = new Span<float>(state, a * dv, dv);
                    TensorPrimitives.MultiplyAdd(values.Slice(j * dv, dv), w * kj[a], row, row);
                }
            }
        }
    }

    private static float Feature(float x, FeatureMap map) =>
        map == FeatureMap.Identity ? x : x > 0f ? x + 1f : MathF.Exp(x);

    private static void Require(float[] x, long length, string name)
    {
        if (x.LongLength != length)
            throw new ArgumentException($"{name} has {x.LongLength} elements but the shape needs {length}", name);
        for (long i = 0; i < x.LongLength; i++)
        {
            if (!float.IsFinite(x[i]))
                throw new ArgumentException($"{name}[{i}] is {(float.IsNaN(x[i]) ? "NaN" : x[i] > 0 ? "+Infinity" : "-Infinity")}", name);
        }
    }
}
