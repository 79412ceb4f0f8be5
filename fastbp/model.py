"""MLP: the model class people import. Validates, owns the flat buffers, calls the kernels.

Everything heavy happens in `fastbp.kernels`; this module checks arguments (before touching any
state), converts data once per call, keeps work buffers between calls, and runs the per-epoch
bookkeeping of `fit` (callbacks, validation, divergence, checkpoints).
"""
import contextlib
import math
import time

import numba
import numpy as np

from . import _memmap
from . import io as _io
from . import threads
from ._layout import Layout
from .callbacks import CallbackList, History, ProgressBar
from .errors import TrainingDiverged
from .kernels import activations as A
from .kernels import epoch as E
from .kernels import losses as Lo
from .kernels import network as N
from .kernels import small as S
from .optim import get_optimizer
from ._interrupt import DeferredSigint
from .validation import (as_features, as_finite, as_labels, check_all_finite, check_bool, check_choice, check_dtype,
                         check_int, check_nonnegative, check_number, check_unit_interval, _to_numeric_array,
                         _describe)

INITS = ("auto", "he", "glorot", "normal")
AUTO_LOSS = {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy", "linear": "mse"}
ON_NAN = ("raise", "stop", "ignore")
# Rows per block in predict/evaluate: large enough for BLAS efficiency, small enough to stay in cache.
INFER_BLOCK = 2048
# A small net predicts in feature-major blocks when they can hold at least this many rows.
SMALL_INFER_MIN_ROWS = 32
# fit hands the kernel chunks of minibatches worth about this many seconds, so Ctrl-C and the
# progress bar are seen during long epochs while short epochs stay one call.
CHUNK_SECONDS = 0.25


def _frozen(a):
    """A read-only view of ``a``. numba compiles a separate version of a kernel for read-only
    arrays (a memmap opened with mode "r" is one); handing the kernels every input read-only
    keeps it to one version per dtype."""
    v = a.view(np.ndarray)
    v.flags.writeable = False
    return v


def _rows(a, lo, hi):
    """Rows lo:hi of a data array; an empty stand-in (no sample weights, no int labels) stays as is."""
    return a[lo:hi] if a.size else a


def check_fit_arguments(epochs, batch_size, shuffle, initial_epoch, verbose, on_nan, validation_split, optimizer):
    """fit's scalar arguments, checked (shared with fastbp.distributed); returns them converted,
    the optimizer as an Optimizer."""
    epochs = check_int("epochs", epochs, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    shuffle = check_bool("shuffle", shuffle)
    initial_epoch = check_int("initial_epoch", initial_epoch, 0)
    verbose = check_int("verbose", verbose, 0)
    if on_nan not in ON_NAN:
        raise ValueError(f"on_nan: unknown value {on_nan!r}; expected one of {list(ON_NAN)}")
    validation_split = check_unit_interval("validation_split", validation_split, open_right=True)
    return epochs, batch_size, shuffle, initial_epoch, verbose, validation_split, get_optimizer(optimizer)


class Layer:
    """One dense layer: ``W`` (in, out) and ``b`` (out,) are views into the model's params."""

    def __init__(self, model, index):
        self._model = model
        self.index = index

    @property
    def W(self):
        return self._model._views[self.index][0]

    @property
    def b(self):
        return self._model._views[self.index][1]

    @property
    def activation(self):
        m = self._model
        return m.output if self.index == len(m.layers) - 1 else m.activation

    def __repr__(self):
        n_in, n_out = self.W.shape
        return f"Layer({n_in} -> {n_out}, {self.activation}{', bias' if self.b is not None else ''})"


class MLP:
    """A fully-connected network trained by backpropagation over one flat parameter buffer.

    Parameters
    ----------
    sizes : sequence of int
        Input width, hidden widths..., output width; at least two entries.
    activation : {"linear", "sigmoid", "tanh", "relu"}
        Hidden-layer activation.
    output : {"linear", "sigmoid", "softmax"}
        Output activation.
    loss : {"auto", "mse", "half_mse", "cross_entropy", "binary_cross_entropy"}
        "auto" picks cross_entropy for softmax, binary_cross_entropy for sigmoid, mse for linear.
        cross_entropy needs softmax, binary_cross_entropy needs sigmoid.
    bias : bool
        Whether layers have biases (the seeds' hand-worked nets have none).
    init : {"auto", "he", "glorot", "normal"}
        he: N(0, 2/in); glorot: U(+-sqrt(6/(in+out))); normal: N(0, init_scale^2); auto is he
        for relu, glorot otherwise. Biases start at zero.
    dtype : {"float32", "float64"}
    seed : int
        Seeds initialization and the shuffling of every later `fit`.
    deterministic : bool
        Split work into parts fixed by the shapes alone (not the thread count); see README.
    """

    def __init__(self, sizes, activation="relu", output="softmax", loss="auto", bias=True, init="auto",
                 init_scale=1.0, dtype="float32", seed=0, deterministic=False):
        sizes = self._check_sizes(sizes)
        act_code = check_choice("activation", activation, A.HIDDEN)
        out_code = check_choice("output", output, A.OUTPUT)
        if loss == "auto":
            loss = AUTO_LOSS.get(output, loss)
        loss_code = check_choice("loss", loss, Lo.LOSSES)
        if out_code not in Lo.VALID_OUTPUTS[loss_code]:
            valid = [k for k, v in A.OUTPUT.items() if v in Lo.VALID_OUTPUTS[loss_code]]
            raise ValueError(f"loss: {loss!r} is not defined for output={output!r}; it needs output in {valid}")
        if init not in INITS:
            raise ValueError(f"init: unknown name {init!r}; expected one of {sorted(INITS)}")
        init_scale = check_number("init_scale", init_scale)
        if init_scale <= 0:
            raise ValueError(f"init_scale: expected a number > 0, got {init_scale}")
        self.dtype = check_dtype(dtype)
        self.seed = check_int("seed", seed, 0)

        self.sizes = sizes
        self.activation, self.output, self.loss = activation, output, loss
        self._act, self._out, self._loss = act_code, out_code, loss_code
        self.bias = check_bool("bias", bias)
        self.init, self.init_scale = init, init_scale
        self.deterministic = check_bool("deterministic", deterministic)
        self.layout = Layout(sizes, self.bias)
        self.params = self.layout.zeros(self.dtype)
        self._views = self.layout.views(self.params)
        self.layers = [Layer(self, i) for i in range(self.layout.n_layers)]
        self._rng = np.random.default_rng(self.seed)
        self._initialize()
        self._grads = self.layout.zeros(self.dtype)
        self._work = {}
        self.optimizer = None
        self.history = None
        self.stop_training = False

    # ---- construction -------------------------------------------------------------------------
    @staticmethod
    def _check_sizes(sizes):
        try:
            sizes = list(sizes)
        except TypeError:
            raise TypeError(f"sizes: expected a sequence of ints like [4, 16, 3], got {_describe(sizes)}") from None
        if len(sizes) < 2:
            raise ValueError(f"sizes: expected at least an input and an output width, got {sizes}")
        for i, s in enumerate(sizes):
            check_int(f"sizes[{i}]", s, 1)
        return [int(s) for s in sizes]

    def _initialize(self):
        """Fill params from the model's RNG (which then goes on to shuffle fit's batches)."""
        init = self.init
        if init == "auto":
            init = "he" if self.activation == "relu" else "glorot"
        for W, b in self._views:
            n_in, n_out = W.shape
            if init == "he":
                W[...] = self._rng.standard_normal((n_in, n_out)) * math.sqrt(2.0 / n_in)
            elif init == "glorot":
                lim = math.sqrt(6.0 / (n_in + n_out))
                W[...] = self._rng.uniform(-lim, lim, (n_in, n_out))
            else:
                W[...] = self._rng.standard_normal((n_in, n_out)) * self.init_scale
            if b is not None:
                b[...] = 0

    @property
    def n_params(self):
        return self.layout.size

    def config(self):
        """Constructor arguments (JSON-able), as saved in model files."""
        return dict(sizes=self.sizes, activation=self.activation, output=self.output, loss=self.loss,
                    bias=self.bias, init=self.init, init_scale=self.init_scale, dtype=self.dtype.name,
                    seed=self.seed, deterministic=self.deterministic)

    def __repr__(self):
        return (f"MLP({self.sizes}, activation={self.activation!r}, output={self.output!r}, loss={self.loss!r}, "
                f"bias={self.bias}, dtype={self.dtype.name!r}, params={self.n_params})")

    def summary(self):
        """A Keras-style table of layers and parameter counts, as a string."""
        lines = [f"{'layer':<8}{'shape':<16}{'activation':<12}{'params':>10}"]
        for i, layer in enumerate(self.layers):
            n_in, n_out = layer.W.shape
            n = n_in * n_out + (n_out if self.bias else 0)
            lines.append(f"{i:<8}{f'{n_in} -> {n_out}':<16}{layer.activation:<12}{n:>10}")
        lines.append(f"total parameters: {self.n_params} ({self.dtype.name}, loss {self.loss})")
        return "\n".join(lines)

    # ---- buffers --------------------------------------------------------------------------------
    def _maxparts(self):
        return N.DETERMINISTIC if self.deterministic else threads.get_num_threads()

    def _buffers(self, cap):
        """Work buffers for batches of up to ``cap`` rows, made once and reused."""
        w = self._work.get(cap)
        if w is None:
            if len(self._work) > 4:          # keep memory bounded across many batch sizes
                self._work.clear()
            aoff = self.layout.work_offsets(cap)
            widest = max(self.sizes[1:])
            parts = max(N.DET_MAX_PARTS, numba.config.NUMBA_NUM_THREADS)   # BLAS scratch per part
            w = dict(acts=np.empty(int(aoff[-1]), self.dtype), aoff=aoff,
                     gbuf=np.empty(2 * cap * widest, self.dtype), rowloss=np.empty(cap),
                     ridx=np.empty(cap, np.int64), iw=np.zeros((parts, 8), np.int32),
                     fw=np.zeros((parts, 2), self.dtype), scratch=np.empty(max(2 * cap * self.sizes[-1], 3 * cap), self.dtype),
                     small=self._is_small(cap))
            # the small-network kernels see the same memory as 2-D feature-major blocks
            w["T"] = w["acts"].reshape(sum(self.sizes), cap)
            w["trow"] = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
            w["G"] = w["gbuf"].reshape(2 * widest, cap)
            self._work[cap] = w
        return w

    def _small_max_rows(self):
        """The most rows a batch may have to take the feature-major small-network kernels."""
        return S.SMALL_MAX_WORK // max(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:]))

    def _is_small(self, cap):
        """Whether batches of ``cap`` rows take the feature-major small-network kernels."""
        return cap <= self._small_max_rows()

    # ---- data -----------------------------------------------------------------------------------
    def _features(self, X, name="X"):
        return _frozen(as_features(name, X, self.dtype, self.sizes[0]))

    def _targets(self, y, n, name="y"):
        """(Yf, yint) for the kernels: float targets (n, k) or int labels (n,); the other empty."""
        k = self.sizes[-1]
        arr = _to_numeric_array(name, y)
        empty_f = _frozen(np.zeros((0, 0), self.dtype))
        empty_i = _frozen(np.zeros(0, np.int64))
        if arr.shape[:1] != (n,):
            raise ValueError(f"{name}: expected {n} rows to match X, got shape {arr.shape}")
        check_all_finite(name, arr)
        if self.loss == "cross_entropy" and arr.ndim == 1:
            if arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr)):
                raise ValueError(f"{name}: cross_entropy takes integer class labels (n,) or one-hot/probabilities "
                                 f"(n, {k}); got non-integer values")
            lo, hi = arr.min(), arr.max()
            if lo < 0 or hi >= k:
                raise ValueError(f"{name}: class labels must lie in [0, {k - 1}] for {k} outputs, got min {lo} and max {hi}")
            return empty_f, _frozen(as_labels(arr))
        if arr.ndim == 1 and k == 1:
            arr = arr.reshape(n, 1)
        if arr.ndim != 2 or arr.shape[1] != k:
            raise ValueError(f"{name}: expected shape ({n}, {k}) for {k} outputs"
                             + (f" or integer labels ({n},)" if self.loss == "cross_entropy" else "")
                             + f", got {arr.shape}")
        if self.loss in ("binary_cross_entropy", "cross_entropy") and (arr.min() < 0 or arr.max() > 1):
            raise ValueError(f"{name}: {self.loss} targets must lie in [0, 1], got min {arr.min()} and max {arr.max()}")
        return _frozen(as_finite(name, arr, self.dtype)), empty_i

    def _weights(self, sample_weight, n, name="sample_weight"):
        if sample_weight is None:
            return _frozen(np.zeros(0, self.dtype))
        sw = _to_numeric_array(name, sample_weight)
        if sw.shape != (n,):
            raise ValueError(f"{name}: expected shape ({n},) to match X, got {sw.shape}")
        check_all_finite(name, sw)
        if (sw < 0).any():
            raise ValueError(f"{name}: expected weights >= 0, got min {sw.min()}")
        return _frozen(as_finite(name, sw, self.dtype))

    def _prepare(self, X, y, sample_weight=None):
        X = self._features(X)
        Yf, yint = self._targets(y, X.shape[0])
        return X, Yf, yint, self._weights(sample_weight, X.shape[0])

    @property
    def is_classifier(self):
        return self.loss in ("cross_entropy", "binary_cross_entropy")

    # ---- inference ------------------------------------------------------------------------------
    def predict(self, X, batch_size=None):
        """Outputs for X (n, in): probabilities for softmax/sigmoid, values for linear; (n, out)."""
        X = self._features(X)
        cap = self._infer_cap(X.shape[0], batch_size)
        w = self._buffers(cap)
        P = np.empty((X.shape[0], self.sizes[-1]), self.dtype)
        L = self.layout
        if w["small"]:
            E.predict_rows_small(P, X, self.params, L.sizes_arr, L.woff, L.boff, self._act, self._out,
                                 w["T"], w["trow"], w["ridx"], w["scratch"])
            return P
        with threads.single_threaded_blas():
            E.predict_rows(P, X, self.params, L.sizes_arr, L.woff, L.boff, self._act, self._out,
                           w["acts"], w["aoff"], w["iw"], w["fw"], self._maxparts(), cap)
        return P

    def predict_classes(self, X, batch_size=None):
        """Class indices: argmax for softmax, thresholded at 0.5 for sigmoid."""
        P = self.predict(X, batch_size)
        if self.output == "sigmoid":
            return (P > 0.5).astype(np.int64).squeeze(1) if P.shape[1] == 1 else (P > 0.5).astype(np.int64)
        return P.argmax(1)

    def _infer_cap(self, n, batch_size):
        """Rows per block for predict/evaluate. A small net gets blocks the feature-major kernels
        take (if that allows at least SMALL_INFER_MIN_ROWS rows), everything else INFER_BLOCK."""
        if batch_size is not None:
            return min(n, check_int("batch_size", batch_size, 1))
        small_cap = self._small_max_rows()
        return max(1, min(n, small_cap if small_cap >= SMALL_INFER_MIN_ROWS else INFER_BLOCK))

    def _evaluate_arrays(self, X, Yf, yint, sw, cap=None):
        n = X.shape[0]
        cap = min(n, cap) if cap else self._infer_cap(n, None)
        w = self._buffers(cap)
        P = np.empty((n, self.sizes[-1]), self.dtype)
        L = self.layout
        if w["small"]:
            total, correct = E.evaluate_rows_small(P, X, Yf, yint, sw, self.params, L.sizes_arr, L.woff, L.boff,
                                                   self._act, self._out, self._loss, w["T"], w["trow"],
                                                   w["rowloss"], w["ridx"], w["scratch"])
        else:
            with threads.single_threaded_blas():
                total, correct = E.evaluate_rows(P, X, Yf, yint, sw, self.params, L.sizes_arr, L.woff, L.boff,
                                                 self._act, self._out, self._loss, w["acts"], w["aoff"], w["gbuf"],
                                                 w["rowloss"], w["ridx"], w["iw"], w["fw"], self._maxparts(), cap)
        logs = {"loss": total / n}
        if self.is_classifier:
            logs["accuracy"] = correct / n
        return logs

    def evaluate(self, X, y, sample_weight=None, batch_size=None):
        """{"loss": mean loss, "accuracy": fraction correct (classification losses only)}."""
        X, Yf, yint, sw = self._prepare(X, y, sample_weight)
        return self._evaluate_arrays(X, Yf, yint, sw, self._infer_cap(X.shape[0], batch_size))

    # ---- one batch ------------------------------------------------------------------------------
    def _loss_and_grad_arrays(self, X, Yf, yint, sw):
        m = X.shape[0]
        w = self._buffers(m)
        L = self.layout
        with threads.single_threaded_blas():
            if w["small"]:
                total, _ = S.small_forward_backward(m, X, np.arange(m), self.params, self._grads, L.sizes_arr,
                                                    L.woff, L.boff, w["T"], w["trow"], w["G"], self._act,
                                                    self._out, self._loss, Yf, yint, sw, w["rowloss"], w["scratch"])
            else:
                maxparts = self._maxparts()
                E.gather(w["acts"], 0, X, np.arange(m), m, maxparts)
                total, _ = N.forward_backward(m, w["acts"], 0, self.params, self._grads, L.sizes_arr, L.woff,
                                              L.boff, w["acts"], w["aoff"], w["gbuf"], self._act, self._out,
                                              self._loss, Yf, yint, np.arange(m), sw, w["rowloss"], w["iw"],
                                              w["fw"], maxparts)
        return total / m

    def loss_and_grad(self, X, y, sample_weight=None):
        """(loss, grad) on exactly this batch; grad is a new flat array in the params layout."""
        X, Yf, yint, sw = self._prepare(X, y, sample_weight)
        loss = self._loss_and_grad_arrays(X, Yf, yint, sw)
        return loss, self._grads.copy()

    def train_step(self, X, y, optimizer, sample_weight=None):
        """One update on exactly this batch; returns the loss before the update."""
        opt = get_optimizer(optimizer)
        X, Yf, yint, sw = self._prepare(X, y, sample_weight)
        if opt._states is not None:
            opt._buffers(self.params)    # raises before any work if opt belongs to another model
        loss = self._loss_and_grad_arrays(X, Yf, yint, sw)
        if not (math.isfinite(loss) and np.isfinite(self._grads).all()):
            raise TrainingDiverged(f"train_step: the loss ({loss}) or its gradient is NaN or inf on this batch; "
                                   f"params and optimizer state are unchanged. Try a smaller learning rate "
                                   f"(now {opt.lr:g}) or clip_norm on the optimizer.")
        opt.step(self.params, self._grads)
        return loss

    # ---- fit ------------------------------------------------------------------------------------
    def fit(self, X, y, epochs=1, batch_size=32, optimizer="adam", shuffle=True, validation_data=None,
            validation_split=0.0, sample_weight=None, class_weight=None, callbacks=None, verbose=1,
            initial_epoch=0, on_nan="raise", resume_from=None, comm=None):
        """Train with minibatches; returns a History (``history.history["loss"]`` per epoch, ...).

        The whole minibatch loop of an epoch runs compiled. The last partial batch is used
        (n=100, batch 32: 4 updates per epoch); with shuffle=False batches are rows in order.
        Reported "loss" is the mean over the epoch's samples of the loss each had in its
        minibatch (before that minibatch's update), "accuracy" likewise.

        on_nan: if a minibatch loss is NaN or inf, or an epoch ends with NaN or inf params or
        optimizer state, "raise" restores the params and optimizer state of the end of the last
        finite epoch and raises TrainingDiverged (a FloatingPointError; ``.epoch``, ``.step``);
        "stop" restores the same, warns (RuntimeWarning) and returns the History so far;
        "ignore" trains on (a minibatch whose loss is not finite makes no update).
        Ctrl-C: the running chunk of minibatches (about CHUNK_SECONDS) completes, then fit
        returns the History of the completed epochs with ``history.interrupted = True``; params
        and optimizer state are those after the last completed update (possibly mid-epoch). A
        second Ctrl-C raises KeyboardInterrupt at the next Python instruction, which fit also
        turns into that return. on_train_end callbacks run in every case.
        resume_from: a checkpoint written by ModelCheckpoint(..., save_weights_only=False);
        training continues after its epoch with its params, optimizer state (and hyperparameters),
        RNG state and history; initial_epoch is then ignored. The file is validated fully first.
        comm: an mpi4py communicator for data-parallel training (see fastbp.distributed).
        """
        if comm is not None:
            from .distributed import fit_distributed
            return fit_distributed(self, X, y, comm=comm, epochs=epochs, batch_size=batch_size,
                                   optimizer=optimizer, shuffle=shuffle, validation_data=validation_data,
                                   validation_split=validation_split, sample_weight=sample_weight,
                                   class_weight=class_weight, callbacks=callbacks, verbose=verbose,
                                   initial_epoch=initial_epoch, on_nan=on_nan, resume_from=resume_from)
        # -- validate everything before touching state --
        epochs, batch_size, shuffle, initial_epoch, verbose, validation_split, opt = check_fit_arguments(
            epochs, batch_size, shuffle, initial_epoch, verbose, on_nan, validation_split, optimizer)
        stream = _memmap.read_only_mapping(X)
        X, Yf, yint, sw = self._prepare(X, y, sample_weight)
        if stream is not None and not _memmap.backs(X, stream):
            stream = None                # converted into memory: nothing to stream
        _memmap.advise_random(stream)
        if class_weight is not None:
            sw = self._apply_class_weight(class_weight, Yf, yint, sw)
        X, Yf, yint, sw, val = self._split_validation(X, Yf, yint, sw, validation_data, validation_split)
        n = X.shape[0]
        if opt._states is not None:
            opt._buffers(self.params)    # raises now if the optimizer holds another model's state
        history = History()
        cbs = CallbackList(callbacks, model=self, history=history,
                           progress=ProgressBar(verbose, epochs, n) if verbose else None)
        callback_states = []
        if resume_from is not None:      # validates the whole file before it changes anything
            initial_epoch, callback_states = _io.restore_checkpoint(resume_from, self, opt, history, cbs.user)

        # -- train --
        self.optimizer = opt
        self.history = history
        self.stop_training = False
        self._user_callbacks = cbs.user      # what ModelCheckpoint saves the state of (kept, like history)
        history.set_params(dict(epochs=epochs, steps=-(-n // batch_size), batch_size=batch_size, samples=n))
        cbs.on_train_begin()
        for cb, state in callback_states:
            cb._restore_state(state)
        self._sigint = DeferredSigint().start()      # Ctrl-C sets a flag read between chunks
        try:
            for epoch in range(initial_epoch, epochs):
                if self._sigint.hit:
                    raise KeyboardInterrupt
                cbs.on_epoch_begin(epoch)
                logs = self._fit_epoch(X, Yf, yint, sw, batch_size, opt, shuffle, on_nan, epoch, cbs, stream)
                if logs is None:                         # diverged with on_nan="stop"
                    break
                if val is not None:
                    vlogs = self._evaluate_arrays(*val)
                    logs.update({"val_" + k: v for k, v in vlogs.items()})
                cbs.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
        except KeyboardInterrupt:
            history.interrupted = True
        finally:
            history.interrupted = history.interrupted or self._sigint.hit
            self._sigint = self._sigint.stop()
            cbs.on_train_end()
        return history

    def _split_validation(self, X, Yf, yint, sw, validation_data, validation_split, features=None):
        """(X, Yf, yint, sw, val): the training arrays and the validation set (None without one).

        validation_data is checked like training data (``features`` converts its X; fastbp's
        distributed fit passes its own); otherwise the last ``validation_split`` of the rows,
        taken before any shuffling, as Keras does.
        """
        features = features or self._features
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("validation_data: expected a tuple (X_val, y_val) or (X_val, y_val, sample_weight_val)")
            vX = features(validation_data[0], "validation_data[0]")
            vYf, vyint = self._targets(validation_data[1], vX.shape[0], "validation_data[1]")
            vsw = self._weights(validation_data[2] if len(validation_data) == 3 else None, vX.shape[0],
                                "validation_data[2]")
            return X, Yf, yint, sw, (vX, vYf, vyint, vsw)
        if validation_split > 0:
            n = X.shape[0]
            n_val = int(n * validation_split)
            if n_val < 1 or n_val >= n:
                raise ValueError(f"validation_split: {validation_split} of {n} samples leaves no training or no validation data")
            cut = n - n_val
            val = tuple(_rows(a, cut, n) for a in (X, Yf, yint, sw))
            return tuple(_rows(a, 0, cut) for a in (X, Yf, yint, sw)) + (val,)
        return X, Yf, yint, sw, None

    def _apply_class_weight(self, class_weight, Yf, yint, sw):
        if not isinstance(class_weight, dict):
            raise TypeError(f"class_weight: expected a dict {{class: weight}}, got {_describe(class_weight)}")
        k = self.sizes[-1]
        table = np.ones(max(k, 2), self.dtype)
        for c, wgt in class_weight.items():
            c = check_int("class_weight key", c, 0)
            if c >= table.shape[0]:
                raise ValueError(f"class_weight: class {c} is out of range for {k} outputs")
            table[c] = check_nonnegative(f"class_weight[{c}]", wgt)
        labels = yint if yint.size else (Yf.argmax(1) if k > 1 else (Yf[:, 0] > 0.5).astype(np.int64))
        cw = table[labels]
        return cw if sw.size == 0 else sw * cw

    def _epoch_order(self, n, shuffle=True):
        """The row order of the next epoch: a permutation seeded from the model's RNG (one draw),
        or rows in order. fit and fastbp.distributed both take it from here."""
        order = np.empty(n, np.int64)
        if not shuffle:
            order[:] = np.arange(n)
            return order
        E.shuffled_order(order, np.uint64(self._rng.bit_generator.random_raw()))
        return order

    def _fit_epoch(self, X, Yf, yint, sw, batch, opt, shuffle, on_nan, epoch, cbs, stream=None):
        n = X.shape[0]
        steps = -(-n // batch)
        perm = self._epoch_order(n, shuffle)
        w = self._buffers(batch)
        L = self.layout
        s1, s2 = opt._buffers(self.params)
        hyper = opt.hyper()
        clip = opt.clip_norm or 0.0
        tstep = np.array([opt.iterations], np.int64)
        steploss = np.zeros(steps)
        stepcorrect = np.zeros(steps)
        snapshot = None if on_nan == "ignore" else (self.params.copy(), s1.copy(), s2.copy(), opt.iterations)
        maxparts = self._maxparts()
        # Chunks of about CHUNK_SECONDS, sized from the speed of earlier chunks (of earlier epochs
        # too), so Ctrl-C and the progress bar are seen during long epochs at any verbosity.
        hint = self.__dict__.get("_chunk_rate")
        chunk = max(1, int(CHUNK_SECONDS * hint[1])) if hint and hint[0] == batch else max(1, steps // 50)
        sigint = self.__dict__.get("_sigint")
        chunk_cap = _memmap.max_chunk_steps(batch, X.shape[1] * X.itemsize) if stream is not None else steps
        chunk = min(chunk, chunk_cap)
        s = 0
        # the small-network kernels never call BLAS: no need to hold its threads
        with contextlib.nullcontext() if w["small"] else threads.single_threaded_blas():
            while s < steps:
                end = min(steps, s + chunk)
                t0 = time.perf_counter()
                try:
                    common = (self.params, self._grads, s1, s2, opt.code, hyper, tstep, clip, X, Yf, yint, sw,
                              perm, s, end, batch, L.sizes_arr, L.woff, L.boff, self._act, self._out, self._loss)
                    if w["small"]:
                        done = E.train_steps_small(*common, w["T"], w["trow"], w["G"], w["rowloss"], w["ridx"],
                                                   w["scratch"], steploss, stepcorrect)
                    else:
                        done = E.train_steps(*common, w["acts"], w["aoff"], w["gbuf"], w["rowloss"], w["ridx"],
                                             w["iw"], w["fw"], maxparts, steploss, stepcorrect)
                finally:
                    opt.iterations = int(tstep[0])
                dt = time.perf_counter() - t0
                start, s = s, s + done
                if s < end and on_nan != "ignore":     # the kernel stopped at a non-finite loss
                    return self._diverged(epoch, s - 1, snapshot, opt, on_nan)
                if cbs.progress is not None:
                    cbs.progress.update(min(n, s * batch), steploss[:s].sum() / min(n, s * batch))
                self._chunk_rate = (batch, (s - start) / max(dt, 1e-9))
                chunk = min(chunk_cap, max(1, int(CHUNK_SECONDS * self._chunk_rate[1])))
                _memmap.release(stream)
                if s < steps and sigint is not None and sigint.hit:
                    raise KeyboardInterrupt          # params hold the last completed update
        logs = {"loss": steploss.sum() / n}
        if self.is_classifier:
            logs["accuracy"] = stepcorrect.sum() / n
        if on_nan == "ignore":
            return logs
        if not np.isfinite(logs["loss"]):
            return self._diverged(epoch, steps - 1, snapshot, opt, on_nan)
        # A finite loss can still come with an update that overflowed: never keep such an epoch.
        if not (np.isfinite(self.params).all() and np.isfinite(s1).all() and np.isfinite(s2).all()):
            return self._diverged(epoch, steps - 1, snapshot, opt, on_nan,
                                  reason="an update made the params or optimizer state NaN or inf")
        return logs

    def _diverged(self, epoch, step, snapshot, opt, on_nan, reason=None):
        params, s1, s2, t = snapshot
        self.params[...] = params
        cur1, cur2 = opt._buffers(self.params)
        cur1[...] = s1
        cur2[...] = s2
        opt.iterations = t
        what = reason or f"the loss became NaN or inf at minibatch {step}"
        msg = (f"training diverged in epoch {epoch} (0-based, as in history.epoch): {what}. Params and "
               f"optimizer state were restored to the end of the last finite epoch "
               + (f"(epoch {epoch - 1}). " if epoch > 0 else "(here: as they were before this epoch). ")
               + f"Try a smaller learning rate (now {opt.lr:g}) or clip_norm on the optimizer.")
        if on_nan == "raise":
            raise TrainingDiverged(msg, epoch=epoch, step=step)
        import warnings
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        self.stop_training = True
        return None

    # ---- files ----------------------------------------------------------------------------------
    def save(self, path):
        """Write the model to ``path`` atomically (format: see README; no pickle)."""
        _io.save_model(path, self)

    # ---- interop (fastbp.interop) ----------------------------------------------------------------
    def to_onnx(self, path, opset=None):
        """Export as a standard ONNX graph (extra ``onnx``); see fastbp.interop.to_onnx."""
        from .interop import to_onnx
        return to_onnx(self, path, opset=opset)

    def to_state_dict(self):
        """Params as numpy arrays in torch nn.Sequential naming ("0.weight" (out, in), "0.bias")."""
        from .interop import to_state_dict
        return to_state_dict(self)

    @classmethod
    def from_state_dict(cls, state_dict, **kwargs):
        """An MLP from a torch-style state dict; kwargs as for MLP (activation, output, ...)."""
        from .interop import from_state_dict
        return from_state_dict(state_dict, **kwargs)

    def __getstate__(self):
        # In-memory pickling (copy.deepcopy, multiprocessing, scikit-learn clones). Files use
        # save/load, which never unpickle.
        return {"config": self.config(), "params": self.params.copy(), "rng": self._rng.bit_generator.state,
                "optimizer": self.optimizer, "history": self.history}

    def __setstate__(self, state):
        self.__init__(**state["config"])     # rebuilds the flat buffer and the layer views into it
        self.params[...] = state["params"]
        self._rng.bit_generator.state = state["rng"]
        self.optimizer = state["optimizer"]
        self.history = state["history"]

    def copy(self):
        """An independent model with the same config and params."""
        m = MLP(**self.config())
        m.params[...] = self.params
        return m
