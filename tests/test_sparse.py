"""scipy sparse input: CSR rows through the first layer's sparse kernels, never densified.

The kernels are checked against plain numpy (the batch transpose, and whole-network gradients,
predictions and training steps against tests/naive.py on the dense rows); the public calls on a
CSR matrix against the same calls on ``X.toarray()``, for every optimizer, on both kernel
families, with norm and dropout after layer 0; then validation, and peak memory in a child process.
"""
import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import fastbp
from fastbp._layout import Layout
from fastbp.data import sparse_features
from fastbp.kernels import activations as A
from fastbp.kernels import epoch as E
from fastbp.kernels import losses as Lo
from fastbp.kernels import optimizers as O
from fastbp.kernels.args import Opt, make_net, workspace_arrays
from fastbp.kernels.dense import sparse_transpose
from fastbp.kernels.parts import DETERMINISTIC
from fastbp.optim import OPTIMIZERS

import kernel_calls
import naive


def sparse_matrix(n, d, seed=0, density=0.2, dtype=np.float64):
    """A CSR (n, d) matrix with about ``density`` of its entries stored, an empty row every 7th,
    and columns 1 and d-1 empty."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * (rng.random((n, d)) < density)
    X[::7] = 0.0
    X[:, [1, d - 1]] = 0.0
    return sp.csr_matrix(X.astype(dtype))


def rel_diff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    if a.size == 0:
        return 0.0
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


# ---- the kernels against plain numpy ----------------------------------------------------------
def kernel_sparse(X, cap):
    """The kernels' Sparse of a CSR matrix, with transpose buffers for batches of up to cap rows."""
    rows = kernel_calls.sparse_rows(X.indptr.astype(np.int64), X.indices.astype(np.int32), X.data, X.shape[1],
                                    int(np.diff(X.indptr).max()))

    class Room:                  # a Workspace's transpose buffers, nothing else
        def transpose_buffers(self, n_cols, max_row):
            return (np.zeros(n_cols + 1, np.int64), np.zeros(cap * max_row, np.int64), np.zeros(cap * max_row))
    return rows.kernel_args(Room())


def test_sparse_transpose_groups_a_batch_by_feature_in_batch_order():
    X = sparse_matrix(50, 30, seed=1, density=0.3)
    rows = np.random.default_rng(2).permutation(50)[:20]
    s = kernel_sparse(X, 20)
    sparse_transpose(s, rows, np.int64(20), np.int64(30))
    B = X[rows].tocsc()                        # scipy's transpose: per feature, batch rows ascending
    B.sort_indices()
    np.testing.assert_array_equal(s.tstart, B.indptr)
    np.testing.assert_array_equal(s.trows[:B.nnz], B.indices)
    np.testing.assert_array_equal(s.tvals[:B.nnz], B.data)


def network(sizes, act, out, loss, bias, seed=0):
    lay = Layout(sizes, bias)
    params = np.random.default_rng(seed).standard_normal(lay.size) * 0.4
    for W, _ in lay.views(params):
        W *= 2.5 / np.sqrt(W.shape[0])
    codes = [A.HIDDEN.code(act)] * (len(sizes) - 2) + [A.OUTPUT.code(out)]
    return lay, params, make_net(lay.sizes_arr, lay.woff, lay.boff, codes, Lo.LOSSES.code(loss))


def no_opt():
    return Opt(-1, np.zeros(1), np.zeros((0, 0)), np.zeros(1, np.int64), 0.0)


