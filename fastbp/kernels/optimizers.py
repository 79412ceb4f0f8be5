"""Optimizer updates: one loop over the flat parameter, gradient and state buffers.

    params, grads  flat (N,) arrays of one layout
    opt            Opt (kernels.args): code, hyper, state (n_states, N), step, clip, segments, sched
    hyper          float64 [lr, momentum, beta1, beta2, eps, weight_decay, nesterov, decoupled,
                   alpha, centered] (H_* below)
    state          SGD: none (shape (0, N)); Momentum: [velocity]; Adam, LAMB: [m, v];
                   RMSprop: [square_avg, then grad_avg if centered, then the momentum buffer if
                   momentum > 0]; Adagrad: [sum]; Lion: [m]
    segments       int64 [0, end_0, ..., N]: the parameter tensors (LAMB's trust ratio is per
                   tensor); boundaries past N count as N
    sched          float64 learning-rate schedule (kernels.schedules)

The rate of each update comes from ``sched`` (kernels.schedules), and bias corrections are
computed once per update, outside the element loop. Every element is independent, so the
parallel version splits the buffer into fixed chunks with no reduction. LAMB needs per-tensor
norms first: a pass over fixed pieces of each tensor updates the moments and sums squares in
float64, the pieces are added in order (so the same bits on any number of threads), then the
update pass moves the params.

A plain network's kernels (``extras`` None, see variant()) inline ``classic_update``: SGD,
Momentum and Adam at a constant rate, as they always did. Every other step goes through
``apply_update``, which inlines the same loop at a schedule's rate for those three and calls
``update`` (every optimizer, one kernel of its own, compiled once per dtype) for the others.
"""
import numpy as np
from numba import prange

from .jit import kernel, wide_vectors
from .parts import PARALLEL_MIN_PARAMS, take
from .schedules import CONSTANT, schedule_rate

SGD, MOMENTUM, ADAM, RMSPROP, ADAGRAD, LION, LAMB = range(7)
(H_LR, H_MOMENTUM, H_BETA1, H_BETA2, H_EPS, H_WD, H_NESTEROV, H_DECOUPLED,
 H_ALPHA, H_CENTERED) = range(10)
N_HYPER = 10

CHUNK = 1 << 14          # elements per parallel chunk (and per piece of LAMB's norm pass)


@kernel(inline="always")
def _lamb_direction(p, m, v, bc1, bc2, eps, wd):
    """optax.lamb's update before the trust ratio, from the new moments m and v."""
    return (m / bc1) / (np.sqrt(v / bc2) + eps) + wd * p


@kernel
def classic_range(params, grads, opt, t, lr, gscale, lo, hi):
    """Apply update number t >= 1 of SGD, Momentum or Adam (``opt``), at rate ``lr``, with the
    gradient scaled by ``gscale``, to elements [lo, hi) of params (and its state).

    Not inlined, nor opt_update_range: an update reaches each of them from a serial and a
    parallel path (and opt_update_range reaches this one), and inlined they were typed and
    lowered again at every one of those places."""
    wide_vectors()
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


@kernel
def opt_update_range(params, grads, opt, t, lr, gscale, trust, lo, hi):
    """classic_range for any optimizer; ``trust``: LAMB's trust ratio of each tensor of
    ``opt.segments`` (unused by the other optimizers)."""
    wide_vectors()
    code = opt.code
    if code <= ADAM:
        classic_range(params, grads, opt, t, lr, gscale, lo, hi)
        return
    p = params[lo:hi]
    g = grads[lo:hi]
    n = hi - lo
    hyper = opt.hyper
    dt = params.dtype.type
    dlr = dt(lr)
    wd = dt(hyper[H_WD])
    decoupled = hyper[H_DECOUPLED] != 0.0
    l2 = wd if not decoupled else dt(0.0)
    gs = dt(gscale)
    if code == RMSPROP:
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
        # LAMB (optax.lamb): lamb_moments has updated m and v; p -= lr * (u * trust ratio of u's tensor)
        m = opt.state[0, lo:hi]
        v = opt.state[1, lo:hi]
        bc1, bc2 = dt(1.0 - hyper[H_BETA1] ** t), dt(1.0 - hyper[H_BETA2] ** t)
        eps = dt(hyper[H_EPS])
        segments = opt.segments
        # the tensor holding element lo, then each tensor overlapping [lo, hi) in turn
        s = np.searchsorted(segments, lo, side="right") - 1
        a = lo
        while a < hi and s < segments.shape[0] - 1:
            b = min(hi, segments[s + 1])
            r = dt(trust[s])
            for i in range(a - lo, b - lo):
                p[i] = p[i] - dlr * (_lamb_direction(p[i], m[i], v[i], bc1, bc2, eps, wd) * r)
            a = max(a, b)
            s += 1


