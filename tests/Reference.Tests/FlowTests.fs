/// Min-cost flow (Reference.Flow): the solver against brute force, Edmonds-Karp and LEMON; the certificate checker;
/// DIMACS. Theorems: proofs/min-cost-flow.md.
module Reference.Tests.FlowTests

open System
open System.Numerics
open NUnit.Framework
open FsCheck
open FsCheck.FSharp
open Reference.Flow
open Reference.Kernels.Native
open Reference.Tests.Proofs

// ================================================================================================
// Cases
// ================================================================================================

/// A generated network, printed by FsCheck when a property fails.
type Net =
    {
        N: int
        Tails: int[]
        Heads: int[]
        Caps: int64[]
        Costs: int64[]
        Supplies: int64[]
    }

    member this.M = this.Tails.Length
    member this.Problem = FlowProblem(this.N, this.Tails, this.Heads, this.Caps, this.Costs, this.Supplies)

/// How the supplies of a generated network are chosen.
type SupplyMode =
    /// The net outflow of a random flow within the capacities: balanced and feasible.
    | FromFlow
    /// Random, then the last node balances them: balanced, often infeasible.
    | Balanced
    /// Random: usually unbalanced.
    | Anything

let private fail fmt = Printf.kprintf (fun s -> raise (Exception s)) fmt

/// Throws with the message when the condition is false (FsCheck then prints the case).
let private expect condition (message: string) =
    if not condition then
        raise (Exception message)

/// Net outflow of every node under flows x: sum over arcs leaving minus sum over arcs entering.
let netOutflow n (tails: int[]) (heads: int[]) (x: int64[]) =
    let out = Array.zeroCreate<int64> n

    for a in 0 .. tails.Length - 1 do
        out.[tails.[a]] <- out.[tails.[a]] + x.[a]
        out.[heads.[a]] <- out.[heads.[a]] - x.[a]

    out

/// Arcs: tail, head (one in six a self-loop), capacity 0..maxCap, cost costLo..costHi; then up to two parallel copies
/// of earlier arcs with fresh capacity and cost.
let genArcs n maxM maxCap costLo costHi =
    gen {
        let! m = Gen.choose (0, maxM)

        let genArc =
            gen {
                let! t = Gen.choose (0, n - 1)
                let! loop = Gen.frequency [ 1, Gen.constant true; 5, Gen.constant false ]
                let! h = if loop then Gen.constant t else Gen.choose (0, n - 1)
                let! cap = Gen.choose (0, maxCap)
                let! cost = Gen.choose (costLo, costHi)
                return t, h, int64 cap, int64 cost
            }

        let! arcs = Gen.listOfLength m genArc
        let! copies = Gen.choose (0, min 2 m)

        let! duplicates =
            Gen.listOfLength
                copies
                (gen {
                    let! i = Gen.choose (0, m - 1)
                    let t, h, _, _ = arcs.[i]
                    let! cap = Gen.choose (0, maxCap)
                    let! cost = Gen.choose (costLo, costHi)
                    return t, h, int64 cap, int64 cost
                })

        return Array.ofList (arcs @ duplicates)
    }

let genSupplies n (tails: int[]) (heads: int[]) (lo: int64[]) (hi: int64[]) mode =
    gen {
        match mode with
        | FromFlow ->
            let! x = Array.init tails.Length (fun a -> Gen.choose64 (lo.[a], hi.[a])) |> Gen.sequenceToArray
            return netOutflow n tails heads x
        | Balanced ->
            let! b = Gen.arrayOfLength n (Gen.choose (-5, 5))
            let b = Array.map int64 b
            b.[n - 1] <- b.[n - 1] - Array.sum b
            return b
        | Anything ->
            let! b = Gen.arrayOfLength n (Gen.choose (-5, 5))
            return Array.map int64 b
    }

/// A network with n in 1..maxN, costs in -maxCost..maxCost, sometimes all multiplied by a large prime
/// (extreme but finite, ties kept), supplies in one of the three modes.
let genNet maxN maxM maxCap maxCost =
    gen {
        let! n = Gen.choose (1, maxN)
        let! arcs = genArcs n maxM maxCap -maxCost maxCost
        let! scale = Gen.frequency [ 4, Gen.constant 1L; 1, Gen.constant 1_000_000_007L ]
        let tails = arcs |> Array.map (fun (t, _, _, _) -> t)
        let heads = arcs |> Array.map (fun (_, h, _, _) -> h)
        let caps = arcs |> Array.map (fun (_, _, c, _) -> c)
        let costs = arcs |> Array.map (fun (_, _, _, c) -> c * scale)
        let! mode = Gen.frequency [ 5, Gen.constant FromFlow; 3, Gen.constant Balanced; 2, Gen.constant Anything ]
        let! supplies = genSupplies n tails heads (Array.zeroCreate tails.Length) caps mode
        return { N = n; Tails = tails; Heads = heads; Caps = caps; Costs = costs; Supplies = supplies }
    }

/// Small enough for exhaustive enumeration: at most 4^6 flow vectors.
let tinyNets = Arb.fromGen (genNet 4 4 3 6)
/// Up to 12 nodes and ~30 arcs: for LEMON, Edmonds-Karp and the certificate.
let smallNets = Arb.fromGen (genNet 12 28 9 20)

/// Assert.Throws without NUnit's delegate overload ambiguity.
let throws<'T when 'T :> exn> (code: unit -> unit) : 'T = Assert.Throws<'T>(Action code)

/// The certificate's violations, one line.
let describe (report: FlowCertificateReport) = String.Join("; ", report.Violations |> Seq.map _.Message)

let solve (net: Net) =
    let solver = MinCostFlow.FromProblem net.Problem
    let status = solver.Solve()
    solver, status

// ================================================================================================
// Independent oracles (written here, sharing no code with the library)
// ================================================================================================

/// Every integer vector x with lo <= x <= hi, as an odometer.
let allVectors (lo: int64[]) (hi: int64[]) =
    seq {
        let x = Array.copy lo
        let mutable running = true

        while running do
            yield Array.copy x
            let mutable i = 0
            let mutable carry = true

            while carry && i < x.Length do
                if x.[i] < hi.[i] then
                    x.[i] <- x.[i] + 1L
                    carry <- false
                else
                    x.[i] <- lo.[i]
                    i <- i + 1

            if carry then
                running <- false
    }

