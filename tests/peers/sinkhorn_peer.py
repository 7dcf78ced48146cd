#!/usr/bin/python3
"""Cross-check of the Sinkhorn references (proofs/sinkhorn.md, Definition) against POT and an independent numpy code.

knopp, log, stabilized and eps-scaling are recomputed with POT (Debian's python3-pot, POT 0.8.2):
ot.sinkhorn(method='sinkhorn' | 'sinkhorn_log' | 'sinkhorn_stabilized' | 'sinkhorn_epsilon_scaling').
sbase and ssr are recomputed by the numpy functions below, written from proofs/sinkhorn.md, Definition: S-BASE and SSR, not from the C# reference.
Run with Debian's /usr/bin/python3.

  sinkhorn_peer.py verify CASES_DIR     every CASE/{input.npz, params.json, expected.npz} under CASES_DIR:
                                        recompute and compare with expected.npz; exit 1 on any mismatch
  sinkhorn_peer.py generate OUT_DIR SEED COUNT
                                        write COUNT random cases OUT_DIR/case-NNN/{input.npz, params.json}
                                        (awkward shapes, every method, logits or cost, optional marginals,
                                        iteration caps, regularizations where knopp underflows)

What is compared, and how closely:
- iterations, converged and status exactly (POT's outcome is read from its warnings: "numerical errors" means
  status 2, "did not converge" means status 1; POT's niter is the index of the last iteration, ours the count);
- plan, f, g and err within a tolerance derived from the iteration count: both codes run the same iteration on the
  same doubles and differ only by rounding; each half-iteration adds at most about (S + N + E) ulps to a potential
  (S = the largest |M|/reg + |f|/reg + |g|/reg) and log-sum-exp does not amplify errors, so after T iterations the
  potentials differ by at most 2 T (S + N + E + 10) u in units of reg, with u = 2^-53; the plan, exp of them,
  relatively by the same; we allow 4 times that (first-order terms), and at least 1e-12;
- experts exactly, except where the peer's plan has a tie (within the tolerance) at the boundary: then the choice
  is validated instead (every chosen plan value is at least every unchosen one, minus the tolerance).
When the reference reports a numerical error (status 2), POT must report one too (its warning, a division by zero or
invalid operation in numpy, or a non-finite result); the values are then not compared, since POT checks at a different point.
"""
import os
import sys
import warnings

import numpy as np

from peer_args import case_names, dispatch, read_case, write_case

U = 2.0 ** -53
METHODS = ["knopp", "log", "stabilized", "eps-scaling", "sbase", "ssr"]
POT_NAMES = {"knopp": "sinkhorn", "log": "sinkhorn_log", "stabilized": "sinkhorn_stabilized",
             "eps-scaling": "sinkhorn_epsilon_scaling"}


# ---- independent numpy code for sbase and ssr (from proofs/sinkhorn.md, Definition: S-BASE and SSR) -------------

def sbase(x, a, b, max_iter, tol):
    """Megatron's S-BASE scaling of C = exp(X), with the iteration cap. Returns plan, d0, d1, iterations, err, status."""
    c = np.exp(x)
    n, e = c.shape
    d0 = np.ones(n)
    d1 = np.ones(e)
    d1_old = d1.copy()
    err = 1e9
    it = 0
    status = 1
    with np.errstate(all="ignore"):
        while err > tol and it < max_iter:
            new_d0 = a / (c @ d1 + 1e-8)
            new_d1 = b / (c.T @ new_d0 + 1e-8)
            new_err = np.mean(np.abs(d1_old - new_d1))
            if not (np.all(np.isfinite(new_d0)) and np.all(np.isfinite(new_d1))) or np.isnan(new_err):
                status = 2
                break
            d0, d1, err = new_d0, new_d1, new_err
            d1_old = d1.copy()
            it += 1
        if status != 2 and err <= tol:
            status = 0
        plan = d0[:, None] * c * d1[None, :]
    return plan, d0, d1, it, err, status


