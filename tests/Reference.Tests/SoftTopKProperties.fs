/// Properties of the SoftTopk operators (threshold and entropic); theorems in proofs/softtopk.md.
module Reference.Tests.SoftTopKProperties

open System
open System.IO
open FsCheck
open FsCheck.FSharp
open NUnit.Framework
open Reference.Routing
open Reference.Numerics
open Reference.Harness.Algorithms
open Reference.Harness.Golden
open Reference.Harness.Registry
open Reference.Harness.Tensors
open Reference.Tests.Proofs
open Reference.Tests.Generators

let private u64 = Precision.UnitRoundoff NumberFormat.Float64

/// A SoftTopk problem: scores [N, E], k, tau, the operator.
type Case = { X: double[,]; K: int; Tau: double; Method: SoftTopKMethod }

let private options (c: Case) jacobian = SoftTopKOptions(K = c.K, Tau = c.Tau, Method = c.Method, Jacobian = jacobian)
let private run (c: Case) jacobian = SoftTopK.Compute(c.X, options c jacobian)
let private rows (m: 'T[,]) = Array2D.length1 m
let private cols (m: 'T[,]) = Array2D.length2 m

/// The derived bound on the reference's error in one entry of y of row i (SoftTopKValidator.OutputError, u = 2^-53).
let private eps (c: Case) i = SoftTopKValidator.OutputError(row c.X i, c.K, c.Tau, c.Method, u64)

/// The reference's bound on one entry of the Jacobian of row i: 16 eps / (tau' R) (theorem softtopk.kernel-equals-reference).
let private jacobianEps (c: Case) i = 16.0 * eps c i / SoftTopKValidator.JacobianScale(row c.X i, c.Tau, c.Method)

let methods = [ SoftTopKMethod.Threshold; SoftTopKMethod.Entropic ]

/// Temperatures from sharp to smooth, powers of two and not.
let taus = [ 0.0625; 0.125; 0.3; 0.5; 1.0; 1.7; 4.0 ]

/// Scores [N, E] of float32-representable doubles: a coarse grid (exact ties), moderate values, wide values (up to +-60,
/// where most y are 0 or 1 to double precision), and now and then a constant row.
let scores (n: int) (e: int) : Gen<double[,]> =
    gen {
        let! x = logits n e
        let! constantRow = Gen.choose (-1, n - 1)
        let! c = Gen.choose (-8, 8)
        return x |> Array2D.mapi (fun i _ v -> if i = constantRow then float c * 0.25 else v)
    }

let expertChoices = [ 2; 3; 4; 5; 7; 8; 16; 64 ]

let caseOf (methodChoices: SoftTopKMethod list) =
    gen {
        let! n = Gen.elements [ 1; 2; 3; 7 ]
        let! e = Gen.elements expertChoices
        let! k = Gen.choose (1, e - 1)
        let! tau = Gen.elements taus
        let! m = Gen.elements methodChoices
        let! x = scores n e
        return { X = x; K = k; Tau = tau; Method = m }
    }

let problem = caseOf methods |> Arb.fromGen

/// E distinct values on a grid of 1/64 (consecutive gaps 1/64 .. 1), in random order: unique min and max, a strict gap
/// x_(k) > x_(k+1) at every k.
let distinctRow (e: int) : Gen<double[]> =
    gen {
        let! start = Gen.choose (-256, 0)
        let! steps = Gen.arrayOfLength e (Gen.choose (1, 64))
        let! perm = permutation e
        let sorted = Array.scan (+) start steps |> Array.take e |> Array.map (fun v -> float v / 64.0)
        return Array.init e (fun j -> sorted.[perm.[j]])
    }

let private single (x: double[]) = Array2D.init 1 x.Length (fun _ j -> x.[j])

/// The largest power of two not above v > 0.
let private powerOfTwoBelow (v: float) = Math.ScaleB(1.0, int (Math.Floor(Math.Log2 v)))

/// The hard top-k indicator of a row with distinct values.
let private hardTopK (x: double[]) k =
    let order = Array.init x.Length id |> Array.sortBy (fun j -> -x.[j], j)
    Array.init x.Length (fun j -> if Array.IndexOf(order, j) < k then 1.0 else 0.0)

let ``y lies in 0 1 and each row sums to k`` () =
    Prop.forAll problem (fun c ->
        let r = run c false

        for i in 0 .. rows c.X - 1 do
            let y = row r.Y i
            Assert.That(y |> Array.forall (fun v -> v >= 0.0 && v <= 1.0), $"row {i}: y outside [0, 1]: %A{y}")
            // Every entry is within eps of the exact y, whose sum is k; the test's own sum adds E roundings of size <= k u.
            let e = float (cols c.X)
            let bound = e * eps c i + e * float c.K * u64
            Assert.That(abs (Array.sum y - float c.K), Is.LessThanOrEqualTo bound, $"row {i}")
            Assert.That(r.SumError.[i], Is.LessThanOrEqualTo bound, $"row {i}: reported sum error"))

let ``the entropic solver converges within its cap`` () =
    let arb =
        caseOf [ SoftTopKMethod.Entropic ]
        |> Gen.map (fun c -> { c with Tau = c.Tau / 64.0 })
        |> Arb.fromGen

    Prop.forAll arb (fun c ->
        let r = run c false

        for i in 0 .. rows c.X - 1 do
            Assert.That(r.Converged.[i], $"row {i} did not converge in {r.Iterations.[i]} iterations")
            Assert.That(r.Iterations.[i], Is.InRange(0, 200)))

/// The central difference of y along x_b with step h (x_b +- h must be exact), all entries a, for a one-row problem.
let private centralDifference (c: Case) (b: int) (h: float) =
    let x = row c.X 0
    let plus, minus = Array.copy x, Array.copy x
    plus.[b] <- x.[b] + h
    minus.[b] <- x.[b] - h
    Assert.That(plus.[b] - x.[b], eq h, "the step must be exact")
    Assert.That(x.[b] - minus.[b], eq h, "the step must be exact")
    let cp, cm = { c with X = single plus }, { c with X = single minus }
    let yp, ym = (run cp false).Y, (run cm false).Y
    Array.init x.Length (fun a -> (yp.[0, a] - ym.[0, a]) / (2.0 * h)), max (eps cp 0) (eps cm 0)

/// eta = h / (tau' R): the step relative to the operator's natural length scale.
let private eta = Math.ScaleB(1.0, -13)

let ``threshold Jacobian equals central differences`` () =
    let arb =
        gen {
            let! e = Gen.elements [ 2; 3; 5; 8; 13 ]
            let! k = Gen.choose (1, e - 1)
            let! j = Gen.choose (-3, 1)
            let! cells = Gen.arrayOfLength e (Gen.choose (-256, 256))

            return
                {
                    X = single (cells |> Array.map (fun v -> float v / 64.0))
                    K = k
                    Tau = Math.ScaleB(1.0, j)
                    Method = SoftTopKMethod.Threshold
                }
        }
        |> Arb.fromGen

    Prop.forAll arb (fun c ->
        let jac = (run c true).Jacobian
        let tau = c.Tau
        let h = eta * tau // a power of two, so x_b +- h is exact on the 1/64 grid

        for b in 0 .. cols c.X - 1 do
            let fd, epsFd = centralDifference c b h
            // Truncation: h^2/6 max|d^3 y/dx_b^3| <= h^2/6 * 2/tau^3 = eta^2/(3 tau). Rounding: 2 eps / (2h).
            // The reference's own Jacobian error: 16 eps / tau.
            let tol = eta * eta / (3.0 * tau) + epsFd / h + jacobianEps c 0

            for a in 0 .. cols c.X - 1 do
                Assert.That(abs (fd.[a] - jac.[0, a, b]), Is.LessThanOrEqualTo tol, $"J[{a}, {b}] = {jac.[0, a, b]} but FD = {fd.[a]}"))

let ``entropic Jacobian equals central differences`` () =
    let arb =
        gen {
            let! e = Gen.elements [ 2; 3; 5; 8; 13 ]
            let! k = Gen.choose (1, e - 1)
            let! j = Gen.choose (-3, 1)
            let! x = distinctRow e
            return { X = single x; K = k; Tau = Math.ScaleB(1.0, j); Method = SoftTopKMethod.Entropic }
        }
        |> Arb.fromGen

    Prop.forAll arb (fun c ->
        let jac = (run c true).Jacobian
        let x = row c.X 0
        let range = Array.max x - Array.min x
        let t = c.Tau / 2.0 // tau'
        // h <= eta tau' R, a power of two: x_b +- h exact; h < 1/64 <= every gap, so min and max keep their entries.
        let h = powerOfTwoBelow (eta * t * range)

        for b in 0 .. x.Length - 1 do
            let fd, epsFd = centralDifference c b h
            // Truncation: along x_b the normalized scores move on a path with |p'| <= 1/(tau' rho), |p''| <= 2/(tau' rho^2),
            // |p'''| <= 6/(tau' rho^3), rho >= R - h, which bounds |y'''| <= (2/tau'^3 + 6/tau'^2 + 3/tau') / rho^3.
            let rho = range - h
            let truncation = h * h / 6.0 * (2.0 / (t * t * t) + 6.0 / (t * t) + 3.0 / t) / (rho * rho * rho)
            let tol = truncation + epsFd / h + jacobianEps c 0

            for a in 0 .. x.Length - 1 do
                Assert.That(abs (fd.[a] - jac.[0, a, b]), Is.LessThanOrEqualTo tol, $"J[{a}, {b}] = {jac.[0, a, b]} but FD = {fd.[a]}"))

let ``entropic equals threshold on normalized scores at half the temperature`` () =
    let arb = caseOf [ SoftTopKMethod.Entropic ] |> Arb.fromGen

    Prop.forAll arb (fun c ->
        let r = run c true
        let e = cols c.X

        for i in 0 .. rows c.X - 1 do
            let x = row c.X i
            let lo, hi = Array.min x, Array.max x

            if hi > lo then
                let range = hi - lo
                let xh = x |> Array.map (fun v -> (v - lo) / range)
                let thr = { X = single xh; K = c.K; Tau = c.Tau / 2.0; Method = SoftTopKMethod.Threshold }
                let rt = run thr true
                // y: each side within its own bound of the exact value (xh's rounding is inside the entropic bound).
                let bound = eps c i + eps thr 0

                for a in 0 .. e - 1 do
                    Assert.That(abs (r.Y.[i, a] - rt.Y.[0, a]), Is.LessThanOrEqualTo bound, $"row {i}, y[{a}]")
                // J = J_thr(xh, tau/2) N / R, with N[c, b] = delta_cb - (1 - xh_c) [b = argmin] - xh_c [b = argmax],
                // min and max at their lowest index. Tolerance: both Jacobians' bounds, the chain through N (at most 5
                // terms of size |J_thr|), and the rounding of this product (E terms).
                let argMin, argMax = Array.IndexOf(x, lo), Array.IndexOf(x, hi)
                let jt = rt.Jacobian
                let jtBound = jacobianEps thr 0

                let maxJt =
                    Seq.max (
                        seq {
                            for a in 0 .. e - 1 do
                                for b in 0 .. e - 1 -> abs jt.[0, a, b]
                        }
                    )

                let tol = jacobianEps c i + 5.0 * jtBound / range + 4.0 * float e * u64 * maxJt / range

                for a in 0 .. e - 1 do
                    let towardMin = Seq.sum (seq { for cc in 0 .. e - 1 -> jt.[0, a, cc] * (1.0 - xh.[cc]) })
                    let towardMax = Seq.sum (seq { for cc in 0 .. e - 1 -> jt.[0, a, cc] * xh.[cc] })

                    for b in 0 .. e - 1 do
                        let expected =
                            (jt.[0, a, b] - (if b = argMin then towardMin else 0.0) - (if b = argMax then towardMax else 0.0))
                            / range

                        Assert.That(abs (r.Jacobian.[i, a, b] - expected), Is.LessThanOrEqualTo tol, $"row {i}, J[{a}, {b}]"))

let ``increasing one score does not decrease its own y`` () =
    let arb =
        gen {
            let! c = caseOf methods
            let! a = Gen.choose (0, cols c.X - 1)
            let! delta = Gen.choose (1, 64)
            return c, a, float delta / 16.0
        }
        |> Arb.fromGen

    Prop.forAll arb (fun (c, a, delta) ->
        let bumped = { c with X = c.X |> Array2D.mapi (fun _ j v -> if j = a then v + delta else v) }
        let y, y2 = (run c false).Y, (run bumped false).Y

        for i in 0 .. rows c.X - 1 do
            Assert.That(y2.[i, a], Is.GreaterThanOrEqualTo(y.[i, a] - eps c i - eps bumped i), $"row {i}"))

let ``increasing a score inside the range does not increase the other ys`` () =
    let arb =
        gen {
            let! c = caseOf methods
            let! a = Gen.choose (0, cols c.X - 1)
            let! delta = Gen.choose (1, 64)
            return c, a, float delta / 16.0
        }
        |> Arb.fromGen

    Prop.forAll arb (fun (c, a, delta) ->
        let bumped = { c with X = c.X |> Array2D.mapi (fun _ j v -> if j = a then v + delta else v) }
        let y, y2 = (run c false).Y, (run bumped false).Y

        for i in 0 .. rows c.X - 1 do
            let x = row c.X i
            let lo, hi = Array.min x, Array.max x
            // For the entropic operator only while the move keeps min and max (theorem softtopk.monotone (b)).
            let keepsRange =
                x.[a] + delta <= hi && (x.[a] > lo || (x |> Array.filter (fun v -> v = lo) |> Array.length) > 1)

            if c.Method = SoftTopKMethod.Threshold || keepsRange then
                for b in 0 .. cols c.X - 1 do
                    if b <> a then
                        Assert.That(y2.[i, b], Is.LessThanOrEqualTo(y.[i, b] + eps c i + eps bumped i), $"row {i}, y[{b}]"))

let ``the entropic operator is not cross-monotone at the maximum`` () =
    // Theorem softtopk.monotone (c): x = (0, 0.1, 1), k = 2, tau = 0.1 is the threshold operator on xh = x at tau' = 0.05,
    // so y_0 ~ sigmoid(-1) = 0.269; raising the maximum to 2 gives xh = (0, 0.05, 1) and y_0 ~ sigmoid(-0.5) = 0.378.
    let o = SoftTopKOptions(K = 2, Tau = 0.1, Method = SoftTopKMethod.Entropic)
    let y = SoftTopK.Compute(array2D [ [ 0.0; 0.1; 1.0 ] ], o).Y
    let y2 = SoftTopK.Compute(array2D [ [ 0.0; 0.1; 2.0 ] ], o).Y
    Assert.That(y2.[0, 0], Is.GreaterThan(y.[0, 0] + 0.1), "another entry's y rose when the maximum rose")
    Assert.That(y2.[0, 2], Is.GreaterThanOrEqualTo(y.[0, 2]), "the raised entry's own y did not fall")
    // The threshold operator on the same rows obeys cross-monotonicity.
    let t = SoftTopKOptions(K = 2, Tau = 0.05)

    let yt, yt2 =
        SoftTopK.Compute(array2D [ [ 0.0; 0.1; 1.0 ] ], t).Y, SoftTopK.Compute(array2D [ [ 0.0; 0.1; 2.0 ] ], t).Y

    Assert.That(yt2.[0, 0], Is.LessThanOrEqualTo(yt.[0, 0]))

let ``permuting the entries permutes y and the Jacobian`` () =
    let arb =
        gen {
            let! c = caseOf methods
            let! perm = permutation (cols c.X)
            return c, perm
        }
        |> Arb.fromGen

    Prop.forAll arb (fun (c, perm) ->
        let permuted = { c with X = Array2D.init (rows c.X) (cols c.X) (fun i j -> c.X.[i, perm.[j]]) }
        let r, rp = run c true, run permuted true

        for i in 0 .. rows c.X - 1 do
            let x = row c.X i
            let unique v = (x |> Array.filter (fun w -> w = v) |> Array.length) = 1
            // The entropic Jacobian picks the lowest index among tied minima or maxima, which a permutation moves.
            let jacobianEquivariant =
                c.Method = SoftTopKMethod.Threshold || (unique (Array.min x) && unique (Array.max x))

            for a in 0 .. cols c.X - 1 do
                Assert.That(abs (rp.Y.[i, a] - r.Y.[i, perm.[a]]), Is.LessThanOrEqualTo(2.0 * eps c i), $"row {i}, y[{a}]")

                if jacobianEquivariant then
                    for b in 0 .. cols c.X - 1 do
                        Assert.That(
                            abs (rp.Jacobian.[i, a, b] - r.Jacobian.[i, perm.[a], perm.[b]]),
                            Is.LessThanOrEqualTo(2.0 * jacobianEps c i),
                            $"row {i}, J[{a}, {b}]"
                        ))

let ``y approaches the hard top-k at rate exp of minus the scaled gap`` () =
    let arb =
        gen {
            let! e = Gen.elements [ 2; 3; 5; 8; 16; 33 ]
            let! k = Gen.choose (1, e - 1)
            let! x = distinctRow e
            let! sharpness = Gen.elements [ 2.0; 5.0; 10.0; 20.0 ]
            let! m = Gen.elements methods
            return x, k, sharpness, m
        }
        |> Arb.fromGen

    Prop.forAll arb (fun (x, k, sharpness, m) ->
        let sorted = Array.sortDescending x
        let gap = sorted.[k - 1] - sorted.[k]
        let range = Array.max x - Array.min x
        // Choose tau so that the exponent is exactly -sharpness: gap/(2 tau) (threshold), (gap/R)/tau (entropic).
        let tau =
            if m = SoftTopKMethod.Threshold then
                gap / (2.0 * sharpness)
            else
                gap / range / sharpness

        let c = { X = single x; K = k; Tau = tau; Method = m }
        let y = row (run c false).Y 0
        let hard = hardTopK x k
        let err = Array.map2 (fun a b -> abs (a - b)) y hard |> Array.max
        let rate = float (max k (x.Length - k)) * Math.Exp(-sharpness)
        Assert.That(err, Is.LessThanOrEqualTo(rate + eps c 0), $"max |y - hard| = {err}, bound {rate}")
        // The rate is attained: with E = 2 the error is sigmoid(-sharpness) >= exp(-sharpness)/2.
        if x.Length = 2 then
            Assert.That(err, Is.GreaterThanOrEqualTo(0.5 * Math.Exp(-sharpness) - eps c 0)))

let ``entropic on a constant row gives k over E`` () =
    let arb =
        gen {
            let! e = Gen.elements expertChoices
            let! k = Gen.choose (1, e - 1)
            let! v = Gen.choose (-1_000_000, 1_000_000)
            let! tau = Gen.elements taus
            let! n = Gen.elements [ 1; 2; 5 ]
            return { X = Array2D.create n e (float v * 1e-3); K = k; Tau = tau; Method = SoftTopKMethod.Entropic }
        }
        |> Arb.fromGen

    Prop.forAll arb (fun c ->
        let r = run c true
        let e = cols c.X

        for i in 0 .. rows c.X - 1 do
            for a in 0 .. e - 1 do
                Assert.That(r.Y.[i, a], eq (float c.K / float e))

                for b in 0 .. e - 1 do
                    Assert.That(r.Jacobian.[i, a, b], eq 0.0))

let ``Jacobian rows and columns sum to zero and the entropic one annihilates x`` () =
    Prop.forAll problem (fun c ->
        let j = (run c true).Jacobian
        let e = cols c.X

        for i in 0 .. rows c.X - 1 do
            let x = row c.X i
            let xMax = x |> Array.map abs |> Array.max
            let bound = jacobianEps c i

            for a in 0 .. e - 1 do
                let rowAbs = Seq.sum (seq { for b in 0 .. e - 1 -> abs j.[i, a, b] })
                let colAbs = Seq.sum (seq { for b in 0 .. e - 1 -> abs j.[i, b, a] })
                // Each entry is within `bound` of an exact Jacobian whose sums vanish; the test's sum adds E roundings.
                let tol s = float e * bound + float e * u64 * s

                Assert.That(
                    abs (Seq.sum (seq { for b in 0 .. e - 1 -> j.[i, a, b] })),
                    Is.LessThanOrEqualTo(tol rowAbs),
                    $"row {i}: J 1 at {a}"
                )

                Assert.That(
                    abs (Seq.sum (seq { for b in 0 .. e - 1 -> j.[i, b, a] })),
                    Is.LessThanOrEqualTo(tol colAbs),
                    $"row {i}: 1^T J at {a}"
                )

                if c.Method = SoftTopKMethod.Threshold then
                    for b in 0 .. e - 1 do
                        Assert.That(j.[i, a, b], eq j.[i, b, a], "the threshold Jacobian is symmetric")

                        if a <> b then
                            Assert.That(j.[i, a, b], Is.LessThanOrEqualTo 0.0)

                    Assert.That(j.[i, a, a], Is.GreaterThanOrEqualTo 0.0)
                else
                    let euler = Seq.sum (seq { for b in 0 .. e - 1 -> j.[i, a, b] * x.[b] })

                    Assert.That(
                        abs euler,
                        Is.LessThanOrEqualTo(float e * bound * xMax + float e * u64 * rowAbs * xMax),
                        $"row {i}: J x at {a}"
                    ))

let ``shifting x changes nothing and scaling x with tau changes nothing`` () =
    let arb =
        gen {
            let! c = caseOf methods
            let! shift = Gen.choose (-64, 64)
            let! power = Gen.choose (-4, 4)
            return c, float shift / 8.0, power
        }
        |> Arb.fromGen

    Prop.forAll arb (fun (c, shift, power) ->
        let y = (run c false).Y
        // A shift by a multiple of 1/8 is exact on these grids only approximately; the bound covers both runs.
        let shifted = { c with X = c.X |> Array2D.map (fun v -> v + shift) }
        let ys = (run shifted false).Y

        for i in 0 .. rows c.X - 1 do
            for a in 0 .. cols c.X - 1 do
                Assert.That(abs (ys.[i, a] - y.[i, a]), Is.LessThanOrEqualTo(eps c i + eps shifted i), $"shift: row {i}, y[{a}]")
        // Scaling by 2^p is exact, and every operation of both references commutes with it: bit-identical y.
        // Threshold: x and tau scale together. Entropic: the normalization removes the scale, tau stays.
        let scaled =
            { c with
                X = c.X |> Array2D.map (fun v -> Math.ScaleB(v, power))
                Tau =
                    if c.Method = SoftTopKMethod.Threshold then
                        Math.ScaleB(c.Tau, power)
                    else
                        c.Tau
            }

        Assert.That((run scaled false).Y, eq y, "scaling by a power of two"))

/// Runs the kernel on a case; y and Jacobian as flat double arrays.
let private kernel (c: Case) jacobian =
    let n, e = rows c.X, cols c.X

    let r =
        Reference.Kernels.Routing.SoftTopK.Compute(flatten c.X |> Array.map float32, n, e, options c jacobian)

    r.Y |> Array.map float,
    (if isNull r.Jacobian then
         null
     else
         r.Jacobian |> Array.map float)

let ``kernel equals reference within the derived bound`` () =
    Prop.forAll problem (fun c ->
        let r = run c true
        let y, j = kernel c true

        let expectedJ =
            Array.init r.Jacobian.Length (fun f -> let e = cols c.X in r.Jacobian.[f / (e * e), (f / e) % e, f % e])

        let reports =
            SoftTopKValidator.Validate(c.X, options c true, flatten r.Y, expectedJ, y, j, fun _ -> NumberFormat.Float32)

        Assert.That(reports.Count, eq 2)

        for report in reports do
            Assert.That(report.Passed, report.Summary()))

let ``the validator rejects a perturbed y or Jacobian`` () =
    Prop.forAll problem (fun c ->
        let r = run c true
        let e = cols c.X
        let expectedJ = Array.init r.Jacobian.Length (fun f -> r.Jacobian.[f / (e * e), (f / e) % e, f % e])

        let validate y j =
            SoftTopKValidator.Validate(c.X, options c true, flatten r.Y, expectedJ, y, j, fun _ -> NumberFormat.Float32)

        Assert.That(validate (flatten r.Y) expectedJ |> Seq.forall _.Passed, "the reference itself passes")
        // Moving one y by 1e-2 exceeds the float32 bound whenever that bound is below 1e-2 (tau' >= 1/32 here).
        let y = flatten r.Y
        y.[0] <- y.[0] + 1e-2
        Assert.That((validate y null |> Seq.head).Passed, Is.False)
        // Moving one scaled Jacobian entry by 0.2 (entries are at most 5/4 in magnitude) fails too.
        let j = Array.copy expectedJ
        j.[0] <- j.[0] + 0.2 / SoftTopKValidator.JacobianScale(row c.X 0, c.Tau, c.Method)
        Assert.That((validate null j |> Seq.head).Passed, Is.False))

let ``reference and kernel are deterministic`` () =
    Prop.forAll problem (fun c ->
        let bits (m: double[,]) = flatten m |> Array.map BitConverter.DoubleToInt64Bits
        let a, b = run c true, run c true
        Assert.That(bits b.Y, eq (bits a.Y))
        Assert.That(b.Jacobian, eq a.Jacobian)
        let (y1, j1), (y2, j2) = kernel c true, kernel c true
        Assert.That(y2, eq y1)
        Assert.That(j2, eq j1))

let ``plain Sinkhorn converges to the same plan at the predicted rate`` () =
    let arb =
        gen {
            let! c = caseOf [ SoftTopKMethod.Entropic ]
            let! x = distinctRow (cols c.X)
            let! tau = Gen.elements [ 0.25; 0.5; 1.0; 2.0 ]
            return { c with X = single x; Tau = tau }
        }
        |> Arb.fromGen

    Prop.forAll arb (fun c ->
        let x = row c.X 0
        let e, k, tau = x.Length, c.K, c.Tau
        let lo, hi = Array.min x, Array.max x
        let xh = x |> Array.map (fun v -> (v - lo) / (hi - lo))

        let cost j a =
            if j = 0 then
                xh.[a] * xh.[a]
            else
                (xh.[a] - 1.0) * (xh.[a] - 1.0)

        let logA, logB = log (1.0 / float e), [| log (float (e - k) / float e); log (float k / float e) |]
        let lse (v: float[]) = let m = Array.max v in m + log (Array.sumBy (fun t -> exp (t - m)) v)
        // POT's sinkhorn_log: g from the columns, then f from the rows; the column-1 error after each full iteration.
        let f, g = Array.zeroCreate e, [| 0.0; 0.0 |]
        let errors = ResizeArray()
        let mutable iteration = 0

        while iteration < 20000 && (errors.Count = 0 || errors.[errors.Count - 1] > 1e-11) do
            for j in 0..1 do
                g.[j] <- tau * (logB.[j] - lse (Array.init e (fun a -> (f.[a] - cost j a) / tau)))

            for a in 0 .. e - 1 do
                f.[a] <- tau * (logA - lse [| (g.[0] - cost 0 a) / tau; (g.[1] - cost 1 a) / tau |])

            let column = Seq.sum (seq { for a in 0 .. e - 1 -> exp ((f.[a] + g.[1] - cost 1 a) / tau) })
            errors.Add(abs (column - float k / float e))
            iteration <- iteration + 1

        let y = (run c false).Y
        let ySinkhorn = Array.init e (fun a -> float e * exp ((f.[a] + g.[1] - cost 1 a) / tau))
        // The fixed point: rows are met exactly after the f update, and y_a(h) is increasing in h = g_1 - g_0 for every a,
        // so no y_a moves more than sum y does between this h and the exact one: |y_a - y*_a| <= E err. The loop's own
        // log-domain exponents carry at most 16 u (4 + 1/tau) of rounding.
        Assert.That(errors.[errors.Count - 1], Is.LessThanOrEqualTo 1e-11, "plain Sinkhorn did not converge")
        let v = row y 0 |> Array.sumBy (fun t -> t * (1.0 - t))
        let last = errors.[errors.Count - 1]

        for a in 0 .. e - 1 do
            Assert.That(
                abs (ySinkhorn.[a] - y.[0, a]),
                Is.LessThanOrEqualTo(float e * last + 16.0 * u64 * (4.0 + 1.0 / tau) + eps c 0),
                $"y[{a}]"
            )
        // The linear rate: the error ratio approaches rho = 1 - V E / (k (E - k)) (checked where rho is not tiny and the
        // errors are still far above rounding).
        let rho = 1.0 - v * float e / (float k * float (e - k))
        let usable = errors |> Seq.pairwise |> Seq.filter (fun (p, q) -> p < 1e-5 && q > 1e-10) |> Array.ofSeq

        if rho > 0.05 && usable.Length >= 2 then
            let p, q = usable.[usable.Length - 1]
            Assert.That(abs (q / p - rho), Is.LessThanOrEqualTo(0.01), $"observed ratio {q / p}, predicted {rho}"))

let ``bad input names the argument and the index`` () =
    let x = Array2D.create 3 4 0.0
    x.[2, 1] <- nan

    let ex =
        throws<ArgumentException> (fun () -> SoftTopK.Compute(x, SoftTopKOptions(K = 2, Tau = 1.0)) |> ignore)

    Assert.That(ex.Message, Does.Contain "x[2, 1] is NaN")
    Assert.That(ex.ParamName, eq "x")
    let y = Array2D.create 3 4 0.0

    for k in [ 0; 4; -1 ] do
        for m in methods do
            let ex =
                throws<ArgumentOutOfRangeException> (fun () -> SoftTopK.Compute(y, SoftTopKOptions(K = k, Tau = 1.0, Method = m)) |> ignore)

            Assert.That(ex.ParamName, eq "k")

    for tau in [ 0.0; -1.0; nan; infinity; 1e-310 ] do
        let ex =
            throws<ArgumentOutOfRangeException> (fun () -> SoftTopK.Compute(y, SoftTopKOptions(K = 2, Tau = tau)) |> ignore)

        Assert.That(ex.ParamName, eq "tau")

    let one = Array2D.create 3 1 0.0

    let ex =
        throws<ArgumentException> (fun () -> SoftTopK.Compute(one, SoftTopKOptions(K = 1, Tau = 1.0)) |> ignore)

    Assert.That(ex.ParamName, eq "x")
    y.[1, 3] <- -infinity

    let ex =
        throws<ArgumentException> (fun () ->
            SoftTopK.Compute(y, SoftTopKOptions(K = 2, Tau = 1.0, Method = SoftTopKMethod.Entropic)) |> ignore)

    Assert.That(ex.Message, Does.Contain "x[1, 3] is -Inf")

    let ex =
        throws<ArgumentException> (fun () ->
            Reference.Kernels.Routing.SoftTopK.Compute(flatten y |> Array.map float32, 3, 4, SoftTopKOptions(K = 2, Tau = 1.0))
            |> ignore)

    Assert.That(ex.Message, Does.Contain "x[1, 3] is -Inf")

    let ex =
        throws<ArgumentOutOfRangeException> (fun () ->
            Reference.Kernels.Routing.SoftTopK.Compute(Array.zeroCreate 12, 3, 4, SoftTopKOptions(K = 2, Tau = 1e-40))
            |> ignore)

    Assert.That(ex.ParamName, eq "tau")

let ``extreme but finite scores give finite outputs`` () =
    for m in methods do
        let x = array2D [ [ -1.7e308; 1.7e308; 0.0; 1.0 ]; [ 1e300; 1e300; -1e300; 5e-324 ] ]
        let r = SoftTopK.Compute(x, SoftTopKOptions(K = 2, Tau = 0.5, Method = m, Jacobian = true))
        Assert.That(flatten r.Y |> Array.forall Double.IsFinite, $"{m}: y")
        Assert.That(r.Jacobian |> Seq.cast<float> |> Seq.forall Double.IsFinite, $"{m}: Jacobian")

        for i in 0..1 do
            Assert.That(abs (Array.sum (row r.Y i) - 2.0), Is.LessThanOrEqualTo 1e-12, $"{m}: row {i}")

let ``the registry outputs the Jacobian only when asked`` () =
    let algorithm = AlgorithmRegistry.Find "softtopk"
    let x = NdArray.Create([| 0.5f; -1.0f; 2.0f; 0.0f; 1.0f; 1.0f |], 2, 3)
    let inputs = readOnlyDict [ "x", x ]

    for m in [ "threshold"; "entropic" ] do
        let call jac = algorithm.Bind(inputs, dict [ "k", "1"; "tau", "0.5"; "method", m; "jacobian", jac ], "test")
        let without = algorithm.RunReference(call "false")
        Assert.That(without.Keys |> List.ofSeq, eq [ "y" ])
        let withJ = algorithm.RunReference(call "true")
        Assert.That(withJ.["jacobian"].Shape, eq [| 2; 3; 3 |])

        let direct =
            SoftTopK.Compute(
                array2D [ [ 0.5; -1.0; 2.0 ]; [ 0.0; 1.0; 1.0 ] ],
                SoftTopKOptions(
                    K = 1,
                    Tau = 0.5,
                    Jacobian = true,
                    Method =
                        (if m = "entropic" then
                             SoftTopKMethod.Entropic
                         else
                             SoftTopKMethod.Threshold)
                )
            )

        Assert.That(withJ.["y"].ToDoubles(), eq (flatten direct.Y))
        Assert.That(withJ.["jacobian"].ToDoubles(), eq (direct.Jacobian |> Seq.cast<float> |> Array.ofSeq))
    // k and tau are required.
    throws<InputException> (fun () -> algorithm.Bind(inputs, dict [ "tau", "0.5" ], "test").Parameters.GetInt "k" |> ignore)
    |> ignore

let private golden = GoldenData(Repo.path [ "data" ])

let ``numpy peer confirms the softtopk golden cases`` () =
    Peers.requireModules [ "numpy" ] "python3-numpy"
    let out = Peers.runPeer "softtopk_peer.py" [ "verify"; Path.Combine(golden.Root, "softtopk") ]
    Assert.That(out, Does.Contain "cases agree")

let ``numpy peer agrees with the reference on fresh cases`` () =
    Peers.requireModules [ "numpy" ] "python3-numpy"
    let d = Path.Combine(Path.GetTempPath(), "softtopk-peer-" + Guid.NewGuid().ToString "N")

    let seed =
        if String.Equals(Environment.GetEnvironmentVariable "CI", "true", StringComparison.OrdinalIgnoreCase) then
            7
        else
            Random.Shared.Next()

    Peers.runPeer "softtopk_peer.py" [ "generate"; d; string seed; "30" ] |> ignore
    let algorithm = AlgorithmRegistry.Find "softtopk"

    for case in Directory.GetDirectories d do
        let inputPath = Path.Combine(case, "input.npz")

        let call =
            algorithm.Bind(TensorFile.Read inputPath, GoldenData.ReadParameters(Path.Combine(case, "params.json")), inputPath)

        TensorFile.Write(Path.Combine(case, "expected.npz"), algorithm.RunReference call)

    let out = Peers.runPeer "softtopk_peer.py" [ "verify"; d ]
    Assert.That(out, Does.Contain "30 of 30 cases agree", $"seed {seed}")
    Directory.Delete(d, true)

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "routing/softtopk"
        "SoftTopKProperties"
        [
            Proofs.prop [ "softtopk.range-and-sum" ] "y lies in 0 1 and each row sums to k" ``y lies in 0 1 and each row sums to k``
            Proofs.prop
                [ "softtopk.entropic-solver" ]
                "the entropic solver converges within its cap"
                ``the entropic solver converges within its cap``
            Proofs.prop
                [ "softtopk.threshold-jacobian" ]
                "threshold Jacobian equals central differences"
                ``threshold Jacobian equals central differences``
            Proofs.prop
                [ "softtopk.entropic-jacobian" ]
                "entropic Jacobian equals central differences"
                ``entropic Jacobian equals central differences``
            Proofs.prop
                [ "softtopk.entropic-is-threshold" ]
                "entropic equals threshold on normalized scores at half the temperature"
                ``entropic equals threshold on normalized scores at half the temperature``
            Proofs.prop
                [ "softtopk.monotone" ]
                "increasing one score does not decrease its own y"
                ``increasing one score does not decrease its own y``
            Proofs.prop
                [ "softtopk.monotone" ]
                "increasing a score inside the range does not increase the other ys"
                ``increasing a score inside the range does not increase the other ys``
            Proofs.test
                [ "softtopk.monotone" ]
                "the entropic operator is not cross-monotone at the maximum"
                ``the entropic operator is not cross-monotone at the maximum``
            Proofs.prop
                [ "softtopk.permutation-equivariant" ]
                "permuting the entries permutes y and the Jacobian"
                ``permuting the entries permutes y and the Jacobian``
            Proofs.prop
                [ "softtopk.hard-limit" ]
                "y approaches the hard top-k at rate exp of minus the scaled gap"
                ``y approaches the hard top-k at rate exp of minus the scaled gap``
            Proofs.prop
                [ "softtopk.entropic-constant" ]
                "entropic on a constant row gives k over E"
                ``entropic on a constant row gives k over E``
            Proofs.prop
                [ "softtopk.jacobian-structure" ]
                "Jacobian rows and columns sum to zero and the entropic one annihilates x"
                ``Jacobian rows and columns sum to zero and the entropic one annihilates x``
            Proofs.prop
                [ "softtopk.invariances" ]
                "shifting x changes nothing and scaling x with tau changes nothing"
                ``shifting x changes nothing and scaling x with tau changes nothing``
            Proofs.prop
                [ "softtopk.kernel-equals-reference" ]
                "kernel equals reference within the derived bound"
                ``kernel equals reference within the derived bound``
            Proofs.prop
                [ "softtopk.kernel-equals-reference" ]
                "the validator rejects a perturbed y or Jacobian"
                ``the validator rejects a perturbed y or Jacobian``
            Proofs.prop [ "softtopk.deterministic" ] "reference and kernel are deterministic" ``reference and kernel are deterministic``
            Proofs.prop
                [ "softtopk.entropic-sinkhorn-rate" ]
                "plain Sinkhorn converges to the same plan at the predicted rate"
                ``plain Sinkhorn converges to the same plan at the predicted rate``
            Proofs.test [] "bad input names the argument and the index" ``bad input names the argument and the index``
            Proofs.test [] "extreme but finite scores give finite outputs" ``extreme but finite scores give finite outputs``
            Proofs.test [] "the registry outputs the Jacobian only when asked" ``the registry outputs the Jacobian only when asked``
            Proofs.sequenced (
                Proofs.test [] "numpy peer confirms the softtopk golden cases" ``numpy peer confirms the softtopk golden cases``
            )
            Proofs.sequenced (
                Proofs.test [] "numpy peer agrees with the reference on fresh cases" ``numpy peer agrees with the reference on fresh cases``
            )
        ]