let costOf (costs: int64[]) (x: int64[]) =
    Array.fold2 (fun (s: BigInteger) c f -> s + BigInteger(c: int64) * BigInteger(f: int64)) BigInteger.Zero costs x

/// The cheapest flow meeting every supply exactly within [lo, hi], by enumeration; None if there is none.
let bruteForceMinCost n tails heads (lo: int64[]) (hi: int64[]) (costs: int64[]) (supplies: int64[]) =
    allVectors lo hi
    |> Seq.filter (fun x -> netOutflow n tails heads x = supplies)
    |> Seq.map (costOf costs)
    |> Seq.fold
        (fun best c ->
            match best with
            | Some b when b <= c -> best
            | _ -> Some c)
        None

/// Max-flow-with-min-cost by enumeration: supply nodes send 0..b net, demand nodes absorb 0..-b net, others conserve;
/// the largest total sent, then the cheapest. Returns (value, cost).
let bruteForceMaxFlowMinCost (net: Net) =
    allVectors (Array.zeroCreate net.M) net.Caps
    |> Seq.choose (fun x ->
        let out = netOutflow net.N net.Tails net.Heads x

        let ok =
            Array.forall2
                (fun o b ->
                    if b > 0L then 0L <= o && o <= b
                    elif b < 0L then b <= o && o <= 0L
                    else o = 0L)
                out
                net.Supplies

        if ok then
            let value = Array.fold2 (fun s o b -> if b > 0L then s + o else s) 0L out net.Supplies
            Some(value, costOf net.Costs x)
        else
            None)
    |> Seq.fold
        (fun best (v, c) ->
            match best with
            | Some(bv, bc) when bv > v || (bv = v && bc <= c) -> best
            | _ -> Some(v, c))
        None

/// Edmonds-Karp on a capacity matrix: a super source feeds every supply node (capacity b), every demand node feeds a
/// super sink (capacity -b); parallel arcs add up and self-loops are dropped. Returns the maximum flow value.
let edmondsKarp (net: Net) =
    let n = net.N
    let s, t = n, n + 1
    let cap = Array2D.zeroCreate<int64> (n + 2) (n + 2)

    for a in 0 .. net.M - 1 do
        if net.Tails.[a] <> net.Heads.[a] then
            cap.[net.Tails.[a], net.Heads.[a]] <- cap.[net.Tails.[a], net.Heads.[a]] + net.Caps.[a]

    for v in 0 .. n - 1 do
        if net.Supplies.[v] > 0L then
            cap.[s, v] <- net.Supplies.[v]
        elif net.Supplies.[v] < 0L then
            cap.[v, t] <- -net.Supplies.[v]

    let mutable total = 0L
    let mutable searching = true

    while searching do
        // Breadth-first search for a shortest augmenting path in the residual matrix.
        let parent = Array.create (n + 2) -1
        parent.[s] <- s
        let queue = Collections.Generic.Queue<int>([ s ])

        while queue.Count > 0 && parent.[t] < 0 do
            let u = queue.Dequeue()

            for v in 0 .. n + 1 do
                if parent.[v] < 0 && cap.[u, v] > 0L then
                    parent.[v] <- u
                    queue.Enqueue v

        if parent.[t] < 0 then
            searching <- false
        else
            let mutable bottleneck = Int64.MaxValue
            let mutable v = t

            while v <> s do
                bottleneck <- min bottleneck cap.[parent.[v], v]
                v <- parent.[v]

            v <- t

            while v <> s do
                cap.[parent.[v], v] <- cap.[parent.[v], v] - bottleneck
                cap.[v, parent.[v]] <- cap.[v, parent.[v]] + bottleneck
                v <- parent.[v]

            total <- total + bottleneck

    total

// ================================================================================================
// LEMON, the peer
// ================================================================================================

let private isCI =
    String.Equals(Environment.GetEnvironmentVariable "CI", "true", StringComparison.OrdinalIgnoreCase)

/// LEMON must be there in CI; locally a missing library skips the test with the command that builds it.
let requireLemon () =
    if not Lemon.IsAvailable then
        let message = $"LEMON peer unavailable: {Lemon.UnavailableReason}"

        if isCI then
            Assert.Fail message
        else
            Expecto.Tests.skiptest message
    // The cases are tiny: a CostScaling child still running after 5 s is looping (the LEMON bug), not working.
    Lemon.SetIsolationTimeout(TimeSpan.FromSeconds 5.0)

let lemonSolve algorithm (net: Net) = Lemon.MinCostFlow(algorithm, net.N, net.Tails, net.Heads, null, net.Caps, net.Costs, net.Supplies)

let statusOfLemon =
    function
    | LemonStatus.Optimal -> MinCostFlowStatus.Optimal
    | LemonStatus.Infeasible -> MinCostFlowStatus.Infeasible
    | LemonStatus.Unbalanced -> MinCostFlowStatus.Unbalanced
    | s -> fail "LEMON returned %A" s

let algorithms = [ LemonAlgorithm.NetworkSimplex; LemonAlgorithm.CostScaling ]

/// LEMON's answer, or None when its CostScaling crashed or hung (a LEMON 1.3.1 memory bug, isolated by the shim; see
/// native/README.md). NetworkSimplex runs in-process and must always answer, so every case meets at least one peer.
let lemonAnswer algorithm (result: LemonResult) =
    match result.Status with
    | LemonStatus.Crashed
    | LemonStatus.TimedOut when algorithm = LemonAlgorithm.CostScaling -> None
    | _ -> Some result

// ================================================================================================
// flow.ssp-optimal, flow.integrality, flow.status
// ================================================================================================

let ``optimum equals brute force on tiny networks`` () =
    Prop.forAll tinyNets (fun net ->
        let solver, status = solve net

        if Array.sum net.Supplies <> 0L then
            expect (status = MinCostFlowStatus.Unbalanced) $"expected Unbalanced, got {status}"
        else
            match bruteForceMinCost net.N net.Tails net.Heads (Array.zeroCreate net.M) net.Caps net.Costs net.Supplies with
            | None -> expect (status = MinCostFlowStatus.Infeasible) $"no feasible flow exists, but status {status}"
            | Some best ->
                expect (status = MinCostFlowStatus.Optimal) $"a feasible flow exists, but status {status}"
                expect (BigInteger(solver.OptimalCost()) = best) $"cost {solver.OptimalCost()}, brute force {best}"
                expect (costOf net.Costs (solver.Flows()) = best) "the flows do not cost what OptimalCost says")

