/// The registry entries `attention` and `block-sparse`: their paths, and how `check` judges out and lse
/// (the calibrated baseline for float32/float16/bfloat16 candidates, the derived bound for float64; proofs/attention.md).
module Reference.Tests.AttentionRegistryTests

open System
open System.IO
open System.Text.Json
open System.Text.RegularExpressions
open System.Collections.Generic
open NUnit.Framework
open FsCheck
open FsCheck.FSharp
open Reference.Attention
open Reference.Numerics
open Reference.Harness
open Reference.Harness.Algorithms
open Reference.Harness.Registry
open Reference.Harness.Tensors
open Reference.Tests.Proofs

let private cli (args: string list) =
    use out = new StringWriter()
    use err = new StringWriter()
    let code = Reference.Cli.Cli.Run(Array.ofList args, out, err)
    code, out.ToString(), err.ToString()

let private temp () =
    let d = Path.Combine(Path.GetTempPath(), "attention-registry-" + Guid.NewGuid().ToString "N")
    Directory.CreateDirectory d |> ignore
    d

let private write path (arrays: (string * NdArray) list) = TensorFile.Write(path, arrays |> List.map (fun (k, v) -> KeyValuePair(k, v)))

let private attention = AlgorithmRegistry.Find "attention"
let private blockSparse = AlgorithmRegistry.Find "block-sparse"

/// q [1,4,Tq,16], k [1,2,Tk,16], v [1,2,Tk,8], normal entries rounded to float16 (exact in every wider format).
let private inputs (seed: int) tq tk =
    let r = Random seed
    let normal () = sqrt (-2.0 * log (1.0 - r.NextDouble())) * cos (2.0 * Math.PI * r.NextDouble())

    let arr (shape: int[]) =
        let n = Array.fold (*) 1 shape
        NdArray.Create(Array.init n (fun _ -> Half.op_Explicit (normal ())), shape)

    [ "q", arr [| 1; 4; tq; 16 |]; "k", arr [| 1; 2; tk; 16 |]; "v", arr [| 1; 2; tk; 8 |] ]

let private bind (alg: Algorithm) (arrays: (string * NdArray) list) (parameters: (string * string) list) =
    alg.Bind(dict arrays |> Dictionary, parameters |> List.map KeyValuePair, "test")

/// Converts every float array to another dtype (through double; rounding to nearest even).
let private convert (dtype: DType) (a: NdArray) =
    let xs = a.ToDoubles()
    let shape = Array.ofSeq a.Shape

    match dtype with
    | DType.F16 -> NdArray.Create(xs |> Array.map Half.op_Explicit, shape)
    | DType.BF16 -> NdArray.Create(xs |> Array.map BFloat16.FromDouble, shape)
    | DType.F32 -> NdArray.Create(xs |> Array.map float32, shape)
    | _ -> NdArray.Create(xs, shape)

let private number (line: string) (key: string) =
    let m = Regex.Match(line, key + @"=(\S+)")
    Assert.That(m.Success, $"'{key}=' in: {line}")
    Double.Parse(m.Groups.[1].Value, Globalization.CultureInfo.InvariantCulture)

