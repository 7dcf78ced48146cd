using Reference.Harness.Registry;

namespace Reference.Harness.Algorithms;

/// <summary>
/// When <c>check</c> (and <c>run</c> without <c>--path</c>) judges against a fast double-precision path instead of the
/// readable reference: beyond a documented amount of work (proofs/cli.md, "Fast references beyond a size"). Every fast
/// path is proven equal to its readable reference (bit for bit: proofs/attention.md, attention.fast-reference-identical;
/// proofs/expert-choice.md, expert-choice.fast-reference-identical;
/// proofs/topk.md, topk.fast-reference-identical; proofs/capacity.md, capacity.fast-reference-identical; proofs/aux-loss.md,
/// aux-loss.fast-reference-identical; proofs/block-routing.md, block-routing.fast-reference-identical; proofs/reroute.md, reroute.fast-reference-identical;
/// proofs/attention-sparse.md, attention.linear-fast-reference-identical, attention.moba-fast-reference-identical,
/// attention.nsa-fast-reference-identical, attention.leank-fast-reference-identical; proofs/attention.md,
/// attention.block-sparse-fast-reference-identical; proofs/sinkhorn.md, sinkhorn.fast-reference-identical), so the verdict does not
/// depend on the threshold.
/// </summary>
public static class FastReference
{
    /// <summary>Attention work B Hq Tq Tk (D + Dv) beyond which <c>attention</c>'s oracle is
    /// <see cref="Reference.Attention.DenseAttentionFast"/>, <c>block-sparse</c>'s, <c>linear</c>'s, <c>moba</c>'s, <c>nsa</c>'s and <c>leank</c>'s are
    /// <see cref="Reference.Attention.BlockSparseAttentionFast"/>, <see cref="Reference.Attention.LinearAttentionFast"/>,
    /// <see cref="Reference.Attention.MobaFast"/>, <see cref="Reference.Attention.NsaFast"/> and <see cref="Reference.Attention.LeanKFast"/>, and the float32/float16/bfloat16 baseline of the attention family
    /// is <c>AttentionBaselineFast</c>: 2^24, where the readable reference takes about 0.1 s.</summary>
    public const long AttentionWork = 1L << 24;

    /// <summary>Expert-choice work E C N (the readable reference's selection by repeated scans) beyond which
    /// <c>expert-choice</c>'s oracle is <see cref="Reference.Routing.ExpertChoiceFast"/>: 2^24.</summary>
    public const long ExpertChoiceWork = 1L << 24;

    /// <summary>Routing work N E (the logits' size) beyond which the oracles of <c>topk</c>, <c>capacity</c>, <c>aux-loss</c>,
    /// <c>block-routing</c> and <c>reroute</c> are <see cref="Reference.Routing.TopKFast"/>, <see cref="Reference.Routing.CapacityFast"/>,
    /// <see cref="Reference.Routing.AuxLossFast"/>, <see cref="Reference.Routing.BlockRoutingFast"/> and
    /// <see cref="Reference.Routing.RerouteFast"/>: 2^18, where the readable references take about 20 ms.</summary>
    public const long RoutingWork = 1L << 18;

    /// <summary>Sinkhorn work N E (the cost's size; every iteration touches each entry about twice) beyond which
    /// <c>sinkhorn</c>'s oracle, the validator's target and re-runs, and its sensitivity runs on perturbed costs are
    /// <see cref="Reference.Transport.SinkhornFast"/>: 2^18, where one iteration of the readable log reference takes
    /// about 5 ms and the fast path starts to gain (measured on the shared 2-core machine: at 2^16 it was no faster, at
    /// 2^18 1.6 times, at 2^22 2 to 4 times, depending on the load).</summary>
    public const long SinkhornWork = 1L << 18;

    private static readonly AsyncLocal<long?> Override = new();

    /// <summary>The oracle of a routing algorithm whose work is the logits' size N E, computed once per call: beyond
    /// <see cref="RoutingWork"/> the fast path's result (memoized under <paramref name="key"/>), otherwise the readable
    /// reference's.</summary>
    /// <typeparam name="T">The result.</typeparam>
    /// <param name="call">The call; its logits are [N, E].</param>
    /// <param name="key">The memo key of the fast result, distinct from the reference's.</param>
    /// <param name="reference">The readable reference's (memoized) result.</param>
    /// <param name="fast">The fast path on the logits.</param>
    /// <returns>The result.</returns>
    internal static T RoutingOracle<T>(AlgorithmCall call, object key, Func<T> reference, Func<double[,], T> fast)
    {
        var shape = call.Array("logits").Shape;
        return shape.Count == 2 && Beyond((long)shape[0] * shape[1], RoutingWork)
            ? call.Memo(key, () => fast(call.Matrix("logits")))
            : reference();
    }

    /// <summary>True when <paramref name="work"/> exceeds <paramref name="threshold"/>, or the lowered threshold of
    /// <see cref="Lowered"/> in the current asynchronous flow.</summary>
    /// <param name="work">The call's work, in the threshold's unit.</param>
    /// <param name="threshold">The documented threshold.</param>
    /// <returns>True to use the fast path.</returns>
    public static bool Beyond(long work, long threshold) => work > (Override.Value ?? threshold);

    /// <summary>
    /// For tests: every threshold is <paramref name="threshold"/> (e.g. -1: every call takes the fast path) in the current
    /// thread and the tasks it starts, until the returned scope is disposed. The verdict of <c>check</c> must not change.
    /// </summary>
    /// <param name="threshold">The work beyond which fast paths are used.</param>
    /// <returns>The scope that restores the documented thresholds.</returns>
    public static IDisposable Lowered(long threshold)
    {
        var previous = Override.Value;
        Override.Value = threshold;
        return new Scope(previous);
    }

    /// <summary>The attention work B Hq Tq Tk (D + Dv) of q [B,Hq,Tq,D], k [B,Hkv,Tk,D], v [B,Hkv,Tk,Dv] (saturating).</summary>
    /// <param name="q">q's shape.</param>
    /// <param name="k">k's shape.</param>
    /// <param name="v">v's shape.</param>
    /// <returns>The work.</returns>
    public static long AttentionWorkOf(IReadOnlyList<int> q, IReadOnlyList<int> k, IReadOnlyList<int> v)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        double work = (double)q[0] * q[1] * q[2] * k[2] * ((double)q[3] + v[3]);
        return work >= long.MaxValue ? long.MaxValue : (long)work;
    }

    private sealed class Scope(long? previous) : IDisposable
    {
        public void Dispose() => Override.Value = previous;
    }
}
