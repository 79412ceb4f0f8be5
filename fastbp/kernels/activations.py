"""Activations as integer codes: forward in place, derivative from the stored output.

Passing the activation as an integer (not a function) keeps one compiled kernel per dtype; the
branch on the code sits outside the element loop. Derivatives are written from the activation's
output (sigmoid: a(1-a), tanh: 1-a^2, relu: a>0), so backward needs only post-activations.
"""
import numpy as np
from numba import njit

LINEAR, SIGMOID, TANH, RELU, SOFTMAX = 0, 1, 2, 3, 4

HIDDEN = {"linear": LINEAR, "sigmoid": SIGMOID, "tanh": TANH, "relu": RELU}
OUTPUT = {"linear": LINEAR, "sigmoid": SIGMOID, "softmax": SOFTMAX}


@njit(cache=True, inline="always")
def sigmoid(z):
    # Two branches so exp never overflows: both stay in (0, 1] for any finite z.
    if z >= 0:
        return 1.0 / (1.0 + np.exp(-z))
    e = np.exp(z)
    return e / (1.0 + e)


@njit(cache=True)
def bias_act_forward(Z, zoff, b, boff, has_bias, rows, cols, act):
    """Z[rows, cols] (flat at zoff) <- act(Z + b) in place; b is (cols,) at boff in the flat b."""
    for i in range(rows):
        r = zoff + i * cols
        if has_bias:
            for j in range(cols):
                Z[r + j] += b[boff + j]
        if act == RELU:
            for j in range(cols):
                if Z[r + j] < 0:
                    Z[r + j] = 0.0
        elif act == TANH:
            for j in range(cols):
                Z[r + j] = np.tanh(Z[r + j])
        elif act == SIGMOID:
            for j in range(cols):
                Z[r + j] = sigmoid(Z[r + j])
        elif act == SOFTMAX:
            mx = Z[r]
            for j in range(1, cols):
                mx = max(mx, Z[r + j])
            s = 0.0
            for j in range(cols):
                e = np.exp(Z[r + j] - mx)
                Z[r + j] = e
                s += e
            inv = 1.0 / s
            for j in range(cols):
                Z[r + j] *= inv


@njit(cache=True)
def act_backward(G, goff, A, aoff, rows, cols, act):
    """G[rows, cols] *= act'(.) evaluated from the layer's output A (same shape), in place."""
    if act == LINEAR:
        return
    for i in range(rows):
        g = goff + i * cols
        a = aoff + i * cols
        if act == RELU:
            for j in range(cols):
                if A[a + j] <= 0:
                    G[g + j] = 0.0
        elif act == TANH:
            for j in range(cols):
                G[g + j] *= 1.0 - A[a + j] * A[a + j]
        elif act == SIGMOID:
            for j in range(cols):
                G[g + j] *= A[a + j] * (1.0 - A[a + j])
