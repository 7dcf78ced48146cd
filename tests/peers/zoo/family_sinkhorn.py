"""Bug zoo: entropic OT for routing (`sinkhorn`: knopp, log, S-BASE; proofs/sinkhorn.md, Definition).

Correct implementations: POT's sinkhorn_knopp (float64, potentials from log['u'], log['v']), a log-domain torch
float32 solver running to its cap, a numpy float32 Sinkhorn-Knopp cast to bf16, and Megatron-LM's S-BASE
(sinkhorn(), then topk of the plan, softmax or sigmoid gates). Every case is checked at build time against this
file's float64 log-domain solver (ref_plan) or float64 S-BASE (ref_sbase).
"""

import warnings

import numpy as np
import ot
import torch

import zoo_common as z

FAMILY = "sinkhorn"


def _lse(a, axis):
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def ref_plan(M, reg, iters=None, tol=1e-9, max_iter=1000):
    """Float64 Sinkhorn in the log domain with POT's stopping rule (check at iterations 0, 10, 20, ... after the
    update); `iters` forces exactly that many iterations. Returns plan, iterations."""
    n, e = M.shape
    la, lb = np.log(np.full(n, 1.0 / n)), np.log(np.full(e, 1.0 / e))
    f = np.zeros(n)
    cap = iters if iters is not None else max_iter
    it = 0
    for ii in range(cap):
        g = reg * (lb - _lse((f[:, None] - M) / reg, 0))
        f = reg * (la - _lse((g[None, :] - M) / reg, 1))
        it = ii + 1
        if iters is None and ii % 10 == 0:
            G = np.exp((f[:, None] + g[None, :] - M) / reg)
            if np.linalg.norm(G.sum(0) - np.exp(lb)) < tol:
                break
    return np.exp((f[:, None] + g[None, :] - M) / reg), it


def ref_sbase(logits, k, tol=1e-4):
    x = z.widen(logits)
    c = np.exp(x)
    n, e = c.shape
    d0, d1 = np.ones(n), np.ones(e)
    err = np.inf
    while err > tol:
        d0 = (1.0 / n) / (c @ d1 + 1e-8)
        new = (1.0 / e) / (c.T @ d0 + 1e-8)
        err = np.mean(np.abs(d1 - new))
        d1 = new
    plan = d0[:, None] * c * d1[None, :]
    sel = np.array([sorted(range(e), key=lambda j: (-plan[i, j], j))[:k] for i in range(n)])
    gate = z.softmax(x) if k > 1 else 1.0 / (1.0 + np.exp(-x))
    return sel, np.take_along_axis(gate, sel, 1)


def verify(c, must_agree, forced_iters=None):
    prm, cand = c["params"], c["candidate"]
    tol = {"f32": 2e-3, "f16": 1e-2, "bf16": 2e-2}[c["dtype"]]
    if prm.get("method") == "sbase":
        sel, w = ref_sbase(c["inputs"]["logits"], int(prm.get("k", 1)))
        same = True
        if "experts" in cand:
            same &= bool(np.array_equal(np.asarray(cand["experts"]), sel))
        if "weights" in cand:
            same &= z.max_rel_err(cand["weights"], w) <= z.TOL[c["dtype"]]
    else:
        M = -z.widen(c["inputs"]["logits"])
        iters = forced_iters
        if iters is None and "iterations" in cand:
            iters = int(np.asarray(cand["iterations"]))
        plan, _ = ref_plan(M, float(prm["reg"]), iters, float(prm.get("tol", 1e-9)), int(prm.get("max_iter", 1000)))
        same = z.max_rel_err(cand["plan"], plan) <= tol
    z.require(same == must_agree, f"{c['name']}: build-time check says {'agrees' if same else 'differs'}")


def make_logits(seed, n, e, scale=1.0, shift=0.0):
    return (z.rng(seed).standard_normal((n, e)) * scale + shift).astype(np.float32)


