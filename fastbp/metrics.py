"""Metrics by name for ``fit(..., metrics=[...])`` and ``evaluate(..., metrics=[...])``.

Each metric is a function of (targets, predictions), where predictions are what
`MLP.predict` returns, and equals the scikit-learn function of the same name to 1e-6.
Pure numpy: scikit-learn is an optional extra.

What a metric means depends on the model's output:

========  ===================  =======================================================
output    targets              classification metrics see
========  ===================  =======================================================
softmax   labels (n,) in       class ``argmax(p)`` against the label; with 2-D targets
          [0, k), or (n, k)    the class of a row is the argmax of its target row (a
          one-hot/probability  one-hot row: its class), as Keras' categorical accuracy
sigmoid   (n,) or (n, 1)       binary: ``p > 0.5`` against the 0/1 target
sigmoid   (n, k), k > 1        multi-label: k independent binary columns
linear,   (n,) or (n, k)       regression values; only mae, rmse and r2 apply
exp
========  ===================  =======================================================

- ``accuracy``: ``accuracy_score`` of the predicted classes. Multi-label sigmoid: the mean
  over all n*k elements (Keras' binary accuracy, ``1 - hamming_loss``; scikit-learn's
  ``accuracy_score`` would count exact row matches instead). Sigmoid targets are read as
  ``y > 0.5``, as fastbp's built-in accuracy reads them.
- ``auc``: ``roc_auc_score``. Binary sigmoid: from p; 2-output softmax: from the positive-class
  probability ``p[:, 1]``; softmax with k > 2: one-vs-rest, macro average over the k classes
  (``multi_class="ovr", labels=range(k)``); multi-label sigmoid: macro average over the columns.
  Ties in the scores count one half (the trapezoid of scikit-learn's ROC curve). A class with no
  positive or no negative rows (or only rows of weight 0) makes the AUC undefined: the result is
  NaN with an `UndefinedMetricWarning`, as scikit-learn >= 1.6 returns for one class in y.
- ``f1``: ``f1_score(average="macro")``: the unweighted mean of the per-class F1 over the
  classes found in the targets or the predicted classes (scikit-learn's ``unique_labels``);
  multi-label: over all k columns. A class whose F1 has a zero denominator (only possible
  through zero weights, or a multi-label column with no positive target nor prediction)
  counts as 0, scikit-learn's ``zero_division="warn"`` value, without a warning.
- ``mae``, ``rmse``, ``r2``: ``mean_absolute_error``, ``root_mean_squared_error`` (the RMSE of
  each output, then their mean) and ``r2_score`` (``multioutput="uniform_average"``); targets of
  the predictions' shape. r2 of an output whose targets are constant is 1.0 if it is predicted
  exactly and 0.0 otherwise (``force_finite=True``; "constant" is exact, where scikit-learn
  compares the weighted mean's rounding error with 0 and can return -1e28); r2 of fewer than two rows is NaN with an
  `UndefinedMetricWarning`, as scikit-learn.

``sample_weight`` weights rows as in scikit-learn. Everything is computed in float64.
"""
import math
import numbers
import types
import warnings

import numpy as np

from .validation import check_all_finite, check_int

__all__ = ["Metric", "METRICS", "UndefinedMetricWarning", "get", "check_names", "compute", "is_maximized",
           "TrainingMetrics", "OUTPUTS"]

#: Output activations a metric may be told about (``output=``).
OUTPUTS = ("softmax", "sigmoid", "linear", "exp")


class UndefinedMetricWarning(RuntimeWarning):
    """A metric is undefined on these rows (an AUC class with one label, r2 of one row); it is NaN."""


def _describe(x):
    if isinstance(x, np.ndarray):
        return f"array of shape {x.shape} and dtype {x.dtype}"
    if x is None or isinstance(x, (str, bytes, numbers.Number, np.generic)):
        return f"{type(x).__name__} {x!r}"
    return type(x).__name__


