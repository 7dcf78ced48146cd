"""Bug zoo, MoBA (`moba`): mixture of block attention, self-attention Tq = Tk = T.

Conventions imitated: MoBA's moba_attn_varlen_naive (gate = q . mean of each chunk's keys in float32, chunks that end
after the query get -inf, the query's own chunk +inf, topk, then one masked causal softmax) and its efficient path
(the own chunk by causal flash attention, the selected history chunks by non-causal attention, the two partial results
merged by their lse).
"""
import math

import numpy as np
import torch

from zoo_attention_common import NEG, attn_flash, attn_naive, case, cast, randn, ref_attention, verify

FAMILY = "moba"
NAIVE = "MoBA moba_attn_varlen_naive"
EFFICIENT = "MoBA efficient (own chunk causal + history chunks, lse merge)"


def moba_allowed(q, k, chunk, top_k, dtype=np.float32, force_own=True, own_counts=True, gate="mean", scale=1.0,
                 own_causal=True):
    """Allowed [B,H,T,T]. Bugs: force_own=False leaves the own chunk to the gate (it is incomplete, so -inf);
    own_counts=False selects top_k history chunks plus the own one; own_causal=False lets the own chunk's later keys in.
    gate="sum" (unnormalized) with a positive scale ranks complete chunks exactly as the mean does."""
    q = np.asarray(q, dtype=dtype)
    k = np.asarray(k, dtype=dtype)
    b, h, t, d = q.shape
    nc = -(-t // chunk)
    pooled = np.stack([k[:, :, c * chunk:(c + 1) * chunk].sum(2) if gate == "sum"
                       else k[:, :, c * chunk:(c + 1) * chunk].mean(2) for c in range(nc)], axis=2)  # [B,H,nc,D]
    g = np.einsum("bhtd,bhcd->bhtc", q, pooled) * dtype(scale)
    pos = np.arange(t)[:, None]
    ends = (np.arange(nc)[None, :] + 1) * chunk
    own = pos // chunk == np.arange(nc)[None, :]
    g = np.where(pos < ends, -np.inf, g)
    if force_own:
        g = np.where(own, np.inf, g)
    keep = min(top_k + (0 if own_counts else 1), nc)
    order = np.argsort(-g, axis=-1, kind="stable")[..., :keep]        # ties (the -inf chunks) to the lower index
    sel = np.zeros(g.shape, bool)
    np.put_along_axis(sel, order, True, axis=-1)
    key_chunk = np.arange(t) // chunk
    allowed = sel[..., key_chunk]                                       # [B,H,T,T]
    j = np.arange(t)[None, :]
    causal = j <= pos
    if not own_causal:
        causal = causal | (key_chunk[None, :] == pos // chunk)
    return allowed & causal


def moba_efficient(q, k, v, allowed, chunk, scale, out="f32", p_round=False, merge="lse"):
    """Own chunk (causal) and history chunks attended separately by online softmax, merged by lse."""
    t = np.shape(q)[2]
    own = (np.arange(t)[:, None] // chunk) == (np.arange(t)[None, :] // chunk)
    parts = []
    for part in (allowed & own, allowed & ~own):
        acc, m, l = attn_flash(q, k, v, part, scale, block_n=chunk, p_round=p_round, partial=True)
        ok = l > 0
        o = torch.where(ok, acc / torch.where(ok, l, torch.ones_like(l)), torch.zeros_like(acc))
        lse = torch.where(ok, m + torch.log(torch.where(ok, l, torch.ones_like(l))), torch.full_like(l, NEG))
        parts.append((o, lse))
    (o1, l1), (o2, l2) = parts
    big = torch.maximum(l1, l2)
    big_safe = torch.where(torch.isfinite(big), big, torch.zeros_like(big))
    w1, w2 = torch.exp(l1 - big_safe), torch.exp(l2 - big_safe)
    tot = w1 + w2
    o = (w1 * o1 + w2 * o2) / torch.where(tot > 0, tot, torch.ones_like(tot))
    lse = big if merge == "max" else big_safe + torch.log(tot)
    return cast(o, out), cast(lse[..., 0], "f32")


def cases():
    out = []

    def add(name, kind, dtype, style, why, inputs, params, cand):
        c = case("moba/" + name, "moba", kind, dtype, style, why, inputs, params, cand)
        if kind != "malformed":
            q, k, v = inputs["q"], inputs["k"], inputs["v"]
            allowed = moba_allowed(q, k, params["chunk_size"], params["top_k"], dtype=np.float64)
            o, lse = ref_attention(q, k, v, allowed, 1 / math.sqrt(q.shape[-1]))
            verify(c, {"out": o, "lse": lse})
        out.append(c)

    def qkv(seed, dtype, b=1, h=4, t=512, d=64):
        return (randn(seed, (b, h, t, d), dtype, 1.5), randn(seed + 1, (b, h, t, d), dtype, 1.5),
                randn(seed + 2, (b, h, t, d), dtype))

    sc = 1 / math.sqrt(64)
    # --- float32: T = 512, chunks of 64, top 3 ----------------------------------------------------------------------
    q, k, v = qkv(10, "f32")
    inp = dict(q=q, k=k, v=v)
    prm = dict(chunk_size=64, top_k=3)
    al = moba_allowed(q, k, 64, 3)
    o, lse = attn_naive(q, k, v, al, sc)
    add("naive/f32/correct", "correct", "f32", NAIVE, "float32 mean-key gate, -inf/+inf chunk rules, topk, one masked "
        "causal softmax", inp, prm, dict(out=o, lse=lse))
    o, lse = moba_efficient(q, k, v, al, 64, sc)
    add("efficient/f32/correct", "correct", "f32", EFFICIENT, "own chunk causal and history chunks separately, "
        "online softmax per 64-key chunk, merged by lse", inp, prm, dict(out=o, lse=lse))
    o, lse = attn_flash(q, k, v, moba_allowed(q, k, 64, 3, gate="sum", scale=sc), sc, block_n=128)
    add("gate-sum-scaled/f32/correct", "correct", "f32", NAIVE, "gate from unnormalized key sums times 1/sqrt(D): "
        "every gated chunk is complete (Bc keys) and the scale is positive, so the ranking equals the mean gate's; "
        "online softmax over 128-key tiles", inp, prm, dict(out=o, lse=lse))
    o, lse = attn_naive(q, k, v, moba_allowed(q, k, 64, 3, force_own=False), sc)
    add("naive/f32/own-chunk-not-forced/bug", "bug", "f32", NAIVE, "the query's own chunk is not set to +inf: being "
        "incomplete it gets -inf and drops out once 3 complete chunks exist", inp, prm, dict(out=o, lse=lse))
    o, lse = moba_efficient(q, k, v, moba_allowed(q, k, 64, 3, own_causal=False), 64, sc)
    add("efficient/f32/own-chunk-not-causal/bug", "bug", "f32", EFFICIENT, "own-chunk attention called with "
        "causal=False (later keys of the chunk leak in)", inp, prm, dict(out=o, lse=lse))
    o, lse = attn_naive(q, k, v, moba_allowed(q, k, 64, 3, own_counts=False), sc)
    add("naive/f32/topk-plus-own/bug", "bug", "f32", NAIVE, "top_k history chunks plus the own chunk (k+1 chunks): "
        "the own chunk not counted toward k", inp, prm, dict(out=o, lse=lse))
    o, lse = moba_efficient(q, k, v, al, 64, sc, merge="max")
    add("efficient/f32/lse-merge-max/bug", "bug", "f32", EFFICIENT, "merged lse = max(lse_own, lse_hist) (log-sum "
        "forgotten); out merged right", inp, prm, dict(out=o, lse=lse))
    o, lse = attn_naive(q, k, v, al, sc * (1 + 1e-3))
    add("naive/f32/scale-1e-3/bug", "bug", "f32", NAIVE, "softmax scale x(1+1e-3)", inp, prm, dict(out=o, lse=lse))
    o, _ = attn_naive(q, k, v, al, sc * (1 + 1e-3))
    add("naive/f32/scale-1e-3-out-only/bug", "bug", "f32", NAIVE, "softmax scale x(1+1e-3); out only (moba returns "
        "no lse)", inp, prm, dict(out=o))

    # --- float16: T = 384, chunks of 32, top 4 -----------------------------------------------------------------------
    q, k, v = qkv(20, "f16", t=384)
    inp = dict(q=q, k=k, v=v)
    prm = dict(chunk_size=32, top_k=4)
    al = moba_allowed(q, k, 32, 4)
    o, _ = attn_naive(q, k, v, al, sc, out="f16", p_round=True)
    add("naive/f16/correct", "correct", "f16", NAIVE, "f16 inputs, gate and softmax in f32, p.type_as(v) (P rounded to "
        "f16) before PV, out f16", inp, prm, dict(out=o))
    o, lse = moba_efficient(q, k, v, al, 32, sc, out="f16", p_round=True)
    add("efficient/f16/correct", "correct", "f16", EFFICIENT, "f16 kernel recipe per part, parts merged by lse in "
        "f32, out f16, lse f32", inp, prm, dict(out=o, lse=lse))
    o, lse = moba_efficient(q, k, v, al, 32, sc * (1 + 1e-2), out="f16", p_round=True)
    add("efficient/f16/scale-1e-2/bug", "bug", "f16", EFFICIENT, "softmax scale x(1+1e-2)", inp, prm,
        dict(out=o, lse=lse))
    o, _ = attn_naive(q, k, v, al, sc * (1 + 1e-2), out="f16", p_round=True)
    add("naive/f16/scale-1e-2-out-only/bug", "bug", "f16", NAIVE, "softmax scale x(1+1e-2); out only", inp, prm,
        dict(out=o))
    o, _ = attn_naive(q, k, v, moba_allowed(q, k, 32, 4, own_causal=False), sc, out="f16", p_round=True)
    add("naive/f16/own-chunk-not-causal/bug", "bug", "f16", NAIVE, "own chunk attended without the causal mask",
        inp, prm, dict(out=o))

    # --- malformed ---------------------------------------------------------------------------------------------------
    q, k, v = qkv(30, "f32", t=64, d=16)
    o, lse = attn_naive(q, k, v, moba_allowed(q, k, 16, 2), 0.25)
    add("malformed/top-k-missing", "malformed", "f32", NAIVE, "the required top_k parameter is not given",
        dict(q=q, k=k, v=v), dict(chunk_size=16), dict(out=o, lse=lse))
    add("malformed/kv-heads-differ", "malformed", "f32", NAIVE, "k and v with 2 heads for q's 4 (MoBA has one kv "
        "head per query head)", dict(q=q, k=k[:, :2].copy(), v=v[:, :2].copy()), dict(chunk_size=16, top_k=2),
        dict(out=o, lse=lse))
    return out
