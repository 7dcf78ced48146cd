"""Bug zoo: balanced assignment (`base`, BASE layers) and MaxScore routing (`maxscore`), proofs/base.md, Definition and proofs/maxscore.md, Definition.

Correct implementations: scipy's linear_sum_assignment on experts repeated N/E times, POT's exact ot.emd plan,
scipy linprog (HiGHS dual simplex; the constraint matrix is totally unimodular, so a vertex is integral) and
networkx's network simplex on costs scaled to integers by 1e9. Optimality is checked at build time against
linear_sum_assignment / linprog objectives computed in float64 here.
"""

import numpy as np
import networkx as nx
import ot
from scipy.optimize import linear_sum_assignment, linprog

import zoo_common as z

FAMILY = "maxscore"


def make_scores(seed, n, e, skew=2.0):
    r = z.rng(seed)
    x = r.standard_normal((n, e)) * 1.5 + np.linspace(0.0, skew, e)[r.permutation(e)]
    return z.softmax(x).astype(np.float32)


def base_opt(S):
    n, e = S.shape
    rows, cols = linear_sum_assignment(np.repeat(S, n // e, axis=1), maximize=True)
    experts = np.empty(n, dtype=np.int64)
    experts[rows] = cols // (n // e)
    return experts, float(S[np.arange(n), experts].sum())


def maxscore_lp(S, k, C):
    """The LP of proofs/maxscore.md, Definition: Exact routing with C E >= k N: sum_e x_ie = k, sum_i x_ie <= C, 0 <= x <= 1; returns the 0/1 matrix."""
    n, e = S.shape
    A_eq = np.kron(np.eye(n), np.ones((1, e)))
    A_ub = np.kron(np.ones((1, n)), np.eye(e))
    res = linprog(-S.ravel(), A_ub=A_ub, b_ub=np.full(e, C), A_eq=A_eq, b_eq=np.full(n, k), bounds=(0, 1),
                  method="highs-ds")
    assert res.status == 0
    return (res.x.reshape(n, e) > 0.5)


def maxscore_networkx(S, k, C):
    n, e = S.shape
    g = nx.DiGraph()
    g.add_node("s", demand=-n * k)
    g.add_node("t", demand=n * k)
    for i in range(n):
        g.add_edge("s", ("tok", i), capacity=k, weight=0)
        for x in range(e):
            g.add_edge(("tok", i), ("exp", x), capacity=1, weight=-int(round(float(S[i, x]) * 1e9)))
    for x in range(e):
        g.add_edge(("exp", x), "t", capacity=C, weight=0)
    flow = nx.min_cost_flow(g)
    X = np.zeros((n, e), dtype=bool)
    for i in range(n):
        for (_, x), f in flow[("tok", i)].items():
            X[i, x] = f > 0
    return X


def outputs_from_matrix(S, X, k, dtype, normalize=False):
    n, e = S.shape
    experts = -np.ones((n, k), dtype=np.int32)
    for i in range(n):
        chosen = [x for x in range(e) if X[i, x]]
        chosen.sort(key=lambda x: (-S[i, x], x))
        experts[i, :len(chosen)] = chosen
    w = np.where(experts >= 0, np.take_along_axis(S.astype(np.float64), np.maximum(experts, 0), 1), 0.0)
    obj = float(w.sum())
    if normalize:
        w = w / w.sum(1, keepdims=True)
    return {"experts": experts, "weights": z.cast(w, dtype), "load": X.sum(0).astype(np.int32),
            "objective": z.cast(np.array(obj), dtype if dtype != "bf16" else "f32")}


def greedy_matrix(S, k, C):
    """Token order, each token takes its k best experts that still have room."""
    n, e = S.shape
    load = np.zeros(e, dtype=np.int64)
    X = np.zeros((n, e), dtype=bool)
    for i in range(n):
        for x in sorted(range(e), key=lambda x: (-S[i, x], x)):
            if X[i].sum() == k:
                break
            if load[x] < C:
                X[i, x] = True
                load[x] += 1
    return X


def two_stage_matrix(S, C):
    """The released MaxScore heuristic: stage 1 greedy argmax with room; stage 2 a max-weight matching of the
    leftover slots, the stage-1 expert weighted 0 (so it can be chosen again)."""
    n, e = S.shape
    load = np.zeros(e, dtype=np.int64)
    first = np.empty(n, dtype=np.int64)
    for i in range(n):
        x = max((x for x in range(e) if load[x] < C), key=lambda x: (S[i, x], -x))
        first[i] = x
        load[x] += 1
    slots = np.repeat(np.arange(e), C - load)
    W = S[:, slots].astype(np.float64).copy()
    W[first[:, None] == slots[None, :]] = 0.0
    rows, cols = linear_sum_assignment(W, maximize=True)
    X = np.zeros((n, e), dtype=bool)
    X[np.arange(n), first] = True
    X[rows, slots[cols]] = True
    return X


def cases():
    out = []

    def add(name, alg, kind, dtype, style, why, S, params, cand, opt=None, check=True):
        c = z.case(name=f"{alg}/{name}", algorithm=alg, kind=kind, dtype=dtype, style=style, why=why,
                   inputs={"scores": S}, params=params, candidate=cand)
        if check and kind != "malformed":
            got = float(z.widen(cand["objective"]))
            real = float(np.take_along_axis(z.widen(S), np.maximum(np.asarray(cand["experts"]), 0), 1)
                         [np.asarray(cand["experts"]) >= 0].sum())
            good = abs(real - opt) <= 1e-9 * max(1.0, abs(opt))
            z.require(good == (kind == "correct"), f"{c['name']}: optimal={good} (objective {real} vs {opt}, reported {got})")
        out.append(c)

    # ---- base ---------------------------------------------------------------------------------------------
    n, e = 256, 16
    S = make_scores(701, n, e)
    ex, obj = base_opt(z.widen(S))
    add("scipy-lsa/f32/correct", "base", "correct", "f32", "BASE layers exact assignment via scipy linear_sum_assignment",
        "experts repeated N/E times, Hungarian maximize, objective summed in float64 and stored as float32", S, {},
        {"experts": ex[:, None], "objective": np.float32(obj) * np.ones((), np.float32)}, obj)

    Sb = z.cast(make_scores(702, n, e), "bf16")
    Sw = z.widen(Sb)
    G = ot.emd(np.full(n, 1.0 / n), np.full(e, 1.0 / e), -Sw)
    ex2 = np.argmax(G, axis=1)
    _, obj = base_opt(Sw)
    z.require(np.all(np.bincount(ex2, minlength=e) == n // e), "emd plan is a balanced assignment")
    add("pot-emd/bf16/correct", "base", "correct", "bf16", "balanced assignment as exact OT (POT ot.emd), bf16 scores",
        "network-simplex plan with marginals 1/N, 1/E is a vertex: one expert per token; objective as float32",
        Sb, {}, {"experts": ex2[:, None].astype(np.int32), "objective": np.array(Sw[np.arange(n), ex2].sum(), np.float32)}, obj)

    S = make_scores(703, n, e)
    X = greedy_matrix(z.widen(S), 1, n // e)
    _, obj = base_opt(z.widen(S))
    o = outputs_from_matrix(z.widen(S), X, 1, "f32")
    add("greedy/f32/bug", "base", "bug", "f32", "BASE with a greedy balanced assignment",
        "tokens in order take their best expert with room: feasible but below the optimum", S, {},
        {"experts": o["experts"], "objective": o["objective"]}, obj)

    Sb = z.cast(make_scores(704, n, e), "bf16")
    X = greedy_matrix(z.widen(Sb), 1, n // e)
    _, obj = base_opt(z.widen(Sb))
    o = outputs_from_matrix(z.widen(Sb), X, 1, "bf16")
    add("greedy/bf16/bug", "base", "bug", "bf16", "BASE with a greedy balanced assignment, bf16 scores",
        "greedy in token order: feasible, suboptimal", Sb, {}, {"experts": o["experts"], "objective": o["objective"]}, obj)

    S = make_scores(705, n, e)
    ex = np.argmax(S, axis=1)
    _, obj = base_opt(z.widen(S))
    add("argmax-unbalanced/f32/bug", "base", "bug", "f32", "BASE layer evaluated with its inference-time argmax",
        "each token takes its argmax expert: the balance constraint (N/E per expert) is violated", S, {},
        {"experts": ex[:, None].astype(np.int32), "objective": np.array(S[np.arange(n), ex].sum(), np.float32)}, obj)

    # ---- maxscore -----------------------------------------------------------------------------------------
    n, e, k = 192, 16, 2
    C = n * k // e
    S = make_scores(711, n, e)
    X = maxscore_lp(z.widen(S), k, C)
    opt = float((z.widen(S) * X).sum())
    add("scipy-linprog/f32/correct", "maxscore", "correct", "f32", "MaxScore as an LP (scipy HiGHS dual simplex)",
        "token-expert LP with capacity C = N k / E, integral vertex, experts by descending score, float32 outputs",
        S, {"k": k}, outputs_from_matrix(z.widen(S), X, k, "f32"), opt)

    Sh = make_scores(712, n, e).astype(np.float16)
    X = maxscore_lp(z.widen(Sh), k, C)
    opt = float((z.widen(Sh) * X).sum())
    add("scipy-linprog/f16/correct", "maxscore", "correct", "f16", "MaxScore as an LP, float16 router scores",
        "float16 scores, HiGHS LP, weights and objective stored as float16", Sh, {"k": k},
        outputs_from_matrix(z.widen(Sh), X, k, "f16"), opt)

    Sb = z.cast(make_scores(713, n, e), "bf16")
    X = maxscore_networkx(z.widen(Sb), k, C)
    Xo = maxscore_lp(z.widen(Sb), k, C)
    opt = float((z.widen(Sb) * Xo).sum())
    add("networkx-mcf/bf16/correct", "maxscore", "correct", "bf16", "MaxScore as min-cost flow (networkx network simplex)",
        "bf16 scores scaled by 1e9 and rounded to integer costs (each off by at most 5e-10; the zoo checks the LP optimum is reached)",
        Sb, {"k": k}, outputs_from_matrix(z.widen(Sb), X, k, "bf16"), opt)

    S = make_scores(714, n, e)
    X = greedy_matrix(z.widen(S), k, C)
    opt = float((z.widen(S) * maxscore_lp(z.widen(S), k, C)).sum())
    add("greedy/f32/bug", "maxscore", "bug", "f32", "MaxScore replaced by greedy capacity-aware top-k",
        "tokens in order take their k best experts with room: feasible, suboptimal",
        S, {"k": k}, outputs_from_matrix(z.widen(S), X, k, "f32"), opt)

    S = make_scores(715, n, e, skew=3.0)
    X = two_stage_matrix(z.widen(S), C)
    opt = float((z.widen(S) * maxscore_lp(z.widen(S), k, C)).sum())
    o = outputs_from_matrix(z.widen(S), X, k, "f32")
    add("two-stage-for-exact/f32/bug", "maxscore", "bug", "f32", "the released MaxScore two-stage heuristic",
        "mode=exact asked; the two-stage heuristic's routing (stage-1 greedy, stage-2 matching) is below the optimum",
        S, {"k": k, "mode": "exact"}, {"experts": o["experts"], "weights": o["weights"], "load": o["load"],
                                        "objective": o["objective"]}, opt)

    Sh = make_scores(716, n, e).astype(np.float16)
    Sw = z.widen(Sh)
    X = np.zeros((n, e), dtype=bool)
    top = np.argsort(-Sw, axis=1, kind="stable")[:, :k]
    X[np.arange(n)[:, None], top] = True
    opt = float((Sw * maxscore_lp(Sw, k, C)).sum())
    add("capacity-ignored/f16/bug", "maxscore", "bug", "f16", "MaxScore entry point that skips the capacity",
        "plain top-k per token: experts above C", Sh, {"k": k}, outputs_from_matrix(Sw, X, k, "f16"), opt, check=False)

    Sb = z.cast(make_scores(717, n, e), "bf16")
    Sw = z.widen(Sb)
    X = maxscore_lp(Sw, k, C)
    opt = float((Sw * X).sum())
    o = outputs_from_matrix(Sw, X, k, "bf16", normalize=True)
    add("weights-normalized/bf16/bug", "maxscore", "bug", "bf16", "MaxScore routing with Mixtral's renormalization",
        "normalize=false asked; weights divided by their row sum", Sb, {"k": k, "normalize": False},
        {"experts": o["experts"], "weights": o["weights"]}, opt, check=False)

    # ---- malformed ----------------------------------------------------------------------------------------
    S = make_scores(721, 30, 8)
    add("e-does-not-divide-n/f32/malformed", "base", "malformed", "f32", "BASE with an awkward batch",
        "N = 30 tokens, E = 8 experts: E does not divide N", S, {},
        {"experts": np.zeros((30, 1), np.int32), "objective": np.zeros((), np.float32)})
    return out
