"""The core contract: the seeds' worked examples, gradients, the numpy reference, learning, determinism."""
import zlib

import numpy as np
import pytest

import fastbp
import naive

HIDDEN = ["linear", "sigmoid", "tanh", "relu"]
PAIRS = [("linear", "mse"), ("linear", "half_mse"), ("sigmoid", "mse"), ("sigmoid", "half_mse"),
         ("sigmoid", "binary_cross_entropy"), ("softmax", "cross_entropy"), ("softmax", "mse"),
         ("softmax", "half_mse")]


def targets(rng, out, loss, n, k, int_labels=True):
    """Targets of the right kind for an output/loss pair, and the same as (n, k) floats."""
    if loss == "cross_entropy":
        y = rng.integers(0, k, n)
        return (y, naive.one_hot(y, k)) if int_labels else (naive.one_hot(y, k),) * 2
    if loss == "binary_cross_entropy":
        Y = rng.integers(0, 2, (n, k)).astype(float)
        return Y, Y
    Y = rng.random((n, k)) if out != "linear" else rng.standard_normal((n, k))
    return Y, Y


# ---- the seeds ----------------------------------------------------------------------------------
def seed_net():
    m = fastbp.MLP([2, 3, 1], activation="linear", output="linear", loss="half_mse", bias=False, dtype="float64")
    m.layers[0].W[...] = 0.5
    m.layers[1].W[...] = 1.0
    return m


def test_seed_002_worked_example():
    # x = (40, 80), target 60, W1 = 0.5, W2 = 1: z = 60 each, prediction 180, loss 0.5*120^2 = 7200.
    m = seed_net()
    X, y = np.array([[40.0, 80.0]]), np.array([[60.0]])
    assert m.predict(X)[0, 0] == pytest.approx(180.0, abs=1e-9)
    assert m.evaluate(X, y)["loss"] == pytest.approx(7200.0, abs=1e-9)
    # One SGD step, lr 1e-5: dW2 = 120*60, dW1[i] = 120*x_i -> W2 = 0.928, W1 = (0.452, 0.404).
    loss_before = m.train_step(X, y, fastbp.SGD(lr=1e-5))
    assert loss_before == pytest.approx(7200.0, abs=1e-9)
    assert m.predict(X)[0, 0] == pytest.approx(140.3136, abs=1e-9)
    assert m.evaluate(X, y)["loss"] == pytest.approx(3225.13717248, abs=1e-9)
    np.testing.assert_allclose(m.layers[1].W, 0.928, atol=1e-12)
    np.testing.assert_allclose(m.layers[0].W, [[0.452] * 3, [0.404] * 3], atol=1e-12)


def test_seed_002_gradients_match_the_hand_derivation():
    m = seed_net()
    X, y = np.array([[40.0, 80.0]]), np.array([[60.0]])
    loss, g = m.loss_and_grad(X, y)
    d = 180.0 - 60.0                        # d loss / d prediction
    expected_W1 = np.array([[d * 1.0 * 40] * 3, [d * 1.0 * 80] * 3])
    expected_W2 = np.full((3, 1), d * 60.0)  # each hidden unit is 40*0.5 + 80*0.5 = 60
    np.testing.assert_allclose(g, np.concatenate([expected_W1.ravel(), expected_W2.ravel()]), rtol=1e-14)


def test_seed_004_one_weight_example():
    # minimize (w + 1)^2 from w = 5 with lr 0.2 for 40 steps: w -> -1
    w = np.array([5.0])
    opt = fastbp.SGD(lr=0.2)
    for _ in range(40):
        opt.step(w, 2 * (w + 1))
    assert abs(w[0] + 1) < 1e-6


# ---- gradients ----------------------------------------------------------------------------------
@pytest.mark.parametrize("act", HIDDEN)
@pytest.mark.parametrize("out,loss", PAIRS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch", [1, 13])
def test_gradient_matches_finite_differences(act, out, loss, bias, batch):
    rng = np.random.default_rng(zlib.crc32(repr((act, out, loss, bias, batch)).encode()))
    m = fastbp.MLP([7, 5, 4, 3], activation=act, output=out, loss=loss, bias=bias, dtype="float64",
                   init="normal", init_scale=0.5, seed=1)
    if bias:
        m.params[...] = rng.standard_normal(m.n_params) * 0.5   # nonzero biases too
    X = rng.standard_normal((batch, 7))
    if act == "relu":
        # Finite differences are meaningless across relu's kink: draw X until every hidden
        # pre-activation is well away from 0 (the steps below move them by < 1e-3).
        Ws, bs = naive.unflatten(m.params, m.sizes, bias)
        while min(np.abs(z).min() for z in naive.forward(Ws, bs, X, act, out)[1][:-1]) < 5e-3:
            X = rng.standard_normal((batch, 7))
    y, _ = targets(rng, out, loss, batch, 3)
    sw = rng.random(batch) + 0.5
    _, g = m.loss_and_grad(X, y, sample_weight=sw)
    # Fourth-order central differences: truncation error O(h^4), rounding O(eps/h).
    fd = np.empty_like(g)
    h = 1e-4
    p0 = m.params.copy()

    def loss_at(i, x):
        m.params[i] = x
        return m.loss_and_grad(X, y, sample_weight=sw)[0]

    for i in range(m.n_params):
        f = [loss_at(i, p0[i] + k * h) for k in (-2, -1, 1, 2)]
        m.params[i] = p0[i]
        fd[i] = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h)
    rel = np.abs(g - fd) / np.maximum(np.maximum(np.abs(g), np.abs(fd)), 1e-4)
    assert rel.max() < 1e-6, (rel.max(), int(rel.argmax()))


