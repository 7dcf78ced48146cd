/// Properties of expert-choice routing; theorems in proofs/expert-choice.md.
module Reference.Tests.ExpertChoiceProperties

open FsCheck
open FsCheck.FSharp
open NUnit.Framework
open Reference.Routing
open Reference.Harness.Algorithms
open Reference.Numerics
open Reference.Tests.Proofs
open Reference.Tests.Generators
open Reference.Tests.RoutingGenerators

/// An expert-choice problem: logits and either an explicit C in 0..N or a factor (a multiple of 1/4) with k.
type ExpertChoiceProblem =
    {
        Logits: double[,]
        Capacity: int option
        Factor: float
        K: int
    }

    member p.Options =
        ExpertChoiceOptions(
            Capacity =
                (match p.Capacity with
                 | Some c -> System.Nullable c
                 | None -> System.Nullable()),
            CapacityFactor = p.Factor,
            K = p.K
        )

let private problemWith logitGen =
    gen {
        let! n = Gen.elements tokenCounts
        let! e = Gen.elements expertCounts
        let! x = logitGen n e
        let! explicitC = Gen.oneof [ Gen.choose (0, n) |> Gen.map Some; Gen.constant None ]
        let! f = Gen.choose (0, 16) |> Gen.map (fun v -> float v / 4.0)
        let! k = Gen.choose (1, 4)
        return { Logits = x; Capacity = explicitC; Factor = f; K = k }
    }

let private problem = problemWith logits |> Arb.fromGen

let ``C is the explicit value or min(N, ceil(cf N k / E))`` () =
    Prop.forAll problem (fun pr ->
        let n, e = Array2D.length1 pr.Logits, Array2D.length2 pr.Logits
        let r = ExpertChoice.Route(pr.Logits, pr.Options)
        // Independently, in integers: cf = v / 4, so cf N k / E = (v N k) / (4 E).
        let num, den = int64 (pr.Factor * 4.0) * int64 n * int64 pr.K, 4L * int64 e

        let expected =
            match pr.Capacity with
            | Some c -> c
            | None -> min n (int ((num + den - 1L) / den))

        Assert.That(r.Capacity, eq expected)
        Assert.That(r.Tokens.GetLength 0, eq e)
        Assert.That(r.Tokens.GetLength 1, eq expected))

let ``every expert takes exactly C distinct tokens and count tallies them`` () =
    Prop.forAll problem (fun pr ->
        let n, e = Array2D.length1 pr.Logits, Array2D.length2 pr.Logits
        let r = ExpertChoice.Route(pr.Logits, pr.Options)

        for x in 0 .. e - 1 do
            let ts = row r.Tokens x
            Assert.That(ts |> Array.distinct |> Array.length, eq r.Capacity, $"expert {x}")
            Assert.That(ts |> Array.forall (fun t -> t >= 0 && t < n))

        let tally = Array.zeroCreate n
        r.Tokens |> Array2D.iter (fun t -> tally.[t] <- tally.[t] + 1)
        Assert.That(r.Count, eq tally)
        Assert.That(Array.sum r.Count, eq (e * r.Capacity)))

let ``each expert's tokens are the top C of its column, in order, with gates P`` () =
    Prop.forAll problem (fun pr ->
        let n, e = Array2D.length1 pr.Logits, Array2D.length2 pr.Logits
        let r = ExpertChoice.Route(pr.Logits, pr.Options)
        let p = RouterScores.Compute(pr.Logits, ScoreFunction.Softmax)

        for x in 0 .. e - 1 do
            // An independent stable sort: larger score first, ties to the lower token.
            let expected = Array.init n id |> Array.sortBy (fun i -> -p.[i, x], i) |> Array.take r.Capacity
            Assert.That(row r.Tokens x, eq expected, $"expert {x}")
            Assert.That(row r.Gates x, eq (expected |> Array.map (fun i -> p.[i, x])), $"expert {x} gates"))

