/// Properties of block-level routing; theorems in proofs/block-routing.md.
module Reference.Tests.BlockRoutingProperties

open FsCheck
open FsCheck.FSharp
open NUnit.Framework
open Reference.Routing
open Reference.Harness.Algorithms
open Reference.Numerics
open Reference.Tests.Proofs
open Reference.Tests.Generators
open Reference.Tests.RoutingGenerators

/// A block-routing problem: logits, k, B and kb.
type BlockProblem =
    {
        Logits: double[,]
        K: int
        BlockSize: int
        BlockK: int
    }

    member p.Options = BlockRoutingOptions(K = p.K, BlockSize = p.BlockSize, BlockK = System.Nullable p.BlockK)

let private problemWith logitGen =
    gen {
        let! c = routingCase
        let n, e = Array2D.length1 c.Logits, Array2D.length2 c.Logits
        let! x = logitGen n e
        let! b = Gen.elements [ 1; 2; 3; 4; 5; 8; 16; 40 ]
        let! kb = Gen.choose (c.K, e)
        return { Logits = x; K = c.K; BlockSize = b; BlockK = kb }
    }

let private problem = problemWith logits |> Arb.fromGen

let private blocks (p: BlockProblem) =
    let n = Array2D.length1 p.Logits
    [ for start in 0 .. p.BlockSize .. n - 1 -> [ start .. min n (start + p.BlockSize) - 1 ] ]

let ``a token's experts always lie within its block's set`` () =
    Prop.forAll problem (fun p ->
        let r = BlockRouting.Route(p.Logits, p.Options)

        blocks p
        |> List.iteri (fun b tokens ->
            let set = row r.BlockExperts b
            Assert.That(set |> Array.distinct |> Array.length, eq p.BlockK, $"block {b} set {set}")

            for i in tokens do
                let got = row r.Experts i
                Assert.That(got |> Array.distinct |> Array.length, eq p.K, $"token {i}")
                Assert.That(got |> Array.forall (fun x -> Array.contains x set), $"token {i}: {got} outside {set}")))

let ``with block size 1 the result equals top-k`` () =
    Prop.forAll problem (fun p ->
        let p = { p with BlockSize = 1 }
        let r = BlockRouting.Route(p.Logits, p.Options)
        let t = TopK.Route(p.Logits, TopKOptions(K = p.K, Score = ScoreFunction.Softmax, Normalize = true))
        Assert.That(r.Experts, eq t.Experts)
        // Bit for bit: the same scores, renormalized by the same function.
        Assert.That(r.Weights, eq t.Weights)
        Assert.That(r.UniquePerBlock, eq r.TokenLevelUnique))

let ``block sets, token choices and both counts follow the definition`` () =
    Prop.forAll problem (fun p ->
        let r = BlockRouting.Route(p.Logits, p.Options)
        let s = RouterScores.Compute(p.Logits, ScoreFunction.Softmax)
        let e = Array2D.length2 p.Logits
        let plain = TopK.Route(p.Logits, TopKOptions(K = p.K, Normalize = true))

        blocks p
        |> List.iteri (fun b tokens ->
            // The block score is the mean of its tokens' scores; the set its top kb (stable sort: ties to the lower expert).
            let q = Array.init e (fun x -> (tokens |> List.sumBy (fun i -> s.[i, x])) / float tokens.Length)
            let set = Array.init e id |> Array.sortBy (fun x -> -q.[x], x) |> Array.take p.BlockK
            Assert.That(row r.BlockExperts b, eq set, $"block {b}")

            for i in tokens do
                let expected = set |> Array.sortBy (fun x -> -s.[i, x], x) |> Array.take p.K
                Assert.That(row r.Experts i, eq expected, $"token {i}")
                Assert.That(abs (Array.sum (row r.Weights i) - 1.0), Is.LessThanOrEqualTo(2.0 * float p.K * u64))

            let used = tokens |> List.collect (fun i -> row r.Experts i |> List.ofArray) |> List.distinct
            Assert.That(r.UniquePerBlock.[b], eq used.Length)
            Assert.That(r.UniquePerBlock.[b], Is.LessThanOrEqualTo p.BlockK)
            let usedPlain = tokens |> List.collect (fun i -> row plain.Experts i |> List.ofArray) |> List.distinct
            Assert.That(r.TokenLevelUnique.[b], eq usedPlain.Length)))

