#!/usr/bin/python3
"""Writes the inputs and parameters of the attention and block-sparse golden cases.

Usage: golden_attention_inputs.py DATA_GOLDEN_DIR   (writes DATA_GOLDEN_DIR/attention/<case> and .../block-sparse/<case>)

The expected outputs are then written by the reference (tests/peers/regenerate_golden.sh attention, and block-sparse)
and confirmed independently by `attention_peer.py verify data/golden/attention` (and block-sparse).
"""
import os
import sys

import numpy as np

from peer_args import positional, write_case

rng = np.random.default_rng(20261123)


def normal(*shape, dtype=np.float64, sd=1.0):
    return (rng.normal(0.0, sd, size=shape)).astype(dtype)


def ties(*shape):
    return rng.integers(-1, 2, size=shape).astype(np.float64)


attention = {
    # Multi-head self-attention, no mask.
    "mha-plain": ({"q": normal(1, 2, 7, 8), "k": normal(1, 2, 7, 8), "v": normal(1, 2, 7, 8)}, {}),
    # Grouped-query heads (3 query heads per kv head), causal, Dv != D.
    "gqa-causal": ({"q": normal(2, 6, 13, 4), "k": normal(2, 2, 13, 4), "v": normal(2, 2, 13, 3)}, {"causal": True}),
    # Decoding-like Tq < Tk: bottom-right aligned causal rule with a left window of 6.
    "decode-window": ({"q": normal(1, 4, 5, 8), "k": normal(1, 1, 17, 8), "v": normal(1, 1, 17, 5)},
                      {"causal": True, "window_left": 6}),
    # Tq > Tk with causal: the first Tq - Tk rows have no allowed key (out 0, lse -inf).
    "empty-rows-causal": ({"q": normal(1, 2, 9, 4), "k": normal(1, 2, 4, 4), "v": normal(1, 2, 4, 2)}, {"causal": True}),
    # Two-sided window, softcap and an explicit scale.
    "window-softcap": ({"q": normal(1, 2, 16, 8, sd=2.0), "k": normal(1, 2, 16, 8, sd=2.0), "v": normal(1, 2, 16, 8)},
                       {"window_left": 3, "window_right": 2, "softcap": 5.0, "scale": 0.7}),
    # Exact ties among scores, float32 inputs, a negative scale.
    "ties-f32": ({"q": ties(1, 2, 8, 3).astype(np.float32), "k": ties(1, 2, 11, 3).astype(np.float32),
                  "v": ties(1, 2, 11, 4).astype(np.float32)}, {"scale": -0.5}),
    # float16 inputs with sharp scores (values up to 8, many probabilities underflow).
    "sharp-f16": ({"q": rng.uniform(-8, 8, size=(1, 2, 6, 4)).astype(np.float16),
                   "k": rng.uniform(-8, 8, size=(1, 2, 6, 4)).astype(np.float16),
                   "v": rng.uniform(-1, 1, size=(1, 2, 6, 4)).astype(np.float16)}, {}),
}
mask = rng.random((1, 4, 7, 10)) < 0.5
mask[0, :, 3, :] = False                       # row 3 of every head: no allowed key
attention["mask-broadcast"] = (
    {"q": normal(2, 4, 7, 4), "k": normal(2, 2, 10, 4), "v": normal(2, 2, 10, 3), "mask": mask},
    {"window_left": 5})

block_sparse = {}


def block_case(b, hq, hkv, tq, tk, d, dv, bq, bk, bm, hm, tiles, with_full=True, element=None, params=None):
    """tiles(bb, hh, r) -> list of (key tile, 'p' or 'f'); garbage fills the lists past the counts."""
    nq, nk = -(-tq // bq), -(-tk // bk)
    counts = np.zeros((bm, hm, nq), np.int32)
    indices = rng.integers(-2, nk + 2, size=(bm, hm, nq, nk)).astype(np.int32)
    full_counts = np.zeros((bm, hm, nq), np.int32)
    full_indices = rng.integers(-2, nk + 2, size=(bm, hm, nq, nk)).astype(np.int32)
    for bb in range(bm):
        for hh in range(hm):
            for r in range(nq):
                for c, kind in sorted(tiles(bb, hh, r, nk)):
                    if kind == "f" and with_full:
                        full_indices[bb, hh, r, full_counts[bb, hh, r]] = c
                        full_counts[bb, hh, r] += 1
                    else:
                        indices[bb, hh, r, counts[bb, hh, r]] = c
                        counts[bb, hh, r] += 1
    arrays = {"q": normal(b, hq, tq, d), "k": normal(b, hkv, tk, d), "v": normal(b, hkv, tk, dv),
              "kv_num_blocks": counts, "kv_indices": indices}
    if with_full:
        arrays["full_kv_num_blocks"], arrays["full_kv_indices"] = full_counts, full_indices
    if element is not None:
        arrays["mask"] = element
    p = {"block_q": bq, "block_k": bk}
    p.update(params or {})
    return arrays, p


# Causal block mask built the FlexAttention way: diagonal tiles partial (with the causal element mask), earlier full.
causal = np.tril(np.ones((10, 10), bool))[None, None]
block_sparse["causal-partial-full"] = block_case(
    1, 4, 2, 10, 10, 4, 3, 4, 3, 1, 1,
    lambda bb, hh, r, nk: [(c, "f" if (c + 1) * 3 <= r * 4 + 1 else "p") for c in range(nk) if c * 3 <= min(9, r * 4 + 3)],
    element=causal)
# Per-head random tiles, no full lists, no element mask: listed tiles are attended whole.
block_sparse["random-heads-no-full"] = block_case(
    2, 3, 3, 11, 9, 4, 4, 2, 4, 1, 3,
    lambda bb, hh, r, nk: [(c, "p") for c in range(nk) if rng.random() < 0.5],
    with_full=False)
# Default 128 x 128 tiles on short sequences: one tile; GQA; softcap and scale.
block_sparse["one-tile-softcap"] = block_case(
    1, 4, 1, 7, 12, 8, 8, 128, 128, 1, 1, lambda bb, hh, r, nk: [(0, "p")],
    element=(rng.random((1, 4, 7, 12)) < 0.6), params={"softcap": 4.0, "scale": 0.4})
# A query tile with no listed key tile (its rows are empty), per-batch lists, Tq != Tk.
block_sparse["empty-query-tile"] = block_case(
    2, 2, 2, 9, 14, 4, 2, 3, 5, 2, 1,
    lambda bb, hh, r, nk: [] if r == 1 else [(c, "f" if (c + bb) % 2 == 0 else "p") for c in range(nk)],
    element=(rng.random((2, 1, 9, 14)) < 0.5))

root, = positional(sys.argv, __doc__, str)
for algorithm, cases in (("attention", attention), ("block-sparse", block_sparse)):
    for name, (arrays, params) in cases.items():
        write_case(os.path.join(root, algorithm, name), arrays, params, golden=True)
