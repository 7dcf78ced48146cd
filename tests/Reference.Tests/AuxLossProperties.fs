/// Properties of the auxiliary router losses; theorems in proofs/aux-loss.md.
module Reference.Tests.AuxLossProperties

open FsCheck
open FsCheck.FSharp
open NUnit.Framework
open Reference.Routing
open Reference.Harness.Algorithms
open Reference.Numerics
open Reference.Tests.Proofs
open Reference.Tests.Generators
open Reference.Tests.RoutingGenerators

let variants = [ AuxLossVariant.Megatron; AuxLossVariant.DeepSpeedTop1; AuxLossVariant.DeepSpeedTop2 ]

type AuxProblem = { Logits: double[,]; K: int; Variant: AuxLossVariant }

let private problem =
    gen {
        let! c = routingCase
        let! v = Gen.elements variants
        return { Logits = c.Logits; K = c.K; Variant = v }
    }
    |> Arb.fromGen

let private options (p: AuxProblem) = AuxLossOptions(K = p.K, Variant = p.Variant)

/// The first-order bound of proofs/aux-loss.md on the rounding error of the computed Switch loss: E (2E + N + 8) u.
let private lossBound n e u = float e * float (2 * e + n + 8) * u

/// True when no row has an exact tie at the boundary of the choices the variant counts (k for Megatron, 1 for DeepSpeed),
/// so that the counted set of experts does not depend on the tie rule.
let private noBoundaryTie (p: AuxProblem) =
    let counted = if p.Variant = AuxLossVariant.Megatron then p.K else 1
    let s = RouterScores.Compute(p.Logits, ScoreFunction.Softmax)
    let e = Array2D.length2 p.Logits

    counted = e
    || [ 0 .. Array2D.length1 p.Logits - 1 ]
       |> List.forall (fun i ->
           let sorted = Array.init e (fun x -> s.[i, x]) |> Array.sortDescending
           sorted.[counted - 1] <> sorted.[counted])

let ``a uniform router gives exactly 1 when E is a power of two`` () =
    let arb =
        gen {
            let! n = Gen.elements tokenCounts
            let! e = Gen.elements expertCounts
            let! k = Gen.choose (1, e)
            let! shifts = Gen.arrayOfLength n (Gen.choose (-1000, 1000))
            let! v = Gen.elements variants
            return n, e, k, shifts, v
        }
        |> Arb.fromGen

    Prop.forAll arb (fun (n, e, k, shifts, v) ->
        // Every row constant (a different constant per row): P_ie = 1/E.
        let x = Array2D.init n e (fun i _ -> float shifts.[i] / 8.0)
        let r = AuxLoss.Compute(x, AuxLossOptions(K = k, Variant = v))

        if System.Numerics.BitOperations.IsPow2 e then
            Assert.That(r.SwitchLoss, eq 1.0, $"E = {e}")
        else
            Assert.That(abs (r.SwitchLoss - 1.0), Is.LessThanOrEqualTo(float (n + e + 4) * u64), $"E = {e}"))

let ``permuting experts leaves the Switch loss unchanged`` () =
    let arb =
        gen {
            let! p = problem.Generator
            let! perm = permutation (Array2D.length2 p.Logits)
            return p, perm
        }
        |> Arb.fromGen

    Prop.forAll arb (fun (p, perm) ->
        let x = p.Logits
        let permuted = Array2D.init (Array2D.length1 x) (Array2D.length2 x) (fun i j -> x.[i, perm.[j]])
        let a = AuxLoss.Compute(x, options p)
        let b = AuxLoss.Compute(permuted, options p)
        // With a tie at the counted boundary the tie rule picks a different expert after the permutation (proofs/aux-loss.md).
        if noBoundaryTie p then
            let n, e = Array2D.length1 x, Array2D.length2 x
            Assert.That(abs (a.SwitchLoss - b.SwitchLoss), Is.LessThanOrEqualTo(2.0 * lossBound n e u64)))

let ``permuting tokens leaves the z-loss unchanged`` () =
    let arb =
        gen {
            let! p = problem.Generator
            let! perm = permutation (Array2D.length1 p.Logits)
            return p, perm
        }
        |> Arb.fromGen

    Prop.forAll arb (fun (p, perm) ->
        let x = p.Logits
        let n = Array2D.length1 x
        let permuted = Array2D.init n (Array2D.length2 x) (fun i j -> x.[perm.[i], j])
        let a = AuxLoss.Compute(x, options p)
        let b = AuxLoss.Compute(permuted, options p)
        // The terms lse_i^2 are the same bits in both orders; only the summation order differs, so the two sums are each
        // within (N - 1) u sum|terms| of the exact sum (Higham 4.2), and the means within twice that over N.
        let terms = [ for i in 0 .. n - 1 -> let l = AuxLoss.LogSumExp(x, i) in l * l ]
        Assert.That(abs (a.ZLoss - b.ZLoss), Is.LessThanOrEqualTo(2.0 * float (n + 1) * u64 * List.sum terms / float n + 1e-300))
        // And the Switch loss is exactly token-symmetric up to the same kind of reordering.
        Assert.That(abs (a.SwitchLoss - b.SwitchLoss), Is.LessThanOrEqualTo(2.0 * lossBound n (Array2D.length2 x) u64)))

