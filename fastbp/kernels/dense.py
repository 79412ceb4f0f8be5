"""One dense layer, forward and backward, on a part of a batch: the work network.py splits into
parts and runs serially or in a parallel region.

Layer l of a batch of m rows, in the flat buffers of a Work (see args.py):
    A_l   (m, s[l])       work.acts at acts_off[l]: the layer's input (layer l-1's output)
    W_l   (s[l], s[l+1])  params at net.woff[l];  b_l (s[l+1],) at net.boff[l] (-1: none)
    dZ    (m, s[l+1])     work.deltas at dcur: dL/d(pre-activation) of layer l, carrying 1/m
``p`` names the part, whose BLAS scratch rows (work.blas_int[p], work.blas_float[p]) it uses.

A hidden layer with ``net.full`` keeps its activation's input Y (and, with norm, Xhat) in
work.pre: Z = A_l @ W_l + b_l -> [norm] -> Y -> act -> [dropout] -> A_{l+1}. The forward pass
replaces Y by act'(Y), computed with act(Y) (gelu's erf once, not again in the backward pass),
and in a training step by act'(Y) times the dropout mask and scale (dropout.py); the backward
pass multiplies by it. Plain layers keep the shorter path of old: the activation applied in
place, its derivative from the output.

``extras`` is None for a plain network (no norm, no dropout, no penalty, every activation's
derivative taken from its output): numba then drops, and never even compiles, the code of
everything newer, so such a network compiles exactly the kernels it always did. Any other
network passes an int and gets the kernels with everything (one more compilation per dtype).

``sparse`` is None for dense X; for scipy sparse input it holds the CSR rows (args.Sparse), and
layer 0's product and weight gradient run over the stored entries only (sparse_forward,
sparse_transpose, sparse_backward_weights); its bias, norm, activation and dropout, and every
later layer, are the dense code. Tested where it is an argument, like ``extras``, so dense runs
compile none of it.

``train`` says what a batch is for: INFERENCE (running statistics, no dropout), BATCH_STATS
(loss_and_grad: the batch's statistics, no dropout, no running update) or STEP (a training
step: dropout, and the running statistics move). ``pos0`` is the position of the batch's first
row in its minibatch (a rank's share under MPI): dropout masks are keyed by it.

Every parallel region of a step goes through one kernel, ``layer_region``: a prange over parts
whose body runs one task (a layer's forward rows, its weight-gradient block, its input-gradient
rows, or a normalization's rows), so numba compiles one parallel kernel, and how parallel work
is split and scheduled lives in one place (parts.py and ``task_parts``). A norm layer's sums
over the batch are not split by features (each thread would then read half of every row, most
of them written by the other). Layer norm's gamma and beta gradients run on one thread beside
the rows' parts. Batch norm's sums over the batch (its statistics, gamma's and beta's
gradients) are taken by the row parts of the task that wrote the rows, each over its rows while
they are in its cache, and summed in part order on one thread (NORM_STATISTICS, NORM_BACKWARD):
so they follow the part split, as the products do, and one part gives the bits of one pass
over the batch.

Constants and prange indices passed on to other kernels go through ``np.int64``: numba compiles
a callee once per argument type, and a literal (a task code) or a prange index (uint64) is a
type of its own, each a whole extra compilation.
"""
import numpy as np
from numba import prange, types

from .activations import LINEAR, act_backward, act_forward_slope, act_slope, bias_act_forward
from .blas import gemm
from .calls import by_address
from .dropout import apply_mask, row_key, step_key, threshold
from .jit import kernel, wide_vectors
from .norm import (BATCH_NORM, LAYER_NORM, PART_MOMENTS, batch_norm_backward_rows, batch_norm_inference_rows,
                   batch_norm_merge_statistics, batch_norm_part_moments, batch_norm_rows, layer_norm_backward_rows,
                   layer_norm_rows, merge_param_grads, norm_param_grads, part_param_grads)
from .parts import n_parts, part_range, take

FORWARD, BACKWARD_WEIGHTS, BACKWARD_INPUT, NORM_FORWARD, NORM_BACKWARD, NORM_BACKWARD_ROWS, NORM_STATISTICS, \
    LAYER_NORM_BACKWARD = range(8)
