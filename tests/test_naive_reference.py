"""The part-2 plain-numpy reference (tests/naive.py) checked on its own.

Always: central finite differences of the loss for every activation, norm, loss and penalty,
and identities between features. Where the peers are installed (they never become fastbp
dependencies): forward, loss, gradients, optimizer steps, schedules and batch-norm running
statistics against torch; Lion, LAMB and the schedules against optax (float64).

The default run covers all pairs of the network's factors; ``-m slow`` runs the full
activation x norm x loss product.
"""
import itertools
import math

import numpy as np
import pytest

import naive

ACTS = sorted(naive.ACTIVATIONS)
NORM_NAMES = ["none", "layer", "batch"]
# loss variants: (loss, target kind, outputs); cross_entropy both with int labels and with
# probability targets plus label smoothing, binary_cross_entropy with (n, k) and with (n,) targets
LOSS_CASES = {
    "mse": ("mse", "real", 3),
    "half_mse": ("half_mse", "real", 3),
    "ce_int": ("cross_entropy", "int", 3),
    "ce_prob_smooth": ("cross_entropy", "prob", 3),
    "bce": ("binary_cross_entropy", "unit", 2),
    "bce_1d": ("binary_cross_entropy", "binary_1d", 1),
    "mae": ("mae", "real", 3),
    "huber": ("huber", "real", 3),
    "poisson": ("poisson", "counts", 3),
}
N_ROWS = 7


def pairwise(factors):
    """A deterministic covering array: every pair of values of every two factors appears in
    some row (greedy: seed each row with the first uncovered pair, fill the rest with the value
    covering most uncovered pairs)."""
    names = list(factors)
    values = [list(factors[k]) for k in names]
    uncovered = {(i, a, j, b) for i, j in itertools.combinations(range(len(names)), 2)
                 for a in range(len(values[i])) for b in range(len(values[j]))}
    rows = []
    while uncovered:
        i, a, j, b = min(uncovered)
        row = [None] * len(names)
        row[i], row[j] = a, b
        for f in range(len(names)):
            if row[f] is not None:
                continue
            gain = [sum(((min(f, g), v if f < g else row[g], max(f, g), row[g] if f < g else v) in uncovered)
                        for g in range(len(names)) if row[g] is not None) for v in range(len(values[f]))]
            row[f] = int(np.argmax(gain))
        for f, g in itertools.combinations(range(len(names)), 2):
            uncovered.discard((f, row[f], g, row[g]))
        rows.append(tuple(values[f][row[f]] for f in range(len(names))))
    return rows


FACTORS = {"act1": ACTS, "act2": ACTS, "norm1": NORM_NAMES, "norm2": NORM_NAMES, "loss": list(LOSS_CASES),
           "dropout": [0.0, 0.25], "weights": [False, True], "penalty": [False, True], "bias": [True, False]}
PAIRWISE = pairwise(FACTORS)
# the full product: one activation and one norm for both hidden layers, every extra switched on
FULL = [(a, a, n, n, loss, 0.25, True, True, True) for a in ACTS for n in NORM_NAMES for loss in LOSS_CASES]


def case_id(case):
    a1, a2, n1, n2, loss, p, sw, pen, bias = case
    return "-".join([a1, a2, n1, n2, loss] + (["drop"] if p else []) + (["sw"] if sw else [])
                    + (["pen"] if pen else []) + ([] if bias else ["nobias"]))


def make_case(case, seed=0, n=N_ROWS, sizes=(4, 5, 6)):
    """(spec, params, X, y, sample_weight, masks) for a case tuple, all seeded."""
    a1, a2, n1, n2, loss_name, p, sw, pen, bias = case
    loss, kind, k = LOSS_CASES[loss_name]
    spec = naive.Spec(list(sizes) + [k], activation=[a1, a2], norm=[n1, n2], loss=loss, dropout=p, bias=bias,
                      l1=0.01 if pen else 0.0, l2=0.02 if pen else 0.0,
                      label_smoothing=0.1 if loss_name == "ce_prob_smooth" else 0.0, huber_delta=0.5)
    rng = np.random.default_rng(seed)
    params = naive.init_params(spec, rng, scale=1.5)
    X = rng.standard_normal((n, sizes[0]))
    y = {"real": lambda: rng.standard_normal((n, k)),
         "int": lambda: rng.integers(0, k, n),
         "prob": lambda: rng.dirichlet(np.ones(k), n),
         "unit": lambda: rng.uniform(0, 1, (n, k)),
         "binary_1d": lambda: rng.integers(0, 2, n).astype(np.float64),
         "counts": lambda: rng.poisson(1.5, (n, k)).astype(np.float64)}[kind]()
    weights = rng.uniform(0.2, 2.0, n) if sw else None
    masks = [(rng.uniform(size=(n, m)) >= p).astype(np.float64) if p else None for m in sizes[1:]]
    return spec, params, X, y, weights, masks


