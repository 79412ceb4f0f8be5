"""Activations as integer codes, with torch's formulas.

Passing the activation as an integer (not a function) keeps one compiled kernel per dtype; the
branch on the code sits outside the element loop. Two kinds of kernels:

- ``bias_act_forward`` (in place) and ``act_backward``, the derivative from the activation's output
  (sigmoid: a(1-a), tanh: 1-a^2, relu: a>0): backward then needs only post-activations. Only the
  activations with ``from_output=True`` have such a derivative.
- ``act_forward`` (out of place) and ``act_backward_input``, the derivative from the activation's
  input: every hidden activation, for layers that keep their pre-activations.

Element loops call the vectorizable functions of ``mathfn`` and compute in the arrays' dtype.
"""
import numpy as np

from .jit import kernel
from .mathfn import ferf, fexp, fexpm1, flog1p, fsigmoid, ftanh
from .registry import Entry, Registry

LINEAR, SIGMOID, TANH, RELU, SOFTMAX, EXP = 0, 1, 2, 3, 4, 5
LEAKY_RELU, ELU, SELU, GELU, GELU_TANH, SILU, SOFTPLUS, MISH = 6, 7, 8, 9, 10, 11, 12, 13

# torch's constants: nn.LeakyReLU's default slope, nn.SELU's scale and alpha, nn.Softplus's
# default threshold (beta 1), nn.GELU(approximate="tanh")'s sqrt(2/pi) and cubic coefficient.
LEAKY_SLOPE = 0.01
SELU_SCALE = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717
SOFTPLUS_THRESHOLD = 20.0
GELU_TANH_K = 0.7978845608028654        # sqrt(2 / pi)
GELU_TANH_C = 0.044715
_SQRT1_2 = 0.7071067811865476           # 1 / sqrt(2)
_INV_SQRT_2PI = 0.3989422804014327      # 1 / sqrt(2 pi)
# Below this, x times a factor exp(x) or exp(-x^2/2) (silu, mish, gelu, gelu_tanh and their
# derivatives) is 0 in either dtype. fexp clamps its argument, so the factor stops shrinking and
# x is clamped here: otherwise x = -1e30 would come out as -1e-8, and -inf as -inf.
_LOW = -800.0

# init: the initializer init="auto" picks for a layer with this activation.
# from_output: the derivative can be taken from the activation's output (act_backward), so the
# layer need not keep its pre-activations.
HIDDEN = Registry("activation", [
    Entry("linear", LINEAR, init="glorot", from_output=True),
    Entry("sigmoid", SIGMOID, init="glorot", from_output=True),
    Entry("tanh", TANH, init="glorot", from_output=True),
    Entry("relu", RELU, init="he", from_output=True),
    Entry("leaky_relu", LEAKY_RELU, init="he", from_output=False),
    Entry("elu", ELU, init="he", from_output=False),
    Entry("selu", SELU, init="lecun", from_output=False),
    Entry("gelu", GELU, init="he", from_output=False),
    Entry("gelu_tanh", GELU_TANH, init="he", from_output=False),
    Entry("silu", SILU, init="he", from_output=False),
    Entry("softplus", SOFTPLUS, init="he", from_output=False),
    Entry("mish", MISH, init="he", from_output=False),
])
OUTPUT = Registry("output", [
    Entry("linear", LINEAR),
    Entry("sigmoid", SIGMOID),
    Entry("softmax", SOFTMAX),
    Entry("exp", EXP),
])


@kernel(inline="always")
def bias_act_forward(Z, zoff, rows, cols, params, boff, act):
    """Z (rows, cols) at flat offset zoff <- act(Z + b) in place; b (cols,) at boff in params
    (boff -1: no bias)."""
    # Row slices indexed by range variables: numba then drops its negative-index checks and
    # LLVM vectorizes the inner loops (flat arithmetic indexing runs ~30x slower).
    has_bias = boff >= 0
    bias = params[max(boff, 0):max(boff, 0) + cols]
    for i in range(rows):
        z = Z[zoff + i * cols:zoff + (i + 1) * cols]
        if has_bias:
            for j in range(cols):
                z[j] += bias[j]
        if act == RELU:
            for j in range(cols):
                z[j] = max(z[j], 0.0)
        elif act == TANH:
            for j in range(cols):
                z[j] = ftanh(z[j])
        elif act == SIGMOID:
            for j in range(cols):
                z[j] = fsigmoid(z[j])
        elif act == SOFTMAX:
            mx = z[0]
            for j in range(1, cols):
                mx = max(mx, z[j])
            s = 0.0
            for j in range(cols):
                e = fexp(z[j] - mx)
                z[j] = e
                s += e
            inv = 1.0 / s
            for j in range(cols):
                z[j] *= inv
        elif act == EXP:
            for j in range(cols):
                z[j] = fexp(z[j])