def pot_knopp(x, reg, max_iter=1000, tol=1e-9):
    """POT ot.sinkhorn(method='sinkhorn') in float64 on M = -logits; potentials f = reg log u, g = reg log v."""
    M = -z.widen(x)
    n, e = M.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        G, log = ot.sinkhorn(np.full(n, 1.0 / n), np.full(e, 1.0 / e), M, reg, method="sinkhorn",
                             numItermax=max_iter, stopThr=tol, log=True)
    return G, reg * np.log(log["u"]), reg * np.log(log["v"])


def torch_log_domain(x_t, reg, max_iter=1000, tol=1e-9, check_every=10, stop_early=False):
    """Log-domain Sinkhorn in torch float32 (POT sinkhorn_log's update order); returns every output."""
    M = -x_t.float()
    n, e = M.shape
    la = torch.log(torch.full((n,), 1.0 / n))
    lb = torch.log(torch.full((e,), 1.0 / e))
    f = torch.zeros(n)
    g = torch.zeros(e)
    converged, it, err = False, 0, float("inf")
    for ii in range(max_iter - 1 if stop_early else max_iter):
        g = reg * (lb - torch.logsumexp((f[:, None] - M) / reg, 0))
        f = reg * (la - torch.logsumexp((g[None, :] - M) / reg, 1))
        it = ii + 1
        if ii % check_every == 0:
            G = torch.exp((f[:, None] + g[None, :] - M) / reg)
            err = float(torch.linalg.norm(G.sum(0) - torch.exp(lb)))
            if err < tol:
                converged = True
                break
    G = torch.exp((f[:, None] + g[None, :] - M) / reg)
    if stop_early:
        it = max_iter  # the loop ran one iteration less than it reports
    return {"plan": G.numpy(), "f": f.numpy(), "g": g.numpy(), "iterations": np.array(it, dtype=np.int32),
            "err": np.array(err, dtype=np.float32), "converged": np.array(converged),
            "status": np.array(0 if converged else 1, dtype=np.int32)}


def numpy_knopp_f32(x, reg, max_iter=1000, tol=1e-9):
    """Sinkhorn-Knopp in numpy float32 (u, v scalings); returns the plan as float32."""
    K = np.exp(z.widen(x).astype(np.float32) / np.float32(reg))
    n, e = K.shape
    a, b = np.full(n, 1 / n, dtype=np.float32), np.full(e, 1 / e, dtype=np.float32)
    u, v = np.full(n, 1 / n, dtype=np.float32), np.full(e, 1 / e, dtype=np.float32)
    for ii in range(max_iter):
        v = b / (K.T @ u)
        u = a / (K @ v)
        if ii % 10 == 0 and np.linalg.norm((u[:, None] * K * v[None, :]).sum(0) - b) < tol:
            break
    return u[:, None] * K * v[None, :]


def megatron_sbase(logits_t, k, out_dtype, eps=1e-8, gates_from_plan=False):
    """Megatron-LM sinkhorn_load_balancing: sinkhorn(logits.float()) (exp, no shift, eps = 1e-8, tol 1e-4), topk of
    the plan, gates softmax(logits) (k > 1) or sigmoid(logits) (k = 1) at those experts."""
    cost = torch.exp(logits_t.float())
    n, e = cost.shape
    d0, d1 = torch.ones(n), torch.ones(e)
    d1_old, error = d1, 1e9
    while error > 1e-4:
        d0 = (1 / n) * 1 / (torch.sum(d1 * cost, 1) + eps)
        d1 = (1 / e) * 1 / (torch.sum(d0.unsqueeze(1) * cost, 0) + eps)
        error = torch.mean(torch.abs(d1_old - d1))
        d1_old = d1
    plan = d1 * cost * d0.unsqueeze(1)
    _, sel = torch.topk(plan, k, dim=1)
    if gates_from_plan:
        gate = plan
    else:
        gate = torch.softmax(logits_t.float(), -1) if k > 1 else torch.sigmoid(logits_t.float())
    return {"experts": sel.numpy(), "weights": z.from_torch(torch.gather(gate, 1, sel).to(out_dtype))}


