"""Hidden activations (kernels/activations.py): act_forward_slope's values and slopes against the
plain-numpy reference written from torch's formulas (tests/naive.py), by finite differences, and
against the output-based derivatives of the original activations."""
import json

import numpy as np
import pytest

import naive
from processes import finished, start_python
from fastbp.kernels import activations as A
from fastbp.kernels.jit import kernel

NAMES = list(A.HIDDEN)
DTYPES = [np.float32, np.float64]
EPS = {np.float32: np.finfo(np.float32).eps, np.float64: np.finfo(np.float64).eps}


# inline kernels are compiled into their caller: these callers are what the tests run
@kernel
def forward_slope(a, aoff, y, yoff, n, act):
    A.act_forward_slope(a, aoff, y, yoff, n, act)


@kernel
def backward_input(g, goff, y, yoff, n, act):
    """g[goff:goff+n] *= act'(y[yoff:yoff+n]) as a training step gets it: act_forward_slope on a
    copy of y (it overwrites y), then act_slope."""
    slope = y[yoff:yoff + n].copy()
    A.act_forward_slope(np.empty_like(slope), 0, slope, 0, n, act)
    A.act_slope(g, goff, slope, 0, n)


@kernel
def backward_output(g, a, rows, cols, act):
    A.act_backward(g, 0, a, 0, rows, cols, act)


@kernel
def bias_forward(z, rows, cols, params, boff, act):
    A.bias_act_forward(z, 0, rows, cols, params, boff, act)


def act(name, y):
    a = np.empty_like(y)
    forward_slope(a, 0, y.copy(), 0, y.size, A.HIDDEN.code(name))
    return a


def derivative(name, y):
    g = np.ones_like(y)
    backward_input(g, 0, y, 0, y.size, A.HIDDEN.code(name))
    return g


def points(dtype):
    """Dense in [-12, 12], then zeros, tiny values, torch's softplus threshold and large values."""
    big = 1e300 if dtype == np.float64 else 1e30
    edges = [0.0, -0.0, 1e-30, -1e-30, 1e-8, -1e-8, 19.999, 20.0, 20.001, -20.0, 30.0, -30.0, 50.0, -50.0,
             100.0, -100.0, 800.0, -800.0, big, -big]
    return np.concatenate([np.linspace(-12, 12, 4801), edges]).astype(dtype)


# Where torch's own formula cancels, its float64 value is exact only to eps times the size of
# its terms, so the error is measured against that size, not the (much smaller) result:
# gelu's x (1 + erf) / 2 and gelu_tanh's x (1 + tanh) / 2 for negative x; the derivatives'
# 1 - s, 1 - tanh^2 and 1 + erf. The kernels' own accuracy there is tested apart.
FORWARD_TERMS = {"gelu": np.abs, "gelu_tanh": np.abs}
DERIVATIVE_TERMS = {
    "sigmoid": lambda x: np.ones_like(x), "tanh": lambda x: np.ones_like(x),
    "gelu": lambda x: 1 + np.abs(x), "silu": lambda x: 1 + np.abs(x), "mish": lambda x: 1 + np.abs(x),
    "gelu_tanh": lambda x: 1 + np.abs(x) * (1 + 0.134145 * np.minimum(np.abs(x), 30.0) ** 2),
}


