/// The bug zoo (tests/peers/zoo/zoo.py): realistic correct and buggy routing and attention implementations, written
/// independently in Python, each judged by the built CLI. The driver exits 0 only when every correct case passes,
/// every bug fails with exit 1 and every malformed file is rejected with exit 2.
module Reference.Tests.ZooTests

open System.IO
open NUnit.Framework

let ``the bug zoo gets every verdict right through the built CLI`` () =
    Peers.requireModules
        [ "numpy"; "torch"; "scipy"; "ot"; "networkx" ]
        "python3-numpy python3-torch python3-scipy python3-pot python3-networkx"

    let cli = typeof<Reference.Cli.Cli>.Assembly.Location
    Assert.That(File.Exists cli, Is.True, $"the CLI assembly {cli} is missing")

    let code, out, err =
        Peers.runProcess Peers.python [ Repo.path [ "tests"; "peers"; "zoo"; "zoo.py" ]; "--cli"; cli; "--jobs"; "2" ]

    Assert.That(out, Does.Match @"(?m)^zoo: caught \d+/\d+ bugs, passed \d+/\d+ correct$", $"no summary line\n{out}\n{err}")
    // The suite prints the zoo's summary at its end (build.sh test reads this file after the counts).
    let summary = out.Split('\n') |> Array.filter (fun l -> l.StartsWith "zoo: ") |> String.concat "\n"
    let results = Repo.path [ ".test-results" ]
    Directory.CreateDirectory results |> ignore
    File.WriteAllText(Path.Combine(results, "zoo-summary.txt"), summary + "\n")
    stdout.WriteLine summary
    Assert.That(code, Is.EqualTo 0, $"zoo.py exited {code}\n{out}\n{err}")

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "zoo"
        "ZooTests"
        [
            Proofs.sequenced (
                Proofs.test
                    []
                    "the bug zoo gets every verdict right through the built CLI"
                    ``the bug zoo gets every verdict right through the built CLI``
            )
        ]
