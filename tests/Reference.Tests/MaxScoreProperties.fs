/// The MaxScore reference (all capacity regimes), its certificate checker, the two-stage heuristic, the Hungarian method
/// and the gate schedule; theorems in proofs/maxscore.md.
module Reference.Tests.MaxScoreProperties

open System
open FsCheck
open FsCheck.FSharp
open NUnit.Framework
open Reference.Routing
open Reference.Transport
open Reference.Harness.Algorithms
open Reference.Tests.Proofs

/// A tiny MaxScore problem: any capacity 0..N+1 (so C*E below, equal to and above k*N all occur), scores on a dyadic grid
/// (exact sums, many ties) or on a fine decimal grid.
type Problem = { S: double[,]; K: int; C: int }

let private options (p: Problem) = MaxScoreOptions(K = p.K, Capacity = Nullable p.C)

let private problemGen (maxCells: int) (grid: bool option) =
    gen {
        let! e = Gen.choose (1, 4)
        let! k = Gen.choose (1, e)
        let maxN = max 1 (maxCells / e)
        let! n = Gen.choose (1, maxN)
        let! c = Gen.choose (0, n + 1)

        let! dyadic =
            match grid with
            | Some g -> Gen.constant g
            | None -> Gen.elements [ true; false ]

        let cell =
            if dyadic then
                Gen.choose (-2, 4) |> Gen.map (fun v -> float v * 0.25)
            else
                Gen.choose (0, 1_000_000) |> Gen.map (fun v -> float v * 1e-6)

        let! s = Gen.array2DOfDim n e cell
        return { S = s; K = k; C = c }
    }

let problem maxCells = problemGen maxCells None |> Arb.fromGen

/// Every feasible routing (a subset of at most k experts per token, loads at most C), as membership masks, by brute force.
let private routings (p: Problem) =
    let n, e = Array2D.length1 p.S, Array2D.length2 p.S

    let subsets =
        [
            for mask in 0 .. (1 <<< e) - 1 do
                if Numerics.BitOperations.PopCount(uint32 mask) <= p.K then
                    yield mask
        ]

    let load = Array.zeroCreate e
    let masks = Array.zeroCreate n
    let found = Collections.Generic.List<int[]>()

    let rec go i =
        if i = n then
            found.Add(Array.copy masks)
        else
            for mask in subsets do
                if [ 0 .. e - 1 ] |> List.forall (fun x -> mask &&& (1 <<< x) = 0 || load.[x] < p.C) then
                    for x in 0 .. e - 1 do
                        if mask &&& (1 <<< x) <> 0 then
                            load.[x] <- load.[x] + 1

                    masks.[i] <- mask
                    go (i + 1)

                    for x in 0 .. e - 1 do
                        if mask &&& (1 <<< x) <> 0 then
                            load.[x] <- load.[x] - 1

    go 0
    found

let private flowOf (masks: int[]) = masks |> Array.sumBy (fun m -> Numerics.BitOperations.PopCount(uint32 m))

let private scoreOf (p: Problem) (masks: int[]) =
    let e = Array2D.length2 p.S

    masks
    |> Array.mapi (fun i m ->
        [
            for x in 0 .. e - 1 do
                if m &&& (1 <<< x) <> 0 then
                    yield p.S.[i, x]
        ]
        |> List.sum)
    |> Array.sum

/// The masks as an experts array [N, k] (ascending expert index, -1 padding).
let private expertsOf (p: Problem) (masks: int[]) =
    let e = Array2D.length2 p.S

    Array2D.init masks.Length p.K (fun i j ->
        let xs =
            [
                for x in 0 .. e - 1 do
                    if masks.[i] &&& (1 <<< x) <> 0 then
                        yield x
            ]

        if j < xs.Length then xs.[j] else -1)

let private maxFlow (p: Problem) = min (p.K * Array2D.length1 p.S) (p.C * Array2D.length2 p.S)

/// Feasibility of a reference result, checked directly: distinct experts, descending score, -1 only as padding, loads
/// consistent and at most C, and the flow is the maximum.
let private assertFeasible (p: Problem) (r: MaxScoreResult) =
    let n, e = Array2D.length1 p.S, Array2D.length2 p.S
    let load = Array.zeroCreate e
    let mutable flow = 0

    for i in 0 .. n - 1 do
        let row = [ for j in 0 .. p.K - 1 -> r.Experts.[i, j] ]
        let real = row |> List.filter (fun x -> x >= 0)
        Assert.That(row, eq (real @ List.replicate (p.K - real.Length) -1), $"token {i}: -1 only after the experts")
        Assert.That(real |> List.distinct |> List.length, eq real.Length, $"token {i}: distinct")

        for a, b in List.pairwise real do
            Assert.That(p.S.[i, a] > p.S.[i, b] || (p.S.[i, a] = p.S.[i, b] && a < b), $"token {i}: order")

        for x in real do
            load.[x] <- load.[x] + 1

        flow <- flow + real.Length

    Assert.That(r.Load, eq load)
    Assert.That(load |> Array.forall (fun l -> l <= p.C))
    Assert.That(flow, eq (maxFlow p))

