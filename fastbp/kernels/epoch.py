"""The compiled minibatch loop, and batched inference: the entry points Python calls.

`train_steps` runs minibatches [first, last) of an epoch (gather the shuffled rows, forward,
loss, backward, optimizer update) with no Python in between, no allocation and no copy of the
parameter buffer. Python calls it once per epoch, or per chunk of steps so that Ctrl-C and
progress bars are seen on long epochs.

Each entry point has a twin for small networks (``*_small``) built only from the serial
feature-major kernels of small.py: training a small net never compiles the parallel kernels
(compile time is a user cost on a first run).
"""
import numpy as np

from .activations import bias_act_forward
from .jit import kernel
from .losses import output_loss
from .network import batch_gradient, forward
from .optimizers import apply_update, apply_update_serial
from .small import small_batch_gradient, small_forward


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
def batch_rows(rows, order, s, batch):
    """rows[:m] <- the data rows of minibatch s of the epoch order ``order``; returns m (the last
    minibatch may be partial)."""
    r0 = s * batch
    m = min(order.shape[0], r0 + batch) - r0
    for i in range(m):
        rows[i] = order[r0 + i]
    return m


# ---- training ----------------------------------------------------------------------------------
@kernel
def train_steps(step_loss, step_correct, params, grads, opt, net, data, order, first, last, batch, work,
                maxparts):
    """Minibatches first .. last-1 of the epoch whose row order is ``order``; one update each.

    step_loss[s] receives minibatch s's weighted loss sum, step_correct[s] its count of correct
    rows; opt.step[0] counts the updates. Stops after a minibatch whose loss is not finite
    (without updating); returns the number of minibatches run.
    """
    for s in range(first, last):
        m = batch_rows(work.rows, order, s, batch)
        total, correct = batch_gradient(grads, params, net, data, work, m, maxparts)
        step_loss[s] = total
        step_correct[s] = correct
        if not np.isfinite(total):
            return s - first + 1
        apply_update(params, grads, opt, maxparts)
    return last - first


@kernel
def train_steps_small(step_loss, step_correct, params, grads, opt, net, data, order, first, last, batch, work):
    """train_steps for small networks (serial, feature-major)."""
    for s in range(first, last):
        m = batch_rows(work.rows, order, s, batch)
        total, correct = small_batch_gradient(grads, params, net, data, work, m)
        step_loss[s] = total
        step_correct[s] = correct
        if not np.isfinite(total):
            return s - first + 1
        apply_update_serial(params, grads, opt)
    return last - first


@kernel
def rows_gradient(grads, params, net, data, work, order, lo, hi, maxparts):
    """(loss, correct) of data rows order[lo:hi] and their mean gradient into ``grads``: one
    rank's share of a global minibatch, and ``loss_and_grad``'s batch. No rows: zeros."""
    m = hi - lo
    if m == 0:
        grads[:] = 0.0
        return 0.0, 0.0
    for i in range(m):
        work.rows[i] = order[lo + i]
    return batch_gradient(grads, params, net, data, work, m, maxparts)


@kernel
def rows_gradient_small(grads, params, net, data, work, order, lo, hi):
    """rows_gradient for small networks."""
    m = hi - lo
    if m == 0:
        grads[:] = 0.0
        return 0.0, 0.0
    for i in range(m):
        work.rows[i] = order[lo + i]
    return small_batch_gradient(grads, params, net, data, work, m)


# ---- inference -----------------------------------------------------------------------------------
@kernel
def predict_rows(P, params, net, data, work, maxparts):
    """P (n, k) <- the network's predictions for data.X (n, s[0]), in blocks of cap rows."""
    X = data.X
    n = X.shape[0]
    cap = work.rows.shape[0]
    L = net.sizes.shape[0] - 1
    k = net.sizes[L]
    o = work.acts_off[L]
    for r0 in range(0, n, cap):
        m = min(n, r0 + cap) - r0
        for i in range(m):
            work.rows[i] = r0 + i
        forward(work, params, net, X, m, False, maxparts)
        for i in range(m):
            for j in range(k):
                P[r0 + i, j] = work.acts[o + i * k + j]


@kernel
def evaluate_rows(P, params, net, data, work, maxparts):
    """Predictions into P; returns (weighted loss sum, correct count) over all rows (no gradient)."""
    X = data.X
    n = X.shape[0]
    cap = work.rows.shape[0]
    L = net.sizes.shape[0] - 1
    k = net.sizes[L]
    o = work.acts_off[L]
    total = 0.0
    correct = 0.0
    for r0 in range(0, n, cap):
        m = min(n, r0 + cap) - r0
        for i in range(m):
            work.rows[i] = r0 + i
        forward(work, params, net, X, m, True, maxparts)
        correct += output_loss(work.deltas, np.int64(0), work.row_loss, work.acts, o, m, k, net.act[L - 1],
                               net.loss, data, work.rows, 1.0, False)
        for i in range(m):
            total += work.row_loss[i]
        for i in range(m):
            for j in range(k):
                P[r0 + i, j] = work.acts[o + i * k + j]
    return total, correct


# ---- inference for small networks: the feature-major forward of small.py, serial
@kernel
def _small_logits(zb, r0, params, net, X, work):
    """Rows r0 .. r0+m of X (m: as many as the feature-major blocks hold) through the
    feature-major forward; zb[:m*k] <- their logits, batch-major (m, k); work.rows[:m] <- their
    row numbers. Returns m."""
    T = work.fm_acts
    m = min(X.shape[0], r0 + T.shape[1]) - r0
    for i in range(m):
        work.rows[i] = r0 + i
    small_forward(work, params, net, X, m)
    L = net.sizes.shape[0] - 1
    k = net.sizes[L]
    for j in range(k):
        t = work.fm_row[L] + j
        for i in range(m):
            zb[i * k + j] = T[t, i]
    return m


@kernel
def predict_rows_small(P, params, net, data, work):
    """predict_rows for small networks, in blocks of cap rows."""
    L = net.sizes.shape[0] - 1
    k = net.sizes[L]
    scratch = work.loss_scratch
    for r0 in range(0, data.X.shape[0], work.fm_acts.shape[1]):
        m = _small_logits(scratch, r0, params, net, data.X, work)
        bias_act_forward(scratch, np.int64(0), m, k, params, np.int64(-1), net.act[L - 1])
        for i in range(m):
            for j in range(k):
                P[r0 + i, j] = scratch[i * k + j]


@kernel
def evaluate_rows_small(P, params, net, data, work):
    """evaluate_rows for small networks: predictions into P; (weighted loss sum, correct count)."""
    L = net.sizes.shape[0] - 1
    k = net.sizes[L]
    cap = work.fm_acts.shape[1]
    zb = work.loss_scratch[:cap * k]
    gb = work.loss_scratch[cap * k:2 * cap * k]   # the gradient block output_loss is handed (and does not fill)
    total = 0.0
    correct = 0.0
    for r0 in range(0, data.X.shape[0], cap):
        m = _small_logits(zb, r0, params, net, data.X, work)
        correct += output_loss(gb, np.int64(0), work.row_loss, zb, np.int64(0), m, k, net.act[L - 1], net.loss,
                               data, work.rows, 1.0, False)
        for i in range(m):
            total += work.row_loss[i]
        for i in range(m):
            for j in range(k):
                P[r0 + i, j] = zb[i * k + j]
    return total, correct