let ``optimum and status equal LEMON network simplex and cost scaling`` () =
    requireLemon ()

    Prop.forAll smallNets (fun net ->
        let solver, status = solve net

        for algorithm in algorithms do
            match lemonAnswer algorithm (lemonSolve algorithm net) with
            | None -> ()
            | Some peer ->
                expect (statusOfLemon peer.Status = status) $"{algorithm}: LEMON {peer.Status}, ours {status}"

                if status = MinCostFlowStatus.Optimal then
                    expect (peer.Cost = solver.OptimalCost()) $"{algorithm}: LEMON cost {peer.Cost}, ours {solver.OptimalCost()}")

let ``our flows and potentials pass the certificate with zero gap`` () =
    Prop.forAll smallNets (fun net ->
        let solver, status = solve net

        if status = MinCostFlowStatus.Optimal then
            let report = FlowCertificate.Check(net.Problem, solver.Flows(), solver.Potentials())
            expect report.Valid $"certificate rejected: {describe report}"
            expect report.Gap.IsZero $"gap {report.Gap}"
            expect (report.PrimalCost = BigInteger(solver.OptimalCost())) $"primal {report.PrimalCost} vs {solver.OptimalCost()}"
            // The documented range of the potentials: 0 <= p(v) <= (n+1) * max|c|.
            let maxCost =
                if net.M = 0 then
                    0L
                else
                    net.Costs |> Array.map abs |> Array.max

            for v in 0 .. net.N - 1 do
                let p = solver.Potential v
                expect (0L <= p && BigInteger p <= BigInteger(net.N + 1) * BigInteger maxCost) $"potential {p} at node {v} out of range")

let ``LEMON's flows and potentials pass our certificate checker`` () =
    requireLemon ()

    Prop.forAll smallNets (fun net ->
        // The checker never saw LEMON's code: accepting LEMON's duals and agreeing on the cost tests it independently.
        for algorithm in algorithms do
            match lemonAnswer algorithm (lemonSolve algorithm net) with
            | Some peer when peer.Status = LemonStatus.Optimal ->
                let report = FlowCertificate.Check(net.Problem, peer.Flows, peer.Potentials)
                expect report.Valid $"{algorithm}: {describe report}"
                expect (report.PrimalCost = BigInteger peer.Cost) $"{algorithm}: primal {report.PrimalCost}, LEMON {peer.Cost}"
            | _ -> ())

let ``weak duality: any potentials give a dual objective at most the optimum`` () =
    let cases =
        gen {
            let! net = genNet 10 24 9 20
            let! p = Gen.arrayOfLength net.N (Gen.choose (-60, 60))
            return net, Array.map int64 p
        }

    Prop.forAll (Arb.fromGen cases) (fun (net, p) ->
        let solver, status = solve net

        if status = MinCostFlowStatus.Optimal then
            let report = FlowCertificate.Check(net.Problem, solver.Flows(), p)

            expect
                (report.DualObjective <= BigInteger(solver.OptimalCost()))
                $"dual {report.DualObjective} > optimum {solver.OptimalCost()}"

            expect (report.Gap.Sign >= 0) $"negative gap {report.Gap} for a feasible flow"
            // Valid means optimal: random potentials may only be accepted with zero gap.
            if report.Valid then
                expect report.Gap.IsZero "valid but gap non-zero")

type Perturbation =
    | AddOne
    | AboveCapacity
    | Negative

let ``certificate rejects perturbed flows`` () =
    let cases =
        gen {
            let! net = genNet 10 24 9 20
            let! pick = Gen.choose (0, 10_000)
            let! kind = Gen.elements [ AddOne; AboveCapacity; Negative ]
            return net, pick, kind
        }

    Prop.forAll (Arb.fromGen cases) (fun (net, pick, kind) ->
        let solver, status = solve net

        if status = MinCostFlowStatus.Optimal && net.M > 0 then
            let a = pick % net.M
            let x = solver.Flows()

            let has kindWanted (pred: FlowViolation -> bool) (report: FlowCertificateReport) =
                report.Violations |> Seq.exists (fun v -> v.Kind = kindWanted && pred v)

            match kind with
            | AddOne when net.Tails.[a] <> net.Heads.[a] ->
                x.[a] <- x.[a] + 1L
                let report = FlowCertificate.Check(net.Problem, x, solver.Potentials())
                expect (not report.Valid) "accepted"

                expect
                    (has FlowViolationKind.Conservation (fun v -> v.Node = net.Tails.[a]) report)
                    "no conservation violation at the tail"

                expect
                    (has FlowViolationKind.Conservation (fun v -> v.Node = net.Heads.[a]) report)
                    "no conservation violation at the head"

                if x.[a] > net.Caps.[a] then
                    expect (has FlowViolationKind.CapacityBound (fun v -> v.Arc = a) report) "no capacity violation"
            | AddOne -> ()
            | AboveCapacity ->
                x.[a] <- net.Caps.[a] + 1L
                let report = FlowCertificate.Check(net.Problem, x, solver.Potentials())
                expect (not report.Valid) "accepted"
                expect (has FlowViolationKind.CapacityBound (fun v -> v.Arc = a) report) "no capacity violation at the arc"
            | Negative ->
                x.[a] <- -1L
                let report = FlowCertificate.Check(net.Problem, x, solver.Potentials())
                expect (not report.Valid) "accepted"
                expect (has FlowViolationKind.CapacityBound (fun v -> v.Arc = a) report) "no capacity violation at the arc")

