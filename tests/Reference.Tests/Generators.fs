/// Shared FsCheck generators: awkward shapes, exact ties, extreme but finite values.
module Reference.Tests.Generators

open FsCheck
open FsCheck.FSharp

/// Token counts that exercise edge cases: a single token, primes, a power of two, and one past it.
let tokenCounts = [ 1; 2; 3; 7; 16; 17; 33 ]

/// Expert counts: a single expert up to a typical router width.
let expertCounts = [ 1; 2; 3; 4; 5; 7; 8; 16; 64 ]

/// A logit matrix [N, E] of float32-representable doubles, so that the float32 kernel sees exactly the same input.
/// Three styles: a coarse grid (exact ties within rows), gaussian-like values, and wide values (up to +-60, where
/// softmax scores underflow).
let logits (n: int) (e: int) : Gen<double[,]> =
    gen {
        let! style = Gen.choose (0, 2)

        let cell =
            match style with
            | 0 -> Gen.choose (-4, 4) |> Gen.map (fun v -> float v * 0.5)
            | 1 -> Gen.choose (-400000, 400000) |> Gen.map (fun v -> float (float32 (float v * 1e-5)))
            | _ -> Gen.choose (-60000, 60000) |> Gen.map (fun v -> float (float32 (float v * 1e-3)))

        let! cells = Gen.arrayOfLength (n * e) cell
        return Array2D.init n e (fun i j -> cells.[i * e + j])
    }

/// A routing problem: logits [N, E] and a valid k.
type RoutingCase = { Logits: double[,]; K: int }

let routingCase: Gen<RoutingCase> =
    gen {
        let! n = Gen.elements tokenCounts
        let! e = Gen.elements expertCounts
        let! k = Gen.choose (1, e)
        let! x = logits n e
        return { Logits = x; K = k }
    }

/// A bias vector [E] on a grid of 1/8 (float32-exact), sometimes absent.
let bias (e: int) : Gen<double[] option> =
    Gen.oneof
        [
            Gen.constant None
            Gen.arrayOfLength e (Gen.choose (-8, 8) |> Gen.map (fun v -> float v / 8.0)) |> Gen.map Some
        ]

/// Row i of a matrix.
let row (m: 'T[,]) i = Array.init (Array2D.length2 m) (fun j -> m.[i, j])

/// A random permutation of 0..n-1.
let permutation (n: int) : Gen<int[]> =
    Gen.arrayOfLength n (Gen.choose (0, 1_000_000))
    |> Gen.map (fun keys -> Array.init n id |> Array.sortBy (fun i -> keys.[i], i))

let flatten (m: 'T[,]) = Array.init (m.Length) (fun f -> m.[f / Array2D.length2 m, f % Array2D.length2 m])
