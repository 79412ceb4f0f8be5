"""Callbacks and History, Keras semantics: hook order, early stopping, checkpoints, schedules, verbose."""
import io
import re
import sys
import time

import numpy as np
import pytest

import fastbp


def data(n=64, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5).astype(np.int64)
    return X, np.minimum(y, k - 1)


def model(seed=0, dtype="float64"):
    return fastbp.MLP([4, 8, 3], activation="tanh", dtype=dtype, seed=seed)


class Recorder(fastbp.Callback):
    """Logs every hook call, and the params and lr seen at each epoch end."""

    def __init__(self):
        self.calls, self.params, self.lrs, self.logs = [], [], [], []

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin",))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end",))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch))
        self.params.append(self.model.params.copy())
        self.lrs.append(self.model.optimizer.lr)
        self.logs.append(dict(logs))


# ---- base Callback and History ----------------------------------------------------------------
def test_hooks_run_in_keras_order_and_see_the_model():
    X, y = data()
    m, rec = model(), Recorder()
    m.fit(X, y, epochs=3, batch_size=16, callbacks=[rec], verbose=0)
    assert rec.model is m
    assert rec.calls == [("train_begin",), ("epoch_begin", 0), ("epoch_end", 0), ("epoch_begin", 1),
                         ("epoch_end", 1), ("epoch_begin", 2), ("epoch_end", 2), ("train_end",)]
    np.testing.assert_array_equal(rec.params[-1], m.params)


def test_initial_epoch_starts_the_count_there():
    X, y = data()
    rec = Recorder()
    hist = model().fit(X, y, epochs=5, initial_epoch=3, callbacks=rec, verbose=0)
    assert [c for c in rec.calls if c[0] == "epoch_end"] == [("epoch_end", 3), ("epoch_end", 4)]
    assert hist.epoch == [3, 4] and len(hist.history["loss"]) == 2


def test_history_holds_one_value_per_epoch_and_val_metrics_are_the_final_model_s():
    X, y = data(96)
    m = model()
    hist = m.fit(X[:64], y[:64], epochs=4, batch_size=16, validation_data=(X[64:], y[64:]), verbose=0)
    assert sorted(hist.history) == ["accuracy", "loss", "lr", "val_accuracy", "val_loss"]
    assert all(len(v) == 4 for v in hist.history.values())
    assert hist.epoch == [0, 1, 2, 3]
    final = m.evaluate(X[64:], y[64:])
    assert hist.history["val_loss"][-1] == pytest.approx(final["loss"], rel=1e-12)
    assert hist.history["val_accuracy"][-1] == pytest.approx(final["accuracy"], rel=1e-12)
    assert hist["loss"] is hist.history["loss"]
    assert hist.params["epochs"] == 4 and hist.params["steps"] == 4 and hist.params["samples"] == 64
    assert m.history is hist


def test_history_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    X, y = data()
    hist = model().fit(X, y, epochs=3, validation_split=0.25, verbose=0)
    fig = hist.plot(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "accuracy"]
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["loss", "val_loss"]
    np.testing.assert_allclose(fig.axes[0].get_lines()[1].get_ydata(), hist.history["val_loss"])


def test_callbacks_must_be_callbacks():
    X, y = data()
    with pytest.raises(TypeError, match=r"callbacks\[0\]: expected a fastbp.Callback, got function"):
        model().fit(X, y, callbacks=[lambda: None], verbose=0)


# ---- EarlyStopping ------------------------------------------------------------------------------
def test_early_stopping_stops_after_patience_epochs_without_improvement_and_restores_best():
    # min_delta so large that only the first epoch counts as an improvement (best = inf before it).
    X, y = data()
    m, rec = model(), Recorder()
    es = fastbp.EarlyStopping(monitor="loss", patience=2, min_delta=1e9, restore_best_weights=True)
    hist = m.fit(X, y, epochs=20, batch_size=16, callbacks=[rec, es], verbose=0)
    # Keras: epoch 0 improves; epochs 1 and 2 do not; patience 2 is used up at epoch 2.
    assert len(hist.epoch) == 3
    assert es.stopped_epoch == 2 and es.best_epoch == 0
    assert es.best == hist.history["loss"][0]
    np.testing.assert_array_equal(m.params, rec.params[0])          # the weights of epoch 0
    assert not np.array_equal(rec.params[0], rec.params[2])


