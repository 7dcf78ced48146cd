/// Properties of iterative rerouting; theorems in proofs/reroute.md.
module Reference.Tests.RerouteProperties

open FsCheck
open FsCheck.FSharp
open NUnit.Framework
open Reference.Routing
open Reference.Tests.Proofs
open Reference.Tests.Generators
open Reference.Tests.RoutingGenerators

/// A rerouting problem: logits, k, score and a capacity rule.
type RerouteProblem =
    {
        Logits: double[,]
        K: int
        Score: ScoreFunction
        Rule: CapacityRule
    }

    member p.Options =
        RerouteOptions(
            K = p.K,
            Score = p.Score,
            Capacity =
                (match p.Rule.Capacity with
                 | Some c -> System.Nullable c
                 | None -> System.Nullable()),
            CapacityFactor = p.Rule.Factor,
            Rounding = p.Rule.Rounding,
            MinCapacity = p.Rule.MinCapacity
        )

    /// The same capacity rule for `capacity` with choice-position and no renormalization.
    member p.CapacityOptions =
        capacityOptions p.K p.Score Renormalization.None DropPolicy.ChoicePosition p.Rule None

let private problemWith (logitGen: ScoreFunction -> int -> int -> Gen<double[,]>) =
    gen {
        let! n = Gen.elements tokenCounts
        let! e = Gen.elements expertCounts
        let! k = Gen.choose (1, e)
        let! score = Gen.elements [ ScoreFunction.Softmax; ScoreFunction.Softmax; ScoreFunction.Sigmoid ]
        let! x = logitGen score n e
        let! rule = capacityRule n k
        return { Logits = x; K = k; Score = score; Rule = rule }
    }

let private problem = problemWith (fun _ -> logits) |> Arb.fromGen

let private dropped (m: int[,]) = m |> Seq.cast<int> |> Seq.filter (fun v -> v < 0) |> Seq.length

let ``no expert ever accepts more than C and load counts the accepted requests`` () =
    Prop.forAll problem (fun pr ->
        let r = Reroute.Route(pr.Logits, pr.Options)
        let e = Array2D.length2 pr.Logits
        let counts = Array.zeroCreate e

        r.Experts
        |> Array2D.iter (fun x ->
            if x >= 0 then
                counts.[x] <- counts.[x] + 1)

        Assert.That(r.Load, eq counts)
        Assert.That(r.Load |> Array.forall (fun l -> l <= r.Capacity), $"load {r.Load} exceeds C = {r.Capacity}"))

let ``a token never gets the same expert twice`` () =
    Prop.forAll problem (fun pr ->
        let r = Reroute.Route(pr.Logits, pr.Options)

        for i in 0 .. Array2D.length1 pr.Logits - 1 do
            let got = row r.Experts i |> Array.filter (fun x -> x >= 0)
            Assert.That(got |> Array.distinct |> Array.length, eq got.Length, $"token {i}: {got}"))

let ``rerouting never drops more requests than capacity with choice-position`` () =
    Prop.forAll problem (fun pr ->
        let r = Reroute.Route(pr.Logits, pr.Options)
        let c = Capacity.Route(pr.Logits, pr.CapacityOptions)
        Assert.That(r.Capacity, eq c.Capacity)
        Assert.That(dropped r.Experts, Is.LessThanOrEqualTo(dropped c.Experts)))

let ``first choices are exactly capacity's first choices under choice-position`` () =
    Prop.forAll problem (fun pr ->
        let r = Reroute.Route(pr.Logits, pr.Options)
        let c = Capacity.Route(pr.Logits, pr.CapacityOptions)
        Assert.That(column r.Experts 0, eq (column c.Experts 0)))

let ``a token's experts follow its ranking, and a missing choice means every other expert is full`` () =
    Prop.forAll problem (fun pr ->
        let r = Reroute.Route(pr.Logits, pr.Options)
        let p = RouterScores.Compute(pr.Logits, pr.Score)
        let n, e = Array2D.length1 pr.Logits, Array2D.length2 pr.Logits

        for i in 0 .. n - 1 do
            // The ranking of token i: larger score first, ties to the lower expert (an independent stable sort).
            let ranking = Array.init e id |> Array.sortBy (fun x -> -p.[i, x], x)
            let position x = Array.findIndex ((=) x) ranking
            let got = row r.Experts i |> Array.filter (fun x -> x >= 0)
            Assert.That(got |> Array.map position, eq (got |> Array.map position |> Array.sort), $"token {i}: {got} out of ranking order")

            if r.Experts.[i, 0] < 0 then
                Assert.That(r.Load.[ranking.[0]], eq r.Capacity, $"token {i}: first choice {ranking.[0]} dropped but not full")

            if (row r.Experts i |> Array.skip 1 |> Array.exists (fun x -> x < 0)) then
                for x in 0 .. e - 1 do
                    if not (Array.contains x got) then
                        Assert.That(r.Load.[x], eq r.Capacity, $"token {i} misses a choice, yet expert {x} has room"))

/// Grid logits keep every row's keys separated (or bit-equal) in float32 and double alike, and rerouting compares scores
/// only within a row, so there the kernel must agree exactly.
let private gridProblem = problemWith gridLogitsFor |> Arb.fromGen

let private kernel (pr: RerouteProblem) =
    let n, e = Array2D.length1 pr.Logits, Array2D.length2 pr.Logits
    let r = Reference.Kernels.Routing.Reroute.Route(flat32 pr.Logits, n, e, pr.Options)
    matrix n pr.K r.Experts, matrix n pr.K (Array.map float r.Weights), r.Load, r.Capacity

