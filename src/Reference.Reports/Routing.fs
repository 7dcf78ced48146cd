/// What the check report shows for routing algorithms: the load of every expert (requests routed to it) in the
/// reference's and the candidate's outputs, the drops, and the capacity C where the algorithm has one.
module Reference.Reports.Routing

open System.Collections.Generic
open Reference.Harness.Algorithms
open Reference.Harness.Registry
open Reference.Harness.Tensors
open Reference.Routing

/// The loads of one side (reference or candidate).
type Loads =
    {
        /// Requests per expert, length E.
        PerExpert: int[]
        /// Requests dropped: -1 entries of <c>experts</c> (tokens without an expert, for expert-choice).
        Drops: int
    }

/// The routing view of a check.
type RoutingView =
    {
        /// E.
        Experts: int
        /// The reference's loads.
        Reference: Loads
        /// The candidate's loads, when its routing array has the expected shape.
        Candidate: Loads option
        /// C, where the algorithm has a capacity.
        Capacity: int option
        /// What a drop is for this algorithm.
        DropsMean: string
    }

/// The algorithms the routing view covers.
let algorithms = set [ "topk"; "capacity"; "reroute"; "expert-choice"; "maxscore" ]

let private countExperts (e: int) (experts: NdArray) =
    let load = Array.zeroCreate e
    let mutable drops = 0

    for v in experts.ToDoubles() do
        if v >= 0.0 && v < float e then
            load.[int v] <- load.[int v] + 1
        elif v = -1.0 then
            drops <- drops + 1

    { PerExpert = load; Drops = drops }

/// expert-choice: tokens [E, C]; an expert's load is its tokens that are not -1; a drop is a token no expert chose.
let private countTokens (n: int) (tokens: NdArray) =
    let e, c = tokens.Shape.[0], tokens.Shape.[1]
    let values = tokens.ToDoubles()
    let chosen = Array.zeroCreate n

    let load =
        Array.init e (fun x ->
            let mutable l = 0

            for j in 0 .. c - 1 do
                let t = values.[x * c + j]

                if t >= 0.0 && t < float n then
                    l <- l + 1
                    chosen.[int t] <- true

            l)

    { PerExpert = load; Drops = chosen |> Array.filter not |> Array.length }

let private sameShape (a: NdArray) (b: NdArray) = Seq.toList a.Shape = Seq.toList b.Shape

/// The routing view of a check of a routing algorithm (see <see cref="algorithms"/>), or None for other algorithms.
/// <param name="algorithm">The algorithm's name.</param>
/// <param name="call">The bound call (its router input gives N and E; its parameters give C).</param>
/// <param name="expected">The reference's outputs.</param>
/// <param name="candidate">The candidate's outputs.</param>
let view
    (algorithm: string)
    (call: AlgorithmCall)
    (expected: IReadOnlyDictionary<string, NdArray>)
    (candidate: IReadOnlyDictionary<string, NdArray>)
    =
    let router =
        if call.Has "logits" then Some(call.Array "logits")
        elif call.Has "scores" then Some(call.Array "scores")
        else None

    match router with
    | Some x when algorithms.Contains algorithm && x.Rank = 2 ->
        let n, e = x.Shape.[0], x.Shape.[1]
        let arrayName = if algorithm = "expert-choice" then "tokens" else "experts"

        let count =
            if algorithm = "expert-choice" then
                countTokens n
            else
                countExperts e

        match expected.TryGetValue arrayName with
        | true, reference ->
            let candidateLoads =
                match candidate.TryGetValue arrayName with
                | true, c when sameShape c reference -> Some(count c)
                | _ -> None

            let capacity =
                match algorithm with
                | "capacity" -> Some (CapacityAlgorithm.ReferenceResult call).Capacity
                | "reroute" ->
                    let o = RerouteAlgorithm.Options call
                    Some(ExpertCapacity.Resolve(n, e, o.K, o.Capacity, o.CapacityFactor, o.Rounding, o.MinCapacity))
                | "expert-choice" -> Some reference.Shape.[1]
                | "maxscore" -> Some(MaxScore.CapacityFor(n, e, MaxScoreAlgorithm.Options call))
                | _ -> None

            Some
                {
                    Experts = e
                    Reference = count reference
                    Candidate = candidateLoads
                    Capacity = capacity
                    DropsMean =
                        if algorithm = "expert-choice" then
                            "tokens that no expert chose"
                        else
                            "requests (token, choice) without an expert (-1 in experts)"
                }
        | _ -> None
    | _ -> None
