"""Optimizers and learning-rate schedules against the plain-numpy reference (tests/naive.py).

Every optimizer under every kind of schedule, with weight decay and clipping, step by step in
float64: params and every state row to 1e-12. LAMB's trust ratio per tensor (segments) against
the reference's per-tensor rule; the parallel update equal bit for bit to the serial one; the
rate the compiled loop uses equal bit for bit to the Python schedule (what ``opt.lr`` reads);
OneCycle refusing an update past total_steps before anything changes; argument checks; names
for ``optimizer=``; checkpoints of a scheduled optimizer; the epoch-level lr callbacks refusing
a scheduled optimizer.
"""
import argparse
import json

import numpy as np
import pytest

import fastbp
import naive
from fastbp import cli, io, schedules
from fastbp.kernels import optimizers as K
from fastbp.kernels import schedules as KS
from fastbp.kernels.args import Opt
from fastbp.optim import OPTIMIZERS, get_optimizer

# name: (fastbp class, naive name, hyperparameters both take); weight_decay on, and clip_norm
# (below) at a size that clips some of the random gradients and not others.
OPTIMIZERS_UNDER_TEST = {
    "sgd": (fastbp.SGD, "sgd", dict(weight_decay=0.05)),
    "momentum": (fastbp.Momentum, "momentum", dict(momentum=0.8, weight_decay=0.05)),
    "nesterov": (fastbp.Nesterov, "nesterov", dict(momentum=0.8, weight_decay=0.05)),
    "adam": (fastbp.Adam, "adam", dict(beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=0.05)),
    "adamw": (fastbp.AdamW, "adamw", dict(beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=0.05)),
    "rmsprop": (fastbp.RMSprop, "rmsprop", dict(alpha=0.9, eps=1e-6, weight_decay=0.05)),
    "rmsprop_momentum": (fastbp.RMSprop, "rmsprop", dict(alpha=0.9, momentum=0.7, weight_decay=0.05)),
    "rmsprop_centered": (fastbp.RMSprop, "rmsprop", dict(alpha=0.9, centered=True, weight_decay=0.05)),
    "rmsprop_both": (fastbp.RMSprop, "rmsprop", dict(alpha=0.9, momentum=0.7, centered=True, weight_decay=0.05)),
    "adagrad": (fastbp.Adagrad, "adagrad", dict(eps=1e-8, initial_accumulator_value=0.3, weight_decay=0.05)),
    "lion": (fastbp.Lion, "lion", dict(beta1=0.8, beta2=0.95, weight_decay=0.5)),
    "lamb": (fastbp.LAMB, "lamb", dict(beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=0.05)),
}
CLIP = 6.0
STEPS = 7

# name: (fastbp schedule, the same schedule in tests/naive.py), over about STEPS updates so that
# every phase (warm-up, decay, the flat end, boundaries) is reached.
SCHEDULES = {
    "constant": (lambda lr: lr, lambda lr: lr),
    "cosine": (lambda lr: schedules.CosineDecay(lr, 4, alpha=0.1),
               lambda lr: naive.CosineDecay(lr, 4, alpha=0.1)),
    "cosine_warmup": (lambda lr: schedules.CosineDecay(0.1 * lr, 3, alpha=0.2, warmup_target=lr, warmup_steps=2),
                      lambda lr: naive.CosineDecay(0.1 * lr, 3, alpha=0.2, warmup_target=lr, warmup_steps=2)),
    "exponential": (lambda lr: schedules.ExponentialDecay(lr, 3, 0.5),
                    lambda lr: naive.ExponentialDecay(lr, 3, 0.5)),
    "exponential_staircase": (lambda lr: schedules.ExponentialDecay(lr, 2, 0.3, staircase=True),
                              lambda lr: naive.ExponentialDecay(lr, 2, 0.3, staircase=True)),
    "piecewise": (lambda lr: schedules.PiecewiseConstantDecay([1, 4], [lr, 0.3 * lr, 0.1 * lr]),
                  lambda lr: naive.PiecewiseConstantDecay([1, 4], [lr, 0.3 * lr, 0.1 * lr])),
    "onecycle": (lambda lr: schedules.OneCycle(lr, STEPS, pct_start=0.4),
                 lambda lr: naive.OneCycle(lr, STEPS, pct_start=0.4)),
}
BASE_LR = {"lion": 0.01, "lamb": 0.05, "sgd": 0.05, "momentum": 0.05, "nesterov": 0.05}


def make_pair(name, sched, clip_norm=CLIP):
    cls, ref_name, hyper = OPTIMIZERS_UNDER_TEST[name]
    lr = BASE_LR.get(name, 0.02)
    make, make_ref = SCHEDULES[sched]
    return (cls(lr=make(lr), clip_norm=clip_norm, **hyper),
            naive.Optimizer(ref_name, clip_norm=clip_norm, lr=make_ref(lr), **hyper))