let ``kernel equals reference on separated inputs`` () =
    Prop.forAll gridProblem (fun pr ->
        let reference = Reroute.Route(pr.Logits, pr.Options)
        let experts, weights, load, c = kernel pr
        Assert.That(c, eq reference.Capacity)
        Assert.That(experts, eq reference.Experts)
        Assert.That(load, eq reference.Load)
        // Weights: float32 scores, within (E + 4) u32 of the double ones (proofs/topk.md).
        let tol = float (Array2D.length2 pr.Logits + 4) * u32

        weights
        |> Array2D.iteri (fun i j w -> Assert.That(abs (w - reference.Weights.[i, j]), Is.LessThanOrEqualTo tol, $"weights[{i}, {j}]")))

let ``reference and kernel are deterministic`` () =
    Prop.forAll problem (fun pr ->
        let a, b = Reroute.Route(pr.Logits, pr.Options), Reroute.Route(pr.Logits, pr.Options)
        Assert.That(b.Experts, eq a.Experts)

        Assert.That(
            b.Weights |> flatten |> Array.map System.BitConverter.DoubleToInt64Bits,
            eq (a.Weights |> flatten |> Array.map System.BitConverter.DoubleToInt64Bits)
        )

        let (e1, w1, l1, _), (e2, w2, l2, _) = kernel pr, kernel pr
        Assert.That(e2, eq e1)
        Assert.That(w2, eq w1)
        Assert.That(l2, eq l1))

let ``a worked example: the dropped second choice moves to the next expert with room`` () =
    // 3 tokens, 3 experts, k = 2, C = 1. Scores rank experts (0, 1, 2) for token 0, (1, 0, 2) for token 1, (0, 1, 2) for token 2.
    // Choice 1: token 0 takes expert 0, token 1 takes expert 1, token 2's first choice (0) is full: dropped.
    // Choice 2, round 1: token 0 proposes 1 (full), token 1 proposes 0 (full), token 2 proposes 1 (full);
    // round 2: token 0 proposes 2 and gets it, token 1 proposes 2 (now full), token 2 proposes 2 (full); then nothing is left.
    let x = array2D [ [ 2.0; 1.0; 0.0 ]; [ 1.0; 2.0; 0.0 ]; [ 2.0; 1.0; 0.0 ] ]
    let r = Reroute.Route(x, RerouteOptions(K = 2, Capacity = System.Nullable 1))
    Assert.That(r.Experts, eq (array2D [ [ 0; 2 ]; [ 1; -1 ]; [ -1; -1 ] ]))
    Assert.That(r.Load, eq [| 1; 1; 1 |])
    // Capacity with choice-position keeps only the two first choices of tokens 0 and 1 and drops the other four requests;
    // rerouting places one of them (token 0's second choice, on expert 2).
    let c = Capacity.Route(x, CapacityOptions(K = 2, Capacity = System.Nullable 1))
    Assert.That(dropped c.Experts, eq 4)
    Assert.That(dropped r.Experts, eq 3)

let ``bad input names the argument`` () =
    let x = Array2D.create 2 3 0.0

    let ex =
        throws<System.ArgumentOutOfRangeException> (fun () -> Reroute.Route(x, RerouteOptions(K = 4)) |> ignore)

    Assert.That(ex.ParamName, eq "k")

    let ex =
        throws<System.ArgumentOutOfRangeException> (fun () -> Reroute.Route(x, RerouteOptions(Capacity = System.Nullable -2)) |> ignore)

    Assert.That(ex.ParamName, eq "capacity")
    x.[0, 2] <- infinity
    let ex = throws<System.ArgumentException> (fun () -> Reroute.Route(x, RerouteOptions()) |> ignore)
    Assert.That(ex.Message, Does.Contain "logits[0, 2] is +Inf")

    let ex =
        throws<System.ArgumentException> (fun () -> Reference.Kernels.Routing.Reroute.Route(flat32 x, 2, 3, RerouteOptions()) |> ignore)

    Assert.That(ex.Message, Does.Contain "logits[0, 2] is +Inf")

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "routing/reroute"
        "RerouteProperties"
        [
            Proofs.prop
                [ "reroute.never-exceeds" ]
                "no expert ever accepts more than C and load counts the accepted requests"
                ``no expert ever accepts more than C and load counts the accepted requests``
            Proofs.prop
                [ "reroute.distinct-experts" ]
                "a token never gets the same expert twice"
                ``a token never gets the same expert twice``
            Proofs.prop
                [ "reroute.no-more-drops-than-capacity" ]
                "rerouting never drops more requests than capacity with choice-position"
                ``rerouting never drops more requests than capacity with choice-position``
            Proofs.prop
                [ "reroute.first-choices-as-capacity" ]
                "first choices are exactly capacity's first choices under choice-position"
                ``first choices are exactly capacity's first choices under choice-position``
            Proofs.prop
                [ "reroute.exhausted-when-missing" ]
                "a token's experts follow its ranking, and a missing choice means every other expert is full"
                ``a token's experts follow its ranking, and a missing choice means every other expert is full``
            Proofs.prop
                [ "reroute.kernel-equals-reference" ]
                "kernel equals reference on separated inputs"
                ``kernel equals reference on separated inputs``
            Proofs.prop [ "reroute.deterministic" ] "reference and kernel are deterministic" ``reference and kernel are deterministic``
            Proofs.test
                [ "reroute.no-more-drops-than-capacity" ]
                "a worked example: the dropped second choice moves to the next expert with room"
                ``a worked example: the dropped second choice moves to the next expert with room``
            Proofs.test [] "bad input names the argument" ``bad input names the argument``
        ]
