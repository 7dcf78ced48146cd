/// The `reference` command's contract (proofs/cli.md, Definition): verbs, exit codes 0/1/2, one-line reasons naming file and array.
module Reference.Tests.CliTests

open System
open System.IO
open System.Text.Json
open NUnit.Framework
open Reference.Harness.Tensors
open Reference.Tests.Generators

/// Runs the CLI in-process; returns exit code, stdout, stderr.
let cli (args: string list) =
    use out = new StringWriter()
    use err = new StringWriter()
    let code = Reference.Cli.Cli.Run(Array.ofList args, out, err)
    code, out.ToString(), err.ToString()

let private temp () =
    let d = Path.Combine(Path.GetTempPath(), "reference-cli-" + Guid.NewGuid().ToString "N")
    Directory.CreateDirectory d |> ignore
    d

let private write path (arrays: (string * NdArray) list) =
    TensorFile.Write(path, arrays |> List.map (fun (k, v) -> Collections.Generic.KeyValuePair(k, v)))

/// Logits [6, 5] float32 with a clear order in every row (no near-ties).
let private logits =
    Array2D.init 6 5 (fun i j -> float32 ((i * 7 + j * 3) % 5) * 0.75f - float32 i * 0.1f)

/// Asserts exit 2 with exactly one line on stderr that contains every fragment.
let private expectBadInput (code: int, _: string, err: string) (fragments: string list) =
    Assert.That(code, eq 2, err)
    let lines = err.Trim().Split('\n')
    Assert.That(lines.Length, eq 1, $"one line expected, got: {err}")

    for f in fragments do
        Assert.That(err, Does.Contain f)

let ``list names topk and its arrays`` () =
    let code, out, _ = cli [ "list" ]
    Assert.That(code, eq 0)
    Assert.That(out, Does.Contain "topk:")
    Assert.That(out, Does.Contain "output experts")
    let code, out, _ = cli [ "list"; "--json" ]
    Assert.That(code, eq 0)
    use doc = JsonDocument.Parse out

    let topk =
        doc.RootElement.EnumerateArray() |> Seq.find (fun a -> a.GetProperty("name").GetString() = "topk")

    // The declared paths first, then those other assemblies registered (torch, gpu), exactly as the registry holds them.
    let paths = topk.GetProperty("paths").EnumerateArray() |> Seq.map _.GetString() |> List.ofSeq
    Assert.That(List.take 2 paths, eq [ "reference"; "kernel" ])
    Assert.That(paths, eq (List.ofSeq (Reference.Harness.Registry.AlgorithmRegistry.Find("topk").PathNames)))

let ``run writes the reference outputs`` () =
    let d = temp ()
    let input, output = Path.Combine(d, "in.npz"), Path.Combine(d, "out.npz")
    write input [ "logits", NdArray.FromMatrix logits ]

    let code, _, err =
        cli
            [
                "run"
                "topk"
                "--input"
                input
                "--output"
                output
                "--param"
                "k=3"
                "--param"
                "normalize=false"
            ]

    Assert.That(code, eq 0, err)
    let result = TensorFile.Read output

    let expected =
        Reference.Routing.TopK.Route(Array2D.map float logits, Reference.Routing.TopKOptions(K = 3, Normalize = false))

    Assert.That(result.["experts"].Values<int>(), eq (flatten expected.Experts))
    Assert.That(result.["experts"].Shape, eq [| 6; 3 |])
    Assert.That(result.["weights"].Values<float>(), eq (flatten expected.Weights))

