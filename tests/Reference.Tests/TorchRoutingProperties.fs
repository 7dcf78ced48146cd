/// The torch paths of the routing algorithms (proofs/torch.md, Theorems: routing): on generated cases each passes check
/// against the reference with the algorithm's own validators, and on targeted cases (every capacity policy, ties at the
/// capacity boundary, the Sinkhorn methods it supports) it agrees with the reference where the Definition leaves no choice.
module Reference.Tests.TorchRoutingProperties

open System
open System.Collections.Generic
open NUnit.Framework
open Reference.Harness
open Reference.Harness.Registry
open Reference.Harness.Tensors
open Reference.Tests.Assertions
open Reference.Tests.TorchPathProperties

let private eq (x: obj) = Is.EqualTo x

/// Binds inputs and parameters for an algorithm, as the CLI does.
let private bind (algorithm: string) (inputs: (string * NdArray) list) (parameters: (string * string) list) =
    let a = AlgorithmRegistry.Find algorithm
    let call = a.Bind(readOnlyDict inputs, parameters |> List.map KeyValuePair, "targeted case")
    a, call

/// The torch path's reports on a call all pass; returns the torch outputs and the reference's.
let private checkCall (algorithm: string) (inputs: (string * NdArray) list) (parameters: (string * string) list) =
    let a, path = torchPath algorithm
    let _, call = bind algorithm inputs parameters
    let reports = SelfCheck.CheckPath(a, path, call)
    Assert.That(reports.Count, Is.GreaterThan 0)

    for r in reports do
        Assert.That(r.Passed, $"{algorithm} torch {parameters}: {r.Summary()} {r.Problem} {r.Detail}")

    a.Run(call, Reference.Torch.TorchPaths.Name), a.RunReference call

/// The generated cases (seeds 0..199) the torch path of an algorithm supports: Supports may not skip most of them.
let private supportedShare (algorithm: string) =
    let a, path = torchPath algorithm

    let supported =
        [ 0..199 ]
        |> List.filter (fun seed ->
            let case: GeneratedCase = a.Generate.Invoke seed
            let call = a.Bind(case.Inputs, case.Parameters, case.Name)
            isNull path.Supports || path.Supports.Invoke call)

    supported.Length

let private ints (x: NdArray) = x.ToDoubles() |> Array.map int

let private policies = [ "position"; "choice-position"; "score"; "logit"; "batch-priority" ]

/// Generic logits (2 sin(1.37 f + 0.3) + f/1000): no two keys, weights or logits that any policy compares are near-tied,
/// so the Definition fixes every kept request and slot, and the torch path must return exactly the reference's.
let private distinctLogits n e =
    let values = Array.init (n * e) (fun f -> float32 (2.0 * sin (1.37 * float f + 0.3) + float f / 1000.0))
    NdArray.Create(values, n, e)

let ``torch capacity passes check against the reference, in float32, float16 and bfloat16`` (seed: int) =
    passesInDtype "capacity" (dtypeOfSeed seed) seed |> ignore

let ``torch expert-choice passes check against the reference, in float32, float16 and bfloat16`` (seed: int) =
    passesInDtype "expert-choice" (dtypeOfSeed seed) seed |> ignore

let ``torch aux-loss passes check against the reference, in float32, float16 and bfloat16`` (seed: int) =
    passesInDtype "aux-loss" (dtypeOfSeed seed) seed |> ignore

let ``torch sinkhorn passes check against the reference, in float32, float16 and bfloat16`` (seed: int) =
    passesInDtype "sinkhorn" (dtypeOfSeed seed) seed |> ignore

let ``torch softtopk passes check against the reference, in float32, float16 and bfloat16`` (seed: int) =
    passesInDtype "softtopk" (dtypeOfSeed seed) seed |> ignore

