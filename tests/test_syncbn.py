"""Batch norm over the ranks of a data-parallel step (fastbp.kernels.syncbn), in one process.

1. Each new kernel against a plain-numpy computation of what it computes.
2. Ranks simulated by threads (each with its own model and work buffers, their sums taken at
   a barrier): the ranks' gradients summed, plus the penalty added once, equal the gradient of
   the whole minibatch in one process (network.run_batches, TRAIN_GRADIENT) to 1e-12, as do the
   loss, the correct count, the training predictions and every rank's running statistics, for
   every way of splitting the rows (a rank with no row or one row included), dense and CSR.
3. An error on one rank reaches no rank stuck in a reduction.
The real thing under ``mpiexec`` is in test_distributed.py (the batch-norm cases of cases.py).
"""
import threading

import numpy as np
import pytest
import scipy.sparse as sp

import fastbp
from fastbp import data as D
from fastbp.kernels import epoch as E
from fastbp.kernels import syncbn
from fastbp.kernels.dense import BATCH_STATS, STEP

EPS, MOMENTUM = 1e-5, 0.1
ROWS = 11           # the global minibatch
SPLITS = {          # each rank's rows [lo, hi) of the minibatch
    "halves": [(0, 5), (5, 11)],
    "one_row": [(0, 1), (1, 11)],
    "ten_and_one": [(0, 10), (10, 11)],
    "empty_rank": [(0, 0), (0, 6), (6, 11)],
    "three_ranks": [(0, 3), (3, 7), (7, 11)],
}


def featured_model(**kw):
    """Batch norm (with a bias before it), layer norm, dropout, an l2 penalty."""
    args = dict(activation=["gelu", "relu"], norm=["batch", "layer"], dropout=0.2, l2=1e-3, dtype="float64", seed=1)
    args.update(kw)
    return fastbp.MLP([6, 9, 7, 3], **args)


def filled_layer(seed=0, m=5):
    """A model with batch norm in layer 0 and its work buffers for m rows, Z of those rows in
    place, random running statistics and gamma/beta; (model, work, Z copy)."""
    model = fastbp.MLP([4, 6, 3], activation="relu", norm="batch", dtype="float64", seed=seed)
    rng = np.random.default_rng(seed)
    model.buffers[:] = rng.uniform(0.5, 1.5, model.buffers.size)
    model.layers[0].gamma[:] = rng.uniform(0.5, 1.5, 6)
    model.layers[0].beta[:] = rng.standard_normal(6)
    work = model.workspace(8).arrays
    Z = 3.0 + rng.standard_normal((m, 6))
    work.pre[work.pre_off[0]:work.pre_off[0] + m * 6] = Z.ravel()
    return model, work, Z


# ---- 1. the kernels against numpy -----------------------------------------------------------
def test_batch_norm_sums_and_square_sums():
    model, work, Z = filled_layer()
    sums = np.full(7, np.nan)
    syncbn.batch_norm_sums(sums, work, model.net, 0, 5)
    np.testing.assert_allclose(sums[:6], Z.sum(axis=0), rtol=1e-14)
    mean = np.random.default_rng(1).standard_normal(6)
    s = work.nstat_off[0]
    work.nstat[s:s + 6] = mean
    syncbn.batch_norm_square_sums(sums, work, model.net, 0, 5)
    np.testing.assert_allclose(sums[:6], ((Z - mean) ** 2).sum(axis=0), rtol=1e-14)