let ``check passes a float32 kernel candidate and fails swapped experts or a perturbed weight`` () =
    let d = temp ()
    let input, cand = Path.Combine(d, "in.npz"), Path.Combine(d, "cand.npz")
    write input [ "logits", NdArray.FromMatrix logits ]
    let r = Reference.Kernels.Routing.TopK.Route(flatten logits, 6, 5, Reference.Routing.TopKOptions(K = 2))
    write cand [ "experts", NdArray.Create(r.Experts, 6, 2); "weights", NdArray.Create(r.Weights, 6, 2) ]
    let code, out, err = cli [ "check"; "topk"; "--input"; input; "--candidate"; cand ]
    Assert.That(code, eq 0, out + err)
    Assert.That(out, Does.Contain "experts")
    Assert.That(out, Does.Contain "weights")

    let swapped = Array.copy r.Experts
    swapped.[6] <- r.Experts.[7]
    swapped.[7] <- r.Experts.[6]
    write cand [ "experts", NdArray.Create(swapped, 6, 2); "weights", NdArray.Create(r.Weights, 6, 2) ]
    let report = Path.Combine(d, "report.json")
    let code, out, _ = cli [ "check"; "topk"; "--input"; input; "--candidate"; cand; "--json"; report ]
    Assert.That(code, eq 1, out)
    use doc = JsonDocument.Parse(File.ReadAllText report)

    let experts =
        doc.RootElement.GetProperty("outputs").EnumerateArray()
        |> Seq.find (fun o -> o.GetProperty("array").GetString() = "experts")

    Assert.That(experts.GetProperty("mismatches").GetInt64(), eq 2L)
    Assert.That(experts.GetProperty("first_mismatches").[0].GetProperty("index").GetString(), eq "(3, 0)")
    Assert.That(doc.RootElement.GetProperty("passed").GetBoolean(), Is.False)

    let off = Array.copy r.Weights
    off.[4] <- off.[4] + 1e-3f
    write cand [ "experts", NdArray.Create(r.Experts, 6, 2); "weights", NdArray.Create(off, 6, 2) ]
    let code, out, _ = cli [ "check"; "topk"; "--input"; input; "--candidate"; cand ]
    Assert.That(code, eq 1, out)
    Assert.That(out, Does.Contain "FAIL")

let ``check exits 2 with one line naming the file and the array`` () =
    let d = temp ()
    let input, cand = Path.Combine(d, "in.npz"), Path.Combine(d, "cand.npz")
    write input [ "logits", NdArray.FromMatrix logits ]
    // A candidate with none of the outputs.
    write cand [ "something", NdArray.Create([| 1.0 |], 1) ]
    expectBadInput (cli [ "check"; "topk"; "--input"; input; "--candidate"; cand ]) [ cand; "experts"; "weights" ]
    // An input with a NaN.
    let nanInput = Path.Combine(d, "nan.npz")
    let bad = Array2D.copy logits
    bad.[4, 2] <- nanf
    write nanInput [ "logits", NdArray.FromMatrix bad ]
    write cand [ "experts", NdArray.Create(Array.zeroCreate<int> 12, 6, 2) ]
    expectBadInput (cli [ "check"; "topk"; "--input"; nanInput; "--candidate"; cand ]) [ nanInput; "logits[4, 2] is NaN" ]
    // A truncated input file.
    let truncated = Path.Combine(d, "truncated.npz")
    let bytes = File.ReadAllBytes input
    File.WriteAllBytes(truncated, bytes.[.. bytes.Length / 2])
    expectBadInput (cli [ "check"; "topk"; "--input"; truncated; "--candidate"; cand ]) [ truncated ]
    // Logits of the wrong rank.
    let rank3 = Path.Combine(d, "rank3.npz")
    write rank3 [ "logits", NdArray.Create(Array.zeroCreate<float32> 24, 2, 3, 4) ]
    expectBadInput (cli [ "check"; "topk"; "--input"; rank3; "--candidate"; cand ]) [ rank3; "'logits'"; "rank" ]
    // A bias of the wrong length.
    let badBias = Path.Combine(d, "bias.npz")
    write badBias [ "logits", NdArray.FromMatrix logits; "bias", NdArray.Create([| 0.0f; 1.0f |], 2) ]
    expectBadInput (cli [ "check"; "topk"; "--input"; badBias; "--candidate"; cand ]) [ badBias; "'bias'"; "E = 5" ]
    // k out of range, an unknown parameter, a bad boolean, a wrong-shaped candidate.
    expectBadInput (cli [ "check"; "topk"; "--input"; input; "--candidate"; cand; "--param"; "k=9" ]) [ "k = 9"; "1..5" ]
    expectBadInput (cli [ "run"; "topk"; "--input"; input; "--output"; Path.Combine(d, "o.npz"); "--param"; "kk=1" ]) [ "'kk'" ]

    expectBadInput
        (cli
            [
                "run"
                "topk"
                "--input"
                input
                "--output"
                Path.Combine(d, "o.npz")
                "--param"
                "normalize=yes"
            ])
        [ "'normalize'" ]
    // An empty problem (zero tokens) and a repeated --param are bad input too.
    let empty = Path.Combine(d, "empty.npz")
    write empty [ "logits", NdArray.Create(Array.zeroCreate<float32> 0, 0, 5) ]
    expectBadInput (cli [ "check"; "topk"; "--input"; empty; "--candidate"; cand ]) [ empty; "'logits'"; "N = 0"; "empty problem" ]

    expectBadInput
        (cli
            [
                "run"
                "topk"
                "--input"
                input
                "--output"
                Path.Combine(d, "o.npz")
                "--param"
                "k=1"
                "--param"
                "k=2"
            ])
        [ "'k'"; "twice" ]
    // Missing files and unknown algorithms.
    expectBadInput (cli [ "check"; "topk"; "--input"; Path.Combine(d, "nope.npz"); "--candidate"; cand ]) [ "nope.npz" ]
    expectBadInput (cli [ "check"; "nosuch"; "--input"; input; "--candidate"; cand ]) [ "nosuch" ]
    expectBadInput (cli [ "run"; "topk"; "--input"; input ]) [ "--output" ]

