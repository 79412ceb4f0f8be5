"""Forward and backward for small networks, vectorized over the batch instead of the features.

When every layer is narrow (the 4-16-3 kind), a product's inner loop over the 3 or 16 features
of a layer is too short to vectorize, and BLAS calls cost more than the arithmetic. Here the
activations and deltas are stored feature-major — layer l is s[l] rows of a (rows, cap) buffer,
row j holding feature j for every sample of the batch — so every inner loop runs over the
batch, contiguous.

Same contract as network.batch_gradient: the mean gradient into ``grads`` in the flat layout,
the weighted loss sum and the correct count returned. Serial: such a step takes microseconds.
The work buffers are a Work's feature-major views (args.py): work.fm_acts (sum of sizes, cap),
layer l at rows work.fm_row[l]..; work.fm_deltas (2 * max width, cap); work.loss_scratch.
Blocks are row ranges of these 2-D buffers (a reshape per view cost ~40 ns, a third of a
step); W and dW are read and written through the flat buffers.
"""
import numpy as np

from .activations import LINEAR, RELU, SIGMOID, TANH, bias_act_forward
from .args import GRADIENT, PREDICT, TRAIN, TRAIN_GRADIENT
from .jit import VECTORIZE, kernel
from .losses import CROSS_ENTROPY, output_loss
from .mathfn import fexp, fsigmoid, ftanh
from .optimizers import H_LR, apply_update, classic_update

# Use this path when the largest layer product of a step has at most this many multiply-adds.
SMALL_MAX_WORK = 32 * 32 * 64


# VECTORIZE: reassociation lets LLVM vectorize the dot products over the batch.
@kernel(flags=VECTORIZE)
def _softmax_ce_int(Z, G, m, yint, ridx, scale, mx, s, arg):
    """Softmax cross-entropy with int labels, vectorized over the batch (feature-major).

    Z (k, cap) logits in, probabilities out; G (k, cap) gets (p - onehot) * scale.
    mx, s, arg: (cap,) scratch. Returns (loss sum, correct count); loss_i = log s_i + max_i - z_yi.
    """
    k = Z.shape[0]
    for i in range(m):
        mx[i] = Z[0, i]
        arg[i] = 0.0
        s[i] = 0.0
    for j in range(1, k):
        for i in range(m):
            if Z[j, i] > mx[i]:          # first index of the maximum, like argmax
                mx[i] = Z[j, i]
                arg[i] = j
    total = 0.0
    correct = 0.0
    for i in range(m):
        c = yint[ridx[i]]
        total += np.float64(mx[i]) - np.float64(Z[c, i])
        correct += arg[i] == c
    for j in range(k):
        for i in range(m):
            e = fexp(Z[j, i] - mx[i])
            Z[j, i] = e
            s[i] += e
    # the sum of log(s_i) as logs of products of 16 at a time (each s_i lies in [1, k])
    for i0 in range(0, m, 16):
        prod = 1.0
        for i in range(i0, min(m, i0 + 16)):
            prod *= np.float64(s[i])
        total += np.log(prod)
    for i in range(m):
        s[i] = 1.0 / s[i]
    for j in range(k):
        for i in range(m):
            Z[j, i] *= s[i]
            G[j, i] = Z[j, i] * scale
    for i in range(m):
        G[yint[ridx[i]], i] -= scale
    return total, correct


