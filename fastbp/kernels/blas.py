"""Matrix products for the compiled kernels: scipy's BLAS, called from numba, plus a loop kernel.

`gemm` is the only matrix product the training and inference kernels use. Large products go to
the `sgemm`/`dgemm` that scipy exports for Cython (the same BLAS numba's own ``np.dot`` uses),
called through a symbol registered with LLVM, so the compiled kernels stay cacheable (a ctypes
pointer would not be). Small products run a plain loop: a BLAS call costs a fraction of a
microsecond, which is the whole budget of a 32x4x16 product.

All matrices are row-major and addressed as (flat array, offset, leading dimension), so a kernel
can name a block of rows or columns of a layer inside the flat parameter or work buffers without
a copy.
"""
import numpy as np
import llvmlite.binding as llvm
from numba import njit, types
from numba.extending import get_cython_function_address, overload

llvm.add_symbol("fastbp_sgemm", get_cython_function_address("scipy.linalg.cython_blas", "sgemm"))
llvm.add_symbol("fastbp_dgemm", get_cython_function_address("scipy.linalg.cython_blas", "dgemm"))
_sgemm = types.ExternalFunction("fastbp_sgemm", types.void(*([types.voidptr] * 13)))
_dgemm = types.ExternalFunction("fastbp_dgemm", types.void(*([types.voidptr] * 13)))

# Below this many multiply-adds a product runs the loop kernel instead of BLAS (measured on
# the tiny workload: a BLAS call costs ~0.2 us, a 32x16x16 loop ~0.3 us).
LOOP_MAX_WORK = 24 * 1024

_N, _T = 78, 84  # ord("N"), ord("T")


def blas_gemm(ta, tb, m, n, k, A, aoff, lda, B, boff, ldb, beta, C, coff, ldc, iw, fw):
    """Row-major C[m,n] = op(A) @ op(B) + beta*C through BLAS (numpy when JIT is disabled).

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


@overload(blas_gemm, jit_options={"cache": True})
def _blas_gemm_impl(ta, tb, m, n, k, A, aoff, lda, B, boff, ldb, beta, C, coff, ldc, iw, fw):
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


@njit(cache=True, fastmath={"contract"})
def loop_gemm(ta, tb, m, n, k, A, aoff, lda, B, boff, ldb, beta, C, coff, ldc):
    """Row-major C[m,n] = op(A) @ op(B) + beta*C as loops; for products too small for BLAS."""
    for i in range(m):
        row = coff + i * ldc
        for j in range(n):
            C[row + j] = C[row + j] * beta if beta != 0.0 else 0.0
        if not tb:
            # axpy form: the inner j loop is contiguous in B and C and vectorizes.
            for p in range(k):
                a = A[aoff + p * lda + i] if ta else A[aoff + i * lda + p]
                brow = boff + p * ldb
                for j in range(n):
                    C[row + j] += a * B[brow + j]
        else:
            for j in range(n):
                s = C[row + j]
                brow = boff + j * ldb
                for p in range(k):
                    a = A[aoff + p * lda + i] if ta else A[aoff + i * lda + p]
                    s += a * B[brow + p]
                C[row + j] = s


@njit(cache=True)
def gemm(ta, tb, m, n, k, A, aoff, lda, B, boff, ldb, beta, C, coff, ldc, iw, fw):
    """Row-major C[m,n] = op(A) @ op(B) + beta*C: loops when small, BLAS otherwise."""
    if m * n * k <= LOOP_MAX_WORK:
        loop_gemm(ta, tb, m, n, k, A, aoff, lda, B, boff, ldb, beta, C, coff, ldc)
    else:
        blas_gemm(ta, tb, m, n, k, A, aoff, lda, B, boff, ldb, beta, C, coff, ldc, iw, fw)
