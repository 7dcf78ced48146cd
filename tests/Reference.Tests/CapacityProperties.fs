/// Properties of top-k routing with expert capacity and dropping; theorems in proofs/capacity.md.
module Reference.Tests.CapacityProperties

open FsCheck
open FsCheck.FSharp
open NUnit.Framework
open Reference.Routing
open Reference.Harness.Algorithms
open Reference.Numerics
open Reference.Tests.Proofs
open Reference.Tests.Generators
open Reference.Tests.RoutingGenerators

let private dims (x: double[,]) = Array2D.length1 x, Array2D.length2 x

/// An independent model of the policy (written from proofs/capacity.md, Definition: Drop policies, with F# tuple orders): the pre-drop selection,
/// each request's priority key and dispatch key. Returns (selection, priority key, dispatch key).
let private model (x: double[,]) (o: CapacityOptions) =
    let n, _ = dims x
    let k = o.K
    let sel = TopK.Route(x, TopKOptions(K = k, Score = o.Score, Normalize = false, Bias = o.Bias)).Experts
    let p = RouterScores.Compute(x, o.Score)
    let raw i j = p.[i, sel.[i, j]]
    // "before": the selection's scores renormalized over the k; top-k with normalize = true computes exactly that value
    // (in log space), so exact ties between requests are the same ties the reference sees.
    let normalized =
        TopK.Route(x, TopKOptions(K = k, Score = o.Score, Normalize = true, Bias = o.Bias)).Weights

    let w i j =
        if o.Normalize = Renormalization.Before then
            normalized.[i, j]
        else
            raw i j
    // Batch priority: tokens by first-choice score, larger first, ties to the lower token.
    let rank = Array.zeroCreate n
    Array.init n id |> Array.sortBy (fun i -> -(raw i 0), i) |> Array.iteri (fun r i -> rank.[i] <- r)

    let priority (i, j) =
        match o.Policy with
        | DropPolicy.Position -> (0, 0.0, i, j)
        | DropPolicy.ChoicePosition -> (j, 0.0, i, 0)
        | DropPolicy.Score -> (0, -(w i j), i, j)
        | DropPolicy.Logit -> (0, -x.[i, sel.[i, j]], i, j)
        | _ -> (j, float rank.[i], i, 0)

    let dispatch (i, j) =
        match o.Policy with
        | DropPolicy.ChoicePosition -> (j, i)
        | DropPolicy.BatchPriority -> (j, rank.[i])
        | _ -> (i, j)

    sel, priority, dispatch

/// The requests of each expert: (token, choice) pairs of the pre-drop selection.
let private requestsOf (sel: int[,]) e =
    [
        for i in 0 .. Array2D.length1 sel - 1 do
            for j in 0 .. Array2D.length2 sel - 1 do
                yield sel.[i, j], (i, j)
    ]
    |> List.groupBy fst
    |> List.map (fun (x, rs) -> x, List.map snd rs)
    |> Map.ofList
    |> fun m -> Array.init e (fun x -> defaultArg (m.TryFind x) [])

let ``no expert ever keeps more than C and load counts the kept requests`` () =
    Prop.forAll capacityProblem (fun pr ->
        let r = Capacity.Route(pr.Logits, pr.Options)
        let _, e = dims pr.Logits
        let counts = Array.zeroCreate e

        r.Experts
        |> Array2D.iter (fun x ->
            if x >= 0 then
                counts.[x] <- counts.[x] + 1)

        Assert.That(r.Load, eq counts)

        for x in 0 .. e - 1 do
            Assert.That(r.Load.[x], Is.LessThanOrEqualTo r.Capacity, $"expert {x}"))

let ``the kept requests of every expert are exactly the policy's first C`` () =
    Prop.forAll capacityProblem (fun pr ->
        let r = Capacity.Route(pr.Logits, pr.Options)
        let _, e = dims pr.Logits
        let sel, priority, _ = model pr.Logits pr.Options
        Assert.That(r.Selected, eq sel)
        let reqs = requestsOf sel e

        for x in 0 .. e - 1 do
            let ordered = reqs.[x] |> List.sortBy priority

            ordered
            |> List.iteri (fun place (i, j) ->
                let expected = if place < r.Capacity then x else -1
                Assert.That(r.Experts.[i, j], eq expected, $"expert {x}: request ({i}, {j}) at priority place {place}, C = {r.Capacity}")))

let ``slots number each expert's kept requests 0 to load-1 in dispatch order`` () =
    Prop.forAll capacityProblem (fun pr ->
        let r = Capacity.Route(pr.Logits, pr.Options)
        let n, e = dims pr.Logits
        let _, _, dispatch = model pr.Logits pr.Options

        for x in 0 .. e - 1 do
            let kept =
                [
                    for i in 0 .. n - 1 do
                        for j in 0 .. pr.Options.K - 1 do
                            if r.Experts.[i, j] = x then
                                yield (i, j)
                ]
                |> List.sortBy dispatch

            Assert.That(kept |> List.map (fun (i, j) -> r.Slots.[i, j]), eq [ 0 .. kept.Length - 1 ], $"expert {x}")

        for i in 0 .. n - 1 do
            for j in 0 .. pr.Options.K - 1 do
                if r.Experts.[i, j] < 0 then
                    Assert.That(r.Slots.[i, j], eq -1)
                    Assert.That(r.Weights.[i, j], eq 0.0))

