"""Bug zoo: top-k with expert capacity and dropping (`capacity`, proofs/capacity.md, Definition).

Correct implementations follow DeepSpeed top2gating (cumsum locations, first choices before second, renormalize
after dropping), Tutel (capacity k*floor(cf*ceil(N/E)), gates normalized before dropping), Megatron-LM (drop_policy
"probs" over the top-k softmax) and flaxformer (batch-prioritized routing). Every case is checked at build time
against this file's float64 reference (ref_capacity).
"""

import math
from fractions import Fraction

import numpy as np
import torch

import zoo_common as z

FAMILY = "capacity"


def capacity_of(n, e, k, cf, rounding="ceil", min_capacity=0):
    v = Fraction(cf) * n * k / e
    if rounding == "ceil":
        c = math.ceil(v)
    elif rounding == "floor":
        c = math.floor(v)
    elif rounding == "round":
        c = round(v)  # Fraction rounds half to even
    else:
        c = k * math.floor(Fraction(cf) * (-(-n // e)))
    return max(c, min_capacity)


def ref_capacity(logits, k, C, policy="choice-position", normalize="none", score="softmax", sel=None):
    """Float64 reference following the priority/dispatch table of proofs/capacity.md. `sel` replaces the top-k
    selection by another valid one (equal keys, a different order among exact ties: proofs/tolerance.md, Definition: Decisions and near-ties)."""
    x = z.widen(logits)
    n, e = x.shape
    p = z.softmax(x) if score == "softmax" else 1.0 / (1.0 + np.exp(-x))
    ref_sel = np.array([sorted(range(e), key=lambda j: (-p[i, j], j))[:k] for i in range(n)])
    if sel is None:
        sel = ref_sel
    else:
        sel = np.asarray(sel, dtype=np.int64)
        z.require(np.array_equal(np.take_along_axis(p, sel, 1), np.take_along_axis(p, ref_sel, 1)),
                  "the given selection is a valid top-k")
    w = np.take_along_axis(p, sel, 1)
    if normalize == "before":
        w = w / w.sum(1, keepdims=True)
    top1 = w[:, 0] if normalize != "before" else np.take_along_axis(p, sel, 1)[:, 0]
    rho = {t: r for r, t in enumerate(sorted(range(n), key=lambda i: (-top1[i], i)))}
    reqs = [(i, j) for i in range(n) for j in range(k)]
    pri = {
        "position": lambda r: (r[0], r[1]),
        "choice-position": lambda r: (r[1], r[0]),
        "score": lambda r: (-w[r], r[0], r[1]),
        "logit": lambda r: (-x[r[0], sel[r]], r[0], r[1]),
        "batch-priority": lambda r: (r[1], rho[r[0]]),
    }[policy]
    disp = pri if policy in ("choice-position", "batch-priority") else (lambda r: (r[0], r[1]))
    load = np.zeros(e, dtype=np.int64)
    kept = np.zeros((n, k), dtype=bool)
    for r in sorted(reqs, key=pri):
        if load[sel[r]] < C:
            load[sel[r]] += 1
            kept[r] = True
    slots = -np.ones((n, k), dtype=np.int64)
    nxt = np.zeros(e, dtype=np.int64)
    for r in sorted(reqs, key=disp):
        if kept[r]:
            slots[r] = nxt[sel[r]]
            nxt[sel[r]] += 1
    experts = np.where(kept, sel, -1)
    weights = np.where(kept, w, 0.0)
    if normalize == "after":
        s = weights.sum(1, keepdims=True)
        weights = np.where(s > 0, weights / np.where(s > 0, s, 1.0), 0.0)
    return {"experts": experts, "weights": weights, "slots": slots, "load": load}


def verify(c, C, must_agree, sel=None):
    prm = c["params"]
    ref = ref_capacity(c["inputs"]["logits"], int(prm["k"]), C, prm.get("policy", "choice-position"),
                       prm.get("normalize", "none"), prm.get("score", "softmax"), sel)
    same = True
    for name in ("experts", "slots", "load"):
        if name in c["candidate"]:
            got = np.asarray(c["candidate"][name])
            same &= got.shape == ref[name].shape and got.dtype.kind in "iu" and bool(np.array_equal(got, ref[name]))
    if "weights" in c["candidate"]:
        same &= z.max_abs_err(c["candidate"]["weights"], ref["weights"]) <= z.TOL[c["dtype"]] * 1.0
    z.require(same == must_agree, f"{c['name']}: build-time check says {'agrees' if same else 'differs'}")
    return ref


def make_logits(seed, n, e, scale=1.5):
    return (z.rng(seed).standard_normal((n, e)) * scale).astype(np.float32)


def deepspeed_top2(logits_t, C, out_dtype, locations2_offset=True, load_before_drop=False):
    """DeepSpeed top2gating without noise: one-hot masks, cumsum locations, drop, renormalize the kept (after)."""
    gates = torch.softmax(logits_t.float(), dim=1)
    n, e = gates.shape
    idx1 = torch.argmax(gates, dim=1)
    mask1 = torch.nn.functional.one_hot(idx1, e)
    masked = logits_t.float().masked_fill(mask1.bool(), float("-inf"))
    idx2 = torch.argmax(masked, dim=1)
    mask2 = torch.nn.functional.one_hot(idx2, e)
    loc1 = torch.cumsum(mask1, dim=0) - 1
    loc2 = torch.cumsum(mask2, dim=0) - 1
    if locations2_offset:
        loc2 = loc2 + torch.sum(mask1, dim=0, keepdim=True)
    requested = mask1.sum(0) + mask2.sum(0)
    mask1 = mask1 * torch.lt(loc1, C)
    mask2 = mask2 * torch.lt(loc2, C)
    g1 = (gates * mask1).sum(1)
    g2 = (gates * mask2).sum(1)
    denom = torch.clamp(g1 + g2, min=torch.finfo(torch.float32).eps)
    g1, g2 = g1 / denom, g2 / denom
    kept1, kept2 = mask1.sum(1).bool(), mask2.sum(1).bool()
    experts = torch.stack([torch.where(kept1, idx1, -1), torch.where(kept2, idx2, -1)], 1)
    slots = torch.stack([torch.where(kept1, (loc1 * mask1).sum(1), -1), torch.where(kept2, (loc2 * mask2).sum(1), -1)], 1)
    weights = torch.stack([g1, g2], 1).to(out_dtype)
    load = requested if load_before_drop else mask1.sum(0) + mask2.sum(0)
    return {"experts": experts.numpy(), "weights": z.from_torch(weights), "slots": slots.numpy(),
            "load": load.numpy().astype(np.int32), "_sel": torch.stack([idx1, idx2], 1).numpy()}


def tutel_topk(logits_t, k, C, out_dtype, drop_by_score=False):
    """Tutel-style: softmax in float32, top-k, gates normalized over the k before dropping, per-choice cumsum locations."""
    gates = torch.softmax(logits_t.float(), dim=1)
    n, e = gates.shape
    w, sel = torch.topk(gates, k, dim=1)
    w = w / w.sum(1, keepdim=True)
    experts = sel.clone()
    slots = torch.full((n, k), -1, dtype=torch.int64)
    load = torch.zeros(e, dtype=torch.int64)
    if not drop_by_score:
        for j in range(k):
            onehot = torch.nn.functional.one_hot(sel[:, j], e)
            loc = torch.cumsum(onehot, 0) - 1 + load[None, :]
            loc = (loc * onehot).sum(1)
            keep = loc < C
            slots[:, j] = torch.where(keep, loc, -1)
            load += (onehot * keep[:, None]).sum(0)
    else:
        # the bug: every expert keeps its C highest-weight requests regardless of the choice rank
        flat_e, flat_w = sel.reshape(-1), w.reshape(-1)
        order = torch.argsort(-flat_w.double() * 4 + torch.arange(n * k) * 1e-12)
        keep = torch.zeros(n * k, dtype=torch.bool)
        for r in order.tolist():
            if load[flat_e[r]] < C:
                load[flat_e[r]] += 1
                keep[r] = True
        keep = keep.reshape(n, k)
        nxt = torch.zeros(e, dtype=torch.int64)
        for j in range(k):
            for i in range(n):
                if keep[i, j]:
                    slots[i, j] = nxt[sel[i, j]]
                    nxt[sel[i, j]] += 1
    kept = slots >= 0
    experts = torch.where(kept, experts, -1)
    weights = torch.where(kept, w, torch.zeros_like(w)).to(out_dtype)
    return {"experts": experts.numpy(), "weights": z.from_torch(weights), "slots": slots.numpy(),
            "load": load.numpy().astype(np.int32), "_sel": sel.numpy()}


def megatron_probs(logits_t, k, C, out_dtype, higher_index_wins=False):
    """Megatron-LM drop_policy="probs", pre_softmax=False: topk on logits, softmax over the k, each expert keeps its
    C most probable tokens (a stable descending sort, so equal probabilities keep the lower token)."""
    n, e = logits_t.shape
    vals, sel = torch.topk(logits_t.float(), k, dim=1)
    probs = torch.softmax(vals, dim=-1)
    routing = torch.zeros(n, e).scatter(1, sel, probs)
    mask = torch.zeros(n, e, dtype=torch.bool).scatter(1, sel, True)
    keep = torch.zeros(n, e, dtype=torch.bool)
    for x in range(e):
        col = torch.where(mask[:, x], routing[:, x], torch.tensor(-1.0))
        if higher_index_wins:
            order = n - 1 - torch.sort(torch.flip(col, [0]), descending=True, stable=True).indices
        else:
            order = torch.sort(col, descending=True, stable=True).indices
        take = order[: min(C, int(mask[:, x].sum()))]
        keep[take, x] = True
    kept = torch.gather(keep, 1, sel)
    load = keep.sum(0)
    # dispatch: tokens permuted by expert in token order
    slot_of = torch.cumsum(keep.long(), 0) - 1
    slots = torch.where(kept, torch.gather(slot_of, 1, sel), -1)
    experts = torch.where(kept, sel, -1)
    weights = torch.where(kept, probs, torch.zeros_like(probs)).to(out_dtype)
    return {"experts": experts.numpy().astype(np.int32), "weights": z.from_torch(weights),
            "slots": slots.numpy().astype(np.int32), "load": load.numpy().astype(np.int32), "_sel": sel.numpy()}


def flax_batch_priority(x, k, C):
    """flaxformer batch-prioritized routing in numpy float32: tokens sorted by top-1 probability, choices in order."""
    p = z.softmax(x.astype(np.float32))
    n, e = p.shape
    sel = np.argsort(-p, axis=1, kind="stable")[:, :k]
    w = np.take_along_axis(p, sel, 1)
    order = np.argsort(-w[:, 0], kind="stable")
    experts = -np.ones((n, k), dtype=np.int32)
    slots = -np.ones((n, k), dtype=np.int32)
    weights = np.zeros((n, k), dtype=np.float32)
    load = np.zeros(e, dtype=np.int32)
    for j in range(k):
        onehot = np.zeros((n, e), dtype=np.int32)
        onehot[np.arange(n), sel[order, j]] = 1  # row r is the token of priority rank r
        pos = np.cumsum(onehot, axis=0) - 1 + load[None, :]
        for r, i in enumerate(order):
            ex = sel[i, j]
            if pos[r, ex] < C:
                experts[i, j], slots[i, j], weights[i, j] = ex, pos[r, ex], w[i, j]
        load += np.minimum(onehot.sum(0), np.maximum(C - load, 0))
    return {"experts": experts, "weights": weights, "slots": slots, "load": load}


def cases():
    out = []

    def add(name, kind, dtype, style, why, logits, params, candidate, C, check=True):
        sel = candidate.pop("_sel", None)
        c = z.case(name=f"capacity/{name}", algorithm="capacity", kind=kind, dtype=dtype, style=style, why=why,
                   inputs={"logits": logits}, params=params, candidate=candidate)
        if check and kind != "malformed":
            verify(c, C, kind == "correct", sel)
        out.append(c)
        return c

    # ---- correct ------------------------------------------------------------------------------------------
    n, e = 1024, 16
    x = make_logits(201, n, e)
    C = capacity_of(n, e, 2, 1.0, "ceil", 4)
    add("deepspeed-top2/f32/correct", "correct", "f32", "DeepSpeed top2gating (no noise, drop_tokens=True)",
        "float32 softmax, argmax masks, cumsum locations (second choices after all first), renormalize after dropping",
        x, {"k": 2, "capacity_factor": 1.0, "min_capacity": 4, "policy": "choice-position", "normalize": "after"},
        deepspeed_top2(torch.from_numpy(x), C, torch.float32), C)

    n, e = 1000, 16
    x = make_logits(202, n, e)
    xb = z.cast(x, "bf16")
    C = capacity_of(n, e, 2, 1.25, "tutel")
    add("tutel/bf16/correct", "correct", "bf16", "Tutel fast_dispatch gating (normalize_gate=True)",
        "bf16 logits, float32 softmax, torch.topk (exact bf16 ties go to whichever expert topk returns: allowed by "
        "proofs/tolerance.md, Definition: Decisions and near-ties), gates normalized over the top-2 before dropping, capacity 2*floor(1.25*ceil(N/E))",
        xb, {"k": 2, "capacity_factor": 1.25, "rounding": "tutel", "policy": "choice-position", "normalize": "before"},
        tutel_topk(z.as_torch(xb), 2, C, torch.bfloat16), C)

    n, e = 512, 16
    x = make_logits(203, n, e)
    xh = x.astype(np.float16)
    C = capacity_of(n, e, 2, 1.0)
    add("megatron-probs/f16/correct", "correct", "f16", "Megatron-LM topk_softmax_with_capacity, drop_policy=probs",
        "float16 logits, topk then softmax over the 2 (before), each expert keeps its C most probable, token-order slots",
        xh, {"k": 2, "capacity_factor": 1.0, "policy": "score", "normalize": "before"},
        megatron_probs(torch.from_numpy(xh), 2, C, torch.float16), C)

    n, e = 500, 24
    x = make_logits(204, n, e)
    C = capacity_of(n, e, 2, 1.1, "round")
    add("flaxformer-batch-priority/f32/correct", "correct", "f32", "flaxformer TokensChooseMaskedRouter, batch_prioritized_routing",
        "numpy float32: tokens ordered by top-1 probability, first choices then second, capacity round(1.1*N*k/E)",
        x, {"k": 2, "capacity_factor": 1.1, "rounding": "round", "policy": "batch-priority"},
        flax_batch_priority(x, 2, C), C)

    n, e = 32, 8
    xt = (np.round(z.rng(206).standard_normal((n, e)) * 2) / 2).astype(np.float32)  # coarse logits: rows full of exact ties
    C = capacity_of(n, e, 5, 0.5)
    # A raw-score completion of dropped choices rejected this candidate (fixed 2026-12-06, proofs/capacity.md).
    add("megatron-probs-many-ties/f32/correct", "correct", "f32", "Megatron-LM topk_softmax_with_capacity, drop_policy=probs, k=5",
        "torch.topk picks any of several exactly tied experts at the k-th place, and some of those requests are dropped: "
        "a valid routing whatever expert topk returned (the validator completes dropped choices by the policy's weights)",
        xt, {"k": 5, "capacity_factor": 0.5, "policy": "score", "normalize": "before"},
        megatron_probs(torch.from_numpy(xt), 5, C, torch.float32), C)

    # ---- bugs ---------------------------------------------------------------------------------------------
    n, e = 1000, 16  # cf*N*k/E = 125.0 * 1.0 ... use cf = 1.1: 137.5, ceil 138, floor 137
    x = make_logits(211, n, e)
    Cwrong = capacity_of(n, e, 2, 1.1, "floor")
    add("floor-instead-of-ceil/f32/bug", "bug", "f32", "DeepSpeed-style top2 with capacity = int(N/E*cf*k)",
        "capacity truncated (137) where ceil (138) was asked: one request too many dropped per full expert",
        x, {"k": 2, "capacity_factor": 1.1, "policy": "choice-position", "normalize": "after"},
        deepspeed_top2(torch.from_numpy(x), Cwrong, torch.float32), capacity_of(n, e, 2, 1.1))

    n, e = 1000, 16
    x = make_logits(212, n, e)
    xb = z.cast(x, "bf16")
    C = capacity_of(n, e, 2, 1.0, "tutel")
    add("score-drop-for-choice-position/bf16/bug", "bug", "bf16", "Tutel-style gating with a 'drop lowest gate' shortcut",
        "choice-position asked; each expert keeps its highest-weight requests, so second choices evict first choices",
        xb, {"k": 2, "capacity_factor": 1.0, "rounding": "tutel", "policy": "choice-position", "normalize": "before"},
        tutel_topk(z.as_torch(xb), 2, C, torch.bfloat16, drop_by_score=True), C)

    n, e = 1024, 16
    x = make_logits(213, n, e)
    C = capacity_of(n, e, 2, 1.0)
    cand = deepspeed_top2(torch.from_numpy(x), C, torch.float32)
    add("normalize-after-when-before-asked/f32/bug", "bug", "f32", "mesh/Tutel config served by DeepSpeed's gate",
        "normalize=before asked (renormalize over the 2 selected, then drop); renormalized over the kept instead",
        x, {"k": 2, "capacity_factor": 1.0, "policy": "choice-position", "normalize": "before"}, cand, C)

    n, e = 512, 16
    xg = (np.round(z.rng(214).standard_normal((n, e)) * 3) / 2).astype(np.float16)  # coarse logits: many exact ties
    C = capacity_of(n, e, 2, 1.0)
    good = megatron_probs(torch.from_numpy(xg), 2, C, torch.float16)
    bad = megatron_probs(torch.from_numpy(xg), 2, C, torch.float16, higher_index_wins=True)
    z.require(not np.array_equal(good["experts"], bad["experts"]), "tie bug changes the kept set")
    # Exact ties at the capacity boundary are free (proofs/tolerance.md, Definition: Decisions and near-ties: the checker validates the candidate's choice
    # where the reference sees a boundary tie), so keeping the higher token index there is correct; the kept set still
    # differs from the lower-index rule's, which the self-check above asserts. The reference-order check is skipped.
    add("tie-to-higher-token/f16/correct", "correct", "f16", "Megatron-LM probs policy with a reversed stable sort",
        "equal probabilities at an expert's capacity boundary keep the higher token index: a valid choice at an exact tie",
        xg, {"k": 2, "capacity_factor": 1.0, "policy": "score", "normalize": "before"}, bad, C, check=False)

    n, e = 1024, 16
    x = make_logits(215, n, e)
    xb = z.cast(x, "bf16")
    C = capacity_of(n, e, 2, 1.0, "ceil", 4)
    add("locations2-offset-forgotten/bf16/bug", "bug", "bf16", "DeepSpeed top2gating without '+ sum(mask1)'",
        "second-choice locations start at 0 instead of after the first choices: slots collide and too much is kept",
        xb, {"k": 2, "capacity_factor": 1.0, "min_capacity": 4, "policy": "choice-position", "normalize": "after"},
        deepspeed_top2(z.as_torch(xb), C, torch.bfloat16, locations2_offset=False), C)

    n, e = 1024, 16
    x = make_logits(216, n, e)
    C = capacity_of(n, e, 2, 1.0)
    add("load-before-drop/f32/bug", "bug", "f32", "DeepSpeed top2gating returning exp_counts before masking",
        "load counts the requested tokens per expert (before the capacity drop), not the kept ones",
        x, {"k": 2, "capacity_factor": 1.0, "policy": "choice-position", "normalize": "after"},
        deepspeed_top2(torch.from_numpy(x), C, torch.float32, load_before_drop=True), C)

    n, e = 48, 32
    x = make_logits(217, n, e, 2.5)
    xh = x.astype(np.float16)
    C = capacity_of(n, e, 2, 1.0, "ceil", 4)
    add("min-capacity-ignored/f16/bug", "bug", "f16", "DeepSpeed top2gating with min_capacity dropped from _capacity",
        "capacity = ceil(N*k/E) = 3 where min_capacity = 4 was asked",
        xh, {"k": 2, "capacity_factor": 1.0, "min_capacity": 4, "policy": "choice-position", "normalize": "after"},
        deepspeed_top2(torch.from_numpy(xh), capacity_of(n, e, 2, 1.0), torch.float16), C)

    n, e = 1024, 16
    x = make_logits(218, n, e)
    xh = x.astype(np.float16)
    C = capacity_of(n, e, 2, 1.0, "ceil", 4)
    cand = deepspeed_top2(torch.from_numpy(xh), C, torch.float16)
    wf = z.widen(cand["weights"])
    i = int(np.argmax(np.where((cand["experts"] >= 0).all(1), np.abs(wf[:, 0] - wf[:, 1]), -1)))
    cand["weights"] = z.swap_one_token(cand["weights"], i, 0, 1)
    add("swap-one-token/f16/bug", "bug", "f16", "DeepSpeed top2gating, combine weights of one token exchanged",
        f"token {i}: the weights of its two kept experts swapped", xh,
        {"k": 2, "capacity_factor": 1.0, "min_capacity": 4, "policy": "choice-position", "normalize": "after"}, cand, C)

    # ---- malformed ----------------------------------------------------------------------------------------
    x = make_logits(221, 64, 8)
    cand = deepspeed_top2(torch.from_numpy(x), 16, torch.float32)
    add("negative-capacity/f32/malformed", "malformed", "f32", "config typo",
        "capacity = -1", x, {"k": 2, "capacity": -1, "normalize": "after"}, cand, 0)
    xi = x.copy()
    xi[3, 2] = np.inf
    add("inf-logits/f32/malformed", "malformed", "f32", "logits dumped after an overflow",
        "+Inf in the logits", xi, {"k": 2, "normalize": "after"}, cand, 0)
    return out
