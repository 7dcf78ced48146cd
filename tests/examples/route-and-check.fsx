// Calling the library from an F# script: route with a reference, check candidate arrays held in memory, print the
// report. Build first (./build.sh build), then: dotnet fsi tests/examples/route-and-check.fsx
// The suite runs it (ClientTests); it exits 0 only when the faithful candidate passes and the broken one fails.
#r "../../src/Reference.Cli/bin/Release/net10.0/Reference.dll"
#r "../../src/Reference.Cli/bin/Release/net10.0/Reference.Kernels.dll"
#r "../../src/Reference.Cli/bin/Release/net10.0/Reference.Harness.dll"
#r "../../src/Reference.Cli/bin/Release/net10.0/System.Numerics.Tensors.dll"

open Reference.Harness.Registry
open Reference.Harness.Tensors
open Reference.Routing

let logits = array2D [ [ 2.0; 1.0; 0.5; -1.0 ]; [ 0.1; 0.3; -0.2; 0.0 ]; [ -1.0; 0.5; 2.5; 1.0 ] ]

// Route with the reference: a plain function on .NET arrays with an options record.
let routed = TopK.Route(logits, TopKOptions(K = 2, Normalize = true))
printfn "experts %A" routed.Experts
printfn "weights %A" routed.Weights

// A candidate held in memory: "my kernel's" float32 outputs. Here they come from the reference rounded to float32; the
// broken one scales one weight by 1.01.
let myExperts = routed.Experts
let myWeights = Array2D.map float32 routed.Weights
let broken = Array2D.copy myWeights
broken[1, 0] <- broken[1, 0] * 1.01f

// Check through the registry, as `reference check topk --param k=2` does.
let topk = AlgorithmRegistry.Find "topk"
let inputs = readOnlyDict [ ("logits", NdArray.FromMatrix logits) ]
let call = topk.Bind(inputs, dict [ "k", "2"; "normalize", "true" ], "in-memory")
let expected = topk.RunReference call

let check (name: string) (weights: float32[,]) =
    let candidate =
        readOnlyDict [ "experts", NdArray.FromMatrix myExperts; "weights", NdArray.FromMatrix weights ]

    let reports = topk.Check(call, expected, candidate, name)
    printfn "%s:" name

    for r in reports do
        printfn "  %s" (r.Summary())

        for line in r.MismatchLines "    " do
            printfn "%s" line

    reports |> Seq.forall (fun r -> r.Passed)

let faithfulPasses = check "faithful" myWeights
let brokenPasses = check "broken" broken
printfn "faithful %s, broken %s" (if faithfulPasses then "passes" else "FAILS") (if brokenPasses then "passes" else "fails")
exit (if faithfulPasses && not brokenPasses then 0 else 1)