def _numeric(name, a):
    """a as an ndarray of a numeric dtype (no copy when it is one), finite, 1-D or 2-D, non-empty."""
    if a is None or isinstance(a, (str, bytes, dict)):
        raise TypeError(f"{name}: expected an array of numbers, got {_describe(a)}")
    if hasattr(a, "toarray") and hasattr(a, "nnz"):
        raise TypeError(f"{name}: expected a dense array, got a sparse matrix; pass {name}.toarray()")
    try:
        arr = a.to_numpy() if hasattr(a, "to_numpy") else np.asarray(a)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: could not convert to a numeric array ({e})") from None
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected numbers, got an array of dtype object") from None
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected numbers (bool, int or float), got an array of dtype {arr.dtype}")
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name}: expected a 1-D or 2-D array, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one row, got shape {arr.shape}")
    check_all_finite(name, arr)
    return arr


def _check_output(output):
    if output is None:
        return None
    if not isinstance(output, str):
        raise TypeError(f"output: expected one of {list(OUTPUTS)} or None, got {_describe(output)}")
    if output not in OUTPUTS:
        raise ValueError(f"output: expected one of {list(OUTPUTS)} or None, got {output!r}")
    return output


class _Data:
    """The checked inputs of one metric call, converted once and shared by every metric of a
    `compute` call. ``P`` (n, k) float64 predictions; ``y`` the targets as given (1-D or 2-D);
    ``w`` (n,) float64 weights or None; ``output`` as given (None: infer when needed)."""

    def __init__(self, y_true, y_pred, sample_weight, output):
        self.output = _check_output(output)
        P = _numeric("y_pred", y_pred)
        self.P = np.asarray(P.reshape(-1, 1) if P.ndim == 1 else P, np.float64)
        n, k = self.P.shape
        y = _numeric("y_true", y_true)
        if y.shape[0] != n:
            raise ValueError(f"y_true: expected {n} rows to match y_pred, got shape {y.shape}")
        self.y = y
        self.w = None
        if sample_weight is not None:
            w = _numeric("sample_weight", sample_weight)
            if w.shape != (n,):
                raise ValueError(f"sample_weight: expected shape ({n},) to match y_pred, got {w.shape}")
            if (w < 0).any():
                raise ValueError(f"sample_weight: expected weights >= 0, got min {w.min()}")
            if not w.sum() > 0:
                raise ValueError("sample_weight: expected weights with a positive sum, got all zeros")
            self.w = np.asarray(w, np.float64)
        self._kind = None

    # ---- classification ------------------------------------------------------------------------
    def kind(self, metric):
        """"softmax", "binary" or "multilabel": how ``metric`` reads these predictions."""
        if self._kind is not None:
            return self._kind
        n, k = self.P.shape
        out = self.output
        if out in ("linear", "exp"):
            raise ValueError(f"{metric}: expected class probabilities (output 'softmax' or 'sigmoid'), "
                             f"got output {out!r}; mae, rmse and r2 apply to regression outputs")
        if out is None:
            if k == 1:
                out = "sigmoid"
            elif self.y.ndim == 1:
                out = "softmax"
            else:
                raise ValueError(f"output: predictions of shape {self.P.shape} with targets of shape {self.y.shape} "
                                 "can be softmax or multi-label sigmoid probabilities; pass output='softmax' "
                                 "or output='sigmoid'")
        if out == "softmax":
            if k < 2:
                raise ValueError(f"y_pred: a softmax output needs at least 2 columns, got shape {self.P.shape}")
            if self.y.ndim == 1:
                y = self.y
                if y.dtype.kind == "f" and not np.array_equal(y, np.round(y)):
                    raise ValueError(f"y_true: expected integer class labels (n,) or targets (n, {k}) for a "
                                     "softmax output, got non-integer values")
                if y.min() < 0 or y.max() >= k:
                    raise ValueError(f"y_true: expected class labels in [0, {k - 1}] for {k} outputs, "
                                     f"got min {y.min()} and max {y.max()}")
                self.labels = y.astype(np.int64)
            elif self.y.shape != (n, k):
                raise ValueError(f"y_true: expected labels ({n},) or targets ({n}, {k}) for a softmax output "
                                 f"of {k} columns, got shape {self.y.shape}")
            else:
                self.labels = self.y.argmax(1)
            self.pred_labels = self.P.argmax(1)
            self._kind = "softmax"
        else:
            y = self.y.reshape(-1, 1) if self.y.ndim == 1 else self.y
            if y.shape != (n, k):
                raise ValueError(f"y_true: expected shape ({n}, {k}) like y_pred" + (f" or ({n},)" if k == 1 else "")
                                 + f" for a sigmoid output, got {self.y.shape}")
            if y.min() < 0 or y.max() > 1:
                raise ValueError(f"y_true: expected targets in [0, 1] for a sigmoid output, "
                                 f"got min {y.min()} and max {y.max()}")
            self.T = y > 0.5
            self.Pb = self.P > 0.5
            self._kind = "binary" if k == 1 else "multilabel"
        return self._kind

    def binary_targets(self, metric):
        """The sigmoid targets as bools, checked to be 0/1 (auc and f1 do not threshold targets)."""
        y = self.y
        if not np.isin(y, (0, 1)).all():
            bad = y[~np.isin(y, (0, 1))].flat[0]
            raise ValueError(f"y_true: {metric} expects 0/1 targets for a sigmoid output, got the value {bad}")
        return self.T

    # ---- regression ----------------------------------------------------------------------------
    def values(self, metric):
        """(Y, P): targets and predictions of one shape (n, k), float64."""
        n, k = self.P.shape
        y = self.y.reshape(-1, 1) if self.y.ndim == 1 and k == 1 else self.y
        if y.shape != (n, k):
            hint = "; pass one-hot targets for a softmax output" if self.y.ndim == 1 else ""
            raise ValueError(f"y_true: {metric} compares targets with predictions of one shape: expected "
                             f"({n}, {k})" + (f" or ({n},)" if k == 1 else "") + f", got {self.y.shape}{hint}")
        return np.asarray(y, np.float64), self.P


