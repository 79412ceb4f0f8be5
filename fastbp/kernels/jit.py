"""How every kernel is compiled: numba's njit with its options pinned.

numba compiles a callee with its caller's ``fastmath`` and ``error_model`` unless the callee
states them, then reuses (and caches on disk) that copy for every later caller with the same
argument types. A kernel shared by callers with different options would then round one way or
the other depending on which caller happened to be compiled first, even in an earlier process.
So every kernel states both: by default IEEE arithmetic (no fastmath) and numba's Python error
model; a kernel that wants other options says so in its own decorator.
"""
from numba import njit


def options(**overrides):
    """jit options of a kernel: cached, fastmath off, Python error model, then ``overrides``."""
    return {"cache": True, "fastmath": False, "error_model": "python", **overrides}


def kernel(fn=None, **overrides):
    """``@kernel`` or ``@kernel(parallel=True, ...)``: njit with ``options(**overrides)``."""
    if fn is None:
        return njit(**options(**overrides))
    return njit(fn, **options(**overrides))
