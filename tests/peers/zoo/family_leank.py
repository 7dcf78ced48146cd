"""Bug zoo, LeanK (`leank`): keys outside the sink and recent windows are scored on their head's kept channels.

Conventions imitated: LeanK's training formula (scores q.k on the full region, q.(k*m) elsewhere, scale 1/sqrt(D)
with the full D) and its decode kernel (the pruned region's keys stored with only the kept channels, q gathered to
the same channels; the full region and the pruned region attended separately and merged by lse).
"""
import math

import numpy as np
import torch

from zoo_attention_common import NEG, case, cast, expand_kv, randn, round16, t32, verify

FAMILY = "leank"
TRAIN = "LeanK training formula (masked keys)"
KERNEL = "LeanK decode kernel (compressed pruned cache, lse merge)"


def regions(tq, tk, sink, recent, recent_off=False):
    """full [Tq,Tk] (sink or recent window) and causal [Tq,Tk], bottom-right aligned."""
    p = np.arange(tq)[:, None] + tk - tq
    j = np.arange(tk)[None, :]
    rec = ((j >= p - recent) if recent_off else (j > p - recent)) & (j <= p)
    return (j < sink) | rec, j <= p


def scores(q, k, cmask, full, scale, dtype=np.float32, mask_all=False, kept_scale=False, gqa="interleave",
           zero_head="zero-logit"):
    """[B,Hq,Tq,Tk] scores with -inf for dropped keys (causal mask applied by the caller)."""
    q = np.asarray(q, dtype)
    k = np.asarray(k, dtype)
    hq = q.shape[1]
    g = hq // k.shape[1]
    m = np.asarray(cmask, dtype)
    if gqa == "interleave":
        kk, mm = np.repeat(k, g, axis=1), np.repeat(m, g, axis=0)
    else:
        kk, mm = np.tile(k, (1, g, 1, 1)), np.tile(m, (g, 1))
    s_full = np.einsum("bhid,bhjd->bhij", q, kk) * dtype(scale)
    s_pr = np.einsum("bhid,bhjd->bhij", q, kk * mm[None, :, None, :])
    kept = mm.sum(-1)                                                     # [Hq]
    if kept_scale:
        s_pr = s_pr / np.sqrt(np.maximum(kept, 1))[None, :, None, None].astype(dtype)
    else:
        s_pr = s_pr * dtype(scale)
    s = s_pr if mask_all else np.where(full, s_full, s_pr)
    if zero_head == "drop":
        drop = (kept == 0)[None, :, None, None] & ~(full & ~mask_all)
        s = np.where(drop, -np.inf, s)
    return s


