"""Shared pieces of the bug zoo's attention families (issue 12): inputs, a float64 check, and attention cores.

The cores are written the way attention kernels and their test references are written, in float32 torch on CPU:
  naive    einsum + masked_fill + softmax (FlashAttention's tests attention_ref, PyTorch SDPA's math path)
  flash    FlashAttention-2 style online softmax over key tiles (running max m, running sum l, rescaled accumulator)
  splitkv  flash-decoding: the keys cut into groups, each group's partial (out, lse) in float32, merged by lse
For float16 the GPU recipe is emulated (torch 1.13 has no CPU half matmul): inputs are float16 values, scores and the
softmax are float32, P is rounded to float16 before the PV product (p_round), the accumulator is float32 and the output
is rounded to float16 at the end. lse stays float32, as FlashAttention returns it.

Bug knobs (each a way real kernels go wrong; all default to the correct behaviour):
  gqa="tile"            kv head h % Hkv (k.repeat) instead of h // group (repeat_interleave)
  empty="nan"|"mean"    a row with no allowed key: softmax of all -inf (NaN), or a finite fill value (finfo.min) so the
                        row becomes the mean of v and lse a huge negative number
  lse="log2"|"nomax"    lse in base 2 (Triton kernels keep m*log2(e) + log2(l)), or ln(l) without the running max
  softcap_mode="after_mask"|"no_tanh"   the cap applied to already masked scores (-inf becomes -c), or without tanh
  rescale=False         online softmax that does not rescale the accumulator when the running max grows

verify() recomputes every case in float64 (an independent reference per family supplies the expected arrays) and
raises when a 'correct' candidate is not within rounding of it, or a 'bug' candidate is not clearly away from it.
"""
import math

import numpy as np
import torch

import zoo_common  # noqa: F401  (puts tests/peers on the path for peer_args)
from peer_args import text_bools

NEG = float("-inf")
NP = {"f32": np.float32, "f16": np.float16}
# A correct candidate's max error relative to max(1, max|expected|): float32 rounding of these sizes is ~1e-6,
# float16's ~3e-4 (output rounding alone is up to 2^-11 relative). A bug must be at least BUG_FACTOR times further away.
CORRECT_TOL = {"f32": 2e-5, "f16": 1e-3}
BUG_FACTOR = 5.0


def randn(seed, shape, dtype, std=1.0):
    """Gaussian array of the given shape, rounded to dtype (the stored input)."""
    r = np.random.default_rng(seed)
    return (r.standard_normal(shape) * std).astype(np.float32).astype(NP[dtype])


def t32(x):
    """A numpy array as a float32 tensor (float16 widens exactly)."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x, dtype=np.float32)))


def cast(x, dtype):
    """A float32 tensor or array stored in dtype (round to nearest even)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().numpy()
    return np.asarray(x, dtype=np.float32).astype(NP[dtype])


def round16(x):
    """float32 tensor rounded to float16 and back (what a kernel does to P before the PV tensor-core product)."""
    return x.half().float()


def expand_kv(x, hq, gqa="interleave"):
    """[B,Hkv,T,D] -> [B,Hq,T,D]: query head h reads kv head h // (Hq/Hkv)."""
    g = hq // x.shape[1]
    if g == 1:
        return x
    if gqa == "interleave":
        return x.repeat_interleave(g, dim=1)
    return x.repeat(1, g, 1, 1)   # bug: h % Hkv


def _finish_lse(m, l, lse):
    """lse of rows with running max m and sum l (natural log unless a bug asks otherwise)."""
    if lse == "log2":
        return m * (1.0 / math.log(2.0)) + torch.log2(l)
    if lse == "nomax":
        return torch.log(l)
    return m + torch.log(l)


def _scores(q, k, scale, softcap, allowed, softcap_mode, masked_value):
    s = torch.einsum("bhid,bhjd->bhij", q * scale, k)
    if softcap > 0 and softcap_mode == "ok":
        s = torch.tanh(s / softcap) * softcap
    if softcap > 0 and softcap_mode == "no_tanh":
        s = (s / softcap) * softcap
    s = s.masked_fill(~allowed, masked_value)
    if softcap > 0 and softcap_mode == "after_mask":
        s = torch.tanh(s / softcap) * softcap
    return s


