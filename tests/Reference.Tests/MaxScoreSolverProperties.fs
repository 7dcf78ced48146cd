/// The fast exact MaxScore solver against brute force and the exact price certificate; theorems in proofs/maxscore.md.
module Reference.Tests.MaxScoreSolverProperties

open System
open FsCheck
open FsCheck.FSharp
open System.Numerics
open NUnit.Framework
open Reference.Kernels.Routing
open Reference.Numerics
open Reference.Routing
open Reference.Harness.Algorithms
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

        let cell =
            if ties then
                Gen.choose (0, 4) |> Gen.map (fun v -> float v * 0.25)
            else
                Gen.choose (0, 1_000_000) |> Gen.map (fun v -> float v * 1e-6)

        let! s = Gen.arrayOfLength (n * e) cell
        return { N = n; E = e; K = k; C = min n (minC + extra) |> max minC; S = s }
    }
    |> Arb.fromGen

/// The exact optimum by enumerating every token's k-subset (tiny problems only).
let bruteForce (p: Problem) =
    let subsets =
        [
            for mask in 0 .. (1 <<< p.E) - 1 do
                if Numerics.BitOperations.PopCount(uint32 mask) = p.K then
                    yield mask
        ]

    let load = Array.zeroCreate p.E
    let mutable best = Double.NegativeInfinity

    let rec go i acc =
        if i = p.N then
            best <- max best acc
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
                        if mask &&& (1 <<< x) <> 0 then
                            load.[x] <- load.[x] - 1

    go 0 0.0
    best

let ``fast solver reaches the brute-force optimum`` () =
    Prop.forAll (problem 5) (fun p ->
        for sweeps in [ 0; 4 ] do
            let r = MaxScoreSolver.Solve(p.S, p.N, p.E, p.K, p.C, sweeps)
            // Feasible: k distinct experts per token, loads within C and consistent.
            let load = Array.zeroCreate p.E

            for i in 0 .. p.N - 1 do
                let row = r.Experts.[i * p.K .. (i + 1) * p.K - 1]
                Assert.That(row |> Array.distinct |> Array.length, eq p.K)

                for x in row do
                    load.[x] <- load.[x] + 1

            Assert.That(load, eq r.Load)
            Assert.That(load |> Array.forall (fun l -> l <= p.C))
            Assert.That(r.Objective, Is.EqualTo(bruteForce p).Within(1e-9), $"sweeps {sweeps}"))

let ``fast solver prices certify its routing`` () =
    Prop.forAll (problem 12) (fun p ->
        let r = MaxScoreSolver.Solve(p.S, p.N, p.E, p.K, p.C)
        let slack = 1e-12

        for x in 0 .. p.E - 1 do
            Assert.That(r.Prices.[x], Is.GreaterThanOrEqualTo 0.0)

            if r.Load.[x] < p.C then
                Assert.That(r.Prices.[x], eq 0.0, $"expert {x} below capacity has a price")

        for i in 0 .. p.N - 1 do
            let chosen = r.Experts.[i * p.K .. (i + 1) * p.K - 1]
            let reduced x = p.S.[i * p.E + x] - r.Prices.[x]
            let worstChosen = chosen |> Array.map reduced |> Array.min

            for x in 0 .. p.E - 1 do
                if not (Array.contains x chosen) then
                    Assert.That(reduced x, Is.LessThanOrEqualTo(worstChosen + slack), $"token {i}: unchosen {x} beats a chosen expert"))

/// Asserts that the independent exact price checker proves the fast solver's routing optimal with its own prices.
let private assertCertified (p: Problem) (r: MaxScoreFastResult) =
    let s = Array2D.init p.N p.E (fun i x -> p.S.[i * p.E + x])
    let experts = Array2D.init p.N p.K (fun i j -> r.Experts.[i * p.K + j])
    let check = MaxScoreCertificate.Check(s, p.K, p.C, experts, r.Prices)
    Assert.That(check.Optimal, check.Describe())
    Assert.That(check.GivenPrices.Problem, Is.Null, check.Describe())

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
                let logits =
                    Array.init e (fun x ->
                        if grid then
                            float (rng.Next 4)
                        else
                            bias.[x] + rng.NextDouble() * 3.0)

                let top = Array.max logits
                let p = logits |> Array.map (fun v -> exp (v - top))
                let total = Array.sum p

                if grid then
                    logits |> Array.map (fun v -> v * 0.25)
                else
                    p |> Array.map (fun v -> v / total))
            |> Array.concat

        return ({ N = n; E = e; K = k; C = minC + extra; S = s }, sweeps)
    }
    |> Arb.fromGen