// ---- the reference ---------------------------------------------------------------------------------------------------

let ``reference reaches the brute-force optimum in every capacity regime`` () =
    Prop.forAll (problem 12) (fun p ->
        let r = MaxScore.Route(p.S, options p)
        assertFeasible p r
        let f = maxFlow p
        let best = routings p |> Seq.filter (fun m -> flowOf m = f) |> Seq.map (scoreOf p) |> Seq.max
        Assert.That(r.Objective, Is.EqualTo(best).Within(1e-9)))

let ``maximum flow comes first even when scores are negative`` () =
    // With every score negative, routing fewer tokens would score more; the reference must still route the maximum flow.
    Prop.forAll (problem 12) (fun p ->
        let negative = p.S |> Array2D.map (fun v -> -1.0 - abs v)
        let r = MaxScore.Route(negative, options p)
        assertFeasible { p with S = negative } r)

let ``maximum flow comes first even when a smaller flow scores more`` () =
    // Non-negative scores, k = 2, C*E = k*N: leaving token 0 with one expert would score 5, but the maximum flow scores 4.
    let p = { S = array2D [ [ 1.0; 0.0; 0.0 ]; [ 0.0; 1.0; 1.0 ]; [ 0.0; 1.0; 1.0 ] ]; K = 2; C = 2 }
    let all = routings p
    let bestAny = all |> Seq.map (scoreOf p) |> Seq.max
    let bestMax = all |> Seq.filter (fun m -> flowOf m = maxFlow p) |> Seq.map (scoreOf p) |> Seq.max
    Assert.That(bestAny, Is.GreaterThan bestMax)
    let r = MaxScore.Route(p.S, options p)
    assertFeasible p r
    Assert.That(r.Objective, eq bestMax)

let ``reference objective equals the fast solver's`` () =
    let arb =
        gen {
            let! p = problemGen 40 None
            let n, e = Array2D.length1 p.S, Array2D.length2 p.S
            return { p with C = max p.C ((n * p.K + e - 1) / e) } // C*E >= k*N, the fast solver's case
        }
        |> Arb.fromGen

    Prop.forAll arb (fun p ->
        let n, e = Array2D.length1 p.S, Array2D.length2 p.S
        let r = MaxScore.Route(p.S, options p)
        let fast = Reference.Kernels.Routing.MaxScoreSolver.Solve(Generators.flatten p.S, n, e, p.K, p.C)
        Assert.That(fast.Objective, Is.EqualTo(r.Objective).Within(1e-9 * (1.0 + abs r.Objective)))
        // The checker proves both routings optimal exactly.
        let fastExperts = Array2D.init n p.K (fun i j -> fast.Experts.[i * p.K + j])
        Assert.That(MaxScoreCertificate.Check(p.S, p.K, p.C, fastExperts).Optimal, "fast routing not certified")
        Assert.That(MaxScoreCertificate.Check(p.S, p.K, p.C, r.Experts).Optimal, "reference routing not certified"))

let ``reference prices certify its routing exactly on dyadic scores`` () =
    Prop.forAll (problemGen 30 (Some true) |> Arb.fromGen) (fun p ->
        let r = MaxScore.Route(p.S, options p)
        let check = MaxScoreCertificate.Check(p.S, p.K, p.C, r.Experts, r.Prices)
        Assert.That(check.Optimal, check.Describe())
        // On a dyadic grid the exact prices are doubles, so the given prices must certify with a gap of exactly 0.
        Assert.That(check.GivenPrices.Exact, check.Describe())
        Assert.That(check.GivenPrices.Gap, eq 0.0))

let ``reference prices certify its routing up to rounding on any scores`` () =
    Prop.forAll (problem 30) (fun p ->
        let r = MaxScore.Route(p.S, options p)
        let check = MaxScoreCertificate.Check(p.S, p.K, p.C, r.Experts, r.Prices)
        Assert.That(check.Optimal, check.Describe())
        Assert.That(check.GivenPrices.Problem, Is.Null)
        Assert.That(check.GivenPrices.Gap, Is.InRange(0.0, 1e-12 * (1.0 + float p.S.Length)), check.Describe())

        for x in 0 .. Array2D.length2 p.S - 1 do
            Assert.That(r.Prices.[x], Is.GreaterThanOrEqualTo 0.0)

            if r.Load.[x] < p.C then
                Assert.That(r.Prices.[x], eq 0.0, $"expert {x} below capacity has a price"))

