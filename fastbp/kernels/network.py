"""Forward and backward passes of the whole network on one batch, over flat buffers.

Shapes (m rows in the batch, L layers, sizes s[0..L]):
    params, grads  flat; layer l has W (s[l], s[l+1]) at woff[l] and b (s[l+1],) at boff[l] (-1: none)
    acts           flat work buffer; A_l (m, s[l]) at aoff[l]. A_0 is the input batch, A_L the
                   output (logits, then predictions). Hidden A_l hold post-activations.
    gbuf           flat work buffer for two (m, max s) deltas used in turn
    iw, fw         per-part BLAS scratch (see blas.py)

Parallel work is split into parts fixed by the shapes and ``maxparts`` only; each part is one
single-threaded product or loop and no two parts write the same element, so a result does not
depend on which thread ran which part. Reductions (db, the batch loss) run in a fixed order.

Integer constants and prange indices passed on to other kernels go through ``np.int64``: numba
compiles a callee once per argument type, and a literal 0 or a prange index (uint64) is a type
of its own, so without it the backward pass alone was compiled twice (~10 s of a first run).
output_loss's ``need_grad`` stays a literal on purpose: numba then drops the gradient code from
evaluation's copy, and training's copy keeps the loop shape (and rounding) it has always had.
"""
import numpy as np
from numba import prange

from .jit import kernel
from .activations import LINEAR, act_backward, bias_act_forward
from .blas import gemm
from .losses import output_loss

# A product with fewer multiply-adds than this (~10 us of BLAS on one core) runs on one thread:
# starting a parallel region costs a few microseconds. Parts never get fewer rows than MIN_PART_ROWS.
PARALLEL_MIN_WORK = 1 << 20
MIN_PART_ROWS = 16
# maxparts == DETERMINISTIC: parts depend on the shapes only, never on the thread count: about
# DET_PART_ROWS rows each (BLAS repacks the other operand for every part), 2 to DET_MAX_PARTS.
DETERMINISTIC = 0
DET_PART_ROWS = 256
DET_MAX_PARTS = 8


