"""Interop with PyTorch (state dicts of plain numpy arrays) and ONNX (a standard inference graph).

PyTorch
    ``to_state_dict`` names the parameters as ``torch.nn.Sequential`` would for the network
    ``Sequential(Linear, Act, Linear, Act, ..., Linear)``: every hidden layer is followed by one
    activation module (``nn.Identity`` for "linear", ``nn.Sigmoid``, ``nn.Tanh``, ``nn.ReLU``), so
    the Linear layers sit at indices 0, 2, 4, ... Activation modules hold no parameters and do not
    appear in the dict. The output activation (softmax/sigmoid) is *not* a module: by torch
    convention the Sequential returns logits and the loss (``CrossEntropyLoss``,
    ``BCEWithLogitsLoss``) or the caller applies it. torch's Linear stores its weight as
    (out, in), the transpose of fastbp's W (in, out).
ONNX
    ``to_onnx`` writes one Gemm (MatMul without bias) per layer, the hidden activation after
    each hidden layer, and the output activation (Softmax over the last axis, Sigmoid) at the end,
    in the model's dtype, default opset ``DEFAULT_OPSET``; the graph passes ``onnx.checker``.
    Needs the extra ``onnx`` (``pip install 'fastbp[onnx]'``).
"""
import json
import re

import numpy as np

from .io import atomic_write

# The default ONNX opset: recent enough for Softmax over an axis (opset 13 semantics), old enough
# for any onnxruntime of the last years.
DEFAULT_OPSET = 17
MIN_OPSET = 13

