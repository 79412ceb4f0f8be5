"""fastbp.metrics against scikit-learn's functions of the same name, on every output kind."""
import math
import warnings

import numpy as np
import pytest

sk = pytest.importorskip("sklearn.metrics")

import fastbp
from fastbp import metrics as M

TOL = 1e-6
SEEDS = range(5)


def softmax(Z):
    E = np.exp(Z - Z.max(1, keepdims=True))
    return E / E.sum(1, keepdims=True)


def sigmoid(Z):
    return 1.0 / (1.0 + np.exp(-Z))


def weights(rng, n, how):
    if how is None:
        return None
    if how == "uniform":
        return rng.uniform(0.1, 3.0, n)
    w = rng.integers(0, 4, n).astype(np.float64)     # zeros, and repeated weights
    w[0] = 1.0
    return w


def logits(rng, n, k, ties):
    """Random logits; with ties, few distinct values, so many scores are exactly equal."""
    return rng.integers(-3, 4, (n, k)).astype(np.float64) if ties else rng.standard_normal((n, k)) * 2


def sk_quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ---- scikit-learn's reading of each output kind (the module docstring's table) ------------------
def reference(name, kind, y, P, w):
    """scikit-learn's value of metric ``name`` for predictions P of output kind ``kind``."""
    if kind == "softmax":
        labels = y if y.ndim == 1 else y.argmax(1)
        pred = P.argmax(1)
        k = P.shape[1]
        if name == "accuracy":
            return sk.accuracy_score(labels, pred, sample_weight=w)
        if name == "f1":
            return sk_quiet(sk.f1_score, labels, pred, average="macro", sample_weight=w)
        if name == "auc":
            if k == 2:
                return sk_quiet(sk.roc_auc_score, labels, P[:, 1], sample_weight=w)
            return sk_quiet(sk.roc_auc_score, labels, P, multi_class="ovr", average="macro",
                            labels=np.arange(k), sample_weight=w)
    if kind == "binary":
        yb, p = y.reshape(-1), P.reshape(-1)
        if name == "accuracy":
            return sk.accuracy_score(yb, p > 0.5, sample_weight=w)
        if name == "f1":
            return sk_quiet(sk.f1_score, yb, (p > 0.5).astype(int), average="macro", sample_weight=w)
        if name == "auc":
            return sk_quiet(sk.roc_auc_score, yb, p, sample_weight=w)
    if kind == "multilabel":
        if name == "accuracy":     # Keras' binary accuracy: the mean over every element
            return 1.0 - sk.hamming_loss(y, (P > 0.5).astype(int), sample_weight=w)
        if name == "f1":
            return sk_quiet(sk.f1_score, y, (P > 0.5).astype(int), average="macro", sample_weight=w)
        if name == "auc":
            return sk_quiet(sk.roc_auc_score, y, P, average="macro", sample_weight=w)
    fn = {"mae": sk.mean_absolute_error, "rmse": sk.root_mean_squared_error, "r2": sk.r2_score}[name]
    return sk_quiet(fn, y, P, sample_weight=w)


def check(name, kind, y, P, w, output):
    ours = M.get(name)(y, P, sample_weight=w, output=output)
    ref = reference(name, kind, np.asarray(y), np.asarray(P), w)
    assert isinstance(ours, float)
    assert math.isfinite(ours), (name, kind)
    assert ours == pytest.approx(ref, abs=TOL, rel=0), (name, kind, ours, ref)
    return ours


