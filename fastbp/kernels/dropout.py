"""Dropout masks from a counter-based generator: a hash of (seed, update, row, layer, unit).

A mask element is a pure function of where it sits, never of a stream that threads share, so
the same bits come out however rows are split into parts or ranks. Nothing stores it: the
forward pass applies it to the outputs and to the activation's derivatives the backward pass
multiplies by. A unit's mask:

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
def apply_mask(A, aoff, D, doff, n, rkey, thresh, scale):
    """A[aoff:aoff+n] and D[doff:doff+n] (units 0 .. n-1 of one row in two arrays) times the
    mask of row key ``rkey``, and ``scale``: a training step's outputs and their activation's
    derivatives, which carry the mask and the scale on to the backward pass."""
    lo = np.uint32(rkey & np.uint64(0xFFFFFFFF))
    hi = np.uint32(rkey >> np.uint64(32))
    a = A[aoff:aoff + n]
    d = D[doff:doff + n]
    zero = A.dtype.type(0.0)
    s = A.dtype.type(scale)
    for j in range(n):
        u = np.uint32(np.uint32(j) * _UNIT)
        h = lowbias32(np.uint32(lowbias32(np.uint32(u ^ lo)) ^ hi))
        keep = h >= thresh
        a[j] = a[j] * s if keep else zero
        d[j] = d[j] * s if keep else zero