# ---- against the numpy reference ----------------------------------------------------------------
NETS = [([7, 5, 4, 3], 13), ([300, 200, 50, 4], 300)]   # the second takes the BLAS and parallel paths


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("sizes,n", NETS)
@pytest.mark.parametrize("act", HIDDEN)
@pytest.mark.parametrize("out,loss", PAIRS)
def test_forward_and_backward_match_reference(dtype, tol, sizes, n, act, out, loss):
    rng = np.random.default_rng(7)
    m = fastbp.MLP(sizes, activation=act, output=out, loss=loss, dtype=dtype, seed=3)
    m.params[...] = rng.standard_normal(m.n_params) * 0.1
    X = rng.standard_normal((n, sizes[0]))
    y, Y = targets(rng, out, loss, n, sizes[-1])
    Ws, bs = naive.unflatten(m.params.astype(np.float64), sizes, True)
    A, _ = naive.forward(Ws, bs, X.astype(dtype).astype(np.float64), act, out)
    np.testing.assert_allclose(m.predict(X), A[-1], rtol=tol, atol=tol)
    L, dWs, dbs = naive.loss_and_grads(Ws, bs, X.astype(dtype).astype(np.float64), Y, act, out, loss)
    loss_value, g = m.loss_and_grad(X, y)
    assert loss_value == pytest.approx(L, rel=tol, abs=tol)
    np.testing.assert_allclose(g, naive.flatten(dWs, dbs), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("sizes,n", NETS)
def test_ten_optimizer_steps_match_reference(dtype, tol, name, sizes, n):
    rng = np.random.default_rng(11)
    m = fastbp.MLP(sizes, activation="tanh", output="softmax", loss="cross_entropy", dtype=dtype, seed=5)
    X = rng.standard_normal((n, sizes[0]))
    y = rng.integers(0, sizes[-1], n)
    Xr = X.astype(dtype).astype(np.float64)
    opt, ref = {"sgd": (fastbp.SGD(lr=0.1), naive.SGD(0.1)),
                "momentum": (fastbp.Momentum(lr=0.05, momentum=0.9), naive.Momentum(0.05, 0.9)),
                "nesterov": (fastbp.Nesterov(lr=0.05, momentum=0.9), naive.Momentum(0.05, 0.9, nesterov=True)),
                "adam": (fastbp.Adam(lr=1e-3), naive.Adam(1e-3))}[name]
    p = m.params.astype(np.float64)
    for _ in range(10):
        m.train_step(X, y, opt)
        Ws, bs = naive.unflatten(p, sizes, True)
        _, dWs, dbs = naive.loss_and_grads(Ws, bs, Xr, naive.one_hot(y, sizes[-1]), "tanh", "softmax", "cross_entropy")
        p = ref.step(p, naive.flatten(dWs, dbs))
    np.testing.assert_allclose(m.params, p, rtol=tol, atol=tol)


@pytest.mark.parametrize("sizes,n,batch", [([7, 5, 4, 3], 100, 32), ([300, 200, 50, 4], 700, 256)])
def test_fit_without_shuffle_replays_batches_in_order(sizes, n, batch):
    # n=100, batch 32 -> 4 updates per epoch, the last one on 4 rows; batches are rows in order.
    rng = np.random.default_rng(2)
    X = rng.standard_normal((n, sizes[0]))
    y = rng.integers(0, sizes[-1], n)
    m = fastbp.MLP(sizes, activation="relu", output="softmax", loss="cross_entropy", dtype="float64", seed=9)
    p = m.params.copy()
    opt = fastbp.Adam(lr=1e-2)
    hist = m.fit(X, y, epochs=2, batch_size=batch, optimizer=opt, shuffle=False, verbose=0)
    steps = -(-n // batch)
    assert opt.iterations == 2 * steps
    ref = naive.Adam(1e-2)
    losses = []
    for _ in range(2):
        total = 0.0
        for s in range(0, n, batch):
            Ws, bs = naive.unflatten(p, sizes, True)
            L, dWs, dbs = naive.loss_and_grads(Ws, bs, X[s:s + batch], naive.one_hot(y[s:s + batch], sizes[-1]),
                                               "relu", "softmax", "cross_entropy")
            total += L * len(X[s:s + batch])
            p = ref.step(p, naive.flatten(dWs, dbs))
        losses.append(total / n)
    np.testing.assert_allclose(m.params, p, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(hist.history["loss"], losses, rtol=1e-12)


def test_fit_epoch_makes_ceil_n_over_batch_updates():
    X = np.random.default_rng(0).standard_normal((100, 3))
    y = np.random.default_rng(1).integers(0, 2, 100)
    m = fastbp.MLP([3, 4, 2], seed=0)
    opt = fastbp.SGD(lr=0.01)
    m.fit(X, y, epochs=1, batch_size=32, optimizer=opt, verbose=0)
    assert opt.iterations == 4


# ---- it learns ----------------------------------------------------------------------------------
def test_classifier_learns_separable_data():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((4, 10)) * 4
    y = rng.integers(0, 4, 2000)
    X = centers[y] + rng.standard_normal((2000, 10))
    m = fastbp.MLP([10, 32, 4], seed=0)
    m.fit(X, y, epochs=10, batch_size=32, optimizer=fastbp.Adam(lr=1e-2), verbose=0)
    assert m.evaluate(X, y)["accuracy"] >= 0.97


def test_regressor_cuts_its_loss_100x():
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, (2000, 3))
    y = np.sin(2 * X[:, :1]) + X[:, 1:2] * X[:, 2:3]
    m = fastbp.MLP([3, 64, 64, 1], activation="tanh", output="linear", loss="mse", seed=0)
    y = y * 10
    before = m.evaluate(X, y)["loss"]
    m.fit(X, y, epochs=60, batch_size=32, optimizer=fastbp.Adam(lr=3e-3), verbose=0)
    assert m.evaluate(X, y)["loss"] <= before / 100


# ---- determinism --------------------------------------------------------------------------------
def train_once(sizes=(64, 128, 64, 10), dtype="float32", threads=None, deterministic=False):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((3000, sizes[0]))
    y = rng.integers(0, sizes[-1], 3000)
    try:
        if threads:
            fastbp.set_num_threads(threads)
        m = fastbp.MLP(list(sizes), dtype=dtype, seed=12, deterministic=deterministic)
        m.fit(X, y, epochs=2, batch_size=256, optimizer="adam", verbose=0)
    finally:
        fastbp.set_num_threads(None)
    return m.params.copy()


def test_same_seed_gives_bit_identical_params():
    assert np.array_equal(train_once(), train_once())


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("sizes", [(64, 128, 64, 10), (512, 512, 256, 10), (4, 16, 3)])
def test_params_do_not_depend_on_the_thread_count(sizes, deterministic):
    # Products are split into parts fixed by the shapes and the CPUs the process may use
    # (deterministic=True: the shapes alone), never by the thread count: fit may then follow the
    # machine's load without changing a bit.
    import numba
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 threads")
    one = train_once(sizes, threads=1, deterministic=deterministic)
    assert np.array_equal(one, train_once(sizes, threads=2, deterministic=deterministic))
    assert np.array_equal(one, train_once(sizes, deterministic=deterministic))     # following the load


def test_predict_does_not_depend_on_the_thread_count():
    X = np.random.default_rng(5).standard_normal((20000, 512))
    m = fastbp.MLP([512, 512, 256, 10], seed=3)
    try:
        fastbp.set_num_threads(1)
        one = m.predict(X)
    finally:
        fastbp.set_num_threads(None)
    assert np.array_equal(one, m.predict(X))


# ---- the flat buffer ----------------------------------------------------------------------------
def test_layers_are_views_into_params():
    m = fastbp.MLP([3, 4, 2], seed=0)
    assert m.params.ndim == 1 and m.params.flags.c_contiguous
    assert m.n_params == 3 * 4 + 4 + 4 * 2 + 2
    m.layers[1].W[0, 1] = 42.0
    assert 42.0 in m.params
    m.params[:] = 0
    assert not m.layers[0].W.any() and not m.layers[1].b.any()
    assert m.layers[0].W.shape == (3, 4) and m.layers[0].b.shape == (4,)
    assert fastbp.MLP([3, 4, 2], bias=False).layers[0].b is None


@pytest.mark.parametrize("init,act", [("he", "relu"), ("glorot", "tanh"), ("normal", "relu"), ("auto", "relu")])
def test_initialization_is_seeded_and_scaled(init, act):
    a = fastbp.MLP([400, 300, 10], activation=act, init=init, init_scale=1.0, seed=3, dtype="float64")
    b = fastbp.MLP([400, 300, 10], activation=act, init=init, init_scale=1.0, seed=3, dtype="float64")
    assert np.array_equal(a.params, b.params)
    W = a.layers[0].W
    want = {"he": np.sqrt(2 / 400), "glorot": np.sqrt(2 / 700), "normal": 1.0, "auto": np.sqrt(2 / 400)}[init]
    assert W.std() == pytest.approx(want, rel=0.02)
    assert not a.layers[0].b.any()


def test_float32_is_default_and_float64_available():
    assert fastbp.MLP([2, 2]).params.dtype == np.float32
    assert fastbp.MLP([2, 2], dtype="float64").params.dtype == np.float64


def test_save_and_load_roundtrip(tmp_path):
    m = fastbp.MLP([5, 7, 3], activation="tanh", seed=1)
    X = np.random.default_rng(0).standard_normal((20, 5))
    m.fit(X, np.arange(20) % 3, epochs=2, verbose=0)
    m.save(tmp_path / "m.fbp")
    m2 = fastbp.load(tmp_path / "m.fbp")
    assert m2.config() == m.config()
    assert np.array_equal(m2.params, m.params)
    assert np.array_equal(m2.predict(X), m.predict(X))


def test_optimizer_keeps_state_between_fit_calls():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 4)), rng.integers(0, 3, 64)
    a, b = fastbp.MLP([4, 8, 3], seed=0), fastbp.MLP([4, 8, 3], seed=0)
    oa, ob = fastbp.Adam(lr=1e-2), fastbp.Adam(lr=1e-2)
    a.fit(X, y, epochs=2, batch_size=16, optimizer=oa, shuffle=False, verbose=0)
    b.fit(X, y, epochs=1, batch_size=16, optimizer=ob, shuffle=False, verbose=0)
    b.fit(X, y, epochs=1, batch_size=16, optimizer=ob, shuffle=False, verbose=0)
    assert ob.iterations == 8
    assert np.array_equal(a.params, b.params)


