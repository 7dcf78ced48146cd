/// BASE layers' balanced assignment: the exact reference and fairseq's auction; theorems in proofs/base.md.
module Reference.Tests.BaseProperties

open System
open FsCheck
open FsCheck.FSharp
open NUnit.Framework
open Reference.Routing
open Reference.Harness.Algorithms
open Reference.Tests.Proofs

/// A balanced problem: E divides N; scores on a dyadic grid (ties) or continuous, at various ranges.
let private balanced (maxPerExpert: int) =
    gen {
        let! e = Gen.choose (1, 4)
        let! m = Gen.choose (1, maxPerExpert)
        let! kind = Gen.choose (0, 2)

        let cell =
            match kind with
            | 0 -> Gen.choose (0, 4) |> Gen.map (fun v -> float v * 0.25)
            | 1 -> Gen.choose (0, 1_000_000) |> Gen.map (fun v -> float v * 1e-6)
            | _ -> Gen.choose (0, 1_000_000) |> Gen.map (fun v -> float v * 1e-9) // range below 50e-4: eps = 1e-4

        return! Gen.array2DOfDim (e * m) e cell
    }
    |> Arb.fromGen

/// The best balanced assignment by brute force (every expert exactly N/E tokens).
let private bruteForce (s: double[,]) =
    let n, e = Array2D.length1 s, Array2D.length2 s
    let m = n / e
    let load = Array.zeroCreate e

    let rec go i =
        if i = n then
            0.0
        else
            [
                for x in 0 .. e - 1 do
                    if load.[x] < m then
                        load.[x] <- load.[x] + 1
                        let v = s.[i, x] + go (i + 1)
                        load.[x] <- load.[x] - 1
                        yield v
            ]
            |> List.max

    go 0

let ``exact gives N/E tokens per expert and the brute-force optimum`` () =
    Prop.forAll (balanced 3) (fun s ->
        let n, e = Array2D.length1 s, Array2D.length2 s
        let r = BalancedAssignment.Exact s
        Assert.That(r.Experts |> Array.countBy id |> Array.map snd, eq (Array.create e (n / e)))
        Assert.That(r.Objective, Is.EqualTo(bruteForce s).Within(1e-9))

        let check =
            MaxScoreCertificate.Check(s, 1, n / e, Array2D.init n 1 (fun i _ -> r.Experts.[i]), r.Prices)

        Assert.That(check.Optimal, check.Describe())
        Assert.That(check.GivenPrices.Gap, Is.InRange(0.0, 1e-12 * float n)))

let ``exact rejects E not dividing N`` () =
    let ex =
        throws<ArgumentException> (fun () -> BalancedAssignment.Exact(Array2D.create 5 2 0.5) |> ignore)

    Assert.That(ex.Message, Does.Contain "E to divide N")

    throws<ArgumentException> (fun () -> BalancedAssignmentAuction.Assign(Array2D.create 5 2 0.5) |> ignore)
    |> ignore

let ``auction returns a balanced assignment no better than the exact one`` () =
    Prop.forAll (balanced 6) (fun s ->
        let n, e = Array2D.length1 s, Array2D.length2 s
        let a = BalancedAssignmentAuction.Assign s
        Assert.That(a.Epsilon, eq (max ((Seq.max (Seq.cast<float> s) - Seq.min (Seq.cast<float> s)) / 50.0) 1e-4))
        Assert.That(a.Partition, "the final top sets are not a partition")
        Assert.That(a.Experts |> Array.countBy id |> Array.sortBy fst, eq (Array.init e (fun x -> x, n / e)))
        Assert.That(a.Objective, Is.EqualTo(Array.init n (fun i -> s.[i, a.Experts.[i]]) |> Array.sum).Within(1e-12))
        let exact = BalancedAssignment.Exact s
        Assert.That(a.Objective, Is.LessThanOrEqualTo(exact.Objective + 1e-9)))