INFERENCE, BATCH_STATS, STEP = 0, 1, 2


@kernel(inline="always")
def _copy_row(dst, doff, X, r):
    # an explicit loop: a slice assignment would compile numba's shape-mismatch error path
    # (string formatting, ~2 s on a first run) for a check that cannot fail here
    src = X[r]
    for j in range(src.shape[0]):
        dst[doff + j] = src[j]


@kernel
def _dropout(work, net, l, r0, r1, pos0):
    """Rows [r0, r1) of layer l's outputs A_{l+1} and of the derivatives act'(Y) in Y's place
    times its dropout mask and 1/(1-p): the backward pass's product by the derivatives then
    applies the mask too, without generating it again."""
    wide_vectors()
    n = net.sizes[l + 1]
    skey = step_key(net.key, net.updates[0])
    thresh = threshold(net.rate[l])
    scale = 1.0 / (1.0 - net.rate[l])
    for r in range(r0, r1):
        apply_mask(work.acts, work.acts_off[l + 1] + r * n, work.pre, work.pre_off[l] + r * n, n,
                   row_key(skey, pos0 + r, l), thresh, scale)


@kernel
def activate(work, net, l, r0, r1, train, pos0):
    """A_{l+1} = dropout(act(Y)) on rows [r0, r1) of a full layer; act'(Y) then takes Y's place
    (a training step's backward pass multiplies by it; inference ignores it)."""
    wide_vectors()
    n = net.sizes[l + 1]
    o = r0 * n
    a0 = work.acts_off[l + 1] + o
    y0 = work.pre_off[l] + o
    act_forward_slope(work.acts, a0, work.pre, y0, (r1 - r0) * n, net.act[l])
    if train == STEP and net.rate[l] > 0.0:
        _dropout(work, net, l, r0, r1, pos0)


@kernel(inline="always")
def _input_rows(work, net, X, l, r0, r1):
    """Layer 0's rows [r0, r1) of A_0, gathered from X by work.rows."""
    if l == 0:
        n_in = net.sizes[0]
        for i in range(r0, r1):
            _copy_row(work.acts, work.acts_off[0] + i * n_in, X, work.rows[i])


@kernel(inline="always")
def dense_forward(work, params, net, X, l, act, r0, r1, p):
    """Rows [r0, r1) of A_{l+1} = act(A_l @ W_l + b_l) (act LINEAR leaves the logits); for
    layer 0 the rows' input first, gathered from X by work.rows."""
    n_in = net.sizes[l]
    n_out = net.sizes[l + 1]
    acts, off = work.acts, work.acts_off
    _input_rows(work, net, X, l, r0, r1)
    gemm(np.bool_(False), np.bool_(False), r1 - r0, n_out, n_in, acts, off[l] + r0 * n_in, n_in, params, net.woff[l],
         n_out, 0.0, acts, off[l + 1] + r0 * n_out, n_out, work.blas_int[p], work.blas_float[p])
    bias_act_forward(acts, off[l + 1] + r0 * n_out, r1 - r0, n_out, params, net.boff[l], act)


@kernel(inline="always")
def full_forward(work, params, net, X, l, act, r0, r1, p, train, pos0):
    """dense_forward for a network with extras: a full layer goes through work.pre, then its
    norm, activation and dropout (a batch-norm layer in training stops at Z: NORM_STATISTICS
    and NORM_FORWARD finish it)."""
    n_in = net.sizes[l]
    n_out = net.sizes[l + 1]
    acts, off = work.acts, work.acts_off
    _input_rows(work, net, X, l, r0, r1)
    full = net.full[l] != 0
    # a full layer's Z goes to work.pre (the activation comes after the norm); one product and
    # one bias pass either way (each copy is compile time)
    dst = work.pre if full else acts
    d0 = work.pre_off[l] if full else off[l + 1]
    gemm(np.bool_(False), np.bool_(False), r1 - r0, n_out, n_in, acts, off[l] + r0 * n_in, n_in, params, net.woff[l],
         n_out, 0.0, dst, d0 + r0 * n_out, n_out, work.blas_int[p], work.blas_float[p])
    _full_after_product(work, params, net, l, act, r0, r1, p, train, pos0)


