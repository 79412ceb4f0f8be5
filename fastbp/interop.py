"""Interop with PyTorch (state dicts of plain numpy arrays) and ONNX (a standard inference graph).

PyTorch
    ``to_state_dict`` names the parameters and buffers as ``torch.nn.Sequential`` would for the
    network ``Sequential(Linear, [LayerNorm | BatchNorm1d], Act, [Dropout], ..., Linear)``: each
    hidden layer is its ``Linear``, then its norm module (only for a layer with ``norm``), then one
    activation module (``TORCH_ACTIVATIONS``; ``nn.Identity`` for "linear"), then ``nn.Dropout(p)``
    (only for a layer with dropout); the output layer is a ``Linear`` alone. Indices count the
    modules present, so a plain network has its Linear layers at 0, 2, 4, ... Activation and
    Dropout modules hold nothing and do not appear in the dict. The output activation
    (softmax/sigmoid/exp) is *not* a module: by torch convention the Sequential returns logits and
    the loss (``CrossEntropyLoss``, ``BCEWithLogitsLoss``, ``PoissonNLLLoss(log_input=True)``) or
    the caller applies it. torch's Linear stores its weight as (out, in), the transpose of
    fastbp's W (in, out). ``LayerNorm(width, eps=1e-5)`` holds gamma and beta as ``weight`` and
    ``bias``; ``BatchNorm1d(width, eps=1e-5, momentum=0.1)`` also ``running_mean``,
    ``running_var`` and ``num_batches_tracked``.
ONNX
    ``to_onnx`` writes one Gemm (MatMul without bias) per layer; after each hidden layer its norm
    (LayerNormalization, or BatchNormalization in inference mode with the running statistics)
    and its activation; dropout is left out (inference); then the output activation (Softmax
    over the last axis, Sigmoid, Exp) at the end; in the model's dtype, default opset
    ``DEFAULT_OPSET``; the graph passes ``onnx.checker``. Needs the extra ``onnx``
    (``pip install 'fastbp[onnx]'``); see ``to_onnx`` for how each activation is spelled.
"""
import json
import re

import numpy as np

from .io import atomic_write
from .kernels.activations import (GELU_TANH_C, GELU_TANH_K, LEAKY_SLOPE, SELU_ALPHA, SELU_SCALE,
                                  SOFTPLUS_THRESHOLD)
from .kernels.norm import EPS as NORM_EPS

# The default ONNX opset: recent enough for Softmax over an axis (opset 13 semantics) and
# LayerNormalization (17), old enough for any onnxruntime of the last years.
DEFAULT_OPSET = 17
MIN_OPSET = 13
LAYER_NORM_OPSET = 17           # LayerNormalization; below it, layer norm is spelled in elementary ops
MISH_OPSET = 18                 # Mish
GELU_OPSET = 20                 # Gelu (approximate "none" and "tanh")

# Hidden activation -> the torch module that plays its part in the Sequential (torch's defaults:
# LeakyReLU's slope 0.01, ELU's alpha 1, Softplus's beta 1 and threshold 20).
TORCH_ACTIVATIONS = {"linear": "Identity()", "sigmoid": "Sigmoid()", "tanh": "Tanh()", "relu": "ReLU()",
                     "leaky_relu": "LeakyReLU()", "elu": "ELU()", "selu": "SELU()", "gelu": "GELU()",
                     "gelu_tanh": "GELU(approximate='tanh')", "silu": "SiLU()", "softplus": "Softplus()",
                     "mish": "Mish()"}
TORCH_NORMS = {"layer": "LayerNorm(width, eps=1e-5)", "batch": "BatchNorm1d(width, eps=1e-5, momentum=0.1)"}

_KEY = re.compile(r"^(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$")
_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


# ---- PyTorch ------------------------------------------------------------------------------------
def _modules(model):
    """[(index, kind, layer)] of the Sequential's modules that hold tensors, in order: kind
    "linear", "layer" or "batch" (the norms); activation and Dropout modules only advance the
    index."""
    out = []
    idx = 0
    last = len(model.layers) - 1
    for l, layer in enumerate(model.layers):
        out.append((idx, "linear", layer))
        idx += 1
        if l == last:
            break
        if layer.norm is not None:
            out.append((idx, layer.norm, layer))
            idx += 1
        idx += 1                                    # the activation module
        if layer.dropout:
            idx += 1                                # nn.Dropout(layer.dropout)
    return out


