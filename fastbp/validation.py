"""Input checks shared by every public entry point.

Each check raises TypeError (wrong kind of thing) or ValueError (right kind, wrong value) with a
message naming the argument, what was expected and what came, before any state is touched.
Data is converted at most once per call (``as_features``, ``as_finite``): the compiled loops
then read the converted arrays directly, never a per-batch copy.
"""
import numbers

import numpy as np

from ._memmap import read_only_mapping, release

FLOAT_DTYPES = {"float32": np.float32, "float64": np.float64}


def _describe(x):
    if isinstance(x, np.ndarray):
        return f"array of shape {x.shape} and dtype {x.dtype}"
    if x is None or isinstance(x, (str, bytes, numbers.Number, np.generic)):
        return f"{type(x).__name__} {x!r}"
    return type(x).__name__


def check_number(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {_describe(value)}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    return value


def check_positive(name, value):
    value = check_number(name, value)
    if value <= 0:
        raise ValueError(f"{name}: expected a number > 0, got {value}")
    return value


def check_nonnegative(name, value):
    value = check_number(name, value)
    if value < 0:
        raise ValueError(f"{name}: expected a number >= 0, got {value}")
    return value


def check_unit_interval(name, value, open_right=False):
    value = check_number(name, value)
    if value < 0 or value > 1 or (open_right and value == 1):
        raise ValueError(f"{name}: expected a number in [0, 1{')' if open_right else ']'}, got {value}")
    return value


def check_int(name, value, minimum=None):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {_describe(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return value


def check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {_describe(value)}")
    return bool(value)


def check_choice(name, value, choices):
    """``choices[value]`` for a name in the registry ``choices``; the error lists valid names."""
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected one of {sorted(choices)}, got {_describe(value)}")
    try:
        return choices[value]
    except KeyError:
        raise ValueError(f"{name}: unknown name {value!r}; expected one of {sorted(choices)}") from None


def check_dtype(dtype, name="dtype"):
    """np.dtype float32 or float64 from a name ("float32"), a numpy type or a dtype."""
    expected = f"one of {sorted(FLOAT_DTYPES)}"
    if dtype is None or isinstance(dtype, bool):      # np.dtype(None) would silently mean float64
        raise TypeError(f"{name}: expected {expected}, got {dtype!r}")
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError):
        if isinstance(dtype, str):
            raise ValueError(f"{name}: expected {expected}, got {dtype!r}") from None
        raise TypeError(f"{name}: expected {expected}, got {_describe(dtype)}") from None
    if dt.name not in FLOAT_DTYPES or dt.byteorder not in "=|" + ("<" if np.little_endian else ">"):
        raise ValueError(f"{name}: expected {expected}, got {dtype!r}")
    return np.dtype(FLOAT_DTYPES[dt.name])


def check_flat_pair(params, grads):
    """params and grads: flat float32/float64 ndarrays of one shape and dtype; params writeable
    and grads finite (a NaN or inf gradient would silently poison every parameter)."""
    for name, a in (("params", params), ("grads", grads)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name}: expected a numpy array, got {_describe(a)}")
        if a.ndim != 1 or a.dtype not in (np.float32, np.float64) or not a.flags.c_contiguous:
            raise ValueError(f"{name}: expected a contiguous 1-D float32 or float64 array, got {_describe(a)}")
    if grads.shape != params.shape or grads.dtype != params.dtype:
        raise ValueError(f"grads: expected shape {params.shape} and dtype {params.dtype} like params, "
                         f"got {_describe(grads)}")
    if not params.flags.writeable:
        raise ValueError("params: expected a writeable array, got a read-only one")
    if np.shares_memory(params, grads):
        raise ValueError("grads: expected an array separate from params, got one sharing its memory")
    check_all_finite("grads", grads)


def _to_numeric_array(name, X, dtype=None):
    """X as an ndarray of a numeric dtype (bool, int, uint or float); no copy when X is one.

    pandas objects are read with ``to_numpy`` (with ``dtype`` if given, so a DataFrame is
    converted once, straight to the model's dtype).
    """
    if X is None:
        raise TypeError(f"{name}: expected an array-like of numbers, got None")
    if isinstance(X, np.ndarray):
        arr = X
    else:
        if hasattr(X, "toarray") and hasattr(X, "nnz"):
            raise TypeError(f"{name}: sparse matrices are not supported; pass a dense array ({name}.toarray())")
        if isinstance(X, (str, bytes, dict)):
            raise TypeError(f"{name}: expected an array-like of numbers, got {_describe(X)}")
        try:
            if hasattr(X, "to_numpy"):          # pandas DataFrame / Series
                arr = X.to_numpy(dtype=dtype) if dtype is not None else X.to_numpy()
            else:
                arr = np.asarray(X)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{name}: could not convert to a numeric array ({e})") from None
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name}: expected numeric data, got an array of dtype object ({e})") from None
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected numeric data (bool, int or float), got an array of dtype {arr.dtype}")
    return arr


def check_all_finite(name, arr, chunk_elems=1 << 20, source=None):
    """Raise if arr holds NaN or inf (checked in row chunks, so a memmap is not loaded whole).

    ``source``: the array arr was converted from, to tell an overflow in the conversion apart.
    """
    if arr.dtype.kind not in "fc" or arr.size == 0:
        return
    if arr.ndim == 0:
        arr = arr.reshape(1)
        source = None if source is None else np.reshape(source, 1)
    mapping = read_only_mapping(arr)
    # chunks of about a million elements: the isfinite mask of a whole large X would cost
    # n_samples * n_features bytes of memory (and a memmap would be read in at once)
    chunk_rows = max(1, chunk_elems // max(1, arr.size // max(1, arr.shape[0])))
    for r in range(0, arr.shape[0], chunk_rows):
        part = arr[r:r + chunk_rows]
        ok = np.isfinite(part).all()
        release(mapping)                # a memmap's pages read so far leave resident memory
        if not ok:
            bad = np.argwhere(~np.isfinite(part))[0]
            bad[0] += r
            idx = tuple(int(i) for i in bad)
            value = arr[idx]
            msg = f"{name}: expected finite values, found {value} at index {idx}"
            if source is not None and source.dtype.kind in "biuf" and np.isfinite(source[idx]):
                msg += (f" (the value {source[idx]} is beyond the range of {arr.dtype}; rescale the data "
                        f"or use dtype='float64')")
            raise ValueError(msg)


def all_finite(arr, chunk_elems=1 << 20):
    """Whether every element of the C-contiguous array ``arr`` is finite, a chunk at a time (no
    mask the size of a model's params and optimizer state)."""
    flat = arr.reshape(-1)
    return all(np.isfinite(flat[i:i + chunk_elems]).all() for i in range(0, flat.shape[0], chunk_elems))


def as_labels(arr):
    """Integer class labels as a C-contiguous int64 array (arr already checked)."""
    return np.ascontiguousarray(arr, dtype=np.int64)


def as_finite(name, arr, dtype):
    """arr (already numeric) as a C-contiguous array of ``dtype`` with only finite values."""
    with np.errstate(over="ignore"):            # an overflow is reported below, with its index
        out = np.ascontiguousarray(arr, dtype=dtype)
    check_all_finite(name, out, source=arr if out is not arr else None)
    return out


def as_features(name, X, dtype, n_features=None):
    """X as a C-contiguous (n, n_features) array of ``dtype``, copied only if it must be.

    Accepts lists, any numeric dtype, Fortran order, strided views, memmaps (read in place
    when already C-contiguous in ``dtype``) and pandas objects; rejects NaN and inf.
    """
    arr = _to_numeric_array(name, X, dtype)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n_samples, n_features), got {arr.ndim}-D with shape {arr.shape}"
                         + ("; reshape a single sample with X.reshape(1, -1)" if arr.ndim == 1 else ""))
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one sample, got shape {arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name}: expected {n_features} features (the model's input width), got {arr.shape[1]} "
                         f"(shape {arr.shape})")
    return as_finite(name, arr, dtype)
