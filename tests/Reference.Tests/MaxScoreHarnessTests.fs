/// The maxscore and base registry entries end to end: the scipy/networkx peer on golden and fresh cases, the validator's
/// verdicts on good and bad candidates, the fast paths, and `reference check maxscore`.
module Reference.Tests.MaxScoreHarnessTests

open System
open System.Collections.Generic
open System.IO
open NUnit.Framework
open Reference.Harness
open Reference.Harness.Golden
open Reference.Harness.Registry
open Reference.Harness.Tensors

let private golden = GoldenData(Repo.path [ "data" ])
let private find name = AlgorithmRegistry.Find name
let private inCi () = String.Equals(Environment.GetEnvironmentVariable "CI", "true", StringComparison.OrdinalIgnoreCase)

let private temp prefix =
    let d = Path.Combine(Path.GetTempPath(), prefix + Guid.NewGuid().ToString "N")
    Directory.CreateDirectory d |> ignore
    d

let private parameters (pairs: (string * string) list) = pairs |> List.map (fun (k, v) -> KeyValuePair(k, v))

let private bind (name: string) (scores: double[,]) pairs =
    (find name).Bind(readOnlyDict [ "scores", NdArray.FromMatrix scores ], parameters pairs, "test")

let private reportOf (reports: IReadOnlyList<Comparison.ComparisonReport>) name = reports |> Seq.find (fun r -> r.ArrayName = name)

// ---- the peer --------------------------------------------------------------------------------------------------------

let private peerModules () =
    Peers.requireModules [ "numpy"; "scipy"; "networkx" ] "python3-numpy python3-scipy python3-networkx"

let ``scipy and networkx peer confirms the golden cases`` (name: string) =
    peerModules ()
    let out = Peers.runPeer "maxscore_peer.py" [ "verify"; name; Path.Combine(golden.Root, name) ]
    Assert.That(out, Does.Contain "cases agree")

let ``scipy and networkx peer agrees with the reference on fresh cases`` (name: string) =
    peerModules ()
    let d = temp $"{name}-peer-"
    let seed = if inCi () then 11 else Random.Shared.Next()
    Peers.runPeer "maxscore_peer.py" [ "generate"; name; d; string seed; "30" ] |> ignore
    let algorithm = find name

    for case in Directory.GetDirectories d do
        let inputPath = Path.Combine(case, "input.npz")

        let call =
            algorithm.Bind(TensorFile.Read inputPath, GoldenData.ReadParameters(Path.Combine(case, "params.json")), inputPath)

        TensorFile.Write(Path.Combine(case, "expected.npz"), algorithm.RunReference call)

    let out = Peers.runPeer "maxscore_peer.py" [ "verify"; name; d ]
    Assert.That(out, Does.Contain "30 of 30 cases agree", $"seed {seed}")
    Directory.Delete(d, true)

// ---- the validator ---------------------------------------------------------------------------------------------------

/// One ulp of 1.0.
let private ulp = Math.Pow(2.0, -52)

/// Three tokens, two experts, k = 1, C = 2 on the ulp grid: token 0 prefers expert 0 by one ulp, tokens 1 and 2 are
/// indifferent, so several routings are optimal; sending token 0 to expert 1 (and one indifferent token to 0) loses one ulp.
let private ulpScores = array2D [ [ 1.0 + ulp; 1.0 ]; [ 1.0; 1.0 ]; [ 1.0; 1.0 ] ]