def state_rows(name, ref_state):
    """The reference's state of one tensor, in fastbp's row order (kernels.optimizers)."""
    hyper = OPTIMIZERS_UNDER_TEST[name][2]
    keys = {"sgd": [], "momentum": ["v"], "nesterov": ["v"], "adam": ["m", "v"], "adamw": ["m", "v"],
            "adagrad": ["sum"], "lion": ["m"], "lamb": ["m", "v"]}.get(name)
    if keys is None:        # RMSprop: square_avg, then grad_avg if centered, then the momentum buffer
        keys = (["square_avg"] + (["grad_avg"] if hyper.get("centered") else [])
                + (["momentum_buffer"] if hyper.get("momentum", 0) > 0 else []))
    return [ref_state[k] for k in keys]


def gradients(rng, n, steps=STEPS):
    # norms on both sides of CLIP
    return [rng.standard_normal(n) * rng.uniform(0.4, 1.6) for _ in range(steps)]


def assert_close(actual, expected, what):
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-14, err_msg=what)


# ---- step by step against the reference ----------------------------------------------------------
@pytest.mark.parametrize("sched", sorted(SCHEDULES))
@pytest.mark.parametrize("name", sorted(OPTIMIZERS_UNDER_TEST))
def test_step_matches_the_reference(name, sched):
    """opt.step on a bare array (one tensor), float64, STEPS updates: params and state rows."""
    rng = np.random.default_rng(11)
    n = 40
    opt, ref = make_pair(name, sched)
    p = rng.standard_normal(n)
    q = p.copy()
    clipped = 0
    for s, g in enumerate(gradients(rng, n)):
        clipped += naive.clip_coef([g], CLIP) < 1
        assert opt.lr == pytest.approx(ref.rate(s), rel=1e-14, abs=0)
        opt.step(p, g.copy())
        ref.step(q, g)
        assert_close(p, q, f"params after update {s}")
        rows = state_rows(name, ref.states[0])
        assert opt.state.shape == (len(rows), n)
        for i, r in enumerate(rows):
            assert_close(opt.state[i], r, f"state row {i} after update {s}")
    assert opt.iterations == STEPS
    assert 0 < clipped < STEPS, "some updates should clip and some not"


@pytest.mark.parametrize("name", ["lamb", "lamb_no_decay", "adam", "lion"])
def test_per_tensor_segments_match_the_reference_per_tensor(name):
    """opt.step(params, grads, segments): LAMB's trust ratio per tensor (each W, b, ... of a
    layout, an empty tensor included) as the reference's per-tensor rule; elementwise
    optimizers are unaffected by segments."""
    hyper = None
    if name == "lamb_no_decay":
        name, hyper = "lamb", dict(beta1=0.9, beta2=0.999)
    cls, ref_name, h = OPTIMIZERS_UNDER_TEST[name]
    h = hyper or h
    sizes = [12, 3, 0, 15, 5, 1]
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    n = int(bounds[-1])
    rng = np.random.default_rng(5)
    opt = cls(lr=schedules.ExponentialDecay(0.05, 2, 0.7), clip_norm=CLIP, **h)
    ref = naive.Optimizer(ref_name, clip_norm=CLIP, lr=naive.ExponentialDecay(0.05, 2, 0.7), **h)
    p = rng.standard_normal(n)
    p[bounds[3]:bounds[4]] = 0.0              # a tensor at zero: ratio 1 (optax's rule)
    q = p.copy()
    whole = p.copy()
    one_tensor = cls(lr=schedules.ExponentialDecay(0.05, 2, 0.7), clip_norm=CLIP, **h)
    for s, g in enumerate(gradients(rng, n)):
        opt.step(p, g.copy(), segments=bounds)
        ref.step([q[a:b] for a, b in zip(bounds[:-1], bounds[1:])], [g[a:b] for a, b in zip(bounds[:-1], bounds[1:])])
        one_tensor.step(whole, g.copy())
        assert_close(p, q, f"params after update {s}")
        for t, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            if b > a:
                for i, r in enumerate(state_rows(name, ref.states[t])):
                    assert_close(opt.state[i, a:b], r, f"tensor {t} state row {i} after update {s}")
    if name == "lamb":
        assert not np.allclose(p, whole), "per-tensor trust ratios should differ from one ratio over all"
    else:
        np.testing.assert_array_equal(p, whole)


def test_lamb_one_tensor_is_the_whole_array():
    rng = np.random.default_rng(2)
    n = 30
    opt = fastbp.LAMB(lr=0.1, weight_decay=0.01)
    ref = naive.Optimizer("lamb", lr=0.1, weight_decay=0.01)
    p = rng.standard_normal(n)
    q = p.copy()
    for g in gradients(rng, n, 3):
        opt.step(p, g.copy())
        ref.step(q, g)
    assert_close(p, q, "params")