def _mean(values, w):
    """Weighted mean over rows (axis 0)."""
    return values.mean(0) if w is None else np.average(values, axis=0, weights=w)


# ---- the metrics ---------------------------------------------------------------------------------
def _accuracy(d):
    kind = d.kind("accuracy")
    if kind == "softmax":
        hit = d.pred_labels == d.labels
    else:
        hit = (d.Pb == d.T).mean(1)      # multi-label: each element counts 1/k of its row
    return float(_mean(hit.astype(np.float64), d.w))


def _auc_columns(T, S, w):
    """ROC AUC of each column of scores S (n, c) for the bool positives T (n, c); NaN where a
    column has no positive or no negative weight.

    AUC = sum over positives of w * (negative weight strictly below + half the negative weight
    tied with it) / (positive weight * negative weight): the trapezoid of the ROC curve.
    """
    n, c = S.shape
    order = np.argsort(S, axis=0, kind="stable")
    s = np.take_along_axis(S, order, 0)
    t = np.take_along_axis(T, order, 0)
    wt = np.ones((n, c)) if w is None else w[order]
    pos = np.where(t, wt, 0.0)
    neg = wt - pos
    cneg = np.cumsum(neg, axis=0)
    idx = np.arange(n)[:, None]
    first = np.ones((n, c), bool)
    first[1:] = s[1:] != s[:-1]                    # the first row of each run of tied scores
    last = np.ones((n, c), bool)
    last[:-1] = first[1:]
    start = np.maximum.accumulate(np.where(first, idx, 0), axis=0)
    end = np.minimum.accumulate(np.where(last, idx, n - 1)[::-1], axis=0)[::-1]
    below = np.where(start > 0, np.take_along_axis(cneg, np.maximum(start - 1, 0), 0), 0.0)
    tied = np.take_along_axis(cneg, end, 0) - below
    npos, nneg = pos.sum(0), neg.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (below + 0.5 * tied)).sum(0) / (npos * nneg)
    auc[(npos <= 0) | (nneg <= 0)] = np.nan
    return auc