def _entries(model):
    """[(key, array view or None, transposed)] in state_dict order; None stands for
    num_batches_tracked (the model's update count)."""
    out = []
    for idx, kind, layer in _modules(model):
        if kind == "linear":
            out.append((f"{idx}.weight", layer.W, True))
            if layer.b is not None:
                out.append((f"{idx}.bias", layer.b, False))
            continue
        out += [(f"{idx}.weight", layer.gamma, False), (f"{idx}.bias", layer.beta, False)]
        if kind == "batch":
            out += [(f"{idx}.running_mean", layer.running_mean, False),
                    (f"{idx}.running_var", layer.running_var, False), (f"{idx}.num_batches_tracked", None, False)]
    return out


def to_state_dict(model):
    """The parameters and running statistics as a dict of new numpy arrays in ``torch.nn.Sequential``
    naming.

    For ``Sequential(Linear, [LayerNorm | BatchNorm1d], Act, [Dropout], ..., Linear)`` (see the
    module docstring: norm and Dropout modules only where the model has them, indices counted
    over the modules present): ``"<i>.weight"`` W.T (out, in) and ``"<i>.bias"`` b (out,) per
    Linear (no ``.bias`` for a model without bias); per LayerNorm ``"<i>.weight"`` gamma and
    ``"<i>.bias"`` beta; per BatchNorm1d those and ``"<i>.running_mean"``, ``"<i>.running_var"``
    and ``"<i>.num_batches_tracked"``. Arrays are in the model's dtype, except
    num_batches_tracked: a 0-d int64 array holding ``model.updates``, the count torch holds
    after that many training steps (fastbp updates the running statistics once per update).
    Load it with ``net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``.
    """
    sd = {}
    for key, view, transposed in _entries(model):
        if view is None:
            sd[key] = np.array(model.updates, np.int64)
        else:
            sd[key] = np.ascontiguousarray(view.T) if transposed else view.copy()   # W.T: a copy
    return sd


