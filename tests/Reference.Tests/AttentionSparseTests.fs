/// Properties of the trainable/decoding sparse attentions: MoBA, NSA, ReSA (step and decode loop), LeanK and its
/// mask, and linear attention (three forms and the chunked kernel). Theorems: proofs/attention-sparse.md.
module Reference.Tests.AttentionSparseTests

open System
open NUnit.Framework
open FsCheck
open FsCheck.FSharp
open Reference.Attention
open Reference.Numerics
open Reference.Harness.Algorithms
open Reference.Tests.Proofs
open Reference.Tests.AttentionTests

// ---------------------------------------------------------------------------------------------------------------
// Inputs: a seed and a few sizes; arrays drawn from the seed (uniform in [-2, 2], or {-1, 0, 1} for exact ties).
// ---------------------------------------------------------------------------------------------------------------

type Case = { B: int; Hq: int; Hkv: int; T: int; Tk: int; D: int; Dv: int; Ties: bool; Seed: int }

let private caseGen (groups: int list) =
    gen {
        let! b = Gen.elements [ 1; 2 ]
        let! hkv = Gen.elements [ 1; 2 ]
        let! g = Gen.elements groups
        let! t = Gen.elements [ 1; 2; 3; 5; 7; 8; 13; 17 ]
        let! tk = Gen.elements [ 1; 4; 9; 17 ]
        let! d = Gen.elements [ 1; 2; 3; 4; 8 ]
        let! dv = Gen.elements [ 1; 2; 5 ]
        let! ties = Gen.elements [ false; true ]
        let! seed = Gen.choose (0, 1_000_000_000)
        return { B = b; Hq = hkv * g; Hkv = hkv; T = t; Tk = max t tk; D = d; Dv = dv; Ties = ties; Seed = seed }
    }

let private mhaCases = caseGen [ 1 ] |> Arb.fromGen
let private gqaCases = caseGen [ 1; 2; 3 ] |> Arb.fromGen

let private draw (r: Random) ties =
    if ties then
        float (r.Next(-1, 2))
    else
        r.NextDouble() * 4.0 - 2.0

let private tensor (r: Random) ties a b c d = Array4D.init a b c d (fun _ _ _ _ -> draw r ties)

/// q [B, Hq, T, D], k [B, Hkv, T, D], v [B, Hkv, T, Dv] (self-attention).
let private selfInputs (c: Case) =
    let r = Random c.Seed
    tensor r c.Ties c.B c.Hq c.T c.D, tensor r c.Ties c.B c.Hkv c.T c.D, tensor r c.Ties c.B c.Hkv c.T c.Dv

let private ceilDiv a b = (a + b - 1) / b

/// The indices of the k best values, larger first, ties to the lower index (written independently of Ranking).
let private topIndices (values: float[]) (k: int) =
    values
    |> Array.mapi (fun i x -> i, x)
    |> Array.sortWith (fun (i, x) (j, y) -> if x <> y then compare y x else compare i j)
    |> Array.truncate k
    |> Array.map fst
    |> Set.ofArray

// ---------------------------------------------------------------------------------------------------------------
// MoBA
// ---------------------------------------------------------------------------------------------------------------

let ``moba with top_k at least the chunk count equals causal attention`` () =
    Prop.forAll mhaCases (fun c ->
        let q, k, v = selfInputs c
        let r = Random(c.Seed + 1)
        let chunk = r.Next(1, c.T + 2)
        let topK = ceilDiv c.T chunk + r.Next 3
        let scale = if r.Next 2 = 0 then Nullable() else Nullable 0.7
        let moba = Moba.Compute(q, k, v, MobaOptions(ChunkSize = chunk, TopK = topK, Scale = scale))
        let causal = DenseAttention.Compute(q, k, v, AttentionOptions(Causal = true, Scale = scale))
        checkEqual "out" (flat4 causal.Out) (flat4 moba.Out)
        checkEqual "lse" (flat3 causal.Lse) (flat3 moba.Lse))

