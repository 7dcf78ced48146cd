namespace Reference.Routing;

/// <summary>Which convention of the Switch load-balancing loss to compute (proofs/aux-loss.md, Definition: Variants).</summary>
public enum AuxLossVariant
{
    /// <summary>Megatron-LM: L = E · sum_e f_e · Pbar_e with f_e the fraction of all N·k top-k requests that go to e.</summary>
    Megatron,
    /// <summary>DeepSpeed <c>top1gating</c>: f_e the fraction of first choices that go to e, L = E · sum_e f_e · Pbar_e.</summary>
    DeepSpeedTop1,
    /// <summary>DeepSpeed <c>top2gating</c>: f_e from the first choice only, L = E² · mean_e(f_e · Pbar_e)
    /// (equal to <see cref="DeepSpeedTop1"/> in exact arithmetic; computed in DeepSpeed's order of operations).</summary>
    DeepSpeedTop2,
    /// <summary>HF Transformers' Mixtral / Qwen-MoE <c>load_balancing_loss_func</c> (without attention mask): the token
    /// fraction of every choice slot j is summed, L = E · sum_j sum_e (c_je / N) · Pbar_e = E · (sum_e c_e·Pbar_e) / N, which is
    /// k times <see cref="Megatron"/>.</summary>
    Hf,
}

/// <summary>Options for <see cref="AuxLoss.Compute"/>. Defaults follow proofs/aux-loss.md, Definition: Parameters.</summary>
public sealed record AuxLossOptions
{
    /// <summary>Experts per token, 1..E (only the Megatron and HF variants count beyond the first choice). Default 2.</summary>
    public int K { get; init; } = 2;

    /// <summary>The loss convention. Default Megatron.</summary>
    public AuxLossVariant Variant { get; init; } = AuxLossVariant.Megatron;
}

/// <summary>The auxiliary losses of one batch of router logits.</summary>
/// <param name="SwitchLoss">The Switch load-balancing loss L (1 for a uniform router).</param>
/// <param name="ZLoss">The router z-loss mean_i (logsumexp_e X_ie)².</param>
/// <param name="Fraction">[E]: f_e as the variant counts it.</param>
/// <param name="MeanScore">[E]: Pbar_e = mean_i P_ie.</param>
public sealed record AuxLossResult(double SwitchLoss, double ZLoss, double[] Fraction, double[] MeanScore)
{
    /// <summary>P [N, E]: the softmax scores the losses were computed from; shared, do not modify. Null when the result
    /// was built elsewhere.</summary>
    public double[,]? Scores { get; init; }
}

/// <summary>
/// Auxiliary router losses (proofs/aux-loss.md, Definition): the Switch Transformer load-balancing loss in Megatron-LM's and DeepSpeed's
/// conventions, and the ST-MoE z-loss. The reference: double precision, single-threaded, deterministic.
/// </summary>
/// <remarks>
/// <para>P = softmax(X) [N, E]; Pbar_e = (1/N) sum_i P_ie. The selection is top-k of P (ranking rule of proofs/conventions.md, Definition: Ranking and ties), counted
/// before any capacity dropping.</para>
/// <para>Megatron: f_e = c_e / (N·k) with c_e = #{(i, j) : experts[i, j] = e}; L = E · sum_e f_e·Pbar_e, evaluated as
/// E · (sum_e c_e·Pbar_e) / (N·k) so that integer counts enter exactly. deepspeed-top1: f_e = c1_e / N with c1_e the first
/// choices; L = E · sum_e Pbar_e·f_e. deepspeed-top2: L = E·E · ((1/E) sum_e Pbar_e·f_e).</para>
/// <para>For a uniform router (every row of X constant) Pbar_e = 1/E, so L = sum_e f_e = 1 in every variant; in floating
/// point exactly 1 when E is a power of two (proofs/aux-loss.md, theorem aux-loss.uniform-router-gives-one). z = (1/N) sum_i (m_i + log sum_e exp(X_ie - m_i))² with
/// m_i = max_e X_ie. An empty batch (N = 0) has both losses 0.</para>
/// <para>Sources: Fedus et al. 2021 (Switch Transformer), eq. 4; Zoph et al. 2022 (ST-MoE), eq. 5; Megatron-LM
/// <c>switch_load_balancing_loss_func</c> and <c>z_loss_func</c>; DeepSpeed <c>top1gating</c>, <c>top2gating</c>.</para>
/// </remarks>
public static class AuxLoss
{
    /// <summary>Computes the Switch load-balancing loss and the z-loss.</summary>
    /// <param name="logits">X, [N, E], finite.</param>
    /// <param name="options">k and the variant.</param>
    /// <returns>The two losses and the per-expert fraction and mean score.</returns>
    /// <exception cref="ArgumentException">A logit is not finite, E = 0, or k is outside 1..E.</exception>
    public static AuxLossResult Compute(double[,] logits, AuxLossOptions options)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(options);
        int n = logits.GetLength(0), e = logits.GetLength(1), k = options.K;