def test_early_stopping_patience_zero_stops_at_the_first_non_improvement():
    X, y = data()
    es = fastbp.EarlyStopping(monitor="loss", patience=0, min_delta=1e9)
    rec = Recorder()
    m = model()
    m.fit(X, y, epochs=20, callbacks=[rec, es], verbose=0)
    assert len(rec.params) == 2 and es.stopped_epoch == 1
    np.testing.assert_array_equal(m.params, rec.params[-1])         # no restore unless asked


def test_early_stopping_on_validation_loss_picks_the_best_epoch():
    # Validation labels are the opposite of the training rule: val_loss rises as training improves,
    # so the best epoch is the first and training stops after patience more.
    rng = np.random.default_rng(5)
    X = rng.standard_normal((80, 4))
    y = (X[:, 0] > 0).astype(np.int64)
    m = fastbp.MLP([4, 8, 2], dtype="float64", seed=1)
    rec = Recorder()
    es = fastbp.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    hist = m.fit(X, y, epochs=50, batch_size=8, optimizer=fastbp.Adam(0.01),
                 validation_data=(X, 1 - y), callbacks=[rec, es], verbose=0)
    vl = hist.history["val_loss"]
    best = int(np.argmin(vl))
    assert es.best_epoch == best and es.best == vl[best]
    assert len(vl) == best + 1 + 3 < 50
    np.testing.assert_array_equal(m.params, rec.params[best])
    assert m.evaluate(X, 1 - y)["loss"] == pytest.approx(vl[best], rel=1e-12)


def test_early_stopping_maximizes_accuracy_in_auto_mode():
    es = fastbp.EarlyStopping(monitor="val_accuracy", patience=1)
    m = model()
    es.set_model(m)
    es.on_train_begin()
    for epoch, acc in enumerate([0.5, 0.7, 0.6, 0.65]):
        es.on_epoch_end(epoch, {"val_accuracy": acc})
        if m.stop_training:
            break
    assert es.best == 0.7 and es.best_epoch == 1 and es.stopped_epoch == 2


def test_early_stopping_warns_when_the_monitored_value_is_missing():
    X, y = data()
    es = fastbp.EarlyStopping(monitor="val_loss", patience=0)
    with pytest.warns(RuntimeWarning, match="monitor 'val_loss' is not among the logged values"):
        hist = model().fit(X, y, epochs=3, callbacks=[es], verbose=0)
    assert len(hist.epoch) == 3 and es.stopped_epoch is None