let ``moba attends the own chunk and the best complete chunks by mean key gate`` () =
    Prop.forAll mhaCases (fun c ->
        let q, k, v = selfInputs c
        let r = Random(c.Seed + 1)
        let chunk = r.Next(1, c.T + 1)
        let chunks = ceilDiv c.T chunk
        let topK = r.Next(1, chunks + 1)
        let options = MobaOptions(ChunkSize = chunk, TopK = topK)
        let mask = Moba.Mask(q, k, v, options)
        let selected = Moba.SelectedChunks(q, k, v, options)

        for b in 0 .. c.B - 1 do
            for h in 0 .. c.Hq - 1 do
                for t in 0 .. c.T - 1 do
                    let own = t / chunk
                    // Complete chunks (every key before t) ranked by q_t . mean(K_c).
                    let complete =
                        [|
                            for ch in 0 .. chunks - 1 do
                                if (ch + 1) * chunk <= t then
                                    yield ch
                        |]

                    let gate ch =
                        let keys = [ ch * chunk .. min c.T ((ch + 1) * chunk) - 1 ]

                        List.sum
                            [
                                for d in 0 .. c.D - 1 -> q.[b, h, t, d] * (List.sumBy (fun j -> k.[b, h, j, d]) keys / float keys.Length)
                            ]

                    let gates = complete |> Array.map gate
                    let best = topIndices gates (min (topK - 1) complete.Length) |> Set.map (fun i -> complete.[i])
                    let chosen = Set.add own best
                    Assert.That(selected.[b, h, t, own], $"own chunk of ({b},{h},{t})")
                    Assert.That([ 0 .. chunks - 1 ] |> List.filter (fun ch -> selected.[b, h, t, ch]) |> List.length, eq (min topK chunks))

                    for j in 0 .. c.T - 1 do
                        let expected = j <= t && chosen.Contains(j / chunk)

                        if mask.[b, h, t, j] <> expected then
                            Assert.Fail $"mask[{b},{h},{t},{j}] = {mask.[b, h, t, j]}, expected {expected} (chunks {chosen})"

        let result = Moba.Compute(q, k, v, options)
        let dense = DenseAttention.Compute(q, k, v, AttentionOptions(Mask = mask))
        checkEqual "out" (flat4 dense.Out) (flat4 result.Out))

// ---------------------------------------------------------------------------------------------------------------
// NSA
// ---------------------------------------------------------------------------------------------------------------

let private gatesOf (c: Case) (g: float * float * float) =
    let a, b, w = g

    Array4D.init c.B c.Hq c.T 3 (fun _ _ _ i ->
        match i with
        | 0 -> a
        | 1 -> b
        | _ -> w)

let ``nsa with gates 0 0 1 equals sliding window attention`` () =
    Prop.forAll gqaCases (fun c ->
        let q, k, v = selfInputs c
        let r = Random(c.Seed + 1)
        let window = r.Next(1, c.T + 2)
        let options = NsaOptions(BlockSize = r.Next(1, 6), TopN = r.Next(1, 4), Window = window)
        let nsa = Nsa.Compute(q, k, v, gatesOf c (0.0, 0.0, 1.0), options)
        let swa = DenseAttention.Compute(q, k, v, AttentionOptions(Causal = true, WindowLeft = window - 1))
        checkEqual "out" (flat4 swa.Out) (flat4 nsa.Out))

