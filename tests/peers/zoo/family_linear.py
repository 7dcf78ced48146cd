"""Bug zoo, causal linear attention (`linear`): feature map, optional normalizer, optional decay.

Conventions imitated: fla's linear attention in its parallel (masked quadratic), recurrent (fused_recurrent: a
running state S and normalizer z) and chunked (chunk_linear_attn: inter-chunk state plus an intra-chunk causal
product) forms, with the state kept in float32 for float16 inputs.
"""
import numpy as np
import torch

from zoo_attention_common import case, cast, randn, t32, verify

FAMILY = "linear"
PAR = "fla linear attention (parallel form)"
REC = "fla fused_recurrent linear attention"
CHUNK = "fla chunk linear attention"


def phi(x, fmap, plus_one=True):
    if fmap == "identity":
        return x
    e = torch.nn.functional.elu(x)
    return e + 1 if plus_one else e


def parallel(q, k, v, fmap="elu1", normalize=True, decay=1.0, out="f32", plus_one=True):
    q, k, v = phi(t32(q), fmap, plus_one), phi(t32(k), fmap, plus_one), t32(v)
    t = q.shape[2]
    i = torch.arange(t)[:, None]
    j = torch.arange(t)[None, :]
    dmask = torch.where(j <= i, torch.tensor(decay, dtype=torch.float32) ** (i - j).float(), torch.zeros(()))
    a = torch.einsum("bhid,bhjd->bhij", q, k) * dmask
    o = a @ v
    if normalize:
        o = o / a.sum(-1, keepdim=True)
    return cast(o, out)


def recurrent(q, k, v, fmap="elu1", normalize=True, decay=1.0, out="f32", decay_current=False):
    """S_t = gamma S_{t-1} + phi(k_t) v_t^T; decay_current is the bug S_t = gamma (S_{t-1} + phi(k_t) v_t^T)."""
    q, k, v = phi(t32(q), fmap), phi(t32(k), fmap), t32(v)
    b, h, t, d = q.shape
    s = torch.zeros(b, h, d, v.shape[3])
    z = torch.zeros(b, h, d)
    o = torch.zeros(b, h, t, v.shape[3])
    for i in range(t):
        kv = k[:, :, i, :, None] * v[:, :, i, None, :]
        if decay_current:
            s, z = decay * (s + kv), decay * (z + k[:, :, i])
        else:
            s, z = decay * s + kv, decay * z + k[:, :, i]
        num = torch.einsum("bhd,bhde->bhe", q[:, :, i], s)
        o[:, :, i] = num / torch.einsum("bhd,bhd->bh", q[:, :, i], z)[..., None] if normalize else num
    return cast(o, out)


def chunked(q, k, v, fmap="elu1", normalize=True, decay=1.0, chunk=64, out="f32", inter_off=False,
            intra_noncausal=False, state_first=False, no_norm=False):
    """Chunk form. Bugs: inter_off decays the carried state by gamma^(t-s) instead of gamma^(t-s+1); intra_noncausal
    drops the causal mask inside a chunk; state_first adds the chunk to the state before the queries read it; no_norm
    forgets the normalizer."""
    q, k, v = phi(t32(q), fmap), phi(t32(k), fmap), t32(v)
    b, h, t, d = q.shape
    g = torch.tensor(decay, dtype=torch.float32)
    s = torch.zeros(b, h, d, v.shape[3])
    z = torch.zeros(b, h, d)
    o = torch.zeros(b, h, t, v.shape[3])
    for c0 in range(0, t, chunk):
        c1 = min(t, c0 + chunk)
        n = c1 - c0
        qc, kc, vc = q[:, :, c0:c1], k[:, :, c0:c1], v[:, :, c0:c1]
        r = torch.arange(n)
        dq = g ** (r + (0 if inter_off else 1)).float()                         # gamma^(t-s+1) for the carried state
        dk = g ** (n - 1 - r).float()                                         # gamma^(e-j) into the next state
        intra = torch.where(r[None, :] <= r[:, None], g ** (r[:, None] - r[None, :]).float(), torch.zeros(()))
        if intra_noncausal:
            intra = g ** (r[:, None] - r[None, :]).abs().float()
        if state_first:
            s = (g ** n) * s + torch.einsum("bhjd,bhje->bhde", kc * dk[:, None], vc)
            z = (g ** n) * z + (kc * dk[:, None]).sum(2)
        a = torch.einsum("bhid,bhjd->bhij", qc, kc) * intra
        num = torch.einsum("bhid,bhde->bhie", qc * dq[:, None], s) + a @ vc
        den = torch.einsum("bhid,bhd->bhi", qc * dq[:, None], z) + a.sum(-1)
        o[:, :, c0:c1] = num / den[..., None] if (normalize and not no_norm) else num
        if not state_first:
            s = (g ** n) * s + torch.einsum("bhjd,bhje->bhde", kc * dk[:, None], vc)
            z = (g ** n) * z + (kc * dk[:, None]).sum(2)
    return cast(o, out)


def linear64(q, k, v, fmap, normalize, decay):
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    if fmap == "elu1":
        q, k = (np.where(x > 0, x + 1, np.exp(np.minimum(x, 0))) for x in (q, k))
    t = q.shape[2]
    i, j = np.arange(t)[:, None], np.arange(t)[None, :]
    a = np.einsum("bhid,bhjd->bhij", q, k) * np.where(j <= i, float(decay) ** np.maximum(i - j, 0), 0.0)
    o = a @ v
    return o / a.sum(-1, keepdims=True) if normalize else o