let ``certificate rejects potentials that price a residual arc negatively`` () =
    let cases =
        gen {
            let! net = genNet 10 24 9 20
            let! pick = Gen.choose (0, 10_000)
            return net, pick
        }

    Prop.forAll (Arb.fromGen cases) (fun (net, pick) ->
        let solver, status = solve net

        let candidates =
            [
                for a in 0 .. net.M - 1 do
                    if net.Tails.[a] <> net.Heads.[a] then
                        a
            ]

        if status = MinCostFlowStatus.Optimal && not candidates.IsEmpty then
            let a = candidates.[pick % candidates.Length]
            let x = solver.Flows()
            let p = solver.Potentials()
            let t, h, c = net.Tails.[a], net.Heads.[a], net.Costs.[a]
            // Forward residual (x < u): make c - p(t) + p(h) = -1. Else backward residual (x > 0): make it +1.
            if x.[a] < net.Caps.[a] then
                p.[t] <- p.[h] + c + 1L
            elif x.[a] > 0L then
                p.[h] <- p.[t] - c + 1L

            if x.[a] < net.Caps.[a] || x.[a] > 0L then
                let report = FlowCertificate.Check(net.Problem, x, p)
                expect (not report.Valid) "wrong potentials accepted"

                expect
                    (report.Violations |> Seq.exists (fun v -> v.Kind = FlowViolationKind.ReducedCost && v.Arc = a))
                    $"no reduced-cost violation at arc {a}"

                expect (report.Gap.Sign > 0) $"gap {report.Gap} should be positive")

let ``Solve status follows the balance and max-flow tests, and non-optimal readings are zero`` () =
    Prop.forAll smallNets (fun net ->
        let solver, status = solve net
        let total = Array.sum net.Supplies
        let supplied = net.Supplies |> Array.filter (fun b -> b > 0L) |> Array.sum

        let expected =
            if total <> 0L then
                MinCostFlowStatus.Unbalanced
            elif edmondsKarp net < supplied then
                MinCostFlowStatus.Infeasible
            else
                MinCostFlowStatus.Optimal

        expect (status = expected) $"status {status}, expected {expected}"
        expect (solver.Status = status) "Status property differs from Solve's result"

        if status = MinCostFlowStatus.Optimal then
            expect (solver.MaximumFlow() = supplied) $"MaximumFlow {solver.MaximumFlow()}, total supply {supplied}"
        else
            expect (solver.Flows() |> Array.forall ((=) 0L)) "flows not zero"
            expect ([ 0 .. net.M - 1 ] |> List.forall (fun a -> solver.Flow a = 0L)) "Flow(arc) not zero"
            expect (solver.Potentials() |> Array.forall ((=) 0L)) "potentials not zero"
            expect (solver.OptimalCost() = 0L && solver.MaximumFlow() = 0L) "cost or maximum flow not zero")

let ``self-loops: negative ones are saturated, the others carry nothing`` () =
    Prop.forAll smallNets (fun net ->
        let solver, status = solve net

        if status = MinCostFlowStatus.Optimal then
            for a in 0 .. net.M - 1 do
                if net.Tails.[a] = net.Heads.[a] then
                    let want = if net.Costs.[a] < 0L then net.Caps.[a] else 0L
                    expect (solver.Flow a = want) $"self-loop {a} (cost {net.Costs.[a]}): flow {solver.Flow a}, expected {want}")

let ``solving twice gives bit-identical flows, cost and potentials`` () =
    Prop.forAll smallNets (fun net ->
        let first, s1 = solve net
        let second, s2 = solve net
        let again = s2 = second.Solve()
        expect (s1 = s2 && again) "statuses differ"
        expect (first.Flows() = second.Flows()) "flows differ"
        expect (first.Potentials() = second.Potentials()) "potentials differ"
        expect (first.OptimalCost() = second.OptimalCost()) "costs differ")

// ================================================================================================
// flow.max-flow-min-cost
// ================================================================================================

let ``SolveMaxFlowWithMinCost sends the Edmonds-Karp maximum and is certified for the supplies it realizes`` () =
    Prop.forAll smallNets (fun net ->
        let solver = MinCostFlow.FromProblem net.Problem
        let status = solver.SolveMaxFlowWithMinCost()
        expect (status = MinCostFlowStatus.Optimal) $"status {status}"
        let value = edmondsKarp net
        expect (solver.MaximumFlow() = value) $"MaximumFlow {solver.MaximumFlow()}, Edmonds-Karp {value}"
        let x = solver.Flows()
        let realized = netOutflow net.N net.Tails net.Heads x

        for v in 0 .. net.N - 1 do
            let b, o = net.Supplies.[v], realized.[v]

            let ok =
                if b > 0L then 0L <= o && o <= b
                elif b < 0L then b <= o && o <= 0L
                else o = 0L

            expect ok $"node {v}: net outflow {o} outside what supply {b} allows"

        let sent = Array.fold2 (fun s o b -> if b > 0L then s + o else s) 0L realized net.Supplies
        expect (sent = value) $"supply nodes send {sent}, MaximumFlow {value}"
        let report = FlowCertificate.Check({ net with Supplies = realized }.Problem, x, solver.Potentials())
        expect report.Valid $"{describe report}"
        expect (report.PrimalCost = BigInteger(solver.OptimalCost())) "cost differs from the flows' cost")

let ``SolveMaxFlowWithMinCost is the cheapest maximum flow (brute force)`` () =
    Prop.forAll tinyNets (fun net ->
        let solver = MinCostFlow.FromProblem net.Problem
        let status = solver.SolveMaxFlowWithMinCost()
        expect (status = MinCostFlowStatus.Optimal) $"status {status}"

        match bruteForceMaxFlowMinCost net with
        | None -> fail "the zero flow is always allowed"
        | Some(value, cost) ->
            expect (solver.MaximumFlow() = value) $"value {solver.MaximumFlow()}, brute force {value}"
            expect (BigInteger(solver.OptimalCost()) = cost) $"cost {solver.OptimalCost()}, brute force {cost}")

// ================================================================================================
// flow.range-checks
// ================================================================================================

/// Values from small to the edge of int64.
let genHuge =
    Gen.elements
        [
            0L
            1L
            3L
            1L <<< 20
            1L <<< 31
            1L <<< 40
            1L <<< 52
            1L <<< 61
            Int64.MaxValue / 3L
            Int64.MaxValue
        ]

let hugeNets =
    gen {
        let! n = Gen.choose (1, 5)
        let! arcs = genArcs n 6 1 0 0
        let! caps = Gen.arrayOfLength arcs.Length genHuge

        let! costs =
            Gen.arrayOfLength
                arcs.Length
                (gen {
                    let! c = genHuge
                    let! negative = Gen.elements [ true; false ]
                    return if negative then -c else c
                })

        let tails = arcs |> Array.map (fun (t, _, _, _) -> t)
        let heads = arcs |> Array.map (fun (_, h, _, _) -> h)
        let! mode = Gen.elements [ FromFlow; Anything ]

        let! supplies =
            match mode with
            | FromFlow ->
                gen {
                    // A flow that is a fraction of each capacity, so its outflows stay in range.
                    let! shifts = Gen.arrayOfLength arcs.Length (Gen.choose (0, 3))
                    let x = Array.map2 (fun (c: int64) s -> c >>> (2 * s)) caps shifts
                    return netOutflow n tails heads x
                }
            | _ -> Gen.arrayOfLength n genHuge |> Gen.map (Array.mapi (fun i b -> if i % 2 = 0 then b else -b))

        return { N = n; Tails = tails; Heads = heads; Caps = caps; Costs = costs; Supplies = supplies }
    }