let ``nsa selects the own block and the earlier blocks with the largest summed compressed probability`` () =
    Prop.forAll gqaCases (fun c ->
        let q, k, v = selfInputs c
        let r = Random(c.Seed + 1)
        let bs = r.Next(1, 6)
        let topN = r.Next(1, 5)
        let scale = 1.0 / sqrt (float c.D)

        let result =
            Nsa.Compute(q, k, v, gatesOf c (0.0, 1.0, 0.0), NsaOptions(BlockSize = bs, TopN = topN, Window = 0))

        let nb = ceilDiv c.T bs
        let group = c.Hq / c.Hkv
        // Compressed keys: block means, computed here.
        let kc =
            Array4D.init c.B c.Hkv nb c.D (fun b g blk d ->
                let keys = [ blk * bs .. min c.T ((blk + 1) * bs) - 1 ]
                List.sumBy (fun j -> k.[b, g, j, d]) keys / float keys.Length)

        let mask = Array4D.zeroCreate c.B c.Hq c.T c.T

        for b in 0 .. c.B - 1 do
            for g in 0 .. c.Hkv - 1 do
                for t in 0 .. c.T - 1 do
                    let own = t / bs
                    let visible = (t + 1) / bs
                    let score = Array.zeroCreate own

                    for h in g * group .. (g + 1) * group - 1 do
                        let s =
                            Array.init visible (fun blk ->
                                scale * List.sum [ for d in 0 .. c.D - 1 -> q.[b, h, t, d] * kc.[b, g, blk, d] ])

                        if visible > 0 then
                            let m = Array.max s
                            let e = s |> Array.map (fun x -> exp (x - m))
                            let z = Array.sum e

                            for blk in 0 .. own - 1 do
                                score.[blk] <- score.[blk] + e.[blk] / z

                    let chosen = topIndices score (min (topN - 1) own) |> Set.add own

                    for blk in 0 .. nb - 1 do
                        let expected = chosen.Contains blk
                        // Near-ties of the summed probabilities may order differently in the last bits: accept either side
                        // of a gap below 1e-12.
                        let tied =
                            blk < own && score |> Array.exists (fun s -> s <> score.[blk] && abs (s - score.[blk]) < 1e-12)

                        if result.Selected.[b, g, t, blk] <> expected && not tied then
                            Assert.Fail
                                $"selected[{b},{g},{t},{blk}] = {result.Selected.[b, g, t, blk]}, expected {expected}; scores {score}"

                    for h in g * group .. (g + 1) * group - 1 do
                        for j in 0..t do
                            mask.[b, h, t, j] <- result.Selected.[b, g, t, j / bs]
        // The selected branch is attention over the selected blocks' keys j <= t; gates (0, 1, 0) pass it through.
        let dense = DenseAttention.Compute(q, k, v, AttentionOptions(Mask = mask))
        checkEqual "selected branch" (flat4 dense.Out) (flat4 result.SelectedOut)
        checkEqual "out" (flat4 dense.Out) (flat4 result.Out)
        // With top_n >= nb every block up to the own one is selected: the selected branch is causal attention.
        let all =
            Nsa.Compute(q, k, v, gatesOf c (0.0, 1.0, 0.0), NsaOptions(BlockSize = bs, TopN = nb, Window = 0))

        let causal = DenseAttention.Compute(q, k, v, AttentionOptions(Causal = true))
        checkEqual "top_n = nb" (flat4 causal.Out) (flat4 all.Out))

// ---------------------------------------------------------------------------------------------------------------
// ReSA
// ---------------------------------------------------------------------------------------------------------------

/// q [B, Hq, 1, D] and a cache of Tk positions.
let private decodeInputs (c: Case) =
    let r = Random c.Seed
    tensor r c.Ties c.B c.Hq 1 c.D, tensor r c.Ties c.B c.Hkv c.Tk c.D, tensor r c.Ties c.B c.Hkv c.Tk c.Dv

let ``resa with sparsity 1 equals dense attention`` () =
    Prop.forAll gqaCases (fun c ->
        let q, k, v = decodeInputs c
        let r = Random(c.Seed + 1)

        let options =
            ResaOptions(BlockSize = r.Next(1, 6), Sparsity = 1.0, NLocal = r.Next(0, 3), NMin = r.Next(0, 3))

        let step = Resa.DecodeStep(q, k, v, options)
        let dense = DenseAttention.Compute(q, k, v, AttentionOptions())
        checkEqual "out" (flat4 dense.Out) (flat4 step.Out)
        checkEqual "lse" (flat3 dense.Lse) (flat3 step.Lse)
        Assert.That(step.Selected |> Seq.cast<bool> |> Seq.forall id, "every block selected"))

