"""fastbp.sklearn: scikit-learn's own estimator checks, and step-by-step agreement with
sklearn.neural_network where fastbp promises the same arithmetic (see fastbp/sklearn.py)."""
import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn import neural_network as sk                                    # noqa: E402
from sklearn.datasets import make_classification, make_multilabel_classification, make_regression  # noqa: E402
from sklearn.dummy import DummyClassifier                                   # noqa: E402
from sklearn.exceptions import ConvergenceWarning                           # noqa: E402
from sklearn.model_selection import GridSearchCV                            # noqa: E402
from sklearn.pipeline import Pipeline                                       # noqa: E402
from sklearn.preprocessing import StandardScaler                            # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks          # noqa: E402

from fastbp import sklearn as fb                                            # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


# ---- scikit-learn's estimator checks ------------------------------------------------------------
# parametrize_with_checks is check_estimator's pytest form: the same checks, one test each.
# None is expected to fail, so there is no expected_failed_checks table.
@parametrize_with_checks([
    fb.MLPClassifier(),                                         # the defaults: adam, max_iter=200
    fb.MLPClassifier(solver="sgd", learning_rate="adaptive", max_iter=100),
    fb.MLPClassifier(solver="lbfgs", max_iter=50),
    fb.MLPRegressor(),
    fb.MLPRegressor(solver="sgd", max_iter=100),
    fb.MLPRegressor(solver="lbfgs", max_iter=50),
])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# ---- same parameters as scikit-learn ------------------------------------------------------------
@pytest.mark.parametrize("name", ["MLPClassifier", "MLPRegressor"])
def test_parameters_and_defaults_are_sklearns(name):
    ours, theirs = getattr(fb, name)(), getattr(sk, name)()
    assert ours.get_params() == theirs.get_params()
    ours.set_params(hidden_layer_sizes=(3, 2), alpha=0.5)
    assert ours.get_params()["hidden_layer_sizes"] == (3, 2) and ours.alpha == 0.5


# ---- step-by-step agreement with sklearn.neural_network -----------------------------------------
def _clf_data(kind):
    if kind == "multiclass":
        X, y = make_classification(240, 6, n_informative=4, n_classes=3, random_state=0)
    elif kind == "binary":
        X, y = make_classification(240, 6, n_informative=4, n_classes=2, random_state=1)
    else:
        X, y = make_multilabel_classification(240, 6, n_classes=3, random_state=2)
    return StandardScaler().fit_transform(X), y


def _fit_both(name, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = getattr(sk, name)(**kw).fit(X, y)
        ours = getattr(fb, name)(**kw).fit(X, y)
    return ours, theirs


def _assert_same_params(ours, theirs, atol):
    assert len(ours.coefs_) == len(theirs.coefs_)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)


# SGD with momentum in scikit-learn's form, including learning-rate changes between epochs
# (invscaling every epoch; adaptive: tol=10 makes every second epoch "no improvement").
SGD_CASES = {
    "nesterov": dict(momentum=0.9, nesterovs_momentum=True),
    "heavy_ball": dict(momentum=0.8, nesterovs_momentum=False),
    "plain": dict(momentum=0.0),
    "invscaling": dict(learning_rate="invscaling", learning_rate_init=0.2, power_t=0.3),
    "adaptive": dict(learning_rate="adaptive", learning_rate_init=0.05, tol=10.0, n_iter_no_change=1),
}


@pytest.mark.parametrize("case", sorted(SGD_CASES))
@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel"])
def test_classifier_sgd_follows_sklearn(kind, case):
    X, y = _clf_data(kind)
    kw = dict(hidden_layer_sizes=(7, 5), activation="tanh", solver="sgd", alpha=0.0, batch_size=50,
              shuffle=False, max_iter=6, random_state=3, **SGD_CASES[case])
    ours, theirs = _fit_both("MLPClassifier", X, y, **kw)
    _assert_same_params(ours, theirs, atol=1e-12)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-12)
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    assert ours.out_activation_ == theirs.out_activation_ and ours.n_outputs_ == theirs.n_outputs_
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-12)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
@pytest.mark.parametrize("n_targets", [1, 3])
def test_regressor_sgd_follows_sklearn(activation, n_targets):
    X, y = make_regression(200, 5, n_targets=n_targets, noise=1.0, random_state=4)
    y = y / y.std()
    kw = dict(hidden_layer_sizes=(6,), activation=activation, solver="sgd", alpha=0.0, batch_size=64,
              shuffle=False, max_iter=5, random_state=5, learning_rate_init=0.01)
    ours, theirs = _fit_both("MLPRegressor", X, y, **kw)
    _assert_same_params(ours, theirs, atol=1e-12)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-12)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), atol=1e-11)
    assert ours.predict(X).shape == theirs.predict(X).shape