CLASSIFICATION = ["accuracy", "auc", "f1"]
WEIGHTS = [None, "uniform", "integer"]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [2, 3, 6])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("how", WEIGHTS)
@pytest.mark.parametrize("name", CLASSIFICATION)
def test_softmax_labels_and_one_hot(seed, k, ties, how, name):
    rng = np.random.default_rng(seed)
    n = 300
    P = softmax(logits(rng, n, k, ties))
    y = rng.integers(0, k, n)
    y[:k] = np.arange(k)                  # every class present
    w = weights(rng, n, how)
    a = check(name, "softmax", y, P, w, None)
    b = check(name, "softmax", np.eye(k)[y], P, w, "softmax")
    assert a == b


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", ["1d", "column"])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("how", WEIGHTS)
@pytest.mark.parametrize("name", CLASSIFICATION)
def test_binary_sigmoid(seed, shape, ties, how, name):
    rng = np.random.default_rng(seed)
    n = 250
    P = sigmoid(logits(rng, n, 1, ties))
    y = (rng.random(n) < sigmoid(3 * (P[:, 0] - 0.5))).astype(np.int64)
    y[:2] = [0, 1]
    w = weights(rng, n, how)
    if shape == "1d":
        check(name, "binary", y, P[:, 0], w, None)
    else:
        check(name, "binary", y.reshape(-1, 1).astype(np.float64), P, w, "sigmoid")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("how", WEIGHTS)
@pytest.mark.parametrize("name", CLASSIFICATION)
def test_multilabel_sigmoid(seed, k, ties, how, name):
    rng = np.random.default_rng(seed)
    n = 200
    P = sigmoid(logits(rng, n, k, ties))
    Y = (rng.random((n, k)) < 0.4).astype(np.float64)
    Y[0], Y[1] = 0, 1
    check(name, "multilabel", Y, P, weights(rng, n, how), "sigmoid")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("how", WEIGHTS)
@pytest.mark.parametrize("name", ["mae", "rmse", "r2"])
def test_regression(seed, k, how, name):
    rng = np.random.default_rng(seed)
    n = 150
    Y = rng.standard_normal((n, k)) * rng.uniform(0.5, 5, k) + rng.uniform(-3, 3, k)
    P = Y + rng.standard_normal((n, k))
    w = weights(rng, n, how)
    check(name, "regression", Y, P, w, "linear")
    if k == 1:
        check(name, "regression", Y[:, 0], P[:, 0], w, None)


@pytest.mark.parametrize("name", ["mae", "rmse", "r2"])
def test_regression_on_probabilities_with_one_hot_targets(name):
    rng = np.random.default_rng(7)
    P = softmax(rng.standard_normal((80, 3)))
    Y = np.eye(3)[rng.integers(0, 3, 80)]
    check(name, "regression", Y, P, None, "softmax")


@pytest.mark.parametrize("name", CLASSIFICATION + ["mae", "rmse", "r2"])
def test_float32_predictions(name):
    rng = np.random.default_rng(3)
    n, k = 1000, 4
    if name in CLASSIFICATION:
        P = softmax(rng.standard_normal((n, k))).astype(np.float32)
        y = rng.integers(0, k, n)
        check(name, "softmax", y, P, None, None)
    else:
        Y = rng.standard_normal((n, k)).astype(np.float32)
        P = (Y + 0.3 * rng.standard_normal((n, k))).astype(np.float32)
        check(name, "regression", Y, P, None, None)


# ---- edge cases --------------------------------------------------------------------------------
def test_auc_of_one_class_is_nan_with_a_warning_as_scikit_learn():
    p = np.array([0.2, 0.7, 0.4])
    with pytest.warns(M.UndefinedMetricWarning, match="one class"):
        ours = M.get("auc")([1, 1, 1], p)
    assert math.isnan(ours)
    assert math.isnan(sk_quiet(sk.roc_auc_score, [1, 1, 1], p))


def test_auc_of_an_absent_class_is_nan_as_scikit_learn_with_labels():
    rng = np.random.default_rng(0)
    P = softmax(rng.standard_normal((30, 3)))
    y = rng.integers(0, 2, 30)             # class 2 never occurs
    with pytest.warns(M.UndefinedMetricWarning, match="class 2"):
        ours = M.get("auc")(y, P)
    assert math.isnan(ours)
    ref = sk_quiet(sk.roc_auc_score, y, P, multi_class="ovr", labels=[0, 1, 2])
    assert math.isnan(ref)


def test_auc_with_every_positive_weighted_zero_is_nan():
    with pytest.warns(M.UndefinedMetricWarning, match="weight 0"):
        v = M.get("auc")([0, 1, 0, 1], [0.1, 0.9, 0.3, 0.4], sample_weight=[1, 0, 2, 0])
    assert math.isnan(v)