// ---- the certificate checker -----------------------------------------------------------------------------------------

let ``checker accepts exactly the optimal routings among all maximum flows`` () =
    // Tiny dyadic problems: enumerate every maximum-flow routing; the checker proves optimal exactly those of best score.
    Prop.forAll (problemGen 8 (Some true) |> Arb.fromGen) (fun p ->
        let f = maxFlow p
        let candidates = routings p |> Seq.filter (fun m -> flowOf m = f) |> Seq.toList
        let best = candidates |> List.map (scoreOf p) |> List.max

        for masks in candidates do
            let check = MaxScoreCertificate.Check(p.S, p.K, p.C, expertsOf p masks)
            Assert.That(check.Feasible, check.Describe())
            let optimal = scoreOf p masks = best
            Assert.That(check.Optimal, eq optimal, check.Describe())

            if not optimal then
                Assert.That(check.Improvement, Is.GreaterThan(0.0).And.LessThanOrEqualTo(best - scoreOf p masks)))

/// Scores across many binary orders: ordinary values beside offsets 2^-70 and 2^-1000 below them, so that differences of
/// scores round in double (1 - 2^-70 and 1 - 2 * 2^-70 are both 1.0) while their exact values still decide optimality.
let private wideRangeGen =
    gen {
        let! e = Gen.choose (2, 4)
        let! k = Gen.choose (1, e)
        let! n = Gen.choose (2, 12 / e)
        let! c = Gen.choose (0, n + 1)
        let tiny q = Gen.choose (1, 3) |> Gen.map (fun j -> float j * Math.ScaleB(1.0, q))

        let any =
            Gen.oneof
                [
                    Gen.elements [ 0.0; 0.5; 1.0; 2.0 ]
                    tiny -70
                    tiny -1000
                    Gen.choose (1, 3) |> Gen.map (fun j -> 1.0 - float j * Math.ScaleB(1.0, -52))
                ]
        // Mostly one level per column (1 or a multiple of 2^-70), so that many keys S_ia - S_ib round alike.
        let! levels = Gen.arrayOfLength e (Gen.elements [ true; false ])
        let cell x = Gen.frequency [ 4, (if levels.[x] then Gen.constant 1.0 else tiny -70); 1, any ]
        let! columns = Gen.sequenceToArray [ for x in 0 .. e - 1 -> Gen.arrayOfLength n (cell x) ]
        return { S = Array2D.init n e (fun i x -> columns.[x].[i]); K = k; C = c }
    }
    |> Arb.fromGen

let ``checker decides optimality exactly when score differences round in double`` () =
    // Every maximum-flow routing of a tiny wide-range problem, judged against its exact total: the checker (which screens
    // candidates in doubles) proves optimal exactly the routings of the largest exact total, and its certifying prices pass
    // its own exact price test (it throws otherwise).
    Prop.forAll wideRangeGen (fun p ->
        let e = Array2D.length2 p.S
        let scale = Reference.Numerics.DyadicScale(Seq.cast<double> p.S) // exact integers at one scale

        let total (masks: int[]) =
            Seq.sum
                [
                    for i in 0 .. masks.Length - 1 do
                        for x in 0 .. e - 1 do
                            if masks.[i] &&& (1 <<< x) <> 0 then
                                yield scale.Of p.S.[i, x]
                ]

        let f = maxFlow p
        let candidates = routings p |> Seq.filter (fun m -> flowOf m = f) |> Seq.toList
        let best = candidates |> List.map total |> List.max

        for masks in candidates do
            let check = MaxScoreCertificate.Check(p.S, p.K, p.C, expertsOf p masks)
            Assert.That(check.Feasible, check.Describe())
            Assert.That(check.Optimal, eq (total masks = best), check.Describe())

            if check.Optimal then
                // Its own prices, rounded to double, still pass as an (up to rounding) certificate.
                let again = MaxScoreCertificate.Check(p.S, p.K, p.C, expertsOf p masks, check.Prices)
                Assert.That(again.GivenPrices.Gap, Is.GreaterThanOrEqualTo 0.0, again.Describe()))

