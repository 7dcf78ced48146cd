namespace Reference.Attention;

/// <summary>How <see cref="ResaModel.Decode"/> attends during decoding.</summary>
public enum ResaDecodeMode
{
    /// <summary>Dense attention over the whole cache at every step.</summary>
    Dense,
    /// <summary>ReSA block-sparse attention (<see cref="Resa.DecodeStep"/>) at every step, never rectified.</summary>
    Sparse,
    /// <summary>ReSA block-sparse attention, and every f steps the last f tokens are re-encoded densely and their
    /// keys and values overwrite the cache.</summary>
    Rectified,
}

/// <summary>The sizes and seed of a <see cref="ResaModel"/>.</summary>
public sealed record ResaModelConfig
{
    /// <summary>Number of attention layers, &gt;= 1. Default 2.</summary>
    public int Layers { get; init; } = 2;

    /// <summary>Model width, &gt;= 1. Default 16.</summary>
    public int ModelDim { get; init; } = 16;

    /// <summary>Query heads Hq, a multiple of <see cref="KvHeads"/>. Default 4.</summary>
    public int QueryHeads { get; init; } = 4;

    /// <summary>Key/value heads Hkv, &gt;= 1. Default 2.</summary>
    public int KvHeads { get; init; } = 2;

    /// <summary>Head dimension D (= Dv), &gt;= 1. Default 4.</summary>
    public int HeadDim { get; init; } = 4;

    /// <summary>The seed of the weights (System.Random, Box-Muller normals). Default 1.</summary>
    public int Seed { get; init; } = 1;
}

/// <summary>A decoding run of <see cref="ResaModel"/>.</summary>
public sealed record ResaDecodeTrace
{
    /// <summary>Creates a trace (arrays stored, not copied).</summary>
    /// <param name="inputs">The input vector at every position [T0 + steps, dm].</param>
    /// <param name="outputs">The last layer's output of each decoded token [steps, dm].</param>
    /// <param name="keys">The key cache at the end [layers, Hkv, T0 + steps, D].</param>
    /// <param name="values">The value cache at the end [layers, Hkv, T0 + steps, D].</param>
    /// <param name="rectifications">The steps (1-based) after which a rectification ran.</param>
    public ResaDecodeTrace(double[,] inputs, double[,] outputs, double[,,,] keys, double[,,,] values, IReadOnlyList<int> rectifications)
    {
        Inputs = inputs;
        Outputs = outputs;
        Keys = keys;
        Values = values;
        Rectifications = rectifications;
    }

    /// <summary>The input vector at every position: the prompt, then the generated inputs, [T0 + steps, dm].</summary>
    public double[,] Inputs { get; }

    /// <summary>The last layer's output of each decoded token, [steps, dm].</summary>
    public double[,] Outputs { get; }

    /// <summary>The key cache at the end of the run, [layers, Hkv, T0 + steps, D].</summary>
    public double[,,,] Keys { get; }

    /// <summary>The value cache at the end of the run, [layers, Hkv, T0 + steps, D].</summary>
    public double[,,,] Values { get; }

    /// <summary>The decode steps (1-based) after which a rectification ran.</summary>
    public IReadOnlyList<int> Rectifications { get; }
}

/// <summary>
/// A small seeded attention-only model for comparing dense, sparse (ReSA) and rectified decoding
/// (proofs/attention-sparse.md, Definition: ReSA).
/// </summary>
/// <remarks>
/// <para>Per layer l, for the input x_t [dm] of position t: q = Wq x [Hq, D], k = Wk x, v = Wv x [Hkv, D];
/// the attention output a [Hq, D] over the cache of positions &lt;= t; x_t &lt;- x_t + Wo a. The last layer's x_t is
/// the token's output y_t, and the next token's input is tanh(Wn y_t) (a continuous stand-in for sampling a token and
/// embedding it). Weights are normals / sqrt(fan-in) drawn from System.Random(seed).</para>
/// <para>Prefill runs all positions of a sequence with causal dense attention. Decoding appends one position per step.
/// Rectification (ReSA): after every f-th sparse step, the last f positions are run again densely, layer by layer,
/// with causal attention over the cache, and their keys and values overwrite the cache; the already produced outputs
/// and next input are kept. Each attention row is the same function of the same cache entries in prefill, dense
/// decoding and rectification, so the keys and values after a rectification equal those of a dense prefill of the
/// same inputs bit for bit (proofs/attention-sparse.md, attention.resa-rectification).</para>
/// <para>Source: Sun et al. 2025, "Rectified Sparse Attention" (the decode loop with rectification frequency f).</para>
/// </remarks>
public sealed class ResaModel
{
    private readonly ResaModelConfig config;
    private readonly double[][,] wq, wk, wv, wo;
    private readonly double[,] wn;

