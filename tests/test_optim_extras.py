"""Optimizer extras against their textbook / PyTorch definitions, transcribed in plain numpy.

weight_decay (L2 added to the gradient, as torch.optim.SGD/Adam), AdamW (decoupled decay, as
torch.optim.AdamW), Nesterov momentum (torch.optim.SGD(nesterov=True)), and gradient clipping by
global norm (torch.nn.utils.clip_grad_norm_). Each runs several steps in float64 and must agree
to 1e-12, through ``opt.step`` and through the compiled minibatch loop of ``fit``.
"""
import numpy as np
import pytest

import fastbp


# ---- references: one class per torch optimizer, written from the torch docs' pseudocode ---------
def clip_coef(g, max_norm):
    """torch.nn.utils.clip_grad_norm_: scale by max_norm / (||g||_2 + 1e-6), only when that is < 1."""
    if max_norm is None:
        return 1.0
    total = np.sqrt(np.sum(g.astype(np.float64) ** 2))
    return min(1.0, max_norm / (total + 1e-6))


class RefSGD:
    """torch.optim.SGD: g += wd*p; with momentum b = mu*b + g (b = g at the first step);
    nesterov: g = g + mu*b, else g = b; p -= lr*g."""

    def __init__(self, lr, momentum=0.0, nesterov=False, weight_decay=0.0, clip_norm=None):
        self.lr, self.mu, self.nesterov, self.wd, self.clip = lr, momentum, nesterov, weight_decay, clip_norm
        self.buf = None

    def step(self, p, g):
        g = g * clip_coef(g, self.clip)
        if self.wd:
            g = g + self.wd * p
        if self.mu:
            self.buf = g.copy() if self.buf is None else self.mu * self.buf + g
            g = g + self.mu * self.buf if self.nesterov else self.buf
        return p - self.lr * g


class RefAdam:
    """torch.optim.Adam (decoupled=False: g += wd*p) and torch.optim.AdamW (decoupled=True:
    p *= 1 - lr*wd), then m, v, bias corrections, p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)."""

    def __init__(self, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False, clip_norm=None):
        self.lr, self.b1, self.b2, self.eps, self.wd = lr, beta1, beta2, eps, weight_decay
        self.decoupled, self.clip = decoupled, clip_norm
        self.m = self.v = None
        self.t = 0

    def step(self, p, g):
        g = g * clip_coef(g, self.clip)
        if self.decoupled:
            p = p * (1 - self.lr * self.wd)
        elif self.wd:
            g = g + self.wd * p
        if self.m is None:
            self.m, self.v = np.zeros_like(p), np.zeros_like(p)
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * g
        self.v = self.b2 * self.v + (1 - self.b2) * g * g
        bc1, bc2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        denom = np.sqrt(self.v) / np.sqrt(bc2) + self.eps
        return p - (self.lr / bc1) * self.m / denom