def cases():
    out = []

    def add(name, kind, dtype, style, why, inputs, params, cand):
        c = case("linear/" + name, "linear", kind, dtype, style, why, inputs, params, cand)
        if kind != "malformed":
            verify(c, {"out": linear64(inputs["q"], inputs["k"], inputs["v"], params.get("feature_map", "elu1"),
                                       params.get("normalize", True), params.get("decay", 1.0))})
        out.append(c)

    def setup(seed, dtype, b=1, h=4, t=256, d=32):
        q = randn(seed, (b, h, t, d), dtype, 0.5)
        k = randn(seed + 1, (b, h, t, d), dtype, 0.5)
        v = randn(seed + 2, (b, h, t, d), dtype)
        return q, k, v, dict(q=q, k=k, v=v)

    # --- float32, elu+1, normalized, decay 0.95 -----------------------------------------------------------------
    q, k, v, inp = setup(10, "f32")
    prm = dict(feature_map="elu1", normalize=True, decay=0.95)
    a = (q, k, v, "elu1", True, 0.95)
    add("parallel/f32/decay/correct", "correct", "f32", PAR, "masked quadratic form, decay matrix gamma^(i-j), "
        "divided by the row sum", inp, prm, dict(out=parallel(*a)))
    add("recurrent/f32/decay/correct", "correct", "f32", REC, "running state S and normalizer z, one token at a time",
        inp, prm, dict(out=recurrent(*a)))
    add("chunked/f32/decay/correct", "correct", "f32", CHUNK, "64-token chunks: carried state decayed by "
        "gamma^(t-s+1) plus the intra-chunk causal product", inp, prm, dict(out=chunked(*a)))
    add("chunked/f32/inter-decay-off-by-one/bug", "bug", "f32", CHUNK, "carried state decayed by gamma^(t-s) instead "
        "of gamma^(t-s+1) (one step short)", inp, prm, dict(out=chunked(*a, inter_off=True)))
    add("chunked/f32/intra-not-causal/bug", "bug", "f32", CHUNK, "intra-chunk product without the causal mask",
        inp, prm, dict(out=chunked(*a, intra_noncausal=True)))
    add("chunked/f32/state-before-read/bug", "bug", "f32", CHUNK, "the chunk is added to the state before its "
        "queries read the state (keys counted twice)", inp, prm, dict(out=chunked(*a, state_first=True)))
    add("chunked/f32/normalizer-missing/bug", "bug", "f32", CHUNK, "normalize=true requested, output not divided by "
        "phi(q).z", inp, prm, dict(out=chunked(*a, no_norm=True)))
    add("parallel/f32/elu-without-plus-one/bug", "bug", "f32", PAR, "feature map elu(x) instead of elu(x)+1",
        inp, prm, dict(out=parallel(*a, plus_one=False)))

    # --- float32, identity map, unnormalized, decay 0.9 (retention-like) -----------------------------------------
    prm2 = dict(feature_map="identity", normalize=False, decay=0.9)
    a2 = (q, k, v, "identity", False, 0.9)
    add("recurrent/f32/retention/correct", "correct", "f32", REC, "identity map, no normalizer, decay 0.9", inp, prm2,
        dict(out=recurrent(*a2)))
    add("recurrent/f32/decay-current-token/bug", "bug", "f32", REC, "S_t = gamma (S_{t-1} + k_t v_t^T): the decay "
        "applied one step early (every term one extra gamma)", inp, prm2, dict(out=recurrent(*a2, decay_current=True)))

    # --- float16 ---------------------------------------------------------------------------------------------------
    q, k, v, inp = setup(20, "f16")
    a = (q, k, v, "elu1", True, 0.95)
    add("chunked/f16/correct", "correct", "f16", CHUNK, "f16 inputs, f32 state and products, out f16", inp, prm,
        dict(out=chunked(*a, out="f16")))
    add("parallel/f16/correct", "correct", "f16", PAR, "f32 quadratic form on f16 inputs, out f16", inp, prm,
        dict(out=parallel(*a, out="f16")))
    add("recurrent/f16/correct", "correct", "f16", REC, "f32 running state on f16 inputs, out f16", inp, prm,
        dict(out=recurrent(*a, out="f16")))
    add("chunked/f16/inter-decay-off-by-one/bug", "bug", "f16", CHUNK, "carried state decayed one step short", inp,
        prm, dict(out=chunked(*a, out="f16", inter_off=True)))
    add("chunked/f16/normalizer-missing/bug", "bug", "f16", CHUNK, "normalizer missing", inp, prm,
        dict(out=chunked(*a, out="f16", no_norm=True)))

    # --- malformed -------------------------------------------------------------------------------------------------
    q, k, v, inp = setup(30, "f32", t=32, d=8)
    o = parallel(q, k, v)
    add("malformed/feature-map-relu", "malformed", "f32", PAR, "feature_map=relu, which the contract does not name",
        inp, dict(feature_map="relu"), dict(out=o))
    add("malformed/decay-zero", "malformed", "f32", REC, "decay 0 (outside (0, 1])", inp, dict(decay=0.0),
        dict(out=o))
    return out