let ``fast solver is certified optimal on wide problems`` () =
    Prop.forAll wide (fun (p, sweeps) -> assertCertified p (MaxScoreSolver.Solve(p.S, p.N, p.E, p.K, p.C, sweeps)))

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

let ``fast solver short of capacity fills every expert and reaches the reference optimum`` () =
    Prop.forAll short (fun p ->
        let r = MaxScoreSolver.Solve(p.S, p.N, p.E, p.K, p.C)
        let s = Array2D.init p.N p.E (fun i x -> p.S.[i * p.E + x])
        // Every expert full; rows hold distinct experts, then -1 only.
        Assert.That(r.Load, eq (Array.create p.E p.C))

        for i in 0 .. p.N - 1 do
            let row = r.Experts.[i * p.K .. (i + 1) * p.K - 1]
            let used = row |> Array.filter (fun x -> x >= 0)
            Assert.That(used |> Array.distinct |> Array.length, eq used.Length)
            Assert.That(row.[used.Length ..] |> Array.forall (fun x -> x = -1), $"row {i}: -1 before an expert")

        let reference =
            Reference.Routing.MaxScore.Route(s, Reference.Routing.MaxScoreOptions(K = p.K, Capacity = Nullable p.C))

        Assert.That(r.Objective, Is.EqualTo(reference.Objective).Within(1e-12 * (1.0 + abs reference.Objective)))
        assertCertified p r)

// ---- row ranking: counting with vector compares equals insertion and a plain sort -------------------------------------

/// A row of 1 to 40 reduced scores (across the counting limit of 32, widths not a multiple of 4), with prices, on a coarse
/// grid (many ties) or continuous, and a list length from 1 to past the row's width.
let private rankRows =
    gen {
        let! e = Gen.choose (1, 40)
        let! grid = Gen.elements [ true; false ]

        let cell =
            if grid then
                Gen.choose (-3, 3) |> Gen.map float
            else
                Gen.choose (-1_000_000, 1_000_000) |> Gen.map (fun v -> float v * 1e-6)

        let! row = Gen.arrayOfLength e cell

        let! price =
            Gen.arrayOfLength
                e
                (if grid then
                     Gen.choose (0, 2) |> Gen.map float
                 else
                     Gen.constant 0.0)

        let! m = Gen.choose (1, e + 2)
        return row, price, m
    }
    |> Arb.fromGen

let ``row ranking by counting equals insertion and a stable sort`` () =
    Prop.forAll rankRows (fun (row, price, m) ->
        // The readable order: descending reduced score, ties to the lower index.
        let sorted =
            Array.init row.Length (fun x -> x, row.[x] - price.[x]) |> Array.sortBy (fun (x, v) -> -v, x)

        let expectedIdx = Array.init m (fun j -> if j < sorted.Length then fst sorted.[j] else -1)

        let expectedVal =
            Array.init m (fun j ->
                if j < sorted.Length then
                    snd sorted.[j]
                else
                    Double.NegativeInfinity)

        let expectedRest =
            if m < sorted.Length then
                snd sorted.[m]
            else
                Double.NegativeInfinity

        let rankers: (string * (double[] -> double[] -> int[] -> double[] -> int * double)) list =
            [
                "insertion",
                (fun r p i v ->
                    let mutable rest = 0.0 in
                    let c = RowRanking.RankByInsertion(r, p, i, v, &rest) in
                    c, rest)
                "counting",
                (fun r p i v ->
                    let mutable rest = 0.0 in
                    let c = RowRanking.RankByCounting(r, p, i, v, &rest) in
                    c, rest)
            ]

        for name, rank in rankers do
            if name = "insertion" || row.Length <= RowRanking.CountingUpTo then
                let idx = Array.create m 99
                let vals = Array.create m nan
                let count, rest = rank row price idx vals
                Assert.That(count, eq (min m row.Length), name)
                Assert.That(idx, eq expectedIdx, name)
                Assert.That(vals, eq expectedVal, name)
                Assert.That(rest, eq expectedRest, name))

