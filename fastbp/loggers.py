"""Callbacks that log each epoch's History values to files: `CSVLogger` (Keras' CSV columns) and
`TensorBoard` (scalar event files, through tensorboardX: the ``tensorboard`` extra).

Like every callback they run on rank 0 only under MPI, so one process writes the files.
"""
import csv
import math
import numbers
import os
import warnings

import numpy as np

from .callbacks import Callback
from .validation import check_bool

__all__ = ["CSVLogger", "TensorBoard"]


def _describe(x):
    return f"{type(x).__name__} {x!r}" if isinstance(x, (str, bytes, numbers.Number, np.generic)) or x is None \
        else type(x).__name__


def _check_path(name, path):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a file path (str or os.PathLike), got {_describe(path)}")
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path:
        raise ValueError(f"{name}: expected a file path, got an empty string")
    return path


def _as_float(key, value):
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"logs[{key!r}]: expected a number, got {_describe(value)}")
    return float(value)


class CSVLogger(Callback):
    """Write one CSV row per epoch, with Keras' ``CSVLogger`` columns.

    The columns are ``epoch`` (0-based, as the callbacks see it), then the History keys of
    the first epoch in sorted order. As in Keras, a column whose key is missing from a later
    epoch gets ``NA``, and a key that first appears in a later epoch gets no column (fastbp
    warns once, naming it). The file is opened when training begins, flushed after every row
    and closed when training ends. Values are written as Python writes floats
    (``repr``: every digit of a float64).

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file.
    separator : str, default ","
        The one-character column separator.
    append : bool, default False
        False: start the file anew at each fit. True: add rows to an existing file (a resumed
        fit continues its log) without a second header; the rows then follow that file's
        header columns, so they stay aligned with it (Keras would write its own key order
        without looking). A missing or empty file gets a header as usual.

    Examples
    --------
    >>> model.fit(X, y, epochs=5, validation_split=0.2,
    ...           callbacks=[fastbp.CSVLogger("log.csv")])  # doctest: +SKIP

    gives ``epoch,accuracy,loss,val_accuracy,val_loss`` and five rows.
    """

    def __init__(self, path, separator=",", append=False):
        self.path = _check_path("path", path)
        if not isinstance(separator, str):
            raise TypeError(f"separator: expected a one-character string, got {_describe(separator)}")
        if len(separator) != 1 or separator in '"\r\n':
            raise ValueError(f"separator: expected one character other than a quote or a line break, got {separator!r}")
        self.separator = separator
        self.append = check_bool("append", append)
        self._file = None
        self._writer = None
        self._keys = None
        self._warned = set()

    def _read_header(self):
        """The existing file's columns after ``epoch``, or None when it has no header."""
        try:
            with open(self.path, newline="", encoding="utf-8") as f:
                first = next(csv.reader(f, delimiter=self.separator), None)
        except FileNotFoundError:
            return None
        if not first:
            return None
        if first[0] != "epoch":
            raise ValueError(f"path: {self.path!r} does not start with an 'epoch' column header "
                             f"(got {first[0]!r} with separator {self.separator!r}); cannot append to it")
        return first[1:]

    def on_train_begin(self, logs=None):
        self.on_train_end()
        self._keys = self._read_header() if self.append else None
        self._warned = set()
        self._file = open(self.path, "a" if self.append else "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file, delimiter=self.separator, lineterminator="\n")

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self._file is None:        # called outside fit: open as fit would
            self.on_train_begin()
        if self._keys is None:
            self._keys = sorted(logs)
            self._writer.writerow(["epoch"] + self._keys)
        extra = sorted(set(logs) - set(self._keys) - self._warned)
        if extra:
            self._warned.update(extra)
            warnings.warn(f"CSVLogger: {extra} appeared after the columns of {self.path!r} were written; "
                          "they are not logged (Keras keeps the first epoch's columns)", RuntimeWarning, stacklevel=2)
        self._writer.writerow([epoch] + [repr(_as_float(k, logs[k])) if k in logs else "NA" for k in self._keys])
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
        self._file = None
        self._writer = None


def _tensorboardX():
    try:
        import tensorboardX
    except ImportError as e:
        raise ImportError('fastbp.TensorBoard needs tensorboardX: pip install "fastbp[tensorboard]"') from e
    return tensorboardX


class TensorBoard(Callback):
    """Write every History value of each epoch as a TensorBoard scalar.

    ``tensorboard --logdir LOG_DIR`` shows them. The layout is Keras': training values go to
    the run ``LOG_DIR/train`` as ``epoch_<key>``, validation values (``val_<key>``) to
    ``LOG_DIR/validation`` as ``epoch_<key>``, so TensorBoard draws ``loss`` and ``val_loss``
    in one chart. The step is the 0-based epoch.
    The learning rate goes to ``train`` as ``epoch_lr``: the History key ``lr`` when the logs
    have one, else the optimizer's ``lr`` read at the epoch's end (before any callback listed
    after this one changes it). Event files are flushed after every epoch and closed when
    training ends; each fit starts new event files in the same runs.

    Needs tensorboardX (``pip install "fastbp[tensorboard]"``); values are stored as float32
    (TensorBoard's scalar format).

    Parameters
    ----------
    log_dir : str or os.PathLike, default "logs"
        The directory of the runs (created if missing).

    Raises
    ------
    ImportError
        tensorboardX is not installed.
    """

    def __init__(self, log_dir="logs"):
        self.log_dir = _check_path("log_dir", log_dir)
        self._tbx = _tensorboardX()
        self._writers = {}

    def _writer(self, run):
        w = self._writers.get(run)
        if w is None:
            w = self._writers[run] = self._tbx.SummaryWriter(logdir=os.path.join(self.log_dir, run))
        return w

    def on_train_begin(self, logs=None):
        self.on_train_end()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if "lr" not in logs:
            lr = getattr(getattr(self.model, "optimizer", None), "lr", None)
            if isinstance(lr, numbers.Real) and not isinstance(lr, bool) and math.isfinite(lr):
                logs["lr"] = lr
        for key, value in logs.items():
            run, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            self._writer(run).add_scalar("epoch_" + name, _as_float(key, value), global_step=epoch)
        for w in self._writers.values():
            w.flush()

    def on_train_end(self, logs=None):
        for w in self._writers.values():
            w.close()
        self._writers = {}
