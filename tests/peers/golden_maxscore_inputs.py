#!/usr/bin/python3
"""Writes the inputs and parameters of the maxscore and base golden cases into data/golden/{maxscore,base}/<case>/.

The expected outputs are then written by the reference (tests/peers/regenerate_golden.sh maxscore, ... base) and confirmed
independently by `maxscore_peer.py verify maxscore data/golden/maxscore` (and `... base data/golden/base`).
Usage: golden_maxscore_inputs.py DATA_GOLDEN_DIR
"""
import os
import sys

import numpy as np

from peer_args import positional, write_case

rng = np.random.default_rng(20261123)


def softmax(x):
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


maxscore = {
    # A router skewed towards the low experts; C*E = k*N exactly (capacity factor 1).
    "skewed-k2": ({"scores": softmax(rng.normal(0, 1.5, size=(24, 6)) - np.linspace(0, 3, 6)[None, :])}, {"k": 2}),
    # Exact ties on a dyadic grid, C*E = k*N.
    "ties-k2": ({"scores": rng.integers(0, 4, size=(10, 4)) * 0.125}, {"k": 2, "capacity": 5}),
    # C*E < k*N: every expert ends full, tokens get fewer than k.
    "below-kn": ({"scores": softmax(rng.normal(0, 2, size=(9, 3)))}, {"k": 2, "capacity": 4}),
    # C*E > k*N: spare capacity, capacity from the factor.
    "above-kn": ({"scores": softmax(rng.normal(0, 2, size=(7, 4)))}, {"k": 3, "capacity_factor": 1.5}),
    # Negative scores with C*E < k*N: the maximum flow comes first although routing less would score more.
    "negative-below-kn": ({"scores": -np.abs(rng.normal(0, 1, size=(6, 3)))}, {"k": 2, "capacity": 3}),
    # k = 1 on float32 softmax scores.
    "k1-f32": ({"scores": softmax(rng.normal(0, 2, size=(12, 5))).astype(np.float32)}, {"k": 1, "capacity": 3}),
    # Normalized weights.
    "normalize": ({"scores": softmax(rng.normal(0, 1, size=(8, 4)))}, {"k": 2, "normalize": True}),
    # Scores over 200 binades: the int64 costs are rounded and the exact finish decides.
    "wide-range": ({"scores": np.ldexp(rng.integers(1, 8, size=(8, 3)).astype(np.float64), -rng.integers(0, 200, size=(8, 3)))},
                   {"k": 1, "capacity": 3}),
    # The released two-stage heuristic on a skewed router (k = 2, C*E = 2N).
    "two-stage": ({"scores": softmax(rng.normal(0, 1.5, size=(8, 4)) - np.linspace(0, 2, 4)[None, :])},
                  {"mode": "two-stage", "k": 2, "capacity": 4}),
    # Two-stage with a repeated expert, scoring above the exact optimum (proofs/maxscore.md).
    "two-stage-repeat": ({"scores": np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 1.0, 1.0]])},
                         {"mode": "two-stage", "k": 2, "capacity": 2}),
}

base = {
    "exact": ({"scores": rng.normal(0, 1, size=(12, 3))}, {"method": "exact"}),
    "exact-ties": ({"scores": rng.integers(0, 3, size=(8, 4)) * 0.25}, {"method": "exact"}),
    "auction": ({"scores": rng.normal(0, 1, size=(12, 4))}, {"method": "auction"}),
    # Normal termination with a gap above N eps (proofs/base.md, theorem base.auction-gap).
    "auction-gap-above-n-eps": ({"scores": np.array([[0.75, 0.0, 0.5, 0.5], [0.25, 0.25, 0.0, 0.75],
                                                      [0.5, 0.0, 0.0, 0.75], [0.25, 0.5, 0.5, 0.75]])},
                                {"method": "auction"}),
    # A score range below 50e-4: eps is the 1e-4 floor.
    "auction-narrow": ({"scores": 1e-3 * rng.random(size=(10, 5))}, {"method": "auction"}),
    "auction-one-expert": ({"scores": rng.normal(0, 1, size=(5, 1))}, {"method": "auction"}),
}

root, = positional(sys.argv, __doc__, str)
for algorithm, cases in (("maxscore", maxscore), ("base", base)):
    for name, (arrays, params) in cases.items():
        write_case(os.path.join(root, algorithm, name), arrays, params, golden=True)