def _as_numpy(name, value):
    """A numpy array from an array or a torch tensor (detached, moved to the CPU)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"state_dict[{name!r}]: expected a numeric array, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise ValueError(f"state_dict[{name!r}]: expected finite values, found NaN or inf")
    return arr


_LAYOUT = ("torch.nn.Sequential(Linear, [LayerNorm | BatchNorm1d], Act, [Dropout], ..., Linear).state_dict()")


def _read_modules(state_dict):
    """{index: {tensor name: array}} of a torch-style state dict, checked for its key names."""
    if not hasattr(state_dict, "items"):
        raise TypeError("state_dict: expected a mapping like {'0.weight': array, ...}, "
                        f"got {type(state_dict).__name__}")
    modules = {}
    for key, value in state_dict.items():
        m = _KEY.match(str(key))
        if m is None:
            raise ValueError(f"state_dict: unexpected key {key!r}; expected '<i>.weight', '<i>.bias' (and a "
                             f"BatchNorm1d's '<i>.running_mean', ...) as named by {_LAYOUT}")
        modules.setdefault(int(m.group(1)), {})[m.group(2)] = _as_numpy(key, value)
    return modules


def _classify(i, t):
    """"linear", "layer" or "batch" for the tensors ``t`` of module ``i``; ValueError otherwise."""
    names = set(t)
    if "weight" in t and t["weight"].ndim == 2:
        if names - {"weight", "bias"}:
            raise ValueError(f"state_dict: module {i} has a 2-D weight (a Linear) and also "
                             f"{sorted(names - {'weight', 'bias'})}")
        return "linear"
    if names & set(_BN_BUFFERS):
        need = {"weight", "bias", "running_mean", "running_var"}
        if not need <= names:
            raise ValueError(f"state_dict: module {i} looks like a BatchNorm1d but lacks {sorted(need - names)} "
                             "(fastbp's batch norm has gamma and beta and tracks running statistics)")
        return "batch"
    if names == {"weight", "bias"} and t["weight"].ndim == 1:
        return "layer"
    if "weight" not in t:
        raise ValueError(f"state_dict: module {i} has {sorted(names)} but no weight")
    raise ValueError(f"state_dict: module {i} has {sorted(names)} with a weight of shape {t['weight'].shape}; "
                     "expected a Linear (2-D weight), a LayerNorm (1-D weight and bias) or a BatchNorm1d")


def _structure(modules):
    """(linear indices, per hidden layer (norm kind or None, norm index, has Dropout)) from the
    modules of a state dict, checked against the Sequential's layout."""
    kinds = {i: _classify(i, t) for i, t in sorted(modules.items())}
    linears = [i for i, k in kinds.items() if k == "linear"]
    if not linears:
        raise ValueError("state_dict: no Linear ('<i>.weight' of 2 dimensions) found")
    if linears[0] != 0:
        raise ValueError(f"state_dict: the first module (index 0) must be a Linear; Linear layers at indices {linears}")
    norms = {i: k for i, k in kinds.items() if k != "linear"}
    hidden = []
    for a, b in zip(linears[:-1], linears[1:]):
        inside = [i for i in norms if a < i < b]
        norm = norms[inside[0]] if inside else None
        if len(inside) > 1 or (inside and inside[0] != a + 1):
            raise ValueError(f"state_dict: between the Linear layers at indices {a} and {b}, a norm module may only "
                             f"sit right after the Linear (index {a + 1}), once; got norm modules at {inside}")
        between = b - a - 1 - len(inside)           # parameter-free modules: the activation, then a Dropout
        if between not in (1, 2):
            raise ValueError(f"state_dict: Linear layers at indices {a} and {b} leave {between} parameter-free "
                             f"module{'s' if between != 1 else ''} between them; expected the activation and at most "
                             f"a Dropout after it, as in {_LAYOUT} (Linear layers at indices {linears})")
        hidden.append((norm, inside[0] if inside else None, between == 2))
    after = [i for i in norms if i > linears[-1]]
    if after:
        raise ValueError(f"state_dict: norm module at index {after[0]} after the last Linear ({linears[-1]}); "
                         "the output layer has no norm")
    return linears, hidden


def _per_hidden(value, n):
    """An MLP per-layer argument as a list of n, or None if it has the wrong form (MLP reports it)."""
    if isinstance(value, (list, tuple)):
        return list(value) if len(value) == n else None
    return [value] * n


def _compact(values):
    """One value when every hidden layer has the same, else the list."""
    return values[0] if values and all(v == values[0] for v in values) else list(values)