def softmax_out(s, v, causal, out="f32", p_round=False, hq=None):
    s = torch.from_numpy(np.asarray(s, np.float32)).masked_fill(~torch.from_numpy(np.broadcast_to(causal, s.shape).copy()),
                                                                 NEG)
    v = expand_kv(t32(v), s.shape[1])
    m = s.amax(-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    p = torch.exp(s - m)
    l = p.sum(-1, keepdim=True)
    o = torch.einsum("bhij,bhjd->bhid", round16(p) if p_round else p, v) / torch.where(l > 0, l, torch.ones_like(l))
    return cast(o, out), cast(torch.where(l > 0, m + torch.log(l), torch.full_like(l, NEG))[..., 0], "f32")


def leank_kernel(q, k, v, cmask, sink, recent, scale, out="f32", p_round=False, scale_mult=1.0):
    """Full region attended with all channels, pruned region with q and k gathered to the kept channels; the two
    partial results merged by lse."""
    b, hq, tq, d = np.shape(q)
    hkv, tk = np.shape(k)[1], np.shape(k)[2]
    g = hq // hkv
    full, causal = regions(tq, tk, sink, recent)
    sc = scale * scale_mult
    qf, kf = t32(q), t32(k)
    parts = []
    for is_full, region in ((True, full & causal), (False, ~full & causal)):
        s = torch.full((b, hq, tq, tk), NEG)
        for h in range(hq):
            kh = h // g
            idx = np.arange(d) if is_full else np.nonzero(cmask[kh])[0]
            if len(idx) == 0:
                continue          # a head with no kept channel has no pruned cache: its pruned keys are dropped
            sh = torch.einsum("bid,bjd->bij", qf[:, h][..., idx] * sc, kf[:, kh][..., idx])
            s[:, h] = sh.masked_fill(~torch.from_numpy(region), NEG)
        vv = expand_kv(t32(v), hq)
        m = s.amax(-1, keepdim=True)
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        p = torch.exp(s - m)
        l = p.sum(-1, keepdim=True)
        o = torch.einsum("bhij,bhjd->bhid", round16(p) if p_round else p, vv) / torch.where(l > 0, l,
                                                                                             torch.ones_like(l))
        parts.append((o, torch.where(l > 0, m + torch.log(torch.where(l > 0, l, torch.ones_like(l))),
                                     torch.full_like(l, NEG))))
    (o1, l1), (o2, l2) = parts
    big = torch.maximum(l1, l2)
    big = torch.where(torch.isfinite(big), big, torch.zeros_like(big))
    w1, w2 = torch.exp(l1 - big), torch.exp(l2 - big)
    tot = w1 + w2
    o = (w1 * o1 + w2 * o2) / torch.where(tot > 0, tot, torch.ones_like(tot))
    lse = torch.where(tot > 0, big + torch.log(torch.where(tot > 0, tot, torch.ones_like(tot))),
                      torch.full_like(tot, NEG))
    return cast(o, out), cast(lse[..., 0], "f32")


def channel_mask(seed, hkv, d, keep, zero_heads=()):
    r = np.random.default_rng(seed)
    m = np.zeros((hkv, d), bool)
    for h in range(hkv):
        if h not in zero_heads:
            m[h, r.choice(d, keep, replace=False)] = True
    return m


def cases():
    out = []

    def add(name, kind, dtype, style, why, inputs, params, cand):
        c = case("leank/" + name, "leank", kind, dtype, style, why, inputs, params, cand)
        if kind != "malformed":
            q, k, v = (np.asarray(inputs[n], np.float64) for n in ("q", "k", "v"))
            full, causal = regions(q.shape[2], k.shape[2], params["sink"], params["recent"])
            s = scores(q, k, inputs["channel_mask"], full, 1 / math.sqrt(q.shape[-1]), np.float64,
                       zero_head=params.get("zero_head", "zero-logit"))
            s = np.where(causal, s, -np.inf)
            m = s.max(-1, keepdims=True)
            m = np.where(np.isfinite(m), m, 0)
            p = np.exp(s - m)
            l = p.sum(-1, keepdims=True)
            vv = np.repeat(v, q.shape[1] // v.shape[1], axis=1)
            o = np.where(l > 0, np.einsum("bhij,bhjd->bhid", p, vv) / np.where(l > 0, l, 1), 0)
            lse = np.where(l > 0, m + np.log(np.where(l > 0, l, 1)), -np.inf)[..., 0]
            verify(c, {"out": o, "lse": lse})
        out.append(c)

    def setup(seed, dtype, tq, tk, b=1, hq=4, hkv=2, d=64, keep=24, zero_heads=()):
        q = randn(seed, (b, hq, tq, d), dtype, 1.5)
        k = randn(seed + 1, (b, hkv, tk, d), dtype, 1.5)
        v = randn(seed + 2, (b, hkv, tk, d), dtype)
        cm = channel_mask(seed + 3, hkv, d, keep, zero_heads)
        return q, k, v, cm, dict(q=q, k=k, v=v, channel_mask=cm)

    sc = 1 / math.sqrt(64)
    # --- float32: Tq = Tk = 512, sink 32, recent 128 ------------------------------------------------------------
    q, k, v, cm, inp = setup(10, "f32", 512, 512)
    prm = dict(sink=32, recent=128)
    full, causal = regions(512, 512, 32, 128)
    o, lse = softmax_out(scores(q, k, cm, full, sc), v, causal)
    add("train/f32/correct", "correct", "f32", TRAIN, "full and masked-key score matrices chosen by region, causal "
        "masked softmax", inp, prm, dict(out=o, lse=lse))
    o, lse = leank_kernel(q, k, v, cm, 32, 128, sc)
    add("kernel/f32/correct", "correct", "f32", KERNEL, "pruned keys on the gathered kept channels, full region on all "
        "channels, merged by lse", inp, prm, dict(out=o, lse=lse))
    o, lse = softmax_out(scores(q, k, cm, full, sc, mask_all=True), v, causal)
    add("train/f32/mask-everywhere/bug", "bug", "f32", TRAIN, "channel mask applied to the sink and recent keys too",
        inp, prm, dict(out=o, lse=lse))
    f2, _ = regions(512, 512, 32, 128, recent_off=True)
    o, lse = softmax_out(scores(q, k, cm, f2, sc), v, causal)
    add("train/f32/recent-off-by-one/bug", "bug", "f32", TRAIN, "recent window p-recent <= j (recent+1 full keys)",
        inp, prm, dict(out=o, lse=lse))
    o, lse = softmax_out(scores(q, k, cm, full, sc, kept_scale=True), v, causal)
    add("train/f32/kept-channel-scale/bug", "bug", "f32", TRAIN, "pruned scores scaled by 1/sqrt(kept channels) "
        "instead of 1/sqrt(D)", inp, prm, dict(out=o, lse=lse))
    o, lse = softmax_out(scores(q, k, cm, full, sc, gqa="tile"), v, causal)
    add("train/f32/gqa-tile/bug", "bug", "f32", TRAIN, "k and the channel mask expanded with tile/repeat (head "
        "h % Hkv)", inp, prm, dict(out=o, lse=lse))
    o, lse = leank_kernel(q, k, v, cm, 32, 128, sc, scale_mult=1 + 1e-3)
    add("kernel/f32/scale-1e-3/bug", "bug", "f32", KERNEL, "softmax scale x(1+1e-3)", inp, prm, dict(out=o, lse=lse))
    o, _ = leank_kernel(q, k, v, cm, 32, 128, sc, scale_mult=1 + 1e-3)
    add("kernel/f32/scale-1e-3-out-only/bug", "bug", "f32", KERNEL, "softmax scale x(1+1e-3); out only", inp, prm,
        dict(out=o))

    # A zero head (no kept channel) in the kernel's drop mode.
    q, k, v, cm, inp = setup(20, "f32", 256, 256, zero_heads=(1,))
    prm = dict(sink=16, recent=64, zero_head="drop")
    full, causal = regions(256, 256, 16, 64)
    o, lse = leank_kernel(q, k, v, cm, 16, 64, sc)
    add("kernel/f32/zero-head-drop/correct", "correct", "f32", KERNEL, "kv head 1 keeps no channel: its pruned region "
        "is empty in the compressed cache, only the full region is attended", inp, prm, dict(out=o, lse=lse))
    o, lse = softmax_out(scores(q, k, cm, full, sc), v, causal)
    add("train/f32/zero-head-as-zero-logit/bug", "bug", "f32", TRAIN, "zero_head=drop requested but the pruned keys "
        "of the empty head get logit 0", inp, prm, dict(out=o, lse=lse))

    # --- float16: decode-like Tq = 16 against Tk = 1024, sink 16, recent 64 ------------------------------------------
    q, k, v, cm, inp = setup(30, "f16", 16, 1024, keep=32)
    prm = dict(sink=16, recent=64)
    full, causal = regions(16, 1024, 16, 64)
    o, lse = leank_kernel(q, k, v, cm, 16, 64, sc, out="f16", p_round=True)
    add("kernel/f16/correct", "correct", "f16", KERNEL, "f16 cache, f32 scores, P rounded to f16, parts merged by lse, "
        "out f16, lse f32", inp, prm, dict(out=o, lse=lse))
    o, _ = softmax_out(scores(q, k, cm, full, sc), v, causal, out="f16")
    add("train/f16/correct", "correct", "f16", TRAIN, "f32 math on f16 inputs, out f16 (out only)", inp, prm,
        dict(out=o))
    o, lse = leank_kernel(q, k, v, cm, 16, 64, sc, out="f16", p_round=True, scale_mult=1 + 1e-2)
    add("kernel/f16/scale-1e-2/bug", "bug", "f16", KERNEL, "softmax scale x(1+1e-2)", inp, prm, dict(out=o, lse=lse))
    o, _ = softmax_out(scores(q, k, cm, full, sc * (1 + 1e-2)), v, causal, out="f16")
    add("train/f16/scale-1e-2-out-only/bug", "bug", "f16", TRAIN, "softmax scale x(1+1e-2); out only", inp, prm,
        dict(out=o))
    o, _ = softmax_out(scores(q, k, cm, full, sc, mask_all=True), v, causal, out="f16")
    add("train/f16/mask-everywhere/bug", "bug", "f16", TRAIN, "channel mask applied to sink and recent keys", inp,
        prm, dict(out=o))

    # --- malformed -------------------------------------------------------------------------------------------------
    q, k, v, cm, inp = setup(40, "f32", 32, 32, d=16, keep=8)
    bad = dict(inp)
    bad["channel_mask"] = np.ones((4, 16), bool)
    o, lse = leank_kernel(q, k, v, cm, 4, 8, 0.25)
    add("malformed/mask-per-query-head", "malformed", "f32", TRAIN, "channel_mask given per query head [Hq,D] "
        "instead of per kv head [Hkv,D]", bad, dict(sink=4, recent=8), dict(out=o, lse=lse))
    return out