let ``checker rejects infeasible routings`` () =
    Prop.forAll (problem 30) (fun p ->
        let n, e = Array2D.length1 p.S, Array2D.length2 p.S
        let r = MaxScore.Route(p.S, options p)
        let broken = Collections.Generic.List<int[,]>()

        let edit f =
            let x = Array2D.copy r.Experts in
            f x
            broken.Add x
        // An index out of range, an expert twice, a dropped expert (no longer a maximum flow), an overfull expert.
        edit (fun x -> x.[0, 0] <- e)

        if p.K >= 2 && r.Experts.[0, 0] >= 0 then
            edit (fun x -> x.[0, 1] <- x.[0, 0])

        if r.Experts.[0, 0] >= 0 then
            edit (fun x -> x.[0, 0] <- -1)

        let full = [ 0 .. e - 1 ] |> List.tryFind (fun x -> r.Load.[x] = p.C && p.C > 0)

        match full with
        | Some x ->
            // Give expert x to a token that does not hold it, in a slot that holds another expert or padding.
            match
                [ 0 .. n - 1 ]
                |> List.tryFind (fun i -> not ([ 0 .. p.K - 1 ] |> List.exists (fun j -> r.Experts.[i, j] = x)))
            with
            | Some i -> edit (fun a -> a.[i, p.K - 1] <- x)
            | None -> ()
        | None -> ()

        for candidate in broken do
            let check = MaxScoreCertificate.Check(p.S, p.K, p.C, candidate)
            Assert.That(check.Feasible, eq false, check.Describe())
            Assert.That(check.Optimal, eq false))

/// One ulp of 1.0: scores 1 + a u differ by whole steps of u, far below any relative objective tolerance.
let private ulp = Math.Pow(2.0, -52)

/// A routing R (the reference's answer to random scores, so ties and every capacity regime occur) with k < E, C >= 1, N >= 2.
let private ulpProblem =
    gen {
        let! e = Gen.choose (2, 5)
        let! k = Gen.choose (1, e - 1)
        let! n = Gen.choose (2, 9)
        let! c = Gen.choose (1, n)
        let! a = Gen.array2DOfDim n e (Gen.choose (0, 3))
        let! b = Gen.array2DOfDim n e (Gen.choose (0, 3))
        return { S = a |> Array2D.map (fun v -> float v); K = k; C = c }, a, b
    }
    |> Arb.fromGen

let ``checker rejects a routing one ulp step suboptimal`` () =
    // Scores built around R: a chosen cell is 1 + (1 + b) u, an unchosen one 1 - a u, so R is the unique optimum (every
    // other maximum flow trades chosen cells for lower unchosen ones). Then one feasible move is made to lose exactly one
    // step u by setting its cells: a token moves to an expert with room, or a slot moves to a token below k, or (when
    // C E = k N leaves neither) two tokens exchange experts. The checker must prove R optimal and reject the moved routing
    // with an improvement of exactly u.
    Prop.forAll ulpProblem (fun (p, a, b) ->
        let n, e = Array2D.length1 p.S, Array2D.length2 p.S
        let r = MaxScore.Route(p.S, options p)
        let chosen i x = [ 0 .. p.K - 1 ] |> List.exists (fun j -> r.Experts.[i, j] = x)
        let count i = [ 0 .. p.K - 1 ] |> List.filter (fun j -> r.Experts.[i, j] >= 0) |> List.length

        let s =
            Array2D.init n e (fun i x ->
                if chosen i x then
                    1.0 + float (1 + b.[i, x]) * ulp
                else
                    1.0 - float a.[i, x] * ulp)

        let member' = Array2D.init n e chosen

        let room =
            [
                for i in 0 .. n - 1 do
                    for x in 0 .. e - 1 do
                        for y in 0 .. e - 1 do
                            if chosen i x && not (chosen i y) && r.Load.[y] < p.C then
                                yield i, x, y
            ]

        let slotMove =
            [
                for i in 0 .. n - 1 do
                    for j in 0 .. n - 1 do
                        for x in 0 .. e - 1 do
                            if i <> j && chosen j x && not (chosen i x) && count i < p.K then
                                yield i, j, x
            ]

        let exchange =
            [
                for i in 0 .. n - 1 do
                    for j in i + 1 .. n - 1 do
                        for x in 0 .. e - 1 do
                            for y in 0 .. e - 1 do
                                if chosen i x && not (chosen j x) && chosen j y && not (chosen i y) then
                                    yield i, j, x, y
            ]

        match room, slotMove, exchange with
        | (i, x, y) :: _, _, _ ->
            s.[i, x] <- 1.0 + ulp
            s.[i, y] <- 1.0
            member'.[i, x] <- false
            member'.[i, y] <- true
        | [], (i, j, x) :: _, _ ->
            s.[j, x] <- 1.0 + ulp
            s.[i, x] <- 1.0
            member'.[j, x] <- false
            member'.[i, x] <- true
        | [], [], (i, j, x, y) :: _ ->
            // R stays the unique optimum: the one raised unchosen cell (i, y) could only pay off together with a move into
            // a full expert, which C E = k N forbids.
            s.[i, x] <- 1.0 + ulp
            s.[j, y] <- 1.0 + ulp
            s.[i, y] <- 1.0 + ulp
            s.[j, x] <- 1.0
            member'.[i, x] <- false
            member'.[i, y] <- true
            member'.[j, y] <- false
            member'.[j, x] <- true
        | _ -> Assert.Fail "no feasible move exists"

        let worse =
            Array2D.init n p.K (fun i j ->
                let xs =
                    [
                        for x in 0 .. e - 1 do
                            if member'.[i, x] then
                                yield x
                    ]

                if j < xs.Length then xs.[j] else -1)

        let original = MaxScoreCertificate.Check(s, p.K, p.C, r.Experts)
        Assert.That(original.Optimal, original.Describe())
        let check = MaxScoreCertificate.Check(s, p.K, p.C, worse)
        Assert.That(check.Feasible, check.Describe())
        Assert.That(check.Optimal, eq false, check.Describe())
        Assert.That(check.Improvement, eq ulp, check.Describe())
        // The objective tolerance alone could not tell: the loss is far below 1e-9 relative.
        Assert.That(abs (check.Objective - original.Objective), Is.LessThan(1e-9 * abs original.Objective)))

