"""Bug zoo, dense attention (`attention`): correct kernels in several computation orders and realistic bugs.

Conventions imitated: FlashAttention's tests attention_ref (layout [B,T,H,D], q scaled before the einsum, masked rows
filled with 0), PyTorch SDPA (attn_mask, is_causal top-left aligned), FlashAttention-2 / Triton forward kernels (online
softmax over key tiles, lse returned in float32), flash-decoding (split-KV merged by lse). The CLI's layout is
[B,H,T,D]; masks are bottom-right aligned (query row i sits at p_i = i + Tk - Tq).
"""
import math

import numpy as np

from zoo_attention_common import (attn_flash, attn_naive, attn_splitkv, case, randn, ref_attention, verify)

FAMILY = "attention"
FA_REF = "FlashAttention tests attention_ref"
SDPA = "PyTorch SDPA"
FA2 = "FlashAttention-2 forward kernel"
TRITON = "Triton flash-attention tutorial kernel"
DECODE = "flash-decoding (split-KV)"


def mask(tq, tk, causal=False, wl=-1, wr=-1, top_left=False, off_by_one=False):
    """Allowed [Tq,Tk]: bottom-right aligned causal/window; top_left is PyTorch is_causal (j <= i); off_by_one drops
    the window's leftmost key (p - wl < j)."""
    i = np.arange(tq)[:, None] + (0 if top_left else tk - tq)
    j = np.arange(tk)[None, :]
    a = np.ones((tq, tk), dtype=bool)
    if causal:
        a &= j <= i
    if wl >= 0:
        a &= (j > i - wl) if off_by_one else (j >= i - wl)
    if wr >= 0:
        a &= j <= i + wr
    return a


def qkv(seed, b, hq, hkv, tq, tk, d, dtype, std=1.5):
    return (randn(seed, (b, hq, tq, d), dtype, std), randn(seed + 1, (b, hkv, tk, d), dtype, std),
            randn(seed + 2, (b, hkv, tk, d), dtype))


