/// OR-Tools' SimpleMinCostFlow as a flow solver: the reference, OR-Tools and LEMON agree on status and cost; OR-Tools'
/// statuses map onto the project's; maxscore and base through OR-Tools are certified optimal with the reference's objective.
/// Theorems: proofs/min-cost-flow.md (flow.peers-agree, flow.residual-potentials), proofs/maxscore.md (maxscore.ortools).
module Reference.Tests.OrToolsTests

open System
open System.Numerics
open NUnit.Framework
open FsCheck
open FsCheck.FSharp
open Google.OrTools.Graph
open Reference.Flow
open Reference.Harness
open Reference.Harness.Algorithms
open Reference.Harness.Registry
open Reference.Kernels.Flow
open Reference.Kernels.Routing
open Reference.Tests.Proofs
open Reference.Tests.FlowTests

let private expect condition (message: string) =
    if not condition then
        raise (Exception message)

/// 2^62 and 2^63 - 1: a cost in this range times (n + 1) >= 2 overflows int64, for every solver's range rule.
let private hugeCost = Gen.choose64 (1L <<< 62, Int64.MaxValue)

/// A small network (FlowTests.genNet: negative costs, self-loops, parallel arcs, feasible, infeasible and unbalanced
/// supplies); in one case of six, when the reference finds it optimal and it has an arc, one arc's cost is replaced by a
/// huge one of either sign, which must give BadCostRange everywhere. (OR-Tools checks balance and feasibility before the
/// cost range, the reference after; an instance only out of cost range keeps the three comparable.)
let private peerNets =
    gen {
        let! net = genNet 12 28 9 20
        let! outOfRange = Gen.frequency [ 5, Gen.constant false; 1, Gen.constant true ]
        let _, status = solve net

        if outOfRange && net.M > 0 && status = MinCostFlowStatus.Optimal then
            let! arc = Gen.choose (0, net.M - 1)
            let! cost = hugeCost
            let! negative = Gen.elements [ false; true ]
            let costs = Array.copy net.Costs
            costs.[arc] <- if negative then -cost else cost
            return { net with Costs = costs }
        else
            return net
    }
    |> Arb.fromGen

let ``reference, OR-Tools and LEMON agree on status and cost, and each optimum is certified`` () =
    requireLemon ()

    Prop.forAll peerNets (fun net ->
        let answers =
            [
                for s in [ FlowSolver.Reference; FlowSolver.OrTools; FlowSolver.Lemon ] -> s, FlowSolvers.Solve(s, net.Problem)
            ]

        let _, reference = answers.Head

        let maxAbs =
            if net.M = 0 then
                BigInteger.Zero
            else
                net.Costs |> Array.map (fun c -> BigInteger.Abs(BigInteger c)) |> Array.max
        // The expected status, from the data alone: the cost rule, then balance.
        if maxAbs * BigInteger(net.N + 1) > BigInteger Int64.MaxValue then
            expect (reference.Status = MinCostFlowStatus.BadCostRange) $"costs out of range, reference {reference.Status}"
        elif Array.sum net.Supplies <> 0L then
            expect (reference.Status = MinCostFlowStatus.Unbalanced) $"unbalanced, reference {reference.Status}"

        for solver, answer in answers do
            expect (answer.Status = reference.Status) $"{solver}: {answer.Status}, reference {reference.Status}"

            if answer.Status = MinCostFlowStatus.Optimal then
                expect (answer.Cost = reference.Cost) $"{solver}: cost {answer.Cost}, reference {reference.Cost}"
                let report = FlowCertificate.Check(net.Problem, answer.Flows, answer.Potentials)
                expect report.Valid $"{solver}: certificate rejected: {describe report}"
                expect (report.PrimalCost = BigInteger(answer.Cost)) $"{solver}: flows cost {report.PrimalCost}, reported {answer.Cost}")

