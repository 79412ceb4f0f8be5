"""Bad input costs a clear message and changes nothing; odd-but-valid input is converted once.

Every public entry (MLP(...), fit, predict, evaluate, loss_and_grad, train_step, opt.step, load)
must raise TypeError or ValueError naming the argument, what it expected and what came, and a
rejected call must leave params, optimizer state and the model's RNG exactly as they were.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastbp
from fastbp.kernels import epoch as E
from fastbp.kernels.args import Data

N, D, K = 40, 4, 3


def data(seed=0, n=N):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, D)).astype(np.float32)
    y = rng.integers(0, K, n)
    return X, y


def trained():
    """A model and an Adam that has already stepped, so there is optimizer state to protect."""
    X, y = data()
    model = fastbp.MLP([D, 8, K], seed=1)
    opt = fastbp.Adam(lr=1e-2)
    model.fit(X, y, epochs=1, batch_size=16, optimizer=opt, verbose=0)
    return model, opt


def snapshot(model, opt):
    return (model.params.copy(), [s.copy() for s in opt.state_arrays().values()], opt.iterations,
            opt.lr, model.rng.bit_generator.state)


def assert_unchanged(before, after):
    p0, s0, t0, lr0, r0 = before
    p1, s1, t1, lr1, r1 = after
    assert np.array_equal(p0, p1), "params changed by a rejected call"
    assert len(s0) == len(s1) and all(np.array_equal(a, b) for a, b in zip(s0, s1)), "optimizer state changed"
    assert (t0, lr0) == (t1, lr1), "optimizer step count or lr changed"
    assert r0 == r1, "the model's RNG advanced"


def expect(exc, call, *fragments):
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    for f in fragments:
        assert f in msg, f"{f!r} not in message {msg!r}"
    return msg


# ---- MLP(...) -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, exc, fragments", [
    (dict(sizes=[4]), ValueError, ["sizes", "at least"]),
    (dict(sizes=5), TypeError, ["sizes", "sequence"]),
    (dict(sizes=[4, 0, 2]), ValueError, ["sizes[1]", ">= 1", "0"]),
    (dict(sizes=[4, 2.5, 2]), TypeError, ["sizes[1]", "int", "2.5"]),
    (dict(activation="hardswish"), ValueError, ["activation", "'hardswish'", "['elu', 'gelu', 'gelu_tanh',"]),
    (dict(activation=None), TypeError, ["activation", "None"]),
    (dict(output="relu"), ValueError, ["output", "'relu'", "['exp', 'linear', 'sigmoid', 'softmax']"]),
    (dict(loss="hinge"), ValueError, ["loss", "'hinge'", "binary_cross_entropy", "half_mse"]),
    (dict(output="linear", loss="cross_entropy"), ValueError, ["loss", "cross_entropy", "linear", "softmax"]),
    (dict(output="softmax", loss="binary_cross_entropy"), ValueError, ["loss", "sigmoid"]),
    (dict(output="sigmoid", loss="cross_entropy"), ValueError, ["loss", "softmax"]),
    (dict(init="xavier"), ValueError, ["init", "'xavier'", "glorot"]),
    (dict(init="normal", init_scale=0.0), ValueError, ["init_scale", "> 0"]),
    (dict(init_scale=float("nan")), ValueError, ["init_scale", "finite", "nan"]),
    (dict(dtype="float16"), ValueError, ["dtype", "float16", "['float32', 'float64']"]),
    (dict(dtype="int32"), ValueError, ["dtype", "int32"]),
    (dict(dtype=np.int64), ValueError, ["dtype"]),
    (dict(dtype="nonsense"), ValueError, ["dtype", "nonsense"]),
    (dict(dtype=None), TypeError, ["dtype", "None"]),
    (dict(dtype=[1, 2]), TypeError, ["dtype", "list"]),
    (dict(seed=-1), ValueError, ["seed", ">= 0"]),
    (dict(seed=1.5), TypeError, ["seed", "int", "1.5"]),
    (dict(bias="yes"), TypeError, ["bias", "True or False", "'yes'"]),
    (dict(deterministic=1), TypeError, ["deterministic"]),
])
def test_constructor_rejects(kwargs, exc, fragments):
    kw = dict(sizes=[4, 8, 3])
    kw.update(kwargs)
    expect(exc, lambda: fastbp.MLP(**kw), *fragments)


@pytest.mark.parametrize("dtype, expected", [(np.float32, np.float32), (np.dtype("float64"), np.float64),
                                             ("float64", np.float64), ("f4", np.float32)])
def test_constructor_accepts_dtype_spellings(dtype, expected):
    assert fastbp.MLP([2, 2], dtype=dtype).params.dtype == expected


# ---- fit ------------------------------------------------------------------------------------------
X0, y0 = data()
Xbad_nan = X0.copy()
Xbad_nan[7, 2] = np.nan
Xbad_inf = X0.copy()
Xbad_inf[3, 1] = -np.inf
Xbig = X0.astype(np.float64)
Xbig[5, 0] = 1e300          # finite in float64, inf once converted to the model's float32
y_nan = y0.astype(np.float64)
y_nan[4] = np.nan

FIT_CASES = [
    ("X 1-D", dict(X=X0[:, 0]), ValueError, ["X", "2-D", "1-D", "reshape"]),
    ("X 3-D", dict(X=X0[:, :, None]), ValueError, ["X", "2-D", "3-D", str(X0[:, :, None].shape)]),
    ("X width", dict(X=np.ones((N, 5), np.float32)), ValueError, ["X", "4 features", "got 5"]),
    ("X empty", dict(X=np.ones((0, D), np.float32), y=np.zeros(0, np.int64)), ValueError, ["X", "at least one sample"]),
    ("X NaN", dict(X=Xbad_nan), ValueError, ["X", "finite", "nan", "(7, 2)"]),
    ("X inf", dict(X=Xbad_inf), ValueError, ["X", "finite", "inf", "(3, 1)"]),
    ("X overflow", dict(X=Xbig), ValueError, ["X", "finite", "(5, 0)", "beyond the range of float32"]),
    ("X strings", dict(X=np.full((N, D), "a")), ValueError, ["X", "numeric", "<U1"]),
    ("X ragged", dict(X=[[1.0, 2.0], [3.0]]), ValueError, ["X", "numeric array"]),
    ("X None", dict(X=None), TypeError, ["X", "None"]),
    ("X complex", dict(X=X0.astype(np.complex64)), ValueError, ["X", "numeric", "complex64"]),
    ("X dict", dict(X={"a": 1}), TypeError, ["X", "dict"]),
    ("X sparse NaN", dict(X=__import__("scipy.sparse").sparse.csr_matrix(Xbad_nan)), ValueError,
     ["X", "finite", "nan", "row 7, column 2"]),
    ("X sparse width", dict(X=__import__("scipy.sparse").sparse.csr_matrix(np.ones((N, 5)))), ValueError,
     ["X", "4 features", "got 5"]),
    ("y sparse", dict(y=__import__("scipy.sparse").sparse.csr_matrix(y0[:, None])), TypeError, ["y", "sparse", "toarray"]),
    ("y rows", dict(y=y0[:-1]), ValueError, ["y", f"{N} rows", f"({N - 1},)"]),
    ("y NaN", dict(y=y_nan), ValueError, ["y", "finite", "nan"]),
    ("y label high", dict(y=np.where(np.arange(N) == 3, K, y0)), ValueError, ["y", f"[0, {K - 1}]", f"max {K}"]),
    ("y label negative", dict(y=np.where(np.arange(N) == 3, -1, y0)), ValueError, ["y", "min -1"]),
    ("y non-integer", dict(y=y0 + 0.5), ValueError, ["y", "non-integer", "cross_entropy"]),
    ("y width", dict(y=np.zeros((N, 2))), ValueError, ["y", f"({N}, {K})", f"({N}, 2)"]),
    ("y strings", dict(y=np.array(["a"] * N)), ValueError, ["y", "numeric"]),
    ("y onehot range", dict(y=np.full((N, K), 2.0)), ValueError, ["y", "[0, 1]", "max 2.0"]),
    ("y None", dict(y=None), TypeError, ["y", "None"]),
    ("sample_weight shape", dict(sample_weight=np.ones(N + 1)), ValueError, ["sample_weight", f"({N},)", f"({N + 1},)"]),
    ("sample_weight NaN", dict(sample_weight=np.where(np.arange(N) == 2, np.nan, 1.0)), ValueError,
     ["sample_weight", "finite", "(2,)"]),
    ("sample_weight inf", dict(sample_weight=np.where(np.arange(N) == 2, np.inf, 1.0)), ValueError,
     ["sample_weight", "finite"]),
    ("sample_weight negative", dict(sample_weight=-np.ones(N)), ValueError, ["sample_weight", ">= 0", "-1"]),
    ("epochs 0", dict(epochs=0), ValueError, ["epochs", ">= 1", "got 0"]),
    ("epochs negative", dict(epochs=-2), ValueError, ["epochs", ">= 1", "-2"]),
    ("epochs float", dict(epochs=1.5), TypeError, ["epochs", "int", "1.5"]),
    ("epochs NaN", dict(epochs=float("nan")), TypeError, ["epochs", "int", "nan"]),
    ("epochs str", dict(epochs="3"), TypeError, ["epochs", "int", "'3'"]),
    ("batch 0", dict(batch_size=0), ValueError, ["batch_size", ">= 1", "got 0"]),
    ("batch negative", dict(batch_size=-4), ValueError, ["batch_size", "-4"]),
    ("batch NaN", dict(batch_size=float("nan")), TypeError, ["batch_size", "int"]),
    ("batch bool", dict(batch_size=True), TypeError, ["batch_size", "int", "True"]),
    ("optimizer name", dict(optimizer="adadelta"), ValueError,
     ["optimizer", "'adadelta'", "['adagrad', 'adam', 'adamw', 'lamb', 'lion', 'momentum', 'nesterov', 'rmsprop', 'sgd']"]),
    ("optimizer type", dict(optimizer=0.1), TypeError, ["optimizer", "float"]),
    ("on_nan", dict(on_nan="warn"), ValueError, ["on_nan", "'warn'", "['raise', 'stop', 'ignore']"]),
    ("validation_split 1", dict(validation_split=1.0), ValueError, ["validation_split", "[0, 1)", "1.0"]),
    ("validation_split NaN", dict(validation_split=float("nan")), ValueError, ["validation_split", "finite"]),
    ("validation_split tiny", dict(validation_split=0.001), ValueError, ["validation_split", "no training or no validation"]),
    ("validation_data len", dict(validation_data=(X0,)), ValueError, ["validation_data", "(X_val, y_val)"]),
    ("validation_data X", dict(validation_data=(Xbad_nan, y0)), ValueError, ["validation_data[0]", "finite"]),
    ("validation_data y", dict(validation_data=(X0, y0 + K)), ValueError, ["validation_data[1]", "class labels"]),
    ("shuffle", dict(shuffle="yes"), TypeError, ["shuffle", "True or False"]),
    ("callbacks", dict(callbacks=[object()]), TypeError, ["callbacks[0]", "fastbp.Callback", "object"]),
    ("class_weight negative", dict(class_weight={0: -1.0}), ValueError, ["class_weight[0]", ">= 0"]),
    ("class_weight range", dict(class_weight={7: 1.0}), ValueError, ["class_weight", "class 7", "out of range"]),
    ("class_weight type", dict(class_weight=[1, 2]), TypeError, ["class_weight", "dict", "list"]),
    ("verbose", dict(verbose=-1), ValueError, ["verbose", ">= 0"]),
    ("initial_epoch", dict(initial_epoch=-1), ValueError, ["initial_epoch", ">= 0"]),
    ("resume_from type", dict(resume_from=123), TypeError, ["resume_from", "file path", "int"]),
    ("resume_from missing", dict(resume_from="no-such-dir/no-such-file.fbp"), ValueError,
     ["no-such-file.fbp", "cannot read"]),
]


@pytest.mark.parametrize("case, kwargs, exc, fragments", FIT_CASES, ids=[c[0] for c in FIT_CASES])
def test_fit_rejects_and_changes_nothing(case, kwargs, exc, fragments):
    model, opt = trained()
    kw = dict(X=X0, y=y0, epochs=2, batch_size=16, optimizer=opt, verbose=0)
    kw.update(kwargs)
    X, y = kw.pop("X"), kw.pop("y")
    before = snapshot(model, opt)
    history = model.history
    expect(exc, lambda: model.fit(X, y, **kw), *fragments)
    assert_unchanged(before, snapshot(model, opt))
    assert model.history is history and model.optimizer is opt


def test_fit_rejects_bad_checkpoint_file_and_changes_nothing(tmp_path):
    model, opt = trained()
    garbage = tmp_path / "garbage.fbp"
    garbage.write_bytes(b"\x89FASTBP\n" + bytes(range(256)) * 4)
    weights = tmp_path / "weights.fbp"
    model.save(weights)                                   # a model file, not a checkpoint
    other = tmp_path / "other.fbp"
    small = fastbp.MLP([D, 5, K], seed=0)
    small.fit(X0, y0, epochs=1, optimizer=fastbp.Adam(), verbose=0,
              callbacks=[fastbp.ModelCheckpoint(str(other))])
    sgd_ck = tmp_path / "sgd.fbp"
    twin = fastbp.MLP([D, 8, K], seed=1)
    twin.fit(X0, y0, epochs=1, optimizer=fastbp.SGD(), verbose=0, callbacks=[fastbp.ModelCheckpoint(str(sgd_ck))])
    for path, fragments in [(garbage, ["not a valid fastbp file"]),
                            (weights, ["'model' file", "checkpoint"]),
                            (other, ["sizes", "[4, 5, 3]", "[4, 8, 3]"]),
                            (sgd_ck, ["'SGD'", "'Adam'"])]:
        before = snapshot(model, opt)
        expect(ValueError, lambda: model.fit(X0, y0, epochs=3, optimizer=opt, verbose=0, resume_from=path),
               *fragments)
        assert_unchanged(before, snapshot(model, opt))


def test_optimizer_of_another_model_is_rejected_before_anything_changes():
    model, opt = trained()
    other = fastbp.MLP([D, 5, K], seed=0)
    before, before_other = snapshot(model, opt), other.params.copy()
    expect(ValueError, lambda: other.fit(X0, y0, optimizer=opt, verbose=0), "Adam", "state for", "reset()")
    expect(ValueError, lambda: other.train_step(X0, y0, opt), "Adam", "state for")
    assert_unchanged(before, snapshot(model, opt))
    assert np.array_equal(before_other, other.params)


# ---- predict, evaluate, loss_and_grad, train_step --------------------------------------------------
ENTRY_CASES = [
    ("X 1-D", X0[:, 0], y0, ValueError, ["X", "2-D"]),
    ("X width", np.ones((N, 2)), y0, ValueError, ["X", "4 features", "got 2"]),
    ("X NaN", Xbad_nan, y0, ValueError, ["X", "finite"]),
    ("X empty", np.ones((0, D)), np.zeros(0), ValueError, ["X", "at least one sample"]),
    ("y label", X0, y0 + 1, ValueError, ["y", "class labels"]),
    ("y rows", X0, y0[:5], ValueError, ["y", "rows"]),
    ("y inf", X0, np.where(np.arange(N) == 0, np.inf, 0.0), ValueError, ["y", "finite"]),
]


@pytest.mark.parametrize("entry, case, X, y, exc, fragments",
                         [(e,) + c for e in ("predict", "evaluate", "loss_and_grad", "train_step")
                          for c in ENTRY_CASES if not (e == "predict" and c[0].startswith("y"))])
def test_entries_reject_and_change_nothing(entry, case, X, y, exc, fragments):
    model, opt = trained()
    call = {"predict": lambda: model.predict(X),
            "evaluate": lambda: model.evaluate(X, y),
            "loss_and_grad": lambda: model.loss_and_grad(X, y),
            "train_step": lambda: model.train_step(X, y, opt)}[entry]
    before = snapshot(model, opt)
    expect(exc, call, *fragments)
    assert_unchanged(before, snapshot(model, opt))


def test_batch_size_and_sample_weight_of_other_entries():
    model, opt = trained()
    before = snapshot(model, opt)
    expect(ValueError, lambda: model.predict(X0, batch_size=0), "batch_size", ">= 1")
    expect(TypeError, lambda: model.evaluate(X0, y0, batch_size=2.5), "batch_size", "int")
    expect(ValueError, lambda: model.evaluate(X0, y0, sample_weight=np.ones(3)), "sample_weight", f"({N},)")
    expect(ValueError, lambda: model.train_step(X0, y0, opt, sample_weight=-np.ones(N)), "sample_weight", ">= 0")
    expect(ValueError, lambda: model.train_step(X0, y0, "adadelta"), "optimizer", "'adadelta'", "sgd")
    assert_unchanged(before, snapshot(model, opt))


def test_regression_and_binary_targets_are_checked():
    Xr = X0
    reg = fastbp.MLP([D, 6, 2], output="linear", loss="mse", seed=0)
    expect(ValueError, lambda: reg.fit(Xr, np.zeros(N), verbose=0), "y", f"({N}, 2)", f"({N},)")
    expect(ValueError, lambda: reg.evaluate(Xr, np.zeros((N, 3))), "y", f"({N}, 2)")
    bce = fastbp.MLP([D, 6, 1], output="sigmoid", seed=0)
    expect(ValueError, lambda: bce.fit(Xr, np.full(N, 2.0), verbose=0), "y", "binary_cross_entropy", "[0, 1]")
    # (n,) targets are accepted for one output
    assert np.isfinite(bce.evaluate(Xr, (Xr[:, 0] > 0).astype(np.float64))["loss"])
    pois = fastbp.MLP([D, 6, 1], output="exp", seed=0)
    before = pois.params.copy()
    y_neg = np.abs(Xr[:, 0]); y_neg[3] = -1.0
    for call in (lambda: pois.fit(Xr, y_neg, verbose=0), lambda: pois.evaluate(Xr, y_neg),
                 lambda: pois.train_step(Xr, y_neg, optimizer=fastbp.SGD())):
        expect(ValueError, call, "y", "poisson", ">= 0", "-1")
    np.testing.assert_array_equal(pois.params, before)


def test_train_step_with_overflowing_gradient_raises_and_changes_nothing():
    # Linear 1 -> 1, W = 1: the prediction 3e38 fits float32 and the loss is computed in float64
    # (finite), but the output gradient 2 * 3e38 overflows float32.
    model = fastbp.MLP([1, 1], output="linear", loss="mse", bias=False)
    model.params[:] = 1
    opt = fastbp.SGD(lr=1e-3)
    X = np.full((1, 1), 3e38, np.float32)
    loss, grad = model.loss_and_grad(X, np.zeros(1))
    assert np.isfinite(loss) and not np.isfinite(grad).all()          # the premise
    before = snapshot(model, opt)
    with pytest.raises(fastbp.TrainingDiverged, match="NaN or inf.*unchanged.*learning rate"):
        model.train_step(X, np.zeros(1), opt)
    assert_unchanged(before, snapshot(model, opt))


# ---- optimizer.step ------------------------------------------------------------------------------
def test_optimizer_step_rejects_and_changes_nothing():
    p = np.linspace(-1, 1, 10).astype(np.float32)
    g = np.full(10, 0.5, np.float32)
    opt = fastbp.Adam(lr=0.1)
    opt.step(p, g)
    ro = p.copy()
    ro.flags.writeable = False
    g_nan = g.copy()
    g_nan[3] = np.nan
    cases = [
        (lambda: opt.step(p.reshape(2, 5), g.reshape(2, 5)), ValueError, ["params", "1-D", "(2, 5)"]),
        (lambda: opt.step(list(p), g), TypeError, ["params", "numpy array", "list"]),
        (lambda: opt.step(p, g[:9]), ValueError, ["grads", "(10,)", "(9,)"]),
        (lambda: opt.step(p, g.astype(np.float64)), ValueError, ["grads", "float32", "float64"]),
        (lambda: opt.step(p.astype(np.int32), g.astype(np.int32)), ValueError, ["params", "float32 or float64", "int32"]),
        (lambda: opt.step(p[::2], g[::2]), ValueError, ["params", "contiguous"]),
        (lambda: opt.step(ro, g), ValueError, ["params", "read-only"]),
        (lambda: opt.step(p, g_nan), ValueError, ["grads", "finite", "nan", "(3,)"]),
        (lambda: opt.step(p, p), ValueError, ["grads", "sharing its memory"]),
        (lambda: opt.step(np.zeros(11, np.float32), np.zeros(11, np.float32)), ValueError,
         ["Adam", "state for 10", "size 11"]),
    ]
    for call, exc, fragments in cases:
        p0, s0, t0 = p.copy(), [s.copy() for s in opt.state_arrays().values()], opt.iterations
        expect(exc, call, *fragments)
        assert np.array_equal(p, p0) and opt.iterations == t0
        assert all(np.array_equal(a, b) for a, b in zip(s0, opt.state_arrays().values()))


@pytest.mark.parametrize("cls, kwargs, exc, fragments", [
    (fastbp.SGD, dict(lr=0), ValueError, ["lr", "> 0", "0.0"]),
    (fastbp.SGD, dict(lr=-0.1), ValueError, ["lr", "> 0"]),
    (fastbp.Adam, dict(lr=float("nan")), ValueError, ["lr", "finite", "nan"]),
    (fastbp.Adam, dict(lr=float("inf")), ValueError, ["lr", "finite"]),
    (fastbp.Adam, dict(lr="0.01"), TypeError, ["lr", "number", "'0.01'"]),
    (fastbp.Adam, dict(beta1=1.0), ValueError, ["beta1", "[0, 1)"]),
    (fastbp.Momentum, dict(momentum=-0.5), ValueError, ["momentum"]),
    (fastbp.SGD, dict(clip_norm=0), ValueError, ["clip_norm", "> 0"]),
])
def test_optimizer_constructor_rejects(cls, kwargs, exc, fragments):
    expect(exc, lambda: cls(**kwargs), *fragments)


# ---- property: valid input trains, invalid input is rejected untouched ------------------------
DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int64, np.uint16, np.bool_]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(0, 6), d=st.integers(2, 6), dtype=st.sampled_from(DTYPES),
       bad=st.sampled_from([None, np.nan, np.inf, -np.inf]), where=st.integers(0, 1000),
       labels=st.lists(st.integers(-2, K + 1), min_size=6, max_size=6))
def test_fit_property_valid_iff_accepted(n, d, dtype, bad, where, labels):
    model = fastbp.MLP([D, 5, K], seed=3)
    opt = fastbp.Momentum(lr=0.05)
    model.fit(X0, y0, epochs=1, optimizer=opt, verbose=0)
    X = (np.arange(n * d).reshape(n, d) % 5).astype(dtype)
    injected = bad is not None and n > 0 and np.dtype(dtype).kind == "f"
    if injected:
        X.flat[where % X.size] = bad
    y = np.array(labels[:n], dtype=np.int64)
    valid = n > 0 and d == D and not injected and all(0 <= v < K for v in y)
    before = snapshot(model, opt)
    if valid:
        model.fit(X, y, epochs=1, batch_size=4, optimizer=opt, verbose=0)
        assert opt.iterations == before[2] + -(-n // 4)
    else:
        with pytest.raises(ValueError) as info:
            model.fit(X, y, epochs=1, batch_size=4, optimizer=opt, verbose=0)
        assert str(info.value).split(":")[0] in ("X", "y")
        assert_unchanged(before, snapshot(model, opt))


# ---- accepted inputs: converted once, same results -----------------------------------------------
class FrameLike:
    """Duck-typed stand-in for a pandas DataFrame (pandas itself is optional)."""

    def __init__(self, arr):
        self.arr = arr
        self.calls = []

    def to_numpy(self, dtype=None):
        self.calls.append(dtype)
        return np.asarray(self.arr, dtype=dtype)


def variants(X, tmp_path):
    Xh = X.astype(np.float16)               # reference values exactly representable in float16
    ref = Xh.astype(np.float32)
    mm = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.float32, shape=ref.shape)
    mm[...] = ref
    mm.flush()
    wide = np.zeros((ref.shape[0], 2 * D), np.float64)
    wide[:, ::2] = ref
    out = {
        "fortran float64": np.asfortranarray(ref.astype(np.float64)),
        "strided view": wide[:, ::2],
        "float16": Xh,
        "list": ref.tolist(),
        "memmap": np.load(tmp_path / "X.npy", mmap_mode="r+"),
        "frame-like": FrameLike(ref.astype(np.float64)),
        "int": np.round(ref * 4).astype(np.int32),
    }
    return ref, out


def test_odd_inputs_give_identical_results(tmp_path):
    X, y = data(5)
    ref, inputs = variants(X, tmp_path)
    for name, Xv in inputs.items():
        base = ref if name != "int" else np.round(ref * 4).astype(np.float32)
        a = fastbp.MLP([D, 8, K], seed=2)
        b = fastbp.MLP([D, 8, K], seed=2)
        a.fit(base, y, epochs=2, batch_size=8, optimizer=fastbp.Adam(1e-2), verbose=0)
        b.fit(Xv, y, epochs=2, batch_size=8, optimizer=fastbp.Adam(1e-2), verbose=0)
        assert np.array_equal(a.params, b.params), name
        assert np.array_equal(a.predict(base), b.predict(Xv)), name
        assert a.evaluate(base, y) == b.evaluate(Xv, y), name
    assert inputs["frame-like"].calls and all(c == np.float32 for c in inputs["frame-like"].calls)


def test_pandas_inputs(tmp_path):
    pd = pytest.importorskip("pandas")
    X, y = data(6)
    frame = pd.DataFrame(X.astype(np.float64), columns=list("abcd"))
    # pandas hands out read-only views (copy-on-write); for both kernel families
    for sizes in ([D, 8, K], [D, 96, 96, K]):
        check_pandas_fit(pd, X, y, frame, sizes)
    b = fastbp.MLP([D, 8, K], seed=2)
    expect(ValueError, lambda: b.predict(pd.DataFrame({"a": ["x"] * N, "b": 1.0, "c": 1.0, "d": 1.0})), "X")


def check_pandas_fit(pd, X, y, frame, sizes):
    a, b = fastbp.MLP(sizes, seed=2), fastbp.MLP(sizes, seed=2)
    a.fit(X, y, epochs=3, batch_size=32, verbose=0)
    a.fit(X, y, epochs=1, batch_size=32, verbose=0, sample_weight=np.linspace(0.5, 1.5, N))
    b.fit(frame, pd.Series(y), epochs=3, batch_size=32, verbose=0)
    b.fit(frame, pd.Series(y), epochs=1, batch_size=32, verbose=0,
          sample_weight=pd.Series(np.linspace(0.5, 1.5, N)))
    assert np.array_equal(a.params, b.params), sizes
    assert np.array_equal(a.predict(X), b.predict(frame)), sizes
    f32 = pd.DataFrame(X)                        # already float32: to_numpy gives a read-only view
    assert np.array_equal(a.predict(X), b.predict(f32))


def test_conversion_happens_once_and_memmaps_are_read_in_place(tmp_path, monkeypatch):
    """fit hands one converted array to every compiled chunk (no per-batch or per-chunk copy);
    a C-ordered memmap of the model's dtype is not copied at all."""
    import fastbp.training as M
    X, y = data(7, n=64)
    ref, inputs = variants(X, tmp_path)
    seen = []

    def the_X(args):                          # X as the kernel gets it, in its Data
        (data,) = [a for a in args if isinstance(a, Data)]
        return data.X

    def spy(real):
        def kernel(*args):
            X = the_X(args)
            if X.shape[0]:                    # not fit's zero-row call that loads the kernels
                seen.append(X)
            return real(*args)
        return kernel

    # every compiled entry that takes the data (the minibatch loops for each network size, inference)
    entries = [name for name in dir(E) if name.startswith("run_batches")]
    assert entries == ["run_batches", "run_batches_small"]
    for name in entries:
        monkeypatch.setattr(E, name, spy(getattr(E, name)))
    # the spies are Python functions: nothing to compile ahead in child processes (the calls compile)
    monkeypatch.setattr(E, "compile_ahead", lambda *args, **kwargs: None)
    monkeypatch.setattr(M, "CHUNK_SECONDS", 1e-12)          # one minibatch per kernel call
    for name in ("fortran float64", "strided view", "float16", "memmap"):
        seen.clear()
        model = fastbp.MLP([D, 8, K], seed=0)
        model.fit(inputs[name], y, epochs=3, batch_size=8, verbose=0)
        assert len(seen) == 1 + 3 * 8, name     # 8 steps per epoch, one per call; first, the call that loads them
        assert all(s is seen[0] for s in seen), f"{name}: converted more than once"
        assert seen[0].flags.c_contiguous and seen[0].dtype == np.float32
        if name == "memmap":
            assert np.shares_memory(seen[0], inputs[name]), "memmap was copied"
        else:
            assert not np.shares_memory(seen[0], inputs[name])
        seen.clear()
        model.predict(inputs[name])
        if name == "memmap":
            assert np.shares_memory(seen[0], inputs[name])