let ``validator accepts every optimal routing and rejects one an ulp worse`` () =
    let algorithm = find "maxscore"
    let call = bind "maxscore" ulpScores [ "k", "1"; "capacity", "2" ]
    let expected = algorithm.RunReference call

    let candidate (experts: int[]) =
        let objective = experts |> Array.mapi (fun i x -> ulpScores.[i, x]) |> Array.sum

        let load =
            [|
                experts |> Array.filter ((=) 0) |> Array.length
                experts |> Array.filter ((=) 1) |> Array.length
            |]

        readOnlyDict
            [
                "experts", NdArray.Create(experts, 3, 1)
                "load", NdArray.Create(load, 2)
                "objective", NdArray.Scalar objective
            ]
    // Both optimal routings pass: token 0 on expert 0 and either indifferent token on expert 1.
    for good in [ [| 0; 0; 1 |]; [| 0; 1; 0 |] ] do
        for r in algorithm.Check(call, expected, candidate good, "candidate") do
            Assert.That(r.Passed, $"{good}: {r.Summary()} {r.Detail}")
    // One ulp worse: the certificate rejects it, although the objective is within any relative tolerance.
    let reports = algorithm.Check(call, expected, candidate [| 1; 0; 0 |], "candidate")
    let experts = reportOf reports "experts"
    Assert.That(experts.Passed, eq false, experts.Detail)
    Assert.That(experts.MaxAbsError, eq ulp)
    Assert.That((reportOf reports "objective").Passed, experts.Detail)
    // Infeasible: expert 0 three times.
    let over =
        algorithm.Check(call, expected, readOnlyDict [ "experts", NdArray.Create([| 0; 0; 0 |], 3, 1) ], "candidate")

    Assert.That((reportOf over "experts").Passed, eq false)
    Assert.That((reportOf over "experts").Detail, Does.Contain "infeasible")

let ``validator treats prices as a certificate, not as values to match`` () =
    let algorithm = find "maxscore"
    let scores = array2D [ [ 0.5; 0.25; 0.0 ]; [ 0.5; 0.5; 0.0 ]; [ 0.75; 0.25; 0.25 ]; [ 0.5; 0.0; 0.25 ] ]
    let call = bind "maxscore" scores [ "k", "1"; "capacity", "2" ]
    let expected = algorithm.RunReference call
    let prices = expected.["prices"].ToDoubles()
    let withPrices (p: double[]) = readOnlyDict [ "experts", expected.["experts"]; "prices", NdArray.Create(p, 3) ]
    Assert.That((reportOf (algorithm.Check(call, expected, withPrices prices, "c")) "prices").Passed)
    // Expert 2 has room (C = 2, and at most one token wants it), so a positive price on it leaves a duality gap: the prices
    // report fails while the routing itself still passes.
    // (0.1 is not dyadic, so the prices carry float64 precision: dyadic values would be judged as the bfloat16 they fit,
    // README "Precision".)
    let wrong = Array.copy prices
    wrong.[2] <- wrong.[2] + 0.1
    let reports = algorithm.Check(call, expected, withPrices wrong, "c")
    Assert.That((reportOf reports "prices").Passed, eq false)
    Assert.That((reportOf reports "experts").Passed, (reportOf reports "experts").Detail)

let ``validator accepts any maximum-weight stage-2 matching of two-stage`` () =
    // Every token ties between experts 1 and 2 in stage 2, so several matchings have the maximum weight.
    let algorithm = find "maxscore"
    let scores = array2D [ [ 1.0; 0.5; 0.5 ]; [ 1.0; 0.5; 0.5 ]; [ 0.25; 1.0; 0.5 ] ]
    let call = bind "maxscore" scores [ "mode", "two-stage"; "k", "2"; "capacity", "2" ]
    let expected = algorithm.RunReference call
    let reference = expected.["experts"].Values<int>()
    // Swap the stage-2 experts of tokens 0 and 1 (they differ: one takes expert 1, the other 2): same slots, same weight.
    Assert.That(reference.[1], Is.Not.EqualTo reference.[3])
    let swapped = Array.copy reference
    swapped.[1] <- reference.[3]
    swapped.[3] <- reference.[1]

    let reports =
        algorithm.Check(call, expected, readOnlyDict [ "experts", NdArray.Create(swapped, 3, 2) ], "c")

    Assert.That((reportOf reports "experts").Passed, (reportOf reports "experts").Detail)
    // A stage-1 change fails.
    let moved = Array.copy reference
    moved.[0] <- (reference.[0] + 1) % 3

    Assert.That(
        (reportOf (algorithm.Check(call, expected, readOnlyDict [ "experts", NdArray.Create(moved, 3, 2) ], "c")) "experts").Passed,
        eq false
    )

