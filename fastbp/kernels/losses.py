"""Loss value and its gradient at the output layer's pre-activation, one row at a time.

The output layer hands over its logits Z. For each row this computes the loss, the gradient
dL/dZ already divided by the batch size (so parameter gradients come out as batch means; the
intermediate deltas are never averaged again), and overwrites Z with the prediction P.
Cross-entropies are computed from the logits (max shift / log-sum-exp), never from log(P).
"""
import numpy as np
from numba import njit

from .activations import LINEAR, SIGMOID, SOFTMAX, sigmoid

MSE, HALF_MSE, CROSS_ENTROPY, BINARY_CROSS_ENTROPY = 0, 1, 2, 3

LOSSES = {"mse": MSE, "half_mse": HALF_MSE, "cross_entropy": CROSS_ENTROPY,
          "binary_cross_entropy": BINARY_CROSS_ENTROPY}
# The output activations each loss is defined for.
VALID_OUTPUTS = {MSE: (LINEAR, SIGMOID, SOFTMAX), HALF_MSE: (LINEAR, SIGMOID, SOFTMAX),
                 CROSS_ENTROPY: (SOFTMAX,), BINARY_CROSS_ENTROPY: (SIGMOID,)}


@njit(cache=True)
def output_loss(Z, zoff, G, goff, rowloss, rows, k, out, loss, Yf, yint, ridx, roff, sw, scale, need_grad):
    """Loss and gradient for rows [0, rows) of the output block Z (rows, k) at flat offset zoff.

    Z       logits in, predictions out (in place)
    G       dL/dZ out at goff (rows, k), scaled by ``scale`` (1/batch), weighted by sw
    rowloss per-row weighted loss out, at roff (float64)
    returns the number of correctly classified rows (cross-entropy: argmax; binary: each output
            thresholded at 0.5, as a fraction of the row's outputs); 0 for squared losses
    Yf      targets (n, k) float, or yint (n,) int labels (cross-entropy); ridx[i] names the data row
    sw      per-sample weights (n,) or empty
    """
    use_int = yint.shape[0] > 0
    weighted = sw.shape[0] > 0
    correct = 0.0
    for i in range(rows):
        z = zoff + i * k
        g = goff + i * k
        r = ridx[i]
        w = sw[r] if weighted else 1.0
        l = 0.0
        if loss == CROSS_ENTROPY:
            mx = Z[z]
            for j in range(1, k):
                mx = max(mx, Z[z + j])
            s = 0.0
            for j in range(k):
                s += np.exp(np.float64(Z[z + j]) - mx)
            lse = mx + np.log(s)
            best = 0
            for j in range(1, k):
                if Z[z + j] > Z[z + best]:
                    best = j
            if use_int:
                c = yint[r]
                correct += best == c
                l = lse - Z[z + c]
                for j in range(k):
                    p = np.exp(np.float64(Z[z + j]) - lse)
                    if need_grad:
                        G[g + j] = (p - (1.0 if j == c else 0.0)) * w * scale
                    Z[z + j] = p
            else:
                ybest = 0
                for j in range(1, k):
                    if Yf[r, j] > Yf[r, ybest]:
                        ybest = j
                correct += best == ybest
                ysum = 0.0
                for j in range(k):
                    ysum += Yf[r, j]
                    l += Yf[r, j] * (lse - Z[z + j])
                for j in range(k):
                    p = np.exp(np.float64(Z[z + j]) - lse)
                    if need_grad:
                        G[g + j] = (p * ysum - Yf[r, j]) * w * scale
                    Z[z + j] = p
        elif loss == BINARY_CROSS_ENTROPY:
            for j in range(k):
                x = np.float64(Z[z + j])
                y = Yf[r, j]
                l += max(x, 0.0) - x * y + np.log1p(np.exp(-abs(x)))
                correct += ((x > 0) == (y > 0.5)) / k
                p = sigmoid(x)
                if need_grad:
                    G[g + j] = (p - y) * w * scale / k
                Z[z + j] = p
            l /= k
        else:
            # Squared error on P = out(Z): mse averages over all elements, half_mse is
            # 0.5 * sum over outputs, averaged over rows.
            if out == SOFTMAX:
                mx = Z[z]
                for j in range(1, k):
                    mx = max(mx, Z[z + j])
                s = 0.0
                for j in range(k):
                    Z[z + j] = np.exp(Z[z + j] - mx)
                    s += Z[z + j]
                for j in range(k):
                    Z[z + j] /= s
            elif out == SIGMOID:
                for j in range(k):
                    Z[z + j] = sigmoid(Z[z + j])
            c = 2.0 / k if loss == MSE else 1.0
            for j in range(k):
                d = np.float64(Z[z + j]) - Yf[r, j]
                l += d * d
                if need_grad:
                    G[g + j] = c * d * w * scale
            l = l / k if loss == MSE else 0.5 * l
            if need_grad:
                if out == SIGMOID:
                    for j in range(k):
                        G[g + j] *= Z[z + j] * (1.0 - Z[z + j])
                elif out == SOFTMAX:
                    dot = 0.0
                    for j in range(k):
                        dot += G[g + j] * Z[z + j]
                    for j in range(k):
                        G[g + j] = Z[z + j] * (G[g + j] - dot)
        rowloss[roff + i] = l * w
    return correct