def max_rel(a, b):
    """max |a - b| over max |b|: relative to the array's scale, so entries that are zero in
    exact arithmetic (a bias before batch norm) compare as rounding noise."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def fd_gradient(f, p, h=1e-6):
    g = np.zeros_like(p)
    for i in range(p.size):
        q = p.copy()
        q[i] += h
        fp = f(q)
        q[i] -= 2 * h
        g[i] = (fp - f(q)) / (2 * h)
    return g


# -- finite differences ---------------------------------------------------------------------------

def check_fd(case):
    spec, params, X, y, sw, masks = make_case(case)
    L, grad = naive.loss_and_grad(spec, params, X, y, sw, masks)
    assert L == pytest.approx(naive.loss_value(spec, params, X, y, sw, masks), rel=1e-14)
    num = fd_gradient(lambda q: naive.loss_value(spec, q, X, y, sw, masks), params)
    assert max_rel(grad, num) < 1e-6, case_id(case)


@pytest.mark.parametrize("case", PAIRWISE, ids=case_id)
def test_gradient_matches_finite_differences(case):
    check_fd(case)


@pytest.mark.slow
@pytest.mark.parametrize("case", FULL, ids=case_id)
def test_gradient_matches_finite_differences_full_product(case):
    check_fd(case)


def test_pairwise_cases_cover_every_pair():
    for (i, fi), (j, fj) in itertools.combinations(enumerate(FACTORS), 2):
        seen = {(row[i], row[j]) for row in PAIRWISE}
        assert seen == set(itertools.product(FACTORS[fi], FACTORS[fj])), (fi, fj)


@pytest.mark.parametrize("name", ACTS + ["exp"])
def test_activation_derivative_matches_finite_differences(name):
    z = np.concatenate([np.linspace(-6, 6, 61) + 0.013, [-40.3, -19.7, 19.7, 20.4, 35.1]])
    h = 1e-6
    num = (naive.activation_forward(name, z + h) - naive.activation_forward(name, z - h)) / (2 * h)
    np.testing.assert_allclose(naive.activation_derivative(name, z), num, rtol=1e-6, atol=1e-8)


def test_softplus_is_the_identity_above_torchs_threshold():
    z = np.array([19.5, 20.0, 20.0000001, 25.0, 800.0])
    f = naive.activation_forward("softplus", z)
    assert f[0] == np.log1p(np.exp(19.5)) and f[1] == np.log1p(np.exp(20.0))
    assert np.array_equal(f[2:], z[2:])
    assert np.array_equal(naive.activation_derivative("softplus", z)[2:], np.ones(3))
    # mish has no such threshold (torch's mish kernel): it keeps tanh(log1p(exp(z)))
    assert naive.activation_forward("mish", np.array([20.5]))[0] == 20.5 * np.tanh(np.log1p(np.exp(20.5)))


def test_derivatives_at_zero_follow_torch():
    z = np.zeros(1)
    d = {a: naive.activation_derivative(a, z)[0] for a in ("relu", "leaky_relu", "elu", "selu")}
    assert d == {"relu": 0.0, "leaky_relu": 0.01, "elu": 1.0, "selu": naive.SELU_SCALE * naive.SELU_ALPHA}


# -- identities -----------------------------------------------------------------------------------

BASE = ("gelu", "tanh", "layer", "batch", "mse", 0.25, True, True, True)


def test_dropout_rate_zero_is_no_dropout_whatever_the_mask():
    spec, params, X, y, sw, _ = make_case(BASE[:5] + (0.0,) + BASE[6:])
    zeros = [np.zeros((N_ROWS, m)) for m in spec.sizes[1:-1]]
    assert naive.loss_and_grad(spec, params, X, y, sw, zeros)[0] == naive.loss_and_grad(spec, params, X, y, sw)[0]


def test_dropout_scales_kept_units_by_one_over_keep_rate():
    spec, params, X, y, sw, _ = make_case(("linear", "linear", "none", "none", "mse", 0.2, False, False, True))
    ones = [np.ones((N_ROWS, m)) for m in spec.sizes[1:-1]]
    plain = naive.Spec(spec.sizes, activation="linear", loss="mse")
    Z, _ = naive.network_forward(spec, params, X, masks=ones)
    layers = naive.unflatten_params(plain, params)
    A = X
    for lay in layers[:-1]:
        A = (A @ lay["W"] + lay["b"]) / 0.8
    np.testing.assert_allclose(Z, A @ layers[-1]["W"] + layers[-1]["b"], rtol=1e-14)


def test_no_mask_means_no_dropout_and_predict_never_drops():
    spec, params, X, y, sw, masks = make_case(BASE[:2] + ("layer", "layer") + BASE[4:])
    off = naive.Spec(spec.sizes, activation=spec.activations, norm=spec.norms, loss=spec.loss, l1=spec.l1, l2=spec.l2)
    assert naive.loss_and_grad(spec, params, X, y, sw)[0] == naive.loss_and_grad(off, params, X, y, sw)[0]
    np.testing.assert_array_equal(naive.predict(spec, params, X), naive.predict(off, params, X))


def test_unit_sample_weights_equal_none():
    for loss in LOSS_CASES:
        spec, params, X, y, _, masks = make_case(("silu", "elu", "batch", "layer", loss, 0.25, False, True, True))
        L0, g0 = naive.loss_and_grad(spec, params, X, y, None, masks)
        L1, g1 = naive.loss_and_grad(spec, params, X, y, np.ones(N_ROWS), masks)
        assert L1 == pytest.approx(L0, rel=1e-15) and max_rel(g1, g0) < 1e-15


def test_losses_without_weights_are_means_over_all_elements():
    """torch's reduction="mean" for the elementwise losses, 0.5 * sum / n for half_mse."""
    rng = np.random.default_rng(5)
    Z, Y = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    D = Z - Y
    want = {"mse": (D ** 2).mean(), "half_mse": 0.5 * (D ** 2).sum() / 6, "mae": np.abs(D).mean(),
            "huber": np.where(np.abs(D) <= 0.5, 0.5 * D * D, 0.5 * (np.abs(D) - 0.25)).mean(),
            "poisson": (np.exp(Z) - Y * Z).mean(),
            "binary_cross_entropy": -(Y * np.log(naive._sigmoid(Z)) + (1 - Y) * np.log(1 - naive._sigmoid(Z))).mean()}
    for loss, w in want.items():
        spec = naive.Spec([2, 3], loss=loss, huber_delta=0.5)
        assert naive.loss_forward_backward(spec, Z, Y)[0] == pytest.approx(w, rel=1e-13), loss
    # huber with a delta above every |d| is half the mse
    spec = naive.Spec([2, 3], loss="huber", huber_delta=100.0)
    assert naive.loss_forward_backward(spec, Z, Y)[0] == pytest.approx(0.5 * (D ** 2).mean(), rel=1e-14)


