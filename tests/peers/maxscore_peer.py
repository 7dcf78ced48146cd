#!/usr/bin/python3
"""Independent scipy / networkx computation of MaxScore routing and BASE balanced assignment (proofs/base.md, Definition; proofs/maxscore.md, Definition).

Written from those Definitions, not from the C# reference. Run with Debian's /usr/bin/python3
(python3-numpy, python3-scipy, python3-networkx).

  maxscore_peer.py verify maxscore|base CASES_DIR
      every CASE/{input.npz, params.json, expected.npz} under CASES_DIR: recompute the optimum independently and judge the
      expected outputs: a feasible maximum flow whose exact score is the optimum, loads and weights consistent, prices a
      certificate up to rounding; two-stage: stage 1 reproduced, stage 2 a maximum-weight matching, repeated and gap
      consistent; base auction: experts and rounds equal to this script's own auction. Exit 1 on any mismatch.
  maxscore_peer.py generate maxscore|base OUT_DIR SEED COUNT
      write COUNT random cases OUT_DIR/case-NNN/{input.npz, params.json} for the C# reference to answer.

The optimum: for k = 1, scipy.optimize.linear_sum_assignment on the expanded matrix (token x expert slot, each expert
repeated min(C, N) times; a rectangular assignment matches min(rows, columns), which is the maximum flow). For any k,
networkx.max_flow_min_cost on the network of proofs/maxscore.md, Definition: Exact routing with the scores as exact integers (every double is an integer
times 2^q; Python integers do not overflow), so the optimum is exact.
"""
import math
import os
import sys
from fractions import Fraction

import networkx as nx
import numpy as np
from scipy.optimize import linear_sum_assignment

from peer_args import case_names, dispatch, param_flag, read_case, write_case

REL = 1e-9


def params_of(raw, algorithm):
    if algorithm == "base":
        return {"method": raw.get("method", "exact")}
    return {"k": int(raw.get("k", 2)),
            "capacity": None if raw.get("capacity") is None else int(raw["capacity"]),
            "capacity_factor": float(raw.get("capacity_factor", 1.0)),
            "mode": raw.get("mode", "exact"),
            "normalize": param_flag(raw.get("normalize", False))}


def capacity(n, e, p):
    if p["capacity"] is not None:
        return p["capacity"]
    return int(math.ceil(p["capacity_factor"] * n * p["k"] / e))


def exact_integers(s):
    """The scores as Python integers at a common power-of-two scale, and that scale's exponent."""
    ratios = [float(v).as_integer_ratio() for v in s.ravel()]
    shift = max(int(d).bit_length() - 1 for _, d in ratios)      # every denominator is a power of two
    ints = [num * (1 << (shift - (int(d).bit_length() - 1))) for num, d in ratios]
    return np.array(ints, dtype=object).reshape(s.shape), shift


def optimum_flow(s, k, c):
    """Exact optimum among maximum flows (networkx), as a Fraction, and one optimal membership [N, E]."""
    n, e = s.shape
    ints, shift = exact_integers(s)
    g = nx.DiGraph()
    for i in range(n):
        g.add_edge("s", ("t", i), capacity=k, weight=0)
        for j in range(e):
            g.add_edge(("t", i), ("e", j), capacity=1, weight=-int(ints[i, j]))
    for j in range(e):
        g.add_edge(("e", j), "z", capacity=c, weight=0)
    if n == 0 or c == 0:
        return Fraction(0), np.zeros((n, e), dtype=bool)
    flow = nx.max_flow_min_cost(g, "s", "z")
    member = np.zeros((n, e), dtype=bool)
    total = 0
    for i in range(n):
        for j in range(e):
            if flow[("t", i)][("e", j)] == 1:
                member[i, j] = True
                total += int(ints[i, j])
    return Fraction(total, 1 << shift), member