let ``the DeepSpeed variants agree, and Megatron with k = 1 equals them`` () =
    Prop.forAll problem (fun p ->
        let n, e = Array2D.length1 p.Logits, Array2D.length2 p.Logits
        let loss v k = (AuxLoss.Compute(p.Logits, AuxLossOptions(K = k, Variant = v))).SwitchLoss
        let top1 = loss AuxLossVariant.DeepSpeedTop1 p.K
        Assert.That(abs (loss AuxLossVariant.DeepSpeedTop2 p.K - top1), Is.LessThanOrEqualTo(4.0 * u64 * top1))
        Assert.That(abs (loss AuxLossVariant.Megatron 1 - top1), Is.LessThanOrEqualTo(2.0 * lossBound n e u64)))

let ``the Switch loss lies in (0, E] and the z-loss is non-negative`` () =
    Prop.forAll problem (fun p ->
        let n, e = Array2D.length1 p.Logits, Array2D.length2 p.Logits
        let r = AuxLoss.Compute(p.Logits, options p)
        Assert.That(r.SwitchLoss, Is.GreaterThan 0.0)
        Assert.That(r.SwitchLoss, Is.LessThanOrEqualTo(float e + lossBound n e u64))
        Assert.That(r.ZLoss, Is.GreaterThanOrEqualTo 0.0)
        // f sums to 1 and Pbar sums to 1.
        Assert.That(abs (Array.sum r.Fraction - 1.0), Is.LessThanOrEqualTo(float (e + 2) * u64))
        Assert.That(abs (Array.sum r.MeanScore - 1.0), Is.LessThanOrEqualTo(float (2 * e + n + 4) * u64)))

let private kernel (p: AuxProblem) =
    let n, e = Array2D.length1 p.Logits, Array2D.length2 p.Logits
    Reference.Kernels.Routing.AuxLoss.Compute(flat32 p.Logits, n, e, options p)

let ``kernel equals reference within the derived float32 bound`` () =
    Prop.forAll problem (fun p ->
        let x = p.Logits
        let n, e = Array2D.length1 x, Array2D.length2 x
        let r = AuxLoss.Compute(x, options p)
        let k = kernel p
        // The counted experts agree when every row's keys are separated at float32 precision (RoutingGenerators).
        let s = RouterScores.Compute(x, ScoreFunction.Softmax)
        let s32 = scores32 x ScoreFunction.Softmax

        let separatedRows =
            [ 0 .. n - 1 ]
            |> List.forall (fun i -> allSeparated [ for y in 0 .. e - 1 -> s.[i, y], s32.[i, y], 2.0 * float (e + 4) * u32 ])

        if separatedRows then
            Assert.That(abs (float k.SwitchLoss - r.SwitchLoss), Is.LessThanOrEqualTo(lossBound n e u32))
        // z: each lse_i within (|lse_i| + E + 4) u of the exact one, so lse_i^2 within 2 |lse_i| (|lse_i| + E + 4) u, and the
        // mean adds (N + 1) u relative.
        let lse = [ for i in 0 .. n - 1 -> AuxLoss.LogSumExp(x, i) ]

        let zBound =
            (if n = 0 then
                 0.0
             else
                 (lse |> List.sumBy (fun l -> 2.0 * abs l * (abs l + float e + 4.0))) / float n)
            * u32
            + float (n + 1) * u32 * r.ZLoss

        Assert.That(abs (float k.ZLoss - r.ZLoss), Is.LessThanOrEqualTo(zBound + 1e-30)))