def test_label_smoothing_matches_torchs_class_index_formula():
    """On int labels torch computes (1 - eps) * nll + eps * mean_j(-log p_j): the same as the
    smoothed one-hot target y (1 - eps) + eps / k."""
    rng = np.random.default_rng(2)
    Z, y = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    spec = naive.Spec([2, 4], loss="cross_entropy", label_smoothing=0.2)
    logp = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
    want = ((1 - 0.2) * -logp[np.arange(5), y] + 0.2 * -logp.mean(axis=1)).mean()
    assert naive.loss_forward_backward(spec, Z, naive.targets(spec, y))[0] == pytest.approx(want, rel=1e-14)
    plain = naive.Spec([2, 4], loss="cross_entropy")
    assert naive.loss_forward_backward(plain, Z, naive.targets(plain, y))[0] == pytest.approx(-logp[np.arange(5), y].mean())


def test_new_reference_equals_the_original_on_the_original_networks():
    for act, out, loss in itertools.product(["linear", "sigmoid", "tanh", "relu"], ["linear", "sigmoid", "softmax"],
                                            ["mse", "half_mse", "cross_entropy", "binary_cross_entropy"]):
        if loss == "cross_entropy" and out != "softmax" or loss == "binary_cross_entropy" and out != "sigmoid":
            continue
        spec = naive.Spec([3, 4, 5, 3], activation=act, output=out, loss=loss)
        rng = np.random.default_rng(1)
        params = naive.init_params(spec, rng)
        X, Y = rng.standard_normal((6, 3)), rng.uniform(0, 1, (6, 3))
        Ws, bs = naive.unflatten(params, spec.sizes, True)
        L0, dWs, dbs = naive.loss_and_grads(Ws, bs, X, Y, act, out, loss)
        L1, g1 = naive.loss_and_grad(spec, params, X, Y)
        assert L1 == pytest.approx(L0, rel=1e-13) and max_rel(g1, naive.flatten(dWs, dbs)) < 1e-13


def test_penalty_is_on_weight_matrices_only():
    spec, params, X, y, sw, masks = make_case(("relu", "tanh", "layer", "none", "mse", 0.0, False, True, True))
    plain = naive.Spec(spec.sizes, activation=spec.activations, norm=spec.norms, loss=spec.loss)
    L1, g1 = naive.loss_and_grad(spec, params, X, y)
    L0, g0 = naive.loss_and_grad(plain, params, X, y)
    layers = naive.unflatten_params(spec, params)
    Ws = [lay["W"] for lay in layers]
    assert L1 - L0 == pytest.approx(sum(0.01 * np.abs(W).sum() + 0.02 * (W ** 2).sum() for W in Ws), rel=1e-12)
    dg = naive.unflatten_params(spec, g1 - g0)
    for lay, W in zip(dg, Ws):
        np.testing.assert_allclose(lay["W"], 0.01 * np.sign(W) + 0.04 * W, rtol=1e-9, atol=1e-15)
        for name in ("b", "gamma", "beta"):
            assert lay[name] is None or np.abs(lay[name]).max() < 1e-15
    assert naive.penalty_grad(spec, np.zeros(3)).tolist() == [0.0, 0.0, 0.0]      # sign(0) = 0


def test_batch_norm_inference_with_the_batch_statistics_equals_training():
    spec, params, X, y, _, _ = make_case(("tanh", "relu", "batch", "batch", "mse", 0.0, False, False, True))
    Z, caches = naive.network_forward(spec, params, X, training=True)
    buffers = naive.init_buffers(spec)
    for l, lay in enumerate(naive.unflatten_buffers(spec, buffers)[:-1]):
        c = caches[l]["norm"]
        lay["running_mean"][:] = c["mean"]
        lay["running_var"][:] = c["var_unbiased"] * (N_ROWS - 1) / N_ROWS      # biased: what training used
    np.testing.assert_allclose(naive.network_forward(spec, params, X, buffers, training=False)[0], Z, rtol=1e-12)


