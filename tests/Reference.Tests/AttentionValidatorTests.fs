/// The validators of `nsa` and `resa` (proofs/tolerance.md, Definition: Decisions and near-ties): a candidate's selection may differ from the
/// reference's where scores tie within the candidate's precision; out (and lse) are then judged by that selection.
module Reference.Tests.AttentionValidatorTests

open System
open System.IO
open System.Collections.Generic
open NUnit.Framework
open FsCheck
open FsCheck.FSharp
open Reference.Attention
open Reference.Harness
open Reference.Harness.Registry
open Reference.Harness.Tensors
open Reference.Tests.Proofs
open Reference.Tests.Assertions

let private nsa = AlgorithmRegistry.Find "nsa"
let private resa = AlgorithmRegistry.Find "resa"

let private flat4 (x: 'T[,,,]) =
    [|
        for a in 0 .. Array4D.length1 x - 1 do
            for b in 0 .. Array4D.length2 x - 1 do
                for c in 0 .. Array4D.length3 x - 1 do
                    for d in 0 .. Array4D.length4 x - 1 -> x.[a, b, c, d]
    |]

let private shape4 (x: 'T[,,,]) = [| Array4D.length1 x; Array4D.length2 x; Array4D.length3 x; Array4D.length4 x |]
let private arr4 (x: float[,,,]) = NdArray.Create(flat4 x, shape4 x)
let private bool4 (x: bool[,,,]) = NdArray.Create(flat4 x, shape4 x)

let private flat3 (x: 'T[,,]) =
    [|
        for a in 0 .. Array3D.length1 x - 1 do
            for b in 0 .. Array3D.length2 x - 1 do
                for c in 0 .. Array3D.length3 x - 1 -> x.[a, b, c]
    |]

let private shape3 (x: 'T[,,]) = [| Array3D.length1 x; Array3D.length2 x; Array3D.length3 x |]

let private bind (alg: Algorithm) (inputs: (string * NdArray) list) (parameters: (string * string) list) =
    alg.Bind(dict inputs |> Dictionary, parameters |> List.map KeyValuePair, "test")

/// Checks a candidate; true when every report passes.
let private passes (alg: Algorithm) call (candidate: (string * NdArray) list) =
    let reports = alg.Check(call, alg.RunReference call, dict candidate |> Dictionary, "candidate")
    reports |> Seq.forall (fun r -> r.Passed), reports

let private report (reports: seq<Comparison.ComparisonReport>) = reports |> Seq.map string |> String.concat "; "

let private maxDiff (a: float[]) (b: float[]) = Array.fold2 (fun m x y -> max m (abs (x - y))) 0.0 a b

/// A registry case converted to float64 inputs (exact), so a bool-only candidate is judged in float64.
let private registryCase (alg: Algorithm) seed =
    let case = alg.Generate.Invoke seed

    let inputs =
        [
            for kv in case.Inputs -> kv.Key, NdArray.Create(kv.Value.ToDoubles(), Array.ofSeq kv.Value.Shape)
        ]

    inputs, [ for kv in case.Parameters -> kv.Key, kv.Value ]

let private seeds = Arb.fromGen (Gen.choose (0, 100000))

// ---------------------------------------------------------------- NSA

/// NSA inputs where every block has the same keys (one random block pattern repeated), so all candidate blocks of a
/// row tie exactly; values, queries and gates random. T = BS * nb + extra.
let private nsaTied =
    gen {
        let! bs = Gen.choose (1, 3)
        let! nb = Gen.choose (3, 6)
        let! extra = Gen.choose (0, bs - 1)
        let! hkv = Gen.choose (1, 2)
        let! group = Gen.choose (1, 2)
        let! d = Gen.elements [ 1; 2; 4 ]
        let! topN = Gen.choose (2, nb - 1)
        let! seed = Gen.choose (0, 100000)
        return bs, nb * bs + extra, hkv, hkv * group, d, topN, seed
    }
    |> Arb.fromGen

let private nsaInputs (t, hkv, hq, d, seed) (key: Random -> int -> int -> int -> float) =
    let r = Random seed
    let u () = r.NextDouble() * 4.0 - 2.0
    let q = Array4D.init 1 hq t d (fun _ _ _ _ -> u ())
    let k = Array4D.init 1 hkv t d (fun _ g j x -> key r g j x)
    let v = Array4D.init 1 hkv t 3 (fun _ _ _ _ -> u ())
    let gates = Array4D.init 1 hq t 3 (fun _ _ _ _ -> r.NextDouble())
    q, k, v, gates

let private nsaCall bs topN (q, k, v, gates) =
    bind nsa [ "q", arr4 q; "k", arr4 k; "v", arr4 v; "gates", arr4 gates ] [ "block_size", string bs; "top_n", string topN; "window", "2" ]

/// out of NSA under a selection, from the reference's branches with the selected branch recomputed as dense attention
/// under the selection's mask (independent of Nsa.ComputeWithSelection).
let private nsaOutUnder (q: float[,,,], k, v, gates: float[,,,]) bs topN (sel: bool[,,,]) =
    let opts = NsaOptions(BlockSize = bs, TopN = topN, Window = 2)
    let r = Nsa.Compute(q, k, v, gates, opts)
    let hq, t, hkv = Array4D.length2 q, Array4D.length3 q, Array4D.length2 k
    let mask = Array4D.init 1 hq t t (fun _ h i j -> j <= i && sel.[0, h / (hq / hkv), i, j / bs])
    let slc = DenseAttention.Compute(q, k, v, AttentionOptions(Mask = mask)).Out

    Array4D.init 1 hq t 3 (fun _ h i x ->
        gates.[0, h, i, 0] * r.Compressed.[0, h, i, x]
        + gates.[0, h, i, 1] * slc.[0, h, i, x]
        + gates.[0, h, i, 2] * r.Window.[0, h, i, x])

let ``nsa validator accepts the reference's own selection and output`` () =
    Prop.forAll seeds (fun seed ->
        let inputs, parameters = registryCase nsa seed
        let call = bind nsa inputs parameters
        let expected = nsa.RunReference call
        let ok64, r64 = passes nsa call [ "selected", expected.["selected"]; "out", expected.["out"] ]

        let out32 =
            NdArray.Create(expected.["out"].ToDoubles() |> Array.map float32, Array.ofSeq expected.["out"].Shape)

        let ok32, r32 = passes nsa call [ "selected", expected.["selected"]; "out", out32 ]
        Assert.That(ok64, report r64)
        Assert.That(ok32, report r32))

let ``nsa validator accepts another choice among exactly tied blocks and judges out by it`` () =
    Prop.forAll nsaTied (fun (bs, t, hkv, hq, d, topN, seed) ->
        let r0 = Random(seed + 1)
        let pattern = Array2D.init bs d (fun _ _ -> r0.NextDouble() * 4.0 - 2.0)
        let x = nsaInputs (t, hkv, hq, d, seed) (fun _ _ j c -> pattern.[j % bs, c])
        let q, k, v, gates = x
        let reference = Nsa.Compute(q, k, v, gates, NsaOptions(BlockSize = bs, TopN = topN, Window = 2))
        // The candidate keeps the own block and takes the highest-index earlier blocks instead of the lowest.
        let nb = Array4D.length4 reference.Selected

        let cand =
            Array4D.init 1 hkv t nb (fun _ _ i c ->
                let own = i / bs
                c = own || (c < own && c >= own - (topN - 1)))

        let changed = flat4 cand <> flat4 reference.Selected
        let out = nsaOutUnder x bs topN cand
        let call = nsaCall bs topN x
        let ok, reports = passes nsa call [ "selected", bool4 cand; "out", arr4 out ]
        Assert.That(ok, report reports)
        // The reference's own out with the candidate's selection fails wherever the two outs differ.
        if maxDiff (flat4 out) (flat4 reference.Out) > 1e-6 then
            let okRef, _ = passes nsa call [ "selected", bool4 cand; "out", arr4 reference.Out ]
            Assert.That(okRef, Is.False, "out is judged by the candidate's selection")
        // T >= 3 BS and top_n <= nb - 1 leave a row with more candidate blocks than slots.
        Assert.That(changed, "the tied alternative differs from the reference's choice"))

/// Keys of block c equal to alpha c w at every position, queries beta w (beta > 0): the logit and so the selection
/// score increase strictly with c, with a ratio of at least e^0.5 between neighbours.
let private nsaSeparated =
    gen {
        let! bs = Gen.choose (1, 3)
        let! nb = Gen.choose (3, 6)
        let! hkv = Gen.choose (1, 2)
        let! group = Gen.choose (1, 2)
        let! d = Gen.elements [ 1; 2; 4 ]
        let! topN = Gen.choose (2, nb - 1)
        let! seed = Gen.choose (0, 100000)
        return bs, nb * bs, hkv, hkv * group, d, topN, seed
    }
    |> Arb.fromGen

let private separatedInputs (bs, t, hkv, hq, d, seed) =
    let r = Random seed
    let w = Array.init d (fun _ -> 0.5 + r.NextDouble())
    let w2 = Array.sumBy (fun x -> x * x) w
    // scale alpha beta |w|^2 / sqrt(D) = 1 per block step.
    let alpha = sqrt (float d) / w2
    let q = Array4D.init 1 hq t d (fun _ _ _ x -> w.[x])
    let k = Array4D.init 1 hkv t d (fun _ _ j x -> alpha * float (j / bs) * w.[x])
    let v = Array4D.init 1 hkv t 3 (fun _ _ _ _ -> r.NextDouble())
    let gates = Array4D.init 1 hq t 3 (fun _ _ _ _ -> r.NextDouble())
    q, k, v, gates

let ``nsa validator rejects a swap of clearly different blocks a wrong count and a missing own block`` () =
    Prop.forAll nsaSeparated (fun (bs, t, hkv, hq, d, topN, seed) ->
        let x = separatedInputs (bs, t, hkv, hq, d, seed)
        let q, k, v, gates = x
        let reference = Nsa.Compute(q, k, v, gates, NsaOptions(BlockSize = bs, TopN = topN, Window = 2))
        let call = nsaCall bs topN x
        let nb = Array4D.length4 reference.Selected
        // The last row of group 0 has own = nb - 1 > top_n - 1 candidate slots.
        let i = t - 1
        let own = i / bs

        let edit f =
            let s = reference.Selected.Clone() :?> bool[,,,]
            f s
            s
        // Swap the weakest selected earlier block (scores increase with c) for the best unselected one.
        let weakestSelected =
            [ 0 .. own - 1 ] |> List.filter (fun c -> reference.Selected.[0, 0, i, c]) |> List.min

        let bestUnselected =
            [ 0 .. own - 1 ] |> List.filter (fun c -> not reference.Selected.[0, 0, i, c]) |> List.max

        let swapped =
            edit (fun s ->
                s.[0, 0, i, weakestSelected] <- false
                s.[0, 0, i, bestUnselected] <- true)

        let extra = edit (fun s -> s.[0, 0, i, bestUnselected] <- true)
        let missing = edit (fun s -> s.[0, 0, i, own] <- false)

        let noOwn =
            edit (fun s ->
                s.[0, 0, i, own] <- false
                s.[0, 0, i, bestUnselected] <- true)

        for bad in [ swapped; extra; missing; noOwn ] do
            let ok, reports = passes nsa call [ "selected", bool4 bad ]
            Assert.That(ok, Is.False, report reports)

        let ok, reports = passes nsa call [ "selected", bool4 reference.Selected ]
        Assert.That(ok, report reports)
        Assert.That(nb, Is.GreaterThan own))

// ---------------------------------------------------------------- ReSA

let private resaCase =
    gen {
        let! bs = Gen.choose (1, 4)
        let! nLocal = Gen.choose (0, 2)
        let! nb = Gen.choose (nLocal + 2, 8)
        let! hkv = Gen.choose (1, 2)
        let! group = Gen.choose (1, 3)
        let! d = Gen.elements [ 1; 2; 4 ]
        let! slots = Gen.choose (1, nb - nLocal - 1)
        let! seed = Gen.choose (0, 100000)
        return bs, nb, hkv, hkv * group, d, nLocal, slots, seed
    }
    |> Arb.fromGen

/// n_min = n_local + slots (sparsity small) selects exactly that many blocks.
let private resaParams bs nLocal slots =
    [
        "block_size", string bs
        "sparsity", "0.01"
        "n_local", string nLocal
        "n_min", string (nLocal + slots)
    ]

let private resaOptions bs nLocal slots = ResaOptions(BlockSize = bs, Sparsity = 0.01, NLocal = nLocal, NMin = nLocal + slots)

let private resaCall bs nLocal slots (q: float[,,,], k, v) =
    bind resa [ "q", arr4 q; "k", arr4 k; "v", arr4 v ] (resaParams bs nLocal slots)

let ``resa validator accepts the reference's own selection and output`` () =
    Prop.forAll seeds (fun seed ->
        let inputs, parameters = registryCase resa seed
        let call = bind resa inputs parameters
        let e = resa.RunReference call
        let ok, reports = passes resa call [ "selected", e.["selected"]; "out", e.["out"]; "lse", e.["lse"] ]
        let to32 (a: NdArray) = NdArray.Create(a.ToDoubles() |> Array.map float32, Array.ofSeq a.Shape)

        let ok32, r32 =
            passes resa call [ "selected", e.["selected"]; "out", to32 e.["out"]; "lse", to32 e.["lse"] ]

        Assert.That(ok, report reports)
        Assert.That(ok32, report r32))

let ``resa validator accepts another choice among exactly tied blocks and judges out and lse by it`` () =
    Prop.forAll resaCase (fun (bs, nb, hkv, hq, d, nLocal, slots, seed) ->
        let r = Random seed
        let l = nb * bs
        let pattern = Array2D.init bs d (fun _ _ -> r.NextDouble() * 4.0 - 2.0)
        let q = Array4D.init 1 hq 1 d (fun _ _ _ _ -> r.NextDouble() * 4.0 - 2.0)
        let k = Array4D.init 1 hkv l d (fun _ _ j x -> pattern.[j % bs, x])
        let v = Array4D.init 1 hkv l 3 (fun _ _ _ _ -> r.NextDouble() * 4.0 - 2.0)
        let reference = Resa.DecodeStep(q, k, v, resaOptions bs nLocal slots)
        // The candidate keeps the local blocks and takes the highest-index other blocks instead of the lowest.
        let others = nb - nLocal
        let cand = Array3D.init 1 hkv nb (fun _ _ c -> c >= others || c >= others - slots)
        let mask = Array4D.init 1 hq 1 l (fun _ h _ j -> cand.[0, h / (hq / hkv), j / bs])
        let dense = DenseAttention.Compute(q, k, v, AttentionOptions(Mask = mask))
        let call = resaCall bs nLocal slots (q, k, v)

        let candidate =
            [
                "selected", NdArray.Create(flat3 cand, shape3 cand)
                "out", arr4 dense.Out
                "lse", NdArray.Create(flat3 dense.Lse, shape3 dense.Lse)
            ]

        let ok, reports = passes resa call candidate
        Assert.That(ok, report reports)

        if maxDiff (flat4 dense.Out) (flat4 reference.Out) > 1e-6 then
            let okRef, _ =
                passes resa call [ "selected", NdArray.Create(flat3 cand, shape3 cand); "out", arr4 reference.Out ]

            Assert.That(okRef, Is.False, "out is judged by the candidate's selection")

        Assert.That(flat3 cand <> flat3 reference.Selected, "the tied alternative differs from the reference's choice"))

let ``resa validator rejects a swap of clearly different blocks a wrong count and a missing local block`` () =
    Prop.forAll resaCase (fun (bs, nb, hkv, hq, d, nLocal, slots, seed) ->
        let r = Random seed
        let l = nb * bs
        let w = Array.init d (fun _ -> 0.5 + r.NextDouble())
        let w2 = Array.sumBy (fun x -> x * x) w
        // score_c = c alpha |w|^2 / sqrt(D) = c: one unit per block.
        let alpha = sqrt (float d) / w2
        let q = Array4D.init 1 hq 1 d (fun _ _ _ x -> w.[x])
        let k = Array4D.init 1 hkv l d (fun _ _ j x -> alpha * float (j / bs) * w.[x])
        let v = Array4D.init 1 hkv l 3 (fun _ _ _ _ -> r.NextDouble())
        let reference = Resa.DecodeStep(q, k, v, resaOptions bs nLocal slots)
        let call = resaCall bs nLocal slots (q, k, v)
        let others = nb - nLocal

        let edit f =
            let s = reference.Selected.Clone() :?> bool[,,]
            f s
            NdArray.Create(flat3 s, shape3 s)

        let weakestSelected =
            [ 0 .. others - 1 ] |> List.filter (fun c -> reference.Selected.[0, 0, c]) |> List.min

        let bestUnselected =
            [ 0 .. others - 1 ] |> List.filter (fun c -> not reference.Selected.[0, 0, c]) |> List.max

        let bad =
            [
                edit (fun s ->
                    s.[0, 0, weakestSelected] <- false
                    s.[0, 0, bestUnselected] <- true)
                edit (fun s -> s.[0, 0, bestUnselected] <- true)
                edit (fun s -> s.[0, 0, weakestSelected] <- false)
            ]
            @ (if nLocal > 0 then
                   [
                       edit (fun s ->
                           s.[0, 0, nb - 1] <- false
                           s.[0, 0, bestUnselected] <- true)
                   ]
               else
                   [])

        for b in bad do
            let ok, reports = passes resa call [ "selected", b ]
            Assert.That(ok, Is.False, report reports)

        let ok, reports =
            passes resa call [ "selected", NdArray.Create(flat3 reference.Selected, shape3 reference.Selected) ]

        Assert.That(ok, report reports))

// ---------------------------------------------------------------- CLI

let private cli (args: string list) =
    use out = new StringWriter()
    use err = new StringWriter()
    let code = Reference.Cli.Cli.Run(Array.ofList args, out, err)
    code, out.ToString(), err.ToString()

let ``check nsa exits 0 for a tied alternative selection and 1 for a swap of clearly different blocks`` () =
    let dir = Path.Combine(Path.GetTempPath(), "nsa-validator-" + Guid.NewGuid().ToString "N")
    Directory.CreateDirectory dir |> ignore
    let input, cand = Path.Combine(dir, "in.npz"), Path.Combine(dir, "cand.npz")
    let write path (arrays: (string * NdArray) list) = TensorFile.Write(path, arrays |> List.map KeyValuePair)

    let args =
        [
            "check"
            "nsa"
            "--input"
            input
            "--candidate"
            cand
            "--param"
            "block_size=2"
            "--param"
            "top_n=2"
            "--param"
            "window=2"
        ]
    // Tied: every block holds the same keys; the candidate picks the block before the own one, the reference block 0.
    let r0 = Random 5
    let pattern = Array2D.init 2 4 (fun _ _ -> r0.NextDouble() * 2.0 - 1.0)
    let tied = nsaInputs (8, 1, 2, 4, 5) (fun _ _ j c -> pattern.[j % 2, c])
    let q, k, v, gates = tied
    write input [ "q", arr4 q; "k", arr4 k; "v", arr4 v; "gates", arr4 gates ]
    let reference = Nsa.Compute(q, k, v, gates, NsaOptions(BlockSize = 2, TopN = 2, Window = 2))
    let cand0 = Array4D.init 1 1 8 4 (fun _ _ i c -> c = i / 2 || c = i / 2 - 1)
    Assert.That(flat4 cand0 <> flat4 reference.Selected)
    write cand [ "selected", bool4 cand0; "out", arr4 (nsaOutUnder tied 2 2 cand0) ]
    let code, out, err = cli args
    Assert.That(code, eq 0, out + err)
    // Separated: scores increase with the block, so taking block 0 instead of the block before the own one fails.
    let sep = separatedInputs (2, 8, 1, 2, 4, 5)
    let q, k, v, gates = sep
    write input [ "q", arr4 q; "k", arr4 k; "v", arr4 v; "gates", arr4 gates ]
    let cand1 = Array4D.init 1 1 8 4 (fun _ _ i c -> c = i / 2 || (c = 0 && i >= 2))
    write cand [ "selected", bool4 cand1; "out", arr4 (nsaOutUnder sep 2 2 cand1) ]
    let code, out, err = cli args
    Assert.That(code, eq 1, out + err)
    Assert.That(out, Does.Contain "selected")

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "attention/validators"
        "AttentionValidatorTests"
        [
            Proofs.prop
                [ "attention.nsa-validator" ]
                "nsa validator accepts the reference's own selection and output"
                ``nsa validator accepts the reference's own selection and output``
            Proofs.prop
                [ "attention.nsa-validator" ]
                "nsa validator accepts another choice among exactly tied blocks and judges out by it"
                ``nsa validator accepts another choice among exactly tied blocks and judges out by it``
            Proofs.prop
                [ "attention.nsa-validator" ]
                "nsa validator rejects a swap of clearly different blocks a wrong count and a missing own block"
                ``nsa validator rejects a swap of clearly different blocks a wrong count and a missing own block``
            Proofs.prop
                [ "attention.resa-validator" ]
                "resa validator accepts the reference's own selection and output"
                ``resa validator accepts the reference's own selection and output``
            Proofs.prop
                [ "attention.resa-validator" ]
                "resa validator accepts another choice among exactly tied blocks and judges out and lse by it"
                ``resa validator accepts another choice among exactly tied blocks and judges out and lse by it``
            Proofs.prop
                [ "attention.resa-validator" ]
                "resa validator rejects a swap of clearly different blocks a wrong count and a missing local block"
                ``resa validator rejects a swap of clearly different blocks a wrong count and a missing local block``
            Proofs.test
                [ "attention.nsa-validator" ]
                "check nsa exits 0 for a tied alternative selection and 1 for a swap of clearly different blocks"
                ``check nsa exits 0 for a tied alternative selection and 1 for a swap of clearly different blocks``
        ]