def test_default_segments_are_one_tensor_and_clamp_to_the_buffer():
    """An Opt built without segments (the kernels' default) is one tensor; segments past the
    end of the buffer count as its end, so a call on empty views (as when kernels are only
    being loaded) touches nothing."""
    rng = np.random.default_rng(8)
    p, g = rng.standard_normal(25), rng.standard_normal(25)
    via_step, opt = p.copy(), fastbp.LAMB(lr=0.1, weight_decay=0.01)
    opt.step(via_step, g)
    args = fastbp.LAMB(lr=0.1, weight_decay=0.01).kernel_args(p)
    bare = Opt(args.code, args.hyper, args.state, args.step, args.clip)
    K.update(p, g, bare, None)
    np.testing.assert_array_equal(p, via_step)
    for maxparts in (None, 2):
        args = fastbp.LAMB().kernel_args(p, [0, 10, 25])
        K.update(p[:0], g[:0], args._replace(state=args.state[:, :0]), maxparts)
        assert args.step[0] == 1


def test_float32_follows_the_reference():
    """The float32 kernels (the default dtype) run the same rules, to float32 rounding."""
    for name in ("rmsprop_both", "adagrad", "lion", "lamb"):
        opt, ref = make_pair(name, "onecycle")
        rng = np.random.default_rng(3)
        p = rng.standard_normal(64).astype(np.float32)
        q = p.astype(np.float64)
        for g in gradients(rng, 64):
            opt.step(p, g.astype(np.float32))
            ref.step(q, g.astype(np.float32).astype(np.float64))
        assert p.dtype == opt.state.dtype == np.float32
        np.testing.assert_allclose(p, q, rtol=2e-5, atol=2e-6, err_msg=name)


# ---- parallel == serial ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS_UNDER_TEST))
def test_parallel_update_equals_serial_bit_for_bit(name, dtype):
    """Over 65536 params the update splits into fixed chunks (and LAMB's norm pass into fixed
    pieces): the same bits as one thread, whatever the parts."""
    rng = np.random.default_rng(9)
    n = 4 * K.CHUNK + 5000
    assert n >= K.PARALLEL_MIN_PARAMS
    # tensors that cross chunk boundaries, one longer than a chunk, small ones, an empty one
    segments = np.array([0, 100, 100, K.CHUNK + 7, K.CHUNK + 50, 2 * K.CHUNK + 3, n - 10, n], np.int64)
    p0 = rng.standard_normal(n).astype(dtype)
    grads = [rng.standard_normal(n).astype(dtype) for _ in range(3)]
    results = []
    for maxparts in (None, 2, 3):
        opt, _ = make_pair(name, "cosine_warmup", clip_norm=50.0)
        p = p0.copy()
        for g in grads:
            args = opt.kernel_args(p, segments)
            K.apply_update(p, g, args, maxparts, K.variant(args))
            opt.iterations = int(args.step[0])
        results.append((p, opt.state.copy()))
    for p, state in results[1:]:
        np.testing.assert_array_equal(p, results[0][0])
        np.testing.assert_array_equal(state, results[0][1])
    assert not np.array_equal(results[0][0], p0)


def test_lamb_large_buffer_matches_the_reference_per_tensor():
    """The norm pass sums each tensor in pieces (fixed by the layout): still the reference's
    trust ratios, on a buffer that takes the parallel path."""
    rng = np.random.default_rng(4)
    n = 4 * K.CHUNK + 900
    bounds = np.array([0, 3, K.CHUNK + 11, K.CHUNK + 500, n - 7, n], np.int64)
    opt = fastbp.LAMB(lr=0.05, weight_decay=0.01)
    ref = naive.Optimizer("lamb", lr=0.05, weight_decay=0.01)
    p = rng.standard_normal(n)
    q = p.copy()
    for _ in range(3):
        g = rng.standard_normal(n)
        args = opt.kernel_args(p, bounds)
        K.update(p, g, args, 2)
        opt.iterations = int(args.step[0])
        ref.step([q[a:b] for a, b in zip(bounds[:-1], bounds[1:])], [g[a:b] for a, b in zip(bounds[:-1], bounds[1:])])
    assert_close(p, q, "params")