@kernel(inline="always")
def _full_after_product(work, params, net, l, act, r0, r1, p, train, pos0):
    """full_forward after the product A_l @ W_l is in place (in work.pre for a full layer, else
    in A_{l+1}): bias, then norm, activation and dropout."""
    n_out = net.sizes[l + 1]
    full = net.full[l] != 0
    dst = work.pre if full else work.acts
    d0 = work.pre_off[l] if full else work.acts_off[l + 1]
    bias_act_forward(dst, d0 + r0 * n_out, r1 - r0, n_out, params, net.boff[l], np.int64(LINEAR) if full else act)
    if not full:
        return
    pre, y0 = work.pre, d0
    norm = net.norm[l]
    if norm == LAYER_NORM:
        layer_norm_rows(pre, y0, work.xhat_off[l], work.nstat, work.nstat_off[l], params, net.goff[l], r0, r1, n_out)
    elif norm == BATCH_NORM:
        if train != INFERENCE:
            # the batch's statistics need every row: this part's moments, which NORM_STATISTICS
            # merges (the rows are in this thread's cache now)
            batch_norm_part_moments(pre, y0, work.nstat, part_slot(work, net, l, p), r0, r1, n_out)
            return
        batch_norm_inference_rows(pre, y0, work.xhat_off[l], params, net.goff[l], net.stats, net.roff[l], r0, r1,
                                  n_out)
    activate(work, net, l, r0, r1, train, pos0)


@kernel(inline="always")
def part_slot(work, net, l, p):
    """Where part p of a batch-norm layer's row parts keeps its sums over its rows in work.nstat
    (args.workspace_arrays: PART_MOMENTS * n each, after the layer's statistics)."""
    n = net.sizes[l + 1]
    return work.nstat_off[l] + 2 * n + PART_MOMENTS * n * p


@kernel
def batch_norm_statistics(work, net, l, m, parts, train):
    """A batch-norm layer's statistics over the batch from the moments of the ``parts`` row
    parts of its forward task (and, for a training step, the running statistics' move)."""
    wide_vectors()
    n = net.sizes[l + 1]
    batch_norm_merge_statistics(work.nstat, work.nstat_off[l], part_slot(work, net, l, 0), net.stats, net.roff[l], m,
                                n, parts, train == STEP)


@kernel
def batch_norm_forward(work, params, net, l, r0, r1, train, pos0):
    """Rows [r0, r1) of a batch-norm layer from the batch's statistics: Y, then the activation
    and dropout."""
    wide_vectors()
    n = net.sizes[l + 1]
    batch_norm_rows(work.pre, work.pre_off[l], work.xhat_off[l], work.nstat, work.nstat_off[l], params, net.goff[l], r0,
                    r1, n)
    activate(work, net, l, r0, r1, train, pos0)


@kernel
def penalize(grads, work, params, net, l, i0, i1):
    """Rows [i0, i1) of dW_l += l1*sign(W) + 2*l2*W; their penalty l1*|W| + l2*W**2 into work.pen."""
    wide_vectors()
    n_out = net.sizes[l + 1]
    w0 = net.woff[l]
    prow = 0
    for k in range(l):
        prow += net.sizes[k]
    dt = grads.dtype.type
    l1, l2 = net.l1, net.l2
    c1, c2 = dt(l1), dt(2.0 * l2)
    for i in range(i0, i1):
        w = params[w0 + i * n_out:w0 + (i + 1) * n_out]
        g = grads[w0 + i * n_out:w0 + (i + 1) * n_out]
        s = 0.0
        for j in range(n_out):
            s += l1 * abs(w[j]) + l2 * w[j] * w[j]
            g[j] += c1 * np.sign(w[j]) + c2 * w[j]
        work.pen[prow + i] = s


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
    _bias_grad(grads, deltas, net, l, m, dcur, p, parts)


@kernel(inline="always")
def _bias_grad(grads, deltas, net, l, m, dcur, p, parts):
    """Part p of db_l = sum over the batch of dZ (a block of its columns)."""
    n_out = net.sizes[l + 1]
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
    gemm(np.bool_(False), np.bool_(True), r1 - r0, n_in, n_out, deltas, dcur + r0 * n_out, n_out, params, net.woff[l],
         n_out, 0.0, deltas, dnext + r0 * n_in, n_in, work.blas_int[p], work.blas_float[p])
    act_backward(deltas, dnext + r0 * n_in, work.acts, work.acts_off[l] + r0 * n_in, r1 - r0, n_in, net.act[l - 1])