let ``torch softtopk passes both methods with the Jacobian, at small tau and with constant rows`` () =
    let n, e = 5, 6
    // Row 0 constant (the entropic operator's special case), the others generic, one with a tie at its maximum.
    let values =
        Array.init (n * e) (fun f ->
            if f < e then 0.25f
            elif f = 2 * e + 1 then 1.0f
            elif f = 2 * e + 4 then 1.0f
            else float32 (sin (1.3 * float f)))

    let x = NdArray.Create(values, n, e)

    for m in [ "threshold"; "entropic" ] do
        for tau in [ "1e-3"; "0.1"; "2" ] do
            for k in [ "1"; "3"; "5" ] do
                checkCall "softtopk" [ "x", x ] [ "k", k; "tau", tau; "method", m; "jacobian", "true" ] |> ignore

let ``torch capacity keeps exactly the reference's requests and slots without ties, every policy and normalization`` () =
    for policy in policies do
        for normalize in [ "none"; "before"; "after" ] do
            for score in [ "softmax"; "sigmoid" ] do
                let torch, reference =
                    checkCall
                        "capacity"
                        [ "logits", distinctLogits 13 5 ]
                        [ "k", "2"; "policy", policy; "normalize", normalize; "score", score; "capacity", "4" ]

                for name in [ "experts"; "slots"; "load" ] do
                    Assert.That(ints torch.[name], eq (ints reference.[name]), $"{policy} {normalize} {score}: {name}")

let ``torch capacity passes at ties on the capacity boundary, every policy`` () =
    // Every row the same: every expert is over-subscribed by requests with equal keys, values and first-choice scores,
    // so which requests fill the last places is decided by ties alone; any choice among them is valid.
    let row = [| 0.5f; 0.5f; 0.25f; 0.25f; -1.0f |]
    let n = 9
    let logits = NdArray.Create(Array.init (n * row.Length) (fun f -> row.[f % row.Length]), n, row.Length)

    for policy in policies do
        for normalize in [ "none"; "before"; "after" ] do
            for capacity in [ "0"; "1"; "4"; "9"; "30" ] do
                let torch, _ =
                    checkCall "capacity" [ "logits", logits ] [ "k", "3"; "policy", policy; "normalize", normalize; "capacity", capacity ]

                let load = ints torch.["load"]
                Assert.That(load |> Array.forall (fun l -> l <= int capacity), $"{policy} {capacity}: load {load}")

let ``torch expert-choice passes with ties between tokens at the capacity boundary`` () =
    let n, e = 12, 4
    let logits = NdArray.Create(Array.init (n * e) (fun f -> float32 ((f / e) % 3) * 0.5f), n, e)

    for capacity in [ "0"; "1"; "4"; "5"; "12" ] do
        let torch, reference = checkCall "expert-choice" [ "logits", logits ] [ "capacity", capacity ]
        let count = ints torch.["count"]
        Assert.That(Array.sum count, eq (e * int capacity), capacity)
        Assert.That(torch.["tokens"].Shape, eq reference.["tokens"].Shape, capacity)

let ``torch aux-loss passes every variant, including a uniform router`` () =
    for variant in [ "megatron"; "deepspeed-top1"; "deepspeed-top2"; "hf" ] do
        for k in [ "1"; "2"; "4" ] do
            checkCall "aux-loss" [ "logits", distinctLogits 16 4 ] [ "k", k; "variant", variant ] |> ignore
            // A uniform router: the Switch loss is 1 in every variant but hf, which is k times Megatron's
            // (proofs/aux-loss.md), up to float32 rounding.
            let torch, _ =
                checkCall "aux-loss" [ "logits", NdArray.Create(Array.create 64 0.75f, 16, 4) ] [ "k", k; "variant", variant ]

            let uniform = if variant = "hf" then float k else 1.0
            Assert.That(torch.["switch_loss"].GetDouble 0, Is.EqualTo(uniform).Within(1e-6), $"{variant} k={k}")