@pytest.mark.parametrize("name,make", [("sgd", lambda: fastbp.SGD()), ("momentum", lambda: fastbp.Momentum()),
                                       ("nesterov", lambda: fastbp.Nesterov()), ("adam", lambda: fastbp.Adam()),
                                       ("adamw", lambda: fastbp.AdamW()), ("Adam", lambda: fastbp.Adam())])
def test_optimizer_names_train_as_the_default_optimizer_objects(name, make):
    """optimizer="adam" trains exactly as optimizer=fastbp.Adam() (its default arguments)."""
    X, y = np.random.default_rng(0).standard_normal((40, 2)), np.arange(40) % 2
    by_name, by_object = fastbp.MLP([2, 3, 2], seed=0), fastbp.MLP([2, 3, 2], seed=0)
    by_name.fit(X, y, epochs=2, batch_size=8, optimizer=name, verbose=0)
    by_object.fit(X, y, epochs=2, batch_size=8, optimizer=make(), verbose=0)
    assert by_name.optimizer.config() == by_object.optimizer.config()
    assert np.array_equal(by_name.params, by_object.params) and not np.array_equal(by_name.params, fastbp.MLP(
        [2, 3, 2], seed=0).params)


def test_pickle_keeps_layers_as_views_into_params():
    import pickle
    m = fastbp.MLP([3, 5, 2], seed=0)
    X = np.random.default_rng(0).standard_normal((10, 3))
    m.fit(X, np.arange(10) % 2, epochs=1, verbose=0)
    m2 = pickle.loads(pickle.dumps(m))
    assert np.array_equal(m2.params, m.params) and np.array_equal(m2.predict(X), m.predict(X))
    m2.layers[0].W[0, 0] = 123.0
    assert m2.params[0] == 123.0 and m.params[0] != 123.0


def test_read_only_inputs_use_the_same_compiled_kernels():
    from fastbp.kernels import epoch
    X = np.random.default_rng(0).standard_normal((40, 3))
    y = np.arange(40) % 2
    m = fastbp.MLP([3, 5, 2], seed=0, dtype="float64")
    m.fit(X, y, epochs=1, verbose=0)
    m.predict(X)
    n_small, n_big = len(epoch.run_batches_small.signatures), len(epoch.run_batches.signatures)
    assert n_small >= 1
    Xr, yr = X.copy(), y.copy()
    Xr.flags.writeable = yr.flags.writeable = False
    m.fit(Xr, yr, epochs=1, verbose=0)
    m.predict(Xr)
    assert len(epoch.run_batches_small.signatures) == n_small
    assert len(epoch.run_batches.signatures) == n_big
