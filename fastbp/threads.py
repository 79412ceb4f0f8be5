"""Thread control: numba's worker threads for fastbp's kernels, BLAS kept single-threaded inside.

fastbp parallelizes every matrix product itself, one single-threaded BLAS call per part, so the
BLAS libraries' own thread pools would only oversubscribe the cores (and make results depend
on the thread count). While a fastbp kernel runs, every BLAS library in the process is held at
one thread, then restored, so numpy and scipy elsewhere in the user's program keep theirs.
"""
import contextlib
import threading

import numba
import numpy as np

from .kernels import optimizers as K
from .kernels.args import Opt
from .kernels.parts import PARALLEL_MIN_PARAMS

_lock = threading.Lock()
_blas_libs = None


def get_num_threads():
    """Number of threads fastbp's kernels use (numba's current thread count)."""
    return numba.get_num_threads()


def set_num_threads(n):
    """Use ``n`` threads for fastbp's kernels (1 <= n <= the number numba was started with)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    limit = numba.config.NUMBA_NUM_THREADS
    if not 1 <= n <= limit:
        raise ValueError(f"set_num_threads: n must be between 1 and {limit} (NUMBA_NUM_THREADS), got {n}")
    numba.set_num_threads(n)


def _blas_controllers():
    global _blas_libs
    if _blas_libs is None:
        from threadpoolctl import ThreadpoolController
        _blas_libs = ThreadpoolController().select(user_api="blas").lib_controllers
    return _blas_libs


@contextlib.contextmanager
def single_threaded_blas(skip=False):
    """Hold every loaded BLAS at one thread for the duration (cheap: a few C calls); ``skip``:
    do nothing (the small-network kernels never call BLAS)."""
    if skip:
        yield
        return
    libs = _blas_controllers()
    with _lock:
        saved = [lib.get_num_threads() for lib in libs]
        for lib, n in zip(libs, saved):
            if n != 1:
                lib.set_num_threads(1)
    try:
        yield
    finally:
        with _lock:
            for lib, n in zip(libs, saved):
                if n != 1:
                    lib.set_num_threads(n)


def threading_layer():
    """The name of the threading layer numba runs fastbp's parallel kernels on ("omp", "tbb",
    "workqueue"). numba picks it when a parallel kernel first runs, so this runs a tiny one."""
    n = 2 * PARALLEL_MIN_PARAMS
    z = np.zeros(n)
    K.apply_update(z, np.zeros(n), Opt(K.SGD, np.zeros(K.N_HYPER), np.zeros((0, n)), np.zeros(1, np.int64), 0.0), 2)
    return numba.threading_layer()
