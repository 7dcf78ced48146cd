/// `reference bench attention` (issue 16): the FlashAttention kernel, its split-KV path and libtorch's SDPA on the same
/// inputs. Speed is data in the record, never asserted here; these tests check the record's shape and that the solvers
/// computed the same attention.
module Reference.Tests.AttentionBenchTests

open System
open System.Globalization
open System.IO
open System.Text.Json
open NUnit.Framework
open Reference.Harness.Registry
open Reference.Tests.CliTests
open Reference.Torch.Bench

let ``bench attention --json writes a record that bench table reads`` () =
    let d = Path.Combine(Path.GetTempPath(), $"bench-attention-{Guid.NewGuid():N}")
    Directory.CreateDirectory d |> ignore
    let record = Path.Combine(d, "attention.json")
    let sizes = [ "B1H2T48D16"; "B1H2T40D24c" ]

    let code, out, err =
        cli [ "bench"; "attention"; "--size"; String.Join(",", sizes); "--repeats"; "1"; "--json"; record ]

    Assert.That(code, eq 0, out + err)
    use doc = JsonDocument.Parse(File.ReadAllText record)
    let root = doc.RootElement
    Assert.That(root.GetProperty("bench").GetString(), eq "attention")
    Assert.That(root.GetProperty("machine").GetProperty("cores").GetInt32(), eq Environment.ProcessorCount)
    let cases = [ for c in root.GetProperty("cases").EnumerateArray() -> c ]
    Assert.That(cases |> List.map (fun c -> c.GetProperty("size").GetString()) |> List.distinct, eq sizes)

    for size in sizes do
        let solvers =
            cases
            |> List.filter (fun c -> c.GetProperty("size").GetString() = size)
            |> List.map (fun c -> c.GetProperty("solver").GetString())

        Assert.That(solvers, eq [ "kernel"; "split-kv"; "libtorch sdpa" ], size)

    let parsed = sizes |> List.map AttentionBench.ParseSize

    for c in cases do
        // Every solver ran once, with the GFLOP/s of the standard count over its median.
        let ms, runs = c.GetProperty("median_ms").GetDouble(), c.GetProperty("runs").GetInt32()
        Assert.That((ms > 0.0 && runs = 1), c.ToString())
        let size = parsed |> List.find (fun s -> s.ToString() = c.GetProperty("size").GetString())

        let flops =
            4.0 * float size.Batch * float size.Heads * float size.Length * float size.Length * float size.Dim

        let expected = (if size.Causal then flops / 2.0 else flops) / ms / 1e6
        Assert.That(c.GetProperty("gflops").GetDouble(), Is.EqualTo(expected).Within(1e-9 * expected), c.ToString())
        // The other solvers' outputs are the kernel's within float32 rounding (inputs in [-1, 1), out in [-1, 1]).
        let note = c.GetProperty("note").GetString()

        if c.GetProperty("solver").GetString() <> "kernel" then
            let diff = Double.Parse(note.Substring(note.IndexOf("= ") + 2), CultureInfo.InvariantCulture)
            Assert.That(diff, Is.LessThan 1e-5, note)

    let tcode, table, terr = cli [ "bench"; "table"; record ]
    Assert.That(tcode, eq 0, terr)
    let rows = table.Split('\n', StringSplitOptions.RemoveEmptyEntries)
    Assert.That(rows.Length, eq (2 + cases.Length), table)
    Assert.That(rows[2], Does.StartWith "| attention |" |> (fun c -> c.And.Contains "| B1H2T48D16 | kernel |"))
    Directory.Delete(d, true)

let ``bench attention sizes parse and bad ones are refused`` () =
    let s = AttentionBench.ParseSize "B2H8T2048D64c"
    Assert.That((s.Batch, s.Heads, s.Length, s.Dim, s.Causal), eq ((2, 8, 2048, 64, true)))
    Assert.That(s.ToString(), eq "B2H8T2048D64c")
    Assert.That(AttentionBench.ParseSize("B1H1T1D1").Causal, eq false)

    for bad in [ "B1H8T2048"; "B0H8T64D64"; "b1h8t64d64"; "B1H8T64D64x"; "B1H8T99999999999D64" ] do
        throws<InputException> (fun () -> AttentionBench.ParseSize bad |> ignore) |> ignore

    let code, _, err = cli [ "bench"; "attention"; "--size"; "B1H8T64"; "--repeats"; "1" ]
    Assert.That(code, eq 2, err)
    Assert.That(err, Does.Contain "B1H8T64")

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "bench/attention"
        "AttentionBenchTests"
        [
            Proofs.test
                []
                "bench attention --json writes a record that bench table reads"
                ``bench attention --json writes a record that bench table reads``
            Proofs.test [] "bench attention sizes parse and bad ones are refused" ``bench attention sizes parse and bad ones are refused``
        ]
