"""The compiled minibatch loop, and batched inference.

`train_steps` runs minibatches [s0, s1) of an epoch — gather the shuffled rows, forward, loss,
backward, optimizer update — with no Python in between, no allocation and no copy of the
parameter buffer. Python calls it once per epoch (or per chunk of steps, so that Ctrl-C and
progress bars are seen on long epochs).
"""
import numpy as np
from numba import prange

from .jit import kernel
from .activations import LINEAR, bias_act_forward
from .network import PARALLEL_MIN_WORK, _part, forward, forward_backward
from .losses import output_loss
from .optimizers import clip_scale, opt_update, opt_update_range
from .small import small_forward, small_forward_backward


@kernel
def shuffled_order(order, seed):
    """order[:] <- a permutation of 0..n-1: Fisher-Yates driven by splitmix64 from ``seed``.

    A tenth of numpy's Generator.permutation time at n = 8192, which matters when an epoch of
    a small net takes under a millisecond; the seed itself comes from the model's numpy RNG.
    """
    n = order.shape[0]
    for i in range(n):
        order[i] = i
    s = np.uint64(seed)
    for i in range(n - 1, 0, -1):
        s += np.uint64(0x9E3779B97F4A7C15)
        z = s
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
        # j uniform in [0, i]: the top 32 bits of z scaled by i + 1 (Lemire), a multiply where a
        # modulo would cost a division per element; bias below (i + 1) / 2**32
        if i < 0xFFFFFFFF:
            j = np.int64(((z >> np.uint64(32)) * np.uint64(i + 1)) >> np.uint64(32))
        else:
            j = np.int64(z % np.uint64(i + 1))
        order[i], order[j] = order[j], order[i]


@kernel
def _gather_rows(dst, doff, X, ridx, r0, r1):
    n_in = X.shape[1]
    for i in range(r0, r1):
        _copy_row(dst, doff + i * n_in, X, ridx[i])


@kernel
def _copy_row(dst, doff, X, r):
    # an explicit loop: a slice assignment would compile numba's shape-mismatch error path
    # (string formatting, ~2 s on a first run) for a check that cannot fail here
    src = X[r]
    for j in range(src.shape[0]):
        dst[doff + j] = src[j]


@kernel(parallel=True)
def _gather_parallel(dst, doff, X, ridx, m, parts):
    for p in prange(parts):
        r0, r1 = _part(m, parts, np.int64(p))
        _gather_rows(dst, doff, X, ridx, r0, r1)