let ``with C at least N times k nothing drops and the result is top-k`` () =
    let arb =
        gen {
            let! pr = capacityProblem.Generator
            let! extra = Gen.choose (0, 3)
            return pr, extra
        }
        |> Arb.fromGen

    Prop.forAll arb (fun (pr, extra) ->
        let n, _ = dims pr.Logits
        let o = { pr with Rule = { pr.Rule with Capacity = Some(n * pr.K + extra) } }.Options
        let r = Capacity.Route(pr.Logits, o)

        let t =
            TopK.Route(pr.Logits, TopKOptions(K = o.K, Score = o.Score, Bias = o.Bias, Normalize = (o.Normalize <> Renormalization.None)))

        Assert.That(r.Experts, eq t.Experts)
        // Bit for bit: the same scores, summed and divided in the same order.
        Assert.That(r.Weights, eq t.Weights))

let ``under choice-position a first choice is never dropped while a later choice of the same expert is kept`` () =
    Prop.forAll capacityProblem (fun pr ->
        let o = { pr with Policy = DropPolicy.ChoicePosition }.Options
        let r = Capacity.Route(pr.Logits, o)
        let n, e = dims pr.Logits

        for x in 0 .. e - 1 do
            let firstDropped =
                [
                    for i in 0 .. n - 1 do
                        if r.Selected.[i, 0] = x && r.Experts.[i, 0] = -1 then
                            yield i
                ]

            let laterKept =
                [
                    for i in 0 .. n - 1 do
                        for j in 1 .. o.K - 1 do
                            if r.Experts.[i, j] = x then
                                yield (i, j)
                ]

            Assert.That(
                firstDropped.IsEmpty || laterKept.IsEmpty,
                $"expert {x}: dropped first choices {firstDropped}, kept later {laterKept}"
            ))

let ``after-normalized weights sum to one for every token that keeps anything`` () =
    Prop.forAll capacityProblem (fun pr ->
        let o = { pr with Normalize = Renormalization.After }.Options
        let r = Capacity.Route(pr.Logits, o)

        for i in 0 .. Array2D.length1 pr.Logits - 1 do
            let w = row r.Weights i

            if Array.sum w > 0.0 then
                Assert.That(abs (Array.sum w - 1.0), Is.LessThanOrEqualTo(2.0 * float o.K * u64), $"token {i}")
            else
                Assert.That(w |> Array.forall ((=) 0.0)))

let ``the capacity follows the rounding rule and the minimum`` () =
    let arb =
        gen {
            let! n = Gen.choose (0, 300)
            let! e = Gen.choose (1, 70)
            let! k = Gen.choose (1, 8)
            let! f = Gen.choose (0, 64) |> Gen.map (fun v -> float v / 16.0)
            let! m = Gen.choose (0, 5)
            return n, e, k, f, m
        }
        |> Arb.fromGen

    Prop.forAll arb (fun (n, e, k, f, m) ->
        let c r = ExpertCapacity.FromFactor(n, e, k, f, r, m)
        // Independently, in integers: f is a multiple of 1/16, so f N k / E = (16 f N k) / (16 E) exactly.
        let num, den = int64 n * int64 k * int64 (f * 16.0), int64 e * 16L
        let fl, ce = num / den, (num + den - 1L) / den
        Assert.That(c CapacityRounding.Floor, eq (max (int fl) m))
        Assert.That(c CapacityRounding.Ceil, eq (max (int ce) m))

        let rounded =
            if 2L * (num - fl * den) < den then fl
            elif 2L * (num - fl * den) > den then ce
            else (if fl % 2L = 0L then fl else ce)

        Assert.That(c CapacityRounding.Round, eq (max (int rounded) m))
        let perChoice = (int64 n + int64 e - 1L) / int64 e
        Assert.That(c CapacityRounding.Tutel, eq (max (k * int ((perChoice * int64 (f * 16.0)) / 16L)) m))
        // An explicit capacity is used as given, whatever the minimum.
        Assert.That(ExpertCapacity.Resolve(n, e, k, System.Nullable 0, f, CapacityRounding.Ceil, m), eq 0))

/// The float32 pre-drop weights the kernel ranks: P32 at the selection, or for "before" the kernel's own log-space
/// renormalization (read back from the top-k kernel with normalize = true, which computes exactly that).
let private weights32 (x: double[,]) (p32: float[,]) (sel: int[,]) (o: CapacityOptions) =
    let n, k = Array2D.length1 sel, Array2D.length2 sel

    if o.Normalize = Renormalization.Before then
        let e = Array2D.length2 x

        let t =
            Reference.Kernels.Routing.TopK.Route(flat32 x, n, e, TopKOptions(K = k, Score = o.Score, Normalize = true, Bias = o.Bias))

        Array2D.init n k (fun i j -> float t.Weights.[i * k + j])
    else
        Array2D.init n k (fun i j -> p32.[i, sel.[i, j]])

