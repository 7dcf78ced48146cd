/// `reference check`'s verdict contract (issue "Verdicts a CI can trust"): precision per array, exit codes (a wrong
/// candidate array is a mismatch, exit 1, reported per array; exit 2 only for usage errors and invalid inputs), `--json`
/// always written, `--help` for every verb, and console reports that say where a candidate failed.
module Reference.Tests.CheckContractTests

open System
open System.IO
open System.Text.Json
open System.Collections.Generic
open NUnit.Framework
open Reference.Numerics
open Reference.Harness.Registry
open Reference.Harness.Tensors
open Reference.Tests.CliTests

let private temp () =
    let d = Path.Combine(Path.GetTempPath(), "check-contract-" + Guid.NewGuid().ToString "N")
    Directory.CreateDirectory d |> ignore
    d

let private write path (arrays: (string * NdArray) list) = TensorFile.Write(path, arrays |> List.map (fun (k, v) -> KeyValuePair(k, v)))

/// Normal entries from a seeded generator.
let private normals (seed: int) (count: int) =
    let r = Random seed
    Array.init count (fun _ -> sqrt (-2.0 * log (1.0 - r.NextDouble())) * cos (2.0 * Math.PI * r.NextDouble()))

/// Router logits [12, 6] float32 with distinct values (no near-ties).
let private logits () = NdArray.Create(normals 3 72 |> Array.map float32, 12, 6)

/// The reference's topk outputs for `logits ()` with k = 2, computed by the CLI's own `run`.
let private topkReference (d: string) =
    let input, output = Path.Combine(d, "in.npz"), Path.Combine(d, "ref.npz")
    write input [ "logits", logits () ]
    let code, out, err = cli [ "run"; "topk"; "--input"; input; "--output"; output ]
    Assert.That(code, Is.EqualTo 0, out + err)
    input, TensorFile.Read output

let private readJson (path: string) = JsonDocument.Parse(File.ReadAllText path).RootElement

let ``a candidate array of the wrong shape is a mismatch reported per array, and the others are still judged`` () =
    let d = temp ()
    let input, reference = topkReference d
    let cand, report = Path.Combine(d, "cand.npz"), Path.Combine(d, "report.json")
    let weights = reference.["weights"].ToDoubles() |> Array.map float32
    // experts [12, 1] instead of [12, 2] (a kernel that kept only the first choice); weights are right.
    write
        cand
        [
            "experts", NdArray.Create(Array.zeroCreate<int> 12, 12, 1)
            "weights", NdArray.Create(weights, 12, 2)
        ]

    let code, out, err = cli [ "check"; "topk"; "--input"; input; "--candidate"; cand; "--json"; report ]
    Assert.That(code, Is.EqualTo 1, out + err)
    Assert.That(out, Does.Contain "FAIL experts has shape (12, 1) but the reference gives (12, 2)")
    Assert.That(out, Does.Contain "PASS weights")
    let root = readJson report
    Assert.That(root.GetProperty("status").GetString(), Is.EqualTo "fail")

    let experts =
        root.GetProperty("outputs").EnumerateArray()
        |> Seq.find (fun o -> o.GetProperty("array").GetString() = "experts")

    Assert.That(experts.GetProperty("passed").GetBoolean(), Is.False)
    Assert.That(experts.GetProperty("problem").GetString(), Does.Contain "shape (12, 1)")
    Directory.Delete(d, true)

let ``a float array where the algorithm outputs integers is a mismatch`` () =
    let d = temp ()
    let input, reference = topkReference d
    let cand = Path.Combine(d, "cand.npz")
    // The right expert ids, saved as float32 (e.g. torch.topk indices after .float()).
    write cand [ "experts", NdArray.Create(reference.["experts"].ToDoubles() |> Array.map float32, 12, 2) ]
    let code, out, err = cli [ "check"; "topk"; "--input"; input; "--candidate"; cand ]
    Assert.That(code, Is.EqualTo 1, out + err)
    Assert.That(out, Does.Contain "FAIL experts has dtype f32 but topk outputs integer values there")
    Directory.Delete(d, true)