def parse_state_dict(state_dict, **kwargs):
    """(MLP arguments, [(W (in, out), b or None) per layer]) from a torch-style state dict.

    ``state_dict`` maps names as ``Sequential(Linear, [LayerNorm | BatchNorm1d], Act, [Dropout],
    ..., Linear).state_dict()`` gives them (see ``to_state_dict``) to numpy arrays or torch
    tensors. The sizes come from the Linear weights (2-D), the norms from the modules after them
    (a 1-D weight and bias: LayerNorm; with running statistics: BatchNorm1d), and where a Dropout
    module sits from the gaps in the indices (an activation module, then a Dropout, hold
    nothing). Every other MLP argument (activation, output, loss, dtype, ...) is taken from
    ``kwargs`` with MLP's defaults, except that dtype defaults to the weights' dtype when they
    are float32 or float64, and norm to what the dict holds. State dicts hold no dropout rates:
    where the dict has a Dropout module, ``dropout`` must give that layer a rate > 0, and a rate
    > 0 needs a Dropout module. Either every Linear has a bias or none. ``MLP.from_state_dict``
    builds the model and loads every tensor (``load_state_dict``).
    """
    modules = _read_modules(state_dict)
    linears, hidden = _structure(modules)
    sizes = []
    for j, i in enumerate(linears):
        W = modules[i]["weight"]
        if sizes and W.shape[1] != sizes[-1]:
            raise ValueError(f"state_dict['{i}.weight']: shape {W.shape} takes {W.shape[1]} inputs but the layer "
                             f"before has {sizes[-1]} outputs")
        if not sizes:
            sizes.append(W.shape[1])
        sizes.append(W.shape[0])
        b = modules[i].get("bias")
        if b is not None and b.shape != (W.shape[0],):
            raise ValueError(f"state_dict['{i}.bias']: expected shape ({W.shape[0]},), got {b.shape}")
        if j < len(hidden) and hidden[j][1] is not None:
            n = hidden[j][1]
            for name, t in modules[n].items():
                expected = () if name == "num_batches_tracked" else (W.shape[0],)
                if t.shape != expected:
                    raise ValueError(f"state_dict['{n}.{name}']: expected shape {expected} (the norm of the Linear "
                                     f"at index {i}), got {t.shape}")
    with_bias = [("bias" in modules[i]) for i in linears]
    if any(with_bias) and not all(with_bias):
        raise ValueError(f"state_dict: either every Linear has a bias or none; biases at "
                         f"{[i for i, h in zip(linears, with_bias) if h]}, weights at {linears}")
    has_bias = all(with_bias)
    if "sizes" in kwargs:
        if list(kwargs.pop("sizes")) != sizes:
            raise ValueError(f"sizes: the state dict's weights give sizes {sizes}")
    if "bias" in kwargs and bool(kwargs["bias"]) != has_bias:
        raise ValueError(f"bias: the state dict {'has' if has_bias else 'has no'} biases, but bias={kwargs['bias']!r}")
    kwargs["bias"] = has_bias
    n_hidden = len(hidden)
    norms = [h[0] for h in hidden]
    if "norm" in kwargs:
        given = _per_hidden(kwargs["norm"], n_hidden)
        if given is not None and [None if g == "none" else g for g in given] != norms:
            raise ValueError(f"norm: the state dict holds norms {norms} (per hidden layer), "
                             f"but norm={kwargs['norm']!r}")
    else:
        kwargs["norm"] = _compact(norms) if n_hidden else None
    rates = _per_hidden(kwargs.get("dropout", 0.0), n_hidden)
    if rates is not None:
        for j, ((_, _, slot), r) in enumerate(zip(hidden, rates)):
            try:
                on = float(r) > 0
            except (TypeError, ValueError):
                break                               # not a number: MLP reports it
            if slot and not on:
                raise ValueError(f"dropout: the state dict has a Dropout module after hidden layer {j} (between the "
                                 f"Linear layers at indices {linears[j]} and {linears[j + 1]}), but its rate is 0; "
                                 "pass the rates (a state dict holds none), e.g. dropout=0.1 or one per hidden layer")
            if on and not slot:
                raise ValueError(f"dropout: hidden layer {j} has rate {r}, but the state dict has no Dropout module "
                                 f"after it (the Linear layers at indices {linears[j]} and {linears[j + 1]})")
    if "dtype" not in kwargs:
        w0 = modules[0]["weight"].dtype
        kwargs["dtype"] = w0.name if w0 in (np.float32, np.float64) else "float32"
    kwargs["sizes"] = sizes
    return kwargs, [(modules[i]["weight"].T, modules[i].get("bias")) for i in linears]


def load_state_dict(model, state_dict):
    """Copy every tensor of a torch-style state dict into ``model`` (in place), as torch's
    ``load_state_dict(strict=True)``: the keys must be exactly those of ``to_state_dict(model)``,
    with the same shapes. Linear weights are transposed into W; a BatchNorm1d's
    ``num_batches_tracked`` sets ``model.updates`` (the largest, should they differ). Checks
    everything before changing anything; returns the model."""
    modules = _read_modules(state_dict)
    given = {f"{i}.{name}": t for i, tensors in modules.items() for name, t in tensors.items()}
    entries = _entries(model)
    expected = [key for key, _, _ in entries]
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in set(expected)]
    if missing or unexpected:
        raise ValueError(f"state_dict: does not fit {model!r} (see to_state_dict for its keys): "
                         + "; ".join(s for s in (f"missing {missing}" if missing else "",
                                                  f"unexpected {unexpected}" if unexpected else "") if s))
    updates = []
    for key, view, transposed in entries:
        t = given[key]
        shape = () if view is None else (view.T.shape if transposed else view.shape)
        if t.shape != shape:
            raise ValueError(f"state_dict[{key!r}]: expected shape {shape}, got {t.shape}")
        if view is None:
            count = float(t)
            if count < 0 or count != int(count):
                raise ValueError(f"state_dict[{key!r}]: expected a whole count >= 0, got {t}")
            updates.append(int(count))
    for key, view, transposed in entries:
        if view is not None:
            view[...] = given[key].T if transposed else given[key]
    if updates:
        model.updates = max(updates)
    return model