let ``OR-Tools statuses map onto the project's, and the ones it has no counterpart for throw`` () =
    Assert.That(OrToolsMinCostFlow.MapStatus MinCostFlowBase.Status.OPTIMAL, Is.EqualTo MinCostFlowStatus.Optimal)
    Assert.That(OrToolsMinCostFlow.MapStatus MinCostFlowBase.Status.INFEASIBLE, Is.EqualTo MinCostFlowStatus.Infeasible)
    Assert.That(OrToolsMinCostFlow.MapStatus MinCostFlowBase.Status.UNBALANCED, Is.EqualTo MinCostFlowStatus.Unbalanced)
    Assert.That(OrToolsMinCostFlow.MapStatus MinCostFlowBase.Status.BAD_COST_RANGE, Is.EqualTo MinCostFlowStatus.BadCostRange)

    for status in
        [
            MinCostFlowBase.Status.NOT_SOLVED
            MinCostFlowBase.Status.FEASIBLE
            MinCostFlowBase.Status.BAD_RESULT
        ] do
        let e = throws<OrToolsRefusedException> (fun () -> OrToolsMinCostFlow.MapStatus status |> ignore)
        Assert.That(e.OrToolsStatus, Is.EqualTo(string status))
        Assert.That(e.Message, Does.Contain(string status))

let ``OR-Tools: capacities beyond int64 give BadCapacityRange before OR-Tools runs`` () =
    let problem =
        FlowProblem(2, [| 0; 0 |], [| 1; 1 |], [| Int64.MaxValue; 1L |], [| 1L; 2L |], [| 1L; -1L |])

    Assert.That(OrToolsMinCostFlow.Solve(problem).Status, Is.EqualTo MinCostFlowStatus.BadCapacityRange)
    Assert.That(FlowSolvers.Solve(FlowSolver.Reference, problem).Status, Is.EqualTo MinCostFlowStatus.BadCapacityRange)

let ``potentials from a flow exist exactly for optimal flows`` () =
    // Every feasible flow of a tiny balanced network, by enumeration: FromFlow certifies it exactly when it is optimal.
    Prop.forAll tinyNets (fun net ->
        if Array.sum net.Supplies = 0L then
            match bruteForceMinCost net.N net.Tails net.Heads (Array.zeroCreate net.M) net.Caps net.Costs net.Supplies with
            | None -> ()
            | Some best ->
                for x in allVectors (Array.zeroCreate net.M) net.Caps do
                    if netOutflow net.N net.Tails net.Heads x = net.Supplies then
                        let optimal = costOf net.Costs x = best

                        match FlowPotentials.FromFlow(net.Problem, x) with
                        | null -> expect (not optimal) $"no potentials for an optimal flow {x}"
                        | p ->
                            let report = FlowCertificate.Check(net.Problem, x, p)
                            expect optimal $"potentials for a flow of cost {costOf net.Costs x} > optimum {best}"
                            expect report.Valid $"certificate rejected: {describe report}")

// ================================================================================================
// maxscore and base through OR-Tools
// ================================================================================================

let private seeds = Arb.fromGen (Gen.choose (1, 1_000_000))

let private ortoolsPath (algorithm: Algorithm) = algorithm.Paths |> Seq.find (fun p -> p.Name = "ortools")

/// Runs the ortools path on the generated case of a seed, when it supports it: every output passes the validator,
/// the routing is certified optimal, and the objective equals the reference's bit for bit.
let private certifiedLikeReference name k capacity seed =
    let algorithm = AlgorithmRegistry.Find name
    let case = algorithm.Generate.Invoke seed
    let call = algorithm.Bind(case.Inputs, case.Parameters, case.Name)
    let path = ortoolsPath algorithm

    if path.Supports.Invoke call then
        for r in SelfCheck.CheckPath(algorithm, path, call) do
            expect r.Passed $"{case.Name}: {r.Summary()} {r.Detail}"

        let got = path.Run.Invoke call
        let expected = algorithm.RunReference call
        let objective = got.["objective"].ToDoubles().[0]
        let referenceObjective = expected.["objective"].ToDoubles().[0]
        expect (objective = referenceObjective) $"{case.Name}: objective {objective:R}, reference {referenceObjective:R}"
        let scores = call.Matrix "scores"
        let n = scores.GetLength 0
        let kk, c = k call, capacity call
        let flat = got.["experts"].ToDoubles()
        let experts = Array2D.init n kk (fun i j -> int flat.[i * kk + j])
        let check = MaxScoreCertificate.Check(scores, kk, c, experts)
        expect check.Optimal $"{case.Name}: {check.Describe()}"