def log_sinkhorn(m, a, b, reg, max_iter, tol):
    """The log-domain iteration: g first, then f; every 10th iteration ||colsum - b||_2 < tol stops it."""
    def lse(z, axis):
        top = np.max(z, axis=axis, keepdims=True)
        return (np.log(np.sum(np.exp(z - top), axis=axis, keepdims=True)) + top).squeeze(axis)

    f = np.zeros(m.shape[0])
    g = np.zeros(m.shape[1])
    status, done = 1, 0
    plan = lambda: np.exp((f[:, None] + g[None, :] - m) / reg)
    for t in range(max_iter):
        g = reg * (np.log(b) - lse((f[:, None] - m) / reg, 0))
        f = reg * (np.log(a) - lse((g[None, :] - m) / reg, 1))
        done = t + 1
        if t % 10 == 0 and np.linalg.norm(plan().sum(0) - b) < tol:
            status = 0
            break
    p = plan()
    return p, f, g, done, np.linalg.norm(p.sum(0) - b), status


def top_k(plan, k):
    """Each row's k largest values, ties to the lower index (a stable sort of -plan)."""
    return np.argsort(-plan, axis=1, kind="stable")[:, :k].astype(np.int32)


def scores(x, k):
    if k == 1:
        return 1.0 / (1.0 + np.exp(-x))
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


# ---- POT ------------------------------------------------------------------------------------------------------

def pot_solve(method, m, a, b, reg, max_iter, tol):
    import ot
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with np.errstate(all="warn"):
            plan, log = ot.sinkhorn(a, b, m, reg, method=POT_NAMES[method], numItermax=max_iter, stopThr=tol, log=True)
    messages = [str(w.message).lower() for w in caught]
    numerical = any("numerical error" in s for s in messages)
    # Underflow is normal at small reg; a division by zero or an invalid operation (inf - inf, 0 * inf) is a failure.
    runtime = any(issubclass(w.category, RuntimeWarning) and ("divide" in str(w.message) or "invalid" in str(w.message))
                  for w in caught)
    not_converged = any("did not converge" in s for s in messages)
    if method == "knopp":
        with np.errstate(all="ignore"):
            f, g = reg * np.log(log["u"]), reg * np.log(log["v"])
        niter = log["niter"]
    elif method == "log":
        f, g = reg * log["log_u"], reg * log["log_v"]
        niter = log["niter"]
    elif method == "stabilized":
        f, g = log["alpha"], log["beta"]
        niter = log["n_iter"]
    else:
        f, g = log["alpha"], log["beta"]
        niter = log["niter"]
    if method == "eps-scaling":
        # The inner stabilized runs warn too, so the outer outcome is read from the loop itself: it broke at niter
        # exactly when POT's rule held there (stored err <= tol and niter > 35).
        not_converged = not (log["err"][-1] <= tol and niter > 35)
    failed = numerical or runtime or not (np.all(np.isfinite(plan)) and np.all(np.isfinite(f)) and np.all(np.isfinite(g)))
    if failed:
        status, iterations = 2, None
    else:
        status = 1 if not_converged else 0
        iterations = niter + 1
    if method == "eps-scaling":
        err = np.linalg.norm(plan.sum(0) - b) ** 2 + np.linalg.norm(plan.sum(1) - a) ** 2
    else:
        err = np.linalg.norm(plan.sum(0) - b)
    return plan, f, g, iterations, err, status


# ---- verify ---------------------------------------------------------------------------------------------------

def params_of(raw):
    method = str(raw.get("method", "log"))
    sb = method == "sbase"
    p = dict(method=method,
             reg=float(raw["reg"]) if "reg" in raw else None,
             max_iter=int(raw.get("max_iter", 10000 if sb else 1000)),
             tol=float(raw.get("tol", 1e-4 if sb else 1e-9)),
             k=int(raw.get("k", 1)))
    return p


