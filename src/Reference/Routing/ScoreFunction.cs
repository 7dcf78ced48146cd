namespace Reference.Routing;

/// <summary>How router logits X [N,E] become scores P [N,E] (proofs/conventions.md, Definition: Scores).</summary>
public enum ScoreFunction
{
    /// <summary>P_ie = exp(X_ie - max_e X_ie) / sum_e exp(X_ie - max_e X_ie): a distribution over experts per token.</summary>
    Softmax,
    /// <summary>P_ie = 1 / (1 + exp(-X_ie)), each expert scored independently (DeepSeek-V3 style routers).</summary>
    Sigmoid,
}