def _undefined(metric, why):
    warnings.warn(f"{metric} is undefined: {why}; returning NaN", UndefinedMetricWarning, stacklevel=4)
    return math.nan


def _auc(d):
    kind = d.kind("auc")
    if kind == "softmax":
        k = d.P.shape[1]
        if k == 2:
            T, S = (d.labels == 1)[:, None], d.P[:, 1:]
        else:
            T, S = d.labels[:, None] == np.arange(k), d.P
    else:
        T, S = d.binary_targets("auc"), d.P
    auc = _auc_columns(T, S, d.w)
    if np.isnan(auc).any():
        if S.shape[1] == 1:
            what = "y_true holds one class only"
        else:
            bad = int(np.flatnonzero(np.isnan(auc))[0])
            what = f"{'class' if kind == 'softmax' else 'column'} {bad} has no positive or no negative rows in y_true"
        if d.w is not None:
            what += " (rows of weight 0 not counted)"
        return _undefined("auc", what)
    return float(auc.mean())


def _f1(d):
    kind = d.kind("f1")
    w = d.w
    if kind == "multilabel":
        T, Pb = d.binary_targets("f1"), d.Pb
        wc = np.ones((T.shape[0], 1)) if w is None else w[:, None]
        tp = (wc * (T & Pb)).sum(0)
        true_sum, pred_sum = (wc * T).sum(0), (wc * Pb).sum(0)
    else:
        if kind == "binary":
            y, p = d.binary_targets("f1")[:, 0].astype(np.int64), d.Pb[:, 0].astype(np.int64)
        else:
            y, p = d.labels, d.pred_labels
        present = np.union1d(y, p)                      # scikit-learn's unique_labels: presence, not weight
        m = int(present[-1]) + 1
        tp = np.bincount(y[y == p], None if w is None else w[y == p], m)[present]
        true_sum = np.bincount(y, w, m)[present]
        pred_sum = np.bincount(p, w, m)[present]
    denom = true_sum + pred_sum
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(denom, dtype=np.float64), where=denom > 0)
    return float(f1.mean())


def _mae(d):
    Y, P = d.values("mae")
    return float(_mean(np.abs(Y - P), d.w).mean())


def _rmse(d):
    Y, P = d.values("rmse")
    return float(np.sqrt(_mean((Y - P) ** 2, d.w)).mean())


def _r2(d):
    Y, P = d.values("r2")
    if Y.shape[0] < 2:
        return _undefined("r2", "it needs at least two rows")
    w = np.ones(Y.shape[0]) if d.w is None else d.w
    wc = w[:, None]
    num = (wc * (Y - P) ** 2).sum(0)
    den = (wc * (Y - np.average(Y, axis=0, weights=w)) ** 2).sum(0)
    # targets that are constant over the weighted rows have no variance to explain, whatever
    # rounding left in den
    live = Y[w > 0]
    den[(live == live[0]).all(0)] = 0.0
    score = np.ones(Y.shape[1])
    ok = den != 0
    score[ok] = 1.0 - num[ok] / den[ok]
    score[~ok & (num != 0)] = 0.0
    return float(score.mean())