def test_adam_follows_sklearn_up_to_eps_placement():
    # torch's Adam (fastbp's) adds eps to sqrt(v_hat), scikit-learn adds it to sqrt(v) before the
    # bias correction. With a negligible eps the two are the same arithmetic ...
    X, y = _clf_data("multiclass")
    kw = dict(hidden_layer_sizes=(8,), solver="adam", alpha=0.0, batch_size=40, shuffle=False, max_iter=5,
              random_state=6, learning_rate_init=1e-2, activation="relu")
    ours, theirs = _fit_both("MLPClassifier", X, y, epsilon=1e-30, **kw)
    _assert_same_params(ours, theirs, atol=1e-12)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-12)
    # ... and with the default eps the paths differ by eps-sized terms only where gradients are
    # healthy (tanh: no dead units whose sqrt(v) is itself of the order of eps).
    ours, theirs = _fit_both("MLPClassifier", X, y, **{**kw, "activation": "tanh"})
    _assert_same_params(ours, theirs, atol=1e-5)
    untrained = sk.MLPClassifier(**{**kw, "activation": "tanh", "max_iter": 1}).fit(X, y)
    moved = max(np.abs(a - b).max() for a, b in zip(theirs.coefs_, untrained.coefs_))
    assert moved > 1e-2                 # the tolerance is small against what training changed


@pytest.mark.parametrize("name,kind", [("MLPClassifier", "multiclass"), ("MLPClassifier", "binary"),
                                       ("MLPRegressor", None)])
def test_lbfgs_follows_sklearn(name, kind):
    # lbfgs adds scikit-learn's exact L2 penalty (weights only, / n) in Python.
    if kind is None:
        X, y = make_regression(150, 4, noise=1.0, random_state=7)
        y = y / y.std()
    else:
        X, y = _clf_data(kind)
    kw = dict(hidden_layer_sizes=(5,), solver="lbfgs", alpha=1e-2, max_iter=15, random_state=8)
    ours, theirs = _fit_both(name, X, y, **kw)
    _assert_same_params(ours, theirs, atol=1e-8)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-10)
    assert ours.n_iter_ == theirs.n_iter_


@pytest.mark.parametrize("name,kind", [("MLPClassifier", "multiclass"), ("MLPClassifier", "multilabel"),
                                       ("MLPRegressor", 1), ("MLPRegressor", 3)])
def test_alpha_is_sklearns_weights_only_l2(name, kind):
    # n a multiple of batch_size: every minibatch is full, and alpha is scikit-learn's penalty
    # exactly: weights only (the intercepts follow scikit-learn's too), loss_curve_ included
    # (multi-output regression: the penalty at the end-of-epoch weights, see the docstring).
    if name == "MLPRegressor":
        X, y = make_regression(240, 5, n_targets=kind, noise=1.0, random_state=4)
        y = y / y.std()
    else:
        X, y = _clf_data(kind)
    kw = dict(hidden_layer_sizes=(7, 5), activation="tanh", solver="sgd", alpha=0.3, batch_size=60,
              shuffle=False, max_iter=5, random_state=9, learning_rate_init=0.05)
    ours, theirs = _fit_both(name, X, y, **kw)
    _assert_same_params(ours, theirs, atol=1e-12)
    assert ours.model_.l2 == 0.5 * 0.3 / 60 and ours.model_.l1 == 0
    # several outputs: the epoch's penalty is the mean of those at its start and end (here a
    # large alpha moves it a lot within an epoch)
    rel = 1e-12 if kind != 3 else 5e-3
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=rel)
    no_alpha = getattr(fb, name)(**{**kw, "alpha": 0.0}).fit(X, y)
    assert no_alpha.model_.l2 == 0 and not np.allclose(no_alpha.coefs_[0], ours.coefs_[0])


