"""The layers, losses, optimizers and schedules of DESIGN.md's "Contract, part 2", inside fastbp.

1. Step by step in float64: five ``train_step`` updates and a short ``fit`` (two epochs, a
   partial last minibatch, validation) of small random nets with mixed per-layer activations,
   against the plain-numpy reference (tests/naive.py, written from the peers' documented
   formulas) and, where installed, against torch itself (torch.optim for SGD ... Adagrad, optax
   for Lion and LAMB): losses, params, running statistics, ``lr``, predictions and evaluation
   to 1e-9 relative. The default run covers every pair of (first activation, second activation,
   first norm, second norm, loss, optimizer, schedule, dropout, sample weights, penalties, clipping,
   bias); the full activation x norm x loss x optimizer x schedule product (14,580 nets, about
   two minutes) is marked slow: it runs with the rest of the suite, ``-m "not slow"`` leaves
   it out. A few float32 cases follow the same reference to float32's precision.
2. Dropout: the reference's mask generator against the kernels, bit for bit; p = 0 is no
   dropout; the kept fraction and the 1/(1-p) scale, statistically; the same bits whatever the
   thread count; masks off outside training steps; a new mask for every update.
3. Finite differences of ``loss_and_grad`` (and of a training step's loss, dropout on).
4. Bad input: clear errors that change nothing.
5. Files: a model and a checkpoint written by fastbp 0.1 before these features load and train on
   to the same bits; save/load and checkpoints of a featured model.

The dropout masks of the reference come from ``naive.dropout_masks`` (an independent
implementation of the documented generator), keyed like the model's: its seed, its update count
before the step, the row's position in the minibatch, the layer and the unit.
"""
import itertools
import math
from collections import namedtuple
from pathlib import Path

import numba
import numpy as np
import pytest

import fastbp
import fastbp.io
import naive
import pinned_runs
from fastbp import schedules
from fastbp.kernels.dropout import apply_mask, row_key, step_key, threshold
from fastbp.kernels.jit import kernel, wide_vectors
from test_naive_reference import max_rel, pairwise, torch_buffers, torch_loss, torch_net, torch_params
from test_optimizers import BASE_LR, OPTIMIZERS_UNDER_TEST, SCHEDULES, STEPS

