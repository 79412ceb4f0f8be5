"""A data-parallel (MPI) training step whose batch norm uses the statistics of the whole
global minibatch, as torch's SyncBatchNorm does.

Under MPI each rank computes the gradient of its share of the global minibatch (see
fastbp.training). Without batch norm a rank runs its share through the compiled minibatch loop
in one call (network.run_batches, mode TRAIN_GRADIENT). A batch-norm layer needs more than its
rank's rows: its forward pass normalizes by the mean and variance of the whole minibatch, and
its backward pass needs the sums over the minibatch of dY and dY * Xhat (dbeta and dgamma).
So with batch norm a rank's step runs from Python, layer by layer, through the same compiled
layer tasks run_batches calls (dense.layer_task, dense.layer_region, losses.output_loss), and
stops at each batch-norm layer for sums over the ranks:

    forward   Z of this rank's rows -> per-feature sums of Z -> summed over ranks -> mean
              -> sums of (Z - mean)**2 -> summed over ranks -> the variance: the running
              statistics, Xhat, Y, the activation and dropout as in one process
    backward  dY -> this rank's per-feature sums of dY * Xhat and dY (its share of dgamma,
              dbeta) -> summed over ranks -> dZ of this rank's rows

The mean and the variance are two reductions because one process computes them in two passes
(the variance from the deviations about the mean), so the results agree with one process to
rounding whatever rows a rank has (none included). Every gradient is scaled by 1/count, count
the rows of the global minibatch, so a rank's gradient needs no rescaling before the final sum;
the l1/l2 penalty, which is not a sum over rows, is left out here and added once after that sum
(add_penalty). The sums are not weighted by sample_weight (as in torch).

Each reduction is a float64 buffer whose last slot is a failure flag. An error on one rank (a
second Ctrl-C, say) must not leave the others waiting in a reduction it never reaches: a rank
that fails makes the rest of the step's reductions with the flag set, every rank stops
computing when it sees the flag, and the failing rank raises its error, which the step's final
reduction (fastbp.training) raises on every rank.
"""
import numpy as np

from . import norm
from .activations import LINEAR
from .args import SparseRows
from .dense import (BACKWARD_INPUT, BACKWARD_WEIGHTS, BATCH_NORM, BATCH_STATS, FORWARD, LAYER_NORM,
                    LAYER_NORM_BACKWARD, STEP, activate, layer_region, layer_task, penalize, sparse_transpose,
                    task_parts)
from .calls import entry_for
from .jit import kernel
from .losses import output_loss
from .norm import batch_norm_finish_statistics, batch_norm_rows, column_square_deviations, column_sums, norm_param_grads

# the parts of a layer task, by run_batches' own rule (its Python function, which calls the
# compiled parts.n_parts: compiled or loaded once, with the step's other kernels by load())
_task_parts = getattr(task_parts, "py_func", task_parts)


# ---- kernels: one batch-norm layer l on this rank's m rows (work buffers as in dense.py) ---------
@kernel
def batch_norm_sums(sums, work, net, l, m):
    """sums[:n] = each feature of Z summed over this rank's rows (its part of the global mean's sum)."""
    # Z (m, n) at work.pre[pre_off[l]]; sums (n + 1,) float64
    n = net.sizes[l + 1]
    column_sums(sums, work.pre, work.pre_off[l], m, n)


@kernel
def batch_norm_square_sums(sums, work, net, l, m):
    """sums[:n] = each feature of (Z - mean)**2 summed over this rank's rows, with the global
    mean at work.nstat[nstat_off[l]:]."""
    # Z (m, n) at work.pre[pre_off[l]]; mean (n,) float64; sums (n + 1,) float64
    n = net.sizes[l + 1]
    s = work.nstat_off[l]
    column_square_deviations(sums, work.pre, work.pre_off[l], work.nstat[s:s + n], m, n)


