"""Optimizer updates: one loop over the flat parameter, gradient and state buffers.

    params, grads  flat (N,) arrays of one layout
    opt            Opt (kernels.args): code, hyper, state (n_states, N), step, clip, segments, sched
    hyper          float64 [lr, momentum, beta1, beta2, eps, weight_decay, nesterov, decoupled,
                   alpha, centered] (H_* below)
    state          SGD: none (shape (0, N)); Momentum: [velocity]; Adam, LAMB: [m, v];
                   RMSprop: [square_avg, then grad_avg if centered, then the momentum buffer if
                   momentum > 0]; Adagrad: [sum]; Lion: [m]
    segments       int64 [0, end_0, ..., N]: the parameter tensors (LAMB's trust ratio is per
                   tensor); empty means one tensor, the whole buffer
    sched          float64 learning-rate schedule (kernels.schedules)

The rate of each update comes from ``sched`` (kernels.schedules), and bias corrections are
computed once per update, outside the element loop. Every element is independent, so the
parallel version splits the buffer into fixed chunks with no reduction. LAMB needs per-tensor
norms first: a pass over fixed pieces of each tensor sums squares in float64, the pieces are
added in order (so the same bits on any number of threads), then the update pass.
"""
import numpy as np
from numba import prange

from .jit import kernel
from .parts import PARALLEL_MIN_PARAMS
from .schedules import schedule_rate

SGD, MOMENTUM, ADAM, RMSPROP, ADAGRAD, LION, LAMB = range(7)
(H_LR, H_MOMENTUM, H_BETA1, H_BETA2, H_EPS, H_WD, H_NESTEROV, H_DECOUPLED,
 H_ALPHA, H_CENTERED) = range(10)
N_HYPER = 10

CHUNK = 1 << 14          # elements per parallel chunk (and per piece of LAMB's norm pass)


@kernel(inline="always")
def _lamb_u(p, g, m, v, b1, b2, c1, c2, bc1, bc2, eps, wd):
    """optax.lamb's update before the trust ratio, and the new moments: (u, m', v')."""
    mi = c1 * g + b1 * m
    vi = c2 * (g * g) + b2 * v
    return (mi / bc1) / (np.sqrt(vi / bc2) + eps) + wd * p, mi, vi


@kernel(inline="always")
def _n_segments(segments):
    return max(1, segments.shape[0] - 1)


@kernel(inline="always")
def _segment(segments, s, n):
    """Elements [a, b) of tensor s, never past n (an empty params array, as when kernels are
    only being loaded, then has empty tensors)."""
    if segments.shape[0] < 2:
        return np.int64(0), n
    return min(segments[s], n), min(segments[s + 1], n)