FIXTURES = Path(__file__).parent / "data"
ACTS = sorted(naive.ACTIVATIONS)
NORMS = [None, "layer", "batch"]
# loss case: (loss, kind of target, outputs, label_smoothing)
LOSS_CASES = {
    "mse": ("mse", "real", 3, 0.0),
    "half_mse": ("half_mse", "real", 3, 0.0),
    "ce": ("cross_entropy", "int", 3, 0.0),
    "ce_smooth": ("cross_entropy", "int", 3, 0.1),
    "ce_prob_smooth": ("cross_entropy", "prob", 3, 0.2),
    "bce": ("binary_cross_entropy", "unit", 2, 0.0),
    "mae": ("mae", "real", 3, 0.0),
    "huber": ("huber", "real", 3, 0.0),
    "poisson": ("poisson", "counts", 3, 0.0),
}
HUBER_DELTA = 0.5          # both of huber's branches are taken
DROPOUTS = {"none": [0.0, 0.0], "first": [0.3, 0.0], "both": [0.25, 0.4]}
# optimizers whose step does not blow a zero gradient's rounding noise up to a step of size lr
NOISE_SAFE = ("sgd", "momentum", "nesterov")
TOL = 1e-9
# Batches of odd sizes: mae's output-bias gradient is a sum of +-1/(m k) over the rows, which is
# 0 in exact arithmetic when the signs balance, and rounding noise of either sign or exactly 0
# depending on the order of the sum; Lion's sign turns that into a step of lr, or none.
STEP_ROWS = (7, 9, 7, 9, 5)                 # the five train_step batches
FIT_ROWS, FIT_BATCH, FIT_EPOCHS = 13, 5, 2  # fit: minibatches of 5, 5, 3 rows, six updates in all
assert len(STEP_ROWS) <= STEPS and FIT_EPOCHS * -(-FIT_ROWS // FIT_BATCH) <= STEPS   # OneCycle's total_steps

Case = namedtuple("Case", "act1 act2 norm1 norm2 loss opt sched dropout weights penalty clip bias")
FACTORS = {"act1": ACTS, "act2": ACTS, "norm1": NORMS, "norm2": NORMS, "loss": list(LOSS_CASES),
           "opt": sorted(OPTIMIZERS_UNDER_TEST), "sched": sorted(SCHEDULES), "dropout": list(DROPOUTS),
           "weights": [False, True], "penalty": [False, True], "clip": [None, 0.5], "bias": [True, False]}
PAIRWISE = [Case(*row) for row in pairwise(FACTORS)]
# the full product: the 9 optimizers of the contract (RMSprop with momentum and centered), the
# 4 schedules and a constant rate; a second activation, dropout, weights, penalties and clipping
# on (unclipped, a few of these 14,580 nets diverge within 5 steps: the pairwise cases run
# without clipping too)
FULL_OPTS = ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop_both", "adagrad", "lion", "lamb"]
FULL_SCHEDS = ["constant", "cosine_warmup", "exponential", "piecewise", "onecycle"]


def full_cases(act, norm, loss):
    other = ACTS[(ACTS.index(act) + 5) % len(ACTS)]
    return [Case(act, other, norm, norm, loss, opt, sched, "both", True, True, 0.5, True)
            for opt, sched in itertools.product(FULL_OPTS, FULL_SCHEDS)]


def case_id(c):
    return "-".join([c.act1, c.act2, str(c.norm1), str(c.norm2), c.loss, c.opt, c.sched, "drop_" + c.dropout]
                    + (["sw"] if c.weights else []) + (["pen"] if c.penalty else [])
                    + (["clip"] if c.clip else []) + ([] if c.bias else ["nobias"]))


# ---- building a case ------------------------------------------------------------------------------
def spec_of(case):
    loss, _, k, smoothing = LOSS_CASES[case.loss]
    norms = [case.norm1, case.norm2]
    # Batch norm makes the gradient of the bias before it exactly 0, computed as rounding noise
    # that adaptive optimizers (and Lion's sign) turn into steps of size lr: no bias there.
    bias = case.bias and ("batch" not in norms or OPTIMIZERS_UNDER_TEST[case.opt][1] in NOISE_SAFE)
    if OPTIMIZERS_UNDER_TEST[case.opt][1] == "lion" and case.act1 == "linear" and case.norm2 == "batch":
        # Through a linear activation the second layer's batch norm zeroes the gradient of the
        # first layer's beta too (on every unit no row of the batch dropped): Lion's sign of
        # that noise is a step of size lr either way. No first-layer norm there.
        norms[0] = None
    return naive.Spec([4, 6, 5, k], activation=[case.act1, case.act2], norm=norms, loss=loss,
                      dropout=DROPOUTS[case.dropout], bias=bias, l1=0.003 if case.penalty else 0.0,
                      l2=0.01 if case.penalty else 0.0, label_smoothing=smoothing, huber_delta=HUBER_DELTA)


def targets(case, rng, n):
    _, kind, k, _ = LOSS_CASES[case.loss]
    return {"real": lambda: rng.standard_normal((n, k)),
            "int": lambda: rng.integers(0, k, n),
            "prob": lambda: rng.dirichlet(np.ones(k), n),
            "unit": lambda: rng.uniform(0, 1, (n, k)),
            "counts": lambda: rng.poisson(1.5, (n, k)).astype(np.float64)}[kind]()


def init_scale(case):
    # exp's outputs make poisson's gradients large: smaller logits keep its unclipped SGD stable
    return 0.5 if case.loss == "poisson" else 1.5


def batch(case, rng, n, width=4):
    X = rng.standard_normal((n, width))
    return X, targets(case, rng, n), rng.uniform(0.2, 2.0, n) if case.weights else None


def model_of(spec, params, seed, dtype="float64", **kw):
    """A fastbp model (float64 unless told) of the reference's spec, holding a copy of ``params``."""
    m = fastbp.MLP(spec.sizes, activation=list(spec.activations), output=spec.output, loss=spec.loss,
                   norm=list(spec.norms), dropout=list(spec.dropouts), bias=spec.bias, l1=spec.l1, l2=spec.l2,
                   label_smoothing=spec.label_smoothing, huber_delta=spec.huber_delta, dtype=dtype, seed=seed,
                   **kw)
    m.params[:] = params
    return m


def optimizers(case):
    """(fastbp optimizer, its name in the reference, hyperparameters, lr, reference schedule)."""
    cls, ref_name, hyper = OPTIMIZERS_UNDER_TEST[case.opt]
    lr = BASE_LR.get(case.opt, 0.02)
    make, make_ref = SCHEDULES[case.sched]
    return cls(lr=make(lr), clip_norm=case.clip, **hyper), ref_name, hyper, lr, make_ref(lr)


# ---- the references the model is compared with ------------------------------------------------------
class NumpyRef:
    """The plain-numpy reference (tests/naive.py) as a model trained step by step."""

    def __init__(self, spec, params, case):
        _, ref_name, hyper, _, schedule = optimizers(case)
        self.spec, self.params, self.buffers = spec, params.copy(), naive.init_buffers(spec)
        self.opt = naive.Optimizer(ref_name, clip_norm=case.clip, lr=schedule, **hyper)

    def step(self, X, y, sw, masks):
        return naive.train_steps(self.spec, self.params, self.buffers, [(X, y, sw)], self.opt, [masks])[0]

    def predict(self, X):
        return naive.predict(self.spec, self.params, X, self.buffers)

    def eval_loss(self, X, y, sw=None):
        return naive.loss_value(self.spec, self.params, X, y, sw, buffers=self.buffers, training=False)


TORCH_OPTIMIZERS = {"sgd": "SGD", "momentum": "SGD", "nesterov": "SGD", "adam": "Adam", "adamw": "AdamW",
                    "rmsprop": "RMSprop", "adagrad": "Adagrad"}


def torch_hyper(ref_name, hyper):
    """fastbp's hyperparameters in torch.optim's names."""
    h = dict(hyper)
    if "beta1" in h:
        h["betas"] = (h.pop("beta1"), h.pop("beta2"))
    if ref_name == "nesterov":
        h["nesterov"] = True
    return h


class TorchRef:
    """The same network in torch, float64: nn.Sequential of Linear, LayerNorm/BatchNorm1d, the
    activation and the given dropout masks (test_naive_reference.torch_net); torch.optim's
    optimizers, or optax's lion/lamb on the torch gradients (one leaf per W, b, gamma, beta);
    OneCycle as torch's OneCycleLR, the Keras schedules' rates from the reference (checked
    against optax in test_naive_reference); clipping by torch.nn.utils.clip_grad_norm_."""

    def __init__(self, spec, params, case):
        self.torch = torch = pytest.importorskip("torch")
        _, ref_name, hyper, lr, schedule = optimizers(case)
        self.spec, self.clip, self.schedule, self.t = spec, case.clip, schedule, 0
        self.net, self.linears, self.norms, self.tmasks = torch_net(spec, params, naive.init_buffers(spec))
        self.optax = self.sched = None
        if ref_name in ("lion", "lamb"):
            optax = pytest.importorskip("optax")
            import jax
            import jax.numpy as jnp
            jax.config.update("jax_enable_x64", True)
            self.optax, self.jnp = optax, jnp
            okw = {"beta1": "b1", "beta2": "b2", "eps": "eps", "weight_decay": "weight_decay"}
            self.tx = optax.inject_hyperparams(getattr(optax, ref_name))(
                learning_rate=jnp.asarray(1.0, jnp.float64), **{okw[k]: v for k, v in hyper.items()})
            self.ostate = self.tx.init(self._leaves())
        else:
            self.opt = getattr(torch.optim, TORCH_OPTIMIZERS[ref_name])(self.net.parameters(), lr=lr, foreach=False,
                                                                       **torch_hyper(ref_name, hyper))
            if case.sched == "onecycle":
                self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt, max_lr=lr, total_steps=STEPS,
                                                                 pct_start=0.4, anneal_strategy="cos",
                                                                 cycle_momentum=False)

    def _leaves(self):
        return [self.jnp.asarray(p.detach().numpy().copy()) for p in self.net.parameters()]

    def step(self, X, y, sw, masks):
        torch = self.torch
        for module, mask in zip(self.tmasks, masks):
            if module is not None:
                module.mask = torch.from_numpy(mask)
        self.net.train()
        self.net.zero_grad()
        L = torch_loss(self.spec, self.net(torch.from_numpy(X)), y, sw, self.linears)
        L.backward()
        if self.clip is not None:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.clip, foreach=False)
        lr = self.schedule(self.t) if callable(self.schedule) else self.schedule
        if self.optax is not None:
            self.ostate.hyperparams["learning_rate"] = self.jnp.asarray(lr, self.jnp.float64)
            grads = [self.jnp.asarray(p.grad.numpy().copy()) for p in self.net.parameters()]
            leaves = self._leaves()
            updates, self.ostate = self.tx.update(grads, self.ostate, leaves)
            with torch.no_grad():
                for p, new in zip(self.net.parameters(), self.optax.apply_updates(leaves, updates)):
                    p.copy_(torch.from_numpy(np.array(new)))
        else:
            if self.sched is None:
                for g in self.opt.param_groups:
                    g["lr"] = lr
            self.opt.step()
            if self.sched is not None:
                self.sched.step()
        self.t += 1
        return L.item()

    @property
    def params(self):
        return torch_params(self.spec, self.linears, self.norms)

    @property
    def buffers(self):
        return torch_buffers(self.spec, self.norms)

    def predict(self, X):
        torch = self.torch
        self.net.eval()
        with torch.no_grad():
            Z = self.net(torch.from_numpy(X))
            return {"linear": lambda z: z, "sigmoid": torch.sigmoid, "softmax": lambda z: torch.softmax(z, 1),
                    "exp": torch.exp}[self.spec.output](Z).numpy()

    def eval_loss(self, X, y, sw=None):
        self.net.eval()
        with self.torch.no_grad():
            return torch_loss(self.spec, self.net(self.torch.from_numpy(X)), y, sw, self.linears).item()


