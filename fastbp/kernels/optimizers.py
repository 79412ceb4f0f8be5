"""Optimizer updates: one loop over the flat parameter, gradient and state buffers.

    params, grads  flat (N,) arrays of one layout
    opt            Opt (kernels.args): code, hyper, state (n_states, N), step, clip
    hyper          float64 [lr, momentum, beta1, beta2, eps, weight_decay, nesterov, decoupled]
    state          Momentum: [velocity]; Adam: [m, v]; SGD: none (shape (0, N))

Bias corrections are computed once per step, outside the element loop. Every element is
independent, so the parallel version splits the buffer into fixed chunks with no reduction.
"""
import numpy as np
from numba import prange

from .jit import kernel
from .parts import PARALLEL_MIN_PARAMS

SGD, MOMENTUM, ADAM = 0, 1, 2
H_LR, H_MOMENTUM, H_BETA1, H_BETA2, H_EPS, H_WD, H_NESTEROV, H_DECOUPLED = range(8)
N_HYPER = 8

CHUNK = 1 << 14          # elements per parallel chunk


@kernel(inline="always")
def opt_update_range(params, grads, opt, t, gscale, lo, hi):
    """Apply update number t >= 1 of optimizer ``opt`` to elements [lo, hi) of params (and its state)."""
    # Slices indexed by range variables let LLVM vectorize (see activations.bias_act_forward).
    p = params[lo:hi]
    g = grads[lo:hi]
    n = hi - lo
    hyper = opt.hyper
    dt = params.dtype.type
    lr = dt(hyper[H_LR])
    wd = dt(hyper[H_WD])
    decoupled = hyper[H_DECOUPLED] != 0.0
    l2 = wd if not decoupled else dt(0.0)
    decay = dt(1.0 - hyper[H_LR] * hyper[H_WD]) if decoupled else dt(1.0)
    gs = dt(gscale)
    if opt.code == SGD:
        for i in range(n):
            p[i] = p[i] * decay - lr * (g[i] * gs + l2 * p[i])
    elif opt.code == MOMENTUM:
        v = opt.state[0, lo:hi]
        mu = dt(hyper[H_MOMENTUM])
        if hyper[H_NESTEROV] != 0.0:
            for i in range(n):
                gi = g[i] * gs + l2 * p[i]
                vi = mu * v[i] + gi
                v[i] = vi
                p[i] = p[i] * decay - lr * (gi + mu * vi)
        else:
            for i in range(n):
                gi = g[i] * gs + l2 * p[i]
                vi = mu * v[i] + gi
                v[i] = vi
                p[i] = p[i] * decay - lr * vi
    else:
        m = opt.state[0, lo:hi]
        v = opt.state[1, lo:hi]
        b1 = hyper[H_BETA1]
        b2 = hyper[H_BETA2]
        # torch.optim.Adam's arithmetic: p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
        step = dt(hyper[H_LR] / (1.0 - b1 ** t))
        inv_sqrt_bc2 = dt(1.0 / np.sqrt(1.0 - b2 ** t))
        eps = dt(hyper[H_EPS])
        db1, db2 = dt(b1), dt(b2)
        c1, c2 = dt(1.0 - b1), dt(1.0 - b2)
        for i in range(n):
            gi = g[i] * gs + l2 * p[i]
            mi = db1 * m[i] + c1 * gi
            vi = db2 * v[i] + c2 * gi * gi
            m[i] = mi
            v[i] = vi
            p[i] = p[i] * decay - step * mi / (np.sqrt(vi) * inv_sqrt_bc2 + eps)


@kernel(parallel=True)
def _opt_update_parallel(params, grads, opt, t, gscale):
    n = params.shape[0]
    nchunks = (n + CHUNK - 1) // CHUNK
    for c in prange(nchunks):
        opt_update_range(params, grads, opt, t, gscale, c * CHUNK, min(n, (c + 1) * CHUNK))


@kernel(inline="always")
def opt_update(params, grads, opt, t, gscale, maxparts):
    """Update number t over the whole buffer; parallel over fixed chunks when the buffer is large
    and more than one thread is allowed (``maxparts`` as in parts.py: None or 1 means serial, so a
    1-thread fit starts no parallel region at all and idle workers can go to sleep)."""
    n = params.shape[0]
    if maxparts is None or n < PARALLEL_MIN_PARAMS or maxparts == 1:
        opt_update_range(params, grads, opt, t, gscale, np.int64(0), n)
    else:
        _opt_update_parallel(params, grads, opt, t, gscale)


@kernel(inline="always")
def clip_scale(grads, max_norm):
    """Scale factor that brings the global L2 norm of grads to at most max_norm (torch's rule).

    Summed serially in index order in float64, so the result does not depend on threads.
    """
    if max_norm <= 0.0:
        return 1.0
    s = 0.0
    for i in range(grads.shape[0]):
        g = np.float64(grads[i])
        s += g * g
    coef = max_norm / (np.sqrt(s) + 1e-6)
    return min(coef, 1.0)


@kernel(inline="always")
def apply_update(params, grads, opt, maxparts):
    """One optimizer step from ``grads``: opt.step[0] += 1, global-norm clipping, the update."""
    opt.step[0] += 1
    opt_update(params, grads, opt, opt.step[0], clip_scale(grads, opt.clip), maxparts)


@kernel(inline="always")
def apply_update_serial(params, grads, opt):
    """apply_update on one thread, without the parallel kernel (small networks never compile it)."""
    opt.step[0] += 1
    opt_update_range(params, grads, opt, opt.step[0], clip_scale(grads, opt.clip), np.int64(0), params.shape[0])
