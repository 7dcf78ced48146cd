"""Bug zoo, ReSA decode step (`resa`): block min/max summaries, pooled-query block scores, local + top blocks.

Conventions imitated: ReSA's sparse decoding (Quest-style bounding boxes kmax/kmin per block of the key cache, the
GQA group's query heads averaged into one query per kv head, the last n_local blocks always kept, the block count
max(ceil(nb p), min(nb, n_min))), then attention over the gathered blocks by a flash-decoding kernel.
"""
import math

import numpy as np

from zoo_attention_common import attn_flash, attn_naive, attn_splitkv, case, randn, ref_attention, verify

FAMILY = "resa"
NAIVE = "ReSA sparse decode (mask over the cache)"
GATHER = "ReSA sparse decode (gathered blocks, flash-decoding)"


def resa_select(q, k, bs, p, n_local, n_min, dtype=np.float32, pool="mean", kmax_only=False, local=True,
                count="ceil"):
    """selected [B,Hkv,nb]. Bugs: pool="last" uses the group's last query head instead of the mean; kmax_only scores
    qbar.kmax (wrong for negative qbar_d); local=False does not force the last blocks; count="floor"."""
    q = np.asarray(q, dtype)[:, :, 0]                   # [B,Hq,D]
    k = np.asarray(k, dtype)
    b, hq, d = q.shape
    hkv, n = k.shape[1], k.shape[2]
    g = hq // hkv
    nb = -(-n // bs)
    qg = q.reshape(b, hkv, g, d)
    qbar = (qg[:, :, -1] if pool == "last" else qg.mean(2)) / dtype(math.sqrt(d))
    kmax = np.stack([k[:, :, c * bs:(c + 1) * bs].max(2) for c in range(nb)], 2)       # [B,Hkv,nb,D]
    kmin = np.stack([k[:, :, c * bs:(c + 1) * bs].min(2) for c in range(nb)], 2)
    hi = qbar[:, :, None, :] * kmax
    score = hi.sum(-1) if kmax_only else np.maximum(hi, qbar[:, :, None, :] * kmin).sum(-1)
    n_sel = max((math.ceil if count == "ceil" else math.floor)(nb * p), min(nb, n_min))
    n_loc = min(n_local, nb)
    total = min(nb, max(n_sel, n_loc))
    is_local = np.arange(nb) >= nb - n_loc
    if local:
        score = np.where(is_local, np.inf, score)
    order = np.argsort(-score, axis=-1, kind="stable")[..., :total]
    sel = np.zeros(score.shape, bool)
    np.put_along_axis(sel, order, True, axis=-1)
    return sel


def allowed_of(sel, hq, n, bs):
    """[B,Hq,1,L] mask of the selected blocks' positions."""
    g = hq // sel.shape[1]
    return np.repeat(sel, g, axis=1)[:, :, None, np.arange(n) // bs]


def gathered(q, k, v, sel, bs, scale, splits, out="f32", p_round=False):
    """Gather the selected blocks (ascending) per kv head, then flash-decoding over the gathered keys."""
    b, hq = np.shape(q)[:2]
    hkv, n = np.shape(k)[1], np.shape(k)[2]
    g = hq // hkv
    o = np.zeros((b, hq, 1, np.shape(v)[3]), np.float32 if out == "f32" else np.float16)
    lse = np.zeros((b, hq, 1), np.float32)
    for bi in range(b):
        for h in range(hkv):
            pos = np.nonzero(sel[bi, h][np.arange(n) // bs])[0]
            kk, vv = k[bi:bi + 1, h:h + 1, pos], v[bi:bi + 1, h:h + 1, pos]
            qq = q[bi:bi + 1, h * g:(h + 1) * g]
            oo, ll = attn_splitkv(qq, kk, vv, np.ones((1, 1, 1, len(pos)), bool), scale, splits=splits, block_n=64,
                                  out=out, p_round=p_round)
            o[bi, h * g:(h + 1) * g] = oo[0]
            lse[bi, h * g:(h + 1) * g] = ll[0]
    return o, lse


def cases():
    out = []

    def add(name, kind, dtype, style, why, inputs, params, cand):
        c = case("resa/" + name, "resa", kind, dtype, style, why, inputs, params, cand)
        if kind != "malformed":
            q, k, v = (np.asarray(inputs[n], np.float64) for n in ("q", "k", "v"))
            sel = resa_select(q, k, params["block_size"], params["sparsity"], params["n_local"], params["n_min"],
                              dtype=np.float64)
            o, lse = ref_attention(q, k, v, allowed_of(sel, q.shape[1], k.shape[2], params["block_size"]),
                                   1 / math.sqrt(q.shape[-1]))
            verify(c, {"out": o, "lse": lse, "selected": sel})
        out.append(c)

    def setup(seed, dtype, n, b=2, hq=8, hkv=2, d=64):
        q = randn(seed, (b, hq, 1, d), dtype, 1.5)
        k = randn(seed + 1, (b, hkv, n, d), dtype, 1.5)
        v = randn(seed + 2, (b, hkv, n, d), dtype)
        return q, k, v, dict(q=q, k=k, v=v)

    sc = 1 / math.sqrt(64)
    # --- float32: L = 1990 (125 blocks of 16, the last one 6 slots), p = 0.1, n_min 8, n_local 2: 13 blocks -------
    n = 1990
    q, k, v, inp = setup(10, "f32", n)
    prm = dict(block_size=16, sparsity=0.1, n_local=2, n_min=8)
    sel = resa_select(q, k, 16, 0.1, 2, 8)
    al = allowed_of(sel, 8, n, 16)
    o, lse = attn_naive(q, k, v, al, sc)
    add("naive/f32/correct", "correct", "f32", NAIVE, "float32 scores, masked softmax over the whole cache", inp, prm,
        dict(out=o, lse=lse, selected=sel))
    o, lse = gathered(q, k, v, sel, 16, sc, splits=4)
    add("gather-splitkv/f32/correct", "correct", "f32", GATHER, "selected blocks gathered, 4 splits merged by lse",
        inp, prm, dict(out=o, lse=lse, selected=sel))
    o, lse = attn_flash(q, k, v, al, sc, block_n=16)
    add("flash-blocks/f32/correct", "correct", "f32", GATHER, "online softmax over the selected 16-key blocks in "
        "ascending order (unselected tiles skipped)", inp, prm, dict(out=o, lse=lse, selected=sel))
    s2 = resa_select(q, k, 16, 0.1, 2, 8, pool="last")
    o, lse = attn_naive(q, k, v, allowed_of(s2, 8, n, 16), sc)
    add("naive/f32/last-head-query/bug", "bug", "f32", NAIVE, "block scores from the group's last query head instead "
        "of the group mean", inp, prm, dict(out=o, lse=lse, selected=s2))
    s2 = resa_select(q, k, 16, 0.1, 2, 8, kmax_only=True)
    o, lse = attn_naive(q, k, v, allowed_of(s2, 8, n, 16), sc)
    add("naive/f32/kmax-only-score/bug", "bug", "f32", NAIVE, "score = qbar . kmax (kmin ignored: wrong bound where "
        "qbar_d < 0)", inp, prm, dict(out=o, lse=lse, selected=s2))
    s2 = resa_select(q, k, 16, 0.1, 2, 8, local=False)
    o, lse = gathered(q, k, v, s2, 16, sc, splits=4)
    add("gather-splitkv/f32/local-not-forced/bug", "bug", "f32", GATHER, "the last n_local blocks (the current token's "
        "block included) compete by score instead of being kept", inp, prm, dict(out=o, lse=lse, selected=s2))
    s2 = resa_select(q, k, 16, 0.1, 2, 8, count="floor")
    o, lse = attn_naive(q, k, v, allowed_of(s2, 8, n, 16), sc)
    add("naive/f32/count-floor/bug", "bug", "f32", NAIVE, "n_sel = floor(nb p) = 12 instead of ceil = 13", inp, prm,
        dict(out=o, lse=lse, selected=s2))
    o, lse = attn_naive(q, k, v, al, sc * (1 + 1e-3))
    add("naive/f32/scale-1e-3/bug", "bug", "f32", NAIVE, "softmax scale x(1+1e-3)", inp, prm,
        dict(out=o, lse=lse, selected=sel))
    o, _ = gathered(q, k, v, sel, 16, sc * (1 + 1e-3), splits=4)
    add("gather-splitkv/f32/scale-1e-3-out-only/bug", "bug", "f32", GATHER, "softmax scale x(1+1e-3); out and "
        "selected only", inp, prm, dict(out=o, selected=sel))
    o, lse = attn_flash(q, k, v, al, sc, block_n=16, lse="log2")
    add("flash-blocks/f32/lse-log2/bug", "bug", "f32", GATHER, "lse in base 2", inp, prm,
        dict(out=o, lse=lse, selected=sel))

    # --- float16: L = 1024 (64 blocks), defaults p = 0.1, n_min 16, n_local 1: 16 blocks ----------------------------
    n = 1024
    q, k, v, inp = setup(20, "f16", n)
    prm = dict(block_size=16, sparsity=0.1, n_local=1, n_min=16)
    sel = resa_select(q, k, 16, 0.1, 1, 16)
    al = allowed_of(sel, 8, n, 16)
    o, lse = gathered(q, k, v, sel, 16, sc, splits=2, out="f16", p_round=True)
    add("gather-splitkv/f16/correct", "correct", "f16", GATHER, "f16 cache, f32 scores, P rounded to f16, partials "
        "merged in f32, out f16, lse f32", inp, prm, dict(out=o, lse=lse, selected=sel))
    o, _ = attn_naive(q, k, v, al, sc, out="f16")
    add("naive/f16/correct", "correct", "f16", NAIVE, "f32 math on the f16 cache, out f16 (out and selected)", inp,
        prm, dict(out=o, selected=sel))
    o, lse = gathered(q, k, v, sel, 16, sc * (1 + 1e-2), splits=2, out="f16", p_round=True)
    add("gather-splitkv/f16/scale-1e-2/bug", "bug", "f16", GATHER, "softmax scale x(1+1e-2)", inp, prm,
        dict(out=o, lse=lse, selected=sel))
    s2 = resa_select(q, k, 16, 0.1, 1, 16, pool="last")
    o, lse = gathered(q, k, v, s2, 16, sc, splits=2, out="f16", p_round=True)
    add("gather-splitkv/f16/last-head-query/bug", "bug", "f16", GATHER, "block scores from the group's last head",
        inp, prm, dict(out=o, lse=lse, selected=s2))
    o, _ = attn_naive(q, k, v, al, sc * (1 + 1e-2), out="f16")
    add("naive/f16/scale-1e-2-out-only/bug", "bug", "f16", NAIVE, "softmax scale x(1+1e-2); out only", inp, prm,
        dict(out=o))

    # --- malformed ---------------------------------------------------------------------------------------------
    q, k, v, inp = setup(30, "f32", 64, d=16)
    sel = resa_select(q, k, 16, 0.5, 1, 1)
    o, lse = attn_naive(q, k, v, allowed_of(sel, 8, 64, 16), 0.25)
    bad = dict(inp)
    bad["q"] = np.repeat(q, 2, axis=2)
    add("malformed/two-query-positions", "malformed", "f32", NAIVE, "q with 2 positions (a prefill chunk) where the "
        "decode step takes exactly one", bad, dict(block_size=16, sparsity=0.5, n_local=1, n_min=1),
        dict(out=o, lse=lse, selected=sel))
    return out