let ``resa selects the local blocks and the best scored others and scores bound the block's logits`` () =
    Prop.forAll gqaCases (fun c ->
        let q, k, v = decodeInputs c
        let r = Random(c.Seed + 1)
        let bs = r.Next(1, 6)

        let options =
            ResaOptions(BlockSize = bs, Sparsity = [| 0.1; 0.3; 0.5 |].[r.Next 3], NLocal = r.Next(0, 3), NMin = r.Next(0, 4))

        let step = Resa.DecodeStep(q, k, v, options)
        let nb = ceilDiv c.Tk bs
        let nSel = max (int (ceil (float nb * options.Sparsity))) (min nb options.NMin)
        let local = min options.NLocal nb
        let total = min nb (max nSel local)
        let group = c.Hq / c.Hkv

        for b in 0 .. c.B - 1 do
            for g in 0 .. c.Hkv - 1 do
                let qbar =
                    Array.init c.D (fun d ->
                        (List.sum [ for h in g * group .. (g + 1) * group - 1 -> q.[b, h, 0, d] ])
                        / float group
                        / sqrt (float c.D))

                let score blk =
                    let keys = [ blk * bs .. min c.Tk ((blk + 1) * bs) - 1 ]

                    let s =
                        List.sum
                            [
                                for d in 0 .. c.D - 1 ->
                                    let hi = keys |> List.map (fun j -> k.[b, g, j, d]) |> List.max
                                    let lo = keys |> List.map (fun j -> k.[b, g, j, d]) |> List.min
                                    max (qbar.[d] * hi) (qbar.[d] * lo)
                            ]
                    // The score bounds qbar . k_j for every key of the block.
                    for j in keys do
                        let dot = List.sum [ for d in 0 .. c.D - 1 -> qbar.[d] * k.[b, g, j, d] ]

                        if dot > s + 1e-12 * (1.0 + abs s) then
                            Assert.Fail $"block {blk}: qbar.k_{j} = {dot} exceeds the score {s}"

                    s

                let scores = Array.init (nb - local) score
                let chosen = Set.union (Set.ofList [ nb - local .. nb - 1 ]) (topIndices scores (total - local))
                let actual = [ 0 .. nb - 1 ] |> List.filter (fun blk -> step.Selected.[b, g, blk]) |> Set.ofList
                Assert.That(actual.Count, eq total, "selected count")
                Assert.That(actual, eq chosen, $"selected blocks, scores {scores}")
        // Attention over the selected blocks' positions.
        let mask = Array4D.init c.B c.Hq 1 c.Tk (fun b h _ j -> step.Selected.[b, h / group, j / bs])
        let dense = DenseAttention.Compute(q, k, v, AttentionOptions(Mask = mask))
        checkEqual "out" (flat4 dense.Out) (flat4 step.Out))

let private modelCases =
    gen {
        let! layers = Gen.elements [ 1; 2; 3 ]
        let! hkv = Gen.elements [ 1; 2 ]
        let! g = Gen.elements [ 1; 2 ]
        let! d = Gen.elements [ 2; 4 ]
        let! dm = Gen.elements [ 4; 8 ]
        let! prompt = Gen.elements [ 1; 3; 9 ]
        let! f = Gen.elements [ 1; 2; 3; 5 ]
        let! rounds = Gen.elements [ 1; 2; 3 ]
        let! bs = Gen.elements [ 1; 2; 4 ]
        let! seed = Gen.choose (0, 1_000_000)

        return
            {|
                Config = ResaModelConfig(Layers = layers, ModelDim = dm, QueryHeads = hkv * g, KvHeads = hkv, HeadDim = d, Seed = seed)
                Prompt = prompt
                F = f
                Steps = f * rounds
                BlockSize = bs
            |}
    }
    |> Arb.fromGen

let ``resa keys and values right after a rectification equal dense prefill keys and values`` () =
    Prop.forAll modelCases (fun m ->
        let model = ResaModel.Create m.Config
        let r = Random m.Config.Seed
        let prompt = Array2D.init m.Prompt m.Config.ModelDim (fun _ _ -> r.NextDouble() * 2.0 - 1.0)
        let options = ResaOptions(BlockSize = m.BlockSize, Sparsity = 0.1, NLocal = 1, NMin = 1)
        let rectified = model.Decode(prompt, m.Steps, ResaDecodeMode.Rectified, options, m.F)

        Assert.That(
            List.ofSeq rectified.Rectifications,
            eq
                [
                    for s in 1 .. m.Steps do
                        if s % m.F = 0 then
                            yield s
                ]
        )
        // After the last rectification (the last step), the cache is the dense prefill of the same inputs.
        let prefill = model.Prefill rectified.Inputs
        let flatCache (x: float[,,,]) = flat4 x
        checkEqual "keys" (flatCache prefill.Keys) (flatCache rectified.Keys)
        checkEqual "values" (flatCache prefill.Values) (flatCache rectified.Values)
        // Dense decoding's cache is the dense prefill of its own inputs at every length.
        let dense = model.Decode(prompt, m.Steps, ResaDecodeMode.Dense, options, m.F)
        let densePrefill = model.Prefill dense.Inputs
        checkEqual "dense keys" (flatCache densePrefill.Keys) (flatCache dense.Keys)
        checkEqual "dense values" (flatCache densePrefill.Values) (flatCache dense.Values)
        // Sparse decoding with every block selected is dense decoding.
        let all =
            model.Decode(prompt, m.Steps, ResaDecodeMode.Sparse, ResaOptions(BlockSize = m.BlockSize, Sparsity = 1.0), m.F)

        let flat2 (x: float[,]) =
            [|
                for i in 0 .. Array2D.length1 x - 1 do
                    for j in 0 .. Array2D.length2 x - 1 do
                        yield x.[i, j]
            |]

        checkEqual "sparsity 1 outputs" (flat2 dense.Outputs) (flat2 all.Outputs)
        checkEqual "sparsity 1 keys" (flatCache dense.Keys) (flatCache all.Keys))