let ``--json is written with status error on exit 2`` () =
    let d = temp ()
    let input, _ = topkReference d
    let cand, report = Path.Combine(d, "cand.npz"), Path.Combine(d, "report.json")
    write cand [ "something", NdArray.Create([| 1.0 |], 1) ]
    let code, _, err = cli [ "check"; "topk"; "--input"; input; "--candidate"; cand; "--json"; report ]
    Assert.That(code, Is.EqualTo 2, err)
    let root = readJson report
    Assert.That(root.GetProperty("status").GetString(), Is.EqualTo "error")
    Assert.That(root.GetProperty("message").GetString(), Does.Contain "holds none of topk's outputs")
    Assert.That(root.GetProperty("exit_code").GetInt32(), Is.EqualTo 2)
    // A usage error (a repeated --param) writes one too, and a stale report is overwritten.
    let code, _, _ =
        cli
            [
                "check"
                "topk"
                "--input"
                input
                "--candidate"
                cand
                "--param"
                "k=2"
                "--param"
                "k=2"
                "--json"
                report
            ]

    Assert.That(code, Is.EqualTo 2)
    Assert.That((readJson report).GetProperty("message").GetString(), Does.Contain "'k' is given twice")
    Directory.Delete(d, true)

let ``every verb's --help prints its usage and exits 0`` () =
    for verb in [ "list"; "run"; "check"; "selfcheck"; "flow"; "bench" ] do
        for flag in [ "--help"; "-h" ] do
            let code, out, err = cli [ verb; flag ]
            Assert.That(code, Is.EqualTo 0, $"{verb} {flag}: {err}")
            Assert.That(out, Does.Contain $"reference {verb}", $"{verb} {flag}")
            Assert.That(out, Does.Contain "exit codes", $"{verb} {flag}")
    // --help wins over missing required options.
    let code, out, _ = cli [ "check"; "topk"; "--help" ]
    Assert.That(code, Is.EqualTo 0)
    Assert.That(out, Does.Contain "--candidate")

let ``a failing float array lists its first mismatches with got, expected and allowed; integer arrays show no errors`` () =
    let d = temp ()
    let input, reference = topkReference d
    let cand = Path.Combine(d, "cand.npz")
    let weights = reference.["weights"].ToDoubles() |> Array.map float32
    weights.[5] <- weights.[5] * 1.01f
    let experts = reference.["experts"].Values<int>() |> Array.copy
    write cand [ "experts", NdArray.Create(experts, 12, 2); "weights", NdArray.Create(weights, 12, 2) ]
    let code, out, err = cli [ "check"; "topk"; "--input"; input; "--candidate"; cand ]
    Assert.That(code, Is.EqualTo 1, out + err)
    let lines = out.Split('\n') |> Array.map _.TrimEnd()
    let expertsLine = lines |> Array.find (fun l -> l.StartsWith "PASS experts")
    Assert.That(expertsLine, Does.Not.Contain "max_rel")
    Assert.That(expertsLine, Does.Contain "mismatches=0/24")
    let weightsLine = lines |> Array.findIndex (fun l -> l.StartsWith "FAIL weights")
    Assert.That(lines.[weightsLine], Does.Contain "mismatches=1/24")
    Assert.That(lines.[weightsLine], Does.Contain "margin=")
    let detail = lines.[weightsLine + 1]
    Assert.That(detail, Does.StartWith "  at (2, 1): got ")
    Assert.That(detail, Does.Contain " expected ")
    Assert.That(detail, Does.Contain " allowed ")
    Directory.Delete(d, true)

