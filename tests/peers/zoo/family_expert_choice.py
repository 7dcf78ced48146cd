"""Bug zoo: expert-choice routing (`expert-choice`, proofs/expert-choice.md, Definition).

Correct implementations follow Zhou et al. / flaxformer's ExpertsChooseMaskedRouter (softmax over experts, each
expert takes its top-C tokens) in torch (topk over the transposed scores) and numpy (stable argsort). Every case is
checked at build time against this file's float64 reference (ref_ec).
"""

import math
from fractions import Fraction

import numpy as np
import torch

import zoo_common as z

FAMILY = "expert-choice"


def capacity_of(n, e, k, cf):
    return min(n, math.ceil(Fraction(cf) * n * k / e))


def ref_ec(logits, C):
    p = z.softmax(z.widen(logits))
    n, e = p.shape
    tokens = np.array([sorted(range(n), key=lambda i: (-p[i, x], i))[:C] for x in range(e)], dtype=np.int64)
    gates = np.take_along_axis(p.T, tokens, 1)
    count = np.bincount(tokens.ravel(), minlength=n)
    return tokens, gates, count


def verify(c, C, must_agree):
    ref = dict(zip(("tokens", "gates", "count"), ref_ec(c["inputs"]["logits"], C)))
    same = True
    for name in ("tokens", "count"):
        if name in c["candidate"]:
            got = np.asarray(c["candidate"][name])
            same &= got.shape == ref[name].shape and got.dtype.kind in "iu" and bool(np.array_equal(got, ref[name]))
    if "gates" in c["candidate"]:
        same &= z.max_abs_err(c["candidate"]["gates"], ref["gates"]) <= z.TOL[c["dtype"]] * 0.5
    z.require(same == must_agree, f"{c['name']}: build-time check says {'agrees' if same else 'differs'}")


def make_logits(seed, n, e, scale=1.5):
    return (z.rng(seed).standard_normal((n, e)) * scale).astype(np.float32)


def torch_topk_ec(logits_t, C, out_dtype, dim=-1):
    s = torch.softmax(logits_t.float(), dim=dim)
    gates, idx = torch.topk(s.t(), C, dim=1)
    count = torch.bincount(idx.reshape(-1), minlength=s.shape[0])
    return {"tokens": idx.numpy(), "gates": z.from_torch(gates.to(out_dtype)), "count": count.numpy()}


def numpy_stable_ec(x, C, dtype, by_logits=False, per_expert_norm=False, bincount_minlength=True):
    xs = z.widen(x).astype(np.float32)
    p = z.softmax(xs)
    key = xs if by_logits else p
    idx = np.argsort(-key.T, axis=1, kind="stable")[:, :C]
    gates = np.take_along_axis(p.T, idx, 1)
    if per_expert_norm:
        gates = gates / gates.sum(1, keepdims=True)
    count = np.bincount(idx.ravel(), minlength=p.shape[0] if bincount_minlength else 0)
    return {"tokens": idx.astype(np.int32), "gates": z.cast(gates, dtype), "count": count.astype(np.int32)}


