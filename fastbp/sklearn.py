"""scikit-learn estimators trained by fastbp: ``MLPClassifier`` and ``MLPRegressor``.

Drop-in for ``sklearn.neural_network``: same parameter names, defaults and fitted attributes, so
existing code switches by changing the import (needs the extra ``sklearn``, scikit-learn >= 1.6).
``activation`` also takes fastbp's hidden activations "leaky_relu", "elu", "selu", "gelu",
"gelu_tanh", "silu", "softplus" and "mish" (torch's formulas; see ``fastbp.MLP``), initialized as
scikit-learn initializes "relu" (Glorot uniform).
Every epoch of the "adam" and "sgd" solvers runs in fastbp's compiled minibatch loop; Python runs
between epochs only (stopping rules, learning-rate schedules, early stopping). "lbfgs" hands
fastbp's full-batch loss and gradient to scipy's L-BFGS-B, as scikit-learn does.

What is the same as scikit-learn (the tests compare both): initialization (Glorot uniform for
weights *and* biases, drawn from ``random_state`` in scikit-learn's order, so equal seeds give
equal initial weights), the losses and their gradients (log-loss; binary log-loss summed over
labels for binary and multilabel; half squared error; half Poisson deviance with an exponential
output for ``MLPRegressor(loss="poisson")``), the L2 penalty ``alpha`` (on the weights only, not
the intercepts), minibatches (``batch_size="auto"`` is ``min(200, n)``, the last partial batch
is used), SGD with momentum/Nesterov in scikit-learn's form (also across the
"invscaling"/"adaptive" learning-rate changes), Adam, ``loss_curve_``,
``tol``/``n_iter_no_change``, the early-stopping split (``train_test_split`` with the same
random state), ``warm_start``, ``partial_fit``.

Documented differences:
- ``alpha``: scikit-learn adds ``0.5 * alpha * sum(W**2) / m`` to each minibatch's loss (m: the
  minibatch's size, or its sum of sample weights), so ``alpha * W / m`` to the gradient. fastbp
  trains with the model's ``l2 = 0.5 * alpha / (batch_size * mean sample weight)`` (the same
  penalty on the weights only, inside the compiled loop; ``est.model_.l2``). That equals
  scikit-learn's on every full minibatch; the last, partial one (n not a multiple of
  ``batch_size``) gets ``alpha * W / batch_size`` where scikit-learn takes its own, smaller size,
  and ``loss_curve_`` counts that minibatch's penalty with weight ``m_last / batch_size``. With
  "lbfgs" (one batch of all rows) the penalty is exactly scikit-learn's.
- With ``shuffle=True`` the minibatch order comes from fastbp's generator (seeded from
  ``random_state``), not from scikit-learn's, so results agree in distribution, not bit for bit;
  with ``shuffle=False`` the SGD path follows scikit-learn's to rounding.
- Adam: torch's arithmetic (``eps`` added to ``sqrt(v_hat)``); scikit-learn adds ``eps`` to
  ``sqrt(v)`` before the bias correction: a relative difference of order ``eps/sqrt(v)``.
- ``loss_curve_`` takes each minibatch's penalty at the weights before its update, as
  scikit-learn does; only for a regressor with several outputs and ``loss="squared_error"`` (whose
  reported loss is averaged over outputs while the penalty is not) is the epoch's penalty
  approximated by the mean of those at the weights of its start and of its end.
- ``sample_weight`` is normalized to mean 1 over the data, so the gradient is a weighted mean as
  in scikit-learn; scikit-learn normalizes by the weight sum of each minibatch (the same when the
  batch is the whole data, as in its full-batch checks).
- dtype: float32 input trains a float32 network (fastbp's fast path), anything else float64, as
  scikit-learn does; later calls convert X to the network's dtype. Sparse X is densified.
- "lbfgs" with several regression outputs minimizes the half squared error summed over outputs,
  the loss whose gradient scikit-learn uses (its line search sees that loss averaged over outputs);
  ``loss_`` reports it averaged over outputs, as scikit-learn does.
- ``momentum`` must be < 1 (scikit-learn also accepts 1).
- ``loss="poisson"`` needs ``y >= 0``: a negative target is a clear error (scikit-learn's loss
  turns NaN).

The fitted network is ``est.model_`` (a ``fastbp.MLP``): ``est.model_.to_onnx(path)``,
``est.model_.to_state_dict()`` work on it. ``coefs_`` and ``intercepts_`` are views into its
parameter buffer.
"""
import numbers
import warnings