def cases():
    out = []

    def add(name, kind, dtype, style, why, inputs, params, cand, allowed, scale, softcap=0.0):
        c = case("attention/" + name, "attention", kind, dtype, style, why, inputs, params, cand)
        if kind != "malformed":
            o, lse = ref_attention(inputs["q"], inputs["k"], inputs["v"], allowed, scale, softcap)
            verify(c, {"out": o, "lse": lse})
        out.append(c)

    # --- float32 -------------------------------------------------------------------------------------------------
    q, k, v = qkv(100, 1, 4, 2, 256, 256, 64, "f32")
    sc = 1 / math.sqrt(64)
    cm = mask(256, 256, causal=True)
    base = dict(q=q, k=k, v=v)
    o, lse = attn_naive(q, k, v, cm, sc)
    add("fa-ref/f32/causal-gqa/correct", "correct", "f32", FA_REF,
        "naive: einsum of q/sqrt(d) and k, masked_fill(-inf), softmax, PV; GQA 4/2", base, dict(causal=True),
        dict(out=o, lse=lse), cm, sc)
    o, lse = attn_naive(q, k, v, cm, sc * (1 + 1e-3))
    add("fa-ref/f32/scale-1e-3/bug", "bug", "f32", FA_REF, "softmax scale x(1+1e-3) (a rounded 1/sqrt(d) constant)",
        base, dict(causal=True), dict(out=o, lse=lse), cm, sc)
    o, lse = attn_flash(q, k, v, cm, sc, block_n=64, lse="log2")
    add("triton/f32/lse-log2/bug", "bug", "f32", TRITON, "lse returned in base 2 (m*log2(e) + log2(l), the kernel's "
        "exp2 domain) instead of the natural log", base, dict(causal=True), dict(out=o, lse=lse), cm, sc)
    o, lse = attn_naive(q, k, v, cm, sc, gqa="tile")
    add("sdpa/f32/gqa-tile/bug", "bug", "f32", SDPA, "GQA expanded with k.repeat (head h reads kv h % Hkv) instead of "
        "repeat_interleave (h // group)", base, dict(causal=True), dict(out=o, lse=lse), cm, sc)
    o, lse = attn_flash(q, k, v, cm, sc, block_n=64, rescale=False)
    add("flash2/f32/no-rescale/bug", "bug", "f32", FA2, "online softmax: the accumulator is not multiplied by "
        "exp(m_old - m_new) when the running max grows (l is)", base, dict(causal=True), dict(out=o, lse=lse), cm, sc)
    o, lse = attn_flash(q, k, v, cm, sc, block_n=128)
    add("fa-layout/f32/wrong-shape/bug", "bug", "f32", FA2, "out returned in FlashAttention's [B,T,H,D] layout (not "
        "transposed back to [B,H,T,D])", base, dict(causal=True),
        dict(out=np.ascontiguousarray(o.transpose(0, 2, 1, 3)), lse=lse), cm, sc)

    # Tq != Tk with a left window: bottom-right alignment matters.
    q, k, v = qkv(200, 1, 4, 4, 128, 384, 64, "f32")
    wm = mask(128, 384, causal=True, wl=96)
    base = dict(q=q, k=k, v=v)
    prm = dict(causal=True, window_left=96)
    o, lse = attn_flash(q, k, v, wm, sc, block_n=64)
    add("flash2/f32/window-tq-ne-tk/correct", "correct", "f32", FA2, "online softmax, 64-key tiles, sliding window "
        "(96, 0) bottom-right with Tq=128 < Tk=384", base, prm, dict(out=o, lse=lse), wm, sc)
    o, lse = attn_flash(q, k, v, mask(128, 384, causal=True, wl=96, off_by_one=True), sc, block_n=64)
    add("flash2/f32/window-off-by-one/bug", "bug", "f32", FA2, "window test j > p - window_left (one key short on the "
        "left: window size read as W-1)", base, prm, dict(out=o, lse=lse), wm, sc)
    o, lse = attn_flash(q, k, v, wm, sc, block_n=64, lse="nomax")
    add("flash2/f32/lse-without-max/bug", "bug", "f32", FA2, "lse = log(l) without adding back the running max m",
        base, prm, dict(out=o, lse=lse), wm, sc)

    # PyTorch is_causal with Tq != Tk (chunked prefill against a KV cache).
    q, k, v = qkv(300, 2, 4, 2, 64, 256, 64, "f32")
    cm = mask(64, 256, causal=True)
    base = dict(q=q, k=k, v=v)
    o, lse = attn_naive(q, k, v, cm, sc)
    add("sdpa/f32/chunked-prefill/correct", "correct", "f32", SDPA, "naive with an explicit bottom-right causal mask, "
        "Tq=64 against Tk=256 cached keys", base, dict(causal=True), dict(out=o, lse=lse), cm, sc)
    o, lse = attn_naive(q, k, v, mask(64, 256, causal=True, top_left=True), sc)
    add("sdpa/f32/causal-top-left/bug", "bug", "f32", SDPA, "is_causal=True with Tq != Tk: top-left mask j <= i "
        "instead of bottom-right j <= i + Tk - Tq", base, dict(causal=True), dict(out=o, lse=lse), cm, sc)

    # Decode against a long cache: split-KV.
    q, k, v = qkv(400, 2, 8, 1, 4, 1024, 64, "f32")
    cm = mask(4, 1024, causal=True)
    base = dict(q=q, k=k, v=v)
    o, lse = attn_splitkv(q, k, v, cm, sc, splits=8, block_n=128)
    add("split-kv/f32/decode-mqa/correct", "correct", "f32", DECODE, "8 splits of 128 keys, partial (out, lse) in "
        "float32 merged by lse; MQA 8/1, Tq=4", base, dict(causal=True), dict(out=o, lse=lse), cm, sc)
    o, lse = attn_splitkv(q, k, v, cm, sc, splits=8, block_n=128, merge="max")
    add("split-kv/f32/lse-merge-max/bug", "bug", "f32", DECODE, "merged lse = max of the partial lse (the log-sum "
        "forgotten); out merged right", base, dict(causal=True), dict(out=o, lse=lse), cm, sc)

    # Key padding mask through SDPA's attn_mask.
    q, k, v = qkv(500, 2, 4, 4, 192, 192, 64, "f32")
    lens = np.array([150, 192])
    pad = (np.arange(192)[None, :] < lens[:, None])[:, None, None, :]          # [B,1,1,Tk]
    base = dict(q=q, k=k, v=v, mask=pad)
    o, lse = attn_naive(q, k, v, pad, sc)
    add("sdpa/f32/key-padding/correct", "correct", "f32", SDPA, "naive with a boolean attn_mask [B,1,1,Tk] (key "
        "padding), not causal", base, {}, dict(out=o, lse=lse), pad, sc)

    # Rows with no allowed key (Tq > Tk, causal) and softcap.
    q, k, v = qkv(600, 1, 4, 2, 160, 128, 64, "f32", std=3.0)
    cm = mask(160, 128, causal=True)
    base = dict(q=q, k=k, v=v)
    o, lse = attn_flash(q, k, v, cm, sc, block_n=128, softcap=5.0)
    add("flash2/f32/softcap-empty-rows/correct", "correct", "f32", FA2, "online softmax, 128-key tiles, softcap 5 "
        "(tanh before masking); rows 0..31 have no key: out 0, lse -inf", base, dict(causal=True, softcap=5.0),
        dict(out=o, lse=lse), cm, sc, 5.0)
    o, lse = attn_naive(q, k, v, cm, sc, softcap=5.0)
    add("fa-ref/f32/softcap-empty-rows/correct", "correct", "f32", FA_REF, "naive softcap (scores/c, tanh, *c), "
        "masked_fill, softmax, all-masked rows filled with 0", base, dict(causal=True, softcap=5.0),
        dict(out=o, lse=lse), cm, sc, 5.0)
    o, lse = attn_naive(q, k, v, cm, sc, softcap=5.0, softcap_mode="after_mask")
    add("fa-ref/f32/softcap-after-mask/bug", "bug", "f32", FA_REF, "softcap applied after masked_fill: masked -inf "
        "scores become -c and leak weight", base, dict(causal=True, softcap=5.0), dict(out=o, lse=lse), cm, sc, 5.0)
    o, lse = attn_naive(q, k, v, cm, sc, softcap=5.0, softcap_mode="no_tanh")
    add("fa-ref/f32/softcap-no-tanh/bug", "bug", "f32", FA_REF, "softcap without tanh (scores/c*c: no capping)",
        base, dict(causal=True, softcap=5.0), dict(out=o, lse=lse), cm, sc, 5.0)
    o, lse = attn_naive(q, k, v, cm, sc, empty="nan")
    add("sdpa/f32/empty-rows-nan/bug", "bug", "f32", SDPA, "softmax over an all -inf row: NaN output instead of 0",
        base, dict(causal=True), dict(out=o, lse=lse), cm, sc)
    o, lse = attn_naive(q, k, v, cm, sc, empty="mean")
    add("hf/f32/empty-rows-mean/bug", "bug", "f32", "HF transformers eager attention", "masked with finfo.min instead "
        "of -inf: an empty row becomes the mean of v (lse ~ -3.4e38)", base, dict(causal=True),
        dict(out=o, lse=lse), cm, sc)

    # T = 2048 (one head: the CLI's float64 reference is O(B H T^2 D)): the scale perturbation, with and
    # without lse (SDPA and attention_ref return out only).
    q, k, v = qkv(700, 1, 1, 1, 2048, 2048, 64, "f32")
    cm = mask(2048, 2048, causal=True)
    base = dict(q=q, k=k, v=v)
    o, lse = attn_flash(q, k, v, cm, sc, block_n=128)
    add("flash2/f32/T2048/correct", "correct", "f32", FA2, "online softmax, 128-key tiles, causal, T=2048",
        base, dict(causal=True), dict(out=o, lse=lse), cm, sc)
    o, _ = attn_naive(q, k, v, cm, sc * (1 + 1e-3))
    add("sdpa/f32/T2048-scale-1e-3-out-only/bug", "bug", "f32", SDPA, "softmax scale x(1+1e-3) at T=2048; only out "
        "(SDPA returns no lse)", base, dict(causal=True), dict(out=o), cm, sc)
    q, k, v = qkv(150, 1, 4, 2, 256, 256, 64, "f32")
    cm = mask(256, 256, causal=True)
    o, _ = attn_naive(q, k, v, cm, sc * (1 + 1e-3))
    add("sdpa/f32/scale-1e-3-out-only/bug", "bug", "f32", SDPA, "softmax scale x(1+1e-3), T=256; only out",
        dict(q=q, k=k, v=v), dict(causal=True), dict(out=o), cm, sc)

    # --- float16 -------------------------------------------------------------------------------------------------
    q, k, v = qkv(800, 1, 4, 2, 512, 512, 64, "f16")
    cm = mask(512, 512, causal=True)
    base = dict(q=q, k=k, v=v)
    o, lse = attn_flash(q, k, v, cm, sc, block_n=128, p_round=True, out="f16")
    add("fa-kernel/f16/causal-gqa/correct", "correct", "f16", FA2, "f16 inputs, S and softmax in f32, P rounded to "
        "f16 before PV, f32 accumulator, out f16, lse f32", base, dict(causal=True), dict(out=o, lse=lse), cm, sc)
    o, _ = attn_naive(q, k, v, cm, sc, out="f16")
    add("fa-ref/f16/upcast/correct", "correct", "f16", FA_REF, "attention_ref(upcast=True): f32 math on f16 inputs, "
        "output cast to f16 (out only)", base, dict(causal=True), dict(out=o), cm, sc)
    o, lse = attn_flash(q, k, v, cm, sc * (1 + 1e-2), block_n=128, p_round=True, out="f16")
    add("fa-kernel/f16/scale-1e-2/bug", "bug", "f16", FA2, "softmax scale x(1+1e-2) (scale stored in f16 / bf16)",
        base, dict(causal=True), dict(out=o, lse=lse), cm, sc)
    o, lse = attn_flash(q, k, v, cm, sc, block_n=128, p_round=True, out="f16", gqa="tile")
    add("fa-kernel/f16/gqa-tile/bug", "bug", "f16", FA2, "kv head h % Hkv instead of h // group", base,
        dict(causal=True), dict(out=o, lse=lse), cm, sc)
    o, lse = attn_flash(q, k, v, cm, sc, block_n=64, p_round=True, out="f16", rescale=False)
    add("fa-kernel/f16/no-rescale/bug", "bug", "f16", FA2, "online softmax without rescaling the accumulator",
        base, dict(causal=True), dict(out=o, lse=lse), cm, sc)

    q, k, v = qkv(900, 1, 8, 2, 16, 512, 64, "f16")
    cm = mask(16, 512, causal=True)
    base = dict(q=q, k=k, v=v)
    o, lse = attn_splitkv(q, k, v, cm, sc, splits=4, block_n=128, p_round=True, out="f16")
    add("split-kv/f16/decode/correct", "correct", "f16", DECODE, "f16 inputs, 4 splits, P rounded to f16, partials in "
        "f32 merged by lse, out f16", base, dict(causal=True), dict(out=o, lse=lse), cm, sc)
    o, lse = attn_naive(q, k, v, mask(16, 512, causal=True, top_left=True), sc, out="f16")
    add("sdpa/f16/causal-top-left/bug", "bug", "f16", SDPA, "is_causal with Tq=16 < Tk=512: top-left alignment",
        base, dict(causal=True), dict(out=o, lse=lse), cm, sc)

    q, k, v = qkv(1000, 1, 1, 1, 2048, 2048, 64, "f16")
    cm = mask(2048, 2048, causal=True)
    base = dict(q=q, k=k, v=v)
    o, _ = attn_flash(q, k, v, cm, sc, block_n=128, p_round=True, out="f16")
    add("fa-kernel/f16/T2048-out-only/correct", "correct", "f16", FA2, "f16 kernel recipe at T=2048, causal; out only",
        base, dict(causal=True), dict(out=o), cm, sc)
    o, _ = attn_flash(q, k, v, cm, sc * (1 + 1e-2), block_n=128, p_round=True, out="f16")
    add("fa-kernel/f16/T2048-scale-1e-2-out-only/bug", "bug", "f16", FA2, "softmax scale x(1+1e-2) at T=2048; out only",
        base, dict(causal=True), dict(out=o), cm, sc)
    q, k, v = qkv(800, 1, 4, 2, 512, 512, 64, "f16")
    cm = mask(512, 512, causal=True)
    o, _ = attn_naive(q, k, v, cm, sc * (1 + 1e-2), out="f16")
    add("fa-ref/f16/scale-1e-2-out-only/bug", "bug", "f16", FA_REF, "softmax scale x(1+1e-2), T=512; out only",
        dict(q=q, k=k, v=v), dict(causal=True), dict(out=o), cm, sc)

    # --- malformed -----------------------------------------------------------------------------------------------
    q, k, v = qkv(1100, 1, 4, 2, 32, 32, 16, "f32")
    o, lse = attn_naive(q, k, v, mask(32, 32, causal=True), 0.25)
    qn = q.copy()
    qn[0, 1, 5, 3] = np.nan
    add("malformed/nan-in-q", "malformed", "f32", SDPA, "q holds a NaN (masking must be expressed by masks)",
        dict(q=qn, k=k, v=v), dict(causal=True), dict(out=o, lse=lse), None, 0.25)
    q6, k4, v4 = qkv(1200, 1, 6, 4, 32, 32, 16, "f32")
    add("malformed/hkv-not-dividing", "malformed", "f32", SDPA, "Hq=6 with Hkv=4 (no GQA grouping)",
        dict(q=q6, k=k4, v=v4), dict(causal=True), dict(out=np.zeros((1, 6, 32, 16), np.float32)), None, 0.25)
    add("malformed/no-outputs", "malformed", "f32", FA2, "candidate named like flash_attn's return values "
        "(output, softmax_lse): none of out/lse", dict(q=q, k=k, v=v), dict(causal=True),
        dict(output=o, softmax_lse=lse), None, 0.25)
    return out
