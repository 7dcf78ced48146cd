#!/usr/bin/python3
"""Independent numpy computation of the routing suite (the Definitions of proofs/capacity.md, reroute.md, expert-choice.md, aux-loss.md, block-routing.md):
capacity, reroute, expert-choice, aux-loss and block-routing.

Written from those Definitions and the decisions recorded in the same files, not from the C# reference.
Run with Debian's /usr/bin/python3 (python3-numpy).

  routing_peer.py verify DIR        DIR is one algorithm's case directory (its name is the algorithm, e.g.
                                    data/golden/capacity) or a directory holding such directories (e.g. data/golden):
                                    every CASE/{input.npz, params.json, expected.npz} is recomputed and compared
                                    (indices exactly, floats within 1e-12 relative); exit 1 on any mismatch
  routing_peer.py generate DIR SEED COUNT
                                    write COUNT random cases per algorithm, DIR/<algorithm>/case-NNN/{input.npz,
                                    params.json} (awkward shapes, exact ties, every policy and rounding)
"""
import math
import os
import sys
from fractions import Fraction

import numpy as np

from peer_args import case_names, dispatch, read_case, write_case

RTOL = 1e-12
ALGORITHMS = ("capacity", "reroute", "expert-choice", "aux-loss", "block-routing")


# ---------------------------------------------------------------- shared pieces

def scores(x, score="softmax"):
    x = np.asarray(x, dtype=np.float64)
    if score == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def ranked(values):
    """Indices of a 1-d array by the project's ranking rule: larger first, ties to the lower index."""
    return np.argsort(-np.asarray(values), kind="stable")


def renormalize(x_selected, score):
    """w_j = P_j / sum_l P_l over the given logits of one token, computed from log P so that underflow cannot matter."""
    x_selected = np.asarray(x_selected, dtype=np.float64)
    if x_selected.size == 0:
        return x_selected
    log_p = x_selected if score == "softmax" else -np.logaddexp(0.0, -x_selected)
    z = np.exp(log_p - log_p.max())
    return z / z.sum()


def select_topk(p, k, bias=None):
    key = p if bias is None else p + np.asarray(bias, dtype=np.float64)[None, :]
    return np.argsort(-key, axis=1, kind="stable")[:, :k]