@kernel(inline="always")
def act_backward(dZ, doff, A, aoff, rows, cols, act):
    """dZ (rows, cols) at doff *= act'(.) evaluated from the layer's output A (same shape) at aoff."""
    if act == LINEAR:
        return
    n = rows * cols
    g = dZ[doff:doff + n]
    a = A[aoff:aoff + n]
    if act == RELU:
        for j in range(n):
            if a[j] <= 0:
                g[j] = 0.0
    elif act == TANH:
        for j in range(n):
            g[j] *= 1.0 - a[j] * a[j]
    elif act == SIGMOID:
        for j in range(n):
            g[j] *= a[j] * (1.0 - a[j])


@kernel(inline="always")
def _sigmoid_pair(z, one):
    """(sigmoid(z), 1 - sigmoid(z)), each without cancellation."""
    e = fexp(-abs(z))
    p = one / (one + e)
    ep = e * p
    return (p if z >= 0 else ep), (ep if z >= 0 else p)


@kernel(inline="always")
def _mish_parts(x, dt):
    """(tanh(sp), 1 - tanh(sp)^2, e) of torch's mish softplus sp = log1p(e), e = exp(x).

    With n = e (e + 2) = (1 + e)^2 - 1, tanh(log(1 + e)) = n / (n + 2) and 1 - tanh^2 =
    4 (n + 1) / (n + 2)^2: one exp and no cancellation. Above 20 they round to 1 and 0 (and n
    would overflow), so x is clamped there and the second is 0; e is clamped with it.
    """
    two = dt(2.0)
    e = fexp(min(x, dt(SOFTPLUS_THRESHOLD)))
    n = e * (e + two)
    inv = dt(1.0) / (n + two)
    sech2 = dt(4.0) * (n + dt(1.0)) * inv * inv
    return n * inv, (sech2 if x <= dt(SOFTPLUS_THRESHOLD) else dt(0.0)), e


@kernel(inline="always")
def _gelu_tanh_inner(x, dt):
    """2 k (x + c x^3), x clamped to [-30, 30]: torch's 1 + tanh(inner) = 2 sigmoid(2 inner), which
    has no cancellation for negative x. Beyond 30 the sigmoid is 0 or 1 in either dtype."""
    xc = min(max(x, dt(-30.0)), dt(30.0))
    return dt(2.0 * GELU_TANH_K) * (xc + dt(GELU_TANH_C) * (xc * xc * xc))


@kernel(inline="always")
def act_forward(A, aoff, Y, yoff, n, act):
    """A[aoff:aoff+n] <- act(Y[yoff:yoff+n]) for a hidden activation code (A may be Y).

    Parameters
    ----------
    A, Y : float32 or float64 1-d arrays of one dtype
        Output and input buffers; the slices [aoff, aoff+n) and [yoff, yoff+n) are used.
    n : int
        Number of elements.
    act : int
        A code of ``HIDDEN`` (LINEAR copies).
    """
    a = A[aoff:aoff + n]
    y = Y[yoff:yoff + n]
    dt = Y.dtype.type
    zero, one, half = dt(0.0), dt(1.0), dt(0.5)
    if act == LINEAR:
        for j in range(n):
            a[j] = y[j]
    elif act == SIGMOID:
        for j in range(n):
            a[j] = fsigmoid(y[j])
    elif act == TANH:
        for j in range(n):
            a[j] = ftanh(y[j])
    elif act == RELU:
        for j in range(n):
            a[j] = max(y[j], zero)
    elif act == LEAKY_RELU:
        slope = dt(LEAKY_SLOPE)
        for j in range(n):
            x = y[j]
            a[j] = x if x > zero else x * slope
    elif act == ELU:
        for j in range(n):
            x = y[j]
            a[j] = x if x > zero else fexpm1(x)
    elif act == SELU:
        # torch: scale x, or (exp(x) - 1) (alpha scale) with alpha scale rounded in the dtype
        scale = dt(SELU_SCALE)
        negcoef = dt(SELU_ALPHA) * scale
        for j in range(n):
            x = y[j]
            a[j] = x * scale if x > zero else fexpm1(x) * negcoef
    elif act == GELU:
        r, low = dt(_SQRT1_2), dt(_LOW)
        for j in range(n):
            x = max(y[j], low)
            a[j] = x * half * (one + ferf(x * r))
    elif act == GELU_TANH:
        low = dt(_LOW)
        for j in range(n):
            x = max(y[j], low)
            a[j] = x * fsigmoid(_gelu_tanh_inner(x, dt))
    elif act == SILU:
        low = dt(_LOW)
        for j in range(n):
            x = max(y[j], low)
            a[j] = x * fsigmoid(x)
    elif act == SOFTPLUS:
        th = dt(SOFTPLUS_THRESHOLD)
        for j in range(n):
            x = y[j]
            a[j] = x if x > th else flog1p(fexp(x))
    elif act == MISH:
        low = dt(_LOW)
        for j in range(n):
            x = max(y[j], low)
            t, _, _ = _mish_parts(x, dt)
            a[j] = x * t