def test_running_statistics_follow_torchs_rule():
    spec = naive.Spec([3, 4, 2], activation="relu", norm="batch", loss="mse")
    rng = np.random.default_rng(3)
    params, buffers = naive.init_params(spec, rng), naive.init_buffers(spec)
    assert buffers.tolist() == [0.0] * 4 + [1.0] * 4
    X, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    lay = naive.unflatten_params(spec, params)[0]
    Z = X @ lay["W"] + lay["b"]
    naive.train_steps(spec, params.copy(), buffers, [(X, y)], naive.Optimizer("sgd", lr=0.0))
    np.testing.assert_allclose(buffers[:4], 0.1 * Z.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(buffers[4:], 0.9 + 0.1 * Z.var(axis=0, ddof=1), rtol=1e-14)


def test_batch_norm_rejects_a_training_batch_of_one_row():
    spec, params, X, y, _, _ = make_case(BASE)
    with pytest.raises(ValueError, match="more than one row"):
        naive.loss_and_grad(spec, params, X[:1], y[:1])
    naive.predict(spec, params, X[:1], naive.init_buffers(spec))      # inference is fine
    with pytest.raises(ValueError, match="needs the buffers"):
        naive.predict(spec, params, X)


def test_layout_and_flatten_roundtrip():
    spec = naive.Spec([3, 4, 5, 2], norm=["batch", "layer"])
    segs = [(l, name, a, b) for l, name, a, b, _ in naive.param_segments(spec)]
    assert segs == [(0, "W", 0, 12), (0, "b", 12, 16), (0, "gamma", 16, 20), (0, "beta", 20, 24),
                    (1, "W", 24, 44), (1, "b", 44, 49), (1, "gamma", 49, 54), (1, "beta", 54, 59),
                    (2, "W", 59, 69), (2, "b", 69, 71)]
    assert [(l, n, a, b) for l, n, a, b, _ in naive.buffer_segments(spec)] == [(0, "running_mean", 0, 4),
                                                                            (0, "running_var", 4, 8)]
    p = np.arange(71.0)
    layers = naive.unflatten_params(spec, p)
    assert layers[0]["W"][1, 0] == 4.0 and layers[1]["gamma"][0] == 49.0 and layers[2]["gamma"] is None
    assert np.array_equal(naive.flatten_params(spec, layers), p)
    assert np.shares_memory(layers[1]["beta"], p)
    assert naive.init_buffers(naive.Spec([3, 4, 2], norm="layer")).size == 0
    nob = naive.Spec([3, 4, 2], bias=False, norm="layer")
    assert [n for _, n, *_ in naive.param_segments(nob)] == ["W", "gamma", "beta", "W"]


def test_names_are_checked_with_the_valid_list():
    with pytest.raises(ValueError, match="valid: .*'gelu_tanh'"):
        naive.Spec([2, 3, 1], activation="swish")
    with pytest.raises(ValueError, match="needs output 'softmax'"):
        naive.Spec([2, 3], loss="cross_entropy", output="sigmoid")
    with pytest.raises(ValueError, match="2 values for 1 hidden"):
        naive.Spec([2, 3, 1], norm=["layer", "batch"])


# -- optimizers and schedules, numpy only ----------------------------------------------------------

def grad_sequence(shapes, steps=5, seed=9):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s) for s in shapes] for _ in range(steps)]


def test_optimizers_equal_the_original_reference():
    rng = np.random.default_rng(4)
    p0 = rng.standard_normal(20)
    for new, old in [(naive.Optimizer("sgd", lr=0.1), naive.SGD(0.1)),
                     (naive.Optimizer("momentum", lr=0.05, momentum=0.9), naive.Momentum(0.05, 0.9)),
                     (naive.Optimizer("nesterov", lr=0.05, momentum=0.9), naive.Momentum(0.05, 0.9, nesterov=True)),
                     (naive.Optimizer("adam", lr=1e-2), naive.Adam(1e-2))]:
        p, q = p0.copy(), p0.copy()
        for (g,) in grad_sequence([(20,)], 6):
            new.step(p, g)
            q = old.step(q, g)
        assert max_rel(p, q) < 1e-14, new.name


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad", "lion"])
def test_elementwise_optimizers_do_not_care_how_the_tensors_are_split(name):
    shapes = [(3, 4), (4,), (5,)]
    rng = np.random.default_rng(6)
    ps = [rng.standard_normal(s) for s in shapes]
    flat = np.concatenate([p.ravel() for p in ps])
    kw = dict(weight_decay=0.03) if name != "adamw" else {}
    a, b = naive.Optimizer(name, clip_norm=2.0, **kw), naive.Optimizer(name, clip_norm=2.0, **kw)
    for gs in grad_sequence(shapes):
        a.step(ps, gs)
        b.step(flat, np.concatenate([g.ravel() for g in gs]))
    assert max_rel(np.concatenate([p.ravel() for p in ps]), flat) < 1e-14


def test_lamb_trust_ratio_is_per_tensor():
    shapes = [(3, 4), (4,)]
    rng = np.random.default_rng(7)
    ps = [rng.standard_normal(s) * (1 + 9 * i) for i, s in enumerate(shapes)]
    p0 = [p.copy() for p in ps]
    flat = np.concatenate([p.ravel() for p in ps])
    a, b = naive.Optimizer("lamb", lr=0.01), naive.Optimizer("lamb", lr=0.01)
    (gs,) = grad_sequence(shapes, 1)
    a.step(ps, gs)
    b.step(flat, np.concatenate([g.ravel() for g in gs]))
    assert max_rel(np.concatenate([p.ravel() for p in ps]), flat) > 1e-3
    # the trust ratio makes each tensor's step lr * ||p|| long, whatever the update's size
    for p, q in zip(ps, p0):
        assert np.linalg.norm(p - q) == pytest.approx(0.01 * np.linalg.norm(q), rel=1e-12)


def test_lamb_ratio_is_one_for_a_zero_tensor():
    p = np.zeros(4)
    naive.Optimizer("lamb", lr=0.1, eps=0.0).step([p], [np.array([1.0, -2.0, 3.0, 0.5])])
    np.testing.assert_allclose(p, [-0.1, 0.1, -0.1, -0.1], rtol=1e-15)


def test_clip_norm_follows_torch():
    gs = [np.full(4, 3.0), np.full(5, 4.0)]             # norm sqrt(36 + 80) = sqrt(116)
    norm = math.sqrt(116)
    assert naive.clip_coef(gs, 100.0) == 1.0 and naive.clip_coef(gs, None) == 1.0
    assert naive.clip_coef(gs, 2.0) == 2.0 / (norm + 1e-6)
    p = [np.zeros(4), np.zeros(5)]
    naive.Optimizer("sgd", lr=1.0, clip_norm=2.0).step(p, gs)
    assert math.sqrt(sum((x ** 2).sum() for x in p)) == pytest.approx(2.0, rel=1e-6)