/// True when no decision of the instance sits on a float32 near-tie: every row's selection keys, and the values the policy
/// compares (weights per expert for score, first-choice scores for batch-priority), are separated (RoutingGenerators).
let private decisionsSeparated (pr: CapacityProblem) =
    let x, o = pr.Logits, pr.Options
    let n, e = dims x
    let k = o.K
    let p = RouterScores.Compute(x, o.Score)
    let p32 = scores32 x o.Score

    let b j =
        match o.Bias with
        | null -> 0.0
        | bs -> bs.[j]

    let rowMax i = Seq.max [ for j in 0 .. e - 1 -> p.[i, j] ]

    let rowsOk =
        [ 0 .. n - 1 ]
        |> List.forall (fun i ->
            let maxAbs = Seq.max [ for j in 0 .. e - 1 -> abs (p.[i, j] + b j) ]
            let slack = 2.0 * float (e + 4) * u32 * maxAbs
            allSeparated [ for j in 0 .. e - 1 -> p.[i, j] + b j, float (float32 p32.[i, j] + float32 (b j)), slack ])

    if not rowsOk then
        false
    else
        let sel = TopK.Route(x, TopKOptions(K = k, Score = o.Score, Normalize = false, Bias = o.Bias)).Experts

        let w64 =
            if o.Normalize = Renormalization.Before then
                TopK.Route(x, TopKOptions(K = k, Score = o.Score, Normalize = true, Bias = o.Bias)).Weights
            else
                Array2D.init n k (fun i j -> p.[i, sel.[i, j]])

        let w32 = weights32 x p32 sel o

        match o.Policy with
        | DropPolicy.Score ->
            let scale i =
                if o.Normalize = Renormalization.Before then
                    1.0
                else
                    rowMax i

            requestsOf sel e
            |> Array.forall (fun rs -> allSeparated [ for (i, j) in rs -> w64.[i, j], w32.[i, j], float (e + 2 * k + 8) * u32 * scale i ])
        | DropPolicy.BatchPriority ->
            allSeparated [ for i in 0 .. n - 1 -> p.[i, sel.[i, 0]], p32.[i, sel.[i, 0]], float (e + 4) * u32 * rowMax i ]
        | _ -> true // position orders are exact; logits are float32 values compared exactly in both

let private kernel (pr: CapacityProblem) =
    let n, e = dims pr.Logits
    let r = Reference.Kernels.Routing.Capacity.Route(flat32 pr.Logits, n, e, pr.Options)
    let k = pr.Options.K
    matrix n k r.Experts, matrix n k r.Slots, r.Load, matrix n k (Array.map float r.Weights), r.Capacity

let ``kernel equals reference`` () =
    Prop.forAll capacityProblem (fun pr ->
        let reference = Capacity.Route(pr.Logits, pr.Options)
        let experts, slots, load, weights, c = kernel pr
        Assert.That(c, eq reference.Capacity)
        // (b) Always: the kernel's routing is a valid one, and its weights match the ones its choice implies.
        let check =
            CapacityValidator.Check(pr.Logits, pr.Options, experts, slots, load, NumberFormat.Float32, weights)

        Assert.That(check.Valid, String.concat "\n" check.Problems)
        let _, e = dims pr.Logits
        let k = pr.K
        let tol = 2.0 * float (e + 2 * k + 8) * u32

        weights
        |> Array2D.iteri (fun i j w -> Assert.That(abs (w - check.ExpectedWeights.[i, j]), Is.LessThanOrEqualTo tol, $"weights[{i}, {j}]"))
        // (a) Away from float32 near-ties: identical indices.
        if decisionsSeparated pr then
            Assert.That(experts, eq reference.Experts, "experts")
            Assert.That(slots, eq reference.Slots, "slots")
            Assert.That(load, eq reference.Load, "load"))

/// Counterexamples that `kernel equals reference` once found (recorded in proofs/capacity.md), replayed one case each
/// with FsCheck's own replay: a correct kernel that the validator must accept.
let ``kernel equals reference on the recorded counterexamples`` () =
    let recorded =
        [
            // batch-priority, K = 25: a dropped first choice among float32-tied full experts with scores 4e-42..1.8e-8
            6381052001624223513UL, 8833000821986115275UL, 18
            // "before" weights of a row with dropped choices among tied full experts (choice-position, C = 1)
            4927356804941589555UL, 8766410005300369689UL, 16
            10934618840906751628UL, 10259560388277367319UL, 58
            // score policy with "before", sigmoid and a bias on a grid, K = 24: float32 saturates sigmoid to 1 and ties the
            // keys 1 + b and 0 + b' that differ in double, so a row with dropped choices renormalizes over another set
            4939415937962826288UL, 11246285205340006949UL, 35
        ]

    for seed, gamma, size in recorded do
        let config =
            Config.QuickThrowOnFailure.WithMaxTest(1).WithReplay(Some { Rnd = Rnd(seed, gamma); Size = Some size })

        Check.One(config, ``kernel equals reference`` ())

let ``kernel equals reference exactly on separated grid inputs for every policy and normalization`` () =
    // Grid logits (RoutingGenerators.gridLogits) without bias and with softmax keep every row's keys separated, and a
    // first-choice/score comparison across rows either separated or bit-equal; the property above then compares exactly.
    let mutable exact = 0
    let cases = Gen.sample 400 (capacityProblemWith gridLogits) |> Seq.truncate 400

    for pr in cases do
        let pr = { pr with Bias = None }

        if decisionsSeparated pr then
            exact <- exact + 1
            let reference = Capacity.Route(pr.Logits, pr.Options)
            let experts, slots, load, _, _ = kernel pr
            Assert.That(experts, eq reference.Experts)
            Assert.That(slots, eq reference.Slots)
            Assert.That(load, eq reference.Load)
    // Most grid instances are separated; the exact comparison must not be vacuous.
    Assert.That(exact, Is.GreaterThan 200)

