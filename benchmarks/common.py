"""Shared pieces of the asv suites: the workload table, seeded data builders, thread handling.

Data builders are cached per process: asv re-runs ``setup`` before every timed call, and
building 32768 x 784 random rows each time would dominate the setup of small benchmarks.
"""
import functools

import numba
import numpy as np

import fastbp

# name: (sizes, batch size, samples, Adam learning rate). Hidden layers relu, softmax output,
# cross-entropy loss, float32 -- the same three workloads as the side-by-side peer comparison.
WORKLOADS = {
    "tiny": ([4, 16, 3], 32, 8192, 1e-2),
    "mnist": ([784, 256, 128, 10], 256, 32768, 1e-3),
    "wide": ([1024, 2048, 2048, 10], 1024, 8192, 1e-3),
}
THREADS = [1, 2]
# The sweeps: the mnist network over batch sizes, one hidden layer over widths, predict sizes.
SWEEP_SAMPLES = 8192
SWEEP_BATCH_SIZES = [32, 256, 1024]
SWEEP_BATCH = 256
SWEEP_WIDTHS = [64, 256, 1024]
PREDICT_ROWS = [1, 256, 32768]


@functools.lru_cache(maxsize=4)
def make_data(n_in, n_out, n, seed=0):
    """(X float32 (n, n_in), y int64 (n,)): Gaussian rows labelled by the argmax of a random linear map."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_in), dtype=np.float32)
    T = rng.standard_normal((n_in, n_out), dtype=np.float32)
    y = (X @ T).argmax(1).astype(np.int64)
    return X, y


def make_model(sizes, seed=0):
    """A relu / softmax / cross-entropy float32 MLP, as in every workload."""
    return fastbp.MLP(sizes, activation="relu", output="softmax", loss="cross_entropy",
                      dtype="float32", seed=seed)


def use_threads(n):
    """Switch fastbp to ``n`` threads and return the previous count (for teardown).

    Raises NotImplementedError, which asv reports as a skipped benchmark, when this
    machine's numba was started with fewer threads.
    """
    if n > numba.config.NUMBA_NUM_THREADS:
        raise NotImplementedError(f"{n} threads requested, NUMBA_NUM_THREADS is {numba.config.NUMBA_NUM_THREADS}")
    old = fastbp.get_num_threads()
    fastbp.set_num_threads(n)
    return old


def fit_configs():
    """Every (sizes, batch) the fit suites train: fastbp picks kernels by shape (small networks
    take their own path), so precompiling one network would not cover the others."""
    configs = [(sizes, batch) for sizes, batch, _, _ in WORKLOADS.values()]
    configs += [(WORKLOADS["mnist"][0], b) for b in SWEEP_BATCH_SIZES]
    configs += [([784, w, 10], SWEEP_BATCH) for w in SWEEP_WIDTHS]
    return configs


def precompile(_benchmark=None):
    """Compile, or load from numba's on-disk cache, every kernel the suites reach.

    Used as ``setup_cache`` by the fit, predict and memory suites: asv runs it once, in a process
    of its own, before them, so compilation never lands in a ``time_*`` and the compiler's memory
    never shows up in a ``peakmem_*``. One minibatch of every configuration at every thread
    count, and predict at every size. Returns None, so benchmarks get no extra argument.
    """
    old = fastbp.get_num_threads()
    try:
        for n in THREADS:
            if n > numba.config.NUMBA_NUM_THREADS:
                continue
            fastbp.set_num_threads(n)
            for sizes, batch in fit_configs():
                X, y = make_data(sizes[0], sizes[-1], batch)
                warm_up(make_model(sizes), X, y, batch, fastbp.Adam())
            sizes = WORKLOADS["mnist"][0]
            X, _ = make_data(sizes[0], sizes[-1], WORKLOADS["mnist"][2])
            model = make_model(sizes)
            for rows in PREDICT_ROWS:
                model.predict(X[:rows])
    finally:
        fastbp.set_num_threads(old)


precompile.timeout = 900      # a cold numba cache takes minutes on a busy 2-core machine


def warm_up(model, X, y, batch, optimizer):
    """One minibatch of fit: loads every training kernel from numba's cache and allocates the
    work buffers for ``batch``, so that none of it lands in a timed call."""
    model.fit(X[:batch], y[:batch], epochs=1, batch_size=batch, optimizer=optimizer, verbose=0)
