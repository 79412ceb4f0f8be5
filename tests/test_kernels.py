"""Each kernel against its plain-numpy reference (tests/naive.py or a one-line numpy expression)."""
import subprocess
import sys

import numpy as np
import pytest
from numba import njit
from scipy.special import erf as scipy_erf

import kernel_calls
import naive
from fastbp.kernels import activations as A
from fastbp.kernels import blas
from fastbp.kernels import losses as Lo
from fastbp.kernels import mathfn as M
from fastbp.kernels import optimizers as O
from fastbp._layout import Layout
from fastbp.kernels import epoch as E
from fastbp.kernels.args import Opt, make_net, plain_net, workspace_arrays
from fastbp.kernels.parts import DETERMINISTIC, n_parts, part_range

TOL = {np.float32: 2e-6, np.float64: 1e-13}


@njit
def compiled_gemm(ta, tb, m, n, k, A, aoff, lda, B, boff, ldb, beta, C, coff, ldc, iw, fw):
    blas.gemm(ta, tb, m, n, k, A, aoff, lda, B, boff, ldb, beta, C, coff, ldc, iw, fw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("m,n,k", [(3, 4, 5), (32, 16, 4), (64, 48, 40), (130, 70, 90)])
@pytest.mark.parametrize("gemm", ["compiled", "numpy fallback"])
def test_gemm_matches_numpy(gemm, dtype, ta, tb, m, n, k):
    """The BLAS call the kernels make (and its numpy stand-in for NUMBA_DISABLE_JIT), on blocks
    with offsets and leading dimensions."""
    rng = np.random.default_rng(m * n * k)
    lda, ldb, ldc = (m if ta else k) + 3, (k if tb else n) + 2, n + 5
    A_ = rng.standard_normal(7 + (k if ta else m) * lda).astype(dtype)
    B_ = rng.standard_normal(5 + (n if tb else k) * ldb).astype(dtype)
    C = rng.standard_normal(11 + m * ldc).astype(dtype)
    a = A_[7:].reshape(-1, lda)[:, :(m if ta else k)]
    b = B_[5:].reshape(-1, ldb)[:, :(k if tb else n)]
    c0 = C[11:].reshape(m, ldc)[:, :n].copy()
    pad0, head0 = C[11:].reshape(m, ldc)[:, n:].copy(), C[:11].copy()
    want = (a.T if ta else a) @ (b.T if tb else b) + 0.5 * c0
    iw, fw = np.zeros(8, np.int32), np.zeros(2, dtype)
    (compiled_gemm if gemm == "compiled" else blas.gemm)(ta, tb, m, n, k, A_, 7, lda, B_, 5, ldb, 0.5, C, 11, ldc, iw, fw)
    np.testing.assert_allclose(C[11:].reshape(m, ldc)[:, :n], want, rtol=TOL[dtype] * k, atol=TOL[dtype] * k)
    # what lies between the rows (the leading-dimension padding) and before the block is untouched
    assert np.array_equal(C[11:].reshape(m, ldc)[:, n:], pad0) and np.array_equal(C[:11], head0)


def test_blas_pointers_are_scipys_and_scipy_linalg_stays_importable():
    """The kernels call the very sgemm/dgemm scipy exports for Cython, found without importing
    the scipy.linalg package (its import costs ~110 ms and ~15 MiB), and a user's later
    ``import scipy.linalg`` still works and shares the one extension module."""
    code = (
        "import sys, fastbp\n"
        "assert 'scipy.linalg' not in sys.modules, 'fastbp imported scipy.linalg'\n"
        "from fastbp.kernels import blas\n"
        "import scipy.linalg, scipy.linalg.cython_blas as cb\n"
        "from numba.extending import get_cython_function_address as address\n"
        "assert cb is blas._blas\n"
        "for name in ('sgemm', 'dgemm'):\n"
        "    assert blas._function_address(blas._blas, name) == address('scipy.linalg.cython_blas', name)\n"
        "import numpy as np\n"
        "assert np.allclose(scipy.linalg.solve(np.eye(3), np.ones(3)), 1)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["linear", "sigmoid", "tanh", "relu", "softmax"])
@pytest.mark.parametrize("bias", [True, False])
def test_bias_act_forward(dtype, name, bias):
    rng = np.random.default_rng(0)
    Z = (rng.standard_normal(5 * 9) * 4).astype(dtype)
    b = rng.standard_normal(12).astype(dtype)
    want = naive.act_forward(name, Z.reshape(5, 9).astype(np.float64) + (b[3:12] if bias else 0))
    code = (A.OUTPUT if name == "softmax" else A.HIDDEN).code(name)
    A.bias_act_forward(Z, 0, 5, 9, b, 3 if bias else -1, code)
    np.testing.assert_allclose(Z.reshape(5, 9), want, rtol=TOL[dtype] * 4, atol=TOL[dtype])


@pytest.mark.parametrize("name", ["linear", "sigmoid", "tanh", "relu"])
def test_act_backward_is_derivative_from_output(name):
    rng = np.random.default_rng(1)
    z = rng.standard_normal((4, 6))
    a = naive.act_forward(name, z)
    G = rng.standard_normal(24)
    want = G.reshape(4, 6) * naive.act_derivative(name, z)
    A.act_backward(G, 0, a.ravel().copy(), 0, 4, 6, A.HIDDEN.code(name))
    np.testing.assert_allclose(G.reshape(4, 6), want, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vectorizable_math_matches_libm(dtype):
    @njit
    def apply(x, out, which):
        for i in range(x.shape[0]):
            if which == 0:
                out[i] = M.fexp(x[i])
            elif which == 1:
                out[i] = M.fexpm1(x[i])
            elif which == 2:
                out[i] = M.fsigmoid(x[i])
            elif which == 3:
                out[i] = M.ftanh(x[i])
            elif which == 4:
                out[i] = M.ferf(x[i])
            else:
                out[i] = M.flog1p(x[i])

    rng = np.random.default_rng(2)
    hi = 700 if dtype == np.float64 else 85
    x = np.concatenate([rng.uniform(-30, 30, 20000), rng.uniform(-1e-4, 1e-4, 2000), rng.uniform(-hi, hi, 2000),
                        [0.0, -0.0, 1e-30, -1e-30]]).astype(dtype)
    xd = x.astype(np.float64)
    refs = [np.exp(xd), np.expm1(xd), 1 / (1 + np.exp(-xd)), np.tanh(xd)]
    out = np.empty_like(x)
    for which, ref in enumerate(refs):
        apply(x, out, which)
        rel = np.abs(out - ref) / np.maximum(np.abs(ref), np.finfo(dtype).tiny)
        assert rel.max() <= 3 * np.finfo(dtype).eps, (which, rel.max())

    # erf and log1p: error in ulp of dtype at the float64 reference; each range of fdlibm's
    # algorithm, both sides of its boundaries, subnormals and the special values.
    f64, fi = dtype == np.float64, np.finfo(dtype)
    sub = fi.tiny / 1024

    def around(*points):
        v = np.array(points, dtype)
        return np.concatenate([np.nextafter(v, -np.inf), v, np.nextafter(v, np.inf)])
    specials = [0.0, -0.0, fi.tiny, -fi.tiny, sub, -sub, fi.max, -fi.max, np.inf, -np.inf, np.nan]
    tiny_exp, huge_exp = (-300, 300) if f64 else (-40, 38)
    rng = np.random.default_rng(5)
    signs = rng.choice([-1.0, 1.0], 4000)
    tiny = signs * 10.0 ** rng.uniform(tiny_exp, 0, 4000)
    # the ranges' boundaries: fdlibm's in float64, the two polynomials' in float32 (mathfn.py)
    bounds = (0.84375, 1.25, M._ERF_SPLIT64, 6.0) if f64 else (M._ERF32_SPLIT, M._ERF32_ONE)
    erf_x = np.concatenate([rng.uniform(-7, 7, 20000), rng.uniform(-1.3, 1.3, 5000), rng.uniform(-4.5, 4.5, 20000),
                            tiny, around(2.0 ** -28, *bounds), -around(*bounds), specials]).astype(dtype)
    log1p_x = np.concatenate([rng.uniform(-1, 3, 20000), tiny, 10.0 ** rng.uniform(tiny_exp, 0, 2000) - 1,
                              10.0 ** rng.uniform(0, huge_exp, 2000),
                              around(2.0 ** -54, 2.0 ** -29, 2.0 ** -24, 2.0 ** -15, np.sqrt(2) - 1, np.sqrt(0.5) - 1,
                                     -0.5, 1.0, 2.0 ** 24, 2.0 ** 53, -1.0), [-2.0], specials]).astype(dtype)
    # scipy's erf (Cephes) is itself up to 3 ulp from glibc's: 4 for float64 erf
    with np.errstate(divide="ignore", invalid="ignore"):
        cases = [("erf", 4, erf_x, scipy_erf(erf_x.astype(np.float64)), 4 if f64 else 1.25),
                 ("log1p", 5, log1p_x, np.log1p(log1p_x.astype(np.float64)), 2)]
    for name, which, x, ref, max_ulp in cases:
        out = np.empty_like(x)
        apply(x, out, which)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(ref), err_msg=name)
        inf, zero = np.isinf(ref), ref == 0
        np.testing.assert_array_equal(out[inf], ref[inf], err_msg=name)
        np.testing.assert_array_equal(np.signbit(out[zero]), np.signbit(ref[zero]), err_msg=name)
        fin = np.isfinite(ref)
        ulp = np.abs(out[fin] - ref[fin]) / np.spacing(np.abs(ref[fin]).astype(dtype)).astype(np.float64)
        worst = int(np.argmax(ulp))
        assert ulp.max() <= max_ulp, f"{name}: {ulp.max():.2f} ulp at x={x[fin][worst]!r}"


def test_vectorizable_math_saturates_without_overflow():
    @njit
    def f(x):
        return M.fexp(x), M.fsigmoid(x), M.ftanh(x)
    for x in (1e6, -1e6, 1000.0, -1000.0):
        e, s, t = f(x)
        assert np.isfinite(e) and 0.0 <= s <= 1.0 and -1.0 <= t <= 1.0
    assert f(-1e6)[1] == 0.0 or f(-1e6)[1] < 1e-300
    assert f(1e6)[1] == 1.0 and f(1e6)[2] == 1.0


@pytest.mark.parametrize("out,loss", [("softmax", "cross_entropy"), ("sigmoid", "binary_cross_entropy"),
                                      ("linear", "mse"), ("sigmoid", "half_mse"), ("softmax", "mse")])
@pytest.mark.parametrize("weighted", [False, True])
def test_output_loss_matches_reference(out, loss, weighted):
    rng = np.random.default_rng(3)
    n, k = 6, 4
    Z = rng.standard_normal((n, k)) * 3
    if loss == "cross_entropy":
        yint = rng.integers(0, k, n)
        Y = naive.one_hot(yint, k)
        Yf = np.zeros((0, 0))
    else:
        Y = rng.integers(0, 2, (n, k)).astype(float) if "binary" in loss else rng.random((n, k))
        yint, Yf = np.zeros(0, np.int64), Y
    sw = rng.random(n) + 0.5 if weighted else np.zeros(0)
    P = naive.act_forward(out, Z)
    li, dP, logit = naive.loss_and_dP(loss, P, Y, Z)
    w = sw if weighted else np.ones(n)
    if logit or out == "linear":
        dZ = dP
    elif out == "sigmoid":
        dZ = dP * P * (1 - P)
    else:
        dZ = np.stack([(np.diag(p) - np.outer(p, p)) @ g for p, g in zip(P, dP)])
    Zk, G, rowloss = Z.ravel().copy(), np.zeros(n * k), np.zeros(n)
    data = kernel_calls.data(np.zeros((n, 1)), Yf, yint, sw)
    net = make_net([1, k], [0], [-1], [A.OUTPUT.code(out)], Lo.LOSSES.code(loss))
    Lo.output_loss(G, 0, rowloss, Zk, 0, n, k, plain_net(net), data, np.arange(n), 1.0 / n, True, None)
    np.testing.assert_allclose(Zk.reshape(n, k), P, rtol=1e-13)
    np.testing.assert_allclose(rowloss, li * w, rtol=1e-12)
    np.testing.assert_allclose(G.reshape(n, k), dZ * w[:, None] / n, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("opt,n_states", [(O.SGD, 0), (O.MOMENTUM, 1), (O.ADAM, 2)])
@pytest.mark.parametrize("lo,hi", [(0, 50), (7, 31)])
def test_opt_update_range_touches_only_its_range(opt, n_states, lo, hi):
    rng = np.random.default_rng(4)
    p, g = rng.standard_normal(50), rng.standard_normal(50)
    state = rng.random((n_states, 50))
    h = np.zeros(O.N_HYPER)
    h[[O.H_LR, O.H_MOMENTUM, O.H_BETA1, O.H_BETA2, O.H_EPS]] = 0.1, 0.9, 0.9, 0.999, 1e-8
    p0, state0 = p.copy(), state.copy()
    O.opt_update_range(p, g, Opt(opt, h, state, np.zeros(1, np.int64), 0.0), 3, h[O.H_LR], 1.0, np.ones(1), lo, hi)
    r = slice(lo, hi)
    if opt == O.SGD:
        want = p0[r] - 0.1 * g[r]
    elif opt == O.MOMENTUM:
        v = 0.9 * state0[0, r] + g[r]
        want = p0[r] - 0.1 * v
        np.testing.assert_allclose(state[0, r], v, rtol=1e-15)
    else:
        m_ = 0.9 * state0[0, r] + 0.1 * g[r]
        v_ = 0.999 * state0[1, r] + 0.001 * g[r] ** 2
        np.testing.assert_allclose(state[:, r], [m_, v_], rtol=1e-15)
        want = p0[r] - 0.1 * (m_ / (1 - 0.9 ** 3)) / (np.sqrt(v_ / (1 - 0.999 ** 3)) + 1e-8)
    np.testing.assert_allclose(p[r], want, rtol=1e-13)
    outside = np.r_[0:lo, hi:50]
    assert np.array_equal(p[outside], p0[outside]) and np.array_equal(state[:, outside], state0[:, outside])


def test_clip_scale_is_torch_rule():
    g = np.array([3.0, 4.0])                     # norm 5
    assert O.clip_scale(g, 0.0) == 1.0            # 0: no clipping
    assert O.clip_scale(g, 10.0) == 1.0
    assert O.clip_scale(g, 1.0) == pytest.approx(1.0 / (5.0 + 1e-6))


def test_partitions():
    big = 1 << 30
    # deterministic: about DET_PART_ROWS rows a part, 2 to DET_MAX_PARTS parts, whatever the threads
    assert [n_parts(r, big, DETERMINISTIC) for r in (10, 256, 1024, 2047, 4096, 10_000)] == [2, 2, 4, 7, 8, 8]
    assert n_parts(256, big, 1) == 1                   # one CPU: one part
    assert n_parts(256, big, 2) == n_parts(4096, big, 2) == 2     # one part a CPU
    assert n_parts(40, big, 8) == 2                    # at least MIN_PART_ROWS rows a part
    assert n_parts(256, 10, 8) == n_parts(256, 10, DETERMINISTIC) == 1     # too small to split
    # part_range tiles the rows exactly, in order, the last parts possibly empty
    for rows, parts in ((10, 3), (7, 7), (5, 8), (256, 2)):
        ranges = [part_range(rows, parts, p) for p in range(parts)]
        assert ranges[0][0] == 0 and ranges[-1][1] == rows
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:])) and all(r0 <= r1 for r0, r1 in ranges)


