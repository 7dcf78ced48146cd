#!/usr/bin/python3
"""Independent numpy computation of the SoftTopk operators (proofs/softtopk.md, Definition).

Written from proofs/softtopk.md, Definition (and, for the entropic Jacobian's closed form, the derivation there), not
from the C# reference. Run with Debian's /usr/bin/python3 (python3-numpy).

  softtopk_peer.py verify CASES_DIR     every CASE/{input.npz, params.json, expected.npz} under CASES_DIR:
                                        recompute y (and check the Jacobian when expected.npz has one); exit 1 on any
                                        mismatch
  softtopk_peer.py generate OUT_DIR SEED COUNT
                                        write COUNT random cases OUT_DIR/case-NNN/{input.npz, params.json}
                                        (awkward shapes, exact ties, constant rows, both methods) for the C# reference

How each quantity is computed here, and the tolerance it is checked with:
  threshold y     its own bisection for t (200 halvings or adjacent doubles) on sum sigmoid((x - t)/tau) = k;
                  |y - expected| <= Y_ATOL = 1e-11 (both sides are within about 1e-13 of the exact y for these sizes).
  entropic y      plain log-domain Sinkhorn (POT sinkhorn_log order: g from the columns, then f from the rows) on the
                  2-anchor problem, until the column marginal error is below SINKHORN_TOL = 1e-14 (or SINKHORN_CAP
                  iterations, reported as a failure); constant rows give k/E. |y - expected| <= Y_ATOL = 1e-11. (The error
                  of y is at most E times the column error, since each y_e is monotone in the potential difference:
                  at most 32 * 1e-14 here, plus the references' own rounding, about 1e-14.)
  Jacobian        (a) analytically: threshold J = D - d d^T / sum(d), d = y(1-y)/tau (proofs/softtopk.md, Definition: Outputs); entropic
                  J = J_threshold(xh, tau/2) N / R with N the min-max normalization's Jacobian (min and max at the
                  lowest index), built from this script's own y; compared after scaling row i by tau' R_i
                  (tau' = tau or tau/2, R_i = max - min or 1), within J_ANALYTIC_TOL = 1e-10 (the scaled entries move by
                  at most a few times the error of y).
                  (b) by central differences of this script's own y, step h = FD_ETA tau' R (FD_ETA = 1e-4), on the
                  same scale within the looser J_FD_TOL = 1e-6: truncation (h^2/6)|y'''| <= FD_ETA^2/6 (2 + 6 tau' + 3 tau'^2)
                  <= 2e-8 on that scale (proofs/softtopk.md bounds |y'''|), plus rounding 2 * 3e-13 / (2 FD_ETA) = 3e-9
                  (each y here is accurate to about E * 1e-14).
                  For the entropic operator (b) skips rows whose min or max is tied or nearer than 2h to the next
                  value, where the central difference straddles a kink of the normalization.
"""
import os
import sys

import numpy as np

from peer_args import case_names, dispatch, param_flag, read_case, write_case

Y_ATOL = 1e-11
J_ANALYTIC_TOL = 1e-10
J_FD_TOL = 1e-6
FD_ETA = 1e-4
SINKHORN_TOL = 1e-14
SINKHORN_CAP = 400000


def sigmoid(s):
    z = np.exp(-np.abs(s))
    return np.where(s >= 0, 1.0 / (1.0 + z), z / (1.0 + z))


def threshold_row(x, k, tau):
    """y for one row: bisection for t on F(t) = sum sigmoid((x - t)/tau) - k, decreasing in t."""
    e = len(x)
    margin = tau * (np.log(e) + 2.0)  # |logit(k/E)| <= log(E - 1), so every y is > k/E at lo and < k/E at hi
    lo, hi = x.min() - margin, x.max() + margin
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            break
        if sigmoid((x - mid) / tau).sum() >= k:
            lo = mid
        else:
            hi = mid
    return sigmoid((x - 0.5 * (lo + hi)) / tau)


def threshold(x, k, tau):
    return np.array([threshold_row(r, k, tau) for r in x])