@pytest.mark.parametrize("m", [0, 1, 5])
@pytest.mark.parametrize("train", ["step", "batch_stats"])
def test_batch_norm_finish(m, train):
    """From a mean and a sum of squared deviations over ``count`` rows: the running statistics
    (torch: the unbiased variance), 1/std, Xhat, Y and relu(Y) of the rows here."""
    model, work, Z = filled_layer(m=m)
    rng = np.random.default_rng(2)
    count = 9
    mean, sq = rng.standard_normal(6), rng.uniform(1.0, 4.0, 6)
    s = work.nstat_off[0]
    work.nstat[s:s + 6], work.nstat[s + 6:s + 12] = mean, sq
    rmean, rvar = model.layers[0].running_mean.copy(), model.layers[0].running_var.copy()
    gamma, beta = model.layers[0].gamma.copy(), model.layers[0].beta.copy()
    code = STEP if train == "step" else BATCH_STATS
    syncbn.batch_norm_finish(work, model.params, model.net, 0, m, count, code, 0)
    if train == "step":
        rmean, rvar = (1 - MOMENTUM) * rmean + MOMENTUM * mean, (1 - MOMENTUM) * rvar + MOMENTUM * sq / (count - 1)
    np.testing.assert_allclose(model.layers[0].running_mean, rmean, rtol=1e-14)
    np.testing.assert_allclose(model.layers[0].running_var, rvar, rtol=1e-14)
    rstd = 1 / np.sqrt(sq / count + EPS)
    np.testing.assert_allclose(work.nstat[s + 6:s + 12], rstd, rtol=1e-14)
    xhat = (Z - mean) * rstd
    Y = gamma * xhat + beta
    got = lambda off: work.pre[off:off + m * 6].reshape(m, 6)     # noqa: E731
    np.testing.assert_allclose(got(work.xhat_off[0]), xhat, rtol=1e-13, atol=1e-14)
    # a training forward pass leaves the activation's derivative in Y's place: relu'(Y)
    np.testing.assert_array_equal(got(work.pre_off[0]), (Y > 0).astype(np.float64))
    a1 = work.acts_off[1]
    np.testing.assert_allclose(work.acts[a1:a1 + m * 6].reshape(m, 6), np.maximum(Y, 0), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("m", [0, 1, 5])
def test_batch_norm_param_sums_and_backward_rows(m):
    """dgamma, dbeta shares = sums of dY * Xhat and dY; dZ = gamma*rstd*(dY - dbeta/count - Xhat*dgamma/count)
    with the sums over the whole minibatch of ``count`` rows."""
    model, work, _ = filled_layer(m=m)
    rng = np.random.default_rng(3)
    xhat, dY = rng.standard_normal((m, 6)), rng.standard_normal((m, 6))
    rstd, gamma = rng.uniform(0.5, 2.0, 6), model.layers[0].gamma.copy()
    x0, s, dcur = work.xhat_off[0], work.nstat_off[0], 6
    work.pre[x0:x0 + m * 6] = xhat.ravel()
    work.nstat[s + 6:s + 12] = rstd
    work.deltas[dcur:dcur + m * 6] = dY.ravel()
    dsums = np.full(13, np.nan)
    syncbn.batch_norm_param_sums(dsums, work, model.net, 0, m, dcur)
    np.testing.assert_allclose(dsums[:6], (dY * xhat).sum(axis=0), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dsums[6:12], dY.sum(axis=0), rtol=1e-13, atol=1e-15)
    count = 9
    glob = rng.standard_normal(13)      # the sums over every rank
    syncbn.batch_norm_backward_rows(work, model.params, model.net, 0, m, dcur, glob, count)
    dZ = gamma * rstd * (dY - glob[6:12] / count - xhat * glob[:6] / count)
    np.testing.assert_allclose(work.deltas[dcur:dcur + m * 6].reshape(m, 6), dZ, rtol=1e-13, atol=1e-15)


def test_reductions_are_the_same_sequence_on_every_rank():
    net = featured_model(norm=["batch", "batch"]).net
    assert syncbn.reduction_sizes(net) == [9, 9, 7, 7, 14, 18]
    assert syncbn.reduction_sizes(featured_model(norm="layer").net) == []


# ---- 2. simulated ranks equal one process -----------------------------------------------------
class Ranks:
    """Threads standing in for ranks: ``allreduce(r)`` is rank r's in-place sum over all of them."""

    def __init__(self, size):
        self.size = size
        self.barrier = threading.Barrier(size, timeout=120)
        self.bufs = [None] * size

    def allreduce(self, r):
        def allreduce(buf):
            self.bufs[r] = buf.copy()
            self.barrier.wait()
            total = sum(self.bufs)
            self.barrier.wait()
            buf[:] = total
        return allreduce

    def run(self, fn):
        """fn(r) on every rank at once; returns their results (an exception counts as a result)."""
        results = [None] * self.size

        def body(r):
            try:
                results[r] = fn(r)
            except BaseException as e:
                results[r] = e
        threads = [threading.Thread(target=body, args=(r,)) for r in range(self.size)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads), "a rank is stuck in a reduction"
        return results


def minibatch(sparse=False):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((20, 6))
    y = rng.integers(0, 3, 20)
    if sparse:
        X[rng.random(X.shape) < 0.6] = 0.0
        X = sp.csr_matrix(X)
    return X, y, rng.permutation(20).astype(np.int64)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("split", list(SPLITS))
def test_ranks_sum_to_the_one_process_gradient(split, sparse, dtype="float64"):
    X, y, order = minibatch(sparse)
    if dtype == "float32":
        X = X.astype(np.float32)
    tol = dict(rtol=0, atol=1e-12) if dtype == "float64" else dict(rtol=1e-4, atol=1e-5)
    first = 4                                  # the minibatch is order[4:15]
    one = featured_model(dtype=dtype)
    ws = one.workspace(ROWS, sparse)
    data = D.prepare(one, X, y, None)
    P1 = np.zeros((20, 3), dtype)             # predictions in the model's dtype, as fit keeps them
    one.updates = 7                            # dropout masks of a later step
    _, loss, correct = E.run(E.TRAIN_GRADIENT, one.params, one.net, ws, data, grads=ws.grads, out=P1, order=order,
                             first=first, last=first + ROWS, batch=0)
    shares = SPLITS[split]
    ranks = Ranks(len(shares))
    models = [featured_model(dtype=dtype) for _ in shares]
    grads = [np.full(one.n_params, np.nan, dtype) for _ in shares]      # every element must be written
    P = [np.zeros((20, 3), dtype) for _ in shares]

    def rank(r):
        m, (lo, hi) = models[r], shares[r]
        m.updates = 7
        return syncbn.train_gradient(ranks.allreduce(r), grads[r], m.params, m.net, m.workspace(hi - lo or 1, sparse),
                                     data, order, first + lo, first + hi, lo, ROWS, out=P[r])
    results = ranks.run(rank)
    g = sum(grads)
    penalty = syncbn.add_penalty(g, models[0].params, models[0].net, models[0].workspace(ROWS))
    np.testing.assert_allclose(g, ws.grads, **tol)
    assert sum(r[0] for r in results) + ROWS * penalty == pytest.approx(loss, rel=1e-12 if dtype == "float64" else 1e-5)
    assert sum(r[1] for r in results) == correct
    np.testing.assert_allclose(sum(P), P1, **tol)
    for m in models:
        np.testing.assert_allclose(m.buffers, one.buffers, **tol)
        assert not np.array_equal(m.buffers[:9], np.zeros(9))       # the running mean moved


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
def test_float32_ranks_sum_to_the_one_process_gradient_to_float32_rounding(sparse):
    test_ranks_sum_to_the_one_process_gradient("empty_rank", sparse, dtype="float32")


def test_loading_the_kernels_changes_nothing():
    model = featured_model()
    before = model.params.copy(), model.buffers.copy()
    X, y, _ = minibatch()
    syncbn.load(np.zeros(model.n_params), model.params, model.net, model.workspace(6), D.prepare(model, X, y, None),
                None)
    assert np.array_equal(model.params, before[0]) and np.array_equal(model.buffers, before[1])


# ---- 3. errors -----------------------------------------------------------------------------
def test_an_error_on_one_rank_stops_every_rank_and_is_raised_by_that_rank():
    """Rank 1's predictions array is too small: it fails after the forward pass's sums, before
    the backward pass's; rank 0 makes the same reductions, learns of it and stops."""
    X, y, order = minibatch()
    models = [featured_model() for _ in range(2)]
    data = D.prepare(models[0], X, y, None)
    ranks = Ranks(2)
    outs = [np.zeros((20, 3)), np.zeros((2, 3))]
    calls = [0, 0]

    def rank(r):
        def counted(buf, inner=ranks.allreduce(r)):
            calls[r] += 1
            inner(buf)
        lo, hi = (0, 5) if r == 0 else (5, 11)
        return syncbn.train_gradient(counted, np.zeros(models[r].n_params), models[r].params, models[r].net,
                                     models[r].workspace(ROWS), data, order, lo, hi, lo, ROWS, out=outs[r])
    results = ranks.run(rank)
    assert results[0] == (0.0, 0.0)
    assert isinstance(results[1], ValueError)
    assert calls == [3, 3]
