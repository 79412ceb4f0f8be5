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
# The layers suite: the mnist network as the peer comparison's "modern" workloads build it (gelu,
# each hidden layer Dense -> norm -> gelu -> dropout 0.1), against the plain relu net of the same
# sizes; every variant trains with the modern workloads' optimizer (modern_optimizer).
LAYER_VARIANTS = {
    "plain": dict(activation="relu"),
    "layer_norm": dict(activation="gelu", norm="layer", dropout=0.1),
    "batch_norm": dict(activation="gelu", norm="batch", dropout=0.1),
}
LAYER_SAMPLES = 8192
LAYER_PREDICT_ROWS = [256, 8192]
# The optimizer suite: one update over a flat buffer of about a million float32 parameters, laid
# out as this network's (its W and b are LAMB's tensors).
OPTIMIZER_SIZES = [1024, 768, 256, 10]


@functools.lru_cache(maxsize=4)
def make_data(n_in, n_out, n, seed=0):
    """(X float32 (n, n_in), y int64 (n,)): Gaussian rows labelled by the argmax of a random linear map."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_in), dtype=np.float32)
    T = rng.standard_normal((n_in, n_out), dtype=np.float32)
    y = (X @ T).argmax(1).astype(np.int64)
    return X, y


# The sparse suite: text-like CSR input (the peer comparison's "sparse" workload, fewer rows).
SPARSE_SIZES = [20000, 256, 20]
SPARSE_BATCH = 256
SPARSE_SAMPLES = 16384
SPARSE_NNZ = 100


@functools.lru_cache(maxsize=2)
def make_sparse(n_in, n_out, n, nnz, seed=0):
    """(X float32 CSR (n, n_in) with ``nnz`` distinct sorted columns a row, y int64 (n,)):
    positive values, rows of unit length, labelled by the argmax of a random linear map."""
    import scipy.sparse as sp
    rng = np.random.default_rng(seed)
    cols = np.sort(rng.integers(0, n_in - nnz + 1, (n, nnz), dtype=np.int32), axis=1) + np.arange(nnz, dtype=np.int32)
    v = rng.random((n, nnz), dtype=np.float32) + 0.1
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    X = sp.csr_matrix((v.ravel(), cols.ravel(), np.arange(0, n * nnz + 1, nnz, dtype=np.int64)), shape=(n, n_in))
    y = np.asarray(X @ rng.standard_normal((n_in, n_out), dtype=np.float32)).argmax(1).astype(np.int64)
    return X, y


def make_model(sizes, seed=0, **layers):
    """A relu / softmax / cross-entropy float32 MLP, as in every workload; ``layers`` (one of
    LAYER_VARIANTS) may change the hidden layers."""
    layers = {"activation": "relu", **layers}
    return fastbp.MLP(sizes, output="softmax", loss="cross_entropy", dtype="float32", seed=seed, **layers)


def modern_optimizer(lr=1e-3):
    """The modern workloads' optimizer: AdamW (weight decay 1e-2) whose rate warms up from 0 to
    ``lr`` over 100 updates, then follows a cosine over three epochs of the mnist workload."""
    decay_steps = 3 * -(-WORKLOADS["mnist"][2] // WORKLOADS["mnist"][1])
    sched = fastbp.schedules.CosineDecay(0.0, decay_steps, warmup_target=lr, warmup_steps=100)
    return fastbp.AdamW(lr=sched, weight_decay=1e-2)


def make_flat(sizes, seed=0):
    """(params, grads, segments): float32 params initialized as an MLP of ``sizes``, a Gaussian
    gradient of the same size, and the boundaries of its W and b tensors."""
    model = make_model(sizes, seed=seed)
    grads = np.random.default_rng(seed).standard_normal(model.n_params, dtype=np.float32) * np.float32(1e-2)
    return model.params.copy(), grads, model.layout.segments_arr


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


def each_thread_count():
    """Yield every THREADS count this machine's numba can run, with fastbp switched to it (the
    previous count restored after): the ``setup_cache`` functions compile at each."""
    old = fastbp.get_num_threads()
    try:
        for n in THREADS:
            if n > numba.config.NUMBA_NUM_THREADS:
                continue
            fastbp.set_num_threads(n)
            yield n
    finally:
        fastbp.set_num_threads(old)


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
    for _ in each_thread_count():
        for sizes, batch in fit_configs():
            X, y = make_data(sizes[0], sizes[-1], batch)
            warm_up(make_model(sizes), X, y, batch, fastbp.Adam())
        sizes = WORKLOADS["mnist"][0]
        X, _ = make_data(sizes[0], sizes[-1], WORKLOADS["mnist"][2])
        model = make_model(sizes)
        for rows in PREDICT_ROWS:
            model.predict(X[:rows])


precompile.timeout = 900      # a cold numba cache takes minutes on a busy 2-core machine


def precompile_layers(_benchmark=None):
    """``setup_cache`` of the layers suite: every LAYER_VARIANTS network trains one minibatch,
    takes one ``train_step`` and predicts every LAYER_PREDICT_ROWS size, at every thread count
    (the networks with norm and dropout compile kernels of their own)."""
    sizes, batch = WORKLOADS["mnist"][0], WORKLOADS["mnist"][1]
    X, y = make_data(sizes[0], sizes[-1], LAYER_SAMPLES)
    for _ in each_thread_count():
        for layers in LAYER_VARIANTS.values():
            model, opt = make_model(sizes, **layers), modern_optimizer()
            warm_up(model, X, y, batch, opt)
            model.train_step(X[:batch], y[:batch], opt)
            for rows in LAYER_PREDICT_ROWS:
                model.predict(X[:rows])


precompile_layers.timeout = 900


def precompile_optimizers(_benchmark=None):
    """``setup_cache`` of the optimizer suite: one ``step`` of every optimizer, and of AdamW under
    a schedule, on the OPTIMIZER_SIZES buffer at every thread count."""
    params, grads, segments = make_flat(OPTIMIZER_SIZES)
    for _ in each_thread_count():
        for name in fastbp.optim.OPTIMIZERS:
            fastbp.optim.get_optimizer(name).step(params, grads, segments)
        fastbp.AdamW(lr=modern_optimizer().schedule).step(params, grads, segments)


precompile_optimizers.timeout = 900


def warm_up(model, X, y, batch, optimizer):
    """One minibatch of fit: loads every training kernel from numba's cache and allocates the
    work buffers for ``batch``, so that none of it lands in a timed call."""
    model.fit(X[:batch], y[:batch], epochs=1, batch_size=batch, optimizer=optimizer, verbose=0)
