using Reference.Harness.Algorithms;

namespace Reference.Harness.Registry;

/// <summary>Every registered algorithm, in the order <c>reference list</c> prints them.</summary>
public static class AlgorithmRegistry
{
    /// <summary>All algorithms.</summary>
    public static IReadOnlyList<Algorithm> All { get; } =
    [
        TopKAlgorithm.Descriptor,
        CapacityAlgorithm.Descriptor,
        RerouteAlgorithm.Descriptor,
        ExpertChoiceAlgorithm.Descriptor,
        AuxLossAlgorithm.Descriptor,
        BlockRoutingAlgorithm.Descriptor,
        SinkhornAlgorithm.Descriptor,
        AttentionAlgorithm.Descriptor,
        BlockSparseAlgorithm.Descriptor,
        MobaAlgorithm.Descriptor,
        NsaAlgorithm.Descriptor,
        ResaAlgorithm.Descriptor,
        LeanKAlgorithm.Descriptor,
        LeanKMaskAlgorithm.Descriptor,
        LinearAlgorithm.Descriptor,
        SoftTopKAlgorithm.Descriptor,
        MaxScoreAlgorithm.Descriptor,
        BaseAlgorithm.Descriptor,
    ];

    /// <summary>The algorithm with a CLI name, or null.</summary>
    public static Algorithm? Find(string name) => All.FirstOrDefault(a => a.Name == name);
}