def test_lion_moves_every_coordinate_by_lr_and_sign_of_zero_is_zero():
    p = np.array([1.0, 2.0, -1.0])
    naive.Optimizer("lion", lr=0.1).step(p, np.array([0.3, 0.0, -5.0]))
    np.testing.assert_allclose(p, [0.9, 2.0, -0.9], rtol=1e-15)


def test_schedule_drives_the_rate_of_each_update():
    opt = naive.Optimizer("sgd", lr=naive.PiecewiseConstantDecay([1, 2], [1.0, 0.5, 0.25]))
    p = np.zeros(1)
    for _ in range(4):
        opt.step(p, np.ones(1))
    assert p[0] == -(1.0 + 1.0 + 0.5 + 0.25) and opt.iterations == 4


def test_cosine_decay_follows_keras_code():
    s = naive.CosineDecay(0.1, 10, alpha=0.2)
    assert s(0) == 0.1 and s(10) == pytest.approx(0.02, rel=1e-15) and s(25) == s(10)
    assert s(5) == pytest.approx(0.1 * (0.8 * 0.5 + 0.2), rel=1e-15)
    # warmup_steps without warmup_target: ignored, as in Keras
    assert [naive.CosineDecay(0.1, 10, warmup_steps=4)(t) for t in range(12)] == \
        [naive.CosineDecay(0.1, 10)(t) for t in range(12)]
    # with a target: linear from initial_learning_rate over warmup_steps, then the decay from the target
    w = naive.CosineDecay(0.01, 10, alpha=0.1, warmup_target=0.11, warmup_steps=4)
    assert [w(t) for t in range(4)] == pytest.approx([0.01, 0.035, 0.06, 0.085], rel=1e-14)
    assert w(4) == pytest.approx(0.11, rel=1e-15) and w(14) == pytest.approx(0.011, rel=1e-14) and w(99) == w(14)


def test_exponential_and_piecewise_decay_follow_keras_code():
    e = naive.ExponentialDecay(0.1, 4, 0.5)
    assert e(0) == 0.1 and e(2) == pytest.approx(0.1 * 0.5 ** 0.5, rel=1e-15) and e(8) == pytest.approx(0.025)
    st = naive.ExponentialDecay(0.1, 4, 0.5, staircase=True)
    assert [st(t) for t in (0, 3, 4, 7, 8)] == [0.1, 0.1, 0.05, 0.05, 0.025]
    pc = naive.PiecewiseConstantDecay([2, 5], [1.0, 0.5, 0.1])
    assert [pc(t) for t in range(8)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.1, 0.1]


def test_one_cycle_phases_and_end():
    s = naive.OneCycle(1.0, 10)
    assert s(0) == pytest.approx(1.0 / 25, rel=1e-15) and s(2) == pytest.approx(1.0, rel=1e-15)
    assert s(9) == pytest.approx(1.0 / 25 / 1e4, rel=1e-12)
    with pytest.raises(ValueError, match="past total_steps"):
        s(10)
    with pytest.raises(ValueError, match="warm-up phase empty"):
        naive.OneCycle(1.0, 10, pct_start=0.1)


def test_train_steps_with_sgd_is_the_manual_update():
    spec, params, X, y, sw, masks = make_case(BASE)
    buffers = naive.init_buffers(spec)
    p = params.copy()
    L, g = naive.loss_and_grad(spec, params, X, y, sw, masks)
    losses = naive.train_steps(spec, p, buffers, [(X, y, sw)], naive.Optimizer("sgd", lr=0.1), [masks])
    assert losses == [L] and np.array_equal(p, params - 0.1 * g)


# -- against torch ---------------------------------------------------------------------------------

def torch_net(spec, params, buffers=None):
    """nn.Sequential(Linear, [LayerNorm | BatchNorm1d], Act, [mask multiplier], ..., Linear),
    float64, holding a copy of ``params`` (torch's Linear weight is W.T)."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Mask(nn.Module):
        """Dropout with a given 0/1 mask, scaled as nn.Dropout scales its noise; off in eval mode."""

        def __init__(self, p):
            super().__init__()
            self.p, self.mask = p, None

        def forward(self, x):
            return x if self.mask is None or not self.training else x * (self.mask / (1 - self.p))

    acts = {"linear": nn.Identity, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU,
            "leaky_relu": lambda: nn.LeakyReLU(0.01), "elu": nn.ELU, "selu": nn.SELU, "gelu": nn.GELU,
            "gelu_tanh": lambda: nn.GELU(approximate="tanh"), "silu": nn.SiLU, "softplus": nn.Softplus,
            "mish": nn.Mish}
    layers = naive.unflatten_params(spec, params)
    bufs = naive.unflatten_buffers(spec, buffers) if buffers is not None else None
    mods, linears, norms, masks = [], [], [], []
    for l, lay in enumerate(layers):
        lin = nn.Linear(*lay["W"].shape, bias=spec.bias).double()
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(lay["W"].T.copy()))
            if spec.bias:
                lin.bias.copy_(torch.from_numpy(lay["b"].copy()))
        mods.append(lin)
        linears.append(lin)
        if l == spec.n_layers - 1:
            break
        norm = {"layer": lambda m: nn.LayerNorm(m), "batch": lambda m: nn.BatchNorm1d(m), None: None}[spec.norms[l]]
        if norm is not None:
            nm = norm(lay["W"].shape[1]).double()
            with torch.no_grad():
                nm.weight.copy_(torch.from_numpy(lay["gamma"].copy()))
                nm.bias.copy_(torch.from_numpy(lay["beta"].copy()))
                if bufs is not None and spec.norms[l] == "batch":
                    nm.running_mean.copy_(torch.from_numpy(bufs[l]["running_mean"].copy()))
                    nm.running_var.copy_(torch.from_numpy(bufs[l]["running_var"].copy()))
            mods.append(nm)
        norms.append(mods[-1] if norm is not None else None)
        mods.append(acts[spec.activations[l]]())
        if spec.dropouts[l]:
            masks.append(Mask(spec.dropouts[l]))
            mods.append(masks[-1])
        else:
            masks.append(None)
    return nn.Sequential(*mods), linears, norms, masks


def torch_params(spec, linears, norms, grad=False):
    """params (or their gradients) of the torch net in fastbp's flat layout."""
    def get(t):
        return (t.grad if grad else t).detach().numpy()

    layers = []
    for l, lin in enumerate(linears):
        norm = norms[l] if l < len(norms) else None
        layers.append({"W": get(lin.weight).T, "b": get(lin.bias) if spec.bias else None,
                       "gamma": get(norm.weight) if norm is not None else None,
                       "beta": get(norm.bias) if norm is not None else None})
    return naive.flatten_params(spec, layers)


