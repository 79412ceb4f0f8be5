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
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .jit import kernel

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_UNIT = 0x9E3779B9


@kernel(inline="always")
def mix64(z):
    """splitmix64's output function: a bijection on uint64 with full avalanche."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@intrinsic
def unit_hash(typingctx, j, lo, hi):
    """lowbias32(lowbias32(j * 0x9E3779B9 ^ lo) ^ hi), all mod 2**32: unit j's 32-bit hash
    in the row whose key has halves lo and hi (uint32).

    Written as 32-bit IR: numba types uint32 arithmetic in 64 bits and truncates each result,
    and LLVM then vectorizes the unit loop in 64-bit lanes (half as many, and 64-bit multiplies)."""
    if not (isinstance(j, types.Integer) and lo == types.uint32 and hi == types.uint32):
        return None
    sig = types.uint32(j, lo, hi)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        jv, lov, hiv = args

        def const(v):
            return ir.Constant(i32, v)

        def lowbias32(x):
            x = builder.xor(x, builder.lshr(x, const(16)))
            x = builder.mul(x, const(0x7FEB352D))
            x = builder.xor(x, builder.lshr(x, const(15)))
            x = builder.mul(x, const(0x846CA68B))
            return builder.xor(x, builder.lshr(x, const(16)))

        u = builder.trunc(jv, i32) if j.bitwidth > 32 else builder.zext(jv, i32) if j.bitwidth < 32 else jv
        u = builder.mul(u, const(_UNIT))
        return lowbias32(builder.xor(lowbias32(builder.xor(u, lov)), hiv))
    return sig, codegen


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
        keep = unit_hash(j, lo, hi) >= thresh
        a[j] = a[j] * s if keep else zero
        d[j] = d[j] * s if keep else zero
