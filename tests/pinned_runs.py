"""Fixed training runs whose results are pinned bit for bit in test_pinned_bits.py.

A run's params after training say whether arithmetic changed anywhere: kernels, the order of
operations, shuffling, initialization. Each is reduced to a fingerprint: the first 16 hex digits
of the SHA-256 of the params' bytes, and three params as exact hex floats.
"""
import hashlib

import numpy as np

import fastbp


def vector_isa():
    """"avx512", "avx2", or None (not x86-64 Linux, another CPU, or numba told to compile for
    another CPU). The small-network kernels vectorize their reductions as wide as the CPU
    allows, so their bits differ between CPUs with AVX-512 and those with AVX2 only."""
    import platform
    import sys

    import numba
    from llvmlite import binding
    if not (sys.platform == "linux" and platform.machine() == "x86_64"):
        return None
    if numba.config.CPU_NAME or numba.config.CPU_FEATURES:
        return None
    features = binding.get_host_cpu_features()
    return "avx512" if features.get("avx512f") else "avx2" if features.get("avx2") else None


def data(n, d, k, seed, dtype):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(dtype), rng.integers(0, k, n)


def fingerprint(p):
    p = np.ascontiguousarray(p)
    return [hashlib.sha256(p.tobytes()).hexdigest()[:16], [float(p[i]).hex() for i in (0, len(p) // 2, len(p) - 1)]]


def small(dtype, optimizer, comm=None):
    """A 4-16-3 net: the feature-major small-network kernels."""
    X, y = data(500, 4, 3, 1, dtype)
    m = fastbp.MLP([4, 16, 3], dtype=dtype, seed=3)
    m.fit(X, y, epochs=3 if comm is None else 2, batch_size=32, optimizer=optimizer, verbose=0, comm=comm)
    return m.params


def small_bce(dtype):
    """Two sigmoid outputs, tanh, sample weights, clipping."""
    X, y = data(500, 4, 3, 1, dtype)
    m = fastbp.MLP([4, 16, 8, 2], activation="tanh", output="sigmoid", dtype=dtype, seed=4)
    Y = np.stack([y == 0, y == 1], 1).astype(dtype)
    m.fit(X, Y, epochs=2, batch_size=50, optimizer=fastbp.Adam(lr=1e-2, clip_norm=0.5), verbose=0,
          sample_weight=np.linspace(0.5, 1.5, 500))
    return m.params


def blas(dtype, deterministic):
    """A 64-256-128-10 net: the batch-major BLAS kernels, products split into parts."""
    X, y = data(1200, 64, 10, 2, dtype)
    m = fastbp.MLP([64, 256, 128, 10], dtype=dtype, seed=5, deterministic=deterministic)
    m.fit(X, y, epochs=2, batch_size=256, optimizer=fastbp.Adam(lr=1e-3, weight_decay=1e-4), verbose=0)
    return m.params


def blas_mse(dtype, deterministic):
    X, y = data(1200, 64, 10, 2, dtype)
    m = fastbp.MLP([64, 128, 10], activation="sigmoid", output="linear", loss="mse", dtype=dtype, seed=6,
                   deterministic=deterministic)
    m.fit(X, np.eye(10, dtype=dtype)[y], epochs=2, batch_size=100, optimizer=fastbp.Momentum(lr=0.05), verbose=0)
    return m.params


def blas_mpi(dtype, comm):
    X, y = data(1000, 64, 10, 2, dtype)
    m = fastbp.MLP([64, 256, 128, 10], dtype=dtype, seed=5)
    m.fit(X, y, epochs=2, batch_size=256, optimizer="adam", verbose=0, comm=comm, validation_split=0.1)
    return m.params


def inference(dtype):
    """predict, evaluate, loss_and_grad and train_step of an untrained 64-256-128-10 net."""
    X, y = data(300, 64, 10, 7, dtype)
    m = fastbp.MLP([64, 256, 128, 10], dtype=dtype, seed=8)
    P = m.predict(X).ravel()
    loss, g = m.loss_and_grad(X[:40], y[:40])
    m.train_step(X[:40], y[:40], fastbp.Adam())
    return np.concatenate([P, [m.evaluate(X, y)["loss"], loss], g, m.params])
