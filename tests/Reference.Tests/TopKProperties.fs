/// Properties of token-choice top-k routing; theorems in proofs/topk.md.
module Reference.Tests.TopKProperties

open FsCheck
open FsCheck.FSharp
open NUnit.Framework
open Reference.Routing
open Reference.Numerics
open Reference.Harness.Algorithms
open Reference.Tests.Proofs
open Reference.Tests.Generators

let private options k score normalize (b: double[] option) =
    TopKOptions(
        K = k,
        Score = score,
        Normalize = normalize,
        Bias =
            (match b with
             | Some v -> (v :> System.Collections.Generic.IReadOnlyList<float>)
             | None -> null)
    )

/// A full top-k problem: logits, k, score, normalize and an optional bias.
type Problem = { Case: RoutingCase; Score: ScoreFunction; Normalize: bool; Bias: double[] option }

let problem =
    gen {
        let! c = routingCase
        let! score = Gen.elements [ ScoreFunction.Softmax; ScoreFunction.Sigmoid ]
        let! normalize = Gen.elements [ true; false ]
        let! b = bias (Array2D.length2 c.Logits)
        return { Case = c; Score = score; Normalize = normalize; Bias = b }
    }
    |> Arb.fromGen

let private optionsOf p = options p.Case.K p.Score p.Normalize p.Bias

/// Runs the float32 kernel and returns its experts and weights as flat double arrays.
let private kernel (p: Problem) =
    let x = p.Case.Logits
    let n, e = Array2D.length1 x, Array2D.length2 x
    let r = Reference.Kernels.Routing.TopK.Route(flatten x |> Array.map float32, n, e, optionsOf p)
    r.Experts |> Array.map float, r.Weights |> Array.map float

let ``kernel equals reference`` () =
    Prop.forAll problem (fun p ->
        let reference = TopK.Route(p.Case.Logits, optionsOf p)
        let experts, weights = kernel p

        let reports =
            TopKValidator.Validate(
                p.Case.Logits,
                optionsOf p,
                flatten reference.Experts |> Array.map float,
                experts,
                weights,
                NumberFormat.Float32,
                NumberFormat.Float32
            )

        for r in reports do
            Assert.That(r.Passed, r.Summary())
        // Away from near-ties the choice is identical, not merely valid.
        let keys i =
            Array.init (Array2D.length2 p.Case.Logits) (fun e ->
                (RouterScores.Compute(p.Case.Logits, p.Score)).[i, e]
                + (match p.Bias with
                   | Some b -> b.[e]
                   | None -> 0.0))

        for i in 0 .. Array2D.length1 p.Case.Logits - 1 do
            let sorted = keys i |> Array.sortDescending
            let gaps = Array.pairwise sorted |> Array.map (fun (a, b) -> a - b)
            let scores = RouterScores.Compute(p.Case.Logits, p.Score)

            let magnitude =
                Array.init sorted.Length (fun e ->
                    abs scores.[i, e]
                    + (match p.Bias with
                       | Some b -> abs b.[e]
                       | None -> 0.0))
                |> Array.max

            let slack = TopKValidator.TieSlack(sorted.Length, magnitude, NumberFormat.Float32)

            if gaps |> Array.forall (fun g -> g > 2.0 * slack) then
                Assert.That(
                    experts.[i * p.Case.K .. (i + 1) * p.Case.K - 1],
                    eq (row reference.Experts i |> Array.map float),
                    $"row {i}: no near-tie, yet a different choice"
                ))

let ``experts are k distinct in descending order with ties to the lower index`` () =
    Prop.forAll problem (fun p ->
        let r = TopK.Route(p.Case.Logits, optionsOf p)
        let scores = RouterScores.Compute(p.Case.Logits, p.Score)
        let e = Array2D.length2 p.Case.Logits

        for i in 0 .. Array2D.length1 p.Case.Logits - 1 do
            let key x =
                scores.[i, x]
                + (match p.Bias with
                   | Some b -> b.[x]
                   | None -> 0.0)

            let chosen = row r.Experts i
            Assert.That(chosen |> Array.distinct |> Array.length, eq p.Case.K, "distinct")
            Assert.That(chosen |> Array.forall (fun x -> x >= 0 && x < e), "in range")

            for a, b in Array.pairwise chosen do
                // a ranks before b: a larger key, or an equal key and a lower index.
                Assert.That(key a > key b || (key a = key b && a < b), $"row {i}: {a} before {b}")

            for x in 0 .. e - 1 do
                if not (Array.contains x chosen) then
                    let last = chosen.[chosen.Length - 1]
                    Assert.That(key last > key x || (key last = key x && last < x), $"row {i}: unchosen {x} beats {last}"))