@kernel
def gather(dst, doff, X, ridx, m, maxparts):
    """dst[doff:] as (m, X.shape[1]) <- X[ridx[:m]] (rows may come from a memmap)."""
    if maxparts != 1 and m * X.shape[1] >= PARALLEL_MIN_WORK // 8:
        _gather_parallel(dst, doff, X, ridx, m, max(1, min(maxparts if maxparts > 1 else 8, m // 16)))
    else:
        _gather_rows(dst, doff, X, ridx, np.int64(0), m)


@kernel
def _batch_rows(ridx, perm, s, batch):
    """ridx[:m] <- the data rows of minibatch s of the epoch order ``perm``; returns m (the last
    minibatch may be partial)."""
    r0 = s * batch
    m = min(perm.shape[0], r0 + batch) - r0
    for i in range(m):
        ridx[i] = perm[r0 + i]
    return m


@kernel
def train_steps(params, grads, s1, s2, opt, hyper, tstep, clipnorm,
                X, Yf, yint, sw, perm, s0, s_end, batch,
                sizes, woff, boff, act, out, loss,
                acts, aoff, gbuf, rowloss, ridx, iw, fw, maxparts, steploss, stepcorrect):
    """Minibatches s0 .. s_end-1 of the epoch whose row order is ``perm``; one update each.

    tstep[0] is the optimizer's step count (incremented per update). steploss[s] receives the
    weighted loss sum of minibatch s, stepcorrect[s] its count of correct rows. Stops early
    after a minibatch whose loss is not finite; returns the number of minibatches run.
    """
    for s in range(s0, s_end):
        m = _batch_rows(ridx, perm, s, batch)
        gather(acts, aoff[0], X, ridx, m, maxparts)
        total, correct = forward_backward(m, acts, aoff[0], params, grads, sizes, woff, boff, acts, aoff,
                                          gbuf, act, out, loss, Yf, yint, ridx, sw, rowloss, iw, fw, maxparts)
        steploss[s] = total
        stepcorrect[s] = correct
        if not np.isfinite(total):
            return s - s0 + 1
        tstep[0] += 1
        opt_update(params, grads, s1, s2, opt, hyper, tstep[0], clip_scale(grads, clipnorm), maxparts)
    return s_end - s0


@kernel
def train_steps_small(params, grads, s1, s2, opt, hyper, tstep, clipnorm,
                      X, Yf, yint, sw, perm, s0, s_end, batch,
                      sizes, woff, boff, act, out, loss,
                      T, trow, G, rowloss, ridx, scratch, steploss, stepcorrect):
    """train_steps for small networks: the feature-major kernels of small.py, all serial.

    T, trow, G: the 2-D feature-major work buffers small_forward_backward takes. A separate
    entry point, so that training a small net never compiles the parallel kernels (compile time
    is a user cost on first run).
    """
    for s in range(s0, s_end):
        m = _batch_rows(ridx, perm, s, batch)
        total, correct = small_forward_backward(m, X, ridx, params, grads, sizes, woff, boff, T, trow, G,
                                                act, out, loss, Yf, yint, sw, rowloss, scratch)
        steploss[s] = total
        stepcorrect[s] = correct
        if not np.isfinite(total):
            return s - s0 + 1
        tstep[0] += 1
        opt_update_range(params, grads, s1, s2, opt, hyper, tstep[0], clip_scale(grads, clipnorm),
                         0, params.shape[0])
    return s_end - s0


@kernel
def predict_rows(P, X, params, sizes, woff, boff, act, out, acts, aoff, iw, fw, maxparts, cap):
    """P (n, k) <- the network's predictions for X (n, s0), in blocks of ``cap`` rows."""
    n = X.shape[0]
    L = sizes.shape[0] - 1
    k = sizes[L]
    for r0 in range(0, n, cap):
        m = min(n, r0 + cap) - r0
        # the block is copied in first, so the input has the same (writable) type as in training
        # and the forward kernels compile once for both
        for i in range(m):
            _copy_row(acts, aoff[0] + i * sizes[0], X, r0 + i)
        forward(m, acts, aoff[0], params, sizes, woff, boff, acts, aoff, act, out, iw, fw, maxparts)
        o = aoff[L]
        for i in range(m):
            for j in range(k):
                P[r0 + i, j] = acts[o + i * k + j]


@kernel
def evaluate_rows(P, X, Yf, yint, sw, params, sizes, woff, boff, act, out, loss, acts, aoff, gbuf,
                  rowloss, ridx, iw, fw, maxparts, cap):
    """Predictions into P; returns (weighted loss sum, correct count) over all rows (no gradient)."""
    n = X.shape[0]
    L = sizes.shape[0] - 1
    k = sizes[L]
    total = 0.0
    correct = 0.0
    for r0 in range(0, n, cap):
        m = min(n, r0 + cap) - r0
        for i in range(m):
            _copy_row(acts, aoff[0] + i * sizes[0], X, r0 + i)
        forward(m, acts, aoff[0], params, sizes, woff, boff, acts, aoff, act, np.int64(LINEAR), iw, fw, maxparts)
        for i in range(m):
            ridx[i] = r0 + i
        correct += output_loss(acts, aoff[L], gbuf, np.int64(0), rowloss, m, k, out, loss, Yf, yint, ridx,
                               np.int64(0), sw, 1.0, False)
        for i in range(m):
            total += rowloss[i]
        o = aoff[L]
        for i in range(m):
            for j in range(k):
                P[r0 + i, j] = acts[o + i * k + j]
    return total, correct


# ---- inference for small networks: the feature-major forward of small.py, serial, so that a
# small net's predict and evaluate never compile the parallel kernels either
@kernel
def _small_logits(r0, X, params, sizes, woff, boff, act, T, trow, ridx, zb):
    """Rows r0 .. r0+m of X (m: as many as T's blocks hold) through the feature-major forward;
    zb[:m*k] <- their logits, batch-major (m, k); ridx[:m] <- their row numbers. Returns m."""
    m = min(X.shape[0], r0 + T.shape[1]) - r0
    for i in range(m):
        ridx[i] = r0 + i
    small_forward(m, X, ridx, params, sizes, woff, boff, T, trow, act)
    L = sizes.shape[0] - 1
    k = sizes[L]
    for j in range(k):
        t = trow[L] + j
        for i in range(m):
            zb[i * k + j] = T[t, i]
    return m


@kernel
def predict_rows_small(P, X, params, sizes, woff, boff, act, out, T, trow, ridx, scratch):
    """predict_rows for small networks, in blocks of T.shape[1] rows."""
    k = sizes[sizes.shape[0] - 1]
    for r0 in range(0, X.shape[0], T.shape[1]):
        m = _small_logits(r0, X, params, sizes, woff, boff, act, T, trow, ridx, scratch)
        bias_act_forward(scratch, np.int64(0), params, np.int64(-1), np.bool_(False), m, k, out)
        for i in range(m):
            for j in range(k):
                P[r0 + i, j] = scratch[i * k + j]


@kernel
def evaluate_rows_small(P, X, Yf, yint, sw, params, sizes, woff, boff, act, out, loss, T, trow,
                        rowloss, ridx, scratch):
    """evaluate_rows for small networks: predictions into P; (weighted loss sum, correct count)."""
    k = sizes[sizes.shape[0] - 1]
    cap = T.shape[1]
    zb = scratch[:cap * k]
    gb = scratch[cap * k:2 * cap * k]   # the gradient block output_loss is handed (and does not fill)
    total = 0.0
    correct = 0.0
    for r0 in range(0, X.shape[0], cap):
        m = _small_logits(r0, X, params, sizes, woff, boff, act, T, trow, ridx, zb)
        correct += output_loss(zb, np.int64(0), gb, np.int64(0), rowloss, m, k, out, loss, Yf, yint, ridx,
                               np.int64(0), sw, 1.0, False)
        for i in range(m):
            total += rowloss[i]
        for i in range(m):
            for j in range(k):
                P[r0 + i, j] = zb[i * k + j]
    return total, correct