REFERENCES = {"numpy": NumpyRef, "torch": TorchRef}


def assert_params_close(spec, got, want, what):
    for l, name, a, b, _ in naive.param_segments(spec):
        err = max_rel(got[a:b], want[a:b])
        assert err < TOL, f"{what}: layer {l} {name} differs by {err:.3g} (relative)"


def assert_buffers_close(spec, got, want, what):
    assert got.shape == want.shape
    for l, name, a, b, _ in naive.buffer_segments(spec):
        err = max_rel(got[a:b], want[a:b])
        assert err < TOL, f"{what}: layer {l} {name} differs by {err:.3g} (relative)"


def assert_scalar_close(got, want, what):
    assert abs(got - want) <= TOL * abs(want), f"{what}: {got!r} vs {want!r}"


# ---- 1. step by step ------------------------------------------------------------------------------------
def check_train_steps(case, reference, seed):
    spec = spec_of(case)
    rng = np.random.default_rng(seed)
    params = naive.init_params(spec, rng, scale=init_scale(case))
    ref = REFERENCES[reference](spec, params, case)
    model = model_of(spec, params, seed)
    opt, schedule = optimizers(case)[::4]
    key = naive.dropout_key(seed)
    for s, m in enumerate(STEP_ROWS):
        X, y, sw = batch(case, rng, m)
        masks = naive.dropout_masks(spec, key, model.updates, m)
        assert opt.lr == pytest.approx(schedule(s) if callable(schedule) else schedule, rel=1e-14)
        loss = model.train_step(X, y, opt, sample_weight=sw)
        assert_scalar_close(loss, ref.step(X, y, sw, masks), f"loss of step {s}")
    assert model.updates == opt.iterations == len(STEP_ROWS)
    assert_params_close(spec, model.params, ref.params, "params")
    assert_buffers_close(spec, model.buffers, ref.buffers, "running statistics")
    X, y, sw = batch(case, rng, 9)
    assert max_rel(model.predict(X), ref.predict(X)) < TOL, "predict"
    assert_scalar_close(model.evaluate(X, y, sample_weight=sw)["loss"], ref.eval_loss(X, y, sw), "evaluate")