// ---- the exact finish's arithmetic: Int128 and BigInteger -------------------------------------------------------------

/// Doubles across the whole exponent range: zeros, subnormals, tiny, ordinary, huge; both signs.
let private anyDouble =
    Gen.oneof
        [
            Gen.constant 0.0
            Gen.choose (1, 1000) |> Gen.map (fun m -> float m * Math.ScaleB(1.0, -1074)) // subnormal
            Gen.map2 (fun m q -> float m * Math.ScaleB(1.0, q)) (Gen.choose (-1000, 1000)) (Gen.choose (-1060, 1000))
            Gen.choose (0, 1_000_000) |> Gen.map (fun v -> float v * 1e-6)
            Gen.choose (-4, 4) |> Gen.map (fun v -> float v * 0.25)
        ]

/// Values drawn from one magnitude band or from all of them (so both narrow and wide sets occur).
let private valueSets =
    gen {
        let! band = Gen.elements [ None; Some -20; Some 0; Some 300 ]

        let cell =
            match band with
            | None -> anyDouble
            | Some q -> Gen.choose (-1_000_000, 1_000_000) |> Gen.map (fun v -> float v * Math.ScaleB(1.0, q - 20))

        let! n = Gen.choose (1, 40)
        let! values = Gen.arrayOfLength n cell
        let! adds = Gen.choose (0, 1500)
        let! picks = Gen.arrayOfLength adds (Gen.choose (0, n - 1))
        let! approximate = Gen.arrayOfLength 8 anyDouble
        return values, picks, approximate
    }
    |> Arb.fromGen

let private bitLength (x: BigInteger) = int (BigInteger.Abs(x).GetBitLength())

let ``exact scores agree with the dyadic scale in Int128 and BigInteger`` () =
    Prop.forAll valueSets (fun (values, picks, approximate) ->
        let exact = ExactScores(values)
        let scale = DyadicScale(values)
        Assert.That(exact.Exponent, eq scale.Exponent, "the one-pass scan finds the common scale")
        Assert.That(exact.MaxAbs, eq (values |> Array.map abs |> Array.max))
        let big = values |> Array.map scale.Of
        let widest = big |> Array.map bitLength |> Array.max
        Assert.That(exact.Bits, eq widest, "Bits is the width of the largest |X|")
        let narrow = exact.Bits <= ExactScores.Room<Int128>()

        for i in 0 .. values.Length - 1 do
            Assert.That(exact.Of<BigInteger>(i), eq big.[i])

            if narrow then
                Assert.That(BigInteger.op_Implicit (exact.Of<Int128>(i)), eq big.[i])

        if not narrow then
            Assert.Throws<InvalidOperationException>(Action(fun () -> exact.Of<Int128>(0) |> ignore)) |> ignore
        // Totals over many repeated picks (carried every 512): BigInteger always, Int128 when the bound allows it.
        let expected = picks |> Array.fold (fun acc i -> acc + big.[i]) BigInteger.Zero
        let wide = ExactTotal<BigInteger>(exact)

        for i in picks do
            wide.Add i

        Assert.That(wide.Value, eq expected)

        if exact.Bits + bitLength (BigInteger(picks.Length)) <= 126 then
            let fixedWidth = ExactTotal<Int128>(exact)

            for i in picks do
                fixedWidth.Add i

            Assert.That(BigInteger.op_Implicit fixedWidth.Value, eq expected)

        Assert.That(exact.ToDouble(expected), eq (scale.ToDouble expected))
        // Snapping: the grid integer v with v 2^Q <= x < (v + 1) 2^Q, the same in both widths when it fits.
        for x in approximate do
            let ok, v = exact.TrySnap<BigInteger>(x, Int32.MaxValue)
            Assert.That(ok)
            let struct (m, q) = DyadicScale.Split x
            let low = min q scale.Exponent
            let xs = BigInteger(m) <<< (q - low)
            Assert.That((v <<< (scale.Exponent - low)) <= xs && xs < ((v + BigInteger.One) <<< (scale.Exponent - low)), $"snap of {x:R}")
            let fits, v128 = exact.TrySnap<Int128>(x, 126)
            Assert.That(fits, eq (bitLength v <= 126), $"snap of {x:R} fits Int128")

            if fits then
                Assert.That(BigInteger.op_Implicit v128, eq v))