# ---- the schedules -------------------------------------------------------------------------------
ALL_SCHEDULES = {
    "cosine": schedules.CosineDecay(0.1, 700, alpha=0.05),
    "cosine_warmup": schedules.CosineDecay(0.01, 600, alpha=0.0, warmup_target=0.3, warmup_steps=150),
    "cosine_warmup_from_0": schedules.CosineDecay(0.0, 900, warmup_target=1e-3, warmup_steps=100),
    "cosine_steps_ignored": schedules.CosineDecay(0.1, 500, warmup_steps=100),
    "exponential": schedules.ExponentialDecay(0.1, 97, 0.83),
    "exponential_staircase": schedules.ExponentialDecay(0.1, 97, 0.83, staircase=True),
    "exponential_growth": schedules.ExponentialDecay(1e-4, 300, 1.5),
    "piecewise": schedules.PiecewiseConstantDecay([10, 200, 200.5, 999], [0.3, 0.2, 0.1, 0.05, 0.01]),
    "piecewise_none": schedules.PiecewiseConstantDecay([], [0.25]),
    "onecycle": schedules.OneCycle(0.5, 1000),
    "onecycle_odd": schedules.OneCycle(0.5, 997, pct_start=0.25, div_factor=10.0, final_div_factor=100.0),
    "onecycle_no_rise": schedules.OneCycle(0.5, 50, pct_start=0.0),
    "onecycle_all_rise": schedules.OneCycle(0.5, 50, pct_start=1.0),
}
NAIVE_SCHEDULES = {
    "cosine": naive.CosineDecay(0.1, 700, alpha=0.05),
    "cosine_warmup": naive.CosineDecay(0.01, 600, alpha=0.0, warmup_target=0.3, warmup_steps=150),
    "cosine_warmup_from_0": naive.CosineDecay(0.0, 900, warmup_target=1e-3, warmup_steps=100),
    "cosine_steps_ignored": naive.CosineDecay(0.1, 500, warmup_steps=100),
    "exponential": naive.ExponentialDecay(0.1, 97, 0.83),
    "exponential_staircase": naive.ExponentialDecay(0.1, 97, 0.83, staircase=True),
    "exponential_growth": naive.ExponentialDecay(1e-4, 300, 1.5),
    "piecewise": naive.PiecewiseConstantDecay([10, 200, 200.5, 999], [0.3, 0.2, 0.1, 0.05, 0.01]),
    "piecewise_none": naive.PiecewiseConstantDecay([], [0.25]),
    "onecycle": naive.OneCycle(0.5, 1000),
    "onecycle_odd": naive.OneCycle(0.5, 997, pct_start=0.25, div_factor=10.0, final_div_factor=100.0),
    "onecycle_no_rise": naive.OneCycle(0.5, 50, pct_start=0.0),
    "onecycle_all_rise": naive.OneCycle(0.5, 50, pct_start=1.0),
}


def _ts(sched):
    """Updates 0 .. 1199 and a few far ones, those the schedule has a rate for."""
    ts = []
    for t in list(range(0, 1200)) + [5000, 123_456, 10**9]:
        try:
            sched.check_updates(t, 1)
        except ValueError:
            continue
        ts.append(t)
    return ts


@pytest.mark.parametrize("name", sorted(ALL_SCHEDULES))
def test_python_schedule_is_the_kernel_rate_and_the_reference(name):
    sched, ref = ALL_SCHEDULES[name], NAIVE_SCHEDULES[name]
    code = sched.encode()
    ts = _ts(sched)
    python = np.array([sched(t) for t in ts])
    kernel = np.array([KS.schedule_rate(code, 0.0, np.int64(t)) for t in ts])
    np.testing.assert_array_equal(python, kernel)
    np.testing.assert_allclose(python, [ref(t) for t in ts], rtol=1e-14, atol=1e-18)
    assert (python >= 0).all() and python.max() > 0


@pytest.mark.parametrize("name", ["cosine_warmup", "exponential_staircase", "piecewise", "onecycle_odd"])
def test_the_update_runs_at_the_rate_opt_lr_reads(name):
    """Through the whole update path: SGD from p = 0 with g = 1 moves p by exactly -rate; the
    rate of update t is opt.lr when opt.iterations == t."""
    sched = ALL_SCHEDULES[name]
    opt = fastbp.SGD(lr=sched)
    for t in [0, 1, 9, 10, 11, 149, 150, 151, 200, 201, 500, sched.last_update or 3000]:
        opt.iterations = t
        lr = opt.lr
        p = np.zeros(3)
        opt.step(p, np.ones(3))
        assert opt.iterations == t + 1
        assert (-p == lr).all() and lr == sched(t), t


def test_constant_rate_and_its_setter():
    opt = fastbp.Adam(lr=0.01)
    assert opt.lr == 0.01 and opt.schedule is None
    opt.lr = 0.5
    assert opt.lr == 0.5 and opt.hyper()[K.H_LR] == 0.5
    np.testing.assert_array_equal(opt.kernel_args(np.zeros(3)).sched, [0.0])
    with pytest.raises(ValueError, match="lr: expected a number > 0"):
        opt.lr = 0.0
    sched = schedules.ExponentialDecay(0.1, 10, 0.5)
    opt.set_learning_rate(sched)
    assert opt.schedule is sched and opt.lr == 0.1
    opt.iterations = 20
    assert opt.lr == sched(20) == pytest.approx(0.025)
    with pytest.raises(ValueError, match=r"lr: this Adam takes its rate from ExponentialDecay\(.*set_learning_rate"):
        opt.lr = 0.1
    assert opt.schedule is sched
    opt.set_learning_rate(0.3)
    assert opt.schedule is None and opt.lr == 0.3