let ``check judges low precision candidates by the baseline and prints its numbers`` (format: string, ext: string) =
    let d = temp ()
    let input = Path.Combine(d, "in.npz")
    let arrays = inputs 3 33 40
    write input arrays

    let dtype, nf =
        if format = "f16" then
            DType.F16, NumberFormat.Float16
        else
            DType.BF16, NumberFormat.BFloat16
    // The candidate: the float32 kernel's output stored in the low precision.
    let call = bind attention arrays [ "causal", "true" ]
    let kernel = attention.Run(call, "kernel")
    let cand = Path.Combine(d, "cand." + ext)
    write cand [ "out", convert dtype kernel.["out"]; "lse", convert dtype kernel.["lse"] ]
    let report = Path.Combine(d, "report.json")

    let code, out, err =
        cli
            [
                "check"
                "attention"
                "--input"
                input
                "--candidate"
                cand
                "--param"
                "causal=true"
                "--json"
                report
            ]

    Assert.That(code, eq 0, out + err)
    let lines = out.Trim().Split('\n')
    Assert.That(lines.Length, eq 2, out)
    // The numbers in the lines are those of the rule: base_error from AttentionBaseline (the naive computation in the
    // format with float32 accumulation), floor from the reference, bound = factor * base_error + floor.
    let reference = attention.RunReference call

    let q, k, v =
        [ for n in [ "q"; "k"; "v" ] -> arrays |> List.find (fst >> (=) n) |> snd ]
        |> function
            | [ a; b; c ] -> a, b, c
            | _ -> failwith "3"

    let to4 (a: NdArray) =
        let s = a.Shape
        let xs = a.ToDoubles()
        Array4D.init s.[0] s.[1] s.[2] s.[3] (fun i j l m -> xs.[((i * s.[1] + j) * s.[2] + l) * s.[3] + m])

    let options = AttentionOptions(Causal = true)
    let rows = AttentionBaseline.DenseRows(options, 33, 40)

    let o0, l0, magnitude =
        AttentionBaseline.Compute(to4 q, to4 k, to4 v, 0.25, 0.0, rows, null, nf, 0).ToTuple()

    let o1, l1, _ = AttentionBaseline.Compute(to4 q, to4 k, to4 v, 0.25, 0.0, rows, null, nf, 1).ToTuple()
    let factor = AttentionTolerance.FactorLow
    let u = Precision.UnitRoundoff NumberFormat.Float32
    let maxAbs (xs: float seq) = xs |> Seq.filter Double.IsFinite |> Seq.map abs |> Seq.max

    let outFloor =
        AttentionTolerance.OutFloorUlps * u * maxAbs (v.ToDoubles())
        + AttentionTolerance.MergeFloorUlps * u * maxAbs l0 * maxAbs (v.ToDoubles())

    let lseFloor =
        AttentionTolerance.ScoreFloorUlps * u * Array.max magnitude
        + AttentionTolerance.LseFloorUlps * u * maxAbs l0
        + AttentionTolerance.FunctionUlps * u

    for line, name, bases, extra in [ lines.[0], "out", [ o0; o1 ], outFloor; lines.[1], "lse", [ l0; l1 ], lseFloor ] do
        Assert.That(line, Does.StartWith($"PASS {name} baseline({format}, factor={factor})"))
        Assert.That(line, Does.Contain "margin=")
        let refValues = reference.[name].ToDoubles()

        let baseError =
            bases
            |> List.map (fun baseValues ->
                Seq.zip baseValues refValues
                |> Seq.filter (fun (b, r) -> Double.IsFinite b && Double.IsFinite r)
                |> Seq.map (fun (b, r) -> abs (b - r))
                |> Seq.max)
            |> List.max

        let floor =
            2.0
            * (refValues
               |> Seq.filter Double.IsFinite
               |> Seq.map (fun r -> Precision.RepresentationError(r, nf))
               |> Seq.max)

        Assert.That(number line "base_error", eq baseError, line)
        Assert.That(number line "floor", eq floor, line)
        Assert.That(number line "rounding_floor", eq extra, line)
        Assert.That(number line "bound", eq (factor * baseError + floor + extra), line)

    use doc = JsonDocument.Parse(File.ReadAllText report)

    for o in doc.RootElement.GetProperty("outputs").EnumerateArray() do
        Assert.That(o.GetProperty("policy").GetString(), Does.StartWith "baseline(")
        Assert.That(o.GetProperty("detail").GetString(), Does.Contain "base_error=")

    // The same candidate with one element moved by 1.5 bounds fails, naming the element.
    let bound = number lines.[0] "bound"
    let moved = kernel.["out"].ToDoubles()
    moved.[77] <- moved.[77] + 1.5 * bound
    write cand [ "out", convert dtype (NdArray.Create(moved, Array.ofSeq kernel.["out"].Shape)) ]

    let code, out, _ =
        cli [ "check"; "attention"; "--input"; input; "--candidate"; cand; "--param"; "causal=true" ]

    Assert.That(code, eq 1, out)
    Assert.That(out, Does.StartWith "FAIL out baseline(")
    Directory.Delete(d, true)

let ``check judges float32 candidates by the calibrated baseline`` () =
    let arrays = inputs 5 17 17
    let call = bind attention arrays [ "window_left", "4"; "window_right", "0"; "softcap", "3" ]
    let expected = attention.RunReference call
    let kernel = attention.Run(call, "kernel")
    let reports = attention.Check(call, expected, kernel, "kernel")
    Assert.That(reports.Count, eq 2)

    for r in reports do
        Assert.That(r.Passed, r.Summary())
        Assert.That(r.PolicyName, eq $"baseline(f32, factor={AttentionTolerance.Factor32})")
        Assert.That(r.Detail, Does.StartWith "baseline=naive-f32 orders=2 factor=")
        Assert.That(r.Margin.HasValue, r.Summary())
    // Off by twice the bound at one element: fails.
    let bound =
        (reports |> Seq.find (fun r -> r.ArrayName = "out")).Detail
        |> fun d -> Regex.Match(d, @" bound=(\S+)").Groups.[1].Value |> float

    let moved = kernel.["out"].ToDoubles() |> Array.map float32
    moved.[3] <- moved.[3] + float32 (2.0 * bound)
    let bad = Dictionary(dict [ "out", NdArray.Create(moved, Array.ofSeq kernel.["out"].Shape) ])
    let r = attention.Check(call, expected, bad, "bad").[0]
    Assert.That(r.Passed, Is.False, r.Summary())
    Assert.That(r.FirstMismatches.[0].FlatIndex, eq 3L)

