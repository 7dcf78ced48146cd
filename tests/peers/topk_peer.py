#!/usr/bin/python3
"""Independent numpy computation of token-choice top-k routing (proofs/topk.md, Definition).

Written from that Definition, not from the C# reference. Run with Debian's /usr/bin/python3 (python3-numpy).

  topk_peer.py verify CASES_DIR     every CASE/{input.npz, params.json, expected.npz} under CASES_DIR:
                                    recompute experts and weights and compare with expected.npz
                                    (indices exactly, weights within 1e-12 relative); exit 1 on any mismatch
  topk_peer.py generate OUT_DIR SEED COUNT
                                    write COUNT random cases OUT_DIR/case-NNN/{input.npz, params.json}
                                    (awkward shapes, exact ties, sigmoid, bias) for the C# reference to answer
"""
import os
import sys

import numpy as np

from peer_args import case_names, dispatch, param_flag, read_case, write_case

WEIGHT_RTOL = 1e-12


def scores(x, score):
    if score == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def topk(x, k=2, score="softmax", normalize=True, bias=None):
    """experts [N,k] int32 and weights [N,k] float64, ties to the lower expert index."""
    p = scores(x.astype(np.float64), score)
    key = p + (0.0 if bias is None else bias.astype(np.float64)[None, :])
    # A stable sort of -key keeps equal keys in index order: larger first, ties to the lower index.
    experts = np.argsort(-key, axis=1, kind="stable")[:, :k].astype(np.int32)
    weights = np.take_along_axis(p, experts, axis=1)
    if normalize:
        s = weights.sum(axis=1, keepdims=True)
        weights = np.where(s > 0, weights / np.where(s > 0, s, 1.0), weights)
    return experts, weights


def params_of(raw):
    return dict(k=int(raw.get("k", 2)), score=raw.get("score", "softmax"), normalize=param_flag(raw.get("normalize", True)))


def verify(root):
    failures = 0
    cases = case_names(root)
    for name in cases:
        inp, raw, exp = read_case(os.path.join(root, name))
        experts, weights = topk(inp["logits"], bias=inp.get("bias"), **params_of(raw))
        ok_idx = exp["experts"].shape == experts.shape and np.array_equal(exp["experts"], experts)
        ok_w = exp["weights"].shape == weights.shape and np.allclose(exp["weights"], weights, rtol=WEIGHT_RTOL, atol=0.0)
        if not (ok_idx and ok_w):
            failures += 1
            print(f"MISMATCH {name}: experts equal={ok_idx} weights within {WEIGHT_RTOL} rel={ok_w}")
    print(f"topk peer: {len(cases) - failures} of {len(cases)} cases agree")
    return 1 if failures or not cases else 0


def generate(out, seed, count):
    rng = np.random.default_rng(seed)
    for c in range(count):
        n = int(rng.choice([1, 2, 5, 13, 64, 101]))
        e = int(rng.choice([1, 2, 3, 6, 9, 32]))
        k = int(rng.integers(1, e + 1))
        if rng.random() < 0.5:
            x = rng.integers(-3, 4, size=(n, e)) * 0.25           # exact ties
        else:
            x = rng.normal(0.0, 3.0, size=(n, e))
        dtype = np.float32 if rng.random() < 0.5 else np.float64
        arrays = {"logits": x.astype(dtype)}
        if rng.random() < 0.3:
            arrays["bias"] = (rng.integers(-4, 5, size=e) * 0.125).astype(dtype)
        params = {"k": k, "score": "sigmoid" if rng.random() < 0.3 else "softmax",
                  "normalize": bool(rng.random() < 0.5)}
        write_case(os.path.join(out, f"case-{c:03d}"), arrays, params)
    return 0


if __name__ == "__main__":
    dispatch(sys.argv, __doc__, {"verify": (verify, [str]), "generate": (generate, [str, int, int])})
