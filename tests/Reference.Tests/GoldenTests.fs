/// The golden data under data/golden: manifests hold, the reference reproduces every expected file,
/// and the independent numpy peer agrees with the expected files and with fresh cases.
module Reference.Tests.GoldenTests

open System
open System.IO
open NUnit.Framework
open Reference.Harness.Golden
open Reference.Harness.Registry
open Reference.Harness.Tensors

let private golden = GoldenData(Repo.path [ "data" ])

let algorithmsWithGolden () = Directory.GetDirectories(golden.Root) |> Array.map Path.GetFileName |> Array.sort

let ``every golden directory belongs to a registered algorithm and has cases`` () =
    for name in algorithmsWithGolden () do
        Assert.That(AlgorithmRegistry.Find name, Is.Not.Null, $"data/golden/{name} has no algorithm")
        Assert.That(golden.Cases name, Is.Not.Empty, $"data/golden/{name} has no cases")

let ``manifest holds`` (name: string) = Assert.That(golden.VerifyManifest name, Is.Empty)

let ``reference reproduces every expected file`` (name: string) =
    let algorithm = AlgorithmRegistry.Find name

    for c in golden.Cases name do
        let call = algorithm.Bind(c.ReadInputs(), c.Parameters, c.InputPath)
        let expected = c.ReadExpected()
        let actual = algorithm.RunReference call
        // Every output is present in the expected file, and the check (exact indices, f64 preset floats) passes.
        Assert.That(expected.Keys |> Set.ofSeq, Is.EquivalentTo(actual.Keys |> Set.ofSeq), c.Name)

        for r in algorithm.Check(call, actual, expected, c.ExpectedPath) do
            Assert.That(r.Passed, $"{c.Name}: {r.Summary()}")

let ``a tampered golden file breaks the manifest`` () =
    let d = Path.Combine(Path.GetTempPath(), "golden-" + Guid.NewGuid().ToString "N")
    let src = Path.Combine(golden.Root, "topk")
    let dst = Path.Combine(d, "golden", "topk")

    for f in Directory.GetFiles(src, "*", SearchOption.AllDirectories) do
        let target = Path.Combine(dst, Path.GetRelativePath(src, f))
        Directory.CreateDirectory(Path.GetDirectoryName target) |> ignore
        File.Copy(f, target)

    let copy = GoldenData d
    Assert.That(copy.VerifyManifest "topk", Is.Empty)
    let victim = (copy.Cases "topk").[0].ExpectedPath
    let bytes = File.ReadAllBytes victim
    bytes.[bytes.Length - 30] <- bytes.[bytes.Length - 30] ^^^ 1uy
    File.WriteAllBytes(victim, bytes)
    Assert.That(copy.VerifyManifest "topk", Is.Not.Empty)
    Directory.Delete(d, true)

let ``numpy peer confirms the topk golden cases`` () =
    Peers.requireModules [ "numpy" ] "python3-numpy"
    let out = Peers.runPeer "topk_peer.py" [ "verify"; Path.Combine(golden.Root, "topk") ]
    Assert.That(out, Does.Contain "cases agree")

let ``numpy peer agrees with the reference on fresh cases with ties`` () =
    Peers.requireModules [ "numpy" ] "python3-numpy"
    let d = Path.Combine(Path.GetTempPath(), "topk-peer-" + Guid.NewGuid().ToString "N")

    let seed =
        if String.Equals(Environment.GetEnvironmentVariable "CI", "true", StringComparison.OrdinalIgnoreCase) then
            7
        else
            Random.Shared.Next()

    Peers.runPeer "topk_peer.py" [ "generate"; d; string seed; "40" ] |> ignore
    let topk = AlgorithmRegistry.Find "topk"

    for case in Directory.GetDirectories d do
        let inputPath = Path.Combine(case, "input.npz")

        let call =
            topk.Bind(TensorFile.Read inputPath, GoldenData.ReadParameters(Path.Combine(case, "params.json")), inputPath)

        TensorFile.Write(Path.Combine(case, "expected.npz"), topk.RunReference call)

    let out = Peers.runPeer "topk_peer.py" [ "verify"; d ]
    Assert.That(out, Does.Contain "40 of 40 cases agree", $"seed {seed}")
    Directory.Delete(d, true)

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "harness/golden"
        "GoldenTests"
        [
            Proofs.test
                []
                "every golden directory belongs to a registered algorithm and has cases"
                ``every golden directory belongs to a registered algorithm and has cases``
            Proofs.caseSource [] "manifest holds" (algorithmsWithGolden ()) ``manifest holds``
            Proofs.caseSource
                []
                "reference reproduces every expected file"
                (algorithmsWithGolden ())
                ``reference reproduces every expected file``
            Proofs.test [] "a tampered golden file breaks the manifest" ``a tampered golden file breaks the manifest``
            Proofs.sequenced (Proofs.test [] "numpy peer confirms the topk golden cases" ``numpy peer confirms the topk golden cases``)
            Proofs.sequenced (
                Proofs.test
                    []
                    "numpy peer agrees with the reference on fresh cases with ties"
                    ``numpy peer agrees with the reference on fresh cases with ties``
            )
        ]
