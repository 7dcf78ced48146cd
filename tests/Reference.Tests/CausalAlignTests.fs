/// causal_align: top-left (PyTorch SDPA is_causal, torch.tril) against bottom-right (FlashAttention) alignment of the
/// causal rule and the window when Tq != Tk, for the dense reference, LeanK and the FlashAttention kernel.
/// Theorem: proofs/attention.md, attention.causal-align.
module Reference.Tests.CausalAlignTests

open System
open NUnit.Framework
open FsCheck
open FsCheck.FSharp
open Reference.Attention
open Reference.Kernels.Attention
open Reference.Tests.Proofs
open Reference.Tests.AttentionTests

/// A case: shapes with Tq and Tk independent, and a causal flag and window (wl, wr) drawn from the seed.
let private cases =
    gen {
        let! b = Gen.elements [ 1; 2 ]
        let! hkv = Gen.elements [ 1; 2 ]
        let! g = Gen.elements [ 1; 2 ]
        let! tq = Gen.elements [ 1; 2; 3; 5; 8; 13 ]
        let! tk = Gen.elements [ 1; 2; 3; 5; 8; 13 ]
        let! d = Gen.elements [ 1; 3; 4 ]
        let! dv = Gen.elements [ 1; 2 ]
        let! values = Gen.elements [ Uniform; Ties; Sharp ]
        let! seed = Gen.choose (0, 1_000_000_000)
        return { B = b; Hq = hkv * g; Hkv = hkv; Tq = tq; Tk = tk; D = d; Dv = dv; Values = values; Seed = seed }
    }
    |> Arb.fromGen

/// Causal with probability 2/3, and a random window (each side -1 or 0..max(Tq, Tk)) half of the time.
let private rules (s: Spec) =
    let r = Random(s.Seed + 7)
    let causal = r.Next 3 > 0
    let windowed = r.Next 2 = 0
    let side () = if windowed then r.Next(-1, max s.Tq s.Tk + 1) else -1
    let left = side ()
    causal, left, side ()

let private options (s: Spec) align (mask: bool[,,,]) =
    let causal, left, right = rules s
    AttentionOptions(Causal = causal, WindowLeft = left, WindowRight = right, CausalAlign = align, Mask = mask)

let private sameResult what (a: AttentionResult) (b: AttentionResult) =
    checkEqual (what + " out") (flat4 a.Out) (flat4 b.Out)
    checkEqual (what + " lse") (flat3 a.Lse) (flat3 b.Lse)

let ``top-left and bottom-right are identical when Tq = Tk`` () =
    Prop.forAll cases (fun s0 ->
        let s = { s0 with Tk = s0.Tq }
        let x = inputsOf s
        sameResult "reference" (dense x (options s CausalAlignment.TopLeft null)) (dense x (options s CausalAlignment.BottomRight null))
        let causal, left, right = rules s

        let ko align =
            FlashAttentionOptions(Causal = causal, WindowLeft = left, WindowRight = right, CausalAlign = align, BlockQ = 3, BlockK = 2)

        let a, b = kernel x (ko CausalAlignment.TopLeft), kernel x (ko CausalAlignment.BottomRight)
        checkEqual "kernel out" (f64 b.Out) (f64 a.Out)
        checkEqual "kernel lse" (f64 b.Lse) (f64 a.Lse))