let ``normalized weights sum to one`` () =
    Prop.forAll problem (fun p ->
        let p = { p with Normalize = true }
        let r = TopK.Route(p.Case.Logits, optionsOf p)

        for i in 0 .. Array2D.length1 p.Case.Logits - 1 do
            let w = row r.Weights i
            // Each w_j = e_j / S is rounded once and the sum adds k - 1 roundings: |sum - 1| <= 2k u.
            Assert.That(abs (Array.sum w - 1.0), Is.LessThanOrEqualTo(2.0 * float p.Case.K * Precision.UnitRoundoff NumberFormat.Float64))
            Assert.That(w |> Array.forall (fun x -> x > 0.0 && x <= 1.0), "each weight in (0, 1]"))

let ``permuting tokens permutes the outputs`` () =
    let arb =
        gen {
            let! p = problem.Generator
            let! perm = permutation (Array2D.length1 p.Case.Logits)
            return p, perm
        }
        |> Arb.fromGen

    Prop.forAll arb (fun (p, perm) ->
        let x = p.Case.Logits
        let permuted = Array2D.init (Array2D.length1 x) (Array2D.length2 x) (fun i j -> x.[perm.[i], j])
        let r = TopK.Route(x, optionsOf p)
        let rp = TopK.Route(permuted, optionsOf p)

        for i in 0 .. perm.Length - 1 do
            Assert.That(row rp.Experts i, eq (row r.Experts perm.[i]))
            Assert.That(row rp.Weights i, eq (row r.Weights perm.[i])))

let ``adding a constant to a row does not change a softmax selection`` () =
    // Logits and shifts on a grid of 1/64 keep x + c and x + c - max exact, so the theorem holds bit for bit.
    let arb =
        gen {
            let! n = Gen.elements tokenCounts
            let! e = Gen.elements expertCounts
            let! k = Gen.choose (1, e)
            let! cells = Gen.arrayOfLength (n * e) (Gen.choose (-1024, 1024))
            let! shifts = Gen.arrayOfLength n (Gen.choose (-4096, 4096))
            let! normalize = Gen.elements [ true; false ]
            return Array2D.init n e (fun i j -> float cells.[i * e + j] / 64.0), shifts |> Array.map (fun s -> float s / 64.0), k, normalize
        }
        |> Arb.fromGen

    Prop.forAll arb (fun (x, shifts, k, normalize) ->
        let shifted = x |> Array2D.mapi (fun i _ v -> v + shifts.[i])
        let o = options k ScoreFunction.Softmax normalize None
        let r, rs = TopK.Route(x, o), TopK.Route(shifted, o)
        Assert.That(rs.Experts, eq r.Experts)
        Assert.That(rs.Weights, eq r.Weights))

let ``the bias changes the selection but never the weights' source`` () =
    let arb =
        gen {
            let! p = problem.Generator
            let! b = Gen.arrayOfLength (Array2D.length2 p.Case.Logits) (Gen.choose (-8, 8) |> Gen.map (fun v -> float v / 8.0))
            let! boosted = Gen.choose (0, Array2D.length2 p.Case.Logits - 1)
            return { p with Bias = Some b; Normalize = false }, boosted
        }
        |> Arb.fromGen

    Prop.forAll arb (fun (p, boosted) ->
        let scores = RouterScores.Compute(p.Case.Logits, p.Score)
        let b = p.Bias.Value
        let r = TopK.Route(p.Case.Logits, optionsOf p)

        for i in 0 .. Array2D.length1 p.Case.Logits - 1 do
            // Weights are P at the chosen experts, bit for bit: the bias never enters them.
            for j in 0 .. p.Case.K - 1 do
                Assert.That(r.Weights.[i, j], eq scores.[i, r.Experts.[i, j]])
            // The selection is the top-k of P + b, computed independently by a stable sort.
            let expected =
                Array.init b.Length id |> Array.sortBy (fun x -> -(scores.[i, x] + b.[x]), x) |> Array.take p.Case.K

            Assert.That(row r.Experts i, eq expected)
        // A bias larger than any score difference forces its expert into every row.
        let forced = Array.init b.Length (fun x -> if x = boosted then 10.0 else 0.0)
        let rf = TopK.Route(p.Case.Logits, options p.Case.K p.Score false (Some forced))

        for i in 0 .. Array2D.length1 p.Case.Logits - 1 do
            Assert.That(rf.Experts.[i, 0], eq boosted))

let ``reference and kernel are deterministic`` () =
    Prop.forAll problem (fun p ->
        let a, b = TopK.Route(p.Case.Logits, optionsOf p), TopK.Route(p.Case.Logits, optionsOf p)
        Assert.That(b.Experts, eq a.Experts)

        Assert.That(
            b.Weights |> flatten |> Array.map System.BitConverter.DoubleToInt64Bits,
            eq (a.Weights |> flatten |> Array.map System.BitConverter.DoubleToInt64Bits)
        )

        let (e1, w1), (e2, w2) = kernel p, kernel p
        Assert.That(e2, eq e1)
        Assert.That(w2, eq w1))