def check_fit(case, reference, seed):
    """fit(shuffle=False): minibatches of rows in order, the last one partial, updates counted
    across epochs; History's loss (the sample-weighted mean of the minibatch losses, penalty
    included), val_loss (running statistics, no dropout) and lr (the next update's rate)."""
    spec = spec_of(case)
    rng = np.random.default_rng(seed)
    params = naive.init_params(spec, rng, scale=init_scale(case))
    ref = REFERENCES[reference](spec, params, case)
    model = model_of(spec, params, seed)
    opt = optimizers(case)[0]
    X, y, sw = batch(case, rng, FIT_ROWS)
    Xv, yv, _ = batch(case, rng, 7)
    hist = model.fit(X, y, epochs=FIT_EPOCHS, batch_size=FIT_BATCH, optimizer=opt, shuffle=False, sample_weight=sw,
                     validation_data=(Xv, yv), verbose=0).history
    key, t = naive.dropout_key(seed), 0
    for e in range(FIT_EPOCHS):
        total = 0.0
        for r0 in range(0, FIT_ROWS, FIT_BATCH):
            rows = slice(r0, min(FIT_ROWS, r0 + FIT_BATCH))
            m = rows.stop - rows.start
            total += m * ref.step(X[rows], y[rows], None if sw is None else sw[rows],
                                  naive.dropout_masks(spec, key, t, m))
            t += 1
        assert_scalar_close(hist["loss"][e], total / FIT_ROWS, f"loss of epoch {e}")
        if e == FIT_EPOCHS - 1:
            assert_scalar_close(hist["val_loss"][e], ref.eval_loss(Xv, yv), f"val_loss of epoch {e}")
    schedule, steps = optimizers(case)[4], -(-FIT_ROWS // FIT_BATCH)
    want_lr = [schedule(steps * (e + 1)) if callable(schedule) else schedule for e in range(FIT_EPOCHS)]
    assert hist["lr"] == pytest.approx(want_lr, rel=1e-14)
    assert model.updates == opt.iterations == t
    assert_params_close(spec, model.params, ref.params, "params")
    assert_buffers_close(spec, model.buffers, ref.buffers, "running statistics")


@pytest.mark.parametrize("reference", list(REFERENCES))
@pytest.mark.parametrize("i", range(len(PAIRWISE)), ids=[case_id(c) for c in PAIRWISE])
def test_five_train_steps_match_the_reference(i, reference):
    check_train_steps(PAIRWISE[i], reference, seed=100 + i)


@pytest.mark.parametrize("reference", list(REFERENCES))
@pytest.mark.parametrize("i", range(len(PAIRWISE)), ids=[case_id(c) for c in PAIRWISE])
def test_short_fit_matches_the_reference(i, reference):
    check_fit(PAIRWISE[i], reference, seed=500 + i)


@pytest.mark.parametrize("i", [0, 3, 17, 42, 77, 120])
def test_float32_follows_the_float64_reference(i):
    """The same kernels in float32 (masks, scale, norms in the model's dtype): three updates of a
    pairwise case against the float64 reference, to float32's precision."""
    case = PAIRWISE[i]
    spec = spec_of(case)
    rng = np.random.default_rng(900 + i)
    params = naive.init_params(spec, rng, scale=init_scale(case))
    ref = NumpyRef(spec, params, case)
    model = model_of(spec, params, 900 + i, dtype="float32")
    assert model.params.dtype == np.float32
    opt = optimizers(case)[0]
    key = naive.dropout_key(900 + i)
    for s, m in enumerate(STEP_ROWS[:3]):
        X, y, sw = batch(case, rng, m)
        loss = model.train_step(X, y, opt, sample_weight=sw)
        assert loss == pytest.approx(ref.step(X, y, sw, naive.dropout_masks(spec, key, s, m)), rel=2e-5)
    assert max_rel(model.params, ref.params) < 1e-4
    if model.buffers.size:
        assert max_rel(model.buffers, ref.buffers) < 1e-4
    X = rng.standard_normal((9, 4))
    assert max_rel(model.predict(X), ref.predict(X)) < 1e-4


def test_pairwise_cases_cover_every_pair():
    for (i, fi), (j, fj) in itertools.combinations(enumerate(FACTORS), 2):
        seen = {(row[i], row[j]) for row in PAIRWISE}
        assert seen == set(itertools.product(FACTORS[fi], FACTORS[fj])), (fi, fj)


def run_product(act, norm, reference):
    """Every loss, optimizer and schedule for one activation and norm (one test item each, to keep
    pytest's per-item cost off 15,000 cases); every failing case is reported."""
    failures = []
    for loss in LOSS_CASES:
        for j, case in enumerate(full_cases(act, norm, loss)):
            try:
                check_train_steps(case, reference, seed=1000 + j)
            except (AssertionError, FloatingPointError) as e:
                failures.append(f"{case_id(case)}: {type(e).__name__}: {str(e).splitlines()[0]}")
    assert not failures, f"{len(failures)} cases fail:\n" + "\n".join(failures[:30])


@pytest.mark.product
@pytest.mark.parametrize("norm", NORMS, ids=str)
@pytest.mark.parametrize("act", ACTS)
def test_full_product_matches_numpy_reference(act, norm):
    run_product(act, norm, "numpy")


@pytest.mark.product
@pytest.mark.parametrize("norm", NORMS, ids=str)
@pytest.mark.parametrize("act", ACTS)
def test_full_product_matches_torch(act, norm):
    pytest.importorskip("torch")
    run_product(act, norm, "torch")


# ---- 2. dropout -----------------------------------------------------------------------------------------
@kernel
def kernel_masks(A, D, width, key, t, pos0, layer, rate):
    """A and D (rows * width each) <- themselves times the kernels' dropout (dropout.py's
    generator and apply_mask) of the rows at positions pos0, pos0+1, ... in hidden layer
    ``layer`` at update ``t``, in vectors as wide as the training kernels' (53 units: three
    16-lane float32 vectors and a remainder)."""
    wide_vectors()
    skey = step_key(key, t)
    thresh = threshold(rate)
    scale = 1.0 / (1.0 - rate)
    for r in range(A.shape[0] // width):
        apply_mask(A, r * width, D, r * width, width, row_key(skey, pos0 + r, layer), thresh, scale)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_reference_mask_generator_equals_the_kernels(dtype):
    rows, width = 40, 53
    for seed, t, pos0, layer, rate in itertools.product([0, 7, 123456789], [0, 1, 41, 2 ** 40], [0, 9, 70000],
                                                        [0, 1, 5], [0.1, 1 / 3, 0.5, 0.9, 0.999]):
        if (seed + t + pos0 + layer) % 2:      # half of the product: every value, many pairs
            continue
        key = naive.dropout_key(seed)
        A = np.ones(rows * width, dtype)
        D = np.full(rows * width, 2.0, dtype)
        kernel_masks(A, D, width, np.uint64(key), t, pos0, layer, rate)
        mask = naive.dropout_mask(key, t, np.arange(pos0, pos0 + rows), layer, width, rate)
        want = (mask * (1.0 / (1.0 - rate))).astype(dtype)
        assert np.array_equal(A.reshape(rows, width), want), (seed, t, pos0, layer, rate)
        assert np.array_equal(D.reshape(rows, width), want * dtype(2.0)), (seed, t, pos0, layer, rate)


def test_reference_masks_are_independent_across_updates_rows_and_layers():
    """Two masks of rate p agree on a unit with probability p^2 + (1-p)^2 when independent."""
    p, key, n, w = 0.3, naive.dropout_key(5), 200, 300
    base = naive.dropout_mask(key, 4, np.arange(n), 1, w, p)
    expect = p * p + (1 - p) ** 2
    sd = math.sqrt(expect * (1 - expect) / (n * w))
    for other in [naive.dropout_mask(key, 5, np.arange(n), 1, w, p),            # next update
                  naive.dropout_mask(key, 4, np.arange(1, n + 1), 1, w, p),     # next row position
                  naive.dropout_mask(key, 4, np.arange(n), 0, w, p),            # other layer
                  naive.dropout_mask(naive.dropout_key(6), 4, np.arange(n), 1, w, p)]:    # other seed
        assert abs((base == other).mean() - expect) < 5 * sd
    assert abs(base.mean() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / (n * w))


@pytest.mark.parametrize("features", [dict(), dict(activation=["gelu", "relu"], norm=["layer", "batch"], l2=1e-3)],
                         ids=["plain", "featured"])
def test_rate_zero_is_bit_identical_to_no_dropout(features):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((70, 5)).astype(np.float32), rng.integers(0, 3, 70)
    out = []
    for extra in [{}, dict(dropout=0.0), dict(dropout=[0.0, 0.0]), dict(dropout=(0, 0))]:
        m = fastbp.MLP([5, 12, 8, 3], seed=4, **features, **extra)
        m.fit(X, y, epochs=2, batch_size=16, optimizer=fastbp.Adam(lr=0.01), verbose=0)
        loss = m.train_step(X[:10], y[:10], fastbp.SGD(lr=0.1))
        out.append((m.params.copy(), m.buffers.copy(), m.predict(X), loss, m.loss_and_grad(X, y)[1]))
    for o in out[1:]:
        for a, b in zip(o, out[0]):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_kept_fraction_and_scale(p):
    """Seen through a training step: net 1 -> H (linear, dropout p) -> 1, all weights 1, input 1,
    mae loss with the target far below the output, so that dL/d(output) = 1/m for every row and
    SGD(lr=1)'s step on the second layer's weight u is -(1/m) sum_rows mask/(1-p). Each unit's
    kept count is then an integer (the scale is exactly 1/(1-p)), the kept fraction is 1-p within
    the binomial sd, the counts vary across units as binomials do, and they are the reference's."""
    m_rows, H = 400, 300
    model = fastbp.MLP([1, H, 1], activation="linear", output="linear", loss="mae", bias=False, dropout=p,
                       dtype="float64", seed=8)
    model.params[:] = 1.0
    X, y = np.ones((m_rows, 1)), np.full(m_rows, -1e6)
    model.train_step(X, y, fastbp.SGD(lr=1.0))
    g1, g2 = 1.0 - model.layers[0].W[0], 1.0 - model.layers[1].W[:, 0]
    counts = g2 * m_rows * (1 - p)
    np.testing.assert_allclose(counts, np.round(counts), rtol=0, atol=1e-7)
    np.testing.assert_allclose(g1, g2, rtol=1e-12)
    kept, n = np.round(counts).sum(), m_rows * H
    assert abs(kept / n - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)
    var_ratio = np.round(counts).var(ddof=1) / (m_rows * p * (1 - p))
    assert abs(var_ratio - 1) < 5 * math.sqrt(2 / (H - 1))
    mask = naive.dropout_mask(naive.dropout_key(8), 0, np.arange(m_rows), 0, H, p)
    assert np.array_equal(np.round(counts), mask.sum(axis=0))


THREAD_SPEC = dict(sizes=[64, 128, 96, 4], activation=["gelu", "silu"], norm=["batch", "layer"], dropout=[0.3, 0.2],
                   loss="cross_entropy", l2=1e-3, bias=False)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")
@pytest.mark.parametrize("deterministic", [True, False])
def test_masks_do_not_depend_on_the_thread_count(deterministic):
    """Products of this size are split into parts (rows of the batch, so a part's masks start
    at a row offset): the same bits on 1 and 2 threads, and the reference's masks."""
    from fastbp.kernels.parts import PARALLEL_MIN_WORK
    spec = naive.Spec(**THREAD_SPEC)
    rng = np.random.default_rng(1)
    params = naive.init_params(spec, rng)
    X, y = rng.standard_normal((600, 64)), rng.integers(0, 4, 600)
    assert 300 * 64 * 128 >= PARALLEL_MIN_WORK and 300 * 128 * 96 >= PARALLEL_MIN_WORK
    runs = []
    try:
        for n_threads in (1, 2):
            fastbp.set_num_threads(n_threads)
            m = model_of(spec, params, 9, deterministic=deterministic)
            opt = fastbp.Momentum(lr=0.05)
            loss = m.train_step(X[:300], y[:300], opt)
            hist = m.fit(X, y, epochs=1, batch_size=300, shuffle=False, optimizer=opt, verbose=0)
            runs.append((m.params.copy(), m.buffers.copy(), loss, hist.history["loss"][0], m.predict(X)))
    finally:
        fastbp.set_num_threads(None)
    for a, b in zip(*runs):
        assert np.array_equal(a, b)
    buffers = naive.init_buffers(spec)
    ref = params.copy()
    key = naive.dropout_key(9)
    batches = [(X[:300], y[:300]), (X[:300], y[:300]), (X[300:], y[300:])]
    losses = naive.train_steps(spec, ref, buffers, batches, naive.Optimizer("momentum", lr=0.05),
                               [naive.dropout_masks(spec, key, t, 300) for t in range(3)])
    assert runs[0][2] == pytest.approx(losses[0], rel=1e-12)
    assert runs[0][3] == pytest.approx((losses[1] + losses[2]) / 2, rel=1e-12)
    assert_params_close(spec, runs[0][0], ref, "params")
    assert max_rel(runs[0][0], ref) < 1e-12 and max_rel(runs[0][1], buffers) < 1e-12


def featured_pair(seed=3):
    """The same float64 net and params with dropout and without; gelu and norms make both take
    the same kernels (a layer with norm or gelu keeps its activation's input either way)."""
    spec = naive.Spec([5, 7, 6, 3], activation=["gelu", "tanh"], norm=["batch", "layer"], dropout=[0.5, 0.3],
                      loss="cross_entropy", l1=1e-3, l2=1e-2, label_smoothing=0.1)
    plain = naive.Spec(spec.sizes, activation=spec.activations, norm=spec.norms, loss=spec.loss, l1=spec.l1,
                       l2=spec.l2, label_smoothing=spec.label_smoothing)
    rng = np.random.default_rng(seed)
    params = naive.init_params(spec, rng)
    return spec, plain, params, rng


def test_masks_are_off_in_predict_evaluate_and_loss_and_grad():
    spec, plain, params, rng = featured_pair()
    with_drop, without = model_of(spec, params, 3), model_of(plain, params, 3)
    stats = naive.init_buffers(spec) + rng.uniform(0, 0.5, naive.init_buffers(spec).size)
    for m in (with_drop, without):
        m.buffers[:] = stats
    X, y = rng.standard_normal((20, 5)), rng.integers(0, 3, 20)
    P = with_drop.predict(X)
    assert np.array_equal(P, without.predict(X))
    assert with_drop.evaluate(X, y) == without.evaluate(X, y)
    L, g = with_drop.loss_and_grad(X, y)
    L0, g0 = without.loss_and_grad(X, y)
    assert L == L0 and np.array_equal(g, g0)
    assert with_drop.updates == 0 and np.array_equal(with_drop.buffers, stats)     # nothing moved
    Lr, gr = naive.loss_and_grad(spec, params, X, y)                                # no masks
    assert L == pytest.approx(Lr, rel=1e-12) and max_rel(g, gr) < 1e-12
    assert max_rel(P, naive.predict(spec, params, X, stats)) < 1e-12
    # a training step does drop, with the masks of update 0
    masks = naive.dropout_masks(spec, naive.dropout_key(3), 0, 20)
    Ls = with_drop.train_step(X, y, fastbp.SGD(lr=0.1))
    assert Ls != L and Ls == pytest.approx(naive.loss_and_grad(spec, params, X, y, masks=masks)[0], rel=1e-12)


def test_every_update_draws_new_masks_and_the_count_is_the_models():
    spec, _, params, rng = featured_pair(seed=4)
    X, y = rng.standard_normal((12, 5)), rng.integers(0, 3, 12)
    key = naive.dropout_key(3)
    a, b = model_of(spec, params, 3), model_of(spec, params, 3)
    b.updates = 7
    la, lb = a.train_step(X, y, fastbp.SGD(lr=0.1)), b.train_step(X, y, fastbp.SGD(lr=0.1))
    assert la != lb and not np.array_equal(a.params, b.params)
    for t, loss in ((0, la), (7, lb)):
        want = naive.loss_and_grad(spec, params, X, y, masks=naive.dropout_masks(spec, key, t, 12))[0]
        assert loss == pytest.approx(want, rel=1e-12)
    # fits with a fresh optimizer each continue the model's count: no mask is repeated
    c = model_of(spec, params, 3)
    ref, buffers = params.copy(), naive.init_buffers(spec)
    for fit in range(2):
        c.fit(X, y, epochs=1, batch_size=6, shuffle=False, optimizer=fastbp.SGD(lr=0.1), verbose=0)
        naive.train_steps(spec, ref, buffers, [(X[:6], y[:6]), (X[6:], y[6:])], naive.Optimizer("sgd", lr=0.1),
                          [naive.dropout_masks(spec, key, t, 6) for t in (2 * fit, 2 * fit + 1)])
    assert c.updates == 4
    assert_params_close(spec, c.params, ref, "params after two fits")


# ---- 3. finite differences ------------------------------------------------------------------------------
def fd_cases():
    """Every activation in both hidden layers, every norm in both, every loss, penalties on and
    off, sample weights on and off."""
    losses = list(LOSS_CASES)
    cases = []
    for i, a in enumerate(ACTS):
        cases.append(dict(act=[a, ACTS[(i + 7) % len(ACTS)]], norm=[NORMS[i % 3], NORMS[(i + 2) % 3]],
                          loss=losses[i % len(losses)], l1=0.01 if i % 2 else 0.0, l2=0.02 if i % 3 else 0.0,
                          weights=i % 4 == 1))
    cases.append(dict(act=["relu", "tanh"], norm=["batch", "batch"], loss="huber", l1=0.0, l2=0.0, weights=True))
    cases.append(dict(act=["linear", "linear"], norm=["layer", "layer"], loss="ce_prob_smooth", l1=0.05, l2=0.0,
                      weights=False))
    return cases


FD_CASES = fd_cases()


def fd_case(c, seed):
    loss, kind, k, smoothing = LOSS_CASES[c["loss"]]
    spec = naive.Spec([3, 5, 4, k], activation=c["act"], norm=c["norm"], loss=loss, l1=c["l1"], l2=c["l2"],
                      label_smoothing=smoothing, huber_delta=HUBER_DELTA)
    rng = np.random.default_rng(seed)
    params = naive.init_params(spec, rng, scale=1.5)
    case = Case(*c["act"], *c["norm"], c["loss"], "sgd", "constant", "none", c["weights"], False, None, True)
    X, y, sw = batch(case, rng, 9, width=3)
    return spec, params, X, y, sw


def central_differences(f, p, h=1e-6):
    g = np.zeros_like(p)
    for i in range(p.size):
        q = p.copy()
        q[i] += h
        fp = f(q)
        q[i] -= 2 * h
        g[i] = (fp - f(q)) / (2 * h)
    return g


@pytest.mark.parametrize("i", range(len(FD_CASES)),
                         ids=["-".join(c["act"] + [str(n) for n in c["norm"]] + [c["loss"]]) for c in FD_CASES])
def test_loss_and_grad_matches_finite_differences(i):
    spec, params, X, y, sw = fd_case(FD_CASES[i], seed=40 + i)
    model = model_of(spec, params, 1)
    L, g = model.loss_and_grad(X, y, sample_weight=sw)

    def loss(q):
        model.params[:] = q
        return model.loss_and_grad(X, y, sample_weight=sw)[0]

    num = central_differences(loss, params)
    assert max_rel(g, num) < 1e-6
    assert L == pytest.approx(naive.loss_value(spec, params, X, y, sw), rel=1e-12)
    assert model.updates == 0 and np.array_equal(model.buffers, naive.init_buffers(spec))


@pytest.mark.parametrize("i", [0, 5, 10])
def test_training_step_gradient_with_dropout_matches_finite_differences(i):
    """With dropout the gradient of a training step is seen through SGD(lr=1): params - grad.
    Its loss, as a function of the params, is train_step's return value with the model's update
    count (so the masks) and running statistics put back before each call."""
    c = dict(FD_CASES[i])
    spec, params, X, y, sw = fd_case(c, seed=60 + i)
    spec = naive.Spec(spec.sizes, activation=spec.activations, norm=spec.norms, loss=spec.loss, l1=spec.l1,
                      l2=spec.l2, label_smoothing=spec.label_smoothing, huber_delta=spec.huber_delta,
                      dropout=[0.3, 0.4])
    model = model_of(spec, params, 6)
    t, stats = 5, model.buffers.copy()

    def step(q, lr):
        model.params[:] = q
        model.buffers[:] = stats
        model.updates = t
        return model.train_step(X, y, fastbp.SGD(lr=lr), sample_weight=sw)

    step(params, 1.0)
    g = params - model.params
    num = central_differences(lambda q: step(q, 1e-3), params)
    assert max_rel(g, num) < 1e-6
    masks = naive.dropout_masks(spec, naive.dropout_key(6), t, len(X))
    assert max_rel(g, naive.loss_and_grad(spec, params, X, y, sw, masks)[1]) < 1e-9


# ---- 4. bad input ---------------------------------------------------------------------------------------
ALL_ACTS = str(ACTS)[1:-1]
BAD_MLP = [
    (dict(dropout=1.0), ValueError, ["dropout", "[0, 1)", "1.0"]),
    (dict(dropout=-0.1), ValueError, ["dropout", "[0, 1)", "-0.1"]),
    (dict(dropout=[0.2, 1.5]), ValueError, ["dropout", "[0, 1)", "1.5"]),
    (dict(dropout=float("nan")), ValueError, ["dropout", "nan"]),
    (dict(dropout="0.1"), TypeError, ["dropout"]),
    (dict(dropout=[0.1]), ValueError, ["dropout", "list of 2", "list of 1"]),
    (dict(activation="swish"), ValueError, ["activation", "'swish'", ALL_ACTS]),
    (dict(activation=["relu", "swish"]), ValueError, ["activation", "'swish'", ALL_ACTS]),
    (dict(activation=["relu"]), ValueError, ["activation", "list of 2", "list of 1"]),
    (dict(activation=["relu", "gelu", "tanh"]), ValueError, ["activation", "list of 2", "list of 3"]),
    (dict(activation=["relu", 3]), TypeError, ["activation", "3"]),
    (dict(norm="group"), ValueError, ["norm", "'group'", "'layer'", "'batch'"]),
    (dict(norm=["layer", "instance"]), ValueError, ["norm", "'instance'", "'layer'", "'batch'"]),
    (dict(norm=["layer"]), ValueError, ["norm", "list of 2", "list of 1"]),
    (dict(loss="hinge"), ValueError, ["loss", "'hinge'", "'huber'", "'mae'", "'poisson'"]),
    (dict(output="relu"), ValueError, ["output", "'relu'", "'exp'"]),
    (dict(output="linear", loss="poisson"), ValueError, ["loss", "poisson", "exp"]),
    (dict(output="softmax", loss="huber"), ValueError, ["loss", "huber", "linear"]),
    (dict(output="exp", loss="mae"), ValueError, ["loss", "mae", "linear"]),
    (dict(output="linear", loss="mse", huber_delta=0), ValueError, ["huber_delta", "> 0", "0"]),
    (dict(output="linear", loss="huber", huber_delta=-1.0), ValueError, ["huber_delta", "> 0", "-1.0"]),
    (dict(output="linear", loss="huber", huber_delta=float("inf")), ValueError, ["huber_delta", "inf"]),
    (dict(output="linear", loss="huber", huber_delta="1"), TypeError, ["huber_delta"]),
    (dict(label_smoothing=1.0), ValueError, ["label_smoothing", "[0, 1)", "1.0"]),
    (dict(label_smoothing=-0.1), ValueError, ["label_smoothing", "[0, 1)", "-0.1"]),
    (dict(label_smoothing=float("nan")), ValueError, ["label_smoothing", "nan"]),
    (dict(output="linear", loss="mse", label_smoothing=0.1), ValueError, ["label_smoothing", "cross_entropy"]),
    (dict(l1=-1e-3), ValueError, ["l1", ">= 0"]),
    (dict(l2=float("nan")), ValueError, ["l2", "nan"]),
]


@pytest.mark.parametrize("kwargs, exc, fragments", BAD_MLP, ids=[str(k) for k, _, _ in BAD_MLP])
def test_constructor_rejects(kwargs, exc, fragments):
    with pytest.raises(exc) as info:
        fastbp.MLP([4, 8, 6, 3], **kwargs)
    for f in fragments:
        assert f in str(info.value), f"{f!r} not in {str(info.value)!r}"


def trained_featured_model():
    """A float32 model with batch norm and dropout, an optimizer with state and a schedule."""
    rng = np.random.default_rng(7)
    X, y = rng.standard_normal((41, 5)).astype(np.float32), rng.integers(0, 3, 41)
    m = fastbp.MLP([5, 8, 6, 3], activation=["gelu", "elu"], norm=["batch", "layer"], dropout=[0.2, 0.1], l2=1e-3,
                   seed=2)
    opt = fastbp.AdamW(lr=schedules.CosineDecay(1e-3, 50, warmup_target=1e-2, warmup_steps=5))
    m.fit(X, y, epochs=2, batch_size=12, optimizer=opt, verbose=0)
    return m, opt, X, y


def state_of(m, opt):
    return (m.params.copy(), m.buffers.copy(), m.updates, m.rng.bit_generator.state, opt.iterations, opt.lr,
            {k: v.copy() for k, v in opt.state_arrays().items()})


def assert_same_state(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if isinstance(x, dict) and x and isinstance(next(iter(x.values())), np.ndarray):
            assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
        elif isinstance(x, np.ndarray):
            assert np.array_equal(x, y)
        else:
            assert x == y


BAD_CALLS = {
    "lr_scheduler_callback": (lambda m, opt, X, y: m.fit(
        X, y, epochs=2, batch_size=12, optimizer=opt, verbose=0,
        callbacks=[fastbp.LearningRateScheduler(lambda e, lr: lr / 2)]), ["LearningRateScheduler", "schedule"]),
    "plateau_callback": (lambda m, opt, X, y: m.fit(
        X, y, epochs=2, batch_size=12, optimizer=opt, verbose=0, validation_split=0.2,
        callbacks=[fastbp.ReduceLROnPlateau()]), ["ReduceLROnPlateau", "schedule"]),
    "fit_last_batch_of_one_row": (lambda m, opt, X, y: m.fit(X, y, epochs=2, batch_size=8, optimizer=opt, verbose=0),
                                  ["batch_size", "batch norm", "one of a single row"]),
    "fit_batch_size_1": (lambda m, opt, X, y: m.fit(X, y, epochs=1, batch_size=1, optimizer=opt, verbose=0),
                         ["batch_size", "batch norm"]),
    "fit_one_row": (lambda m, opt, X, y: m.fit(X[:1], y[:1], epochs=1, batch_size=8, optimizer=opt, verbose=0),
                    ["batch_size", "batch norm"]),
    "fit_split_leaves_one_row": (lambda m, opt, X, y: m.fit(X[:10], y[:10], epochs=1, batch_size=4, optimizer=opt,
                                                            verbose=0, validation_split=0.1),
                                 ["batch_size", "batch norm"]),
    "train_step_one_row": (lambda m, opt, X, y: m.train_step(X[:1], y[:1], opt), ["X", "batch norm", "one row"]),
    "loss_and_grad_one_row": (lambda m, opt, X, y: m.loss_and_grad(X[:1], y[:1]), ["X", "batch norm", "one row"]),
}


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_training_calls_are_clear_errors_that_change_nothing(name):
    call, fragments = BAD_CALLS[name]
    m, opt, X, y = trained_featured_model()
    before = state_of(m, opt)
    with pytest.raises(ValueError) as info:
        call(m, opt, X, y)
    for f in fragments:
        assert f in str(info.value), f"{f!r} not in {str(info.value)!r}"
    assert_same_state(state_of(m, opt), before)
    # one row is fine outside training
    m.predict(X[:1])
    m.evaluate(X[:1], y[:1])


# ---- 5. files -------------------------------------------------------------------------------------------
# tests/data/base_model.fbp and base_checkpoint.fbp were written by fastbp 0.1 as it was before
# these features (file format version 1), with base_data() below and:
#   m = fastbp.MLP([4, 6, 3], activation="tanh", dtype="float64", seed=2)
#   m.fit(X, y, epochs=2, batch_size=16, optimizer=fastbp.Momentum(lr=0.05), verbose=0)
#   m.save("base_model.fbp")
#   c = fastbp.MLP([4, 5, 3], activation="relu", seed=3)
#   c.fit(X, y, epochs=2, batch_size=16, optimizer=fastbp.Adam(lr=0.01), validation_split=0.2, verbose=0,
#         callbacks=[fastbp.ModelCheckpoint("base_checkpoint.fbp", save_weights_only=False)])
# Their bits are those of x86-64 Linux on a CPU with AVX2 and no AVX-512 (the small-network kernels
# vectorize as wide as the CPU allows, see test_pinned_bits); base_model_avx512.fbp and
# base_checkpoint_avx512.fbp were written the same way by a7ae5fc (the main before these
# features) on a CPU with AVX-512. The comparisons with runs made here take the host's pair.
BASE_SUFFIX = {"avx2": "", "avx512": "_avx512"}.get(pinned_runs.vector_isa())
SAME_PLATFORM = BASE_SUFFIX is not None


def base_fixture(kind):
    """The base version's file of ``kind`` ("model" or "checkpoint") written on this host's kind of CPU."""
    return FIXTURES / f"base_{kind}{BASE_SUFFIX}.fbp"


def base_data():
    rng = np.random.default_rng(2024)
    X = rng.standard_normal((60, 4))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)
    return X, y


def test_base_fixtures_are_format_version_1():
    for name in ("base_model.fbp", "base_checkpoint.fbp", "base_model_avx512.fbp", "base_checkpoint_avx512.fbp"):
        raw = (FIXTURES / name).read_bytes()
        assert raw[:8] == b"\x89FASTBP\n" and int.from_bytes(raw[8:12], "little") == 1
        assert len(raw) < 4096


def test_model_file_of_the_base_version_loads_and_trains_on():
    X, y = base_data()
    loaded = fastbp.load(FIXTURES / "base_model.fbp")
    config = loaded.config()
    assert config["sizes"] == [4, 6, 3] and config["activation"] == "tanh" and config["dtype"] == "float64"
    assert config["dropout"] == 0.0 and config["norm"] is None and config["l1"] == config["l2"] == 0.0
    assert loaded.buffers.size == 0 and loaded.updates == 0
    assert all(layer.gamma is None and layer.running_mean is None for layer in loaded.layers)
    # the loaded model trains as the same model built here with its params
    again = fastbp.MLP(**config)
    again.params[:] = loaded.params
    for m in (loaded, again):
        m.fit(X, y, epochs=2, batch_size=16, optimizer=fastbp.Adam(lr=0.01), verbose=0)
    assert np.array_equal(loaded.params, again.params)
    if SAME_PLATFORM:
        # the constructor call and fit of the base version give the bits they gave then ...
        here = fastbp.MLP([4, 6, 3], activation="tanh", dtype="float64", seed=2)
        here.fit(X, y, epochs=2, batch_size=16, optimizer=fastbp.Momentum(lr=0.05), verbose=0)
        assert np.array_equal(here.params, fastbp.load(base_fixture("model")).params)


@pytest.mark.skipif(not SAME_PLATFORM, reason="the fixtures' bits are those of x86-64 Linux with AVX2 or AVX-512")
def test_checkpoint_of_the_base_version_resumes_to_the_same_bits():
    X, y = base_data()

    def run(resume_from=None):
        m = fastbp.MLP([4, 5, 3], activation="relu", seed=3)
        opt = fastbp.Adam(lr=0.01)
        h = m.fit(X, y, epochs=4, batch_size=16, optimizer=opt, validation_split=0.2, verbose=0,
                  resume_from=resume_from)
        return m, opt, h

    resumed, opt_r, h_r = run(base_fixture("checkpoint"))
    straight, opt_s, h_s = run()
    assert np.array_equal(resumed.params, straight.params)
    assert opt_r.iterations == opt_s.iterations == 12 and resumed.updates == 12
    assert all(np.array_equal(opt_r.state_arrays()[k], v) for k, v in opt_s.state_arrays().items())
    assert h_r.epoch == [0, 1, 2, 3]
    # version-1 checkpoints kept no "lr" in their history: it starts with the resumed epochs
    assert h_r.history.pop("lr") == h_s.history.pop("lr")[2:]
    assert h_r.history == h_s.history


FEATURED = {
    "gelu_mish_batch_layer_smoothing": dict(sizes=[5, 8, 6, 3], activation=["gelu", "mish"], norm=["batch", "layer"],
                                            dropout=[0.2, 0.1], l1=1e-4, l2=1e-3, label_smoothing=0.1),
    "selu_elu_layer_huber": dict(sizes=[5, 8, 6, 3], activation=["selu", "elu"], norm="layer", dropout=0.25,
                                 output="linear", loss="huber", huber_delta=0.7, l1=1e-3),
    "softplus_batch_poisson": dict(sizes=[5, 8, 3], activation="softplus", norm="batch", output="exp",
                                   loss="poisson", dtype="float64"),
}


def featured_data(name, n=50):
    rng = np.random.default_rng(12)
    X = rng.standard_normal((n, 5)).astype(np.float32)
    if name.endswith("smoothing"):
        return X, rng.integers(0, 3, n)
    if name.endswith("poisson"):
        return X, rng.poisson(1.0, (n, 3)).astype(np.float64)
    return X, rng.standard_normal((n, 3))


@pytest.mark.parametrize("name", list(FEATURED))
def test_save_load_round_trip_of_a_featured_model(tmp_path, name):
    X, y = featured_data(name)
    m = fastbp.MLP(seed=5, **FEATURED[name])
    m.fit(X, y, epochs=2, batch_size=16, optimizer=fastbp.Adam(lr=0.01), verbose=0)
    m.save(tmp_path / "m.fbp")
    m2 = fastbp.load(tmp_path / "m.fbp")
    assert m2.config() == m.config() and m2.updates == m.updates == 8
    assert np.array_equal(m2.params, m.params) and np.array_equal(m2.buffers, m.buffers)
    for a, b in zip(m.layers, m2.layers):
        for name_ in ("gamma", "beta", "running_mean", "running_var"):
            va, vb = getattr(a, name_), getattr(b, name_)
            assert (va is None) == (vb is None) and (va is None or np.array_equal(va, vb))
        assert (a.activation, a.norm, a.dropout) == (b.activation, b.norm, b.dropout)
    assert np.array_equal(m2.predict(X), m.predict(X)) and m2.evaluate(X, y) == m.evaluate(X, y)
    # training goes on with the masks of the saved update count (a model file has no RNG state:
    # shuffle=False keeps the two runs' minibatches the same)
    for model in (m, m2):
        model.fit(X, y, epochs=2, batch_size=16, optimizer=fastbp.Adam(lr=0.01), shuffle=False, verbose=0)
    assert m2.updates == m.updates == 16
    assert np.array_equal(m2.params, m.params) and np.array_equal(m2.buffers, m.buffers)


def test_checkpoint_resume_is_bit_identical_with_norm_dropout_and_a_schedule(tmp_path):
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((90, 6)).astype(np.float32), rng.integers(0, 3, 90)

    def run(epochs, path, resume=False):
        m = fastbp.MLP([6, 16, 12, 3], activation=["gelu", "silu"], norm=["batch", "layer"], dropout=[0.2, 0.3],
                       l2=1e-3, label_smoothing=0.05, seed=11)
        opt = fastbp.AdamW(lr=schedules.CosineDecay(1e-3, 30, alpha=0.1, warmup_target=1e-2, warmup_steps=6),
                           weight_decay=0.01)
        h = m.fit(X, y, epochs=epochs, batch_size=16, optimizer=opt, validation_split=0.2, verbose=0,
                  callbacks=[fastbp.ModelCheckpoint(path, save_weights_only=False)],
                  resume_from=path if resume else None)
        return m, opt, h

    straight, opt_s, h_s = run(6, tmp_path / "a.fbp")
    run(3, tmp_path / "b.fbp")
    resumed, opt_r, h_r = run(6, tmp_path / "b.fbp", resume=True)
    assert np.array_equal(resumed.params, straight.params) and np.array_equal(resumed.buffers, straight.buffers)
    assert resumed.updates == straight.updates == opt_r.iterations == opt_s.iterations == 6 * 5
    for k, v in opt_s.state_arrays().items():
        assert np.array_equal(opt_r.state_arrays()[k], v)
    assert opt_r.lr == opt_s.lr
    assert h_r.history == h_s.history and h_r.epoch == h_s.epoch == list(range(6))


FEATURED_SETUP = """
    import numpy as np
    import fastbp
    from fastbp import schedules

    EPOCHS = 10

    def run(path, threads, resume=False, callbacks=()):
        fastbp.set_num_threads(threads)
        rng = np.random.default_rng(42)
        X = rng.standard_normal((3000, 32)).astype(np.float32)
        y = (X[:, :4] @ rng.standard_normal((4, 4))).argmax(1)
        model = fastbp.MLP([32, 64, 48, 4], activation=["gelu", "relu"], norm=["batch", "layer"],
                           dropout=[0.2, 0.1], l2=1e-4, seed=7)
        opt = fastbp.AdamW(lr=schedules.CosineDecay(1e-3, 800, warmup_target=1e-2, warmup_steps=50))
        cbs = [fastbp.ModelCheckpoint(path, save_weights_only=False)] if path else []
        hist = model.fit(X, y, epochs=EPOCHS, batch_size=32, optimizer=opt, validation_split=0.1, verbose=0,
                         callbacks=cbs + list(callbacks), resume_from=path if resume else None)
        return model, opt, hist
"""


@pytest.mark.slow
def test_resume_after_kill9_is_bit_identical_with_norm_dropout_and_a_schedule(tmp_path):
    """test_checkpoint's kill -9 test with batch and layer norm, dropout and a warm-up cosine
    schedule: the running statistics, the update count (the masks) and the schedule's position
    come back from the checkpoint."""
    from test_checkpoint import killed_mid_run
    ns, path, threads = killed_mid_run(tmp_path, FEATURED_SETUP)
    try:
        resumed, opt_r, h_r = ns["run"](str(path), threads, resume=True)
        reference, opt_s, h_s = ns["run"](None, threads)
    finally:
        fastbp.set_num_threads(None)
    assert np.array_equal(resumed.params, reference.params) and np.array_equal(resumed.buffers, reference.buffers)
    assert resumed.updates == reference.updates == opt_r.iterations == opt_s.iterations
    for k, v in opt_s.state_arrays().items():
        assert np.array_equal(opt_r.state_arrays()[k], v)
    assert h_r.history == h_s.history and h_r.epoch == list(range(ns["EPOCHS"]))