def test_read_only_memmap_is_read_in_place(tmp_path):
    """np.load(..., mmap_mode="r"), the usual way to train on data larger than memory."""
    rng = np.random.default_rng(8)
    X = rng.standard_normal((256, D)).astype(np.float32)
    y = rng.integers(0, K, 256)
    np.save(tmp_path / "X.npy", X)
    mm = np.load(tmp_path / "X.npy", mmap_mode="r")
    assert not mm.flags.writeable
    sizes = [D, 96, 96, K]                     # wide enough for the general (gather + BLAS) kernels
    a, b = fastbp.MLP(sizes, seed=2), fastbp.MLP(sizes, seed=2)
    a.fit(X, y, epochs=2, batch_size=64, verbose=0)
    b.fit(mm, y, epochs=2, batch_size=64, verbose=0)
    assert not b.workspace(64).small
    assert np.array_equal(a.params, b.params)
    assert np.array_equal(a.predict(X), b.predict(mm))
    assert np.shares_memory(fastbp.validation.as_features("X", mm, np.float32, D), mm)


def test_read_only_in_memory_inputs_are_used_in_place_and_train_identically():
    """Read-only arrays (pandas' copy-on-write views, frozen arrays) are neither copied nor
    trained differently: the kernels get every input as a read-only view, one compiled version."""
    X, y = data(8)
    R, Ry = X.copy(), y.copy()
    R.flags.writeable = False
    Ry.flags.writeable = False
    a, b = fastbp.MLP([D, 8, K], seed=2), fastbp.MLP([D, 8, K], seed=2)
    assert a.workspace(8).small
    a.fit(X, y, epochs=2, batch_size=8, verbose=0)
    b.fit(R, Ry, epochs=2, batch_size=8, verbose=0)
    assert np.array_equal(a.params, b.params)
    assert np.shares_memory(fastbp.validation.as_features("X", R, np.float32, D), R)


def test_read_only_memmap_trains_bit_identically_on_the_small_path(tmp_path):
    """Same data, same seed: the params may not depend on whether X is writeable (DESIGN.md)."""
    X, y = data(8)
    np.save(tmp_path / "X.npy", X)
    mm = np.load(tmp_path / "X.npy", mmap_mode="r")
    a, b = fastbp.MLP([D, 8, K], seed=2), fastbp.MLP([D, 8, K], seed=2)
    assert a.workspace(8).small
    a.fit(X, y, epochs=2, batch_size=8, verbose=0)
    b.fit(mm, y, epochs=2, batch_size=8, verbose=0)
    assert np.array_equal(a.params, b.params)