let ``the validator accepts the reference and rejects an over-full expert or swapped slots`` () =
    Prop.forAll capacityProblem (fun pr ->
        let r = Capacity.Route(pr.Logits, pr.Options)
        let n, _ = dims pr.Logits
        let k = pr.Options.K
        let check ex sl ld = CapacityValidator.Check(pr.Logits, pr.Options, ex, sl, ld, NumberFormat.Float64)
        let ok = check r.Experts r.Slots r.Load
        Assert.That(ok.Valid, String.concat "\n" ok.Problems)
        Assert.That(ok.ExpectedWeights, eq r.Weights)
        // Re-admitting a dropped request overfills its (full) expert: always invalid.
        let dropped =
            [
                for i in 0 .. n - 1 do
                    for j in 0 .. k - 1 do
                        if r.Experts.[i, j] < 0 then
                            yield i, j
            ]

        match dropped with
        | (i, j) :: _ ->
            let ex = Array2D.copy r.Experts
            ex.[i, j] <- r.Selected.[i, j]
            Assert.That((check ex null null).Valid, Is.False, $"re-admitted ({i}, {j})")
        | [] -> ()
        // Swapping the slots of two kept requests of one expert breaks the dispatch order, except for batch-priority
        // between two first-choice scores that are within the slack.
        let kept =
            [
                for i in 0 .. n - 1 do
                    for j in 0 .. k - 1 do
                        if r.Experts.[i, j] >= 0 then
                            yield r.Experts.[i, j], (i, j)
            ]

        match kept |> List.groupBy fst |> List.tryFind (fun (_, rs) -> rs.Length >= 2) with
        | Some(_, (_, (i1, j1)) :: (_, (i2, j2)) :: _) when pr.Options.Policy <> DropPolicy.BatchPriority || j1 <> j2 ->
            let sl = Array2D.copy r.Slots
            sl.[i1, j1] <- r.Slots.[i2, j2]
            sl.[i2, j2] <- r.Slots.[i1, j1]
            Assert.That((check r.Experts sl null).Valid, Is.False, $"swapped slots of ({i1}, {j1}) and ({i2}, {j2})")
        | _ -> ())

let ``before weights of a row with a dropped choice follow whichever near-tied full expert the candidate chose`` () =
    // Token 1 selects expert 0 and then one of experts 1 and 2, whose keys P + b differ by 3e-14 (within any float32 slack)
    // while their scores differ by 1; both are full (token 0 holds them, C = 1), so the second choice is dropped and the
    // candidate's output (-1) does not say which. Renormalized "before", its kept weight is p0 / (p0 + p1) or p0 / (p0 + p2).
    let x = array2D [ [ -50.0; 5.0; 20.0; -50.0 ]; [ 3.0; -32.0; 32.0; -50.0 ] ]

    let o =
        CapacityOptions(
            K = 2,
            Score = ScoreFunction.Sigmoid,
            Normalize = Renormalization.Before,
            Capacity = System.Nullable 1,
            Policy = DropPolicy.ChoicePosition,
            Bias = [| 0.25; 0.5; -0.5; 0.0 |]
        )

    let r = Capacity.Route(x, o)
    Assert.That(r.Experts, eq (array2D [ [ 1; 2 ]; [ 0; -1 ] ]))
    let s = RouterScores.Compute(x, ScoreFunction.Sigmoid)
    let viaOne, viaTwo = s.[1, 0] / (s.[1, 0] + s.[1, 1]), s.[1, 0] / (s.[1, 0] + s.[1, 2])
    Assert.That(abs (viaOne - viaTwo), Is.GreaterThan 0.4)

    let expectedFor w10 =
        let w = Array2D.copy r.Weights
        w.[1, 0] <- w10
        let check = CapacityValidator.Check(x, o, r.Experts, r.Slots, r.Load, NumberFormat.Float32, w)
        Assert.That(check.Valid, String.concat "\n" check.Problems)
        check.ExpectedWeights.[1, 0]
    // Either valid choice is expected as reported; a weight between them is held to the nearer one and so fails.
    Assert.That(expectedFor viaOne, Is.EqualTo(viaOne).Within 1e-12)
    Assert.That(expectedFor viaTwo, Is.EqualTo(viaTwo).Within 1e-12)
    let between = (viaOne + viaTwo) / 2.0
    Assert.That(abs (expectedFor between - between), Is.GreaterThan 0.2)

/// A capacity routing as code that selects with torch.topk computes it: exact key ties broken in some other expert order.
/// The reference routes the problem with its experts relabelled by a random permutation (so its lower-index tie rule
/// becomes a random tie order among the original experts), and the routing is mapped back to the original labels.
let ``the validator accepts a routing whose exact key ties are broken in another expert order`` () =
    let arb =
        gen {
            let! pr = capacityProblemWith logits
            // Half the cases where ties decide drops: grid logits (exact ties), the score policy renormalized before
            // (its priorities are not the raw scores'), k at least half of E so that full experts tie at the boundary.
            let! tieRich = Gen.elements [ false; true ]
            let n, e = dims pr.Logits
            let! grid = gridLogits n e
            let! k = Gen.choose ((e + 1) / 2, e)

            let pr =
                if tieRich then
                    { pr with
                        Logits = grid
                        K = k
                        Policy = DropPolicy.Score
                        Normalize = Renormalization.Before
                        Rule = { pr.Rule with Capacity = None; Factor = 0.5 }
                    }
                else
                    pr

            let! seed = Gen.choose (0, System.Int32.MaxValue)
            return pr, seed
        }
        |> Arb.fromGen

    Prop.forAll arb (fun (pr, seed) ->
        let n, e = dims pr.Logits
        let order = Array.init e id // shuffled below (Fisher-Yates)
        let rng = System.Random seed

        for x in e - 1 .. -1 .. 1 do
            let y = rng.Next(x + 1)
            let t = order.[x]
            order.[x] <- order.[y]
            order.[y] <- t
        // Relabelled expert x' holds original expert order.[x'].
        let relabelled =
            { pr with
                Logits = Array2D.init n e (fun i x' -> pr.Logits.[i, order.[x']])
                Bias = pr.Bias |> Option.map (fun b -> Array.init e (fun x' -> b.[order.[x']]))
            }

        let r = Capacity.Route(relabelled.Logits, relabelled.Options)
        let experts = r.Experts |> Array2D.map (fun x' -> if x' < 0 then x' else order.[x'])
        let load = Array.init e (fun x -> r.Load.[Array.findIndex ((=) x) order])

        let check =
            CapacityValidator.Check(pr.Logits, pr.Options, experts, r.Slots, load, NumberFormat.Float64, r.Weights)

        Assert.That(check.Valid, String.concat "\n" check.Problems)
        let expected = check.ExpectedWeights

        for i in 0 .. n - 1 do
            for j in 0 .. pr.Options.K - 1 do
                Assert.That(expected.[i, j], Is.EqualTo(r.Weights.[i, j]).Within(1e-12), $"weight ({i}, {j})"))

