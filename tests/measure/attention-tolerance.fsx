// Measures the calibration of the attention family's baseline rule (proofs/attention.md,
// attention.baseline-calibration and attention.baseline-detects). Run after a Release build:
//   dotnet fsi tests/measure/attention-tolerance.fsx [cases] [first-seed] [f32,f16,bf16]
// Prints, per format and order, the largest factor a correct candidate needed, (err - floor - rounding_floor) / base_error, and
// the fraction of cases in which a softmax scale off by d fails, for a grid of d.
#r "../Reference.Tests/bin/Release/net10.0/Reference.dll"
#r "../Reference.Tests/bin/Release/net10.0/Reference.Harness.dll"
#r "../Reference.Tests/bin/Release/net10.0/Reference.Kernels.dll"
#r "../Reference.Tests/bin/Release/net10.0/nunit.framework.dll"
#r "../Reference.Tests/bin/Release/net10.0/Reference.Tests.dll"

open System
open Reference.Numerics
open Reference.Tests.AttentionToleranceProperties

let args = fsi.CommandLineArgs |> Array.skip 1
let cases = if args.Length > 0 then int args.[0] else 300
let first = if args.Length > 1 then int args.[1] else 1000

let formats =
    if args.Length > 2 then
        args.[2].Split(',')
        |> Array.map (function
            | "f16" -> NumberFormat.Float16
            | "bf16" -> NumberFormat.BFloat16
            | _ -> NumberFormat.Float32)
        |> List.ofArray
    else
        [ NumberFormat.Float32; NumberFormat.Float16; NumberFormat.BFloat16 ]

let deltas = [ 1e-6; 3e-6; 1e-5; 3e-5; 1e-4; 3e-4; 1e-3; 3e-3; 1e-2; 3e-2 ]

for fmt in formats do
    let need = Collections.Generic.Dictionary<string, float * string>()
    let caught = Array.zeroCreate<int> deltas.Length
    let caughtOut = Array.zeroCreate<int> deltas.Length
    let missed = Collections.Generic.List<string>()

    for s in first .. first + cases - 1 do
        let c = attentionCase fmt (s % 3 = 0) 1 s
        let check = checker c

        for name, f, withLse in orders fmt do
            for r in check (candidateArrays c (f c.Problem) withLse) do
                let b = detailNumber "base_error" (string r.Detail)
                let sf = detailNumber "rounding_floor" (string r.Detail)
                let fl = detailNumber "floor" (string r.Detail) + (if Double.IsNaN sf then 0.0 else sf)

                let required =
                    if r.MaxAbsError <= fl then 0.0
                    elif b > 0.0 then (r.MaxAbsError - fl) / b
                    else infinity

                let key = name + " " + r.ArrayName

                match need.TryGetValue key with
                | true, (x, _) when x >= required -> ()
                | _ -> need.[key] <- (required, c.Name)
        // Detection, on the perturbation properties' cases (at least 16 keys).
        let c16 = attentionCase fmt (s % 3 = 0) 16 s
        let check16 = checker c16

        deltas
        |> List.iteri (fun n d ->
            let reports = check16 (candidateArrays c16 (flash fmt 64 (perturbed d c16).Problem) true)

            if reports |> Seq.exists (fun r -> not r.Passed) then
                caught.[n] <- caught.[n] + 1
            elif d = List.last deltas then
                missed.Add c16.Name

            let outOnly = check16 (candidateArrays c16 (flash fmt 64 (perturbed d c16).Problem) false)

            if outOnly |> Seq.exists (fun r -> not r.Passed) then
                caughtOut.[n] <- caughtOut.[n] + 1)

    printfn "== %A: %d cases" fmt cases

    for kv in need |> Seq.sortBy (fun kv -> kv.Key) do
        printfn "  required factor %-18s %8.3f   (%s)" kv.Key (fst kv.Value) (snd kv.Value)

    deltas
    |> List.iteri (fun n d ->
        printfn
            "  scale x(1+%g): fails in %5.1f%% (out and lse), %5.1f%% (out only)"
            d
            (100.0 * float caught.[n] / float cases)
            (100.0 * float caughtOut.[n] / float cases))

    for m in missed do
        printfn "  undetected at the largest d: %s" m
