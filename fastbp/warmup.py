"""Compile every kernel ahead of use: ``fastbp compile`` and ``fastbp.compile_kernels()``.

numba compiles a kernel the first time it runs and keeps it in its on-disk cache, so a first
fit from an empty cache spends seconds compiling (bench_compile in benchmarks/ tracks how
many). This runs every kernel entry point once per dtype, in every variant a run can take (dense
and scipy sparse X), so that the cache holds them all: for a container image or a shared
install, where the first user should not pay for compilation. Everything else (activations, losses, optimizers, layer
sizes, batch sizes) reaches the same compiled kernels.
"""
import time

import numpy as np

from . import data as D
from .kernels import syncbn
from .model import MLP
from .optim import Adam

DTYPES = ("float32", "float64")
# (sizes, rows, batch size): the feature-major kernels of small nets; the batch-major ones with
# every product serial (no parallel kernel compiled, see kernels.parts); the batch-major ones
# split into parallel parts (products over a million multiply-adds, more params than
# PARALLEL_MIN_PARAMS, enough rows for parallel inference).
_NETS = (([4, 8, 3], 64, 32, {}), ([64, 128, 10], 64, 32, {}), ([64, 1024, 10], 4096, 256, {}),
         # the kernels with norm, dropout, penalties and the newer activations (one variant)
         ([16, 32, 32, 10], 64, 32, dict(activation=["gelu", "relu"], norm=["batch", "layer"], dropout=0.1, l2=1e-4)))


def compile_kernels(dtypes=DTYPES):
    """Compile, or load from numba's cache, every kernel ``MLP`` uses for each of ``dtypes``;
    returns {dtype: seconds it took}."""
    if isinstance(dtypes, str):
        dtypes = (dtypes,)
    try:
        dtypes = tuple(dtypes)
    except TypeError:
        raise TypeError(f"dtypes: expected a dtype name or a sequence of names out of {list(DTYPES)}, "
                        f"got {type(dtypes).__name__}") from None
    bad = [d for d in dtypes if d not in DTYPES]
    if bad or not dtypes:
        raise ValueError(f"dtypes: expected some of {list(DTYPES)}, got {list(dtypes)}")
    import scipy.sparse as sp
    rng = np.random.default_rng(0)
    seconds = {}
    for dtype in dtypes:
        t0 = time.perf_counter()
        for sizes, rows, batch, extra in _NETS:
            X = rng.standard_normal((rows, sizes[0])).astype(dtype)
            y = rng.integers(0, sizes[-1], rows)
            model, opt = MLP(sizes, dtype=dtype, seed=0, **extra), Adam()
            model.fit(X, y, epochs=1, batch_size=batch, optimizer=opt, validation_split=0.25, verbose=0)
            model.predict(X)
            model.evaluate(X, y)
            model.loss_and_grad(X[:16], y[:16])
            model.train_step(X[:16], y[:16], opt)
            # the same with CSR input: layer 0 over the stored entries (kernels taking ``sparse``)
            Xs = sp.csr_matrix(X * (rng.random(X.shape) < 0.2))
            model.fit(Xs, y, epochs=1, batch_size=batch, optimizer=opt, validation_split=0.25, verbose=0)
            model.predict(Xs)
            model.evaluate(Xs, y)
            model.loss_and_grad(Xs[:16], y[:16])
            if model.buffers.size:
                # an MPI rank's step with batch norm (kernels.syncbn), dense and CSR
                cap = batch // 2
                for Xi in (X, Xs):
                    ws = model.workspace(cap, Xi is Xs)
                    syncbn.load(ws.grads, model.params, model.net, ws, D.prepare(model, Xi, y, None),
                                model.kernel_parts(cap))
        seconds[dtype] = time.perf_counter() - t0
    return seconds