let ``reference and kernel are deterministic`` () =
    Prop.forAll capacityProblem (fun pr ->
        let a, b = Capacity.Route(pr.Logits, pr.Options), Capacity.Route(pr.Logits, pr.Options)
        Assert.That(b.Experts, eq a.Experts)
        Assert.That(b.Slots, eq a.Slots)

        Assert.That(
            b.Weights |> flatten |> Array.map System.BitConverter.DoubleToInt64Bits,
            eq (a.Weights |> flatten |> Array.map System.BitConverter.DoubleToInt64Bits)
        )

        let (e1, s1, l1, w1, _), (e2, s2, l2, w2, _) = kernel pr, kernel pr
        Assert.That(e2, eq e1)
        Assert.That(s2, eq s1)
        Assert.That(l2, eq l1)
        Assert.That(w2, eq w1))

// ---------------------------------------------------------------------------------------------------------------
// Published expectations of other systems, transcribed as data (inputs and expected dispatch), not as code.

/// (token, expert, slot) triples of the kept requests, sorted.
let private dispatchTriples (r: CapacityResult) =
    [
        for i in 0 .. Array2D.length1 r.Experts - 1 do
            for j in 0 .. Array2D.length2 r.Experts - 1 do
                if r.Experts.[i, j] >= 0 then
                    yield i, r.Experts.[i, j], r.Slots.[i, j]
    ]
    |> List.sort

let private triples (xs: int list list) = xs |> List.map (fun t -> t.[0], t.[1], t.[2]) |> List.sort

let private deepSpeedOptions k policy =
    // DeepSpeed topkgating(logits, k, capacity_factor=1, min_capacity=1): C = ceil((N k / E) cf), at least 1.
    CapacityOptions(K = k, CapacityFactor = 1.0, MinCapacity = 1, Policy = policy, Normalize = Renormalization.None)

/// Source: DeepSpeed tests/unit/moe/test_moe.py, TestTopkGate.test, first block (s=4, e=4, topk=2, cap=2).
/// The test runs on two ranks with the logits scaled by rank + 1, so both scalings must give the same masks.
let private deepSpeedLogits1 =
    array2D
        [
            [ 0.11; 0.2; 0.1; 0.3 ]
            [ 0.3; 0.4; 0.11; 0.1 ]
            [ 0.11; 0.1; 0.6; 0.5 ]
            [ 0.1; 0.11; 0.7; 0.8 ]
        ]

/// Source: DeepSpeed tests/unit/moe/test_moe.py, TestTopkGate.test, second block (s=4, e=6, topk=3, cap=2).
let private deepSpeedLogits2 =
    array2D
        [
            [ 0.5858; 0.4801; 0.6269; 0.5397; 0.9722; 0.7034 ]
            [ 0.5445; 0.6332; 0.4519; 0.6308; 0.0519; 0.6450 ]
            [ 0.4874; 0.8110; 0.7467; 0.8474; 0.0277; 0.3068 ]
            [ 0.8570; 0.6714; 0.5310; 0.3274; 0.4836; 0.9892 ]
        ]

/// The published logits are torch float32 tensors; widen their float32 values exactly.
let private asFloat32 (x: double[,]) (scale: float32) = x |> Array2D.map (fun v -> float (float32 v * scale))

let ``DeepSpeed TestTopkGate: probs and position masks for s=4 e=4 top2`` () =
    for scale in [ 1.0f; 2.0f ] do
        let x = asFloat32 deepSpeedLogits1 scale
        let probs = Capacity.Route(x, deepSpeedOptions 2 DropPolicy.Score)
        Assert.That(probs.Capacity, eq 2)

        Assert.That(
            dispatchTriples probs,
            eq (triples [ [ 0; 1; 0 ]; [ 1; 0; 0 ]; [ 1; 1; 1 ]; [ 2; 2; 0 ]; [ 2; 3; 0 ]; [ 3; 2; 1 ]; [ 3; 3; 1 ] ]),
            $"probs, scale {scale}"
        )

        let position = Capacity.Route(x, deepSpeedOptions 2 DropPolicy.Position)

        Assert.That(
            dispatchTriples position,
            eq (triples [ [ 0; 1; 0 ]; [ 0; 3; 0 ]; [ 1; 0; 0 ]; [ 1; 1; 1 ]; [ 2; 2; 0 ]; [ 2; 3; 1 ]; [ 3; 2; 1 ] ]),
            $"position, scale {scale}"
        )

