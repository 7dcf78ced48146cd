#!/usr/bin/python3
"""Writes the inputs and parameters of the softtopk golden cases into data/golden/softtopk/<case>/.

The expected outputs are then written by the reference (tests/peers/regenerate_golden.sh softtopk) and confirmed
independently by `softtopk_peer.py verify data/golden/softtopk`. Usage: golden_softtopk_inputs.py DATA_GOLDEN_SOFTTOPK_DIR
"""
import os
import sys

import numpy as np

from peer_args import positional, write_case

rng = np.random.default_rng(20261123)
cases = {
    # A plain threshold case with its Jacobian.
    "threshold-basic": ({"x": rng.normal(0, 1, size=(6, 8))}, {"k": 2, "tau": 0.5, "method": "threshold", "jacobian": True}),
    # Exact ties everywhere, including at the top-k boundary (tied entries get equal y).
    "threshold-ties": ({"x": np.array([[1.0, 1.0, 1.0, 0.0, 0.0],
                                       [0.5, 2.0, 2.0, 2.0, -1.0],
                                       [0.0, 0.0, 0.0, 0.0, 0.0],
                                       [3.0, -1.0, 3.0, -1.0, 3.0]])},
                       {"k": 2, "tau": 0.25, "method": "threshold", "jacobian": True}),
    # Wide scores and a small tau: most y are 0 or 1 to double precision (the hard top-k limit).
    "threshold-sharp": ({"x": rng.normal(0, 8, size=(5, 9))}, {"k": 3, "tau": 0.05, "method": "threshold"}),
    # Two experts, one token each way: y = (sigmoid(g/(2 tau)), sigmoid(-g/(2 tau))).
    "threshold-e2": ({"x": np.array([[1.0, -1.0], [0.0, 0.0], [-2.5, 4.0]])},
                     {"k": 1, "tau": 1.0, "method": "threshold", "jacobian": True}),
    # The entropic operator with its Jacobian (implicit differentiation of the Sinkhorn fixed point).
    "entropic-basic": ({"x": rng.normal(0, 1, size=(5, 7))}, {"k": 3, "tau": 0.5, "method": "entropic", "jacobian": True}),
    # Tied minima and maxima (the Jacobian takes the lowest index) and a constant row (y = k/E, J = 0).
    "entropic-ties-constant": ({"x": np.array([[0.0, 1.0, 0.0, 2.0, 2.0, 1.5],
                                               [0.75, 0.75, 0.75, 0.75, 0.75, 0.75],
                                               [-3.0, 4.0, 0.5, 0.25, -3.0, 1.0]])},
                               {"k": 1, "tau": 1.0, "method": "entropic", "jacobian": True}),
    # float32 input, wider rows, no Jacobian.
    "entropic-f32": ({"x": rng.normal(0, 2, size=(4, 16)).astype(np.float32)}, {"k": 4, "tau": 0.25, "method": "entropic"}),
}
root, = positional(sys.argv, __doc__, str)
for name, (arrays, params) in cases.items():
    write_case(os.path.join(root, name), arrays, params, golden=True)