def cases():
    out = []

    def add(name, kind, dtype, style, why, logits, params, cand, check=True, forced_iters=None):
        c = z.case(name=f"sinkhorn/{name}", algorithm="sinkhorn", kind=kind, dtype=dtype, style=style, why=why,
                   inputs={"logits": logits}, params=params, candidate=cand)
        if check and kind != "malformed":
            verify(c, kind == "correct", forced_iters)
        out.append(c)

    n, e = 256, 16
    # ---- correct ------------------------------------------------------------------------------------------
    x = make_logits(601, n, e)
    G, f, g = pot_knopp(x, 0.1)
    add("pot-knopp/f32/correct", "correct", "f32", "POT ot.sinkhorn(method='sinkhorn'), float64, outputs cast to float32",
        "POT 0.8.2 in float64 on M = -logits, reg 0.1; plan and potentials f = reg log u, g = reg log v as float32",
        x, {"method": "knopp", "reg": 0.1}, {"plan": G.astype(np.float32), "f": f.astype(np.float32), "g": g.astype(np.float32)})

    x = make_logits(602, n, e)
    add("torch-log-domain/f32/correct", "correct", "f32", "log-domain Sinkhorn in torch float32 (POT sinkhorn_log order)",
        "float32 logsumexp updates; tol 1e-9 is out of reach in float32, so it runs to max_iter and says so",
        x, {"method": "log", "reg": 0.05}, torch_log_domain(torch.from_numpy(x), 0.05))

    x = make_logits(603, n, e)
    xb = z.cast(x, "bf16")
    add("numpy-knopp/bf16/correct", "correct", "bf16", "Sinkhorn-Knopp scalings in numpy float32, plan stored as bf16",
        "bf16 logits, float32 u/v iterations (reg 0.2), the plan cast to bf16",
        xb, {"method": "knopp", "reg": 0.2}, {"plan": z.cast(numpy_knopp_f32(xb, 0.2), "bf16")})

    x = make_logits(604, 512, e)
    add("megatron-sbase-k2/f32/correct", "correct", "f32", "Megatron-LM sinkhorn_load_balancing (S-BASE), topk 2",
        "float32 sinkhorn on exp(logits) with eps 1e-8 and tol 1e-4, topk of the plan, softmax gates",
        x, {"method": "sbase", "k": 2}, megatron_sbase(torch.from_numpy(x), 2, torch.float32))

    x = make_logits(605, 512, e)
    xb = z.cast(x, "bf16")
    add("megatron-sbase-k1/bf16/correct", "correct", "bf16", "Megatron-LM S-BASE, topk 1, bf16 model",
        "bf16 logits, float32 sinkhorn, top-1 of the plan, sigmoid gate cast to bf16",
        xb, {"method": "sbase", "k": 1}, megatron_sbase(z.as_torch(xb), 1, torch.bfloat16))

    # ---- bugs ---------------------------------------------------------------------------------------------
    x = make_logits(611, n, e)
    d = z.delta("f32")
    G, f, g = pot_knopp(x, 0.1 * (1 + d))
    add("reg-times-1+d/f32/bug", "bug", "f32", "POT sinkhorn called with a slightly different reg",
        f"reg multiplied by (1 + {d}) (a temperature schedule one step off)",
        x, {"method": "knopp", "reg": 0.1}, {"plan": G.astype(np.float32)})

    x = make_logits(612, n, e)
    xb = z.cast(x, "bf16")
    d = z.delta("bf16")
    add("reg-times-1+d/bf16/bug", "bug", "bf16", "Sinkhorn-Knopp in float32 with a slightly different reg, bf16 plan",
        f"reg multiplied by (1 + {d})", xb, {"method": "knopp", "reg": 0.2},
        {"plan": z.cast(numpy_knopp_f32(xb, 0.2 * (1 + d)), "bf16")})

    x = make_logits(613, n, e)
    cand = torch_log_domain(torch.from_numpy(x), 0.02, max_iter=30, stop_early=True)
    add("one-iteration-early/f32/bug", "bug", "f32", "log-domain Sinkhorn with range(max_iter - 1)",
        "the loop runs max_iter - 1 = 29 iterations but reports 30 (and the plan of iteration 29)",
        x, {"method": "log", "reg": 0.02, "max_iter": 30}, cand)

    x = make_logits(614, n, e)
    cand = torch_log_domain(torch.from_numpy(x).double(), 0.1, tol=1e-6, check_every=1)
    z.require(int(cand["iterations"]) % 10 != 1, "the every-iteration check stops off the 10-grid")
    cand = {k2: (v.astype(np.float32) if v.dtype == np.float64 else v) for k2, v in cand.items()}
    add("err-checked-every-iteration/f32/bug", "bug", "f32", "Sinkhorn testing the marginal error after every iteration",
        "stops at the first iteration with err < tol instead of checking every 10th (iterations 0, 10, 20, ...)",
        x, {"method": "log", "reg": 0.1, "tol": 1e-6}, cand, check=False)

    x = make_logits(615, 512, e)
    x[:, 5] -= 100.0  # a dead expert: exp(X) underflows to 0 in float32 for its whole column
    good = megatron_sbase(torch.from_numpy(x), 2, torch.float32)
    bad = megatron_sbase(torch.from_numpy(x), 2, torch.float32, eps=0.0)
    z.require(np.array_equal(good["experts"], ref_sbase(x, 2)[0]), "with eps the float32 S-BASE is right")
    add("sbase-eps-forgotten/f32/bug", "bug", "f32", "Megatron-LM sinkhorn() without the + eps",
        "d1 = 1/E / (C^T d0) without eps = 1e-8: a dead expert (logits near -100, exp underflows to 0) gives 1/0, "
        "the plan turns NaN and topk picks garbage",
        x, {"method": "sbase", "k": 2}, bad)

    x = make_logits(616, n, e)
    xb = z.cast(x, "bf16")
    cand = torch_log_domain(z.as_torch(xb), 0.1, max_iter=300)
    cand = {"plan": z.cast(cand["plan"], "bf16"), "f": z.cast(cand["f"] / 0.1, "bf16"), "g": z.cast(cand["g"] / 0.1, "bf16")}
    add("potentials-not-times-reg/bf16/bug", "bug", "bf16", "Sinkhorn returning log-scalings as potentials",
        "f and g written as log u, log v instead of reg*log u, reg*log v (the plan is right)",
        xb, {"method": "log", "reg": 0.1, "max_iter": 300}, cand, check=False)

    x = make_logits(617, 512, e)
    add("sbase-gates-from-plan/f32/bug", "bug", "f32", "S-BASE gating with the balanced plan as gate",
        "gate weights read from the Sinkhorn plan instead of softmax(logits) (the plan only selects)",
        x, {"method": "sbase", "k": 2}, megatron_sbase(torch.from_numpy(x), 2, torch.float32, gates_from_plan=True))

    x = make_logits(618, n, e)
    xh = x.astype(np.float16)
    cand = torch_log_domain(torch.from_numpy(xh), 0.05, max_iter=50)
    z.require(not bool(cand["converged"]), "the cap is hit")
    cand = {"plan": cand["plan"].astype(np.float16), "iterations": cand["iterations"], "converged": np.array(True)}
    add("converged-at-cap/f16/bug", "bug", "f16", "Sinkhorn that reports success when the loop ends",
        "max_iter = 50 reached without meeting tol, converged written as true", xh,
        {"method": "log", "reg": 0.05, "max_iter": 50}, cand, check=False)

    x = make_logits(619, 512, e)
    xb = z.cast(x, "bf16")
    cand = megatron_sbase(z.as_torch(xb), 2, torch.bfloat16)
    w = z.widen(cand["weights"])
    i = int(np.argmax(np.abs(w[:, 0] - w[:, 1])))
    cand["weights"] = z.swap_one_token(cand["weights"], i, 0, 1)
    add("sbase-swap-one-token/bf16/bug", "bug", "bf16", "S-BASE gating, one token's gates exchanged",
        f"token {i}: the gates of its two experts swapped", xb, {"method": "sbase", "k": 2}, cand)

    # ---- malformed ----------------------------------------------------------------------------------------
    x = make_logits(621, 32, 8)
    add("reg-zero/f32/malformed", "malformed", "f32", "config typo", "reg = 0",
        x, {"method": "log", "reg": 0.0}, {"plan": np.full((32, 8), 1 / 256, dtype=np.float32)})
    return out