let ``wrong prices leave a positive gap or a sign violation`` () =
    Prop.forAll (problemGen 30 (Some true) |> Arb.fromGen) (fun p ->
        let e = Array2D.length2 p.S
        let r = MaxScore.Route(p.S, options p)
        let everyTokenFull = p.C * e >= p.K * Array2D.length1 p.S
        // Raising the price of an expert below capacity charges lambda_e (C - load_e) > 0 to the dual bound.
        match [ 0 .. e - 1 ] |> List.tryFind (fun x -> r.Load.[x] < p.C) with
        | Some x when everyTokenFull ->
            let prices = Array.copy r.Prices
            prices.[x] <- prices.[x] + 0.5
            let check = MaxScoreCertificate.Check(p.S, p.K, p.C, r.Experts, prices)
            Assert.That(check.GivenPrices.Exact, eq false)
            Assert.That(check.GivenPrices.Gap, Is.GreaterThanOrEqualTo(0.5 * float (p.C - r.Load.[x])))
        | _ -> ()

        if everyTokenFull then
            let prices = Array.copy r.Prices
            prices.[0] <- -0.25
            let check = MaxScoreCertificate.Check(p.S, p.K, p.C, r.Experts, prices)
            Assert.That(check.GivenPrices.Exact, eq false)
            Assert.That(check.GivenPrices.Problem, Does.Contain "prices[0] < 0"))

// ---- the two-stage heuristic -----------------------------------------------------------------------------------------

/// A two-stage problem: k = 2, C*E = 2N (E divides 2N), scores on a dyadic grid (ties) or continuous.
let twoStageProblem =
    gen {
        let! e = Gen.choose (2, 5)
        let! c = Gen.choose (1, 4)
        // N = C*E/2 must be an integer: make C*E even.
        let c = if c * e % 2 = 1 then c + 1 else c
        let n = c * e / 2
        let! dyadic = Gen.elements [ true; false ]

        let cell =
            if dyadic then
                Gen.choose (0, 4) |> Gen.map (fun v -> float v * 0.25)
            else
                Gen.choose (0, 1_000_000) |> Gen.map (fun v -> float v * 1e-6)

        let! s = Gen.array2DOfDim n e cell
        return { S = s; K = 2; C = c }
    }
    |> Arb.fromGen

/// All permutations of 0..n-1.
let rec private permutations (items: int list) =
    match items with
    | [] -> [ [] ]
    | _ ->
        [
            for x in items do
                for rest in permutations (List.filter ((<>) x) items) -> x :: rest
        ]

