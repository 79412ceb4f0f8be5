"""fastbp.datasets: the shipped iris and digits files, and the seeded generators."""
import subprocess
import sys
from importlib import resources

import numpy as np
import pytest

import fastbp
from fastbp import datasets as D


def test_iris_is_fishers_150_by_4_with_50_per_class():
    ds = D.load_iris()
    X, y = ds                                            # unpacks like a tuple
    assert X.shape == (150, 4) and X.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [50, 50, 50])
    assert ds.target_names == ["setosa", "versicolor", "virginica"] and len(ds.feature_names) == 4
    assert ds.task == "classify" and "iris" in repr(ds)
    # Fisher's table: sepal length 4.3..7.9, petal width 0.1..2.5; means 5.843, 3.057, 3.758, 1.199.
    X64 = D.load_iris(dtype="float64").X
    np.testing.assert_allclose(X64.min(0), [4.3, 2.0, 1.0, 0.1])
    np.testing.assert_allclose(X64.max(0), [7.9, 4.4, 6.9, 2.5])
    np.testing.assert_allclose(X64.mean(0), [5.8433, 3.0573, 3.758, 1.1993], atol=1e-4)


def test_digits_is_1797_images_of_8x8_pixel_counts():
    X, y = D.load_digits()
    assert X.shape == (1797, 64) and y.shape == (1797,)
    assert X.min() == 0 and X.max() == 16 and np.array_equal(X, np.round(X))
    assert sorted(set(y.tolist())) == list(range(10))
    assert np.bincount(y).min() >= 170                   # roughly balanced, 174..183 per digit


def test_shipped_data_equals_scikit_learns_copy():
    datasets = pytest.importorskip("sklearn.datasets")
    si, sd = datasets.load_iris(), datasets.load_digits()
    np.testing.assert_array_equal(D.load_iris(dtype="float64").X, si.data)
    np.testing.assert_array_equal(D.load_iris().y, si.target)
    np.testing.assert_array_equal(D.load_digits(dtype="float64").X, sd.data)
    np.testing.assert_array_equal(D.load_digits().y, sd.target)


def test_data_files_are_small_package_data_read_without_scikit_learn():
    files = resources.files("fastbp.datasets").joinpath("data")
    sizes = {p.name: len(p.read_bytes()) for p in files.iterdir() if p.is_file()}
    assert {"iris.csv", "digits.csv.gz"} <= set(sizes)
    assert sum(sizes.values()) < 100_000
    code = ("import sys, fastbp.datasets as d; d.load_iris(); d.load_digits(); "
            "assert 'sklearn' not in sys.modules, 'scikit-learn was imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


def test_make_parts_reproduces_the_course_data():
    X, y = D.make_parts()
    np.testing.assert_array_equal(X, np.random.RandomState(23455).rand(32, 2))
    np.testing.assert_array_equal(y, (X[:, 0] + X[:, 1] < 1).astype(int))
    assert 0 < y.sum() < 32
    X5, y5 = D.make_parts(500, seed=1)
    assert X5.shape == (500, 2) and ((X5 >= 0) & (X5 < 1)).all()
    np.testing.assert_array_equal(y5, X5.sum(1) < 1)


@pytest.mark.parametrize("make", [D.make_classification, D.make_regression])
def test_generators_are_seeded_and_shaped(make):
    a, b, c = make(500, seed=3), make(500, seed=3), make(500, seed=4)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)
    assert a.X.dtype == np.float32 and make(10, dtype="float64").X.dtype == np.float64
    assert a.X.shape[0] == a.y.shape[0] == 500


def test_make_classification_is_balanced_across_chunks_and_learnable():
    big = D.make_classification(70_000, n_features=6, n_classes=4, seed=0)   # > one generation chunk
    assert big.X.shape == (70_000, 6) and big.X.dtype == np.float32
    np.testing.assert_array_equal(np.bincount(big.y), [17_500] * 4)
    assert len(np.unique(big.X[:, 0])) > 69_000                     # no chunk repeats another
    X, y = D.make_classification(3000, n_features=10, n_classes=3, seed=1)
    m = fastbp.MLP([10, 32, 3], seed=0)
    m.fit(X[:2400], y[:2400], epochs=15, batch_size=32, optimizer=fastbp.Adam(3e-3), verbose=0)
    assert m.evaluate(X[2400:], y[2400:])["accuracy"] > 0.6          # chance is 1/3


def test_make_regression_follows_a_learnable_function():
    X, y = D.make_regression(3000, n_features=8, noise=0.0, seed=2)
    assert y.shape == (3000,) and X.shape == (3000, 8)
    m = fastbp.MLP([8, 32, 1], activation="tanh", output="linear", seed=0)
    m.fit(X[:2400], y[:2400], epochs=30, batch_size=32, optimizer=fastbp.Adam(3e-3), verbose=0)
    mse = m.evaluate(X[2400:], y[2400:])["loss"]
    assert mse < 0.1 * y[2400:].var()                             # R^2 > 0.9


def test_load_by_name_and_bad_arguments():
    assert D.load("iris").X.shape == (150, 4)
    assert sorted(D.DATASETS) == ["digits", "iris", "parts"]
    with pytest.raises(ValueError, match=r"name: unknown dataset 'mnist'; expected one of \['digits', 'iris', 'parts'\]"):
        D.load("mnist")
    with pytest.raises(ValueError, match="n_informative: expected at most n_features=4, got 5"):
        D.make_classification(10, n_features=4, n_informative=5)
    with pytest.raises(ValueError, match="n_classes: expected an int >= 2, got 1"):
        D.make_classification(10, n_classes=1)
    with pytest.raises(TypeError, match="n_samples: expected an int"):
        D.make_regression(10.5)
    with pytest.raises(ValueError, match="noise: expected a number >= 0"):
        D.make_regression(10, noise=-1)
    with pytest.raises(ValueError, match="dtype"):
        D.load_iris(dtype="int8")