let private kernel (pr: ExpertChoiceProblem) =
    let n, e = Array2D.length1 pr.Logits, Array2D.length2 pr.Logits
    let r = Reference.Kernels.Routing.ExpertChoice.Route(flat32 pr.Logits, n, e, pr.Options)
    matrix e r.Capacity r.Tokens, matrix e r.Capacity (Array.map float r.Gates), r.Count, r.Capacity

let ``kernel equals reference`` () =
    Prop.forAll problem (fun pr ->
        let n, e = Array2D.length1 pr.Logits, Array2D.length2 pr.Logits
        let reference = ExpertChoice.Route(pr.Logits, pr.Options)
        let tokens, gates, count, c = kernel pr
        Assert.That(c, eq reference.Capacity)
        // (b) Always a valid choice, with the gates it implies.
        let check = ExpertChoiceValidator.Check(pr.Logits, pr.Options, tokens, count, NumberFormat.Float32)
        Assert.That(check.Valid, String.concat "\n" check.Problems)
        let tol = float (e + 4) * u32

        gates
        |> Array2D.iteri (fun x s g -> Assert.That(abs (g - check.ExpectedWeights.[x, s]), Is.LessThanOrEqualTo tol, $"gates[{x}, {s}]"))
        // (a) Columns whose scores are separated (or bit-equal in both precisions) give identical tokens.
        let p = RouterScores.Compute(pr.Logits, ScoreFunction.Softmax)
        let p32 = scores32 pr.Logits ScoreFunction.Softmax

        for x in 0 .. e - 1 do
            let rowMax i = Seq.max [ for y in 0 .. e - 1 -> p.[i, y] ]

            if allSeparated [ for i in 0 .. n - 1 -> p.[i, x], p32.[i, x], float (e + 4) * u32 * rowMax i ] then
                Assert.That(row tokens x, eq (row reference.Tokens x), $"expert {x}"))

let ``kernel equals reference exactly on most grid columns`` () =
    // Grid logits: the exact branch of the property above must not be vacuous.
    let mutable columns, exact = 0, 0

    for pr in Gen.sample 300 (problemWith gridLogits) do
        let n, e = Array2D.length1 pr.Logits, Array2D.length2 pr.Logits
        let reference = ExpertChoice.Route(pr.Logits, pr.Options)
        let tokens, _, _, _ = kernel pr
        let p = RouterScores.Compute(pr.Logits, ScoreFunction.Softmax)
        let p32 = scores32 pr.Logits ScoreFunction.Softmax

        for x in 0 .. e - 1 do
            columns <- columns + 1
            let rowMax i = Seq.max [ for y in 0 .. e - 1 -> p.[i, y] ]

            if allSeparated [ for i in 0 .. n - 1 -> p.[i, x], p32.[i, x], float (e + 4) * u32 * rowMax i ] then
                exact <- exact + 1
                Assert.That(row tokens x, eq (row reference.Tokens x))

    Assert.That(float exact, Is.GreaterThan(0.5 * float columns), $"{exact} of {columns} columns compared exactly")

let ``the validator accepts the reference and rejects a clearly worse token`` () =
    Prop.forAll problem (fun pr ->
        let n, e = Array2D.length1 pr.Logits, Array2D.length2 pr.Logits
        let r = ExpertChoice.Route(pr.Logits, pr.Options)
        let check t cnt = ExpertChoiceValidator.Check(pr.Logits, pr.Options, t, cnt, NumberFormat.Float64)
        let ok = check r.Tokens r.Count
        Assert.That(ok.Valid, String.concat "\n" ok.Problems)
        Assert.That(ok.ExpectedWeights, eq r.Gates)
        let p = RouterScores.Compute(pr.Logits, ScoreFunction.Softmax)

        if r.Capacity > 0 && r.Capacity < n then
            for x in 0 .. e - 1 do
                let last = r.Tokens.[x, r.Capacity - 1]
                let chosen = row r.Tokens x
                // An unchosen token whose score is below the weakest chosen one by far more than float64 rounding.
                match
                    [ 0 .. n - 1 ]
                    |> List.tryFind (fun t -> not (Array.contains t chosen) && p.[t, x] < p.[last, x] * (1.0 - 1e-9))
                with
                | Some t ->
                    let swapped = Array2D.copy r.Tokens
                    swapped.[x, r.Capacity - 1] <- t
                    Assert.That((check swapped null).Valid, Is.False, $"expert {x}: token {t} instead of {last}")
                | None -> ())

