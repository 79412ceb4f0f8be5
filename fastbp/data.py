"""User data checked and converted, once per call, into what the kernels read (``kernels.args.Data``).

Every function takes the model only for its public facts (``dtype``, ``sizes``, ``loss``,
``is_classifier``) and raises TypeError/ValueError naming the argument before anything changes.
Arrays reach the kernels read-only: numba compiles a separate version of a kernel for read-only
arrays (a memmap opened with mode "r" is one), so handing every input read-only keeps it to one
version per dtype.
"""
import sys

import numpy as np

from .kernels.args import Data, SparseRows
from .validation import (_describe, _to_numeric_array, as_features, as_finite, as_labels, check_all_finite,
                         check_int, check_nonnegative)


def frozen(a):
    """A read-only view of ``a``."""
    v = a.view(np.ndarray)
    v.flags.writeable = False
    return v


def rows(a, lo, hi):
    """Rows lo:hi of a data array; an empty stand-in (no sample weights, no int labels) stays as is."""
    return a[lo:hi] if a.size else a


def is_sparse(X):
    """Whether X is a scipy sparse matrix or array (without importing scipy for dense input)."""
    sp = sys.modules.get("scipy.sparse")
    return sp is not None and sp.issparse(X)


def _row_of(indptr, e):
    """The row holding stored entry e of a CSR matrix."""
    return int(np.searchsorted(indptr, e, side="right")) - 1


def sparse_features(model, X, name="X"):
    """A scipy sparse X as the kernels read it: a SparseRows of CSR arrays (int64 indptr, int32
    indices sorted and unique within each row, values in the model's dtype), never densified.

    Another format is converted to CSR once; unsorted or duplicate indices are sorted and
    summed in a copy (the caller's matrix is left as it is). Raises ValueError naming ``name``
    for a shape that does not fit, indices out of range, or NaN and inf among the values.
    """
    d = model.sizes[0]
    if X.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D sparse matrix (n_samples, n_features), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one sample, got shape {X.shape}")
    if X.shape[1] != d:
        raise ValueError(f"{name}: expected {d} features (the model's input width), got {X.shape[1]} "
                         f"(shape {X.shape})")
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected numeric data (bool, int or float), got a sparse matrix of dtype {X.dtype}")
    if X.format != "csr":
        X = X.tocsr()                   # sums a COO matrix's duplicates; checked like any CSR below
    n = X.shape[0]
    indptr = np.asarray(X.indptr)
    if indptr.shape != (n + 1,) or indptr[0] != 0 or (np.diff(indptr) < 0).any():
        raise ValueError(f"{name}: a CSR matrix with {n} rows needs indptr of {n + 1} non-decreasing offsets "
                         f"starting at 0, got {indptr.shape[0]} entries from {indptr[0] if indptr.size else None}")
    nnz = int(indptr[-1])
    if nnz > min(X.indices.shape[0], X.data.shape[0]):
        raise ValueError(f"{name}: indptr promises {nnz} stored entries, but indices has {X.indices.shape[0]} and "
                         f"data {X.data.shape[0]}")
    indices, values = X.indices[:nnz], X.data[:nnz]
    if nnz:
        lo, hi = int(indices.min()), int(indices.max())
        if lo < 0 or hi >= d:
            bad = int(np.flatnonzero((indices < 0) | (indices >= d))[0])
            raise ValueError(f"{name}: column indices must lie in [0, {d - 1}] for {d} features, got "
                             f"{int(indices[bad])} in row {_row_of(indptr, bad)}")
    if not X.has_canonical_format:      # unsorted or duplicate indices within a row
        import scipy.sparse as sp
        X = sp.csr_matrix((values, indices, indptr), shape=X.shape, copy=True)
        X.sum_duplicates()
        indptr, indices, values = np.asarray(X.indptr), X.indices, X.data
    with np.errstate(over="ignore", invalid="ignore"):
        conv = values.astype(model.dtype, copy=False)
    chunk = 1 << 20                      # a mask of this many entries at a time, not of all
    bad = next((c for c in range(0, nnz, chunk) if not np.isfinite(conv[c:c + chunk]).all()), None)
    if bad is not None:
        e = bad + int(np.flatnonzero(~np.isfinite(conv[bad:bad + chunk]))[0])
        msg = (f"{name}: expected finite values, found {conv[e]} at row {_row_of(indptr, e)}, column "
               f"{int(indices[e])}")
        if values.dtype.kind in "biuf" and np.isfinite(values[e]):
            msg += f" (the value {values[e]} is beyond the range of {conv.dtype}; rescale the data or use dtype='float64')"
        raise ValueError(msg)
    indptr = np.ascontiguousarray(indptr, np.int64)
    return SparseRows(frozen(indptr), frozen(np.ascontiguousarray(indices, np.int32)), frozen(np.ascontiguousarray(conv)),
                      d, int(np.diff(indptr).max()))


def features(model, X, name="X", share=None):
    """X as the kernels read it: C-contiguous (n, model.sizes[0]) in the model's dtype, copied
    only if it must be (a memmap already in that form is read in place); a scipy sparse X as a
    SparseRows (see sparse_features).

    share: a function n -> (lo, hi), the rows to check for NaN and inf (a rank of a distributed
    fit checks its share; the other ranks check theirs). Default: every row.
    """
    if is_sparse(X):
        return sparse_features(model, X, name)
    if share is None:
        return frozen(as_features(name, X, model.dtype, model.sizes[0]))
    arr = _to_numeric_array(name, X, model.dtype)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] != model.sizes[0]:
        as_features(name, arr, model.dtype, model.sizes[0])      # its message, raised before reading data
    lo, hi = share(arr.shape[0])
    as_finite(f"{name}[{lo}:{hi}]", arr[lo:hi], model.dtype)
    return frozen(np.ascontiguousarray(arr, dtype=model.dtype))