    private ResaModel(ResaModelConfig config)
    {
        this.config = config;
        var rng = new Random(config.Seed);
        int dm = config.ModelDim, hd = config.HeadDim;
        wq = new double[config.Layers][,];
        wk = new double[config.Layers][,];
        wv = new double[config.Layers][,];
        wo = new double[config.Layers][,];
        for (int l = 0; l < config.Layers; l++)
        {
            wq[l] = Normal(rng, config.QueryHeads * hd, dm);
            wk[l] = Normal(rng, config.KvHeads * hd, dm);
            wv[l] = Normal(rng, config.KvHeads * hd, dm);
            wo[l] = Normal(rng, dm, config.QueryHeads * hd);
        }
        wn = Normal(rng, dm, dm);
    }

    /// <summary>The model's configuration.</summary>
    public ResaModelConfig Config => config;

    /// <summary>Creates the model with weights drawn from the config's seed.</summary>
    /// <param name="config">Sizes and seed.</param>
    /// <returns>The model.</returns>
    /// <exception cref="ArgumentException">A size is &lt; 1 or Hkv does not divide Hq.</exception>
    public static ResaModel Create(ResaModelConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.Layers < 1 || config.ModelDim < 1 || config.HeadDim < 1 || config.KvHeads < 1 || config.QueryHeads < 1
            || config.QueryHeads % config.KvHeads != 0)
        {
            throw new ArgumentException($"invalid model sizes {config}", nameof(config));
        }

