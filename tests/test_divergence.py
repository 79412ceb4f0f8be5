"""Divergence: a NaN or inf loss (or an overflowed update) never survives a fit.

fit restores the params and optimizer state of the end of the last finite epoch, then raises
TrainingDiverged (a FloatingPointError), warns and returns (on_nan="stop"), or trains on
(on_nan="ignore"). The blow-up is produced the usual way: a learning rate far too large.
"""
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastbp
import fastbp.training as M

N, D = 96, 5


def regression():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D)).astype(np.float32)
    return X, (X @ rng.standard_normal((D, 2))).astype(np.float32)


class Recorder(fastbp.Callback):
    """Params and optimizer state at the end of every epoch."""

    def __init__(self):
        self.ends = {}

    def on_epoch_end(self, epoch, logs=None):
        opt = self.model.optimizer
        self.ends[epoch] = (self.model.params.copy(), [s.copy() for s in opt.state_arrays().values()],
                            opt.iterations)


def blow_up_at(epoch):
    return fastbp.LearningRateScheduler(lambda e, lr: 1e-3 if e < epoch else 1e30)


def make(optimizer="adam"):
    model = fastbp.MLP([D, 16, 2], activation="tanh", output="linear", loss="mse", seed=0)
    opt = {"sgd": fastbp.SGD(lr=1e-3), "momentum": fastbp.Momentum(lr=1e-3), "adam": fastbp.Adam(lr=1e-3)}[optimizer]
    return model, opt


def assert_state(model, opt, expected):
    params, states, iterations = expected
    assert np.array_equal(model.params, params), "params not restored to the last finite epoch"
    assert opt.iterations == iterations
    assert all(np.array_equal(a, b) for a, b in zip(opt.state_arrays().values(), states))
    assert np.isfinite(model.params).all()


@pytest.mark.parametrize("chunk_seconds", [M.CHUNK_SECONDS, 1e-12])      # one call per epoch, or per step
def test_raise_restores_the_last_finite_epoch(monkeypatch, chunk_seconds):
    monkeypatch.setattr(M, "CHUNK_SECONDS", chunk_seconds)
    X, y = regression()
    model, opt = make()
    rec = Recorder()
    with pytest.raises(fastbp.TrainingDiverged) as info:
        model.fit(X, y, epochs=8, batch_size=8, optimizer=opt, verbose=0, callbacks=[blow_up_at(3), rec])
    err = info.value
    assert isinstance(err, FloatingPointError)
    assert err.epoch == 3 and 0 <= err.step < N // 8
    msg = str(err)
    assert "epoch 3" in msg and "restored" in msg and "(epoch 2)" in msg and "smaller learning rate" in msg
    assert sorted(rec.ends) == [0, 1, 2]
    assert_state(model, opt, rec.ends[2])
    assert model.history.epoch == [0, 1, 2] and all(np.isfinite(model.history.history["loss"]))


def test_stop_restores_warns_and_returns_the_history():
    X, y = regression()
    model, opt = make("momentum")
    rec = Recorder()
    with pytest.warns(RuntimeWarning, match="diverged in epoch 2.*smaller learning rate"):
        hist = model.fit(X, y, epochs=8, batch_size=8, optimizer=opt, verbose=0, on_nan="stop",
                         callbacks=[blow_up_at(2), rec])
    assert hist.epoch == [0, 1] and not hist.interrupted
    assert_state(model, opt, rec.ends[1])


def test_ignore_trains_on():
    X, y = regression()
    model, opt = make("sgd")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # no warning either
        hist = model.fit(X, y, epochs=5, batch_size=8, optimizer=opt, verbose=0, on_nan="ignore",
                         callbacks=[blow_up_at(2)])
    assert hist.epoch == [0, 1, 2, 3, 4]
    assert np.isfinite(hist.history["loss"][:2]).all() and not np.isfinite(hist.history["loss"][-1])