# ---- OneCycle past total_steps ------------------------------------------------------------------
def test_onecycle_past_total_steps_raises_before_any_change():
    sched = schedules.OneCycle(0.1, 5)
    opt = fastbp.RMSprop(lr=sched, momentum=0.9)
    rng = np.random.default_rng(0)
    p = rng.standard_normal(20)
    for _ in range(5):
        opt.step(p, rng.standard_normal(20))
    assert opt.iterations == 5
    assert opt.lr == sched(4) == pytest.approx(sched.min_lr)       # the last update's rate
    p0, s0 = p.copy(), opt.state.copy()
    with pytest.raises(ValueError, match=r"OneCycle\(max_lr=0.1, total_steps=5.*update 5 would pass total_steps=5"):
        opt.step(p, rng.standard_normal(20))
    np.testing.assert_array_equal(p, p0)
    np.testing.assert_array_equal(opt.state, s0)
    assert opt.iterations == 5
    with pytest.raises(ValueError, match="update 5"):
        sched(5)


def test_a_rate_growing_past_the_float_range_is_refused():
    sched = schedules.ExponentialDecay(1.0, 1, 2.0)
    assert sched(1023) == 2.0 ** 1023
    opt = fastbp.SGD(lr=sched)
    opt.iterations = 1020
    opt.check_updates(4)
    with pytest.raises(ValueError, match=r"ExponentialDecay\(.*grows past the largest float by update 1024"):
        opt.check_updates(5)
    with pytest.raises(ValueError, match="update 1024"):
        sched(1024)
    opt.iterations = 1024
    assert opt.lr == float("inf")          # what the kernel would use; reading it never raises


def test_check_updates_names_the_update_that_would_pass():
    opt = fastbp.Adam(lr=schedules.OneCycle(0.1, 10))
    opt.iterations = 3
    opt.check_updates(7)                      # updates 3 .. 9: all in the cycle
    opt.check_updates(0)
    with pytest.raises(ValueError, match=r"total_steps=10.*update 10 would pass.*3 updates made.*8 more"):
        opt.check_updates(8)
    with pytest.raises(ValueError, match="n: expected an int >= 0"):
        opt.check_updates(-1)
    fastbp.Adam(lr=schedules.CosineDecay(0.1, 10)).check_updates(10**9)   # no end: never refuses
    fastbp.Adam().check_updates(10**9)


def test_the_kernel_refuses_an_update_past_total_steps_too():
    """A direct kernel call past the cycle raises before the update changes anything."""
    opt = fastbp.SGD(lr=schedules.OneCycle(0.1, 3))
    p = np.ones(4)
    args = opt.kernel_args(p)
    args.step[0] = 3
    with pytest.raises(ValueError, match="OneCycle"):
        K.update(p, np.ones(4), args, None)
    assert args.step[0] == 3 and (p == 1).all()


def test_train_step_past_total_steps_changes_nothing():
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((16, 4)), rng.integers(0, 3, 16)
    model = fastbp.MLP([4, 5, 3], dtype="float64", seed=0)
    opt = fastbp.LAMB(lr=schedules.OneCycle(0.01, 2))
    model.train_step(X, y, opt)
    model.train_step(X, y, opt)
    params, state = model.params.copy(), opt.state.copy()
    with pytest.raises(ValueError, match="total_steps=2"):
        model.train_step(X, y, opt)
    np.testing.assert_array_equal(model.params, params)
    np.testing.assert_array_equal(opt.state, state)
    assert opt.iterations == 2