def torch_buffers(spec, norms):
    layers = [{"running_mean": None, "running_var": None} for _ in range(spec.n_layers)]
    for l, v in enumerate(spec.norms):
        if v == "batch":
            layers[l] = {"running_mean": norms[l].running_mean.numpy(), "running_var": norms[l].running_var.numpy()}
    return naive.flatten_buffers(spec, layers)


def torch_loss(spec, Z, y, sw, linears):
    """The loss as torch's modules compute it (reduction="mean" without weights; with weights
    reduction="none", each sample's mean over outputs, sum(w_i l_i) / n), plus the penalty."""
    import torch
    nn = torch.nn
    n, k = Z.shape
    yt = torch.from_numpy(np.asarray(y))
    red = "mean" if sw is None else "none"
    if spec.loss == "cross_entropy":
        target = yt.long() if yt.ndim == 1 else yt.double()
        li = nn.CrossEntropyLoss(reduction=red, label_smoothing=spec.label_smoothing)(Z, target)
    else:
        Y = yt.double().reshape(n, k)
        out = {"linear": lambda z: z, "sigmoid": torch.sigmoid, "softmax": lambda z: torch.softmax(z, 1),
               "exp": torch.exp}[spec.output]
        if spec.loss == "binary_cross_entropy":
            li = nn.BCEWithLogitsLoss(reduction=red)(Z, Y)
        elif spec.loss == "poisson":
            li = nn.PoissonNLLLoss(log_input=True, full=False, reduction=red)(Z, Y)
        elif spec.loss == "half_mse":
            li = 0.5 * ((out(Z) - Y) ** 2).sum(1)
            li = li.mean() if sw is None else li
        else:
            fn = {"mse": nn.MSELoss(reduction=red), "mae": nn.L1Loss(reduction=red),
                  "huber": nn.HuberLoss(reduction=red, delta=spec.huber_delta)}[spec.loss]
            li = fn(out(Z), Y)
        if sw is not None and li.ndim == 2:
            li = li.mean(1)
    L = li if sw is None else (torch.from_numpy(sw) * li).sum() / n
    for lin in linears:
        L = L + spec.l1 * lin.weight.abs().sum() + spec.l2 * (lin.weight ** 2).sum()
    return L


def check_against_torch(case):
    torch = pytest.importorskip("torch")
    spec, params, X, y, sw, masks = make_case(case)
    net, linears, norms, tmasks = torch_net(spec, params)
    for m, mask in zip(tmasks, masks):
        if m is not None:
            m.mask = torch.from_numpy(mask)
    net.train()
    Z = net(torch.from_numpy(X))
    L = torch_loss(spec, Z, y, sw, linears)
    L.backward()
    Zr, _ = naive.network_forward(spec, params, X, masks=masks)
    Lr, gr = naive.loss_and_grad(spec, params, X, y, sw, masks)
    assert max_rel(Zr, Z.detach().numpy()) < 1e-12, "forward"
    assert Lr == pytest.approx(L.item(), rel=1e-12), "loss"
    assert max_rel(gr, torch_params(spec, linears, norms, grad=True)) < 1e-11, "gradient"
    # inference: running statistics moved once by the forward above, no dropout
    net.eval()
    buffers = naive.init_buffers(spec)
    bufs = naive.unflatten_buffers(spec, buffers)
    _, caches = naive.network_forward(spec, params, X, masks=masks)
    for l, c in enumerate(caches[:-1]):
        if spec.norms[l] == "batch":
            naive.update_running_stats(bufs[l]["running_mean"], bufs[l]["running_var"], c["norm"])
    assert max_rel(buffers, torch_buffers(spec, norms)) < 1e-13 if buffers.size else True
    with torch.no_grad():
        P = {"linear": lambda z: z, "sigmoid": torch.sigmoid, "softmax": lambda z: torch.softmax(z, 1),
             "exp": torch.exp}[spec.output](net(torch.from_numpy(X)))
    assert max_rel(naive.predict(spec, params, X, buffers), P.numpy()) < 1e-12, "predict"


@pytest.mark.parametrize("case", PAIRWISE, ids=case_id)
def test_forward_loss_gradient_and_running_stats_match_torch(case):
    check_against_torch(case)


@pytest.mark.slow
@pytest.mark.parametrize("case", FULL, ids=case_id)
def test_forward_loss_gradient_match_torch_full_product(case):
    check_against_torch(case)