# ---- registry ------------------------------------------------------------------------------------
class Metric:
    """A named metric: ``metric(y_true, y_pred, sample_weight=None, output=None) -> float``.

    Parameters
    ----------
    name : str
        The registry name.
    fn : callable
        The implementation, a function of the checked inputs.
    greater_is_better : bool
        Whether larger values are better.
    classification : bool
        Whether it needs class probabilities.
    sklearn : str
        The scikit-learn function it equals.

    Attributes
    ----------
    name : str
        The registry name, and the History key (``val_`` + name for validation).
    greater_is_better : bool
        True for auc, accuracy, f1 and r2 (callbacks maximize them), False for errors.
    classification : bool
        Whether the metric needs class probabilities (a softmax or sigmoid output).
    sklearn : str
        The scikit-learn function it equals.
    """

    __slots__ = ("name", "greater_is_better", "classification", "sklearn", "_fn")

    def __init__(self, name, fn, greater_is_better, classification, sklearn):
        self.name = name
        self._fn = fn
        self.greater_is_better = greater_is_better
        self.classification = classification
        self.sklearn = sklearn

    def __call__(self, y_true, y_pred, sample_weight=None, output=None):
        """The metric of predictions ``y_pred`` against ``y_true``.

        Parameters
        ----------
        y_true : array-like of shape (n,) or (n, k)
            Targets: int labels or one-hot/probability rows (softmax), 0/1 values (sigmoid),
            values (regression).
        y_pred : array-like of shape (n, k) or (n,)
            The model's outputs (`MLP.predict`).
        sample_weight : array-like of shape (n,), optional
            Non-negative row weights with a positive sum.
        output : {"softmax", "sigmoid", "linear", "exp"}, optional
            The model's output activation. Needed only to tell softmax from multi-label sigmoid
            predictions when the targets are 2-D with k > 1 columns.

        Returns
        -------
        float
            May be NaN where the module docstring says so (with an `UndefinedMetricWarning`).

        Raises
        ------
        TypeError, ValueError
            Inputs of the wrong kind, shape or range, or holding NaN or inf.
        """
        return self._fn(_Data(y_true, y_pred, sample_weight, output))

    def __repr__(self):
        return f"Metric({self.name!r}, greater_is_better={self.greater_is_better})"


#: Every metric by name (read-only).
METRICS = types.MappingProxyType({m.name: m for m in (
    Metric("accuracy", _accuracy, True, True, "accuracy_score"),
    Metric("auc", _auc, True, True, "roc_auc_score"),
    Metric("f1", _f1, True, True, "f1_score(average='macro')"),
    Metric("mae", _mae, False, False, "mean_absolute_error"),
    Metric("rmse", _rmse, False, False, "root_mean_squared_error"),
    Metric("r2", _r2, True, False, "r2_score"),
)})


def get(name):
    """The `Metric` called ``name``.

    Parameters
    ----------
    name : str
        One of ``sorted(METRICS)``.

    Returns
    -------
    Metric
        The registry's metric: callable, with ``greater_is_better``.

    Raises
    ------
    TypeError
        ``name`` is not a string.
    ValueError
        An unknown name; the message lists the valid ones.
    """
    if not isinstance(name, str):
        raise TypeError(f"metric: expected one of {sorted(METRICS)}, got {_describe(name)}")
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"metric: unknown name {name!r}; expected one of {sorted(METRICS)}") from None


def check_names(names, output=None):
    """Validate a ``metrics=`` argument before any training.

    The names must be known, distinct, and apply to the model's ``output``.

    Parameters
    ----------
    names : str or sequence of str or None
        None (no metric), one name, or a list/tuple of names.
    output : {"softmax", "sigmoid", "linear", "exp"}, optional
        The model's output activation; classification metrics are refused for linear and exp.

    Returns
    -------
    tuple of str
        The names, in the order given.

    Raises
    ------
    TypeError, ValueError
        As `get`, for a duplicate name, or a classification metric on a regression output.
    """
    output = _check_output(output)
    if names is None:
        return ()
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, (list, tuple)):
        raise TypeError(f"metrics: expected a list of names from {sorted(METRICS)}, got {_describe(names)}")
    seen = []
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise TypeError(f"metrics[{i}]: expected one of {sorted(METRICS)}, got {_describe(name)}")
        m = get(name)
        if name in seen:
            raise ValueError(f"metrics: {name!r} is listed twice")
        if m.classification and output in ("linear", "exp"):
            raise ValueError(f"metrics: {name!r} needs class probabilities (output 'softmax' or 'sigmoid'), "
                             f"got output {output!r}")
        seen.append(name)
    return tuple(seen)


