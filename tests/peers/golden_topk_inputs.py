#!/usr/bin/python3
"""Writes the inputs and parameters of the topk golden cases into data/golden/topk/<case>/.

The expected outputs are then written by the reference (`reference run topk ... --output expected.npz`) and confirmed
independently by `topk_peer.py verify data/golden/topk`. Usage: golden_topk_inputs.py DATA_GOLDEN_TOPK_DIR
"""
import os
import sys

import numpy as np

from peer_args import positional, write_case

rng = np.random.default_rng(20261122)
cases = {
    # A plain softmax router, normalized top-2.
    "softmax-k2": ({"logits": rng.normal(0, 2, size=(8, 6))}, {"k": 2}),
    # Exact ties everywhere, including at the boundary: ties go to the lower expert index.
    "ties": ({"logits": np.array([[1.0, 1.0, 1.0, 0.0, 0.0],
                                  [0.5, 2.0, 2.0, 2.0, -1.0],
                                  [0.0, 0.0, 0.0, 0.0, 0.0],
                                  [3.0, -1.0, 3.0, -1.0, 3.0]])}, {"k": 2}),
    # Sigmoid scores with a DeepSeek-V3-style selection bias, unnormalized weights, k = 3.
    "sigmoid-bias": ({"logits": rng.normal(0, 1.5, size=(7, 8)),
                      "bias": np.array([0.0, 0.25, -0.25, 0.5, 0.0, -0.5, 0.125, 0.0])},
                     {"k": 3, "score": "sigmoid", "normalize": False}),
    # k = E on a single token, float32 input.
    "k-equals-e-f32": ({"logits": np.array([[0.25, -1.5, 3.0, 0.25]], dtype=np.float32)}, {"k": 4}),
    # One expert, several tokens.
    "one-expert": ({"logits": rng.normal(0, 1, size=(5, 1))}, {"k": 1, "normalize": False}),
}
root, = positional(sys.argv, __doc__, str)
for name, (arrays, params) in cases.items():
    write_case(os.path.join(root, name), arrays, params, golden=True)