@pytest.mark.parametrize("name", ACTS)
def test_activation_and_derivative_match_torch_elementwise(name):
    torch = pytest.importorskip("torch")
    z = np.concatenate([np.linspace(-8, 8, 161), [0.0, -40.0, -20.0, 19.99, 20.0, 20.01, 45.0]])
    zt = torch.tensor(z, requires_grad=True)
    fn = {"linear": lambda x: x, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
          "leaky_relu": lambda x: torch.nn.functional.leaky_relu(x, 0.01), "elu": torch.nn.functional.elu,
          "selu": torch.selu, "gelu": torch.nn.functional.gelu,
          "gelu_tanh": lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
          "silu": torch.nn.functional.silu, "softplus": torch.nn.functional.softplus,
          "mish": torch.nn.functional.mish}[name]
    out = fn(zt)
    out.sum().backward()
    # atol: in the saturated tails (1 + tanh(...) of gelu_tanh, 1 - tanh^2) one ulp of a tanh
    # near -1 or 1 is the whole difference between two correct libms (gelu_tanh's derivative
    # multiplies it by up to ~30 around z = -6)
    np.testing.assert_allclose(naive.activation_forward(name, z), out.detach().numpy(), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(naive.activation_derivative(name, z), zt.grad.numpy(), rtol=1e-13, atol=1e-14)


TORCH_OPTIMIZERS = {
    # id: (naive name, naive kwargs, torch class name, torch kwargs)
    "sgd_wd": ("sgd", dict(weight_decay=0.01), "SGD", dict(weight_decay=0.01)),
    "momentum_wd": ("momentum", dict(momentum=0.9, weight_decay=0.01), "SGD", dict(momentum=0.9, weight_decay=0.01)),
    "nesterov": ("nesterov", dict(momentum=0.8), "SGD", dict(momentum=0.8, nesterov=True)),
    "adam_wd": ("adam", dict(beta1=0.8, beta2=0.99, eps=1e-7, weight_decay=0.01), "Adam",
                dict(betas=(0.8, 0.99), eps=1e-7, weight_decay=0.01)),
    "adamw": ("adamw", dict(weight_decay=0.05), "AdamW", dict(weight_decay=0.05)),
    "rmsprop": ("rmsprop", {}, "RMSprop", {}),
    "rmsprop_momentum_centered_wd": ("rmsprop", dict(alpha=0.9, eps=1e-6, momentum=0.5, centered=True, weight_decay=0.01),
                                     "RMSprop", dict(alpha=0.9, eps=1e-6, momentum=0.5, centered=True, weight_decay=0.01)),
    "adagrad_init_wd": ("adagrad", dict(eps=1e-9, initial_accumulator_value=0.1, weight_decay=0.01), "Adagrad",
                        dict(eps=1e-9, initial_accumulator_value=0.1, weight_decay=0.01)),
}
SCHEDULES = {
    "constant": lambda lr: lr,
    "cosine_warmup": lambda lr: naive.CosineDecay(lr / 10, 3, alpha=0.1, warmup_target=lr, warmup_steps=2),
    "exponential": lambda lr: naive.ExponentialDecay(lr, 2, 0.5),
    "piecewise": lambda lr: naive.PiecewiseConstantDecay([0, 2], [lr, lr / 2, lr / 5]),
    "onecycle": lambda lr: naive.OneCycle(lr, 5, pct_start=0.25),
}
# batch norm makes the preceding bias's gradient exactly 0, computed as rounding noise that
# adaptive optimizers blow up to steps of size lr: those nets have no bias
STEP_NETS = {
    "layer_bias": dict(activation=["gelu", "mish"], norm=["layer", None], bias=True),
    "batch_nobias": dict(activation=["selu", "softplus"], norm=["batch", "batch"], bias=False),
}


@pytest.mark.parametrize("net_name", list(STEP_NETS))
@pytest.mark.parametrize("sched", list(SCHEDULES))
@pytest.mark.parametrize("opt_name", list(TORCH_OPTIMIZERS))
def test_five_training_steps_match_torch(opt_name, sched, net_name):
    torch = pytest.importorskip("torch")
    name, kw, tname, tkw = TORCH_OPTIMIZERS[opt_name]
    lr = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.05}.get(name, 0.01)
    clip = 0.5 if opt_name in ("momentum_wd", "adam_wd", "rmsprop") else None
    spec = naive.Spec([4, 6, 5, 3], loss="cross_entropy", dropout=[0.25, 0.0], l1=0.001, l2=0.01,
                      label_smoothing=0.05, **STEP_NETS[net_name])
    rng = np.random.default_rng(11)
    params, buffers = naive.init_params(spec, rng, scale=1.5), naive.init_buffers(spec)
    batches = [(rng.standard_normal((n, 4)), rng.integers(0, 3, n), rng.uniform(0.5, 1.5, n)) for n in (8, 8, 6, 8, 5)]
    masks = [[(rng.uniform(size=(len(b[0]), 6)) >= 0.25).astype(np.float64), None] for b in batches]
    schedule = SCHEDULES[sched](lr)

    net, linears, norms, tmasks = torch_net(spec, params, buffers)
    topt = getattr(torch.optim, tname)(net.parameters(), lr=lr, foreach=False, **tkw)
    tsched = None
    if sched == "onecycle":
        tsched = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=lr, total_steps=5, pct_start=0.25,
                                                     anneal_strategy="cos", cycle_momentum=False)
    tlosses = []
    net.train()
    for t, ((X, y, sw), mk) in enumerate(zip(batches, masks)):
        if tsched is None:
            for g in topt.param_groups:
                g["lr"] = schedule(t) if callable(schedule) else schedule
        tmasks[0].mask = torch.from_numpy(mk[0])
        topt.zero_grad()
        L = torch_loss(spec, net(torch.from_numpy(X)), y, sw, linears)
        L.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip, foreach=False)
        topt.step()
        if tsched is not None:
            tsched.step()
        tlosses.append(L.item())

    opt = naive.Optimizer(name, lr=schedule, clip_norm=clip, **kw)
    losses = naive.train_steps(spec, params, buffers, batches, opt, masks)
    np.testing.assert_allclose(losses, tlosses, rtol=1e-12)
    assert max_rel(params, torch_params(spec, linears, norms)) < 1e-11
    if buffers.size:
        assert max_rel(buffers, torch_buffers(spec, norms)) < 1e-12
    net.eval()
    with torch.no_grad():
        P = torch.softmax(net(torch.from_numpy(batches[0][0])), 1).numpy()
    assert max_rel(naive.predict(spec, params, batches[0][0], buffers), P) < 1e-11


