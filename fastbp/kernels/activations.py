"""Activations as integer codes: forward in place, derivative from the stored output.

Passing the activation as an integer (not a function) keeps one compiled kernel per dtype; the
branch on the code sits outside the element loop. Derivatives are written from the activation's
output (sigmoid: a(1-a), tanh: 1-a^2, relu: a>0), so backward needs only post-activations.
"""
from .jit import kernel
from .mathfn import fexp, fsigmoid, ftanh
from .registry import Entry, Registry

LINEAR, SIGMOID, TANH, RELU, SOFTMAX = 0, 1, 2, 3, 4

# init: the initializer init="auto" picks for a layer with this activation.
HIDDEN = Registry("activation", [
    Entry("linear", LINEAR, init="glorot"),
    Entry("sigmoid", SIGMOID, init="glorot"),
    Entry("tanh", TANH, init="glorot"),
    Entry("relu", RELU, init="he"),
])
OUTPUT = Registry("output", [
    Entry("linear", LINEAR),
    Entry("sigmoid", SIGMOID),
    Entry("softmax", SOFTMAX),
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