/// A small graph: nodes, arcs (from, to, cost) and start labels, small integers shifted left by 0, 40 or 90 bits.
let private graphs =
    gen {
        let! nodes = Gen.choose (1, 6)
        let! count = Gen.choose (0, 14)
        let! shift = Gen.elements [ 0; 40; 90 ]
        let! arcs = Gen.arrayOfLength count (Gen.zip3 (Gen.choose (0, nodes - 1)) (Gen.choose (0, nodes - 1)) (Gen.choose (-3, 6)))
        let! start = Gen.arrayOfLength nodes (Gen.choose (-5, 5))
        return nodes, arcs, start, shift
    }
    |> Arb.fromGen

let ``Bellman-Ford gives the same cycle or potentials in Int128 and BigInteger`` () =
    Prop.forAll graphs (fun (nodes, arcs, start, shift) ->
        let big (v: int) = BigInteger(v) <<< shift
        let fixedWidth (v: int) = Int128.op_Implicit v <<< shift
        let wide = ContractedGraph<BigInteger>(nodes)
        let narrow = ContractedGraph<Int128>(nodes, 2)

        arcs
        |> Array.iteri (fun t (a, b, c) ->
            wide.AddArc(a, b, big c, t)
            narrow.AddArc(a, b, fixedWidth c, t))

        let phiWide = Array.map big start
        let phiNarrow = Array.map fixedWidth start
        let cycleWide = wide.FindNegativeCycle phiWide
        let cycleNarrow = narrow.FindNegativeCycle phiNarrow
        Assert.That(phiNarrow |> Array.map (fun (x: Int128) -> BigInteger.op_Implicit x), eq phiWide)

        match cycleWide, cycleNarrow with
        | null, null ->
            for arc in 0 .. wide.Count - 1 do
                Assert.That(phiWide.[wide.To arc], Is.LessThanOrEqualTo(phiWide.[wide.From arc] + wide.Cost arc))

            for v in 0 .. nodes - 1 do
                Assert.That(phiWide.[v], Is.LessThanOrEqualTo(big start.[v]))
        | null, _
        | _, null -> Assert.Fail "one width found a cycle, the other did not"
        | c1, c2 ->
            Assert.That(List.ofSeq c2, eq (List.ofSeq c1))
            Assert.That(phiWide, eq (Array.map big start), "labels unchanged when a cycle is found")
            let arcsOf = List.ofSeq c1

            for (x, y) in List.pairwise (arcsOf @ [ List.head arcsOf ]) do
                Assert.That(wide.To x, eq (wide.From y))

            Assert.That(arcsOf |> List.sumBy (fun a -> wide.Cost a), Is.LessThan BigInteger.Zero))

/// Cells whose differences round in doubles: ones a few ulps apart beside values below their ulp, so rounded keys
/// S_ia - S_ib tie or misorder where the exact keys do not.
let private ulpCells =
    [
        0.0
        Math.ScaleB(1.0, -60)
        Math.ScaleB(3.0, -60)
        Math.ScaleB(1.0, -58)
        1.0
        1.0 + Math.ScaleB(1.0, -52)
        1.0 + Math.ScaleB(1.0, -51)
        1.0 - Math.ScaleB(1.0, -53)
    ]

/// A problem of the fast solver's shape: plain; or with some cells moved to extreme magnitudes (2^-1074 .. 2^1000), so that
/// the exact finish must widen to BigInteger; or with cells whose differences round (see ulpCells).
let private mixedProblems =
    gen {
        let! p = (problem 8).Generator
        let! mode = Gen.elements [ "plain"; "extreme"; "ulp" ]

        let! moved =
            Gen.arrayOfLength
                p.S.Length
                (Gen.frequency
                    [
                        3, Gen.constant None
                        (if mode = "extreme" then 1 else 0), Gen.choose (-1074, 1000) |> Gen.map Some
                    ])

        let! ulps = Gen.arrayOfLength p.S.Length (Gen.elements ulpCells)

        let s =
            if mode = "ulp" then
                ulps
            else
                Array.map2
                    (fun v x ->
                        match x with
                        | Some q -> Math.ScaleB(1.0 + v, q)
                        | None -> v)
                    p.S
                    moved

        return { p with S = s }
    }
    |> Arb.fromGen