let ``maxscore through OR-Tools is certified optimal with the reference's objective`` () =
    let k (call: AlgorithmCall) = MaxScoreAlgorithm.Options(call).K

    let capacity (call: AlgorithmCall) =
        let shape = call.Array("scores").Shape
        Reference.Routing.MaxScore.CapacityFor(shape.[0], shape.[1], MaxScoreAlgorithm.Options call)

    Prop.forAll seeds (certifiedLikeReference "maxscore" k capacity)

let ``base through OR-Tools is certified optimal with the reference's objective`` () =
    let capacity (call: AlgorithmCall) =
        let shape = call.Array("scores").Shape
        shape.[0] / shape.[1]

    Prop.forAll seeds (certifiedLikeReference "base" (fun _ -> 1) capacity)

let ``at the default 2^40 cost scale OR-Tools' routing of softmax scores is already certified optimal`` () =
    // Skewed softmax routers (the bench's instances), small sizes: no retry at a larger scale is needed.
    let cases =
        gen {
            let! n = Gen.choose (1, 64)
            let! e = Gen.choose (1, 16)
            let! k = Gen.choose (1, e)
            let! slack = Gen.choose (-2, 2)
            let! seed = Gen.choose (0, 1_000_000)
            return n, e, k, max 0 ((n * k + e - 1) / e + slack), seed
        }
        |> Arb.fromGen

    Prop.forAll cases (fun (n, e, k, c, seed) ->
        let s = Reference.Harness.Bench.MaxScoreBench.Instance(Reference.Harness.Bench.BenchSize(n, e, k), seed)
        let result = OrToolsMaxScore.Solve(s, n, e, k, c)
        let maxAbs = s |> Array.map abs |> Array.max

        expect
            (Math.ScaleB(maxAbs, result.ScaleExponent) < Math.Pow(2.0, 40.0))
            $"max|S| 2^q = {Math.ScaleB(maxAbs, result.ScaleExponent)}"

        expect (Math.ScaleB(maxAbs, result.ScaleExponent) >= Math.Pow(2.0, 39.0)) $"scale 2^{result.ScaleExponent} below target"
        let scores = Array2D.init n e (fun i x -> s.[i * e + x])
        let experts = Array2D.init n k (fun i j -> result.Experts.[i * k + j])
        let check = MaxScoreCertificate.Check(scores, k, c, experts)
        expect check.Optimal (check.Describe()))

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "flow/ortools"
        "OrToolsTests"
        [
            Proofs.prop
                [ "flow.peers-agree" ]
                "reference, OR-Tools and LEMON agree on status and cost, and each optimum is certified"
                ``reference, OR-Tools and LEMON agree on status and cost, and each optimum is certified``
            Proofs.test
                [ "flow.peers-agree" ]
                "OR-Tools statuses map onto the project's, and the ones it has no counterpart for throw"
                ``OR-Tools statuses map onto the project's, and the ones it has no counterpart for throw``
            Proofs.test
                [ "flow.peers-agree" ]
                "OR-Tools: capacities beyond int64 give BadCapacityRange before OR-Tools runs"
                ``OR-Tools: capacities beyond int64 give BadCapacityRange before OR-Tools runs``
            Proofs.prop
                [ "flow.residual-potentials" ]
                "potentials from a flow exist exactly for optimal flows"
                ``potentials from a flow exist exactly for optimal flows``
            Proofs.prop
                [ "maxscore.ortools" ]
                "maxscore through OR-Tools is certified optimal with the reference's objective"
                ``maxscore through OR-Tools is certified optimal with the reference's objective``
            Proofs.prop
                [ "maxscore.ortools" ]
                "base through OR-Tools is certified optimal with the reference's objective"
                ``base through OR-Tools is certified optimal with the reference's objective``
            Proofs.prop
                [ "maxscore.ortools" ]
                "at the default 2^40 cost scale OR-Tools' routing of softmax scores is already certified optimal"
                ``at the default 2^40 cost scale OR-Tools' routing of softmax scores is already certified optimal``
        ]