def test_auc_extremes_and_all_tied():
    y = np.array([0, 0, 1, 1])
    assert M.get("auc")(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert M.get("auc")(y, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert M.get("auc")(y, [0.5, 0.5, 0.5, 0.5]) == 0.5


def test_auc_against_the_pairwise_definition():
    """Probability that a positive outranks a negative, ties counted 1/2, weights w_i * w_j."""
    rng = np.random.default_rng(11)
    s = rng.integers(0, 5, 60) / 4.0
    y = rng.integers(0, 2, 60)
    w = rng.uniform(0, 2, 60)
    pos, neg = y == 1, y == 0
    diff = s[pos][:, None] - s[neg][None, :]
    ww = w[pos][:, None] * w[neg][None, :]
    expected = (ww * ((diff > 0) + 0.5 * (diff == 0))).sum() / ww.sum()
    assert M.get("auc")(y, s, sample_weight=w) == pytest.approx(expected, abs=1e-12)


def test_f1_over_the_classes_present_in_targets_or_predictions():
    y = np.array([0, 0, 2, 2])
    P = np.eye(4)[[0, 2, 2, 3]]            # predicts class 3 (not in y); class 1 appears nowhere
    ours = M.get("f1")(y, P)
    assert ours == pytest.approx(sk.f1_score(y, P.argmax(1), average="macro"), abs=1e-15)
    # class 0: tp 1 of 2 true, 1 predicted (F1 2/3); class 2: tp 1, 2 true, 2 predicted (1/2);
    # class 3: 0. Class 1 does not count.
    assert ours == pytest.approx((2 / 3 + 1 / 2 + 0) / 3, abs=1e-15)


def test_f1_multilabel_column_without_positives_counts_zero_as_scikit_learn():
    Y = np.array([[1, 0], [0, 0], [1, 0]])
    P = np.array([[0.9, 0.1], [0.2, 0.3], [0.8, 0.2]])
    ours = M.get("f1")(Y, P, output="sigmoid")
    assert ours == 0.5
    assert ours == sk_quiet(sk.f1_score, Y, (P > 0.5).astype(int), average="macro")


def test_f1_binary_when_only_one_class_is_anywhere():
    ours = M.get("f1")([0, 0, 0], [0.1, 0.2, 0.3])
    assert ours == 1.0 == sk.f1_score([0, 0, 0], [0, 0, 0], average="macro")


@pytest.mark.parametrize("exact", [True, False])
def test_r2_of_constant_targets_as_scikit_learn(exact):
    Y = np.array([[3.0, 1.0], [3.0, 2.0], [3.0, 4.0]])
    P = Y.copy() if exact else Y + [[0.5, 0.1], [0.0, -0.2], [0.0, 0.3]]
    w = np.array([0.5, 1.5, 2.0])        # a weighted mean of 3.0 that is exactly 3.0
    for sw in (None, w):
        ours = M.get("r2")(Y, P, sample_weight=sw)
        assert ours == pytest.approx(sk.r2_score(Y, P, sample_weight=sw), abs=1e-12)
    # the constant column scores 1 when predicted exactly, 0 otherwise, also with weights whose
    # weighted mean of the column rounds off 3.0 (where scikit-learn divides by that rounding error)
    for sw in (None, w, np.array([0.3, 1.7, 2.9])):
        assert M.get("r2")(Y[:, :1], P[:, :1], sample_weight=sw) == (1.0 if exact else 0.0)


def test_r2_of_one_row_is_nan_as_scikit_learn():
    with pytest.warns(M.UndefinedMetricWarning, match="two rows"):
        assert math.isnan(M.get("r2")([1.0], [2.0]))
    assert math.isnan(sk_quiet(sk.r2_score, [1.0], [2.0]))


def test_zero_weights_drop_rows():
    rng = np.random.default_rng(5)
    P = softmax(rng.standard_normal((40, 3)))
    y = rng.integers(0, 3, 40)
    y[:3] = [0, 1, 2]
    w = np.r_[np.ones(20), np.zeros(20)]
    for name in ("accuracy", "auc", "f1"):
        assert M.get(name)(y, P, sample_weight=w) == pytest.approx(M.get(name)(y[:20], P[:20]), abs=1e-12)


def test_accuracy_thresholds_soft_sigmoid_targets_like_the_built_in():
    y = np.array([[0.9, 0.2], [0.4, 0.6]])
    P = np.array([[0.7, 0.7], [0.3, 0.8]])
    assert M.get("accuracy")(y, P, output="sigmoid") == 0.75


# ---- fastbp's own accuracy and these metrics agree on a model ----------------------------------
@pytest.mark.parametrize("output,loss", [("softmax", "cross_entropy"), ("sigmoid", "binary_cross_entropy")])
def test_accuracy_equals_evaluate_accuracy(output, loss):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 5))
    model = fastbp.MLP([5, 7, 3], activation="tanh", output=output, loss=loss, dtype="float64", seed=1)
    y = rng.integers(0, 3, 120) if output == "softmax" else (rng.random((120, 3)) < 0.5).astype(np.float64)
    ours = M.compute(["accuracy"], y, model.predict(X), output=output)["accuracy"]
    assert ours == pytest.approx(model.evaluate(X, y)["accuracy"], abs=1e-12)