# (fastbp optimizer, reference with the same settings); lr and clip sizes chosen so that clipping
# is active on some steps and not on others (the random gradients below have norm about 4-8).
CASES = {
    "sgd_weight_decay": (lambda: fastbp.SGD(lr=0.1, weight_decay=0.05),
                         lambda: RefSGD(0.1, weight_decay=0.05)),
    "momentum_weight_decay": (lambda: fastbp.Momentum(lr=0.05, momentum=0.9, weight_decay=0.01),
                              lambda: RefSGD(0.05, momentum=0.9, weight_decay=0.01)),
    "nesterov": (lambda: fastbp.Nesterov(lr=0.05, momentum=0.8),
                 lambda: RefSGD(0.05, momentum=0.8, nesterov=True)),
    "momentum_nesterov_flag": (lambda: fastbp.Momentum(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.02),
                               lambda: RefSGD(0.05, momentum=0.8, nesterov=True, weight_decay=0.02)),
    "adam_weight_decay": (lambda: fastbp.Adam(lr=0.01, weight_decay=0.1),
                          lambda: RefAdam(0.01, weight_decay=0.1)),
    "adamw": (lambda: fastbp.AdamW(lr=0.01, weight_decay=0.1),
              lambda: RefAdam(0.01, weight_decay=0.1, decoupled=True)),
    "adamw_default_decay": (lambda: fastbp.AdamW(lr=0.01),
                            lambda: RefAdam(0.01, weight_decay=0.01, decoupled=True)),
    "sgd_clip": (lambda: fastbp.SGD(lr=0.1, clip_norm=5.0), lambda: RefSGD(0.1, clip_norm=5.0)),
    "nesterov_clip_decay": (lambda: fastbp.Nesterov(lr=0.05, momentum=0.9, weight_decay=0.01, clip_norm=5.0),
                            lambda: RefSGD(0.05, momentum=0.9, nesterov=True, weight_decay=0.01, clip_norm=5.0)),
    "adam_clip": (lambda: fastbp.Adam(lr=0.01, clip_norm=5.0), lambda: RefAdam(0.01, clip_norm=5.0)),
    "adamw_clip": (lambda: fastbp.AdamW(lr=0.01, weight_decay=0.05, clip_norm=5.0),
                   lambda: RefAdam(0.01, weight_decay=0.05, decoupled=True, clip_norm=5.0)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_step_matches_reference_over_several_steps(case):
    make, make_ref = CASES[case]
    opt, ref = make(), make_ref()
    rng = np.random.default_rng(7)
    p = rng.standard_normal(40)
    expected = p.copy()
    clipped = 0
    for step in range(8):
        g = rng.standard_normal(40) * rng.uniform(0.2, 1.4)    # norms on both sides of clip_norm
        clipped += clip_coef(g, getattr(ref, "clip", None)) < 1
        expected = ref.step(expected, g)
        opt.step(p, g.copy())
        np.testing.assert_allclose(p, expected, rtol=1e-12, atol=1e-12, err_msg=f"step {step}")
    assert opt.iterations == 8
    if getattr(ref, "clip", None) is not None:
        assert 0 < clipped < 8, "the test should exercise both clipped and unclipped steps"


def test_extras_change_the_update():
    """Each extra must make a difference, so that agreement above is not agreement by omission."""
    rng = np.random.default_rng(1)
    p0, g = rng.standard_normal(10), rng.standard_normal(10) * 10
    after = {}
    for name, opt in [("sgd", fastbp.SGD(lr=0.1)), ("sgd_wd", fastbp.SGD(lr=0.1, weight_decay=0.5)),
                      ("sgd_clip", fastbp.SGD(lr=0.1, clip_norm=1.0)),
                      ("adam", fastbp.Adam(lr=0.1)), ("adam_wd", fastbp.Adam(lr=0.1, weight_decay=0.5)),
                      ("adamw", fastbp.AdamW(lr=0.1, weight_decay=0.5))]:
        p = p0.copy()
        for _ in range(2):
            opt.step(p, g)
        after[name] = p
    for a, b in [("sgd", "sgd_wd"), ("sgd", "sgd_clip"), ("adam", "adam_wd"), ("adam", "adamw"), ("adam_wd", "adamw")]:
        assert not np.allclose(after[a], after[b]), (a, b)
    mom, nes = fastbp.Momentum(lr=0.1, momentum=0.9), fastbp.Nesterov(lr=0.1, momentum=0.9)
    pm, pn = p0.copy(), p0.copy()
    mom.step(pm, g)
    nes.step(pn, g)
    assert not np.allclose(pm, pn)


def test_clipping_rescales_to_exactly_the_global_norm():
    g = np.array([3.0, 4.0])                        # norm 5
    p = np.zeros(2)
    fastbp.SGD(lr=1.0, clip_norm=1.0).step(p, g)
    np.testing.assert_allclose(np.linalg.norm(p), 5.0 / (5.0 + 1e-6), rtol=1e-14)   # torch's 1e-6
    np.testing.assert_allclose(p / np.linalg.norm(p), -g / 5.0, rtol=1e-14)         # direction kept
    p = np.zeros(2)
    fastbp.SGD(lr=1.0, clip_norm=10.0).step(p, g)   # below the threshold: untouched
    np.testing.assert_array_equal(p, -g)


@pytest.mark.parametrize("case", ["sgd_weight_decay", "nesterov_clip_decay", "adamw_clip", "adam_weight_decay"])
def test_fit_runs_the_same_update_in_its_compiled_loop(case):
    """fit (shuffle=False, one batch per epoch) == loss_and_grad + the reference update."""
    make, make_ref = CASES[case]
    rng = np.random.default_rng(3)
    X = rng.standard_normal((24, 5))
    y = rng.integers(0, 3, 24)
    model = fastbp.MLP([5, 7, 3], activation="tanh", dtype="float64", seed=2)
    probe = model.copy()
    ref = make_ref()
    p = model.params.copy()
    for _ in range(5):
        probe.params[...] = p
        _, g = probe.loss_and_grad(X, y)
        p = ref.step(p, g)
    model.fit(X, y, epochs=5, batch_size=24, shuffle=False, optimizer=make(), verbose=0)
    np.testing.assert_allclose(model.params, p, rtol=1e-12, atol=1e-12)


def test_fit_clips_each_minibatch_by_its_own_norm():
    """Several batches per epoch: clipping applies per update, like clip_grad_norm_ before each step."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((30, 4)) * 3
    y = rng.standard_normal((30, 2)) * 5
    model = fastbp.MLP([4, 6, 2], activation="relu", output="linear", dtype="float64", seed=5)
    probe = model.copy()
    ref = RefSGD(0.01, momentum=0.5, clip_norm=0.5)
    p = model.params.copy()
    for _ in range(2):
        for lo in range(0, 30, 8):                     # shuffle=False: rows in order, last batch of 6
            probe.params[...] = p
            _, g = probe.loss_and_grad(X[lo:lo + 8], y[lo:lo + 8])
            assert np.linalg.norm(g) > 0.5              # every step is actually clipped
            p = ref.step(p, g)
    model.fit(X, y, epochs=2, batch_size=8, shuffle=False, optimizer=fastbp.Momentum(0.01, 0.5, clip_norm=0.5),
              verbose=0)
    np.testing.assert_allclose(model.params, p, rtol=1e-12, atol=1e-12)


def test_optimizer_names_and_bad_arguments():
    assert isinstance(fastbp.optim.get_optimizer("adamw"), fastbp.AdamW)
    assert isinstance(fastbp.optim.get_optimizer("nesterov"), fastbp.Nesterov)
    assert fastbp.AdamW().weight_decay == 0.01                   # torch's default
    assert fastbp.Nesterov().nesterov is True
    with pytest.raises(ValueError, match="weight_decay"):
        fastbp.Adam(weight_decay=-1)
    with pytest.raises(ValueError, match="clip_norm"):
        fastbp.SGD(clip_norm=0)
    with pytest.raises(ValueError, match="momentum"):
        fastbp.Nesterov(momentum=1.0)
    with pytest.raises(ValueError, match="optimizer: unknown name 'adamx'.*adamw"):
        fastbp.optim.get_optimizer("adamx")
