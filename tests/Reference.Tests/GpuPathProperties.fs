/// The `gpu` path (src/Reference.Gpu, ILGPU kernels on ILGPU's CPU accelerator here): property tests against the
/// references with the registry's own validators and tolerance policies, targeted cases (causal, windows, block masks
/// with empty rows, GQA, capacity ties), and `--device cuda` on a machine without a GPU. The tests run sequenced: the
/// CPU accelerator runs each group's threads as real threads meeting at barriers, which slows down by orders of
/// magnitude when other tests compete for the cores.
module Reference.Tests.GpuPathProperties

open System
open System.Collections.Generic
open System.IO
open NUnit.Framework
open FsCheck
open FsCheck.FSharp
open Reference.Harness
open Reference.Harness.Registry
open Reference.Harness.Tensors
open Reference.Gpu

let private find name = AlgorithmRegistry.Find name
let private gpuPath (algorithm: Algorithm) = algorithm.Paths |> Seq.find (fun p -> p.Name = "gpu")

/// Binds a case and checks the gpu path against the reference with the algorithm's validators and tolerance policies;
/// every report must pass. Returns whether the path supports the call (a call it does not support is not run).
let private checkGpu
    (algorithm: Algorithm)
    (inputs: IReadOnlyDictionary<string, NdArray>)
    (parameters: IDictionary<string, string>)
    (name: string)
    =
    let call = algorithm.Bind(inputs, parameters, name)
    let path = gpuPath algorithm

    if isNull path.Supports || path.Supports.Invoke call then
        let reports = SelfCheck.CheckPath(algorithm, path, call)
        Assert.That(reports.Count, Is.GreaterThan 0, name)

        for r in reports do
            Assert.That(r.Passed, $"{name} gpu: {r.Summary()} {r.Detail}")

        true
    else
        false

let private seeds = Gen.choose (0, 1_000_000_000) |> Arb.fromGen

let private parameters (pairs: (string * string) list) =
    let d = Dictionary<string, string>()

    for k, v in pairs do
        d.[k] <- v

    d :> IDictionary<string, string>

let private arrays (pairs: (string * NdArray) list) =
    let d = Dictionary<string, NdArray>()

    for k, v in pairs do
        d.[k] <- v

    d :> IReadOnlyDictionary<string, NdArray>

// ---------------------------------------------------------------------------------------------------------------
// Properties on the registry's own case generators (the selfcheck's cases).
// ---------------------------------------------------------------------------------------------------------------

let ``gpu attention passes the calibrated baseline on generated cases`` () =
    let attention = find "attention"

    Prop.forAll seeds (fun seed ->
        let case = attention.Generate.Invoke seed
        Assert.That(checkGpu attention case.Inputs (Dictionary(case.Parameters)) case.Name, case.Name))

/// A generated sinkhorn case turned into method log when it was another method (the gpu path implements log only),
/// so that every case runs the path.
let private asLog (case: GeneratedCase) =
    let p = Dictionary(case.Parameters)

    if p.["method"] <> "log" then
        p.["method"] <- "log"
        p.Remove "k" |> ignore

        if not (p.ContainsKey "reg") then
            p.["reg"] <- "0.3"

        if p.["max_iter"] = "40" || p.["max_iter"] = "60" then
            p.["max_iter"] <- "30"

    p

let ``gpu sinkhorn passes the sinkhorn validator on generated cases`` () =
    let sinkhorn = find "sinkhorn"

    Prop.forAll seeds (fun seed ->
        let case = sinkhorn.Generate.Invoke seed
        Assert.That(checkGpu sinkhorn case.Inputs (asLog case) case.Name, case.Name))

let ``gpu capacity passes the capacity validator on generated cases`` () =
    let capacity = find "capacity"

    Prop.forAll seeds (fun seed ->
        let case = capacity.Generate.Invoke seed
        Assert.That(checkGpu capacity case.Inputs (Dictionary(case.Parameters)) case.Name, case.Name))

