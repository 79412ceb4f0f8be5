"""MLP.to_onnx: a standard ONNX graph that onnx.checker accepts and onnxruntime runs to model.predict."""
import itertools

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import fastbp                                             # noqa: E402
from fastbp import interop                                # noqa: E402

HIDDEN = ["linear", "sigmoid", "tanh", "relu"]
OUTPUT = ["linear", "sigmoid", "softmax"]
# onnxruntime against model.predict: 1e-5 in float32 (the contract), rounding level in float64.
TOL = {"float32": 1e-5, "float64": 1e-12}


def random_model(activation, output, bias, dtype, sizes=(5, 9, 7, 4), seed=0):
    """A model with non-trivial weights and biases (init leaves the biases at zero)."""
    m = fastbp.MLP(list(sizes), activation=activation, output=output, bias=bias, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 1)
    m.params[...] = rng.standard_normal(m.n_params) * 0.8
    return m


def run(path, X):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {sess.get_inputs()[0].name: X})
    return out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation,output,bias",
                         list(itertools.product(HIDDEN, OUTPUT, [True, False])))
def test_onnxruntime_matches_predict(tmp_path, activation, output, bias, dtype):
    m = random_model(activation, output, bias, dtype)
    path = tmp_path / "m.onnx"
    proto = m.to_onnx(path)
    onnx.checker.check_model(str(path), full_check=True)              # the file as written
    X = np.random.default_rng(2).standard_normal((300, 5)).astype(dtype) * 2
    got = run(path, X)
    expected = m.predict(X)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=TOL[dtype], atol=TOL[dtype])
    # Any batch size: the batch dimension is symbolic.
    np.testing.assert_allclose(run(path, X[:1]), expected[:1], rtol=TOL[dtype], atol=TOL[dtype])
    # The graph is the MLP spelled in standard operators, one dense op per layer.
    ops = [n.op_type for n in proto.graph.node]
    dense = "Gemm" if bias else "MatMul"
    assert ops.count(dense) == len(m.layers) and set(ops) <= {"Gemm", "MatMul", "Relu", "Sigmoid", "Tanh", "Softmax"}
    act_op = {"linear": None, "sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}[activation]
    out_op = {"linear": None, "sigmoid": "Sigmoid", "softmax": "Softmax"}[output]
    expected_ops = []
    for l in range(len(m.layers)):
        expected_ops.append(dense)
        op = out_op if l == len(m.layers) - 1 else act_op
        if op is not None:
            expected_ops.append(op)
    assert ops == expected_ops


def test_opset_is_stated_and_selectable(tmp_path):
    m = random_model("relu", "softmax", True, "float32")
    proto = m.to_onnx(tmp_path / "default.onnx")
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", interop.DEFAULT_OPSET)]
    loaded = onnx.load(str(tmp_path / "default.onnx"))
    assert loaded.opset_import[0].version == interop.DEFAULT_OPSET
    assert loaded.producer_name == "fastbp"
    X = np.random.default_rng(3).standard_normal((20, 5)).astype(np.float32)
    newest = min(onnx.defs.onnx_opset_version(), 21)        # an onnxruntime of this age runs 21
    for opset in sorted({interop.MIN_OPSET, newest}):
        p = tmp_path / f"o{opset}.onnx"
        proto = m.to_onnx(p, opset=opset)
        assert proto.opset_import[0].version == opset
        np.testing.assert_allclose(run(p, X), m.predict(X), rtol=1e-5, atol=1e-5)
    for bad in (interop.MIN_OPSET - 1, onnx.defs.onnx_opset_version() + 1):
        with pytest.raises(ValueError, match="opset"):
            m.to_onnx(tmp_path / "bad.onnx", opset=bad)
    assert not (tmp_path / "bad.onnx").exists()


def test_config_travels_and_path_none(tmp_path):
    m = random_model("tanh", "sigmoid", True, "float64", sizes=(3, 4, 2))
    proto = m.to_onnx(None)                                 # build only, write nothing
    assert list(tmp_path.iterdir()) == []
    props = {p.key: p.value for p in proto.metadata_props}
    import json
    assert json.loads(props["fastbp_config"]) == json.loads(json.dumps(m.config()))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sklearn_estimator_network_exports(tmp_path):
    pytest.importorskip("sklearn")
    from fastbp.sklearn import MLPClassifier
    X = np.random.default_rng(4).standard_normal((120, 4))
    y = np.array(["a", "b", "c"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    clf = MLPClassifier(hidden_layer_sizes=(6,), max_iter=30, random_state=0).fit(X, y)
    clf.model_.to_onnx(tmp_path / "clf.onnx")
    np.testing.assert_allclose(run(tmp_path / "clf.onnx", X), clf.predict_proba(X), rtol=1e-12, atol=1e-12)
