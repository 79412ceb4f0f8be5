"""exp, expm1, sigmoid, tanh, erf and log1p that LLVM can vectorize.

numba calls libm's exp one element at a time (it has no vector math library here), which made
exp-heavy loops — softmax, sigmoid, tanh — cost 10-15 ns per element. These versions are pure
arithmetic (Cody-Waite range reduction, a Taylor polynomial, 2**n built from its bits), so a loop
over them vectorizes. Accuracy: within 2 ulp of libm over the float32 and float64 ranges (the
tests compare against numpy and scipy); inputs are clamped where the result over/underflows.
erf and log1p follow Sun's fdlibm with its branches turned into selects: every range is computed
(or its coefficients selected) for every element, which costs less than a branch a vector loop
cannot take.
"""
import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from .jit import FMA, kernel, options

# Pinned (not inherited from the caller, see jit.py): contractions to fused multiply-add make the
# polynomials faster and no less accurate. A division here is by zero only in an element whose
# result a select then replaces (numpy's error model: no check, no exception). forceinline marks
# them alwaysinline for LLVM: a loop that calls a function does not vectorize, and erf is over
# LLVM's size limit for inlining (numba's inline="always" would take the caller's flags instead).
# Not cached on their own: their code is compiled into every kernel that calls them (which is
# cached), and a cached copy of their own would be compiled by both child processes of
# jit.compile_apart.
MATHFN_OPTIONS = options(FMA, forceinline=True, cache=False)
_LOG2E = 1.4426950408889634
_LN2_HI = 0.693145751953125          # ln 2 split so that n * _LN2_HI is exact
_LN2_LO = 1.4286068203094172321e-06


@intrinsic
def _f64_from_bits(typingctx, bits):
    if bits != types.int64:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@intrinsic
def _f32_from_bits(typingctx, bits):
    if bits != types.int32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@intrinsic
def _f64_bits(typingctx, x):
    if x != types.float64:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def _f32_bits(typingctx, x):
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.int32(types.float32), codegen


@kernel(inline="always")
def _reduce64(x):
    # x = n ln2 + r, |r| <= ln2/2; q = exp(r) - 1 by Taylor to degree 13 (error < 2e-17)
    x = min(max(x, -708.0), 709.0)
    n = np.floor(x * _LOG2E + 0.5)
    r = (x - n * _LN2_HI) - n * _LN2_LO
    q = 1.0 / 6227020800.0
    q = q * r + 1.0 / 479001600.0
    q = q * r + 1.0 / 39916800.0
    q = q * r + 1.0 / 3628800.0
    q = q * r + 1.0 / 362880.0
    q = q * r + 1.0 / 40320.0
    q = q * r + 1.0 / 5040.0
    q = q * r + 1.0 / 720.0
    q = q * r + 1.0 / 120.0
    q = q * r + 1.0 / 24.0
    q = q * r + 1.0 / 6.0
    q = q * r + 0.5
    q = q * r * r + r
    return n, q


@kernel(inline="always")
def _reduce32(x):
    x = min(max(x, np.float32(-87.0)), np.float32(88.0))
    n = np.floor(x * np.float32(_LOG2E) + np.float32(0.5))
    r = (x - n * np.float32(_LN2_HI)) - n * np.float32(_LN2_LO)
    q = np.float32(1.0 / 5040.0)
    q = q * r + np.float32(1.0 / 720.0)
    q = q * r + np.float32(1.0 / 120.0)
    q = q * r + np.float32(1.0 / 24.0)
    q = q * r + np.float32(1.0 / 6.0)
    q = q * r + np.float32(0.5)
    q = q * r * r + r
    return n, q


def fexp(x):
    """exp(x), vectorizable."""
    return np.exp(x)


def fexpm1(x):
    """exp(x) - 1, vectorizable, accurate near 0."""
    return np.expm1(x)


@overload(fexp, jit_options=MATHFN_OPTIONS)
def _fexp(x):
    if x == types.float64:
        def impl(x):
            n, q = _reduce64(x)
            return (q + 1.0) * _f64_from_bits((np.int64(n) + 1023) << 52)
        return impl
    if x == types.float32:
        def impl(x):
            n, q = _reduce32(x)
            return (q + np.float32(1.0)) * _f32_from_bits(np.int32((np.int32(n) + 127) << 23))
        return impl


