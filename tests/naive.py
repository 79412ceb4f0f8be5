"""Plain-numpy reference: the network layer by layer as the seeds describe it, written once.

Every compiled kernel is checked against these. Deliberately simple: one sample batch at a time,
explicit formulas, softmax's full Jacobian, no fused shortcuts.

The first part (``act_forward`` ... ``unflatten``) is the original network: one hidden
activation, no norms, no dropout. The second part (from the activations registry on) is the
whole network of DESIGN.md's "Contract, part 2", float64, each formula written from the
documentation and code of the peer DESIGN.md names for it: torch for layers, losses, clipping,
SGD/Momentum/Adam/AdamW/RMSprop/Adagrad and OneCycleLR; optax for Lion and LAMB; Keras 3 for
CosineDecay, ExponentialDecay and PiecewiseConstantDecay. tests/test_naive_reference.py checks
it by finite differences and against those peers.

Entry points: ``Spec`` (the network), ``init_params``/``init_buffers``, ``loss_and_grad``,
``loss_value``, ``predict``, ``train_steps``, ``Optimizer`` and the schedules; the dropout
masks fastbp draws (``dropout_key``, ``dropout_masks``: its counter-based generator written
again from its definition); the layout helpers ``param_segments``, ``unflatten_params``/``flatten_params`` (and the buffer versions),
``param_tensors``.
"""
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import erf


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
    if name in ACTIVATIONS or name == "exp":
        return activation_forward(name, z)
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
    if name in ACTIVATIONS or name == "exp":
        return activation_derivative(name, z)
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


# =============================================================================================
# Part 2: the whole network of DESIGN.md "Contract, part 2", float64, explicit formulas.
# =============================================================================================

# -- activations (torch semantics) -------------------------------------------------------------
# Each forward and its derivative d act / d z are written from the pre-activation z, as torch's
# own backward formulas are (aten's *_backward take the input, not the output).

SELU_ALPHA = 1.6732632423543772848170429916717      # torch.nn.SELU
SELU_SCALE = 1.0507009873554804934193349852946
LEAKY_SLOPE = 0.01                                   # torch.nn.LeakyReLU default
SOFTPLUS_THRESHOLD = 20.0                            # torch.nn.Softplus(beta=1, threshold=20)
GELU_TANH_K = math.sqrt(2.0 / math.pi)               # torch GELU(approximate="tanh")
GELU_TANH_C = 0.044715


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _softplus_torch(z):
    # torch: (z * beta) > threshold ? z : log1p(exp(z * beta)) / beta, beta = 1
    return np.where(z > SOFTPLUS_THRESHOLD, z, np.log1p(np.exp(np.minimum(z, SOFTPLUS_THRESHOLD))))


def _gelu_tanh_inner(z):
    return np.tanh(GELU_TANH_K * (z + GELU_TANH_C * z ** 3))


ACTIVATIONS = {
    # name: (forward f(z), derivative f'(z))
    "linear": (lambda z: z.copy(), lambda z: np.ones_like(z)),
    "sigmoid": (_sigmoid, lambda z: _sigmoid(z) * (1 - _sigmoid(z))),
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    # relu'(0) = 0 and leaky_relu'(0) = slope: torch's threshold_backward / leaky_relu_backward
    "relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(np.float64)),
    "leaky_relu": (lambda z: np.where(z > 0, z, LEAKY_SLOPE * z),
                   lambda z: np.where(z > 0, 1.0, LEAKY_SLOPE)),
    # elu (alpha 1): z > 0 ? z : exp(z) - 1; derivative at 0 is exp(0) = 1 (torch: x <= 0 branch)
    "elu": (lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))),
            lambda z: np.where(z > 0, 1.0, np.exp(np.minimum(z, 0.0)))),
    "selu": (lambda z: SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0.0))),
             lambda z: SELU_SCALE * np.where(z > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(z, 0.0)))),
    # gelu: z * Phi(z), Phi(z) = (1 + erf(z / sqrt 2)) / 2; derivative Phi(z) + z * phi(z)
    "gelu": (lambda z: 0.5 * z * (1 + erf(z / math.sqrt(2.0))),
             lambda z: 0.5 * (1 + erf(z / math.sqrt(2.0))) + z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)),
    # gelu_tanh: z/2 * (1 + tanh(k (z + c z^3))), k = sqrt(2/pi), c = 0.044715
    "gelu_tanh": (lambda z: 0.5 * z * (1 + _gelu_tanh_inner(z)),
                  lambda z: 0.5 * (1 + _gelu_tanh_inner(z))
                  + 0.5 * z * (1 - _gelu_tanh_inner(z) ** 2) * GELU_TANH_K * (1 + 3 * GELU_TANH_C * z * z)),
    # silu: z s(z); derivative s (1 + z (1 - s))
    "silu": (lambda z: z * _sigmoid(z), lambda z: _sigmoid(z) * (1 + z * (1 - _sigmoid(z)))),
    # softplus: identity above the threshold, so its derivative there is exactly 1 (torch)
    "softplus": (_softplus_torch, lambda z: np.where(z > SOFTPLUS_THRESHOLD, 1.0, _sigmoid(z))),
    # mish: z tanh(softplus(z)) with softplus = log1p(exp(z)) WITHOUT softplus's threshold (torch's
    # mish kernel); derivative tanh(sp) + z s(z) (1 - tanh(sp)^2)
    "mish": (lambda z: z * np.tanh(np.logaddexp(0.0, z)),
             lambda z: np.tanh(np.logaddexp(0.0, z)) + z * _sigmoid(z) * (1 - np.tanh(np.logaddexp(0.0, z)) ** 2)),
}
OUTPUTS = ("linear", "sigmoid", "softmax", "exp")
NORMS = (None, "layer", "batch")
LOSSES = ("mse", "half_mse", "cross_entropy", "binary_cross_entropy", "mae", "huber", "poisson")
# the losses computed from the logits need this output activation
LOGIT_LOSS_OUTPUT = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid", "poisson": "exp"}
NORM_EPS = 1e-5          # torch LayerNorm / BatchNorm1d default eps
BN_MOMENTUM = 0.1        # torch BatchNorm1d default momentum