let ``resa model decoding differs between sparse and dense but rectification pulls the cache back`` () =
    // A case where sparsity matters: a 40-token prompt, blocks of 2, one block attended besides the local one.
    let model =
        ResaModel.Create(ResaModelConfig(Layers = 2, ModelDim = 8, QueryHeads = 2, KvHeads = 1, HeadDim = 4, Seed = 3))

    let r = Random 5
    let prompt = Array2D.init 40 8 (fun _ _ -> r.NextDouble() * 2.0 - 1.0)
    let options = ResaOptions(BlockSize = 2, Sparsity = 0.05, NLocal = 1, NMin = 1)
    let sparse = model.Decode(prompt, 8, ResaDecodeMode.Sparse, options, 4)
    let rectified = model.Decode(prompt, 8, ResaDecodeMode.Rectified, options, 4)
    let sparsePrefill = model.Prefill sparse.Inputs
    let diff (a: float[,,,]) (b: float[,,,]) = Seq.map2 (fun (x: float) y -> abs (x - y)) (Seq.cast<float> a) (Seq.cast<float> b) |> Seq.max
    Assert.That(diff sparsePrefill.Keys sparse.Keys, Is.GreaterThan 1e-6, "sparse decoding drifts from dense keys")
    Assert.That(diff (model.Prefill rectified.Inputs).Keys rectified.Keys, eq 0.0, "rectified cache equals dense prefill")

// ---------------------------------------------------------------------------------------------------------------
// LeanK
// ---------------------------------------------------------------------------------------------------------------

let private crossInputs (c: Case) =
    let r = Random c.Seed
    tensor r c.Ties c.B c.Hq c.T c.D, tensor r c.Ties c.B c.Hkv c.Tk c.D, tensor r c.Ties c.B c.Hkv c.Tk c.Dv

let ``leank with an all ones mask equals dense attention`` () =
    Prop.forAll gqaCases (fun c ->
        let q, k, v = crossInputs c
        let r = Random(c.Seed + 1)
        let causal = r.Next 3 <> 0

        let options =
            LeanKOptions(
                Sink = r.Next(0, 4),
                Recent = r.Next(0, 6),
                Causal = causal,
                ZeroHead =
                    (if r.Next 2 = 0 then
                         LeanKZeroHead.Drop
                     else
                         LeanKZeroHead.ZeroLogit)
            )

        let leank = LeanK.Compute(q, k, v, Array2D.create c.Hkv c.D true, options)
        let dense = DenseAttention.Compute(q, k, v, AttentionOptions(Causal = causal))
        checkEqual "out" (flat4 dense.Out) (flat4 leank.Out)
        checkEqual "lse" (flat3 dense.Lse) (flat3 leank.Lse))

let ``leank scores pruned keys on the kept channels and treats zero heads as chosen`` () =
    Prop.forAll gqaCases (fun c ->
        let q, k, v = crossInputs c
        let r = Random(c.Seed + 1)
        let sink, recent = r.Next(0, 4), r.Next(0, 6)
        let mask = Array2D.init c.Hkv c.D (fun g _ -> if g = 0 && r.Next 2 = 0 then false else r.Next 2 = 0)
        let drop = r.Next 2 = 0

        let options =
            LeanKOptions(Sink = sink, Recent = recent, ZeroHead = (if drop then LeanKZeroHead.Drop else LeanKZeroHead.ZeroLogit))

        let result = LeanK.Compute(q, k, v, mask, options)
        // The same attention with the pruned keys' channels zeroed in a copy of k, key by key: build it per query row.
        let group = c.Hq / c.Hkv
        let scale = 1.0 / sqrt (float c.D)

        for b in 0 .. c.B - 1 do
            for h in 0 .. c.Hq - 1 do
                let g = h / group
                let zeroHead = Seq.forall (fun d -> not mask.[g, d]) [ 0 .. c.D - 1 ]

                for i in 0 .. c.T - 1 do
                    let p = i + c.Tk - c.T
                    let full j = j < sink || (j > p - recent && j <= p)

                    let keys =
                        [
                            for j in 0..p do
                                if full j || not (zeroHead && drop) then
                                    yield j
                        ]

                    let s j =
                        scale
                        * List.sum
                            [
                                for d in 0 .. c.D - 1 -> q.[b, h, i, d] * k.[b, g, j, d] * (if full j || mask.[g, d] then 1.0 else 0.0)
                            ]

                    let scores = keys |> List.map s

                    if keys.IsEmpty then
                        Assert.That(result.Lse.[b, h, i], eq Double.NegativeInfinity)
                    else
                        let m = List.max scores
                        let lse = m + log (List.sumBy (fun x -> exp (x - m)) scores)

                        if abs (lse - result.Lse.[b, h, i]) > 1e-12 * (1.0 + abs lse) then
                            Assert.Fail $"lse[{b},{h},{i}] = {result.Lse.[b, h, i]}, expected {lse}"

                        for e in 0 .. c.Dv - 1 do
                            let o = List.fold2 (fun acc j x -> acc + exp (x - lse) * v.[b, g, j, e]) 0.0 keys scores

                            if abs (o - result.Out.[b, h, i, e]) > 1e-12 * (1.0 + abs o) then
                                Assert.Fail $"out[{b},{h},{i},{e}] = {result.Out.[b, h, i, e]}, expected {o}")