def test_divergence_in_the_first_epoch_restores_the_params_fit_started_with():
    X, y = regression()
    model, opt = make()
    model.fit(X, y, epochs=2, batch_size=8, optimizer=opt, verbose=0)       # an earlier, healthy fit
    start = (model.params.copy(), [s.copy() for s in opt.state_arrays().values()], opt.iterations)
    opt.lr = 1e30
    with pytest.raises(fastbp.TrainingDiverged, match="epoch 0 .*as they were before this epoch"):
        model.fit(X, y, epochs=3, batch_size=8, optimizer=opt, verbose=0)
    assert_state(model, opt, start)


def test_an_overflowed_update_with_a_finite_loss_is_caught():
    """Linear 1 -> 1, W = 1, x = 2e19: the loss 4e38 is finite (computed in float64) but the
    weight gradient 8e38 overflows float32, so the very first update makes W = -inf."""
    X = np.full((4, 1), 2e19, np.float32)
    y = np.zeros(4, np.float32)

    def fresh():
        m = fastbp.MLP([1, 1], output="linear", loss="mse", bias=False)
        m.params[:] = 1
        return m

    # the premise: the loss of epoch 0 is finite while the params it leaves are not
    m = fresh()
    hist = m.fit(X, y, epochs=1, batch_size=4, optimizer=fastbp.SGD(lr=1e-3), shuffle=False, verbose=0,
                 on_nan="ignore")
    assert np.isfinite(hist.history["loss"][0]) and not np.isfinite(m.params).all()

    m = fresh()
    with pytest.raises(fastbp.TrainingDiverged, match="an update made the params or optimizer state NaN or inf") as e:
        m.fit(X, y, epochs=3, batch_size=4, optimizer=fastbp.SGD(lr=1e-3), shuffle=False, verbose=0)
    assert e.value.epoch == 0 and m.params.tolist() == [1.0]


def test_no_checkpoint_is_written_for_a_diverged_epoch(tmp_path):
    X, y = regression()
    model, opt = make()
    path = tmp_path / "ck.fbp"
    with pytest.raises(fastbp.TrainingDiverged):
        model.fit(X, y, epochs=6, batch_size=8, optimizer=opt, verbose=0,
                  callbacks=[blow_up_at(3), fastbp.ModelCheckpoint(str(path))])
    header, arrays = fastbp.io.read_file(path)
    assert header["meta"]["epoch"] == 2 and np.array_equal(arrays["params"], model.params)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(at=st.integers(0, 4), optimizer=st.sampled_from(["sgd", "momentum", "adam"]),
       batch=st.sampled_from([7, 16, 96]), on_nan=st.sampled_from(["raise", "stop"]))
def test_property_restores_exactly_the_epoch_before_the_blow_up(at, optimizer, batch, on_nan):
    """Whatever the optimizer and batch size, after the lr explodes at epoch `at` training
    diverges at some epoch e >= at (a huge lr may still leave an epoch or two finite), and the
    state is exactly that of the end of epoch e - 1 (or the initial one)."""
    X, y = regression()
    model, opt = make(optimizer)
    rec = Recorder()
    initial = (model.params.copy(), [], 0)
    kw = dict(epochs=8, batch_size=batch, optimizer=opt, verbose=0, on_nan=on_nan, callbacks=[blow_up_at(at), rec])
    if on_nan == "raise":
        with pytest.raises(fastbp.TrainingDiverged) as info:
            model.fit(X, y, **kw)
        e = info.value.epoch
    else:
        with pytest.warns(RuntimeWarning, match="diverged"):
            hist = model.fit(X, y, **kw)
        e = len(hist.epoch)
        assert hist.epoch == list(range(e))
    assert at <= e < 8 and sorted(rec.ends) == list(range(e))
    assert np.isfinite(model.history.history.get("loss", [])).all()
    expected = rec.ends[e - 1] if e else initial
    assert np.array_equal(model.params, expected[0]) and opt.iterations == expected[2]
    if e:
        assert all(np.array_equal(a, b) for a, b in zip(opt.state_arrays().values(), expected[1]))
    else:
        assert not any(s.any() for s in opt.state_arrays().values())