let ``selfcheck prints the table and passes`` () =
    let code, out, err = cli [ "selfcheck"; "--cases"; "20"; "--data"; Repo.path [ "data" ] ]
    Assert.That(code, eq 0, out + err)
    Assert.That(out, Does.Contain "algorithm")
    Assert.That(out, Does.Contain "worst error")
    Assert.That(out, Does.Contain "worst margin")
    Assert.That(out, Does.Match "topk\\s+kernel\\s+2\\d\\s+PASS")
    Assert.That(err, Does.Contain "selfcheck: topk")

let ``paths name their devices; check --path judges a path; --device and --path are checked`` () =
    let d = temp ()
    let input = Path.Combine(d, "in.npz")
    write input [ "logits", NdArray.FromMatrix logits ]
    // list shows each path with its devices, in text and JSON.
    let code, out, _ = cli [ "list" ]
    Assert.That(code, eq 0)
    Assert.That(out, Does.Contain "paths: reference (cpu), kernel (cpu)")
    let code, out, _ = cli [ "list"; "--json" ]
    Assert.That(code, eq 0)
    use doc = System.Text.Json.JsonDocument.Parse out

    let topk =
        doc.RootElement.EnumerateArray() |> Seq.find (fun a -> a.GetProperty("name").GetString() = "topk")

    let kernelDevices = topk.GetProperty("devices").GetProperty("kernel")
    Assert.That([ for x in kernelDevices.EnumerateArray() -> x.GetString() ], eq [ "cpu" ])
    // check --path: the kernel's own outputs are the candidate, judged against the reference.
    let code, out, err = cli [ "check"; "topk"; "--input"; input; "--path"; "kernel"; "--param"; "k=2" ]
    Assert.That(code, eq 0, out + err)
    Assert.That(out, Does.Contain "PASS experts")
    Assert.That(out, Does.Contain "PASS weights")
    expectBadInput (cli [ "check"; "topk"; "--input"; input; "--path"; "nosuch" ]) [ "nosuch"; "paths: reference, kernel" ]
    expectBadInput (cli [ "check"; "topk"; "--input"; input; "--path"; "reference" ]) [ "optimized path" ]
    expectBadInput (cli [ "check"; "topk"; "--input"; input; "--path"; "kernel"; "--candidate"; input ]) [ "not both" ]
    // --device: a known device the path runs on; the reference runs on the cpu only.
    expectBadInput (cli [ "check"; "topk"; "--input"; input; "--path"; "kernel"; "--device"; "cuda" ]) [ "kernel"; "cuda" ]

    expectBadInput
        (cli
            [
                "run"
                "topk"
                "--input"
                input
                "--output"
                Path.Combine(d, "o.npz")
                "--path"
                "kernel"
                "--device"
                "tpu"
            ])
        [ "--device"; "tpu" ]

    expectBadInput
        (cli [ "run"; "topk"; "--input"; input; "--output"; Path.Combine(d, "o.npz"); "--device"; "cuda" ])
        [ "--device"; "reference" ]
    // selfcheck --path: only that path's rows.
    let code, out, err =
        cli
            [
                "selfcheck"
                "--only"
                "topk"
                "--path"
                "kernel"
                "--cases"
                "3"
                "--data"
                Repo.path [ "data" ]
            ]

    Assert.That(code, eq 0, out + err)
    Assert.That(out, Does.Match "topk\\s+kernel\\s+\\d+\\s+PASS")
    Assert.That(out, Does.Not.Contain "reference ")
    expectBadInput (cli [ "selfcheck"; "--only"; "topk"; "--path"; "nosuch"; "--cases"; "1" ]) [ "nosuch" ]
    expectBadInput (cli [ "selfcheck"; "--device"; "tpu"; "--cases"; "1" ]) [ "tpu" ]