def attn_naive(q, k, v, allowed, scale, softcap=0.0, out="f32", p_round=False, gqa="interleave", empty="zero",
               lse="ln", softcap_mode="ok"):
    """attention_ref / SDPA math path. q [B,Hq,Tq,D], k, v [B,Hkv,Tk,*] numpy; allowed bool broadcastable to
    [B,Hq,Tq,Tk]. Returns out (numpy, dtype out) and lse (float32)."""
    q, k, v = t32(q), t32(k), t32(v)
    hq = q.shape[1]
    k, v = expand_kv(k, hq, gqa), expand_kv(v, hq, gqa)
    allowed = torch.from_numpy(np.broadcast_to(allowed, (q.shape[0], hq, q.shape[2], k.shape[2])).copy())
    masked_value = torch.finfo(torch.float32).min if empty == "mean" else NEG
    s = _scores(q, k, scale, softcap, allowed, softcap_mode, masked_value)
    m = s.amax(dim=-1, keepdim=True)
    if empty == "zero":
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    p = torch.exp(s - m)
    l = p.sum(dim=-1, keepdim=True)
    pv = round16(p) if p_round else p
    o = torch.einsum("bhij,bhjd->bhid", pv, v) / l
    if empty == "zero":
        o = torch.where(l > 0, o, torch.zeros_like(o))
    ls = _finish_lse(m, l, lse)[..., 0]
    return cast(o, out), cast(ls, "f32")


def attn_flash(q, k, v, allowed, scale, softcap=0.0, block_n=64, out="f32", p_round=False, gqa="interleave",
               lse="ln", rescale=True, key_range=None, partial=False):
    """FlashAttention-2 forward: per key tile, m_new = max(m, rowmax(S)), P = exp(S - m_new), l = l*exp(m - m_new) +
    rowsum(P), acc = acc*exp(m - m_new) + P V; out = acc / l at the end. Fully masked tiles are skipped as the kernel's
    block loop would. key_range=(lo, hi) restricts the keys (split-KV); partial=True returns the float32 partials."""
    q, k, v = t32(q), t32(k), t32(v)
    b, hq, tq, _ = q.shape
    k, v = expand_kv(k, hq, gqa), expand_kv(v, hq, gqa)
    tk, dv = k.shape[2], v.shape[3]
    allowed = torch.from_numpy(np.broadcast_to(allowed, (b, hq, tq, tk)).copy())
    lo, hi = key_range if key_range is not None else (0, tk)
    m = torch.full((b, hq, tq, 1), NEG)
    l = torch.zeros((b, hq, tq, 1))
    acc = torch.zeros((b, hq, tq, dv))
    for j0 in range(lo, hi, block_n):
        j1 = min(hi, j0 + block_n)
        a = allowed[..., j0:j1]
        if not bool(a.any()):
            continue
        s = _scores(q, k[:, :, j0:j1], scale, softcap, a, "ok", NEG)
        m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
        m_safe = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
        p = torch.exp(s - m_safe)
        alpha = torch.exp(m - m_safe)
        l = l * alpha + p.sum(dim=-1, keepdim=True)
        pv = round16(p) if p_round else p
        acc = (acc * alpha if rescale else acc) + torch.einsum("bhij,bhjd->bhid", pv, v[:, :, j0:j1])
        m = m_new
    if partial:
        return acc, m, l
    o = torch.where(l > 0, acc / torch.where(l > 0, l, torch.ones_like(l)), torch.zeros_like(acc))
    ls = torch.where(l > 0, _finish_lse(m, l, lse), torch.full_like(l, NEG))[..., 0]
    return cast(o, out), cast(ls, "f32")