def optimum_assignment(s, c):
    """k = 1: scipy's rectangular assignment on token x expert-slot; returns the optimum as a float."""
    n, e = s.shape
    slots = min(c, n)
    if n == 0 or slots == 0:
        return 0.0
    expanded = np.repeat(s, slots, axis=1)                       # column j * slots + r is expert j's r-th slot
    rows, cols = linear_sum_assignment(expanded, maximize=True)
    return float(expanded[rows, cols].sum())


def exact_score(s, member):
    return sum((Fraction(float(s[i, j])) for i, j in zip(*np.nonzero(member))), Fraction(0))


def membership(s, experts, k):
    """The membership of an experts array, or an error string."""
    n, e = s.shape
    member = np.zeros((n, e), dtype=bool)
    for i in range(n):
        real = [int(x) for x in experts[i] if x >= 0]
        if any(x >= e for x in real) or any(x < -1 for x in experts[i]):
            return None, f"token {i}: index out of range"
        if len(set(real)) != len(real):
            return None, f"token {i}: an expert twice"
        if list(experts[i][:len(real)]) != real or any(x != -1 for x in experts[i][len(real):]):
            return None, f"token {i}: -1 before an expert"
        if any(not (s[i, a] > s[i, b] or (s[i, a] == s[i, b] and a < b)) for a, b in zip(real, real[1:])):
            return None, f"token {i}: not by descending score"
        member[i, real] = True
    return member, None


def weights_of(s, experts, normalize):
    n, k = experts.shape
    w = np.zeros((n, k))
    for i in range(n):
        vals = [s[i, x] if x >= 0 else 0.0 for x in experts[i]]
        total = sum(vals)
        w[i] = [v / total if normalize and total != 0 else v for v in vals]
    return w


def price_gap(s, member, k, c, prices):
    """The exact duality gap of the prices for the membership (the conditions of proofs/maxscore.md, Definition: Certificate), as a float,
    or None when a sign condition fails. C*E < k*N uses the best threshold sigma (the C*E-th largest of the tokens'
    k largest reduced scores)."""
    n, e = s.shape
    lam = [Fraction(float(v)) for v in prices]
    score = exact_score(s, member)
    full = c * e >= k * n
    if full:
        if any(v < 0 for v in lam):
            return None
        bound = c * sum(lam)
        for i in range(n):
            reduced = sorted((Fraction(float(s[i, j])) - lam[j] for j in range(e)), reverse=True)
            bound += sum(reduced[:k])
        return float(bound - score)
    tops = []
    for i in range(n):
        reduced = sorted((Fraction(float(s[i, j])) - lam[j] for j in range(e)), reverse=True)
        tops += reduced[:k]
    flow = c * e
    if flow == 0:
        return float(-score)
    tops.sort(reverse=True)
    sigma = tops[flow - 1]
    bound = flow * sigma + c * sum(lam) + sum(m - sigma for m in tops if m > sigma)
    return float(bound - score)