let private kernel (p: BlockProblem) =
    let n, e = Array2D.length1 p.Logits, Array2D.length2 p.Logits
    let r = Reference.Kernels.Routing.BlockRouting.Route(flat32 p.Logits, n, e, p.Options)
    let nb = r.UniquePerBlock.Length

    matrix n p.K r.Experts,
    matrix n p.K (Array.map float r.Weights),
    matrix nb p.BlockK r.BlockExperts,
    r.UniquePerBlock,
    r.TokenLevelUnique

/// True when every token score and every block score of the instance is separated at float32 precision.
let private separated (p: BlockProblem) =
    let x = p.Logits
    let n, e = Array2D.length1 x, Array2D.length2 x
    let s = RouterScores.Compute(x, ScoreFunction.Softmax)
    let s32 = scores32 x ScoreFunction.Softmax

    let rowsOk =
        [ 0 .. n - 1 ]
        |> List.forall (fun i -> allSeparated [ for y in 0 .. e - 1 -> s.[i, y], s32.[i, y], float (e + 4) * u32 ])

    let blocksOk =
        blocks p
        |> List.forall (fun tokens ->
            let mean y = (tokens |> List.sumBy (fun i -> s.[i, y])) / float tokens.Length
            let mean32 y = float ((tokens |> List.fold (fun acc i -> acc + float32 s32.[i, y]) 0.0f) / float32 tokens.Length)
            allSeparated [ for y in 0 .. e - 1 -> mean y, mean32 y, float (e + p.BlockSize + 6) * u32 ])

    rowsOk && blocksOk

let ``kernel equals reference`` () =
    Prop.forAll problem (fun p ->
        let x = p.Logits
        let reference = BlockRouting.Route(x, p.Options)
        let experts, weights, sets, unique, tokenLevel = kernel p
        // (b) Always valid, with the weights its choice implies (log-space renormalization: (k + 4) u per weight).
        let check =
            BlockRoutingValidator.Check(x, p.Options, experts, sets, unique, tokenLevel, NumberFormat.Float32)

        Assert.That(check.Valid, String.concat "\n" check.Problems)

        weights
        |> Array2D.iteri (fun i j w ->
            Assert.That(abs (w - check.ExpectedWeights.[i, j]), Is.LessThanOrEqualTo(2.0 * float (p.K + 4) * u32), $"weights[{i}, {j}]"))
        // (a) Where every block score and every token score is separated at float32 precision, identical indices.
        if separated p then
            Assert.That(experts, eq reference.Experts)
            Assert.That(sets, eq reference.BlockExperts)
            Assert.That(unique, eq reference.UniquePerBlock)
            Assert.That(tokenLevel, eq reference.TokenLevelUnique))

let ``kernel equals reference exactly on most grid instances`` () =
    // Grid logits: the exact branch of the property above must not be vacuous.
    let mutable exact = 0
    let cases = Gen.sample 300 (problemWith gridLogits)

    for p in cases do
        if separated p then
            exact <- exact + 1
            let reference = BlockRouting.Route(p.Logits, p.Options)
            let experts, _, sets, unique, tokenLevel = kernel p

            Assert.That(
                (experts, sets, unique, tokenLevel),
                eq (reference.Experts, reference.BlockExperts, reference.UniquePerBlock, reference.TokenLevelUnique)
            )

    Assert.That(exact, Is.GreaterThan 100, $"{exact} of {Seq.length cases} instances compared exactly")

let ``the validator accepts the reference and rejects an expert outside the block's set`` () =
    Prop.forAll problem (fun p ->
        let r = BlockRouting.Route(p.Logits, p.Options)
        let e = Array2D.length2 p.Logits

        let check ex sets =
            BlockRoutingValidator.Check(p.Logits, p.Options, ex, sets, r.UniquePerBlock, r.TokenLevelUnique, NumberFormat.Float64)

        let ok = check r.Experts r.BlockExperts
        Assert.That(ok.Valid, String.concat "\n" ok.Problems)
        Assert.That(ok.ExpectedWeights, eq r.Weights)

        if p.BlockK < e && Array2D.length1 p.Logits > 0 then
            let set = row r.BlockExperts 0
            let outside = [ 0 .. e - 1 ] |> List.find (fun x -> not (Array.contains x set))
            let ex = Array2D.copy r.Experts
            ex.[0, 0] <- outside
            Assert.That((check ex r.BlockExperts).Valid, Is.False, $"token 0 given expert {outside}"))