let ``range checks: a range status exactly when a bound is exceeded, optimal answers exact`` () =
    Prop.forAll (Arb.fromGen hugeNets) (fun net ->
        let solver, status = solve net
        let big (x: int64) = BigInteger x
        let maxLong = big Int64.MaxValue
        let maxCost = net.Costs |> Array.fold (fun m c -> max m (BigInteger.Abs(big c))) BigInteger.Zero
        let costBad = maxCost * BigInteger(net.N + 1) > maxLong
        let load = Array.init net.N (fun v -> BigInteger.Abs(big net.Supplies.[v]))

        for a in 0 .. net.M - 1 do
            load.[net.Tails.[a]] <- load.[net.Tails.[a]] + big net.Caps.[a]
            load.[net.Heads.[a]] <- load.[net.Heads.[a]] + big net.Caps.[a]

        let plus = net.Supplies |> Array.sumBy (fun b -> if b > 0L then big b else BigInteger.Zero)
        let minus = net.Supplies |> Array.sumBy (fun b -> if b < 0L then -(big b) else BigInteger.Zero)
        let capacityBad = plus > maxLong || minus > maxLong || load |> Array.exists (fun l -> l > maxLong)

        if costBad then
            expect (status = MinCostFlowStatus.BadCostRange) $"cost bound exceeded, status {status}"
        elif capacityBad then
            expect (status = MinCostFlowStatus.BadCapacityRange) $"capacity bound exceeded, status {status}"
        elif plus <> minus then
            expect (status = MinCostFlowStatus.Unbalanced) $"unbalanced, status {status}"
        else
            match status with
            | MinCostFlowStatus.Optimal ->
                let report = FlowCertificate.Check(net.Problem, solver.Flows(), solver.Potentials())
                expect report.Valid $"{describe report}"
                expect (report.PrimalCost = big (solver.OptimalCost())) "cost not exact"
            | MinCostFlowStatus.Infeasible -> expect (big (edmondsKarp net) < plus) "Infeasible, but the max flow carries the supply"
            | MinCostFlowStatus.BadCostRange ->
                // Only the total cost can be out of range here; then the problem itself is feasible.
                expect (big (edmondsKarp net) = plus) "BadCostRange on an infeasible problem"
            | s -> fail "unexpected status %A" s)

let ``range checks at their boundaries`` () =
    let oneArc n cap cost supply =
        let solver = MinCostFlow()
        solver.AddArc(0, n - 1, cap, cost) |> ignore
        solver.SetNodeSupply(0, supply)
        solver.SetNodeSupply(n - 1, -supply)
        solver.Solve()
    // (n+1) * |c| with n = 2: exactly long.MaxValue / 3 * 3 fits, one more does not.
    Assert.That(oneArc 2 1L (Int64.MaxValue / 3L) 1L, Is.EqualTo MinCostFlowStatus.Optimal)
    Assert.That(oneArc 2 1L (Int64.MaxValue / 3L + 1L) 1L, Is.EqualTo MinCostFlowStatus.BadCostRange)
    Assert.That(oneArc 2 1L (-(Int64.MaxValue / 3L) - 1L) 1L, Is.EqualTo MinCostFlowStatus.BadCostRange)
    Assert.That(oneArc 2 1L Int64.MinValue 1L, Is.EqualTo MinCostFlowStatus.BadCostRange)
    // Node load |b| + out + in: b = 1, cap = max - 1 fits; cap = max does not.
    Assert.That(oneArc 2 (Int64.MaxValue - 1L) 0L 1L, Is.EqualTo MinCostFlowStatus.Optimal)
    Assert.That(oneArc 2 Int64.MaxValue 0L 1L, Is.EqualTo MinCostFlowStatus.BadCapacityRange)
    // Total cost 2^40 * 2^30 = 2^70 does not fit although every bound does.
    Assert.That(oneArc 2 (1L <<< 30) (1L <<< 40) (1L <<< 30), Is.EqualTo MinCostFlowStatus.BadCostRange)
    // Total supply beyond int64 (two supply nodes of max / 2 + 1).
    let solver = MinCostFlow()
    solver.SetNodeSupply(0, Int64.MaxValue / 2L + 1L)
    solver.SetNodeSupply(1, Int64.MaxValue / 2L + 1L)
    Assert.That(solver.Solve(), Is.EqualTo MinCostFlowStatus.BadCapacityRange)

let ``an empty network is optimal with cost zero, and changes reset the status`` () =
    let solver = MinCostFlow()
    Assert.That(solver.Status, Is.EqualTo MinCostFlowStatus.NotSolved)
    Assert.That(solver.Solve(), Is.EqualTo MinCostFlowStatus.Optimal)
    Assert.That(solver.OptimalCost(), Is.EqualTo 0L)
    let arc = solver.AddArc(0, 1, 5L, -2L)
    Assert.That(arc, Is.EqualTo 0)
    Assert.That(solver.Status, Is.EqualTo MinCostFlowStatus.NotSolved)
    Assert.That(solver.Solve(), Is.EqualTo MinCostFlowStatus.Optimal)
    // A negative arc between two zero-supply nodes without a way back carries nothing: the supplies must hold.
    Assert.That(solver.Flow arc, Is.EqualTo 0L)

    Assert.That(
        (solver.NumNodes, solver.NumArcs, solver.Tail arc, solver.Head arc, solver.Capacity arc, solver.UnitCost arc),
        Is.EqualTo((2, 1, 0, 1, 5L, -2L))
    )

