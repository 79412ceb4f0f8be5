"""Activations as integer codes, with torch's formulas.

Passing the activation as an integer (not a function) keeps one compiled kernel per dtype; the
branch on the code sits outside the element loop. Two kinds of kernels:

- ``bias_act_forward`` (in place) and ``act_backward``, the derivative from the activation's output
  (sigmoid: a(1-a), tanh: 1-a^2, relu: a>0): backward then needs only post-activations. Only the
  activations with ``from_output=True`` have such a derivative.
- ``act_forward_slope`` (out of place), which also leaves the derivative where the activation's
  input was, for the backward pass to multiply by (``act_slope``): every hidden activation, for
  layers that keep their pre-activations. Inference runs it too and ignores the derivatives: a
  loop of its own for the values alone would double what each activation costs to compile.

Element loops call the vectorizable functions of ``mathfn`` and compute in the arrays' dtype.
"""

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


# One function per activation, (act(x), act'(x)) in the dtype ``dt``; a loop that uses one half
# leaves LLVM the other to drop (they are pure), so every formula is written once.
@kernel(inline="always")
def _linear(x, dt):
    return x, dt(1.0)


@kernel(inline="always")
def _sigmoid(x, dt):
    # s (1 - s) as e / (1 + e)^2, e = exp(-|x|): no cancellation at large |x|
    s, sc = _sigmoid_pair(x, dt(1.0))
    return s, s * sc


@kernel(inline="always")
def _tanh(x, dt):
    # 1 - tanh^2 = 4 e / (1 + e)^2 with e = exp(-2|x|)
    one = dt(1.0)
    e = fexp(-dt(2.0) * abs(x))
    p = one / (one + e)
    return ftanh(x), dt(4.0) * e * p * p


@kernel(inline="always")
def _relu(x, dt):
    # torch's relu'(0) = 0
    zero = dt(0.0)
    return max(x, zero), (zero if x <= zero else dt(1.0))


@kernel(inline="always")
def _leaky_relu(x, dt):
    slope = dt(LEAKY_SLOPE)
    pos = x > dt(0.0)
    return (x if pos else x * slope), (dt(1.0) if pos else slope)


@kernel(inline="always")
def _elu(x, dt):
    pos = x > dt(0.0)
    return (x if pos else fexpm1(x)), (dt(1.0) if pos else fexp(x))


@kernel(inline="always")
def _selu(x, dt):
    # torch: scale x, or (exp(x) - 1) (alpha scale) with alpha scale rounded in the dtype
    scale = dt(SELU_SCALE)
    negcoef = dt(SELU_ALPHA) * scale
    pos = x > dt(0.0)
    return (x * scale if pos else fexpm1(x) * negcoef), (scale if pos else negcoef * fexp(x))


@kernel(inline="always")
def _gelu(x, dt):
    # x Phi(x); derivative Phi(x) + x phi(x)
    x = max(x, dt(_LOW))
    half = dt(0.5)
    cdf1 = dt(1.0) + ferf(x * dt(_SQRT1_2))
    pdf = dt(_INV_SQRT_2PI) * fexp(x * x * dt(-0.5))
    return x * half * cdf1, half * cdf1 + x * pdf


@kernel(inline="always")
def _gelu_tanh(x, dt):
    # torch's 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2), t = tanh(inner), written with
    # s = sigmoid(2 inner): s + 2 x s (1 - s) k (1 + 3 c x^2)
    x = max(x, dt(_LOW))
    s, sc = _sigmoid_pair(_gelu_tanh_inner(x, dt), dt(1.0))
    xc = min(max(x, dt(-30.0)), dt(30.0))
    k2, c3 = dt(2.0 * GELU_TANH_K), dt(3.0 * GELU_TANH_C)
    return x * s, s + k2 * xc * s * sc * (dt(1.0) + c3 * xc * xc)


@kernel(inline="always")
def _silu(x, dt):
    # x s; derivative s (1 + x (1 - s))
    x = max(x, dt(_LOW))
    s, sc = _sigmoid_pair(x, dt(1.0))
    return x * s, s * (dt(1.0) + x * sc)


@kernel(inline="always")
def _softplus(x, dt):
    above = x > dt(SOFTPLUS_THRESHOLD)
    return (x if above else flog1p(fexp(x))), (dt(1.0) if above else fsigmoid(x))


@kernel(inline="always")
def _mish(x, dt):
    # x tanh(sp); derivative tanh(sp) + x sigmoid(x) (1 - tanh(sp)^2), sigmoid(x) = e / (1 + e)
    x = max(x, dt(_LOW))
    t, sech2, e = _mish_parts(x, dt)
    return x * t, t + x * (e / (dt(1.0) + e)) * sech2


@kernel(inline="always")
def _values_and_slopes(A, aoff, Y, yoff, n, f):
    a = A[aoff:aoff + n]
    y = Y[yoff:yoff + n]
    dt = Y.dtype.type
    for j in range(n):
        v, d = f(y[j], dt)
        a[j] = v
        y[j] = d


@kernel(inline="always")
def act_forward_slope(A, aoff, Y, yoff, n, act):
    """A[aoff:aoff+n] <- act(Y[yoff:yoff+n]), then Y[yoff:yoff+n] <- act'(Y) in place: the
    forward pass, which leaves a training step's backward pass a product (``act_slope``) instead
    of the derivative to evaluate; the two share their work (gelu's erf, the sigmoid of silu).

    Parameters
    ----------
    A, Y : float32 or float64 1-d arrays of one dtype
        Output and input buffers (A is not Y); the slices [aoff, aoff+n) and [yoff, yoff+n) are used.
    n : int
        Number of elements.
    act : int
        A code of ``HIDDEN``.

    Notes
    -----
    Derivatives at the kinks are torch's: relu'(0) = 0, leaky_relu'(0) = slope, elu'(0) = 1.
    """
    if act == LINEAR:
        _values_and_slopes(A, aoff, Y, yoff, n, _linear)
    elif act == SIGMOID:
        _values_and_slopes(A, aoff, Y, yoff, n, _sigmoid)
    elif act == TANH:
        _values_and_slopes(A, aoff, Y, yoff, n, _tanh)
    elif act == RELU:
        _values_and_slopes(A, aoff, Y, yoff, n, _relu)
    elif act == LEAKY_RELU:
        _values_and_slopes(A, aoff, Y, yoff, n, _leaky_relu)
    elif act == ELU:
        _values_and_slopes(A, aoff, Y, yoff, n, _elu)
    elif act == SELU:
        _values_and_slopes(A, aoff, Y, yoff, n, _selu)
    elif act == GELU:
        _values_and_slopes(A, aoff, Y, yoff, n, _gelu)
    elif act == GELU_TANH:
        _values_and_slopes(A, aoff, Y, yoff, n, _gelu_tanh)
    elif act == SILU:
        _values_and_slopes(A, aoff, Y, yoff, n, _silu)
    elif act == SOFTPLUS:
        _values_and_slopes(A, aoff, Y, yoff, n, _softplus)
    elif act == MISH:
        _values_and_slopes(A, aoff, Y, yoff, n, _mish)


@kernel(inline="always")
def act_slope(G, goff, D, doff, n):
    """G[goff:goff+n] (gradients with respect to the activation's output) *= D[doff:doff+n], the
    derivatives act_forward_slope left: gradients with respect to its input."""
    g = G[goff:goff + n]
    d = D[doff:doff + n]
    for j in range(n):
        g[j] *= d[j]
