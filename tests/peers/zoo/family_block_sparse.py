"""Bug zoo, block-sparse attention with FlexAttention BlockMask semantics (`block-sparse`).

A BlockMask is built from an element mask_mod the way create_block_mask does: per (query tile, key tile) an all-true
tile is full, a partly true tile partial, an empty tile absent; kv_indices lists the partial tiles ascending first and
then every other tile (an argsort of the tile mask, so entries past kv_num_blocks are real tile numbers, not padding).
The kernel imitates FlexAttention's forward: per query tile, the partial tiles (mask_mod applied) and then the full
tiles (mask_mod skipped), one online softmax across both loops.
"""
import math

import numpy as np
import torch

from zoo_attention_common import (NEG, attn_flash, attn_naive, case, cast, expand_kv, randn, ref_attention, round16,
                                  t32, verify)

FAMILY = "block-sparse"
FLEX = "FlexAttention"
FLEX_REF = "FlexAttention tests (create_mask + SDPA math)"


def doc_causal(tq, tk, bounds):
    """mask_mod: causal (bottom-right) and the same document; bounds are the document starts plus the end."""
    doc = np.searchsorted(np.asarray(bounds), np.arange(tk), side="right")
    i = np.arange(tq)[:, None] + tk - tq
    j = np.arange(tk)[None, :]
    return (j <= i) & (doc[np.minimum(i, tk - 1)] == doc[j])


