"""pandas DataFrames and pyarrow Tables in ``MLP.fit``, ``evaluate``, ``predict``, ``predict_classes``
and ``predict_labels``: the model's ``TablePreprocessor`` and the standardization of its numeric
features, as ``fastbp train`` does it.

The first fit on a frame fits a TablePreprocessor on the training rows and keeps it on the model
(``model.preprocessor``, saved in its file); later fits and every other call apply it. Training
runs on standardized numeric features (the training rows' mean and standard deviation; 0/1
indicator and one-hot columns as they are), and the scaling is folded into the first layer when
the fit ends, so the model takes the encoded raw values. A later fit of a trained model
(``model.updates > 0``) unfolds it first (with its own training rows' statistics): the network
computes the same function, only its parametrization during training changes. An untrained
model's params (its initialization) are taken as weights on the standardized features, with a
preprocessor fitted by this fit or one the caller set on ``model.preprocessor``. Targets are
used as given (no scaling).

Checkpoints written during such a fit hold the run's params (on the standardized features) with
the preprocessor and the standardization (see fastbp.io), so ``fastbp.load`` gives a model that
takes raw columns and ``fit(frame, ..., resume_from=path)`` continues the run bit for bit, with
the checkpoint's preprocessor and standardization.
"""
import numpy as np

from . import io
from . import tables
from ._scaling import fold_input_scaling, unfold_input_scaling
from .data import is_sparse
from .validation import _describe

__all__ = ["standardizer", "fold_input_scaling", "unfold_input_scaling", "InputScaling", "preprocessed", "as_array",
           "fit", "evaluate_inputs", "predict_inputs", "labels_of"]


def standardizer(X, numeric=None):
    """(mu, sd), float64 (d,): the column means and standard deviations of ``X`` (n, d). A
    constant column gets sd 1; columns not listed in ``numeric`` (indices; default every
    column) get mu 0 and sd 1, so 0/1 indicator and one-hot columns pass through unchanged.
    A scipy sparse X is only scaled, by each column's largest magnitude (centring would fill
    every entry): mu is 0."""
    if is_sparse(X):
        sd = np.asarray(abs(X).max(0).todense(), np.float64).ravel()
        mu = np.zeros(X.shape[1])
    else:
        mu, sd = _mean_std(np.asarray(X, np.float64))
    sd[sd == 0] = 1.0                       # constant columns pass through centred
    if numeric is not None:
        keep = np.zeros(X.shape[1], bool)
        keep[np.asarray(numeric, np.int64)] = True
        mu[~keep], sd[~keep] = 0.0, 1.0
    return mu, sd


class InputScaling:
    """What the params of a fit on a table are trained on: the fitted ``preprocessor`` and the
    standardization ``mean``, ``scale`` (float64, one per encoded feature) of its output."""

    def __init__(self, preprocessor, mean, scale):
        self.preprocessor, self.mean, self.scale = preprocessor, mean, scale

    def folded(self, model):
        """A copy of ``model`` as the fit's end would leave it: the scaling folded into the first
        layer, and (a copy of) the preprocessor."""
        m = model.copy()
        fold_input_scaling(m, self.mean, self.scale)
        m.preprocessor = tables.TablePreprocessor.from_json(self.preprocessor.to_json())
        return m


def _plain_numbers(X):
    """Whether every column of frame X holds numbers or booleans without a gap."""
    import pyarrow as pa
    import pyarrow.compute as pc
    for column in tables.as_table(X, "X").columns:
        if tables.column_kind(column.type) != "numeric" or column.null_count:
            return False
        if pa.types.is_floating(column.type) and pc.any(pc.is_nan(column)).as_py():
            return False
    return True