@overload(fexpm1, jit_options=MATHFN_OPTIONS)
def _fexpm1(x):
    if x == types.float64:
        def impl(x):
            n, q = _reduce64(x)
            s = _f64_from_bits((np.int64(n) + 1023) << 52)
            # n == 0: q itself, no cancellation; otherwise 2^n (1 + q) - 1
            return q if n == 0.0 else (q * s + (s - 1.0))
        return impl
    if x == types.float32:
        def impl(x):
            n, q = _reduce32(x)
            s = _f32_from_bits(np.int32((np.int32(n) + 127) << 23))
            return q if n == 0.0 else (q * s + (s - np.float32(1.0)))
        return impl


def fsigmoid(z):
    """1 / (1 + exp(-z)) without overflow, vectorizable."""
    return 1.0 / (1.0 + np.exp(-z))


def ftanh(z):
    """tanh(z), vectorizable."""
    return np.tanh(z)


@overload(fsigmoid, jit_options=MATHFN_OPTIONS)
def _fsigmoid(z):
    if isinstance(z, types.Float):
        one = np.float32(1.0) if z == types.float32 else 1.0

        def impl(z):
            e = fexp(-abs(z))
            p = one / (one + e)
            return p if z >= 0 else e * p
        return impl


@overload(ftanh, jit_options=MATHFN_OPTIONS)
def _ftanh(z):
    # tanh(z) = expm1(2|z|) / (expm1(2|z|) + 2) with z's sign: no cancellation near 0
    if isinstance(z, types.Float):
        two = np.float32(2.0) if z == types.float32 else 2.0

        def impl(z):
            a = abs(z)
            e = fexpm1(a + a)
            t = e / (e + two)
            return t if z >= 0 else -t
        return impl


# erf and log1p: the algorithms and coefficients of Sun's fdlibm, s_erf.c and s_log1p.c (as kept
# in FreeBSD's msun and musl). Their float versions, s_erff.c and s_log1pf.c, use these same
# coefficients rounded to float32. fdlibm's notice, which it asks to be preserved:
#   Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
#   Developed at SunPro, a Sun Microsystems, Inc. business.
#   Permission to use, copy, modify, and distribute this software is freely granted, provided
#   that this notice is preserved.

# erf(x) on four ranges of |x|, each a rational function of t: num(t) / den(t).
#   [0, 0.84375)          t = x*x      erf = |x| + |x| num/den
#   [0.84375, 1.25)       t = |x| - 1  erf = erx + num/den
#   [1.25, ~1/0.35)       t = 1/x**2   erf = 1 - exp(-x*x - 0.5625 + num/den) / |x|
#   [~1/0.35, 6)          t = 1/x**2   the same with other coefficients
#   [6, inf]                           erf = 1
# One row per range: the coefficients of t**0, t**1, ... (zero past the range's degree).
_ERF_NUM = (
    (1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,  # pp0-pp4
     -5.77027029648944159157e-03, -2.37630166566501626084e-05, 0.0, 0.0, 0.0),
    (-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,  # pa0-pa6
     3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
     -2.16637559486879084300e-03, 0.0),
    (-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e+01,  # ra0-ra7
     -6.23753324503260060396e+01, -1.62396669462573470355e+02, -1.84605092906711035994e+02,
     -8.12874355063065934246e+01, -9.81432934416914548592e+00),
    (-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e+01,  # rb0-rb6
     -1.60636384855821916062e+02, -6.37566443368389627722e+02, -1.02509513161107724954e+03,
     -4.83519191608651397019e+02, 0.0),
)
_ERF_DEN = (  # from t**1 on: the constant term is 1
    (3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03,  # qq1-qq5
     1.32494738004321644526e-04, -3.96022827877536812320e-06, 0.0, 0.0, 0.0),
    (1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,  # qa1-qa6
     1.26171219808761642112e-01, 1.36370839120290507362e-02, 1.19844998467991074170e-02, 0.0, 0.0),
    (1.96512716674392571292e+01, 1.37657754143519042600e+02, 4.34565877475229228821e+02,  # sa1-sa8
     6.45387271733267880336e+02, 4.29008140027567833386e+02, 1.08635005541779435134e+02,
     6.57024977031928170135e+00, -6.04244152148580987438e-02),
    (3.03380607434824582924e+01, 3.25792512996573918826e+02, 1.53672958608443695994e+03,  # sb1-sb7
     3.19985821950859553908e+03, 2.55305040643316442583e+03, 4.74528541206955367215e+02,
     -2.24409524465858183362e+01, 0.0),
)
_ERX = 8.45062911510467529297e-01  # erf(1) rounded to 24 bits
# fdlibm splits the last two ranges at a high word of 0x4006DB6E
_ERF_SPLIT64 = 2.8571434020996094