/// The fast solver against the reference: the identical objective double, an exactly optimal routing; returns the result.
let private agreesWithReference (p: Problem) =
    let r = MaxScoreSolver.Solve(p.S, p.N, p.E, p.K, p.C)
    let s2 = Array2D.init p.N p.E (fun i x -> p.S.[i * p.E + x])
    let reference = MaxScore.Route(s2, MaxScoreOptions(K = p.K, Capacity = Nullable p.C))
    Assert.That(r.Objective, eq reference.Objective, "identical double: both are the exact optimum rounded once")
    let experts = Array2D.init p.N p.K (fun i j -> r.Experts.[i * p.K + j])
    let check = MaxScoreCertificate.Check(s2, p.K, p.C, experts)
    Assert.That(check.Optimal, check.Describe())
    r

let ``fast solver reports the reference's objective bit for bit, widening to BigInteger for extreme scores`` () =
    // Also the exact check of the finish: on the ulp cells the phase-2 minimal tokens, chosen by rounded keys, are not
    // always the exact ones, and only the token-by-token check finds the better token.
    Prop.forAll mixedProblems (fun p ->
        let r = agreesWithReference p
        // With E <= 4 the label budget adds at most 8 bits to the scores' width: Int128 for widths up to 100 (every plain
        // generator: grids 0.25 and 1e-6 in [0, 1]), BigInteger beyond 124 (any cell moved far from the others).
        let width = ExactScores(p.S).Bits

        if width <= 100 then
            Assert.That(r.WideFinish, Is.False, $"width {width}")

        if width > 124 then
            Assert.That(r.WideFinish, Is.True, $"width {width}"))

let ``scores 2^-1000 beside 1 force the BigInteger finish and stay exact`` () =
    // Four tokens, two experts, k = 1, C = 2. Tokens 0, 2 and 3 prefer expert 1, by 2^-52, 2^-999 and 2^-1000; only two
    // fit, so token 3 (the smallest loss) goes to expert 0, as token 1 does (it prefers 0 by 2^-1000). Deciding this
    // needs integers of about 1050 bits.
    let tiny = Math.ScaleB(1.0, -1000)

    let p =
        {
            N = 4
            E = 2
            K = 1
            C = 2
            S = [| 1.0; 1.0 + Math.ScaleB(1.0, -52); tiny; 0.0; 0.0; tiny + tiny; 0.0; tiny |]
        }

    let r = agreesWithReference p
    Assert.That(r.WideFinish, Is.True)
    Assert.That(r.Experts, eq [| 1; 0; 1; 0 |])

let ``the exact check moves the token whose move costs least by 2^-61`` () =
    // k = 1, E = 2, C = 2, three tokens all preferring expert 0: one must move to expert 1, and the cheapest move is the
    // token [1 + 2^-52, 2^-60] (it loses 1 + 2^-52 - 2^-60 exactly; the others lose 1 + 2^-52 and 1 + 2^-52 - 2^-61). All
    // three losses round to the same double, so rounded keys tie and only exact arithmetic picks the right token; the
    // totals differ by 2^-61, below the objective's ulp, so the test looks at the routing. Every row order is tried, so
    // a solver whose phases 1-2 break the rounded tie by index meets the wrong token in at least one order.
    let one = 1.0 + Math.ScaleB(1.0, -52)
    let rows = [ [| one; 0.0 |]; [| one; Math.ScaleB(1.0, -60) |]; [| one; Math.ScaleB(1.0, -61) |] ]

    let rec permutations xs =
        match xs with
        | [] -> [ [] ]
        | _ ->
            [
                for x in xs do
                    for rest in permutations (List.filter ((<>) x) xs) do
                        yield x :: rest
            ]

    for order in permutations [ 0; 1; 2 ] do
        let p = { N = 3; E = 2; K = 1; C = 2; S = order |> List.map (fun r -> rows.[r]) |> Array.concat }
        let r = agreesWithReference p
        let expected = order |> List.map (fun row -> if row = 1 then 1 else 0) |> Array.ofList
        Assert.That(r.Experts, eq expected, $"row order {order}")

// ---- work bounds: how many shortest-path augmentations phase 1 leaves (counts, not timings) ---------------------------

