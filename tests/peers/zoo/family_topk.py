"""Bug zoo: token-choice top-k routing (`topk`, proofs/topk.md, Definition).

Correct implementations follow HF Transformers (Mixtral, Qwen2-MoE), DeepSeek-V3 (sigmoid scores, selection bias)
and Megatron-LM (pre_softmax=False: softmax over the k selected logits). Every case is checked at build time against
this file's own float64 reference (ref_topk): correct candidates must agree with it, bugs must not.
"""

import numpy as np
import torch

import zoo_common as z

FAMILY = "topk"


def ref_topk(logits, k, score="softmax", normalize=True, bias=None):
    """Float64 reference: experts by key P + b descending, ties to the lower index; weights P (normalized)."""
    x = z.widen(logits)
    p = z.softmax(x) if score == "softmax" else 1.0 / (1.0 + np.exp(-x))
    key = p + (0.0 if bias is None else z.widen(bias)[None, :])
    n, e = x.shape
    experts = np.empty((n, k), dtype=np.int64)
    for i in range(n):
        order = sorted(range(e), key=lambda j: (-key[i, j], j))
        experts[i] = order[:k]
    w = np.take_along_axis(p, experts, 1)
    if normalize:
        w = w / w.sum(1, keepdims=True)
    return experts, w, p, key


def verify(c, must_agree):
    """Build-time check of a case against ref_topk (tie-aware: compares selected keys, then weights)."""
    prm, cand = c["params"], c["candidate"]
    bias = c["inputs"].get("bias")
    ex, w, p, key = ref_topk(c["inputs"]["logits"], int(prm["k"]), prm.get("score", "softmax"),
                             prm.get("normalize", "true") == "true", bias)
    ce, cw = cand.get("experts"), cand.get("weights")
    same = True
    if ce is not None:
        ce = np.asarray(ce)
        if ce.shape != ex.shape or ce.dtype.kind not in "iu":
            same = False
        else:
            same &= bool(np.array_equal(np.take_along_axis(key, ce.astype(np.int64), 1),
                                        np.take_along_axis(key, ex, 1)))
    if cw is not None and same:
        ref_w = np.take_along_axis(p, np.asarray(ce if ce is not None else ex).astype(np.int64), 1)
        if prm.get("normalize", "true") == "true":
            ref_w = ref_w / ref_w.sum(1, keepdims=True)
        same &= z.max_rel_err(cw, ref_w) <= z.TOL[c["dtype"]]
    z.require(same == must_agree, f"{c['name']}: build-time check says {'agrees' if same else 'differs'}")


def make_logits(seed, n, e, scale=1.5):
    return (z.rng(seed).standard_normal((n, e)) * scale).astype(np.float32)


def hf_mixtral(logits_t, k, out_dtype):
    """MixtralSparseMoeBlock: softmax in float32, topk, renormalize, cast back to the hidden dtype."""
    routing = torch.softmax(logits_t, dim=1, dtype=torch.float)
    w, sel = torch.topk(routing, k, dim=-1)
    w = w / w.sum(dim=-1, keepdim=True)
    return sel, w.to(out_dtype)