def cases():
    out = []

    def add(name, kind, dtype, style, why, logits, params, cand, C, check=True):
        c = z.case(name=f"expert-choice/{name}", algorithm="expert-choice", kind=kind, dtype=dtype, style=style,
                   why=why, inputs={"logits": logits}, params=params, candidate=cand)
        if check and kind != "malformed":
            verify(c, C, kind == "correct")
        out.append(c)

    n, e = 1024, 16
    # ---- correct ------------------------------------------------------------------------------------------
    x = make_logits(401, n, e)
    C = capacity_of(n, e, 2, 1.0)
    add("torch-topk/f32/correct", "correct", "f32", "Zhou et al. expert choice / flaxformer ExpertsChooseMaskedRouter, torch",
        "float32 softmax over experts, torch.topk over tokens of the transposed scores, bincount",
        x, {"capacity_factor": 1.0, "k": 2}, torch_topk_ec(torch.from_numpy(x), C, torch.float32), C)

    x = make_logits(402, n, e)
    xb = z.cast(x, "bf16")
    C = capacity_of(n, e, 1, 1.25)
    add("numpy-stable-argsort/bf16/correct", "correct", "bf16", "expert choice in numpy (stable argsort)",
        "bf16 logits, float32 softmax, stable argsort per expert (ties to the lower token), bf16 gates",
        xb, {"capacity_factor": 1.25}, numpy_stable_ec(xb, C, "bf16"), C)

    x = make_logits(403, n, e)
    xh = x.astype(np.float16)
    add("explicit-capacity/f16/correct", "correct", "f16", "expert choice with a fixed per-expert buffer, torch",
        "float16 logits, float32 softmax, explicit capacity 100, float16 gates",
        xh, {"capacity": 100}, torch_topk_ec(torch.from_numpy(xh), 100, torch.float16), 100)

    # ---- bugs ---------------------------------------------------------------------------------------------
    x = make_logits(411, n, e)
    C = capacity_of(n, e, 1, 1.0)
    add("softmax-over-tokens/f32/bug", "bug", "f32", "expert choice normalizing each expert's column",
        "softmax over the token axis (each expert's distribution over tokens) instead of over experts",
        x, {"capacity_factor": 1.0}, torch_topk_ec(torch.from_numpy(x), C, torch.float32, dim=0), C)

    x = make_logits(412, n, e)
    xb = z.cast(x, "bf16")
    C = capacity_of(n, e, 1, 1.0)
    add("ranked-by-logits/bf16/bug", "bug", "bf16", "expert choice ranking raw router logits",
        "each expert takes its top tokens by logit, not by softmax probability (ignores each token's normalizer)",
        xb, {"capacity_factor": 1.0}, numpy_stable_ec(xb, C, "bf16", by_logits=True), C)

    n2, e2 = 1000, 16  # 1000*2*1.1/16 = 137.5
    x = make_logits(413, n2, e2)
    add("floor-capacity/f32/bug", "bug", "f32", "expert choice with capacity = int(cf*N*k/E)",
        "capacity 137 where ceil gives 138: every expert's token list one short (shape [E, C-1])",
        x, {"capacity_factor": 1.1, "k": 2}, numpy_stable_ec(x, 137, "f32"), 138, check=False)

    x = make_logits(414, n, e)
    xh = x.astype(np.float16)
    C = capacity_of(n, e, 1, 0.5)
    cand = numpy_stable_ec(xh, C, "f16", bincount_minlength=False)
    z.require(cand["count"].shape[0] < n, "bincount without minlength is short")
    add("bincount-without-minlength/f16/bug", "bug", "f16", "numpy expert choice, np.bincount(tokens) without minlength",
        f"count has shape [{cand['count'].shape[0]}] instead of [N={n}]: the last tokens, chosen by no expert, are missing",
        xh, {"capacity_factor": 0.5}, cand, C, check=False)

    x = make_logits(415, n, e)
    xb = z.cast(x, "bf16")
    C = capacity_of(n, e, 1, 1.0)
    add("gates-normalized-per-expert/bf16/bug", "bug", "bf16", "expert choice with gates renormalized per expert",
        "each expert's C gates divided by their sum (the contract keeps P at the pair)",
        xb, {"capacity_factor": 1.0}, numpy_stable_ec(xb, C, "bf16", per_expert_norm=True), C)

    x = make_logits(416, n, e)
    C = capacity_of(n, e, 1, 1.0)
    cand = torch_topk_ec(torch.from_numpy(x), C, torch.float32)
    g = cand["gates"]
    a = int(np.argmax(g[:, 0] - g[:, -1]))
    cand["gates"] = z.swap_one_token(g, a, 0, C - 1)
    add("swap-gates/f32/bug", "bug", "f32", "expert choice, one expert's gates written in the wrong order",
        f"expert {a}: the gates of its best and last token exchanged", x, {"capacity_factor": 1.0}, cand, C)

    # ---- malformed ----------------------------------------------------------------------------------------
    x = make_logits(421, 64, 8)
    add("capacity-above-n/f32/malformed", "malformed", "f32", "config typo", "capacity 65 with N = 64",
        x, {"capacity": 65}, torch_topk_ec(torch.from_numpy(x), 64, torch.float32), 64)
    return out