# ---- ONNX ---------------------------------------------------------------------------------------
def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("to_onnx needs the onnx package: pip install 'fastbp[onnx]'") from None
    return onnx


class _Graph:
    """Nodes and initializers of the graph being built, with fresh tensor names."""

    def __init__(self, helper, numpy_helper, dtype, opset):
        self.helper, self.numpy_helper = helper, numpy_helper
        self.dtype, self.opset = np.dtype(dtype), opset
        self.nodes, self.inits = [], []
        self._consts = {}
        self._count = 0

    def fresh(self, stem):
        self._count += 1
        return f"{stem}_{self._count}"

    def op(self, op_type, inputs, stem, **attrs):
        """Add one node; returns the name of its output."""
        out = self.fresh(stem)
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def tensor(self, name, array):
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(array, dtype=self.dtype), name))
        return name

    def const(self, value):
        """A scalar initializer of the model's dtype (one per value)."""
        value = float(self.dtype.type(value))
        if value not in self._consts:
            self._consts[value] = self.tensor(f"c{len(self._consts)}", np.array(value))
        return self._consts[value]

    # -- pieces used by several activations (torch's formulas, constants in the model's dtype) --
    def where_positive(self, x, pos, neg, stem):
        """pos where x > 0, else neg (both tensor names)."""
        cond = self.op("Greater", [x, self.const(0.0)], stem + "_pos")
        return self.op("Where", [cond, pos, neg], stem)

    def expm1(self, x, stem):
        return self.op("Sub", [self.op("Exp", [x], stem + "_exp"), self.const(1.0)], stem)

    def softplus(self, x, stem):
        """torch's Softplus (beta 1, threshold 20): x above the threshold, log(1 + exp(x)) below.
        float32: the Softplus operator; float64, which onnxruntime has no Softplus kernel for,
        elementary operators."""
        if self.dtype == np.float32:
            return self.op("Softplus", [x], stem)
        th = self.const(SOFTPLUS_THRESHOLD)
        e = self.op("Exp", [self.op("Min", [x, th], stem + "_min")], stem + "_exp")
        low = self.op("Log", [self.op("Add", [e, self.const(1.0)], stem + "_1p")], stem + "_log")
        cond = self.op("Greater", [x, th], stem + "_above")
        return self.op("Where", [cond, x, low], stem)