// ---------------------------------------------------------------------------------------------------------------
// Targeted attention cases: long sequences, causal and windows in both alignments, GQA, block masks with empty rows.
// ---------------------------------------------------------------------------------------------------------------

let private qkv (seed: int) b hq hkv tq tk d dv =
    let rng = Random seed
    let draw n = Array.init n (fun _ -> float32 (rng.NextDouble() * 4.0 - 2.0))

    [
        "q", NdArray.Create(draw (b * hq * tq * d), b, hq, tq, d)
        "k", NdArray.Create(draw (b * hkv * tk * d), b, hkv, tk, d)
        "v", NdArray.Create(draw (b * hkv * tk * dv), b, hkv, tk, dv)
    ]

let ``gpu attention matches the reference at T = 256 with causal and windows in both alignments, GQA`` () =
    let attention = find "attention"
    let inputs = arrays (qkv 3 1 4 2 256 256 16 8)

    let settings =
        [
            [ "causal", "true" ]
            [ "window_left", "37"; "window_right", "5" ]
            [ "causal", "true"; "window_left", "64" ]
            [ "causal", "true"; "causal_align", "top-left"; "window_left", "20" ]
            [ "softcap", "5" ]
        ]

    for s in settings do
        Assert.That(checkGpu attention inputs (parameters s) (sprintf "T=256 %A" s), sprintf "unsupported: %A" s)
    // Tq < Tk: bottom-right and top-left alignment differ.
    let decode = arrays (qkv 4 2 3 1 40 200 8 8)

    for align in [ "bottom-right"; "top-left" ] do
        Assert.That(
            checkGpu
                attention
                decode
                (parameters [ "causal", "true"; "causal_align", align; "window_left", "50" ])
                ("Tq=40 Tk=200 " + align)
        )

/// A [1, 1, Tq, Tk] mask made of 16 x 16 tiles: full, empty or checkered (partial), with some rows entirely false.
let private tiledMask (rng: Random) tq tk (emptyRows: int list) =
    let kinds = Array2D.init ((tq + 15) / 16) ((tk + 15) / 16) (fun _ _ -> rng.Next 3)

    let m =
        Array.init (tq * tk) (fun x ->
            let i, j = x / tk, x % tk

            if List.contains i emptyRows then
                false
            else
                match kinds.[i / 16, j / 16] with
                | 0 -> false
                | 1 -> true
                | _ -> (i + j) % 3 <> 0)

    NdArray.Create(m, 1, 1, tq, tk)

let ``gpu attention with a block-structured mask skips empty tiles, reads no mask in full tiles, and gives empty rows 0 and -Inf`` () =
    let attention = find "attention"
    let rng = Random 11
    let tq, tk = 100, 130
    let emptyRows = [ 0; 17; 99 ]
    let mask = tiledMask rng tq tk emptyRows
    let inputs = arrays (("mask", mask) :: qkv 5 2 4 2 tq tk 8 4)

    for s in [ []; [ "causal", "true" ]; [ "window_left", "30"; "window_right", "0" ] ] do
        Assert.That(checkGpu attention inputs (parameters s) (sprintf "tiled mask %A" s))

    let call = attention.Bind(inputs, parameters [], "tiled mask")
    let out = attention.Run(call, "gpu")
    let lse = out.["lse"].ToDoubles()
    let o = out.["out"].ToDoubles()

    for b in 0..1 do
        for h in 0..3 do
            for i in emptyRows do
                let row = (b * 4 + h) * tq + i
                Assert.That(lse.[row], Is.EqualTo Double.NegativeInfinity, $"lse[{b},{h},{i}]")

                for e in 0..3 do
                    Assert.That(o.[row * 4 + e], Is.EqualTo 0.0, $"out[{b},{h},{i},{e}]")

// ---------------------------------------------------------------------------------------------------------------
// Capacity: ties, every policy and renormalization; on well-separated logits the decisions equal the CPU kernel's.
// ---------------------------------------------------------------------------------------------------------------

let private policies = [ "position"; "choice-position"; "score"; "logit"; "batch-priority" ]

