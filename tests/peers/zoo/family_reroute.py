"""Bug zoo: iterative rerouting (`reroute`, proofs/reroute.md, Definition).

The MaxScore paper's baseline: dropped later choices go to the next best expert with room, in rounds.
Correct implementations: a per-token numpy loop, a vectorized torch version (masked argmax proposals, acceptance by
a cumulative count per expert in token order) and a sigmoid-scored numpy version. Every case is checked at build time
against this file's float64 reference (`route` with no flags).
"""

import math
from fractions import Fraction

import numpy as np
import torch

import zoo_common as z

FAMILY = "reroute"


def capacity_of(n, e, k, cf, rounding="ceil"):
    v = Fraction(cf) * n * k / e
    return math.ceil(v) if rounding == "ceil" else math.floor(v)


def route(p, k, C, reroute_first=False, repropose=False, rounds=None, accept_by_score=False):
    """Rerouting over scores p (float64 or float32 numpy). Flags select the bugs; none gives the contract."""
    n, e = p.shape
    rank = np.array([sorted(range(e), key=lambda j: (-p[i, j], j)) for i in range(n)])
    experts = -np.ones((n, k), dtype=np.int64)
    load = np.zeros(e, dtype=np.int64)
    proposed = [set() for _ in range(n)]
    for i in range(n):
        x = rank[i, 0]
        proposed[i].add(x)
        if load[x] < C:
            load[x] += 1
            experts[i, 0] = x
    for j in range(0 if reroute_first else 1, k):
        for _ in range(e - 1 if rounds is None else rounds):
            props = []
            for i in range(n):
                if experts[i, j] >= 0:
                    continue
                assigned = set(experts[i][experts[i] >= 0].tolist())
                blocked = assigned if repropose else proposed[i] | assigned
                nxt = next((x for x in rank[i] if x not in blocked), None)
                if nxt is None:
                    continue
                proposed[i].add(nxt)
                props.append((i, nxt))
            if accept_by_score:
                props.sort(key=lambda t: -p[t[0], t[1]])
            for i, x in props:
                if load[x] < C:
                    load[x] += 1
                    experts[i, j] = x
    w = np.where(experts >= 0, np.take_along_axis(p, np.maximum(experts, 0), 1), 0.0)
    return experts, w, load


def scores(logits, score):
    x = z.widen(logits)
    return z.softmax(x) if score == "softmax" else 1.0 / (1.0 + np.exp(-x))


def verify(c, C, must_agree):
    prm = c["params"]
    ex, w, load = route(scores(c["inputs"]["logits"], prm.get("score", "softmax")), int(prm["k"]), C)
    cand = c["candidate"]
    same = True
    for name, ref in (("experts", ex), ("load", load)):
        if name in cand:
            got = np.asarray(cand[name])
            same &= got.shape == ref.shape and got.dtype.kind in "iu" and bool(np.array_equal(got, ref))
    if "weights" in cand:
        same &= z.max_abs_err(cand["weights"], w) <= z.TOL[c["dtype"]]
    z.require(same == must_agree, f"{c['name']}: build-time check says {'agrees' if same else 'differs'}")


def torch_rounds(logits_t, k, C, out_dtype):
    """Vectorized rerouting in torch float32: every round, each waiting token proposes its best unproposed expert
    (masked argmax); expert x accepts the first (room_x) proposers in token order (cumsum over the one-hot)."""
    p = torch.softmax(logits_t.float(), dim=-1)
    n, e = p.shape
    experts = torch.full((n, k), -1, dtype=torch.int64)
    load = torch.zeros(e, dtype=torch.int64)
    proposed = torch.zeros(n, e, dtype=torch.bool)
    waiting = torch.ones(n, dtype=torch.bool)
    for j in range(k):
        waiting = torch.ones(n, dtype=torch.bool)
        for _ in range(1 if j == 0 else e - 1):
            masked = p.masked_fill(proposed, -1.0)
            best = torch.argmax(masked, dim=1)
            can = waiting & ~proposed.all(1)
            onehot = torch.nn.functional.one_hot(best, e) * can[:, None]
            proposed |= onehot.bool()
            order = torch.cumsum(onehot, 0) * onehot  # 1-based rank among this round's proposers to the expert
            ok = ((order > 0) & (order <= (C - load)[None, :])).any(1)
            experts[ok, j] = best[ok]
            load += (onehot * ok[:, None]).sum(0)
            waiting &= ~ok
            if not waiting.any():
                break
    w = torch.where(experts >= 0, torch.gather(p, 1, experts.clamp(min=0)), torch.zeros(()))
    return experts.numpy(), z.from_torch(w.to(out_dtype)), load.numpy().astype(np.int32)


def make_logits(seed, n, e, scale=1.5, skew=2.0):
    """An imbalanced router: gaussian logits plus a per-expert offset, so popular experts overflow."""
    r = z.rng(seed)
    return (r.standard_normal((n, e)) * scale + np.linspace(0.0, skew, e)[r.permutation(e)]).astype(np.float32)