let ``torch sinkhorn log and sbase pass on converging and capped runs, with marginals`` () =
    let n, e = 7, 3
    let x = NdArray.Create(Array.init (n * e) (fun f -> float32 (sin (float f * 1.7)) * 2.0f), n, e)
    let a = NdArray.Create(Array.init n (fun i -> 1.0 / float n), n)
    let b = NdArray.Create([| 0.5; 0.3; 0.2 |], e)

    for maxIter in [ "1"; "11"; "500" ] do
        for tol in [ "1e-4"; "1e-6" ] do
            for reg in [ "0.1"; "1" ] do
                checkCall "sinkhorn" [ "logits", x ] [ "method", "log"; "reg", reg; "max_iter", maxIter; "tol", tol ]
                |> ignore

                checkCall "sinkhorn" [ "cost", x; "a", a; "b", b ] [ "method", "log"; "reg", reg; "max_iter", maxIter; "tol", tol ]
                |> ignore

            for k in [ "1"; "2" ] do
                let torch, _ =
                    checkCall "sinkhorn" [ "logits", x ] [ "method", "sbase"; "k", k; "max_iter", maxIter; "tol", tol ]

                Assert.That(torch.ContainsKey "experts", $"sbase k={k}")

let ``the torch paths run on most generated cases`` () =
    for algorithm in [ "topk"; "capacity"; "expert-choice"; "aux-loss"; "softtopk" ] do
        Assert.That(supportedShare algorithm, eq 200, algorithm)
    // sinkhorn: log and sbase only; the generator draws log in more than half of its cases.
    Assert.That(supportedShare "sinkhorn", Is.GreaterThan 100, "sinkhorn")

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "torch/routing"
        "TorchRoutingProperties"
        [
            Proofs.prop
                [ "torch.capacity-passes-check" ]
                "torch capacity passes check against the reference, in float32, float16 and bfloat16"
                ``torch capacity passes check against the reference, in float32, float16 and bfloat16``
            Proofs.test
                [ "torch.capacity-passes-check" ]
                "torch capacity keeps exactly the reference's requests and slots without ties, every policy and normalization"
                ``torch capacity keeps exactly the reference's requests and slots without ties, every policy and normalization``
            Proofs.test
                [ "torch.capacity-passes-check" ]
                "torch capacity passes at ties on the capacity boundary, every policy"
                ``torch capacity passes at ties on the capacity boundary, every policy``
            Proofs.prop
                [ "torch.expert-choice-passes-check" ]
                "torch expert-choice passes check against the reference, in float32, float16 and bfloat16"
                ``torch expert-choice passes check against the reference, in float32, float16 and bfloat16``
            Proofs.test
                [ "torch.expert-choice-passes-check" ]
                "torch expert-choice passes with ties between tokens at the capacity boundary"
                ``torch expert-choice passes with ties between tokens at the capacity boundary``
            Proofs.prop
                [ "torch.aux-loss-passes-check" ]
                "torch aux-loss passes check against the reference, in float32, float16 and bfloat16"
                ``torch aux-loss passes check against the reference, in float32, float16 and bfloat16``
            Proofs.test
                [ "torch.aux-loss-passes-check" ]
                "torch aux-loss passes every variant, including a uniform router"
                ``torch aux-loss passes every variant, including a uniform router``
            Proofs.prop
                [ "torch.sinkhorn-passes-check" ]
                "torch sinkhorn passes check against the reference, in float32, float16 and bfloat16"
                ``torch sinkhorn passes check against the reference, in float32, float16 and bfloat16``
            Proofs.test
                [ "torch.sinkhorn-passes-check" ]
                "torch sinkhorn log and sbase pass on converging and capped runs, with marginals"
                ``torch sinkhorn log and sbase pass on converging and capped runs, with marginals``
            Proofs.prop
                [ "torch.softtopk-passes-check" ]
                "torch softtopk passes check against the reference, in float32, float16 and bfloat16"
                ``torch softtopk passes check against the reference, in float32, float16 and bfloat16``
            Proofs.test
                [ "torch.softtopk-passes-check" ]
                "torch softtopk passes both methods with the Jacobian, at small tau and with constant rows"
                ``torch softtopk passes both methods with the Jacobian, at small tau and with constant rows``
            Proofs.test
                [ "torch.capacity-passes-check"; "torch.sinkhorn-passes-check"; "torch.softtopk-passes-check" ]
                "the torch paths run on most generated cases"
                ``the torch paths run on most generated cases``
        ]