@kernel(inline="always")
def opt_update_range(params, grads, opt, t, lr, gscale, trust, lo, hi):
    """Apply update number t >= 1 of optimizer ``opt``, at rate ``lr``, with the gradient scaled
    by ``gscale``, to elements [lo, hi) of params (and its state); ``trust``: LAMB's trust ratio
    of each tensor of ``opt.segments`` (unused by the other optimizers)."""
    # Slices indexed by range variables let LLVM vectorize (see activations.bias_act_forward).
    p = params[lo:hi]
    g = grads[lo:hi]
    n = hi - lo
    hyper = opt.hyper
    dt = params.dtype.type
    dlr = dt(lr)
    wd = dt(hyper[H_WD])
    decoupled = hyper[H_DECOUPLED] != 0.0
    l2 = wd if not decoupled else dt(0.0)
    decay = dt(1.0 - lr * hyper[H_WD]) if decoupled else dt(1.0)
    gs = dt(gscale)
    code = opt.code
    if code == SGD:
        for i in range(n):
            p[i] = p[i] * decay - dlr * (g[i] * gs + l2 * p[i])
    elif code == MOMENTUM:
        v = opt.state[0, lo:hi]
        mu = dt(hyper[H_MOMENTUM])
        if hyper[H_NESTEROV] != 0.0:
            for i in range(n):
                gi = g[i] * gs + l2 * p[i]
                vi = mu * v[i] + gi
                v[i] = vi
                p[i] = p[i] * decay - dlr * (gi + mu * vi)
        else:
            for i in range(n):
                gi = g[i] * gs + l2 * p[i]
                vi = mu * v[i] + gi
                v[i] = vi
                p[i] = p[i] * decay - dlr * vi
    elif code == ADAM:
        m = opt.state[0, lo:hi]
        v = opt.state[1, lo:hi]
        b1 = hyper[H_BETA1]
        b2 = hyper[H_BETA2]
        # torch.optim.Adam's arithmetic: p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
        step = dt(lr / (1.0 - b1 ** t))
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
    elif code == RMSPROP:
        # torch.optim.RMSprop; the rows after square_avg exist only when used, so a missing
        # one is aliased to row 0 and never touched
        last = opt.state.shape[0] - 1
        centered = hyper[H_CENTERED] != 0.0
        heavy = hyper[H_MOMENTUM] > 0.0
        sq = opt.state[0, lo:hi]
        ga = opt.state[min(1, last), lo:hi]
        buf = opt.state[min(1 + int(centered), last), lo:hi]
        alpha, c = dt(hyper[H_ALPHA]), dt(1.0 - hyper[H_ALPHA])
        eps, mu = dt(hyper[H_EPS]), dt(hyper[H_MOMENTUM])
        for i in range(n):
            gi = g[i] * gs + l2 * p[i]
            si = alpha * sq[i] + c * (gi * gi)
            sq[i] = si
            if centered:
                ai = ga[i] + c * (gi - ga[i])
                ga[i] = ai
                avg = np.sqrt(si - ai * ai) + eps
            else:
                avg = np.sqrt(si) + eps
            if heavy:
                bi = mu * buf[i] + gi / avg
                buf[i] = bi
                p[i] = p[i] - dlr * bi
            else:
                p[i] = p[i] - dlr * (gi / avg)
    elif code == ADAGRAD:
        # torch.optim.Adagrad (lr_decay 0): sum += g^2; p += -lr * (g / (sqrt(sum) + eps))
        acc = opt.state[0, lo:hi]
        eps = dt(hyper[H_EPS])
        for i in range(n):
            gi = g[i] * gs + l2 * p[i]
            si = acc[i] + gi * gi
            acc[i] = si
            p[i] = p[i] - dlr * (gi / (np.sqrt(si) + eps))
    elif code == LION:
        # optax.lion: u = sign((1 - b1) g + b1 m) + wd p; m = (1 - b2) g + b2 m; p -= lr u
        m = opt.state[0, lo:hi]
        b1, b2 = dt(hyper[H_BETA1]), dt(hyper[H_BETA2])
        c1, c2 = dt(1.0 - hyper[H_BETA1]), dt(1.0 - hyper[H_BETA2])
        one = dt(1.0)
        for i in range(n):
            gi = g[i] * gs
            ci = c1 * gi + b1 * m[i]
            ui = one if ci > 0 else (-one if ci < 0 else ci)      # jnp.sign: 0 at 0, NaN kept
            m[i] = c2 * gi + b2 * m[i]
            p[i] = p[i] - dlr * (ui + wd * p[i])
    else:
        # LAMB: optax.lamb, p -= lr * (u * trust ratio of u's tensor)
        m = opt.state[0, lo:hi]
        v = opt.state[1, lo:hi]
        b1, b2 = dt(hyper[H_BETA1]), dt(hyper[H_BETA2])
        c1, c2 = dt(1.0 - hyper[H_BETA1]), dt(1.0 - hyper[H_BETA2])
        bc1, bc2 = dt(1.0 - hyper[H_BETA1] ** t), dt(1.0 - hyper[H_BETA2] ** t)
        eps = dt(hyper[H_EPS])
        segments = opt.segments
        # the tensor holding element lo, then each tensor overlapping [lo, hi) in turn
        nseg = _n_segments(segments)
        s = np.searchsorted(segments, lo, side="right") - 1 if segments.shape[0] >= 2 else 0
        a = lo
        while a < hi and s < nseg:
            b = min(hi, _segment(segments, s, params.shape[0])[1])
            r = dt(trust[s])
            for i in range(a - lo, b - lo):
                ui, mi, vi = _lamb_u(p[i], g[i] * gs, m[i], v[i], b1, b2, c1, c2, bc1, bc2, eps, wd)
                m[i] = mi
                v[i] = vi
                p[i] = p[i] - dlr * (ui * r)
            a = max(a, b)
            s += 1


@kernel(inline="always")
def _lamb_squares(params, grads, opt, t, gscale, lo, hi):
    """(sum of p^2, sum of u^2) over elements [lo, hi), in float64 and index order; u is
    LAMB's update before the trust ratio, as ``opt_update_range`` computes it."""
    hyper = opt.hyper
    dt = params.dtype.type
    b1, b2 = dt(hyper[H_BETA1]), dt(hyper[H_BETA2])
    c1, c2 = dt(1.0 - hyper[H_BETA1]), dt(1.0 - hyper[H_BETA2])
    bc1, bc2 = dt(1.0 - hyper[H_BETA1] ** t), dt(1.0 - hyper[H_BETA2] ** t)
    eps, wd, gs = dt(hyper[H_EPS]), dt(hyper[H_WD]), dt(gscale)
    sp = 0.0
    su = 0.0
    for i in range(lo, hi):
        pi = params[i]
        ui, _, _ = _lamb_u(pi, grads[i] * gs, opt.state[0, i], opt.state[1, i], b1, b2, c1, c2, bc1, bc2, eps, wd)
        sp += np.float64(pi) * np.float64(pi)
        su += np.float64(ui) * np.float64(ui)
    return sp, su