@kernel(flags=VECTORIZE, inline="always")
def small_forward(work, params, net, X, m):
    """Forward pass of data rows work.rows[:m] of X into the feature-major blocks of
    work.fm_acts; the output block (rows fm_row[L]..) holds logits."""
    sizes, woff, boff = net.sizes, net.woff, net.boff
    T, trow, ridx = work.fm_acts, work.fm_row, work.rows
    L = sizes.shape[0] - 1
    n_in = sizes[0]
    zero = params.dtype.type(0.0)
    A0 = T[trow[0]:trow[0] + n_in]
    for i in range(m):
        r = ridx[i]
        for p in range(n_in):
            A0[p, i] = X[r, p]
    # Z^T[j, :] = b[j] + sum_p W[p, j] * A^T[p, :]
    for l in range(L):
        k, n = sizes[l], sizes[l + 1]
        A = T[trow[l]:trow[l] + k]
        Z = T[trow[l + 1]:trow[l + 1] + n]
        w0 = woff[l]
        a = net.act[l] if l < L - 1 else LINEAR
        for j in range(n):
            # the bias and the first input's term in one pass (the same fused multiply-add the
            # loop below would do first): a pass over the batch is a sizeable share of a step
            b0 = params[boff[l] + j] if boff[l] >= 0 else zero
            w = params[w0 + j]
            for i in range(m):
                Z[j, i] = b0 + w * A[0, i]
            for p in range(1, k):
                w = params[w0 + p * n + j]
                for i in range(m):
                    Z[j, i] += w * A[p, i]
            if a == RELU:
                for i in range(m):
                    Z[j, i] = max(Z[j, i], 0.0)
            elif a == TANH:
                for i in range(m):
                    Z[j, i] = ftanh(Z[j, i])
            elif a == SIGMOID:
                for i in range(m):
                    Z[j, i] = fsigmoid(Z[j, i])


# The sparse input's kernels are copies apart from the dense ones rather than shared helpers:
# the dense kernels then compile to the same code, so dense runs keep their pinned bits.
@kernel(flags=VECTORIZE, inline="always")
def small_sparse_forward(work, params, net, sparse, m):
    """small_forward for CSR rows (args.Sparse): layer 0's Z^T[:, i] = b + the W_0 rows of row
    i's stored features times their values, then the other layers as small_forward."""
    sizes, woff, boff = net.sizes, net.woff, net.boff
    T, trow, ridx = work.fm_acts, work.fm_row, work.rows
    L = sizes.shape[0] - 1
    zero = params.dtype.type(0.0)
    indptr, indices, values = sparse.indptr, sparse.indices, sparse.values
    n = sizes[1]
    Z = T[trow[1]:trow[1] + n]
    for i in range(m):
        for j in range(n):
            Z[j, i] = params[boff[0] + j] if boff[0] >= 0 else zero
        r = ridx[i]
        for e in range(indptr[r], indptr[r + 1]):
            v = values[e]
            c = indices[e]
            for j in range(n):
                Z[j, i] += v * params[woff[0] + c * n + j]
    for l in range(L):
        k, n = sizes[l], sizes[l + 1]
        A = T[trow[l]:trow[l] + k]
        Z = T[trow[l + 1]:trow[l + 1] + n]
        w0 = woff[l]
        a = net.act[l] if l < L - 1 else LINEAR
        for j in range(n):
            if l > 0:
                b0 = params[boff[l] + j] if boff[l] >= 0 else zero
                w = params[w0 + j]
                for i in range(m):
                    Z[j, i] = b0 + w * A[0, i]
                for p in range(1, k):
                    w = params[w0 + p * n + j]
                    for i in range(m):
                        Z[j, i] += w * A[p, i]
            if a == RELU:
                for i in range(m):
                    Z[j, i] = max(Z[j, i], 0.0)
            elif a == TANH:
                for i in range(m):
                    Z[j, i] = ftanh(Z[j, i])
            elif a == SIGMOID:
                for i in range(m):
                    Z[j, i] = fsigmoid(Z[j, i])


@kernel(flags=VECTORIZE, inline="always")
def _small_sparse_weights(grads, net, work, sparse, G, m):
    """dW_0 = X[rows]^T @ dZ over the stored entries (dZ feature-major (s[1], cap) in G)."""
    n = net.sizes[1]
    w0 = net.woff[0]
    indptr, indices, values = sparse.indptr, sparse.indices, sparse.values
    for q in range(w0, w0 + net.sizes[0] * n):
        grads[q] = 0.0
    for i in range(m):
        r = work.rows[i]
        for e in range(indptr[r], indptr[r + 1]):
            v = values[e]
            c = indices[e]
            for j in range(n):
                grads[w0 + c * n + j] += v * G[j, i]


