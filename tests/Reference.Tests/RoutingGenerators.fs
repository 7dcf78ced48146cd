/// Generators and small helpers shared by the routing-suite properties (capacity, reroute, expert choice, aux loss,
/// block routing). The general shapes and logit styles come from Generators.fs.
module Reference.Tests.RoutingGenerators

open System
open FsCheck
open FsCheck.FSharp
open NUnit.Framework
open Reference.Routing
open Reference.Tests.Generators

/// Unit roundoff of float32 (2^-24) and float64 (2^-53): the u of the slack formulas in proofs/.
let u32 = 2.0 ** -24.0
let u64 = 2.0 ** -53.0

/// The logits narrowed to float32 (they are float32-representable by construction, so this is exact), row-major.
let flat32 (x: double[,]) = flatten x |> Array.map float32

/// A flat row-major array as a matrix [n, m].
let matrix n m (flat: 'T[]) = Array2D.init n m (fun i j -> flat.[i * m + j])

/// Column j of a matrix.
let column (m: 'T[,]) j = Array.init (Array2D.length1 m) (fun i -> m.[i, j])

/// Logits whose keys are separated within every row: multiples of 1/2 in [-4, 4] (so two different logits of a row give
/// scores whose ratio is at least e^(1/2), far beyond float32 rounding, and equal logits give bit-equal scores in both
/// precisions), plus a per-row shift that is a multiple of 1/2 up to +-16 (exact, and invisible to softmax).
let gridLogits (n: int) (e: int) : Gen<double[,]> =
    gen {
        let! cells = Gen.arrayOfLength (n * e) (Gen.choose (-8, 8))
        let! shifts = Gen.arrayOfLength n (Gen.choose (-32, 32))
        return Array2D.init n e (fun i j -> float cells.[i * e + j] * 0.5 + float shifts.[i] * 0.5)
    }

/// Grid logits for a score function: with sigmoid no row shift (a shift would push scores into float32's saturation near 1,
/// where distinct logits give equal float32 scores), so multiples of 1/2 in [-4, 4] only.
let gridLogitsFor (score: ScoreFunction) (n: int) (e: int) : Gen<double[,]> =
    if score = ScoreFunction.Softmax then
        gridLogits n e
    else
        Gen.arrayOfLength (n * e) (Gen.choose (-8, 8))
        |> Gen.map (fun cells -> Array2D.init n e (fun i j -> float cells.[i * e + j] * 0.5))

/// A capacity rule: an explicit C, or a factor with a rounding rule and a minimum.
type CapacityRule = { Capacity: int option; Factor: float; Rounding: CapacityRounding; MinCapacity: int }

/// A capacity rule for N tokens and k choices: explicit C in 0..N·k+1 a third of the time, otherwise a factor from
/// {0, 0.5, 0.75, 1, 1.25, 2} with any rounding and a minimum in {0, 1, 3}.
let capacityRule (n: int) (k: int) : Gen<CapacityRule> =
    Gen.oneof
        [
            Gen.choose (0, n * k + 1)
            |> Gen.map (fun c -> { Capacity = Some c; Factor = 1.0; Rounding = CapacityRounding.Ceil; MinCapacity = 0 })
            gen {
                let! f = Gen.elements [ 0.0; 0.5; 0.75; 1.0; 1.25; 2.0 ]
                let! r = Gen.elements [ CapacityRounding.Ceil; CapacityRounding.Floor; CapacityRounding.Round; CapacityRounding.Tutel ]
                let! m = Gen.elements [ 0; 0; 1; 3 ]
                return { Capacity = None; Factor = f; Rounding = r; MinCapacity = m }
            }
        ]

let policies =
    [
        DropPolicy.Position
        DropPolicy.ChoicePosition
        DropPolicy.Score
        DropPolicy.Logit
        DropPolicy.BatchPriority
    ]

let normalizations = [ Renormalization.None; Renormalization.Before; Renormalization.After ]

/// Options for capacity from a rule.
let capacityOptions k score normalize policy (rule: CapacityRule) (b: double[] option) =
    CapacityOptions(
        K = k,
        Score = score,
        Normalize = normalize,
        Policy = policy,
        Capacity =
            (match rule.Capacity with
             | Some c -> System.Nullable c
             | None -> System.Nullable()),
        CapacityFactor = rule.Factor,
        Rounding = rule.Rounding,
        MinCapacity = rule.MinCapacity,
        Bias =
            (match b with
             | Some v -> (v :> Collections.Generic.IReadOnlyList<float>)
             | None -> null)
    )

/// A capacity problem: logits and the components of the options (an F# record, so a test can vary one with `with`).
type CapacityProblem =
    {
        Logits: double[,]
        K: int
        Score: ScoreFunction
        Normalize: Renormalization
        Policy: DropPolicy
        Rule: CapacityRule
        Bias: double[] option
    }

    member p.Options = capacityOptions p.K p.Score p.Normalize p.Policy p.Rule p.Bias

/// Capacity problems over the shared shapes, with the given logit generator, every policy, normalization and rule.
let capacityProblemWith (logitGen: int -> int -> Gen<double[,]>) : Gen<CapacityProblem> =
    gen {
        let! n = Gen.elements tokenCounts
        let! e = Gen.elements expertCounts
        let! k = Gen.choose (1, e)
        let! x = logitGen n e
        let! score = Gen.elements [ ScoreFunction.Softmax; ScoreFunction.Softmax; ScoreFunction.Sigmoid ]
        let! normalize = Gen.elements normalizations
        let! policy = Gen.elements policies
        let! rule = capacityRule n k
        let! b = bias e
        return { Logits = x; K = k; Score = score; Normalize = normalize; Policy = policy; Rule = rule; Bias = b }
    }

/// Capacity problems with the shared logit styles (grid ties, gaussian-like, wide).
let capacityProblem = capacityProblemWith logits |> Arb.fromGen

/// The float32 scores the kernels compute, P32 [N, E], read back from the top-k kernel with k = E (its weights are the
/// unnormalized float32 scores of each row, in ranked order).
let scores32 (x: double[,]) (score: ScoreFunction) =
    let n, e = Array2D.length1 x, Array2D.length2 x

    let r =
        Reference.Kernels.Routing.TopK.Route(flat32 x, n, e, TopKOptions(K = e, Score = score, Normalize = false))

    let p = Array2D.zeroCreate n e

    for i in 0 .. n - 1 do
        for r' in 0 .. e - 1 do
            p.[i, r.Experts.[i * e + r']] <- float r.Weights.[i * e + r']

    p

/// True when two computed values cannot be ordered differently by a float32 candidate: their double values differ by more
/// than twice the slack, or they are equal in double and in float32 alike.
let separated (a: float) (b: float) (slack: float) (a32: float) (b32: float) = abs (a - b) > 2.0 * slack || (a = b && a32 = b32)

/// True when, in the sorted order of the double values, every adjacent pair is separated.
let allSeparated (values: (float * float * float) list) =
    // (double value, float32 value, slack of this value)
    values
    |> List.sortBy (fun (v, _, _) -> -v)
    |> List.pairwise
    |> List.forall (fun ((a, a32, sa), (b, b32, sb)) -> separated a b (max sa sb) a32 b32)
