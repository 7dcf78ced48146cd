/// The fast exact MaxScore solver against brute force and the exact price certificate; theorems in proofs/maxscore.md.
module Reference.Tests.MaxScoreSolverProperties

open System
open FsCheck
open FsCheck.FSharp
open NUnit.Framework
open Reference.Kernels.Routing
open Reference.Tests.Proofs

/// A small MaxScore problem with C * E >= k * N: scores on a coarse grid (ties) or continuous.
type Problem = { N: int; E: int; K: int; C: int; S: double[] }

let problem (maxN: int) =
    gen {
        let! e = Gen.choose (1, 4)
        let! k = Gen.choose (1, e)
        let! n = Gen.choose (1, maxN)
        let minC = (n * k + e - 1) / e
        let! extra = Gen.choose (0, 2)
        let! ties = Gen.elements [ true; false ]
        let cell = if ties then Gen.choose (0, 4) |> Gen.map (fun v -> float v * 0.25)
                   else Gen.choose (0, 1_000_000) |> Gen.map (fun v -> float v * 1e-6)
        let! s = Gen.arrayOfLength (n * e) cell
        return { N = n; E = e; K = k; C = min n (minC + extra) |> max minC; S = s }
    } |> Arb.fromGen

/// The exact optimum by enumerating every token's k-subset (tiny problems only).
let bruteForce (p: Problem) =
    let subsets =
        [ for mask in 0 .. (1 <<< p.E) - 1 do
            if Numerics.BitOperations.PopCount(uint32 mask) = p.K then yield mask ]
    let load = Array.zeroCreate p.E
    let mutable best = Double.NegativeInfinity
    let rec go i acc =
        if i = p.N then best <- max best acc
        else
            for mask in subsets do
                let fits = [ 0 .. p.E - 1 ] |> List.forall (fun x -> mask &&& (1 <<< x) = 0 || load.[x] < p.C)
                if fits then
                    let mutable gain = 0.0
                    for x in 0 .. p.E - 1 do
                        if mask &&& (1 <<< x) <> 0 then
                            load.[x] <- load.[x] + 1
                            gain <- gain + p.S.[i * p.E + x]
                    go (i + 1) (acc + gain)
                    for x in 0 .. p.E - 1 do
                        if mask &&& (1 <<< x) <> 0 then load.[x] <- load.[x] - 1
    go 0 0.0
    best

[<Prop; Theorem "maxscore.fast-solver-optimal">]
let ``fast solver reaches the brute-force optimum`` () =
    Prop.forAll (problem 5) (fun p ->
        for sweeps in [ 0; 4 ] do
            let r = MaxScoreSolver.Solve(p.S, p.N, p.E, p.K, p.C, sweeps)
            // Feasible: k distinct experts per token, loads within C and consistent.
            let load = Array.zeroCreate p.E
            for i in 0 .. p.N - 1 do
                let row = r.Experts.[i * p.K .. (i + 1) * p.K - 1]
                Assert.That(row |> Array.distinct |> Array.length, eq p.K)
                for x in row do load.[x] <- load.[x] + 1
            Assert.That(load, eq r.Load)
            Assert.That(load |> Array.forall (fun l -> l <= p.C))
            Assert.That(r.Objective, Is.EqualTo(bruteForce p).Within(1e-9), $"sweeps {sweeps}"))

[<Prop; Theorem "maxscore.fast-solver-certificate">]
let ``fast solver prices certify its routing`` () =
    Prop.forAll (problem 12) (fun p ->
        let r = MaxScoreSolver.Solve(p.S, p.N, p.E, p.K, p.C)
        let slack = 1e-12
        for x in 0 .. p.E - 1 do
            Assert.That(r.Prices.[x], Is.GreaterThanOrEqualTo 0.0)
            if r.Load.[x] < p.C then Assert.That(r.Prices.[x], eq 0.0, $"expert {x} below capacity has a price")
        for i in 0 .. p.N - 1 do
            let chosen = r.Experts.[i * p.K .. (i + 1) * p.K - 1]
            let reduced x = p.S.[i * p.E + x] - r.Prices.[x]
            let worstChosen = chosen |> Array.map reduced |> Array.min
            for x in 0 .. p.E - 1 do
                if not (Array.contains x chosen) then
                    Assert.That(reduced x, Is.LessThanOrEqualTo(worstChosen + slack), $"token {i}: unchosen {x} beats a chosen expert"))