@kernel
def batch_norm_finish(work, params, net, l, m, count, train, pos0):
    """Layer l from the statistics of a global minibatch of ``count`` rows (its mean, then its
    sum of squared deviations, at work.nstat[nstat_off[l]:]): the running statistics move
    (train STEP), then this rank's m rows get Xhat, Y, the activation and dropout."""
    # Z (m, n) at work.pre[pre_off[l]] -> Y (in place), Xhat (m, n) at xhat_off[l]; A_{l+1} (m, n)
    n = net.sizes[l + 1]
    batch_norm_finish_statistics(work.nstat, work.nstat_off[l], net.stats, net.roff[l], count, n, train == STEP)
    batch_norm_rows(work.pre, work.pre_off[l], work.xhat_off[l], work.nstat, work.nstat_off[l], params, net.goff[l],
                    np.int64(0), m, n)
    activate(work, net, l, np.int64(0), m, train, pos0)


@kernel
def batch_norm_param_sums(dsums, work, net, l, m, dcur):
    """dsums[:n] = sum over this rank's rows of dY * Xhat, dsums[n:2n] = sum of dY (its shares
    of dgamma and dbeta), dY (m, n) at work.deltas[dcur:]."""
    # dY (m, n); Xhat (m, n) at work.pre[xhat_off[l]]; dsums (2n + 1,) float64
    n = net.sizes[l + 1]
    norm_param_grads(dsums, np.int64(0), work.deltas, dcur, work.pre, work.xhat_off[l], m, n)


@kernel
def batch_norm_backward_rows(work, params, net, l, m, dcur, dsums, count):
    """dY -> dZ in place for this rank's m rows, from dgamma and dbeta over the global minibatch
    of ``count`` rows (dsums, as batch_norm_param_sums lays them out)."""
    # dY (m, n) at work.deltas[dcur:] -> dZ; dsums (2n + 1,) float64
    n = net.sizes[l + 1]
    norm.batch_norm_backward_rows(work.deltas, dcur, work.pre, work.xhat_off[l], work.nstat, work.nstat_off[l], params,
                                  net.goff[l], dsums, np.int64(0), count, np.int64(0), m, n)


# ---- the step, driven from Python --------------------------------------------------------------
def reduction_sizes(net):
    """The lengths of the buffers a step sums over the ranks, in order (each has one more slot,
    the failure flag): per batch-norm layer, n twice going forward, 2n coming back."""
    L = net.sizes.shape[0] - 1
    widths = [int(net.sizes[l + 1]) for l in range(L) if net.norm[l] == BATCH_NORM]
    return [n for n in widths for _ in range(2)] + [2 * n for n in reversed(widths)]


def train_gradient(allreduce, grads, params, net, ws, data, order, first, last, pos0, count, out=None,
                   maxparts=None, train=STEP):
    """One rank's share of a training step: the rows order[first:last], positions pos0, pos0+1,
    ... of a global minibatch of ``count`` rows (dropout masks are keyed by them).

    Its gradient goes into ``grads``, scaled by 1/count and without the l1/l2 penalty: the sum of
    every rank's ``grads`` is the minibatch's mean gradient. Batch-norm statistics are summed
    over the ranks with ``allreduce`` (in place, the elementwise sum, as fastbp.comm's), every
    rank calling it alike. ``out``: each row's prediction into out[first:last] (training
    metrics). Returns (loss sum, correct count) of these rows; (0.0, 0.0) if another rank
    failed, and this rank's own error is raised after the step's last reduction.
    """
    phases = _phases(grads, params, net, ws, data, order, first, last, pos0, count, out, maxparts, train)
    failed, stopped = None, False
    for size in reduction_sizes(net):
        buf = None
        if not stopped:
            try:
                buf = next(phases)
            except BaseException as e:
                failed, stopped = e, True
        if buf is None:
            buf = np.zeros(size + 1)
        buf[-1] = failed is not None
        allreduce(buf)
        stopped = stopped or buf[-1] > 0
    result = (0.0, 0.0)
    if stopped:
        phases.close()
    else:
        try:
            next(phases)
        except StopIteration as done:
            result = done.value
        except BaseException as e:
            failed = e
    if failed is not None:
        raise failed
    return result