def test_alpha_on_a_partial_last_batch_is_the_documented_difference():
    # The minibatches before the last one are full, so both paths reach the same weights W before
    # the last (partial, m rows) one. There scikit-learn's gradient adds alpha*W/m, fastbp's
    # alpha*W/batch_size; the intercepts get no penalty in either.
    X, y = _clf_data("multiclass")
    lr, alpha, batch, m = 0.1, 0.5, 50, X.shape[0] % 50
    assert m == 40
    kw = dict(hidden_layer_sizes=(6,), solver="sgd", momentum=0.0, alpha=alpha, batch_size=batch, shuffle=False,
              max_iter=1, random_state=9, learning_rate_init=lr)
    ours, theirs = _fit_both("MLPClassifier", X, y, **kw)
    # W before the last minibatch: scikit-learn on the rows of the full minibatches (same init)
    before = _fit_both("MLPClassifier", X[:-m], y[:-m], **kw)[1].coefs_
    for a, b, W in zip(ours.coefs_, theirs.coefs_, before):
        np.testing.assert_allclose(a - b, lr * alpha * W * (1 / m - 1 / batch), rtol=0, atol=1e-13)
    for a, b in zip(ours.intercepts_, theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)
    # loss_curve_: that minibatch's penalty 0.5*alpha*|W|^2/m, weighted m/n by scikit-learn, counts
    # m/batch_size of it in fastbp
    sq = sum((W ** 2).sum() for W in before)
    n = X.shape[0]
    assert theirs.loss_curve_[0] - ours.loss_curve_[0] == pytest.approx(
        0.5 * alpha * sq / n * (1 - m / batch), rel=1e-9)


@pytest.mark.parametrize("name", ["MLPClassifier", "MLPRegressor"])
def test_new_activations_by_name(name):
    X, y = _clf_data("multiclass") if name == "MLPClassifier" else make_regression(120, 5, random_state=1)
    for act in ("leaky_relu", "elu", "selu", "gelu", "gelu_tanh", "silu", "softplus", "mish"):
        est = getattr(fb, name)(hidden_layer_sizes=(8, 4), activation=act, max_iter=3, random_state=0).fit(X, y)
        assert [l.activation for l in est.model_.layers[:-1]] == [act, act]
        P = est.predict_proba(X) if name == "MLPClassifier" else est.predict(X)
        np.testing.assert_array_equal(P, est.model_.predict(X) if name == "MLPClassifier"
                                      else est.model_.predict(X)[:, 0])
        # the initial weights are scikit-learn's Glorot uniform draws, as for "relu"
        first = getattr(fb, name)(hidden_layer_sizes=(8, 4), activation=act, max_iter=1, random_state=0,
                                  learning_rate_init=1e-300).fit(X, y)
        relu = getattr(sk, name)(hidden_layer_sizes=(8, 4), max_iter=1, random_state=0,
                                 learning_rate_init=1e-300).fit(X, y)
        _assert_same_params(first, relu, atol=1e-12)
    with pytest.raises(ValueError, match=r"activation.*must be one of \[.*'gelu'.*'identity'"):
        getattr(fb, name)(activation="swish").fit(X, y)


@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
@pytest.mark.parametrize("n_targets", [1, 2])
def test_poisson_regressor_follows_sklearn(solver, n_targets):
    rng = np.random.default_rng(12)
    X = rng.standard_normal((200, 4))
    rate = np.exp(0.5 * X[:, :1] - 0.3 * X[:, 1:2] + np.arange(n_targets) * 0.2)
    y = rng.poisson(rate).astype(float)
    y = y[:, 0] if n_targets == 1 else y
    kw = dict(loss="poisson", hidden_layer_sizes=(6,), activation="tanh", solver=solver, alpha=0.01,
              random_state=13)
    kw.update(dict(batch_size=50, shuffle=False, max_iter=5, learning_rate_init=0.01) if solver == "sgd"
              else dict(max_iter=15))
    ours, theirs = _fit_both("MLPRegressor", X, y, **kw)
    assert ours.out_activation_ == theirs.out_activation_ == "exp" and ours.model_.loss == "poisson"
    _assert_same_params(ours, theirs, atol=1e-12 if solver == "sgd" else 1e-8)
    if solver == "sgd":
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-12)
    else:
        assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-10)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-8)
    with pytest.raises(ValueError, match="y >= 0"):
        fb.MLPRegressor(**kw).fit(X, -y - 1)


def test_sample_weight_full_batch_follows_sklearn():
    X, y = _clf_data("binary")
    sw = np.random.default_rng(10).integers(0, 4, X.shape[0]).astype(float)
    kw = dict(hidden_layer_sizes=(5,), solver="sgd", alpha=0.0, batch_size=X.shape[0], shuffle=False,
              max_iter=4, random_state=11, learning_rate_init=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = sk.MLPClassifier(**kw).fit(X, y, sample_weight=sw)
        ours = fb.MLPClassifier(**kw).fit(X, y, sample_weight=sw)
        unweighted = fb.MLPClassifier(**kw).fit(X, y)
        ones = fb.MLPClassifier(**kw).fit(X, y, sample_weight=np.full(X.shape[0], 3.0))
    _assert_same_params(ours, theirs, atol=1e-12)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-12)
    _assert_same_params(ones, unweighted, atol=1e-15)      # constant weights change nothing
    assert not np.allclose(ours.coefs_[0], unweighted.coefs_[0])


