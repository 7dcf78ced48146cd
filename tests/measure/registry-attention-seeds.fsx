// Scans seeds of the registry property "registry paths pass the calibrated tolerance on generated attention cases"
// (AttentionRegistryTests.fs) in-process, many more than one test run draws, to find a failing seed. Run after a
// Release build:
//   dotnet fsi tests/measure/registry-attention-seeds.fsx [count] [first-seed|random] [attention|block-sparse]
// Prints every failing seed with the failing reports; a seed replays with the registry's generator directly.
#r "../Reference.Tests/bin/Release/net10.0/Reference.dll"
#r "../Reference.Tests/bin/Release/net10.0/Reference.Harness.dll"
#r "../Reference.Tests/bin/Release/net10.0/Reference.Kernels.dll"

open System
open Reference.Harness
open Reference.Harness.Registry

let args = fsi.CommandLineArgs |> Array.skip 1
let count = if args.Length > 0 then int args.[0] else 1000
let rng = Random()

let seeds =
    if args.Length > 1 && args.[1] <> "random" then
        Array.init count (fun n -> int args.[1] + n)
    else
        Array.init count (fun _ -> rng.Next(0, 1_000_000_001))

let name = if args.Length > 2 then args.[2] else "attention"
let algorithm = AlgorithmRegistry.Find name
let mutable failed = 0
let sw = Diagnostics.Stopwatch.StartNew()

for seed in seeds do
    let case = algorithm.Generate.Invoke seed
    let call = algorithm.Bind(case.Inputs, case.Parameters, case.Name)

    for path in algorithm.Paths do
        for r in SelfCheck.CheckPath(algorithm, path, call) do
            if not r.Passed then
                failed <- failed + 1
                printfn "FAIL seed %d: %s %s: %s %s" seed case.Name path.Name (r.Summary()) (string r.Detail)

printfn "%s: %d seeds, %d failing reports, %.0f s" name seeds.Length failed sw.Elapsed.TotalSeconds