def compute(names, y_true, y_pred, sample_weight=None, *, output=None):
    """Every metric in ``names`` on one set of predictions, the inputs checked and converted once.

    This is what ``fit`` calls at the end of each epoch (training rows and validation rows)
    and what ``evaluate`` calls.

    Parameters
    ----------
    names : str or sequence of str
        Metric names (see `check_names`).
    y_true : array-like of shape (n,) or (n, k)
        Targets, as for a `Metric` call.
    y_pred : array-like of shape (n, k) or (n,)
        The model's outputs.
    sample_weight : array-like of shape (n,), optional
        Non-negative row weights with a positive sum.
    output : {"softmax", "sigmoid", "linear", "exp"}, optional
        The model's output activation (see `Metric`).

    Returns
    -------
    dict
        ``{name: float}`` in the order of ``names``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastbp import metrics
    >>> p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    >>> metrics.compute(["accuracy", "auc"], [0, 1, 1], p)
    {'accuracy': 0.6666666666666666, 'auc': 1.0}
    """
    names = check_names(names, output)
    d = _Data(y_true, y_pred, sample_weight, output)
    return {name: METRICS[name]._fn(d) for name in names}


def is_maximized(key):
    """Whether a callback monitoring a History key should maximize it.

    Parameters
    ----------
    key : str
        A History key such as ``"val_auc"`` or ``"loss"``.

    Returns
    -------
    bool
        True for keys ending in auc, accuracy, f1 or r2; every other key is minimized.
    """
    if not isinstance(key, str):
        raise TypeError(f"key: expected a History key like 'val_loss', got {_describe(key)}")
    return key.endswith(("auc", "accuracy", "f1", "r2"))


class TrainingMetrics:
    """Training metrics from each row's prediction at the step it was trained on.

    Keras computes them so, with no second pass over the data. The training loop allocates
    one per fit, writes, during each epoch, the prediction of the i-th row it trains into
    ``predictions[i]`` (the output-layer values of the forward pass, before that minibatch's
    update), and calls `result` with the data row of each position at the end of the epoch.

    Parameters
    ----------
    names : sequence of str
        The metric names (see `check_names`).
    y_true : ndarray of shape (n,) or (n, k)
        The training targets, indexed by data row.
    n_outputs : int
        The model's output width k.
    output : {"softmax", "sigmoid", "linear", "exp"}
        The model's output activation.
    sample_weight : ndarray of shape (n,), optional
        Row weights, indexed by data row; None for unweighted metrics (Keras' ``metrics=``).
    dtype : dtype, default float64
        The dtype of ``predictions`` (the model's).
    """

    def __init__(self, names, y_true, n_outputs, *, output, sample_weight=None, dtype=np.float64):
        if output is None:
            raise TypeError(f"output: expected one of {list(OUTPUTS)} (the model's output activation), got None")
        self.names = check_names(names, output)
        self.output = output
        self.y_true = y_true
        self.sample_weight = sample_weight
        n = len(y_true)
        k = check_int("n_outputs", n_outputs, 1)
        self.predictions = np.zeros((n, k), dtype)

    def result(self, rows, count=None):
        """``{name: float}`` of the epoch.

        Parameters
        ----------
        rows : ndarray of int, shape (n,)
            ``rows[i]`` is the data row trained at position i of the epoch (the epoch's order).
        count : int, optional
            Positions filled (an epoch cut short); default all.

        Returns
        -------
        dict
            ``{name: float}`` in the order of ``names``.
        """
        c = len(rows) if count is None else count
        rows = np.asarray(rows[:c])
        sw = None if self.sample_weight is None else np.asarray(self.sample_weight)[rows]
        return compute(self.names, np.asarray(self.y_true)[rows], self.predictions[:c], sw, output=self.output)