let ``bad arguments name the argument`` () =
    let solver = MinCostFlow()
    let e = throws<ArgumentOutOfRangeException> (fun () -> solver.AddArc(0, 1, -1L, 0L) |> ignore)
    Assert.That(e.ParamName, Is.EqualTo "capacity")
    let e = throws<ArgumentOutOfRangeException> (fun () -> solver.AddArc(-1, 1, 1L, 0L) |> ignore)
    Assert.That(e.ParamName, Is.EqualTo "tail")
    let e = throws<ArgumentOutOfRangeException> (fun () -> solver.SetNodeSupply(-2, 1L))
    Assert.That(e.ParamName, Is.EqualTo "node")
    let bad = FlowProblem(2, [| 0 |], [| 2 |], [| 1L |], [| 0L |], [| 0L; 0L |])
    throws<ArgumentException> (fun () -> MinCostFlow.FromProblem bad |> ignore) |> ignore

    throws<ArgumentException> (fun () -> FlowCertificate.Check(bad, [| 0L |], [| 0L; 0L |]) |> ignore)
    |> ignore

let ``LEMON shim reports its versions`` () =
    requireLemon ()
    Assert.That(Lemon.ShimVersion, Is.EqualTo 1)
    Assert.That(Lemon.LemonVersion, Does.Match(@"^\d+\.\d+"))

let ``a LEMON CostScaling crash is contained and reported, never taken for an answer`` () =
    requireLemon ()
    // Found by the DIMACS property: LEMON 1.3.1's CostScaling overruns a bucket array on this input (AddressSanitizer:
    // heap-buffer-overflow in priceRefinement). The shim runs it in a child process, so this process must survive, and
    // the result must be Crashed/TimedOut or else agree with NetworkSimplex.
    let tails = [| 1; 3; 3; 0; 2; 3; 2; 3; 3; 0; 1; 1; 0; 0; 1; 3; 1; 2; 0; 2 |]
    let heads = [| 1; 2; 3; 0; 0; 1; 0; 3; 1; 0; 2; 0; 0; 2; 0; 0; 1; 2; 1; 1 |]
    let lower = [| 0L; 1L; 0L; 1L; 2L; 1L; 0L; 0L; 0L; 0L; 1L; 3L; 0L; 0L; 0L; 0L; 0L; 3L; 0L; 0L |]
    let caps = [| 1L; 5L; 7L; 5L; 2L; 9L; 1L; 1L; 2L; 6L; 9L; 12L; 7L; 8L; 6L; 8L; 5L; 12L; 0L; 5L |]
    let costs = [| 3L; -6L; 4L; -6L; 3L; 1L; -5L; 0L; 2L; 4L; 2L; 1L; -4L; -1L; -5L; -4L; 3L; 6L; -5L; 3L |]
    let supplies = [| -12L; 20L; -13L; 5L |]
    let run algorithm = Lemon.MinCostFlow(algorithm, 4, tails, heads, lower, caps, costs, supplies)
    let simplex = run LemonAlgorithm.NetworkSimplex
    let scaling = run LemonAlgorithm.CostScaling
    Assert.That(simplex.Status, Is.EqualTo LemonStatus.Optimal)

    match scaling.Status with
    | LemonStatus.Crashed
    | LemonStatus.TimedOut -> Assert.That(scaling.Flows |> Array.forall ((=) 0L), "no flows from a crashed run")
    | _ -> Assert.That((scaling.Status, scaling.Cost), Is.EqualTo((simplex.Status, simplex.Cost)))
    // And our own solver agrees with the in-process peer.
    let ours = Dimacs.SolveDimacs(DimacsProblem(4, tails, heads, lower, caps, costs, supplies))
    Assert.That(ours.Cost, Is.EqualTo simplex.Cost)

// ================================================================================================
// DIMACS and lower bounds: flow.dimacs, flow.lower-bounds
// ================================================================================================

/// A DIMACS problem with lower bounds 0..3 and capacities lower..lower+maxExtra.
let genDimacs maxN maxM maxExtra =
    gen {
        let! n = Gen.choose (1, maxN)
        let! arcs = genArcs n maxM maxExtra -6 6
        let! lower = Gen.arrayOfLength arcs.Length (Gen.frequency [ 2, Gen.constant 0; 1, Gen.choose (1, 3) ])
        let tails = arcs |> Array.map (fun (t, _, _, _) -> t)
        let heads = arcs |> Array.map (fun (_, h, _, _) -> h)
        let low = Array.map int64 lower
        let caps = arcs |> Array.mapi (fun a (_, _, c, _) -> low.[a] + c)
        let costs = arcs |> Array.map (fun (_, _, _, c) -> c)
        let! mode = Gen.frequency [ 5, Gen.constant FromFlow; 2, Gen.constant Balanced; 1, Gen.constant Anything ]
        let! supplies = genSupplies n tails heads low caps mode
        return DimacsProblem(n, tails, heads, low, caps, costs, supplies)
    }

let sameProblem (p: DimacsProblem) (q: DimacsProblem) =
    p.NodeCount = q.NodeCount
    && p.Tails = q.Tails
    && p.Heads = q.Heads
    && p.Lower = q.Lower
    && p.Capacities = q.Capacities
    && p.UnitCosts = q.UnitCosts
    && p.Supplies = q.Supplies

let ``DIMACS write then read gives the same problem`` () =
    Prop.forAll (Arb.fromGen (genDimacs 8 12 6)) (fun p ->
        let text = Dimacs.Write p
        let q = Dimacs.Parse text
        expect (sameProblem p q) $"round trip changed the problem:\n{text}"
        expect (Dimacs.Write q = text) "writing again changed the text")

let ``DIMACS solution lines are a feasible flow of the stated cost`` () =
    Prop.forAll (Arb.fromGen (genDimacs 8 12 6)) (fun p ->
        let solution = Dimacs.SolveDimacs p
        let lines = (Dimacs.FormatSolution(p, solution)).Split('\n', StringSplitOptions.RemoveEmptyEntries)

        if solution.Status <> MinCostFlowStatus.Optimal then
            expect (lines = [| "s " + Dimacs.StatusWord solution.Status |]) $"lines {String.Join('|', lines)}"
        else
            expect (lines.[0] = $"s {solution.Cost}") $"first line {lines.[0]}"
            expect (lines.Length = p.ArcCount + 1) "one f line per arc expected"

            let flows =
                lines.[1..]
                |> Array.mapi (fun a line ->
                    match line.Split(' ') with
                    | [| "f"; src; dst; flow |] ->
                        expect (int src = p.Tails.[a] + 1 && int dst = p.Heads.[a] + 1) $"line {line}: wrong end points"
                        int64 flow
                    | _ -> fail "malformed line %s" line)

            for a in 0 .. p.ArcCount - 1 do
                expect (p.Lower.[a] <= flows.[a] && flows.[a] <= p.Capacities.[a]) $"arc {a}: flow {flows.[a]} outside bounds"

            expect (netOutflow p.NodeCount p.Tails p.Heads flows = p.Supplies) "conservation fails"
            expect (costOf p.UnitCosts flows = BigInteger solution.Cost) "the s line is not the flows' cost")