def targets(model, y, n, name="y"):
    """(targets, labels): float targets (n, k) or int labels (n,) for the kernels; the other empty."""
    k = model.sizes[-1]
    arr = _to_numeric_array(name, y)
    empty_f = frozen(np.zeros((0, 0), model.dtype))
    empty_i = frozen(np.zeros(0, np.int64))
    if arr.shape[:1] != (n,):
        raise ValueError(f"{name}: expected {n} rows to match X, got shape {arr.shape}")
    check_all_finite(name, arr)
    if model.loss == "cross_entropy" and arr.ndim == 1:
        if arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr)):
            raise ValueError(f"{name}: cross_entropy takes integer class labels (n,) or one-hot/probabilities "
                             f"(n, {k}); got non-integer values")
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi >= k:
            raise ValueError(f"{name}: class labels must lie in [0, {k - 1}] for {k} outputs, got min {lo} and max {hi}")
        return empty_f, frozen(as_labels(arr))
    if arr.ndim == 1 and k == 1:
        arr = arr.reshape(n, 1)
    if arr.ndim != 2 or arr.shape[1] != k:
        raise ValueError(f"{name}: expected shape ({n}, {k}) for {k} outputs"
                         + (f" or integer labels ({n},)" if model.loss == "cross_entropy" else "")
                         + f", got {arr.shape}")
    if model.is_classifier and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(f"{name}: {model.loss} targets must lie in [0, 1], got min {arr.min()} and max {arr.max()}")
    if model.loss == "poisson" and arr.min() < 0:
        raise ValueError(f"{name}: poisson targets are counts or rates >= 0, got min {arr.min()}")
    return frozen(as_finite(name, arr, model.dtype)), empty_i


def sample_weights(model, sample_weight, n, name="sample_weight"):
    """Per-sample weights (n,) in the model's dtype, or an empty array for none."""
    if sample_weight is None:
        return frozen(np.zeros(0, model.dtype))
    sw = _to_numeric_array(name, sample_weight)
    if sw.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},) to match X, got {sw.shape}")
    check_all_finite(name, sw)
    if (sw < 0).any():
        raise ValueError(f"{name}: expected weights >= 0, got min {sw.min()}")
    return frozen(as_finite(name, sw, model.dtype))


def with_class_weight(model, data, class_weight):
    """``data`` with its sample weights multiplied by ``class_weight[class of each row]``."""
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight: expected a dict {{class: weight}}, got {_describe(class_weight)}")
    k = model.sizes[-1]
    table = np.ones(max(k, 2), model.dtype)
    for c, wgt in class_weight.items():
        c = check_int("class_weight key", c, 0)
        if c >= table.shape[0]:
            raise ValueError(f"class_weight: class {c} is out of range for {k} outputs")
        table[c] = check_nonnegative(f"class_weight[{c}]", wgt)
    Yf, yint, sw = data.targets, data.labels, data.weights
    labels = yint if yint.size else (Yf.argmax(1) if k > 1 else (Yf[:, 0] > 0.5).astype(np.int64))
    cw = table[labels]
    return data._replace(weights=frozen(cw if sw.size == 0 else sw * cw))


def prepare(model, X, y, sample_weight=None, share=None):
    """A Data of X, y and sample_weight, all checked against the model."""
    X = features(model, X, share=share)
    Yf, yint = targets(model, y, X.shape[0])
    return Data(X, Yf, yint, sample_weights(model, sample_weight, X.shape[0]))


def inputs(model, X):
    """A Data holding only X, for predict."""
    X = features(model, X)
    return Data(X, frozen(np.zeros((0, 0), model.dtype)), frozen(np.zeros(0, np.int64)),
                frozen(np.zeros(0, model.dtype)))


def select(data, lo, hi):
    """Rows lo:hi of every array of ``data``."""
    return Data(*(rows(a, lo, hi) for a in data))


def split_validation(model, data, validation_data, validation_split, share=None):
    """(training Data, validation Data or None).

    validation_data is checked like training data; otherwise the last ``validation_split`` of
    the rows, taken before any shuffling, as Keras does. share: as for ``features``.
    """
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data: expected a tuple (X_val, y_val) or (X_val, y_val, sample_weight_val)")
        vX = features(model, validation_data[0], "validation_data[0]", share)
        vYf, vyint = targets(model, validation_data[1], vX.shape[0], "validation_data[1]")
        vsw = sample_weights(model, validation_data[2] if len(validation_data) == 3 else None, vX.shape[0],
                             "validation_data[2]")
        return data, Data(vX, vYf, vyint, vsw)
    if validation_split > 0:
        n = data.X.shape[0]
        n_val = int(n * validation_split)
        if n_val < 1 or n_val >= n:
            raise ValueError(f"validation_split: {validation_split} of {n} samples leaves no training or no validation data")
        cut = n - n_val
        return select(data, 0, cut), select(data, cut, n)
    return data, None