let ``fast path passes the validator on generated cases`` (name: string) =
    let algorithm = find name
    let path = algorithm.Paths |> Seq.find (fun p -> p.Name = "fast")
    let mutable ran = 0

    for seed in 1..40 do
        let case = algorithm.Generate.Invoke seed
        let call = algorithm.Bind(case.Inputs, case.Parameters, case.Name)

        if path.Supports.Invoke call then
            ran <- ran + 1

            for r in SelfCheck.CheckPath(algorithm, path, call) do
                Assert.That(r.Passed, $"{case.Name}: {r.Summary()} {r.Detail}")

    Assert.That(ran, Is.GreaterThan 10)

let ``fast path claims every capacity regime but not two-stage`` () =
    let path = (find "maxscore").Paths |> Seq.head
    let s = Array2D.create 6 3 0.25
    Assert.That(path.Supports.Invoke(bind "maxscore" s [ "k", "2"; "capacity", "3" ]), eq true)
    Assert.That(path.Supports.Invoke(bind "maxscore" s [ "k", "2"; "capacity", "4" ]), eq true)
    Assert.That(path.Supports.Invoke(bind "maxscore" s [ "k", "2"; "capacity", "4"; "mode", "two-stage" ]), eq false)

// ---- the CLI ---------------------------------------------------------------------------------------------------------

let ``check maxscore passes the reference's output and fails a routing one ulp worse`` () =
    let d = temp "maxscore-cli-"

    let input, output, worse =
        Path.Combine(d, "in.npz"), Path.Combine(d, "out.npz"), Path.Combine(d, "worse.npz")

    TensorFile.Write(input, [ KeyValuePair("scores", NdArray.FromMatrix ulpScores) ])

    let code, _, err =
        CliTests.cli
            [
                "run"
                "maxscore"
                "--input"
                input
                "--output"
                output
                "--param"
                "k=1"
                "--param"
                "capacity=2"
            ]

    Assert.That(code, eq 0, err)

    let code, out, err =
        CliTests.cli
            [
                "check"
                "maxscore"
                "--input"
                input
                "--candidate"
                output
                "--param"
                "k=1"
                "--param"
                "capacity=2"
            ]

    Assert.That(code, eq 0, out + err)
    Assert.That(out, Does.Contain "PASS experts maxscore-certificate")
    Assert.That(out, Does.Contain "PASS prices")
    TensorFile.Write(worse, [ KeyValuePair("experts", NdArray.Create([| 1; 0; 0 |], 3, 1)) ])

    let code, out, _ =
        CliTests.cli
            [
                "check"
                "maxscore"
                "--input"
                input
                "--candidate"
                worse
                "--param"
                "k=1"
                "--param"
                "capacity=2"
            ]

    Assert.That(code, eq 1, out)
    Assert.That(out, Does.Contain "FAIL experts maxscore-certificate")
    Directory.Delete(d, true)

/// Softmax scores with a per-expert bias, just above the size where `check` judges against the certified fast solver.
let private largeScores () =
    let rng = Random 11
    let n, e = 1025, 64
    let bias = Array.init e (fun _ -> 2.0 * rng.NextDouble())

    Array2D.init n e (fun _ x -> exp (bias.[x] + 2.0 * rng.NextDouble()))
    |> fun raw -> Array2D.init n e (fun i x -> raw.[i, x] / Seq.sum (seq { for y in 0 .. e - 1 -> raw.[i, y] }))

