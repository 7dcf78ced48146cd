"""Bug zoo: auxiliary router losses (`aux-loss`, proofs/aux-loss.md, Definition).

Correct implementations follow Megatron-LM's switch_load_balancing_loss_func and z_loss_func, HF Transformers'
load_balancing_loss_func / router_z_loss_func (k = 1, where its convention equals Megatron's; computed in bf16 as
HF does), and DeepSpeed's top1gating / top2gating l_aux. Every case is checked at build time against this file's
float64 reference (ref_aux).
"""

import math

import numpy as np
import torch

import zoo_common as z

FAMILY = "aux-loss"


def ref_aux(logits, k, variant="megatron"):
    x = z.widen(logits)
    n, e = x.shape
    p = z.softmax(x)
    sel = np.array([sorted(range(e), key=lambda j: (-p[i, j], j))[:k] for i in range(n)])
    if variant == "megatron":
        f = np.bincount(sel.ravel(), minlength=e) / (n * k)
    else:
        f = np.bincount(sel[:, 0], minlength=e) / n
    switch = e * float(np.sum(f * p.mean(0)))
    m = x.max(1)
    lse = m + np.log(np.exp(x - m[:, None]).sum(1))
    return switch, float(np.mean(lse ** 2))


def verify(c, must_agree):
    prm = c["params"]
    sw, zl = ref_aux(c["inputs"]["logits"], int(prm.get("k", 2)), prm.get("variant", "megatron"))
    same = True
    # one rounding to the output format plus a little (HF's all-bf16 arithmetic measured at most 1.07 u_bf16)
    tol = {"f32": 1e-5, "f16": 1.5 * 2.0 ** -11, "bf16": 1.5 * 2.0 ** -8}[c["dtype"]]
    for name, ref in (("switch_loss", sw), ("z_loss", zl)):
        if name in c["candidate"]:
            same &= z.max_rel_err(c["candidate"][name], np.array(ref)) <= tol
    z.require(same == must_agree, f"{c['name']}: build-time check says {'agrees' if same else 'differs'}")


def make_logits(seed, n, e, scale=1.5, skew=1.0):
    r = z.rng(seed)
    return (r.standard_normal((n, e)) * scale + np.linspace(0.0, skew, e)[r.permutation(e)]).astype(np.float32)


def megatron(logits_t, k, out_dtype, scale=1.0, square=True, drop_capacity=None, lse_dim=-1, probs_from_topk=False):
    """Megatron-LM: probs = softmax(logits) in float32, tokens_per_expert from the top-k routing map,
    aux = sum(probs.sum(0) * tokens_per_expert) * E / (N * N * k); z = mean(logsumexp(logits)^2)."""
    lg = logits_t.float()
    n, e = lg.shape
    probs = torch.softmax(lg, dim=-1)
    w, sel = torch.topk(probs, k, dim=-1)
    routing_map = torch.zeros(n, e, dtype=torch.bool).scatter(1, sel, True)
    if drop_capacity is not None:
        # the bug: count only what survives the capacity drop (first C tokens per expert in token order)
        keep = (torch.cumsum(routing_map.long(), 0) <= drop_capacity) & routing_map
        routing_map = keep
    tokens_per_expert = routing_map.sum(0).float()
    if probs_from_topk:
        probs = torch.zeros(n, e).scatter(1, sel, w / w.sum(-1, keepdim=True))
    aux = torch.sum(probs.sum(0) * tokens_per_expert) * e / (n * n * k) * scale
    lse = torch.logsumexp(lg, dim=lse_dim)
    zl = torch.mean(torch.square(lse) if square else lse)
    return {"switch_loss": z.from_torch(aux.to(out_dtype)), "z_loss": z.from_torch(zl.to(out_dtype))}


def hf_switch(logits_t, k, scale=1.0):
    """HF load_balancing_loss_func + router_z_loss_func, in the logits' dtype (bf16) as HF runs them."""
    e = logits_t.shape[1]
    routing = torch.softmax(logits_t, dim=-1)
    _, sel = torch.topk(routing, k, dim=-1)
    mask = torch.nn.functional.one_hot(sel, e)
    tokens_per_expert = torch.mean(mask.to(routing.dtype), dim=0)  # [k, E]: fractions per choice slot
    prob_per_expert = torch.mean(routing, dim=0)
    loss = torch.sum(tokens_per_expert * prob_per_expert.unsqueeze(0)) * e * scale
    log_z = torch.logsumexp(logits_t, dim=-1)
    zl = torch.sum(log_z ** 2) / logits_t.shape[0]
    return {"switch_loss": z.from_torch(loss), "z_loss": z.from_torch(zl)}


def deepspeed(x, variant, dtype, scale=1.0):
    """DeepSpeed top1gating / top2gating l_aux in numpy float32: me = mean gates, ce = mean first-choice mask."""
    xs = z.widen(x).astype(np.float32)
    gates = z.softmax(xs)
    n, e = gates.shape
    idx1 = np.argmax(gates, axis=1)
    mask1 = np.zeros((n, e), dtype=np.float32)
    mask1[np.arange(n), idx1] = 1
    me, ce = gates.mean(0), mask1.mean(0)
    l_aux = np.sum(me * ce) * e if variant == "deepspeed-top1" else np.mean(me * ce) * e * e
    return {"switch_loss": z.cast(np.float32(l_aux * scale), dtype)}


