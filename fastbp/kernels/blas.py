"""Matrix products for the compiled kernels: scipy's BLAS, called from numba.

`gemm` is the only matrix product the batch-major kernels use: the `sgemm`/`dgemm` that scipy
exports for Cython (the same BLAS numba's own ``np.dot`` uses), called through a symbol
registered with LLVM, so the compiled kernels stay cacheable (a ctypes pointer would not be).

All matrices are row-major and addressed as (flat array, offset, leading dimension), so a kernel
can name a block of rows or columns of a layer inside the flat parameter or work buffers without
a copy.
"""
import ctypes
import importlib
import importlib.machinery
import importlib.util
import os
import sys

import numpy as np
import llvmlite.binding as llvm
from numba import types
from numba.extending import overload

from .jit import options

_CYTHON_BLAS = "scipy.linalg.cython_blas"


def _cython_blas_module():
    """scipy.linalg.cython_blas, loaded without running the scipy.linalg package.

    Importing scipy.linalg costs ~110 ms and ~15 MiB resident (it pulls in numpy.f2py,
    numpy.testing and the array-API shims); the table of BLAS pointers is one extension module
    that needs none of it. Python caches extension modules by name and file, so a later
    ``import scipy.linalg`` gets this same module object.
    """
    if _CYTHON_BLAS in sys.modules:
        return sys.modules[_CYTHON_BLAS]
    scipy_spec = importlib.util.find_spec("scipy")  # locates the package without importing it
    for location in scipy_spec.submodule_search_locations or ():
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(location, "linalg", "cython_blas" + suffix)
            if os.path.isfile(path):
                spec = importlib.util.spec_from_file_location(_CYTHON_BLAS, path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                return module
    return importlib.import_module(_CYTHON_BLAS)  # an unusual layout: take the normal route


def _function_address(module, name):
    """The C address Cython exports for ``name`` (what numba's get_cython_function_address
    returns, without importing the module by name)."""
    # private prototypes: setting argtypes on ctypes.pythonapi's shared function objects would
    # change them for everyone else in the process
    get_name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(("PyCapsule_GetName", ctypes.pythonapi))
    get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
        ("PyCapsule_GetPointer", ctypes.pythonapi))
    capsule = module.__pyx_capi__[name]
    return get_pointer(capsule, get_name(capsule))


_blas = _cython_blas_module()
llvm.add_symbol("fastbp_sgemm", _function_address(_blas, "sgemm"))
llvm.add_symbol("fastbp_dgemm", _function_address(_blas, "dgemm"))
_sgemm = types.ExternalFunction("fastbp_sgemm", types.void(*([types.voidptr] * 13)))
_dgemm = types.ExternalFunction("fastbp_dgemm", types.void(*([types.voidptr] * 13)))

_N, _T = 78, 84  # ord("N"), ord("T")


def gemm(ta, tb, m, n, k, A, aoff, lda, B, boff, ldb, beta, C, coff, ldc, iw, fw):
    """Row-major C[m,n] = op(A) @ op(B) + beta*C through BLAS (this numpy version runs only
    with numba's JIT disabled; kernels get the overload below).

    A, B, C are flat arrays; op(X) is X or its transpose as ``ta``/``tb`` say. ``iw`` (int32, 8)
    and ``fw`` (C's dtype, 2) are scratch for the by-reference Fortran arguments.
    """
    a = _view(A, aoff, lda, k if ta else m, m if ta else k)
    b = _view(B, boff, ldb, n if tb else k, k if tb else n)
    c = _view(C, coff, ldc, m, n)
    c *= beta
    c += (a.T if ta else a) @ (b.T if tb else b)


def _view(X, off, ld, rows, cols):
    if rows == 0 or cols == 0:
        return np.zeros((rows, cols), X.dtype)
    return np.lib.stride_tricks.as_strided(X[off:], (rows, cols), (ld * X.itemsize, X.itemsize))


@overload(gemm, jit_options=options())
def _gemm_impl(ta, tb, m, n, k, A, aoff, lda, B, boff, ldb, beta, C, coff, ldc, iw, fw):
    fn = _sgemm if C.dtype == types.float32 else _dgemm

    def impl(ta, tb, m, n, k, A, aoff, lda, B, boff, ldb, beta, C, coff, ldc, iw, fw):
        if m == 0 or n == 0:
            return
        # Column-major BLAS sees the row-major C as C^T = op(B)^T op(A)^T.
        iw[0] = _T if tb else _N
        iw[1] = _T if ta else _N
        iw[2] = n
        iw[3] = m
        iw[4] = k
        iw[5] = ldb
        iw[6] = lda
        iw[7] = ldc
        fw[0] = 1.0
        fw[1] = beta
        fn(iw[0:].ctypes, iw[1:].ctypes, iw[2:].ctypes, iw[3:].ctypes, iw[4:].ctypes, fw[0:].ctypes,
           B[boff:].ctypes, iw[5:].ctypes, A[aoff:].ctypes, iw[6:].ctypes, fw[1:].ctypes,
           C[coff:].ctypes, iw[7:].ctypes)
    return impl
