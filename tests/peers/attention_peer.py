#!/usr/bin/python3
"""PyTorch peer for the `attention` and `block-sparse` references (proofs/attention.md, Definition).

Computes attention in float64 with plain torch ops (einsum + masked_fill + logsumexp), independently of the C#
code, so that the references can be cross-checked against a second implementation.

Usage (Debian's interpreter, which has python3-torch and python3-numpy):

    /usr/bin/python3 tests/peers/attention_peer.py IN.npz OUT.npz [PARAMS.json] [name=value ...]
    /usr/bin/python3 tests/peers/attention_peer.py verify CASES_DIR
        every CASE/{input.npz, params.json, expected.npz} under CASES_DIR: recompute out and lse and compare with
        expected.npz: |peer - expected| <= 1e-10 max(1, |expected|), -inf exactly where expected has -inf;
        prints "N of M cases agree", exit 1 on any disagreement (or no cases)
    /usr/bin/python3 tests/peers/attention_peer.py generate OUT_DIR SEED COUNT attention|block-sparse
        write COUNT random cases OUT_DIR/case-NNN/{input.npz, params.json} (GQA, Tq != Tk, windows, softcap,
        scale, broadcast masks with empty rows, random block masks with garbage past the counts; float64, float32
        and float16 inputs; uniform, tied and sharp values) for the C# reference to answer

IN.npz arrays (names as in the CLI contract):
    q    [B, Hq, Tq, D]      any float dtype, finite
    k    [B, Hkv, Tk, D]     Hkv divides Hq; query head h reads kv head h // (Hq // Hkv)
    v    [B, Hkv, Tk, Dv]
    mask [B?, H?, Tq?, Tk?]  optional bool; each dimension 1 or full (true = allowed)
    kv_num_blocks [Bm, Hm, nq], kv_indices [Bm, Hm, nq, nk]                     optional: block-sparse mode
    full_kv_num_blocks [Bm, Hm, nq], full_kv_indices [Bm, Hm, nq, nk]           optional, with the above

Parameters (PARAMS.json holds an object; name=value pairs override it; booleans are true/false):
    causal (false), causal_align (bottom-right | top-left), window_left (-1), window_right (-1), scale (1/sqrt(D)),
    softcap (0),
    block_q (128), block_k (128)   [block-sparse mode only]

Semantics: masks are bottom-right aligned (query row i at position p = i + Tk - Tq): causal allows j <= p,
the window allows p - window_left <= j <= p + window_right (-1 = unbounded). softcap c > 0 maps s to c*tanh(s/c)
before masking. In block-sparse mode the allowed set is: tile listed in full_kv_indices, or listed in kv_indices
and mask[i, j] (the whole tile when there is no mask); the dense rules above still apply if given. A row with
no allowed key gets out = 0 and lse = -inf. (PyTorch's own is_causal=True is top-left aligned when Tq != Tk;
this script builds the bottom-right mask explicitly. With causal_align=top-left, query row i sits at p = i and the
causal mask is PyTorch's own torch.ones(Tq, Tk).tril(), as SDPA's is_causal builds it.)

OUT.npz arrays: out [B, Hq, Tq, Dv] float64, lse [B, Hq, Tq] float64 (natural log).

Exit codes: 0 success; 2 bad usage or bad input (message on stderr naming the array).
"""

import math
import os
import sys

import numpy as np
import torch

import peer_args
from peer_args import case_names, dispatch, param_args, read_arrays, read_case, usage, write_arrays, write_case

PROG = "attention_peer"


def fail(message):
    peer_args.fail(PROG, message)


def broadcast_mask(mask, full_shape, name):
    """Check that a bool array broadcasts to full_shape (each dimension 1 or full) and expand it."""
    if mask.ndim != 4:
        fail(f"{name} has {mask.ndim} dimensions, expected 4")
    for dim, (have, want) in enumerate(zip(mask.shape, full_shape)):
        if have not in (1, want):
            fail(f"{name} has shape {tuple(mask.shape)}, which does not broadcast to {tuple(full_shape)} (dimension {dim})")
    return torch.from_numpy(mask.astype(bool)).expand(*full_shape)