let ``flow solves a DIMACS file and reports infeasible and unbalanced instances with exit 1`` () =
    let d = temp ()

    let write name (text: string) =
        let p = Path.Combine(d, name)
        File.WriteAllText(p, text)
        p

    let problem supply =
        $"c tiny\np min 4 5\nn 1 {supply}\nn 4 -4\na 1 2 0 4 2\na 1 3 0 2 2\na 2 3 0 2 1\na 2 4 0 3 3\na 3 4 0 5 1\n"
    // Optimal: the cost is checked by hand: 2 units 1->2->3->4 (cost 4 each) and 2 units 1->3->4 (cost 3 each) = 14.
    let code, out, err = cli [ "flow"; "--dimacs"; write "ok.min" (problem 4) ]
    Assert.That(code, eq 0, err)
    let lines = out.Trim().Split('\n')
    Assert.That(lines.[0], eq "s 14")
    Assert.That(lines.Length, eq 6)
    Assert.That(lines |> Array.forall (fun l -> l.StartsWith "s " || l.StartsWith "f "))
    let code, out, _ = cli [ "flow"; "--dimacs"; write "unbalanced.min" (problem 5) ]
    Assert.That((code, out.Trim()), eq ((1, "s unbalanced")))
    let infeasible = (problem 4).Replace("n 1 4", "n 1 40").Replace("n 4 -4", "n 4 -40")
    let code, out, _ = cli [ "flow"; "--dimacs"; write "infeasible.min" infeasible ]
    Assert.That((code, out.Trim()), eq ((1, "s infeasible")))
    expectBadInput (cli [ "flow"; "--dimacs"; write "bad.min" "p min x\n" ]) [ "bad.min"; "line 1" ]
    expectBadInput (cli [ "flow"; "--dimacs"; Path.Combine(d, "missing.min") ]) [ "missing.min" ]

let ``bench maxscore prints times and objectives that agree`` () =
    let code, out, err = cli [ "bench"; "maxscore"; "--size"; "64/4/2"; "--repeats"; "1" ]
    Assert.That(code, eq 0, out + err)
    Assert.That(out, Does.Contain "size 64/4/2")
    Assert.That(out, Does.Contain "fast (exact)")
    Assert.That(out, Does.Contain "objective")
    Assert.That(out, Does.Not.Contain "MISMATCH")
    expectBadInput (cli [ "bench"; "maxscore"; "--size"; "64/4" ]) [ "--size" ]