def qwen2_moe_numpy(x, k, norm_topk_prob):
    """Qwen2-MoE gate written in numpy: softmax, argpartition for the top k, then sort the k by score."""
    p = z.softmax(x.astype(np.float32))
    part = np.argpartition(-p, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(p, part, 1)
    order = np.argsort(-vals, axis=1, kind="stable")
    sel = np.take_along_axis(part, order, 1)
    w = np.take_along_axis(p, sel, 1)
    if norm_topk_prob:
        w = w / w.sum(1, keepdims=True)
    return sel.astype(np.int32), w


def deepseek_v3(logits_t, bias_t, k, out_dtype, use_bias_in_weights=False):
    """DeepSeek-V3 gate (n_group = 1): sigmoid scores in float32, select on scores + correction bias, weigh by scores."""
    scores = torch.sigmoid(logits_t.float())
    choice = scores + bias_t.float()[None, :]
    _, sel = torch.topk(choice, k, dim=-1, sorted=True)
    w = torch.gather(choice if use_bias_in_weights else scores, 1, sel)
    w = w / w.sum(dim=-1, keepdim=True)
    return sel, w.to(out_dtype)


def megatron_topk_then_softmax(logits_t, k, out_dtype):
    """Megatron-LM topk_softmax_with_capacity, pre_softmax=False: topk on the logits, softmax over the k (float32)."""
    vals, sel = torch.topk(logits_t.float(), k, dim=1)
    w = torch.softmax(vals, dim=-1, dtype=torch.float32)
    return sel, w.to(out_dtype)


def cases():
    out = []

    def add(name, kind, dtype, style, why, inputs, params, candidate, check=True):
        c = z.case(name=f"topk/{name}", algorithm="topk", kind=kind, dtype=dtype, style=style, why=why,
                   inputs=inputs, params=params, candidate=candidate)
        if check and kind != "malformed":
            verify(c, kind == "correct")
        out.append(c)

    # ---- correct ------------------------------------------------------------------------------------------
    x = make_logits(101, 1024, 8)
    xb = z.cast(x, "bf16")
    sel, w = hf_mixtral(z.as_torch(xb), 2, torch.bfloat16)
    add("hf-mixtral/bf16/correct", "correct", "bf16", "HF Transformers MixtralSparseMoeBlock",
        "bf16 logits, softmax in float32, torch.topk, renormalize, weights cast to bf16, experts int64",
        {"logits": xb}, {"k": 2, "score": "softmax", "normalize": True},
        {"experts": z.from_torch(sel), "weights": z.from_torch(w)})

    x = make_logits(102, 768, 60, 1.0)
    sel, w = qwen2_moe_numpy(x, 4, False)
    add("qwen2-moe/f32/correct", "correct", "f32", "HF Transformers Qwen2MoeSparseMoeBlock (norm_topk_prob=False), numpy",
        "float32 softmax, argpartition then sort of the 4 by score, no renormalization",
        {"logits": x}, {"k": 4, "score": "softmax", "normalize": False},
        {"experts": sel, "weights": w.astype(np.float32)})

    x = make_logits(103, 512, 64, 2.0)
    bias = (z.rng(1103).standard_normal(64) * 0.05).astype(np.float32)
    sel, w = deepseek_v3(torch.from_numpy(x), torch.from_numpy(bias), 8, torch.float32)
    add("deepseek-v3/f32/correct", "correct", "f32", "DeepSeek-V3 MoEGate (sigmoid, e_score_correction_bias, n_group=1)",
        "sigmoid scores in float32, bias only for the selection, weights renormalized over the 8",
        {"logits": x, "bias": bias}, {"k": 8, "score": "sigmoid", "normalize": True},
        {"experts": z.from_torch(sel), "weights": z.from_torch(w)})

    x = make_logits(104, 512, 64, 2.0)
    xb = z.cast(x, "bf16")
    bias = (z.rng(1104).standard_normal(64) * 0.05).astype(np.float32)
    sel, w = deepseek_v3(z.as_torch(xb), torch.from_numpy(bias), 8, torch.bfloat16)
    add("deepseek-v3/bf16/correct", "correct", "bf16", "DeepSeek-V3 MoEGate, bf16 model",
        "bf16 logits widened, sigmoid + bias selection in float32, bf16 weights",
        {"logits": xb, "bias": bias}, {"k": 8, "score": "sigmoid", "normalize": True},
        {"experts": z.from_torch(sel), "weights": z.from_torch(w)})

    x = make_logits(105, 1024, 16)
    xh = x.astype(np.float16)
    sel, w = megatron_topk_then_softmax(torch.from_numpy(xh), 2, torch.float16)
    add("megatron-pre-softmax-false/f16/correct", "correct", "f16", "Megatron-LM topk_softmax_with_capacity, pre_softmax=False",
        "float16 logits, topk on logits, softmax over the 2 in float32, weights cast to float16 (= normalize=true)",
        {"logits": xh}, {"k": 2, "score": "softmax", "normalize": True},
        {"experts": sel.numpy().astype(np.int32), "weights": z.from_torch(w)})

    x = make_logits(106, 1024, 16)
    p = torch.softmax(torch.from_numpy(x).double(), dim=-1)
    w, sel = torch.topk(p, 2, dim=-1)
    add("megatron-pre-softmax-true/f32/correct", "correct", "f32", "Megatron-LM pre_softmax=True, float64 router",
        "softmax over all experts in float64, topk, no renormalization, weights cast to float32",
        {"logits": x}, {"k": 2, "score": "softmax", "normalize": False},
        {"experts": sel.numpy().astype(np.int32), "weights": w.float().numpy()})

    # ---- bugs ---------------------------------------------------------------------------------------------
    for dtype, seed in (("f32", 111), ("bf16", 112)):
        x = make_logits(seed, 1024, 8)
        xs = z.cast(x, dtype)
        sel, w = hf_mixtral(z.as_torch(xs), 2, torch.float32 if dtype == "f32" else torch.bfloat16)
        w = z.from_torch(w)
        wf = z.widen(w)
        i = int(np.argmax(np.abs(wf[:, 0] - wf[:, 1])))
        add(f"swap-one-token/{dtype}/bug", "bug", dtype, "HF Mixtral router, one token's two weights exchanged",
            f"token {i}: weights of its 1st and 2nd expert swapped (a scatter/gather index mix-up for one row)",
            {"logits": xs}, {"k": 2, "score": "softmax", "normalize": True},
            {"experts": z.from_torch(sel), "weights": z.swap_one_token(w, i, 0, 1)})

    x = make_logits(113, 512, 8)
    xt = torch.from_numpy(x)
    p = torch.softmax(xt, dim=0)  # over tokens, not experts
    w, sel = torch.topk(p, 2, dim=-1)
    w = w / w.sum(-1, keepdim=True)
    add("softmax-wrong-axis/f32/bug", "bug", "f32", "HF Mixtral router with softmax(dim=0)",
        "softmax over the token axis instead of the expert axis (router_logits laid out [N,E], dim=0 taken)",
        {"logits": x}, {"k": 2, "score": "softmax", "normalize": True},
        {"experts": sel.numpy(), "weights": w.numpy()})

    x = make_logits(114, 1024, 8)
    xb = z.cast(x, "bf16")
    p = torch.softmax(z.as_torch(xb), dim=1, dtype=torch.float)
    w, sel = torch.topk(p, 2, dim=-1)
    add("normalize-forgotten/bf16/bug", "bug", "bf16", "HF Mixtral router without the renormalization line",
        "normalize=true asked (Mixtral), the top-2 softmax weights are returned un-normalized",
        {"logits": xb}, {"k": 2, "score": "softmax", "normalize": True},
        {"experts": sel.numpy(), "weights": z.from_torch(w.to(torch.bfloat16))})

    x = make_logits(115, 512, 64, 2.0)
    bias = (z.rng(1115).standard_normal(64) * 0.05).astype(np.float32)
    xt = torch.from_numpy(x)
    scores = torch.softmax(xt, dim=-1)  # softmax where DeepSeek-V3 uses sigmoid
    _, sel = torch.topk(scores + torch.from_numpy(bias), 8, dim=-1)
    w = torch.gather(scores, 1, sel)
    w = w / w.sum(-1, keepdim=True)
    add("softmax-for-sigmoid/f32/bug", "bug", "f32", "DeepSeek-V3 gate ported from a Mixtral gate",
        "score=sigmoid asked, softmax computed (the selection and weights change)",
        {"logits": x, "bias": bias}, {"k": 8, "score": "sigmoid", "normalize": True},
        {"experts": sel.numpy(), "weights": w.numpy()})

    x = make_logits(116, 512, 64, 2.0)
    xb = z.cast(x, "bf16")
    bias = (z.rng(1116).standard_normal(64) * 0.1).astype(np.float32)
    sel, w = deepseek_v3(z.as_torch(xb), torch.from_numpy(bias), 8, torch.bfloat16, use_bias_in_weights=True)
    add("bias-in-weights/bf16/bug", "bug", "bf16", "DeepSeek-V3 gate gathering from scores_for_choice",
        "weights gathered from sigmoid + e_score_correction_bias instead of the sigmoid scores",
        {"logits": xb, "bias": bias}, {"k": 8, "score": "sigmoid", "normalize": True},
        {"experts": z.from_torch(sel), "weights": z.from_torch(w)})

    x = make_logits(117, 512, 16)
    xh = x.astype(np.float16)
    xt = torch.from_numpy(xh).float()
    w, sel = torch.topk(torch.softmax(xt, -1), 2, dim=-1)
    w = w / w.sum(-1, keepdim=True)
    # sigmoid router, but the kernel author took Mixtral's softmax: the inverse confusion, in float16
    add("sigmoid-asked-softmax-given/f16/bug", "bug", "f16", "sigmoid router served by a Mixtral-style softmax gate",
        "score=sigmoid, normalize=true asked; softmax computed: same ranking, different renormalized weights",
        {"logits": xh}, {"k": 2, "score": "sigmoid", "normalize": True},
        {"experts": sel.numpy(), "weights": w.half().numpy()}, check=False)
    # ranking is identical for softmax and sigmoid; the renormalized weights differ: check that much by hand
    ex, wr, _, _ = ref_topk(xh, 2, "sigmoid", True)
    z.require(z.max_rel_err(out[-1]["candidate"]["weights"], wr) > 0.05, "sigmoid/softmax bug is visible")

    x = make_logits(118, 512, 8)
    sel, w = qwen2_moe_numpy(x, 2, True)
    add("experts-as-float/f32/bug", "bug", "f32", "numpy router that keeps indices in the float score tensor",
        "experts written as float32 (np.argpartition result multiplied into a float buffer): wrong dtype kind",
        {"logits": x}, {"k": 2, "score": "softmax", "normalize": True},
        {"experts": sel.astype(np.float32), "weights": w}, check=False)

    x = make_logits(119, 512, 8)
    sel, w = qwen2_moe_numpy(x, 2, True)
    add("experts-transposed/f32/bug", "bug", "f32", "router returning [k, N] (a transposed gather layout)",
        "experts and weights written as [k, N] instead of [N, k]: wrong shape",
        {"logits": x}, {"k": 2, "score": "softmax", "normalize": True},
        {"experts": np.ascontiguousarray(sel.T), "weights": np.ascontiguousarray(w.T)}, check=False)

    x = make_logits(120, 1024, 16)
    xh = x.astype(np.float16)
    # Megatron pre_softmax=False computed, while the config asked pre_softmax=True (normalize=false)
    sel, w = megatron_topk_then_softmax(torch.from_numpy(xh), 2, torch.float16)
    add("pre-softmax-flag-ignored/f16/bug", "bug", "f16", "Megatron-LM router ignoring moe_router_pre_softmax",
        "pre_softmax=True (normalize=false) asked, softmax over the top-2 logits computed (weights sum to 1)",
        {"logits": xh}, {"k": 2, "score": "softmax", "normalize": False},
        {"experts": sel.numpy(), "weights": z.from_torch(w)})

    # ---- malformed ----------------------------------------------------------------------------------------
    x = make_logits(121, 64, 8)
    sel, w = qwen2_moe_numpy(x, 2, True)
    xn = x.copy()
    xn[5, 3] = np.nan
    add("nan-logits/f32/malformed", "malformed", "f32", "logits dumped after an overflow",
        "NaN in the logits input", {"logits": xn}, {"k": 2}, {"experts": sel, "weights": w})
    add("k-out-of-range/f32/malformed", "malformed", "f32", "config typo",
        "k = 9 with E = 8", {"logits": x}, {"k": 9}, {"experts": sel, "weights": w})
    add("no-known-outputs/f16/malformed", "malformed", "f16", "candidate saved under the model's own names",
        "candidate file holds topk_idx/topk_weight, none of the outputs experts/weights",
        {"logits": x.astype(np.float16)}, {"k": 2},
        {"topk_idx": sel, "topk_weight": w.astype(np.float16)})
    return out
