"""Bug zoo: SoftTopk (`softtopk`, proofs/softtopk.md, Definition).

Correct implementations: the sigmoid-threshold operator by float64 bisection (numpy), by float32 Newton steps
(torch, with the exact Jacobian D - d d^T / sum d), in bf16 storage, and the entropic operator through POT's
sinkhorn_log per row. Every case is checked at build time against this file's float64 references.
"""

import warnings

import numpy as np
import ot
import torch

import zoo_common as z

FAMILY = "softtopk"


def threshold_f64(x, k, tau, iters=200):
    x = z.widen(x)
    lo = x.min(1) - 50 * tau - 1.0
    hi = x.max(1) + 50 * tau + 1.0
    for _ in range(iters):
        t = (lo + hi) / 2
        s = (1.0 / (1.0 + np.exp(-(x - t[:, None]) / tau))).sum(1)
        lo, hi = np.where(s > k, t, lo), np.where(s > k, hi, t)
    t = (lo + hi) / 2
    return 1.0 / (1.0 + np.exp(-(x - t[:, None]) / tau))


def jacobian_of(y, tau):
    d = y * (1 - y) / tau
    return np.einsum("na,ab->nab", d, np.eye(y.shape[1])) - d[:, :, None] * d[:, None, :] / d.sum(1)[:, None, None]


def entropic_f64(x, k, tau, normalize=True, iters=4000):
    """Float64 log-domain Sinkhorn for every row at once: E points of mass 1/E against two anchors."""
    x = z.widen(x)
    n, e = x.shape
    lo, hi = x.min(1, keepdims=True), x.max(1, keepdims=True)
    if normalize:
        xn, lo, hi = (x - lo) / (hi - lo), np.zeros_like(lo), np.ones_like(hi)
    else:
        xn = x
    M = np.stack([(xn - lo) ** 2, (xn - hi) ** 2], 2)  # [n, e, 2]
    la, lb = np.log(1.0 / e), np.log(np.array([(e - k) / e, k / e]))
    f, g = np.zeros((n, e)), np.zeros((n, 2))
    for _ in range(iters):
        a = (f[:, :, None] - M) / tau
        m = a.max(1, keepdims=True)
        g = tau * (lb[None, :] - (m[:, 0, :] + np.log(np.exp(a - m).sum(1))))
        b = (g[:, None, :] - M) / tau
        m = b.max(2, keepdims=True)
        f = tau * (la - (m[:, :, 0] + np.log(np.exp(b - m).sum(2))))
    return e * np.exp((f + g[:, None, 1] - M[:, :, 1]) / tau)