def test_shuffled_order_is_a_seeded_uniform_permutation():
    from fastbp.kernels.epoch import shuffled_order
    a, b = np.empty(1000, np.int64), np.empty(1000, np.int64)
    shuffled_order(a, np.uint64(12345))
    shuffled_order(b, np.uint64(12345))
    assert np.array_equal(a, b) and np.array_equal(np.sort(a), np.arange(1000))
    shuffled_order(b, np.uint64(2**64 - 1))
    assert not np.array_equal(a, b)
    # every one of the 6 orders of 3 rows comes up about equally often
    counts = {}
    o = np.empty(3, np.int64)
    for seed in range(6000):
        shuffled_order(o, np.uint64(seed * 7919 + 1))
        counts[tuple(o)] = counts.get(tuple(o), 0) + 1
    assert len(counts) == 6 and min(counts.values()) > 850


def test_every_kernel_pins_fastmath_and_error_model():
    """numba compiles a callee with its caller's fastmath and error_model unless the callee states
    them, and reuses (and caches) that copy for every later caller: a kernel's rounding would
    depend on which caller was compiled first. Every kernel and overload states both."""
    import importlib
    import inspect
    import pkgutil

    import fastbp.kernels as K
    from numba.core.registry import CPUDispatcher

    dispatchers = set()
    for info in pkgutil.iter_modules(K.__path__):
        mod = importlib.import_module(f"fastbp.kernels.{info.name}")
        for name, obj in vars(mod).items():
            if isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == mod.__name__:
                dispatchers.add(name)
                assert {"fastmath", "error_model"} <= set(obj.targetoptions), f"{mod.__name__}.{name}"
        source = inspect.getsource(mod)
        assert "@njit" not in source, f"{mod.__name__}: use jit.kernel, which pins the options"
        for line in source.splitlines():
            if "jit_options=" in line:
                assert "options(" in line or "MATHFN_OPTIONS" in line, f"{mod.__name__}: {line.strip()}"
    assert {"run_batches", "run_batches_small", "layer_task", "layer_region", "output_loss", "small_batch_gradient",
            "shuffled_order", "apply_update"} <= dispatchers
    assert {"fastmath", "error_model"} <= set(M.MATHFN_OPTIONS)


