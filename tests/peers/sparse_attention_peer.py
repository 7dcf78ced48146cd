#!/usr/bin/python3
"""PyTorch float64 peer for moba, nsa, resa, leank, leank-mask and linear (proofs/attention-sparse.md, Definition).

Written from the Definition and the decisions of proofs/attention-sparse.md, not from the C# references: masks and
selections are built with torch/numpy array operations (stable sorts for the ranking rule), attention with
einsum + masked softmax. Run with Debian's /usr/bin/python3 (python3-torch, python3-numpy).

  sparse_attention_peer.py verify ALGORITHM CASES_DIR
      every CASE/{input.npz, params.json, expected.npz} under CASES_DIR: recompute the outputs and compare with
      expected.npz: float outputs within |peer - expected| <= 1e-10 max(1, |expected|) (-inf exactly where expected
      has -inf), boolean outputs exactly; prints "N of M cases agree", exit 1 on any disagreement (or no cases).
      nsa's block selection is judged as a top set up to ties within 1e-12 (relative): where the expected selection
      is one, the peer adopts it and computes the output from it.

params.json values may be JSON numbers/booleans or their text ("true", "0.5"), as the CLI writes them.
"""
import math
import os
import sys

import numpy as np
import torch

import peer_args
from peer_args import case_names, dispatch, param_value, read_case

TOLERANCE = 1e-10
TIE_SLACK = 1e-12   # selection scores closer than this (relative) are a tie that rounding may order either way
NEG = float("-inf")


def fail(message):
    peer_args.fail("sparse_attention_peer", message)


