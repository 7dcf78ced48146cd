/// `reference bench routing` and `reference bench sinkhorn` (proofs/cli.md, Definition): tiny sizes, one repeat, a record
/// that `bench table` reads, a median or a note for every solver, ratios printed; bad sizes exit 2. Speed is never asserted.
module Reference.Tests.BenchTests

open System
open System.IO
open System.Text.Json
open NUnit.Framework
open Reference.Harness.Bench
open Reference.Harness.Registry
open Reference.Tests.CliTests

/// Runs a bench with --json into a fresh directory; returns exit code, stdout, stderr, the record's cases and the table.
let private benchRecord (args: string list) =
    RoutingBench.Register()
    let d = Path.Combine(Path.GetTempPath(), $"bench-{Guid.NewGuid():N}")
    Directory.CreateDirectory d |> ignore

    try
        let record = Path.Combine(d, "record.json")
        let code, out, err = cli (args @ [ "--repeats"; "1"; "--json"; record ])
        Assert.That(code, eq 0, out + err)
        use doc = JsonDocument.Parse(File.ReadAllText record)
        let root = doc.RootElement
        Assert.That(root.GetProperty("bench").GetString(), eq args[1])
        Assert.That(root.GetProperty("machine").GetProperty("cores").GetInt32(), eq Environment.ProcessorCount)

        let cases =
            [
                for c in root.GetProperty("cases").EnumerateArray() ->
                    c.GetProperty("size").GetString(),
                    c.GetProperty("solver").GetString(),
                    (match c.TryGetProperty "median_ms" with
                     | true, ms -> Some(ms.GetDouble())
                     | _ -> None),
                    c.GetProperty("runs").GetInt32(),
                    (match c.TryGetProperty "note" with
                     | true, n -> n.GetString()
                     | _ -> "")
            ]

        for size, solver, median, runs, note in cases do
            // A solver that ran has a positive median over one run; one that did not says why.
            match median with
            | Some ms -> Assert.That((ms > 0.0 && runs = 1), $"{size} {solver}: {ms} ms over {runs} runs")
            | None -> Assert.That((runs = 0 && note <> ""), $"{size} {solver}: no median and no note")

        let tcode, table, terr = cli [ "bench"; "table"; record ]
        Assert.That(tcode, eq 0, terr)
        let rows = table.Split('\n', StringSplitOptions.RemoveEmptyEntries)
        Assert.That(rows.Length, eq (2 + cases.Length), table)

        for row in rows |> Array.skip 2 do
            Assert.That(row, Does.StartWith $"| {args[1]} |")

        out, cases
    finally
        Directory.Delete(d, true)

let ``bench routing times every registered path and the check of a kernel candidate`` () =
    let out, cases = benchRecord [ "bench"; "routing"; "--size"; "40/8/2" ]

    for name in RoutingBench.Algorithms do
        let algorithm = AlgorithmRegistry.Find name
        // The solvers are the oracle, every path the registry holds for the cpu (torch when registered), then check.
        let expected =
            [ RoutingBench.OracleSolver ]
            @ [
                for p in algorithm.Paths do
                    if Seq.contains Devices.Cpu p.Devices then
                        (if p.Name = "kernel" then "kernel (float32)" else p.Name)
            ]
            @ [ RoutingBench.CheckSolver ]

        let solvers =
            cases
            |> List.filter (fun (s, _, _, _, _) -> s = $"{name} 40/8/2")
            |> List.map (fun (_, s, _, _, _) -> s)

        Assert.That(solvers, eq expected, name)
        Assert.That(out, Does.Contain $"size {name} 40/8/2")

    // Every solver ran (the tiny size is supported by all), and each is printed with its ratio to the reference.
    for size, solver, median, _, note in cases do
        Assert.That(median.IsSome, $"{size} {solver}: {note}")

    Assert.That(out, Does.Contain $"x {RoutingBench.OracleSolver}'s time")
    Assert.That(out, Does.Not.Contain "MISMATCH")
    Assert.That(out, Does.Not.Contain RoutingBench.CheckFailed)

