"""Forward and backward passes of the whole network on one batch of m rows (batch-major).

    X       Data.X (n, s[0]): rows work.rows[:m] are gathered into A_0
    params  flat; grads flat, the same layout (Net: woff, boff)
    work    Work: A_0..A_L in work.acts, two dZ blocks in work.deltas (see args.py)

Every parallel region of a step goes through one kernel, ``_region``: a prange over parts whose
body runs one task (a layer's forward rows, its weight-gradient block, or its input-gradient
rows). numba compiles one parallel kernel instead of one per task, and how parallel work is
split and scheduled lives in one place (parts.py, and the region). A task with one part runs
serially, without starting a region.

Integer constants and prange indices passed on to other kernels go through ``np.int64``: numba
compiles a callee once per argument type, and a literal 0 or a prange index (uint64) is a type
of its own.
"""
import numpy as np
from numba import prange

from .activations import LINEAR
from .dense import dense_backward_input, dense_backward_weights, dense_forward
from .jit import kernel
from .losses import output_loss
from .parts import n_parts, part_range

FORWARD, BACKWARD_WEIGHTS, BACKWARD_INPUT = 0, 1, 2


@kernel
def _copy_row(dst, doff, X, r):
    # an explicit loop: a slice assignment would compile numba's shape-mismatch error path
    # (string formatting, ~2 s on a first run) for a check that cannot fail here
    src = X[r]
    for j in range(src.shape[0]):
        dst[doff + j] = src[j]


@kernel
def _task(task, p, parts, l, m, act, grads, params, net, work, X, dcur, dnext):
    """Part p of ``parts`` of one task of layer l (see the module docstring)."""
    if task == FORWARD:
        r0, r1 = part_range(m, parts, p)
        if l == 0:      # the part's input rows, gathered from the data
            n_in = net.sizes[0]
            for i in range(r0, r1):
                _copy_row(work.acts, work.acts_off[0] + i * n_in, X, work.rows[i])
        dense_forward(work, params, net, l, act, r0, r1, p)
    elif task == BACKWARD_WEIGHTS:
        dense_backward_weights(grads, work, net, l, m, dcur, p, parts)
    else:
        r0, r1 = part_range(m, parts, p)
        dense_backward_input(work, params, net, l, dcur, dnext, r0, r1, p)


@kernel(parallel=True)
def _region(task, parts, l, m, act, grads, params, net, work, X, dcur, dnext):
    for p in prange(parts):
        _task(task, np.int64(p), parts, l, m, act, grads, params, net, work, X, dcur, dnext)


@kernel
def run_task(task, parts, l, m, act, grads, params, net, work, X, dcur, dnext):
    """All ``parts`` parts of a task: in a parallel region, or serially for one part."""
    if parts == 1:
        _task(task, np.int64(0), np.int64(1), l, m, act, grads, params, net, work, X, dcur, dnext)
    else:
        _region(task, parts, l, m, act, grads, params, net, work, X, dcur, dnext)


@kernel
def forward(work, params, net, X, m, logits, maxparts):
    """Rows X[work.rows[:m]] through every layer; A_L holds the logits (``logits``) or the
    predictions (the output activation applied)."""
    L = net.sizes.shape[0] - 1
    for l in range(L):
        act = LINEAR if logits and l == L - 1 else net.act[l]
        parts = n_parts(m, m * net.sizes[l] * net.sizes[l + 1], maxparts)
        run_task(FORWARD, parts, l, m, act, params, params, net, work, X, np.int64(0), np.int64(0))


@kernel
def backward(grads, work, params, net, X, m, maxparts):
    """dW_l, db_l of every layer into grads from dZ of the output layer (work.deltas[0:]),
    passing the delta down through the two halves of work.deltas in turn."""
    L = net.sizes.shape[0] - 1
    half = work.deltas.shape[0] // 2
    dcur = np.int64(0)
    for l in range(L - 1, -1, -1):
        dnext = half - dcur
        work_l = m * net.sizes[l] * net.sizes[l + 1]
        run_task(BACKWARD_WEIGHTS, n_parts(net.sizes[l], work_l, maxparts), l, m, LINEAR, grads, params, net,
                 work, X, dcur, dnext)
        if l > 0:
            run_task(BACKWARD_INPUT, n_parts(m, work_l, maxparts), l, m, LINEAR, grads, params, net, work, X,
                     dcur, dnext)
        dcur = dnext


@kernel
def batch_gradient(grads, params, net, data, work, m, maxparts):
    """(loss, correct) of the rows data[work.rows[:m]], and the mean gradient into ``grads``.

    loss is the sum of the rows' weighted losses, correct the count output_loss returns.
    Overwrites work.acts and work.deltas.
    """
    L = net.sizes.shape[0] - 1
    forward(work, params, net, data.X, m, True, maxparts)
    k = net.sizes[L]
    correct = output_loss(work.deltas, np.int64(0), work.row_loss, work.acts, work.acts_off[L], m, k,
                          net.act[L - 1], net.loss, data, work.rows, 1.0 / m, True)
    total = 0.0
    for i in range(m):
        total += work.row_loss[i]
    backward(grads, work, params, net, data.X, m, maxparts)
    return total, correct
