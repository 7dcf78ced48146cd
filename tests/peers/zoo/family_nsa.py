"""Bug zoo, native sparse attention (`nsa`): compressed, selected and sliding-window branches, gated.

Conventions imitated: native-sparse-attention / fla's NSA: compressed keys and values are mean-pooled blocks of BS,
the compressed attention probabilities (own block set to 1) summed over the GQA group's query heads rank the blocks,
top-n block indices per (token, kv head) drive a gather-based selected attention, a sliding window of W keys, and the
three outputs mixed by per-head gates. fla keeps gates as [B,T,H,3]; the CLI takes [B,H,T,3].
"""
import math

import numpy as np
import torch

from zoo_attention_common import attn_flash, attn_naive, case, cast, expand_kv, randn, round16, t32, verify

FAMILY = "nsa"
NAIVE = "native-sparse-attention naive reference"
FLA = "fla NSA (gather-based selected branch)"


def compress(x, bs):
    t = x.shape[2]
    return np.stack([x[:, :, c * bs:min(t, (c + 1) * bs)].mean(2) for c in range(-(-t // bs))], axis=2)


def selection(q, kc, bs, top_n, scale, dtype, cmp_visible_off=False, future=False, per_head=False):
    """selected [B,Hkv,T,nb] and, with per_head, the per-query-head selection [B,Hq,T,nb]."""
    q = np.asarray(q, dtype)
    kc = np.asarray(kc, dtype)
    b, hq, t, _ = q.shape
    hkv, nb = kc.shape[1], kc.shape[2]
    g = hq // hkv
    s = np.einsum("bhtd,bhcd->bhtc", q, np.repeat(kc, g, axis=1)) * dtype(scale)
    pos = np.arange(t)[:, None]
    c = np.arange(nb)[None, :]
    vis = (c + 1) * bs <= (pos if cmp_visible_off else pos + 1)
    s = np.where(vis, s, -np.inf)
    m = s.max(-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    p = np.exp(s - m)
    den = p.sum(-1, keepdims=True)
    p = np.where(den > 0, p / np.where(den > 0, den, 1), 0)
    own = c == pos // bs
    p = np.where(own, 1.0, p)
    score = p if per_head else p.reshape(b, hkv, g, t, nb).sum(2)
    cand = (c <= pos // bs) | future
    score = np.where(cand, score, -np.inf)
    score = np.where(own, np.inf, score)
    order = np.argsort(-score, axis=-1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(nb)[None, None, None, :].repeat(t, 2), axis=-1)
    n_take = np.minimum(top_n, (pos // bs + 1) if not future else nb)        # [T,1]
    return ranks < n_take


def branch_masks(t, bs, window, sel_q):
    """Allowed masks of the three branches for query heads: compressed [T,nb], selected [B,Hq,T,T], window [T,T]."""
    pos = np.arange(t)[:, None]
    j = np.arange(t)[None, :]
    nb = -(-t // bs)
    cmp = (np.arange(nb)[None, :] + 1) * bs <= pos + 1
    slc = sel_q[..., j[0] // bs] & (j <= pos)
    win = (j <= pos) & (j > pos - window)
    return cmp, slc, win


def nsa(q, k, v, gates, bs, top_n, window, scale, out="f32", order="naive", p_round=False, sel_dtype=np.float32,
        cmp_visible_off=False, future=False, per_head=False, dup_block0=False, window_extra=0, gates_layout="bhtc"):
    """NSA forward; returns (out, selected). order: naive (einsum branches), flash (online softmax branches),
    gather (fla-style: per token, gather the selected blocks' keys)."""
    b, hq, t, _ = np.shape(q)
    hkv = np.shape(k)[1]
    g = hq // hkv
    kc, vc = compress(np.asarray(k, np.float32), bs), compress(np.asarray(v, np.float32), bs)
    sel = selection(q, kc, bs, top_n, scale, sel_dtype, cmp_visible_off, future, per_head)
    sel_q = sel if per_head else np.repeat(sel, g, axis=1)
    selected = sel[:, ::g] if per_head else sel
    cmp, slc, win = branch_masks(t, bs, window + window_extra, sel_q)
    if cmp_visible_off:
        cmp = (np.arange(kc.shape[2])[None, :] + 1) * bs <= np.arange(t)[:, None]
    if order == "flash":
        o_cmp = attn_flash(q, kc, vc, cmp, scale, block_n=8, out="f32", p_round=p_round)[0]
        o_slc = attn_flash(q, k, v, slc, scale, block_n=bs, out="f32", p_round=p_round)[0]
        o_win = attn_flash(q, k, v, win, scale, block_n=64, out="f32", p_round=p_round)[0]
    else:
        o_cmp = attn_naive(q, kc, vc, cmp, scale, p_round=p_round)[0]
        o_win = attn_naive(q, k, v, win, scale, p_round=p_round)[0]
        if order == "gather":
            o_slc = gather_selected(q, k, v, sel_q, bs, top_n, scale, p_round, dup_block0)
        else:
            o_slc = attn_naive(q, k, v, slc, scale, p_round=p_round)[0]
    gt = t32(gates)
    if gates_layout == "bthc":      # bug: the [B,H,T,3] buffer viewed as fla's [B,T,H,3]
        gt = gt.reshape(b, t, hq, 3).permute(0, 2, 1, 3)
    mix = gt[..., 0:1] * t32(o_cmp) + gt[..., 1:2] * t32(o_slc) + gt[..., 2:3] * t32(o_win)
    return cast(mix, out), selected


def gather_selected(q, k, v, sel_q, bs, top_n, scale, p_round, dup_block0):
    """fla-style selected branch: per token, block indices (ascending, padded with 0 up to top_n when dup_block0, as
    the varlen path pads), keys gathered block by block, causal within the own block."""
    q, k, v = t32(q), t32(k), t32(v)
    hq = q.shape[1]
    k, v = expand_kv(k, hq), expand_kv(v, hq)
    b, _, t, _ = q.shape
    o = torch.zeros(b, hq, t, v.shape[3])
    for bi in range(b):
        for h in range(hq):
            for i in range(t):
                idx = list(np.nonzero(sel_q[bi, h, i])[0])
                if dup_block0:
                    idx = idx + [0] * (top_n - len(idx))
                keys = torch.cat([torch.arange(c * bs, min(t, (c + 1) * bs)) for c in idx])
                keys = keys[keys <= i]
                s = (q[bi, h, i] * scale) @ k[bi, h, keys].T
                p = torch.exp(s - s.max())
                o[bi, h, i] = ((round16(p) if p_round else p) @ v[bi, h, keys]) / p.sum()
    return o.numpy()


def cases():
    out = []

    def add(name, kind, dtype, style, why, inputs, params, cand):
        c = case("nsa/" + name, "nsa", kind, dtype, style, why, inputs, params, cand)
        if kind != "malformed":
            q, k, v, g = (np.asarray(inputs[n], np.float64) for n in ("q", "k", "v", "gates"))
            o, sel = nsa64(q, k, v, g, params["block_size"], params["top_n"], params["window"])
            verify(c, {"out": o, "selected": sel})
        out.append(c)

    def setup(seed, dtype, t, b=1, hq=4, hkv=2, d=64):
        q = randn(seed, (b, hq, t, d), dtype, 1.5)
        k = randn(seed + 1, (b, hkv, t, d), dtype, 1.5)
        v = randn(seed + 2, (b, hkv, t, d), dtype)
        gates = (1 / (1 + np.exp(-randn(seed + 3, (b, hq, t, 3), "f32", 2.0)))).astype(np.float32).astype(
            np.float16 if dtype == "f16" else np.float32)
        return q, k, v, gates, dict(q=q, k=k, v=v, gates=gates)

    sc = 1 / math.sqrt(64)
    # --- float32: T = 512, blocks of 32, top 4, window 64 -------------------------------------------------------
    q, k, v, gates, inp = setup(10, "f32", 512)
    prm = dict(block_size=32, top_n=4, window=64)
    a = (q, k, v, gates, 32, 4, 64, sc)
    o, sel = nsa(*a)
    add("naive/f32/correct", "correct", "f32", NAIVE, "three branches by einsum + masked softmax, selection from the "
        "float32 compressed probabilities summed over the group", inp, prm, dict(out=o, selected=sel))
    o, sel = nsa(*a, order="gather")
    add("fla-gather/f32/correct", "correct", "f32", FLA, "selected branch per token over the gathered blocks' keys",
        inp, prm, dict(out=o, selected=sel))
    o, sel = nsa(*a, order="flash")
    add("flash/f32/correct", "correct", "f32", FLA, "each branch by online softmax (compressed tiles of 8, selected "
        "tiles of one block, window tiles of 64)", inp, prm, dict(out=o, selected=sel))
    o, sel = nsa(*a, future=True)
    add("naive/f32/future-blocks-selected/bug", "bug", "f32", NSA_BUG_STYLE,
        "top-n taken over all blocks: early queries select blocks after their own (0-score future blocks)",
        inp, prm, dict(out=o, selected=sel))
    o, sel = nsa(*a, order="gather", dup_block0=True)
    add("fla-gather/f32/duplicate-block0/bug", "bug", "f32", FLA, "block indices padded with 0 up to top_n (fla "
        "varlen): block 0's keys counted twice in the softmax", inp, prm, dict(out=o, selected=sel))
    o, sel = nsa(*a, cmp_visible_off=True)
    add("naive/f32/compressed-visibility-off-by-one/bug", "bug", "f32", NAIVE, "compressed block c visible only when "
        "(c+1)*BS <= t (the block ending at t excluded)", inp, prm, dict(out=o, selected=sel))
    o, sel = nsa(*a, window_extra=1)
    add("naive/f32/window-off-by-one/bug", "bug", "f32", NAIVE, "sliding window t-W..t (W+1 keys)", inp, prm,
        dict(out=o, selected=sel))
    o, sel = nsa(*a, per_head=True)
    add("naive/f32/per-head-selection/bug", "bug", "f32", NAIVE, "each query head selects its own blocks (no sum over "
        "the GQA group); selected reported from the group's first head", inp, prm, dict(out=o, selected=sel))
    o, sel = nsa(*a, gates_layout="bthc")
    add("fla/f32/gates-layout/bug", "bug", "f32", FLA, "gates [B,H,T,3] read as fla's [B,T,H,3] (a view, no "
        "transpose)", inp, prm, dict(out=o, selected=sel))
    o, sel = nsa(q, k, v, gates, 32, 4, 64, sc * (1 + 1e-3))
    add("naive/f32/scale-1e-3/bug", "bug", "f32", NAIVE, "softmax scale x(1+1e-3) in every branch", inp, prm,
        dict(out=o, selected=sel))

    # --- float16: T = 256, blocks of 16, top 5, window 32 -------------------------------------------------------
    q, k, v, gates, inp = setup(20, "f16", 256)
    prm = dict(block_size=16, top_n=5, window=32)
    a = (q, k, v, gates, 16, 5, 32, sc)
    o, sel = nsa(*a, out="f16")
    add("naive/f16/correct", "correct", "f16", NAIVE, "f16 inputs and gates, f32 math, out f16", inp, prm,
        dict(out=o, selected=sel))
    o, sel = nsa(*a, out="f16", order="flash", p_round=True)
    add("flash/f16/correct", "correct", "f16", FLA, "f16 kernel recipe per branch (P rounded to f16 before PV), out "
        "f16", inp, prm, dict(out=o, selected=sel))
    o, sel = nsa(q, k, v, gates, 16, 5, 32, sc * (1 + 1e-2), out="f16", order="flash", p_round=True)
    add("flash/f16/scale-1e-2/bug", "bug", "f16", FLA, "softmax scale x(1+1e-2)", inp, prm,
        dict(out=o, selected=sel))
    o, sel = nsa(*a, out="f16", order="flash", p_round=True, window_extra=1)
    add("flash/f16/window-off-by-one/bug", "bug", "f16", FLA, "sliding window of W+1 keys", inp, prm,
        dict(out=o, selected=sel))
    o, sel = nsa(*a, out="f16", future=True)
    add("naive/f16/future-blocks-selected/bug", "bug", "f16", NSA_BUG_STYLE, "blocks after the own block selected",
        inp, prm, dict(out=o, selected=sel))

    # --- malformed ---------------------------------------------------------------------------------------------
    q, k, v, gates, inp = setup(30, "f32", 64, d=16)
    o, sel = nsa(q, k, v, gates, 16, 2, 16, 0.25)
    bad = dict(inp)
    bad["gates"] = gates[..., :2].copy()
    add("malformed/gates-two-branches", "malformed", "f32", FLA, "gates with 2 branches (g_slc, g_swa: fla's "
        "selection-only NSA) where the last dimension must be 3", bad, dict(block_size=16, top_n=2, window=16),
        dict(out=o, selected=sel))
    return out


NSA_BUG_STYLE = "fla NSA (topk over all blocks)"


def nsa64(q, k, v, gates, bs, top_n, window):
    """float64 NSA from proofs/attention-sparse.md, Definition: NSA, for the self-check."""
    scale = 1 / math.sqrt(q.shape[-1])
    b, hq, t, _ = q.shape
    g = hq // k.shape[1]
    kc, vc = compress(k, bs), compress(v, bs)
    sel = selection(q, kc, bs, top_n, scale, np.float64)
    cmp, slc, win = branch_masks(t, bs, window, np.repeat(sel, g, axis=1))
    from zoo_attention_common import ref_attention
    o = (gates[..., 0:1] * ref_attention(q, kc, vc, cmp, scale)[0] + gates[..., 1:2] * ref_attention(q, k, v, slc, scale)[0]
         + gates[..., 2:3] * ref_attention(q, k, v, win, scale)[0])
    return o, sel