let ``bench sinkhorn runs every solver for the same iterations and reports time per iteration`` () =
    let out, cases = benchRecord [ "bench"; "sinkhorn"; "--size"; "48/6/7" ]
    let solvers = cases |> List.map (fun (_, s, _, _, _) -> s)
    Assert.That(List.head solvers, eq SinkhornBench.PotSolver)
    Assert.That(solvers, Does.Contain "reference (double)")
    Assert.That(solvers, Does.Contain "kernel (float32)")

    for size, solver, median, _, note in cases do
        Assert.That(size, eq "48/6/7")

        if solver <> SinkhornBench.PotSolver then
            Assert.That(median.IsSome, $"{solver}: {note}")

        match median with
        | Some ms ->
            // The note's time per iteration is the median over the 7 iterations every solver ran (to 4 decimals).
            let m = Text.RegularExpressions.Regex.Match(note, "; ([0-9.]+) ms per iteration")
            Assert.That(m.Success, note)
            Assert.That(abs (float m.Groups[1].Value - ms / 7.0) <= 5.1e-5, note)
        | None -> Assert.That(note, Does.StartWith "not run", note)

    match cases |> List.head with
    | _, _, Some _, _, note ->
        // POT ran: it did 7 iterations, agreed with the reference, and the others' ratios to it are printed.
        Assert.That(note, Does.Contain "7 iterations")
        Assert.That(out, Does.Contain "POT's speed per iteration")
    | _ -> ()

    Assert.That(out, Does.Not.Contain "MISMATCH")

let ``bench routing and sinkhorn exit 2 on a bad size`` () =
    RoutingBench.Register()

    for args, fragment in
        [
            [ "bench"; "routing"; "--size"; "64/4" ], "64/4"
            [ "bench"; "routing"; "--size"; "64/4/8" ], "64/4/8"
            [ "bench"; "sinkhorn"; "--size"; "64x4" ], "64x4"
            [ "bench"; "sinkhorn"; "--size"; "64/0" ], "64/0"
        ] do
        let code, _, err = cli args
        Assert.That(code, eq 2, err)
        Assert.That(err.Trim().Split('\n').Length, eq 1, err)
        Assert.That(err, Does.Contain "--size" |> (fun c -> c.And.Contains fragment))

let ``solvers take turns, and a failing solver gets a note while the others are timed`` () =
    let calls = Collections.Generic.List<string>()

    let solver name (fail: bool) =
        TimedSolver(
            name,
            (fun () ->
                calls.Add name

                if fail && calls.Count > 3 then
                    failwith "boom"

                Threading.Thread.Sleep 6
                6.0)
        )

    let results =
        Interleaved.Run(
            [|
                solver "a" false
                solver "b" true
                solver "c" false
                TimedSolver("d", (fun () -> 1.0), "skipped: d")
            |],
            3
        )
    // Warm-ups a, b, c; then rounds a, b (fails), c; a, c; a, c. The skipped solver never runs.
    Assert.That(List.ofSeq calls, eq [ "a"; "b"; "c"; "a"; "b"; "c"; "a"; "c"; "a"; "c" ])
    Assert.That(results |> Seq.map _.Name |> List.ofSeq, eq [ "a"; "b"; "c"; "d" ])
    Assert.That(results[0].MedianMs.GetValueOrDefault(), eq 6.0)
    Assert.That((results[0].Runs, results[0].Calls, results[2].Runs), eq ((3, 1, 3)))
    Assert.That((results[1].MedianMs.HasValue, results[1].Runs), eq ((false, 0)))
    Assert.That(results[1].Note, Does.Contain "boom")
    Assert.That((results[3].Note, results[3].Runs), eq (("skipped: d", 0)))
    Assert.That(Interleaved.Median [| 1.0; 2.0; 7.0; 9.0 |], eq 4.5)

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "bench"
        "BenchTests"
        [
            Proofs.test
                []
                "bench routing times every registered path and the check of a kernel candidate"
                ``bench routing times every registered path and the check of a kernel candidate``
            Proofs.test
                []
                "bench sinkhorn runs every solver for the same iterations and reports time per iteration"
                ``bench sinkhorn runs every solver for the same iterations and reports time per iteration``
            Proofs.test [] "bench routing and sinkhorn exit 2 on a bad size" ``bench routing and sinkhorn exit 2 on a bad size``
            Proofs.test
                []
                "solvers take turns, and a failing solver gets a note while the others are timed"
                ``solvers take turns, and a failing solver gets a note while the others are timed``
        ]