@kernel(inline="always")
def full_backward_input(work, params, net, l, dcur, dnext, r0, r1, p):
    """dense_backward_input for a network with extras: a full layer's derivative through the
    activation's derivative the forward pass left in Y's place, which carries the dropout mask
    (a norm layer then still needs NORM_BACKWARD)."""
    n_in = net.sizes[l]
    n_out = net.sizes[l + 1]
    deltas = work.deltas
    gemm(np.bool_(False), np.bool_(True), r1 - r0, n_in, n_out, deltas, dcur + r0 * n_out, n_out, params, net.woff[l],
         n_out, 0.0, deltas, dnext + r0 * n_in, n_in, work.blas_int[p], work.blas_float[p])
    k = l - 1
    if net.full[k] == 0:
        act_backward(deltas, dnext + r0 * n_in, work.acts, work.acts_off[l] + r0 * n_in, r1 - r0, n_in, net.act[k])
        return
    act_slope(deltas, dnext + r0 * n_in, work.pre, work.pre_off[k] + r0 * n_in, (r1 - r0) * n_in)
    if net.norm[k] == BATCH_NORM:
        # this part's share of the batch's dgamma and dbeta (NORM_BACKWARD merges them)
        part_param_grads(work.nstat, part_slot(work, net, k, p), deltas, dnext, work.pre, work.xhat_off[k], r0, r1,
                         n_in)


@kernel
def norm_backward(grads, work, params, net, l, m, dcur, dnext, p, parts, task):
    """Part p of a norm layer's backward pass, dY at dcur. Batch norm: NORM_BACKWARD (one call)
    dgamma and dbeta, the sums of the ``parts`` row parts of the BACKWARD_INPUT task that made
    dY; NORM_BACKWARD_ROWS, part p of the batch's rows, dY into dZ in place (dZ needs dgamma and
    dbeta). Layer norm (LAYER_NORM_BACKWARD): part 0 the sums over the batch, parts 1.. the
    batch's rows, dZ into dnext, so that the sums (on one thread, see the module docstring) run
    beside the rows in one region, dY left in place for them; one part (``parts`` 1) does both,
    and the caller then takes dnext as the current delta. One kernel for all, so each loop is
    compiled once."""
    wide_vectors()
    n = net.sizes[l + 1]
    if task == NORM_BACKWARD:
        merge_param_grads(grads, net.goff[l], work.nstat, part_slot(work, net, l, 0), n, parts)
        return
    layer = task == LAYER_NORM_BACKWARD
    if layer and p == 0:
        norm_param_grads(grads, net.goff[l], work.deltas, dcur, work.pre, work.xhat_off[l], m, n)
        if parts > 1:
            return
    if layer:
        r0, r1 = (0, m) if parts == 1 else part_range(m, parts - 1, p - 1)
        layer_norm_backward_rows(work.deltas, dcur, dnext, work.pre, work.xhat_off[l], work.nstat, work.nstat_off[l],
                                 params, net.goff[l], r0, r1, n)
    else:
        r0, r1 = part_range(m, parts, p)
        batch_norm_backward_rows(work.deltas, dcur, work.pre, work.xhat_off[l], work.nstat, work.nstat_off[l], params,
                                 net.goff[l], grads, net.goff[l], m, r0, r1, n)


# ---- layer 0 over the stored entries of a CSR X (args.Sparse) -----------------------------------
@kernel(inline="always")
def sparse_forward(dst, d0, params, net, sparse, rows, r0, r1):
    """Rows [r0, r1) of Z_0 = X[rows] @ W_0 into dst at d0, (m, sizes[1]) row-major: each row a
    sum of the W_0 rows of its stored features, times their values."""
    # X[rows] (m, s[0]) CSR; W_0 (s[0], s[1]) at params[net.woff[0]]; Z_0 (m, s[1])
    n_out = net.sizes[1]
    w0 = net.woff[0]
    indptr, indices, values = sparse.indptr, sparse.indices, sparse.values
    for i in range(r0, r1):
        z = dst[d0 + i * n_out:d0 + (i + 1) * n_out]
        for j in range(n_out):
            z[j] = 0.0
        r = rows[i]
        for e in range(indptr[r], indptr[r + 1]):
            v = values[e]
            w = params[w0 + indices[e] * n_out:w0 + (indices[e] + 1) * n_out]
            for j in range(n_out):
                z[j] += v * w[j]