import numpy as np

try:
    from scipy import optimize
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
    from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
except ImportError as e:                     # validate_data is new in scikit-learn 1.6
    raise ImportError(f"fastbp.sklearn needs scikit-learn >= 1.6: pip install 'fastbp[sklearn]' ({e})") from None

from .callbacks import Callback
from .errors import TrainingDiverged
from .model import MLP
from .optim import SGD, Adam, Momentum
from .threads import single_threaded_blas

__all__ = ["MLPClassifier", "MLPRegressor"]

# scikit-learn activation names -> fastbp's; then fastbp's newer hidden activations by their own names
ACTIVATIONS = {"identity": "linear", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
               **{a: a for a in ("leaky_relu", "elu", "selu", "gelu", "gelu_tanh", "silu", "softplus", "mish")}}
OUT_ACTIVATIONS = {"softmax": "softmax", "sigmoid": "logistic", "linear": "identity", "exp": "exp"}
# fastbp's loss for each output activation
OUTPUT_LOSSES = {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy", "linear": "half_mse", "exp": "poisson"}
SOLVERS = ("adam", "sgd", "lbfgs")
STOCHASTIC = ("adam", "sgd")
LEARNING_RATES = ("constant", "invscaling", "adaptive")
_NO_Y = "no_validation"          # validate_data's marker for "X only"


def _check_number(name, value, lo=None, hi=None, lo_open=False, hi_open=False, integer=False):
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"The '{name}' parameter must be {'an int' if integer else 'a float'}, got {value!r}")
    bad = ((lo is not None and (value < lo or (lo_open and value == lo)))
           or (hi is not None and (value > hi or (hi_open and value == hi))))
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise ValueError(f"The '{name}' parameter must lie in {left}{lo}, {hi if hi is not None else 'inf'}{right}, "
                         f"got {value!r}")
    return value


def _check_option(name, value, options):
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"The '{name}' parameter must be one of {sorted(options)}, got {value!r}")
    return value


class _EpochHook(Callback):
    """Runs the estimator's per-epoch bookkeeping inside ``MLP.fit`` (between compiled epochs)."""

    def __init__(self, estimator, bookkeeping):
        self.estimator = estimator
        self.bookkeeping = bookkeeping

    def on_epoch_begin(self, epoch, logs=None):
        self.bookkeeping["penalty_before"] = self.model.penalty()

    def on_epoch_end(self, epoch, logs=None):
        if self.estimator._end_epoch(logs["loss"], self.bookkeeping):
            self.model.stop_training = True


