"""MLP.to_state_dict / MLP.from_state_dict: torch nn.Sequential naming, as plain numpy arrays.

The numpy tests run everywhere; the ones that load into torch skip where torch is absent.
"""
import itertools

import numpy as np
import pytest

import fastbp
from fastbp import interop

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
    with pytest.raises(ValueError, match="indices"):
        fastbp.MLP.from_state_dict({("5" + k[1:] if k.startswith("2.") else k): v for k, v in sd.items()})
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



# ---- norms and dropout: Sequential(Linear, [LayerNorm | BatchNorm1d], Act, [Dropout], ..., Linear) --
ALL_HIDDEN = ["linear", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu", "gelu_tanh", "silu",
              "softplus", "mish"]
# (sizes, activation, norm, dropout): mixed per-layer choices, every norm and dropout placement
FEATURED = [
    ((4, 8, 6, 3), "gelu", "layer", 0.0),
    ((4, 8, 6, 3), "silu", "batch", 0.2),
    ((4, 8, 6, 3), ["mish", "elu"], ["batch", None], [0.0, 0.3]),
    ((5, 7, 6, 5, 2), ["selu", "softplus", "leaky_relu"], [None, "layer", "batch"], [0.1, 0.0, 0.5]),
    ((4, 8, 3), "gelu_tanh", None, 0.1),
    ((4, 3), "relu", None, 0.0),
]


def expected_featured_keys(sizes, bias, norms, rates):
    """The state_dict of nn.Sequential(Linear, [LayerNorm | BatchNorm1d], Act, [Dropout], ...,
    Linear), written out by hand: modules only where used, indices counted over those present."""
    out, idx = [], 0
    n_hidden = len(sizes) - 2
    for j, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        out.append((f"{idx}.weight", (n_out, n_in)))
        if bias:
            out.append((f"{idx}.bias", (n_out,)))
        idx += 1
        if j == n_hidden:
            break
        if norms[j] is not None:
            out += [(f"{idx}.weight", (n_out,)), (f"{idx}.bias", (n_out,))]
            if norms[j] == "batch":
                out += [(f"{idx}.running_mean", (n_out,)), (f"{idx}.running_var", (n_out,)),
                        (f"{idx}.num_batches_tracked", ())]
            idx += 1
        idx += 1                                   # the activation
        if rates[j]:
            idx += 1                               # Dropout
    return out


def per_layer(value, n):
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


def featured_model(sizes, activation, norm, dropout, bias=True, dtype="float64", seed=0, updates=7):
    m = fastbp.MLP(list(sizes), activation=activation, norm=norm, dropout=dropout, output="softmax", bias=bias,
                   dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 1)
    m.params[...] = rng.standard_normal(m.n_params) * 0.7
    for layer in m.layers:
        if layer.running_mean is not None:
            layer.running_mean[...] = rng.standard_normal(layer.running_mean.size)
            layer.running_var[...] = rng.uniform(0.3, 2.0, layer.running_var.size)
    m.updates = updates
    return m


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("case", range(len(FEATURED)))
def test_names_and_shapes_with_norms_and_dropout(case, bias):
    sizes, act, norm, rate = FEATURED[case]
    n_hidden = len(sizes) - 2
    m = featured_model(sizes, act, norm, rate, bias=bias)
    sd = m.to_state_dict()
    assert [(k, v.shape) for k, v in sd.items()] == expected_featured_keys(
        sizes, bias, per_layer(norm, n_hidden), per_layer(rate, n_hidden))
    for k, v in sd.items():
        assert type(v) is np.ndarray and v.flags.c_contiguous
        assert v.dtype == (np.int64 if k.endswith("num_batches_tracked") else m.dtype)
        if k.endswith("num_batches_tracked"):
            assert int(v) == m.updates == 7


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", range(len(FEATURED)))
def test_round_trip_with_norms_is_exact(case, dtype):
    sizes, act, norm, rate = FEATURED[case]
    m = featured_model(sizes, act, norm, rate, dtype=dtype)
    sd = m.to_state_dict()
    # norms come from the dict; activations and dropout rates (a state dict holds none) from kwargs
    back = fastbp.MLP.from_state_dict(sd, activation=act, dropout=rate)
    assert back.sizes == m.sizes and back.dtype == m.dtype
    assert [l.norm for l in back.layers] == [l.norm for l in m.layers]
    assert [l.dropout for l in back.layers] == [l.dropout for l in m.layers]
    np.testing.assert_array_equal(back.params, m.params)
    np.testing.assert_array_equal(back.buffers, m.buffers)
    assert back.updates == (7 if m.buffers.size else 0)
    X = np.random.default_rng(5).standard_normal((50, sizes[0])).astype(dtype)
    np.testing.assert_array_equal(back.predict(X), m.predict(X))
    for (k, v), (k2, v2) in zip(back.to_state_dict().items(), sd.items()):
        assert k == k2
        np.testing.assert_array_equal(v, v2)