let ``lower bounds: SolveDimacs equals brute force on tiny problems`` () =
    Prop.forAll (Arb.fromGen (genDimacs 4 4 2)) (fun p ->
        let solution = Dimacs.SolveDimacs p

        if Array.sum p.Supplies <> 0L then
            expect (solution.Status = MinCostFlowStatus.Unbalanced) $"status {solution.Status}"
        else
            match bruteForceMinCost p.NodeCount p.Tails p.Heads p.Lower p.Capacities p.UnitCosts p.Supplies with
            | None -> expect (solution.Status = MinCostFlowStatus.Infeasible) $"status {solution.Status}"
            | Some best ->
                expect (solution.Status = MinCostFlowStatus.Optimal) $"status {solution.Status}"
                expect (BigInteger solution.Cost = best) $"cost {solution.Cost}, brute force {best}")

let ``lower bounds: SolveDimacs equals LEMON, which has them natively`` () =
    requireLemon ()

    Prop.forAll (Arb.fromGen (genDimacs 12 28 9)) (fun p ->
        let solution = Dimacs.SolveDimacs p

        for algorithm in algorithms do
            let result =
                Lemon.MinCostFlow(algorithm, p.NodeCount, p.Tails, p.Heads, p.Lower, p.Capacities, p.UnitCosts, p.Supplies)

            match lemonAnswer algorithm result with
            | None -> ()
            | Some peer ->
                expect (statusOfLemon peer.Status = solution.Status) $"{algorithm}: LEMON {peer.Status}, ours {solution.Status}"

                if solution.Status = MinCostFlowStatus.Optimal then
                    expect (peer.Cost = solution.Cost) $"{algorithm}: LEMON {peer.Cost}, ours {solution.Cost}")

let ``DIMACS comments, blank lines and supplies are read`` () =
    let text = "c a comment\n\np min 3 2\nn 1 4\nc another\nn 3 -4\na 1 2 1 5 3\n  a 2 3 0 4 -1  \n"
    let p = Dimacs.Parse text
    Assert.That(p.NodeCount, Is.EqualTo 3)
    Assert.That(p.Supplies, Is.EqualTo(box [| 4L; 0L; -4L |]))
    Assert.That(p.Tails, Is.EqualTo(box [| 0; 1 |]))
    Assert.That(p.Heads, Is.EqualTo(box [| 1; 2 |]))
    Assert.That(p.Lower, Is.EqualTo(box [| 1L; 0L |]))
    Assert.That(p.Capacities, Is.EqualTo(box [| 5L; 4L |]))
    Assert.That(p.UnitCosts, Is.EqualTo(box [| 3L; -1L |]))

