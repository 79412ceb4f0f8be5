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


# ---- the layers of the second contract: activations, norms, dropout, exp -------------------------
ALL_HIDDEN = ["linear", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu", "gelu_tanh", "silu",
              "softplus", "mish"]
NORMS = [None, "layer", "batch"]
# float64 graphs spell the activations in elementary operators with double constants: rounding level
TOL_NEW = {"float32": 1e-5, "float64": 1e-10}


def featured_model(activation, norm, dtype, output="softmax", sizes=(5, 9, 7, 4), dropout=0.25, seed=0):
    """A model with non-trivial weights, biases, gamma, beta and running statistics."""
    n_hidden = len(sizes) - 2
    m = fastbp.MLP(list(sizes), activation=activation, norm=norm, dropout=dropout, output=output, dtype=dtype,
                   seed=seed)
    rng = np.random.default_rng(seed + 1)
    m.params[...] = rng.standard_normal(m.n_params) * 0.8
    for layer in m.layers[:n_hidden]:
        if layer.running_mean is not None:
            layer.running_mean[...] = rng.standard_normal(layer.running_mean.size)
            layer.running_var[...] = rng.uniform(0.2, 3.0, layer.running_var.size)
    return m


def inputs(dtype, n=300, d=5, seed=2):
    """Rows at every scale the activations care about: near 0, moderate, and far enough out that
    softplus passes its threshold (20) and the sigmoids saturate."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * 2
    X[: n // 6] *= 12
    X[n // 6: n // 3] *= 0.01
    return X.astype(dtype)


def erf_double_evaluator(proto):
    """onnx's reference evaluator with Erf in double precision (its own computes in float32), and
    BatchNormalization with one output in inference mode as the operator's spec says (its
    version-9 kernel trains)."""
    from math import erf

    from onnx.reference import ReferenceEvaluator
    from onnx.reference.op_run import OpRun
    from onnx.reference.ops._op import OpRunUnaryNum

    class Erf(OpRunUnaryNum):
        def _run(self, x):
            return (np.vectorize(erf, otypes=[x.dtype])(x),)

    class BatchNormalization(OpRun):
        def _run(self, x, scale, bias, mean, var, epsilon=None, momentum=None, training_mode=None):
            return ((x - mean) / np.sqrt(var + x.dtype.type(epsilon)) * scale + bias,)

    return ReferenceEvaluator(proto, new_ops=[Erf, BatchNormalization])


def check_against_predict(m, proto, X, tol):
    expected = m.predict(X)
    if m.dtype == np.float64 and "Erf" in {n.op_type for n in proto.graph.node}:
        # onnxruntime has no double Erf kernel: it refuses the graph; the graph itself is checked
        # with the reference evaluator
        with pytest.raises(Exception, match="Erf"):
            ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        got = erf_double_evaluator(proto).run(None, {"input": X})[0]
    else:
        sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        got = sess.run(None, {"input": X})[0]
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("activation", ALL_HIDDEN)
def test_every_activation_and_norm_matches_predict(tmp_path, activation, norm, dtype):
    m = featured_model(activation, norm, dtype)
    path = tmp_path / "m.onnx"
    proto = m.to_onnx(path)
    onnx.checker.check_model(str(path), full_check=True)
    check_against_predict(m, proto, inputs(dtype), TOL_NEW[dtype])
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Gemm") == len(m.layers)
    assert ops.count("LayerNormalization") == (2 if norm == "layer" else 0)       # opset 17
    assert ops.count("BatchNormalization") == (2 if norm == "batch" else 0)
    assert "Dropout" not in ops                                                   # inference
    if norm == "batch":
        names = {i.name for i in proto.graph.initializer}
        assert {"running_mean0", "running_var0", "running_mean1", "running_var1"} <= names
    dedicated = {"leaky_relu": "LeakyRelu", "elu": "Elu", "selu": "Selu", "softplus": "Softplus"}
    if activation in dedicated:
        assert (dedicated[activation] in ops) == (dtype == "float32")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_per_layer_activations_norms_and_every_opset(dtype):
    # one hidden layer of each activation, the norms in turn, dropout on some: every spelling of
    # every opset (13-16 decompose layer norm; 18 has Mish; 20 has Gelu)
    acts = ALL_HIDDEN
    norms = [NORMS[i % 3] for i in range(len(acts))]
    sizes = [6] + [5 + (i % 4) for i in range(len(acts))] + [3]
    m = featured_model(acts, norms, dtype, sizes=sizes, dropout=[0.1 * (i % 2) for i in range(len(acts))],
                       output="linear", seed=3)
    m.params[...] *= 0.8
    X = inputs(dtype, d=6, seed=4)
    newest = min(onnx.defs.onnx_opset_version(), 21)
    for opset in sorted({interop.MIN_OPSET, 16, 17, 18, 20, newest}):
        proto = m.to_onnx(None, opset=opset)
        ops = {n.op_type for n in proto.graph.node}
        assert ("LayerNormalization" in ops) == (opset >= 17)
        if dtype == "float32":
            assert ("Mish" in ops) == (opset >= 18) and ("Gelu" in ops) == (opset >= 20)
        else:
            assert not ops & {"Mish", "Gelu", "Elu", "Selu", "Softplus", "LeakyRelu"}
        check_against_predict(m, proto, X, TOL_NEW[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_exp_output_gives_the_rates(dtype):
    m = featured_model(["silu", "elu"], ["layer", None], dtype, output="exp")
    m.params[...] *= 0.5
    assert m.loss == "poisson"
    proto = m.to_onnx(None)
    assert proto.graph.node[-1].op_type == "Exp" and proto.graph.node[-1].output[0] == "output"
    assert "rates" in proto.doc_string
    check_against_predict(m, proto, inputs(dtype) * 0.3, TOL_NEW[dtype])


def test_a_trained_net_with_batch_norm_and_dropout_exports_its_running_statistics(tmp_path):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((256, 5)) * 3 + 1
    y = (X[:, 0] + X[:, 1] > 2).astype(np.int64) + (X[:, 2] > 1)
    m = fastbp.MLP([5, 16, 8, 3], activation=["gelu_tanh", "mish"], norm=["batch", "layer"], dropout=[0.2, 0.1],
                   l2=1e-4, seed=1)
    m.fit(X.astype(np.float32), y, epochs=3, batch_size=32, verbose=0)
    assert m.updates == 24 and not np.allclose(m.layers[0].running_var, 1)
    path = tmp_path / "trained.onnx"
    m.to_onnx(path)
    np.testing.assert_allclose(run(path, X.astype(np.float32)), m.predict(X), rtol=1e-5, atol=1e-5)