def cases():
    out = []

    def add(name, kind, dtype, style, why, logits, params, cand, C, check=True):
        c = z.case(name=f"reroute/{name}", algorithm="reroute", kind=kind, dtype=dtype, style=style, why=why,
                   inputs={"logits": logits}, params=params,
                   candidate={"experts": cand[0], "weights": cand[1], "load": cand[2]} if isinstance(cand, tuple) else cand)
        if check and kind != "malformed":
            verify(c, C, kind == "correct")
        out.append(c)

    def np_route(x, k, C, dtype, score="softmax", **flags):
        xs = z.widen(x).astype(np.float32)
        p = z.softmax(xs) if score == "softmax" else (1.0 / (1.0 + np.exp(-xs))).astype(np.float32)
        ex, w, load = route(p, k, C, **flags)
        return ex.astype(np.int32), z.cast(w, dtype), load.astype(np.int32)

    n, e, k = 512, 16, 2
    # ---- correct ------------------------------------------------------------------------------------------
    x = make_logits(301, n, e)
    C = capacity_of(n, e, k, 1.0)
    add("numpy-loop/f32/correct", "correct", "f32", "MaxScore paper's iterative rerouting baseline, numpy per-token loop",
        "float32 softmax, first choices in token order, then rounds of proposals to the next best unproposed expert",
        x, {"k": 2, "capacity_factor": 1.0}, np_route(x, k, C, "f32"), C)

    x = make_logits(302, n, e)
    xb = z.cast(x, "bf16")
    C = capacity_of(n, e, 3, 1.0)
    add("torch-vectorized/bf16/correct", "correct", "bf16", "vectorized torch rerouting (masked argmax + cumsum acceptance)",
        "bf16 logits, float32 softmax, whole-round proposals, acceptance by rank among proposers, bf16 weights, k=3",
        xb, {"k": 3, "capacity_factor": 1.0}, torch_rounds(z.as_torch(xb), 3, C, torch.bfloat16), C)

    x = make_logits(303, n, e)
    xh = x.astype(np.float16)
    C = capacity_of(n, e, k, 1.0)
    add("sigmoid-numpy/f16/correct", "correct", "f16", "sigmoid router (DeepSeek-style scores) with rerouting, numpy",
        "float16 logits, sigmoid in float32, rerouting loop, float16 weights",
        xh, {"k": 2, "score": "sigmoid", "capacity_factor": 1.0}, np_route(xh, k, C, "f16", "sigmoid"), C)

    # ---- bugs ---------------------------------------------------------------------------------------------
    x = make_logits(311, n, e)
    C = capacity_of(n, e, k, 1.0)
    add("first-choice-rerouted/f32/bug", "bug", "f32", "rerouting loop that starts at choice 1",
        "dropped first choices are rerouted too (the contract keeps them dropped)",
        x, {"k": 2, "capacity_factor": 1.0}, np_route(x, k, C, "f32", reroute_first=True), C)

    x = make_logits(312, n, e)
    xb = z.cast(x, "bf16")
    C = capacity_of(n, e, k, 1.0)
    add("refused-not-remembered/bf16/bug", "bug", "bf16", "rerouting that only masks assigned experts",
        "a refused expert is proposed to again in every round, so a token never moves past its first full expert",
        xb, {"k": 2, "capacity_factor": 1.0}, np_route(xb, k, C, "bf16", repropose=True), C)

    x = make_logits(313, n, e)
    C = capacity_of(n, e, k, 1.0)
    add("accept-by-score/f32/bug", "bug", "f32", "rerouting that serves the most confident proposals first",
        "within a round, proposals accepted by score instead of token order",
        x, {"k": 2, "capacity_factor": 1.0}, np_route(x, k, C, "f32", accept_by_score=True), C)

    x = make_logits(314, n, e)
    xh = x.astype(np.float16)
    C = capacity_of(n, e, k, 1.0)
    add("one-round/f16/bug", "bug", "f16", "rerouting with a single retry",
        "one round per later choice instead of up to E-1: tokens whose second best is full get -1",
        xh, {"k": 2, "capacity_factor": 1.0}, np_route(xh, k, C, "f16", rounds=1), C)

    x = make_logits(315, n, e)
    xb = z.cast(x, "bf16")
    C = capacity_of(n, e, k, 1.0)
    ex, w, load = np_route(xb, k, C, "f32")
    wn = np.where(ex >= 0, w / np.maximum(w.sum(1, keepdims=True), 1e-30), 0).astype(np.float32)
    add("weights-renormalized/bf16/bug", "bug", "bf16", "rerouting followed by Mixtral's renormalization",
        "weights divided by their row sum (the contract keeps P at the assigned experts)",
        xb, {"k": 2, "capacity_factor": 1.0}, (ex, z.cast(wn, "bf16"), load), C)

    n2, e2 = 500, 16  # 500*2*1.1/16 = 68.75: floor 68, ceil 69
    x = make_logits(316, n2, e2)
    add("floor-capacity/f32/bug", "bug", "f32", "rerouting with capacity = int(cf*N*k/E)",
        "capacity truncated (68) where ceil (69) was asked",
        x, {"k": 2, "capacity_factor": 1.1}, np_route(x, k, capacity_of(n2, e2, k, 1.1, "floor"), "f32"),
        capacity_of(n2, e2, k, 1.1))

    x = make_logits(317, n, e)
    C = capacity_of(n, e, k, 1.0)
    ex, w, load = np_route(x, k, C, "f32")
    i = int(np.argmax(np.where((ex >= 0).all(1), np.abs(w[:, 0] - w[:, 1]), -1)))
    add("swap-one-token/f32/bug", "bug", "f32", "rerouting, one token's weights exchanged",
        f"token {i}: weights of its two experts swapped", x, {"k": 2, "capacity_factor": 1.0},
        (ex, z.swap_one_token(w, i, 0, 1), load), C)

    # ---- malformed ----------------------------------------------------------------------------------------
    x = make_logits(321, 64, 8)
    cand = np_route(x, 2, 16, "f32")
    add("k-zero/f32/malformed", "malformed", "f32", "config typo", "k = 0",
        x, {"k": 0, "capacity": 16}, cand, 16)
    return out