let ``precision is per array: a float32 out beside a float64 lse is judged in each one's own precision`` () =
    let d = temp ()

    let input, refFile, cand =
        Path.Combine(d, "in.npz"), Path.Combine(d, "ref.npz"), Path.Combine(d, "cand.npz")

    let q, k, v = normals 1 (2 * 64 * 16), normals 2 (2 * 64 * 16), normals 3 (2 * 64 * 16)
    let f32 (xs: float[]) = NdArray.Create(xs |> Array.map float32, 1, 2, 64, 16)
    write input [ "q", f32 q; "k", f32 k; "v", f32 v ]

    let code, out, err =
        cli [ "run"; "attention"; "--input"; input; "--output"; refFile; "--param"; "causal=true" ]

    Assert.That(code, Is.EqualTo 0, out + err)
    let reference = TensorFile.Read refFile
    // A float32 kernel's out and the float64 reference's lse: each passes in its own precision.
    let kernelOut = Path.Combine(d, "kernel.npz")

    let code, out, err =
        cli
            [
                "run"
                "attention"
                "--input"
                input
                "--output"
                kernelOut
                "--param"
                "causal=true"
                "--path"
                "kernel"
            ]

    Assert.That(code, Is.EqualTo 0, out + err)
    let kernel = TensorFile.Read kernelOut
    write cand [ "out", kernel.["out"]; "lse", reference.["lse"] ]

    let code, out, err =
        cli [ "check"; "attention"; "--input"; input; "--candidate"; cand; "--param"; "causal=true" ]

    Assert.That(code, Is.EqualTo 0, out + err)
    // The float64 lse is held to float64: an lse with float32's rounding error beside it fails.
    let lse32 =
        reference.["lse"].ToDoubles()
        |> Array.map (fun x -> if Double.IsFinite x then x * (1.0 + 3e-7) else x)

    write cand [ "out", kernel.["out"]; "lse", NdArray.Create(lse32, 1, 2, 64) ]

    let code, out, _ =
        cli [ "check"; "attention"; "--input"; input; "--candidate"; cand; "--param"; "causal=true" ]

    Assert.That(code, Is.EqualTo 1, out)
    Assert.That(out, Does.Contain "PASS out")
    Assert.That(out, Does.Contain "FAIL lse")
    // A bfloat16 result saved as float32 (numpy has no bfloat16) is judged as bfloat16.
    let bf16 =
        reference.["out"].ToDoubles()
        |> Array.map (fun x -> float32 (Precision.Round(x, NumberFormat.BFloat16)))

    write cand [ "out", NdArray.Create(bf16, 1, 2, 64, 16) ]

    let code, out, _ =
        cli [ "check"; "attention"; "--input"; input; "--candidate"; cand; "--param"; "causal=true" ]

    Assert.That(code, Is.EqualTo 0, out)
    Assert.That(out, Does.Contain "bf16")
    Directory.Delete(d, true)

let ``Formats.Effective is the least precise format that holds every value`` () =
    let r = Random 5
    let doubles = Array.init 100 (fun _ -> r.NextDouble() - 0.5)
    let effective (a: NdArray) = Formats.Effective a
    Assert.That(effective (NdArray.Create(doubles, 100)), Is.EqualTo NumberFormat.Float64)
    let asF32 = doubles |> Array.map (fun x -> float (float32 x))
    Assert.That(effective (NdArray.Create(asF32, 100)), Is.EqualTo NumberFormat.Float32)
    Assert.That(effective (NdArray.Create(asF32 |> Array.map float32, 100)), Is.EqualTo NumberFormat.Float32)
    let asBf16 = doubles |> Array.map (fun x -> Precision.Round(x, NumberFormat.BFloat16))
    Assert.That(effective (NdArray.Create(asBf16, 100)), Is.EqualTo NumberFormat.BFloat16)
    let asF16 = doubles |> Array.map (fun x -> Precision.Round(x, NumberFormat.Float16))
    Assert.That(effective (NdArray.Create(asF16 |> Array.map float32, 100)), Is.EqualTo NumberFormat.Float16)
    // Non-finite values fit every format; a float16 array stays float16; integers are Float64.
    let withInf = Array.append asBf16 [| Double.NegativeInfinity; nan |]
    Assert.That(effective (NdArray.Create(withInf, 102)), Is.EqualTo NumberFormat.BFloat16)
    Assert.That(effective (NdArray.Create(asBf16 |> Array.map Half.op_Explicit, 100)), Is.EqualTo NumberFormat.Float16)
    Assert.That(effective (NdArray.Create([| 1; 2 |], 2)), Is.EqualTo NumberFormat.Float64)

let ``a capacity off by one is blamed on an expert and its load, not on a token`` () =
    let d = temp ()
    let input, refFile = Path.Combine(d, "in.npz"), Path.Combine(d, "ref.npz")
    write input [ "logits", NdArray.Create(normals 11 (64 * 8) |> Array.map float32, 64, 8) ]
    // The reference at C = ceil(64 * 2 / 8) = 16, and a kernel that used C = 15 or C = 17 (floor/ceil off by one):
    // the reference run with an explicit capacity stands in for it.
    for wrongC, fragment in [ 15, "keeps only 15 < C = 16 requests"; 17, "keeps 17 requests, more than its capacity C = 16" ] do
        let cand = Path.Combine(d, $"cand{wrongC}.npz")

        let code, out, err =
            cli
                [
                    "run"
                    "capacity"
                    "--input"
                    input
                    "--output"
                    cand
                    "--param"
                    $"capacity={wrongC}"
                    "--param"
                    "capacity_factor=0.5"
                ]

        Assert.That(code, Is.EqualTo 0, out + err)
        // capacity_factor 0.5 would give C = 8, so the candidates above really come from their explicit C; check at cf 1.
        let code, out, err = cli [ "check"; "capacity"; "--input"; input; "--candidate"; cand ]
        Assert.That(code, Is.EqualTo 1, out + err)
        let experts = out.Split('\n') |> Array.find (fun l -> l.StartsWith "FAIL experts")
        Assert.That(experts, Does.Contain "invalid routing: ")
        Assert.That(experts, Does.Contain fragment)

    Directory.Delete(d, true)