# ---- registry, names, validation ---------------------------------------------------------------
def test_registry_and_directions():
    assert sorted(M.METRICS) == ["accuracy", "auc", "f1", "mae", "r2", "rmse"]
    assert {n for n, m in M.METRICS.items() if m.greater_is_better} == {"accuracy", "auc", "f1", "r2"}
    for key, up in [("val_auc", True), ("accuracy", True), ("val_f1", True), ("r2", True), ("loss", False),
                    ("val_rmse", False), ("mae", False), ("lr", False)]:
        assert M.is_maximized(key) is up
    with pytest.raises(TypeError):
        M.METRICS["x"] = M.METRICS["auc"]


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"'acc'.*\['accuracy', 'auc', 'f1', 'mae', 'r2', 'rmse'\]"):
        M.get("acc")
    with pytest.raises(TypeError, match="metric: expected one of"):
        M.get(3)
    with pytest.raises(ValueError, match=r"unknown name 'precision'"):
        M.compute(["auc", "precision"], [0, 1], [0.2, 0.8])


def test_check_names():
    assert M.check_names(None) == ()
    assert M.check_names("auc") == ("auc",)
    assert M.check_names(["r2", "mae"], output="linear") == ("r2", "mae")
    with pytest.raises(ValueError, match="listed twice"):
        M.check_names(["auc", "auc"])
    with pytest.raises(ValueError, match=r"'auc' needs class probabilities.*'linear'"):
        M.check_names(["mae", "auc"], output="linear")
    with pytest.raises(TypeError, match=r"metrics\[1\]"):
        M.check_names(["mae", None])
    with pytest.raises(TypeError, match="metrics: expected a list"):
        M.check_names({"auc": 1})
    with pytest.raises(ValueError, match="output: expected one of"):
        M.check_names(["auc"], output="relu")


