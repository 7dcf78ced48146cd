/// Properties of the Sinkhorn references and kernel; theorems in proofs/sinkhorn.md.
module Reference.Tests.SinkhornProperties

open System
open System.Collections.Generic
open FsCheck
open FsCheck.FSharp
open NUnit.Framework
open Reference.Transport
open Reference.Tests.Proofs

// ---- precision constants and small helpers ----------------------------------------------------------------------

/// Unit roundoff of double and float32.
let u64 = Math.Pow(2.0, -53.0)
let u32 = Math.Pow(2.0, -24.0)

let private nullable (x: 'T option) =
    match x with
    | Some v -> Nullable v
    | None -> Nullable()

let private marginal (x: float[] option) =
    match x with
    | Some v -> v :> IReadOnlyList<float>
    | None -> null

/// Options from the test's view of a case.
let options meth (reg: float option) (maxIter: int option) (tol: float option) (a: float[] option) (b: float[] option) k =
    SinkhornOptions(
        Method = meth,
        Regularization = nullable reg,
        MaxIterations = nullable maxIter,
        Tolerance = nullable tol,
        RowMarginal = marginal a,
        ColumnMarginal = marginal b,
        K = k
    )

let rows (m: float[,]) = Array2D.length1 m
let cols (m: float[,]) = Array2D.length2 m
let rowSums (p: float[,]) = Array.init (rows p) (fun i -> Seq.sum (seq { for j in 0 .. cols p - 1 -> p.[i, j] }))
let colSums (p: float[,]) = Array.init (cols p) (fun j -> Seq.sum (seq { for i in 0 .. rows p - 1 -> p.[i, j] }))
let norm2 (x: float[]) = sqrt (Array.sumBy (fun t -> t * t) x)
let maxAbs (x: seq<float>) = Seq.fold (fun acc t -> max acc (abs t)) 0.0 x

let cells (m: float[,]) =
    seq {
        for i in 0 .. rows m - 1 do
            for j in 0 .. cols m - 1 -> m.[i, j]
    }

let uniform n = Array.create n (1.0 / float n)

/// The column error ||G^T 1 - b||_2, computed here independently of the reference.
let columnError (p: float[,]) (b: float[]) = norm2 (Array.map2 (-) (colSums p) b)
let rowError (p: float[,]) (a: float[]) = norm2 (Array.map2 (-) (rowSums p) a)

/// The largest |log(p/q)| over all entries (both positive), the distance the theorems bound.
let logDistance (p: float[,]) (q: float[,]) = Seq.map2 (fun x y -> abs (log x - log y)) (cells p) (cells q) |> Seq.fold max 0.0

let private show (m: float[,]) = sprintf "%A" m

// ---- generators ---------------------------------------------------------------------------------------------------

let tokenCounts = [ 1; 2; 3; 5; 7; 16 ]
let expertCounts = [ 1; 2; 3; 4; 8 ]

let matrix n e (cell: Gen<float>) = Gen.arrayOfLength (n * e) cell |> Gen.map (fun c -> Array2D.init n e (fun i j -> c.[i * e + j]))

/// A float32-representable value in [-scale, scale]; a third of the time on a coarse grid (equal entries).
let cell (scale: float) =
    Gen.oneof
        [
            Gen.choose (-1000, 1000) |> Gen.map (fun v -> float (float32 (float v * 1e-3 * scale)))
            Gen.choose (-4, 4) |> Gen.map (fun v -> float v * 0.25 * scale)
        ]

/// A positive marginal of the given length summing to 1 (to rounding).
let marginalGen n =
    Gen.arrayOfLength n (Gen.choose (50, 150))
    |> Gen.map (fun w -> let s = Array.sumBy float w in w |> Array.map (fun x -> float x / s))

let optionalMarginal n = Gen.oneof [ Gen.constant None; marginalGen n |> Gen.map Some ]

// ---- a-posteriori bounds (proofs/sinkhorn.md, lemma sinkhorn.hilbert) ----------------------------------------------

/// Birkhoff's contraction ratio of K = exp(-M/reg): tanh(Delta/4), Delta = max (M_il + M_kj - M_ij - M_kl) / reg.
let contraction (m: float[,]) reg =
    let mutable delta = 0.0

    for i in 0 .. rows m - 1 do
        for k in 0 .. rows m - 1 do
            for j in 0 .. cols m - 1 do
                for l in 0 .. cols m - 1 do
                    delta <- max delta ((m.[i, l] + m.[k, j] - m.[i, j] - m.[k, l]) / reg)

    tanh (delta / 4.0)

/// The scale S = max|M|/reg + max|f|/reg + max|g|/reg that rounding errors are proportional to.
let scale (m: float[,]) reg (f: float[]) (g: float[]) = (maxAbs (cells m) + maxAbs f + maxAbs g) / reg

/// Bound on max_ij |log G_ij - log G*_ij| for a knopp/log plan G whose rows are exact (lemma sinkhorn.hilbert):
/// (D + 4 N u) / (1 - kappa^2) + 4 u (S + 2), with D the oscillation of log(b_j / colsum_j).
let distanceToSolution (m: float[,]) reg (b: float[]) (r: SinkhornResult) =
    let ratios = Array.map2 (fun bj cj -> log (bj / cj)) b (colSums r.Plan)
    let d = Array.max ratios - Array.min ratios
    let kappa = contraction m reg
    (d + 4.0 * float (rows m) * u64) / (1.0 - kappa * kappa) + 4.0 * u64 * (scale m reg r.F r.G + 2.0)

/// max |h|, |k| (units of reg) over every iterate 1..T of the log method: the prefix runs reproduce them exactly.
let potentialScaleOverRun (m: float[,]) reg (a: float[] option) (b: float[] option) t =
    seq {
        for s in 1..t ->
            let r = Sinkhorn.Solve(m, options SinkhornMethod.Log (Some reg) (Some s) (Some 0.0) a b 1)
            (maxAbs r.F + maxAbs r.G) / reg
    }
    |> Seq.max

// ---- sinkhorn.marginals-at-convergence -----------------------------------------------------------------------------

type MarginalCase = { Cost: float[,]; A: float[] option; B: float[] option; Reg: float; Method: SinkhornMethod }

let marginalCase =
    gen {
        let! n = Gen.elements tokenCounts
        let! e = Gen.elements expertCounts
        let! m = matrix n e (cell 3.0)
        let! a = optionalMarginal n
        let! b = optionalMarginal e
        let! reg = Gen.elements [ 0.1; 0.3; 1.0; 3.0 ]

        let! meth =
            Gen.elements
                [
                    SinkhornMethod.Knopp
                    SinkhornMethod.Log
                    SinkhornMethod.Stabilized
                    SinkhornMethod.EpsilonScaling
                    SinkhornMethod.Selective
                ]

        return { Cost = m; A = a; B = b; Reg = reg; Method = meth }
    }
    |> Arb.fromGen

let ``converged plans meet the marginals and the reported error is honest`` () =
    Prop.forAll marginalCase (fun c ->
        let n, e = rows c.Cost, cols c.Cost
        let a = defaultArg c.A (uniform n)
        let b = defaultArg c.B (uniform e)
        let tol = 1e-9

        let maxIter =
            if c.Method = SinkhornMethod.EpsilonScaling then
                60
            else
                1000

        let r = Sinkhorn.Solve(c.Cost, options c.Method (Some c.Reg) (Some maxIter) (Some tol) c.A c.B 1)
        Assert.That(r.Converged, Is.EqualTo(r.Status = SinkhornStatus.Converged), "converged <=> status converged")
        Assert.That(r.Status, Is.Not.EqualTo SinkhornStatus.NumericalError, "no numerical error at reg >= 0.1, |M| <= 3")
        Assert.That(cells r.Plan |> Seq.forall (fun x -> Double.IsFinite x && x >= 0.0), "plan finite and non-negative")
        let mass = max (Array.sum a) (Array.sum b)
        // Rounding of an independent recomputation: each sum has at most (N + E) roundings.
        let slack = 4.0 * float (n + e) * u64 * mass
        let colErr, rowErr = columnError r.Plan b, rowError r.Plan a

        let measure =
            if c.Method = SinkhornMethod.EpsilonScaling then
                colErr * colErr + rowErr * rowErr
            else
                colErr

        Assert.That(
            abs (r.Error - measure),
            Is.LessThanOrEqualTo(slack * (1.0 + 2.0 * measure)),
            $"reported err {r.Error:R} is not the plan's measure {measure:R}"
        )

        match r.Status with
        | SinkhornStatus.Converged ->
            Assert.That(measure, Is.LessThanOrEqualTo(tol + slack), "converged, so the stopping measure is below tol")

            if c.Method <> SinkhornMethod.EpsilonScaling then
                // Rows are exact after the row update, up to the rounding of exp of the potentials.
                let rho = 4.0 * u64 * (scale c.Cost c.Reg r.F r.G + float e + 2.0)

                for i in 0 .. n - 1 do
                    Assert.That(abs ((rowSums r.Plan).[i] - a.[i]), Is.LessThanOrEqualTo(rho * a.[i]), $"row {i} sum")
        | _ ->
            let cap =
                if c.Method = SinkhornMethod.EpsilonScaling then
                    max 35 maxIter
                else
                    maxIter

            Assert.That(r.Iterations, Is.EqualTo cap, "not converged, so the cap was reached"))

// ---- sinkhorn.variants-agree ---------------------------------------------------------------------------------------

type ModerateCase = { Cost: float[,]; Reg: float; Iterations: int }

/// |M| / reg <= 2 with uniform marginals: no absorption can happen (proofs/sinkhorn.md).
let moderateCase =
    gen {
        let! n = Gen.elements tokenCounts
        let! e = Gen.elements expertCounts
        let! reg = Gen.elements [ 0.5; 1.0; 2.0 ]
        let! m = matrix n e (Gen.choose (-1000, 1000) |> Gen.map (fun v -> float v * 2e-3 * reg))
        let! t = Gen.choose (1, 40)
        return { Cost = m; Reg = reg; Iterations = t }
    }
    |> Arb.fromGen

let ``knopp log and stabilized agree at moderate regularization`` () =
    Prop.forAll moderateCase (fun c ->
        let n, e = rows c.Cost, cols c.Cost
        // Stabilized compares err <= tol, so with tol = 0 it stops (only) on a plan whose marginals are exact in
        // floating point, e.g. N = 1 or E = 1; then all three are compared after that many iterations.
        let stab =
            Sinkhorn.Solve(c.Cost, options SinkhornMethod.Stabilized (Some c.Reg) (Some c.Iterations) (Some 0.0) None None 1)

        if stab.Status = SinkhornStatus.Converged then
            Assert.That(stab.Error, Is.EqualTo 0.0, "stabilized stopped at tol = 0, so err = 0")

        let t = stab.Iterations
        let run meth = Sinkhorn.Solve(c.Cost, options meth (Some c.Reg) (Some t) (Some 0.0) None None 1)
        let knopp, logd = run SinkhornMethod.Knopp, run SinkhornMethod.Log

        for r in [ knopp; logd ] do
            Assert.That(r.Status, Is.EqualTo SinkhornStatus.MaxIterations, "tol = 0 never stops knopp or log early")
            Assert.That(r.Iterations, Is.EqualTo t)
        // Rounding: 2T half-steps, each adding at most (S + N + E + 10) ulps in log units; 4x for first-order terms.
        let s = potentialScaleOverRun c.Cost c.Reg None None t + 2.0 + log (float (n * e))
        let eta = 4.0 * 2.0 * float t * (maxAbs (cells c.Cost) / c.Reg + s + float (n + e) + 10.0) * u64
        Assert.That(logDistance knopp.Plan logd.Plan, Is.LessThanOrEqualTo eta, "knopp vs log plan")
        Assert.That(logDistance stab.Plan logd.Plan, Is.LessThanOrEqualTo eta, "stabilized vs log plan")
        // Knopp starts from u = 1/N, log from u = 1: the potentials differ by reg log N, in opposite directions.
        let shift = c.Reg * log (float n)

        for i in 0 .. n - 1 do
            Assert.That(knopp.F.[i], Is.EqualTo(logd.F.[i] - shift).Within(c.Reg * eta + 4.0 * u64 * abs knopp.F.[i]), $"f[{i}]")
            Assert.That(stab.F.[i], Is.EqualTo(knopp.F.[i]).Within(c.Reg * eta + 4.0 * u64 * abs knopp.F.[i]), $"stabilized f[{i}]")

        for j in 0 .. e - 1 do
            Assert.That(knopp.G.[j], Is.EqualTo(logd.G.[j] + shift).Within(c.Reg * eta + 4.0 * u64 * abs knopp.G.[j]), $"g[{j}]"))

// ---- sinkhorn.log-finite-where-knopp-fails -------------------------------------------------------------------------

type UnderflowCase = { Cost: float[,]; Reg: float; Column: int; Overflow: bool }

/// Costs in [0, 1] except one column in [8, 9] (or, for overflow, logits there: cost in [-9, -8]), at reg <= 0.01,
/// so that exp(-M/reg) of that whole column underflows to 0 (or overflows to +Inf) in double.
let underflowCase =
    gen {
        let! n = Gen.elements tokenCounts
        let! e = Gen.elements [ 2; 3; 4; 8 ]
        let! reg = Gen.elements [ 0.005; 0.01 ]
        let! column = Gen.choose (0, e - 1)
        let! overflow = Gen.elements [ false; true ]
        let! base' = matrix n e (Gen.choose (0, 1000) |> Gen.map (fun v -> float v * 1e-3))

        let m =
            base'
            |> Array2D.mapi (fun _ j x ->
                if j = column then
                    (if overflow then -(8.0 + x) else 8.0 + x)
                else
                    x)

        return { Cost = m; Reg = reg; Column = column; Overflow = overflow }
    }
    |> Arb.fromGen

let ``log stays finite where knopp underflows and knopp reports it`` () =
    Prop.forAll underflowCase (fun c ->
        let n, e = rows c.Cost, cols c.Cost
        let b = uniform e
        let run meth = Sinkhorn.Solve(c.Cost, options meth (Some c.Reg) None None None None 1)
        let knopp = run SinkhornMethod.Knopp
        Assert.That(knopp.Status, Is.EqualTo SinkhornStatus.NumericalError, "knopp must report the under/overflow")
        Assert.That(knopp.Converged, Is.False)
        Assert.That(knopp.Iterations, Is.EqualTo 0, "it fails in iteration 0 and returns the initial iterate")

        if c.Overflow then
            // K = exp(-M/reg) = +Inf: no finite iterate exists, so everything is NaN rather than a plausible number.
            Assert.That(cells knopp.Plan |> Seq.forall Double.IsNaN, "overflow: plan all NaN")
            Assert.That(Array.append knopp.F knopp.G |> Array.forall Double.IsNaN, "overflow: potentials all NaN")
            Assert.That(Double.IsNaN knopp.Error, "overflow: err NaN")
        else
            // The initial iterate: finite, non-negative, and its honest error shows the empty column.
            Assert.That(cells knopp.Plan |> Seq.forall (fun x -> Double.IsFinite x && x >= 0.0), "finite, non-negative")
            Assert.That(knopp.Error, Is.EqualTo(columnError knopp.Plan b).Within(1e-15), "honest err")
            Assert.That(knopp.Error, Is.GreaterThanOrEqualTo(b.[c.Column]), "the empty column is visible in err")

        let logd = run SinkhornMethod.Log
        Assert.That(logd.Status, Is.Not.EqualTo SinkhornStatus.NumericalError, "log must not fail here")
        Assert.That(Array.append logd.F logd.G |> Array.forall Double.IsFinite, "log potentials finite")
        Assert.That(cells logd.Plan |> Seq.forall (fun x -> Double.IsFinite x && x >= 0.0), "log plan finite, non-negative")
        let rho = 4.0 * u64 * (scale c.Cost c.Reg logd.F logd.G + float e + 2.0)

        for i in 0 .. n - 1 do
            Assert.That(abs ((rowSums logd.Plan).[i] - 1.0 / float n), Is.LessThanOrEqualTo(rho / float n), $"log row {i}")

        Assert.That(logd.Error, Is.EqualTo(columnError logd.Plan b).Within(1e-15), "log honest err"))

// ---- sinkhorn.shift-invariance -------------------------------------------------------------------------------------

type ShiftCase =
    {
        Cost: float[,]
        RowShift: float[]
        ColumnShift: float[]
        Reg: float
        Method: SinkhornMethod
        Iterations: int
    }

/// Costs on a grid of 1/64 in [-1, 1] and shifts on a grid of 1/4 in [-2, 2]: M + r + c is exact in double.
let shiftCase =
    gen {
        let! n = Gen.elements tokenCounts
        let! e = Gen.elements expertCounts
        let! m = matrix n e (Gen.choose (-64, 64) |> Gen.map (fun v -> float v / 64.0))
        let! r = Gen.arrayOfLength n (Gen.choose (-8, 8) |> Gen.map (fun v -> float v / 4.0))
        let! s = Gen.arrayOfLength e (Gen.choose (-8, 8) |> Gen.map (fun v -> float v / 4.0))
        let! reg = Gen.elements [ 0.5; 1.0; 2.0 ]
        let! meth = Gen.elements [ SinkhornMethod.Knopp; SinkhornMethod.Log ]
        let! t = Gen.choose (1, 30)
        return { Cost = m; RowShift = r; ColumnShift = s; Reg = reg; Method = meth; Iterations = t }
    }
    |> Arb.fromGen

let ``adding constants to rows or columns of the cost leaves the plan unchanged`` () =
    Prop.forAll shiftCase (fun c ->
        let n, e = rows c.Cost, cols c.Cost
        let b = uniform e
        // (a) Column shifts leave every iterate unchanged: same T, tol = 0, rounding only.
        let colShifted = c.Cost |> Array2D.mapi (fun _ j x -> x + c.ColumnShift.[j])
        let fixedRun m = Sinkhorn.Solve(m, options c.Method (Some c.Reg) (Some c.Iterations) (Some 0.0) None None 1)
        let p0, p1 = fixedRun c.Cost, fixedRun colShifted

        let s =
            max (potentialScaleOverRun c.Cost c.Reg None None c.Iterations) (potentialScaleOverRun colShifted c.Reg None None c.Iterations)

        let eta =
            4.0
            * 2.0
            * float c.Iterations
            * (maxAbs (cells colShifted) / c.Reg + s + float (n + e) + 12.0)
            * u64

        Assert.That(logDistance p0.Plan p1.Plan, Is.LessThanOrEqualTo eta, "column shift changed an iterate")
        // (b) Row and column shifts leave the solution unchanged: both runs converge, and each plan is within its
        //     a-posteriori bound of the same G*.
        let shifted = c.Cost |> Array2D.mapi (fun i j x -> x + c.RowShift.[i] + c.ColumnShift.[j])
        let converge m = Sinkhorn.Solve(m, options c.Method (Some c.Reg) (Some 5000) (Some 1e-12) None None 1)
        let q0, q1 = converge c.Cost, converge shifted
        Assert.That(q0.Converged && q1.Converged, $"both converge at |M|/reg <= 2: {q0.Status} {q1.Status}")
        let bound = distanceToSolution c.Cost c.Reg b q0 + distanceToSolution shifted c.Reg b q1

        Assert.That(
            logDistance q0.Plan q1.Plan,
            Is.LessThanOrEqualTo(2.0 * bound),
            $"row and column shifts changed the solution\n{show q0.Plan}\n{show q1.Plan}"
        ))

// ---- sinkhorn.approaches-exact-ot ----------------------------------------------------------------------------------

/// The exact optimal transport cost for N = E with uniform marginals: by Birkhoff-von Neumann, a permutation.
let exactTransportCost (m: float[,]) =
    let n = rows m

    let rec perms (xs: int list) =
        match xs with
        | [] -> [ [] ]
        | _ ->
            [
                for x in xs do
                    for rest in perms (List.filter ((<>) x) xs) -> x :: rest
            ]

    perms [ 0 .. n - 1 ]
    |> List.map (fun p -> (p |> List.mapi (fun i j -> m.[i, j]) |> List.sum) / float n)
    |> List.min

type SquareCase = { Cost: float[,] }

let squareCase =
    gen {
        let! n = Gen.choose (1, 6)
        let! m = matrix n n (Gen.choose (0, 16) |> Gen.map (fun v -> float v / 16.0))
        return { Cost = m }
    }
    |> Arb.fromGen

let ``as reg decreases the plan cost approaches the exact transport cost`` () =
    Prop.forAll squareCase (fun c ->
        let n = rows c.Cost
        let ot = exactTransportCost c.Cost
        let span = (cells c.Cost |> Seq.max) - (cells c.Cost |> Seq.min)
        let b = uniform n

        for reg in [ 0.3; 0.1; 0.03; 0.01 ] do
            let r =
                Sinkhorn.Solve(c.Cost, options SinkhornMethod.Log (Some reg) (Some 2000) (Some 1e-12) None None 1)

            Assert.That(r.Status, Is.Not.EqualTo SinkhornStatus.NumericalError)
            let cost = Seq.map2 (*) (cells r.Plan) (cells c.Cost) |> Seq.sum
            // delta: mass the column sums must move to reach b; OT is span-Lipschitz in it.
            let delta = 0.5 * Array.sum (Array.map2 (fun x y -> abs (x - y)) (colSums r.Plan) b)
            let slack = 8.0 * u64 * (scale c.Cost reg r.F r.G + float (2 * n) + 2.0) * (1.0 + span)
            let gap = cost - ot
            Assert.That(gap, Is.GreaterThanOrEqualTo(-delta * span - slack), $"reg {reg}: below the exact optimum")

            Assert.That(
                gap,
                Is.LessThanOrEqualTo(reg * log (float n) + delta * span + slack),
                $"reg {reg}: cost {cost:R} exceeds OT {ot:R} + reg log N + {delta * span:R}"
            ))

// ---- sinkhorn.max-iter-one -----------------------------------------------------------------------------------------

type OneStepCase = { Cost: float[,]; Reg: float; Method: SinkhornMethod; K: int }

let oneStepCase =
    gen {
        let! n = Gen.elements tokenCounts
        let! e = Gen.elements expertCounts
        let! m = matrix n e (cell 3.0)
        let! reg = Gen.elements [ 0.1; 0.5; 1.0 ]

        let! meth =
            Gen.elements
                [
                    SinkhornMethod.Knopp
                    SinkhornMethod.Log
                    SinkhornMethod.Stabilized
                    SinkhornMethod.EpsilonScaling
                    SinkhornMethod.SBase
                    SinkhornMethod.Selective
                ]

        let! k = Gen.choose (1, e)
        return { Cost = m; Reg = reg; Method = meth; K = k }
    }
    |> Arb.fromGen

let ``max_iter = 1 reports non-convergence`` () =
    Prop.forAll oneStepCase (fun c ->
        let sbase = c.Method = SinkhornMethod.SBase
        let reg = if sbase then None else Some c.Reg
        let r = Sinkhorn.Solve(c.Cost, options c.Method reg (Some 1) None None None c.K)
        Assert.That(r.Converged, Is.EqualTo(r.Status = SinkhornStatus.Converged))
        Assert.That(r.Status, Is.Not.EqualTo SinkhornStatus.NumericalError)
        let tol = if sbase then 1e-4 else 1e-9
        let e = cols c.Cost

        match c.Method with
        | SinkhornMethod.EpsilonScaling ->
            // POT's rule needs t > 35 and runs at least 35 steps: with max_iter = 1 it can never fire.
            Assert.That(r.Status, Is.EqualTo SinkhornStatus.MaxIterations)
            Assert.That(r.Iterations, Is.EqualTo 35)
        | SinkhornMethod.SBase ->
            // One Megatron step from d1 = 1: err = mean |1 - d1|, recomputed here from the plan's d1 = exp(g).
            let err = (r.G |> Array.sumBy (fun g -> abs (1.0 - exp g))) / float e
            Assert.That(r.Iterations, Is.EqualTo 1)
            Assert.That(r.Error, Is.EqualTo(err).Within(1e-12 * (1.0 + err)))
            Assert.That(r.Converged, Is.EqualTo(r.Error <= tol), "converged exactly when the one step's err <= tol")
        | _ ->
            // Iteration 0 is a check iteration: converged exactly when the one-step plan already meets the marginals.
            let measure = columnError r.Plan (uniform e)
            let slack = 4.0 * float (rows c.Cost + e) * u64
            Assert.That(r.Iterations, Is.EqualTo 1)

            if measure >= tol + slack then
                Assert.That(r.Status, Is.EqualTo SinkhornStatus.MaxIterations, $"err {measure:R} >= tol, yet converged")
            elif measure < tol - slack then
                Assert.That(r.Status, Is.EqualTo SinkhornStatus.Converged, $"err {measure:R} < tol, yet not converged"))

// ---- sinkhorn.sbase-megatron ---------------------------------------------------------------------------------------

/// An independent transcription of Megatron-LM's sinkhorn (moe_utils.py) with the iteration cap, in F# arrays.
let megatron (x: float[,]) (tol: float) (maxIter: int) =
    let n, e = rows x, cols x
    let c = Array2D.map exp x
    let mutable d0 = Array.create n 1.0
    let mutable d1 = Array.create e 1.0
    let mutable d1Old = Array.copy d1
    let mutable err = 1e9
    let mutable it = 0

    while err > tol && it < maxIter do
        d0 <- Array.init n (fun i -> (1.0 / float n) / (Array.fold (+) 0.0 (Array.init e (fun j -> d1.[j] * c.[i, j])) + 1e-8))
        d1 <- Array.init e (fun j -> (1.0 / float e) / (Array.fold (+) 0.0 (Array.init n (fun i -> d0.[i] * c.[i, j])) + 1e-8))
        err <- (Array.map2 (fun p q -> abs (p - q)) d1Old d1 |> Array.sum) / float e
        d1Old <- Array.copy d1
        it <- it + 1

    let plan = Array2D.init n e (fun i j -> d1.[j] * c.[i, j] * d0.[i])
    plan, d0, d1, it, err

/// Experts by a stable sort of each row (larger first, ties to the lower index).
let topByStableSort (p: float[,]) k =
    Array2D.init (rows p) k (fun i s -> (Array.init (cols p) id |> Array.sortWith (fun x y -> compare (-p.[i, x], x) (-p.[i, y], y))).[s])

type SBaseCase = { Logits: float[,]; K: int; Tol: float; MaxIter: int }

let sbaseCase =
    gen {
        let! n = Gen.choose (1, 8)
        let! e = Gen.choose (1, 6)
        let! x = matrix n e (cell 3.0)
        let! k = Gen.choose (1, e)
        let! tol = Gen.elements [ 1e-4; 1e-6 ]
        let! cap = Gen.elements [ 1; 3; 10000 ]
        return { Logits = x; K = k; Tol = tol; MaxIter = cap }
    }
    |> Arb.fromGen

let ``sbase follows the Megatron update, stopping rule and routing`` () =
    Prop.forAll sbaseCase (fun c ->
        let n, e = rows c.Logits, cols c.Logits

        let r =
            Sinkhorn.SolveLogits(c.Logits, options SinkhornMethod.SBase None (Some c.MaxIter) (Some c.Tol) None None c.K)

        let plan, d0, d1, it, err = megatron c.Logits c.Tol c.MaxIter
        Assert.That(r.Iterations, Is.EqualTo it, "iterations")

        Assert.That(
            r.Status,
            Is.EqualTo(
                if err <= c.Tol then
                    SinkhornStatus.Converged
                else
                    SinkhornStatus.MaxIterations
            )
        )
        // Same operations on the same doubles; allow the rounding of summing in another order.
        let rel = 4.0 * float (max 1 it) * float (n + e + 4) * u64
        Assert.That(r.Error, Is.EqualTo(err).Within(rel * (1.0 + err)), "err")

        for i in 0 .. n - 1 do
            Assert.That(exp r.F.[i], Is.EqualTo(d0.[i]).Within(rel * d0.[i]), $"d0[{i}]")

            for j in 0 .. e - 1 do
                Assert.That(r.Plan.[i, j], Is.EqualTo(plan.[i, j]).Within(rel * plan.[i, j]), $"plan[{i}, {j}]")

        for j in 0 .. e - 1 do
            Assert.That(exp r.G.[j], Is.EqualTo(d1.[j]).Within(rel * d1.[j]), $"d1[{j}]")
        // Routing: the plan selects (top-k, ties to the lower index); sigmoid (k = 1) or softmax (k > 1) of X weighs.
        let experts = topByStableSort r.Plan c.K
        Assert.That(r.Experts, Is.EqualTo(box experts), "experts are the top-k of the plan rows")

        for i in 0 .. n - 1 do
            let row = Array.init e (fun j -> c.Logits.[i, j])
            let top = Array.max row
            let z = row |> Array.sumBy (fun x -> exp (x - top))

            for s in 0 .. c.K - 1 do
                let x = row.[r.Experts.[i, s]]

                let want =
                    if c.K = 1 then
                        1.0 / (1.0 + exp (-x))
                    else
                        exp (x - top) / z

                Assert.That(r.Weights.[i, s], Is.EqualTo(want).Within(8.0 * float e * u64 * want), $"weight[{i}, {s}]"))

// ---- sinkhorn.ssr-routing ------------------------------------------------------------------------------------------

type SsrCase = { Logits: float[,]; K: int; Reg: float }

let ssrCase =
    gen {
        let! n = Gen.elements tokenCounts
        let! e = Gen.elements expertCounts
        let! x = matrix n e (cell 3.0)
        let! k = Gen.choose (1, e)
        let! reg = Gen.elements [ 0.1; 0.3; 1.0 ]
        return { Logits = x; K = k; Reg = reg }
    }
    |> Arb.fromGen

let ``ssr routes by the log plan`` () =
    Prop.forAll ssrCase (fun c ->
        let run meth = Sinkhorn.SolveLogits(c.Logits, options meth (Some c.Reg) None None None None c.K)
        let ssr, logd = run SinkhornMethod.Selective, run SinkhornMethod.Log
        // The plan is the log method's, bit for bit.
        Assert.That(ssr.Plan, Is.EqualTo(box logd.Plan))
        Assert.That(ssr.F, Is.EqualTo(box logd.F))
        Assert.That(ssr.G, Is.EqualTo(box logd.G))
        Assert.That((ssr.Iterations, ssr.Error, ssr.Status), Is.EqualTo((logd.Iterations, logd.Error, logd.Status)))
        Assert.That(ssr.Experts, Is.EqualTo(box (topByStableSort ssr.Plan c.K)), "experts are the top-k of the plan rows")

        for i in 0 .. rows c.Logits - 1 do
            let chosen = Array.init c.K (fun s -> ssr.Plan.[i, ssr.Experts.[i, s]])
            let total = Array.sum chosen

            for s in 0 .. c.K - 1 do
                Assert.That(ssr.Weights.[i, s], Is.EqualTo(chosen.[s] / total).Within(2.0 * float c.K * u64), $"weight[{i}, {s}]")

            Assert.That(
                abs (Array.sum (Array.init c.K (fun s -> ssr.Weights.[i, s])) - 1.0),
                Is.LessThanOrEqualTo(2.0 * float c.K * u64),
                "weights sum to 1"
            ))

// ---- sinkhorn.kernel-equals-reference ------------------------------------------------------------------------------

type KernelCase = { Cost: float[,]; A: float[] option; B: float[] option; Reg: float; Iterations: int }

let kernelCase =
    gen {
        let! n = Gen.elements tokenCounts
        let! e = Gen.elements expertCounts
        let! m = matrix n e (cell 3.0)
        let! a = optionalMarginal n
        let! b = optionalMarginal e
        let! reg = Gen.elements [ 0.1; 0.3; 1.0; 3.0 ]
        let! t = Gen.choose (1, 30)
        return { Cost = m; A = a; B = b; Reg = reg; Iterations = t }
    }
    |> Arb.fromGen

let flatten32 (m: float[,]) = Array.init (rows m * cols m) (fun f -> float32 m.[f / cols m, f % cols m])

/// The float32 bound of theorem sinkhorn.kernel-equals-reference: per half-step delta = u32 (6 S + 2 (N + E) + 8); after
/// T iterations the potentials (units of reg) differ by at most 2 T delta, and log G by 4 T delta + u32 (3 S + 4).
let kernelBound (m: float[,]) reg a b t =
    let n, e = rows m, cols m

    let logs (x: float[] option) k =
        match x with
        | Some v -> maxAbs (Array.map log v)
        | None -> log (float k)

    let s = maxAbs (cells m) / reg + potentialScaleOverRun m reg a b t + logs a n + logs b e
    let delta = u32 * (6.0 * s + 2.0 * float (n + e) + 8.0)
    2.0 * float t * delta, 4.0 * float t * delta + u32 * (3.0 * s + 4.0)

let ``kernel equals the log reference within the derived float32 bound`` () =
    Prop.forAll kernelCase (fun c ->
        let n, e = rows c.Cost, cols c.Cost
        let o = options SinkhornMethod.Log (Some c.Reg) (Some c.Iterations) (Some 0.0) c.A c.B 1
        let reference = Sinkhorn.Solve(c.Cost, o)
        let kernel = Reference.Kernels.Transport.Sinkhorn.Solve(flatten32 c.Cost, n, e, o)
        Assert.That(kernel.Status, Is.EqualTo reference.Status)
        Assert.That(kernel.Iterations, Is.EqualTo reference.Iterations)
        let potential, logPlan = kernelBound c.Cost c.Reg c.A c.B c.Iterations
        // Entries below float32's smallest normal lose relative precision: allow twice that absolutely.
        let floor = 2.0 * Math.Pow(2.0, -126.0)

        for i in 0 .. n - 1 do
            for j in 0 .. e - 1 do
                let want, got = reference.Plan.[i, j], float kernel.Plan.[i * e + j]

                Assert.That(
                    abs (got - want),
                    Is.LessThanOrEqualTo((exp logPlan - 1.0) * want + floor),
                    $"plan[{i}, {j}]: kernel {got:R}, reference {want:R}, bound {logPlan:R}"
                )

        let check (got: float32[]) (want: float[]) name =
            for i in 0 .. want.Length - 1 do
                Assert.That(float got.[i], Is.EqualTo(want.[i]).Within(c.Reg * potential + 2.0 * u32 * abs want.[i]), $"{name}[{i}]")

        check kernel.F reference.F "f"
        check kernel.G reference.G "g")

// ---- sinkhorn.deterministic ----------------------------------------------------------------------------------------

let ``reruns are bit-identical`` () =
    Prop.forAll oneStepCase (fun c ->
        let reg = if c.Method = SinkhornMethod.SBase then None else Some c.Reg
        let o = options c.Method reg (Some 200) None None None c.K
        let r1, r2 = Sinkhorn.Solve(c.Cost, o), Sinkhorn.Solve(c.Cost, o)
        Assert.That(r2.Plan, Is.EqualTo(box r1.Plan))
        Assert.That((r2.F, r2.G, r2.Iterations, r2.Error, r2.Status), Is.EqualTo((r1.F, r1.G, r1.Iterations, r1.Error, r1.Status)))
        Assert.That(r2.Experts, Is.EqualTo(box r1.Experts))
        Assert.That(r2.Weights, Is.EqualTo(box r1.Weights)))

let ``the parallel kernel is bit-identical across runs`` () =
    // 256 x 160 = 40960 entries: above the kernel's parallel threshold, so columns and rows are split over threads.
    let rng = Random 11
    let n, e = 256, 160
    let cost = Array.init (n * e) (fun _ -> float32 (rng.NextDouble() * 2.0 - 1.0))
    let o = options SinkhornMethod.Log (Some 0.2) (Some 25) (Some 0.0) None None 1
    let runs = [ for _ in 1..3 -> Reference.Kernels.Transport.Sinkhorn.Solve(cost, n, e, o) ]

    for r in runs.Tail do
        Assert.That(r.Plan, Is.EqualTo(box runs.Head.Plan))
        Assert.That(r.F, Is.EqualTo(box runs.Head.F))
        Assert.That(r.G, Is.EqualTo(box runs.Head.G))

// ---- input checks (proofs/conventions.md, Definition: Bad input) ---------------------------------------------------

let private rejects (name: string) (fragment: string) (f: unit -> obj) =
    let ex: ArgumentException = Assert.Catch<ArgumentException>(Action(fun () -> f () |> ignore))
    Assert.That(ex.ParamName, Is.EqualTo name)
    Assert.That(ex.Message, Does.Contain fragment)

let ``bad inputs are rejected naming the argument and the first offending index`` () =
    let m = Array2D.init 3 2 (fun i j -> float (i + j))
    let log' = options SinkhornMethod.Log (Some 0.5) None None None None 1
    let bad = Array2D.copy m
    bad.[2, 1] <- nan
    rejects "cost" "cost[2, 1] is NaN" (fun () -> box (Sinkhorn.Solve(bad, log')))
    bad.[2, 1] <- infinity
    rejects "logits" "logits[2, 1] is +Inf" (fun () -> box (Sinkhorn.SolveLogits(bad, log')))

    rejects "a" "a[1] is 0" (fun () ->
        box (Sinkhorn.Solve(m, options SinkhornMethod.Log (Some 0.5) None None (Some [| 1.0; 0.0; 0.0 |]) None 1)))

    rejects "b" "length 3" (fun () ->
        box (Sinkhorn.Solve(m, options SinkhornMethod.Log (Some 0.5) None None None (Some [| 0.3; 0.3; 0.4 |]) 1)))

    rejects "reg" "required" (fun () -> box (Sinkhorn.Solve(m, options SinkhornMethod.Knopp None None None None None 1)))

    rejects "reg" "must be finite and > 0" (fun () ->
        box (Sinkhorn.Solve(m, options SinkhornMethod.Knopp (Some 0.0) None None None None 1)))

    rejects "reg" "sbase has no regularization" (fun () ->
        box (Sinkhorn.Solve(m, options SinkhornMethod.SBase (Some 1.0) None None None None 1)))

    rejects "max_iter" "must be >= 1" (fun () -> box (Sinkhorn.Solve(m, options SinkhornMethod.Log (Some 0.5) (Some 0) None None None 1)))
    rejects "tol" "must be finite" (fun () -> box (Sinkhorn.Solve(m, options SinkhornMethod.Log (Some 0.5) None (Some nan) None None 1)))
    rejects "k" "outside 1..2" (fun () -> box (Sinkhorn.Solve(m, options SinkhornMethod.Selective (Some 0.5) None None None None 3)))
    rejects "cost" "N >= 1 and E >= 1" (fun () -> box (Sinkhorn.Solve(Array2D.zeroCreate 0 2, log')))

    rejects "options" "log only" (fun () ->
        box (Reference.Kernels.Transport.Sinkhorn.Solve(flatten32 m, 3, 2, options SinkhornMethod.Knopp (Some 0.5) None None None None 1)))

let ``logits are the negated cost, bit for bit`` () =
    let x = Array2D.init 5 3 (fun i j -> float (float32 (sin (float (7 * i + j)))))

    for meth in
        [
            SinkhornMethod.Knopp
            SinkhornMethod.Log
            SinkhornMethod.Stabilized
            SinkhornMethod.EpsilonScaling
            SinkhornMethod.Selective
        ] do
        let o = options meth (Some 0.3) (Some 50) None None None 2
        let r1, r2 = Sinkhorn.SolveLogits(x, o), Sinkhorn.Solve(Array2D.map (fun v -> -v) x, o)
        Assert.That(r1.Plan, Is.EqualTo(box r2.Plan), $"{meth}")
        Assert.That(r1.F, Is.EqualTo(box r2.F), $"{meth}")

// The tests of this module, as values (Proofs.family, Proofs.test, Proofs.prop: see Proofs.fs).
[<Expecto.Tests>]
let tests =
    Proofs.family
        "transport/sinkhorn"
        "SinkhornProperties"
        [
            Proofs.prop
                [ "sinkhorn.marginals-at-convergence" ]
                "converged plans meet the marginals and the reported error is honest"
                ``converged plans meet the marginals and the reported error is honest``
            Proofs.prop
                [ "sinkhorn.variants-agree" ]
                "knopp log and stabilized agree at moderate regularization"
                ``knopp log and stabilized agree at moderate regularization``
            Proofs.prop
                [ "sinkhorn.log-finite-where-knopp-fails" ]
                "log stays finite where knopp underflows and knopp reports it"
                ``log stays finite where knopp underflows and knopp reports it``
            Proofs.prop
                [ "sinkhorn.shift-invariance" ]
                "adding constants to rows or columns of the cost leaves the plan unchanged"
                ``adding constants to rows or columns of the cost leaves the plan unchanged``
            Proofs.prop
                [ "sinkhorn.approaches-exact-ot" ]
                "as reg decreases the plan cost approaches the exact transport cost"
                ``as reg decreases the plan cost approaches the exact transport cost``
            Proofs.prop [ "sinkhorn.max-iter-one" ] "max_iter = 1 reports non-convergence" ``max_iter = 1 reports non-convergence``
            Proofs.prop
                [ "sinkhorn.sbase-megatron" ]
                "sbase follows the Megatron update, stopping rule and routing"
                ``sbase follows the Megatron update, stopping rule and routing``
            Proofs.prop [ "sinkhorn.ssr-routing" ] "ssr routes by the log plan" ``ssr routes by the log plan``
            Proofs.prop
                [ "sinkhorn.kernel-equals-reference" ]
                "kernel equals the log reference within the derived float32 bound"
                ``kernel equals the log reference within the derived float32 bound``
            Proofs.prop [ "sinkhorn.deterministic" ] "reruns are bit-identical" ``reruns are bit-identical``
            Proofs.test
                [ "sinkhorn.deterministic" ]
                "the parallel kernel is bit-identical across runs"
                ``the parallel kernel is bit-identical across runs``
            Proofs.test
                []
                "bad inputs are rejected naming the argument and the first offending index"
                ``bad inputs are rejected naming the argument and the first offending index``
            Proofs.test [] "logits are the negated cost, bit for bit" ``logits are the negated cost, bit for bit``
        ]