@kernel(inline="always")
def act_backward_input(G, goff, Y, yoff, n, act):
    """G[goff:goff+n] *= act'(Y[yoff:yoff+n]), Y the activation's input, for a hidden code.

    Parameters
    ----------
    G, Y : float32 or float64 1-d arrays of one dtype
        Gradient (with respect to the activation's output, becomes that to its input) and the
        activation's input; the slices [goff, goff+n) and [yoff, yoff+n) are used.
    n : int
        Number of elements.
    act : int
        A code of ``HIDDEN`` (LINEAR leaves G as it is).

    Notes
    -----
    Derivatives at the kinks are torch's: relu'(0) = 0, leaky_relu'(0) = slope, elu'(0) = 1.
    """
    if act == LINEAR:
        return
    g = G[goff:goff + n]
    y = Y[yoff:yoff + n]
    dt = Y.dtype.type
    zero, one, two = dt(0.0), dt(1.0), dt(2.0)
    if act == SIGMOID:
        # s (1 - s) = e / (1 + e)^2 with e = exp(-|x|): no cancellation at large |x|
        for j in range(n):
            e = fexp(-abs(y[j]))
            p = one / (one + e)
            g[j] *= e * p * p
    elif act == TANH:
        # 1 - tanh^2 = 4 e / (1 + e)^2 with e = exp(-2|x|)
        four = dt(4.0)
        for j in range(n):
            e = fexp(-two * abs(y[j]))
            p = one / (one + e)
            g[j] *= four * e * p * p
    elif act == RELU:
        for j in range(n):
            g[j] = zero if y[j] <= zero else g[j]
    elif act == LEAKY_RELU:
        slope = dt(LEAKY_SLOPE)
        for j in range(n):
            g[j] = g[j] if y[j] > zero else g[j] * slope
    elif act == ELU:
        for j in range(n):
            x = y[j]
            g[j] = g[j] if x > zero else g[j] * fexp(x)
    elif act == SELU:
        scale = dt(SELU_SCALE)
        negcoef = dt(SELU_ALPHA) * scale
        for j in range(n):
            x = y[j]
            g[j] = g[j] * scale if x > zero else g[j] * negcoef * fexp(x)
    elif act == GELU:
        # Phi(x) + x phi(x)
        r, beta, half, low = dt(_SQRT1_2), dt(_INV_SQRT_2PI), dt(0.5), dt(_LOW)
        for j in range(n):
            x = max(y[j], low)
            cdf = half * (one + ferf(x * r))
            pdf = beta * fexp(x * x * dt(-0.5))
            g[j] *= cdf + x * pdf
    elif act == GELU_TANH:
        # torch's 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2), t = tanh(inner), written with
        # s = sigmoid(2 inner): s + 2 x s (1 - s) k (1 + 3 c x^2)
        k2, c3 = dt(2.0 * GELU_TANH_K), dt(3.0 * GELU_TANH_C)
        for j in range(n):
            x = y[j]
            s, sc = _sigmoid_pair(_gelu_tanh_inner(x, dt), one)
            xc = min(max(x, dt(-30.0)), dt(30.0))
            g[j] *= s + k2 * xc * s * sc * (one + c3 * xc * xc)
    elif act == SILU:
        # s (1 + x (1 - s))
        low = dt(_LOW)
        for j in range(n):
            x = max(y[j], low)
            s, sc = _sigmoid_pair(x, one)
            g[j] *= s * (one + x * sc)
    elif act == SOFTPLUS:
        th = dt(SOFTPLUS_THRESHOLD)
        for j in range(n):
            x = y[j]
            g[j] = g[j] if x > th else g[j] * fsigmoid(x)
    elif act == MISH:
        # tanh(sp) + x sigmoid(x) (1 - tanh(sp)^2), sigmoid(x) = e / (1 + e) where sech2 > 0
        low = dt(_LOW)
        for j in range(n):
            x = max(y[j], low)
            t, sech2, e = _mish_parts(x, dt)
            g[j] *= t + x * (e / (one + e)) * sech2