def test_stopping_warm_start_and_partial_fit_follow_sklearn():
    X, y = _clf_data("multiclass")
    base = dict(hidden_layer_sizes=(6,), solver="sgd", alpha=0.0, batch_size=60, shuffle=False, random_state=12,
                learning_rate_init=0.05)
    # tol / n_iter_no_change: both stop at the same epoch, well before max_iter.
    ours, theirs = _fit_both("MLPClassifier", X, y, max_iter=200, tol=2e-2, n_iter_no_change=3, **base)
    assert ours.n_iter_ == theirs.n_iter_ < 200
    assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=1e-12)
    _assert_same_params(ours, theirs, atol=1e-12)
    # warm_start: a second fit continues from the first one's weights (new optimizer, as sklearn).
    ours, theirs = _fit_both("MLPClassifier", X, y, max_iter=3, warm_start=True, **base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, y)
        theirs.fit(X, y)
    assert len(ours.loss_curve_) == len(theirs.loss_curve_) == 6
    _assert_same_params(ours, theirs, atol=1e-12)
    # partial_fit: one epoch per call, optimizer state carried over.
    ours, theirs = fb.MLPClassifier(**base), sk.MLPClassifier(**base)
    for part in np.array_split(np.arange(X.shape[0]), 3):
        ours.partial_fit(X[part], y[part], classes=np.unique(y))
        theirs.partial_fit(X[part], y[part], classes=np.unique(y))
    _assert_same_params(ours, theirs, atol=1e-12)
    assert ours.n_iter_ == theirs.n_iter_ == 1 and ours.t_ == theirs.t_


@pytest.mark.parametrize("name", ["MLPClassifier", "MLPRegressor"])
def test_early_stopping_follows_sklearn(name):
    # Same split (train_test_split with the estimator's random state), same validation scores,
    # same stopping epoch, and the best epoch's weights restored.
    if name == "MLPClassifier":
        X, y = _clf_data("binary")
    else:
        X, y = make_regression(150, 8, noise=20.0, random_state=13)
        y = y / y.std()
    kw = dict(hidden_layer_sizes=(32,), solver="sgd", alpha=0.0, batch_size=16, shuffle=False, random_state=14,
              learning_rate_init=0.05, early_stopping=True, validation_fraction=0.2, n_iter_no_change=4,
              tol=0.0, max_iter=300)
    ours, theirs = _fit_both(name, X, y, **kw)
    assert ours.n_iter_ == theirs.n_iter_ < 300
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, rtol=1e-10)
    assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_, rel=1e-10)
    assert ours.best_loss_ is None and len(ours.validation_scores_) == ours.n_iter_
    # The best epoch is not the last, so restoring it matters; the weights are scikit-learn's.
    assert np.argmax(ours.validation_scores_) < ours.n_iter_ - 1
    _assert_same_params(ours, theirs, atol=1e-10)


# ---- scikit-learn plumbing ----------------------------------------------------------------------
def test_string_labels():
    X, y = _clf_data("multiclass")
    names = np.array(["owl", "cat", "emu"])[y]
    clf = fb.MLPClassifier(hidden_layer_sizes=(10,), max_iter=100, random_state=0).fit(X, names)
    assert list(clf.classes_) == ["cat", "emu", "owl"]
    pred = clf.predict(X)
    assert pred.dtype == names.dtype and set(pred) <= set(names)
    P = clf.predict_proba(X)
    np.testing.assert_array_equal(clf.classes_[P.argmax(1)], pred)
    assert clf.score(X, names) == pytest.approx(np.mean(pred == names))
    assert clf.score(X, names) > DummyClassifier().fit(X, names).score(X, names) + 0.2
    yes_no = np.where(y == 0, "no", "yes")
    binary = fb.MLPClassifier(hidden_layer_sizes=(5,), max_iter=50, random_state=0).fit(X, yes_no)
    Pb = binary.predict_proba(X)
    assert Pb.shape == (X.shape[0], 2) and binary.model_.sizes[-1] == 1
    np.testing.assert_array_equal(binary.predict(X), binary.classes_[(Pb[:, 1] > 0.5).astype(int)])