# ---- ModelCheckpoint ----------------------------------------------------------------------------
def test_checkpoint_writes_one_file_per_epoch_that_loads(tmp_path):
    X, y = data()
    m, rec = model(), Recorder()
    cp = fastbp.ModelCheckpoint(str(tmp_path / "m-{epoch}.fbp"), monitor="loss", save_weights_only=True)
    m.fit(X, y, epochs=3, batch_size=16, callbacks=[rec, cp], verbose=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-1.fbp", "m-2.fbp", "m-3.fbp"]
    for epoch in range(3):
        loaded = fastbp.load(tmp_path / f"m-{epoch + 1}.fbp")
        np.testing.assert_array_equal(loaded.params, rec.params[epoch])
        assert loaded.config() == m.config()


def test_checkpoint_save_best_only_keeps_the_best_epoch(tmp_path):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((80, 4))
    y = (X[:, 0] > 0).astype(np.int64)
    m, rec = fastbp.MLP([4, 8, 2], dtype="float64", seed=1), Recorder()
    path = tmp_path / "best.fbp"
    cp = fastbp.ModelCheckpoint(path, monitor="val_loss", save_best_only=True)
    hist = m.fit(X, y, epochs=8, batch_size=8, optimizer=fastbp.Adam(0.01), validation_data=(X, 1 - y),
                 callbacks=[rec, cp], verbose=0)
    best = int(np.argmin(hist.history["val_loss"]))
    assert best < 7, "validation loss should rise, so the best epoch is not the last"
    np.testing.assert_array_equal(fastbp.load(path).params, rec.params[best])


def test_checkpoint_then_resume_continues_exactly(tmp_path):
    X, y = data(50)
    straight = model()
    straight.fit(X, y, epochs=4, batch_size=8, optimizer=fastbp.Adam(0.01), verbose=0)

    first = model()
    path = tmp_path / "ckpt.fbp"
    first.fit(X, y, epochs=2, batch_size=8, optimizer=fastbp.Adam(0.01), verbose=0,
              callbacks=[fastbp.ModelCheckpoint(path, monitor="loss")])
    resumed = model(seed=99)                       # different init: the checkpoint must override it
    hist = resumed.fit(X, y, epochs=4, batch_size=8, optimizer=fastbp.Adam(0.01), verbose=0, resume_from=path)
    np.testing.assert_array_equal(resumed.params, straight.params)
    assert hist.epoch == [0, 1, 2, 3]
    assert hist.history["loss"] == pytest.approx(straight.history.history["loss"], rel=1e-12)


# ---- learning-rate schedules --------------------------------------------------------------------
def test_learning_rate_scheduler_sets_lr_before_each_epoch_and_training_uses_it():
    # One full batch per epoch, plain SGD: p_{e+1} = p_e - lr_e * grad(p_e), checked step by step.
    X, y = data(32)
    m, rec = model(), Recorder()
    probe = m.copy()
    schedule = lambda epoch, lr: 0.5 * 0.5 ** epoch          # noqa: E731
    p = m.params.copy()
    for e in range(4):
        probe.params[...] = p
        _, g = probe.loss_and_grad(X, y)
        p = p - schedule(e, None) * g
    m.fit(X, y, epochs=4, batch_size=32, shuffle=False, optimizer=fastbp.SGD(lr=9.0), verbose=0,
          callbacks=[fastbp.LearningRateScheduler(schedule), rec])
    assert rec.lrs == [0.5, 0.25, 0.125, 0.0625]
    np.testing.assert_allclose(m.params, p, rtol=1e-12, atol=1e-14)


def test_learning_rate_scheduler_receives_the_current_lr_and_prints_when_verbose(capsys):
    X, y = data()
    seen = []

    def halve(epoch, lr):
        seen.append((epoch, lr))
        return lr / 2

    model().fit(X, y, epochs=3, optimizer=fastbp.SGD(lr=0.8), verbose=0,
                callbacks=[fastbp.LearningRateScheduler(halve, verbose=1)])
    assert seen == [(0, 0.8), (1, 0.4), (2, 0.2)]
    err = capsys.readouterr().err
    assert "epoch 1: learning rate 0.4" in err and "epoch 3: learning rate 0.1" in err


def test_learning_rate_scheduler_rejects_a_bad_rate():
    X, y = data()
    with pytest.raises(ValueError, match=r"schedule\(epoch, lr\): expected a learning rate > 0, got -1"):
        model().fit(X, y, epochs=2, verbose=0, callbacks=[fastbp.LearningRateScheduler(lambda e, lr: -1.0)])
    with pytest.raises(TypeError, match="schedule: expected a function"):
        fastbp.LearningRateScheduler(0.1)


def test_reduce_lr_on_plateau_multiplies_lr_after_patience_and_respects_min_lr():
    X, y = data()
    m, rec = model(), Recorder()
    cb = fastbp.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2, min_delta=1e9, min_lr=0.02)
    m.fit(X, y, epochs=9, optimizer=fastbp.SGD(lr=0.1), callbacks=[cb, rec], verbose=0)
    # epoch 0 improves; then every 2nd epoch without improvement halves lr, floored at min_lr.
    assert rec.lrs == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.02, 0.02, 0.02])