let ``bench --json writes a record that bench table reads`` () =
    let d = Path.Combine(Path.GetTempPath(), $"bench-{Guid.NewGuid():N}")
    Directory.CreateDirectory d |> ignore
    let record = Path.Combine(d, "maxscore.json")

    let code, out, err =
        cli [ "bench"; "maxscore"; "--size"; "64/4/2,96/8/2"; "--repeats"; "1"; "--json"; record ]

    Assert.That(code, eq 0, out + err)
    use doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText record)
    let root = doc.RootElement
    Assert.That(root.GetProperty("bench").GetString(), eq "maxscore")
    Assert.That(root.GetProperty("machine").GetProperty("cores").GetInt32(), eq Environment.ProcessorCount)
    let cases = [ for c in root.GetProperty("cases").EnumerateArray() -> c ]
    let sizes = cases |> List.map (fun c -> c.GetProperty("size").GetString()) |> List.distinct
    Assert.That(sizes, eq [ "64/4/2"; "96/8/2" ])

    for c in cases do
        // A solver that ran has a positive median over its runs; one that did not says why.
        match c.TryGetProperty "median_ms" with
        | true, ms -> Assert.That((ms.GetDouble() > 0.0 && c.GetProperty("runs").GetInt32() >= 1), c.ToString())
        | _ -> Assert.That(c.GetProperty("note").GetString(), Is.Not.Empty)

    let tcode, table, terr = cli [ "bench"; "table"; record ]
    Assert.That(tcode, eq 0, terr)
    let rows = table.Split('\n', StringSplitOptions.RemoveEmptyEntries)
    Assert.That(rows.Length, eq (2 + cases.Length), table)

    Assert.That(
        rows[2],
        Does.StartWith "| maxscore |"
        |> fun c -> c.And.Contains "| 64/4/2 | fast (exact) |" |> fun c -> c.And.EndsWith "| 1.0x |"
    )

    File.WriteAllText(Path.Combine(d, "bad.json"), "{\"cases\": 3}")
    expectBadInput (cli [ "bench"; "table"; Path.Combine(d, "bad.json") ]) [ "bad.json"; "benchmark record" ]
    expectBadInput (cli [ "bench"; "table" ]) [ "benchmark record" ]
    Directory.Delete(d, true)

/// Why an optimized path cannot run on cuda here (its OptimizedPath.Unavailable), or null where it can.
let private cudaUnavailable (algorithm: string) (path: string) =
    let a = Reference.Harness.Registry.AlgorithmRegistry.Find algorithm
    let p = a.Paths |> Seq.find (fun p -> p.Name = path)
    Assert.That(p.Devices, Does.Contain "cuda", $"{algorithm}/{path} lists cuda")
    Assert.That(isNull p.Unavailable, eq false, $"{algorithm}/{path} says whether cuda is usable")
    p.Unavailable.Invoke "cuda"

/// The error report that --json holds on exit 2.
let private errorReport (path: string) (command: string) (reason: string) =
    use doc = JsonDocument.Parse(File.ReadAllText path)
    Assert.That(doc.RootElement.GetProperty("status").GetString(), eq "error")
    Assert.That(doc.RootElement.GetProperty("command").GetString(), eq command)
    Assert.That(doc.RootElement.GetProperty("exit_code").GetInt32(), eq 2)
    Assert.That(doc.RootElement.GetProperty("message").GetString(), eq reason)