let ``top-left equals bottom-right with the key offset shifted by padding to equal lengths`` () =
    Prop.forAll cases (fun s ->
        let x = inputsOf s
        let topLeft = dense x (options s CausalAlignment.TopLeft null)

        if s.Tq >= s.Tk then
            // Append Tq - Tk keys (masked out): Tk' = Tq, so bottom-right puts row i at i, as top-left does.
            let pad = s.Tq - s.Tk

            let widen (a: float[,,,]) =
                Array4D.init s.B s.Hkv s.Tq (Array4D.length4 a) (fun b h j c -> if j < s.Tk then a.[b, h, j, c] else 0.0)

            let padded = { x with K = widen x.K; V = widen x.V }
            let realKeys = Array4D.init 1 1 1 s.Tq (fun _ _ _ j -> j < s.Tk)
            let bottomRight = dense padded (options s CausalAlignment.BottomRight realKeys)
            Assert.That(pad, Is.GreaterThanOrEqualTo 0)
            sameResult "padded keys" topLeft bottomRight
        else
            // Append Tk - Tq query rows: Tq' = Tk, so bottom-right puts row i at i; the first Tq rows are compared.
            let q' = Array4D.init s.B s.Hq s.Tk s.D (fun b h i c -> if i < s.Tq then x.Q.[b, h, i, c] else 0.0)
            let bottomRight = dense { x with Q = q' } (options s CausalAlignment.BottomRight null)
            let firstRows4 (a: float[,,,]) = Array4D.init s.B s.Hq s.Tq (Array4D.length4 a) (fun b h i c -> a.[b, h, i, c])
            let firstRows3 (a: float[,,]) = Array3D.init s.B s.Hq s.Tq (fun b h i -> a.[b, h, i])
            checkEqual "padded queries out" (flat4 topLeft.Out) (flat4 (firstRows4 bottomRight.Out))
            checkEqual "padded queries lse" (flat3 topLeft.Lse) (flat3 (firstRows3 bottomRight.Lse)))

let ``top-left causal is torch.tril and the kernel follows the reference under it`` () =
    Prop.forAll cases (fun s ->
        let x = inputsOf s
        // PyTorch's is_causal mask: torch.ones(Tq, Tk).tril(), i.e. key j allowed iff j <= i, whatever Tq and Tk.
        let tril = Array4D.init 1 1 s.Tq s.Tk (fun _ _ i j -> j <= i)

        sameResult
            "tril"
            (dense x (AttentionOptions(Mask = tril)))
            (dense x (AttentionOptions(Causal = true, CausalAlign = CausalAlignment.TopLeft)))
        // The float32 kernel under top-left rules, within the derived bound of the reference.
        let causal, left, right = rules s
        let k = knobsOf s

        let expected =
            dense
                x
                (AttentionOptions(
                    Causal = causal,
                    WindowLeft = left,
                    WindowRight = right,
                    CausalAlign = CausalAlignment.TopLeft,
                    Scale = (k.Scale |> Option.map float |> Option.toNullable),
                    Softcap = float k.Softcap
                ))

        let actual =
            kernel
                x
                (FlashAttentionOptions(
                    Causal = causal,
                    WindowLeft = left,
                    WindowRight = right,
                    CausalAlign = CausalAlignment.TopLeft,
                    Scale = Option.toNullable k.Scale,
                    Softcap = k.Softcap,
                    BlockQ = k.BlockQ,
                    BlockK = k.BlockK
                ))

        let tol = kernelTolerance x s k k.BlockK
        checkClose "kernel out" (flat4 expected.Out) (f64 actual.Out) tol.Out
        checkClose "kernel lse" (flat3 expected.Lse) (f64 actual.Lse) tol.Lse)

let ``LeanK and the CLI parameter follow causal_align`` () =
    // One query, three keys, causal: bottom-right puts the query at p = 2 (sees all keys), top-left at p = 0 (sees key 0).
    let q = Array4D.create 1 1 1 2 1.0
    let k = Array4D.init 1 1 3 2 (fun _ _ j c -> float (j + c))
    let v = Array4D.init 1 1 3 1 (fun _ _ j _ -> float (10 * j))
    let all = Array2D.create 1 2 true
    let leank align = LeanK.Compute(q, k, v, all, LeanKOptions(Sink = 0, Recent = 8, Causal = true, CausalAlign = align))
    Assert.That((leank CausalAlignment.TopLeft).Out.[0, 0, 0, 0], Is.EqualTo 0.0, "top-left: only key 0 (value 0)")
    Assert.That((leank CausalAlignment.BottomRight).Out.[0, 0, 0, 0], Is.GreaterThan 10.0, "bottom-right: keys 0..2")
    let ex = throws (fun () -> CausalAlignments.Parse "top_left" |> ignore)
    Assert.That(ex.Message, Does.Contain "bottom-right or top-left")

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "attention/masks"
        "CausalAlignTests"
        [
            Proofs.prop
                [ "attention.causal-align" ]
                "top-left and bottom-right are identical when Tq = Tk"
                ``top-left and bottom-right are identical when Tq = Tk``
            Proofs.prop
                [ "attention.causal-align" ]
                "top-left equals bottom-right with the key offset shifted by padding to equal lengths"
                ``top-left equals bottom-right with the key offset shifted by padding to equal lengths``
            Proofs.prop
                [ "attention.causal-align" ]
                "top-left causal is torch.tril and the kernel follows the reference under it"
                ``top-left causal is torch.tril and the kernel follows the reference under it``
            Proofs.test
                [ "attention.causal-align" ]
                "LeanK and the CLI parameter follow causal_align"
                ``LeanK and the CLI parameter follow causal_align``
        ]