let ``large maxscore checks judge against the certified fast optimum, which is the reference's`` () =
    let s = largeScores ()
    let call = bind "maxscore" s [ "k", "1" ]
    let oracle = Algorithms.MaxScoreAlgorithm.Oracle call
    let reference = Algorithms.MaxScoreAlgorithm.Run call
    Assert.That(oracle.["objective"].ToDoubles().[0], Is.EqualTo(reference.["objective"].ToDoubles().[0]).Within(1e-12))
    // The oracle is the fast path's answer here, not the reference run again.
    Assert.That(oracle.["experts"].ToDoubles(), eq ((find "maxscore").Run(call, "fast").["experts"].ToDoubles()))

let ``large base checks judge against the certified fast optimum, which is the reference's`` () =
    // 1024 tokens, 64 experts: beyond the readable reference's reach (N * N E = 2^26), yet small enough to run it here.
    let s = largeScores () |> fun m -> Array2D.init 1024 64 (fun i x -> m.[i, x])
    let call = bind "base" s []
    Assert.That(Algorithms.MaxScoreAlgorithm.BeyondReference(1024, 64, 1))
    let oracle = Algorithms.BaseAlgorithm.Oracle call
    let reference = Algorithms.BaseAlgorithm.Run call
    Assert.That(oracle.["objective"].ToDoubles().[0], Is.EqualTo(reference.["objective"].ToDoubles().[0]).Within(1e-12))
    Assert.That(oracle.["experts"].ToDoubles(), eq ((find "base").Run(call, "fast").["experts"].ToDoubles()))
    let experts = oracle.["experts"].ToDoubles() |> Array.map int
    let load = Array.zeroCreate 64

    for x in experts do
        load.[x] <- load.[x] + 1

    Assert.That(load, Is.All.EqualTo 16)

let ``check maxscore on a large instance passes the fast output and fails a worse routing`` () =
    let d = temp "maxscore-cli-"

    let input, output, worse =
        Path.Combine(d, "in.npz"), Path.Combine(d, "out.npz"), Path.Combine(d, "worse.npz")

    let s = largeScores ()
    TensorFile.Write(input, [ KeyValuePair("scores", NdArray.FromMatrix s) ])
    let args = [ "--input"; input; "--param"; "k=2"; "--param"; "capacity_factor=1.25" ]
    let code, _, err = CliTests.cli ([ "run"; "maxscore"; "--output"; output; "--path"; "fast" ] @ args)
    Assert.That(code, eq 0, err)
    let code, out, err = CliTests.cli ([ "check"; "maxscore"; "--candidate"; output ] @ args)
    Assert.That(code, eq 0, out + err)
    Assert.That(out, Does.Contain "PASS experts maxscore-certificate")
    // Token 0 trades its second expert for its worst one (loads stay within C = 41 for E = 64, N = 1025): feasible, worse.
    let experts = (TensorFile.Read output).["experts"].ToDoubles() |> Array.map int
    let worst = [ 0..63 ] |> List.minBy (fun x -> s.[0, x])
    experts.[1] <- worst
    TensorFile.Write(worse, [ KeyValuePair("experts", NdArray.Create(experts, 1025, 2)) ])
    let code, out, _ = CliTests.cli ([ "check"; "maxscore"; "--candidate"; worse ] @ args)
    Assert.That(code, eq 1, out)
    Assert.That(out, Does.Contain "FAIL experts maxscore-certificate")
    Directory.Delete(d, true)

let ``run maxscore without a path on a large instance writes the certified optimum`` () =
    // Beyond a work N k * N E of 2^25 the readable reference takes seconds to minutes; run then gives what check judges against.
    let d = temp "maxscore-cli-"
    let input, output = Path.Combine(d, "in.npz"), Path.Combine(d, "out.npz")
    let s = largeScores ()
    TensorFile.Write(input, [ KeyValuePair("scores", NdArray.FromMatrix s) ])
    let args = [ "--input"; input; "--param"; "k=2"; "--param"; "capacity_factor=1.25" ]
    let code, _, err = CliTests.cli ([ "run"; "maxscore"; "--output"; output ] @ args)
    Assert.That(code, eq 0, err)
    let got = TensorFile.Read output
    let experts = got.["experts"].ToDoubles() |> Array.map int

    let check =
        Algorithms.MaxScoreCertificate.Check(s, 2, 41, Array2D.init 1025 2 (fun i j -> experts.[i * 2 + j]))

    Assert.That(check.Optimal, check.Describe())
    let fast = (find "maxscore").Run(bind "maxscore" s [ "k", "2"; "capacity_factor", "1.25" ], "fast")
    Assert.That(got.["objective"].ToDoubles(), eq (fast.["objective"].ToDoubles()))
    Directory.Delete(d, true)

