"""fastbp compile / fastbp.compile_kernels: after it, no fit, predict or evaluate compiles anything."""
import os
import subprocess
import sys

import pytest

import fastbp

SESSION = """
import numpy as np, fastbp
rng = np.random.default_rng(1)
for sizes, act, out, n, batch in [([7, 30, 5], "tanh", "softmax", 500, 16),
                                   ([100, 300, 4], "sigmoid", "sigmoid", 700, 128),
                                   ([20, 64, 64, 1], "relu", "linear", 900, 300)]:
    X = rng.standard_normal((n, sizes[0])).astype(np.float32)
    if out == "softmax":
        y = rng.integers(0, sizes[-1], n)
    elif out == "sigmoid":
        y = (rng.random((n, sizes[-1])) > 0.5).astype(np.float32)
    else:
        y = rng.standard_normal((n, 1)).astype(np.float32)
    m = fastbp.MLP(sizes, activation=act, output=out, seed=2)
    m.fit(X, y, epochs=2, batch_size=batch, optimizer=fastbp.Momentum(lr=0.01, momentum=0.9),
          validation_data=(X[:50], y[:50]), sample_weight=rng.random(n), verbose=0,
          callbacks=[fastbp.EarlyStopping(monitor="val_loss")])
    m.predict(X, batch_size=77)
    m.evaluate(X, y)
    m.loss_and_grad(X[:5], y[:5])
    fastbp.MLP(sizes, activation=act, output=out, seed=2, deterministic=True).fit(X, y, batch_size=batch, verbose=0)
big = fastbp.MLP([300, 256, 10], seed=0)                  # more params than one thread updates
Xb, yb = rng.standard_normal((600, 300)).astype(np.float32), rng.integers(0, 10, 600)
big.train_step(Xb[:64], yb[:64], fastbp.Adam())
for threads in (fastbp.get_num_threads(), 1):
    fastbp.set_num_threads(threads)
    big.fit(Xb, yb, epochs=1, batch_size=64, verbose=0)
    big.predict(Xb)
import scipy.sparse as sp
Xs = sp.random(500, 300, density=0.05, format="csr", random_state=3, dtype=np.float32)
for sizes, batch in (([300, 256, 10], 64), ([300, 4, 3], 32)):      # batch-major; feature-major
    m = fastbp.MLP(sizes, seed=0)
    m.fit(Xs, rng.integers(0, sizes[-1], 500), epochs=1, batch_size=batch,
          validation_data=(Xs[:50], yb[:50] % sizes[-1]), verbose=0)
    m.predict(Xs)
"""


def _cache_files(folder):
    return {os.path.join(d, f) for d, _, files in os.walk(folder) for f in files}


@pytest.mark.slow
def test_after_fastbp_compile_other_nets_compile_nothing(tmp_path):
    """From an empty cache, ``fastbp compile --dtype float32`` fills it with every kernel: a session
    with other sizes, activations, losses, optimizer, batch sizes, validation data, sample weights
    and deterministic mode then adds no compiled code to the cache."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    p = subprocess.run([sys.executable, "-m", "fastbp", "compile", "--dtype", "float32"], env=env,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    assert "float32: every kernel compiled or loaded in" in p.stdout
    before = _cache_files(tmp_path)
    assert any(f.endswith(".nbc") for f in before)
    subprocess.run([sys.executable, "-c", SESSION], env=env, check=True, timeout=900)
    assert _cache_files(tmp_path) == before


@pytest.mark.parametrize("dtypes", [("float16",), (), "int8", ("float32", "double")])
def test_compile_kernels_rejects_unknown_dtypes(dtypes):
    with pytest.raises(ValueError, match="dtypes: expected some of"):
        fastbp.compile_kernels(dtypes)


@pytest.mark.parametrize("dtypes", [None, 5, 3.0])
def test_compile_kernels_rejects_what_is_not_a_dtype_name_or_a_sequence(dtypes):
    with pytest.raises(TypeError, match="dtypes: expected a dtype name or a sequence"):
        fastbp.compile_kernels(dtypes)