def test_pipeline_and_grid_search():
    X, y = _clf_data("multiclass")
    X = X * 50 + 7                                          # needs the scaler
    pipe = Pipeline([("scale", StandardScaler()),
                     ("mlp", fb.MLPClassifier(solver="adam", max_iter=60, random_state=0))])
    grid = GridSearchCV(pipe, {"mlp__hidden_layer_sizes": [(2,), (16,)], "mlp__alpha": [1e-4, 1e-1]}, cv=3)
    grid.fit(X, y)
    assert len(grid.cv_results_["params"]) == 4
    best = grid.best_estimator_.named_steps["mlp"]
    assert best.model_.sizes[1:-1] == list(grid.best_params_["mlp__hidden_layer_sizes"])
    assert best.alpha == grid.best_params_["mlp__alpha"]
    baseline = DummyClassifier().fit(X, y).score(X, y)
    assert grid.score(X, y) > baseline + 0.3
    scores = grid.cv_results_["mean_test_score"]
    assert np.ptp(scores) > 0                               # the candidates really differ


@pytest.mark.parametrize("name", ["MLPClassifier", "MLPRegressor"])
def test_pickle_round_trip(name):
    if name == "MLPClassifier":
        X, y = _clf_data("multiclass")
        y = np.array(["a", "b", "c"])[y]
    else:
        X, y = make_regression(120, 6, n_targets=2, random_state=15)
    est = getattr(fb, name)(hidden_layer_sizes=(9, 4), max_iter=20, warm_start=True, random_state=0).fit(X, y)
    back = pickle.loads(pickle.dumps(est))
    method = "predict_proba" if name == "MLPClassifier" else "predict"
    np.testing.assert_array_equal(getattr(back, method)(X), getattr(est, method)(X))
    np.testing.assert_array_equal(back.predict(X), est.predict(X))
    assert back.get_params() == est.get_params() and back.loss_curve_ == est.loss_curve_
    # The rebuilt network's coefs_ are views of its buffer again, as after fit.
    assert np.shares_memory(back.coefs_[0], back.model_.params)
    # Training on continues identically (weights, optimizer, shuffling generator all restored).
    est.fit(X, y)
    back.fit(X, y)
    np.testing.assert_array_equal(back.model_.params, est.model_.params)


def test_dtype_follows_the_input():
    X, y = _clf_data("binary")
    assert fb.MLPClassifier(max_iter=2).fit(X.astype(np.float32), y).model_.dtype == np.float32
    assert fb.MLPClassifier(max_iter=2).fit(X, y).model_.dtype == np.float64
    assert fb.MLPRegressor(max_iter=2).fit(np.round(X * 10).astype(np.int64), y).model_.dtype == np.float64


def test_random_state():
    X, y = _clf_data("multiclass")
    a = fb.MLPClassifier(max_iter=5, random_state=1).fit(X, y)
    b = fb.MLPClassifier(max_iter=5, random_state=1).fit(X, y)
    c = fb.MLPClassifier(max_iter=5, random_state=2).fit(X, y)
    np.testing.assert_array_equal(a.model_.params, b.model_.params)
    assert not np.allclose(a.coefs_[0], c.coefs_[0])
    # The initialization is scikit-learn's, draw for draw.
    ours = fb.MLPClassifier(max_iter=1, learning_rate_init=1e-300, random_state=5, activation="logistic").fit(X, y)
    theirs = sk.MLPClassifier(max_iter=1, learning_rate_init=1e-300, random_state=5, activation="logistic").fit(X, y)
    _assert_same_params(ours, theirs, atol=1e-15)


def test_errors_and_verbose(capsys):
    X, y = _clf_data("binary")
    with pytest.raises(ValueError, match=r"\['adam', 'lbfgs', 'sgd'\]"):
        fb.MLPClassifier(solver="rmsprop").fit(X, y)
    with pytest.raises(ValueError, match=r"loss.*\['poisson', 'squared_error'\]"):
        fb.MLPRegressor(loss="absolute_error").fit(X, y.astype(float))
    reg = fb.MLPRegressor(max_iter=2, hidden_layer_sizes=(3,)).fit(X, y.astype(float))
    with pytest.raises(ValueError, match="linear output, this fit needs exp"):
        reg.set_params(loss="poisson", warm_start=True).fit(X, y.astype(float))
    with pytest.raises(ValueError, match="early_stopping"):
        fb.MLPClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="classes"):
        fb.MLPClassifier().partial_fit(X, y)
    assert not hasattr(fb.MLPClassifier(solver="lbfgs"), "partial_fit")
    assert not hasattr(fb.MLPClassifier(), "coefs_")
    fb.MLPRegressor(max_iter=3, verbose=True, hidden_layer_sizes=(3,)).fit(X, y.astype(float))
    out = capsys.readouterr().out
    assert [line.split(",")[0] for line in out.splitlines()] == ["Iteration 1", "Iteration 2", "Iteration 3"]