@kernel
def n_parts(rows, work, maxparts):
    """How many parts a product of ``work`` multiply-adds over ``rows`` splittable rows gets."""
    if work < PARALLEL_MIN_WORK:
        return 1
    if maxparts == DETERMINISTIC:
        return max(2, min(DET_MAX_PARTS, rows // DET_PART_ROWS))
    return max(1, min(maxparts, rows // MIN_PART_ROWS))


@kernel
def _part(rows, parts, p):
    chunk = (rows + parts - 1) // parts
    r0 = min(rows, p * chunk)
    return r0, min(rows, r0 + chunk)


# ---- forward ----------------------------------------------------------------------------------
@kernel
def _dense_forward_rows(r0, r1, l, X0, x0off, params, sizes, woff, boff, acts, aoff, act, iw, fw):
    # A_{l+1}[r0:r1] = act(A_l[r0:r1] @ W_l + b_l)
    n_in = sizes[l]
    n_out = sizes[l + 1]
    src, soff = (X0, x0off) if l == 0 else (acts, aoff[l])
    gemm(False, False, r1 - r0, n_out, n_in, src, soff + r0 * n_in, n_in, params, woff[l], n_out,
         0.0, acts, aoff[l + 1] + r0 * n_out, n_out, iw, fw)
    bias_act_forward(acts, aoff[l + 1] + r0 * n_out, params, boff[l], boff[l] >= 0, r1 - r0, n_out, act)


@kernel(parallel=True)
def _dense_forward_parallel(parts, m, l, X0, x0off, params, sizes, woff, boff, acts, aoff, act, iw, fw):
    for p in prange(parts):
        r0, r1 = _part(m, parts, np.int64(p))
        _dense_forward_rows(r0, r1, l, X0, x0off, params, sizes, woff, boff, acts, aoff, act, iw[p], fw[p])


@kernel
def dense_forward(m, l, X0, x0off, params, sizes, woff, boff, acts, aoff, act, iw, fw, maxparts):
    """Layer l forward for m rows: A_{l+1} = act(A_l @ W_l + b_l) (act LINEAR leaves logits)."""
    parts = n_parts(m, m * sizes[l] * sizes[l + 1], maxparts)
    if parts == 1:
        _dense_forward_rows(np.int64(0), m, l, X0, x0off, params, sizes, woff, boff, acts, aoff, act, iw[0], fw[0])
    else:
        _dense_forward_parallel(parts, m, l, X0, x0off, params, sizes, woff, boff, acts, aoff, act, iw, fw)


@kernel
def forward(m, X0, x0off, params, sizes, woff, boff, acts, aoff, act, out, iw, fw, maxparts):
    """All layers for m rows; the output block A_L holds logits (out=LINEAR) or predictions."""
    L = sizes.shape[0] - 1
    for l in range(L):
        dense_forward(m, l, X0, x0off, params, sizes, woff, boff, acts, aoff,
                      act if l < L - 1 else out, iw, fw, maxparts)


# ---- backward ---------------------------------------------------------------------------------
@kernel
def _dense_backward_params_part(p, parts, m, l, X0, x0off, sizes, woff, boff, grads, acts, aoff,
                                gbuf, gcur, iw, fw):
    # dW_l[i0:i1] = A_l[:, i0:i1]^T @ G ;  db_l[c0:c1] = sum over rows of G[:, c0:c1]
    n_in = sizes[l]
    n_out = sizes[l + 1]
    src, soff = (X0, x0off) if l == 0 else (acts, aoff[l])
    i0, i1 = _part(n_in, parts, p)
    gemm(True, False, i1 - i0, n_out, m, src, soff + i0, n_in, gbuf, gcur, n_out,
         0.0, grads, woff[l] + i0 * n_out, n_out, iw, fw)
    if boff[l] >= 0:
        c0, c1 = _part(n_out, parts, p)
        db = grads[boff[l] + c0:boff[l] + c1]
        db[:] = 0.0
        for i in range(m):
            g = gbuf[gcur + i * n_out + c0:gcur + i * n_out + c1]
            for j in range(c1 - c0):
                db[j] += g[j]


@kernel(parallel=True)
def _dense_backward_params_parallel(parts, m, l, X0, x0off, sizes, woff, boff, grads, acts, aoff,
                                    gbuf, gcur, iw, fw):
    for p in prange(parts):
        _dense_backward_params_part(np.int64(p), parts, m, l, X0, x0off, sizes, woff, boff, grads, acts, aoff,
                                    gbuf, gcur, iw[p], fw[p])


@kernel
def _dense_backward_input_rows(r0, r1, l, params, sizes, woff, acts, aoff, gbuf, gcur, gnext, act, iw, fw):
    # G_prev[r0:r1] = (G[r0:r1] @ W_l^T) * act'(A_l[r0:r1])
    n_in = sizes[l]
    n_out = sizes[l + 1]
    gemm(False, True, r1 - r0, n_in, n_out, gbuf, gcur + r0 * n_out, n_out, params, woff[l], n_out,
         0.0, gbuf, gnext + r0 * n_in, n_in, iw, fw)
    act_backward(gbuf, gnext + r0 * n_in, acts, aoff[l] + r0 * n_in, r1 - r0, n_in, act)


@kernel(parallel=True)
def _dense_backward_input_parallel(parts, m, l, params, sizes, woff, acts, aoff, gbuf, gcur, gnext, act, iw, fw):
    for p in prange(parts):
        r0, r1 = _part(m, parts, np.int64(p))
        _dense_backward_input_rows(r0, r1, l, params, sizes, woff, acts, aoff, gbuf, gcur, gnext, act, iw[p], fw[p])


@kernel
def dense_backward(m, l, X0, x0off, params, sizes, woff, boff, grads, acts, aoff, gbuf, gcur, gnext,
                   act, need_input_grad, iw, fw, maxparts):
    """Layer l backward for m rows: dW_l, db_l from the delta G at gcur; if asked, the delta of
    the layer below (through its activation ``act``) at gnext. G already carries the 1/m."""
    n_in = sizes[l]
    n_out = sizes[l + 1]
    work = m * n_in * n_out
    parts = n_parts(n_in, work, maxparts)
    if parts == 1:
        _dense_backward_params_part(np.int64(0), np.int64(1), m, l, X0, x0off, sizes, woff, boff, grads, acts, aoff,
                                    gbuf, gcur, iw[0], fw[0])
    else:
        _dense_backward_params_parallel(parts, m, l, X0, x0off, sizes, woff, boff, grads, acts, aoff,
                                        gbuf, gcur, iw, fw)
    if need_input_grad:
        parts = n_parts(m, work, maxparts)
        if parts == 1:
            _dense_backward_input_rows(np.int64(0), m, l, params, sizes, woff, acts, aoff, gbuf, gcur, gnext, act, iw[0], fw[0])
        else:
            _dense_backward_input_parallel(parts, m, l, params, sizes, woff, acts, aoff, gbuf, gcur, gnext, act, iw, fw)


@kernel
def forward_backward(m, X0, x0off, params, grads, sizes, woff, boff, acts, aoff, gbuf, act, out, loss,
                     Yf, yint, ridx, sw, rowloss, iw, fw, maxparts):
    """(loss, correct) of m rows and the mean gradient into ``grads``.

    loss is the sum of weighted per-row losses, correct the count output_loss returns.

    ridx[i] is the data row of batch row i (for targets and weights). Overwrites acts and gbuf.
    """
    L = sizes.shape[0] - 1
    forward(m, X0, x0off, params, sizes, woff, boff, acts, aoff, act, np.int64(LINEAR), iw, fw, maxparts)
    k = sizes[L]
    half = gbuf.shape[0] // 2
    correct = output_loss(acts, aoff[L], gbuf, np.int64(0), rowloss, m, k, out, loss, Yf, yint, ridx, np.int64(0), sw,
                          1.0 / m, True)
    total = 0.0
    for i in range(m):
        total += rowloss[i]
    gcur = np.int64(0)
    for l in range(L - 1, -1, -1):
        gnext = half - gcur
        dense_backward(m, l, X0, x0off, params, sizes, woff, boff, grads, acts, aoff, gbuf, gcur, gnext,
                       act, l > 0, iw, fw, maxparts)
        gcur = gnext
    return total, correct