let ``run maxscore rejects NaN scores with exit 2`` () =
    let d = temp "maxscore-cli-"
    let input = Path.Combine(d, "in.npz")
    let s = Array2D.create 3 2 0.5
    s.[2, 1] <- nan
    TensorFile.Write(input, [ KeyValuePair("scores", NdArray.FromMatrix s) ])

    let code, _, err =
        CliTests.cli [ "run"; "maxscore"; "--input"; input; "--output"; Path.Combine(d, "o.npz") ]

    Assert.That(code, eq 2, err)
    Assert.That(err, Does.Contain "scores[2, 1] is NaN")
    Directory.Delete(d, true)

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "routing/maxscore"
        "MaxScoreHarnessTests"
        [
            Proofs.sequenced (
                Proofs.cases
                    []
                    "scipy and networkx peer confirms the golden cases"
                    [
                        "\"maxscore\"", (fun () -> ``scipy and networkx peer confirms the golden cases`` ("maxscore"))
                        "\"base\"", (fun () -> ``scipy and networkx peer confirms the golden cases`` ("base"))
                    ]
            )
            Proofs.sequenced (
                Proofs.cases
                    []
                    "scipy and networkx peer agrees with the reference on fresh cases"
                    [
                        "\"maxscore\"", (fun () -> ``scipy and networkx peer agrees with the reference on fresh cases`` ("maxscore"))
                        "\"base\"", (fun () -> ``scipy and networkx peer agrees with the reference on fresh cases`` ("base"))
                    ]
            )
            Proofs.test
                []
                "validator accepts every optimal routing and rejects one an ulp worse"
                ``validator accepts every optimal routing and rejects one an ulp worse``
            Proofs.test
                []
                "validator treats prices as a certificate, not as values to match"
                ``validator treats prices as a certificate, not as values to match``
            Proofs.test
                []
                "validator accepts any maximum-weight stage-2 matching of two-stage"
                ``validator accepts any maximum-weight stage-2 matching of two-stage``
            Proofs.cases
                []
                "fast path passes the validator on generated cases"
                [
                    "\"maxscore\"", (fun () -> ``fast path passes the validator on generated cases`` ("maxscore"))
                    "\"base\"", (fun () -> ``fast path passes the validator on generated cases`` ("base"))
                ]
            Proofs.test
                []
                "fast path claims every capacity regime but not two-stage"
                ``fast path claims every capacity regime but not two-stage``
            Proofs.test
                []
                "check maxscore passes the reference's output and fails a routing one ulp worse"
                ``check maxscore passes the reference's output and fails a routing one ulp worse``
            Proofs.test
                []
                "large maxscore checks judge against the certified fast optimum, which is the reference's"
                ``large maxscore checks judge against the certified fast optimum, which is the reference's``
            Proofs.test
                []
                "large base checks judge against the certified fast optimum, which is the reference's"
                ``large base checks judge against the certified fast optimum, which is the reference's``
            Proofs.test
                []
                "check maxscore on a large instance passes the fast output and fails a worse routing"
                ``check maxscore on a large instance passes the fast output and fails a worse routing``
            Proofs.test
                []
                "run maxscore without a path on a large instance writes the certified optimum"
                ``run maxscore without a path on a large instance writes the certified optimum``
            Proofs.test [] "run maxscore rejects NaN scores with exit 2" ``run maxscore rejects NaN scores with exit 2``
        ]
