"""Per-epoch hooks for `MLP.fit`, Keras style: History, progress bar, early stopping, checkpoints,
learning-rate schedules. Hooks run between epochs only; the minibatch loop stays compiled.
"""
import math
import os
import sys
import time
import warnings

import numpy as np

from . import io
from .metrics import is_maximized
from .validation import check_int, check_nonnegative, check_number


class Callback:
    """Base class: override any of the hooks.

    Attributes
    ----------
    model : MLP
        The model being trained. Its ``optimizer``, ``history`` and ``stop_training``
        (set True to stop after this epoch) are the run's, as in Keras.
    run : fastbp.training.Run
        The training run (set while fit runs): ``run.optimizer``, ``run.history``,
        ``run.callbacks``, ``run.save_checkpoint(path, epoch)``.
    """

    model = None
    run = None

    def set_model(self, model):
        self.model = model

    def set_run(self, run):
        self.run = run

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    # A checkpoint keeps the state of the built-in callbacks that have one, so that a resumed fit
    # continues their counters instead of starting them over.
    def _checkpoint_state(self):
        """(JSON-able dict, float array or None) to keep in a checkpoint, or None: nothing to keep."""
        return None

    def _checked_state(self, values, array):
        """The state ``_restore_state`` takes, from what ``_checkpoint_state`` wrote; raises
        TypeError/ValueError if it is not valid. Changes nothing."""
        raise ValueError(f"{type(self).__name__} keeps no state")

    def _restore_state(self, state):
        """Apply a state from ``_checked_state`` (after on_train_begin); cannot fail."""


def _state_int(values, key, minimum=0, none=False):
    v = values.get(key)
    if none and v is None:
        return None
    if type(v) is not int or v < minimum:
        raise ValueError(f"{key} {v!r} is not an int >= {minimum}" + (" or null" if none else ""))
    return v


def _state_best(values, monitor):
    """The saved best value: a finite number, or null for "nothing seen yet" (+-inf)."""
    v = values.get("best")
    if v is None:
        return -math.inf if monitor.maximize else math.inf
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"best {v!r} is not a finite number or null")
    return float(v)


def _json_best(v):
    return float(v) if math.isfinite(v) else None


class History(Callback):
    """What `fit` returns: ``history[name]`` is a list with one value per epoch.

    Attributes
    ----------
    history : dict
        {name: [value per epoch]}: "loss", "accuracy", "val_loss", ...
    epoch : list of int
        The epochs (0-based) the values belong to.
    params : dict
        epochs, steps, batch_size, samples (and ranks under MPI).
    interrupted : bool
        Whether Ctrl-C ended the fit early.
    timing : dict
        Seconds spent: "compile" (kernels compiled for this fit), "train" (minibatch steps, the
        time samples/s figures should use), "validate"; under MPI also "allreduce".
    """

    def __init__(self):
        self.history = {}
        self.epoch = []
        self.params = {}
        self.interrupted = False
        self.timing = {}

    def set_params(self, params):
        self.params = dict(params)

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(float(v))

    def __getitem__(self, key):
        return self.history[key]

    def __repr__(self):
        last = {k: round(v[-1], 6) for k, v in self.history.items() if v}
        return f"History(epochs={len(self.epoch)}, last={last})"

    def plot(self, path=None, metrics=None):
        """Plot the curves of ``metrics`` (default: every logged quantity but ``lr``: loss,
        accuracy and the fit's metrics), each with its ``val_`` twin, with matplotlib (extra
        ``plot``); save to ``path`` if given.

        Returns the matplotlib Figure.
        """
        try:
            import matplotlib
            if path is not None:
                matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("History.plot needs matplotlib: pip install 'fastbp[plot]'") from None
        names = metrics or [k for k in self.history if k != "lr" and not k.startswith("val_")]
        fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.5), squeeze=False)
        for ax, name in zip(axes[0], names):
            for key in (name, "val_" + name):
                if key in self.history:
                    ax.plot(self.epoch, self.history[key], marker="o", ms=3, label=key)
            ax.set_xlabel("epoch")
            ax.set_title(name)
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=100)
        return fig


class ProgressBar(Callback):
    """verbose=1: a tqdm bar per epoch (loss, samples/s, ETA; silent when stderr is not a
    terminal), ending with the epoch's metrics; verbose=2: one line per epoch."""

    def __init__(self, verbose, epochs, samples, file=None):
        self.verbose = verbose
        self.epochs = epochs
        self.samples = samples
        self.file = file or sys.stderr
        self._bar = None
        self._t0 = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        if self.verbose == 1:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=self.samples, desc=f"epoch {epoch + 1}/{self.epochs}", unit="sample",
                             unit_scale=True, leave=True, file=self.file, dynamic_ncols=True, disable=None)

    def update(self, done, loss):
        """Called by fit between chunks of minibatches: samples done so far, running loss."""
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
            self._bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        dt = time.perf_counter() - self._t0
        text = " - ".join(f"{k}: {v:.4g}" if k == "lr" else f"{k}: {v:.4f}" for k, v in (logs or {}).items())
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=True)
            self._bar.close()
            self._bar = None
        elif self.verbose >= 2:
            rate = self.samples / dt if dt > 0 else float("inf")
            print(f"epoch {epoch + 1}/{self.epochs} - {dt:.2f}s - {rate:,.0f} samples/s - {text}", file=self.file)


