"""One dense layer, forward and backward, on a part of a batch: the work network.py splits into
parts and runs serially or in a parallel region.

Layer l of a batch of m rows, in the flat buffers of a Work (see args.py):
    A_l   (m, s[l])       work.acts at acts_off[l]: the layer's input (layer l-1's output)
    W_l   (s[l], s[l+1])  params at net.woff[l];  b_l (s[l+1],) at net.boff[l] (-1: none)
    dZ    (m, s[l+1])     work.deltas at dcur: dL/d(pre-activation) of layer l, carrying 1/m
``p`` names the part, whose BLAS scratch rows (work.blas_int[p], work.blas_float[p]) it uses.

Every parallel region of a step goes through one kernel, ``layer_region``: a prange over parts
whose body runs one task (a layer's forward rows, its weight-gradient block, or its
input-gradient rows), so numba compiles one parallel kernel, and how parallel work is split
and scheduled lives in one place (parts.py and here).

Constants and prange indices passed on to other kernels go through ``np.int64``: numba compiles
a callee once per argument type, and a literal (a task code) or a prange index (uint64) is a
type of its own, each a whole extra compilation.
"""
import numpy as np
from numba import prange

from .activations import act_backward, bias_act_forward
from .blas import gemm
from .jit import kernel
from .parts import part_range

FORWARD, BACKWARD_WEIGHTS, BACKWARD_INPUT = 0, 1, 2


@kernel(inline="always")
def _copy_row(dst, doff, X, r):
    # an explicit loop: a slice assignment would compile numba's shape-mismatch error path
    # (string formatting, ~2 s on a first run) for a check that cannot fail here
    src = X[r]
    for j in range(src.shape[0]):
        dst[doff + j] = src[j]


@kernel(inline="always")
def dense_forward(work, params, net, X, l, act, r0, r1, p):
    """Rows [r0, r1) of A_{l+1} = act(A_l @ W_l + b_l) (act LINEAR leaves the logits); for
    layer 0 the rows' input first, gathered from X by work.rows."""
    n_in = net.sizes[l]
    n_out = net.sizes[l + 1]
    acts, off = work.acts, work.acts_off
    if l == 0:
        for i in range(r0, r1):
            _copy_row(acts, off[0] + i * n_in, X, work.rows[i])
    gemm(np.bool_(False), np.bool_(False), r1 - r0, n_out, n_in, acts, off[l] + r0 * n_in, n_in, params, net.woff[l], n_out,
         0.0, acts, off[l + 1] + r0 * n_out, n_out, work.blas_int[p], work.blas_float[p])
    bias_act_forward(acts, off[l + 1] + r0 * n_out, r1 - r0, n_out, params, net.boff[l], act)


@kernel(inline="always")
def dense_backward_weights(grads, work, net, l, m, dcur, p, parts):
    """Part p of parts of dW_l = A_l^T @ dZ (a block of its input features, i.e. rows of dW_l)
    and db_l = sum over the batch of dZ (a block of its columns)."""
    n_in = net.sizes[l]
    n_out = net.sizes[l + 1]
    acts, deltas = work.acts, work.deltas
    i0, i1 = part_range(n_in, parts, p)
    gemm(np.bool_(True), np.bool_(False), i1 - i0, n_out, m, acts, work.acts_off[l] + i0, n_in, deltas, dcur, n_out,
         0.0, grads, net.woff[l] + i0 * n_out, n_out, work.blas_int[p], work.blas_float[p])
    if net.boff[l] >= 0:
        c0, c1 = part_range(n_out, parts, p)
        db = grads[net.boff[l] + c0:net.boff[l] + c1]
        db[:] = 0.0
        for i in range(m):
            g = deltas[dcur + i * n_out + c0:dcur + i * n_out + c1]
            for j in range(c1 - c0):
                db[j] += g[j]


@kernel(inline="always")
def dense_backward_input(work, params, net, l, dcur, dnext, r0, r1, p):
    """Rows [r0, r1) of the delta of layer l-1: dZ_{l-1} = (dZ @ W_l^T) * act'(A_l), written
    at dnext; act is layer l-1's activation, its derivative taken from the stored A_l."""
    n_in = net.sizes[l]
    n_out = net.sizes[l + 1]
    deltas = work.deltas
    gemm(np.bool_(False), np.bool_(True), r1 - r0, n_in, n_out, deltas, dcur + r0 * n_out, n_out, params, net.woff[l], n_out,
         0.0, deltas, dnext + r0 * n_in, n_in, work.blas_int[p], work.blas_float[p])
    act_backward(deltas, dnext + r0 * n_in, work.acts, work.acts_off[l] + r0 * n_in, r1 - r0, n_in, net.act[l - 1])


@kernel
def layer_task(task, p, parts, l, m, act, grads, params, net, work, X, dcur, dnext):
    """Part p of ``parts`` of one task on layer l of a batch of m rows (see the module docstring)."""
    if task == FORWARD:
        r0, r1 = part_range(m, parts, p)
        dense_forward(work, params, net, X, l, act, r0, r1, p)
    elif task == BACKWARD_WEIGHTS:
        dense_backward_weights(grads, work, net, l, m, dcur, p, parts)
    else:
        r0, r1 = part_range(m, parts, p)
        dense_backward_input(work, params, net, l, dcur, dnext, r0, r1, p)


@kernel(parallel=True)
def layer_region(task, parts, l, m, act, grads, params, net, work, X, dcur, dnext):
    """All ``parts`` parts of a task, in a parallel region."""
    for p in prange(parts):
        layer_task(task, np.int64(p), parts, l, m, act, grads, params, net, work, X, dcur, dnext)