let ``top-left causal attention is judged under its own mask: the kernel passes and a 0.1% scale error fails`` () =
    let d = temp ()
    let input = Path.Combine(d, "in.npz")
    let f32 (xs: float[]) (t: int) = NdArray.Create(xs |> Array.map float32, 1, 2, t, 64)

    write
        input
        [
            "q", f32 (normals 21 (2 * 48 * 64)) 48
            "k", f32 (normals 22 (2 * 160 * 64)) 160
            "v", f32 (normals 23 (2 * 160 * 64)) 160
        ]

    let run (output: string) (extra: string list) =
        let code, out, err =
            cli (
                [
                    "run"
                    "attention"
                    "--input"
                    input
                    "--output"
                    output
                    "--param"
                    "causal=true"
                    "--param"
                    "causal_align=top-left"
                ]
                @ extra
            )

        Assert.That(code, Is.EqualTo 0, out + err)

    let check (candidate: string) =
        cli
            [
                "check"
                "attention"
                "--input"
                input
                "--candidate"
                candidate
                "--param"
                "causal=true"
                "--param"
                "causal_align=top-left"
            ]

    let kernel, wrongScale = Path.Combine(d, "kernel.npz"), Path.Combine(d, "scale.npz")
    run kernel [ "--path"; "kernel" ]
    let code, out, err = check kernel
    Assert.That(code, Is.EqualTo 0, out + err)
    // The reference with the softmax scale off by 0.1%, stored in float32 like a float32 kernel's output.
    run wrongScale [ "--param"; $"scale={1.001 / 8.0}" ]
    let wrong = TensorFile.Read wrongScale
    let cand = Path.Combine(d, "cand.npz")
    write cand [ "out", NdArray.Create(wrong.["out"].ToDoubles() |> Array.map float32, 1, 2, 48, 64) ]
    let code, out, err = check cand
    Assert.That(code, Is.EqualTo 1, out + err)
    Assert.That(out, Does.StartWith "FAIL out baseline(f32")
    Directory.Delete(d, true)

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "cli/check"
        "CheckContractTests"
        [
            Proofs.test
                []
                "a candidate array of the wrong shape is a mismatch reported per array, and the others are still judged"
                ``a candidate array of the wrong shape is a mismatch reported per array, and the others are still judged``
            Proofs.test
                []
                "a float array where the algorithm outputs integers is a mismatch"
                ``a float array where the algorithm outputs integers is a mismatch``
            Proofs.test [] "--json is written with status error on exit 2" ``--json is written with status error on exit 2``
            Proofs.test [] "every verb's --help prints its usage and exits 0" ``every verb's --help prints its usage and exits 0``
            Proofs.test
                []
                "a failing float array lists its first mismatches with got, expected and allowed; integer arrays show no errors"
                ``a failing float array lists its first mismatches with got, expected and allowed; integer arrays show no errors``
            Proofs.test
                []
                "precision is per array: a float32 out beside a float64 lse is judged in each one's own precision"
                ``precision is per array: a float32 out beside a float64 lse is judged in each one's own precision``
            Proofs.test
                []
                "Formats.Effective is the least precise format that holds every value"
                ``Formats.Effective is the least precise format that holds every value``
            Proofs.test
                []
                "a capacity off by one is blamed on an expert and its load, not on a token"
                ``a capacity off by one is blamed on an expert and its load, not on a token``
            Proofs.test
                []
                "top-left causal attention is judged under its own mask: the kernel passes and a 0.1% scale error fails"
                ``top-left causal attention is judged under its own mask: the kernel passes and a 0.1% scale error fails``
        ]