# ---- argument checks ------------------------------------------------------------------------------
BAD_SCHEDULES = [
    (lambda: schedules.CosineDecay(-0.1, 10), ValueError, "initial_learning_rate: expected a number >= 0"),
    (lambda: schedules.CosineDecay(0.0, 10), ValueError, "initial_learning_rate: expected a number > 0 without"),
    (lambda: schedules.CosineDecay(0.1, 0), ValueError, "decay_steps: expected an int >= 1, got 0"),
    (lambda: schedules.CosineDecay(0.1, 10.0), TypeError, "decay_steps: expected an int, got float"),
    (lambda: schedules.CosineDecay(0.1, 10, alpha=1.5), ValueError, r"alpha: expected a number in \[0, 1\]"),
    (lambda: schedules.CosineDecay(0.1, 10, warmup_target=0.0), ValueError, "warmup_target: expected a number > 0"),
    (lambda: schedules.CosineDecay(0.1, 10, warmup_target="x"), TypeError, "warmup_target: expected a number"),
    (lambda: schedules.CosineDecay(0.1, 10, warmup_target=1.0, warmup_steps=-1), ValueError, "warmup_steps"),
    (lambda: schedules.CosineDecay(float("nan"), 10), ValueError, "initial_learning_rate: expected a finite"),
    (lambda: schedules.ExponentialDecay(0.0, 10, 0.5), ValueError, "initial_learning_rate: expected a number > 0"),
    (lambda: schedules.ExponentialDecay(0.1, -3, 0.5), ValueError, "decay_steps"),
    (lambda: schedules.ExponentialDecay(0.1, 10, 0.0), ValueError, "decay_rate: expected a number > 0"),
    (lambda: schedules.ExponentialDecay(0.1, 10, 0.5, staircase=1), TypeError, "staircase: expected True or False"),
    (lambda: schedules.PiecewiseConstantDecay([1, 2], [0.1, 0.2]), ValueError, "values: expected one more value"),
    (lambda: schedules.PiecewiseConstantDecay([5, 2], [0.1, 0.2, 0.3]), ValueError, "boundaries: expected strictly"),
    (lambda: schedules.PiecewiseConstantDecay([2, 2], [0.1, 0.2, 0.3]), ValueError, "boundaries: expected strictly"),
    (lambda: schedules.PiecewiseConstantDecay([1], [0.1, -0.2]), ValueError, r"values\[1\]: expected a learning rate"),
    (lambda: schedules.PiecewiseConstantDecay([1], [0.0, 0.0]), ValueError, "values: expected some rate > 0"),
    (lambda: schedules.PiecewiseConstantDecay(5, [0.1]), TypeError, "boundaries: expected a sequence"),
    (lambda: schedules.PiecewiseConstantDecay([1, "a"], [0.1, 0.2, 0.3]), TypeError, r"boundaries\[1\]"),
    (lambda: schedules.PiecewiseConstantDecay([1, float("inf")], [1, 2, 3]), ValueError, r"boundaries\[1\]"),
    (lambda: schedules.OneCycle(0.0, 10), ValueError, "max_lr: expected a number > 0"),
    (lambda: schedules.OneCycle(0.1, 0), ValueError, "total_steps: expected an int >= 1"),
    (lambda: schedules.OneCycle(0.1, 10, pct_start=1.2), ValueError, r"pct_start: expected a number in \[0, 1\]"),
    (lambda: schedules.OneCycle(0.1, 10, pct_start=0.1), ValueError, "pct_start: pct_start \\* total_steps"),
    (lambda: schedules.OneCycle(0.1, 10, div_factor=0), ValueError, "div_factor: expected a number > 0"),
    (lambda: schedules.OneCycle(0.1, 10, final_div_factor=-1), ValueError, "final_div_factor"),
]


@pytest.mark.parametrize("i", range(len(BAD_SCHEDULES)))
def test_schedule_arguments_are_checked(i):
    make, exc, match = BAD_SCHEDULES[i]
    with pytest.raises(exc, match=match):
        make()


def test_schedule_calls_and_lr_arguments_are_checked():
    s = schedules.CosineDecay(0.1, 10)
    with pytest.raises(ValueError, match="t: expected an int >= 0"):
        s(-1)
    with pytest.raises(TypeError, match="t: expected an int"):
        s(1.5)
    with pytest.raises(Exception):
        s.alpha = 0.5                          # frozen: a schedule cannot change under an optimizer
    with pytest.raises(TypeError, match="lr: expected a number > 0 or a fastbp.schedules schedule"):
        fastbp.Adam(lr=lambda t: 0.1)
    with pytest.raises(ValueError, match="lr: expected a number > 0"):
        fastbp.Lion(lr=-1)
    with pytest.raises(ValueError, match="lr: unknown schedule 'Cyclic'"):
        fastbp.Adam(lr={"class": "Cyclic", "config": {}})
    with pytest.raises(TypeError, match="lr: OneCycle takes no argument 'steps'"):
        fastbp.Adam(lr={"class": "OneCycle", "config": {"max_lr": 0.1, "steps": 3}})
    with pytest.raises(ValueError, match="total_steps"):
        fastbp.Adam(lr={"class": "OneCycle", "config": {"max_lr": 0.1, "total_steps": 0}})


BAD_OPTIMIZERS = [
    (lambda: fastbp.RMSprop(alpha=1.0), ValueError, r"alpha: expected a number in \[0, 1\)"),
    (lambda: fastbp.RMSprop(eps=-1), ValueError, "eps: expected a number >= 0"),
    (lambda: fastbp.RMSprop(momentum=-0.1), ValueError, "momentum"),
    (lambda: fastbp.RMSprop(centered=1), TypeError, "centered: expected True or False"),
    (lambda: fastbp.RMSprop(weight_decay=-1), ValueError, "weight_decay"),
    (lambda: fastbp.Adagrad(initial_accumulator_value=-0.1), ValueError, "initial_accumulator_value"),
    (lambda: fastbp.Adagrad(eps="1"), TypeError, "eps: expected a number"),
    (lambda: fastbp.Lion(beta1=1.0), ValueError, "beta1"),
    (lambda: fastbp.Lion(beta2=-0.5), ValueError, "beta2"),
    (lambda: fastbp.LAMB(beta2=1.5), ValueError, "beta2"),
    (lambda: fastbp.LAMB(clip_norm=0), ValueError, "clip_norm"),
    (lambda: fastbp.LAMB(eps=float("inf")), ValueError, "eps: expected a finite"),
]