let ``leank mask keeps the aligned count of top channels per head`` () =
    let cases =
        gen {
            let! layers = Gen.elements [ 1; 2; 3 ]
            let! heads = Gen.elements [ 1; 2; 4 ]
            let! d = Gen.elements [ 1; 4; 8; 12; 64 ]
            let! ties = Gen.elements [ true; false ]
            let! ratio = Gen.elements [ 0.0; 0.25; 0.5; 0.7; 0.9; 1.0 ]
            let! align = Gen.elements [ 1; 2; 3; 4; 32 ]
            let! seed = Gen.choose (0, 1_000_000)
            return layers, heads, d, ties, ratio, align, seed
        }

    Prop.forAll (Arb.fromGen cases) (fun (layers, heads, d, ties, ratio, align, seed) ->
        let r = Random seed

        let alpha =
            Array3D.init layers heads d (fun _ _ _ -> if ties then float (r.Next(0, 4)) * 0.5 else r.NextDouble())

        let mask = LeanKMask.Binarize(alpha, ratio, align)
        // numpy's linear quantile, written out here.
        let sorted = alpha |> Seq.cast<float> |> Seq.sort |> Array.ofSeq
        let x = ratio * float (sorted.Length - 1)
        let lo = int (floor x)

        let tau =
            if lo >= sorted.Length - 1 then
                sorted.[sorted.Length - 1]
            else
                let a, b, t = sorted.[lo], sorted.[lo + 1], x - float lo
                if t < 0.5 then a + (b - a) * t else b - (b - a) * (1.0 - t)

        for l in 0 .. layers - 1 do
            for h in 0 .. heads - 1 do
                let row = Array.init d (fun c -> alpha.[l, h, c])
                let count = row |> Array.filter (fun a -> a >= tau) |> Array.length
                let keep = min d ((count + align / 2) / align * align)

                let kept =
                    [
                        for c in 0 .. d - 1 do
                            if mask.[l, h, c] then
                                yield c
                    ]

                Assert.That(kept.Length, eq keep, $"layer {l} head {h}: count {count}, tau {tau}")
                Assert.That(Set.ofList kept, eq (topIndices row keep), $"layer {l} head {h}: the top channels"))

// ---------------------------------------------------------------------------------------------------------------
// Linear attention
// ---------------------------------------------------------------------------------------------------------------

type LinearCase = { C: Case; Map: FeatureMap; Normalize: bool; Decay: float; Chunk: int }

let private linearCases =
    gen {
        let! c = caseGen [ 1 ]
        let! identity = Gen.elements [ false; false; true ]
        let! normalize = Gen.elements [ true; false ]
        let! decay = Gen.elements [ 1.0; 0.9; 0.5 ]
        let! chunk = Gen.elements [ 1; 2; 3; 5; 64 ]

        return
            {
                C = { c with T = max c.T c.Tk }
                Map = (if identity then FeatureMap.Identity else FeatureMap.Elu1)
                Normalize = normalize && not identity
                Decay = decay
                Chunk = chunk
            }
    }
    |> Arb.fromGen