def test_reduce_lr_on_plateau_cooldown_and_improvement_reset_the_wait():
    m = model()
    m.optimizer = fastbp.SGD(lr=1.0)
    cb = fastbp.ReduceLROnPlateau(monitor="val_loss", factor=0.1, patience=1, cooldown=2, min_delta=0.0)
    cb.set_model(m)
    cb.on_train_begin()
    lrs = []
    for epoch, v in enumerate([1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.6, 0.7]):
        cb.on_epoch_end(epoch, {"val_loss": v})
        lrs.append(m.optimizer.lr)
    # Keras rules: epoch 0 sets best; epoch 1 reduces and starts a cooldown of 2; epoch 2 is in
    # cooldown; at epoch 3 the cooldown counter reaches 0 first, so the wait counts again and
    # reduces; epoch 4 is in cooldown; epoch 5 improves; epoch 6 reduces; epoch 7 is in cooldown.
    assert lrs == pytest.approx([1.0, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001])


def test_reduce_lr_on_plateau_checks_its_arguments():
    with pytest.raises(ValueError, match=r"factor: expected a number in \(0, 1\), got 1.5"):
        fastbp.ReduceLROnPlateau(factor=1.5)
    with pytest.raises(ValueError, match="mode: expected one of"):
        fastbp.EarlyStopping(mode="up")


# ---- verbose modes ------------------------------------------------------------------------------
class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_verbose_0_prints_nothing(capsys):
    X, y = data()
    model().fit(X, y, epochs=2, validation_split=0.25, verbose=0)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_verbose_2_prints_one_line_per_epoch_with_metrics(capsys):
    X, y = data()
    model().fit(X, y, epochs=3, batch_size=16, validation_split=0.25, verbose=2)
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert out.out == "" and len(lines) == 3
    for i, line in enumerate(lines):
        assert re.match(rf"epoch {i + 1}/3 - [\d.]+s - [\d,]+ samples/s - loss: [\d.]+ - accuracy: [\d.]+ - "
                        r"val_loss: [\d.]+ - val_accuracy: [\d.]+ - lr: [\d.e+-]+$", line), line


def test_verbose_1_draws_a_bar_on_a_terminal_and_stays_quiet_otherwise(monkeypatch, capsys):
    X, y = data(200)
    model().fit(X, y, epochs=2, batch_size=16, verbose=1)
    assert capsys.readouterr().err == ""               # captured stderr is not a terminal
    term = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", term)
    hist = model().fit(X, y, epochs=2, batch_size=16, verbose=1)
    text = term.getvalue()
    for e in (1, 2):
        assert f"epoch {e}/2" in text
    assert "sample/s" in text and "200/200" in text
    last = hist.history
    assert f"loss: {last['loss'][-1]:.4f}" in text and f"accuracy: {last['accuracy'][-1]:.4f}" in text


def test_history_timing_counts_the_training_steps_apart_from_callbacks_and_validation():
    X, y = data()
    slow = []

    class Slow(fastbp.Callback):
        def on_epoch_end(self, epoch, logs=None):
            time.sleep(0.2)
            slow.append(epoch)

    t0 = time.perf_counter()
    hist = model().fit(X, y, epochs=3, validation_split=0.25, verbose=0, callbacks=[Slow()])
    wall = time.perf_counter() - t0
    t = hist.timing
    assert set(t) == {"compile", "train", "validate"} and all(v >= 0 for v in t.values())
    assert slow == [0, 1, 2] and t["train"] + t["validate"] + t["compile"] <= wall - 0.6
    assert t["train"] > 0 and t["validate"] > 0
