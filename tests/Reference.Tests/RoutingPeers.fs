/// The independent numpy peer of the routing suite (tests/peers/routing_peer.py, written from the Definitions in proofs/) against the
/// golden cases and against the reference on fresh generated cases.
module Reference.Tests.RoutingPeers

open System
open System.IO
open NUnit.Framework
open Reference.Harness.Golden
open Reference.Harness.Registry
open Reference.Harness.Tensors

let private golden = GoldenData(Repo.path [ "data" ])
let private algorithms = [ "capacity"; "reroute"; "expert-choice"; "aux-loss"; "block-routing" ]

let ``numpy peer confirms the routing golden cases`` () =
    Peers.requireModules [ "numpy" ] "python3-numpy"
    let out = Peers.runPeer "routing_peer.py" [ "verify"; golden.Root ]

    for a in algorithms do
        let n = (golden.Cases a).Count
        Assert.That(n, Is.GreaterThan 0, $"{a} has no golden cases")
        Assert.That(out, Does.Contain $"{a} peer: {n} of {n} cases agree")

let ``numpy peer agrees with the reference on fresh routing cases`` () =
    Peers.requireModules [ "numpy" ] "python3-numpy"
    let d = Path.Combine(Path.GetTempPath(), "routing-peer-" + Guid.NewGuid().ToString "N")

    let seed =
        if String.Equals(Environment.GetEnvironmentVariable "CI", "true", StringComparison.OrdinalIgnoreCase) then
            11
        else
            Random.Shared.Next()

    Peers.runPeer "routing_peer.py" [ "generate"; d; string seed; "30" ] |> ignore

    for a in algorithms do
        let algorithm = AlgorithmRegistry.Find a

        for case in Directory.GetDirectories(Path.Combine(d, a)) do
            let inputPath = Path.Combine(case, "input.npz")

            let call =
                algorithm.Bind(TensorFile.Read inputPath, GoldenData.ReadParameters(Path.Combine(case, "params.json")), inputPath)

            TensorFile.Write(Path.Combine(case, "expected.npz"), algorithm.RunReference call)

    let out = Peers.runPeer "routing_peer.py" [ "verify"; d ]

    for a in algorithms do
        Assert.That(out, Does.Contain $"{a} peer: 30 of 30 cases agree", $"seed {seed}\n{out}")

    Directory.Delete(d, true)

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "routing/peers"
        "RoutingPeers"
        [
            Proofs.sequenced (
                Proofs.test [] "numpy peer confirms the routing golden cases" ``numpy peer confirms the routing golden cases``
            )
            Proofs.sequenced (
                Proofs.test
                    []
                    "numpy peer agrees with the reference on fresh routing cases"
                    ``numpy peer agrees with the reference on fresh routing cases``
            )
        ]