let ``two-stage follows its two stages, is feasible, and without repeats scores at most the exact optimum`` () =
    Prop.forAll twoStageProblem (fun p ->
        let n, e = Array2D.length1 p.S, Array2D.length2 p.S
        let r = MaxScoreTwoStage.Route(p.S, options p)
        // Stage 1, recomputed: tokens in order take the best expert with room, ties to the lower index.
        let load = Array.zeroCreate e

        for i in 0 .. n - 1 do
            let open' = [ 0 .. e - 1 ] |> List.filter (fun x -> load.[x] < p.C)
            let best = open' |> List.maxBy (fun x -> p.S.[i, x], -x)
            Assert.That(r.Experts.[i, 0], eq best, $"token {i}: stage 1")
            load.[best] <- load.[best] + 1
        // Feasible: every token has two slots, every expert exactly C slots.
        let slots = Array.zeroCreate e

        for i in 0 .. n - 1 do
            for j in 0..1 do
                slots.[r.Experts.[i, j]] <- slots.[r.Experts.[i, j]] + 1

        Assert.That(r.Load, eq slots)
        Assert.That(slots |> Array.forall ((=) p.C))
        // The repeat count, counted independently from the rows.
        let repeated =
            [ 0 .. n - 1 ] |> List.filter (fun i -> r.Experts.[i, 0] = r.Experts.[i, 1]) |> List.length

        Assert.That(r.Repeated, eq repeated)
        // Objective: distinct pairs count once.
        let objective =
            [
                for i in 0 .. n - 1 ->
                    p.S.[i, r.Experts.[i, 0]]
                    + (if r.Experts.[i, 1] = r.Experts.[i, 0] then
                           0.0
                       else
                           p.S.[i, r.Experts.[i, 1]])
            ]
            |> List.sum

        Assert.That(r.Objective, Is.EqualTo(objective).Within(1e-12))
        // Stage 2 is a maximum-weight matching of the leftover slots (brute force over permutations when N is small).
        if n <= 6 then
            let slotExpert =
                [
                    for x in 0 .. e - 1 do
                        for _ in load.[x] .. p.C - 1 -> x
                ]
                |> Array.ofList

            let weight i t =
                if slotExpert.[t] = r.Experts.[i, 0] then
                    0.0
                else
                    p.S.[i, slotExpert.[t]]

            let best =
                permutations [ 0 .. n - 1 ]
                |> List.map (fun perm -> perm |> List.mapi weight |> List.sum)
                |> List.max

            Assert.That(r.MatchingWeight, Is.EqualTo(best).Within(1e-12))
        // Without repeats the routing is feasible for the exact problem, so it cannot beat the exact optimum.
        if repeated = 0 then
            let exact = MaxScore.Route(p.S, options p)
            Assert.That(r.Objective, Is.LessThanOrEqualTo(exact.Objective + 1e-12)))

let ``with repeats two-stage can score above the exact optimum`` () =
    // The counterexample of proofs/maxscore.md: token 0 keeps expert 0 twice, tokens 1 and 2 take experts 1 and 2 twice
    // between them; the exact problem must give token 0 a second distinct expert.
    let s = array2D [ [ 1.0; 0.0; 0.0 ]; [ 0.0; 1.0; 1.0 ]; [ 0.0; 1.0; 1.0 ] ]
    let o = MaxScoreOptions(K = 2, Capacity = Nullable 2)
    let r = MaxScoreTwoStage.Route(s, o)
    let exact = MaxScore.Route(s, o)
    Assert.That(r.Repeated, eq 1)
    Assert.That(r.Experts.[0, 0], eq r.Experts.[0, 1])
    Assert.That(r.Objective, Is.GreaterThan exact.Objective)
    // The exact optimum, by brute force over every maximum flow.
    let p = { S = s; K = 2; C = 2 }
    let best = routings p |> Seq.filter (fun m -> flowOf m = maxFlow p) |> Seq.map (scoreOf p) |> Seq.max
    Assert.That(exact.Objective, eq best)

let ``two-stage rejects k other than 2 and C*E other than 2N`` () =
    let s = Array2D.create 4 2 0.5

    throws<ArgumentOutOfRangeException> (fun () -> MaxScoreTwoStage.Route(s, MaxScoreOptions(K = 1, Capacity = Nullable 4)) |> ignore)
    |> ignore

    throws<ArgumentException> (fun () -> MaxScoreTwoStage.Route(s, MaxScoreOptions(K = 2, Capacity = Nullable 3)) |> ignore)
    |> ignore

// ---- the Hungarian method --------------------------------------------------------------------------------------------

let ``linear sum assignment equals brute force on rectangular matrices`` () =
    let arb =
        gen {
            let! r = Gen.choose (1, 5)
            let! c = Gen.choose (1, 5)
            let! maximize = Gen.elements [ true; false ]
            let! a = Gen.array2DOfDim r c (Gen.choose (-8, 8) |> Gen.map (fun v -> float v * 0.5))
            return a, maximize
        }
        |> Arb.fromGen

    Prop.forAll arb (fun (a, maximize) ->
        let r, c = Array2D.length1 a, Array2D.length2 a
        let result = LinearSumAssignment.Solve(a, maximize)
        let m = min r c
        Assert.That(result.Rows.Length, eq m)
        Assert.That(result.Rows, eq (Array.sort result.Rows))
        Assert.That(result.Rows |> Array.distinct |> Array.length, eq m)
        Assert.That(result.Columns |> Array.distinct |> Array.length, eq m)
        Assert.That(result.Total, eq (Array.map2 (fun i j -> a.[i, j]) result.Rows result.Columns |> Array.sum))
        // Brute force: every injective map from the smaller side into the larger.
        let small, large, at =
            if r <= c then
                r, c, (fun i j -> a.[i, j])
            else
                c, r, (fun i j -> a.[j, i])

        let rec best i (used: Set<int>) =
            if i = small then
                0.0
            else
                [
                    for j in 0 .. large - 1 do
                        if not (used.Contains j) then
                            yield at i j + best (i + 1) (used.Add j)
                ]
                |> if maximize then List.max else List.min

        Assert.That(result.Total, eq (best 0 Set.empty)))