let ``the derived tolerance accepts the kernel on every input and adds nothing without near-ties`` () =
    Prop.forAll problem (fun p ->
        let x = p.Logits
        let n, e = Array2D.length1 x, Array2D.length2 x
        let r = AuxLoss.Compute(x, options p)
        let k = kernel p
        let bounds = AuxLossValidator.Bounds(x, options p, NumberFormat.Float32)
        Assert.That(abs (float k.SwitchLoss - r.SwitchLoss), Is.LessThanOrEqualTo bounds.SwitchLoss)
        Assert.That(abs (float k.ZLoss - r.ZLoss), Is.LessThanOrEqualTo bounds.ZLoss)
        // Without a near-tie at any counted boundary the Switch bound is the rounding term alone.
        let s = RouterScores.Compute(x, ScoreFunction.Softmax)
        let counted = if p.Variant = AuxLossVariant.Megatron then p.K else 1

        let clear =
            counted = e
            || [ 0 .. n - 1 ]
               |> List.forall (fun i ->
                   let sorted = Array.init e (fun y -> s.[i, y]) |> Array.sortDescending
                   // The validator widens each score by its slack 2 (E + 4) u max P (plus the smallest normal) on either
                   // side and rounds the ends to float32, so a boundary is clear when the gap exceeds twice that slack
                   // plus the two roundings.
                   sorted.[counted - 1] - sorted.[counted] > (4.0 * float (e + 4) + 2.0) * u32 * sorted.[0] + 3e-38)

        if clear && n > 0 then
            Assert.That(bounds.SwitchDetail, Does.Contain "near-ties 0 (0 tokens)"))

let ``reference and kernel are deterministic`` () =
    Prop.forAll problem (fun p ->
        let a, b = AuxLoss.Compute(p.Logits, options p), AuxLoss.Compute(p.Logits, options p)
        Assert.That(System.BitConverter.DoubleToInt64Bits b.SwitchLoss, eq (System.BitConverter.DoubleToInt64Bits a.SwitchLoss))
        Assert.That(System.BitConverter.DoubleToInt64Bits b.ZLoss, eq (System.BitConverter.DoubleToInt64Bits a.ZLoss))
        let k1, k2 = kernel p, kernel p
        Assert.That(k2.SwitchLoss, eq k1.SwitchLoss)
        Assert.That(k2.ZLoss, eq k1.ZLoss))

let ``a worked example: two tokens, two experts`` () =
    // X = [[ln 3, 0], [0, 0]]: P = [[3/4, 1/4], [1/2, 1/2]], Pbar = [5/8, 3/8]. Top-1 picks expert 0 for both tokens
    // (the second by the tie rule): f = [1, 0], so every variant gives L = 2 * 5/8 = 5/4.
    // z = ((ln 4)^2 + (ln 2)^2) / 2 = (4 + 1) (ln 2)^2 / 2.
    let x = array2D [ [ log 3.0; 0.0 ]; [ 0.0; 0.0 ] ]

    for v in variants do
        let r = AuxLoss.Compute(x, AuxLossOptions(K = 1, Variant = v))
        Assert.That(abs (r.SwitchLoss - 1.25), Is.LessThanOrEqualTo(1e-15), $"{v}")
        Assert.That(abs (r.ZLoss - 2.5 * (log 2.0) ** 2.0), Is.LessThanOrEqualTo(1e-15))
    // With k = 2 (Megatron) both experts are counted once per token: f = [1/2, 1/2], L = 2 (5/8 + 3/8) / 2 = 1.
    let r = AuxLoss.Compute(x, AuxLossOptions(K = 2))
    Assert.That(abs (r.SwitchLoss - 1.0), Is.LessThanOrEqualTo(1e-15))

let ``an empty batch has zero losses and bad input names the argument`` () =
    let r = AuxLoss.Compute(Array2D.zeroCreate 0 4, AuxLossOptions())
    Assert.That((r.SwitchLoss, r.ZLoss), eq (0.0, 0.0))
    let x = Array2D.create 2 3 0.0

    let ex =
        throws<System.ArgumentOutOfRangeException> (fun () -> AuxLoss.Compute(x, AuxLossOptions(K = 4)) |> ignore)

    Assert.That(ex.ParamName, eq "k")
    x.[1, 1] <- -infinity
    let ex = throws<System.ArgumentException> (fun () -> AuxLoss.Compute(x, AuxLossOptions()) |> ignore)
    Assert.That(ex.Message, Does.Contain "logits[1, 1] is -Inf")