@kernel
def sparse_transpose(sparse, rows, m, n_in):
    """The batch's entries X[rows[:m]] grouped by feature into sparse.tstart/trows/tvals (a
    counting sort, stable: each feature's entries in batch-row order)."""
    indptr, indices, values = sparse.indptr, sparse.indices, sparse.values
    tstart, trows, tvals = sparse.tstart, sparse.trows, sparse.tvals
    for c in range(n_in + 1):
        tstart[c] = 0
    for i in range(m):
        r = rows[i]
        for e in range(indptr[r], indptr[r + 1]):
            tstart[indices[e] + 1] += 1
    for c in range(n_in):
        tstart[c + 1] += tstart[c]
    for i in range(m):
        r = rows[i]
        for e in range(indptr[r], indptr[r + 1]):
            c = indices[e]
            q = tstart[c]
            trows[q] = i
            tvals[q] = values[e]
            tstart[c] = q + 1
    # tstart[c] now ends feature c: shift back to starts
    for c in range(n_in, 0, -1):
        tstart[c] = tstart[c - 1]
    tstart[0] = 0


@kernel(inline="always")
def sparse_backward_weights(grads, work, net, m, dcur, p, parts, sparse):
    """Part p of parts of dW_0 = X[rows]^T @ dZ: the rows [i0, i1) of dW_0 (a block of input
    features, so no two parts write one row), each written once: zero, or the sum over the batch
    rows storing that feature (in batch-row order) of value times the row's dZ; and part p of
    db_0. Reads the batch's transpose (sparse_transpose)."""
    # X[rows] (m, s[0]) CSR; dZ (m, s[1]) at work.deltas[dcur]; dW_0 (s[0], s[1]) at grads[net.woff[0]]
    n_in = net.sizes[0]
    n_out = net.sizes[1]
    w0 = net.woff[0]
    deltas = work.deltas
    tstart, trows, tvals = sparse.tstart, sparse.trows, sparse.tvals
    i0, i1 = part_range(n_in, parts, p)
    for c in range(i0, i1):
        dw = grads[w0 + c * n_out:w0 + (c + 1) * n_out]
        q0, q1 = tstart[c], tstart[c + 1]
        if q0 == q1:
            for j in range(n_out):
                dw[j] = 0.0
            continue
        # the first term written, the rest added: the row stays in cache and is stored once
        g = deltas[dcur + trows[q0] * n_out:dcur + (trows[q0] + 1) * n_out]
        v = tvals[q0]
        for j in range(n_out):
            dw[j] = v * g[j]
        for q in range(q0 + 1, q1):
            g = deltas[dcur + trows[q] * n_out:dcur + (trows[q] + 1) * n_out]
            v = tvals[q]
            for j in range(n_out):
                dw[j] += v * g[j]
    _bias_grad(grads, deltas, net, np.int64(0), m, dcur, p, parts)


@kernel(inline="always")
def task_parts(task, m, n_in, n_out, maxparts):
    """How many parts a task on a layer of n_in -> n_out features and a batch of m rows gets
    (parts.n_parts of what it splits): the input features for the weight gradient, the batch's
    rows otherwise. Batch norm's sums over the batch are no task of parts of their own: see
    network.run_batches."""
    work = m * n_in * n_out
    if task == BACKWARD_WEIGHTS:
        return n_parts(n_in, work, maxparts)
    if task == LAYER_NORM_BACKWARD:             # the sums' part, then the rows' parts
        rows = n_parts(m, work, maxparts)
        return 1 if rows == 1 else rows + 1
    return n_parts(m, work, maxparts)