# ---- the whole-network kernels, called directly (not through MLP) --------------------------------
PAIRS = [("linear", "mse"), ("linear", "half_mse"), ("sigmoid", "binary_cross_entropy"), ("sigmoid", "mse"),
         ("softmax", "cross_entropy"), ("softmax", "half_mse")]


def network(sizes, act, out, loss, bias, seed=0):
    """(Layout, params, Net) of a float64 net with random params, as MLP would build them."""
    lay = Layout(sizes, bias)
    params = np.random.default_rng(seed).standard_normal(lay.size) * 0.4
    for W, _ in lay.views(params):
        W *= 2.5 / np.sqrt(W.shape[0])          # logits of order 1: no saturated probabilities
    codes = [A.HIDDEN.code(act)] * (len(sizes) - 2) + [A.OUTPUT.code(out)]
    return lay, params, make_net(lay.sizes_arr, lay.woff, lay.boff, codes, Lo.LOSSES.code(loss))


def batch_data(n, sizes, loss, weighted, seed=1):
    """(Data for the kernels, Y (n, k) float for naive, sw or None)."""
    rng = np.random.default_rng(seed)
    k = sizes[-1]
    X = rng.standard_normal((n, sizes[0]))
    if loss == "cross_entropy":
        labels = rng.integers(0, k, n)
        Y, targets = naive.one_hot(labels, k), np.zeros((0, 0))
    else:
        labels = np.zeros(0, np.int64)
        Y = targets = rng.integers(0, 2, (n, k)).astype(float) if "binary" in loss else rng.random((n, k))
    sw = rng.random(n) + 0.5 if weighted else None
    return kernel_calls.data(X, targets, labels, sw if weighted else np.zeros(0)), Y, sw