let ``DeepSpeed TestTopkGate: probs and position masks for s=4 e=6 top3`` () =
    let publishedProbs =
        triples
            [
                [ 0; 2; 0 ]
                [ 0; 4; 0 ]
                [ 1; 1; 0 ]
                [ 1; 3; 0 ]
                [ 1; 5; 0 ]
                [ 2; 1; 1 ]
                [ 2; 2; 1 ]
                [ 2; 3; 1 ]
                [ 3; 0; 0 ]
                [ 3; 5; 1 ]
            ]

    for scale in [ 1.0f; 2.0f ] do
        let x = asFloat32 deepSpeedLogits2 scale
        let probs = Capacity.Route(x, deepSpeedOptions 3 DropPolicy.Score)
        Assert.That(probs.Capacity, eq 2)
        Assert.That(dispatchTriples probs, eq publishedProbs, $"probs, scale {scale}")
        // The published "probs" expectation ranks by probability: ranking by raw logit (the `logit` policy of proofs/capacity.md, Definition: Drop policies)
        // keeps token 0 instead of token 1 at expert 5, so it does not reproduce this mask.
        Assert.That(dispatchTriples (Capacity.Route(x, deepSpeedOptions 3 DropPolicy.Logit)), Is.Not.EqualTo(box publishedProbs))
        let position = Capacity.Route(x, deepSpeedOptions 3 DropPolicy.Position)

        Assert.That(
            dispatchTriples position,
            eq (
                triples
                    [
                        [ 0; 2; 0 ]
                        [ 0; 4; 0 ]
                        [ 0; 5; 0 ]
                        [ 1; 1; 0 ]
                        [ 1; 3; 0 ]
                        [ 1; 5; 1 ]
                        [ 2; 1; 1 ]
                        [ 2; 2; 1 ]
                        [ 2; 3; 1 ]
                        [ 3; 0; 0 ]
                    ]
            ),
            $"position, scale {scale}"
        )

let ``DeepSpeed TestTopkGate: no dropping keeps token-order slots`` () =
    // Third block (s=4, e=4, topk=2, drop_tokens=False): DeepSpeed sizes the buffer to the largest load (4) and drops nothing;
    // here an explicit C = 4 = N is enough for every expert, with position slots.
    let x =
        asFloat32
            (array2D
                [
                    [ 0.95; 0.85; 0.90; 0.80 ]
                    [ 0.70; 0.65; 0.75; 0.60 ]
                    [ 0.50; 0.55; 0.45; 0.40 ]
                    [ 0.35; 0.30; 0.25; 0.20 ]
                ])
            1.0f

    let r =
        Capacity.Route(x, CapacityOptions(K = 2, Capacity = System.Nullable 4, Policy = DropPolicy.Position))

    Assert.That(
        dispatchTriples r,
        eq (
            triples
                [
                    [ 0; 0; 0 ]
                    [ 0; 2; 0 ]
                    [ 1; 0; 1 ]
                    [ 1; 2; 1 ]
                    [ 2; 0; 2 ]
                    [ 2; 1; 0 ]
                    [ 3; 0; 3 ]
                    [ 3; 1; 1 ]
                ]
        )
    )

let ``Megatron test_token_dropping: with a capacity factor at most N k cf requests are kept, without one all`` () =
    // Source: Megatron-LM tests/unit_tests/transformer/moe/test_routers.py, TestTop2Router.test_token_dropping
    // (32 tokens, 4 experts, top-2, capacity factor None / 1.0 / 2.0, drop policy probs / position, no padding).
    // Megatron's "probs" with pre_softmax = False ranks the renormalized top-k probabilities: score with "before".
    let rng = System.Random 20240501

    for trial in 1..20 do
        let x = Array2D.init 32 4 (fun _ _ -> float (float32 (rng.NextDouble() * 4.0 - 2.0)))

        for policy in [ DropPolicy.Score; DropPolicy.Position ] do
            for cf in [ 1.0; 2.0 ] do
                let r =
                    Capacity.Route(x, CapacityOptions(K = 2, CapacityFactor = cf, Policy = policy, Normalize = Renormalization.Before))

                let kept = r.Experts |> Seq.cast<int> |> Seq.filter (fun v -> v >= 0) |> Seq.length
                Assert.That(float kept, Is.LessThanOrEqualTo(32.0 * 2.0 * cf), $"trial {trial}, {policy}, cf {cf}")
            // capacity_factor None: no dropping (an explicit C = N k here).
            let r = Capacity.Route(x, CapacityOptions(K = 2, Capacity = System.Nullable 64, Policy = policy))
            Assert.That(r.Experts |> Seq.cast<int> |> Seq.forall (fun v -> v >= 0))