@kernel(inline="always")
def lamb_moments(params, grads, opt, t, gscale, first, owner, sums, k):
    """LAMB's norm pass over piece k (elements first[k] .. the end of the piece): the new moments
    m and v in the state, and sums[k] = (sum of p^2, sum of u^2) in float64 and index order,
    u being LAMB's update before the trust ratio (as opt_update_range computes it)."""
    n = params.shape[0]
    lo = first[k]
    hi = min(lo + CHUNK, min(opt.segments[owner[k] + 1], n))
    hyper = opt.hyper
    dt = params.dtype.type
    b1, b2 = dt(hyper[H_BETA1]), dt(hyper[H_BETA2])
    c1, c2 = dt(1.0 - hyper[H_BETA1]), dt(1.0 - hyper[H_BETA2])
    bc1, bc2 = dt(1.0 - hyper[H_BETA1] ** t), dt(1.0 - hyper[H_BETA2] ** t)
    eps, wd, gs = dt(hyper[H_EPS]), dt(hyper[H_WD]), dt(gscale)
    m = opt.state[0]
    v = opt.state[1]
    sp = 0.0
    su = 0.0
    for i in range(lo, hi):
        gi = grads[i] * gs
        mi = c1 * gi + b1 * m[i]            # optax's update_moment: (1 - b) g + b m
        vi = c2 * (gi * gi) + b2 * v[i]
        m[i] = mi
        v[i] = vi
        pi = params[i]
        ui = _lamb_direction(pi, mi, vi, bc1, bc2, eps, wd)
        sp += np.float64(pi) * np.float64(pi)
        su += np.float64(ui) * np.float64(ui)
    sums[k, 0] = sp
    sums[k, 1] = su


@kernel(parallel=True)
def _lamb_moments_parallel(params, grads, opt, t, gscale, first, owner, sums):
    count = first.shape[0]
    next_piece = np.zeros(1, np.int64)
    for _ in prange(count):
        k = take(next_piece)
        while k < count:
            lamb_moments(params, grads, opt, t, gscale, first, owner, sums, k)
            k = take(next_piece)


@kernel(inline="always")
def lamb_trust(params, grads, opt, t, gscale, maxparts):
    """LAMB's norm pass: the moments of update t, and optax's trust ratio ||p|| / ||u|| of
    each tensor (1 where either norm is 0), in float64. The pieces are each tensor cut into
    CHUNK elements from its start: fixed by the layout alone."""
    n = params.shape[0]
    segments = opt.segments
    nseg = segments.shape[0] - 1
    count = 0
    for s in range(nseg):
        count += (min(segments[s + 1], n) - min(segments[s], n) + CHUNK - 1) // CHUNK
    first = np.empty(count, np.int64)
    owner = np.empty(count, np.int64)
    k = 0
    for s in range(nseg):
        for a in range(min(segments[s], n), min(segments[s + 1], n), CHUNK):
            first[k] = a
            owner[k] = s
            k += 1
    sums = np.empty((count, 2))
    if maxparts is None or n < PARALLEL_MIN_PARAMS or maxparts == 1:
        for k in range(count):
            lamb_moments(params, grads, opt, t, gscale, first, owner, sums, k)
    else:
        _lamb_moments_parallel(params, grads, opt, t, gscale, first, owner, sums)
    sp = np.zeros(nseg)
    su = np.zeros(nseg)
    for k in range(count):
        sp[owner[k]] += sums[k, 0]
        su[owner[k]] += sums[k, 1]
    trust = np.empty(nseg)
    for s in range(nseg):
        pn, un = np.sqrt(sp[s]), np.sqrt(su[s])
        trust[s] = 1.0 if pn == 0.0 or un == 0.0 else pn / un
    return trust