EMPTY_X = np.zeros((0, 0))
EMPTY_X.flags.writeable = False
KINDS = [("small", None), ("network", None), ("network", 2), ("network", DETERMINISTIC)]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind,maxparts", KINDS)
def test_sparse_gradient_and_predictions_match_the_reference(kind, maxparts, bias):
    """GRADIENT and PREDICT modes with CSR rows: the loss and mean gradient of rows picked in
    any order, and every row's predictions, as the reference computes them on the dense rows."""
    sizes = [12, 16, 3] if kind == "small" else [300, 96, 5]
    lay, params, net = network(sizes, "relu", "softmax", "cross_entropy", bias)
    X = sparse_matrix(200, sizes[0], seed=3)
    labels = np.random.default_rng(4).integers(0, sizes[-1], 200)
    data = kernel_calls.data(EMPTY_X, np.zeros((0, 0)), labels, np.zeros(0))
    m = 40 if kind == "small" else 128
    rows = np.random.default_rng(5).permutation(200)[:m]
    s = kernel_sparse(X, m)
    work = workspace_arrays(net, m, np.float64, 8)
    grads = np.full(lay.size, np.nan)
    args = (E.GRADIENT, np.zeros((0, sizes[-1])), np.zeros(0), np.zeros(0), params, grads, no_opt(), net, data,
            rows, 0, m, m, work)
    _, total, _ = kernel_calls.run(kind, maxparts, args, s)
    Ws, bs = naive.unflatten(params, sizes, bias)
    Xd = X.toarray()
    want_loss, dWs, dbs = naive.loss_and_grads(Ws, bs, Xd[rows], naive.one_hot(labels[rows], sizes[-1]), "relu",
                                               "softmax", "cross_entropy")
    assert total / m == pytest.approx(want_loss, rel=1e-12)
    np.testing.assert_allclose(grads, naive.flatten(dWs, dbs), rtol=1e-10, atol=1e-13)
    P = np.empty((200, sizes[-1]))
    args = (E.PREDICT, P, np.zeros(0), np.zeros(0), params, grads, no_opt(), net, data, np.zeros(0, np.int64),
            0, 200, 1, work)
    blocks, _, _ = kernel_calls.run(kind, maxparts, args, s)
    assert blocks == -(-200 // m)
    np.testing.assert_allclose(P, naive.forward(Ws, bs, Xd, "relu", "softmax")[0][-1], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kind,maxparts", KINDS[:3])
def test_sparse_train_steps_replay_the_reference(kind, maxparts):
    """TRAIN mode with CSR rows: Adam steps on minibatches of a row order, step by step."""
    sizes = [12, 16, 3] if kind == "small" else [300, 96, 5]
    lay, params, net = network(sizes, "relu", "softmax", "cross_entropy", True, seed=5)
    X = sparse_matrix(300, sizes[0], seed=6)
    labels = np.random.default_rng(7).integers(0, sizes[-1], 300)
    data = kernel_calls.data(EMPTY_X, np.zeros((0, 0)), labels, np.zeros(0))
    order = np.random.default_rng(8).permutation(300)
    batch, first, last = 64 if kind == "small" else 128, 1, 3
    work = workspace_arrays(net, batch, np.float64, 8)
    h = np.zeros(O.N_HYPER)
    h[[O.H_LR, O.H_BETA1, O.H_BETA2, O.H_EPS]] = 0.05, 0.9, 0.999, 1e-8
    kopt = Opt(O.ADAM, h, np.zeros((2, lay.size)), np.array([0], np.int64), 0.0)
    ref = naive.Adam(0.05)
    want, Xd, Y = params.copy(), X.toarray(), naive.one_hot(labels, sizes[-1])
    losses = np.zeros(5)
    for s in range(first, last):
        rows = order[s * batch:(s + 1) * batch]
        Ws, bs = naive.unflatten(want, sizes, True)
        losses[s], dWs, dbs = naive.loss_and_grads(Ws, bs, Xd[rows], Y[rows], "relu", "softmax", "cross_entropy")
        losses[s] *= len(rows)
        want = ref.step(want, naive.flatten(dWs, dbs))
    step_loss = np.zeros(5)
    args = (E.TRAIN, np.zeros((0, sizes[-1])), step_loss, np.zeros(5), params, np.zeros(lay.size), kopt, net, data,
            order, first, last, batch, work)
    done, _, _ = kernel_calls.run(kind, maxparts, args, kernel_sparse(X, batch))
    assert done == last - first
    np.testing.assert_allclose(step_loss, losses, rtol=1e-12)
    np.testing.assert_allclose(params, want, rtol=1e-9, atol=1e-12)


# ---- the public calls: sparse equals dense ----------------------------------------------------
def twin_models(sizes, **kw):
    return (fastbp.MLP(sizes, dtype="float64", seed=4, **kw), fastbp.MLP(sizes, dtype="float64", seed=4, **kw))


PATHS = {"small": [12, 8, 3], "blas": [200, 64, 3]}


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("opt", OPTIMIZERS.names())
def test_fit_on_csr_equals_fit_on_the_dense_array(opt, path, bias):
    sizes = PATHS[path]
    X = sparse_matrix(150, sizes[0], seed=9)
    y = np.random.default_rng(10).integers(0, 3, 150)
    ms, md = twin_models(sizes, bias=bias)
    assert ms.workspace(32).small == (path == "small")
    kw = dict(epochs=3, batch_size=32, verbose=0)
    hs = ms.fit(X, y, optimizer=OPTIMIZERS.get(opt).cls(lr=1e-2), **kw)
    hd = md.fit(X.toarray(), y, optimizer=OPTIMIZERS.get(opt).cls(lr=1e-2), **kw)
    assert rel_diff(ms.params, md.params) < 1e-12
    np.testing.assert_allclose(hs.history["loss"], hd.history["loss"], rtol=1e-12)
    assert rel_diff(ms.predict(X), md.predict(X.toarray())) < 1e-12


@pytest.mark.parametrize("path", list(PATHS))
def test_predict_evaluate_loss_and_grad_train_step_on_csr_equal_dense(path):
    sizes = PATHS[path]
    X = sparse_matrix(90, sizes[0], seed=11)
    Xd = X.toarray()
    y = np.random.default_rng(12).integers(0, 3, 90)
    sw = np.random.default_rng(13).uniform(0.5, 2.0, 90)
    ms, md = twin_models(sizes)
    assert rel_diff(ms.predict(X), md.predict(Xd)) < 1e-12
    np.testing.assert_array_equal(ms.predict_classes(X), md.predict_classes(Xd))
    es, ed = ms.evaluate(X, y, sample_weight=sw), md.evaluate(Xd, y, sample_weight=sw)
    assert es["loss"] == pytest.approx(ed["loss"], rel=1e-12) and es["accuracy"] == ed["accuracy"]
    (ls, gs), (ld, gd) = ms.loss_and_grad(X[:20], y[:20]), md.loss_and_grad(Xd[:20], y[:20])
    assert ls == pytest.approx(ld, rel=1e-12) and rel_diff(gs, gd) < 1e-12
    os_, od = fastbp.Adam(lr=1e-2), fastbp.Adam(lr=1e-2)
    for i in range(3):
        rows = slice(20 * i, 20 * i + 20)
        assert ms.train_step(X[rows], y[rows], os_) == pytest.approx(md.train_step(Xd[rows], y[rows], od), rel=1e-12)
    assert rel_diff(ms.params, md.params) < 1e-12


# batch norm without bias: a bias before it has a zero gradient, whose rounding noise Adam scales
# up to steps of 1e-10 that differ between any two summation orders
@pytest.mark.parametrize("layer0", [dict(norm="layer"), dict(norm="batch", bias=False), dict(dropout=0.3),
                                    dict(activation="gelu", l2=1e-3)])
def test_layer_options_after_a_sparse_first_layer(layer0):
    """The sparse product replaces only layer 0's dense product: its norm, activation, dropout
    and penalty run as for dense input (the featured kernels, one and two parts)."""
    X = sparse_matrix(120, 200, seed=14)
    y = np.random.default_rng(15).integers(0, 3, 120)
    ms, md = twin_models([200, 64, 32, 3], **layer0)
    kw = dict(epochs=3, batch_size=40, verbose=0, validation_split=0.25)
    hs = ms.fit(X, y, optimizer=fastbp.Adam(lr=1e-2), **kw)
    hd = md.fit(X.toarray(), y, optimizer=fastbp.Adam(lr=1e-2), **kw)
    assert rel_diff(ms.params, md.params) < 1e-12 and rel_diff(ms.buffers, md.buffers) < 1e-12
    np.testing.assert_allclose(hs.history["val_loss"], hd.history["val_loss"], rtol=1e-12)
    (ls, gs), (ld, gd) = ms.loss_and_grad(X[:30], y[:30]), md.loss_and_grad(X[:30].toarray(), y[:30])
    assert ls == pytest.approx(ld, rel=1e-12) and rel_diff(gs, gd) < 1e-12


def test_deterministic_sparse_training_does_not_depend_on_the_thread_count():
    X = sparse_matrix(256, 3000, seed=16, density=0.02)
    y = np.random.default_rng(17).integers(0, 3, 256)
    params = []
    saved = fastbp.get_num_threads()
    try:
        for threads in (1, 2):
            fastbp.set_num_threads(threads)
            m = fastbp.MLP([3000, 512, 3], seed=0, deterministic=True)
            m.fit(X, y, epochs=2, batch_size=128, verbose=0)
            params.append(m.params.copy())
    finally:
        fastbp.set_num_threads(saved)
    np.testing.assert_array_equal(params[0], params[1])


def test_other_formats_and_validation_data_are_taken_as_csr():
    X = sparse_matrix(100, 40, seed=18)
    y = np.random.default_rng(19).integers(0, 3, 100)
    out = []
    for Xin, vin in ((X, X[:30]), (X.tocoo(), X[:30].tocsc()), (sp.csr_array(X), sp.lil_matrix(X[:30]))):
        m = fastbp.MLP([40, 16, 3], dtype="float64", seed=0)
        h = m.fit(Xin, y, epochs=2, batch_size=25, verbose=0, validation_data=(vin, y[:30]))
        out.append((m.params.copy(), h.history["val_loss"]))
    for params, val in out[1:]:
        np.testing.assert_array_equal(params, out[0][0])
        assert val == out[0][1]


def test_unsorted_and_duplicate_indices_are_summed_in_a_copy():
    indptr = np.array([0, 3, 4, 6])
    indices = np.array([4, 0, 4, 2, 3, 1])                    # row 0: unsorted, feature 4 twice
    values = np.array([1.0, 2.0, 0.5, -1.0, 3.0, 4.0])
    X = sp.csr_matrix((values, indices, indptr), shape=(3, 5))
    before = X.indices.copy()
    m = fastbp.MLP([5, 4, 2], dtype="float64", seed=0)
    rows = sparse_features(m, X)
    np.testing.assert_array_equal(rows.indices[rows.indptr[0]:rows.indptr[1]], [0, 4])
    np.testing.assert_array_equal(rows.values[rows.indptr[0]:rows.indptr[1]], [2.0, 1.5])
    np.testing.assert_array_equal(X.indices, before)         # the caller's matrix as it was
    np.testing.assert_allclose(m.predict(X), m.predict(X.toarray()), rtol=1e-14)


def test_float32_values_are_converted_once_and_kept_read_only():
    X = sparse_matrix(20, 10, seed=20)
    m = fastbp.MLP([10, 4, 2], seed=0)
    rows = sparse_features(m, X)
    assert rows.values.dtype == np.float32 and rows.indices.dtype == np.int32 and rows.indptr.dtype == np.int64
    assert not rows.values.flags.writeable and X.data.flags.writeable


@pytest.mark.parametrize("make,message", [
    (lambda X: X[:, :9], r"X: expected 10 features \(the model's input width\), got 9"),
    (lambda X: X[:0], "X: expected at least one sample"),
    (lambda X: sp.csr_matrix((np.array([1.0, np.nan]), np.array([0, 3]), np.array([0, 1, 2, 2])), shape=(3, 10)),
     "X: expected finite values, found nan at row 1, column 3"),
    (lambda X: sp.csr_matrix((np.array([np.inf]), np.array([2]), np.array([0, 0, 1])), shape=(2, 10)),
     "X: expected finite values, found inf at row 1, column 2"),
    (lambda X: sp.csr_matrix((np.array([1e300]), np.array([2]), np.array([0, 1])), shape=(1, 10)),
     "beyond the range of float32"),
])
def test_bad_sparse_input_gets_one_clear_error(make, message):
    X = make(sparse_matrix(5, 10, seed=21))
    m = fastbp.MLP([10, 4, 2], seed=0)
    before = m.params.copy()
    with pytest.raises(ValueError, match=message):
        m.fit(X, np.zeros(X.shape[0], np.int64), epochs=1, verbose=0)
    np.testing.assert_array_equal(m.params, before)


def test_out_of_range_indices_and_a_broken_indptr_are_errors():
    m = fastbp.MLP([10, 4, 2], seed=0)
    X = sp.csr_matrix((3, 10))
    X.indices, X.data, X.indptr = np.array([0, 12], np.int32), np.array([1.0, 2.0]), np.array([0, 1, 2, 2], np.int32)
    with pytest.raises(ValueError, match=r"X: column indices must lie in \[0, 9\] for 10 features, got 12 in row 1"):
        m.predict(X)
    X.indices, X.indptr = np.array([0, 1], np.int32), np.array([0, 2, 1, 2], np.int32)
    with pytest.raises(ValueError, match="X: a CSR matrix with 3 rows needs indptr"):
        m.predict(X)
    with pytest.raises(ValueError, match="validation_data\\[0\\]: expected 10 features"):
        m.fit(sparse_matrix(5, 10), np.zeros(5, np.int64), verbose=0,
              validation_data=(sparse_matrix(5, 11), np.zeros(5, np.int64)))
    with pytest.raises(ValueError, match="X: expected numeric data"):
        m.predict(sp.csr_matrix(np.ones((2, 10), np.complex128)))


# ---- memory: never densified --------------------------------------------------------------------
CHILD = r"""
import json, resource, sys
import numpy as np, scipy.sparse as sp
import fastbp
n, d, k = map(int, sys.argv[1:4])
rng = np.random.default_rng(0)
cols = np.sort(rng.integers(0, d - k + 1, (n, k), dtype=np.int32), axis=1) + np.arange(k, dtype=np.int32)
X = sp.csr_matrix((rng.random(n * k, dtype=np.float32), cols.ravel(), np.arange(0, n * k + 1, k)), shape=(n, d))
y = rng.integers(0, 4, n)
del cols
m = fastbp.MLP([d, 32, 4], seed=0)
m.fit(X[:512], y[:512], epochs=1, batch_size=256, verbose=0)      # compiles (or loads) the kernels
m.evaluate(X[:512], y[:512])
try:                                  # the peak from here on: data and training, not the compiler
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    reset = True
except OSError:
    reset = False
m.fit(X, y, epochs=1, batch_size=256, verbose=0)
m.evaluate(X, y)
if reset:
    peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
else:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"maxrss_mib": peak}))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB on Linux")
def test_training_on_csr_stays_far_below_its_dense_size():
    """A 2 GiB-dense (float32) CSR matrix of 20 entries a row: fit and evaluate in a child
    process whose peak resident memory (interpreter, numba, scipy and data included; after a
    warm-up that compiles, when Linux lets the peak be reset) stays under a quarter of that."""
    n, d, k = 262_144, 2048, 20
    p = subprocess.run([sys.executable, "-c", CHILD, str(n), str(d), str(k)], capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stderr
    peak = json.loads(p.stdout.strip().splitlines()[-1])["maxrss_mib"]
    dense_mib = n * d * 4 / 2**20
    assert peak < dense_mib / 4, f"peak RSS {peak:.0f} MiB for a matrix of {dense_mib:.0f} MiB dense"


# ---- scikit-learn estimators --------------------------------------------------------------------
@pytest.mark.parametrize("kw", [dict(solver="adam", early_stopping=True, validation_fraction=0.2),
                                dict(solver="lbfgs"), dict(solver="sgd")])
def test_sklearn_estimators_take_csr_without_densifying(kw, monkeypatch):
    from fastbp.sklearn import MLPClassifier, MLPRegressor
    X = sparse_matrix(120, 30, seed=22)
    Xd = X.toarray()
    y = np.random.default_rng(23).integers(0, 3, 120)
    opts = dict(hidden_layer_sizes=(16,), max_iter=5, random_state=0, **kw)
    with pytest.warns(Warning):                             # max_iter=5: not converged
        dense = [MLPClassifier(**opts).fit(Xd, y), MLPRegressor(**opts).fit(Xd, y.astype(float))]

    for cls in (sp.csr_matrix, sp.coo_matrix):
        for name in ("toarray", "todense"):
            def refuse(self, *a, _f=getattr(cls, name), **k):     # X, or rows of it (the labels may be)
                assert self.shape[1] != X.shape[1], "X densified"
                return _f(self, *a, **k)
            monkeypatch.setattr(cls, name, refuse)
    with pytest.warns(Warning):
        clf = MLPClassifier(**opts).fit(X, y)
        reg = MLPRegressor(**opts).fit(X.tocoo(), y.astype(float))
    for fitted, ref in zip((clf, reg), dense):
        assert rel_diff(fitted.model_.params, ref.model_.params) < 1e-12
    np.testing.assert_allclose(clf.predict_proba(X), dense[0].predict_proba(Xd), rtol=1e-12)
    np.testing.assert_allclose(reg.predict(X), dense[1].predict(Xd), rtol=1e-12)