@kernel(inline="always")
def _plain_task(task, p, parts, l, m, act, grads, params, net, work, X, dcur, dnext):
    if task == FORWARD:
        r0, r1 = part_range(m, parts, p)
        dense_forward(work, params, net, X, l, act, r0, r1, p)
    elif task == BACKWARD_WEIGHTS:
        dense_backward_weights(grads, work, net, l, m, dcur, p, parts)
    else:
        r0, r1 = part_range(m, parts, p)
        dense_backward_input(work, params, net, l, dcur, dnext, r0, r1, p)


@kernel(inline="always")
def _full_task(task, p, parts, l, m, act, grads, params, net, work, X, dcur, dnext, train, pos0):
    if task == FORWARD:
        r0, r1 = part_range(m, parts, p)
        full_forward(work, params, net, X, l, act, r0, r1, p, train, pos0)
    elif task == BACKWARD_WEIGHTS:
        dense_backward_weights(grads, work, net, l, m, dcur, p, parts)
        if net.l1 != 0.0 or net.l2 != 0.0:
            i0, i1 = part_range(net.sizes[l], parts, p)
            penalize(grads, work, params, net, l, i0, i1)
    elif task == BACKWARD_INPUT:
        r0, r1 = part_range(m, parts, p)
        full_backward_input(work, params, net, l, dcur, dnext, r0, r1, p)
    elif task == NORM_STATISTICS:
        batch_norm_statistics(work, net, l, m, parts, train)
    elif task == NORM_FORWARD:
        r0, r1 = part_range(m, parts, p)
        batch_norm_forward(work, params, net, l, r0, r1, train, pos0)
    else:
        norm_backward(grads, work, params, net, l, m, dcur, dnext, p, parts, task)


@kernel
def layer_task(task, p, parts, l, m, act, grads, params, net, work, X, dcur, dnext, train, pos0, extras, sparse):
    """Part p of ``parts`` of one task on layer l of a batch of m rows (see the module docstring).
    The tests of ``extras`` and ``sparse`` are made here, in a kernel that takes them as
    arguments: numba drops the branch not taken before it inlines anything. ``sparse``: None
    for dense X, else the CSR rows (args.Sparse) layer 0's product reads instead of X (its
    input gradient is never needed)."""
    wide_vectors()
    if sparse is not None:
        if l == 0 and task == FORWARD:
            r0, r1 = part_range(m, parts, p)
            n_out = net.sizes[1]
            if extras is None:
                sparse_forward(work.acts, work.acts_off[1], params, net, sparse, work.rows, r0, r1)
                bias_act_forward(work.acts, work.acts_off[1] + r0 * n_out, r1 - r0, n_out, params, net.boff[0], act)
            else:
                full = net.full[0] != 0
                sparse_forward(work.pre if full else work.acts, work.pre_off[0] if full else work.acts_off[1], params,
                               net, sparse, work.rows, r0, r1)
                _full_after_product(work, params, net, l, act, r0, r1, p, train, pos0)
            return
        if l == 0 and task == BACKWARD_WEIGHTS:
            sparse_backward_weights(grads, work, net, m, dcur, p, parts, sparse)
            if extras is not None:
                if net.l1 != 0.0 or net.l2 != 0.0:
                    i0, i1 = part_range(net.sizes[0], parts, p)
                    penalize(grads, work, params, net, l, i0, i1)
            return
    if extras is None:
        _plain_task(task, p, parts, l, m, act, grads, params, net, work, X, dcur, dnext)
    else:
        _full_task(task, p, parts, l, m, act, grads, params, net, work, X, dcur, dnext, train, pos0)


call_task = by_address(layer_task, returns=types.none)


@kernel(parallel=True)
def layer_region(task, parts, l, m, act, grads, params, net, work, X, dcur, dnext, train, pos0, extras, sparse,
                 task_fn, task_key):
    """All ``parts`` parts of a task, in a parallel region whose threads take them in turn
    (parts.take); (task_fn, task_key) is layer_task's calls.entry for these arguments."""
    next_part = np.zeros(1, np.int64)
    for _ in prange(parts):
        # a thread's first iteration takes parts until none is left; its others find none
        p = take(next_part)
        while p < parts:
            call_task(task_fn, task_key, (task, p, parts, l, m, act, grads, params, net, work, X, dcur, dnext, train,
                                          pos0, extras, sparse))
            p = take(next_part)