def verify_maxscore_case(name, inp, exp, p):
    s = inp["scores"].astype(np.float64)
    n, e = s.shape
    k, c = p["k"], capacity(n, e, p)
    problems = []
    opt, _ = optimum_flow(s, k, c)
    scale = float(sum(sum(sorted(np.abs(s[i]), reverse=True)[:k]) for i in range(n))) if n else 0.0
    tol = REL * max(scale, 1e-300)
    if k == 1:
        lsa = optimum_assignment(s, c)
        if abs(lsa - float(opt)) > tol:
            problems.append(f"scipy assignment {lsa!r} and networkx flow {float(opt)!r} disagree")
    experts = exp["experts"].astype(np.int64)
    if p["mode"] == "exact":
        member, why = membership(s, experts, k)
        if why:
            problems.append(why)
        else:
            flow = int(member.sum())
            if flow != min(k * n, c * e) or (member.sum(axis=0) > c).any():
                problems.append(f"not a feasible maximum flow (flow {flow})")
            if exact_score(s, member) != opt:
                problems.append(f"score {float(exact_score(s, member))!r} is not the optimum {float(opt)!r}")
            if not np.array_equal(exp["load"], member.sum(axis=0)):
                problems.append("load does not match experts")
            gap = price_gap(s, member, k, c, exp["prices"])
            if gap is None or gap > tol + REL * c * float(np.abs(exp["prices"]).sum()):
                problems.append(f"prices do not certify the routing (gap {gap})")
        if abs(float(exp["objective"]) - float(opt)) > tol:
            problems.append(f"objective {float(exp['objective'])!r}, optimum {float(opt)!r}")
    else:
        # Two-stage: stage 1 in token order, stage 2 a maximum-weight matching of the leftover slots (scipy).
        load = np.zeros(e, dtype=np.int64)
        first = np.zeros(n, dtype=np.int64)
        for i in range(n):
            room = [j for j in range(e) if load[j] < c]
            first[i] = max(room, key=lambda j: (s[i, j], -j))
            load[first[i]] += 1
        slot_expert = np.array([j for j in range(e) for _ in range(c - load[j])], dtype=np.int64)
        weight = s[:, slot_expert].copy()
        weight[slot_expert[None, :] == first[:, None]] = 0.0
        rows, cols = linear_sum_assignment(weight, maximize=True)
        best = float(weight[rows, cols].sum())
        if not np.array_equal(experts[:, 0], first):
            problems.append("stage 1 differs")
        second = experts[:, 1]
        if not np.array_equal(np.bincount(second, minlength=e), np.bincount(slot_expert, minlength=e)):
            problems.append("stage 2 does not fill the leftover slots")
        got = float(sum(0.0 if second[i] == first[i] else s[i, second[i]] for i in range(n)))
        if abs(got - best) > tol:
            problems.append(f"stage-2 weight {got!r}, scipy's maximum {best!r}")
        repeated = int((experts[:, 0] == experts[:, 1]).sum())
        if int(exp["repeated"]) != repeated:
            problems.append("repeated does not count the repeated rows")
        objective = float(s[np.arange(n), first].sum()) + best
        if abs(float(exp["objective"]) - objective) > tol:
            problems.append(f"objective {float(exp['objective'])!r}, expected {objective!r}")
        if abs(float(exp["gap"]) - (float(opt) - objective)) > tol:
            problems.append(f"gap {float(exp['gap'])!r}, expected {float(opt) - objective!r}")
    if not np.allclose(exp["weights"], weights_of(s, experts, p["normalize"]), rtol=1e-12, atol=0.0):
        problems.append("weights are not S at the experts")
    return problems


def auction(s):
    """fairseq's balanced_assignment auction, from its semantics: experts bid for tokens (ties to the lower index)."""
    n, e = s.shape
    eps = max((s.max() - s.min()) / 50.0, 1e-4)
    if e == 1:
        return np.zeros(n, dtype=np.int64), 0
    m = n // e
    w = s.T.copy()
    top_value = w.max()
    value = w.copy()
    price = np.zeros(n)
    winners = None
    counter = 0
    while True:
        order = np.argsort(-value, axis=1, kind="stable")[:, :m + 1]
        tops = np.take_along_axis(value, order, axis=1)
        bids = np.zeros((e, n))
        for j in range(e):
            bids[j, order[j, :m]] = tops[j, :m] - tops[j, m] + eps
        if 0 < counter < 100:
            bids[winners] = eps
        high = bids.max(axis=0)
        bidder = bids.argmax(axis=0)                            # the first (lowest) expert on ties
        if (high > 0).all():
            break
        price += high
        value = w - price[None, :]
        has = np.nonzero(high > 0)[0]
        winners = (bidder[has], has)
        value[winners] = top_value if counter < 100 else w[winners]
        counter += 1
    experts = np.full(n, -1, dtype=np.int64)
    for j in range(e):
        for t in order[j, :m]:
            if experts[t] < 0:
                experts[t] = j
    return experts, counter