# Hidden activation -> the torch module that plays its part in the Sequential.
TORCH_ACTIVATIONS = {"linear": "Identity", "sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "ReLU"}
ONNX_HIDDEN = {"linear": None, "sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}
ONNX_OUTPUT = {"linear": None, "sigmoid": "Sigmoid", "softmax": "Softmax"}

_KEY = re.compile(r"^(\d+)\.(weight|bias)$")


# ---- PyTorch ------------------------------------------------------------------------------------
def to_state_dict(model):
    """The parameters as a dict of new numpy arrays in ``torch.nn.Sequential`` naming.

    ``{"0.weight": W0.T (out, in), "0.bias": b0 (out,), "2.weight": ..., ...}`` in layer order, in
    the model's dtype (no ``.bias`` entries for a model without bias). Load it into
    ``Sequential(Linear, Act, ..., Linear)`` (see the module docstring) with
    ``net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``.
    """
    sd = {}
    for i, layer in enumerate(model.layers):
        sd[f"{2 * i}.weight"] = np.ascontiguousarray(layer.W.T)    # a copy: W.T is not C-contiguous
        if layer.b is not None:
            sd[f"{2 * i}.bias"] = layer.b.copy()
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


def parse_state_dict(state_dict, **kwargs):
    """(MLP arguments, [(W (in, out), b or None) per layer]) from a torch-style state dict.

    ``state_dict`` maps ``"<i>.weight"`` (out, in) and ``"<i>.bias"`` (out,) to numpy arrays or
    torch tensors, with i = 0, 2, 4, ... as ``Sequential(Linear, Act, ..., Linear).state_dict()``
    names them. The sizes come from the weights; every other MLP argument (activation, output,
    loss, dtype, ...) is taken from ``kwargs`` with MLP's defaults, except that dtype defaults
    to the weights' dtype when they are float32 or float64. Either every layer has a bias or none.
    ``MLP.from_state_dict`` builds the model.
    """
    if not hasattr(state_dict, "items"):
        raise TypeError("state_dict: expected a mapping like {'0.weight': array, ...}, "
                        f"got {type(state_dict).__name__}")
    weights, biases = {}, {}
    for key, value in state_dict.items():
        m = _KEY.match(str(key))
        if m is None:
            raise ValueError(f"state_dict: unexpected key {key!r}; expected '<i>.weight' and '<i>.bias' as named by "
                             "torch.nn.Sequential(Linear, Act, ..., Linear).state_dict()")
        (weights if m.group(2) == "weight" else biases)[int(m.group(1))] = _as_numpy(key, value)
    if not weights:
        raise ValueError("state_dict: no '<i>.weight' entries found")
    n_layers = len(weights)
    expected = [2 * i for i in range(n_layers)]
    if sorted(weights) != expected:
        raise ValueError(f"state_dict: Linear layers must be at indices {expected} (a Linear, then one activation "
                         f"module, ...), got weights at {sorted(weights)}")
    if biases and sorted(biases) != expected:
        raise ValueError(f"state_dict: either every Linear has a bias or none; biases at {sorted(biases)}, "
                         f"weights at {expected}")
    sizes = []
    for i in expected:
        W = weights[i]
        if W.ndim != 2:
            raise ValueError(f"state_dict['{i}.weight']: expected a 2-D (out, in) array, got shape {W.shape}")
        if sizes and W.shape[1] != sizes[-1]:
            raise ValueError(f"state_dict['{i}.weight']: shape {W.shape} takes {W.shape[1]} inputs but the layer "
                             f"before has {sizes[-1]} outputs")
        if not sizes:
            sizes.append(W.shape[1])
        sizes.append(W.shape[0])
        if biases and biases[i].shape != (W.shape[0],):
            raise ValueError(f"state_dict['{i}.bias']: expected shape ({W.shape[0]},), got {biases[i].shape}")
    if "sizes" in kwargs:
        if list(kwargs.pop("sizes")) != sizes:
            raise ValueError(f"sizes: the state dict's weights give sizes {sizes}")
    if "bias" in kwargs and bool(kwargs["bias"]) != bool(biases):
        raise ValueError(f"bias: the state dict {'has' if biases else 'has no'} biases, but bias={kwargs['bias']!r}")
    kwargs["bias"] = bool(biases)
    if "dtype" not in kwargs:
        w0 = weights[0].dtype
        kwargs["dtype"] = w0.name if w0 in (np.float32, np.float64) else "float32"
    kwargs["sizes"] = sizes
    return kwargs, [(weights[i].T, biases[i] if biases else None) for i in expected]


# ---- ONNX ---------------------------------------------------------------------------------------
def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("to_onnx needs the onnx package: pip install 'fastbp[onnx]'") from None
    return onnx


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
    nodes, inits = [], []
    x = "input"
    last = len(model.layers) - 1
    for l, layer in enumerate(model.layers):
        W = numpy_helper.from_array(np.ascontiguousarray(layer.W), f"W{l}")
        inits.append(W)
        z = f"z{l}"
        if layer.b is not None:
            inits.append(numpy_helper.from_array(layer.b.copy(), f"b{l}"))
            nodes.append(helper.make_node("Gemm", [x, f"W{l}", f"b{l}"], [z], name=f"dense{l}"))
        else:
            nodes.append(helper.make_node("MatMul", [x, f"W{l}"], [z], name=f"dense{l}"))
        op = ONNX_OUTPUT[model.output] if l == last else ONNX_HIDDEN[model.activation]
        if op is None:
            x = z
            continue
        x = f"a{l}"
        attrs = {"axis": -1} if op == "Softmax" else {}
        nodes.append(helper.make_node(op, [z], [x], name=f"{op.lower()}{l}", **attrs))
    # The last node writes the graph output; rename its output (a linear net ends in the Gemm).
    nodes[-1].output[0] = "output"
    graph = helper.make_graph(
        nodes, "fastbp_mlp",
        [helper.make_tensor_value_info("input", elem, ["N", model.sizes[0]])],
        [helper.make_tensor_value_info("output", elem, ["N", model.sizes[-1]])],
        initializer=inits)
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="fastbp", producer_version=__version__,
                              doc_string=f"fastbp {model!r}; output: "
                                         + {"softmax": "class probabilities", "sigmoid": "probabilities",
                                            "linear": "values"}[model.output])
    # The oldest IR version that carries this opset, so older runtimes can load the file.
    proto.ir_version = helper.find_min_ir_version_for(opsets)
    helper.set_model_props(proto, {"fastbp_config": json.dumps(model.config())})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def to_onnx(model, path, opset=None):
    """Write the model to ``path`` as an ONNX file and return the ``onnx.ModelProto``.

    Graph: input "input" (N, in) -> per layer Gemm (MatMul if bias=False) and the activation
    (none for linear) -> "output" (N, out), which is what ``model.predict`` returns: softmax
    probabilities, sigmoid probabilities or linear values. Tensors are float32 or float64 as the
    model. ``opset`` defaults to DEFAULT_OPSET (17); 13 up to the installed onnx's newest are
    accepted. The graph passes ``onnx.checker.check_model(full_check=True)`` before it is written.
    ``path=None`` only builds and returns the ModelProto. The file is replaced atomically.
    """
    proto = build_onnx(model, opset)
    if path is not None:
        atomic_write(path, [proto.SerializeToString()])
    return proto