let ``the validator rejects a swapped pair or a perturbed weight and accepts tied alternatives`` () =
    Prop.forAll problem (fun p ->
        let o = optionsOf p
        let r = TopK.Route(p.Case.Logits, o)
        let experts = flatten r.Experts |> Array.map float
        let weights = flatten r.Weights
        let scores = RouterScores.Compute(p.Case.Logits, p.Score)

        let key i x =
            scores.[i, x]
            + (match p.Bias with
               | Some b -> b.[x]
               | None -> 0.0)

        let validate ex w =
            TopKValidator.Validate(p.Case.Logits, o, experts, ex, w, NumberFormat.Float64, NumberFormat.Float64)
        // The reference itself passes.
        Assert.That(validate experts weights |> Seq.forall _.Passed)
        let k = p.Case.K

        for i in 0 .. Array2D.length1 p.Case.Logits - 1 do
            // Swapping the first two experts of a row is valid exactly when their keys are within the slack.
            if k >= 2 then
                let a, b = r.Experts.[i, 0], r.Experts.[i, 1]
                let swapped = Array.copy experts
                swapped.[i * k] <- float b
                swapped.[i * k + 1] <- float a
                let verdict = (validate swapped null |> Seq.head).Passed

                let maxAbs =
                    Array.init (Array2D.length2 p.Case.Logits) (fun x ->
                        abs scores.[i, x]
                        + (match p.Bias with
                           | Some b -> abs b.[x]
                           | None -> 0.0))
                    |> Array.max

                let slack = TopKValidator.TieSlack(Array2D.length2 p.Case.Logits, maxAbs, NumberFormat.Float64)
                // (Gaps within rounding of the slack itself are left out: there the two ways of writing the
                // comparison can round differently, e.g. a gap of 1.9984014443252818e-15 against a slack of
                // 1.9984014443252782e-15 when a bias cancels P.)
                let gap = key i a - key i b

                if abs (gap - slack) > 1e-9 * slack then
                    Assert.That(verdict, eq (gap <= slack), $"row {i}: swap of {a} and {b}")
            // A weight off by 1e-3 fails (weights are at most 1, the f64 preset is far tighter).
            let perturbed = Array.copy weights
            perturbed.[i * k] <- perturbed.[i * k] + 1e-3
            Assert.That((validate null perturbed |> Seq.head).Passed, Is.False))

let ``bad input names the argument and the index`` () =
    let x = Array2D.create 3 4 0.0
    x.[2, 1] <- nan
    let ex = throws<System.ArgumentException> (fun () -> TopK.Route(x, TopKOptions()) |> ignore)
    Assert.That(ex.Message, Does.Contain "logits[2, 1] is NaN")
    let y = Array2D.create 3 4 0.0

    let ex =
        throws<System.ArgumentOutOfRangeException> (fun () -> TopK.Route(y, TopKOptions(K = 5)) |> ignore)

    Assert.That(ex.ParamName, eq "k")

    let ex =
        throws<System.ArgumentException> (fun () -> TopK.Route(y, TopKOptions(Bias = [| 1.0 |])) |> ignore)

    Assert.That(ex.ParamName, eq "bias")
    y.[0, 0] <- infinity

    let ex =
        throws<System.ArgumentException> (fun () ->
            Reference.Kernels.Routing.TopK.Route(flatten y |> Array.map float32, 3, 4, TopKOptions()) |> ignore)

    Assert.That(ex.Message, Does.Contain "logits[0, 0] is +Inf")

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "routing/topk"
        "TopKProperties"
        [
            Proofs.prop [ "topk.kernel-equals-reference" ] "kernel equals reference" ``kernel equals reference``
            Proofs.prop
                [ "topk.distinct-descending" ]
                "experts are k distinct in descending order with ties to the lower index"
                ``experts are k distinct in descending order with ties to the lower index``
            Proofs.prop [ "topk.normalized-weights-sum-to-one" ] "normalized weights sum to one" ``normalized weights sum to one``
            Proofs.prop [ "topk.token-permutation" ] "permuting tokens permutes the outputs" ``permuting tokens permutes the outputs``
            Proofs.prop
                [ "topk.softmax-shift-invariance" ]
                "adding a constant to a row does not change a softmax selection"
                ``adding a constant to a row does not change a softmax selection``
            Proofs.prop
                [ "topk.bias-selects-never-weighs" ]
                "the bias changes the selection but never the weights' source"
                ``the bias changes the selection but never the weights' source``
            Proofs.prop [ "topk.deterministic" ] "reference and kernel are deterministic" ``reference and kernel are deterministic``
            Proofs.prop
                [ "topk.validator-sound" ]
                "the validator rejects a swapped pair or a perturbed weight and accepts tied alternatives"
                ``the validator rejects a swapped pair or a perturbed weight and accepts tied alternatives``
            Proofs.test [] "bad input names the argument and the index" ``bad input names the argument and the index``
        ]