let ``the hf variant is k times Megatron's and equals HF's per-slot formula`` () =
    Prop.forAll problem (fun p ->
        let x = p.Logits
        let n, e, k = Array2D.length1 x, Array2D.length2 x, p.K
        let hf = (AuxLoss.Compute(x, AuxLossOptions(K = k, Variant = AuxLossVariant.Hf))).SwitchLoss
        let megatron = (AuxLoss.Compute(x, AuxLossOptions(K = k, Variant = AuxLossVariant.Megatron))).SwitchLoss
        // Same operations but the divisor N instead of N k: exact when k is a power of two (a division and a product by
        // 2^a commute with rounding in the normal range), otherwise within three roundings.
        if System.Numerics.BitOperations.IsPow2 k then
            Assert.That(hf, eq (float k * megatron), $"k = {k}")
        else
            Assert.That(abs (hf - float k * megatron), Is.LessThanOrEqualTo(4.0 * u64 * hf), $"k = {k}")
        // HF's load_balancing_loss_func written out: tokens_per_expert[j, e] = mean_i one_hot(selected[i, j])[e] ([k, E]),
        // router_prob_per_expert = mean_i P_ie, loss = E sum_{j,e} tokens_per_expert[j, e] router_prob_per_expert[e].
        if n > 0 then
            let pr = RouterScores.Compute(x, ScoreFunction.Softmax)

            let selected =
                (TopK.Route(x, TopKOptions(K = k, Score = ScoreFunction.Softmax, Normalize = false))).Experts

            let pbar = Array.init e (fun y -> (Seq.sum (seq { for i in 0 .. n - 1 -> pr.[i, y] })) / float n)

            let perSlot =
                Array2D.init k e (fun j y -> float (Seq.length (Seq.filter (fun i -> selected.[i, j] = y) (seq { 0 .. n - 1 }))) / float n)

            let direct =
                float e
                * Seq.sum (
                    seq {
                        for j in 0 .. k - 1 do
                            for y in 0 .. e - 1 -> perSlot.[j, y] * pbar.[y]
                    }
                )

            Assert.That(abs (hf - direct), Is.LessThanOrEqualTo(2.0 * float k * lossBound n e u64)))

let ``the hf kernel is within k times Megatron's bound of the reference and is accepted by the harness`` () =
    Prop.forAll problem (fun p ->
        let x = p.Logits
        let n, e = Array2D.length1 x, Array2D.length2 x
        let o = AuxLossOptions(K = p.K, Variant = AuxLossVariant.Hf)
        let r = AuxLoss.Compute(x, o)
        let kr = Reference.Kernels.Routing.AuxLoss.Compute(flat32 x, n, e, o)

        let bounds =
            AuxLossValidator.Bounds(x, AuxLossOptions(K = p.K, Variant = AuxLossVariant.Megatron), NumberFormat.Float32)

        Assert.That(abs (float kr.SwitchLoss - r.SwitchLoss), Is.LessThanOrEqualTo(float p.K * bounds.SwitchLoss)))

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "routing/aux-loss"
        "AuxLossProperties"
        [
            Proofs.prop
                [ "aux-loss.uniform-router-gives-one" ]
                "a uniform router gives exactly 1 when E is a power of two"
                ``a uniform router gives exactly 1 when E is a power of two``
            Proofs.prop
                [ "aux-loss.expert-permutation" ]
                "permuting experts leaves the Switch loss unchanged"
                ``permuting experts leaves the Switch loss unchanged``
            Proofs.prop
                [ "aux-loss.z-loss-token-permutation" ]
                "permuting tokens leaves the z-loss unchanged"
                ``permuting tokens leaves the z-loss unchanged``
            Proofs.prop
                [ "aux-loss.variants-agree" ]
                "the DeepSpeed variants agree, and Megatron with k = 1 equals them"
                ``the DeepSpeed variants agree, and Megatron with k = 1 equals them``
            Proofs.prop
                [ "aux-loss.range" ]
                "the Switch loss lies in (0, E] and the z-loss is non-negative"
                ``the Switch loss lies in (0, E] and the z-loss is non-negative``
            Proofs.prop
                [ "aux-loss.kernel-equals-reference" ]
                "kernel equals reference within the derived float32 bound"
                ``kernel equals reference within the derived float32 bound``
            Proofs.prop
                [ "aux-loss.derived-tolerance" ]
                "the derived tolerance accepts the kernel on every input and adds nothing without near-ties"
                ``the derived tolerance accepts the kernel on every input and adds nothing without near-ties``
            Proofs.prop [ "aux-loss.deterministic" ] "reference and kernel are deterministic" ``reference and kernel are deterministic``
            Proofs.test [ "aux-loss.range" ] "a worked example: two tokens, two experts" ``a worked example: two tokens, two experts``
            Proofs.test
                []
                "an empty batch has zero losses and bad input names the argument"
                ``an empty batch has zero losses and bad input names the argument``
            Proofs.prop
                [ "aux-loss.hf-is-k-megatron" ]
                "the hf variant is k times Megatron's and equals HF's per-slot formula"
                ``the hf variant is k times Megatron's and equals HF's per-slot formula``
            Proofs.prop
                [ "aux-loss.hf-is-k-megatron" ]
                "the hf kernel is within k times Megatron's bound of the reference and is accepted by the harness"
                ``the hf kernel is within k times Megatron's bound of the reference and is accepted by the harness``
        ]