def t64(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def top_stable(scores, k):
    """Indices of the k largest scores, ties to the lower index (a stable sort of the negated scores)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return set(int(i) for i in order[:k])


def near_top(scores, k, candidate, slack):
    """True when candidate (a set of k indices) is a top-k set of scores up to ties within slack: every chosen score is at
    least every unchosen one minus slack. Two float64 computations of the same mathematical tie (coarse inputs: equal
    blocks) may order it differently, so a selection is judged by this rule, not by the peer's own tie-break."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(candidate) != k or any(not 0 <= c < len(scores) for c in candidate):
        return False
    if k == 0 or k == len(scores):
        return True
    chosen = scores[list(candidate)]
    others = np.delete(scores, list(candidate))
    return bool(chosen.min() >= others.max() - slack)


def attend(q, k, v, allowed, scale):
    """q [Hq,Tq,D], k [Hkv,Tk,D], v [Hkv,Tk,Dv], allowed [Hq,Tq,Tk] bool -> out [Hq,Tq,Dv], lse [Hq,Tq]."""
    group = q.shape[0] // k.shape[0]
    k = k.repeat_interleave(group, dim=0)
    v = v.repeat_interleave(group, dim=0)
    s = torch.einsum("hid,hjd->hij", q, k) * scale
    s = s.masked_fill(~allowed, NEG)
    lse = torch.logsumexp(s, dim=-1)
    p = torch.exp(s - lse[..., None]).masked_fill(~allowed, 0.0)
    return torch.einsum("hij,hjd->hid", p, v), lse


def default_scale(params, d):
    return float(params["scale"]) if "scale" in params else 1.0 / math.sqrt(d)


def moba(data, p):
    q, k, v = t64(data["q"]), t64(data["k"]), t64(data["v"])
    b_, h_, t_, d_ = q.shape
    bc, topk = int(p["chunk_size"]), int(p["top_k"])
    nc = -(-t_ // bc)
    outs, lses = [], []
    for b in range(b_):
        allowed = torch.zeros(h_, t_, t_, dtype=torch.bool)
        for h in range(h_):
            means = torch.stack([k[b, h, c * bc:min(t_, (c + 1) * bc)].mean(0) for c in range(nc)])   # [nc, D]
            gate = (q[b, h] @ means.T).numpy().copy()                                             # [T, nc]
            for t in range(t_):
                row = gate[t]
                for c in range(nc):
                    if t < (c + 1) * bc:
                        row[c] = NEG
                row[t // bc] = float("inf")
                for c in top_stable(row, min(topk, nc)):
                    allowed[h, t, c * bc:min(t_, (c + 1) * bc)] = True
        allowed &= torch.tril(torch.ones(t_, t_, dtype=torch.bool))
        o, l = attend(q[b], k[b], v[b], allowed, default_scale(p, d_))
        outs.append(o)
        lses.append(l)
    return {"out": torch.stack(outs).numpy(), "lse": torch.stack(lses).numpy()}


def nsa(data, p, expected=None):
    q, k, v, gates = t64(data["q"]), t64(data["k"]), t64(data["v"]), t64(data["gates"])
    b_, hq, t_, d_ = q.shape
    hkv, dv = k.shape[1], v.shape[3]
    group = hq // hkv
    bs, top_n, window = int(p.get("block_size", 64)), int(p.get("top_n", 16)), int(p.get("window", 512))
    scale = default_scale(p, d_)
    nb = -(-t_ // bs)
    pos = torch.arange(t_)
    out = torch.zeros(b_, hq, t_, dv, dtype=torch.float64)
    selected = np.zeros((b_, hkv, t_, nb), dtype=bool)
    for b in range(b_):
        kc = torch.stack([k[b, :, c * bs:min(t_, (c + 1) * bs)].mean(1) for c in range(nb)], dim=1)   # [Hkv, nb, D]
        vc = torch.stack([v[b, :, c * bs:min(t_, (c + 1) * bs)].mean(1) for c in range(nb)], dim=1)
        visible = ((torch.arange(nb)[None, :] + 1) * bs <= pos[:, None] + 1).expand(hq, t_, nb)
        o_cmp, _ = attend(q[b], kc, vc, visible, scale)
        o_cmp = torch.nan_to_num(o_cmp)                       # rows with no visible block: 0
        s = torch.einsum("hid,hcd->hic", q[b], kc.repeat_interleave(group, dim=0)) * scale
        probs = torch.softmax(s.masked_fill(~visible, NEG), dim=-1).nan_to_num(0.0)   # [Hq, T, nb]
        allowed_slc = torch.zeros(hq, t_, t_, dtype=torch.bool)
        for g in range(hkv):
            score = probs[g * group:(g + 1) * group].sum(0).numpy()                  # [T, nb]
            for t in range(t_):
                own = t // bs
                n_top = min(top_n - 1, own)
                chosen = {own} | top_stable(score[t, :own], n_top)
                if expected is not None:
                    # The reference's choice stands when it is a top set up to rounding-level ties (see near_top).
                    theirs = set(int(c) for c in np.flatnonzero(expected[b, g, t]))
                    rest = theirs - {own}
                    if own in theirs and theirs != chosen and near_top(score[t, :own], n_top, rest, TIE_SLACK * max(1.0, float(np.abs(score[t]).max()))):
                        chosen = theirs
                for c in chosen:
                    selected[b, g, t, c] = True
                    allowed_slc[g * group:(g + 1) * group, t, c * bs:min(t_, (c + 1) * bs)] = True
        allowed_slc &= (pos[None, :] <= pos[:, None])
        o_slc, _ = attend(q[b], k[b], v[b], allowed_slc, scale)
        if window > 0:
            win = (pos[None, :] <= pos[:, None]) & (pos[None, :] >= pos[:, None] - window + 1)
            o_win, _ = attend(q[b], k[b], v[b], win.expand(hq, t_, t_), scale)
        else:
            o_win = torch.zeros(hq, t_, dv, dtype=torch.float64)
        g_ = gates[b]
        out[b] = g_[..., 0:1] * o_cmp + g_[..., 1:2] * o_slc + g_[..., 2:3] * o_win
    return {"out": out.numpy(), "selected": selected}


def resa(data, p):
    q, k, v = t64(data["q"]), t64(data["k"]), t64(data["v"])
    b_, hq, _, d_ = q.shape
    hkv, l_ = k.shape[1], k.shape[2]
    group = hq // hkv
    bs, sparsity = int(p.get("block_size", 16)), float(p.get("sparsity", 0.1))
    n_local, n_min = int(p.get("n_local", 1)), int(p.get("n_min", 16))
    nb = -(-l_ // bs)
    n_sel = max(math.ceil(nb * sparsity), min(nb, n_min))
    local = min(n_local, nb)
    total = min(nb, max(n_sel, local))
    selected = np.zeros((b_, hkv, nb), dtype=bool)
    outs, lses = [], []
    for b in range(b_):
        allowed = torch.zeros(hq, 1, l_, dtype=torch.bool)
        for g in range(hkv):
            qbar = q[b, g * group:(g + 1) * group, 0].mean(0) / math.sqrt(d_)
            score = []
            for c in range(nb - local):
                blk = k[b, g, c * bs:min(l_, (c + 1) * bs)]
                score.append(float(torch.maximum(qbar * blk.max(0).values, qbar * blk.min(0).values).sum()))
            chosen = set(range(nb - local, nb)) | top_stable(score, total - local)
            for c in chosen:
                selected[b, g, c] = True
                allowed[g * group:(g + 1) * group, 0, c * bs:min(l_, (c + 1) * bs)] = True
        o, l = attend(q[b], k[b], v[b], allowed, default_scale(p, d_))
        outs.append(o)
        lses.append(l)
    return {"out": torch.stack(outs).numpy(), "lse": torch.stack(lses).numpy(), "selected": selected}


def leank(data, p):
    q, k, v = t64(data["q"]), t64(data["k"]), t64(data["v"])
    m = torch.from_numpy(np.asarray(data["channel_mask"]).astype(bool))
    b_, hq, tq, d_ = q.shape
    hkv, tk = k.shape[1], k.shape[2]
    group = hq // hkv
    sink, recent = int(p.get("sink", 64)), int(p.get("recent", 256))
    causal, drop = bool(p.get("causal", True)), p.get("zero_head", "zero-logit") == "drop"
    scale = default_scale(p, d_)
    pos = (torch.arange(tq) + tk - tq)[:, None]
    j = torch.arange(tk)[None, :]
    full = (j < sink) | ((j > pos - recent) & (j <= pos))                       # [Tq, Tk]
    allowed_base = (j <= pos) if causal else torch.ones(tq, tk, dtype=torch.bool)
    outs, lses = [], []
    for b in range(b_):
        kh = k[b].repeat_interleave(group, dim=0)                                 # [Hq, Tk, D]
        mh = m.repeat_interleave(group, dim=0).double()                            # [Hq, D]
        s_full = torch.einsum("hid,hjd->hij", q[b], kh)
        s_pruned = torch.einsum("hid,hjd->hij", q[b], kh * mh[:, None, :])
        s = torch.where(full[None], s_full, s_pruned) * scale
        zero = ~m.any(dim=1).repeat_interleave(group)                              # [Hq]
        allowed = allowed_base[None].expand(hq, tq, tk).clone()
        if drop:
            allowed &= ~(zero[:, None, None] & ~full[None])
        s = s.masked_fill(~allowed, NEG)
        lse = torch.logsumexp(s, dim=-1)
        pr = torch.exp(s - lse[..., None]).masked_fill(~allowed, 0.0)
        outs.append(torch.einsum("hij,hjd->hid", pr, v[b].repeat_interleave(group, dim=0)))
        lses.append(lse)
    return {"out": torch.stack(outs).numpy(), "lse": torch.stack(lses).numpy()}


def leank_mask(data, p):
    alpha = np.asarray(data["alpha"], dtype=np.float64)
    ratio, align = float(p.get("ratio", 0.7)), int(p.get("align", 32))
    tau = np.quantile(alpha.reshape(-1), ratio)
    mask = np.zeros(alpha.shape, dtype=bool)
    d_ = alpha.shape[2]
    for l in range(alpha.shape[0]):
        for h in range(alpha.shape[1]):
            count = int((alpha[l, h] >= tau).sum())
            keep = min(d_, (count + align // 2) // align * align)
            for c in top_stable(alpha[l, h], keep):
                mask[l, h, c] = True
    return {"channel_mask": mask}


def linear(data, p):
    q, k, v = t64(data["q"]), t64(data["k"]), t64(data["v"])
    identity = p.get("feature_map", "elu1") == "identity"
    normalize, gamma = bool(p.get("normalize", True)), float(p.get("decay", 1.0))
    phi = (lambda x: x) if identity else (lambda x: torch.nn.functional.elu(x) + 1.0)
    t_ = q.shape[2]
    i = torch.arange(t_)[:, None]
    j = torch.arange(t_)[None, :]
    decay = torch.where(j <= i, torch.tensor(gamma, dtype=torch.float64) ** (i - j).clamp(min=0).double(),
                        torch.zeros((), dtype=torch.float64))
    a = torch.einsum("bhid,bhjd->bhij", phi(q), phi(k)) * decay                 # [B, H, T, T]
    num = torch.einsum("bhij,bhje->bhie", a, v)
    if normalize:
        den = a.sum(-1, keepdim=True)
        num = torch.where(den == 0, torch.zeros_like(num), num / den)
    return {"out": num.numpy()}


ALGORITHMS = {"moba": moba, "nsa": nsa, "resa": resa, "leank": leank, "leank-mask": leank_mask, "linear": linear}


def compare(name, mine, theirs):
    theirs = np.asarray(theirs)
    if mine.shape != theirs.shape:
        return f"{name} shape {theirs.shape}, peer {mine.shape}"
    if mine.dtype == bool or theirs.dtype == bool:
        if not np.array_equal(mine.astype(bool), theirs.astype(bool)):
            return f"{name}: differs at {np.argwhere(mine.astype(bool) != theirs.astype(bool))[0].tolist()}"
        return None
    theirs = theirs.astype(np.float64)
    inf_mine, inf_theirs = np.isneginf(mine), np.isneginf(theirs)
    if not np.array_equal(inf_mine, inf_theirs):
        return f"{name}: -inf at {np.argwhere(inf_mine != inf_theirs)[0].tolist()} on one side only"
    finite = ~inf_mine
    if not (np.all(np.isfinite(mine[finite])) and np.all(np.isfinite(theirs[finite]))):
        return f"{name}: NaN or +inf"
    err = np.abs(mine[finite] - theirs[finite]) / np.maximum(1.0, np.abs(theirs[finite]))
    if err.size and err.max() > TOLERANCE:
        return f"{name}: scaled error {err.max():.3e} > {TOLERANCE}"
    return None


def verify(algorithm, root):
    if algorithm not in ALGORITHMS:
        fail(f"unknown algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")
    cases = case_names(root)
    failures = 0
    for name in cases:
        data, raw, expected = read_case(os.path.join(root, name))
        params = {key: param_value(x) for key, x in raw.items()}
        if algorithm == "nsa" and "selected" in expected:
            mine = nsa(data, params, np.asarray(expected["selected"]).astype(bool))
        else:
            mine = ALGORITHMS[algorithm](data, params)
        problems = [p for p in (compare(key, mine[key], expected[key]) for key in mine) if p]
        if problems:
            failures += 1
            print(f"MISMATCH {name}: {'; '.join(problems)}")
    print(f"{algorithm} peer: {len(cases) - failures} of {len(cases)} cases agree")
    return 1 if failures or not cases else 0


if __name__ == "__main__":
    dispatch(sys.argv, __doc__, {"verify": (verify, [str, str])})