let ``reference and kernel are deterministic`` () =
    Prop.forAll problem (fun pr ->
        let a, b = ExpertChoice.Route(pr.Logits, pr.Options), ExpertChoice.Route(pr.Logits, pr.Options)
        Assert.That(b.Tokens, eq a.Tokens)
        Assert.That(b.Gates, eq a.Gates)
        let (t1, g1, c1, _), (t2, g2, c2, _) = kernel pr, kernel pr
        Assert.That(t2, eq t1)
        Assert.That(g2, eq g1)
        Assert.That(c2, eq c1))

let ``a token may be taken by no expert or by all of them`` () =
    // Tokens 0 and 2 have score 1/3 in every column (a tie, which goes to token 0); token 1 has e/(2 + e) = 0.576 in
    // column 1 and 1/(2 + e) = 0.212 elsewhere. With C = 1: expert 1 takes token 1, experts 0 and 2 take token 0.
    let x = array2D [ [ 5.0; 5.0; 5.0 ]; [ 0.0; 1.0; 0.0 ]; [ -3.0; -3.0; -3.0 ] ]
    let r = ExpertChoice.Route(x, ExpertChoiceOptions(Capacity = System.Nullable 1))
    Assert.That(r.Tokens, eq (array2D [ [ 0 ]; [ 1 ]; [ 0 ] ]))
    Assert.That(r.Count, eq [| 2; 1; 0 |])

let ``bad input names the argument`` () =
    let x = Array2D.create 4 3 0.0

    let ex =
        throws<System.ArgumentOutOfRangeException> (fun () ->
            ExpertChoice.Route(x, ExpertChoiceOptions(Capacity = System.Nullable 5)) |> ignore)

    Assert.That(ex.ParamName, eq "capacity")

    let ex =
        throws<System.ArgumentException> (fun () -> ExpertChoice.Route(x, ExpertChoiceOptions(CapacityFactor = nan)) |> ignore)

    Assert.That(ex.ParamName, eq "capacity_factor")
    x.[3, 0] <- nan

    let ex =
        throws<System.ArgumentException> (fun () -> ExpertChoice.Route(x, ExpertChoiceOptions()) |> ignore)

    Assert.That(ex.Message, Does.Contain "logits[3, 0] is NaN")

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "routing/expert-choice"
        "ExpertChoiceProperties"
        [
            Proofs.prop
                [ "expert-choice.capacity-rule" ]
                "C is the explicit value or min(N, ceil(cf N k / E))"
                ``C is the explicit value or min(N, ceil(cf N k / E))``
            Proofs.prop
                [ "expert-choice.exactly-c" ]
                "every expert takes exactly C distinct tokens and count tallies them"
                ``every expert takes exactly C distinct tokens and count tallies them``
            Proofs.prop
                [ "expert-choice.top-c-of-column" ]
                "each expert's tokens are the top C of its column, in order, with gates P"
                ``each expert's tokens are the top C of its column, in order, with gates P``
            Proofs.prop [ "expert-choice.kernel-equals-reference" ] "kernel equals reference" ``kernel equals reference``
            Proofs.test
                [ "expert-choice.kernel-equals-reference" ]
                "kernel equals reference exactly on most grid columns"
                ``kernel equals reference exactly on most grid columns``
            Proofs.prop
                [ "expert-choice.validator-sound" ]
                "the validator accepts the reference and rejects a clearly worse token"
                ``the validator accepts the reference and rejects a clearly worse token``
            Proofs.prop
                [ "expert-choice.deterministic" ]
                "reference and kernel are deterministic"
                ``reference and kernel are deterministic``
            Proofs.test [] "a token may be taken by no expert or by all of them" ``a token may be taken by no expert or by all of them``
            Proofs.test [] "bad input names the argument" ``bad input names the argument``
        ]