class _BaseMLP(BaseEstimator):
    """Shared machinery; use MLPClassifier or MLPRegressor."""

    def _loss_scale(self, k):
        """Factor from fastbp's per-sample data loss to the one scikit-learn reports (1 unless a
        squared-error regressor with several outputs: scikit-learn averages over outputs)."""
        return 1.0

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun

    # ---- parameters ---------------------------------------------------------------------------
    def _check_params(self):
        """Validate the constructor arguments; return the hidden sizes as a list."""
        hidden = self.hidden_layer_sizes
        if not hasattr(hidden, "__iter__"):
            hidden = [hidden]
        hidden = list(hidden)
        for h in hidden:
            if isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1:
                raise ValueError(f"hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes!r}")
        _check_option("activation", self.activation, ACTIVATIONS)
        _check_option("solver", self.solver, SOLVERS)
        _check_option("learning_rate", self.learning_rate, LEARNING_RATES)
        _check_number("alpha", self.alpha, 0)
        if self.batch_size != "auto":
            _check_number("batch_size", self.batch_size, 1, integer=True)
        _check_number("learning_rate_init", self.learning_rate_init, 0, lo_open=True)
        _check_number("power_t", self.power_t, 0)
        _check_number("max_iter", self.max_iter, 1, integer=True)
        _check_number("tol", self.tol, 0)
        # fastbp's momentum is defined on [0, 1); scikit-learn also allows exactly 1.
        _check_number("momentum", self.momentum, 0, 1, hi_open=True)
        _check_number("validation_fraction", self.validation_fraction, 0, 1, hi_open=True)
        _check_number("beta_1", self.beta_1, 0, 1, hi_open=True)
        _check_number("beta_2", self.beta_2, 0, 1, hi_open=True)
        _check_number("epsilon", self.epsilon, 0, lo_open=True)
        if self.n_iter_no_change != np.inf:
            _check_number("n_iter_no_change", self.n_iter_no_change, 1, integer=True)
        _check_number("max_fun", self.max_fun, 1, integer=True)
        return [int(h) for h in hidden]

    # ---- data ---------------------------------------------------------------------------------
    def _validate_X(self, X, y=_NO_Y, reset=True):
        """X as a float32/float64 array or CSR matrix, never densified (scikit-learn's dtype rule;
        fastbp's first layer reads CSR rows as they are); (X, y) when y is passed."""
        kw = dict(accept_sparse="csr", dtype=(np.float64, np.float32), reset=reset)
        if y is _NO_Y:
            X = validate_data(self, X, **kw)
        else:
            X, y = validate_data(self, X, y, multi_output=True, y_numeric=self._y_numeric, **kw)
        return X if y is _NO_Y else (X, y)

    @staticmethod
    def _check_sample_weight(sample_weight, n, dtype):
        if sample_weight is None:
            return None
        sw = np.asarray(sample_weight)
        if sw.ndim == 0:
            sw = np.full(n, float(sw))
        if sw.dtype.kind not in "biuf":
            raise ValueError(f"sample_weight: expected numbers, got dtype {sw.dtype}")
        if sw.shape != (n,):
            raise ValueError(f"sample_weight.shape == {sw.shape}, expected ({n},)!")
        if not np.isfinite(sw).all():
            raise ValueError("sample_weight: expected finite values, found NaN or inf")
        if (sw < 0).any():
            raise ValueError("sample_weight: expected non-negative weights")
        if sw.sum() <= 0:
            raise ValueError("sample_weight: the weights sum to zero")
        return sw.astype(dtype)

    # ---- fit ----------------------------------------------------------------------------------
    def fit(self, X, y, sample_weight=None):
        """Fit the network to X (n_samples, n_features) and y; returns self.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels (any hashable, e.g. strings; a 0/1 indicator matrix for multilabel) or
            real targets.
        sample_weight : array-like of shape (n_samples,), default=None
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def _fit(self, X, y, sample_weight, incremental):
        hidden = self._check_params()
        first_pass = not hasattr(self, "model_") or (not self.warm_start and not incremental)
        X, y = self._validate_X(X, y, reset=first_pass)
        Y, yint, k, output = self._encode_targets(y, incremental)
        n = X.shape[0]
        sw = self._check_sample_weight(sample_weight, n, X.dtype if first_pass else self.model_.dtype)
        rs = check_random_state(self.random_state)
        if first_pass:
            self._initialize(X.shape[1], hidden, k, output, X.dtype, rs)
        elif self.n_outputs_ != k:
            raise ValueError(f"y has {k} outputs but the fitted network has {self.n_outputs_}; "
                             "set warm_start=False to fit a new one")
        elif self.model_.output != output:
            raise ValueError(f"the fitted network has a {self.model_.output} output, this fit needs {output} "
                             f"(loss={getattr(self, 'loss', None)!r}); set warm_start=False to fit a new one")
        elif self.model_.sizes[1:-1] != hidden:
            raise ValueError(f"hidden_layer_sizes {hidden} differ from the fitted network's {self.model_.sizes[1:-1]}; "
                             "set warm_start=False to fit a new one")
        if self.solver == "lbfgs":
            self._fit_lbfgs(X, Y, yint, sw)
        else:
            self._fit_stochastic(X, y, Y, yint, sw, rs, incremental)
        if not np.isfinite(self.model_.params).all():
            raise ValueError("Solver produced non-finite parameter weights. The input data may contain large "
                             "values and need to be preprocessed.")
        return self

    def _initialize(self, n_features, hidden, k, output, dtype, rs):
        """A new network with scikit-learn's initialization drawn from ``rs`` in its order."""
        sizes = [n_features] + hidden + [k]
        act = ACTIVATIONS[self.activation]
        loss = OUTPUT_LOSSES[output]
        factor = 2.0 if self.activation == "logistic" else 6.0
        init = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            bound = np.sqrt(factor / (n_in + n_out))
            init.append((rs.uniform(-bound, bound, (n_in, n_out)), rs.uniform(-bound, bound, n_out)))
        # fastbp's own generator (minibatch shuffling) is seeded from the same random state,
        # read from a copy: ``rs`` itself must go on to draw the early-stopping split exactly as
        # scikit-learn's does.
        peek = np.random.RandomState()
        peek.set_state(rs.get_state())
        seed = int(peek.randint(np.iinfo(np.int32).max))
        model = MLP(sizes, activation=act, output=output, loss=loss, dtype=np.dtype(dtype).name, seed=seed)
        for layer, (W, b) in zip(model.layers, init):
            layer.W[...] = W
            layer.b[...] = b
        self.model_ = model
        self.n_outputs_ = k
        self.n_layers_ = len(sizes)
        self.out_activation_ = OUT_ACTIVATIONS[output]
        self.n_iter_ = 0
        self.t_ = 0
        self._no_improvement_count = 0
        self._best_params = model.params.copy()
        for name in ("_optimizer", "loss_curve_", "validation_scores_", "best_validation_score_", "best_loss_"):
            self.__dict__.pop(name, None)
        if self.solver in STOCHASTIC:
            self.loss_curve_ = []
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _sample_scale(self, k):
        """Per-sample factor that turns fastbp's loss into scikit-learn's (1 unless multilabel or
        Poisson: scikit-learn sums those over outputs, fastbp averages)."""
        return 1.0

    def _loss_offset(self, Y, sw):
        """What scikit-learn's reported loss adds to fastbp's for these targets (0 unless Poisson)."""
        return 0.0

    def _set_l2(self, l2):
        """Give the network the L2 penalty ``l2`` (scikit-learn's alpha scaled to fastbp's
        per-batch loss): a network with another l2 is rebuilt with the same params, generator
        state and update count (the optimizer's state stays valid: the layout is the same)."""
        model = self.model_
        if model.l2 == l2:
            return model
        new = MLP(**{**model.config(), "l2": l2})
        new.params[...] = model.params
        new.buffers[...] = model.buffers
        new.updates = model.updates
        new.rng.bit_generator.state = model.rng.bit_generator.state
        self.model_ = new
        return new

    def _effective_weights(self, sw, n, k, dtype):
        """Weights for fastbp's sum(w*l)/n so that it equals scikit-learn's sum(w*l)/sum(w)."""
        scale = self._sample_scale(k)
        if sw is None:
            return None if scale == 1.0 else np.full(n, scale, dtype)
        return (sw * (scale * n / sw.sum())).astype(dtype)

    def _new_optimizer(self):
        if self.solver == "adam":
            return Adam(lr=self.learning_rate_init, beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon)
        if self.momentum > 0:
            return Momentum(lr=self.learning_rate_init, momentum=self.momentum, nesterov=self.nesterovs_momentum)
        return SGD(lr=self.learning_rate_init)

    def _set_lr(self, lr):
        """Change the SGD learning rate the way scikit-learn's optimizer sees it.

        scikit-learn keeps the velocity in parameter units (v = mu*v - lr*g; p += v), fastbp in
        gradient units (v = mu*v + g; p -= lr*v), so v_sklearn = -lr*v_fastbp: rescaling fastbp's
        velocity by old/new lr keeps both paths identical across the change.
        """
        opt = self._optimizer
        if isinstance(opt, Momentum):
            v = opt.state_arrays().get("s0")
            if v is not None:
                v *= opt.lr / lr
        opt.lr = float(lr)

    def _fit_stochastic(self, X, y, Y, yint, sw, rs, incremental):
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = self._new_optimizer()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        k = self.n_outputs_
        targets = yint if yint is not None else Y
        val = None
        if self.early_stopping:
            # The same split as scikit-learn: train_test_split with the estimator's random state,
            # stratified for single-output classification.
            stratify = Y if (self._is_clf and k == 1) else None
            tr, va = train_test_split(np.arange(X.shape[0]), random_state=rs, test_size=self.validation_fraction,
                                      stratify=stratify)
            if va.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of "
                                 "your dataset.")
            val = (X[va], self._val_targets(y, Y, va), None if sw is None else sw[va])
            X, targets, Y = X[tr], targets[tr], Y[tr]
            sw = None if sw is None else sw[tr]
        n = X.shape[0]
        if self.batch_size == "auto":
            batch = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
            batch = int(np.clip(self.batch_size, 1, n))
        mean_w = 1.0 if sw is None else float(sw.mean())
        # scikit-learn adds 0.5*alpha*sum(W**2)/sum(w_batch) to each minibatch's loss; fastbp's l2
        # adds l2*sum(W**2) (see the module docstring for the partial last batch)
        model = self._set_l2(0.5 * self.alpha / (batch * mean_w))
        run = dict(n=n, val=val, incremental=incremental, offset=self._loss_offset(Y, sw))
        self.n_iter_ = 0
        try:
            hist = model.fit(X, targets, epochs=1 if incremental else self.max_iter, batch_size=batch,
                             optimizer=self._optimizer, shuffle=bool(self.shuffle),
                             sample_weight=self._effective_weights(sw, n, k, model.dtype),
                             callbacks=[_EpochHook(self, run)], verbose=0, on_nan="raise")
        except TrainingDiverged as e:
            raise ValueError("Solver produced non-finite parameter weights. The input data may contain large "
                             f"values and need to be preprocessed. ({e})") from None
        if hist.interrupted:
            warnings.warn("Training interrupted by user.")
        if self.early_stopping:
            model.params[...] = self._best_params

    def _end_epoch(self, data_loss, run):
        """scikit-learn's end-of-iteration rules; returns True to stop training."""
        model = self.model_
        # fastbp's History loss includes each minibatch's penalty; only a rescaled data loss
        # needs it taken apart: the epoch's penalty as the mean of those at its start and end
        scale = self._loss_scale(self.n_outputs_)
        loss = data_loss
        if scale != 1.0:
            penalty = 0.5 * (run["penalty_before"] + model.penalty())
            loss = (data_loss - penalty) * scale + penalty
        self.loss_ = loss + run["offset"]
        self.n_iter_ += 1
        self.t_ += run["n"]
        self.loss_curve_.append(self.loss_)
        if self.verbose:
            print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
        if run["val"] is not None:
            Xv, yv, swv = run["val"]
            score = self._score_predictions(model.predict(Xv), yv, swv)
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % score)
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = model.params.copy()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            self._set_lr(self.learning_rate_init / (self.t_ + 1) ** self.power_t)
        if self._no_improvement_count > self.n_iter_no_change:
            what = "Validation score" if run["val"] is not None else "Training loss"
            msg = f"{what} did not improve more than tol={self.tol:f} for {self.n_iter_no_change} consecutive epochs."

            lr = self._optimizer.lr
            if self.solver == "sgd" and self.learning_rate == "adaptive" and lr > 1e-6:
                self._set_lr(lr / 5.0)
                self._no_improvement_count = 0
                if self.verbose:
                    print(msg + " Setting learning rate to %f" % self._optimizer.lr)
            else:
                if self.verbose:
                    print(msg + (" Learning rate too small." if self.learning_rate == "adaptive" else "")
                          + " Stopping.")
                return True
        if not run["incremental"] and self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                          "optimization hasn't converged yet.", ConvergenceWarning)
        return False

    def _fit_lbfgs(self, X, Y, yint, sw):
        """Full-batch L-BFGS-B over the flat parameters, with scikit-learn's exact L2 penalty
        (one batch of all rows: fastbp's l2 = 0.5 * alpha / (sum of the sample weights))."""
        n, k = X.shape[0], self.n_outputs_
        sw_sum = n if sw is None else float(sw.sum())
        model = self._set_l2(0.5 * self.alpha / sw_sum)
        targets = yint if yint is not None else Y
        sw_eff = self._effective_weights(sw, n, k, model.dtype)
        scale = self._loss_scale(k)
        offset = self._loss_offset(Y, sw)
        reported = {}

        def loss_grad(theta):
            model.params[...] = theta
            loss, grad = model.loss_and_grad(X, targets, sample_weight=sw_eff)    # with the penalty
            # L-BFGS needs the loss whose gradient this is: for several regression outputs
            # that is the half squared error summed over outputs; loss_ reports scikit-learn's
            # average over outputs (the penalty not averaged).
            if scale != 1.0:
                penalty = model.penalty()
                reported["loss"] = (loss - penalty) * scale + penalty + offset
            else:
                reported["loss"] = loss + offset
            return loss, grad.astype(np.float64)

        # L-BFGS-B's own BLAS calls work on vectors of n_params: a BLAS thread pool only slows
        # them down (about 10x measured on 2 busy cores).
        with single_threaded_blas():
            res = optimize.minimize(loss_grad, model.params.astype(np.float64), method="L-BFGS-B", jac=True,
                                    options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol})
        if res.status != 0:
            msg = res.message.decode() if isinstance(res.message, bytes) else res.message
            warnings.warn(f"lbfgs failed to converge after {res.nit} iteration(s) (status={res.status}): {msg}. "
                          "Increase the number of iterations (max_iter) or scale the data.", ConvergenceWarning)
        loss_grad(res.x)                                  # leaves the params at the solution
        self.loss_ = float(reported["loss"])
        self.n_iter_ = min(int(res.nit), self.max_iter)

    # ---- predict ------------------------------------------------------------------------------
    def _forward(self, X):
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return self.model_.predict(X)

    # ---- fitted parameters as scikit-learn names them -----------------------------------------
    @property
    def coefs_(self):
        """Weight matrices (n_in, n_out) per layer: views into ``model_.params``."""
        if "model_" not in self.__dict__:
            raise AttributeError("coefs_ exists after fit")
        return [layer.W for layer in self.model_.layers]

    @property
    def intercepts_(self):
        """Bias vectors (n_out,) per layer: views into ``model_.params``."""
        if "model_" not in self.__dict__:
            raise AttributeError("intercepts_ exists after fit")
        return [layer.b for layer in self.model_.layers]

    # ---- pickling -----------------------------------------------------------------------------
    def __getstate__(self):
        # An MLP's W/b are views into one buffer; pickle would copy them apart, so the network
        # travels as its config, params and generator state and is rebuilt on load.
        state = super().__getstate__()
        model = state.get("model_")
        if isinstance(model, MLP):
            state = dict(state)
            rng = getattr(model, "rng", None)
            state["model_"] = {"__fastbp_mlp__": model.config(), "params": model.params.copy(),
                               "rng": None if rng is None else rng.bit_generator.state}
        return state

    def __setstate__(self, state):
        saved = state.get("model_")
        if isinstance(saved, dict) and "__fastbp_mlp__" in saved:
            model = MLP(**saved["__fastbp_mlp__"])
            model.params[...] = saved["params"]
            if saved["rng"] is not None and hasattr(model, "rng"):
                model.rng.bit_generator.state = saved["rng"]
            state = dict(state)
            state["model_"] = model
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by fastbp; drop-in for
    ``sklearn.neural_network.MLPClassifier`` (see the module docstring for the differences).

    Binary and multilabel targets train sigmoid outputs with the binary log-loss, multiclass a
    softmax with the log-loss. Labels may be any values scikit-learn's LabelBinarizer accepts
    (ints, strings, ...). Parameters are those of scikit-learn's MLPClassifier; ``solver`` is
    "adam", "sgd" or "lbfgs"; ``activation`` also takes fastbp's newer hidden activations.
    ``alpha`` is scikit-learn's L2 penalty on the weights (not the intercepts), trained as the
    network's ``l2 = 0.5 * alpha / batch_size``; the one difference is a partial last minibatch,
    penalized as a full one (scikit-learn divides by its own size; see the module docstring).

    Attributes
    ----------
    classes_, n_features_in_, feature_names_in_, loss_, loss_curve_, best_loss_,
    validation_scores_, best_validation_score_, t_, coefs_, intercepts_, n_iter_, n_layers_,
    n_outputs_, out_activation_ : as in scikit-learn.
    model_ : fastbp.MLP
        The trained network (``model_.predict`` gives the probabilities of ``classes_``, or one
        sigmoid column for two classes).
    """

    _y_numeric = False
    _is_clf = True

    def _sample_scale(self, k):
        # scikit-learn's binary log-loss sums over labels; fastbp's averages them.
        return float(k) if self.out_activation_ == "logistic" else 1.0

    def _encode_targets(self, y, incremental):
        """(Y (n, k) 0/1 floats, int labels for softmax or None, k, output activation)."""
        if getattr(y, "ndim", 1) == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same classes as in the previous "
                                     f"call to fit. Previously got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                                 f"'y' has {classes}.")
        Y = self._label_binarizer.transform(y).astype(np.float64)
        k = Y.shape[1]
        if self._label_binarizer.y_type_ == "multiclass":
            return Y, np.ascontiguousarray(Y.argmax(1), dtype=np.int64), k, "softmax"
        return Y, None, k, "sigmoid"

    def _val_targets(self, y, Y, idx):
        return self._label_binarizer.inverse_transform(Y[idx])

    def _score_predictions(self, P, y, sample_weight):
        if not np.isfinite(P).all():
            return np.nan
        return accuracy_score(y, self._decode(P), sample_weight=sample_weight)

    def _decode(self, P):
        if self.n_outputs_ == 1:
            P = P.ravel()
        return self._label_binarizer.inverse_transform(P)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y); ``classes`` (all labels) is required on the first call."""
        first = not hasattr(self, "classes_")
        if first:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
            self.classes_ = self._label_binarizer.classes_
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"`classes={classes!r}` is not the same as on the last call to partial_fit, "
                             f"was: {self.classes_!r}")
        return self._fit(X, y, sample_weight, incremental=True)

    def _check_solver(self):
        if self.solver not in STOCHASTIC:
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. {self.solver} is not "
                                 "stochastic.")
        return True

    def predict(self, X):
        """Class labels (n_samples,), or an indicator matrix (n_samples, n_labels) for multilabel."""
        return self._decode(self._forward(X))

    def predict_proba(self, X):
        """Probabilities (n_samples, n_classes) in the order of ``classes_``."""
        P = self._forward(X)
        if self.n_outputs_ == 1:
            p = P.ravel()
            return np.vstack([1 - p, p]).T
        return P

    def predict_log_proba(self, X):
        """log(predict_proba(X))."""
        P = self.predict_proba(X)
        return np.log(P, out=P)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor trained by fastbp; drop-in for
    ``sklearn.neural_network.MLPRegressor`` (see the module docstring for the differences).

    ``loss="squared_error"`` trains a linear output with the half squared error;
    ``loss="poisson"`` an exponential output (the log link) with the half Poisson deviance, for
    targets y >= 0 (fastbp's ``loss="poisson"``, whose gradient is scikit-learn's; ``loss_``
    adds the deviance's constant terms, as scikit-learn reports it). Several outputs are fitted
    with y of shape (n_samples, n_outputs). ``activation`` also takes fastbp's newer hidden
    activations. ``alpha`` is scikit-learn's L2 penalty on the weights (not the intercepts),
    trained as the network's ``l2 = 0.5 * alpha / batch_size``; the one difference is a partial
    last minibatch, penalized as a full one (scikit-learn divides by its own size; see the module
    docstring).

    Attributes
    ----------
    n_features_in_, feature_names_in_, loss_, loss_curve_, best_loss_, validation_scores_,
    best_validation_score_, t_, coefs_, intercepts_, n_iter_, n_layers_, n_outputs_,
    out_activation_ : as in scikit-learn.
    model_ : fastbp.MLP
        The trained network.
    """

    _y_numeric = True
    _is_clf = False

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000):
        super().__init__(hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver, alpha=alpha,
                         batch_size=batch_size, learning_rate=learning_rate, learning_rate_init=learning_rate_init,
                         power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol,
                         verbose=verbose, warm_start=warm_start, momentum=momentum,
                         nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
                         validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         n_iter_no_change=n_iter_no_change, max_fun=max_fun)
        self.loss = loss

    def _check_params(self):
        _check_option("loss", self.loss, ("squared_error", "poisson"))
        return super()._check_params()

    def _loss_scale(self, k):
        # scikit-learn's squared error averages over outputs (its gradient sums over them)
        return 1.0 / k if self.loss == "squared_error" else 1.0

    def _sample_scale(self, k):
        # scikit-learn's Poisson deviance sums over outputs; fastbp's loss averages
        return float(k) if self.loss == "poisson" else 1.0

    def _loss_offset(self, Y, sw):
        """scikit-learn's half Poisson deviance sum(y log(y/p) - y + p) is fastbp's p - y log p
        plus sum(y log y - y), which depends on the targets alone: its (weighted) mean over rows."""
        if self.loss != "poisson":
            return 0.0
        from scipy.special import xlogy
        Y = Y.astype(np.float64)
        per_row = (xlogy(Y, Y) - Y).sum(1)
        return float(np.average(per_row, weights=sw))

    def _encode_targets(self, y, incremental):
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        Y = y.reshape(y.shape[0], -1)
        if self.loss == "poisson":
            if (Y < 0).any():
                raise ValueError(f"loss='poisson' needs targets y >= 0 (counts or rates), got {float(Y.min()):g}")
            return Y, None, Y.shape[1], "exp"
        return Y, None, Y.shape[1], "linear"

    def _val_targets(self, y, Y, idx):
        return Y[idx]

    def _score_predictions(self, P, y, sample_weight):
        if not np.isfinite(P).all():
            return np.nan
        return r2_score(y, P, sample_weight=sample_weight)

    def _check_solver(self):
        if self.solver not in STOCHASTIC:
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. {self.solver} is not "
                                 "stochastic.")
        return True

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing from the current weights and optimizer state."""
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """Predicted values (n_samples,), or (n_samples, n_outputs) for several outputs."""
        P = self._forward(X)
        return P.ravel() if P.shape[1] == 1 else P

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