def _block_rows(X, block_bytes=1 << 20):
    """Rows of float64 matrix X in a block of about ``block_bytes``: a block's temporary stays in
    cache whatever the width."""
    return max(1, block_bytes // (8 * max(X.shape[1], 1)))


def _mean_std(X):
    """``X.mean(0), X.std(0)`` of a float64 matrix, the same bits, without numpy's temporary
    copy of the whole of X: the squared deviations are summed a block of rows at a time
    (_block_rows), each block's first row carrying the sum so far, which is the order numpy sums
    them in."""
    n = X.shape[0]
    mu = np.add.reduce(X, axis=0) / n
    block_rows = _block_rows(X)
    acc = None
    for r0 in range(0, n, block_rows):
        d = X[r0:r0 + block_rows] - mu
        np.multiply(d, d, out=d)
        if acc is not None:
            d[0] += acc
        acc = np.add.reduce(d, axis=0)
    if acc is None:                         # no rows: as numpy, nan (with its warning)
        return X.mean(0), X.std(0)
    return mu, np.sqrt(acc / n)


def _standardized(X, mu, sd, own, dtype=np.float64):
    """(X - mu) / sd computed in float64, as ``dtype`` (a model's float32: the bits of the float64
    result cast). In X itself when ``own`` (an array this module made) and float64, saving two
    copies; otherwise written a block of rows at a time into a new matrix (no temporary of X's
    size in float64)."""
    if not isinstance(X, np.ndarray):
        return (X - mu) / sd
    if own and X.dtype == np.float64 and np.dtype(dtype) == np.float64:
        X -= mu
        X /= sd
        return X
    out = tables.zeros_matrix(X.shape[0], X.shape[1], dtype)
    rows = _block_rows(X)
    for r0 in range(0, X.shape[0], rows):
        block = X[r0:r0 + rows] - mu
        block /= sd
        out[r0:r0 + rows] = block
    return out


def preprocessed(model, X, y=None):
    """Whether ``fit``/``evaluate`` take frame X through the preprocessing: the model has a
    preprocessor, ``y`` names a column, or X holds something other than plain numbers (text,
    categories, gaps). A frame of plain numbers for a model of arrays is an array, as before."""
    return model.preprocessor is not None or isinstance(y, str) or not _plain_numbers(X)


def as_array(X):
    """A frame of plain numbers for a model without preprocessing: pandas objects as they are
    (fastbp.data converts them), pyarrow ones as a float64 matrix of their columns in order."""
    if tables.is_frame(X) and not type(X).__module__.startswith("pandas"):
        return tables.numeric_matrix(X, "X")
    return X


def _is_text(y):
    """Whether targets ``y`` hold class names (str) rather than numbers."""
    if isinstance(y, (list, tuple)):
        return bool(y) and all(isinstance(v, str) or v is None for v in y) and any(isinstance(v, str) for v in y)
    pa = tables.pyarrow_if_loaded()
    if pa is not None and isinstance(y, (pa.Array, pa.ChunkedArray)):
        return tables.is_text_type(y.type)
    dtype = getattr(y, "dtype", None)
    if dtype is None:
        return False
    if getattr(dtype, "kind", None) in ("U", "S"):
        return True
    if getattr(dtype, "kind", None) == "O" or str(dtype) in ("string", "category"):
        values = [v for v in np.asarray(y, dtype=object).ravel()[:1000] if v is not None and v == v]
        return bool(values) and all(isinstance(v, str) for v in values)
    return False


def _text_targets(y, classes=None):
    """Class names ``y`` as (int64 indices into classes, rows without a name, classes)."""
    import pyarrow as pa
    if not isinstance(y, (pa.Array, pa.ChunkedArray)):
        y = pa.array([None if v is None or v != v else v for v in np.asarray(y, dtype=object).ravel()],
                     pa.large_string())
    return tables.encode_target(pa.table({"y": y}), "y", classes)


def _targets(prep, table, y, name):
    """(table rows with a target, targets, class names or None, rows dropped (bool mask) or None)
    from fit's or evaluate's ``y``: a column name, class names, numbers, or None (the
    preprocessor's target column)."""
    if y is None:
        target = prep.target_ if prep is not None else None
        if target is None:
            raise TypeError(f"{name}: expected the targets, or the name of the target column (str); got None")
        y = target
    if isinstance(y, str):
        if prep is not None and prep.target_ is not None:
            if y != prep.target_:
                raise ValueError(f"{name}: the model was trained on target column {prep.target_!r}, got {y!r}")
            target, dropped = prep.transform_target(table, y)
            classes = prep.classes_
        else:
            target, dropped, classes = tables.encode_target(table, y)
    elif _is_text(y):
        target, dropped, classes = _text_targets(y, prep.classes_ if prep is not None else None)
        if len(dropped) != table.num_rows:
            raise ValueError(f"{name}: expected {table.num_rows} targets to match the frame's rows, got {len(dropped)}")
    else:
        return table, y, None, None
    return (tables.rows_where(table, ~dropped) if dropped.any() else table), target, classes, dropped


def _model_targets(model, target, classes):
    """Class indices as a model with named classes takes them: one-hot for a softmax model whose
    loss is not cross_entropy, else as they are (and targets of another shape, such as one-hot
    rows, as they are)."""
    if (classes is not None and model.output == "softmax" and model.loss != "cross_entropy"
            and np.ndim(target) == 1):
        return np.eye(model.sizes[-1], dtype=model.dtype)[np.asarray(target, np.int64)]
    return target


def fit(model, X, y, train, *, validation_data=None, validation_split=0.0, sample_weight=None, callbacks=None,
        resume_from=None, **kwargs):
    """``model.fit`` on a frame ``X`` (see MLP.fit); ``train`` is fastbp.training.fit."""
    table = tables.as_table(X, "X")
    saved = None
    if resume_from is not None:              # the run's own encoding and scaling, from the checkpoint
        resume_from = io.read_checkpoint(resume_from)       # read once: the fit restores this version
        saved = io.checkpoint_encoding(resume_from)
        if saved is None:
            raise ValueError(f"resume_from: {resume_from} is a checkpoint of a fit on arrays; a fit on a DataFrame "
                             "or pyarrow Table resumes from a checkpoint written during a fit on a table")
        problem = saved[0].model_problem(model.sizes, model.output)
        if problem:
            raise ValueError(f"resume_from: {problem}")
        prep = saved[0]
    else:
        prep = tables.preprocessor_of(model) if model.preprocessor is not None else None
    fresh = prep is None
    if fresh:
        if table.num_rows == 0:
            raise ValueError("X: expected at least one row, got none")
        target_col = y if isinstance(y, str) else None
        prep = tables.TablePreprocessor()
        rows, target, classes, dropped = _targets(None, table, y, "y")
        # learned from the training rows only: validation_split holds out the last ones, as fit does
        n = rows.num_rows
        train_rows = rows.slice(0, n - int(n * validation_split)) if validation_split and validation_data is None \
            else rows
        if target_col is None and classes is not None:
            # class names given as an array: kept by the preprocessor under the array's name
            prep.fit(train_rows)
            prep.set_classes(getattr(y, "name", None), classes)
        else:
            prep.fit(train_rows, target=target_col, classes=classes)
        problem = prep.model_problem(model.sizes, model.output)
        if problem:
            raise ValueError(f"X: {problem} (fastbp.TablePreprocessor().fit(X, target).n_features_out gives the "
                             "input width of a frame's encoding)")
    else:
        rows, target, classes, dropped = _targets(prep, table, y, "y")
        if classes is None and prep.classes_ is not None and not isinstance(y, str) and y is not None:
            classes = prep.classes_          # numbers given for a model with named classes: indices
    Xe = prep.transform(rows)
    if sample_weight is not None and dropped is not None and dropped.any():
        sw = np.asarray(sample_weight)
        if sw.shape != (table.num_rows,):
            raise ValueError(f"sample_weight: expected shape ({table.num_rows},) to match X, got {sw.shape}")
        sample_weight = sw[~dropped]        # the rows without a target are left out
    ye = _model_targets(model, target, classes)
    encoded_val = False                    # validation rows encoded here (else the caller's arrays)
    if tables.is_frame(validation_data):
        validation_data = evaluate_inputs(model, validation_data, None, prep=prep, name="validation_data",
                                          dtype=np.float64)
        encoded_val = True
    elif isinstance(validation_data, (tuple, list)) and validation_data and tables.is_frame(validation_data[0]):
        if len(validation_data) != 2:
            raise ValueError("validation_data: with a frame, expected (frame, y) or a frame holding the target "
                             f"column, got a tuple of {len(validation_data)}")
        validation_data = evaluate_inputs(model, validation_data[0], validation_data[1], prep=prep,
                                          name="validation_data", dtype=np.float64)
        encoded_val = True
    if saved is not None:
        mu, sd = saved[1], saved[2]
    else:
        n = Xe.shape[0]
        cut = n - int(n * validation_split) if validation_split and validation_data is None else n
        mu, sd = standardizer(Xe[:max(cut, 1)], prep.numeric_features_out)
        if model.bias is False:
            mu[:] = 0.0                     # without a bias the first layer cannot absorb a shift
    Xs = _standardized(Xe, mu, sd, own=True, dtype=model.dtype)
    del Xe
    if validation_data is not None and isinstance(validation_data[0], np.ndarray):
        validation_data = (_standardized(validation_data[0], mu, sd, encoded_val, model.dtype),) \
            + tuple(validation_data[1:])
    before, updates = model.params.copy(), model.updates
    if not fresh and saved is None and updates > 0:
        # trained params take the encoded raw values: the same function on the standardized ones
        unfold_input_scaling(model, mu, sd)
    unfolded = model.params.copy()

    def finish():
        if model.updates == updates and np.array_equal(model.params, unfolded):
            model.params[...] = before      # nothing trained: exactly as before
        else:
            fold_input_scaling(model, mu, sd)
            model.preprocessor = prep       # the params now take this encoding

    try:
        history = train(model, Xs, ye, validation_data=validation_data, validation_split=validation_split,
                        sample_weight=sample_weight, callbacks=callbacks, resume_from=resume_from,
                        input_scaling=InputScaling(prep, mu, sd), **kwargs)
    except BaseException:
        finish()
        raise
    finish()
    model.preprocessor = prep
    return history


def evaluate_inputs(model, X, y, prep=None, name="X", dtype=None):
    """(encoded X, targets for the model) of a frame and fit-style ``y`` (None: the target column
    the model was trained on); rows without a target are left out. X comes as ``dtype``
    (default: the model's; fit's validation rows take float64, to be standardized)."""
    prep = prep or tables.preprocessor_of(model)
    table = tables.as_table(X, name)
    rows, target, classes, _ = _targets(prep, table, y, name)
    if classes is None and prep.classes_ is not None and not isinstance(y, str) and y is not None:
        classes = prep.classes_            # numbers given for a model with named classes: indices
    if len(target) == 0:
        raise ValueError(f"{name}: every row's target is missing")
    return prep._encode(rows, model.dtype if dtype is None else dtype), _model_targets(model, target, classes)


def predict_inputs(model, X):
    """The rows of a frame as predict takes them: encoded by the model's preprocessor, or (a
    model of arrays) the columns in order as numbers."""
    if model.preprocessor is None:
        return as_array(X)
    return tables.preprocessor_of(model)._encode(tables.as_table(X, "X"), model.dtype)


def labels_of(model, idx):
    """Class indices as the model's class names (object array) when it has them, else as they are."""
    prep = model.preprocessor
    if prep is None or prep.classes_ is None:
        return idx
    names = np.asarray(prep.classes_, dtype=object)
    if idx.ndim != 1:
        raise ValueError(f"model: has class names but predicts {idx.shape[1]} labels per row (multi-label)")
    return names[idx]


def check_not_frame_y(y, name="y"):
    """A column name as ``y`` needs a frame as X."""
    if isinstance(y, str):
        raise TypeError(f"{name}: a column name ({y!r}) needs X to be a DataFrame or pyarrow Table, not "
                        f"an array; got {_describe(y)}")