let ``reference and kernel are deterministic`` () =
    Prop.forAll problem (fun p ->
        let a, b = BlockRouting.Route(p.Logits, p.Options), BlockRouting.Route(p.Logits, p.Options)
        Assert.That(b.Experts, eq a.Experts)
        Assert.That(b.Weights, eq a.Weights)
        let (e1, w1, s1, u1, t1), (e2, w2, s2, u2, t2) = kernel p, kernel p
        Assert.That((e2, w2, s2, u2, t2), eq (e1, w1, s1, u1, t1)))

let ``a block shares its experts where token-level routing would spread them`` () =
    // Four tokens, four experts, k = 1, one block of 4 with kb = 2. Each token prefers a different expert, but experts 0
    // and 1 carry the most mass overall, so the block keeps {0, 1}: two experts active instead of four.
    let x =
        array2D [ [ 2.0; 1.5; 0.0; 0.0 ]; [ 1.5; 2.0; 0.0; 0.0 ]; [ 1.0; 1.0; 1.2; 0.0 ]; [ 1.0; 1.0; 0.0; 1.2 ] ]

    let r = BlockRouting.Route(x, BlockRoutingOptions(K = 1, BlockSize = 4, BlockK = System.Nullable 2))
    Assert.That(row r.BlockExperts 0 |> Array.sort, eq [| 0; 1 |])
    Assert.That(r.UniquePerBlock, eq [| 2 |])
    Assert.That(r.TokenLevelUnique, eq [| 4 |])
    Assert.That(column r.Experts 0, eq [| 0; 1; 0; 0 |])

let ``bad input names the argument`` () =
    let x = Array2D.create 4 3 0.0

    let ex =
        throws<System.ArgumentOutOfRangeException> (fun () -> BlockRouting.Route(x, BlockRoutingOptions(BlockSize = 0)) |> ignore)

    Assert.That(ex.ParamName, eq "block_size")

    let ex =
        throws<System.ArgumentOutOfRangeException> (fun () ->
            BlockRouting.Route(x, BlockRoutingOptions(K = 2, BlockSize = 2, BlockK = System.Nullable 1))
            |> ignore)

    Assert.That(ex.ParamName, eq "block_k")
    x.[2, 2] <- nan

    let ex =
        throws<System.ArgumentException> (fun () -> BlockRouting.Route(x, BlockRoutingOptions(BlockSize = 2)) |> ignore)

    Assert.That(ex.Message, Does.Contain "logits[2, 2] is NaN")

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "routing/block-routing"
        "BlockRoutingProperties"
        [
            Proofs.prop
                [ "block-routing.within-block-set" ]
                "a token's experts always lie within its block's set"
                ``a token's experts always lie within its block's set``
            Proofs.prop
                [ "block-routing.block-size-one-is-topk" ]
                "with block size 1 the result equals top-k"
                ``with block size 1 the result equals top-k``
            Proofs.prop
                [ "block-routing.definition" ]
                "block sets, token choices and both counts follow the definition"
                ``block sets, token choices and both counts follow the definition``
            Proofs.prop [ "block-routing.kernel-equals-reference" ] "kernel equals reference" ``kernel equals reference``
            Proofs.test
                [ "block-routing.kernel-equals-reference" ]
                "kernel equals reference exactly on most grid instances"
                ``kernel equals reference exactly on most grid instances``
            Proofs.prop
                [ "block-routing.validator-sound" ]
                "the validator accepts the reference and rejects an expert outside the block's set"
                ``the validator accepts the reference and rejects an expert outside the block's set``
            Proofs.prop
                [ "block-routing.deterministic" ]
                "reference and kernel are deterministic"
                ``reference and kernel are deterministic``
            Proofs.test
                [ "block-routing.definition" ]
                "a block shares its experts where token-level routing would spread them"
                ``a block shares its experts where token-level routing would spread them``
            Proofs.test [] "bad input names the argument" ``bad input names the argument``
        ]
