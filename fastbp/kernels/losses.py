"""Loss value and its gradient at the output layer's pre-activation, one row at a time.

The output layer hands over its logits Z. For each row this computes the loss, the gradient
dL/dZ already divided by the batch size (so parameter gradients come out as batch means; the
intermediate deltas are never averaged again), and overwrites Z with the prediction P.
Cross-entropies are computed from the logits (max shift / log-sum-exp), never from log(P).
"""
import numpy as np

from .jit import kernel, wide_vectors
from .activations import SIGMOID, SOFTMAX
from .mathfn import fexp, fsigmoid
from .registry import Entry, Registry

MSE, HALF_MSE, CROSS_ENTROPY, BINARY_CROSS_ENTROPY, MAE, HUBER, POISSON = 0, 1, 2, 3, 4, 5, 6

# outputs: the output activations the loss is defined for (the first is the natural one);
# classifier: whether targets are classes (accuracy is reported).
LOSSES = Registry("loss", [
    Entry("mse", MSE, outputs=("linear", "sigmoid", "softmax"), classifier=False),
    Entry("half_mse", HALF_MSE, outputs=("linear", "sigmoid", "softmax"), classifier=False),
    Entry("cross_entropy", CROSS_ENTROPY, outputs=("softmax",), classifier=True),
    Entry("binary_cross_entropy", BINARY_CROSS_ENTROPY, outputs=("sigmoid",), classifier=True),
    Entry("mae", MAE, outputs=("linear",), classifier=False),
    Entry("huber", HUBER, outputs=("linear",), classifier=False),
    Entry("poisson", POISSON, outputs=("exp",), classifier=False),
])
# loss="auto": the loss of each output activation.
AUTO = {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy", "linear": "mse", "exp": "poisson"}


@kernel
def output_loss(dZ, doff, row_loss, Z, zoff, rows, k, net, data, ridx, scale, need_grad, extras):
    """Loss and gradient for rows [0, rows) of the output block Z (rows, k) at flat offset zoff,
    for the output activation and loss of ``net`` (its huber_delta and label smoothing too).

    dZ        dL/dZ out at doff (rows, k), scaled by ``scale`` (1/batch), weighted (only if need_grad)
    row_loss  (rows,) float64 out: each row's weighted loss
    Z         logits in, predictions out (in place)
    data      Data: targets (n, k) float, or labels (n,) int (cross-entropy); weights (n,) or empty
    ridx      ridx[i] is the data row of batch row i
    returns the number of correctly classified rows (cross-entropy: argmax; binary: each output
            thresholded at 0.5, as a fraction of the row's outputs); 0 for regression losses

    Regression losses take the mean over a row's outputs (mse, mae, huber, poisson); label
    smoothing eps replaces the target y by y * (1 - eps) + eps / k (torch's CrossEntropyLoss).
    mae, huber and poisson exist only with ``extras`` (not None; see dense.py).
    """
    wide_vectors()
    L = net.sizes.shape[0] - 1
    out, loss = net.act[L - 1], net.loss
    if extras is None:
        eps, delta = 0.0, 1.0          # a plain network's Net has neither (args.PlainNet)
    else:
        eps, delta = net.smoothing, net.huber_delta
    Yf, yint, sw = data.targets, data.labels, data.weights
    G, goff = dZ, doff
    use_int = yint.shape[0] > 0
    weighted = sw.shape[0] > 0
    correct = 0.0
    for i in range(rows):
        z = Z[zoff + i * k:zoff + (i + 1) * k]
        g = G[goff + i * k:goff + (i + 1) * k]
        r = ridx[i]
        w = sw[r] if weighted else 1.0
        l = 0.0
        if loss == CROSS_ENTROPY:
            best = 0
            for j in range(1, k):
                if z[j] > z[best]:
                    best = j
            mx = z[best]
            if use_int:
                c = yint[r]
                correct += best == c
                zy = np.float64(z[c])
                ysum = 1.0
                if eps != 0.0:
                    zsum = 0.0
                    for j in range(k):
                        zsum += np.float64(z[j])
                    zy = (1.0 - eps) * zy + eps / k * zsum
            else:
                ybest = 0
                ysum = 0.0
                zy = 0.0
                for j in range(k):
                    if Yf[r, j] > Yf[r, ybest]:
                        ybest = j
                    y = Yf[r, j] * (1.0 - eps) + eps / k
                    ysum += y
                    zy += y * np.float64(z[j])
                correct += best == ybest
            # one exp per output: p = exp(z - max) / sum, loss = lse * sum(y) - y.z
            s = 0.0
            for j in range(k):
                e = fexp(z[j] - mx)
                z[j] = e
                s += e
            l = (mx + np.log(s)) * ysum - zy
            inv = 1.0 / s
            for j in range(k):
                z[j] *= inv
            if need_grad:
                c_ws = w * scale
                if use_int:
                    for j in range(k):
                        g[j] = (z[j] - eps / k) * c_ws
                    g[yint[r]] -= (1.0 - eps) * c_ws
                else:
                    for j in range(k):
                        g[j] = (z[j] * ysum - (Yf[r, j] * (1.0 - eps) + eps / k)) * c_ws
        elif loss == BINARY_CROSS_ENTROPY:
            for j in range(k):
                x = np.float64(z[j])
                y = Yf[r, j]
                l += max(x, 0.0) - x * y + np.log1p(np.exp(-abs(x)))
                correct += ((x > 0) == (y > 0.5)) / k
                p = fsigmoid(x)
                if need_grad:
                    g[j] = (p - y) * w * scale / k
                z[j] = p
            l /= k
        elif extras is not None and (loss == MAE or loss == HUBER):
            # torch's L1Loss and HuberLoss (mean over the outputs); sign(0) = 0
            for j in range(k):
                d = np.float64(z[j]) - Yf[r, j]
                a = abs(d)
                if loss == MAE:
                    l += a
                    gj = np.sign(d)
                elif a < delta:
                    l += 0.5 * d * d
                    gj = d
                else:
                    l += delta * (a - 0.5 * delta)
                    gj = delta * np.sign(d)
                if need_grad:
                    g[j] = gj * w * scale / k
            l /= k
        elif extras is not None and loss == POISSON:
            # torch's PoissonNLLLoss(log_input=True, full=False): exp(z) - y * z; predicts exp(z)
            for j in range(k):
                x = np.float64(z[j])
                e = np.exp(x)
                l += e - Yf[r, j] * x
                if need_grad:
                    g[j] = (e - Yf[r, j]) * w * scale / k
                z[j] = e
            l /= k
        else:
            # Squared error on P = out(Z): mse averages over all elements, half_mse is
            # 0.5 * sum over outputs, averaged over rows.
            if out == SOFTMAX:
                mx = z[0]
                for j in range(1, k):
                    mx = max(mx, z[j])
                s = 0.0
                for j in range(k):
                    z[j] = fexp(z[j] - mx)
                    s += z[j]
                for j in range(k):
                    z[j] /= s
            elif out == SIGMOID:
                for j in range(k):
                    z[j] = fsigmoid(z[j])
            c = 2.0 / k if loss == MSE else 1.0
            for j in range(k):
                d = np.float64(z[j]) - Yf[r, j]
                l += d * d
                if need_grad:
                    g[j] = c * d * w * scale
            l = l / k if loss == MSE else 0.5 * l
            if need_grad:
                if out == SIGMOID:
                    for j in range(k):
                        g[j] *= z[j] * (1.0 - z[j])
                elif out == SOFTMAX:
                    dot = 0.0
                    for j in range(k):
                        dot += g[j] * z[j]
                    for j in range(k):
                        g[j] = z[j] * (g[j] - dot)
        row_loss[i] = l * w
    return correct