let private linearOptions (l: LinearCase) form =
    LinearAttentionOptions(FeatureMap = l.Map, Normalize = l.Normalize, Decay = l.Decay, Form = form, Chunk = l.Chunk)

let ``the parallel recurrent and chunked forms of linear attention agree`` () =
    Prop.forAll linearCases (fun l ->
        let q, k, v = selfInputs l.C
        let byParallel = LinearAttention.Compute(q, k, v, linearOptions l LinearForm.Parallel)

        let tol =
            2.0 * LinearErrorBound.Bound(q, k, v, linearOptions l LinearForm.Parallel, NumberFormat.Float64)

        for form in [ LinearForm.Recurrent; LinearForm.Chunked ] do
            let other = LinearAttention.Compute(q, k, v, linearOptions l form)
            checkClose (string form) (flat4 byParallel) (flat4 other) tol
        // Also against the definition, evaluated here: o_t = sum_{j<=t} gamma^(t-j) (phi q_t . phi k_j) v_j (/ the same without v_j).
        let phi x =
            if l.Map = FeatureMap.Identity then
                x
            else
                (if x > 0.0 then x + 1.0 else exp x)

        let expected =
            Array4D.init l.C.B l.C.Hq l.C.T l.C.Dv (fun b h t e ->
                let w j =
                    l.Decay ** float (t - j)
                    * List.sum [ for d in 0 .. l.C.D - 1 -> phi q.[b, h, t, d] * phi k.[b, h, j, d] ]

                let num = List.sum [ for j in 0..t -> w j * v.[b, h, j, e] ]

                if l.Normalize then
                    num / List.sum [ for j in 0..t -> w j ]
                else
                    num)

        checkClose "definition" (flat4 expected) (flat4 byParallel) tol)

let ``chunked linear attention kernel equals the reference`` () =
    Prop.forAll linearCases (fun l ->
        let q, k, v = selfInputs l.C
        let options = linearOptions l LinearForm.Parallel
        let expected = LinearAttention.Compute(q, k, v, options)
        let shape = Reference.Kernels.Attention.LinearAttentionShape(l.C.B, l.C.Hq, l.C.T, l.C.D, l.C.Dv)

        let actual =
            Reference.Kernels.Attention.LinearAttention.Chunked(f32 (flat4 q), f32 (flat4 k), f32 (flat4 v), shape, options)

        let tol =
            LinearErrorBound.Bound(q, k, v, options, NumberFormat.Float32)
            + LinearErrorBound.Bound(q, k, v, options, NumberFormat.Float64)

        checkClose "kernel" (flat4 expected) (f64 actual) tol

        let single =
            Reference.Kernels.Attention.LinearAttention.Chunked(f32 (flat4 q), f32 (flat4 k), f32 (flat4 v), shape, options, false)

        checkEqual "threads" (f64 actual) (f64 single))

// ---------------------------------------------------------------------------------------------------------------
// The PyTorch float64 peer (tests/peers/sparse_attention_peer.py): golden cases, and the registry's generated cases.
// ---------------------------------------------------------------------------------------------------------------

let sparseAlgorithms () = [| "moba"; "nsa"; "resa"; "leank"; "leank-mask"; "linear" |]

let ``torch peer confirms the sparse attention golden cases`` (name: string) =
    Peers.requireModules [ "numpy"; "torch" ] "python3-numpy python3-torch"
    let dir = Repo.path [ "data"; "golden"; name ]
    let cases = IO.Directory.GetDirectories(dir).Length
    Assert.That(cases, Is.GreaterThan 0)
    let out = Peers.runPeer "sparse_attention_peer.py" [ "verify"; name; dir ]
    Assert.That(out, Does.Contain $"{cases} of {cases} cases agree")