def _np_activation(name, z):
    from scipy.special import erf
    sig = lambda t: 1 / (1 + np.exp(-t))                                      # noqa: E731
    softplus = lambda t: np.where(t > 20, t, np.log1p(np.exp(np.minimum(t, 20))))   # noqa: E731
    return {"linear": lambda: z, "sigmoid": lambda: sig(z), "tanh": lambda: np.tanh(z),
            "relu": lambda: np.maximum(z, 0), "leaky_relu": lambda: np.where(z > 0, z, 0.01 * z),
            "elu": lambda: np.where(z > 0, z, np.expm1(z)),
            "selu": lambda: 1.0507009873554804934193349852946 * np.where(
                z > 0, z, 1.6732632423543772848170429916717 * np.expm1(z)),
            "gelu": lambda: 0.5 * z * (1 + erf(z / np.sqrt(2))),
            "gelu_tanh": lambda: 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3))),
            "silu": lambda: z * sig(z), "softplus": lambda: softplus(z),
            "mish": lambda: z * np.tanh(softplus(z))}[name]()


@pytest.mark.parametrize("case", range(len(FEATURED)))
def test_sequential_semantics_with_norms_in_numpy(case):
    # What the Sequential computes in eval mode from these arrays (torch's documented formulas:
    # LayerNorm over each row with the biased variance, BatchNorm1d with the running statistics,
    # Dropout the identity) is the model's prediction.
    sizes, act, norm, rate = FEATURED[case]
    n_hidden = len(sizes) - 2
    m = featured_model(sizes, act, norm, rate)
    sd = m.to_state_dict()
    acts, norms = per_layer(act, n_hidden), per_layer(norm, n_hidden)
    X = np.random.default_rng(6).standard_normal((40, sizes[0])) * 2
    h, idx = X, 0
    for j in range(n_hidden + 1):
        h = h @ sd[f"{idx}.weight"].T + sd[f"{idx}.bias"]
        idx += 1
        if j == n_hidden:
            break
        if norms[j] == "layer":
            mu, var = h.mean(1, keepdims=True), h.var(1, keepdims=True)
            h = (h - mu) / np.sqrt(var + 1e-5) * sd[f"{idx}.weight"] + sd[f"{idx}.bias"]
        elif norms[j] == "batch":
            h = ((h - sd[f"{idx}.running_mean"]) / np.sqrt(sd[f"{idx}.running_var"] + 1e-5) * sd[f"{idx}.weight"]
                 + sd[f"{idx}.bias"])
        idx += norms[j] is not None
        h = _np_activation(acts[j], h)
        idx += 1 + bool(per_layer(rate, n_hidden)[j])
    h = np.exp(h - h.max(1, keepdims=True))
    h /= h.sum(1, keepdims=True)
    np.testing.assert_allclose(m.predict(X), h, rtol=1e-12, atol=1e-12)


def test_from_state_dict_reads_the_structure_and_rejects_what_does_not_fit():
    m = featured_model((4, 8, 6, 3), ["mish", "elu"], ["batch", "layer"], [0.2, 0.0])
    sd = m.to_state_dict()
    assert sorted({k.split(".")[0] for k in sd}, key=int) == ["0", "1", "4", "5", "7"]
    back = fastbp.MLP.from_state_dict(sd, activation=["mish", "elu"], dropout=[0.2, 0.0])
    assert back.norm == ["batch", "layer"] and back.updates == 7
    same = fastbp.MLP.from_state_dict(sd, activation="relu", dropout=[0.2, 0.0], norm=["batch", "layer"])
    assert same.sizes == [4, 8, 6, 3]
    # a Dropout module needs its rate, and a rate needs a Dropout module
    with pytest.raises(ValueError, match="Dropout module after hidden layer 0.*rate is 0"):
        fastbp.MLP.from_state_dict(sd)
    with pytest.raises(ValueError, match="hidden layer 1 has rate 0.1, but the state dict has no Dropout"):
        fastbp.MLP.from_state_dict(sd, dropout=[0.2, 0.1])
    with pytest.raises(ValueError, match=r"norm: the state dict holds norms \['batch', 'layer'\]"):
        fastbp.MLP.from_state_dict(sd, dropout=[0.2, 0.0], norm="layer")
    # a BatchNorm1d without its running variance; a norm after the output Linear; shapes
    with pytest.raises(ValueError, match=r"BatchNorm1d but lacks \['running_var'\]"):
        fastbp.MLP.from_state_dict({k: v for k, v in sd.items() if k != "1.running_var"}, dropout=[0.2, 0])
    with pytest.raises(ValueError, match="after the last Linear"):
        fastbp.MLP.from_state_dict({**sd, "8.weight": np.ones(3), "8.bias": np.zeros(3)}, dropout=[0.2, 0])
    with pytest.raises(ValueError, match=r"'5.weight'.*expected shape \(6,\)"):
        fastbp.MLP.from_state_dict({**sd, "5.weight": np.ones(5)}, dropout=[0.2, 0])
    with pytest.raises(ValueError, match="whole count"):
        fastbp.MLP.from_state_dict({**sd, "1.num_batches_tracked": np.array(-1)}, dropout=[0.2, 0])
    # two norms in a row, or a norm after the activation, is not the Sequential's order
    two = {**sd, "2.weight": np.ones(8), "2.bias": np.zeros(8)}
    with pytest.raises(ValueError, match="right after the Linear"):
        fastbp.MLP.from_state_dict(two, dropout=[0.2, 0])
    # load_state_dict into a model of another structure: torch's strict load, nothing changed
    other = featured_model((4, 8, 6, 3), "relu", "layer", 0.0)
    before = other.params.copy()
    with pytest.raises(ValueError, match=r"missing \['3.weight'.*unexpected \['1.running_mean'"):
        interop.load_state_dict(other, sd)
    np.testing.assert_array_equal(other.params, before)