def block_mask(elem, qb, kb):
    """(kv_num_blocks, kv_indices, full_kv_num_blocks, full_kv_indices) with shape [1,1,nq(,nk)] from elem [Tq,Tk]."""
    tq, tk = elem.shape
    nq, nk = -(-tq // qb), -(-tk // kb)
    partial = np.zeros((nq, nk), bool)
    full = np.zeros((nq, nk), bool)
    for a in range(nq):
        for c in range(nk):
            tile = elem[a * qb:(a + 1) * qb, c * kb:(c + 1) * kb]
            full[a, c] = tile.all()
            partial[a, c] = tile.any() and not tile.all()

    def listing(sel):
        order = np.argsort(~sel, axis=-1, kind="stable").astype(np.int32)
        return sel.sum(-1).astype(np.int32)[None, None], order[None, None]

    kn, ki = listing(partial)
    fn, fi = listing(full)
    return kn, ki, fn, fi


def expand(kn, ki, fn, fi, elem, qb, kb):
    """The dense allowed mask a BlockMask stands for."""
    tq, tk = elem.shape
    allowed = np.zeros((tq, tk), bool)
    for a in range(kn.shape[-1]):
        rows = slice(a * qb, (a + 1) * qb)
        for c in ki[0, 0, a, :kn[0, 0, a]]:
            allowed[rows, c * kb:(c + 1) * kb] |= elem[rows, c * kb:(c + 1) * kb]
        for c in fi[0, 0, a, :fn[0, 0, a]]:
            allowed[rows, c * kb:(c + 1) * kb] = True
    return allowed


def flex_kernel(q, k, v, bm, elem, qb, kb, scale, out="f32", p_round=False, partial_as_full=False, extra_full=0,
                skip_first=0, pad_keys=False, kernel_kb=None):
    """FlexAttention-style forward. Bugs: partial_as_full skips mask_mod on partial tiles; extra_full reads that many
    entries past full_kv_num_blocks; skip_first starts the partial loop at that index; pad_keys pads K/V with zeros to
    a multiple of KB and does not mask keys >= Tk; kernel_kb reads tile indices in units of the kernel's own tile."""
    kn, ki, fn, fi = bm
    q, k, v = t32(q), t32(k), t32(v)
    b, hq, tq, _ = q.shape
    k, v = expand_kv(k, hq), expand_kv(v, hq)
    tk, dv = k.shape[2], v.shape[3]
    kt = kernel_kb or kb
    emask = torch.from_numpy(elem)
    if pad_keys:
        nk_pad = -(-tk // kb) * kb
        k = torch.cat([k, torch.zeros(b, hq, nk_pad - tk, k.shape[3])], dim=2)
        v = torch.cat([v, torch.zeros(b, hq, nk_pad - tk, dv)], dim=2)
        emask = torch.cat([emask, torch.ones(tq, nk_pad - tk, dtype=torch.bool)], dim=1)
    o_all = torch.zeros(b, hq, tq, dv)
    lse_all = torch.full((b, hq, tq), NEG)
    for a in range(-(-tq // qb)):
        r0, r1 = a * qb, min(tq, (a + 1) * qb)
        qt = q[:, :, r0:r1] * scale
        m = torch.full((b, hq, r1 - r0, 1), NEG)
        l = torch.zeros(b, hq, r1 - r0, 1)
        acc = torch.zeros(b, hq, r1 - r0, dv)
        loops = [(ki[0, 0, a, skip_first:kn[0, 0, a]], not partial_as_full),
                 (fi[0, 0, a, :min(fi.shape[-1], fn[0, 0, a] + extra_full)], False)]
        for tiles, apply_mask in loops:
            for c in tiles:
                c0 = int(c) * kt
                c1 = c0 + kt if pad_keys else min(tk, c0 + kt)
                s = torch.einsum("bhid,bhjd->bhij", qt, k[:, :, c0:c1])
                if apply_mask:
                    s = s.masked_fill(~emask[r0:r1, c0:c1], NEG)
                m_new = torch.maximum(m, s.amax(-1, keepdim=True))
                m_safe = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
                p = torch.exp(s - m_safe)
                alpha = torch.exp(m - m_safe)
                l = l * alpha + p.sum(-1, keepdim=True)
                acc = acc * alpha + torch.einsum("bhij,bhjd->bhid", round16(p) if p_round else p, v[:, :, c0:c1])
                m = m_new
        ok = l > 0
        o_all[:, :, r0:r1] = torch.where(ok, acc / torch.where(ok, l, torch.ones_like(l)), torch.zeros_like(acc))
        lse_all[:, :, r0:r1] = torch.where(ok, m + torch.log(torch.where(ok, l, torch.ones_like(l))),
                                           torch.full_like(l, NEG))[..., 0]
    return cast(o_all, out), cast(lse_all, "f32")


def cases():
    out = []

    def add(name, kind, dtype, style, why, inputs, params, cand, allowed, scale):
        c = case("block-sparse/" + name, "block-sparse", kind, dtype, style, why, inputs, params, cand)
        if kind != "malformed":
            o, lse = ref_attention(inputs["q"], inputs["k"], inputs["v"], allowed, scale)
            verify(c, {"out": o, "lse": lse})
        out.append(c)

    def setup(seed, dtype, t, tk, bounds, qb, kb, b=1, hq=4, hkv=2, d=64):
        q = randn(seed, (b, hq, t, d), dtype, 1.5)
        k = randn(seed + 1, (b, hkv, tk, d), dtype, 1.5)
        v = randn(seed + 2, (b, hkv, tk, d), dtype)
        elem = doc_causal(t, tk, bounds)
        bm = block_mask(elem, qb, kb)
        allowed = expand(*bm, elem, qb, kb)
        assert np.array_equal(allowed, elem)
        inputs = dict(q=q, k=k, v=v, kv_num_blocks=bm[0], kv_indices=bm[1], full_kv_num_blocks=bm[2],
                      full_kv_indices=bm[3], mask=elem[None, None])
        return q, k, v, elem, bm, allowed, inputs

    sc = 1 / math.sqrt(64)
    # --- float32: document-causal mask, 64 x 64 tiles -------------------------------------------------------------
    q, k, v, elem, bm, allowed, inp = setup(10, "f32", 512, 512, [0, 150, 400, 512], 64, 64)
    prm = dict(block_q=64, block_k=64)
    o, lse = flex_kernel(q, k, v, bm, elem, 64, 64, sc)
    add("flex-kernel/f32/doc-causal/correct", "correct", "f32", FLEX, "per query tile: partial tiles with mask_mod, "
        "then full tiles without, one online softmax", inp, prm, dict(out=o, lse=lse), allowed, sc)
    o, lse = attn_naive(q, k, v, expand(*bm, elem, 64, 64)[None, None], sc)
    add("flex-ref/f32/doc-causal/correct", "correct", "f32", FLEX_REF, "BlockMask expanded to a dense mask, then "
        "einsum + masked_fill + softmax", inp, prm, dict(out=o, lse=lse), allowed, sc)
    o, lse = attn_flash(q, k, v, allowed[None, None], sc, block_n=128)
    add("flash2/f32/doc-causal-dense-tiles/correct", "correct", "f32", FLEX, "online softmax over all keys in "
        "ascending 128-key tiles under the expanded mask", inp, prm, dict(out=o, lse=lse), allowed, sc)
    o, lse = flex_kernel(q, k, v, bm, elem, 64, 64, sc, partial_as_full=True)
    add("flex-kernel/f32/partial-as-full/bug", "bug", "f32", FLEX, "mask_mod not applied inside partial tiles (block "
        "sparsity only)", inp, prm, dict(out=o, lse=lse), allowed, sc)
    o, lse = flex_kernel(q, k, v, bm, elem, 64, 64, sc, extra_full=1)
    add("flex-kernel/f32/full-count-off-by-one/bug", "bug", "f32", FLEX, "full-tile loop runs to full_kv_num_blocks "
        "inclusive: one unlisted tile attended", inp, prm, dict(out=o, lse=lse), allowed, sc)
    o, lse = flex_kernel(q, k, v, bm, elem, 64, 64, sc, skip_first=1)
    add("flex-kernel/f32/skip-first-partial/bug", "bug", "f32", FLEX, "partial-tile loop starts at index 1 (first "
        "listed kv_indices entry dropped)", inp, prm, dict(out=o, lse=lse), allowed, sc)
    o, lse = flex_kernel(q, k, v, bm, elem, 64, 64, sc * (1 + 1e-3))
    add("flex-kernel/f32/scale-1e-3/bug", "bug", "f32", FLEX, "softmax scale x(1+1e-3)", inp, prm,
        dict(out=o, lse=lse), allowed, sc)
    o, _ = flex_kernel(q, k, v, bm, elem, 64, 64, sc * (1 + 1e-3))
    add("flex-kernel/f32/scale-1e-3-out-only/bug", "bug", "f32", FLEX, "softmax scale x(1+1e-3); out only "
        "(return_lse=False)", inp, prm, dict(out=o), allowed, sc)

    # BlockMask built with 128-key tiles, kernel launched with 64-key tiles.
    q, k, v, elem, bm, allowed, inp = setup(20, "f32", 512, 512, [0, 300, 512], 128, 128)
    prm = dict(block_q=128, block_k=128)
    o, lse = flex_kernel(q, k, v, bm, elem, 128, 128, sc)
    add("flex-kernel/f32/tiles-128/correct", "correct", "f32", FLEX, "default 128 x 128 BlockMask, partial then full "
        "tiles", inp, prm, dict(out=o, lse=lse), allowed, sc)
    o, lse = flex_kernel(q, k, v, bm, elem, 128, 128, sc, kernel_kb=64)
    add("flex-kernel/f32/tile-size-mismatch/bug", "bug", "f32", FLEX, "BlockMask built with KB=128 read by a kernel "
        "with BLOCK_N=64 (tile c taken as keys 64c..64c+63)", inp, prm, dict(out=o, lse=lse), allowed, sc)

    # Tk not a multiple of the tile: the last tile is short.
    q, k, v, elem, bm, allowed, inp = setup(30, "f32", 500, 500, [0, 230, 500], 64, 64, b=1)
    prm = dict(block_q=64, block_k=64)
    o, lse = flex_kernel(q, k, v, bm, elem, 64, 64, sc)
    add("flex-kernel/f32/ragged-tk/correct", "correct", "f32", FLEX, "T=500 with 64-key tiles (last tile 52 keys)",
        inp, prm, dict(out=o, lse=lse), allowed, sc)
    o, lse = flex_kernel(q, k, v, bm, elem, 64, 64, sc, pad_keys=True)
    add("flex-kernel/f32/unmasked-padding/bug", "bug", "f32", FLEX, "K/V zero-padded to 512 and keys >= Tk not masked "
        "(score 0 leaks weight into the last full tile)", inp, prm, dict(out=o, lse=lse), allowed, sc)

    # --- float16 ---------------------------------------------------------------------------------------------------
    q, k, v, elem, bm, allowed, inp = setup(40, "f16", 512, 512, [0, 100, 350, 512], 64, 64, b=1)
    prm = dict(block_q=64, block_k=64)
    o, lse = flex_kernel(q, k, v, bm, elem, 64, 64, sc, out="f16", p_round=True)
    add("flex-kernel/f16/doc-causal/correct", "correct", "f16", FLEX, "f16 inputs, f32 scores and softmax, P rounded "
        "to f16 before PV, out f16, lse f32", inp, prm, dict(out=o, lse=lse), allowed, sc)
    o, _ = attn_naive(q, k, v, allowed[None, None], sc, out="f16")
    add("flex-ref/f16/doc-causal/correct", "correct", "f16", FLEX_REF, "expanded mask, f32 math on f16 inputs, out "
        "cast to f16 (out only)", inp, prm, dict(out=o), allowed, sc)
    o, lse = flex_kernel(q, k, v, bm, elem, 64, 64, sc * (1 + 1e-2), out="f16", p_round=True)
    add("flex-kernel/f16/scale-1e-2/bug", "bug", "f16", FLEX, "softmax scale x(1+1e-2)", inp, prm,
        dict(out=o, lse=lse), allowed, sc)
    o, _ = flex_kernel(q, k, v, bm, elem, 64, 64, sc * (1 + 1e-2), out="f16", p_round=True)
    add("flex-kernel/f16/scale-1e-2-out-only/bug", "bug", "f16", FLEX, "softmax scale x(1+1e-2); out only", inp,
        prm, dict(out=o), allowed, sc)
    o, lse = flex_kernel(q, k, v, bm, elem, 64, 64, sc, out="f16", p_round=True, partial_as_full=True)
    add("flex-kernel/f16/partial-as-full/bug", "bug", "f16", FLEX, "mask_mod skipped in partial tiles", inp, prm,
        dict(out=o, lse=lse), allowed, sc)

    # --- malformed -------------------------------------------------------------------------------------------------
    q, k, v, elem, bm, allowed, inp = setup(50, "f32", 128, 128, [0, 128], 64, 64, b=1)
    o, lse = flex_kernel(q, k, v, bm, elem, 64, 64, sc)
    bad = dict(inp)
    bad["kv_indices"] = inp["kv_indices"][..., :1].copy()
    add("malformed/kv-indices-columns", "malformed", "f32", FLEX, "kv_indices with 1 column where ceil(Tk/KB) = 2",
        bad, dict(block_q=64, block_k=64), dict(out=o, lse=lse), None, sc)
    return out