/// The solver's routing on an instance, certified optimal by the independent price checker.
let private certified (s: double[]) n e k c =
    let r = MaxScoreSolver.Solve(s, n, e, k, c)
    assertCertified { N = n; E = e; K = k; C = c; S = s } r
    r

let ``short of capacity with scores on a grid, ties do not leave most tokens to shortest paths`` () =
    // 4096/64/8, C = 0.6 of the fair share, skewed softmax scores rounded to 1/8 (most are 0: ties everywhere, between
    // real experts and the stand-ins for empty slots too). A tied token once preferred the stand-ins' large room and left
    // priced real experts short: about 15000 augmentations (20 s at 16384/64/8). Now about 1900.
    let size = Reference.Harness.Bench.BenchSize(4096, 64, 8)

    let s =
        Reference.Harness.Bench.MaxScoreBench.Instance(size, 1)
        |> Array.map (fun v -> Math.Round(v * 8.0) / 8.0)

    let r = certified s 4096 64 8 308
    Assert.That(r.Load, eq (Array.create 64 308))
    Assert.That(r.Augmentations, Is.LessThanOrEqualTo 4096)

let ``many tokens on few experts, phase 1 runs until shortest paths are cheap`` () =
    // 20000/8/2 at capacity factor 1: an augmentation may rescan an expert's 5000 holders, so phase 1 must not stop at the
    // excess that suits E = 64 (4 m / E = 10000 tokens once, about 2 s at 100000/8/2). Now about 130.
    let size = Reference.Harness.Bench.BenchSize(20000, 8, 2)
    let s = Reference.Harness.Bench.MaxScoreBench.Instance(size, 1)
    let r = certified s 20000 8 2 size.Capacity
    Assert.That(r.Augmentations, Is.LessThanOrEqualTo 1000)

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "routing/maxscore"
        "MaxScoreSolverProperties"
        [
            Proofs.prop
                [ "maxscore.fast-solver-optimal" ]
                "fast solver reaches the brute-force optimum"
                ``fast solver reaches the brute-force optimum``
            Proofs.prop
                [ "maxscore.fast-solver-certificate" ]
                "fast solver prices certify its routing"
                ``fast solver prices certify its routing``
            Proofs.prop
                [ "maxscore.fast-solver-optimal" ]
                "fast solver is certified optimal on wide problems"
                ``fast solver is certified optimal on wide problems``
            Proofs.prop
                [ "maxscore.fast-solver-short" ]
                "fast solver short of capacity fills every expert and reaches the reference optimum"
                ``fast solver short of capacity fills every expert and reaches the reference optimum``
            Proofs.prop
                [ "maxscore.fast-solver-ranking" ]
                "row ranking by counting equals insertion and a stable sort"
                ``row ranking by counting equals insertion and a stable sort``
            Proofs.prop
                [ "maxscore.fast-solver-exact-arithmetic" ]
                "exact scores agree with the dyadic scale in Int128 and BigInteger"
                ``exact scores agree with the dyadic scale in Int128 and BigInteger``
            Proofs.prop
                [ "maxscore.fast-solver-exact-arithmetic" ]
                "Bellman-Ford gives the same cycle or potentials in Int128 and BigInteger"
                ``Bellman-Ford gives the same cycle or potentials in Int128 and BigInteger``
            Proofs.prop
                [ "maxscore.fast-solver-objective" ]
                "fast solver reports the reference's objective bit for bit, widening to BigInteger for extreme scores"
                ``fast solver reports the reference's objective bit for bit, widening to BigInteger for extreme scores``
            Proofs.test
                [ "maxscore.fast-solver-objective" ]
                "scores 2^-1000 beside 1 force the BigInteger finish and stay exact"
                ``scores 2^-1000 beside 1 force the BigInteger finish and stay exact``
            Proofs.test
                [ "maxscore.fast-solver-optimal" ]
                "the exact check moves the token whose move costs least by 2^-61"
                ``the exact check moves the token whose move costs least by 2^-61``
            Proofs.test
                []
                "short of capacity with scores on a grid, ties do not leave most tokens to shortest paths"
                ``short of capacity with scores on a grid, ties do not leave most tokens to shortest paths``
            Proofs.test
                []
                "many tokens on few experts, phase 1 runs until shortest paths are cheap"
                ``many tokens on few experts, phase 1 runs until shortest paths are cheap``
        ]
