// Detection thresholds (issue 12): for each family and precision, the fraction of generated cases in which a
// candidate with one realistic defect of relative size d fails `check`, for d on the grid 1e-6, 3e-6, ... 3e-2.
// The threshold recorded in proofs/ is the smallest d of the grid that fails in at least 95% of the cases. Candidates
// and cases are those of the properties (tests/Reference.Tests), judged in-process by the registry's Check path.
// Run after a Release build:
//   dotnet fsi tests/measure/detection-thresholds.fsx FAMILY [cases] [first-seed]
// FAMILY: moba, leank, nsa, resa, block-sparse, linear (softmax scale or decay x(1 + d)); sinkhorn (reg x(1 + d),
// and the worst margin of the correct float32 candidates under the factor 4); softtopk (tau x(1 + d), threshold and
// entropic); objective (maxscore/base objective x(1 + d)).
#r "../Reference.Tests/bin/Release/net10.0/Reference.dll"
#r "../Reference.Tests/bin/Release/net10.0/Reference.Harness.dll"
#r "../Reference.Tests/bin/Release/net10.0/Reference.Kernels.dll"
#r "../Reference.Tests/bin/Release/net10.0/nunit.framework.dll"
#r "../Reference.Tests/bin/Release/net10.0/FsCheck.dll"
#r "../Reference.Tests/bin/Release/net10.0/Reference.Tests.dll"

open System
open System.Collections.Generic
open Reference.Numerics
open Reference.Harness.Registry
open Reference.Harness.Tensors

module A = Reference.Tests.AttentionToleranceProperties
module L = Reference.Tests.LinearToleranceProperties
module R2 = Reference.Tests.RoutingToleranceProperties2

let args = fsi.CommandLineArgs |> Array.skip 1
let family = if args.Length > 0 then args.[0] else "moba"
let cases = if args.Length > 1 then int args.[1] else 60
let first = if args.Length > 2 then int args.[2] else 5000
let deltas = [ 1e-6; 3e-6; 1e-5; 3e-5; 1e-4; 3e-4; 1e-3; 3e-3; 1e-2; 3e-2 ]
let formats = [ NumberFormat.Float32; NumberFormat.Float16; NumberFormat.BFloat16 ]
let sw = Diagnostics.Stopwatch.StartNew()

/// Prints, per variant, the fraction caught at each d and the threshold (smallest d caught in >= 95%).
let table (fmt: NumberFormat) (n: int) (variants: (string * int[]) list) =
    printfn "== %s %A: %d cases (%.0f s)" family fmt n sw.Elapsed.TotalSeconds

    for name, caught in variants do
        let pct = caught |> Array.map (fun c -> 100.0 * float c / float (max 1 n))
        let threshold = deltas |> List.indexed |> List.tryFind (fun (i, _) -> pct.[i] >= 95.0) |> Option.map snd

        printfn
            "  %-22s threshold %s | %s"
            name
            (match threshold with
             | Some d -> sprintf "%g" d
             | None -> "> 3e-2")
            (String.Join(" ", deltas |> List.mapi (fun i d -> sprintf "%g:%.0f%%" d pct.[i])))

let failed (reports: IReadOnlyList<Reference.Harness.Comparison.ComparisonReport>) = reports |> Seq.exists (fun r -> not r.Passed)

/// Attention-like families: the FlashAttention-2 candidate (64-key tiles) with the scale x(1 + d), out and lse, out only.
let attentionFamily (make: NumberFormat -> int -> A.Case) (hasLse: bool) =
    for fmt in formats do
        let both, outOnly = Array.zeroCreate deltas.Length, Array.zeroCreate deltas.Length
        let mutable correctFailed = 0

        for s in first .. first + cases - 1 do
            let c = make fmt s
            let check = A.checker c

            if failed (check (A.candidateArrays c (A.flash fmt 64 c.Problem) hasLse)) then
                correctFailed <- correctFailed + 1

            deltas
            |> List.iteri (fun i d ->
                let cand = A.flash fmt 64 (A.perturbed d c).Problem

                if hasLse && failed (check (A.candidateArrays c cand true)) then
                    both.[i] <- both.[i] + 1

                if failed (check (A.candidateArrays c cand false)) then
                    outOnly.[i] <- outOnly.[i] + 1)

        table fmt cases ((if hasLse then [ ("out and lse", both) ] else []) @ [ ("out only", outOnly) ])
        printfn "  (unperturbed flash64 candidate failed in %d cases)" correctFailed