@kernel(inline="always")
def _lamb_pieces(segments, n):
    """The pieces of the norm pass: each tensor cut into CHUNK-element pieces from its start,
    as (first element, tensor) arrays. Fixed by the layout alone."""
    nseg = _n_segments(segments)
    count = 0
    for s in range(nseg):
        a, b = _segment(segments, s, n)
        count += (b - a + CHUNK - 1) // CHUNK
    first = np.empty(count, np.int64)
    owner = np.empty(count, np.int64)
    k = 0
    for s in range(nseg):
        a, b = _segment(segments, s, n)
        while a < b:
            first[k] = a
            owner[k] = s
            k += 1
            a += CHUNK
    return first, owner


@kernel(parallel=True)
def _lamb_squares_parallel(params, grads, opt, t, gscale, first, owner, sums):
    n = params.shape[0]
    for k in prange(first.shape[0]):
        hi = min(first[k] + CHUNK, _segment(opt.segments, owner[k], n)[1])
        sums[k, 0], sums[k, 1] = _lamb_squares(params, grads, opt, t, gscale, first[k], hi)


@kernel(inline="always")
def lamb_trust(params, grads, opt, t, gscale, maxparts):
    """optax's trust ratio ||p|| / ||u|| of each tensor (1 where either norm is 0), in float64."""
    n = params.shape[0]
    first, owner = _lamb_pieces(opt.segments, n)
    sums = np.empty((first.shape[0], 2))
    if maxparts is None or n < PARALLEL_MIN_PARAMS or maxparts == 1:
        for k in range(first.shape[0]):
            hi = min(first[k] + CHUNK, _segment(opt.segments, owner[k], n)[1])
            sums[k, 0], sums[k, 1] = _lamb_squares(params, grads, opt, t, gscale, first[k], hi)
    else:
        _lamb_squares_parallel(params, grads, opt, t, gscale, first, owner, sums)
    nseg = _n_segments(opt.segments)
    sp = np.zeros(nseg)
    su = np.zeros(nseg)
    for k in range(first.shape[0]):
        sp[owner[k]] += sums[k, 0]
        su[owner[k]] += sums[k, 1]
    trust = np.empty(nseg)
    for s in range(nseg):
        pn, un = np.sqrt(sp[s]), np.sqrt(su[s])
        trust[s] = 1.0 if pn == 0.0 or un == 0.0 else pn / un
    return trust


@kernel(parallel=True)
def _opt_update_parallel(params, grads, opt, t, lr, gscale, trust):
    n = params.shape[0]
    nchunks = (n + CHUNK - 1) // CHUNK
    for c in prange(nchunks):
        opt_update_range(params, grads, opt, t, lr, gscale, trust, c * CHUNK, min(n, (c + 1) * CHUNK))


@kernel(inline="always")
def opt_update(params, grads, opt, t, lr, gscale, trust, maxparts):
    """Update number t over the whole buffer; parallel over fixed chunks when the buffer is large
    and more than one thread is allowed (``maxparts`` as in parts.py: None or 1 means serial, so a
    1-thread fit starts no parallel region at all and idle workers can go to sleep)."""
    n = params.shape[0]
    if maxparts is None or n < PARALLEL_MIN_PARAMS or maxparts == 1:
        opt_update_range(params, grads, opt, t, lr, gscale, trust, np.int64(0), n)
    else:
        _opt_update_parallel(params, grads, opt, t, lr, gscale, trust)


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
def _prepare_update(params, grads, opt, maxparts):
    """Everything an update needs before its element loop: (t, lr, gscale, trust), with
    opt.step[0] counting it. The rate is taken first: a schedule that refuses update t
    raises before anything changes."""
    t = opt.step[0]
    lr = schedule_rate(opt.sched, opt.hyper[H_LR], t)
    opt.step[0] = t + 1
    gscale = clip_scale(grads, opt.clip)
    if opt.code == LAMB:
        trust = lamb_trust(params, grads, opt, t + 1, gscale, maxparts)
    else:
        trust = np.empty(0)
    return t + 1, lr, gscale, trust


@kernel(inline="always")
def apply_update(params, grads, opt, maxparts):
    """One optimizer step from ``grads``: opt.step[0] += 1, the rate from the schedule,
    global-norm clipping, the update."""
    t, lr, gscale, trust = _prepare_update(params, grads, opt, maxparts)
    opt_update(params, grads, opt, t, lr, gscale, trust, maxparts)


@kernel(inline="always")
def apply_update_serial(params, grads, opt):
    """apply_update on one thread, without the parallel kernels (small networks never compile them)."""
    t, lr, gscale, trust = _prepare_update(params, grads, opt, None)
    opt_update_range(params, grads, opt, t, lr, gscale, trust, np.int64(0), params.shape[0])