@kernel(parallel=True)
def _classic_parallel(params, grads, opt, t, lr, gscale):
    n = params.shape[0]
    nchunks = (n + CHUNK - 1) // CHUNK
    next_chunk = np.zeros(1, np.int64)
    for _ in prange(nchunks):
        c = take(next_chunk)
        while c < nchunks:
            classic_range(params, grads, opt, t, lr, gscale, c * CHUNK, min(n, (c + 1) * CHUNK))
            c = take(next_chunk)


@kernel(parallel=True)
def _opt_update_parallel(params, grads, opt, t, lr, gscale, trust):
    n = params.shape[0]
    nchunks = (n + CHUNK - 1) // CHUNK
    next_chunk = np.zeros(1, np.int64)
    for _ in prange(nchunks):
        c = take(next_chunk)
        while c < nchunks:
            opt_update_range(params, grads, opt, t, lr, gscale, trust, c * CHUNK, min(n, (c + 1) * CHUNK))
            c = take(next_chunk)


@kernel(inline="always")
def _serial(params, maxparts):
    """Whether an update runs serially: a small buffer, or ``maxparts`` (as in parts.py) None or
    1, so a 1-thread fit starts no parallel region at all and idle workers can go to sleep."""
    return maxparts is None or params.shape[0] < PARALLEL_MIN_PARAMS or maxparts == 1


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


@kernel
def update(params, grads, opt, maxparts):
    """One step of any optimizer, at the rate its schedule gives: opt.step[0] += 1, global-norm
    clipping, LAMB's norm pass, the update (parallel over fixed chunks as ``maxparts`` allows).
    A kernel of its own rather than inlined (jit.py): it is large, and each training entry
    point would otherwise compile all of it again. The rate is taken first: a schedule that
    refuses update t raises before anything changes."""
    wide_vectors()
    t = opt.step[0]
    lr = schedule_rate(opt.sched, opt.hyper[H_LR], t)
    opt.step[0] = t + 1
    gscale = clip_scale(grads, opt.clip)
    if opt.code == LAMB:
        trust = lamb_trust(params, grads, opt, t + 1, gscale, maxparts)
    else:
        trust = np.empty(0)
    if _serial(params, maxparts):
        opt_update_range(params, grads, opt, t + 1, lr, gscale, trust, np.int64(0), params.shape[0])
    else:
        _opt_update_parallel(params, grads, opt, t + 1, lr, gscale, trust)


@kernel(inline="always")
def classic_update(params, grads, opt, lr, maxparts):
    """update() for SGD, Momentum and Adam at rate ``lr``: the loop of old, small enough to inline."""
    opt.step[0] += 1
    t = opt.step[0]
    gscale = clip_scale(grads, opt.clip)
    if _serial(params, maxparts):
        classic_range(params, grads, opt, t, lr, gscale, np.int64(0), params.shape[0])
    else:
        _classic_parallel(params, grads, opt, t, lr, gscale)


@kernel
def apply_update(params, grads, opt, maxparts, extras):
    """One optimizer step from ``grads``. With ``extras`` None (see variant()): SGD, Momentum or
    Adam at the constant rate hyper[H_LR], inlined, and nothing else compiled. Otherwise those
    three inlined at their schedule's rate, and the other optimizers through update()."""
    wide_vectors()
    if extras is None:
        classic_update(params, grads, opt, opt.hyper[H_LR], maxparts)
    elif opt.code <= ADAM:
        classic_update(params, grads, opt, schedule_rate(opt.sched, opt.hyper[H_LR], opt.step[0]), maxparts)
    else:
        update(params, grads, opt, maxparts)


def variant(opt, plain=True):
    """The kernels' ``extras`` for steps of the optimizer with kernel arguments ``opt`` (an Opt)
    on a network that is ``plain`` or not: None (nothing newer compiled) for a plain network
    with SGD, Momentum or Adam at a constant rate, else np.int64(1)."""
    return None if plain and opt.code <= ADAM and opt.sched[0] == CONSTANT else np.int64(1)