let ``--device cuda without a usable CUDA device exits 2 with one line, before any work, in selfcheck, run and check`` () =
    let d = temp ()
    let input = Path.Combine(d, "in.npz")
    write input [ "logits", NdArray.FromMatrix logits ]
    let missing = Path.Combine(d, "missing.npz")

    for path, algorithm, fragment in [ "torch", "topk", "no CUDA"; "gpu", "capacity", "no CUDA device" ] do
        match cudaUnavailable algorithm path with
        | null ->
            // A machine with a usable GPU: the path runs there, so the unavailable-device error must not appear.
            let code, out, err = cli [ "check"; algorithm; "--input"; input; "--path"; path; "--device"; "cuda" ]
            Assert.That(code, Is.Not.EqualTo 2, out + err)
        | reason ->
            Assert.That(reason, Does.Contain "--device cuda")
            Assert.That(reason, Does.Contain fragment)
            Assert.That(reason.Contains '\n', eq false, reason)
            // selfcheck: the reason, not a table of failed cases; --json holds status "error".
            let json = Path.Combine(d, $"selfcheck-{path}.json")

            let code, out, err =
                cli [ "selfcheck"; "--path"; path; "--device"; "cuda"; "--cases"; "2"; "--json"; json ]

            expectBadInput (code, out, err) [ reason ]
            Assert.That(out, eq "", "no table")
            errorReport json "selfcheck" reason
            // run and check: the same reason, before the input is read (a missing input file is not reported).
            let output = Path.Combine(d, "out.npz")

            expectBadInput (cli [ "run"; algorithm; "--input"; missing; "--output"; output; "--path"; path; "--device"; "cuda" ]) [ reason ]

            Assert.That(File.Exists output, eq false, "run wrote nothing")
            let json = Path.Combine(d, $"check-{path}.json")

            let code, out, err =
                cli [ "check"; algorithm; "--input"; input; "--path"; path; "--device"; "cuda"; "--json"; json ]

            expectBadInput (code, out, err) [ reason ]
            errorReport json "check" reason
            expectBadInput (cli [ "check"; algorithm; "--input"; missing; "--path"; path; "--device"; "cuda" ]) [ reason ]

    // Without --path, selfcheck --device cuda runs every path that lists cuda (torch and gpu): one unusable path is
    // enough to exit 2 with its reason, before any row runs.
    match cudaUnavailable "topk" "torch", cudaUnavailable "capacity" "gpu" with
    | null, null -> ()
    | torch, gpu ->
        let code, out, err = cli [ "selfcheck"; "--device"; "cuda"; "--cases"; "1" ]
        Assert.That(code, eq 2, out + err)
        Assert.That(err.Trim().Split('\n').Length, eq 1, err)
        Assert.That([ torch; gpu ] |> List.exists (fun r -> not (isNull r) && err.Contains r), err)

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "cli"
        "CliTests"
        [
            Proofs.test [] "list names topk and its arrays" ``list names topk and its arrays``
            Proofs.test [] "run writes the reference outputs" ``run writes the reference outputs``
            Proofs.test
                []
                "check passes a float32 kernel candidate and fails swapped experts or a perturbed weight"
                ``check passes a float32 kernel candidate and fails swapped experts or a perturbed weight``
            Proofs.test
                []
                "check exits 2 with one line naming the file and the array"
                ``check exits 2 with one line naming the file and the array``
            Proofs.test [] "selfcheck prints the table and passes" ``selfcheck prints the table and passes``
            Proofs.test
                []
                "paths name their devices; check --path judges a path; --device and --path are checked"
                ``paths name their devices; check --path judges a path; --device and --path are checked``
            Proofs.test
                []
                "flow solves a DIMACS file and reports infeasible and unbalanced instances with exit 1"
                ``flow solves a DIMACS file and reports infeasible and unbalanced instances with exit 1``
            Proofs.test
                []
                "--device cuda without a usable CUDA device exits 2 with one line, before any work, in selfcheck, run and check"
                ``--device cuda without a usable CUDA device exits 2 with one line, before any work, in selfcheck, run and check``
            Proofs.test [] "bench maxscore prints times and objectives that agree" ``bench maxscore prints times and objectives that agree``
            Proofs.test [] "bench --json writes a record that bench table reads" ``bench --json writes a record that bench table reads``
        ]
