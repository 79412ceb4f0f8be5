"""Dropout masks from a counter-based generator: a hash of (seed, update, row, layer, unit).

A mask element is a pure function of where it sits, never of a stream that threads share, so
the same bits come out however rows are split into parts or ranks, and backward regenerates the
mask instead of storing it:

    step key  splitmix64's finalizer of  key + (t + 1) * golden   (t: the model's update count)
    row key   the finalizer of  step key ^ (row position << 16 | layer)
    unit u    lowbias32(lowbias32(u * 0x9E3779B9 ^ lo) ^ hi),  lo, hi the row key's halves
    kept      when that 32-bit hash >= floor(p * 2**32): probability 1 - p to within 2**-32

splitmix64's finalizer (Steele, Lea, Flood 2014) spreads every input bit over the 64-bit key;
lowbias32 (Wellons' hash-prospector) is a 32-bit finalizer whose loop over units vectorizes.
"""
import numpy as np

from .jit import kernel

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_UNIT = np.uint32(0x9E3779B9)


@kernel(inline="always")
def mix64(z):
    """splitmix64's output function: a bijection on uint64 with full avalanche."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@kernel(inline="always")
def lowbias32(x):
    # numba widens uint32 arithmetic to 64 bits: every product is cast back to wrap at 2**32
    x = np.uint32(x ^ (x >> np.uint32(16)))
    x = np.uint32(x * np.uint32(0x7FEB352D))
    x = np.uint32(x ^ (x >> np.uint32(15)))
    x = np.uint32(x * np.uint32(0x846CA68B))
    return np.uint32(x ^ (x >> np.uint32(16)))


@kernel(inline="always")
def step_key(key, t):
    """The key of update number t (0-based) of a model whose dropout key is ``key``."""
    return mix64(np.uint64(key) + np.uint64(t + 1) * _GOLDEN)


@kernel(inline="always")
def row_key(skey, pos, layer):
    """The key of the row at position ``pos`` of its minibatch, in hidden layer ``layer``."""
    return mix64(skey ^ ((np.uint64(pos) << np.uint64(16)) | np.uint64(layer)))


@kernel(inline="always")
def threshold(rate):
    """The 32-bit threshold below which a unit is dropped with probability ``rate`` in [0, 1)."""
    return np.uint32(np.uint64(rate * 4294967296.0))


@kernel(inline="always")
def apply_mask(A, aoff, n, rkey, u0, thresh, scale):
    """A[aoff:aoff+n] (units u0 .. u0+n-1 of one row) <- A * mask * scale, the mask of row key
    ``rkey``: forward (the outputs) and backward (their gradients) alike."""
    lo = np.uint32(rkey & np.uint64(0xFFFFFFFF))
    hi = np.uint32(rkey >> np.uint64(32))
    a = A[aoff:aoff + n]
    zero = A.dtype.type(0.0)
    s = A.dtype.type(scale)
    base = np.uint32(u0)
    for j in range(n):
        u = np.uint32(np.uint32(base + np.uint32(j)) * _UNIT)
        h = lowbias32(np.uint32(lowbias32(np.uint32(u ^ lo)) ^ hi))
        a[j] = a[j] * s if h >= thresh else zero