let ``gpu capacity passes on tied logits for every policy and renormalization`` () =
    let capacity = find "capacity"
    let rng = Random 21
    let n, e = 64, 8
    // Logits on a grid of four values: most rows tie, and so do first-choice scores across tokens.
    let logits = NdArray.Create(Array.init (n * e) (fun _ -> float32 (rng.Next 4) * 0.5f), n, e)

    for policy in policies do
        for normalize in [ "none"; "before"; "after" ] do
            for score in [ "softmax"; "sigmoid" ] do
                let p =
                    parameters [ "k", "2"; "policy", policy; "normalize", normalize; "score", score; "capacity_factor", "0.75" ]

                Assert.That(checkGpu capacity (arrays [ "logits", logits ]) p $"ties {policy} {normalize} {score}")

/// The policies whose decisions distinct logits separate: selection keys within a row and the logits themselves.
/// score and batch-priority compare scores of different tokens, which distinct logits do not separate (a row shifted by
/// a constant has the same softmax), so they are left to the validator properties above.
let private separatedPolicies = [| "position"; "choice-position"; "logit" |]

let ``gpu capacity equals the CPU kernel on well-separated logits`` () =
    let capacity = find "capacity"

    Prop.forAll seeds (fun seed ->
        let rng = Random seed
        let n, e = 1 + rng.Next 80, 1 + rng.Next 16
        let k = 1 + rng.Next e
        // Distinct logits 0.37 apart: every score, selection and priority order is far from a float32 tie.
        let perm = Array.init (n * e) id |> Array.sortBy (fun _ -> rng.Next())
        let logits = NdArray.Create(perm |> Array.map (fun x -> float32 x * 0.37f - 10.0f), n, e)

        let p =
            parameters
                [
                    "k", string k
                    "policy", separatedPolicies.[rng.Next separatedPolicies.Length]
                    "normalize", [| "none"; "before"; "after" |].[rng.Next 3]
                    "capacity", string (rng.Next(n * k / e + 2))
                ]

        let call = capacity.Bind(arrays [ "logits", logits ], p, $"seed {seed}")
        let gpu = capacity.Run(call, "gpu")
        let cpu = capacity.Run(call, "kernel")

        for name in [ "experts"; "slots"; "load" ] do
            let policy = p.["policy"]
            Assert.That(gpu.[name].ToDoubles(), eq (cpu.[name].ToDoubles()), $"seed {seed} {name} {policy}")

        let wg, wc = gpu.["weights"].ToDoubles(), cpu.["weights"].ToDoubles()

        for x in 0 .. wg.Length - 1 do
            Assert.That(wg.[x], Is.EqualTo(wc.[x]).Within(1e-6), $"seed {seed} weights[{x}]"))

// ---------------------------------------------------------------------------------------------------------------
// The CLI: list, selfcheck --path gpu, and --device cuda without a GPU.
// ---------------------------------------------------------------------------------------------------------------

let private cli (args: string list) =
    use out = new StringWriter()
    use err = new StringWriter()
    let code = Reference.Cli.Cli.Run(Array.ofList args, out, err)
    code, out.ToString(), err.ToString()

let ``list shows the gpu path on cpu and cuda, and selfcheck --path gpu passes`` () =
    let code, out, _ = cli [ "list" ]
    Assert.That(code, Is.EqualTo 0)

    for alg in [ "attention"; "sinkhorn"; "capacity" ] do
        let line = out.Split('\n') |> Array.findIndex (fun l -> l.StartsWith(alg + ":"))
        Assert.That(out.Split('\n').[line + 1], Does.Contain "gpu (cpu, cuda)", alg)

    let code, out, err =
        cli [ "selfcheck"; "--path"; "gpu"; "--cases"; "10"; "--data"; Repo.path [ "data" ] ]

    Assert.That(code, Is.EqualTo 0, out + err)

    for alg in [ "attention"; "sinkhorn"; "capacity" ] do
        Assert.That(out, Does.Match(alg + "\\s+gpu\\s+\\d+\\s+PASS"), out)