# ---- with torch: norms, dropout, every activation -------------------------------------------------
def torch_featured(torch, sizes, activation, norm, dropout, bias=True):
    nn = torch.nn
    n_hidden = len(sizes) - 2
    acts, norms, rates = per_layer(activation, n_hidden), per_layer(norm, n_hidden), per_layer(dropout, n_hidden)
    make = {"linear": nn.Identity, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU,
            "elu": nn.ELU, "selu": nn.SELU, "gelu": nn.GELU, "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
            "silu": nn.SiLU, "softplus": nn.Softplus, "mish": nn.Mish}
    layers = []
    for j, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out, bias=bias))
        if j == n_hidden:
            break
        if norms[j] == "layer":
            layers.append(nn.LayerNorm(n_out, eps=1e-5))
        elif norms[j] == "batch":
            layers.append(nn.BatchNorm1d(n_out, eps=1e-5, momentum=0.1))
        layers.append(make[acts[j]]())
        if rates[j]:
            layers.append(nn.Dropout(rates[j]))
    return nn.Sequential(*layers).double()


@pytest.mark.parametrize("norm", [None, "layer", "batch"])
@pytest.mark.parametrize("activation", ALL_HIDDEN)
def test_torch_loads_every_activation_and_norm_strictly_and_agrees(activation, norm):
    torch = pytest.importorskip("torch")
    sizes, dropout = [4, 8, 6, 3], [0.3, 0.0]
    net = torch_featured(torch, sizes, activation, norm, dropout)
    m = featured_model(sizes, activation, norm, dropout)
    sd = m.to_state_dict()
    assert [(k, tuple(v.shape)) for k, v in net.state_dict().items()] == [(k, v.shape) for k, v in sd.items()]
    net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    net.eval()
    X = np.random.default_rng(7).standard_normal((64, 4)) * 3
    with torch.no_grad():
        got = torch.softmax(net(torch.from_numpy(X)), dim=1).numpy()
    np.testing.assert_allclose(got, m.predict(X), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", range(len(FEATURED)))
def test_torch_trained_norms_and_running_statistics_come_back(case):
    torch = pytest.importorskip("torch")
    torch.manual_seed(case)
    sizes, act, norm, rate = FEATURED[case]
    net = torch_featured(torch, sizes, act, norm, rate)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    gen = np.random.default_rng(8)
    net.train()
    for _ in range(5):                               # running statistics and gamma/beta move
        x = torch.from_numpy(gen.standard_normal((16, sizes[0])) * 2 + 1)
        loss = net(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    m = fastbp.MLP.from_state_dict(net.state_dict(), activation=act, dropout=rate, output="linear")
    assert m.dtype == np.float64 and m.sizes == list(sizes)
    assert m.updates == (5 if m.buffers.size else 0)
    X = gen.standard_normal((30, sizes[0])) * 2
    with torch.no_grad():
        expected = net(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(m.predict(X), expected, rtol=1e-10, atol=1e-10)
    for k, v in m.to_state_dict().items():                         # and out again, unchanged
        np.testing.assert_array_equal(v, net.state_dict()[k].numpy())


def test_num_batches_tracked_is_what_torch_holds_after_the_same_training_steps():
    # fastbp and torch take the same 3 SGD steps (no dropout) from the same state: params, the
    # running statistics and num_batches_tracked (fastbp: model.updates) agree.
    torch = pytest.importorskip("torch")
    sizes = [5, 8, 6, 3]
    m = featured_model(sizes, ["gelu", "tanh"], ["batch", "batch"], 0.0, updates=0)
    m.layers[0].running_var[...] = 1.0
    net = torch_featured(torch, sizes, ["gelu", "tanh"], ["batch", "batch"], 0.0)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in m.to_state_dict().items()}, strict=True)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    gen = np.random.default_rng(9)
    net.train()
    for _ in range(3):
        X = gen.standard_normal((12, 5))
        y = gen.integers(0, 3, 12)
        m.train_step(X, y, fastbp.SGD(lr=0.05))
        loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(X)), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert m.updates == 3
    for k, v in net.state_dict().items():
        ours = m.to_state_dict()[k]
        if k.endswith("num_batches_tracked"):
            assert int(ours) == int(v) == 3
        else:
            np.testing.assert_allclose(ours, v.numpy(), rtol=1e-10, atol=1e-12, err_msg=k)