@kernel(flags=VECTORIZE)
def small_batch_gradient(grads, params, net, data, work, m, sparse):
    """(loss, correct) of the rows data[work.rows[:m]] (m <= cap) and the mean gradient into
    ``grads``: network.batch_gradient for small networks. ``sparse``: None, or the CSR rows
    (args.Sparse) layer 0 reads instead of data.X (tested here, where it is an argument; layer
    0's weight gradient is then overwritten from the stored entries)."""
    sizes, woff, boff = net.sizes, net.woff, net.boff
    T, trow, G, ridx = work.fm_acts, work.fm_row, work.fm_deltas, work.rows
    yint, sw, rowloss, scratch = data.labels, data.weights, work.row_loss, work.loss_scratch
    L = sizes.shape[0] - 1
    loss = net.loss
    cap = T.shape[1]
    zero = params.dtype.type(0.0)
    if sparse is None:
        small_forward(work, params, net, data.X, m)
    else:
        small_sparse_forward(work, params, net, sparse, m)
    k = sizes[L]
    Zo = T[trow[L]:trow[L] + k]
    half = G.shape[0] // 2
    gcur = 0
    Gc = G[gcur:gcur + k]
    if loss == CROSS_ENTROPY and yint.shape[0] > 0 and sw.shape[0] == 0:
        total, correct = _softmax_ce_int(Zo, Gc, m, yint, ridx, 1.0 / m, scratch[:cap], scratch[cap:2 * cap],
                                         scratch[2 * cap:3 * cap])
    else:
        # any other loss: the row-wise kernel on a batch-major copy, gradient back to feature-major
        zb = scratch[:m * k]
        gb = scratch[cap * k:cap * k + m * k]
        for i in range(m):
            for j in range(k):
                zb[i * k + j] = Zo[j, i]
        correct = output_loss(gb, np.int64(0), rowloss, zb, np.int64(0), m, k, net, data, ridx, 1.0 / m, np.bool_(True), None)
        for i in range(m):
            for j in range(k):
                Gc[j, i] = gb[i * k + j]
                Zo[j, i] = zb[i * k + j]       # the predictions, where the other branch leaves them
        total = 0.0
        for i in range(m):
            total += rowloss[i]
    # backward
    for l in range(L - 1, -1, -1):
        k, n = sizes[l], sizes[l + 1]
        A = T[trow[l]:trow[l] + k]
        Gc = G[gcur:gcur + n]
        w0 = woff[l]
        for p in range(k):
            for j in range(n):
                s = zero
                for i in range(m):
                    s += A[p, i] * Gc[j, i]
                grads[w0 + p * n + j] = s
        if sparse is not None:
            if l == 0:
                _small_sparse_weights(grads, net, work, sparse, Gc, m)
        if boff[l] >= 0:
            for j in range(n):
                s = zero
                for i in range(m):
                    s += Gc[j, i]
                grads[boff[l] + j] = s
        if l > 0:
            gnext = half - gcur
            Gp = G[gnext:gnext + k]
            act = net.act[l - 1]       # of the layer whose output A is: its derivative, from A
            for p in range(k):
                w = params[w0 + p * n]
                for i in range(m):
                    Gp[p, i] = w * Gc[0, i]
                for j in range(1, n):
                    w = params[w0 + p * n + j]
                    for i in range(m):
                        Gp[p, i] += w * Gc[j, i]
                if act == RELU:
                    for i in range(m):
                        if A[p, i] <= 0:
                            Gp[p, i] = 0.0
                elif act == TANH:
                    for i in range(m):
                        Gp[p, i] *= 1.0 - A[p, i] * A[p, i]
                elif act == SIGMOID:
                    for i in range(m):
                        Gp[p, i] *= A[p, i] * (1.0 - A[p, i])
            gcur = gnext
    return total, correct


