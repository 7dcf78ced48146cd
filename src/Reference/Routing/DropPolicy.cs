namespace Reference.Routing;

/// <summary>Which requests an over-subscribed expert keeps (proofs/capacity.md, Definition: Drop policies). Request (i, j) is token i's j-th choice;
/// when more than C requests reach one expert, the C that come first in the policy's priority order are kept.</summary>
public enum DropPolicy
{
    /// <summary>By token index i, then choice j: earlier tokens win (DeepSpeed top-k "position").</summary>
    Position,
    /// <summary>By choice rank j, then token index i: every first choice beats every second choice
    /// (GShard, Switch Transformer, mesh-tensorflow, DeepSpeed top-2).</summary>
    ChoicePosition,
    /// <summary>By the request's weight (after <see cref="Renormalization.Before"/> when set), descending, ties to the lower
    /// token index (Megatron-LM "probs"; DeepSpeed's published top-k test expectations for "probs").</summary>
    Score,
    /// <summary>By the raw logit X_ie, descending, ties to the lower token index (what DeepSpeed's current top-k code does for "probs").</summary>
    Logit,
    /// <summary>Tokens ordered by their first-choice score P[i, e_i1] descending (ties to the lower index), then as
    /// <see cref="ChoicePosition"/> over that order (batch prioritized routing: Riquelme et al. 2021, V-MoE; flaxformer).</summary>
    BatchPriority,
}

/// <summary>When the k weights of a token are renormalized to sum to 1 (proofs/capacity.md, Definition: Renormalization).</summary>
public enum Renormalization
{
    /// <summary>Weights are the raw scores P at the chosen experts.</summary>
    None,
    /// <summary>Divide by the sum over the k selected, before any dropping (mesh-tensorflow, Tutel). The score policy ranks these.</summary>
    Before,
    /// <summary>Divide by the sum over the kept ones, after dropping (DeepSpeed); a token with everything dropped gets zeros.</summary>
    After,
}