def _check(kind, name, valid):
    if name not in valid:
        raise ValueError(f"unknown {kind} {name!r}; valid: {sorted(map(str, valid))}")


def activation_forward(name, z):
    """Hidden or output activation of pre-activations ``z`` (any shape; softmax over axis 1)."""
    if name == "exp":
        return np.exp(z)
    if name == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    _check("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name][0](np.asarray(z, np.float64))


def activation_derivative(name, z):
    """Elementwise d act / d z at pre-activations ``z`` (not for softmax)."""
    if name == "exp":
        return np.exp(z)
    _check("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name][1](np.asarray(z, np.float64))


def output_backward(name, P, dP):
    """dL/dZ from dL/dP through the output activation, P = out(Z) (softmax: its Jacobian)."""
    if name == "linear":
        return dP.copy()
    if name == "sigmoid":
        return dP * P * (1 - P)
    if name == "exp":
        return dP * P
    if name == "softmax":
        return P * (dP - (P * dP).sum(axis=1, keepdims=True))
    raise ValueError(name)


# -- normalization layers ------------------------------------------------------------------------

def layer_norm_forward(Z, gamma, beta, eps=NORM_EPS):
    """torch.nn.LayerNorm over each row of Z (n, m): biased variance. Returns (H, cache)."""
    mean = Z.mean(axis=1, keepdims=True)
    var = ((Z - mean) ** 2).mean(axis=1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = (Z - mean) * rstd
    return xhat * gamma + beta, {"xhat": xhat, "rstd": rstd, "gamma": gamma, "axis": 1}


def batch_norm_forward(Z, gamma, beta, running_mean=None, running_var=None, training=True, eps=NORM_EPS):
    """torch.nn.BatchNorm1d on Z (n, m). Returns (H, cache).

    Training: the batch's mean and biased variance normalize; the cache keeps ``mean`` and the
    unbiased variance ``var_unbiased`` for the running update (torch's rule). Inference: the
    running statistics normalize and nothing is learned from the batch.
    """
    n = Z.shape[0]
    if training:
        if n < 2:
            # torch: "Expected more than 1 value per channel when training"
            raise ValueError("batch norm in training needs more than one row per batch")
        mean = Z.mean(axis=0)
        ssq = ((Z - mean) ** 2).sum(axis=0)
        var = ssq / n
        rstd = 1.0 / np.sqrt(var + eps)
        xhat = (Z - mean) * rstd
        return xhat * gamma + beta, {"xhat": xhat, "rstd": rstd, "gamma": gamma, "axis": 0,
                                     "mean": mean, "var_unbiased": ssq / (n - 1)}
    rstd = 1.0 / np.sqrt(running_var + eps)
    xhat = (Z - running_mean) * rstd
    return xhat * gamma + beta, {"xhat": xhat, "rstd": rstd, "gamma": gamma, "axis": None}


def norm_backward(dH, cache):
    """(dZ, dgamma, dbeta) of a layer or batch norm from dH = dL/dH.

    With xhat normalized along ``axis`` over N values and g = dH * gamma:
    dZ = rstd * (g - mean(g) - xhat * mean(g * xhat)), means along that axis;
    dgamma = sum_rows dH * xhat, dbeta = sum_rows dH. In inference (axis None) the statistics
    are constants: dZ = g * rstd.
    """
    xhat, rstd, axis = cache["xhat"], cache["rstd"], cache["axis"]
    g = dH * cache["gamma"]
    if axis is None:
        dZ = g * rstd
    else:
        dZ = rstd * (g - g.mean(axis=axis, keepdims=True) - xhat * (g * xhat).mean(axis=axis, keepdims=True))
    return dZ, (dH * xhat).sum(axis=0), dH.sum(axis=0)


def update_running_stats(running_mean, running_var, cache, momentum=BN_MOMENTUM):
    """In place, torch's BatchNorm1d rule: r = momentum * batch + (1 - momentum) * r, with the
    unbiased batch variance into the running variance."""
    running_mean[:] = momentum * cache["mean"] + (1 - momentum) * running_mean
    running_var[:] = momentum * cache["var_unbiased"] + (1 - momentum) * running_var


# -- dropout -------------------------------------------------------------------------------------

def dropout_scale(mask, p):
    """Inverted dropout's multiplier mask / (1 - p) (torch scales the 0/1 noise, then multiplies);
    p = 0 or no mask: no dropout, whatever the mask."""
    if mask is None or p == 0:
        return None
    return np.asarray(mask, np.float64) / (1.0 - p)


# The masks fastbp draws: a counter-based generator, written here from its documented
# definition with Python integers (64-bit wrap by explicit masking) and numpy uint64 arrays
# (32-bit wrap by masking), never with fastbp's code:
#   key         the model's dropout key: SeedSequence(seed).generate_state(1, uint64)[0]
#   step key    mix64(key + (t + 1) * 0x9E3779B97F4A7C15), t the model's update count before the step
#   row key     mix64(step key ^ (pos << 16 | layer)), pos the row's position in its minibatch
#   unit u      h = lowbias32(lowbias32((u * 0x9E3779B9 mod 2**32) ^ lo) ^ hi), lo/hi the row key's halves
#   kept        h >= floor(p * 2**32)
# mix64 is splitmix64's output function (Steele, Lea, Flood 2014); lowbias32 is C. Wellons'
# 32-bit integer hash (hash-prospector: shifts 16, 15, 16; multipliers 0x7feb352d, 0x846ca68b).
_M64 = (1 << 64) - 1
_M32 = (1 << 32) - 1


def mix64(z):
    z &= _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def lowbias32(x):
    x = np.asarray(x, np.uint64) & _M32
    x = x ^ (x >> np.uint64(16))
    x = (x * np.uint64(0x7FEB352D)) & np.uint64(_M32)
    x = x ^ (x >> np.uint64(15))
    x = (x * np.uint64(0x846CA68B)) & np.uint64(_M32)
    return x ^ (x >> np.uint64(16))


def dropout_key(seed):
    """The dropout key of a model built with ``seed``."""
    return int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0])


def mask_hashes(key, t, positions, layer, width):
    """The 32-bit hashes (len(positions), width) of units 0 .. width-1 of the rows at
    ``positions`` of their minibatch in hidden layer ``layer`` at update ``t``."""
    skey = mix64(int(key) + (int(t) + 1) * 0x9E3779B97F4A7C15)
    rkeys = [mix64(skey ^ ((int(pos) << 16) | int(layer))) for pos in np.atleast_1d(positions)]
    lo = np.array([k & _M32 for k in rkeys], np.uint64)[:, None]
    hi = np.array([k >> 32 for k in rkeys], np.uint64)[:, None]
    u = (np.arange(width, dtype=np.uint64) * np.uint64(0x9E3779B9)) & np.uint64(_M32)
    return lowbias32(lowbias32(u[None, :] ^ lo) ^ hi)


def dropout_mask(key, t, positions, layer, width, p):
    """The 0/1 (float64) masks (len(positions), width) of those rows: 1 where a unit is kept."""
    return (mask_hashes(key, t, positions, layer, width) >= int(p * 4294967296.0)).astype(np.float64)


def dropout_masks(spec, key, t, n_rows, pos0=0):
    """Per hidden layer the (n_rows, width) mask of update ``t`` for rows at positions pos0,
    pos0+1, ... of the minibatch (None for a layer without dropout): ``masks`` for
    ``network_forward`` and ``train_steps``."""
    pos = np.arange(pos0, pos0 + n_rows)
    return [dropout_mask(key, t, pos, l, spec.sizes[l + 1], p) if p else None for l, p in enumerate(spec.dropouts)]


# -- the network specification and the parameter layout ------------------------------------------

def _per_layer(name, value, n_hidden):
    if isinstance(value, (list, tuple)):
        if len(value) != n_hidden:
            raise ValueError(f"{name}: {len(value)} values for {n_hidden} hidden layers")
        return list(value)
    return [value] * n_hidden


@dataclass
class Spec:
    """A part-2 network, with MLP's argument names.

    ``activation``, ``norm`` and ``dropout`` take one value for every hidden layer or a list,
    one per hidden layer (normalized to lists). ``output=None`` picks the output the loss needs
    (softmax, sigmoid, exp for cross_entropy, binary_cross_entropy, poisson; linear otherwise).
    """

    sizes: list
    activation: object = "relu"
    output: str = None
    loss: str = "mse"
    norm: object = None
    dropout: object = 0.0
    bias: bool = True
    l1: float = 0.0
    l2: float = 0.0
    label_smoothing: float = 0.0
    huber_delta: float = 1.0
    activations: list = field(init=False)
    norms: list = field(init=False)
    dropouts: list = field(init=False)

    def __post_init__(self):
        self.sizes = [int(s) for s in self.sizes]
        nh = len(self.sizes) - 2
        self.activations = _per_layer("activation", self.activation, nh)
        self.norms = [None if v in (None, "none") else v for v in _per_layer("norm", self.norm, nh)]
        self.dropouts = [float(v) for v in _per_layer("dropout", self.dropout, nh)]
        _check("loss", self.loss, LOSSES)
        if self.output is None:
            self.output = LOGIT_LOSS_OUTPUT.get(self.loss, "linear")
        _check("output", self.output, OUTPUTS)
        for a in self.activations:
            _check("activation", a, ACTIVATIONS)
        for v in self.norms:
            _check("norm", v, NORMS)
        if self.loss in LOGIT_LOSS_OUTPUT and self.output != LOGIT_LOSS_OUTPUT[self.loss]:
            raise ValueError(f"loss {self.loss!r} needs output {LOGIT_LOSS_OUTPUT[self.loss]!r}")
        if self.label_smoothing and self.loss != "cross_entropy":
            raise ValueError("label_smoothing is for cross_entropy only")

    @property
    def n_layers(self):
        return len(self.sizes) - 1


def param_segments(spec):
    """[(layer, name, start, stop, shape)] of every tensor in the flat params, in layout order:
    per layer W (in, out) row-major, b (out,) if bias, then gamma, beta (out,) if the layer has a
    norm (DESIGN "Precisions")."""
    segs, off = [], 0
    for l, (n_in, n_out) in enumerate(zip(spec.sizes[:-1], spec.sizes[1:])):
        names = [("W", (n_in, n_out))] + ([("b", (n_out,))] if spec.bias else [])
        if l < spec.n_layers - 1 and spec.norms[l] is not None:
            names += [("gamma", (n_out,)), ("beta", (n_out,))]
        for name, shape in names:
            size = math.prod(shape)
            segs.append((l, name, off, off + size, shape))
            off += size
    return segs


def buffer_segments(spec):
    """[(layer, name, start, stop, shape)] of the flat buffers: per batch-norm layer, in layer
    order, running_mean then running_var."""
    segs, off = [], 0
    for l, v in enumerate(spec.norms):
        if v == "batch":
            m = spec.sizes[l + 1]
            segs += [(l, "running_mean", off, off + m, (m,)), (l, "running_var", off + m, off + 2 * m, (m,))]
            off += 2 * m
    return segs


def n_params(spec):
    s = param_segments(spec)
    return s[-1][3]


def _unflatten(segs, n_layers, names, flat):
    layers = [dict.fromkeys(names) for _ in range(n_layers)]
    for l, name, a, b, shape in segs:
        layers[l][name] = flat[a:b].reshape(shape)
    return layers


def unflatten_params(spec, params):
    """Per layer a dict {"W", "b", "gamma", "beta"} of views into ``params`` (None where absent)."""
    return _unflatten(param_segments(spec), spec.n_layers, ("W", "b", "gamma", "beta"), params)


def flatten_params(spec, layers):
    """The flat params from per-layer dicts as ``unflatten_params`` gives them."""
    return np.concatenate([np.ravel(layers[l][name]) for l, name, *_ in param_segments(spec)]).astype(np.float64)


def unflatten_buffers(spec, buffers):
    """Per layer a dict {"running_mean", "running_var"} of views into ``buffers`` (None where absent)."""
    return _unflatten(buffer_segments(spec), spec.n_layers, ("running_mean", "running_var"), buffers)


def flatten_buffers(spec, layers):
    segs = buffer_segments(spec)
    if not segs:
        return np.zeros(0)
    return np.concatenate([np.ravel(layers[l][name]) for l, name, *_ in segs]).astype(np.float64)


def param_tensors(spec, flat):
    """Views of ``flat`` (params or grads), one per W, b, gamma, beta in layout order: the tensors
    per-tensor optimizer rules (LAMB's trust ratio) see inside fit."""
    return [flat[a:b] for _, _, a, b, _ in param_segments(spec)]


def init_params(spec, rng, scale=1.0):
    """Random float64 params for tests: W ~ N(0, scale^2/in), and b, gamma - 1, beta ~ N(0, 0.1^2),
    so that no term of the gradient vanishes by symmetry (DESIGN's init is fastbp's, not this)."""
    layers = unflatten_params(spec, np.zeros(n_params(spec)))
    for l, lay in enumerate(layers):
        lay["W"][...] = rng.standard_normal(lay["W"].shape) * scale / math.sqrt(spec.sizes[l])
        for name, base in (("b", 0.0), ("gamma", 1.0), ("beta", 0.0)):
            if lay[name] is not None:
                lay[name][...] = base + 0.1 * rng.standard_normal(lay[name].shape)
    return flatten_params(spec, layers)


def init_buffers(spec):
    """torch's initial running statistics: mean 0, variance 1."""
    segs = buffer_segments(spec)
    buf = np.zeros(segs[-1][3] if segs else 0)
    for lay in unflatten_buffers(spec, buf):
        if lay["running_var"] is not None:
            lay["running_var"][:] = 1.0
    return buf


def targets(spec, y):
    """y as a float (n, k) array: int labels one-hot for cross_entropy, (n,) as one column."""
    y = np.asarray(y)
    k = spec.sizes[-1]
    if spec.loss == "cross_entropy" and y.ndim == 1:
        return one_hot(y.astype(np.int64), k)
    y = y.astype(np.float64)
    return y[:, None] if y.ndim == 1 else y


# -- losses (torch semantics) and penalties ------------------------------------------------------

def loss_forward_backward(spec, Z, Y, sample_weight=None):
    """Data loss of the batch and dL/dZ at the output logits Z (n, k); Y from ``targets``.

    Per sample i: l_i = mean over outputs of the elementwise loss for mse, mae, huber,
    binary_cross_entropy and poisson (so that without weights the batch loss is the mean over
    all elements, torch's reduction="mean"); 0.5 * sum over outputs for half_mse; -sum_j t_j
    log softmax(Z)_j for cross_entropy. Batch loss L = sum_i w_i l_i / n (w = 1 without weights).
    """
    n, k = Z.shape
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    loss = spec.loss
    if loss == "cross_entropy":
        # nn.CrossEntropyLoss(label_smoothing=eps) on probability targets: t = y (1 - eps) + eps / k
        # (for int labels this equals torch's (1 - eps) nll + eps * mean_j(-log p_j))
        eps = spec.label_smoothing
        T = Y * (1 - eps) + eps / k
        logp = Z - Z.max(axis=1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(axis=1, keepdims=True))
        li = -(T * logp).sum(axis=1)
        dZ = np.exp(logp) * T.sum(axis=1, keepdims=True) - T
    elif loss == "binary_cross_entropy":
        # nn.BCEWithLogitsLoss: max(z, 0) - z y + log1p(exp(-|z|)); d/dz = sigmoid(z) - y
        li = (np.maximum(Z, 0) - Z * Y + np.log1p(np.exp(-np.abs(Z)))).mean(axis=1)
        dZ = (_sigmoid(Z) - Y) / k
    elif loss == "poisson":
        # nn.PoissonNLLLoss(log_input=True, full=False): exp(z) - y z; d/dz = exp(z) - y
        li = (np.exp(Z) - Y * Z).mean(axis=1)
        dZ = (np.exp(Z) - Y) / k
    else:
        P = activation_forward(spec.output, Z)
        D = P - Y
        if loss == "mse":
            li, dP = (D ** 2).mean(axis=1), 2 * D / k
        elif loss == "half_mse":
            li, dP = 0.5 * (D ** 2).sum(axis=1), D
        elif loss == "mae":
            # nn.L1Loss; its gradient sign(d) is 0 at d = 0
            li, dP = np.abs(D).mean(axis=1), np.sign(D) / k
        elif loss == "huber":
            # nn.HuberLoss(delta): 0.5 d^2 if |d| <= delta else delta (|d| - 0.5 delta);
            # gradient d clipped to [-delta, delta]
            delta = spec.huber_delta
            a = np.abs(D)
            li = np.where(a <= delta, 0.5 * D * D, delta * (a - 0.5 * delta)).mean(axis=1)
            dP = np.clip(D, -delta, delta) / k
        else:
            raise ValueError(loss)
        dZ = output_backward(spec.output, P, dP)
    return (w * li).sum() / n, dZ * (w / n)[:, None]


def penalty(spec, layers):
    """Keras l1/l2 regularizers on every weight matrix (never b, gamma, beta):
    l1 * sum |W| + l2 * sum W^2."""
    return sum(spec.l1 * np.abs(lay["W"]).sum() + spec.l2 * (lay["W"] ** 2).sum() for lay in layers)


def penalty_grad(spec, W):
    """d penalty / dW = l1 sign(W) + 2 l2 W, with sign(0) = 0."""
    return spec.l1 * np.sign(W) + 2 * spec.l2 * W


# -- the network ---------------------------------------------------------------------------------

def network_forward(spec, params, X, buffers=None, training=True, masks=None):
    """Forward pass; returns (Z_out, caches), Z_out the output logits (n, k).

    Hidden layer l: Z = A W + b -> H = norm(Z) -> act(H) -> A = act(H) * mask_l / (1 - p_l).
    ``masks``: one 0/1 array (n, width) or None per hidden layer (None: no dropout). Batch norm
    uses the batch's statistics when ``training``, else the running statistics in ``buffers``.
    """
    X = np.asarray(X, np.float64)
    layers = unflatten_params(spec, params)
    if not training and "batch" in spec.norms and buffers is None:
        raise ValueError("inference with batch norm needs the buffers (running statistics)")
    bufs = unflatten_buffers(spec, buffers) if buffers is not None and len(buffers) else None
    caches, A = [], X
    for l, lay in enumerate(layers):
        Z = A @ lay["W"] + (lay["b"] if lay["b"] is not None else 0.0)
        c = {"A": A}
        if l == spec.n_layers - 1:
            caches.append(c)
            return Z, caches
        norm = spec.norms[l]
        if norm == "layer":
            H, c["norm"] = layer_norm_forward(Z, lay["gamma"], lay["beta"])
        elif norm == "batch":
            rm = rv = None
            if not training:
                rm, rv = bufs[l]["running_mean"], bufs[l]["running_var"]
            H, c["norm"] = batch_norm_forward(Z, lay["gamma"], lay["beta"], rm, rv, training)
        else:
            H = Z
        c["H"] = H
        A = activation_forward(spec.activations[l], H)
        c["drop"] = dropout_scale(None if masks is None else masks[l], spec.dropouts[l])
        if c["drop"] is not None:
            A = A * c["drop"]
        caches.append(c)


def network_backward(spec, params, caches, dZ):
    """Flat gradient (params layout) of the data loss from dZ = dL/dZ_out and the forward caches."""
    layers = unflatten_params(spec, params)
    grad = np.zeros_like(params, dtype=np.float64)
    glayers = unflatten_params(spec, grad)
    for l in range(spec.n_layers - 1, -1, -1):
        c, lay, g = caches[l], layers[l], glayers[l]
        if l < spec.n_layers - 1:
            # dZ holds dL/dA for this hidden layer: back through dropout, activation, norm
            if c["drop"] is not None:
                dZ = dZ * c["drop"]
            dZ = dZ * activation_derivative(spec.activations[l], c["H"])
            if "norm" in c:
                dZ, g["gamma"][...], g["beta"][...] = norm_backward(dZ, c["norm"])
        g["W"][...] = c["A"].T @ dZ
        if g["b"] is not None:
            g["b"][...] = dZ.sum(axis=0)
        dZ = dZ @ lay["W"].T
    return grad


def _loss_grad_caches(spec, params, X, y, sample_weight=None, masks=None):
    Z, caches = network_forward(spec, params, X, training=True, masks=masks)
    L, dZ = loss_forward_backward(spec, Z, targets(spec, y), sample_weight)
    grad = network_backward(spec, params, caches, dZ)
    layers, glayers = unflatten_params(spec, params), unflatten_params(spec, grad)
    for lay, g in zip(layers, glayers):
        g["W"] += penalty_grad(spec, lay["W"])
    return L + penalty(spec, layers), grad, caches


def loss_and_grad(spec, params, X, y, sample_weight=None, masks=None):
    """(loss, flat grad) of a batch in training mode (batch norm on the batch's statistics).

    The loss includes label smoothing and the l1/l2 penalty (as fastbp reports it); the gradient
    is d loss / d params in the params layout. Dropout only where ``masks`` are given.
    """
    L, grad, _ = _loss_grad_caches(spec, params, X, y, sample_weight, masks)
    return L, grad


def loss_value(spec, params, X, y, sample_weight=None, masks=None, buffers=None, training=True):
    """The loss alone (forward only), penalty included; ``training=False`` is ``evaluate``'s
    loss: running statistics, no dropout."""
    Z, _ = network_forward(spec, params, X, buffers, training, masks if training else None)
    L, _ = loss_forward_backward(spec, Z, targets(spec, y), sample_weight)
    return L + penalty(spec, unflatten_params(spec, params))


def predict(spec, params, X, buffers=None):
    """Inference-mode outputs: running statistics, no dropout; output activation applied
    (probabilities for softmax/sigmoid, the rate exp(logit) for exp, values for linear)."""
    Z, _ = network_forward(spec, params, X, buffers, training=False)
    return activation_forward(spec.output, Z)


def train_steps(spec, params, buffers, batches, optimizer, masks=None, per_tensor=True):
    """Run one update per batch in order, in place on ``params`` and ``buffers``; returns the
    losses, each taken before its update (penalty at the weights before it).

    ``batches``: [(X, y) or (X, y, sample_weight)]; ``masks``: per step, a list as for
    ``network_forward`` (or None); ``optimizer``: an ``Optimizer``, which carries the schedule.
    Every step runs batch norm in training mode and moves the running statistics as torch does.
    ``per_tensor``: the optimizer sees each W, b, gamma, beta as a tensor (fit), else the whole
    flat array as one (``opt.step`` on a bare array).
    """
    losses = []
    for s, batch in enumerate(batches):
        X, y = batch[0], batch[1]
        sw = batch[2] if len(batch) > 2 else None
        L, grad, caches = _loss_grad_caches(spec, params, X, y, sw, None if masks is None else masks[s])
        bufs = unflatten_buffers(spec, buffers)
        for l, c in enumerate(caches[:-1]):
            if spec.norms[l] == "batch":
                update_running_stats(bufs[l]["running_mean"], bufs[l]["running_var"], c["norm"])
        if per_tensor:
            optimizer.step(param_tensors(spec, params), param_tensors(spec, grad))
        else:
            optimizer.step(params, grad)
        losses.append(L)
    return losses


# -- optimizers ----------------------------------------------------------------------------------
# Each rule updates one tensor p in place from its gradient g, its state dict (empty at the
# first step) and the rate lr of this update; t = 1, 2, ... counts this tensor's updates.

def sgd_update(p, g, state, lr, t, weight_decay=0.0):
    """torch.optim.SGD: g += wd p (L2); p -= lr g."""
    if weight_decay:
        g = g + weight_decay * p
    p -= lr * g


def momentum_update(p, g, state, lr, t, momentum=0.9, nesterov=False, weight_decay=0.0):
    """torch.optim.SGD(momentum, nesterov): v = g at the first step, then v = mu v + g;
    p -= lr v, or with Nesterov p -= lr (g + mu v)."""
    if weight_decay:
        g = g + weight_decay * p
    state["v"] = g.copy() if "v" not in state else momentum * state["v"] + g
    p -= lr * ((g + momentum * state["v"]) if nesterov else state["v"])


def adam_update(p, g, state, lr, t, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False):
    """torch.optim.Adam (L2 weight decay) or, ``decoupled``, torch.optim.AdamW (p *= 1 - lr wd
    first), in torch's order of operations:
    m = lerp(m, g, 1 - b1); v = b2 v + (1 - b2) g^2;
    p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""
    if weight_decay and decoupled:
        p *= 1 - lr * weight_decay
    elif weight_decay:
        g = g + weight_decay * p
    m = state.setdefault("m", np.zeros_like(p))
    v = state.setdefault("v", np.zeros_like(p))
    m += (1 - beta1) * (g - m)
    v[...] = beta2 * v + (1 - beta2) * g * g
    step_size = lr / (1 - beta1 ** t)
    denom = np.sqrt(v) / math.sqrt(1 - beta2 ** t) + eps
    p -= step_size * m / denom


def rmsprop_update(p, g, state, lr, t, alpha=0.99, eps=1e-8, momentum=0.0, centered=False, weight_decay=0.0):
    """torch.optim.RMSprop: s = alpha s + (1 - alpha) g^2; centered: ga = lerp(ga, g, 1 - alpha),
    avg = sqrt(s - ga^2) + eps, else sqrt(s) + eps; with momentum buf = mu buf + g / avg,
    p -= lr buf, else p -= lr g / avg. (eps is outside the root, unlike Keras.)"""
    if weight_decay:
        g = g + weight_decay * p
    s = state.setdefault("square_avg", np.zeros_like(p))
    s[...] = alpha * s + (1 - alpha) * g * g
    if centered:
        ga = state.setdefault("grad_avg", np.zeros_like(p))
        ga += (1 - alpha) * (g - ga)
        avg = np.sqrt(s - ga * ga) + eps
    else:
        avg = np.sqrt(s) + eps
    if momentum > 0:
        buf = state.setdefault("momentum_buffer", np.zeros_like(p))
        buf[...] = momentum * buf + g / avg
        p -= lr * buf
    else:
        p -= lr * g / avg


def adagrad_update(p, g, state, lr, t, eps=1e-10, initial_accumulator_value=0.0, weight_decay=0.0):
    """torch.optim.Adagrad (lr_decay 0): sum = initial value at the start; sum += g^2;
    p -= lr g / (sqrt(sum) + eps)."""
    if weight_decay:
        g = g + weight_decay * p
    s = state.setdefault("sum", np.full_like(p, initial_accumulator_value))
    s += g * g
    p -= lr * g / (np.sqrt(s) + eps)


def lion_update(p, g, state, lr, t, beta1=0.9, beta2=0.99, weight_decay=0.0):
    """optax.lion: u = sign((1 - b1) g + b1 m) + wd p (decoupled, on the sign); m = (1 - b2) g + b2 m;
    p += -lr u. sign(0) = 0."""
    m = state.setdefault("m", np.zeros_like(p))
    u = np.sign((1 - beta1) * g + beta1 * m)
    m[...] = (1 - beta2) * g + beta2 * m
    if weight_decay:
        u = u + weight_decay * p
    p += -lr * u


def lamb_update(p, g, state, lr, t, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.0):
    """optax.lamb = scale_by_adam (eps outside the root, eps_root 0) -> add_decayed_weights ->
    scale_by_trust_ratio -> -lr:
    m = (1 - b1) g + b1 m; v = (1 - b2) g^2 + b2 v; u = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    + wd p; r = ||p|| / ||u|| over this tensor (1 if either norm is 0); p += -lr (r u)."""
    m = state.setdefault("m", np.zeros_like(p))
    v = state.setdefault("v", np.zeros_like(p))
    m[...] = (1 - beta1) * g + beta1 * m
    v[...] = (1 - beta2) * g * g + beta2 * v
    u = (m / (1 - beta1 ** t)) / (np.sqrt(v / (1 - beta2 ** t)) + eps)
    if weight_decay:
        u = u + weight_decay * p
    pn, un = np.linalg.norm(p), np.linalg.norm(u)
    ratio = 1.0 if pn == 0.0 or un == 0.0 else pn / un
    p += -lr * (u * ratio)


OPTIMIZERS = {
    # name: (rule, defaults as in DESIGN.md / fastbp.optim)
    "sgd": (sgd_update, dict(lr=0.01, weight_decay=0.0)),
    "momentum": (momentum_update, dict(lr=0.01, momentum=0.9, nesterov=False, weight_decay=0.0)),
    "nesterov": (momentum_update, dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.0)),
    "adam": (adam_update, dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)),
    "adamw": (adam_update, dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, decoupled=True)),
    "rmsprop": (rmsprop_update, dict(lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.0, centered=False, weight_decay=0.0)),
    "adagrad": (adagrad_update, dict(lr=1e-2, eps=1e-10, initial_accumulator_value=0.0, weight_decay=0.0)),
    "lion": (lion_update, dict(lr=1e-4, beta1=0.9, beta2=0.99, weight_decay=0.0)),
    "lamb": (lamb_update, dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.0)),
}


def clip_coef(grads, max_norm):
    """torch.nn.utils.clip_grad_norm_'s factor over all tensors: min(1, max_norm / (norm + 1e-6))."""
    if max_norm is None:
        return 1.0
    norm = math.sqrt(sum(float((np.asarray(g, np.float64) ** 2).sum()) for g in grads))
    return min(max_norm / (norm + 1e-6), 1.0)


class Optimizer:
    """An optimizer by name (``OPTIMIZERS``) with its hyper-parameters, state and update count.

    ``lr`` is a number or a schedule (a callable of the update index t = 0, 1, ...).
    ``clip_norm`` clips the global gradient norm first, over every tensor of the step.
    ``step(params, grads)`` updates in place a list of tensors (views into a flat buffer work)
    or one array taken as one tensor.
    """

    def __init__(self, name, clip_norm=None, **hyper):
        _check("optimizer", name, OPTIMIZERS)
        self.name = name
        self.rule, defaults = OPTIMIZERS[name]
        unknown = set(hyper) - set(defaults)
        if unknown:
            raise TypeError(f"{name}: unknown arguments {sorted(unknown)}")
        self.hyper = {**defaults, **hyper}
        self.lr = self.hyper.pop("lr")
        self.clip_norm = clip_norm
        self.iterations = 0
        self.states = None

    def rate(self, t):
        """The learning rate of update t (0-based)."""
        return float(self.lr(t)) if callable(self.lr) else float(self.lr)

    def step(self, params, grads):
        if isinstance(params, np.ndarray):
            params, grads = [params], [grads]
        if self.states is None:
            self.states = [{} for _ in params]
        lr = self.rate(self.iterations)
        coef = clip_coef(grads, self.clip_norm)
        self.iterations += 1
        for p, g, st in zip(params, grads, self.states):
            g = np.asarray(g, np.float64) * coef if coef != 1.0 else np.asarray(g, np.float64)
            self.rule(p, g, st, lr, self.iterations, **self.hyper)
        return params


# -- learning-rate schedules: the rate of update t = 0, 1, 2, ... --------------------------------

class CosineDecay:
    """keras.optimizers.schedules.CosineDecay, as Keras 3's code computes it:
    without ``warmup_target``: s = min(t, decay_steps), lr = initial * ((1 - alpha) * c + alpha),
    c = 0.5 (1 + cos(pi s / decay_steps)); ``warmup_steps`` is then ignored. With it:
    s = min(t, warmup_steps + decay_steps); s < warmup_steps: (target - initial) * s / warmup_steps
    + initial; else the decay above from ``warmup_target`` at s - warmup_steps."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, warmup_target=None, warmup_steps=0):
        if decay_steps <= 0:
            raise ValueError("decay_steps must be > 0")
        self.initial_learning_rate, self.decay_steps, self.alpha = initial_learning_rate, decay_steps, alpha
        self.warmup_target, self.warmup_steps = warmup_target, warmup_steps

    def _decay(self, s, lr0):
        completed = s / self.decay_steps
        cosine = 0.5 * (1.0 + math.cos(math.pi * completed))
        return lr0 * ((1 - self.alpha) * cosine + self.alpha)

    def __call__(self, t):
        s = float(t)
        if self.warmup_target is None:
            return self._decay(min(s, float(self.decay_steps)), self.initial_learning_rate)
        s = min(s, float(self.decay_steps + self.warmup_steps))
        if s < self.warmup_steps:
            return (self.warmup_target - self.initial_learning_rate) * (s / self.warmup_steps) + self.initial_learning_rate
        return self._decay(s - self.warmup_steps, self.warmup_target)


class ExponentialDecay:
    """keras.optimizers.schedules.ExponentialDecay: initial * decay_rate ** (t / decay_steps),
    the exponent floored if ``staircase``."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False):
        if decay_steps <= 0:
            raise ValueError("decay_steps must be > 0")
        self.initial_learning_rate, self.decay_steps = initial_learning_rate, decay_steps
        self.decay_rate, self.staircase = decay_rate, staircase

    def __call__(self, t):
        p = float(t) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate ** p


class PiecewiseConstantDecay:
    """keras.optimizers.schedules.PiecewiseConstantDecay: values[0] while t <= boundaries[0],
    values[i] while boundaries[i-1] < t <= boundaries[i], values[-1] once t > boundaries[-1]."""

    def __init__(self, boundaries, values):
        if len(boundaries) != len(values) - 1:
            raise ValueError("len(boundaries) must be len(values) - 1")
        self.boundaries, self.values = list(boundaries), list(values)

    def __call__(self, t):
        for b, v in zip(self.boundaries, self.values):
            if t <= b:
                return float(v)
        return float(self.values[-1])


class OneCycle:
    """torch.optim.lr_scheduler.OneCycleLR(anneal_strategy="cos", three_phase=False), lr only.

    initial = max_lr / div_factor, min = initial / final_div_factor; phase 1 ends at step
    pct_start * total_steps - 1 (initial -> max), phase 2 at total_steps - 1 (max -> min);
    pct = (t - phase start) / (phase end - phase start); cos anneal
    end + (start - end) / 2 * (cos(pi pct) + 1). Updates past total_steps are an error
    (DESIGN; torch only raises one step later, see ``__call__``), and so is
    pct_start * total_steps == 1, where torch divides 0 by 0.
    """

    def __init__(self, max_lr, total_steps, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
        self.max_lr, self.total_steps = max_lr, int(total_steps)
        self.initial_lr = max_lr / div_factor
        self.min_lr = self.initial_lr / final_div_factor
        self.phases = [(float(pct_start * self.total_steps) - 1, self.initial_lr, self.max_lr),
                       (self.total_steps - 1, self.max_lr, self.min_lr)]
        if self.phases[0][0] == 0.0:
            # torch's phase 1 is then [0, 0] and its first rate 0 / 0 (ZeroDivisionError)
            raise ValueError("OneCycle: pct_start * total_steps == 1 leaves the warm-up phase empty")

    def __call__(self, t):
        # torch computes a rate for t == total_steps too (the cosine extrapolated past its end, back
        # up towards max_lr) and raises at t > total_steps; DESIGN makes t == total_steps (the update
        # past total_steps) an error.
        if t >= self.total_steps:
            raise ValueError(f"OneCycle: update {t} is past total_steps={self.total_steps}")
        start = 0.0
        for i, (end, lr_a, lr_b) in enumerate(self.phases):
            if t <= end or i == len(self.phases) - 1:
                pct = (t - start) / (end - start)
                return lr_b + (lr_a - lr_b) / 2.0 * (math.cos(math.pi * pct) + 1)
            start = end
