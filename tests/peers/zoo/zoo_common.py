"""Small helpers shared by the bug-zoo family modules (tests/peers/zoo/family_*.py).

Stable API (other family modules import it; add, never change):
  rng(seed)                    numpy Generator with a fixed seed
  softmax(x, axis=-1)          numpy softmax in x's dtype (max-shifted)
  log_softmax(x, axis=-1)      numpy log-softmax in x's dtype
  sigmoid(x)                   numpy logistic in x's dtype
  BF16                         ndarray subclass: bfloat16 values stored as their uint16 bit patterns
  to_bf16(x)                   numpy array or torch tensor -> BF16 (round to nearest even, through torch)
  cast(x, dtype)               "f64" | "f32" | "f16" | "bf16" -> numpy array (BF16 for "bf16")
  as_torch(a)                  numpy / BF16 array -> torch tensor of the same precision
  from_torch(t)                torch tensor -> numpy (BF16 for bfloat16, int64 stays int64)
  widen(a)                     any array (BF16 included) -> float64 numpy, exactly
  quantize_like(x, dtype)      float64 numpy of x rounded to dtype (for building inputs that are exact in dtype)
  perturb(x, d)                x * (1 + d) in x's precision (BF16 kept BF16)
  swap_one_token(w, i, a, b)   copy of w with w[i, a] and w[i, b] exchanged (BF16 kept BF16)
  delta(dtype)                 the relative perturbation the issue asks for: 1e-3 in float32, 1e-2 in f16/bf16
  case(**fields)               builds a case dict and checks its keys and kinds
  write_tensors(path, arrays)  .npz (peer_args.write_arrays) or, when an array is BF16, .safetensors; returns the path
  TOL, max_rel_err, max_abs_err, require   build-time self-checks (a 'correct' case must agree with the module's
                               own float64 reference, a 'bug' must not)

The driver writes a file holding a BF16 array as .safetensors (numpy has no bfloat16, the CLI reads BF16 there).
"""

import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/peers, for peer_args
from peer_args import text_bools, write_arrays  # noqa: E402

DTYPES = ("f32", "f16", "bf16")
KINDS = ("correct", "bug", "malformed")
CASE_KEYS = ("name", "algorithm", "kind", "dtype", "style", "why", "inputs", "params", "candidate")


def rng(seed):
    return np.random.default_rng(seed)


def softmax(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    s = x - m
    return s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))


def sigmoid(x):
    one = np.ones((), dtype=x.dtype)
    return one / (one + np.exp(-x))


class BF16(np.ndarray):
    """bfloat16 values carried as their uint16 bit patterns (numpy has no bfloat16). Storage only: no arithmetic."""

    def __array_finalize__(self, obj):
        pass


def _torch():
    import torch

    return torch


def to_bf16(x):
    torch = _torch()
    if isinstance(x, BF16):
        return x
    if isinstance(x, torch.Tensor):
        t = x.detach().to(torch.bfloat16)
    else:
        t = torch.from_numpy(np.array(x, dtype=np.float32, order="C")).to(torch.bfloat16)
    bits = t.contiguous().reshape(-1).view(torch.int16).numpy().view(np.uint16).copy()
    return bits.reshape(tuple(t.shape)).view(BF16)


def widen(a):
    if isinstance(a, BF16):
        raw = np.asarray(a).view(np.uint16)
        bits = raw.reshape(-1).astype(np.uint32) << 16
        return bits.view(np.float32).astype(np.float64).reshape(raw.shape)
    return np.asarray(a).astype(np.float64)


def as_torch(a):
    torch = _torch()
    if isinstance(a, BF16):
        raw = np.array(np.asarray(a).view(np.uint16), order="C").view(np.int16)
        return torch.from_numpy(raw.reshape(-1).copy()).view(torch.bfloat16).reshape(raw.shape)
    return torch.from_numpy(np.array(np.asarray(a), order="C"))


def from_torch(t):
    torch = _torch()
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return to_bf16(t)
    return t.numpy().copy()


def cast(x, dtype):
    if dtype == "bf16":
        return to_bf16(widen(x).astype(np.float32) if isinstance(x, BF16) else np.asarray(x, dtype=np.float32))
    if isinstance(x, BF16):
        x = widen(x)
    return np.asarray(x).astype({"f64": np.float64, "f32": np.float32, "f16": np.float16}[dtype])


def quantize_like(x, dtype):
    return widen(cast(np.asarray(x, dtype=np.float64), dtype))


def perturb(x, d):
    if isinstance(x, BF16):
        return to_bf16(widen(x) * (1.0 + d))
    x = np.asarray(x)
    return (x.astype(np.float64) * (1.0 + d)).astype(x.dtype)


def swap_one_token(w, i, a=0, b=1):
    out = np.array(w, copy=True)
    if isinstance(w, BF16):
        out = out.view(BF16)
    tmp = out[i, a].copy()
    out[i, a] = out[i, b]
    out[i, b] = tmp
    return out


def delta(dtype):
    return 1e-3 if dtype == "f32" else 1e-2


def case(**fields):
    missing = [k for k in CASE_KEYS if k not in fields]
    if missing:
        raise ValueError(f"case {fields.get('name')}: missing {missing}")
    if fields["kind"] not in KINDS:
        raise ValueError(f"case {fields['name']}: kind {fields['kind']}")
    if fields["dtype"] not in DTYPES:
        raise ValueError(f"case {fields['name']}: dtype {fields['dtype']}")
    fields["params"] = text_bools(fields["params"])
    return dict(fields)


_ST_DTYPES = {
    np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
    np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL",
}


def _write_safetensors(path, arrays):
    header, blobs, offset = {}, [], 0
    for name, a in arrays.items():
        if isinstance(a, BF16):
            tag, raw = "BF16", np.ascontiguousarray(np.asarray(a).view(np.uint16)).astype("<u2").tobytes()
        else:
            a = np.asarray(a)
            if a.dtype not in _ST_DTYPES:
                raise ValueError(f"{name}: dtype {a.dtype} has no safetensors tag here")
            tag = _ST_DTYPES[a.dtype]
            raw = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": tag, "shape": list(np.shape(a)), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def write_tensors(stem, arrays):
    """Writes arrays to stem + '.npz', or to stem + '.safetensors' when one of them is BF16; returns the path."""
    if any(isinstance(a, BF16) for a in arrays.values()):
        path = stem + ".safetensors"
        _write_safetensors(path, arrays)
    else:
        path = stem + ".npz"
        write_arrays(path, {k: np.asarray(v) for k, v in arrays.items()})
    return path


# --- self-checks used by the family modules when they build their cases ------------------------------------------

TOL = {"f32": 2e-6, "f16": 2e-3, "bf16": 1.6e-2}


def max_rel_err(got, want):
    """max |got - want| / max(|want|, tiny) over all entries, in float64 (got may be BF16)."""
    g, w = widen(got), np.asarray(want, dtype=np.float64)
    if g.shape != w.shape:
        return np.inf
    if g.size == 0:
        return 0.0
    return float(np.max(np.abs(g - w) / np.maximum(np.abs(w), 1e-30)))


def max_abs_err(got, want):
    g, w = widen(got), np.asarray(want, dtype=np.float64)
    if g.shape != w.shape:
        return np.inf
    return float(np.max(np.abs(g - w))) if g.size else 0.0


def require(condition, message):
    """Raises when a case does not do what it claims (a 'correct' case that is wrong, a 'bug' that changes nothing)."""
    if not condition:
        raise AssertionError(message)