let ``empty rows give zero and minus infinity through the registry and a finite lse there fails`` () =
    // Tq > Tk with causal masking: rows i < Tq - Tk see no key.
    let arrays = inputs 7 9 4
    let call = bind attention arrays [ "causal", "true" ]

    for path in attention.PathNames do
        let result = attention.Run(call, path)
        let lse = result.["lse"].ToDoubles()
        let out = result.["out"].ToDoubles()

        for h in 0..3 do
            for i in 0..4 do
                Assert.That(lse.[h * 9 + i], eq Double.NegativeInfinity, $"{path}: lse[0, {h}, {i}]")

                for e in 0..7 do
                    Assert.That(out.[(h * 9 + i) * 8 + e], eq 0.0, $"{path}: out[0, {h}, {i}, {e}]")

            Assert.That(Double.IsFinite lse.[h * 9 + 5], $"{path}: row 5 sees key 0")

    let expected = attention.RunReference call
    let lse = expected.["lse"].ToDoubles()
    lse.[0] <- 0.0
    let bad = Dictionary(dict [ "lse", NdArray.Create(lse, 1, 4, 9) ])

    for r in attention.Check(call, expected, bad, "bad") do
        Assert.That(r.Passed, Is.False)
        Assert.That(r.InfMismatches, eq 1L)

let ``block sparse inputs are checked and bad lists are named by their array`` () =
    let d = temp ()
    let input = Path.Combine(d, "in.npz")
    let arrays = inputs 11 9 10
    // QB = 4, KB = 3: nq = 3, nk = 4. Query tile 1 lists key tiles 2 then 1 (not ascending).
    let counts = NdArray.Create([| 1; 2; 0 |], 1, 1, 3)
    let indices = NdArray.Create([| 0; 0; 0; 0; 2; 1; 0; 0; 9; 9; 9; 9 |], 1, 1, 3, 4)
    write input (arrays @ [ "kv_num_blocks", counts; "kv_indices", indices ])
    let out = Path.Combine(d, "out.npz")

    let code, _, err =
        cli
            [
                "run"
                "block-sparse"
                "--input"
                input
                "--output"
                out
                "--param"
                "block_q=4"
                "--param"
                "block_k=3"
            ]

    Assert.That(code, eq 2, err)
    Assert.That(err, Does.Contain input)
    Assert.That(err, Does.Contain "kv_indices[0, 0, 1, 1] = 1")
    // Ascending lists run on every path, and the kernels pass the check.
    let good = NdArray.Create([| 0; 0; 0; 0; 1; 2; 0; 0; 9; 9; 9; 9 |], 1, 1, 3, 4)

    let call =
        bind blockSparse (arrays @ [ "kv_num_blocks", counts; "kv_indices", good ]) [ "block_q", "4"; "block_k", "3" ]

    let expected = blockSparse.RunReference call

    for path in [ "kernel"; "split-kv" ] do
        for r in blockSparse.Check(call, expected, blockSparse.Run(call, path), path) do
            Assert.That(r.Passed, $"{path}: {r.Summary()} {r.Detail}")
    // Query tile 2 lists nothing: its rows are empty.
    let lse = expected.["lse"].ToDoubles()
    Assert.That(lse.[8], eq Double.NegativeInfinity)
    Directory.Delete(d, true)

/// Seeds for the registry's own case generators.
let private seeds = Gen.choose (0, 1_000_000_000) |> Arb.fromGen

let ``registry paths pass the calibrated tolerance on generated attention cases`` () =
    Prop.forAll seeds (fun seed ->
        let case = attention.Generate.Invoke seed
        let call = attention.Bind(case.Inputs, case.Parameters, case.Name)

        for path in attention.Paths do
            for r in SelfCheck.CheckPath(attention, path, call) do
                Assert.That(r.Passed, $"{case.Name} {path.Name}: {r.Summary()} {r.Detail}"))