def problem_of(inp):
    if ("cost" in inp) == ("logits" in inp):
        raise ValueError("a case needs exactly one of cost and logits")
    m = inp["cost"].astype(np.float64) if "cost" in inp else -inp["logits"].astype(np.float64)
    n, e = m.shape
    a = inp["a"].astype(np.float64) if "a" in inp else np.full(n, 1.0 / n)
    b = inp["b"].astype(np.float64) if "b" in inp else np.full(e, 1.0 / e)
    return m, a, b


def tolerance(m, f, g, reg, n, e, iterations):
    """The relative tolerance derived in the module docstring (units of reg for the potentials)."""
    scale = reg if reg is not None else 1.0
    with np.errstate(all="ignore"):
        s = np.max(np.abs(m)) / scale + np.max(np.abs(f)) / scale + np.max(np.abs(g)) / scale
    if not np.isfinite(s):
        s = 1e6
    return max(1e-12, 4.0 * 2.0 * max(iterations, 1) * (s + n + e + 10) * U)


def close(got, want, rel, atol=1e-300):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return False, f"shape {got.shape} vs {want.shape}"
    bad = np.abs(got - want) > rel * np.abs(want) + atol
    if np.any(bad):
        idx = np.argwhere(bad)[0]
        return False, f"{int(bad.sum())} differ, first at {tuple(idx)}: {got[tuple(idx)]!r} vs {want[tuple(idx)]!r} (rel {rel:.3g})"
    return True, ""


def experts_ok(got, want, plan, rel):
    """Exact match, or where they differ a valid choice within the tolerance on the peer's plan."""
    if got.shape != want.shape:
        return False, f"experts shape {got.shape} vs {want.shape}"
    for i in np.nonzero(np.any(got != want, axis=1))[0]:
        row, chosen = plan[i], got[i]
        if len(set(chosen.tolist())) != len(chosen) or np.any(chosen < 0) or np.any(chosen >= row.size):
            return False, f"row {i}: experts {chosen} are not k distinct experts"
        slack = rel * np.max(row) + 1e-300
        rest = np.setdiff1d(np.arange(row.size), chosen)
        if np.any(np.diff(row[chosen]) > slack) or (rest.size and np.min(row[chosen]) < np.max(row[rest]) - slack):
            return False, f"row {i}: experts {chosen} vs peer {want[i]}, plan row {row}"
    return True, ""


def verify_case(d):
    inp, raw, exp = read_case(d)
    p = params_of(raw)
    m, a, b = problem_of(inp)
    n, e = m.shape
    method, reg = p["method"], p["reg"]
    problems = []

    if method in POT_NAMES:
        plan, f, g, iterations, err, status = pot_solve(method, m, a, b, reg, p["max_iter"], p["tol"])
    elif method == "sbase":
        x = -m
        plan, d0, d1, iterations, err, status = sbase(x, a, b, p["max_iter"], p["tol"])
        with np.errstate(all="ignore"):
            f, g = np.log(d0), np.log(d1)
    elif method == "ssr":
        plan, f, g, iterations, err, status = log_sinkhorn(m, a, b, reg, p["max_iter"], p["tol"])
    else:
        return [f"unknown method {method}"]

    got_status = int(exp["status"])
    if got_status != status:
        problems.append(f"status {got_status} vs peer {status}")
    if bool(exp["converged"]) != (got_status == 0):
        problems.append(f"converged {bool(exp['converged'])} disagrees with status {got_status}")
    if got_status == 2 or status == 2:
        # Numerical failure: both must say so (checked above); the values are the last finite iterate or NaN.
        ok_values = np.all(np.isfinite(exp["plan"])) or np.all(np.isnan(exp["plan"]))
        if not ok_values:
            problems.append("status 2 with a plan that is neither finite nor all NaN")
        return problems

    total_iterations = iterations * (100 if method == "eps-scaling" else 1)
    rel = tolerance(m, f, g, 1.0 if method == "sbase" else reg, n, e, total_iterations)
    if int(exp["iterations"]) != iterations:
        problems.append(f"iterations {int(exp['iterations'])} vs peer {iterations}")
    for name, want, r in [("plan", plan, rel), ("f", f, None), ("g", g, None)]:
        if r is None:
            # Potentials: absolute error rel * reg, plus their own rounding.
            unit = 1.0 if method == "sbase" else reg
            ok, why = close(exp[name], want, 4 * U, atol=rel * unit)
        else:
            ok, why = close(exp[name], want, r)
        if not ok:
            problems.append(f"{name}: {why}")
    mass = max(a.sum(), b.sum())
    ok, why = close(exp["err"], err, 1e-9, atol=4 * rel * mass + 1e-15 if method != "sbase" else 1e-12 + rel)
    if not ok:
        problems.append(f"err: {why}")

    if method in ("sbase", "ssr"):
        k = p["k"]
        want_experts = top_k(plan, k)
        ok, why = experts_ok(exp["experts"], want_experts, plan, rel)
        if not ok:
            problems.append(why)
        chosen = exp["experts"].astype(np.int64)
        if method == "sbase":
            want_w = np.take_along_axis(scores(-m, k), chosen, axis=1)
        else:
            sel = np.take_along_axis(plan, chosen, axis=1)
            want_w = sel / sel.sum(axis=1, keepdims=True)
        ok, why = close(exp["weights"], want_w, rel if method == "ssr" else 1e-12)
        if not ok:
            problems.append(f"weights: {why}")
    return problems