let ``capacity rounding rules on a worked example`` () =
    // N = 10, k = 2, E = 4, cf = 1.25: (N k / E) cf = 5 * 1.25 = 6.25; ceil 7, floor 6, round 6;
    // Tutel: k floor(cf ceil(N / E)) = 2 floor(1.25 * 3) = 2 * 3 = 6. With min_capacity 8 every rule gives 8.
    let c r m = ExpertCapacity.FromFactor(10, 4, 2, 1.25, r, m)

    Assert.That(
        [
            c CapacityRounding.Ceil 0
            c CapacityRounding.Floor 0
            c CapacityRounding.Round 0
            c CapacityRounding.Tutel 0
        ],
        eq [ 7; 6; 6; 6 ]
    )

    Assert.That(
        [
            c CapacityRounding.Ceil 8
            c CapacityRounding.Floor 8
            c CapacityRounding.Round 8
            c CapacityRounding.Tutel 8
        ],
        eq [ 8; 8; 8; 8 ]
    )
    // Round half to even: N = 5, k = 1, E = 2, cf = 1 gives 2.5, which rounds to 2; N = 7 gives 3.5, which rounds to 4.
    Assert.That(ExpertCapacity.FromFactor(5, 2, 1, 1.0, CapacityRounding.Round, 0), eq 2)
    Assert.That(ExpertCapacity.FromFactor(7, 2, 1, 1.0, CapacityRounding.Round, 0), eq 4)

let ``ceil-f32 differs from the exact ceil where DeepSpeed's float32 product crosses an integer`` () =
    // N = 30, E = 3, cf = 0.1, k = 1: the double 0.1 is slightly above 1/10, so cf N k / E is slightly above 1 and the
    // exact ceil is 2; in float32, fl32(10) * fl32(0.1) rounds to exactly 1, so DeepSpeed's _capacity is 1 (torch 1.13
    // prints 1 for torch.ceil((30 / 3) * torch.tensor(0.1))). N = 10, E = 1, cf = 1.1: 12 exactly, 11 in float32.
    Assert.That(ExpertCapacity.FromFactor(30, 3, 1, 0.1, CapacityRounding.Ceil, 0), eq 2)
    Assert.That(ExpertCapacity.FromFactor(30, 3, 1, 0.1, CapacityRounding.CeilF32, 0), eq 1)
    Assert.That(ExpertCapacity.FromFactor(10, 1, 1, 1.1, CapacityRounding.Ceil, 0), eq 12)
    Assert.That(ExpertCapacity.FromFactor(10, 1, 1, 1.1, CapacityRounding.CeilF32, 0), eq 11)
    // min_capacity applies after the rounding, as DeepSpeed's "if capacity < min_capacity".
    Assert.That(ExpertCapacity.FromFactor(30, 3, 1, 0.1, CapacityRounding.CeilF32, 4), eq 4)

let ``ceil-f32 equals DeepSpeed's _capacity formula evaluated by torch`` () =
    Peers.requireModules [ "torch" ] "python3-torch"
    let rng = System.Random 20260412
    let factors = [| 0.1; 0.2; 0.3; 0.7; 1.0; 1.1; 1.2; 1.25; 1.3; 1.5; 2.0; 0.05; 3.3 |]

    let cases =
        [
            yield 30, 3, 1, 0.1, 0
            yield 10, 1, 1, 1.1, 0
            // A family where the two rules tend to differ (N k / E cf lands on an integer with a non-dyadic cf).
            for j in 1..30 do
                yield 30 * j, 3, 1, 0.1, 0
            for _ in 1..3000 ->
                rng.Next 5000,
                1 + rng.Next 200,
                1 + rng.Next 4,
                factors.[rng.Next factors.Length],
                (if rng.Next 4 = 0 then rng.Next 6 else 0)
        ]

    let inv = System.Globalization.CultureInfo.InvariantCulture

    let text =
        cases
        |> List.map (fun (n, e, k, cf, m) -> System.String.Format(inv, "{0} {1} {2} {3:R} {4}", n, e, k, cf, m))

    let file = System.IO.Path.GetTempFileName()
    System.IO.File.WriteAllLines(file, text)
    // DeepSpeed's sharded_moe._capacity with capacity_factor = torch.tensor(cf * k) and min_capacity = m.
    let script =
        """
import sys, torch
for line in open(sys.argv[1]):
    n, e, k, cf, m = line.split()
    n, e, k, cf, m = int(n), int(e), int(k), float(cf), int(m)
    capacity = torch.ceil((n / e) * torch.tensor(cf * k)).to(torch.int64)
    if capacity < torch.tensor(m):
        capacity = torch.tensor(m).to(torch.int64)
    print(int(capacity))
"""

    let code, out, err = Peers.runProcess Peers.python [ "-c"; script; file ]
    System.IO.File.Delete file
    Assert.That(code, eq 0, err)
    let torchValues = out.Split('\n', System.StringSplitOptions.RemoveEmptyEntries) |> Array.map int
    Assert.That(torchValues.Length, eq cases.Length)
    let mutable differ = 0

    for (n, e, k, cf, m), expected in List.zip cases (List.ofArray torchValues) do
        Assert.That(ExpertCapacity.FromFactor(n, e, k, cf, CapacityRounding.CeilF32, m), eq expected, $"N={n} E={e} k={k} cf={cf} m={m}")

        if ExpertCapacity.FromFactor(n, e, k, cf, CapacityRounding.Ceil, m) <> expected then
            differ <- differ + 1
    // The grid exercises the difference, not only cases where both rules agree.
    Assert.That(differ, Is.GreaterThan 20, "cases where float32 and exact rounding differ")