# float32 erf on two ranges of |x|, polynomials without divisions, each evaluated for every
# element and one result selected (fdlibm's four sets of coefficients, selected per element, cost
# three times as much in float32 and more accuracy than float32 keeps):
#   [0, 0.921875)        erf = |x| + |x| P(x*x)      P fitted to erf(x)/x - 1 (relative error 4e-10)
#   [0.921875, 3.9375)   erf = 1 - exp(Q(|x|))       Q fitted to log(erfc(x)) (absolute error 8e-9)
#   [3.9375, inf]        erf = 1                     erfc(3.9375) < 2**-25, half an ulp of 1
# Weighted least-squares fits in float64 at Chebyshev nodes, coefficients rounded to float32;
# within 1.2 ulp of erf (tests/test_kernels.py).
_ERF32_SPLIT, _ERF32_ONE = 0.921875, 3.9375
_ERF32_SMALL = (0.12837916612625122, -0.37612634897232056, 0.11283695697784424, -0.026859398931264877,
                0.005201031919568777, -0.0008142701699398458, 8.370089199161157e-05)
_ERF32_LOG = (0.00032535134232603014, -1.1302685737609863, -0.6317365169525146, -0.11019984632730484,
              0.02651636302471161, -0.004806971177458763, 0.0006116999429650605, -4.893243021797389e-05,
              1.947864575413405e-06, -1.4398628067624486e-08)

# log1p(x): u = fl(1 + x) = 2**k (1 + f), sqrt(2)/2 <= 1 + f < sqrt(2), and log1p(x) =
# k ln2 + log(1 + f) + c/u with c = (1 + x) - u; log(1 + f) = f - hfsq + s (hfsq + R), s = f / (2 + f),
# hfsq = f*f/2, R a polynomial in s*s.
_LP = (6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
       2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
       1.479819860511658591e-01)
_LN2_HI64, _LN2_LO64 = 6.93147180369123816490e-01, 1.90821492927058770002e-10   # k*hi exact
_LN2_HI32, _LN2_LO32 = 6.9313812256e-01, 9.0580006145e-06


def ferf(x):
    """erf(x), vectorizable."""
    from scipy.special import erf  # the Python fallback only (NUMBA_DISABLE_JIT)
    return erf(x)


def flog1p(x):
    """log(1 + x), vectorizable, accurate near 0."""
    return np.log1p(x)


def _erf_impl(F, split):
    # one tuple of coefficients per range; a select picks one (LLVM splits it into a select per
    # coefficient), so that every element evaluates the same rational function
    n1, n2, n3, n4 = (tuple(F(c) for c in row) for row in _ERF_NUM)
    d1, d2, d3, d4 = (tuple(F(c) for c in row) for row in _ERF_DEN)
    one, erx, b1, b2, b3, b4 = F(1.0), F(_ERX), F(0.84375), F(1.25), F(split), F(6.0)
    c0 = F(0.5625)

    def impl(x):
        a = abs(x)
        r1, r2, r3 = a < b1, a < b2, a < b3
        inv = one / a
        t = a * a if r1 else (a - one if r2 else inv * inv)
        n = n1 if r1 else (n2 if r2 else (n3 if r3 else n4))
        d = d1 if r1 else (d2 if r2 else (d3 if r3 else d4))
        p = n[7]
        p = p * t + n[6]
        p = p * t + n[5]
        p = p * t + n[4]
        p = p * t + n[3]
        p = p * t + n[2]
        p = p * t + n[1]
        p = p * t + n[0]
        q = d[7]
        q = q * t + d[6]
        q = q * t + d[5]
        q = q * t + d[4]
        q = q * t + d[3]
        q = q * t + d[2]
        q = q * t + d[1]
        q = q * t + d[0]
        y = p / (q * t + one)
        # fdlibm takes exp(-z*z - 0.5625) * exp((z - a)(z + a) + y), z = a with its low bits cut,
        # to spare erfc the rounding of the sum; erf = 1 - erfc scales that error by erfc <= 0.08.
        tail = one - fexp((-a * a - c0) + y) * inv
        v = a + a * y if r1 else (erx + y if r2 else tail)
        return math.copysign(one if a >= b4 else v, x)
    return impl


