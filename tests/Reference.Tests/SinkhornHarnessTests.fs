/// The sinkhorn registry entry end to end: the POT/numpy peer on golden and fresh cases, the CLI's convergence
/// warnings, and the validator's verdicts on good and bad candidates.
module Reference.Tests.SinkhornHarnessTests

open System
open System.Collections.Generic
open System.IO
open NUnit.Framework
open Reference.Harness
open Reference.Harness.Golden
open Reference.Harness.Registry
open Reference.Harness.Tensors

let private golden = GoldenData(Repo.path [ "data" ])
let private sinkhorn () = AlgorithmRegistry.Find "sinkhorn"
let private inCi () = String.Equals(Environment.GetEnvironmentVariable "CI", "true", StringComparison.OrdinalIgnoreCase)

let private temp prefix =
    let d = Path.Combine(Path.GetTempPath(), prefix + Guid.NewGuid().ToString "N")
    Directory.CreateDirectory d |> ignore
    d

let private parameters (pairs: (string * string) list) = pairs |> List.map (fun (k, v) -> KeyValuePair(k, v))

// ---- the peer ------------------------------------------------------------------------------------------------------

let ``POT peer confirms the sinkhorn golden cases`` () =
    Peers.requireModules [ "numpy"; "ot" ] "python3-pot"
    let out = Peers.runPeer "sinkhorn_peer.py" [ "verify"; Path.Combine(golden.Root, "sinkhorn") ]
    Assert.That(out, Does.Contain "12 of 12 cases agree")

let ``POT peer agrees with the reference on fresh cases of every method`` () =
    Peers.requireModules [ "numpy"; "ot" ] "python3-pot"
    let d = temp "sinkhorn-peer-"
    let seed = if inCi () then 11 else Random.Shared.Next()
    Peers.runPeer "sinkhorn_peer.py" [ "generate"; d; string seed; "60" ] |> ignore
    let algorithm = sinkhorn ()

    for case in Directory.GetDirectories d do
        let inputPath = Path.Combine(case, "input.npz")

        let call =
            algorithm.Bind(TensorFile.Read inputPath, GoldenData.ReadParameters(Path.Combine(case, "params.json")), inputPath)

        TensorFile.Write(Path.Combine(case, "expected.npz"), algorithm.RunReference call)

    let out = Peers.runPeer "sinkhorn_peer.py" [ "verify"; d ]
    Assert.That(out, Does.Contain "60 of 60 cases agree", $"seed {seed}")
    Directory.Delete(d, true)

// ---- the CLI -------------------------------------------------------------------------------------------------------

let private cli (args: string list) =
    use out = new StringWriter()
    use err = new StringWriter()
    let code = Reference.Cli.Cli.Run(Array.ofList args, out, err)
    code, out.ToString(), err.ToString()

let ``the CLI reports non-convergence and numerical failure on stderr and in status`` () =
    let d = temp "sinkhorn-cli-"
    let input, output = Path.Combine(d, "in.npz"), Path.Combine(d, "out.npz")
    // A cost whose middle column is at least 8: at reg = 0.01 knopp's kernel column underflows to 0.
    // (Not additive in i and j: an additive cost is solved by the first iteration, theorem sinkhorn.shift-invariance.)
    let cost = Array2D.init 4 3 (fun i j -> float ((i * j + i) % 3) * 0.375 + (if j = 1 then 8.0 else 0.0))
    TensorFile.Write(input, [ KeyValuePair("cost", NdArray.FromMatrix cost) ])

    let run extra =
        let code, out, err = cli ([ "run"; "sinkhorn"; "--input"; input; "--output"; output ] @ extra)
        Assert.That(code, Is.EqualTo 0, err + out)
        let result = TensorFile.Read output

        for name in [ "iterations"; "err"; "converged"; "status" ] do
            Assert.That(result.[name].Rank, Is.EqualTo 0, $"{name} is 0-d")

        Assert.That(result.["status"].DType, Is.EqualTo DType.I32)
        Assert.That(result.["converged"].DType, Is.EqualTo DType.Bool)
        err, result

    let err, result = run [ "--param"; "reg=0.5"; "--param"; "max_iter=1" ]
    Assert.That(err, Does.Contain "sinkhorn not converged (iterations=1")
    Assert.That(result.["status"].GetDouble 0, Is.EqualTo 1.0)
    Assert.That(result.["converged"].GetDouble 0, Is.EqualTo 0.0)
    let err, result = run [ "--param"; "method=knopp"; "--param"; "reg=0.01" ]
    Assert.That(err, Does.Contain "sinkhorn numerical error (iterations=0")
    Assert.That(result.["status"].GetDouble 0, Is.EqualTo 2.0)
    let err, result = run [ "--param"; "reg=0.5" ]
    Assert.That(err, Is.Empty, "a converged run prints no warning")
    Assert.That(result.["status"].GetDouble 0, Is.EqualTo 0.0)
    Assert.That(result.["converged"].GetDouble 0, Is.EqualTo 1.0)
    Directory.Delete(d, true)

