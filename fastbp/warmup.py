"""Compile every kernel ahead of use: ``fastbp compile`` and ``fastbp.compile_kernels()``.

numba compiles a kernel the first time it runs and keeps it in its on-disk cache; a first fit
from an empty cache spends seconds compiling (measured: a 4-16-3 net about 7 s, a
784-256-128-10 net about 17 s, each dtype once). This runs every entry point of ``MLP`` once per
dtype, on a net small enough for the feature-major kernels and on one large enough for the
parallel BLAS ones, so that the cache holds them all: for a container image or a shared install,
where the first user should not pay for compilation. Everything else (activations, losses,
optimizers, layer sizes, batch sizes) reaches the same compiled kernels.
"""
import time

import numpy as np

DTYPES = ("float32", "float64")
# (sizes, rows, batch size): the first takes the small-network kernels, the second the
# batch-major parallel ones (each product over a million multiply-adds).
_NETS = (([4, 8, 3], 64, 32), ([64, 128, 10], 512, 256))


def compile_kernels(dtypes=DTYPES):
    """Compile, or load from numba's cache, every kernel ``MLP`` uses for each of ``dtypes``;
    returns {dtype: seconds it took}."""
    from .model import MLP
    from .optim import Adam

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
    rng = np.random.default_rng(0)
    seconds = {}
    for dtype in dtypes:
        t0 = time.perf_counter()
        for sizes, rows, batch in _NETS:
            X = rng.standard_normal((rows, sizes[0])).astype(dtype)
            y = rng.integers(0, sizes[-1], rows)
            model, opt = MLP(sizes, dtype=dtype, seed=0), Adam()
            model.fit(X, y, epochs=1, batch_size=batch, optimizer=opt, validation_split=0.25, verbose=0)
            model.predict(X)
            model.evaluate(X, y)
            model.loss_and_grad(X[:16], y[:16])
            model.train_step(X[:16], y[:16], opt)
        seconds[dtype] = time.perf_counter() - t0
    return seconds