@pytest.mark.parametrize("call,match", [
    (lambda: M.get("auc")([0, 1], [0.2, np.nan]), r"y_pred: expected finite values, found nan at index \(1"),
    (lambda: M.get("mae")([0, np.inf], [0.2, 1.0]), "y_true: expected finite values"),
    (lambda: M.get("mae")([0, 1, 2], [0.2, 1.0]), r"y_true: expected 2 rows to match y_pred, got shape \(3,\)"),
    (lambda: M.get("mae")([0, 1], [0.2, 1.0], sample_weight=[1, 2, 3]), r"sample_weight: expected shape \(2,\)"),
    (lambda: M.get("mae")([0, 1], [0.2, 1.0], sample_weight=[1, -2]), "sample_weight: expected weights >= 0"),
    (lambda: M.get("mae")([0, 1], [0.2, 1.0], sample_weight=[0, 0]), "positive sum"),
    (lambda: M.get("accuracy")([0, 3], np.full((2, 3), 1 / 3)), r"class labels in \[0, 2\].*max 3"),
    (lambda: M.get("accuracy")([0, 1.5], np.full((2, 3), 1 / 3)), "non-integer"),
    (lambda: M.get("auc")([0, 0.5], [0.2, 0.7]), "auc expects 0/1 targets.*0.5"),
    (lambda: M.get("accuracy")([0, 2], [0.2, 0.7]), r"targets in \[0, 1\]"),
    (lambda: M.get("auc")([0.0, 1.0], [0.2, 0.7], output="linear"), "output 'softmax' or 'sigmoid'"),
    (lambda: M.get("f1")(np.eye(3), np.eye(3)), "pass output='softmax' or output='sigmoid'"),
    (lambda: M.get("mae")([0, 1], np.full((2, 3), 1 / 3)), "one-hot targets"),
    (lambda: M.get("mae")(np.zeros((2, 2)), np.zeros((2, 3))), r"expected \(2, 3\), got \(2, 2\)"),
    (lambda: M.get("mae")(np.zeros((2, 2, 1)), np.zeros((2, 2))), "1-D or 2-D"),
    (lambda: M.get("mae")([], []), "at least one row"),
    (lambda: M.get("mae")(["a", "b"], [1, 2]), "y_true: expected numbers"),
    (lambda: M.get("mae")(None, [1, 2]), "y_true: expected an array"),
    (lambda: M.get("auc")([0, 1], [0.2, 0.7], output=1), "output: expected one of"),
])
def test_invalid_inputs(call, match):
    with pytest.raises((TypeError, ValueError), match=match):
        call()


# ---- the training-loop accumulator -------------------------------------------------------------
def test_training_metrics_read_rows_in_the_order_trained():
    rng = np.random.default_rng(2)
    n, k = 50, 3
    y = rng.integers(0, k, n)
    w = rng.uniform(0.5, 2, n)
    tm = M.TrainingMetrics(["accuracy", "auc", "f1"], y, k, output="softmax", sample_weight=w)
    perm = rng.permutation(n)
    P = softmax(rng.standard_normal((n, k)))   # P[r]: the prediction of data row r
    tm.predictions[:] = P[perm]                  # filled in training order
    got = tm.result(perm)
    assert got == pytest.approx(M.compute(["accuracy", "auc", "f1"], y, P, w), abs=1e-14)
    assert list(got) == ["accuracy", "auc", "f1"]
    part = tm.result(perm, count=20)
    assert part == M.compute(["accuracy", "auc", "f1"], y[perm[:20]], P[perm[:20]], w[perm[:20]])
    assert part != pytest.approx(got)
    with pytest.raises(TypeError, match="output: expected one of"):
        M.TrainingMetrics(["auc"], y, k, output=None)
    with pytest.raises(ValueError, match="n_outputs: expected an int >= 1"):
        M.TrainingMetrics(["auc"], y, 0, output="softmax")


# ---- metrics in fit and evaluate ----------------------------------------------------------------
CLASSIFY = ["accuracy", "auc", "f1"]
REGRESS = ["mae", "rmse", "r2"]