let nsaFamily () =
    for fmt in formats do
        let outOnly = Array.zeroCreate deltas.Length
        let mutable correctFailed = 0

        for s in first .. first + cases - 1 do
            let c = A.nsaCase fmt 16 s
            let check = A.checker c.Nsa
            let run (cc: A.NsaCase) = check (A.candidateArrays c.Nsa (A.nsaOut (A.flash fmt 64) cc) false)

            if failed (run c) then
                correctFailed <- correctFailed + 1

            deltas
            |> List.iteri (fun i d ->
                if failed (run { c with Nsa = A.perturbed d c.Nsa }) then
                    outOnly.[i] <- outOnly.[i] + 1)

        table fmt cases [ ("out (no lse)", outOnly) ]
        printfn "  (unperturbed flash64 candidate failed in %d cases)" correctFailed

let linearFamily () =
    let alg = AlgorithmRegistry.Find "linear"

    for fmt in formats do
        let caught = Array.zeroCreate deltas.Length
        let mutable correctFailed = 0

        for s in first .. first + cases - 1 do
            let c = L.linearCase fmt 16 s
            let call = alg.Bind(c.Inputs, c.Parameters |> List.map KeyValuePair, "m")
            let expected = alg.RunReference call

            let check (out: float32[]) =
                let p = c.Problem
                let arrays = Dictionary<string, NdArray>()
                arrays.["out"] <- fst (A.stored fmt (out |> Array.map float) [| p.B; p.H; p.T; p.Dv |])
                alg.Check(call, expected, arrays, "m")

            if failed (check (L.chunkedForm 64 fmt c.Problem)) then
                correctFailed <- correctFailed + 1

            deltas
            |> List.iteri (fun i d ->
                if failed (check (L.chunkedForm 64 fmt (L.perturbed d c.Problem))) then
                    caught.[i] <- caught.[i] + 1)

        table fmt cases [ ("decay x(1+d) (1-d if 1)", caught) ]
        printfn "  (unperturbed chunked candidate failed in %d cases)" correctFailed