def verify(root):
    failures = 0
    cases = case_names(root)
    for name in cases:
        try:
            problems = verify_case(os.path.join(root, name))
        except Exception as ex:  # a broken case is a failure, reported with its name
            problems = [f"{type(ex).__name__}: {ex}"]
        if problems:
            failures += 1
            print(f"MISMATCH {name}: " + "; ".join(problems))
    print(f"sinkhorn peer: {len(cases) - failures} of {len(cases)} cases agree")
    return 1 if failures or not cases else 0


# ---- generate -------------------------------------------------------------------------------------------------

def generate(out, seed, count):
    rng = np.random.default_rng(seed)
    for c in range(count):
        method = METHODS[c % len(METHODS)] if c < len(METHODS) else str(rng.choice(METHODS))
        n = int(rng.choice([1, 2, 3, 5, 7, 16]))
        e = int(rng.choice([1, 2, 3, 4, 8]))
        scale = float(rng.choice([0.5, 1.0, 3.0]))
        if rng.random() < 0.25:
            x = rng.integers(-3, 4, size=(n, e)) * 0.25 * scale       # a grid: equal entries, tied plan values
        else:
            x = rng.normal(0.0, scale, size=(n, e))
        dtype = np.float32 if rng.random() < 0.5 else np.float64
        arrays = {("cost" if rng.random() < 0.4 else "logits"): x.astype(dtype)}
        if rng.random() < 0.3:
            a = rng.uniform(0.5, 1.5, size=n)
            b = rng.uniform(0.5, 1.5, size=e)
            arrays["a"], arrays["b"] = a / a.sum(), b / b.sum()
        params = {"method": method}
        if method in ("knopp", "log", "stabilized"):
            params["reg"] = float(rng.choice([0.002, 0.03, 0.1, 0.3, 1.0, 3.0]))
            cap = rng.choice([0, 1, 7, 50, 300])
            if cap:
                params["max_iter"] = int(cap)
        elif method == "eps-scaling":
            params["reg"] = float(rng.choice([0.02, 0.1, 0.5]))
            params["max_iter"] = int(rng.choice([1, 40, 60]))
        elif method == "ssr":
            params["reg"] = float(rng.choice([0.1, 0.3, 1.0]))
            params["k"] = int(rng.integers(1, e + 1))
        else:
            params["k"] = int(rng.integers(1, e + 1))
            cap = rng.choice([0, 1, 5])
            if cap:
                params["max_iter"] = int(cap)
        if rng.random() < 0.3:
            params["tol"] = float(rng.choice([1e-6, 1e-12]))
        write_case(os.path.join(out, f"case-{c:03d}"), arrays, params)
    return 0


if __name__ == "__main__":
    dispatch(sys.argv, __doc__, {"verify": (verify, [str]), "generate": (generate, [str, int, int])})