/// Scores where every expert's top N/E tokens are its own block: expert x prefers block x by at least 1.
let private separated =
    gen {
        let! e = Gen.choose (2, 4)
        let! m = Gen.choose (1, 5)
        let! perm = Generators.permutation (e * m)
        let! noise = Gen.array2DOfDim (e * m) e (Gen.choose (0, 1000) |> Gen.map (fun v -> float v / 1000.0))
        return Array2D.init (e * m) e (fun t x -> noise.[t, x] + (if perm.[t] / m = x then 2.0 else 0.0))
    }
    |> Arb.fromGen

let ``an auction that ends in round 0 is optimal`` () =
    // Separated preferences must end the auction at once; any instance that ends at once must be optimal.
    let arb =
        Gen.oneof
            [
                separated.Generator |> Gen.map (fun s -> s, true)
                (balanced 6).Generator |> Gen.map (fun s -> s, false)
            ]
        |> Arb.fromGen

    Prop.forAll arb (fun (s, isSeparated) ->
        let n, e = Array2D.length1 s, Array2D.length2 s
        let a = BalancedAssignmentAuction.Assign s

        if isSeparated then
            Assert.That(a.Rounds, eq 0)

        if a.Rounds = 0 then
            let verdict = MaxScoreCertificate.Check(s, 1, n / e, Array2D.init n 1 (fun i _ -> a.Experts.[i]))
            Assert.That(verdict.Optimal, verdict.Describe()))

let ``auction ending normally can miss the optimum by more than N eps`` () =
    // The counterexample of proofs/base.md: the retention bid eps raises the held tokens' prices every round, so the
    // eps-complementary slackness of the textbook auction decays; the N eps bound of the textbook auction fails.
    let s =
        array2D
            [
                [ 0.75; 0.0; 0.5; 0.5 ]
                [ 0.25; 0.25; 0.0; 0.75 ]
                [ 0.5; 0.0; 0.0; 0.75 ]
                [ 0.25; 0.5; 0.5; 0.75 ]
            ]

    let a = BalancedAssignmentAuction.Assign s
    Assert.That(a.Status, eq AuctionStatus.Normal)
    Assert.That(a.Epsilon, eq 0.015)
    let optimum = bruteForce s
    Assert.That(optimum - a.Objective, Is.GreaterThan(4.0 * a.Epsilon))
    Assert.That(BalancedAssignment.Exact(s).Objective, eq optimum)

let ``auction gap is measured against the exact optimum`` () =
    // gap = exact - auction >= 0, and 0 exactly when the checker proves the auction's assignment optimal.
    Prop.forAll (balanced 6) (fun s ->
        let n, e = Array2D.length1 s, Array2D.length2 s
        let a = BalancedAssignmentAuction.Assign s
        let exact = BalancedAssignment.Exact s
        let verdict = MaxScoreCertificate.Check(s, 1, n / e, Array2D.init n 1 (fun i _ -> a.Experts.[i]))
        let gap = exact.Objective - a.Objective
        Assert.That(gap, Is.GreaterThanOrEqualTo(-1e-12))

        if verdict.Optimal then
            Assert.That(gap, Is.EqualTo(0.0).Within(1e-12))
        else
            Assert.That(gap, Is.GreaterThanOrEqualTo(verdict.Improvement - 1e-12)))

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "transport/base"
        "BaseProperties"
        [
            Proofs.prop
                [ "base.exact" ]
                "exact gives N/E tokens per expert and the brute-force optimum"
                ``exact gives N/E tokens per expert and the brute-force optimum``
            Proofs.test [] "exact rejects E not dividing N" ``exact rejects E not dividing N``
            Proofs.prop
                [ "base.auction-feasible" ]
                "auction returns a balanced assignment no better than the exact one"
                ``auction returns a balanced assignment no better than the exact one``
            Proofs.prop
                [ "base.auction-first-round" ]
                "an auction that ends in round 0 is optimal"
                ``an auction that ends in round 0 is optimal``
            Proofs.test
                [ "base.auction-gap" ]
                "auction ending normally can miss the optimum by more than N eps"
                ``auction ending normally can miss the optimum by more than N eps``
            Proofs.prop
                [ "base.auction-gap" ]
                "auction gap is measured against the exact optimum"
                ``auction gap is measured against the exact optimum``
        ]