class CallbackList:
    """Runs History, then the user's callbacks, then the progress bar."""

    def __init__(self, callbacks, model, history, progress=None, run=None):
        if callbacks is None:
            callbacks = []
        if isinstance(callbacks, Callback):
            callbacks = [callbacks]
        for i, cb in enumerate(callbacks):
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks[{i}]: expected a fastbp.Callback, got {type(cb).__name__}")
        self.progress = progress
        self.user = list(callbacks)
        self.callbacks = [history] + self.user + ([progress] if progress is not None else [])
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_run(run)

    def on_train_begin(self):
        for cb in self.callbacks:
            cb.on_train_begin({})

    def on_train_end(self):
        for cb in self.callbacks:
            cb.on_train_end({})

    def on_epoch_begin(self, epoch):
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, {})

    def on_epoch_end(self, epoch, logs):
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)


# ---- monitoring helpers ----------------------------------------------------------------------
class _Monitor:
    """Tracks the best value of a logged quantity; mode "auto" maximizes keys ending in auc,
    accuracy, f1 or r2 (metrics.is_maximized) and minimizes the rest."""

    def __init__(self, monitor, mode, min_delta):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode: expected one of ['auto', 'max', 'min'], got {mode!r}")
        if not isinstance(monitor, str):
            raise TypeError(f"monitor: expected a metric name like 'val_loss', got {type(monitor).__name__}")
        self.monitor = monitor
        self.maximize = mode == "max" or (mode == "auto" and is_maximized(monitor))
        self.min_delta = abs(check_number("min_delta", min_delta))
        self.best = -math.inf if self.maximize else math.inf
        self._warned = False

    def value(self, logs):
        v = (logs or {}).get(self.monitor)
        if v is None and not self._warned:
            warnings.warn(f"monitor {self.monitor!r} is not among the logged values {sorted(logs or {})}; "
                          "pass validation data to fit or monitor another value", RuntimeWarning, stacklevel=4)
            self._warned = True
        return v

    def improved(self, v):
        if self.maximize:
            return v > self.best + self.min_delta
        return v < self.best - self.min_delta


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    restore_best_weights: at the end, put back the params of the best epoch.
    """

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, mode="auto", restore_best_weights=False):
        self._m = _Monitor(monitor, mode, min_delta)
        self.patience = check_int("patience", patience, 0)
        self.restore_best_weights = bool(restore_best_weights)
        self.stopped_epoch = None
        self.best_epoch = None

    @property
    def best(self):
        return self._m.best

    def on_train_begin(self, logs=None):
        self._wait = 0
        self._best_params = None
        self._m.best = -math.inf if self._m.maximize else math.inf

    def on_epoch_end(self, epoch, logs=None):
        v = self._m.value(logs)
        if v is None:
            return
        if self._m.improved(v):
            self._m.best = v
            self.best_epoch = epoch
            self._wait = 0
            if self.restore_best_weights:
                self._best_params = self.model.params.copy()
            return
        self._wait += 1
        if self._wait >= self.patience:   # Keras: stop once patience epochs have passed without improvement
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self._best_params is not None:
            self.model.params[...] = self._best_params

    def _checkpoint_state(self):
        return ({"wait": self._wait, "best": _json_best(self._m.best), "best_epoch": self.best_epoch},
                self._best_params)

    def _checked_state(self, values, array):
        wait = _state_int(values, "wait")
        best = _state_best(values, self._m)
        best_epoch = _state_int(values, "best_epoch", none=True)
        params = None
        if self.restore_best_weights and best_epoch is not None:
            p = self.model.params
            if array is None or array.shape != p.shape or array.dtype != p.dtype:
                raise ValueError(f"restore_best_weights needs the best params: expected shape {p.shape} and dtype "
                                 f"{p.dtype}, got " + ("none" if array is None else f"{array.shape} {array.dtype}"))
            if not np.isfinite(array).all():
                raise ValueError("the best params hold NaN or inf")
            params = array.copy()
        return wait, best, best_epoch, params

    def _restore_state(self, state):
        self._wait, self._m.best, self.best_epoch, self._best_params = state


class ModelCheckpoint(Callback):
    """Write a checkpoint at the end of epochs (atomically; see fastbp.io).

    path may hold ``{epoch}`` (1-based, like Keras). save_best_only: only when ``monitor``
    improves. save_weights_only=False writes the whole training state (params, optimizer
    state, RNG, epoch, history), which ``fit(resume_from=path)`` continues from.

    Either file loads with ``fastbp.load`` as a model of that epoch. During a fit on a
    DataFrame or pyarrow Table it keeps the table preprocessing too, and takes raw columns
    (see fastbp.io for how a checkpoint holds the standardization the run trains on).
    """

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto", save_weights_only=False):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path: expected a file path, got {type(path).__name__}")
        self.path = os.fspath(path)
        self._m = _Monitor(monitor, mode, 0.0)
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_best_only:
            v = self._m.value(logs)
            if v is None or not self._m.improved(v):
                return
            self._m.best = v
        path = self.path.format(epoch=epoch + 1, **{k: v for k, v in (logs or {}).items()})
        if self.save_weights_only:
            if self.run is not None:
                self.run.save_model(path)        # a model file, also during a fit on a table
            else:
                io.save_model(path, self.model)
        elif self.run is None:
            raise RuntimeError("ModelCheckpoint(save_weights_only=False) saves a training run: use it in fit's callbacks")
        else:
            self.run.save_checkpoint(path, epoch)

    def _checkpoint_state(self):
        return {"best": _json_best(self._m.best)}, None

    def _checked_state(self, values, array):
        return _state_best(values, self._m)

    def _restore_state(self, state):
        self._m.best = state


def _check_constant_rate(callback, optimizer):
    """An epoch-level rate callback and a per-update schedule would fight over the rate: refuse
    before anything trains."""
    schedule = getattr(optimizer, "schedule", None)
    if schedule is not None:
        raise ValueError(f"{type(callback).__name__} sets the learning rate every epoch, but the optimizer "
                         f"{type(optimizer).__name__} takes its rate from the schedule {schedule!r} at every "
                         f"update; use one of them: drop the {type(callback).__name__} callback, or give the "
                         "optimizer a constant lr")


class LearningRateScheduler(Callback):
    """Set the optimizer's lr at each epoch start to ``schedule(epoch, lr)``.

    The optimizer must have a constant rate: with an optimizer whose ``lr`` is a schedule
    (fastbp.schedules), training stops with a ValueError before it starts.
    """

    def __init__(self, schedule, verbose=0):
        if not callable(schedule):
            raise TypeError("schedule: expected a function (epoch, lr) -> lr")
        self.schedule = schedule
        self.verbose = verbose

    def on_train_begin(self, logs=None):
        _check_constant_rate(self, self.model.optimizer)

    def on_epoch_begin(self, epoch, logs=None):
        opt = self.model.optimizer
        lr = check_number("schedule(epoch, lr)", self.schedule(epoch, opt.lr))
        if lr <= 0:
            raise ValueError(f"schedule(epoch, lr): expected a learning rate > 0, got {lr} at epoch {epoch}")
        opt.lr = lr
        if self.verbose:
            print(f"epoch {epoch + 1}: learning rate {opt.lr:g}", file=sys.stderr)


class ReduceLROnPlateau(Callback):
    """Multiply lr by ``factor`` when ``monitor`` has not improved for ``patience`` epochs.

    The optimizer must have a constant rate: with an optimizer whose ``lr`` is a schedule
    (fastbp.schedules), training stops with a ValueError before it starts.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, min_delta=1e-4, cooldown=0, min_lr=0.0, mode="auto"):
        self._m = _Monitor(monitor, mode, min_delta)
        self.factor = check_number("factor", factor)
        if not 0 < self.factor < 1:
            raise ValueError(f"factor: expected a number in (0, 1), got {factor}")
        self.patience = check_int("patience", patience, 0)
        self.cooldown = check_int("cooldown", cooldown, 0)
        self.min_lr = check_nonnegative("min_lr", min_lr)

    def on_train_begin(self, logs=None):
        _check_constant_rate(self, self.model.optimizer)
        self._wait = 0
        self._cool = 0

    def on_epoch_end(self, epoch, logs=None):
        v = self._m.value(logs)
        if v is None:
            return
        if self._cool > 0:
            self._cool -= 1
            self._wait = 0
        if self._m.improved(v):
            self._m.best = v
            self._wait = 0
        elif self._cool == 0:
            self._wait += 1
            if self._wait >= self.patience:
                opt = self.model.optimizer
                opt.lr = max(self.min_lr, opt.lr * self.factor) or opt.lr
                self._cool = self.cooldown
                self._wait = 0

    def _checkpoint_state(self):
        return {"wait": self._wait, "cool": self._cool, "best": _json_best(self._m.best)}, None

    def _checked_state(self, values, array):
        return _state_int(values, "wait"), _state_int(values, "cool"), _state_best(values, self._m)

    def _restore_state(self, state):
        self._wait, self._cool, self._m.best = state