let ``malformed DIMACS lines raise FormatException naming the line`` (text: string, line: int, what: string) =
    let e = throws<DimacsFormatException> (fun () -> Dimacs.Parse text |> ignore)
    Assert.That(e, Is.InstanceOf<FormatException>())
    Assert.That(e.LineNumber, Is.EqualTo line)
    Assert.That(e.Message, Does.Contain what)

    if line > 0 then
        Assert.That(e.Message, Does.StartWith $"line {line}:")

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "flow/min-cost-flow"
        "FlowTests"
        [
            Proofs.prop
                [ "flow.ssp-optimal"; "flow.negative-arc-saturation" ]
                "optimum equals brute force on tiny networks"
                ``optimum equals brute force on tiny networks``
            Proofs.prop
                [ "flow.ssp-optimal"; "flow.integrality"; "flow.status" ]
                "optimum and status equal LEMON network simplex and cost scaling"
                ``optimum and status equal LEMON network simplex and cost scaling``
            Proofs.prop
                [ "flow.certificate"; "flow.integrality" ]
                "our flows and potentials pass the certificate with zero gap"
                ``our flows and potentials pass the certificate with zero gap``
            Proofs.prop
                [ "flow.certificate" ]
                "LEMON's flows and potentials pass our certificate checker"
                ``LEMON's flows and potentials pass our certificate checker``
            Proofs.prop
                [ "flow.certificate" ]
                "weak duality: any potentials give a dual objective at most the optimum"
                ``weak duality: any potentials give a dual objective at most the optimum``
            Proofs.prop [ "flow.certificate" ] "certificate rejects perturbed flows" ``certificate rejects perturbed flows``
            Proofs.prop
                [ "flow.certificate" ]
                "certificate rejects potentials that price a residual arc negatively"
                ``certificate rejects potentials that price a residual arc negatively``
            Proofs.prop
                [ "flow.status" ]
                "Solve status follows the balance and max-flow tests, and non-optimal readings are zero"
                ``Solve status follows the balance and max-flow tests, and non-optimal readings are zero``
            Proofs.prop
                [ "flow.negative-arc-saturation" ]
                "self-loops: negative ones are saturated, the others carry nothing"
                ``self-loops: negative ones are saturated, the others carry nothing``
            Proofs.prop
                [ "flow.deterministic" ]
                "solving twice gives bit-identical flows, cost and potentials"
                ``solving twice gives bit-identical flows, cost and potentials``
            Proofs.prop
                [ "flow.max-flow-min-cost" ]
                "SolveMaxFlowWithMinCost sends the Edmonds-Karp maximum and is certified for the supplies it realizes"
                ``SolveMaxFlowWithMinCost sends the Edmonds-Karp maximum and is certified for the supplies it realizes``
            Proofs.prop
                [ "flow.max-flow-min-cost" ]
                "SolveMaxFlowWithMinCost is the cheapest maximum flow (brute force)"
                ``SolveMaxFlowWithMinCost is the cheapest maximum flow (brute force)``
            Proofs.prop
                [ "flow.range-checks" ]
                "range checks: a range status exactly when a bound is exceeded, optimal answers exact"
                ``range checks: a range status exactly when a bound is exceeded, optimal answers exact``
            Proofs.test [] "range checks at their boundaries" ``range checks at their boundaries``
            Proofs.test
                []
                "an empty network is optimal with cost zero, and changes reset the status"
                ``an empty network is optimal with cost zero, and changes reset the status``
            Proofs.test [] "bad arguments name the argument" ``bad arguments name the argument``
            Proofs.test [] "LEMON shim reports its versions" ``LEMON shim reports its versions``
            Proofs.test
                []
                "a LEMON CostScaling crash is contained and reported, never taken for an answer"
                ``a LEMON CostScaling crash is contained and reported, never taken for an answer``
            Proofs.prop [ "flow.dimacs" ] "DIMACS write then read gives the same problem" ``DIMACS write then read gives the same problem``
            Proofs.prop
                [ "flow.dimacs"; "flow.lower-bounds" ]
                "DIMACS solution lines are a feasible flow of the stated cost"
                ``DIMACS solution lines are a feasible flow of the stated cost``
            Proofs.prop
                [ "flow.lower-bounds" ]
                "lower bounds: SolveDimacs equals brute force on tiny problems"
                ``lower bounds: SolveDimacs equals brute force on tiny problems``
            Proofs.prop
                [ "flow.lower-bounds" ]
                "lower bounds: SolveDimacs equals LEMON, which has them natively"
                ``lower bounds: SolveDimacs equals LEMON, which has them natively``
            Proofs.test [] "DIMACS comments, blank lines and supplies are read" ``DIMACS comments, blank lines and supplies are read``
            Proofs.cases
                []
                "malformed DIMACS lines raise FormatException naming the line"
                [
                    "\"p min 2 1\\na 1 2 0 5\\n\", 2, \"6 fields\"",
                    (fun () -> ``malformed DIMACS lines raise FormatException naming the line`` ("p min 2 1\na 1 2 0 5\n", 2, "6 fields"))
                    "\"x foo\\n\", 1, \"unknown line type 'x'\"",
                    (fun () -> ``malformed DIMACS lines raise FormatException naming the line`` ("x foo\n", 1, "unknown line type 'x'"))
                    "\"p min 2 1\\na 1 3 0 5 1\\n\", 2, \"DST 3 is out of range 1..2\"",
                    (fun () ->
                        ``malformed DIMACS lines raise FormatException naming the line`` (
                            "p min 2 1\na 1 3 0 5 1\n",
                            2,
                            "DST 3 is out of range 1..2"
                        ))
                    "\"p min 2 1\\na 0 2 0 5 1\\n\", 2, \"SRC 0 is out of range 1..2\"",
                    (fun () ->
                        ``malformed DIMACS lines raise FormatException naming the line`` (
                            "p min 2 1\na 0 2 0 5 1\n",
                            2,
                            "SRC 0 is out of range 1..2"
                        ))
                    "\"p min 2 1\\na 1 2 6 5 1\\n\", 2, \"LOW 6 > CAP 5\"",
                    (fun () ->
                        ``malformed DIMACS lines raise FormatException naming the line`` ("p min 2 1\na 1 2 6 5 1\n", 2, "LOW 6 > CAP 5"))
                    "\"p min 2 1\\na 1 2 -1 5 1\\n\", 2, \"LOW is -1\"",
                    (fun () ->
                        ``malformed DIMACS lines raise FormatException naming the line`` ("p min 2 1\na 1 2 -1 5 1\n", 2, "LOW is -1"))
                    "\"c hi\\na 1 2 0 5 1\\n\", 2, \"missing p line\"",
                    (fun () ->
                        ``malformed DIMACS lines raise FormatException naming the line`` ("c hi\na 1 2 0 5 1\n", 2, "missing p line"))
                    "\"c only comments\\n\", 0, \"missing p line\"",
                    (fun () -> ``malformed DIMACS lines raise FormatException naming the line`` ("c only comments\n", 0, "missing p line"))
                    "\"p min 2 1\\np min 2 1\\n\", 2, \"duplicate p line\"",
                    (fun () ->
                        ``malformed DIMACS lines raise FormatException naming the line`` ("p min 2 1\np min 2 1\n", 2, "duplicate p line"))
                    "\"p min 2 2\\na 1 2 0 5 1\\n\", 0, \"declares 2 arcs, but 1 a lines\"",
                    (fun () ->
                        ``malformed DIMACS lines raise FormatException naming the line`` (
                            "p min 2 2\na 1 2 0 5 1\n",
                            0,
                            "declares 2 arcs, but 1 a lines"
                        ))
                    "\"p min 2 1\\na 1 2 0 5 1\\na 1 2 0 5 1\\n\", 3, \"more a lines than the 1 arcs\"",
                    (fun () ->
                        ``malformed DIMACS lines raise FormatException naming the line`` (
                            "p min 2 1\na 1 2 0 5 1\na 1 2 0 5 1\n",
                            3,
                            "more a lines than the 1 arcs"
                        ))
                    "\"p max 2 1\\n\", 1, \"problem type is 'max'\"",
                    (fun () -> ``malformed DIMACS lines raise FormatException naming the line`` ("p max 2 1\n", 1, "problem type is 'max'"))
                    "\"p min 2\\n\", 1, \"4 fields\"",
                    (fun () -> ``malformed DIMACS lines raise FormatException naming the line`` ("p min 2\n", 1, "4 fields"))
                    "\"p min 2 0\\nn 1 x\\n\", 2, \"SUPPLY 'x' is not a 64-bit integer\"",
                    (fun () ->
                        ``malformed DIMACS lines raise FormatException naming the line`` (
                            "p min 2 0\nn 1 x\n",
                            2,
                            "SUPPLY 'x' is not a 64-bit integer"
                        ))
                    "\"p min 2 0\\nn 1 3\\nn 1 4\\n\", 3, \"second n line for node 1\"",
                    (fun () ->
                        ``malformed DIMACS lines raise FormatException naming the line`` (
                            "p min 2 0\nn 1 3\nn 1 4\n",
                            3,
                            "second n line for node 1"
                        ))
                    "\"p min 2 0\\nn 3 1\\n\", 2, \"ID 3 is out of range\"",
                    (fun () ->
                        ``malformed DIMACS lines raise FormatException naming the line`` ("p min 2 0\nn 3 1\n", 2, "ID 3 is out of range"))
                ]
        ]