@pytest.mark.parametrize("i", range(len(BAD_OPTIMIZERS)))
def test_optimizer_arguments_are_checked(i):
    make, exc, match = BAD_OPTIMIZERS[i]
    with pytest.raises(exc, match=match):
        make()


def test_segments_are_checked_before_any_change():
    opt = fastbp.LAMB()
    p, g = np.ones(6), np.ones(6)
    for bad, exc, match in [([0, 3], ValueError, r"from 0 to len\(params\) = 6"),
                            ([1, 6], ValueError, "from 0"),
                            ([0, 4, 2, 6], ValueError, "non-decreasing"),
                            ([0], ValueError, "at least 2 ints"),
                            ([0.0, 6.0], ValueError, "ints"),
                            ("06", TypeError, "segments: expected a sequence of ints")]:
        with pytest.raises(exc, match=match):
            opt.step(p, g, segments=bad)
    assert opt.iterations == 0 and opt.state is None and (p == 1).all()


def test_defaults_and_state_layout():
    assert fastbp.RMSprop().config() == dict(lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.0, centered=False,
                                              weight_decay=0.0, clip_norm=None)
    assert fastbp.Adagrad().config() == dict(lr=1e-2, eps=1e-10, initial_accumulator_value=0.0, weight_decay=0.0,
                                              clip_norm=None)
    assert fastbp.Lion().config() == dict(lr=1e-4, beta1=0.9, beta2=0.99, weight_decay=0.0, clip_norm=None)
    assert fastbp.LAMB().config() == dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.0,
                                           clip_norm=None)
    p = np.zeros(5)
    assert [fastbp.RMSprop(**kw).state_for(p).shape[0] for kw in
            (dict(), dict(centered=True), dict(momentum=0.5), dict(momentum=0.5, centered=True))] == [1, 2, 2, 3]
    np.testing.assert_array_equal(fastbp.Adagrad(initial_accumulator_value=0.25).state_for(p), np.full((1, 5), 0.25))
    assert fastbp.Lion().state_for(p).shape == (1, 5) and fastbp.LAMB().state_for(p).shape == (2, 5)


# ---- names, config, checkpoints -------------------------------------------------------------------
@pytest.mark.parametrize("name,cls", [("rmsprop", fastbp.RMSprop), ("adagrad", fastbp.Adagrad),
                                      ("lion", fastbp.Lion), ("lamb", fastbp.LAMB), ("adamw", fastbp.AdamW)])
def test_names_for_optimizer_argument(name, cls):
    assert name in OPTIMIZERS and type(get_optimizer(name)) is cls
    assert type(get_optimizer(name.upper())) is cls
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 3)), rng.integers(0, 2, 40)
    model = fastbp.MLP([3, 4, 2], seed=1)
    before = model.params.copy()
    model.fit(X, y, epochs=2, batch_size=16, optimizer=name, verbose=0)
    assert type(model.optimizer) is cls and model.optimizer.iterations == 6
    assert not np.array_equal(model.params, before)


def test_unknown_name_lists_the_new_ones():
    with pytest.raises(ValueError, match=r"optimizer: unknown name 'lambda'.*'adagrad'.*'lamb'.*'lion'.*'rmsprop'"):
        get_optimizer("lambda")


@pytest.mark.parametrize("name", sorted(OPTIMIZERS_UNDER_TEST))
@pytest.mark.parametrize("sched", ["constant", "cosine_warmup", "piecewise", "onecycle"])
def test_config_round_trips_through_json(name, sched):
    opt, _ = make_pair(name, sched)
    cfg = json.loads(json.dumps(opt.config()))
    again = type(opt)(**cfg)
    assert again.config() == opt.config() and again.schedule == opt.schedule
    assert repr(again) == repr(opt)
    if opt.schedule is not None:
        assert schedules.deserialize(schedules.serialize(opt.schedule)) == opt.schedule
        assert type(opt).__name__ + "(lr=" + repr(opt.schedule) in repr(opt)