let ``bad input names the argument`` () =
    let x = Array2D.create 3 4 0.0

    let ex =
        throws<System.ArgumentOutOfRangeException> (fun () -> Capacity.Route(x, CapacityOptions(Capacity = System.Nullable -1)) |> ignore)

    Assert.That(ex.ParamName, eq "capacity")

    let ex =
        throws<System.ArgumentException> (fun () -> Capacity.Route(x, CapacityOptions(CapacityFactor = -0.5)) |> ignore)

    Assert.That(ex.ParamName, eq "capacity_factor")

    let ex =
        throws<System.ArgumentOutOfRangeException> (fun () -> Capacity.Route(x, CapacityOptions(MinCapacity = -1)) |> ignore)

    Assert.That(ex.ParamName, eq "min_capacity")
    x.[1, 2] <- nan
    let ex = throws<System.ArgumentException> (fun () -> Capacity.Route(x, CapacityOptions()) |> ignore)
    Assert.That(ex.Message, Does.Contain "logits[1, 2] is NaN")

    let ex =
        throws<System.ArgumentException> (fun () -> Reference.Kernels.Routing.Capacity.Route(flat32 x, 3, 4, CapacityOptions()) |> ignore)

    Assert.That(ex.Message, Does.Contain "logits[1, 2] is NaN")

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "routing/capacity"
        "CapacityProperties"
        [
            Proofs.prop
                [ "capacity.never-exceeds" ]
                "no expert ever keeps more than C and load counts the kept requests"
                ``no expert ever keeps more than C and load counts the kept requests``
            Proofs.prop
                [ "capacity.kept-are-policy-first-c" ]
                "the kept requests of every expert are exactly the policy's first C"
                ``the kept requests of every expert are exactly the policy's first C``
            Proofs.prop
                [ "capacity.slots-dispatch-order" ]
                "slots number each expert's kept requests 0 to load-1 in dispatch order"
                ``slots number each expert's kept requests 0 to load-1 in dispatch order``
            Proofs.prop
                [ "capacity.no-drop-equals-topk" ]
                "with C at least N times k nothing drops and the result is top-k"
                ``with C at least N times k nothing drops and the result is top-k``
            Proofs.prop
                [ "capacity.first-choice-priority" ]
                "under choice-position a first choice is never dropped while a later choice of the same expert is kept"
                ``under choice-position a first choice is never dropped while a later choice of the same expert is kept``
            Proofs.prop
                [ "capacity.after-weights-sum-to-one" ]
                "after-normalized weights sum to one for every token that keeps anything"
                ``after-normalized weights sum to one for every token that keeps anything``
            Proofs.prop
                [ "capacity.capacity-rule" ]
                "the capacity follows the rounding rule and the minimum"
                ``the capacity follows the rounding rule and the minimum``
            Proofs.prop [ "capacity.kernel-equals-reference" ] "kernel equals reference" ``kernel equals reference``
            Proofs.test
                [ "capacity.kernel-equals-reference" ]
                "kernel equals reference on the recorded counterexamples"
                ``kernel equals reference on the recorded counterexamples``
            Proofs.test
                [ "capacity.kernel-equals-reference" ]
                "kernel equals reference exactly on separated grid inputs for every policy and normalization"
                ``kernel equals reference exactly on separated grid inputs for every policy and normalization``
            Proofs.prop
                [ "capacity.validator-sound" ]
                "the validator accepts the reference and rejects an over-full expert or swapped slots"
                ``the validator accepts the reference and rejects an over-full expert or swapped slots``
            Proofs.test
                [ "capacity.validator-sound" ]
                "before weights of a row with a dropped choice follow whichever near-tied full expert the candidate chose"
                ``before weights of a row with a dropped choice follow whichever near-tied full expert the candidate chose``
            Proofs.prop
                [ "capacity.validator-sound" ]
                "the validator accepts a routing whose exact key ties are broken in another expert order"
                ``the validator accepts a routing whose exact key ties are broken in another expert order``
            Proofs.prop [ "capacity.deterministic" ] "reference and kernel are deterministic" ``reference and kernel are deterministic``
            Proofs.test
                [ "capacity.published-expectations" ]
                "DeepSpeed TestTopkGate: probs and position masks for s=4 e=4 top2"
                ``DeepSpeed TestTopkGate: probs and position masks for s=4 e=4 top2``
            Proofs.test
                [ "capacity.published-expectations" ]
                "DeepSpeed TestTopkGate: probs and position masks for s=4 e=6 top3"
                ``DeepSpeed TestTopkGate: probs and position masks for s=4 e=6 top3``
            Proofs.test
                [ "capacity.published-expectations" ]
                "DeepSpeed TestTopkGate: no dropping keeps token-order slots"
                ``DeepSpeed TestTopkGate: no dropping keeps token-order slots``
            Proofs.test
                [ "capacity.published-expectations" ]
                "Megatron test_token_dropping: with a capacity factor at most N k cf requests are kept, without one all"
                ``Megatron test_token_dropping: with a capacity factor at most N k cf requests are kept, without one all``
            Proofs.test
                [ "capacity.capacity-rule" ]
                "capacity rounding rules on a worked example"
                ``capacity rounding rules on a worked example``
            Proofs.test
                [ "capacity.ceil-f32-is-deepspeed" ]
                "ceil-f32 differs from the exact ceil where DeepSpeed's float32 product crosses an integer"
                ``ceil-f32 differs from the exact ceil where DeepSpeed's float32 product crosses an integer``
            Proofs.sequenced (
                Proofs.test
                    [ "capacity.ceil-f32-is-deepspeed" ]
                    "ceil-f32 equals DeepSpeed's _capacity formula evaluated by torch"
                    ``ceil-f32 equals DeepSpeed's _capacity formula evaluated by torch``
            )
            Proofs.test [] "bad input names the argument" ``bad input names the argument``
        ]