let ``registry paths pass the calibrated tolerance on generated block sparse cases`` () =
    Prop.forAll seeds (fun seed ->
        let case = blockSparse.Generate.Invoke seed
        let call = blockSparse.Bind(case.Inputs, case.Parameters, case.Name)

        for path in blockSparse.Paths do
            for r in SelfCheck.CheckPath(blockSparse, path, call) do
                Assert.That(r.Passed, $"{case.Name} {path.Name}: {r.Summary()} {r.Detail}"))

// ---------------------------------------------------------------------------------------------------------------
// The PyTorch float64 peer (tests/peers/attention_peer.py): golden cases and fresh generated cases, within 1e-10.
// ---------------------------------------------------------------------------------------------------------------

let private goldenDir name = Repo.path [ "data"; "golden"; name ]

let ``torch peer confirms the golden cases`` (name: string) =
    Peers.requireModules [ "numpy"; "torch" ] "python3-numpy python3-torch"
    let cases = Directory.GetDirectories(goldenDir name).Length
    Assert.That(cases, Is.GreaterThan 0)
    let out = Peers.runPeer "attention_peer.py" [ "verify"; goldenDir name ]
    Assert.That(out, Does.Contain $"{cases} of {cases} cases agree")

let ``torch peer agrees with the reference on fresh generated cases`` (name: string) =
    Peers.requireModules [ "numpy"; "torch" ] "python3-numpy python3-torch"
    let d = Path.Combine(Path.GetTempPath(), "attention-peer-" + Guid.NewGuid().ToString "N")

    let seed =
        if String.Equals(Environment.GetEnvironmentVariable "CI", "true", StringComparison.OrdinalIgnoreCase) then
            11
        else
            Random.Shared.Next()

    Peers.runPeer "attention_peer.py" [ "generate"; d; string seed; "40"; name ] |> ignore
    let algorithm = AlgorithmRegistry.Find name

    for case in Directory.GetDirectories d do
        let inputPath = Path.Combine(case, "input.npz")

        let call =
            algorithm.Bind(TensorFile.Read inputPath, Golden.GoldenData.ReadParameters(Path.Combine(case, "params.json")), inputPath)

        TensorFile.Write(Path.Combine(case, "expected.npz"), algorithm.RunReference call)

    let out = Peers.runPeer "attention_peer.py" [ "verify"; d ]
    Assert.That(out, Does.Contain "40 of 40 cases agree", $"seed {seed}")
    Directory.Delete(d, true)

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "attention/registry"
        "AttentionRegistryTests"
        [
            Proofs.cases
                []
                "check judges low precision candidates by the baseline and prints its numbers"
                [
                    "\"f16\", \"npz\"",
                    (fun () -> ``check judges low precision candidates by the baseline and prints its numbers`` ("f16", "npz"))
                    "\"bf16\", \"safetensors\"",
                    (fun () -> ``check judges low precision candidates by the baseline and prints its numbers`` ("bf16", "safetensors"))
                ]
            Proofs.test
                []
                "check judges float32 candidates by the calibrated baseline"
                ``check judges float32 candidates by the calibrated baseline``
            Proofs.test
                []
                "empty rows give zero and minus infinity through the registry and a finite lse there fails"
                ``empty rows give zero and minus infinity through the registry and a finite lse there fails``
            Proofs.test
                []
                "block sparse inputs are checked and bad lists are named by their array"
                ``block sparse inputs are checked and bad lists are named by their array``
            Proofs.prop
                [ "attention.registry-tolerance"; "attention.baseline-calibration" ]
                "registry paths pass the calibrated tolerance on generated attention cases"
                ``registry paths pass the calibrated tolerance on generated attention cases``
            Proofs.prop
                [ "attention.registry-tolerance"; "attention.baseline-calibration" ]
                "registry paths pass the calibrated tolerance on generated block sparse cases"
                ``registry paths pass the calibrated tolerance on generated block sparse cases``
            Proofs.sequenced (
                Proofs.cases
                    []
                    "torch peer confirms the golden cases"
                    [
                        "\"attention\"", (fun () -> ``torch peer confirms the golden cases`` ("attention"))
                        "\"block-sparse\"", (fun () -> ``torch peer confirms the golden cases`` ("block-sparse"))
                    ]
            )
            Proofs.sequenced (
                Proofs.cases
                    []
                    "torch peer agrees with the reference on fresh generated cases"
                    [
                        "\"attention\"", (fun () -> ``torch peer agrees with the reference on fresh generated cases`` ("attention"))
                        "\"block-sparse\"", (fun () -> ``torch peer agrees with the reference on fresh generated cases`` ("block-sparse"))
                    ]
            )
        ]