def attn_splitkv(q, k, v, allowed, scale, softcap=0.0, splits=4, block_n=64, out="f32", p_round=False,
                 merge="lse"):
    """flash-decoding: the keys in `splits` contiguous groups, each reduced by attn_flash to a float32 partial
    (out_s, lse_s); then lse = logsumexp_s lse_s, out = sum_s exp(lse_s - lse) out_s. merge="max" is the bug of
    taking the largest partial lse as the total (out merged correctly, lse too small)."""
    tk = np.shape(k)[2]
    step = -(-tk // splits)
    outs, lses = [], []
    for s0 in range(0, tk, step):
        acc, m, l = attn_flash(q, k, v, allowed, scale, softcap, block_n, p_round=p_round,
                               key_range=(s0, min(tk, s0 + step)), partial=True)
        ok = l > 0
        outs.append(torch.where(ok, acc / torch.where(ok, l, torch.ones_like(l)), torch.zeros_like(acc)))
        lses.append(torch.where(ok, m + torch.log(torch.where(ok, l, torch.ones_like(l))), torch.full_like(l, NEG)))
    lse_all = torch.stack(lses)                               # [S,B,H,Tq,1]
    big = lse_all.amax(dim=0)
    big_safe = torch.where(torch.isfinite(big), big, torch.zeros_like(big))
    w = torch.exp(lse_all - big_safe)
    tot = w.sum(dim=0)
    o = sum(w[i] * outs[i] for i in range(len(outs))) / torch.where(tot > 0, tot, torch.ones_like(tot))
    ls = big if merge == "max" else torch.where(tot > 0, big_safe + torch.log(tot), torch.full_like(tot, NEG))
    return cast(o, out), cast(ls[..., 0], "f32")


# ---------------------------------------------------------------------------------------------------------------
# float64 reference and the self-check of every case

def ref_attention(q, k, v, allowed, scale, softcap=0.0):
    """float64 attention under an allowed mask: out 0 and lse -inf on empty rows."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    g = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, g, axis=1), np.repeat(v, g, axis=1)
    s = np.einsum("bhid,bhjd->bhij", q, k) * scale
    if softcap > 0:
        s = softcap * np.tanh(s / softcap)
    allowed = np.broadcast_to(allowed, s.shape)
    s = np.where(allowed, s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    p = np.exp(s - m)
    l = p.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        o = np.where(l > 0, np.einsum("bhij,bhjd->bhid", p, v) / np.where(l > 0, l, 1.0), 0.0)
        lse = np.where(l > 0, m + np.log(np.where(l > 0, l, 1.0)), -np.inf)[..., 0]
    return o, lse


def deviation(cand, ref):
    """Max |cand - ref| / max(1, max|ref|) over finite-finite pairs; inf when shapes, NaNs or infinities disagree."""
    c = np.asarray(cand)
    r = np.asarray(ref)
    if c.shape != r.shape:
        return math.inf
    if c.dtype == bool or r.dtype == bool:
        return 0.0 if np.array_equal(c, r) else math.inf
    c = c.astype(np.float64)
    r = r.astype(np.float64)
    fin = np.isfinite(r)
    if not np.array_equal(np.isfinite(c), fin) or np.any(c[~fin] != r[~fin]):
        return math.inf
    if not fin.any():
        return 0.0
    return float(np.max(np.abs(c[fin] - r[fin])) / max(1.0, float(np.max(np.abs(r[fin])))))


def verify(case, expected):
    """Raise unless a 'correct' case is within CORRECT_TOL of the float64 `expected` (dict name -> array) and a 'bug'
    case is at least BUG_FACTOR times that tolerance away in some output it carries. Returns the deviations."""
    devs = {name: deviation(case["candidate"][name], expected[name]) for name in case["candidate"] if name in expected}
    tol = CORRECT_TOL[case["dtype"]]
    if case["kind"] == "correct":
        bad = {n: d for n, d in devs.items() if not d <= tol}
        assert not bad, f"{case['name']}: a correct candidate is off the float64 reference: {bad}"
    elif case["kind"] == "bug":
        extra = set(case["candidate"]) - set(expected)
        assert extra or any(d >= BUG_FACTOR * tol for d in devs.values()), \
            f"{case['name']}: the bug is not observable against the float64 reference: {devs}"
    return devs


def case(name, algorithm, kind, dtype, style, why, inputs, params, candidate):
    """One zoo case as the driver expects it (bool params written true/false)."""
    return dict(name=name, algorithm=algorithm, kind=kind, dtype=dtype, style=style, why=why,
                inputs=inputs, params=text_bools(params), candidate=candidate)