def _activation(g, name, x, l):
    """The hidden activation ``name`` of layer l applied to tensor ``x``; returns its output."""
    stem = f"{name}{l}"
    f32 = g.dtype == np.float32
    if name == "linear":
        return x
    if name in ("sigmoid", "tanh", "relu"):
        return g.op({"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}[name], [x], stem)
    if name == "leaky_relu":
        if f32:
            return g.op("LeakyRelu", [x], stem, alpha=LEAKY_SLOPE)
        return g.where_positive(x, x, g.op("Mul", [x, g.const(LEAKY_SLOPE)], stem + "_neg"), stem)
    if name == "elu":
        if f32:
            return g.op("Elu", [x], stem, alpha=1.0)
        return g.where_positive(x, x, g.expm1(x, stem + "_neg"), stem)
    if name == "selu":
        if f32:
            return g.op("Selu", [x], stem, alpha=SELU_ALPHA, gamma=SELU_SCALE)
        scale = g.const(SELU_SCALE)
        negcoef = g.const(np.float64(SELU_ALPHA) * np.float64(SELU_SCALE))     # as the kernels round it
        pos = g.op("Mul", [x, scale], stem + "_scaled")
        neg = g.op("Mul", [g.expm1(x, stem + "_em1"), negcoef], stem + "_neg")
        return g.where_positive(x, pos, neg, stem)
    if name == "gelu":
        if f32 and g.opset >= GELU_OPSET:
            return g.op("Gelu", [x], stem)
        # x/2 (1 + erf(x/sqrt(2)))
        erf = g.op("Erf", [g.op("Mul", [x, g.const(0.7071067811865476)], stem + "_scaled")], stem + "_erf")
        half_x = g.op("Mul", [x, g.const(0.5)], stem + "_half")
        return g.op("Mul", [half_x, g.op("Add", [erf, g.const(1.0)], stem + "_1p")], stem)
    if name == "gelu_tanh":
        if f32 and g.opset >= GELU_OPSET:
            return g.op("Gelu", [x], stem, approximate="tanh")
        # x/2 (1 + tanh(k (x + c x^3))) = x sigmoid(2k (x + c x^3)), as the kernels compute it
        x3 = g.op("Mul", [g.op("Mul", [x, x], stem + "_sq"), x], stem + "_cube")
        inner = g.op("Add", [x, g.op("Mul", [x3, g.const(GELU_TANH_C)], stem + "_c")], stem + "_inner")
        s = g.op("Sigmoid", [g.op("Mul", [inner, g.const(2.0 * GELU_TANH_K)], stem + "_2k")], stem + "_sigmoid")
        return g.op("Mul", [x, s], stem)
    if name == "silu":
        return g.op("Mul", [x, g.op("Sigmoid", [x], stem + "_sigmoid")], stem)
    if name == "softplus":
        return g.softplus(x, stem)
    if name == "mish":
        if f32 and g.opset >= MISH_OPSET:
            return g.op("Mish", [x], stem)
        t = g.op("Tanh", [g.softplus(x, stem + "_softplus")], stem + "_tanh")
        return g.op("Mul", [x, t], stem)
    raise ValueError(f"to_onnx: no ONNX spelling for the activation {name!r}")


def _norm(g, layer, x, l):
    """Layer l's norm (inference) applied to ``x``; returns its output."""
    gamma = g.tensor(f"gamma{l}", layer.gamma)
    beta = g.tensor(f"beta{l}", layer.beta)
    if layer.norm == "batch":
        mean = g.tensor(f"running_mean{l}", layer.running_mean)
        var = g.tensor(f"running_var{l}", layer.running_var)
        return g.op("BatchNormalization", [x, gamma, beta, mean, var], f"batchnorm{l}", epsilon=NORM_EPS)
    if g.opset >= LAYER_NORM_OPSET:
        return g.op("LayerNormalization", [x, gamma, beta], f"layernorm{l}", axis=-1, epsilon=NORM_EPS)
    # opsets 13-16: (x - mean) / sqrt(var + eps) * gamma + beta over the last axis (ReduceMean's
    # axes are an attribute up to opset 17)
    stem = f"layernorm{l}"
    mean = g.op("ReduceMean", [x], stem + "_mean", axes=[-1], keepdims=1)
    d = g.op("Sub", [x, mean], stem + "_centred")
    var = g.op("ReduceMean", [g.op("Mul", [d, d], stem + "_sq")], stem + "_var", axes=[-1], keepdims=1)
    std = g.op("Sqrt", [g.op("Add", [var, g.const(NORM_EPS)], stem + "_eps")], stem + "_std")
    xhat = g.op("Div", [d, std], stem + "_xhat")
    return g.op("Add", [g.op("Mul", [xhat, gamma], stem + "_gamma"), beta], stem)


OUTPUT_DESCRIPTION = {"softmax": "class probabilities", "sigmoid": "probabilities", "linear": "values",
                      "exp": "rates (exp of the last layer)"}


def build_onnx(model, opset=None):
    """The model as an ``onnx.ModelProto`` (checked with ``onnx.checker``); see ``to_onnx``."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    from ._version import __version__
    from .validation import check_int

    max_opset = onnx.defs.onnx_opset_version()
    opset = DEFAULT_OPSET if opset is None else check_int("opset", opset, 1)
    if not MIN_OPSET <= opset <= max_opset:
        raise ValueError(f"opset: expected {MIN_OPSET} <= opset <= {max_opset} (the newest this onnx knows), "
                         f"got {opset}")
    elem = TensorProto.FLOAT if model.dtype == np.float32 else TensorProto.DOUBLE
    g = _Graph(helper, numpy_helper, model.dtype, opset)
    x = "input"
    last = len(model.layers) - 1
    for l, layer in enumerate(model.layers):
        W = g.tensor(f"W{l}", layer.W)
        if layer.b is not None:
            x = g.op("Gemm", [x, W, g.tensor(f"b{l}", layer.b)], f"dense{l}")
        else:
            x = g.op("MatMul", [x, W], f"dense{l}")
        if l < last:
            if layer.norm is not None:
                x = _norm(g, layer, x, l)
            x = _activation(g, layer.activation, x, l)        # dropout: none at inference
        elif model.output == "softmax":
            x = g.op("Softmax", [x], f"softmax{l}", axis=-1)
        elif model.output == "sigmoid":
            x = g.op("Sigmoid", [x], f"sigmoid{l}")
        elif model.output == "exp":
            x = g.op("Exp", [x], f"exp{l}")
    # The last node writes the graph output (a linear net ends in the Gemm).
    g.nodes[-1].output[0] = "output"
    graph = helper.make_graph(
        g.nodes, "fastbp_mlp",
        [helper.make_tensor_value_info("input", elem, ["N", model.sizes[0]])],
        [helper.make_tensor_value_info("output", elem, ["N", model.sizes[-1]])],
        initializer=g.inits)
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="fastbp", producer_version=__version__,
                              doc_string=f"fastbp {model!r}; output: {OUTPUT_DESCRIPTION[model.output]}")
    # The oldest IR version that carries this opset, so older runtimes can load the file.
    proto.ir_version = helper.find_min_ir_version_for(opsets)
    helper.set_model_props(proto, {"fastbp_config": json.dumps(model.config())})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def to_onnx(model, path, opset=None):
    """Write the model to ``path`` as an ONNX file and return the ``onnx.ModelProto``.

    Graph: input "input" (N, in) -> per layer Gemm (MatMul if bias=False); after each hidden
    layer its norm and activation -> "output" (N, out), which is what ``model.predict`` returns:
    softmax probabilities, sigmoid probabilities, exp rates or linear values. Tensors are float32
    or float64 as the model. ``opset`` defaults to DEFAULT_OPSET (17); 13 up to the installed
    onnx's newest are accepted. The graph passes ``onnx.checker.check_model(full_check=True)``
    before it is written. ``path=None`` only builds and returns the ModelProto. The file is
    replaced atomically.

    Spelling (torch's formulas, as the kernels compute them):

    - norm="layer": LayerNormalization (axis -1, epsilon 1e-5) from opset 17, below it
      ReduceMean/Sub/Mul/Sqrt/Div in its place; norm="batch": BatchNormalization in inference
      mode with the running mean and variance (epsilon 1e-5). Dropout: nothing (inference).
    - relu, sigmoid, tanh: Relu, Sigmoid, Tanh; silu: x * Sigmoid(x); output exp: Exp.
    - gelu: x/2 (1 + Erf(x/sqrt 2)). gelu_tanh: x * Sigmoid(2k (x + 0.044715 x^3)),
      k = sqrt(2/pi), which equals torch's x/2 (1 + tanh(k (...))). mish: x * Tanh(softplus(x)).
    - float32 models use the dedicated operators: LeakyRelu (alpha 0.01), Elu (alpha 1), Selu
      (torch's alpha and scale), Softplus; from opset 18 Mish; from opset 20 Gelu (approximate
      "none" or "tanh"). float64 models spell every activation in elementary operators
      (Greater/Where/Exp/Log/Mul/Sigmoid/Tanh/Erf with double constants), since ONNX attributes
      are float32 and onnxruntime has no double kernels for most of those operators (its double
      Gelu and Mish lose about 1e-8); softplus keeps torch's threshold (x above 20).

    onnxruntime has no double kernel for Erf, so it cannot run a float64 graph of a model with
    gelu; other runtimes (and ``onnx.reference``) can. Export a float32 copy for onnxruntime.
    """
    proto = build_onnx(model, opset)
    if path is not None:
        atomic_write(path, [proto.SerializeToString()])
    return proto