let ``the CLI rejects a case with both cost and logits or neither`` () =
    let d = temp "sinkhorn-cli-"
    let m = NdArray.FromMatrix(Array2D.init 2 2 (fun i j -> float (i + j)))
    let both, neither = Path.Combine(d, "both.npz"), Path.Combine(d, "neither.npz")
    TensorFile.Write(both, [ KeyValuePair("cost", m); KeyValuePair("logits", m) ])
    TensorFile.Write(neither, [ KeyValuePair("a", NdArray.Create([| 0.5; 0.5 |], 2)) ])

    let code, _, err =
        cli [ "run"; "sinkhorn"; "--input"; both; "--output"; Path.Combine(d, "o.npz"); "--param"; "reg=1" ]

    Assert.That(code, Is.EqualTo 2)
    Assert.That(err, Does.Contain "both 'cost' and 'logits'")

    let code, _, err =
        cli [ "run"; "sinkhorn"; "--input"; neither; "--output"; Path.Combine(d, "o.npz"); "--param"; "reg=1" ]

    Assert.That(code, Is.EqualTo 2)
    Assert.That(err, Does.Contain "'cost' or 'logits' is missing")

    let code, _, err =
        cli
            [
                "run"
                "sinkhorn"
                "--input"
                both
                "--output"
                Path.Combine(d, "o.npz")
                "--param"
                "method=knopp"
            ]

    Assert.That(code, Is.EqualTo 2)
    Directory.Delete(d, true)

// ---- the validator -------------------------------------------------------------------------------------------------

let private logCall () =
    let rng = Random 5
    let logits = Array.init (7 * 4) (fun _ -> float32 (rng.NextDouble() * 4.0 - 2.0))
    let inputs = readOnlyDict [ "logits", NdArray.Create(logits, 7, 4) ]
    sinkhorn().Bind(inputs, parameters [ "reg", "0.2"; "tol", "1e-5"; "max_iter", "200" ], "test")

let private withArray (outputs: IReadOnlyDictionary<string, NdArray>) name (array: NdArray) =
    let d = Dictionary<string, NdArray>(outputs)
    d.[name] <- array
    d :> IReadOnlyDictionary<string, NdArray>

let private failed (reports: seq<Comparison.ComparisonReport>) =
    reports |> Seq.filter (fun r -> not r.Passed) |> Seq.map _.ArrayName |> Set.ofSeq

let ``the validator accepts the kernel and rejects wrong candidates`` () =
    let algorithm = sinkhorn ()
    let call = logCall ()
    let expected = algorithm.RunReference call
    let kernel = algorithm.Run(call, "kernel")
    Assert.That(failed (algorithm.Check(call, expected, kernel, "kernel")), Is.Empty, "the kernel passes")
    Assert.That(failed (algorithm.Check(call, expected, expected, "reference")), Is.Empty, "the reference passes")
    // A plan 1% off in one entry fails; so does the err it would imply if err were left unchanged.
    let plan = kernel.["plan"].Values<float32>() |> Array.copy
    plan.[5] <- plan.[5] * 1.01f
    let bad = withArray kernel "plan" (NdArray.Create(plan, 7, 4))
    Assert.That(failed (algorithm.Check(call, expected, bad, "bad plan")), Does.Contain "plan")
    // A run that reached its cap (tol = 0) and claims convergence fails on status and converged.
    let capped =
        algorithm.Bind(call.Inputs, parameters [ "reg", "0.2"; "tol", "0"; "max_iter", "45" ], "test")

    let cappedKernel = algorithm.Run(capped, "kernel")
    let cappedExpected = algorithm.RunReference capped
    Assert.That(failed (algorithm.Check(capped, cappedExpected, cappedKernel, "capped")), Is.Empty, "the capped kernel passes")

    let claim =
        withArray (withArray cappedKernel "status" (NdArray.Scalar 0)) "converged" (NdArray.Scalar true)

    Assert.That(failed (algorithm.Check(capped, cappedExpected, claim, "false claim")), Is.EquivalentTo [ "status"; "converged" ])
    // A double-precision candidate must match the reference's iteration count exactly.
    let offByOne =
        withArray expected "iterations" (NdArray.Scalar((expected.["iterations"].GetDouble 0 |> int) + 1))

    Assert.That(failed (algorithm.Check(call, expected, offByOne, "off by one")), Does.Contain "iterations")
    // An err that is not the measure of the candidate's own plan fails.
    let lie = withArray kernel "err" (NdArray.Scalar 1e-12f)
    Assert.That(failed (algorithm.Check(call, expected, lie, "wrong err")), Does.Contain "err")