def _erf32_impl():
    F = np.float32
    p0, p1, p2, p3, p4, p5, p6 = (F(c) for c in _ERF32_SMALL)
    q0, q1, q2, q3, q4, q5, q6, q7, q8, q9 = (F(c) for c in _ERF32_LOG)
    one, split, top = F(1.0), F(_ERF32_SPLIT), F(_ERF32_ONE)

    def impl(x):
        a = abs(x)
        s = a * a
        p = p6
        p = p * s + p5
        p = p * s + p4
        p = p * s + p3
        p = p * s + p2
        p = p * s + p1
        p = p * s + p0
        q = q9
        q = q * a + q8
        q = q * a + q7
        q = q * a + q6
        q = q * a + q5
        q = q * a + q4
        q = q * a + q3
        q = q * a + q2
        q = q * a + q1
        q = q * a + q0
        v = (a + a * p) if a < split else one - fexp(q)
        v = math.copysign(one if a >= top else v, x)
        return x if x != x else v                   # fexp clamps its argument: NaN stays here
    return impl


@overload(ferf, jit_options=MATHFN_OPTIONS)
def _ferf(x):
    if x == types.float64:
        return _erf_impl(np.float64, _ERF_SPLIT64)
    if x == types.float32:
        return _erf32_impl()


def _log1p_impl(F, I, bits_of, from_bits, mbits, bias, sqrt2_mant, ln2_hi, ln2_lo):
    lp = tuple(F(c) for c in _LP)
    one, half, two, hi, lo = F(1.0), F(0.5), F(2.0), F(ln2_hi), F(ln2_lo)
    inf, nan = F(np.inf), F(np.nan)
    bias, mant_mask, sqrt2_mant = I(bias), I((1 << mbits) - 1), I(sqrt2_mant)
    exp_one, exp_half = I(bias << mbits), I((bias - 1) << mbits)

    def impl(x):
        u = one + x
        b = bits_of(u)
        k = (b >> mbits) - bias  # u >= 2**-53 (2**-24) when x > -1: normal
        # c = (1 + x) - u exactly. fdlibm takes f = x instead when 1 + x is within sqrt(2) of 1 and
        # c = 0 above 2**53; c/u is as accurate there and spares the branches.
        c = (one - (u - x)) if k > 0 else (x - (u - one))
        c = c / u
        m = I(b & mant_mask)
        up = m >= sqrt2_mant  # 1 + f scaled into [sqrt(2)/2, sqrt(2))
        k = k + 1 if up else k
        f = from_bits(I(m | (exp_half if up else exp_one))) - one
        hfsq = half * f * f
        s = f / (two + f)
        z = s * s
        R = z * (lp[0] + z * (lp[1] + z * (lp[2] + z * (lp[3] + z * (lp[4] + z * (lp[5] + z * lp[6]))))))
        dk = F(k)
        r = dk * hi - ((hfsq - (s * (hfsq + R) + (dk * lo + c))) - f)
        r = x if (x == 0) | (x == inf) else r  # keeps -0's sign; inf - inf gave nan in c
        r = -inf if x == -one else r
        return r if x >= -one else nan  # x < -1 or nan
    return impl


@overload(flog1p, jit_options=MATHFN_OPTIONS)
def _flog1p(x):
    if x == types.float64:
        return _log1p_impl(np.float64, np.int64, _f64_bits, _f64_from_bits, 52, 1023, 0x6a09e << 32,
                           _LN2_HI64, _LN2_LO64)
    if x == types.float32:
        return _log1p_impl(np.float32, np.int32, _f32_bits, _f32_from_bits, 23, 127, 0x3504f4,
                           _LN2_HI32, _LN2_LO32)