/// A wider problem (E up to 70, past the 64-expert bit sets), skewed softmax scores or a coarse grid with ties, C from the
/// fair share up, and a phase-1 budget from none to the default.
let private wide =
    gen {
        let! e = Gen.elements [ 5; 7; 16; 33; 64; 65; 70 ]
        let! k = Gen.choose (1, min e 9)
        let! n = Gen.choose (1, 160)
        let minC = (n * k + e - 1) / e
        let! extra = Gen.elements [ 0; 0; 1; 5; n ]
        let! sweeps = Gen.elements [ 0; 1; 2; MaxScoreSolver.DefaultSweeps ]
        let! grid = Gen.elements [ true; false ]
        let! seed = Gen.choose (0, Int32.MaxValue)
        let rng = Random seed
        let bias = Array.init e (fun _ -> 2.0 * rng.NextDouble())
        let s =
            Array.init n (fun _ ->
                let logits = Array.init e (fun x -> if grid then float (rng.Next 4) else bias.[x] + rng.NextDouble() * 3.0)
                let top = Array.max logits
                let p = logits |> Array.map (fun v -> exp (v - top))
                let total = Array.sum p
                if grid then logits |> Array.map (fun v -> v * 0.25) else p |> Array.map (fun v -> v / total))
            |> Array.concat
        return ({ N = n; E = e; K = k; C = minC + extra; S = s }, sweeps)
    } |> Arb.fromGen

[<Prop; Theorem "maxscore.fast-solver-optimal">]
let ``fast solver is certified optimal on wide problems`` () =
    Prop.forAll wide (fun (p, sweeps) ->
        let r = MaxScoreSolver.Solve(p.S, p.N, p.E, p.K, p.C, sweeps)
        let s = Array2D.init p.N p.E (fun i x -> p.S.[i * p.E + x])
        let experts = Array2D.init p.N p.K (fun i j -> r.Experts.[i * p.K + j])
        let check = Reference.Harness.Algorithms.MaxScoreCertificate.Check(s, p.K, p.C, experts, r.Prices)
        Assert.That(check.Optimal, check.Describe())
        Assert.That(check.GivenPrices.Problem, Is.Null, check.Describe()))

/// A problem short of capacity (C * E < k * N, C from 0 up): continuous scores, a grid with ties, or negative scores.
let private short =
    gen {
        let! e = Gen.elements [ 1; 2; 3; 5; 16; 65 ]
        let! k = Gen.choose (1, min e 4)
        let! n = Gen.choose (1, 40)
        let fair = (n * k + e - 1) / e
        let! c = Gen.choose (0, max 0 (fair - 1))
        let! kind = Gen.choose (0, 2)
        let! seed = Gen.choose (0, Int32.MaxValue)
        let rng = Random seed
        let cell () =
            match kind with
            | 0 -> rng.NextDouble()
            | 1 -> float (rng.Next 4) * 0.25
            | _ -> rng.NextDouble() * 4.0 - 3.0
        return { N = n; E = e; K = k; C = c; S = Array.init (n * e) (fun _ -> cell ()) }
    }
    |> Gen.filter (fun p -> int64 p.C * int64 p.E < int64 p.K * int64 p.N)
    |> Arb.fromGen

[<Prop; Theorem "maxscore.fast-solver-short">]
let ``fast solver short of capacity fills every expert and reaches the reference optimum`` () =
    Prop.forAll short (fun p ->
        let r = MaxScoreSolver.Solve(p.S, p.N, p.E, p.K, p.C)
        let s = Array2D.init p.N p.E (fun i x -> p.S.[i * p.E + x])
        let experts = Array2D.init p.N p.K (fun i j -> r.Experts.[i * p.K + j])
        // Every expert full; rows hold distinct experts, then -1 only.
        Assert.That(r.Load, eq (Array.create p.E p.C))
        for i in 0 .. p.N - 1 do
            let row = r.Experts.[i * p.K .. (i + 1) * p.K - 1]
            let used = row |> Array.filter (fun x -> x >= 0)
            Assert.That(used |> Array.distinct |> Array.length, eq used.Length)
            Assert.That(row.[used.Length ..] |> Array.forall (fun x -> x = -1), $"row {i}: -1 before an expert")
        let reference = Reference.Routing.MaxScore.Route(s, Reference.Routing.MaxScoreOptions(K = p.K, Capacity = Nullable p.C))
        Assert.That(r.Objective, Is.EqualTo(reference.Objective).Within(1e-12 * (1.0 + abs reference.Objective)))
        let check = Reference.Harness.Algorithms.MaxScoreCertificate.Check(s, p.K, p.C, experts, r.Prices)
        Assert.That(check.Optimal, check.Describe())
        Assert.That(check.GivenPrices.Problem, Is.Null, check.Describe()))