/// The details of the failing reports, joined.
let private failureDetails (reports: seq<Comparison.ComparisonReport>) =
    reports
    |> Seq.filter (fun r -> not r.Passed)
    |> Seq.choose (fun r -> Option.ofObj r.Detail)
    |> String.concat " | "

let ``a failing candidate that matches a nearby run is told which`` () =
    let algorithm = sinkhorn ()
    let call = logCall ()
    let expected = algorithm.RunReference call
    let r = expected.["iterations"].GetDouble 0 |> int
    // A run of exactly t iterations (tol = 0), dressed as a converged candidate.
    let runOf t =
        let c =
            algorithm.Bind(call.Inputs, parameters [ "reg", "0.2"; "tol", "0"; "max_iter", string t ], "test")

        let outputs = algorithm.RunReference c
        withArray (withArray outputs "status" (NdArray.Scalar 0)) "converged" (NdArray.Scalar true)

    let fewer = algorithm.Check(call, expected, runOf (r - 1), "fewer")
    Assert.That(failed fewer, Does.Contain "iterations")
    Assert.That(failureDetails fewer, Does.Contain "1 iteration fewer than the reference")
    let more = algorithm.Check(call, expected, runOf (r + 1), "more")
    Assert.That(failureDetails more, Does.Contain "1 iteration more than the reference")
    // An implementation testing err after every iteration stops at the first t whose err < tol (POT's strict rule).
    let errAfter t = (runOf t).["err"].GetDouble 0
    let first = Seq.initInfinite ((+) 1) |> Seq.find (fun t -> t >= r || errAfter t < 1e-5)
    Assert.That(first, Is.LessThan r, "the case must stop earlier when tested every iteration")
    let every = algorithm.Check(call, expected, runOf first, "every iteration")
    Assert.That(failed every, Does.Contain "iterations")
    Assert.That(failureDetails every, Does.Contain "tests the error every iteration")
    // A candidate that is simply wrong gets no hint.
    let plan = expected.["plan"].Values<float>() |> Array.copy
    plan.[3] <- plan.[3] * 1.5

    let wrong =
        algorithm.Check(call, expected, withArray expected "plan" (NdArray.Create(plan, 7, 4)), "wrong plan")

    Assert.That(failed wrong, Does.Contain "plan")
    Assert.That(failureDetails wrong, Does.Not.Contain "hint")

let ``selfcheck passes for sinkhorn on golden and generated cases`` () =
    let rows = SelfCheck.Run([ sinkhorn () ], golden, 1, 30)

    for r in rows do
        Assert.That(r.Verdict, Is.EqualTo "PASS", $"{r.Path}: {r.FirstFailure}")
        Assert.That(r.Cases, Is.GreaterThan 0)

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "transport/sinkhorn"
        "SinkhornHarnessTests"
        [
            Proofs.sequenced (Proofs.test [] "POT peer confirms the sinkhorn golden cases" ``POT peer confirms the sinkhorn golden cases``)
            Proofs.sequenced (
                Proofs.test
                    []
                    "POT peer agrees with the reference on fresh cases of every method"
                    ``POT peer agrees with the reference on fresh cases of every method``
            )
            Proofs.test
                []
                "the CLI reports non-convergence and numerical failure on stderr and in status"
                ``the CLI reports non-convergence and numerical failure on stderr and in status``
            Proofs.test
                []
                "the CLI rejects a case with both cost and logits or neither"
                ``the CLI rejects a case with both cost and logits or neither``
            Proofs.test
                []
                "the validator accepts the kernel and rejects wrong candidates"
                ``the validator accepts the kernel and rejects wrong candidates``
            Proofs.test
                [ "sinkhorn.diagnose-nearby-runs" ]
                "a failing candidate that matches a nearby run is told which"
                ``a failing candidate that matches a nearby run is told which``
            Proofs.test
                []
                "selfcheck passes for sinkhorn on golden and generated cases"
                ``selfcheck passes for sinkhorn on golden and generated cases``
        ]
