"""CSVLogger and TensorBoard after real fits: the files hold exactly the History values."""
import csv
import os
import sys

import numpy as np
import pytest

import fastbp


def data(n=80, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.minimum((X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5), k - 1)
    return X, y


def classifier(seed=0):
    return fastbp.MLP([4, 8, 3], activation="tanh", dtype="float64", seed=seed)


def read_csv(path, sep=","):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=sep))


class RowCounter(fastbp.Callback):
    """Counts the lines of the CSV file at each epoch end (after the CSVLogger's row)."""

    def __init__(self, path):
        self.path, self.lines = path, []

    def on_epoch_end(self, epoch, logs=None):
        self.lines.append(len(read_csv(self.path)))


# ---- CSVLogger ---------------------------------------------------------------------------------
def test_csv_has_keras_columns_and_the_history_values(tmp_path):
    path = tmp_path / "log.csv"
    X, y = data()
    counter = RowCounter(path)
    hist = classifier().fit(X, y, epochs=4, batch_size=16, validation_split=0.25,
                            callbacks=[fastbp.CSVLogger(path), counter], verbose=0)
    rows = read_csv(path)
    assert rows[0] == ["epoch", "accuracy", "loss", "lr", "val_accuracy", "val_loss"]
    assert rows[0][1:] == sorted(hist.history)
    assert [r[0] for r in rows[1:]] == ["0", "1", "2", "3"]
    for i, row in enumerate(rows[1:]):
        for key, text in zip(rows[0][1:], row[1:]):
            assert float(text) == hist.history[key][i]      # repr: every digit
    assert counter.lines == [2, 3, 4, 5]                    # flushed at each epoch's end


def test_csv_of_a_regression_fit_with_validation_data_and_a_separator(tmp_path):
    path = str(tmp_path / "log.tsv")
    rng = np.random.default_rng(1)
    X = rng.standard_normal((60, 3))
    Y = X @ rng.standard_normal((3, 2))
    model = fastbp.MLP([3, 5, 2], output="linear", loss="mse", dtype="float64", seed=0)
    hist = model.fit(X, Y, epochs=2, batch_size=20, validation_data=(X[:10], Y[:10]),
                     callbacks=[fastbp.CSVLogger(path, separator="\t")], verbose=0)
    rows = read_csv(path, "\t")
    assert rows[0] == ["epoch", "loss", "lr", "val_loss"]
    assert [float(r[3]) for r in rows[1:]] == hist.history["val_loss"]