// ---- the gate schedule -----------------------------------------------------------------------------------------------

let ``gate temperature falls linearly from 4 to 1 and stays there`` () =
    Prop.forAll (Gen.choose (0, 100_000) |> Gen.two |> Arb.fromGen) (fun (a, b) ->
        let lo, hi = float (min a b), float (max a b)
        let t = MaxScoreGateSchedule.Temperature lo
        Assert.That(t, Is.InRange(1.0, 4.0))
        Assert.That(MaxScoreGateSchedule.Temperature hi, Is.LessThanOrEqualTo t)

        if lo >= 30000.0 then
            Assert.That(t, eq 1.0)
        else
            Assert.That(t, Is.EqualTo(4.0 - 3.0 * lo / 30000.0).Within(1e-15))

        Assert.That(MaxScoreGateSchedule.SecondExpertWeight(0.5, lo), eq (0.5 * t)))

let ``gate temperature at the released schedule's landmarks`` () =
    Assert.That(MaxScoreGateSchedule.Temperature 0.0, eq 4.0)
    Assert.That(MaxScoreGateSchedule.Temperature 15000.0, eq 2.5)
    Assert.That(MaxScoreGateSchedule.Temperature 30000.0, eq 1.0)
    Assert.That(MaxScoreGateSchedule.Temperature 1e9, eq 1.0)
    Assert.That(MaxScoreGateSchedule.Temperature(100.0, 200.0), eq 2.5)
    throws<ArgumentException> (fun () -> MaxScoreGateSchedule.Temperature -1.0 |> ignore) |> ignore
    throws<ArgumentException> (fun () -> MaxScoreGateSchedule.Temperature(1.0, 0.0) |> ignore) |> ignore

// ---- bad input ---------------------------------------------------------------------------------------------------------

let ``reference rejects non-finite scores, bad k and negative capacity`` () =
    let s = Array2D.create 3 2 0.5
    s.[1, 1] <- nan
    let ex = throws<ArgumentException> (fun () -> MaxScore.Route(s, MaxScoreOptions()) |> ignore)
    Assert.That(ex.Message, Does.Contain "scores[1, 1] is NaN")
    let ok = Array2D.create 3 2 0.5

    throws<ArgumentOutOfRangeException> (fun () -> MaxScore.Route(ok, MaxScoreOptions(K = 3)) |> ignore)
    |> ignore

    throws<ArgumentOutOfRangeException> (fun () -> MaxScore.Route(ok, MaxScoreOptions(Capacity = Nullable -1)) |> ignore)
    |> ignore

let ``capacity defaults to ceil(cf N k / E)`` () =
    Assert.That(MaxScore.CapacityFor(7, 3, MaxScoreOptions(K = 2)), eq 5)
    Assert.That(MaxScore.CapacityFor(7, 3, MaxScoreOptions(K = 2, CapacityFactor = 0.5)), eq 3)
    Assert.That(MaxScore.CapacityFor(7, 3, MaxScoreOptions(K = 2, Capacity = Nullable 1)), eq 1)

let ``rounded costs are repaired exactly`` () =
    // Scores spanning 2^0 .. 2^-200 cannot be exact int64 costs; the exact finish must still find the optimum, which the
    // independent checker then proves.
    let rng = Random 3

    for _ in 1..20 do
        let n, e = 6, 3
        let s = Array2D.init n e (fun _ _ -> Math.ScaleB(float (rng.Next(1, 8)), -rng.Next(0, 200)))

        for k, c in [ 1, 2; 2, 4; 2, 3 ] do
            let r = MaxScore.Route(s, MaxScoreOptions(K = k, Capacity = Nullable c))
            Assert.That(r.ExactCosts, eq false)
            let check = MaxScoreCertificate.Check(s, k, c, r.Experts, r.Prices)
            Assert.That(check.Optimal, check.Describe())
            Assert.That(check.GivenPrices.Problem, Is.Null)

// ---- exact arithmetic on doubles ---------------------------------------------------------------------------------------

/// Finite doubles of every kind: random bit patterns (all binades, subnormals included), small integers, and zeros.
let private anyDouble =
    Gen.oneof
        [
            Gen.choose (Int32.MinValue, Int32.MaxValue)
            |> Gen.two
            |> Gen.map (fun (hi, lo) -> BitConverter.Int64BitsToDouble((int64 hi <<< 32) ||| (int64 (uint32 lo))))
            |> Gen.filter Double.IsFinite
            Gen.choose (-1000, 1000) |> Gen.map float
            Gen.choose (1, 1 <<< 20) |> Gen.map (fun m -> Math.ScaleB(float m, -1074))
            Gen.constant 0.0
        ]

