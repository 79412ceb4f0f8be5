"""MLP.to_state_dict / MLP.from_state_dict: torch nn.Sequential naming, as plain numpy arrays.

The numpy tests run everywhere; the ones that load into torch skip where torch is absent.
"""
import itertools

import numpy as np
import pytest

import fastbp

HIDDEN = ["linear", "sigmoid", "tanh", "relu"]
OUTPUT = ["linear", "sigmoid", "softmax"]


def random_model(sizes=(4, 8, 6, 3), activation="tanh", output="softmax", bias=True, dtype="float64", seed=0):
    m = fastbp.MLP(list(sizes), activation=activation, output=output, bias=bias, dtype=dtype, seed=seed)
    m.params[...] = np.random.default_rng(seed + 1).standard_normal(m.n_params)
    return m


def expected_names_and_shapes(sizes, bias):
    """What torch.nn.Sequential(Linear, Act, Linear, Act, ..., Linear).state_dict() holds, written
    out by hand: Linear j sits at module index 2*j (an activation module after each hidden Linear,
    nn.Identity for "linear"); its weight is (out, in); activation modules hold no parameters."""
    out = []
    for j, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        out.append((f"{2 * j}.weight", (n_out, n_in)))
        if bias:
            out.append((f"{2 * j}.bias", (n_out,)))
    return out


# ---- plain numpy: always run --------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("sizes", [(4, 3), (4, 8, 3), (5, 8, 6, 7, 2)])
def test_names_and_shapes_are_torch_sequentials(sizes, bias):
    sd = random_model(sizes, bias=bias).to_state_dict()
    assert [(k, v.shape) for k, v in sd.items()] == expected_names_and_shapes(sizes, bias)
    assert all(type(v) is np.ndarray and v.flags.c_contiguous for v in sd.values())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bias", [True, False])
def test_round_trip_is_exact(bias, dtype):
    m = random_model(activation="relu", output="sigmoid", bias=bias, dtype=dtype)
    sd = m.to_state_dict()
    assert all(v.dtype == m.dtype for v in sd.values())
    back = fastbp.MLP.from_state_dict(sd, activation="relu", output="sigmoid")
    assert back.sizes == m.sizes and back.bias == bias and back.dtype == m.dtype
    np.testing.assert_array_equal(back.params, m.params)
    assert back.config() == {**m.config(), "seed": back.seed}
    X = np.random.default_rng(5).standard_normal((50, 4)).astype(dtype)
    np.testing.assert_array_equal(back.predict(X), m.predict(X))


def test_state_dict_is_a_copy():
    m = random_model()
    before = m.params.copy()
    sd = m.to_state_dict()
    for v in sd.values():
        v[...] = 0
    np.testing.assert_array_equal(m.params, before)
    m.params[...] = 1
    assert not np.any(sd["0.weight"] == 1)


@pytest.mark.parametrize("activation,output", list(itertools.product(HIDDEN, OUTPUT)))
def test_sequential_semantics_in_numpy(activation, output):
    # The forward pass a torch Sequential computes from these arrays (x @ weight.T + bias, the
    # activation module between Linears, the output activation applied by the caller) is the
    # model's prediction.
    m = random_model(activation=activation, output=output)
    sd = m.to_state_dict()
    act = {"linear": lambda z: z, "sigmoid": lambda z: 1 / (1 + np.exp(-z)), "tanh": np.tanh,
           "relu": lambda z: np.maximum(z, 0)}[activation]
    X = np.random.default_rng(6).standard_normal((40, 4))
    h = X
    n_linear = len(m.layers)
    for j in range(n_linear):
        h = h @ sd[f"{2 * j}.weight"].T + sd[f"{2 * j}.bias"]
        if j < n_linear - 1:
            h = act(h)
    if output == "softmax":
        h = np.exp(h - h.max(1, keepdims=True))
        h /= h.sum(1, keepdims=True)
    elif output == "sigmoid":
        h = 1 / (1 + np.exp(-h))
    np.testing.assert_allclose(m.predict(X), h, rtol=1e-12, atol=1e-12)


def test_from_state_dict_rejects_what_torch_would_not_produce():
    sd = random_model().to_state_dict()
    bad = {**sd, "3.weight": sd["2.weight"]}
    with pytest.raises(ValueError, match="indices"):
        fastbp.MLP.from_state_dict({k: v for k, v in bad.items() if not k.startswith("2.")})
    with pytest.raises(ValueError, match="unexpected key"):
        fastbp.MLP.from_state_dict({**sd, "net.0.weight": sd["0.weight"]})
    with pytest.raises(ValueError, match="inputs"):
        fastbp.MLP.from_state_dict({**sd, "2.weight": sd["2.weight"][:, :-1]})
    with pytest.raises(ValueError, match="bias"):
        fastbp.MLP.from_state_dict({k: v for k, v in sd.items() if k != "2.bias"})
    with pytest.raises(ValueError, match=r"\(6,\)"):
        fastbp.MLP.from_state_dict({**sd, "2.bias": sd["2.bias"][:-1]})
    with pytest.raises(ValueError, match="sizes"):
        fastbp.MLP.from_state_dict(sd, sizes=[4, 8, 3])
    with pytest.raises(TypeError):
        fastbp.MLP.from_state_dict([("0.weight", sd["0.weight"])])
    m = fastbp.MLP.from_state_dict(sd, sizes=[4, 8, 6, 3], dtype="float32")
    assert m.dtype == np.float32 and m.sizes == [4, 8, 6, 3]


# ---- with torch ---------------------------------------------------------------------------------
def torch_sequential(torch, sizes, activation, bias):
    nn = torch.nn
    module = {"linear": nn.Identity, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}[activation]
    layers = []
    for j, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if j:
            layers.append(module())
        layers.append(nn.Linear(n_in, n_out, bias=bias))
    return nn.Sequential(*layers).double()


def torch_output(torch, logits, output):
    if output == "softmax":
        return torch.softmax(logits, dim=1)
    if output == "sigmoid":
        return torch.sigmoid(logits)
    return logits


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("activation,output", list(itertools.product(HIDDEN, OUTPUT)))
def test_torch_loads_it_strictly_and_agrees(activation, output, bias):
    torch = pytest.importorskip("torch")
    sizes = [4, 8, 6, 3]
    net = torch_sequential(torch, sizes, activation, bias)
    assert [(k, tuple(v.shape)) for k, v in net.state_dict().items()] == expected_names_and_shapes(sizes, bias)
    m = random_model(sizes, activation, output, bias)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in m.to_state_dict().items()}, strict=True)
    X = np.random.default_rng(7).standard_normal((64, 4))
    with torch.no_grad():
        got = torch_output(torch, net(torch.from_numpy(X)), output).numpy()
    np.testing.assert_allclose(got, m.predict(X), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", HIDDEN)
def test_torch_trained_weights_come_back(activation):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    sizes = [5, 7, 2]
    net = torch_sequential(torch, sizes, activation, True)
    m = fastbp.MLP.from_state_dict(net.state_dict(), activation=activation, output="linear")   # tensors accepted
    assert m.dtype == np.float64 and m.sizes == sizes
    X = np.random.default_rng(8).standard_normal((30, 5))
    with torch.no_grad():
        expected = net(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(m.predict(X), expected, rtol=1e-12, atol=1e-12)
    for k, v in m.to_state_dict().items():                         # and out again, unchanged
        np.testing.assert_array_equal(v, net.state_dict()[k].numpy())