def cases():
    out = []

    def add(name, kind, dtype, style, why, logits, params, cand, check=True):
        c = z.case(name=f"aux-loss/{name}", algorithm="aux-loss", kind=kind, dtype=dtype, style=style, why=why,
                   inputs={"logits": logits}, params=params, candidate=cand)
        if check and kind != "malformed":
            verify(c, kind == "correct")
        out.append(c)

    n, e = 2048, 16
    # ---- correct ------------------------------------------------------------------------------------------
    x = make_logits(501, n, e)
    add("megatron/f32/correct", "correct", "f32", "Megatron-LM switch_load_balancing_loss_func + z_loss_func",
        "float32 probs, tokens_per_expert from the top-2 routing map, aux = sum(probs.sum(0)*tpe)*E/(N*N*k)",
        x, {"k": 2, "variant": "megatron"}, megatron(torch.from_numpy(x), 2, torch.float32))

    x = make_logits(502, n, e)
    xb = z.cast(x, "bf16")
    add("hf-switch-k1/bf16/correct", "correct", "bf16", "HF Transformers load_balancing_loss_func + router_z_loss_func",
        "bf16 logits, softmax and means in bf16 as HF runs them, top-1 (HF's convention equals Megatron's for k=1)",
        xb, {"k": 1, "variant": "megatron"}, hf_switch(z.as_torch(xb), 1))

    x = make_logits(503, n, e)
    xh = x.astype(np.float16)
    add("deepspeed-top1/f16/correct", "correct", "f16", "DeepSpeed top1gating l_aux",
        "float16 logits, float32 softmax, me*ce summed times E, loss cast to float16",
        xh, {"k": 1, "variant": "deepspeed-top1"}, deepspeed(xh, "deepspeed-top1", "f16"))

    x = make_logits(504, n, e)
    add("deepspeed-top2/f32/correct", "correct", "f32", "DeepSpeed top2gating l_aux",
        "numpy float32, ce from the first choice only, mean(me*ce)*E*E",
        x, {"k": 2, "variant": "deepspeed-top2"}, deepspeed(x, "deepspeed-top2", "f32"))

    # ---- bugs ---------------------------------------------------------------------------------------------
    for dtype, seed in (("f32", 511), ("bf16", 512)):
        d = z.delta(dtype)
        x = make_logits(seed, n, e)
        xs = z.cast(x, dtype)
        cand = megatron(z.as_torch(xs), 2, torch.float32 if dtype == "f32" else torch.bfloat16, scale=1.0 + d)
        cand = {"switch_loss": cand["switch_loss"]}
        add(f"loss-times-1+d/{dtype}/bug", "bug", dtype, "Megatron-LM aux loss with a stray scale",
            f"switch loss multiplied by (1 + {d}) (e.g. a coefficient applied twice, or a 1/(N-1) normalizer)",
            xs, {"k": 2, "variant": "megatron"}, cand)

    x = make_logits(513, n, e)
    cand = megatron(torch.from_numpy(x), 2, torch.float32, square=False)
    add("z-loss-without-square/f32/bug", "bug", "f32", "Megatron-LM z_loss_func without torch.square",
        "z-loss = mean(logsumexp) instead of mean(logsumexp^2)", x, {"k": 2}, {"z_loss": cand["z_loss"]})

    x = make_logits(514, n, e, skew=3.0)
    C = math.ceil(n * 2 / e)
    cand = megatron(torch.from_numpy(x), 2, torch.float32, drop_capacity=C)
    add("f-after-dropping/f32/bug", "bug", "f32", "Megatron-LM aux loss fed the post-capacity routing map",
        "tokens_per_expert counted after the capacity drop (contract: on the selection before any dropping)",
        x, {"k": 2, "variant": "megatron"}, {"switch_loss": cand["switch_loss"]})

    x = make_logits(515, n, e)
    xh = x.astype(np.float16)
    cand = hf_switch(torch.from_numpy(xh).float(), 2)
    add("hf-convention-for-megatron-k2/f16/bug", "bug", "f16", "HF load_balancing_loss_func used for a top-2 Megatron config",
        "tokens_per_expert normalized by N instead of N*k: the loss is k = 2 times Megatron's",
        xh, {"k": 2, "variant": "megatron"}, {"switch_loss": z.cast(z.widen(cand["switch_loss"]), "f16")})

    x = make_logits(516, n, e)
    xh = x.astype(np.float16)
    cand = deepspeed(xh, "deepspeed-top1", "f16", scale=1.0 / e)
    add("num-experts-factor-forgotten/f16/bug", "bug", "f16", "DeepSpeed top1gating l_aux without '* num_experts'",
        f"l_aux = sum(me*ce): the factor E = {e} forgotten (loss about 1/E)",
        xh, {"k": 1, "variant": "deepspeed-top1"}, cand)

    x = make_logits(517, n, e)
    xb = z.cast(x, "bf16")
    cand = megatron(z.as_torch(xb), 2, torch.bfloat16, lse_dim=0)
    add("z-loss-wrong-axis/bf16/bug", "bug", "bf16", "z_loss_func with logsumexp over dim=0",
        "logsumexp over the token axis instead of the expert axis", xb, {"k": 2}, {"z_loss": cand["z_loss"]})

    x = make_logits(518, n, e)
    cand = megatron(torch.from_numpy(x), 2, torch.float32, probs_from_topk=True)
    add("pbar-from-topk-weights/f32/bug", "bug", "f32", "aux loss fed the renormalized top-k gates",
        "Pbar averaged over the renormalized top-2 weights (zeros elsewhere) instead of the full softmax",
        x, {"k": 2, "variant": "megatron"}, {"switch_loss": cand["switch_loss"]})

    # ---- malformed ----------------------------------------------------------------------------------------
    x = make_logits(521, 64, 8)
    add("unknown-variant/f32/malformed", "malformed", "f32", "config typo", "variant = switch (not a known variant)",
        x, {"k": 2, "variant": "switch"}, megatron(torch.from_numpy(x), 2, torch.float32))
    return out