def capacity_from(n, e, k, capacity, factor, rounding, min_capacity):
    """proofs/capacity.md, Definition: Capacity rule: an explicit capacity as given; otherwise the rounding rule on cf*N*k/E, then the minimum.
    The product is exact: Fraction(cf) is the exact binary value of the float (proofs/capacity.md)."""
    if capacity is not None:
        return int(capacity)
    x = Fraction(factor) * n * k / e
    if rounding == "ceil":
        c = math.ceil(x)
    elif rounding == "floor":
        c = math.floor(x)
    elif rounding == "round":
        c = round(x)  # a Fraction rounds half to even
    elif rounding == "tutel":
        c = k * math.floor(Fraction(factor) * (-(-n // e)))
    elif rounding == "ceil-f32":
        # DeepSpeed's _capacity: torch.ceil((num_tokens / num_experts) * torch.tensor(capacity_factor * k)), all float32.
        c = math.ceil(np.float32(n / e) * np.float32(factor * k))
    else:
        raise ValueError(rounding)
    return max(int(c), int(min_capacity))


# ---------------------------------------------------------------- capacity

def capacity_route(x, k=2, score="softmax", normalize="none", capacity=None, capacity_factor=1.0,
                   rounding="ceil", min_capacity=0, policy="choice-position", bias=None):
    x = np.asarray(x, dtype=np.float64)
    n, e = x.shape
    p = scores(x, score)
    sel = select_topk(p, k, bias)                        # [N, k]
    w = np.take_along_axis(p, sel, axis=1)               # raw P at the selection
    raw_top1 = w[:, 0].copy()
    if normalize == "before":
        w = np.array([renormalize(x[i, sel[i]], score) for i in range(n)]).reshape(n, k)
    c = capacity_from(n, e, k, capacity, capacity_factor, rounding, min_capacity)

    # Requests as flat arrays.
    tok = np.repeat(np.arange(n), k)
    cho = np.tile(np.arange(k), n)
    exp = sel.reshape(-1)
    wt = w.reshape(-1)
    lg = x[tok, exp]
    tok_rank = np.empty(n, dtype=np.int64)
    tok_rank[ranked(raw_top1)] = np.arange(n)

    # np.lexsort sorts by the LAST key first; every order ends with token, then choice, as tie-breaks.
    if policy == "position":
        prio = np.lexsort((cho, tok))
    elif policy == "choice-position":
        prio = np.lexsort((tok, cho))
    elif policy == "score":
        prio = np.lexsort((cho, tok, -wt))
    elif policy == "logit":
        prio = np.lexsort((cho, tok, -lg))
    elif policy == "batch-priority":
        prio = np.lexsort((tok_rank[tok], cho))
    else:
        raise ValueError(policy)

    # Kept: a request's place among its expert's requests in priority order is below C.
    place = np.empty(n * k, dtype=np.int64)
    seen = np.zeros(e, dtype=np.int64)
    for r in prio:
        place[r] = seen[exp[r]]
        seen[exp[r]] += 1
    kept = place < c

    # Slots: place among the expert's kept requests in dispatch order.
    if policy in ("choice-position",):
        disp = np.lexsort((tok, cho))
    elif policy == "batch-priority":
        disp = np.lexsort((tok_rank[tok], cho))
    else:
        disp = np.lexsort((cho, tok))
    slots = np.full(n * k, -1, dtype=np.int64)
    nxt = np.zeros(e, dtype=np.int64)
    for r in disp:
        if kept[r]:
            slots[r] = nxt[exp[r]]
            nxt[exp[r]] += 1

    experts = np.where(kept, exp, -1).reshape(n, k).astype(np.int32)
    weights = np.where(kept, wt, 0.0).reshape(n, k)
    if normalize == "after":
        for i in range(n):
            kept_i = experts[i] >= 0
            weights[i, kept_i] = renormalize(x[i, experts[i, kept_i]], score)
    load = np.bincount(exp[kept], minlength=e).astype(np.int32)
    return {"experts": experts, "weights": weights, "slots": slots.reshape(n, k).astype(np.int32), "load": load}


# ---------------------------------------------------------------- reroute

def reroute(x, k=2, score="softmax", capacity=None, capacity_factor=1.0, rounding="ceil", min_capacity=0):
    x = np.asarray(x, dtype=np.float64)
    n, e = x.shape
    p = scores(x, score)
    c = capacity_from(n, e, k, capacity, capacity_factor, rounding, min_capacity)
    prefs = [list(ranked(p[i])) for i in range(n)]
    tried = [set() for _ in range(n)]      # experts a token was assigned or refused by
    experts = -np.ones((n, k), dtype=np.int64)
    load = np.zeros(e, dtype=np.int64)

    def propose(i, j, target):
        tried[i].add(target)
        if load[target] < c:
            experts[i, j] = target
            load[target] += 1

    for i in range(n):                      # first choices in token order
        propose(i, 0, prefs[i][0])
    for j in range(1, k):
        for _ in range(e - 1):
            proposals = []
            for i in range(n):
                if experts[i, j] >= 0:
                    continue
                options = [y for y in prefs[i] if y not in tried[i]]
                if options:
                    proposals.append((i, options[0]))
            if not proposals:
                break
            for i, target in proposals:     # accepted in token order while there is room
                propose(i, j, target)
    weights = np.where(experts >= 0, p[np.arange(n)[:, None], np.maximum(experts, 0)], 0.0)
    return {"experts": experts.astype(np.int32), "weights": weights, "load": load.astype(np.int32)}


# ---------------------------------------------------------------- expert choice

def expert_choice(x, capacity=None, capacity_factor=1.0, k=1):
    x = np.asarray(x, dtype=np.float64)
    n, e = x.shape
    p = scores(x)
    c = int(capacity) if capacity is not None else min(n, math.ceil(Fraction(capacity_factor) * n * k / e))
    tokens = np.argsort(-p.T, axis=1, kind="stable")[:, :c]          # [E, C]
    gates = np.take_along_axis(p.T, tokens, axis=1)
    count = np.bincount(tokens.reshape(-1), minlength=n)
    return {"tokens": tokens.astype(np.int32), "gates": gates, "count": count.astype(np.int32)}


# ---------------------------------------------------------------- aux loss

def aux_loss(x, k=2, variant="megatron"):
    x = np.asarray(x, dtype=np.float64)
    n, e = x.shape
    if n == 0:
        return {"switch_loss": np.float64(0.0), "z_loss": np.float64(0.0)}
    p = scores(x)
    pbar = p.mean(axis=0)
    sel = select_topk(p, k)
    chosen = sel if variant == "megatron" else sel[:, :1]
    f = np.bincount(chosen.reshape(-1), minlength=e) / chosen.size
    if variant == "hf":
        # HF Transformers' load_balancing_loss_func without attention mask: one-hot of every slot, the mean over tokens
        # per slot ([k, E]), times Pbar, summed over slots and experts, times E.
        one_hot = np.zeros((n, sel.shape[1], e))
        np.put_along_axis(one_hot, sel[:, :, None], 1.0, axis=2)
        loss = e * np.sum(one_hot.mean(axis=0) * pbar[None, :])
    elif variant == "megatron" or variant == "deepspeed-top1":
        loss = e * np.sum(f * pbar)
    elif variant == "deepspeed-top2":
        loss = e * e * np.mean(f * pbar)
    else:
        raise ValueError(variant)
    m = x.max(axis=1)
    lse = m + np.log(np.exp(x - m[:, None]).sum(axis=1))
    return {"switch_loss": np.float64(loss), "z_loss": np.float64(np.mean(lse ** 2))}


# ---------------------------------------------------------------- block routing

def block_routing(x, k=2, block_size=None, block_k=None):
    x = np.asarray(x, dtype=np.float64)
    n, e = x.shape
    kb = k if block_k is None else int(block_k)
    b = int(block_size)
    p = scores(x)
    nb = -(-n // b)
    experts = np.zeros((n, k), dtype=np.int64)
    weights = np.zeros((n, k))
    block_experts = np.zeros((nb, kb), dtype=np.int64)
    unique = np.zeros(nb, dtype=np.int64)
    plain_unique = np.zeros(nb, dtype=np.int64)
    plain = select_topk(p, k)
    for blk in range(nb):
        rows = slice(blk * b, min(n, (blk + 1) * b))
        q = p[rows].mean(axis=0)
        s = ranked(q)[:kb]
        block_experts[blk] = s
        masked = np.full_like(p[rows], -np.inf)
        masked[:, s] = p[rows][:, s]
        pick = np.argsort(-masked, axis=1, kind="stable")[:, :k]
        experts[rows] = pick
        weights[rows] = np.array([renormalize(x[i, pick[i - rows.start]], "softmax") for i in range(rows.start, rows.stop)])
        unique[blk] = len(np.unique(pick))
        plain_unique[blk] = len(np.unique(plain[rows]))
    return {"experts": experts.astype(np.int32), "weights": weights, "block_experts": block_experts.astype(np.int32),
            "unique_per_block": unique.astype(np.int32), "token_level_unique": plain_unique.astype(np.int32)}


# ---------------------------------------------------------------- cases

def _int_or_none(v):
    return None if v is None else int(v)


def run(algorithm, arrays, raw):
    x = arrays["logits"]
    get = raw.get
    if algorithm == "capacity":
        return capacity_route(x, k=int(get("k", 2)), score=get("score", "softmax"), normalize=get("normalize", "none"),
                              capacity=_int_or_none(get("capacity")), capacity_factor=float(get("capacity_factor", 1.0)),
                              rounding=get("rounding", "ceil"), min_capacity=int(get("min_capacity", 0)),
                              policy=get("policy", "choice-position"),
                              bias=arrays["bias"] if "bias" in arrays else None)
    if algorithm == "reroute":
        return reroute(x, k=int(get("k", 2)), score=get("score", "softmax"), capacity=_int_or_none(get("capacity")),
                       capacity_factor=float(get("capacity_factor", 1.0)), rounding=get("rounding", "ceil"),
                       min_capacity=int(get("min_capacity", 0)))
    if algorithm == "expert-choice":
        return expert_choice(x, capacity=_int_or_none(get("capacity")), capacity_factor=float(get("capacity_factor", 1.0)),
                             k=int(get("k", 1)))
    if algorithm == "aux-loss":
        return aux_loss(x, k=int(get("k", 2)), variant=get("variant", "megatron"))
    if algorithm == "block-routing":
        return block_routing(x, k=int(get("k", 2)), block_size=int(get("block_size")),
                             block_k=_int_or_none(get("block_k")))
    raise ValueError(algorithm)


# ---------------------------------------------------------------- tie-tolerant acceptance
# Decisions that compare scores of different tokens (an expert-choice column, capacity's score and batch-priority
# orders, a block's mean scores) sit on exact ties whenever two rows are permutations of each other; numpy and the C#
# reference round such row sums differently, so either side of a tie is correct. When the peer's own answer differs,
# these checks accept the expected answer iff it is valid with every comparison allowed a relative slack TIE.

TIE = 1e-9


def _before(va, vb):
    """va definitely larger than vb."""
    if va == vb:
        return False
    return va - vb > TIE * max(abs(va), abs(vb))


def _valid_top(listed, values):
    """listed: distinct indices in descending order of values, nothing unlisted definitely above the weakest."""
    listed = [int(t) for t in listed]
    if len(set(listed)) != len(listed) or any(t < 0 or t >= len(values) for t in listed):
        return False
    if any(_before(values[b], values[a]) for a, b in zip(listed, listed[1:])):
        return False
    if not listed:
        return True
    weakest = min(values[t] for t in listed)
    return not any(_before(values[t], weakest) for t in range(len(values)) if t not in listed)


def expert_choice_ok(x, raw, expected):
    p = scores(x)
    tokens = expected["tokens"]
    ok = all(_valid_top(tokens[e], p[:, e]) for e in range(tokens.shape[0]))
    ok = ok and np.array_equal(expected["count"], np.bincount(tokens.reshape(-1), minlength=x.shape[0]))
    gates = p.T[np.arange(tokens.shape[0])[:, None], tokens] if tokens.size else np.zeros(tokens.shape)
    return ok and np.allclose(expected["gates"], gates, rtol=RTOL, atol=1e-300)


def capacity_ok(x, raw, expected, bias):
    """The expected routing keeps, for every expert, a policy-first C up to near-ties, with slots in dispatch order."""
    get = raw.get
    k, policy, score = int(get("k", 2)), get("policy", "choice-position"), get("score", "softmax")
    n, e = x.shape
    p = scores(x, score)
    sel = select_topk(p, k, bias)
    w = np.take_along_axis(p, sel, axis=1)
    top1 = w[:, 0].copy()
    if get("normalize", "none") == "before":
        w = np.array([renormalize(x[i, sel[i]], score) for i in range(n)]).reshape(n, k)
    c = capacity_from(n, e, k, None if get("capacity") is None else int(get("capacity")),
                      float(get("capacity_factor", 1.0)), get("rounding", "ceil"), int(get("min_capacity", 0)))
    ex, sl, ld = expected["experts"], expected["slots"], expected["load"]
    if np.any((ex != -1) & (ex != sel)):
        return False

    def first(a, b):   # request a = (i, j) definitely before b in the priority order
        (i, j), (t, q) = a, b
        if policy == "position":
            return (i, j) < (t, q)
        if policy == "choice-position":
            return (j, i) < (q, t)
        if policy == "score":
            return _before(w[i, j], w[t, q])
        if policy == "logit":
            return x[i, sel[i, j]] > x[t, sel[t, q]]
        return j < q or (j == q and _before(top1[i], top1[t]))

    def dispatch_first(a, b):
        (i, j), (t, q) = a, b
        if policy == "choice-position":
            return (j, i) < (q, t)
        if policy == "batch-priority":
            return j < q or (j == q and _before(top1[i], top1[t]))
        return (i, j) < (t, q)

    for x_ in range(e):
        reqs = [(i, j) for i in range(n) for j in range(k) if sel[i, j] == x_]
        kept = [r for r in reqs if ex[r] >= 0]
        dropped = [r for r in reqs if ex[r] < 0]
        if len(kept) != min(c, len(reqs)) or ld[x_] != len(kept):
            return False
        if any(first(d, a) for d in dropped for a in kept):
            return False
        by_slot = sorted(kept, key=lambda r: sl[r])
        if [int(sl[r]) for r in by_slot] != list(range(len(kept))):
            return False
        if any(dispatch_first(b, a) for a, b in zip(by_slot, by_slot[1:])):
            return False
    if np.any(sl[ex < 0] != -1):
        return False
    weights = np.where(ex >= 0, w, 0.0)
    if get("normalize", "none") == "after":
        for i in range(n):
            kept_i = ex[i] >= 0
            weights[i, kept_i] = renormalize(x[i, ex[i, kept_i]], score)
    return np.allclose(expected["weights"], weights, rtol=RTOL, atol=1e-300)


def block_routing_ok(x, raw, expected):
    k, b = int(raw.get("k", 2)), int(raw["block_size"])
    p = scores(x)
    n = x.shape[0]
    sets, experts = expected["block_experts"], expected["experts"]
    for blk in range(sets.shape[0]):
        rows = range(blk * b, min(n, (blk + 1) * b))
        q = p[list(rows)].mean(axis=0)
        if not _valid_top(sets[blk], q):
            return False
        for i in rows:
            masked = np.full(x.shape[1], -np.inf)
            masked[sets[blk]] = p[i, sets[blk]]
            if not _valid_top(experts[i], masked) or not np.allclose(
                    expected["weights"][i], renormalize(x[i, experts[i]], "softmax"), rtol=RTOL, atol=1e-300):
                return False
        if expected["unique_per_block"][blk] != len(np.unique(experts[list(rows)])):
            return False
    return True


def tolerant_ok(algorithm, arrays, raw, expected):
    x = np.asarray(arrays["logits"], dtype=np.float64)
    if algorithm == "expert-choice":
        return expert_choice_ok(x, raw, expected)
    if algorithm == "capacity":
        return capacity_ok(x, raw, expected, arrays["bias"] if "bias" in arrays else None)
    if algorithm == "block-routing":
        mine = block_routing(x, k=int(raw.get("k", 2)), block_size=int(raw["block_size"]),
                             block_k=None if raw.get("block_k") is None else int(raw["block_k"]))
        # token_level_unique is plain top-k within rows (no cross-token comparison): it must agree exactly.
        return block_routing_ok(x, raw, expected) and np.array_equal(expected["token_level_unique"], mine["token_level_unique"])
    return False


def compare(name, expected, actual):
    """Mismatch descriptions: integer arrays exactly, float arrays within RTOL relative (with a tiny absolute floor)."""
    problems = []
    for key, mine in actual.items():
        if key not in expected:
            problems.append(f"{key} missing from expected.npz")
            continue
        theirs = expected[key]
        if np.shape(theirs) != np.shape(mine):
            problems.append(f"{key}: shape {np.shape(theirs)} != {np.shape(mine)}")
        elif np.issubdtype(np.asarray(mine).dtype, np.integer):
            if not np.array_equal(theirs, mine):
                bad = np.argwhere(np.asarray(theirs) != np.asarray(mine))
                problems.append(f"{key}: {len(bad)} differ, first at {bad[0].tolist()}")
        elif not np.allclose(theirs, mine, rtol=RTOL, atol=1e-300):
            problems.append(f"{key}: max abs diff {np.max(np.abs(np.asarray(theirs) - mine))}")
    return problems


def verify_algorithm(algorithm, root):
    cases = case_names(root)
    failures = 0
    for name in cases:
        arrays, raw, expected = read_case(os.path.join(root, name))
        problems = compare(name, expected, run(algorithm, arrays, raw))
        if problems and tolerant_ok(algorithm, arrays, raw, expected):
            print(f"agree at a near-tie {algorithm}/{name}: " + "; ".join(problems))
            problems = []
        if problems:
            failures += 1
            print(f"MISMATCH {algorithm}/{name}: " + "; ".join(problems))
    print(f"{algorithm} peer: {len(cases) - failures} of {len(cases)} cases agree")
    return failures, len(cases)


def verify(root):
    base = os.path.basename(os.path.normpath(root))
    targets = [(base, root)] if base in ALGORITHMS else \
        [(a, os.path.join(root, a)) for a in ALGORITHMS if os.path.isdir(os.path.join(root, a))]
    failures = total = 0
    for algorithm, d in targets:
        f, t = verify_algorithm(algorithm, d)
        failures += f
        total += t
    return 1 if failures or total == 0 else 0


def generate(out, seed, count):
    rng = np.random.default_rng(seed)

    def logits(n, e):
        style = rng.integers(0, 3)
        if style == 0:
            x = rng.integers(-3, 4, size=(n, e)) * 0.5              # exact ties
        elif style == 1:
            x = rng.normal(0.0, 2.0, size=(n, e))
        else:
            x = rng.integers(-2, 3, size=(n, e)) * 0.25 + rng.integers(0, 2, size=(n, 1)) * 8.0
        return x.astype(np.float32 if rng.random() < 0.5 else np.float64)

    for algorithm in ALGORITHMS:
        for c in range(count):
            n = int(rng.choice([1, 2, 3, 5, 8, 13, 33]))
            e = int(rng.choice([1, 2, 3, 4, 6, 8, 9]))
            k = int(rng.integers(1, e + 1))
            arrays = {"logits": logits(n, e)}
            params = {}
            if algorithm in ("capacity", "reroute"):
                params = {"k": k, "score": "sigmoid" if rng.random() < 0.3 else "softmax"}
                if rng.random() < 0.3:
                    params["capacity"] = int(rng.integers(0, n * k + 2))
                else:
                    params["capacity_factor"] = float(rng.choice([0.0, 0.5, 0.75, 1.0, 1.25, 2.0]))
                    params["rounding"] = str(rng.choice(["ceil", "floor", "round", "tutel", "ceil-f32"]))
                    params["min_capacity"] = int(rng.choice([0, 0, 1, 3]))
                if algorithm == "capacity":
                    params["policy"] = str(rng.choice(["position", "choice-position", "score", "logit", "batch-priority"]))
                    params["normalize"] = str(rng.choice(["none", "before", "after"]))
                    if rng.random() < 0.25:
                        arrays["bias"] = (rng.integers(-4, 5, size=e) * 0.125).astype(arrays["logits"].dtype)
            elif algorithm == "expert-choice":
                if rng.random() < 0.4:
                    params["capacity"] = int(rng.integers(0, n + 1))
                else:
                    params["capacity_factor"] = float(rng.choice([0.5, 1.0, 2.0, 8.0]))
                    params["k"] = int(rng.integers(1, 3))
            elif algorithm == "aux-loss":
                params = {"k": k, "variant": str(rng.choice(["megatron", "deepspeed-top1", "deepspeed-top2", "hf"]))}
            else:
                params = {"k": k, "block_size": int(rng.choice([1, 2, 3, 4, 16])),
                          "block_k": int(rng.integers(k, e + 1))}
            write_case(os.path.join(out, algorithm, f"case-{c:03d}"), arrays, params)
    return 0


if __name__ == "__main__":
    dispatch(sys.argv, __doc__, {"verify": (verify, [str]), "generate": (generate, [str, int, int])})
