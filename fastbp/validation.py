"""Input checks shared by every public entry point.

Each check raises TypeError (wrong kind of thing) or ValueError (right kind, wrong value) with a
message naming the argument, what was expected and what came, before any state is touched.
"""
import numbers

import numpy as np

FLOAT_DTYPES = {"float32": np.float32, "float64": np.float64}


def _describe(x):
    if isinstance(x, np.ndarray):
        return f"array of shape {x.shape} and dtype {x.dtype}"
    return f"{type(x).__name__} {x!r}" if np.isscalar(x) or x is None else type(x).__name__


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


def check_choice(name, value, choices):
    """``choices[value]`` for a name in the registry ``choices``; the error lists valid names."""
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected one of {sorted(choices)}, got {_describe(value)}")
    try:
        return choices[value]
    except KeyError:
        raise ValueError(f"{name}: unknown name {value!r}; expected one of {sorted(choices)}") from None


def check_dtype(dtype):
    key = np.dtype(dtype).name if isinstance(dtype, type) or isinstance(dtype, np.dtype) else dtype
    if key not in FLOAT_DTYPES:
        raise ValueError(f"dtype: expected one of {sorted(FLOAT_DTYPES)}, got {dtype!r}")
    return np.dtype(FLOAT_DTYPES[key])


def check_flat_pair(params, grads):
    """params and grads: flat float32/float64 ndarrays of one shape and dtype; params writeable."""
    for name, a in (("params", params), ("grads", grads)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name}: expected a numpy array, got {_describe(a)}")
        if a.ndim != 1 or a.dtype not in (np.float32, np.float64) or not a.flags.c_contiguous:
            raise ValueError(f"{name}: expected a contiguous 1-D float32 or float64 array, got {_describe(a)}")
    if grads.shape != params.shape or grads.dtype != params.dtype:
        raise ValueError(f"grads: expected shape {params.shape} and dtype {params.dtype} like params, "
                         f"got {_describe(grads)}")
    if not params.flags.writeable:
        raise ValueError("params: the array is read-only")


def _to_numeric_array(name, X):
    if isinstance(X, np.ndarray):
        arr = X
    else:
        if hasattr(X, "to_numpy"):          # pandas DataFrame / Series
            X = X.to_numpy()
        try:
            arr = np.asarray(X)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{name}: could not convert to a numeric array ({e})") from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected numeric data, got an array of dtype {arr.dtype}")
    return arr


def check_all_finite(name, arr, chunk_rows=65536):
    """Raise if arr holds NaN or inf (checked in row chunks, so a memmap is not loaded whole)."""
    if arr.dtype.kind != "f":
        return
    for r in range(0, max(arr.shape[0], 1), chunk_rows):
        part = arr[r:r + chunk_rows]
        if not np.isfinite(part).all():
            bad = np.argwhere(~np.isfinite(part))[0]
            bad[0] += r
            raise ValueError(f"{name}: expected finite values, found NaN or inf at index {tuple(int(i) for i in bad)}")


def as_features(name, X, dtype, n_features=None):
    """X as a C-contiguous (n, n_features) array of ``dtype``, copied only if it must be."""
    arr = _to_numeric_array(name, X)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n_samples, n_features), got {arr.ndim}-D with shape {arr.shape}"
                         + ("; reshape a single sample with X.reshape(1, -1)" if arr.ndim == 1 else ""))
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one sample, got shape {arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name}: expected {n_features} features (the model's input width), got {arr.shape[1]}")
    check_all_finite(name, arr)
    return np.ascontiguousarray(arr, dtype=dtype)