def _phases(grads, params, net, ws, data, order, first, last, pos0, count, out, maxparts, train):
    """train_gradient's computation, as a generator: it yields each buffer it needs summed over
    the ranks and resumes when the buffer holds that sum; returns (loss sum, correct count)."""
    work, extras = ws.arrays, ws.extras
    sparse = None
    X = data.X
    if isinstance(X, SparseRows):
        sparse = X.kernel_args(ws)
        X = np.zeros((0, 0), params.dtype)
        X.flags.writeable = False
        data = data._replace(X=X)
    sizes = [int(s) for s in net.sizes]
    L = len(sizes) - 1
    m = last - first
    work.rows[:m] = order[first:last]
    net = net._replace(l1=0.0, l2=0.0)   # the penalty is added once, after the sum (add_penalty)

    def task(code, l, act=LINEAR, dcur=0, dnext=0):
        # all the parts of a layer task, split as run_batches splits it
        parts = _task_parts(code, m, sizes[l], sizes[l + 1], maxparts)
        args = (code, 0, 1, l, m, act, grads, params, net, work, X, dcur, dnext, train, pos0, extras, sparse)
        if maxparts is None or parts == 1:
            layer_task(*args)
        else:
            layer_region(code, parts, *args[3:], *entry_for(layer_task, args))

    # forward: A_L holds the logits
    for l in range(L):
        task(FORWARD, l, LINEAR if l == L - 1 else net.act[l])
        if net.norm[l] == BATCH_NORM:       # the forward task stopped at Z
            n, s = sizes[l + 1], work.nstat_off[l]
            sums = np.empty(n + 1)
            batch_norm_sums(sums, work, net, l, m)
            yield sums
            work.nstat[s:s + n] = sums[:n] / count
            batch_norm_square_sums(sums, work, net, l, m)
            yield sums
            work.nstat[s + n:s + 2 * n] = sums[:n]
            batch_norm_finish(work, params, net, l, m, count, train, pos0)
    # loss; the gradient at the logits into deltas[0:], divided by the global count
    o, k = work.acts_off[L], sizes[L]
    correct = output_loss(work.deltas, 0, work.row_loss, work.acts, o, m, k, net, data, work.rows, 1.0 / count,
                          np.bool_(True), extras)
    total = float(work.row_loss[:m].sum())
    if out is not None and out.shape[0] > 0:
        out[first:last] = work.acts[o:o + m * k].reshape(m, k)
    # backward, the delta passed down the two halves of deltas as in run_batches
    half = work.deltas.shape[0] // 2
    dcur = 0
    for l in range(L - 1, -1, -1):
        dnext = half - dcur
        if net.norm[l] == BATCH_NORM:
            n, g = sizes[l + 1], net.goff[l]
            dsums = np.empty(2 * n + 1)
            batch_norm_param_sums(dsums, work, net, l, m, dcur)
            grads[g:g + 2 * n] = dsums[:2 * n]      # this rank's share of dgamma and dbeta
            yield dsums
            batch_norm_backward_rows(work, params, net, l, m, dcur, dsums, count)
        elif net.norm[l] == LAYER_NORM:
            task(LAYER_NORM_BACKWARD, l, dcur=dcur, dnext=dnext)     # dZ into dnext
            dcur, dnext = dnext, dcur
        if sparse is not None and l == 0:
            sparse_transpose(sparse, work.rows, m, sizes[0])
        task(BACKWARD_WEIGHTS, l, dcur=dcur, dnext=dnext)
        if l > 0:
            task(BACKWARD_INPUT, l, dcur=dcur, dnext=dnext)
        dcur = dnext
    return total, correct


def add_penalty(grads, params, net, ws):
    """grads += the gradient of the l1/l2 penalty of every W (once, after the sum over ranks);
    returns the penalty, l1*sum|W| + l2*sum W**2."""
    work = ws.arrays
    for l in range(net.sizes.shape[0] - 1):
        penalize(grads, work, params, net, l, 0, int(net.sizes[l]))
    return float(work.pen.sum())


def load(grads, params, net, ws, data, maxparts):
    """Compile (or load from numba's cache) every kernel a step calls, by a step over no rows
    that changes no statistic (``grads`` is overwritten)."""
    train_gradient(lambda buf: None, grads, params, net, ws, data, np.zeros(0, np.int64), 0, 0, 0, 1,
                   maxparts=maxparts, train=BATCH_STATS)
    if net.l1 != 0.0 or net.l2 != 0.0:
        add_penalty(grads, params, net, ws)
