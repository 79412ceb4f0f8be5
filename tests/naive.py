"""Plain-numpy reference: the network layer by layer as the seeds describe it, written once.

Every compiled kernel is checked against these. Deliberately simple: one sample batch at a time,
explicit formulas, softmax's full Jacobian, no fused shortcuts.
"""
import numpy as np


def act_forward(name, z):
    if name == "linear":
        return z
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0)
    if name == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise ValueError(name)


def act_derivative(name, z):
    """d act / d z elementwise (not for softmax)."""
    if name == "linear":
        return np.ones_like(z)
    if name == "sigmoid":
        s = act_forward("sigmoid", z)
        return s * (1 - s)
    if name == "tanh":
        return 1 - np.tanh(z) ** 2
    if name == "relu":
        return (z > 0).astype(z.dtype)
    raise ValueError(name)


def one_hot(y, k):
    Y = np.zeros((len(y), k))
    Y[np.arange(len(y)), y] = 1
    return Y


def loss_and_dP(loss, P, Y, Z):
    """Per-sample losses (n,) and dL_i/dP or, for the cross-entropies, dL_i/dZ (not yet / n)."""
    n, k = P.shape
    if loss == "mse":
        return ((P - Y) ** 2).mean(axis=1), 2 * (P - Y) / k, False
    if loss == "half_mse":
        return 0.5 * ((P - Y) ** 2).sum(axis=1), P - Y, False
    if loss == "cross_entropy":
        logp = np.log(P)
        return -(Y * logp).sum(axis=1), P * Y.sum(axis=1, keepdims=True) - Y, True
    if loss == "binary_cross_entropy":
        l = -(Y * np.log(P) + (1 - Y) * np.log(1 - P))
        return l.mean(axis=1), (P - Y) / k, True
    raise ValueError(loss)


def forward(Ws, bs, X, act, out):
    """[A_0, A_1, ..., A_L] and [Z_1, ..., Z_L]: A_l = act(Z_l), Z_l = A_{l-1} W + b."""
    A, Zs = [X], []
    for l, (W, b) in enumerate(zip(Ws, bs)):
        Z = A[-1] @ W + (b if b is not None else 0)
        Zs.append(Z)
        A.append(act_forward(out if l == len(Ws) - 1 else act, Z))
    return A, Zs


def loss_and_grads(Ws, bs, X, Y, act, out, loss, sw=None):
    """Mean loss and (dWs, dbs), averaged over the batch; Y is (n, k) float."""
    n = X.shape[0]
    A, Zs = forward(Ws, bs, X, act, out)
    P = A[-1]
    li, dP, is_logit_grad = loss_and_dP(loss, P, Y, Zs[-1])
    w = np.ones(n) if sw is None else sw
    L = (li * w).sum() / n
    dP = dP * w[:, None]
    if is_logit_grad or out == "linear":
        dZ = dP
    elif out == "sigmoid":
        dZ = dP * act_derivative("sigmoid", Zs[-1])
    else:  # softmax Jacobian, sample by sample
        dZ = np.stack([(np.diag(p) - np.outer(p, p)) @ g for p, g in zip(P, dP)])
    dWs, dbs = [None] * len(Ws), [None] * len(Ws)
    for l in range(len(Ws) - 1, -1, -1):
        # only the parameter gradients are averaged over the batch (seed 003)
        dWs[l] = A[l].T @ dZ / n
        dbs[l] = dZ.sum(axis=0) / n if bs[l] is not None else None
        if l > 0:
            dZ = (dZ @ Ws[l].T) * act_derivative(act, Zs[l - 1])
    return L, dWs, dbs


class SGD:
    def __init__(self, lr):
        self.lr = lr

    def step(self, p, g):
        return p - self.lr * g


class Momentum:
    def __init__(self, lr, mu, nesterov=False):
        self.lr, self.mu, self.nesterov, self.v = lr, mu, nesterov, None

    def step(self, p, g):
        self.v = g.copy() if self.v is None else self.mu * self.v + g
        return p - self.lr * ((g + self.mu * self.v) if self.nesterov else self.v)


class Adam:
    """The textbook form: m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)."""

    def __init__(self, lr, b1=0.9, b2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps, self.t, self.m, self.v = lr, b1, b2, eps, 0, 0.0, 0.0

    def step(self, p, g):
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * g
        self.v = self.b2 * self.v + (1 - self.b2) * g * g
        mhat = self.m / (1 - self.b1 ** self.t)
        vhat = self.v / (1 - self.b2 ** self.t)
        return p - self.lr * mhat / (np.sqrt(vhat) + self.eps)


def flatten(Ws, bs):
    parts = []
    for W, b in zip(Ws, bs):
        parts.append(W.ravel())
        if b is not None:
            parts.append(b)
    return np.concatenate(parts)


def unflatten(flat, sizes, bias):
    Ws, bs, off = [], [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        Ws.append(flat[off:off + n_in * n_out].reshape(n_in, n_out))
        off += n_in * n_out
        if bias:
            bs.append(flat[off:off + n_out])
            off += n_out
        else:
            bs.append(None)
    return Ws, bs