        // 1. Selection (checks the logits and k) and scores P [N, E].
        var top = TopK.Route(logits, new TopKOptions { K = k, Score = ScoreFunction.Softmax, Normalize = false });
        var p = top.Scores ?? RouterScores.Compute(logits, ScoreFunction.Softmax); // the selection's own P (softmax)
        if (n == 0)
        {
            return new AuxLossResult(0.0, 0.0, new double[e], new double[e]) { Scores = p };
        }

        // 2. Pbar_e = (1/N) sum_i P_ie.
        var meanScore = new double[e]; // [E]
        for (int x = 0; x < e; x++)
        {
            double sum = 0;
            for (int i = 0; i < n; i++)
            {
                sum += p[i, x];
            }
            meanScore[x] = sum / n;
        }

        // 3. Counts: every choice (Megatron) or the first choice (DeepSpeed).
        int counted = options.Variant is AuxLossVariant.Megatron or AuxLossVariant.Hf ? k : 1;
        var counts = new int[e];       // [E]
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < counted; j++)
            {
                counts[top.Experts[i, j]]++;
            }
        }
        var fraction = new double[e];  // [E]
        for (int x = 0; x < e; x++)
        {
            fraction[x] = (double)counts[x] / ((double)n * counted);
        }

        // 4. The Switch loss, in each variant's order of operations.
        double loss;
        switch (options.Variant)
        {
            case AuxLossVariant.Megatron:
                double dot = 0;
                for (int x = 0; x < e; x++)
                {
                    dot += counts[x] * meanScore[x];
                }
                loss = e * (dot / ((double)n * k));
                break;
            case AuxLossVariant.Hf:
                // The same dot product, divided by N instead of N·k: exactly k·L_Megatron when k is a power of two.
                double dotHf = 0;
                for (int x = 0; x < e; x++)
                {
                    dotHf += counts[x] * meanScore[x];
                }
                loss = e * (dotHf / n);
                break;
            case AuxLossVariant.DeepSpeedTop1:
                double sumTop1 = 0;
                for (int x = 0; x < e; x++)
                {
                    sumTop1 += meanScore[x] * fraction[x];
                }
                loss = sumTop1 * e;
                break;
            case AuxLossVariant.DeepSpeedTop2:
                double sumTop2 = 0;
                for (int x = 0; x < e; x++)
                {
                    sumTop2 += meanScore[x] * fraction[x];
                }
                loss = sumTop2 / e * e * e;
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(options), options.Variant, "unknown aux-loss variant");
        }

        // 5. z-loss: mean of the squared log-partition functions, each computed stably.
        double z = 0;
        for (int i = 0; i < n; i++)
        {
            double lse = LogSumExp(logits, i);
            z += lse * lse;
        }
        return new AuxLossResult(loss, z / n, fraction, meanScore) { Scores = p };
    }

    /// <summary>log sum_e exp(X_ie), as m + log sum_e exp(X_ie - m) with m the row maximum.</summary>
    /// <param name="logits">X [N, E].</param>
    /// <param name="i">The row.</param>
    public static double LogSumExp(double[,] logits, int i)
    {
        ArgumentNullException.ThrowIfNull(logits);
        int e = logits.GetLength(1);
        double m = double.NegativeInfinity;
        for (int x = 0; x < e; x++)
        {
            m = Math.Max(m, logits[i, x]);
        }
        double s = 0;
        for (int x = 0; x < e; x++)
        {
            s += Math.Exp(logits[i, x] - m);
        }
        return m + Math.Log(s);
    }
}