def logsumexp(v, axis):
    m = v.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(v - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def normalize(x):
    lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    r = hi - lo
    constant = (r == 0).ravel()
    return (x - lo) / np.where(r > 0, r, 1.0), r.ravel(), constant


def entropic(x, k, tau):
    """y [N, E] by plain log-domain Sinkhorn, all rows at once; returns y and the iterations used."""
    n, e = x.shape
    xh, _, constant = normalize(x)
    cost = np.stack([xh ** 2, (xh - 1.0) ** 2], axis=2)              # [N, E, 2]
    log_a = np.log(1.0 / e)
    log_b = np.log(np.array([(e - k) / e, k / e]))                   # [2]
    f, g = np.zeros((n, e)), np.zeros((n, 2))
    for it in range(1, SINKHORN_CAP + 1):
        g = tau * (log_b[None, :] - logsumexp((f[:, :, None] - cost) / tau, axis=1))
        f = tau * (log_a - logsumexp((g[:, None, :] - cost) / tau, axis=2))
        column = np.exp((f + g[:, 1:2] - cost[:, :, 1]) / tau).sum(axis=1)
        err = np.abs(column - k / e)
        err[constant] = 0.0
        if err.max() < SINKHORN_TOL:
            break
    else:
        raise RuntimeError(f"plain Sinkhorn did not reach {SINKHORN_TOL} in {SINKHORN_CAP} iterations (err {err.max()})")
    y = e * np.exp((f + g[:, 1:2] - cost[:, :, 1]) / tau)
    y[constant] = k / e
    return y, it


def operator(x, k, tau, method):
    return entropic(x, k, tau)[0] if method == "entropic" else threshold(x, k, tau)


def analytic_jacobian(x, y, k, tau, method):
    """The closed forms, from this script's y."""
    n, e = x.shape
    jac = np.zeros((n, e, e))
    t = tau / 2.0 if method == "entropic" else tau
    xh, r, constant = normalize(x)
    for i in range(n):
        if method == "entropic" and constant[i]:
            continue
        d = y[i] * (1.0 - y[i]) / t
        if d.sum() == 0:
            continue
        jt = np.diag(d) - np.outer(d, d) / d.sum()
        if method != "entropic":
            jac[i] = jt
            continue
        imin, imax = int(np.argmin(x[i])), int(np.argmax(x[i]))   # numpy returns the first (lowest) index
        nmat = np.eye(e)
        nmat[:, imin] -= 1.0 - xh[i]
        nmat[:, imax] -= xh[i]
        jac[i] = jt @ nmat / r[i]
    return jac


def scales(x, tau, method):
    if method != "entropic":
        return np.full(x.shape[0], tau)
    _, r, constant = normalize(x)
    return tau / 2.0 * np.where(constant, 1.0, r)


def fd_jacobian(x, k, tau, method):
    """Central differences of this script's y; rows where the entropic normalization has a kink nearby are NaN."""
    n, e = x.shape
    s = scales(x, tau, method)
    h = FD_ETA * s                                                    # [N]
    batch = np.repeat(x[:, None, :], 2 * e, axis=1)                   # [N, 2E, E]
    for b in range(e):
        batch[:, 2 * b, b] += h
        batch[:, 2 * b + 1, b] -= h
    step = batch[:, 0::2, :] - batch[:, 1::2, :]                      # the actual steps, [N, E, E]
    yb = operator(batch.reshape(n * 2 * e, e), k, tau, method).reshape(n, 2 * e, e)
    jac = np.empty((n, e, e))
    for b in range(e):
        jac[:, :, b] = (yb[:, 2 * b, :] - yb[:, 2 * b + 1, :]) / step[:, b, b][:, None]
    if method == "entropic":
        for i in range(n):
            srt = np.sort(x[i])
            if srt[-1] == srt[0] or srt[1] - srt[0] <= 2 * h[i] or srt[-1] - srt[-2] <= 2 * h[i]:
                jac[i] = np.nan
    return jac


def params_of(raw):
    return dict(k=int(raw["k"]), tau=float(raw["tau"]), method=raw.get("method", "threshold"),
                jacobian=param_flag(raw.get("jacobian", False)))


def verify(root):
    failures = 0
    cases = case_names(root)
    for name in cases:
        inp, raw, exp = read_case(os.path.join(root, name))
        p = params_of(raw)
        x = inp["x"].astype(np.float64)
        y = operator(x, p["k"], p["tau"], p["method"])
        problems = []
        if exp["y"].shape != y.shape:
            problems.append(f"y shape {exp['y'].shape} != {y.shape}")
        else:
            err = np.abs(exp["y"] - y).max(initial=0.0)
            if not err <= Y_ATOL:
                problems.append(f"max |y - expected| = {err:.3g} > {Y_ATOL}")
        if ("jacobian" in exp) != p["jacobian"]:
            problems.append(f"jacobian present = {'jacobian' in exp}, asked = {p['jacobian']}")
        if "jacobian" in exp and not problems:
            s = scales(x, p["tau"], p["method"])[:, None, None]
            ref = exp["jacobian"] * s
            err_a = np.abs(ref - analytic_jacobian(x, y, p["k"], p["tau"], p["method"]) * s).max(initial=0.0)
            fd = fd_jacobian(x, p["k"], p["tau"], p["method"]) * s
            ok = ~np.isnan(fd)
            err_f = np.abs(ref[ok] - fd[ok]).max(initial=0.0)
            if not err_a <= J_ANALYTIC_TOL:
                problems.append(f"scaled Jacobian vs closed form: {err_a:.3g} > {J_ANALYTIC_TOL}")
            if not err_f <= J_FD_TOL:
                problems.append(f"scaled Jacobian vs central differences: {err_f:.3g} > {J_FD_TOL}")
        if problems:
            failures += 1
            print(f"MISMATCH {name} ({p['method']}, k={p['k']}, tau={p['tau']}): " + "; ".join(problems))
    print(f"softtopk peer: {len(cases) - failures} of {len(cases)} cases agree")
    return 1 if failures or not cases else 0


def generate(out, seed, count):
    rng = np.random.default_rng(seed)
    for c in range(count):
        n = int(rng.choice([1, 2, 5, 13]))
        e = int(rng.choice([2, 3, 6, 9, 32]))
        k = int(rng.integers(1, e))
        method = "entropic" if rng.random() < 0.5 else "threshold"
        # Plain Sinkhorn contracts by 1 - V E / (k (E - k)) per iteration: keep the entropic tau moderate.
        tau = float(rng.choice([0.25, 0.5, 1.0, 2.0] if method == "entropic" else [0.05, 0.2, 1.0, 3.0]))
        style = rng.integers(0, 3)
        if style == 0:
            x = rng.integers(-3, 4, size=(n, e)) * 0.5                 # exact ties
        elif style == 1:
            x = rng.normal(0.0, 1.0, size=(n, e))
        else:
            x = rng.normal(0.0, 6.0, size=(n, e))
        if rng.random() < 0.3:
            x[rng.integers(0, n)] = 0.75                               # a constant row
        dtype = np.float32 if rng.random() < 0.5 else np.float64
        params = {"k": k, "tau": tau, "method": method, "jacobian": bool(rng.random() < 0.5)}
        write_case(os.path.join(out, f"case-{c:03d}"), {"x": x.astype(dtype)}, params)
    return 0


if __name__ == "__main__":
    dispatch(sys.argv, __doc__, {"verify": (verify, [str]), "generate": (generate, [str, int, int])})