/// Generated cases of an FsCheck generator, reproducibly (seeded).
let sample (g: FsCheck.Gen<'a>) n seed = FsCheck.FSharp.Gen.sampleWithSeed (FsCheck.Rnd(uint64 seed)) 1000 n g

let sinkhornFamily () =
    // Sizes: the property's generator, N capped at 4096 (N E T <= 3e5 as there).
    let cs =
        sample R2.sinkhornCase (4 * cases) first
        |> Array.filter (fun c -> Array2D.length1 c.X >= 2 && Array2D.length1 c.X <= 4096)
        |> Array.truncate cases

    for fmt in formats do
        let caught = Array.zeroCreate deltas.Length
        let mutable worst = 0.0, ""

        for c in cs do
            for name, methodName, solve in R2.sinkhornCandidates do
                for r in R2.sinkhornCheck c fmt methodName solve c.Reg do
                    let m = if r.Margin.HasValue then r.Margin.Value else 0.0

                    if m > fst worst then
                        worst <-
                            m,
                            sprintf
                                "%s %s N=%d E=%d T=%d ratio=%g"
                                name
                                r.ArrayName
                                (Array2D.length1 c.X)
                                (Array2D.length2 c.X)
                                c.Iterations
                                c.Ratio

            deltas
            |> List.iteri (fun i d ->
                let bad sign = failed (R2.sinkhornCheck c fmt "log" R2.sinkhornUnscaled (c.Reg * (1.0 + sign * d)))

                if bad 1.0 && bad -1.0 then
                    caught.[i] <- caught.[i] + 1)

        table fmt cs.Length [ ("reg x(1+-d)", caught) ]

        printfn
            "  worst margin of the correct candidates (error / allowed, factor 4): %.3g (%s); factor needed <= %.2f"
            (fst worst)
            (snd worst)
            (4.0 * fst worst)

let softFamily () =
    let cs =
        sample R2.softCase (2 * cases) first
        |> Array.filter (fun c -> Array2D.length1 c.SX <= 4096)
        |> Array.truncate cases

    for methodKind in [ Reference.Routing.SoftTopKMethod.Threshold; Reference.Routing.SoftTopKMethod.Entropic ] do
        for fmt in formats do
            let caught = Array.zeroCreate deltas.Length

            for c in cs do
                let c =
                    if methodKind = Reference.Routing.SoftTopKMethod.Entropic then
                        { c with SX = c.SX.[0 .. min 64 (Array2D.length1 c.SX) - 1, *] }
                    else
                        c

                let x = c.SX |> Array2D.map (fun v -> Precision.Round(v, fmt))

                deltas
                |> List.iteri (fun i d ->
                    let bad sign =
                        let y =
                            Reference.Routing.SoftTopK
                                .Compute(
                                    x,
                                    Reference.Routing.SoftTopKOptions(K = c.SK, Tau = c.Tau * (1.0 + sign * d), Method = methodKind)
                                )
                                .Y

                        let flat = Array.init y.Length (fun f -> float32 y.[f / Array2D.length2 y, f % Array2D.length2 y])
                        not (R2.softVerdict c fmt methodKind flat).Passed

                    if bad 1.0 && bad -1.0 then
                        caught.[i] <- caught.[i] + 1)

            printfn "(%A)" methodKind
            table fmt cs.Length [ ("tau x(1+-d)", caught) ]

let objectiveFamily () =
    let cs = sample R2.objectiveCase cases first

    for fmt in formats do
        let caught = Array.zeroCreate deltas.Length
        let mutable n = 0

        for c in cs do
            let s = c.Scores |> Array2D.map (fun v -> Precision.Round(v, fmt))

            let terms =
                Array.init (Array2D.length1 s) (fun i -> Array.init (Array2D.length2 s) (fun j -> s.[i, j]) |> Array.max)

            let exact = Array.sum terms

            if abs exact < 0.9 * Precision.MaxFinite fmt then
                n <- n + 1

                let policy =
                    Reference.Harness.Algorithms.MaxScoreValidator.ObjectivePolicy(terms, Array2D.length2 s, fmt)

                deltas
                |> List.iteri (fun i d ->
                    let bad sign =
                        let v = Precision.Round(float (float32 exact) * (1.0 + sign * d), fmt)
                        not (policy.Compare("objective", ReadOnlySpan [| v |], ReadOnlySpan [| exact |], [||])).Passed

                    if bad 1.0 && bad -1.0 then
                        caught.[i] <- caught.[i] + 1)

        table fmt n [ ("objective x(1+-d)", caught) ]

match family with
| "moba" -> attentionFamily (fun fmt s -> A.mobaCase fmt 16 s) true
| "leank" -> attentionFamily (fun fmt s -> A.leankCase fmt 16 s) true
| "resa" -> attentionFamily (fun fmt s -> A.resaCase fmt 16 s) true
| "block-sparse" -> attentionFamily (fun fmt s -> A.attentionCase fmt true 16 s) true
| "nsa" -> nsaFamily ()
| "linear" -> linearFamily ()
| "sinkhorn" -> sinkhornFamily ()
| "softtopk" -> softFamily ()
| "objective" -> objectiveFamily ()
| f -> failwithf "unknown family %s" f

printfn "done in %.0f s" sw.Elapsed.TotalSeconds