def _task_data(output, n=90, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    if output == "softmax":
        y = rng.integers(0, k, n)
    elif output == "sigmoid":
        y = rng.integers(0, 2, n).astype(np.float64)
    else:
        y = X[:, :1] @ np.ones(1) + 0.3 * rng.standard_normal(n)
    return X, y


def _sk_reference(names, y, P, output):
    """scikit-learn's functions on predictions P (float64)."""
    out = {}
    for name in names:
        if name == "accuracy":
            pred = P.argmax(1) if output == "softmax" else (P[:, 0] > 0.5)
            out[name] = sk.accuracy_score(y, pred)
        elif name == "auc":
            out[name] = (sk.roc_auc_score(y, P, multi_class="ovr", labels=range(P.shape[1]))
                         if output == "softmax" and P.shape[1] > 2 else sk.roc_auc_score(y, P[:, -1]))
        elif name == "f1":
            pred = P.argmax(1) if output == "softmax" else (P[:, 0] > 0.5).astype(int)
            out[name] = sk.f1_score(y, pred, average="macro")
        elif name == "mae":
            out[name] = sk.mean_absolute_error(y, P[:, 0])
        elif name == "rmse":
            out[name] = math.sqrt(sk.mean_squared_error(y, P[:, 0]))
        else:
            out[name] = sk.r2_score(y, P[:, 0])
    return out


def _net(output, sizes, **kw):
    k = {"softmax": 3, "sigmoid": 1, "linear": 1}[output]
    return fastbp.MLP([5] + sizes + [k], output=output, dtype="float64", seed=1, **kw)


NETS = [  # (sizes, MLP options): the small-net kernels, the batch-major (BLAS) ones, a featured net
    ([4], {}),
    ([300], {}),
    ([6], {"norm": "layer", "activation": "gelu"}),
]


@pytest.mark.parametrize("output", ["softmax", "sigmoid", "linear"])
@pytest.mark.parametrize("net", range(len(NETS)))
def test_training_metrics_are_each_rows_prediction_at_its_step(output, net):
    # Keras' way, no second pass: replay fit's minibatches (shuffle=False) with train_step and
    # predict each batch before its step.
    sizes, kw = NETS[net]
    names = CLASSIFY if output != "linear" else REGRESS
    X, y = _task_data(output)
    model, ref = _net(output, sizes, **kw), _net(output, sizes, **kw)
    hist = model.fit(X, y, epochs=2, batch_size=16, shuffle=False, optimizer=fastbp.Adam(lr=0.01), verbose=0,
                     metrics=names)
    opt = fastbp.Adam(lr=0.01)
    for epoch in range(2):
        P = np.concatenate([_step(ref, X[r:r + 16], y[r:r + 16], opt) for r in range(0, len(X), 16)])
        want = _sk_reference(names, y, P, output)
        for name in names:
            assert hist.history[name][epoch] == pytest.approx(want[name], abs=1e-9), (name, epoch)
    np.testing.assert_allclose(model.params, ref.params, rtol=1e-12, atol=1e-12)


def _step(model, Xb, yb, opt):
    P = model.predict(Xb)
    model.train_step(Xb, yb, opt)
    return P


@pytest.mark.parametrize("hidden", [8, 300])
def test_training_metrics_follow_the_shuffled_rows(hidden):
    # With shuffle, the accuracy metric (from the copied predictions, mapped back to their data
    # rows) equals the kernels' own count of an identical fit without metrics, which runs the
    # same bits: metrics change nothing else.
    X, y = _task_data("softmax", n=200)
    hist = _net("softmax", [hidden]).fit(X, y, epochs=3, batch_size=32, verbose=0, metrics=["accuracy", "auc"])
    plain = _net("softmax", [hidden]).fit(X, y, epochs=3, batch_size=32, verbose=0)
    assert list(hist.history) == ["loss", "accuracy", "auc", "lr"]
    np.testing.assert_array_equal(hist.history["loss"], plain.history["loss"])
    assert hist.history["accuracy"] == pytest.approx(plain.history["accuracy"], abs=1e-12)


@pytest.mark.parametrize("output", ["softmax", "sigmoid", "linear"])
def test_validation_and_evaluate_metrics_equal_scikit_learn(output):
    names = CLASSIFY if output != "linear" else REGRESS
    X, y = _task_data(output, n=120)
    Xv, yv = _task_data(output, n=70, seed=5)
    model = _net(output, [8])
    hist = model.fit(X, y, epochs=2, batch_size=16, verbose=0, metrics=names, validation_data=(Xv, yv))
    P = model.predict(Xv)
    want = _sk_reference(names, yv, P, output)
    ev = model.evaluate(Xv, yv, metrics=names)
    for name in names:
        assert hist.history["val_" + name][-1] == pytest.approx(want[name], abs=1e-6)
        assert ev[name] == pytest.approx(want[name], abs=1e-6)
    assert set(ev) == {"loss"} | set(names) | ({"accuracy"} if output != "linear" else set())
    # float32: still scikit-learn's value on the model's predictions
    m32 = fastbp.MLP([5, 8, P.shape[1]], output=output, seed=1)
    m32.fit(X, y, epochs=1, verbose=0)
    ev32 = m32.evaluate(Xv, yv, metrics=names)
    want32 = _sk_reference(names, yv, m32.predict(Xv).astype(np.float64), output)
    for name in names:
        assert ev32[name] == pytest.approx(want32[name], abs=1e-6)


def test_fit_metrics_with_validation_split_are_on_the_last_rows():
    X, y = _task_data("softmax", n=100)
    model = _net("softmax", [8])
    hist = model.fit(X, y, epochs=1, verbose=0, metrics=["auc"], validation_split=0.3)
    want = _sk_reference(["auc"], y[70:], model.predict(X[70:]), "softmax")
    assert hist.history["val_auc"][-1] == pytest.approx(want["auc"], abs=1e-9)


@pytest.mark.parametrize("kwargs, match", [
    (dict(metrics=["auc"]), "metrics: 'auc' needs class probabilities"),
    (dict(metrics=["mse"]), "metric: unknown name 'mse'; expected one of"),
    (dict(metrics=["r2", "r2"]), "metrics: 'r2' is listed twice"),
    (dict(metrics="r2x"), "unknown name 'r2x'"),
    (dict(metrics=[3]), r"metrics\[0\]: expected one of"),
    (dict(metrics={"r2": 1}), "metrics: expected a list of names"),
])
def test_bad_metrics_change_nothing(kwargs, match):
    X, y = _task_data("linear")
    model = _net("linear", [4])
    before = model.params.copy()
    with pytest.raises((TypeError, ValueError), match=match):
        model.fit(X, y, verbose=0, **kwargs)
    with pytest.raises((TypeError, ValueError), match=match):
        model.evaluate(X, y, **kwargs)
    np.testing.assert_array_equal(model.params, before)
    assert model.optimizer is None and model.updates == 0


def test_callbacks_maximize_the_metrics_that_grow():
    for key in ("val_auc", "auc", "val_f1", "val_r2", "accuracy"):
        assert fastbp.EarlyStopping(monitor=key)._m.maximize
    for key in ("val_loss", "val_mae", "rmse", "lr"):
        assert not fastbp.EarlyStopping(monitor=key)._m.maximize
    # a fit monitoring val_auc keeps the epoch with the highest one
    X, y = _task_data("sigmoid", n=120)
    Xv, yv = _task_data("sigmoid", n=60, seed=3)
    model = _net("sigmoid", [8])
    hist = model.fit(X, y, epochs=6, verbose=0, metrics=["auc"], validation_data=(Xv, yv),
                     optimizer=fastbp.SGD(lr=0.5),
                     callbacks=[fastbp.EarlyStopping(monitor="val_auc", patience=10, restore_best_weights=True)])
    best = max(hist.history["val_auc"])
    assert model.evaluate(Xv, yv, metrics=["auc"])["auc"] == pytest.approx(best, abs=1e-12)


def test_csv_logger_columns_are_epoch_then_sorted_history_keys(tmp_path):
    X, y = _task_data("softmax", n=60)
    path = tmp_path / "log.csv"
    _net("softmax", [4]).fit(X, y, epochs=2, verbose=0, metrics=["f1", "auc"], validation_split=0.25,
                             callbacks=[fastbp.CSVLogger(str(path))])
    header = path.read_text().splitlines()[0].split(",")
    assert header == ["epoch"] + sorted(["loss", "accuracy", "f1", "auc", "val_loss", "val_accuracy", "val_f1",
                                         "val_auc", "lr"])


def test_metrics_of_a_diverged_run_with_on_nan_ignore_are_nan():
    X, y = _task_data("linear", n=64)
    model = _net("linear", [4])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        hist = model.fit(X, y, epochs=2, batch_size=16, verbose=0, on_nan="ignore", metrics=["mae", "r2"],
                         optimizer=fastbp.SGD(lr=1e300), validation_data=(X, y))
    assert len(hist.epoch) == 2
    assert all(math.isnan(v) for k in ("mae", "r2", "val_mae") for v in hist.history[k][-1:])
