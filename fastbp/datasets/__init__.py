"""Small datasets shipped inside fastbp, and seeded generators of any size.

Shipped (no download; read with numpy only):

- ``load_iris()``: Fisher's iris, 150 x 4, 3 classes (seed 004's example).
- ``load_digits()``: 8x8 handwritten digits, 1797 x 64 (pixels 0..16), 10 classes.

Generated (same seed, same arrays):

- ``make_parts(n)``: seed 000's production line: volume and weight in [0, 1), a part is
  qualified (1) when x1 + x2 < 1.
- ``make_classification(n_samples, n_features, n_classes)`` and ``make_regression(...)``:
  synthetic tasks at any size, generated in row chunks straight into float32 or float64.

Every loader returns a `Dataset`, which unpacks as ``X, y = load_iris()``.
"""
import gzip
import io
import math
from importlib import resources

import numpy as np

from ..validation import check_dtype, check_int, check_nonnegative

__all__ = ["Dataset", "load_iris", "load_digits", "make_parts", "make_classification", "make_regression",
           "load", "DATASETS"]

# Rows generated per chunk: bounds the float64 temporaries of the generators.
_CHUNK_ROWS = 1 << 15


class Dataset:
    """Features ``X`` (n, d), targets ``y`` (n,), and what they mean.

    Unpacks as ``X, y = dataset``. ``feature_names`` and ``target_names`` (class names for
    classification, else None) are lists of str; ``task`` is "classify" or "regress".
    """

    def __init__(self, X, y, feature_names, target_names, task, name, description=""):
        self.X = X
        self.y = y
        self.feature_names = list(feature_names)
        self.target_names = None if target_names is None else list(target_names)
        self.task = task
        self.name = name
        self.description = description

    def __iter__(self):
        yield self.X
        yield self.y

    def __len__(self):
        return 2

    def __repr__(self):
        k = f", {len(self.target_names)} classes" if self.target_names else ""
        return f"Dataset({self.name!r}, X={self.X.shape} {self.X.dtype}, y={self.y.shape} {self.y.dtype}{k})"


def _read_csv(filename):
    """(header names, float64 array) from a CSV (optionally .gz) in fastbp/datasets/data/."""
    raw = resources.files(__name__).joinpath("data", filename).read_bytes()
    if filename.endswith(".gz"):
        raw = gzip.decompress(raw)
    text = raw.decode("ascii")
    header, _, body = text.partition("\n")
    data = np.loadtxt(io.StringIO(body), delimiter=",", ndmin=2)
    return header.strip().split(","), data


def load_iris(dtype="float32"):
    """Fisher's iris: 150 flowers x 4 measurements (cm), 3 species (50 each, rows grouped by class).

    y holds 0 = setosa, 1 = versicolor, 2 = virginica (int64).
    """
    names, data = _read_csv("iris.csv")
    return Dataset(data[:, :4].astype(check_dtype(dtype)), data[:, 4].astype(np.int64), names[:4],
                   ["setosa", "versicolor", "virginica"], "classify", "iris",
                   "R. A. Fisher (1936), via the UCI Machine Learning Repository and scikit-learn")


def load_digits(dtype="float32"):
    """Handwritten digits: 1797 images of 8x8 pixels (integers 0..16, row-major), digits 0-9.

    X is (1797, 64), y (1797,) int64.
    """
    names, data = _read_csv("digits.csv.gz")
    return Dataset(data[:, :64].astype(check_dtype(dtype)), data[:, 64].astype(np.int64), names[:64],
                   [str(d) for d in range(10)], "classify", "digits",
                   "E. Alpaydin and C. Kaynak (1998), UCI Optical Recognition of Handwritten Digits "
                   "(test set), via scikit-learn")


def make_parts(n=32, seed=23455, dtype="float64"):
    """Seed 000's production line: ``n`` parts with volume x1 and weight x2 in [0, 1).

    A part is qualified (y = 1) when x1 + x2 < 1, else 0. The default seed and the legacy
    ``RandomState(seed).rand(n, 2)`` reproduce the course's 32 parts exactly.
    """
    n = check_int("n", n, 1)
    seed = check_int("seed", seed, 0)
    X = np.random.RandomState(seed).rand(n, 2)
    y = (X[:, 0] + X[:, 1] < 1).astype(np.int64)
    return Dataset(X.astype(check_dtype(dtype)), y, ["volume", "weight"], ["rejected", "qualified"],
                   "classify", "parts", "x1 + x2 < 1 (seed 000)")