let ``--device cuda without a CUDA device exits 2 with a one-line reason`` () =
    let d = Path.Combine(Path.GetTempPath(), "reference-gpu-" + Guid.NewGuid().ToString "N")
    Directory.CreateDirectory d |> ignore
    let input = Path.Combine(d, "in.npz")
    TensorFile.Write(input, qkv 1 1 2 1 8 8 4 4 |> List.map KeyValuePair)

    for args in
        [
            [
                "run"
                "attention"
                "--input"
                input
                "--output"
                Path.Combine(d, "o.npz")
                "--path"
                "gpu"
                "--device"
                "cuda"
            ]
            [ "check"; "attention"; "--input"; input; "--path"; "gpu"; "--device"; "cuda" ]
        ] do
        let code, _, err = cli args
        Assert.That(code, Is.EqualTo 2, err)
        Assert.That(err.Trim().Split('\n').Length, Is.EqualTo 1, err)
        Assert.That(err, Does.Contain "--device cuda")
        Assert.That(err, Does.Contain "no CUDA device")

    Directory.Delete(d, true)

let ``registering the gpu paths twice adds them once`` () =
    GpuPaths.Register()
    GpuPaths.Register()

    for alg in [ "attention"; "sinkhorn"; "capacity" ] do
        Assert.That((find alg).PathNames |> Seq.filter ((=) "gpu") |> Seq.length, Is.EqualTo 1, alg)

[<Expecto.Tests>]
let tests =
    Proofs.family
        "gpu"
        "GpuPathProperties"
        [
            Proofs.sequenced (
                Proofs.prop
                    [ "attention.gpu-path" ]
                    "gpu attention passes the calibrated baseline on generated cases"
                    ``gpu attention passes the calibrated baseline on generated cases``
            )
            Proofs.sequenced (
                Proofs.prop
                    [ "sinkhorn.gpu-path" ]
                    "gpu sinkhorn passes the sinkhorn validator on generated cases"
                    ``gpu sinkhorn passes the sinkhorn validator on generated cases``
            )
            Proofs.sequenced (
                Proofs.prop
                    [ "capacity.gpu-path" ]
                    "gpu capacity passes the capacity validator on generated cases"
                    ``gpu capacity passes the capacity validator on generated cases``
            )
            Proofs.sequenced (
                Proofs.prop
                    [ "capacity.gpu-prefix-sum-dispatch" ]
                    "gpu capacity equals the CPU kernel on well-separated logits"
                    ``gpu capacity equals the CPU kernel on well-separated logits``
            )
            Proofs.sequenced (
                Proofs.test
                    [ "attention.gpu-path"; "attention.gpu-tile-skipping" ]
                    "gpu attention matches the reference at T = 256 with causal and windows in both alignments, GQA"
                    ``gpu attention matches the reference at T = 256 with causal and windows in both alignments, GQA``
            )
            Proofs.sequenced (
                Proofs.test
                    [ "attention.gpu-tile-skipping" ]
                    "gpu attention with a block-structured mask skips empty tiles, reads no mask in full tiles, and gives empty rows 0 and -Inf"
                    ``gpu attention with a block-structured mask skips empty tiles, reads no mask in full tiles, and gives empty rows 0 and -Inf``
            )
            Proofs.sequenced (
                Proofs.test
                    [ "capacity.gpu-path" ]
                    "gpu capacity passes on tied logits for every policy and renormalization"
                    ``gpu capacity passes on tied logits for every policy and renormalization``
            )
            Proofs.sequenced (
                Proofs.test
                    []
                    "list shows the gpu path on cpu and cuda, and selfcheck --path gpu passes"
                    ``list shows the gpu path on cpu and cuda, and selfcheck --path gpu passes``
            )
            Proofs.sequenced (
                Proofs.test
                    []
                    "--device cuda without a CUDA device exits 2 with a one-line reason"
                    ``--device cuda without a CUDA device exits 2 with a one-line reason``
            )
            Proofs.sequenced (
                Proofs.test [] "registering the gpu paths twice adds them once" ``registering the gpu paths twice adds them once``
            )
        ]