        return new ResaModel(config);
    }

    /// <summary>Dense causal prefill of a whole sequence: the keys and values every layer caches.</summary>
    /// <param name="inputs">The input vectors [T, dm], finite.</param>
    /// <returns>A trace with no decoded steps: Inputs, Keys and Values [layers, Hkv, T, D]; Outputs holds the last
    /// layer's output of every position [T, dm].</returns>
    public ResaDecodeTrace Prefill(double[,] inputs)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        int t = inputs.GetLength(0);
        RequireWidth(inputs, nameof(inputs));
        var keys = new double[config.Layers, config.KvHeads, t, config.HeadDim];
        var values = new double[config.Layers, config.KvHeads, t, config.HeadDim];
        var hidden = (double[,])inputs.Clone();
        EncodeDense(hidden, 0, t, keys, values);
        return new ResaDecodeTrace((double[,])inputs.Clone(), hidden, keys, values, Array.Empty<int>());
    }

    /// <summary>Prefills the prompt densely, then decodes <paramref name="steps"/> tokens.</summary>
    /// <param name="prompt">The prompt's input vectors [T0, dm], T0 &gt;= 1, finite.</param>
    /// <param name="steps">Tokens to decode, &gt;= 0.</param>
    /// <param name="mode">Dense, sparse or rectified attention.</param>
    /// <param name="options">The ReSA selection options (ignored in dense mode).</param>
    /// <param name="rectifyEvery">f, &gt;= 1: rectified mode re-encodes the last f tokens after every f-th step.</param>
    /// <returns>The trace.</returns>
    /// <exception cref="ArgumentException">A size or option is out of range.</exception>
    public ResaDecodeTrace Decode(double[,] prompt, int steps, ResaDecodeMode mode, ResaOptions options, int rectifyEvery)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(options);
        RequireWidth(prompt, nameof(prompt));
        int t0 = prompt.GetLength(0), dm = config.ModelDim, total = t0 + steps;
        if (t0 < 1) throw new ArgumentException("the prompt is empty", nameof(prompt));
        if (steps < 0) throw new ArgumentException($"steps must be >= 0, got {steps}", nameof(steps));
        if (rectifyEvery < 1) throw new ArgumentException($"rectifyEvery must be >= 1, got {rectifyEvery}", nameof(rectifyEvery));

        // 1. Prefill the prompt densely.
        var inputs = new double[total, dm];
        for (int i = 0; i < t0; i++)
            for (int d = 0; d < dm; d++) inputs[i, d] = prompt[i, d];
        var keys = new double[config.Layers, config.KvHeads, total, config.HeadDim];
        var values = new double[config.Layers, config.KvHeads, total, config.HeadDim];
        var hidden = (double[,])inputs.Clone();
        EncodeDense(hidden, 0, t0, keys, values);

        // 2. Decode: the next input comes from the previous position's output.
        var outputs = new double[steps, dm];
        var rectifications = new List<int>();
        var last = Row(hidden, t0 - 1);
        for (int s = 1; s <= steps; s++)
        {
            int position = t0 + s - 1;
            var x = Next(last);
            for (int d = 0; d < dm; d++) inputs[position, d] = x[d];
            last = DecodeToken(x, position, keys, values, mode, options);
            for (int d = 0; d < dm; d++) outputs[s - 1, d] = last[d];

            // 3. Rectification: the last f positions again, densely; their K/V overwrite the cache.
            if (mode == ResaDecodeMode.Rectified && s % rectifyEvery == 0)
            {
                var again = (double[,])inputs.Clone();
                EncodeDense(again, position - rectifyEvery + 1, position + 1, keys, values);
                rectifications.Add(s);
            }
        }
        return new ResaDecodeTrace(inputs, outputs, keys, values, rectifications);
    }

    /// <summary>
    /// Runs positions from..to-1 of <paramref name="x"/> (rows = positions, updated in place to the last layer's output)
    /// through every layer with causal dense attention, writing their keys and values into the cache; the cache must
    /// already hold positions &lt; from.
    /// </summary>
    private void EncodeDense(double[,] x, int from, int to, double[,,,] keys, double[,,,] values)
    {
        int n = to - from, hd = config.HeadDim, hq = config.QueryHeads;
        if (n <= 0) return;
        for (int l = 0; l < config.Layers; l++)
        {
            // 1. Project the positions and write their keys and values.
            var q = new double[1, hq, n, hd];
            for (int r = 0; r < n; r++)
            {
                var xr = Row(x, from + r);
                Project(wq[l], xr, q, r);
                StoreKv(l, from + r, xr, keys, values);
            }
            // 2. Causal attention (bottom-right aligned: row r sits at position from + r) over the cache 0..to-1.
            var attention = DenseAttention.Compute(q, Slice(keys, l, to), Slice(values, l, to), new AttentionOptions { Causal = true });
            // 3. Residual update.
            for (int r = 0; r < n; r++) AddOutput(l, attention.Out, r, x, from + r);
        }
    }

    /// <summary>One decoded position through every layer; returns the last layer's output.</summary>
    private double[] DecodeToken(double[] input, int position, double[,,,] keys, double[,,,] values, ResaDecodeMode mode, ResaOptions options)
    {
        var x = new double[1, config.ModelDim];
        for (int d = 0; d < config.ModelDim; d++) x[0, d] = input[d];
        for (int l = 0; l < config.Layers; l++)
        {
            var xr = Row(x, 0);
            var q = new double[1, config.QueryHeads, 1, config.HeadDim];
            Project(wq[l], xr, q, 0);
            StoreKv(l, position, xr, keys, values);
            var k = Slice(keys, l, position + 1);
            var v = Slice(values, l, position + 1);
            double[,,,] output = mode == ResaDecodeMode.Dense
                ? DenseAttention.Compute(q, k, v, new AttentionOptions()).Out
                : Resa.DecodeStep(q, k, v, options).Out;
            AddOutput(l, output, 0, x, 0);
        }
        return Row(x, 0);
    }

    private void Project(double[,] w, double[] x, double[,,,] q, int r)
    {
        for (int h = 0; h < config.QueryHeads; h++)
        {
            for (int d = 0; d < config.HeadDim; d++)
                q[0, h, r, d] = MatVecRow(w, h * config.HeadDim + d, x);
        }
    }

    private void StoreKv(int l, int position, double[] x, double[,,,] keys, double[,,,] values)
    {
        for (int g = 0; g < config.KvHeads; g++)
        {
            for (int d = 0; d < config.HeadDim; d++)
            {
                keys[l, g, position, d] = MatVecRow(wk[l], g * config.HeadDim + d, x);
                values[l, g, position, d] = MatVecRow(wv[l], g * config.HeadDim + d, x);
            }
        }
    }

    /// <summary>x[row] += Wo concat_h(attention[0, h, r, :]).</summary>
    private void AddOutput(int l, double[,,,] attention, int r, double[,] x, int row)
    {
        var a = new double[config.QueryHeads * config.HeadDim];
        for (int h = 0; h < config.QueryHeads; h++)
            for (int d = 0; d < config.HeadDim; d++) a[h * config.HeadDim + d] = attention[0, h, r, d];
        for (int e = 0; e < config.ModelDim; e++) x[row, e] += MatVecRow(wo[l], e, a);
    }

    private double[] Next(double[] y)
    {
        var x = new double[config.ModelDim];
        for (int e = 0; e < config.ModelDim; e++) x[e] = Math.Tanh(MatVecRow(wn, e, y));
        return x;
    }

    /// <summary>Layer l's cache of positions 0..length-1 as [1, Hkv, length, D].</summary>
    private double[,,,] Slice(double[,,,] cache, int l, int length)
    {
        var s = new double[1, config.KvHeads, length, config.HeadDim];
        for (int g = 0; g < config.KvHeads; g++)
        {
            for (int j = 0; j < length; j++)
                for (int d = 0; d < config.HeadDim; d++) s[0, g, j, d] = cache[l, g, j, d];
        }

        return s;
    }

    private static double MatVecRow(double[,] w, int row, double[] x)
    {
        double sum = 0.0;
        for (int c = 0; c < x.Length; c++) sum += w[row, c] * x[c];
        return sum;
    }

    private static double[] Row(double[,] x, int row)
    {
        var r = new double[x.GetLength(1)];
        for (int c = 0; c < r.Length; c++) r[c] = x[row, c];
        return r;
    }

    private void RequireWidth(double[,] x, string name)
    {
        if (x.GetLength(1) != config.ModelDim)
            throw new ArgumentException($"{name} has width {x.GetLength(1)}, the model's is {config.ModelDim}", name);
        Guard.Finite(x, name);
    }

    private static double[,] Normal(Random rng, int rows, int cols)
    {
        var w = new double[rows, cols];
        double s = 1.0 / Math.Sqrt(cols);
        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < cols; j++)
                w[i, j] = s * Math.Sqrt(-2.0 * Math.Log(1.0 - rng.NextDouble())) * Math.Cos(2.0 * Math.PI * rng.NextDouble());
        }

        return w;
    }
}