def _rows(n):
    for lo in range(0, n, _CHUNK_ROWS):
        yield lo, min(n, lo + _CHUNK_ROWS)


def make_classification(n_samples=1000, n_features=20, n_classes=2, n_informative=None, class_sep=1.5,
                        seed=0, dtype="float32"):
    """A seeded classification task of any size.

    Each class is two Gaussian clusters (so a linear model is not enough) in the first
    ``n_informative`` features, mixed by a random linear map; the other features are unit
    noise. Classes are balanced. Rows are generated in chunks directly in ``dtype``.

    Parameters
    ----------
    n_samples, n_features, n_classes : int
    n_informative : int, optional
        Features that carry the signal; default min(n_features, max(2, 2 * ceil(log2(n_classes)) + 2)).
    class_sep : float
        Scale of the cluster centres; larger is easier.
    seed : int
    dtype : {"float32", "float64"}

    Returns
    -------
    Dataset with X (n_samples, n_features) and y (n_samples,) int64 in [0, n_classes).
    """
    n = check_int("n_samples", n_samples, 1)
    d = check_int("n_features", n_features, 1)
    k = check_int("n_classes", n_classes, 2)
    if n_informative is None:
        n_informative = min(d, max(2, 2 * math.ceil(math.log2(k)) + 2))
    m = check_int("n_informative", n_informative, 1)
    if m > d:
        raise ValueError(f"n_informative: expected at most n_features={d}, got {m}")
    sep = check_nonnegative("class_sep", class_sep)
    dt = check_dtype(dtype)
    rng = np.random.default_rng(check_int("seed", seed, 0))
    centres = rng.standard_normal((2 * k, m)) * sep
    mix = (rng.standard_normal((m, m)) / math.sqrt(m) + np.eye(m)).astype(dt)
    y = rng.permutation(np.arange(n, dtype=np.int64) % k)
    cluster = 2 * y + rng.integers(0, 2, n)
    X = np.empty((n, d), dt)
    for lo, hi in _rows(n):
        block = rng.standard_normal((hi - lo, d), dtype=dt)
        inf = block[:, :m] + centres[cluster[lo:hi]].astype(dt)
        block[:, :m] = inf @ mix
        X[lo:hi] = block
    names = [f"x{i}" for i in range(d)]
    return Dataset(X, y, names, [str(c) for c in range(k)], "classify", "classification",
                   f"{k} classes x 2 Gaussian clusters in {m} informative features")


def make_regression(n_samples=1000, n_features=10, n_informative=None, noise=0.1, seed=0, dtype="float32"):
    """A seeded regression task of any size: ``y = X_inf @ w + sin(X_inf @ u) + noise * e``.

    X is standard normal (n_samples, n_features); X_inf its first ``n_informative`` columns
    (default min(n_features, 5)); w, u, e standard normal with w, u scaled by 1/sqrt(n_informative).
    y is (n_samples,) of ``dtype``.
    """
    n = check_int("n_samples", n_samples, 1)
    d = check_int("n_features", n_features, 1)
    m = check_int("n_informative", min(d, 5) if n_informative is None else n_informative, 1)
    if m > d:
        raise ValueError(f"n_informative: expected at most n_features={d}, got {m}")
    noise = check_nonnegative("noise", noise)
    dt = check_dtype(dtype)
    rng = np.random.default_rng(check_int("seed", seed, 0))
    w = rng.standard_normal(m) / math.sqrt(m)
    u = rng.standard_normal(m) / math.sqrt(m)
    X = np.empty((n, d), dt)
    y = np.empty(n, dt)
    for lo, hi in _rows(n):
        block = rng.standard_normal((hi - lo, d), dtype=dt)
        xi = block[:, :m].astype(np.float64)
        y[lo:hi] = xi @ w + np.sin(xi @ u) + noise * rng.standard_normal(hi - lo)
        X[lo:hi] = block
    return Dataset(X, y, [f"x{i}" for i in range(d)], None, "regress", "regression",
                   f"linear + sin in {m} informative features, noise {noise:g}")


# Names `fastbp train NAME` accepts; each loader called with no arguments.
DATASETS = {"digits": load_digits, "iris": load_iris, "parts": make_parts}


def load(name):
    """An embedded dataset by name: one of ``sorted(DATASETS)``."""
    if not isinstance(name, str):
        raise TypeError(f"name: expected one of {sorted(DATASETS)}, got {type(name).__name__}")
    try:
        return DATASETS[name]()
    except KeyError:
        raise ValueError(f"name: unknown dataset {name!r}; expected one of {sorted(DATASETS)}") from None