def test_append_continues_the_file_without_a_second_header(tmp_path):
    path = tmp_path / "log.csv"
    X, y = data()
    model = classifier()
    h1 = model.fit(X, y, epochs=2, validation_split=0.25, callbacks=[fastbp.CSVLogger(path)], verbose=0)
    h2 = model.fit(X, y, epochs=5, initial_epoch=2, validation_split=0.25,
                   callbacks=[fastbp.CSVLogger(path, append=True)], verbose=0)
    rows = read_csv(path)
    assert rows[0] == ["epoch", "accuracy", "loss", "lr", "val_accuracy", "val_loss"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2", "3", "4"]
    assert [float(r[2]) for r in rows[1:]] == h1.history["loss"] + h2.history["loss"]
    # append=False starts the file anew
    model.fit(X, y, epochs=1, callbacks=[fastbp.CSVLogger(path)], verbose=0)
    rows = read_csv(path)
    assert rows[0] == ["epoch", "accuracy", "loss", "lr"] and len(rows) == 2


def test_append_to_a_missing_or_empty_file_writes_the_header(tmp_path):
    X, y = data()
    for path in (tmp_path / "new.csv", tmp_path / "empty.csv"):
        if path.name == "empty.csv":
            path.write_text("")
        classifier().fit(X, y, epochs=1, callbacks=[fastbp.CSVLogger(path, append=True)], verbose=0)
        assert read_csv(path)[0] == ["epoch", "accuracy", "loss", "lr"]
        assert len(read_csv(path)) == 2


def test_append_follows_the_existing_header(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss,accuracy\n0,0.5,0.25\n")
    log = fastbp.CSVLogger(path, append=True)
    log.on_train_begin()
    log.on_epoch_end(1, {"accuracy": 0.75, "loss": 0.125})
    log.on_train_end()
    assert read_csv(path) == [["epoch", "loss", "accuracy"], ["0", "0.5", "0.25"], ["1", "0.125", "0.75"]]


def test_append_refuses_a_file_that_is_not_a_log(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a;b\n1;2\n")
    log = fastbp.CSVLogger(path, append=True)
    with pytest.raises(ValueError, match="does not start with an 'epoch' column"):
        log.on_train_begin()
    assert path.read_text() == "a;b\n1;2\n"


def test_keys_missing_later_are_na_and_keys_appearing_later_are_dropped_as_keras(tmp_path):
    path = tmp_path / "log.csv"
    log = fastbp.CSVLogger(path)
    log.on_train_begin()
    log.on_epoch_end(0, {"loss": 1.0, "val_loss": 2.0})
    with pytest.warns(RuntimeWarning, match=r"\['auc'\] appeared after the columns"):
        log.on_epoch_end(1, {"loss": 0.5, "auc": 0.75})
    log.on_epoch_end(2, {"loss": 0.25, "auc": 0.8, "val_loss": np.float64(1.5)})
    log.on_train_end()
    assert read_csv(path) == [["epoch", "loss", "val_loss"], ["0", "1.0", "2.0"], ["1", "0.5", "NA"],
                              ["2", "0.25", "1.5"]]


def test_csv_logger_arguments_are_checked():
    with pytest.raises(TypeError, match="path: expected a file path"):
        fastbp.CSVLogger(3)
    with pytest.raises(ValueError, match="path: expected a file path, got an empty string"):
        fastbp.CSVLogger("")
    with pytest.raises(TypeError, match="separator: expected a one-character string, got int"):
        fastbp.CSVLogger("x.csv", separator=9)
    for bad in ("", ";;", '"', "\n"):
        with pytest.raises(ValueError, match="separator: expected one character"):
            fastbp.CSVLogger("x.csv", separator=bad)
    with pytest.raises(TypeError, match="append: expected True or False"):
        fastbp.CSVLogger("x.csv", append="yes")
    log = fastbp.CSVLogger("x.csv")
    assert (log.path, log.separator, log.append) == ("x.csv", ",", False)


def test_csv_logger_refuses_a_value_that_is_not_a_number(tmp_path):
    log = fastbp.CSVLogger(tmp_path / "log.csv")
    log.on_train_begin()
    with pytest.raises(TypeError, match=r"logs\['loss'\]: expected a number, got str"):
        log.on_epoch_end(0, {"loss": "low"})
    log.on_train_end()


# ---- TensorBoard -------------------------------------------------------------------------------
def scalars(run_dir):
    """{tag: [(step, value)]} read back with TensorBoard's own reader."""
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = ea_mod.EventAccumulator(str(run_dir), size_guidance={ea_mod.SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def as_stored(values):
    """What TensorBoard's scalar format keeps of a float: its float32 rounding."""
    return [float(np.float32(v)) for v in values]


def test_tensorboard_scalars_equal_the_history(tmp_path):
    pytest.importorskip("tensorboardX")
    X, y = data()
    log_dir = tmp_path / "tb"
    sched = fastbp.LearningRateScheduler(lambda epoch, lr: 0.01 * 0.5 ** epoch)
    hist = classifier().fit(X, y, epochs=3, batch_size=16, validation_data=(X[:20], y[:20]),
                            optimizer=fastbp.SGD(lr=0.01), callbacks=[sched, fastbp.TensorBoard(log_dir)],
                            verbose=0)
    assert sorted(os.listdir(log_dir)) == ["train", "validation"]
    for run in ("train", "validation"):
        assert any(f.startswith("events.out.tfevents") for f in os.listdir(log_dir / run))
    train, val = scalars(log_dir / "train"), scalars(log_dir / "validation")
    assert sorted(train) == ["epoch_accuracy", "epoch_loss", "epoch_lr"]
    assert sorted(val) == ["epoch_accuracy", "epoch_loss"]
    for key in ("loss", "accuracy"):
        assert train["epoch_" + key] == list(zip(range(3), as_stored(hist.history[key])))
        assert val["epoch_" + key] == list(zip(range(3), as_stored(hist.history["val_" + key])))
    assert train["epoch_lr"] == list(zip(range(3), as_stored([0.01, 0.005, 0.0025])))


def test_tensorboard_takes_lr_from_the_logs_when_history_has_it(tmp_path):
    pytest.importorskip("tensorboardX")

    class Model:
        class optimizer:
            lr = 0.5

    tb = fastbp.TensorBoard(tmp_path)
    tb.set_model(Model())
    tb.on_train_begin()
    tb.on_epoch_end(0, {"loss": 1.0, "lr": 0.25})
    tb.on_epoch_end(1, {"loss": 0.5})
    tb.on_train_end()
    got = scalars(tmp_path / "train")
    assert got == {"epoch_loss": [(0, 1.0), (1, 0.5)], "epoch_lr": [(0, 0.25), (1, 0.5)]}
    assert not (tmp_path / "validation").exists()


def test_tensorboard_without_tensorboardx_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)     # import tensorboardX now fails
    with pytest.raises(ImportError, match=r'pip install "fastbp\[tensorboard\]"'):
        fastbp.TensorBoard("logs")


def test_tensorboard_arguments_are_checked():
    pytest.importorskip("tensorboardX")
    with pytest.raises(TypeError, match="log_dir: expected a file path"):
        fastbp.TensorBoard(None)
    with pytest.raises(ValueError, match="log_dir: expected a file path, got an empty string"):
        fastbp.TensorBoard("")
    assert fastbp.TensorBoard().log_dir == "logs"