@pytest.mark.parametrize("total,pct", [(100, 0.3), (37, 0.25), (7, 0.5), (1, 0.3), (12, 0.01)])
def test_one_cycle_matches_torch_one_cycle_lr(total, pct):
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.3, total_steps=total, pct_start=pct,
                                                div_factor=20.0, final_div_factor=500.0, cycle_momentum=False)
    mine = naive.OneCycle(0.3, total, pct_start=pct, div_factor=20.0, final_div_factor=500.0)
    for t in range(total):
        assert mine(t) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-14, abs=0), t
        opt.step()
        sched.step()


# -- against optax -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def optax64():
    optax = pytest.importorskip("optax")
    import jax
    jax.config.update("jax_enable_x64", True)
    return optax


def optax_steps(optax, tx, params, grads_seq):
    import jax.numpy as jnp
    p = [jnp.asarray(x) for x in params]
    state = tx.init(p)
    for gs in grads_seq:
        updates, state = tx.update([jnp.asarray(g) for g in gs], state, p)
        p = optax.apply_updates(p, updates)
    return [np.asarray(x) for x in p]


LION_LAMB = {
    "lion": ("lion", dict(beta1=0.8, beta2=0.95, weight_decay=0.1), dict(b1=0.8, b2=0.95, weight_decay=0.1)),
    "lion_nowd": ("lion", dict(), dict(weight_decay=0.0)),
    "lamb": ("lamb", dict(beta1=0.85, beta2=0.99, eps=1e-5, weight_decay=0.02),
             dict(b1=0.85, b2=0.99, eps=1e-5, weight_decay=0.02)),
    "lamb_nowd": ("lamb", dict(), dict()),
}


@pytest.mark.parametrize("sched", ["constant", "cosine", "exponential"])
@pytest.mark.parametrize("case", list(LION_LAMB))
def test_lion_and_lamb_match_optax(optax64, case, sched):
    optax = optax64
    name, kw, okw = LION_LAMB[case]
    lr = 0.01
    mine, theirs = {
        "constant": (lr, lr),
        "cosine": (naive.CosineDecay(lr / 5, 4, alpha=0.2, warmup_target=lr, warmup_steps=2),
                   optax.warmup_cosine_decay_schedule(lr / 5, lr, 2, 6, end_value=0.2 * lr)),
        "exponential": (naive.ExponentialDecay(lr, 2, 0.7), optax.exponential_decay(lr, 2, 0.7)),
    }[sched]
    shapes = [(3, 4), (4,), (5,), (2, 2)]
    rng = np.random.default_rng(12)
    params = [rng.standard_normal(s) for s in shapes]
    params[2][:] = 0.0            # a beta at its initial zeros: LAMB's ratio falls back to 1
    grads = grad_sequence(shapes, 5, seed=13)
    grads[0][3][0, 0] = 0.0       # Lion's sign(0) = 0
    if callable(theirs):
        # optax keeps the update count as int32, and its schedules then compute in float32 even
        # under jax_enable_x64: feed them the count as float64
        import jax.numpy as jnp
        theirs = (lambda f: lambda count: f(jnp.asarray(count, jnp.float64)))(theirs)
    want = optax_steps(optax, getattr(optax, name)(theirs, **okw), params, grads)
    opt = naive.Optimizer(name, lr=mine, **kw)
    got = [p.copy() for p in params]
    for gs in grads:
        opt.step(got, gs)
    for g, w in zip(got, want):
        assert max_rel(g, w) < 1e-12


def test_keras_schedules_match_optax_equivalents(optax64):
    optax = optax64
    T = range(0, 40)
    pairs = [
        (naive.CosineDecay(0.1, 17, alpha=0.05), optax.cosine_decay_schedule(0.1, 17, alpha=0.05)),
        (naive.CosineDecay(0.1, 17), optax.cosine_decay_schedule(0.1, 17)),
        # Keras warms up from initial_learning_rate to warmup_target, then decays over decay_steps
        (naive.CosineDecay(0.002, 20, alpha=0.1, warmup_target=0.05, warmup_steps=6),
         optax.warmup_cosine_decay_schedule(0.002, 0.05, 6, 26, end_value=0.005)),
        (naive.ExponentialDecay(0.1, 5, 0.6), optax.exponential_decay(0.1, 5, 0.6)),
        (naive.ExponentialDecay(0.1, 5, 0.6, staircase=True), optax.exponential_decay(0.1, 5, 0.6, staircase=True)),
        # Keras switches after step b (t > b); optax at step b (t >= b): thresholds b + 1, scales as ratios
        (naive.PiecewiseConstantDecay([3, 10, 11], [0.1, 0.05, 0.02, 0.01]),
         optax.piecewise_constant_schedule(0.1, {4: 0.5, 11: 0.4, 12: 0.5})),
    ]
    for mine, theirs in pairs:
        got = np.array([mine(t) for t in T])
        want = np.array([float(theirs(t)) for t in T])
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)