def entropic_pot(x, k, tau):
    """POT ot.sinkhorn(method='sinkhorn_log') row by row, float64."""
    x = z.widen(x)
    n, e = x.shape
    y = np.empty_like(x)
    for i in range(n):
        xn = (x[i] - x[i].min()) / (x[i].max() - x[i].min())
        M = np.stack([xn ** 2, (xn - 1.0) ** 2], 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            G = ot.sinkhorn(np.full(e, 1.0 / e), np.array([(e - k) / e, k / e]), M, tau, method="sinkhorn_log",
                            numItermax=4000, stopThr=1e-11)
        y[i] = e * G[:, 1]
    return y


def verify(c, must_agree, y_ref, jac_ref=None):
    cand = c["candidate"]
    # half an ulp of the output format just below 1, plus the float32 computation's own error
    tol = {"f32": 2e-6, "f16": 2.6e-4, "bf16": 2.0e-3}[c["dtype"]]
    same = True
    if "y" in cand:
        same &= z.max_abs_err(cand["y"], y_ref) <= tol
    if "jacobian" in cand:
        same &= z.max_abs_err(cand["jacobian"], jac_ref) <= tol * float(np.abs(jac_ref).max())
    z.require(same == must_agree, f"{c['name']}: build-time check says {'agrees' if same else 'differs'}")


def make_x(seed, n, e, scale=1.0):
    return (z.rng(seed).standard_normal((n, e)) * scale).astype(np.float32)


def newton_torch(x_t, k, tau, steps=60):
    """Threshold by safeguarded Newton in torch float32: t <- t + (sum y - k) / sum y' ."""
    x = x_t.float()
    t = torch.quantile(x, 1 - k / x.shape[1], dim=1, keepdim=True)
    for _ in range(steps):
        y = torch.sigmoid((x - t) / tau)
        d = y * (1 - y) / tau
        t = t + (y.sum(1, keepdim=True) - k) / d.sum(1, keepdim=True).clamp(min=1e-12)
    y = torch.sigmoid((x - t) / tau)
    return y


def bisect_f32(x, k, tau, iters=60):
    x = z.widen(x).astype(np.float32)
    tau = np.float32(tau)
    lo = x.min(1) - np.float32(30) * tau
    hi = x.max(1) + np.float32(30) * tau
    for _ in range(iters):
        t = (lo + hi) / 2
        s = (1 / (1 + np.exp(-(x - t[:, None]) / tau))).sum(1)
        lo, hi = np.where(s > k, t, lo), np.where(s > k, hi, t)
    t = (lo + hi) / 2
    return (1 / (1 + np.exp(-(x - t[:, None]) / tau))).astype(np.float32)


def cases():
    out = []

    def add(name, kind, dtype, style, why, x, params, cand, y_ref=None, jac_ref=None, check=True):
        c = z.case(name=f"softtopk/{name}", algorithm="softtopk", kind=kind, dtype=dtype, style=style, why=why,
                   inputs={"x": x}, params=params, candidate=cand)
        if check and kind != "malformed":
            verify(c, kind == "correct", y_ref, jac_ref)
        out.append(c)

    n, e, k, tau = 256, 16, 4, 0.1
    # ---- correct ------------------------------------------------------------------------------------------
    x = make_x(801, n, e)
    y = threshold_f64(x, k, tau)
    add("bisection-f64/f32/correct", "correct", "f32", "sigmoid-threshold soft top-k, numpy float64 bisection",
        "t by 200 bisection steps in float64, y cast to float32", x, {"k": k, "tau": tau},
        {"y": y.astype(np.float32)}, y)

    x = make_x(802, n, e)
    yt = newton_torch(torch.from_numpy(x), k, 0.25)
    yr = threshold_f64(x, k, 0.25)
    J = jacobian_of(yt.double().numpy(), 0.25).astype(np.float32)
    add("newton-torch/f32/correct", "correct", "f32", "sigmoid-threshold soft top-k in torch float32 (Newton on t)",
        "float32 Newton iterations from the quantile, Jacobian D - d d^T / sum d from the float32 y", x,
        {"k": k, "tau": 0.25, "jacobian": True}, {"y": yt.numpy(), "jacobian": J}, yr, jacobian_of(yr, 0.25))

    x = make_x(803, n, e)
    xb = z.cast(x, "bf16")
    y = threshold_f64(xb, k, tau)
    add("bisection-f32/bf16/correct", "correct", "bf16", "soft top-k on bf16 router scores, float32 bisection",
        "bf16 x widened, float32 bisection (60 steps), y stored as bf16", xb, {"k": k, "tau": tau},
        {"y": z.cast(bisect_f32(xb, k, tau), "bf16")}, y)

    x = make_x(804, 64, e)
    add("entropic-pot/f32/correct", "correct", "f32", "entropic soft top-k via POT sinkhorn_log per row",
        "min-max normalized scores, 2 anchors with masses ((E-k)/E, k/E), reg = tau, float64, y as float32", x,
        {"k": k, "tau": 0.05, "method": "entropic"}, {"y": entropic_pot(x, k, 0.05).astype(np.float32)},
        entropic_f64(x, k, 0.05))

    # ---- bugs ---------------------------------------------------------------------------------------------
    x = make_x(811, n, e)
    d = z.delta("f32")
    add("tau-times-1+d/f32/bug", "bug", "f32", "soft top-k with the temperature of the next schedule step",
        f"tau multiplied by (1 + {d})", x, {"k": k, "tau": tau},
        {"y": threshold_f64(x, k, tau * (1 + d)).astype(np.float32)}, threshold_f64(x, k, tau))

    x = make_x(812, n, e)
    xb = z.cast(x, "bf16")
    d = z.delta("bf16")
    add("tau-times-1+d/bf16/bug", "bug", "bf16", "soft top-k with a perturbed temperature, bf16",
        f"tau multiplied by (1 + {d})", xb, {"k": k, "tau": tau},
        {"y": z.cast(bisect_f32(xb, k, tau * (1 + d)), "bf16")}, threshold_f64(xb, k, tau))

    x = make_x(813, n, e)
    add("bisection-20-steps/f32/bug", "bug", "f32", "soft top-k bisection with a fixed 20 iterations",
        "t found to (bracket width)/2^20 only: sum y misses k by ~1e-4", x, {"k": k, "tau": tau},
        {"y": bisect_f32(x, k, tau, iters=20)}, threshold_f64(x, k, tau))

    x = make_x(814, n, e)
    xh = x.astype(np.float16)
    add("tau-not-applied/f16/bug", "bug", "f16", "soft top-k computing sigmoid(x - t)",
        "the division by tau forgotten (tau = 0.1 asked, tau = 1 computed)", xh, {"k": k, "tau": tau},
        {"y": threshold_f64(xh, k, 1.0).astype(np.float16)}, threshold_f64(xh, k, tau))

    x = make_x(815, n, e)
    y = threshold_f64(x, k, 0.25)
    d_ = y * (1 - y) / 0.25
    Jd = np.einsum("na,ab->nab", d_, np.eye(e)).astype(np.float32)
    add("jacobian-diagonal-only/f32/bug", "bug", "f32", "soft top-k backward through sigmoid only",
        "Jacobian = diag(sigmoid') without the -d d^T/sum(d) term from the threshold's dependence on x", x,
        {"k": k, "tau": 0.25, "jacobian": True}, {"y": y.astype(np.float32), "jacobian": Jd}, y, jacobian_of(y, 0.25))

    x = make_x(816, n, e)
    y = threshold_f64(x, k, tau).astype(np.float32)
    i = 7
    a, b = int(np.argmax(y[i])), int(np.argmin(y[i]))
    add("swap-one-token/f32/bug", "bug", "f32", "soft top-k, one row written with two entries exchanged",
        f"row {i}: y of its largest and smallest score swapped", x, {"k": k, "tau": tau},
        {"y": z.swap_one_token(y, i, a, b)}, threshold_f64(x, k, tau))

    x = make_x(817, 64, e)
    xh = x.astype(np.float16)
    add("entropic-no-minmax/f16/bug", "bug", "f16", "entropic soft top-k on raw scores",
        "costs (x - min x)^2, (x - max x)^2 on the raw scores instead of the min-max normalized ones", xh,
        {"k": k, "tau": 0.05, "method": "entropic"}, {"y": entropic_f64(xh, k, 0.05, normalize=False).astype(np.float16)},
        entropic_f64(xh, k, 0.05))

    x = make_x(818, n, e)
    xb = z.cast(x, "bf16")
    ys = k * z.softmax(z.widen(xb) / tau)
    add("k-times-softmax/bf16/bug", "bug", "bf16", "'soft top-k' as k * softmax(x / tau)",
        "a softmax scaled to mass k instead of the sigmoid threshold (entries can exceed 1)", xb, {"k": k, "tau": tau},
        {"y": z.cast(ys, "bf16")}, threshold_f64(xb, k, tau))

    # ---- malformed ----------------------------------------------------------------------------------------
    x = make_x(821, 16, 8)
    add("k-equals-e/f32/malformed", "malformed", "f32", "config typo", "k = E = 8 (0 < k < E required)",
        x, {"k": 8, "tau": 0.1}, {"y": np.ones((16, 8), np.float32)})
    add("tau-zero/f32/malformed", "malformed", "f32", "config typo", "tau = 0",
        x, {"k": 2, "tau": 0.0}, {"y": threshold_f64(x, 2, 0.1).astype(np.float32)})
    return out