def expand_block_mask(data, params, b, hq, tq, tk, element):
    """Dense [B, Hq, Tq, Tk] allowed mask of a FlexAttention block mask (element: expanded bool tensor or None)."""
    bq, bk = int(params.get("block_q", 128)), int(params.get("block_k", 128))
    nq, nk = -(-tq // bq), -(-tk // bk)
    lists = [("kv_num_blocks", "kv_indices", False)]
    if "full_kv_num_blocks" in data:
        lists.append(("full_kv_num_blocks", "full_kv_indices", True))
    allowed = torch.zeros(b, hq, tq, tk, dtype=torch.bool)
    for counts_name, indices_name, is_full in lists:
        if indices_name not in data:
            fail(f"{counts_name} given without {indices_name}")
        counts, indices = np.asarray(data[counts_name]), np.asarray(data[indices_name])
        bm, hm = counts.shape[0], counts.shape[1]
        if counts.shape[2] != nq or indices.shape != (bm, hm, nq, nk) or bm not in (1, b) or hm not in (1, hq):
            fail(f"{counts_name}/{indices_name} shapes {counts.shape}/{indices.shape} do not fit B={b}, Hq={hq}, nq={nq}, nk={nk}")
        for bb in range(b):
            for hh in range(hq):
                for r in range(nq):
                    cb, ch = (0 if bm == 1 else bb), (0 if hm == 1 else hh)
                    count = int(counts[cb, ch, r])
                    if not 0 <= count <= nk:
                        fail(f"{counts_name}[{cb}, {ch}, {r}] = {count} is outside 0..{nk}")
                    for n in range(count):
                        c = int(indices[cb, ch, r, n])
                        if not 0 <= c < nk:
                            fail(f"{indices_name}[{cb}, {ch}, {r}, {n}] = {c} is outside 0..{nk - 1}")
                        rows = slice(r * bq, min(tq, (r + 1) * bq))
                        cols = slice(c * bk, min(tk, (c + 1) * bk))
                        if is_full or element is None:
                            allowed[bb, hh, rows, cols] = True
                        else:
                            allowed[bb, hh, rows, cols] = element[bb, hh, rows, cols]
    return allowed


def attention(data, params):
    for name in ("q", "k", "v"):
        if name not in data:
            fail(f"input has no array {name!r}")
    q, k, v = (torch.from_numpy(np.asarray(data[n], dtype=np.float64)) for n in ("q", "k", "v"))
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.ndim != 4:
            fail(f"{name} has {t.ndim} dimensions, expected 4")
        bad = (~torch.isfinite(t)).nonzero()
        if len(bad) > 0:
            fail(f"{name}{tuple(bad[0].tolist())} is not finite")
    b, hq, tq, d = q.shape
    _, hkv, tk, dv = v.shape
    if k.shape[0] != b or k.shape[3] != d or v.shape[:3] != k.shape[:3] or hkv < 1 or hq % hkv != 0:
        fail(f"shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} do not match")

    scale = float(params.get("scale", 1.0 / math.sqrt(d)))
    softcap = float(params.get("softcap", 0.0))
    causal = bool(params.get("causal", False))
    align = str(params.get("causal_align", "bottom-right"))
    if align not in ("bottom-right", "top-left"):
        fail(f"causal_align must be bottom-right or top-left, got {align!r}")
    window_left, window_right = int(params.get("window_left", -1)), int(params.get("window_right", -1))

    # Grouped-query heads: repeat each kv head for the query heads of its group.
    group = hq // hkv
    k = k.repeat_interleave(group, dim=1)                     # [B, Hq, Tk, D]
    v = v.repeat_interleave(group, dim=1)                     # [B, Hq, Tk, Dv]

    # Scores, then softcap (before masking).
    s = torch.einsum("bhid,bhjd->bhij", q, k) * scale        # [B, Hq, Tq, Tk]
    if softcap > 0:
        s = softcap * torch.tanh(s / softcap)

    # Allowed set: bottom-right aligned causal/window rules, explicit mask, block mask.
    pos = torch.arange(tq)[:, None] + (tk - tq if align == "bottom-right" else 0)   # [Tq, 1] query positions
    key = torch.arange(tk)[None, :]                          # [1, Tk]
    allowed = torch.ones(tq, tk, dtype=torch.bool)
    if causal and align == "top-left":
        allowed &= torch.ones(tq, tk, dtype=torch.bool).tril()   # PyTorch's is_causal mask
    elif causal:
        allowed &= key <= pos
    if window_left >= 0:
        allowed &= key >= pos - window_left
    if window_right >= 0:
        allowed &= key <= pos + window_right
    allowed = allowed.expand(b, hq, tq, tk)
    element = broadcast_mask(np.asarray(data["mask"]), (b, hq, tq, tk), "mask") if "mask" in data else None
    if "kv_num_blocks" in data:
        allowed = allowed & expand_block_mask(data, params, b, hq, tq, tk, element)
    elif element is not None:
        allowed = allowed & element

    s = s.masked_fill(~allowed, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)                         # [B, Hq, Tq]; -inf for rows with no allowed key
    p = torch.exp(s - lse[..., None]).masked_fill(~allowed, 0.0)   # empty rows: exp(-inf + inf) = nan -> 0
    out = torch.einsum("bhij,bhjd->bhid", p, v)             # [B, Hq, Tq, Dv]
    return out.numpy(), lse.numpy()


TOLERANCE = 1e-10


def verify(root):
    """Recompute every case under root and compare with its expected.npz."""
    cases = case_names(root)
    failures = 0
    for name in cases:
        data, params, expected = read_case(os.path.join(root, name))
        out, lse = attention(data, params)
        problems = []
        for label, mine, theirs in (("out", out, expected["out"]), ("lse", lse, expected["lse"])):
            theirs = np.asarray(theirs, dtype=np.float64)
            if mine.shape != theirs.shape:
                problems.append(f"{label} shape {theirs.shape}, peer {mine.shape}")
                continue
            inf_mine, inf_theirs = np.isneginf(mine), np.isneginf(theirs)
            if not np.array_equal(inf_mine, inf_theirs):
                problems.append(f"{label}: -inf at {np.argwhere(inf_mine != inf_theirs)[0].tolist()} on one side only")
                continue
            finite = ~inf_mine
            if not (np.all(np.isfinite(mine[finite])) and np.all(np.isfinite(theirs[finite]))):
                problems.append(f"{label}: NaN or +inf")
                continue
            err = np.abs(mine[finite] - theirs[finite]) / np.maximum(1.0, np.abs(theirs[finite]))
            if err.size and err.max() > TOLERANCE:
                problems.append(f"{label}: scaled error {err.max():.3e} > {TOLERANCE}")
        if problems:
            failures += 1
            print(f"MISMATCH {name}: {'; '.join(problems)}")
    print(f"attention peer: {len(cases) - failures} of {len(cases)} cases agree")
    return 1 if failures or not cases else 0


def generate(out, seed, count, algorithm):
    """Random cases for the reference to answer; see the module docstring."""
    if algorithm not in ("attention", "block-sparse"):
        fail(f"unknown algorithm {algorithm!r} (attention or block-sparse)")
    rng = np.random.default_rng(seed)
    lengths = [1, 2, 3, 5, 7, 8, 13, 16, 17, 31]
    for c in range(count):
        b, hkv, group = int(rng.integers(1, 3)), int(rng.integers(1, 3)), int(rng.integers(1, 4))
        hq = hkv * group
        tq, tk = int(rng.choice(lengths)), int(rng.choice(lengths))
        d, dv = int(rng.choice([1, 2, 3, 4, 8, 16])), int(rng.choice([1, 2, 3, 5, 8]))
        style = rng.choice(["uniform", "ties", "sharp"])
        dtype = rng.choice([np.float64, np.float32, np.float16])

        def draw(*shape):
            if style == "ties":
                x = rng.integers(-1, 2, size=shape).astype(np.float64)
            elif style == "sharp":
                x = rng.uniform(-8.0, 8.0, size=shape)
            else:
                x = rng.normal(0.0, 1.0, size=shape)
            return x.astype(dtype)

        arrays = {"q": draw(b, hq, tq, d), "k": draw(b, hkv, tk, d), "v": draw(b, hkv, tk, dv)}
        params = {}
        if rng.random() < 0.3:
            params["scale"] = float(np.round(rng.uniform(-1.0, 1.0), 3))
        if rng.random() < 0.3:
            params["softcap"] = float(np.round(rng.uniform(1.0, 10.0), 2))

        def random_mask():
            shape = (1 if rng.random() < 0.5 else b, 1 if rng.random() < 0.5 else hq,
                     1 if rng.random() < 0.15 else tq, 1 if rng.random() < 0.15 else tk)
            m = rng.random(shape) < rng.random()
            if rng.random() < 0.4:
                m[:, :, int(rng.integers(0, shape[2])), :] = False     # an empty row
            return m

        if algorithm == "attention":
            if rng.random() < 0.4:
                params["causal"] = True
            if rng.random() < 0.4:
                params["window_left"] = int(rng.integers(-1, tk + 1))
                params["window_right"] = int(rng.integers(-1, tk + 1))
            if rng.random() < 0.4:
                arrays["mask"] = random_mask()
            if rng.random() < 0.3:
                params["causal_align"] = "top-left"
        else:
            bq, bk = int(rng.choice([1, 2, 3, 4, 5, 16, 128])), int(rng.choice([1, 2, 3, 4, 5, 16, 128]))
            params["block_q"], params["block_k"] = bq, bk
            nq, nk = -(-tq // bq), -(-tk // bk)
            bm, hm = (1 if rng.random() < 0.5 else b), (1 if rng.random() < 0.5 else hq)
            with_full = rng.random() < 0.75
            counts = np.zeros((bm, hm, nq), dtype=np.int32)
            full_counts = np.zeros((bm, hm, nq), dtype=np.int32)
            indices = rng.integers(-3, nk + 3, size=(bm, hm, nq, nk)).astype(np.int32)       # garbage past the counts
            full_indices = rng.integers(-3, nk + 3, size=(bm, hm, nq, nk)).astype(np.int32)
            density = rng.random()
            for i in np.ndindex(bm, hm, nq):
                for tile in range(nk):
                    if rng.random() >= density:
                        continue
                    if with_full and rng.random() < 0.5:
                        full_indices[i + (full_counts[i],)] = tile
                        full_counts[i] += 1
                    else:
                        indices[i + (counts[i],)] = tile
                        counts[i] += 1
            arrays["kv_num_blocks"], arrays["kv_indices"] = counts, indices
            if with_full:
                arrays["full_kv_num_blocks"], arrays["full_kv_indices"] = full_counts, full_indices
            if rng.random() < 0.5:
                arrays["mask"] = random_mask()
        write_case(os.path.join(out, f"case-{c:03d}"), arrays, params)
    return 0


def run_files(argv):
    """IN.npz OUT.npz [PARAMS.json] [name=value ...]: out and lse of IN written to OUT."""
    if len(argv) < 3 or argv[1] in ("-h", "--help"):
        usage(__doc__)
    params = param_args(argv[3:], PROG, words=("causal_align",))
    try:
        data = read_arrays(argv[1])
    except Exception as e:  # unreadable or not an npz
        fail(f"cannot read {argv[1]}: {e}")
    out, lse = attention(data, params)
    write_arrays(argv[2], {"out": out, "lse": lse})
    return 0


if __name__ == "__main__":
    dispatch(sys.argv, __doc__, {"verify": (verify, [str]), "generate": (generate, [str, int, int, str])},
             fallback=run_files)