def verify_base_case(name, inp, exp, p):
    s = inp["scores"].astype(np.float64)
    n, e = s.shape
    problems = []
    opt = optimum_assignment(s, n // e)
    exact, _ = optimum_flow(s, 1, n // e)
    tol = REL * max(float(np.abs(s).max(axis=1).sum()), 1e-300)
    if abs(opt - float(exact)) > tol:
        problems.append("scipy and networkx disagree")
    experts = exp["experts"].astype(np.int64)[:, 0]
    if p["method"] == "exact":
        if not np.array_equal(np.bincount(experts, minlength=e), np.full(e, n // e)) or (experts < 0).any():
            problems.append("not balanced")
        elif abs(float(s[np.arange(n), experts].sum()) - opt) > tol:
            problems.append("not optimal")
        if abs(float(exp["objective"]) - opt) > tol:
            problems.append(f"objective {float(exp['objective'])!r}, optimum {opt!r}")
    else:
        mine, rounds = auction(s)
        if not np.array_equal(mine, experts):
            problems.append("auction experts differ")
        if int(exp["rounds"]) != rounds:
            problems.append(f"rounds {int(exp['rounds'])}, this auction took {rounds}")
        objective = float(s[np.arange(n), mine].sum())
        if abs(float(exp["objective"]) - objective) > tol or abs(float(exp["gap"]) - (opt - objective)) > tol:
            problems.append("objective or gap differ")
    return problems


def verify(algorithm, root):
    failures = 0
    cases = case_names(root)
    for name in cases:
        inp, raw, exp = read_case(os.path.join(root, name))
        p = params_of(raw, algorithm)
        check = verify_maxscore_case if algorithm == "maxscore" else verify_base_case
        problems = check(name, inp, exp, p)
        if problems:
            failures += 1
            print(f"MISMATCH {name}: {'; '.join(problems)}")
    print(f"{algorithm} peer: {len(cases) - failures} of {len(cases)} cases agree")
    return 1 if failures or not cases else 0


def generate(algorithm, out, seed, count):
    rng = np.random.default_rng(seed)
    for c in range(count):
        if algorithm == "base":
            e = int(rng.choice([1, 2, 3, 4, 6]))
            n = e * int(rng.integers(1, 8))
            params = {"method": str(rng.choice(["exact", "auction"]))}
        elif rng.random() < 0.25:
            e = int(rng.choice([2, 3, 4]))
            cap = int(rng.integers(1, 5))
            cap += (cap * e) % 2
            n = cap * e // 2
            params = {"mode": "two-stage", "k": 2, "capacity": cap}
        else:
            n = int(rng.choice([1, 2, 5, 9, 17]))
            e = int(rng.choice([1, 2, 3, 5, 8]))
            k = int(rng.integers(1, min(e, 3) + 1))
            fair = -(-n * k // e)
            params = {"k": k, "capacity": max(0, fair + int(rng.integers(-2, 3)))}
            if rng.random() < 0.3:
                params["normalize"] = True
        kind = rng.integers(0, 3)
        if kind == 0:
            x = rng.normal(0.0, 2.0, size=(n, e))
            s = np.exp(x - x.max(axis=1, keepdims=True))
            s = s / s.sum(axis=1, keepdims=True)
        elif kind == 1:
            s = rng.integers(0, 5, size=(n, e)) * 0.125           # exact ties
        else:
            s = rng.normal(0.0, 1.0, size=(n, e))
        dtype = np.float32 if rng.random() < 0.3 else np.float64
        write_case(os.path.join(out, f"case-{c:03d}"), {"scores": s.astype(dtype)}, params)
    return 0


if __name__ == "__main__":
    algorithm = ("maxscore", "base")
    dispatch(sys.argv, __doc__, {"verify": (verify, [algorithm, str]),
                                 "generate": (generate, [algorithm, str, int, int])})