def test_checkpoint_keeps_a_scheduled_optimizer(tmp_path):
    """A fit resumed from a checkpoint of a scheduled RMSprop (three state rows) ends with the
    bits of an uninterrupted fit; the optimizer it resumes with takes the saved schedule."""
    rng = np.random.default_rng(6)
    X, y = rng.standard_normal((60, 5)), rng.integers(0, 3, 60)

    def optimizer():
        return fastbp.RMSprop(lr=schedules.CosineDecay(0.0, 20, warmup_target=0.01, warmup_steps=4),
                              momentum=0.5, centered=True, weight_decay=1e-3)

    ref = fastbp.MLP([5, 8, 3], dtype="float64", seed=3)
    ref.fit(X, y, epochs=4, batch_size=16, optimizer=optimizer(), verbose=0)

    m = fastbp.MLP([5, 8, 3], dtype="float64", seed=3)
    opt = optimizer()
    m.fit(X, y, epochs=2, batch_size=16, optimizer=opt, verbose=0,
          callbacks=[fastbp.ModelCheckpoint(str(tmp_path / "c.fbp"))])
    header, arrays = io.read_file(tmp_path / "c.fbp")
    assert {"opt_s0", "opt_s1", "opt_s2"} <= set(arrays)
    assert header["meta"]["optimizer"]["config"]["lr"] == schedules.serialize(opt.schedule)
    assert header["meta"]["optimizer"]["iterations"] == 8

    resumed = fastbp.MLP([5, 8, 3], dtype="float64", seed=3)
    other = fastbp.RMSprop(lr=0.5)                       # a constant rate, no momentum: replaced
    resumed.fit(X, y, epochs=4, batch_size=16, optimizer=other, verbose=0, resume_from=tmp_path / "c.fbp")
    assert other.schedule == opt.schedule and other.momentum == 0.5 and other.centered
    assert other.iterations == ref.optimizer.iterations == 16
    np.testing.assert_array_equal(resumed.params, ref.params)
    np.testing.assert_array_equal(other.state, ref.optimizer.state)
    assert other.lr == ref.optimizer.lr == opt.schedule(16)


# ---- epoch-level lr callbacks ----------------------------------------------------------------------
@pytest.mark.parametrize("callback", [lambda: fastbp.LearningRateScheduler(lambda epoch, lr: lr * 0.5),
                                      lambda: fastbp.ReduceLROnPlateau(monitor="loss")])
def test_epoch_lr_callbacks_refuse_a_scheduled_optimizer(callback):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((30, 3)), rng.integers(0, 2, 30)
    model = fastbp.MLP([3, 4, 2], seed=0)
    before = model.params.copy()
    cb = callback()
    opt = fastbp.Adam(lr=schedules.ExponentialDecay(0.01, 10, 0.9))
    with pytest.raises(ValueError, match=rf"{type(cb).__name__} sets the learning rate every epoch.*Adam.*"
                                         r"ExponentialDecay\("):
        model.fit(X, y, epochs=3, optimizer=opt, callbacks=[cb], verbose=0)
    np.testing.assert_array_equal(model.params, before)
    assert opt.iterations == 0 and opt.state is None
    # with a constant rate they still run
    model.fit(X, y, epochs=2, optimizer=fastbp.Adam(lr=0.01), callbacks=[callback()], verbose=0)


# ---- the command line ------------------------------------------------------------------------------
def _args(schedule, lr=0.01, warmup=0):
    return argparse.Namespace(schedule=schedule, lr=lr, warmup_steps=warmup)


def test_cli_schedules():
    assert cli.lr_schedule(_args("none"), 100) == 0.01
    cos = cli.lr_schedule(_args("cosine", warmup=10), 100)
    assert cos == schedules.CosineDecay(0.0, 90, warmup_target=0.01, warmup_steps=10)
    assert cos(0) == 0.0 and cos(5) == pytest.approx(0.005) and cos(10) == 0.01
    assert 0 < cos(99) < 1e-5 and cos(100) == 0.0           # decays to 0 at the end of the run
    assert cli.lr_schedule(_args("cosine"), 100)(0) == 0.01
    one = cli.lr_schedule(_args("onecycle"), 100)
    assert one == schedules.OneCycle(0.01, 100) and one.last_update == 99
    with pytest.raises(cli.CLIError, match="--warmup-steps: expected fewer than the run's 100 updates"):
        cli.lr_schedule(_args("cosine", warmup=100), 100)
    with pytest.raises(cli.CLIError, match="--warmup-steps: only --schedule cosine"):
        cli.lr_schedule(_args("onecycle", warmup=5), 100)
    parser = cli.build_parser()
    ns = parser.parse_args(["train", "--schedule", "onecycle", "--optimizer", "lamb"])
    assert ns.schedule == "onecycle" and ns.optimizer == "lamb" and ns.warmup_steps == 0


def test_cli_trains_a_whole_onecycle_run(tmp_path):
    import io as _io
    out, err = _io.StringIO(), _io.StringIO()
    code = cli.main(["train", "iris", "--epochs", "3", "--batch-size", "32", "--optimizer", "lion", "--lr", "0.01",
                     "--schedule", "onecycle", "--out", str(tmp_path / "m.fbp"), "--quiet"], out=out, err=err)
    assert code == 0, err.getvalue()
    assert "lion lr 0.01 (onecycle)" in out.getvalue()
