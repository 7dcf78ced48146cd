#!/usr/bin/python3
"""Writes the inputs and parameters of the golden cases of moba, nsa, resa, leank, leank-mask and linear.

Usage: golden_sparse_inputs.py DATA_GOLDEN_DIR   (writes DATA_GOLDEN_DIR/<algorithm>/<case>)

The expected outputs are then written by the reference (tests/peers/regenerate_golden.sh ALGORITHM) and confirmed
independently by `sparse_attention_peer.py verify ALGORITHM data/golden/ALGORITHM`.
"""
import os
import sys

import numpy as np

from peer_args import positional, write_case

rng = np.random.default_rng(20261124)


def normal(*shape, dtype=np.float64):
    return rng.normal(0.0, 1.0, size=shape).astype(dtype)


def ties(*shape):
    return rng.integers(-1, 2, size=shape).astype(np.float64)


cases = {
    "moba": {
        # Chunks of 3 over 10 positions (a short last chunk), top-2.
        "chunks-top2": ({"q": normal(1, 2, 10, 4), "k": normal(1, 2, 10, 4), "v": normal(1, 2, 10, 3)},
                        {"chunk_size": 3, "top_k": 2}),
        # Exact gate ties (tied keys) resolved to the lower chunk; float32.
        "ties-f32": ({"q": ties(2, 1, 12, 2).astype(np.float32), "k": ties(2, 1, 12, 2).astype(np.float32),
                      "v": normal(2, 1, 12, 2, dtype=np.float32)}, {"chunk_size": 2, "top_k": 3, "scale": 0.5}),
        # top_k beyond the chunk count: causal attention.
        "all-chunks": ({"q": normal(1, 1, 7, 3), "k": normal(1, 1, 7, 3), "v": normal(1, 1, 7, 3)},
                       {"chunk_size": 4, "top_k": 5}),
    },
    "nsa": {
        # GQA 2 query heads per kv head, blocks of 4, top-2, window 5, random gates.
        "gqa-gates": ({"q": normal(1, 4, 17, 4), "k": normal(1, 2, 17, 4), "v": normal(1, 2, 17, 3),
                       "gates": rng.uniform(0, 1, size=(1, 4, 17, 3))}, {"block_size": 4, "top_n": 2, "window": 5}),
        # Sliding window only (gates 0, 0, 1).
        "window-only": ({"q": normal(2, 2, 9, 2), "k": normal(2, 1, 9, 2), "v": normal(2, 1, 9, 2),
                         "gates": np.broadcast_to(np.array([0.0, 0.0, 1.0]), (2, 2, 9, 3)).copy()},
                        {"block_size": 2, "top_n": 1, "window": 3}),
        # top_n = 1 with a lone visible block (the own block still wins), no window branch.
        "top1-no-window": ({"q": normal(1, 1, 8, 4), "k": normal(1, 1, 8, 4), "v": normal(1, 1, 8, 4),
                            "gates": rng.uniform(0, 1, size=(1, 1, 8, 3))}, {"block_size": 3, "top_n": 1, "window": 0}),
    },
    "resa": {
        # A 37-token cache in blocks of 4 (partial last block), p = 0.25, n_min = 2, GQA.
        "gqa-partial-block": ({"q": normal(1, 4, 1, 8), "k": normal(1, 2, 37, 8), "v": normal(1, 2, 37, 4)},
                              {"block_size": 4, "sparsity": 0.25, "n_local": 1, "n_min": 2}),
        # Defaults (b = 16, p = 0.1, n_min = 16) on a 40-token cache: every block selected.
        "defaults": ({"q": normal(2, 2, 1, 4), "k": normal(2, 2, 40, 4), "v": normal(2, 2, 40, 4)}, {}),
        # n_local larger than n_sel, float32.
        "local-only-f32": ({"q": normal(1, 2, 1, 4, dtype=np.float32), "k": normal(1, 1, 20, 4, dtype=np.float32),
                            "v": normal(1, 1, 20, 2, dtype=np.float32)},
                           {"block_size": 2, "sparsity": 0.1, "n_local": 3, "n_min": 0}),
    },
    "leank": {
        # Decoding rows (Tq < Tk), sink 2, recent 3, a random mask with one all-zero head (zero-logit).
        "zero-logit": ({"q": normal(1, 4, 3, 8), "k": normal(1, 2, 12, 8), "v": normal(1, 2, 12, 4),
                        "channel_mask": np.array([[False] * 8, [True, False, True, True, False, False, True, False]])},
                       {"sink": 2, "recent": 3}),
        # The same inputs with the zero head dropping its pruned keys.
        "drop": (None, {"sink": 2, "recent": 3, "zero_head": "drop"}),
        # Self-attention, not causal, all channels kept but one.
        "bidirectional": ({"q": normal(1, 1, 6, 4), "k": normal(1, 1, 6, 4), "v": normal(1, 1, 6, 4),
                           "channel_mask": np.array([[True, True, False, True]])},
                          {"sink": 1, "recent": 2, "causal": False, "scale": 0.3}),
    },
    "leank-mask": {
        # 2 layers, 2 heads, D = 64: counts rounded to multiples of 32.
        "align32": ({"alpha": rng.uniform(0, 1, size=(2, 2, 64))}, {}),
        # Tied alphas, D = 12 not a multiple of the alignment 8 (the cap at D), ratio 0.5.
        "ties-align8": ({"alpha": (rng.integers(0, 4, size=(1, 3, 12)) * 0.5)}, {"ratio": 0.5, "align": 8}),
    },
    "linear": {
        "elu1-normalized": ({"q": normal(1, 2, 13, 4), "k": normal(1, 2, 13, 4), "v": normal(1, 2, 13, 3)}, {}),
        "decay-chunked": ({"q": normal(2, 1, 10, 2), "k": normal(2, 1, 10, 2), "v": normal(2, 1, 10, 2)},
                          {"decay": 0.8, "form": "chunked", "chunk": 3}),
        "identity-recurrent-f32": ({"q": normal(1, 1, 9, 3, dtype=np.float32), "k": normal(1, 1, 9, 3, dtype=np.float32),
                                    "v": normal(1, 1, 9, 5, dtype=np.float32)},
                                   {"feature_map": "identity", "normalize": False, "form": "recurrent"}),
    },
}

root, = positional(sys.argv, __doc__, str)
for algorithm, named in cases.items():
    previous = None
    for name, (arrays, params) in named.items():
        arrays = previous if arrays is None else arrays
        previous = arrays
        write_case(os.path.join(root, algorithm, name), arrays, params, golden=True)