def check(out, ref, x, dtype, terms, ulps, what):
    """|out - ref| within ``ulps`` eps of |ref| + ``terms`` (an array, or 0)."""
    # torch's formula overflows into nan (x^3 in gelu_tanh for |x| > 1e102): the kernels give the
    # limits there, finite
    nan = np.isnan(ref)
    assert np.isfinite(out[nan]).all(), what
    terms = np.broadcast_to(terms, ref.shape)
    out, ref, x, terms = out[~nan], ref[~nan], x[~nan], terms[~nan]
    scale = np.abs(ref) + terms
    # an absolute floor for what underflows: fexp clamps its argument, so exp(-1000) is the
    # smallest normal, not 0, and x exp(x) for x below -800 is -800 times that
    tol = ulps * EPS[dtype] * scale + 1e4 * np.finfo(dtype).tiny
    err = np.abs(out.astype(np.float64) - ref)
    bad = ~(err <= tol)
    assert not bad.any(), f"{what}: x={x[bad][:4]} got {out[bad][:4]} want {ref[bad][:4]}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_act_forward_matches_reference(name, dtype):
    x = points(dtype)
    xd = x.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        ref = naive.act_forward(name, xd)
    # float64: a few ulp; float32: the float64 value of the float32 input, to a few float32 ulp
    terms = FORWARD_TERMS.get(name)
    check(act(name, x), ref, xd, dtype, terms(xd) if terms else 0.0, 8, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_act_forward_slope_derivative_matches_reference(name, dtype):
    x = points(dtype)
    xd = x.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        ref = naive.act_derivative(name, xd)
    rng = np.random.default_rng(0)
    G = rng.standard_normal(x.size).astype(dtype)
    g = G.copy()
    backward_input(g, 0, x, 0, x.size, A.HIDDEN.code(name))
    terms = DERIVATIVE_TERMS.get(name)
    check(g, G.astype(np.float64) * ref, xd, dtype, terms(xd) * np.abs(G) if terms else 0.0, 8, name)


def test_kernels_stay_accurate_where_torchs_formula_cancels():
    """Tails where 1 - s, 1 - tanh^2, 1 + tanh or 1 - tanh(softplus)^2 lose every digit in the
    reference: the kernels' values against the same functions written without cancellation, to
    a few ulp times the size of the exponent (the rounding of w reaches exp(w) as |w| eps)."""
    x = np.concatenate([np.linspace(-40, -5, 200), np.linspace(5, 40, 200)])
    k, c = np.sqrt(2 / np.pi), 0.044715
    w2 = 2 * k * (x + c * x ** 3)                  # gelu_tanh: 1 + tanh(w2 / 2) = 2 sigmoid(w2)
    with np.errstate(over="ignore"):               # exp to inf, then 1 / inf = 0: meant
        s, sc = 1 / (1 + np.exp(-x)), 1 / (1 + np.exp(x))       # sigmoid(x), 1 - sigmoid(x)
        su, suc = 1 / (1 + np.exp(-w2)), 1 / (1 + np.exp(w2))
        e = np.exp(x)
        n = e * (e + 2)                            # mish: tanh(log1p(e)) = n / (n + 2)
        cases = {  # name: forward, derivative, exponent
            "sigmoid": (None, s * sc, x),
            "tanh": (None, 4 * np.exp(-2 * np.abs(x)) / (1 + np.exp(-2 * np.abs(x))) ** 2, 2 * x),
            "gelu_tanh": (x * su, su + 2 * k * x * su * suc * (1 + 3 * c * x * x), w2),
            "silu": (x * s, s * (1 + x * sc), x),
            "mish": (None, n / (n + 2) + x * s * 4 * (n + 1) / (n + 2) ** 2, x),
        }
    with np.errstate(over="ignore", under="ignore"):
        for name, (fwd, der, w) in cases.items():
            for out, ref in ((act(name, x), fwd), (derivative(name, x), der)):
                if ref is None:
                    continue
                live = np.abs(ref) > 1e-290         # where the reference itself has not underflowed
                err = np.abs(out - ref)[live] / np.abs(ref[live])
                assert (err <= 8 * EPS[np.float64] * (1 + np.abs(w[live]))).all(), (name, x[live][np.argmax(err)])


@pytest.mark.parametrize("name", NAMES)
def test_derivative_is_the_forwards_by_finite_differences(name):
    x = np.array([-30, -8, -3, -1.5, -1.2, -1, -0.3, -1e-3, 0, 1e-3, 0.3, 1, 1.5, 3, 8, 19.5, 21, 30], np.float64)
    if name in ("relu", "leaky_relu", "selu", "elu"):
        # kinks (torch picks a side, tested by the reference) and elu's jump in f'' (O(h) error)
        x = x[x != 0]
    h = 1e-5 * np.maximum(1.0, np.abs(x))
    fd = (act(name, x + h) - act(name, x - h)) / (2 * h)
    d = derivative(name, x)
    np.testing.assert_allclose(d, fd, rtol=1e-6, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", [e for e in NAMES if A.HIDDEN.get(e).from_output])
def test_output_derivatives_agree_with_input_ones(name, dtype):
    """act_backward (from the output, the original fast path) and act_forward_slope (from the
    input) take the same derivative; |x| <= 3, where 1 - a^2 and a(1 - a) lose at most
    2 eps / (1 - a^2) relative to the rounding of a."""
    rng = np.random.default_rng(1)
    y = rng.uniform(-3, 3, (7, 9)).astype(dtype)
    y[0, :3] = [0.0, -0.0, 1e-30]
    G = rng.standard_normal((7, 9)).astype(dtype)
    from_input, from_output = G.ravel().copy(), G.ravel().copy()
    backward_input(from_input, 0, y.ravel(), 0, y.size, A.HIDDEN.code(name))
    backward_output(from_output, act(name, y.ravel()), 7, 9, A.HIDDEN.code(name))
    np.testing.assert_allclose(from_output, from_input, rtol=400 * EPS[dtype], atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_offsets_and_separate_buffers(dtype):
    """Values at an offset of one buffer, slopes in place at an offset of another; nothing else written."""
    rng = np.random.default_rng(2)
    for name in NAMES:
        code = A.HIDDEN.code(name)
        Y = rng.standard_normal(40).astype(dtype) * 3
        out = np.full(50, 7.0, dtype)
        slopes = Y.copy()
        forward_slope(out, 11, slopes, 5, 20, code)
        np.testing.assert_array_equal(out[11:31], act(name, Y[5:25]))
        assert (out[:11] == 7).all() and (out[31:] == 7).all()
        np.testing.assert_array_equal(slopes[5:25], derivative(name, Y[5:25].copy()))
        np.testing.assert_array_equal(np.delete(slopes, np.s_[5:25]), np.delete(Y, np.s_[5:25]))
        G = rng.standard_normal(50).astype(dtype)
        G[3:23] = 1.0
        g = G.copy()
        backward_input(g, 3, Y, 5, 20, code)
        np.testing.assert_array_equal(g[3:23], derivative(name, Y[5:25].copy()))
        assert np.array_equal(g[:3], G[:3]) and np.array_equal(g[23:], G[23:])


@pytest.mark.parametrize("bias", [True, False])
def test_exp_output_forward(bias):
    rng = np.random.default_rng(3)
    Z = rng.standard_normal(5 * 4) * 3
    b = rng.standard_normal(6)
    want = np.exp(Z.reshape(5, 4) + (b[2:6] if bias else 0))
    bias_forward(Z, 5, 4, b, 2 if bias else -1, A.OUTPUT.code("exp"))
    np.testing.assert_allclose(Z.reshape(5, 4), want, rtol=4 * EPS[np.float64])


def test_registry_codes_and_facts():
    """The codes are stored in Net.act and compared in kernels: they never change."""
    codes = {"linear": 0, "sigmoid": 1, "tanh": 2, "relu": 3, "leaky_relu": 6, "elu": 7, "selu": 8,
             "gelu": 9, "gelu_tanh": 10, "silu": 11, "softplus": 12, "mish": 13}
    assert list(A.HIDDEN) == list(codes) and {n: A.HIDDEN.code(n) for n in A.HIDDEN} == codes
    assert list(A.OUTPUT) == ["linear", "sigmoid", "softmax", "exp"]
    assert (A.OUTPUT.code("softmax"), A.OUTPUT.code("exp")) == (4, 5)
    init = {n: A.HIDDEN.get(n).init for n in A.HIDDEN}
    assert init == {"linear": "glorot", "sigmoid": "glorot", "tanh": "glorot", "relu": "he", "leaky_relu": "he",
                    "elu": "he", "selu": "lecun", "gelu": "he", "gelu_tanh": "he", "silu": "he",
                    "softplus": "he", "mish": "he"}
    assert [n for n in A.HIDDEN if A.HIDDEN.get(n).from_output] == ["linear", "sigmoid", "tanh", "relu"]


# Compiles each code's loops alone for each dtype (about a minute each): in a process of its own
# beside the rest of the suite (tests/conftest.py), which prints what the test checks as JSON.
VECTORIZE_CHECK = """
import json, re, sys
import numpy as np
from fastbp.kernels import activations as A
from fastbp.kernels.jit import kernel

def compiled(code, dtype):
    # the code a constant, so only its loop is left; not cached, so the IR is there to read
    @kernel(cache=False)
    def both(a, g, y):
        A.act_forward_slope(a, 0, y, 0, y.size, code)
        A.act_slope(g, 0, y, 0, y.size)
    y = np.linspace(-3, 3, 64).astype(dtype)
    both(np.empty_like(y), np.ones_like(y), y.copy())
    return both.inspect_llvm(both.signatures[0])

found = {}
for dtype in ("float32", "float64"):
    fp = "float" if dtype == "float32" else "double"
    for name in A.HIDDEN:
        ir = compiled(A.HIDDEN.code(name), np.dtype(dtype))
        called = re.findall(r"call [^@\\n]*@([\\w.]+)", ir)
        found[f"{dtype} {name}"] = {
            "vector": bool(re.search(rf"<\\d+ x {fp}>", ir)),
            "libm": [f for f in called if re.fullmatch(r"(llvm\\.)?(exp|expm1|log|log1p|erf|tanh)(f|\\.\\w+)?", f)],
            "fpext": "fpext" in ir}
print(json.dumps(found))
"""


def _start_vectorize_check(folder):
    return start_python(VECTORIZE_CHECK, folder), folder


@pytest.mark.slow
@pytest.mark.background.with_args(_start_vectorize_check)
def test_element_loops_vectorize_in_the_arrays_dtype(background):
    """Each code's loops become vector code of the dtype: no libm call and, for float32, no
    conversion to float64 (which would halve the vector width)."""
    out, _ = finished(*background)
    found = json.loads(out.strip().splitlines()[-1])
    assert sorted(found) == sorted(f"{dtype} {name}" for dtype in ("float32", "float64") for name in NAMES)
    for key, loops in found.items():
        assert loops["vector"] and not loops["libm"], (key, loops)
        if key.startswith("float32"):
            assert not loops["fpext"], key