let ``exact integers round back to the correctly rounded sum`` () =
    // IEEE addition is correctly rounded, so it is the oracle for rounding an exact integer sum back to double.
    Prop.forAll (Gen.two anyDouble |> Arb.fromGen) (fun (a, b) ->
        let scale = Reference.Numerics.DyadicScale [ a; b ]
        Assert.That(scale.ToDouble(scale.Of a), eq a)
        Assert.That(scale.ToDouble(scale.Of a + scale.Of b), eq (a + b))
        Assert.That(scale.ToDouble(scale.Of a - scale.Of b), eq (a - b))
        // The checker's own arithmetic: the objective of a one-token routing over both experts.
        let check = MaxScoreCertificate.Check(array2D [ [ a; b ] ], 2, 1, array2D [ [ 0; 1 ] ])
        Assert.That(check.Objective, eq (a + b)))

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "routing/maxscore"
        "MaxScoreProperties"
        [
            Proofs.prop
                [ "maxscore.reduction" ]
                "reference reaches the brute-force optimum in every capacity regime"
                ``reference reaches the brute-force optimum in every capacity regime``
            Proofs.prop
                [ "maxscore.reduction" ]
                "maximum flow comes first even when scores are negative"
                ``maximum flow comes first even when scores are negative``
            Proofs.test
                [ "maxscore.reduction" ]
                "maximum flow comes first even when a smaller flow scores more"
                ``maximum flow comes first even when a smaller flow scores more``
            Proofs.prop
                [ "maxscore.reference-equals-fast" ]
                "reference objective equals the fast solver's"
                ``reference objective equals the fast solver's``
            Proofs.prop
                [ "maxscore.price-certificate" ]
                "reference prices certify its routing exactly on dyadic scores"
                ``reference prices certify its routing exactly on dyadic scores``
            Proofs.prop
                [ "maxscore.price-certificate" ]
                "reference prices certify its routing up to rounding on any scores"
                ``reference prices certify its routing up to rounding on any scores``
            Proofs.prop
                [ "maxscore.contracted-certificate" ]
                "checker accepts exactly the optimal routings among all maximum flows"
                ``checker accepts exactly the optimal routings among all maximum flows``
            Proofs.prop
                [ "maxscore.contracted-certificate"; "maxscore.screened-checker" ]
                "checker decides optimality exactly when score differences round in double"
                ``checker decides optimality exactly when score differences round in double``
            Proofs.prop [ "maxscore.contracted-certificate" ] "checker rejects infeasible routings" ``checker rejects infeasible routings``
            Proofs.prop
                [ "maxscore.contracted-certificate" ]
                "checker rejects a routing one ulp step suboptimal"
                ``checker rejects a routing one ulp step suboptimal``
            Proofs.prop
                [ "maxscore.price-certificate" ]
                "wrong prices leave a positive gap or a sign violation"
                ``wrong prices leave a positive gap or a sign violation``
            Proofs.prop
                [ "maxscore.two-stage" ]
                "two-stage follows its two stages, is feasible, and without repeats scores at most the exact optimum"
                ``two-stage follows its two stages, is feasible, and without repeats scores at most the exact optimum``
            Proofs.test
                [ "maxscore.two-stage" ]
                "with repeats two-stage can score above the exact optimum"
                ``with repeats two-stage can score above the exact optimum``
            Proofs.test
                []
                "two-stage rejects k other than 2 and C*E other than 2N"
                ``two-stage rejects k other than 2 and C*E other than 2N``
            Proofs.prop
                [ "maxscore.linear-sum-assignment" ]
                "linear sum assignment equals brute force on rectangular matrices"
                ``linear sum assignment equals brute force on rectangular matrices``
            Proofs.prop
                [ "maxscore.gate-schedule" ]
                "gate temperature falls linearly from 4 to 1 and stays there"
                ``gate temperature falls linearly from 4 to 1 and stays there``
            Proofs.test
                [ "maxscore.gate-schedule" ]
                "gate temperature at the released schedule's landmarks"
                ``gate temperature at the released schedule's landmarks``
            Proofs.test
                []
                "reference rejects non-finite scores, bad k and negative capacity"
                ``reference rejects non-finite scores, bad k and negative capacity``
            Proofs.test [] "capacity defaults to ceil(cf N k / E)" ``capacity defaults to ceil(cf N k / E)``
            Proofs.test [ "maxscore.reduction" ] "rounded costs are repaired exactly" ``rounded costs are repaired exactly``
            Proofs.prop
                [ "maxscore.dyadic" ]
                "exact integers round back to the correctly rounded sum"
                ``exact integers round back to the correctly rounded sum``
        ]