@kernel(inline="always")
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


@kernel(inline="always")
def _copy_predictions(out, p0, work, net, m):
    """out[p0:p0+m] <- the predictions small_batch_gradient left in the output block (training
    metrics); nothing when ``out`` is empty."""
    if out.shape[0] > 0:
        L = net.sizes.shape[0] - 1
        t = work.fm_row[L]
        for i in range(m):
            for j in range(out.shape[1]):
                out[p0 + i, j] = work.fm_acts[t + j, i]


@kernel(inline="always")
def _small_sparse_logits(zb, r0, params, net, sparse, work):
    """_small_logits for CSR rows (args.Sparse)."""
    T = work.fm_acts
    m = min(sparse.indptr.shape[0] - 1, r0 + T.shape[1]) - r0
    for i in range(m):
        work.rows[i] = r0 + i
    small_sparse_forward(work, params, net, sparse, m)
    L = net.sizes.shape[0] - 1
    k = net.sizes[L]
    for j in range(k):
        t = work.fm_row[L] + j
        for i in range(m):
            zb[i * k + j] = T[t, i]
    return m


@kernel
def run_batches_small(mode, out, step_loss, step_correct, params, grads, opt, net, data, order, first, last, batch,
                      work, extras, sparse):
    """network.run_batches for small plain networks (no norm, no dropout, no penalty, every
    activation's derivative taken from its output): the same modes and results, with the
    serial feature-major kernels, so that a small net never compiles the parallel ones.
    Inference runs in blocks of work.fm_acts.shape[1] rows. ``extras`` chooses the optimizer
    update's code only (see optimizers.apply_update); ``sparse`` as for run_batches."""
    L = net.sizes.shape[0] - 1
    k = net.sizes[L]
    rows = work.rows
    if mode == TRAIN:
        for s in range(first, last):
            r0 = s * batch
            m = min(order.shape[0], r0 + batch) - r0
            for i in range(m):
                rows[i] = order[r0 + i]
            total, correct = small_batch_gradient(grads, params, net, data, work, m, sparse)
            _copy_predictions(out, r0, work, net, m)
            step_loss[s] = total
            step_correct[s] = correct
            if not np.isfinite(total):
                return s - first + 1, 0.0, 0.0
            if extras is None:
                classic_update(params, grads, opt, opt.hyper[H_LR], None)    # inlined, as always
            else:
                apply_update(params, grads, opt, None, extras)
            net.updates[0] += 1
        return last - first, 0.0, 0.0
    if mode == GRADIENT or mode == TRAIN_GRADIENT:
        m = last - first
        if m == 0:
            grads[:] = 0.0
            return 0, 0.0, 0.0
        for i in range(m):
            rows[i] = order[first + i]
        total, correct = small_batch_gradient(grads, params, net, data, work, m, sparse)
        _copy_predictions(out, first, work, net, m)
        return 1, total, correct
    cap = work.fm_acts.shape[1]
    zb = work.loss_scratch[:cap * k]
    gb = work.loss_scratch[cap * k:2 * cap * k]   # the gradient block output_loss is handed (and does not fill)
    total = 0.0
    correct = 0.0
    n_blocks = 0
    for r0 in range(first, last, cap):
        if sparse is None:
            m = _small_logits(zb, r0, params, net, data.X, work)
        else:
            m = _small_sparse_logits(zb, r0, params, net, sparse, work)
        m = min(m, last - r0)
        if mode == PREDICT:
            bias_act_forward(zb, np.int64(0), m, k, params, np.int64(-1), net.act[L - 1])
        else:
            correct += output_loss(gb, np.int64(0), work.row_loss, zb, np.int64(0), m, k, net, data, rows, 1.0,
                                   np.bool_(False), None)
            for i in range(m):
                total += work.row_loss[i]
        for i in range(m):
            for j in range(k):
                out[r0 + i, j] = zb[i * k + j]
        n_blocks += 1
    return n_blocks, total, correct