let ``torch peer agrees with the reference on generated cases`` (name: string) =
    Peers.requireModules [ "numpy"; "torch" ] "python3-numpy python3-torch"
    let algorithm = Reference.Harness.Registry.AlgorithmRegistry.Find name
    let d = IO.Path.Combine(IO.Path.GetTempPath(), "sparse-peer-" + Guid.NewGuid().ToString "N")

    let seed =
        if String.Equals(Environment.GetEnvironmentVariable "CI", "true", StringComparison.OrdinalIgnoreCase) then
            13
        else
            Random.Shared.Next(1_000_000)

    let count = 30

    for i in 0 .. count - 1 do
        let case = algorithm.Generate.Invoke(seed + i)
        let dir = IO.Path.Combine(d, $"case-{i:D3}")
        IO.Directory.CreateDirectory dir |> ignore
        // .npz has no bfloat16: widen those inputs to float32 (exact) for both sides.
        let inputs =
            case.Inputs
            |> Seq.map (fun kv ->
                let a = kv.Value

                let a' =
                    if a.DType = Reference.Harness.Tensors.DType.BF16 then
                        Reference.Harness.Tensors.NdArray.Create(a.ToDoubles() |> Array.map float32, Array.ofSeq a.Shape)
                    else
                        a

                Collections.Generic.KeyValuePair(kv.Key, a'))
            |> List.ofSeq

        let inputPath = IO.Path.Combine(dir, "input.npz")
        Reference.Harness.Tensors.TensorFile.Write(inputPath, inputs)
        IO.File.WriteAllText(IO.Path.Combine(dir, "params.json"), Text.Json.JsonSerializer.Serialize case.Parameters)

        let call =
            algorithm.Bind(Reference.Harness.Tensors.TensorFile.Read inputPath, case.Parameters, case.Name)

        Reference.Harness.Tensors.TensorFile.Write(IO.Path.Combine(dir, "expected.npz"), algorithm.RunReference call)

    let out = Peers.runPeer "sparse_attention_peer.py" [ "verify"; name; d ]
    Assert.That(out, Does.Contain $"{count} of {count} cases agree", $"seed {seed}")
    IO.Directory.Delete(d, true)

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "attention/sparse"
        "AttentionSparseTests"
        [
            Proofs.prop
                [ "attention.moba-full-topk" ]
                "moba with top_k at least the chunk count equals causal attention"
                ``moba with top_k at least the chunk count equals causal attention``
            Proofs.prop
                [ "attention.moba-selection" ]
                "moba attends the own chunk and the best complete chunks by mean key gate"
                ``moba attends the own chunk and the best complete chunks by mean key gate``
            Proofs.prop
                [ "attention.nsa-window-gates" ]
                "nsa with gates 0 0 1 equals sliding window attention"
                ``nsa with gates 0 0 1 equals sliding window attention``
            Proofs.prop
                [ "attention.nsa-selection" ]
                "nsa selects the own block and the earlier blocks with the largest summed compressed probability"
                ``nsa selects the own block and the earlier blocks with the largest summed compressed probability``
            Proofs.prop
                [ "attention.resa-dense" ]
                "resa with sparsity 1 equals dense attention"
                ``resa with sparsity 1 equals dense attention``
            Proofs.prop
                [ "attention.resa-selection" ]
                "resa selects the local blocks and the best scored others and scores bound the block's logits"
                ``resa selects the local blocks and the best scored others and scores bound the block's logits``
            Proofs.prop
                [ "attention.resa-rectification" ]
                "resa keys and values right after a rectification equal dense prefill keys and values"
                ``resa keys and values right after a rectification equal dense prefill keys and values``
            Proofs.test
                []
                "resa model decoding differs between sparse and dense but rectification pulls the cache back"
                ``resa model decoding differs between sparse and dense but rectification pulls the cache back``
            Proofs.prop
                [ "attention.leank-ones" ]
                "leank with an all ones mask equals dense attention"
                ``leank with an all ones mask equals dense attention``
            Proofs.prop
                [ "attention.leank-masked-scores" ]
                "leank scores pruned keys on the kept channels and treats zero heads as chosen"
                ``leank scores pruned keys on the kept channels and treats zero heads as chosen``
            Proofs.prop
                [ "attention.leank-mask-binarization" ]
                "leank mask keeps the aligned count of top channels per head"
                ``leank mask keeps the aligned count of top channels per head``
            Proofs.prop
                [ "attention.linear-forms" ]
                "the parallel recurrent and chunked forms of linear attention agree"
                ``the parallel recurrent and chunked forms of linear attention agree``
            Proofs.prop
                [ "attention.linear-kernel" ]
                "chunked linear attention kernel equals the reference"
                ``chunked linear attention kernel equals the reference``
            Proofs.sequenced (
                Proofs.caseSource
                    []
                    "torch peer confirms the sparse attention golden cases"
                    (sparseAlgorithms ())
                    ``torch peer confirms the sparse attention golden cases``
            )
            Proofs.sequenced (
                Proofs.caseSource
                    []
                    "torch peer agrees with the reference on generated cases"
                    (sparseAlgorithms ())
                    ``torch peer agrees with the reference on generated cases``
            )
        ]