SMALL_SIZES, BIG_SIZES = [4, 16, 8, 3], [64, 128, 96, 5]     # BIG: products over PARALLEL_MIN_WORK


def no_opt():
    """An optimizer argument for the modes that make no update."""
    return Opt(-1, np.zeros(1), np.zeros((0, 0)), np.zeros(1, np.int64), 0.0)


@pytest.mark.parametrize("out,loss", PAIRS)
@pytest.mark.parametrize("act", ["linear", "sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("kind,maxparts", [("small", None), ("network", None), ("network", 2),
                                           ("network", DETERMINISTIC)])
def test_batch_gradient_kernels_match_the_reference(kind, maxparts, act, out, loss):
    """run_batches' GRADIENT mode (serial, 2 parts, deterministic parts) and run_batches_small's:
    the loss and the mean gradient of a batch of rows picked out of the data in any order."""
    sizes = SMALL_SIZES if kind == "small" else BIG_SIZES
    bias, weighted = act != "tanh", act == "sigmoid"
    lay, params, net = network(sizes, act, out, loss, bias)
    data, Y, sw = batch_data(300, sizes, loss, weighted)
    m = 40 if kind == "small" else 128
    rows = np.random.default_rng(2).permutation(300)[:m]
    work = workspace_arrays(net, m, np.float64, 8)
    grads = np.full(lay.size, np.nan)
    args = (E.GRADIENT, np.zeros((0, sizes[-1])), np.zeros(0), np.zeros(0), params, grads, no_opt(), net, data,
            rows, 0, m, m, work)
    _, total, _ = kernel_calls.run(kind, maxparts, args)
    Ws, bs = naive.unflatten(params, sizes, bias)
    want_loss, dWs, dbs = naive.loss_and_grads(Ws, bs, data.X[rows], Y[rows], act, out, loss,
                                               None if sw is None else sw[rows])
    assert total / m == pytest.approx(want_loss, rel=1e-12)
    np.testing.assert_allclose(grads, naive.flatten(dWs, dbs), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("out,loss", PAIRS)
@pytest.mark.parametrize("kind,maxparts", [("small", None), ("network", None), ("network", 2),
                                           ("network", DETERMINISTIC)])
def test_predict_and_evaluate_kernels_match_the_reference(kind, maxparts, out, loss):
    sizes = SMALL_SIZES if kind == "small" else BIG_SIZES
    lay, params, net = network(sizes, "tanh", out, loss, True, seed=3)
    data, Y, sw = batch_data(300, sizes, loss, True, seed=4)
    cap = 64 if kind == "small" else 128           # several blocks, the last partial
    work = workspace_arrays(net, cap, np.float64, 8)
    P, P2 = np.empty((300, sizes[-1])), np.empty((300, sizes[-1]))
    for mode, dest in ((E.PREDICT, P), (E.EVALUATE, P2)):
        args = (mode, dest, np.zeros(0), np.zeros(0), params, np.zeros(lay.size), no_opt(), net, data,
                np.zeros(0, np.int64), 0, 300, 1, work)
        blocks, total, correct = kernel_calls.run(kind, maxparts, args)
        assert blocks == -(-300 // cap)
    Ws, bs = naive.unflatten(params, sizes, True)
    want = naive.forward(Ws, bs, data.X, "tanh", out)[0][-1]
    np.testing.assert_allclose(P, want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(P2, P, rtol=1e-15, atol=1e-17)   # the loss kernels' softmax divides, predict's multiplies
    li, _, _ = naive.loss_and_dP(loss, want, Y, None)
    assert total == pytest.approx((li * sw).sum(), rel=1e-12)
    if loss == "cross_entropy":
        assert correct == (want.argmax(1) == Y.argmax(1)).sum()


@pytest.mark.parametrize("kind,maxparts", [("small", None), ("network", None), ("network", 2)])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_train_steps_kernels_replay_the_reference(kind, maxparts, opt):
    """run_batches(_small) in TRAIN mode: minibatches of a given row order, one update each,
    against the reference's gradients and optimizer, step by step; step losses and the update
    count too."""
    sizes = SMALL_SIZES if kind == "small" else BIG_SIZES
    lay, params, net = network(sizes, "relu", "softmax", "cross_entropy", True, seed=5)
    data, Y, _ = batch_data(300, sizes, "cross_entropy", False, seed=6)
    order = np.random.default_rng(7).permutation(300)
    batch, first, last = 64 if kind == "small" else 128, 1, 3      # minibatches 1 and 2 (the last partial)
    work = workspace_arrays(net, batch, np.float64, 8)
    h = np.zeros(O.N_HYPER)
    h[[O.H_LR, O.H_BETA1, O.H_BETA2, O.H_EPS]] = 0.05, 0.9, 0.999, 1e-8
    code, n_states = (O.SGD, 0) if opt == "sgd" else (O.ADAM, 2)
    state = np.zeros((n_states, lay.size))
    kopt = Opt(code, h, state, np.array([4], np.int64), 0.0)     # 4 updates done before
    ref = naive.SGD(0.05) if opt == "sgd" else naive.Adam(0.05)
    if opt == "adam":
        ref.t = 4
    want = params.copy()
    losses = np.zeros(5)
    for s in range(first, last):
        rows = order[s * batch:(s + 1) * batch]
        Ws, bs = naive.unflatten(want, sizes, True)
        losses[s], dWs, dbs = naive.loss_and_grads(Ws, bs, data.X[rows], Y[rows], "relu", "softmax", "cross_entropy")
        losses[s] *= len(rows)
        want = ref.step(want, naive.flatten(dWs, dbs))
    step_loss, step_correct = np.zeros(5), np.zeros(5)
    grads = np.zeros(lay.size)
    args = (E.TRAIN, np.zeros((0, sizes[-1])), step_loss, step_correct, params, grads, kopt, net, data, order,
            first, last, batch, work)
    done, _, _ = kernel_calls.run(kind, maxparts, args)
    assert done == last - first and kopt.step[0] == 4 + done
    np.testing.assert_allclose(step_loss, losses, rtol=1e-12)
    np.testing.assert_allclose(params, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,parts", [(37, 1), (37, 2), (37, 3), (40, 3), (5, 8)])
def test_batch_norm_sums_by_row_parts(dtype, m, parts):
    """Batch norm's sums over the batch taken per row part and merged in part order: the
    statistics equal numpy's (and one part the bits of one pass in row order), gamma's and
    beta's gradients the part sums in dY's dtype added in part order."""
    from fastbp.kernels import norm as N
    rng = np.random.default_rng(m * parts)
    n = 6
    Z = (rng.standard_normal((m, n)) * 3 + rng.standard_normal(n) * 10).astype(dtype)
    G, Xh = rng.standard_normal((m, n)).astype(dtype), rng.standard_normal((m, n)).astype(dtype)
    nstat = np.full((2 + N.PART_MOMENTS * parts) * n, np.nan)
    stats = np.concatenate([rng.standard_normal(n), rng.uniform(0.5, 2, n)])
    stats0 = stats.copy()
    pre = np.concatenate([Z.ravel(), Xh.ravel()])
    for p in range(parts):
        r0, r1 = part_range(m, parts, p)         # an empty part too, as the kernels do
        N.batch_norm_part_moments(pre, 0, nstat, 2 * n + N.PART_MOMENTS * n * p, r0, r1, n)
    N.batch_norm_merge_statistics(nstat, 0, 2 * n, stats, 0, m, n, parts, True)
    Z64 = Z.astype(np.float64)
    mean, var = Z64.mean(axis=0), Z64.var(axis=0)
    np.testing.assert_allclose(nstat[:n], mean, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(nstat[n:2 * n], 1 / np.sqrt(var + N.EPS), rtol=1e-13)
    np.testing.assert_allclose(stats[:n], 0.9 * stats0[:n] + 0.1 * mean, rtol=1e-13)
    np.testing.assert_allclose(stats[n:], 0.9 * stats0[n:] + 0.1 * Z64.var(axis=0, ddof=1), rtol=1e-13)
    if parts == 1:
        s = np.zeros(n)
        for i in range(m):
            s += Z64[i]
        d = np.zeros(n)
        for i in range(m):
            d += (Z64[i] - s / m) ** 2
        assert np.array_equal(nstat[:n], s / m)
        assert np.array_equal(nstat[n:2 * n], 1 / np.sqrt(d / m + N.EPS))
    # gamma's and beta's gradients: each part's sums in dY's dtype, then added in part order
    grads = np.full(2 * n + 3, np.nan, dtype)
    for p in range(parts):
        r0, r1 = part_range(m, parts, p)
        N.part_param_grads(nstat, 2 * n + N.PART_MOMENTS * n * p, G.ravel(), 0, pre, m * n, r0, r1, n)
    N.merge_param_grads(grads, 1, nstat, 2 * n, n, parts)
    want_g, want_b = np.zeros(n, dtype), np.zeros(n, dtype)
    for p in range(parts):
        r0, r1 = part_range(m, parts, p)
        pg, pb = np.zeros(n, dtype), np.zeros(n, dtype)
        for i in range(r0, r1):
            pg += G[i] * Xh[i]
            pb += G[i]
        want_g, want_b = (pg, pb) if p == 0 else (want_g + pg, want_b + pb)
    assert np.array_equal(grads[1:n + 1], want_g) and np.array_equal(grads[n + 1:2 * n + 1], want_b)
    np.testing.assert_allclose(grads[1:n + 1], (G.astype(np.float64) * Xh).sum(axis=0), rtol=0, atol=TOL[dtype] * m)
