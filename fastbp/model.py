"""MLP: the model class people import. The network only: its configuration, the flat parameter
buffer and the views into it, initialization, inference, one-batch gradients, files.

Training (the epoch loop, callbacks, checkpoints, MPI) lives in fastbp.training; ``MLP.fit``
delegates to it. Everything heavy happens in ``fastbp.kernels``; this module checks arguments
(before touching any state), converts data once per call (fastbp.data) and keeps the kernels'
work buffers between calls.
"""
import math

import numba
import numpy as np

from . import data as D
from . import frames
from . import interop
from . import io
from . import metrics as M
from . import tables
from . import threads
from . import training
from ._layout import NO_NORM, Layout, norm_codes
from .errors import TrainingDiverged
from .kernels import epoch as E
from .kernels import parts
from .kernels.activations import HIDDEN, OUTPUT
from .kernels.args import SparseRows, Workspace, make_net
from .kernels.losses import AUTO, LOSSES, MAE
from .kernels.small import SMALL_MAX_WORK
from .optim import get_optimizer
from .validation import _describe, check_bool, check_dtype, check_int, check_number

INITS = ("auto", "he", "glorot", "lecun", "normal")
# Rows per block in predict/evaluate: large enough for BLAS efficiency, small enough to stay in cache.
INFER_BLOCK = 2048
# A small net predicts in feature-major blocks when they can hold at least this many rows.
SMALL_INFER_MIN_ROWS = 32
# At most this many work-buffer sets (one per batch size) are kept per model.
MAX_WORKSPACES = 5


class Layer:
    """One dense layer and what follows it: Dense -> norm -> activation -> dropout.

    ``W`` (in, out), ``b`` (out,), ``gamma`` and ``beta`` (out,) are views into the model's
    params; ``running_mean`` and ``running_var`` (out,) views into its buffers. Each is None
    where the layer has no such tensor (no bias; no norm; no batch norm).
    """

    def __init__(self, W, b, gamma, beta, running_mean, running_var, activation, norm, dropout):
        self.W, self.b, self.gamma, self.beta = W, b, gamma, beta
        self.running_mean, self.running_var = running_mean, running_var
        self.activation, self.norm, self.dropout = activation, norm, dropout

    def __repr__(self):
        n_in, n_out = self.W.shape
        extra = "".join([", bias" if self.b is not None else "", f", {self.norm} norm" if self.norm else "",
                         f", dropout {self.dropout:g}" if self.dropout else ""])
        return f"Layer({n_in} -> {n_out}, {self.activation}{extra})"


class MLP:
    """A fully-connected network trained by backpropagation over one flat parameter buffer.

    Parameters
    ----------
    sizes : sequence of int
        Input width, hidden widths..., output width; at least two entries.
    activation : str or list of str
        Hidden-layer activation: one name for every hidden layer, or a list with one per hidden
        layer: "linear", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu",
        "gelu_tanh", "silu", "softplus", "mish" (torch semantics).
    output : {"linear", "sigmoid", "softmax", "exp"}
        Output activation.
    loss : {"auto", "mse", "half_mse", "cross_entropy", "binary_cross_entropy", "mae", "huber", "poisson"}
        "auto" picks cross_entropy for softmax, binary_cross_entropy for sigmoid, mse for linear,
        poisson for exp. cross_entropy needs softmax, binary_cross_entropy sigmoid, mae and huber
        linear, poisson exp.
    bias : bool
        Whether layers have biases (the seeds' hand-worked nets have none).
    init : {"auto", "he", "glorot", "lecun", "normal"}
        he: N(0, 2/in); glorot: U(+-sqrt(6/(in+out))); lecun: N(0, 1/in); normal:
        N(0, init_scale^2); auto picks per layer from its activation (he for the relu family,
        gelu, silu, softplus, mish; lecun for selu; glorot for linear, sigmoid, tanh; the output
        layer as the last hidden one). Biases start at zero, gamma at one, beta at zero.
    init_scale : float
        Standard deviation for init="normal".
    dtype : {"float32", "float64"}
    seed : int
        Seeds initialization and the shuffling of every later `fit`.
    deterministic : bool
        Split work into parts fixed by the shapes alone, so results do not depend on the
        thread count (see the user guide, "Threads and determinism").
    dropout : float or list of float
        Inverted dropout after each hidden layer's activation in training (rate in [0, 1), one
        for all hidden layers or one per hidden layer); never in predict, evaluate or
        loss_and_grad.
    norm : {None, "layer", "batch"} or list
        Normalization of each hidden layer's pre-activation: torch's LayerNorm or BatchNorm1d
        (eps 1e-5, momentum 0.1).
    l1, l2 : float
        Penalties l1*sum|W| + l2*sum W**2 over every weight matrix (not biases or norm
        parameters), in the training loss and every reported loss (Keras regularizers).
    label_smoothing : float in [0, 1)
        cross_entropy only: targets y*(1-eps) + eps/k.
    huber_delta : float > 0
        The huber loss's delta.

    Attributes
    ----------
    params : ndarray
        The one flat parameter buffer; writing into it changes the model.
    layers : list of Layer
        ``layers[i].W`` (in, out), ``.b``, ``.gamma``, ``.beta`` (out,) are views into
        ``params``; ``.running_mean``, ``.running_var`` views into ``buffers``.
    buffers : ndarray
        The running statistics of batch norm (per batch-norm layer: mean, then variance);
        empty without batch norm. Saved with the model, never touched by optimizers.
    updates : int
        The model's lifetime count of optimizer updates (keys the dropout masks; saved).
    layout : Layout
        Where each W, b, gamma and beta lives in ``params``.
    rng : numpy.random.Generator
        The model's random stream: it initialized the params and shuffles every fit's epochs
        (kept in checkpoints, so a resumed fit shuffles as an uninterrupted one).
    net : kernels.args.Net
        The network as the compiled kernels see it.
    preprocessor : TablePreprocessor or None
        The encoding of table columns, set by the first ``fit`` on a DataFrame or pyarrow
        Table (or loaded with such a model, or set to a fitted one before the first fit);
        ``predict``, ``evaluate`` and ``fit`` apply it to frames. None for a model of arrays.
    optimizer, history, stop_training
        Set by ``fit`` (Keras style): the optimizer and History of the last fit; a callback
        sets ``stop_training = True`` to stop after the current epoch.
    """

    def __init__(self, sizes, activation="relu", output="softmax", loss="auto", bias=True, init="auto",
                 init_scale=1.0, dtype="float32", seed=0, deterministic=False, dropout=0.0, norm=None, l1=0.0,
                 l2=0.0, label_smoothing=0.0, huber_delta=1.0):
        sizes = self._check_sizes(sizes)
        n_hidden = len(sizes) - 2
        acts = self._per_layer("activation", activation, n_hidden, str)
        act_codes = [HIDDEN.code(a, "activation") for a in acts]
        out_code = OUTPUT.code(output, "output")
        if loss == "auto":
            loss = AUTO.get(output, loss)
        loss_entry = LOSSES.get(loss, "loss")
        if output not in loss_entry.outputs:
            raise ValueError(f"loss: {loss!r} is not defined for output={output!r}; it needs output in "
                             f"{list(loss_entry.outputs)}")
        if init not in INITS:
            raise ValueError(f"init: unknown name {init!r}; expected one of {sorted(INITS)}")
        init_scale = check_number("init_scale", init_scale)
        if init_scale <= 0:
            raise ValueError(f"init_scale: expected a number > 0, got {init_scale}")
        rates = [check_number(f"dropout[{i}]" if not isinstance(dropout, (int, float)) else "dropout", r)
                 for i, r in enumerate(self._per_layer("dropout", dropout, n_hidden, (int, float)))]
        for r in rates:
            if not 0.0 <= r < 1.0:
                raise ValueError(f"dropout: expected a rate in [0, 1), got {r}")
        norms = self._per_layer("norm", norm, n_hidden, (str, type(None)))
        codes_of_norm = norm_codes(norms, n_hidden)
        l1, l2 = check_number("l1", l1), check_number("l2", l2)
        for name, v in (("l1", l1), ("l2", l2)):
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"{name}: expected a finite number >= 0, got {v}")
        label_smoothing = check_number("label_smoothing", label_smoothing)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing: expected a number in [0, 1), got {label_smoothing}")
        if label_smoothing and loss != "cross_entropy":
            raise ValueError(f"label_smoothing: applies to loss='cross_entropy' only, got loss={loss!r}")
        huber_delta = check_number("huber_delta", huber_delta)
        if not (huber_delta > 0 and math.isfinite(huber_delta)):
            raise ValueError(f"huber_delta: expected a finite number > 0, got {huber_delta}")
        self.dtype = check_dtype(dtype)
        self.seed = check_int("seed", seed, 0)
        self.bias = check_bool("bias", bias)
        self.deterministic = check_bool("deterministic", deterministic)

        self.sizes = sizes
        self.activation, self.output, self.loss = activation, output, loss
        self.init, self.init_scale = init, init_scale
        self.dropout, self.norm = dropout, norm
        self.l1, self.l2, self.label_smoothing, self.huber_delta = l1, l2, label_smoothing, huber_delta
        self.is_classifier = loss_entry.classifier
        self.layout = Layout(sizes, self.bias, codes_of_norm)
        self.params = self.layout.zeros(self.dtype)
        self.buffers = np.zeros(self.layout.n_stats, self.dtype)
        L = self.layout.n_layers
        self.layers = [Layer(W, b, g, beta, rm, rv, acts[i] if i < L - 1 else output,
                             norms[i] if i < L - 1 and norms[i] != "none" else None, rates[i] if i < L - 1 else 0.0)
                       for i, ((W, b), (g, beta), (rm, rv)) in enumerate(zip(self.layout.views(self.params),
                                                                           self.layout.norm_views(self.params),
                                                                           self.layout.stat_views(self.buffers)))]
        codes = np.array(act_codes + [out_code], np.int64)
        rate = np.array(rates + [0.0])
        full = np.array([int(codes_of_norm[i] != NO_NORM or rate[i] > 0 or not HIDDEN.get(acts[i]).from_output)
                         for i in range(L - 1)] + [0], np.int64)
        key = np.random.SeedSequence(self.seed).generate_state(1, np.uint64)[0]
        lay = self.layout
        self.net = make_net(lay.sizes_arr, lay.woff, lay.boff, codes, loss_entry.code, norm=lay.norm_arr,
                            goff=lay.goff, roff=lay.roff, rate=rate, full=full, stats=self.buffers, key=key, l1=l1,
                            l2=l2, huber_delta=huber_delta, smoothing=label_smoothing)
        # a plain network takes the kernels without any of the newer code (see kernels/dense.py)
        self.plain = not (full.any() or l1 or l2 or label_smoothing or loss_entry.code >= MAE)
        self.rng = np.random.default_rng(self.seed)
        self._initialize()
        self._workspaces = {}
        self.preprocessor = None
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

    @staticmethod
    def _per_layer(name, value, n_hidden, kinds):
        """``value`` for each of the n_hidden hidden layers: one value for all, or a list of
        exactly n_hidden."""
        if isinstance(value, kinds) and not isinstance(value, bool):
            return [value] * n_hidden
        if isinstance(value, (list, tuple)):
            if len(value) != n_hidden:
                raise ValueError(f"{name}: expected one value or a list of {n_hidden} (one per hidden layer), "
                                 f"got a list of {len(value)}")
            return list(value)
        raise TypeError(f"{name}: expected one value or a list of {n_hidden} (one per hidden layer), "
                        f"got {_describe(value)}")

    def _initialize(self):
        """Fill params from the model's random stream (which then goes on to shuffle fit's batches)."""
        L = len(self.layers)
        for i, layer in enumerate(self.layers):
            init = self.init
            if init == "auto":
                # the output layer takes the last hidden layer's choice (a net without hidden
                # layers, the activation argument's)
                hidden = self.layers[min(i, L - 2)].activation if L > 1 else self.activation
                init = HIDDEN.get(hidden if isinstance(hidden, str) else "relu").init
            W, b = layer.W, layer.b
            n_in, n_out = W.shape
            if init == "he":
                W[...] = self.rng.standard_normal((n_in, n_out)) * math.sqrt(2.0 / n_in)
            elif init == "glorot":
                lim = math.sqrt(6.0 / (n_in + n_out))
                W[...] = self.rng.uniform(-lim, lim, (n_in, n_out))
            elif init == "lecun":
                W[...] = self.rng.standard_normal((n_in, n_out)) * math.sqrt(1.0 / n_in)
            else:
                W[...] = self.rng.standard_normal((n_in, n_out)) * self.init_scale
            if b is not None:
                b[...] = 0
            if layer.gamma is not None:
                layer.gamma[...] = 1
                layer.beta[...] = 0
            if layer.running_var is not None:
                layer.running_mean[...] = 0
                layer.running_var[...] = 1

    @property
    def n_params(self):
        """Number of parameters (the length of ``params``)."""
        return self.layout.size

    @property
    def updates(self):
        """The model's lifetime count of optimizer updates (keys the dropout masks)."""
        return int(self.net.updates[0])

    @updates.setter
    def updates(self, value):
        self.net.updates[0] = check_int("updates", value, 0)

    def config(self):
        """Constructor arguments (JSON-able), as saved in model files."""
        listed = (lambda v: list(v) if isinstance(v, (list, tuple)) else v)
        return dict(sizes=self.sizes, activation=listed(self.activation), output=self.output, loss=self.loss,
                    bias=self.bias, init=self.init, init_scale=self.init_scale, dtype=self.dtype.name,
                    seed=self.seed, deterministic=self.deterministic, dropout=listed(self.dropout),
                    norm=listed(self.norm), l1=self.l1, l2=self.l2, label_smoothing=self.label_smoothing,
                    huber_delta=self.huber_delta)

    def __repr__(self):
        extra = "".join(f", {k}={v!r}" for k, v in (("dropout", self.dropout), ("norm", self.norm), ("l1", self.l1),
                                                     ("l2", self.l2), ("label_smoothing", self.label_smoothing))
                        if v)
        return (f"MLP({self.sizes}, activation={self.activation!r}, output={self.output!r}, loss={self.loss!r}, "
                f"bias={self.bias}{extra}, dtype={self.dtype.name!r}, params={self.n_params})")

    def summary(self):
        """A Keras-style table of layers (with their norm and dropout) and parameter counts, as a
        string."""
        lines = [f"{'layer':<8}{'shape':<16}{'activation':<12}{'norm':<8}{'dropout':<9}{'params':>10}"]
        for i, layer in enumerate(self.layers):
            n_in, n_out = layer.W.shape
            n = n_in * n_out + (n_out if self.bias else 0) + (2 * n_out if layer.gamma is not None else 0)
            lines.append(f"{i:<8}{f'{n_in} -> {n_out}':<16}{layer.activation:<12}{layer.norm or '-':<8}"
                         f"{f'{layer.dropout:g}' if layer.dropout else '-':<9}{n:>10}")
        lines.append(f"total parameters: {self.n_params} ({self.dtype.name}, loss {self.loss})")
        if self.buffers.size:
            lines.append(f"running statistics: {self.buffers.size} (batch norm)")
        if self.l1 or self.l2:
            lines.append(f"penalties on W: l1={self.l1:g}, l2={self.l2:g}")
        return "\n".join(lines)

    def penalty(self):
        """The l1/l2 penalty at the current weights: l1*sum|W| + l2*sum W**2 (float)."""
        if not (self.l1 or self.l2):
            return 0.0
        total = 0.0
        for layer in self.layers:
            W = layer.W.astype(np.float64)
            total += self.l1 * np.abs(W).sum() + self.l2 * (W * W).sum()
        return float(total)

    def check_batch_rows(self, name, m):
        """Batch norm cannot normalize a training batch of one row (as torch): a clear error."""
        if m == 1 and self.buffers.size:
            raise ValueError(f"{name}: a training batch of one row with batch norm (its variance is undefined, "
                             f"as in torch); use batches of at least two rows")

    # ---- what the kernels need ----------------------------------------------------------------
    def max_parts(self):
        """How the kernels split parallel work: kernels.parts.DETERMINISTIC (by the shapes alone)
        in deterministic mode, else for the CPUs this process may use (threads.partition_cpus):
        never by the thread count, so results do not depend on it."""
        return parts.DETERMINISTIC if self.deterministic else threads.partition_cpus()

    def kernel_parts(self, rows, total_rows=None):
        """The kernels' ``maxparts`` for batches of up to ``rows`` rows (training, or inference
        of ``total_rows`` rows): max_parts(), or None when no work is split (see
        kernels.parts.kernel_parts). A network with norm, dropout, penalties or the newer
        activations and losses always gets max_parts(): its kernels then exist in one variant."""
        if not self.plain:
            return self.max_parts()
        if total_rows is not None:
            return parts.kernel_parts(self.max_parts(), self.sizes, rows, total_rows=total_rows)
        return parts.kernel_parts(self.max_parts(), self.sizes, rows, self.n_params)

    def workspace(self, cap, sparse=False):
        """The kernels' work buffers for batches of up to ``cap`` rows (a kernels.args.Workspace),
        allocated once and reused; ``sparse``: for CSR input (no room for the input rows)."""
        ws = self._workspaces.get((cap, sparse))
        if ws is None:
            if len(self._workspaces) >= MAX_WORKSPACES:      # keep memory bounded across many batch sizes
                self._workspaces.clear()
            blas_parts = max(parts.DET_MAX_PARTS, numba.config.NUMBA_NUM_THREADS)
            ws = Workspace(self.net, self.n_params, cap, self.dtype, cap <= self._small_max_rows(), blas_parts,
                           self.plain, sparse)
            self._workspaces[(cap, sparse)] = ws
        return ws

    def _small_max_rows(self):
        """The most rows a batch may have to take the feature-major small-network kernels
        (which run plain networks only)."""
        if not self.plain:
            return 0
        return SMALL_MAX_WORK // max(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:]))

    def block_rows(self, n, batch_size=None):
        """Rows per block when predicting or evaluating n rows. A small net gets blocks the
        feature-major kernels take (if that allows at least SMALL_INFER_MIN_ROWS rows),
        everything else INFER_BLOCK; ``batch_size`` (checked) overrides."""
        if batch_size is not None:
            return min(n, check_int("batch_size", batch_size, 1))
        small_cap = self._small_max_rows()
        return max(1, min(n, small_cap if small_cap >= SMALL_INFER_MIN_ROWS else INFER_BLOCK))

    # ---- inference ------------------------------------------------------------------------------
    def predict(self, X, batch_size=None):
        """Outputs for X (n, in): probabilities for softmax/sigmoid, values for linear; (n, out).

        X may be a pandas DataFrame or pyarrow Table for a model with a ``preprocessor``: its
        columns by name, in any order (others ignored), encoded as in training."""
        if tables.is_frame(X):
            X = frames.predict_inputs(self, X)
        data = D.inputs(self, X)
        n = data.X.shape[0]
        ws = self.workspace(self.block_rows(n, batch_size), isinstance(data.X, SparseRows))
        P = np.empty((n, self.sizes[-1]), self.dtype)
        self._infer(E.PREDICT, ws, data, P, n)
        return P

    def predict_classes(self, X, batch_size=None):
        """Class indices: argmax for softmax, thresholded at 0.5 for sigmoid (X as for predict)."""
        P = self.predict(X, batch_size)
        if self.output == "sigmoid":
            return (P > 0.5).astype(np.int64).squeeze(1) if P.shape[1] == 1 else (P > 0.5).astype(np.int64)
        return P.argmax(1)

    def predict_labels(self, X, batch_size=None):
        """Predicted class names for a model trained on a table with a text target (an object
        array of str); class indices (predict_classes) for any other classifier.

        Raises ValueError for a regression output (linear, exp)."""
        if self.output not in ("softmax", "sigmoid"):
            raise ValueError(f"model: predict_labels needs a classifier (softmax or sigmoid output), this model's "
                             f"output is {self.output!r}")
        return frames.labels_of(self, self.predict_classes(X, batch_size))

    def evaluate_data(self, data, cap=None):
        """(predictions, weighted loss sum, correct count) over the rows of a checked
        ``kernels.args.Data`` (see fastbp.data), in blocks of ``cap`` rows (default: block_rows)."""
        n = data.X.shape[0]
        ws = self.workspace(cap or self.block_rows(n), isinstance(data.X, SparseRows))
        P = np.empty((n, self.sizes[-1]), self.dtype)
        _, total, correct = self._infer(E.EVALUATE, ws, data, P, n)
        return P, total + n * self.penalty(), correct

    def _infer(self, mode, ws, data, P, n):
        """E.run of inference ``mode`` over the n rows of ``data`` into P."""
        maxparts = self.kernel_parts(ws.cap, n)
        self._compile_ahead(mode, ws, data, maxparts)
        with threads.running(threads.get_num_threads(), blas=not ws.small):
            return E.run(mode, self.params, self.net, ws, data, out=P, last=n, maxparts=maxparts)

    def _compile_ahead(self, mode, ws, data, maxparts):
        """Before a workspace's first E.run of ``mode`` outside fit: its kernels compiled in child
        processes if they are not cached (as a fit's are, epoch.compile_ahead), where a second
        CPU is free."""
        key = (mode, maxparts is None)
        if key not in ws.loaded:
            if threads.available_cpus() > 1:
                E.compile_ahead(mode, self.params, self.net, ws, data, maxparts=maxparts)
            ws.loaded.add(key)

    def evaluate(self, X, y=None, sample_weight=None, batch_size=None, metrics=None):
        """{"loss": mean loss, "accuracy": fraction correct (classification losses only), and
        each of ``metrics``}.

        Parameters
        ----------
        X : array-like (n, in), or a pandas DataFrame / pyarrow Table for a model with a
            ``preprocessor`` (rows without a target are left out)
        y : array-like, or with a frame the target column's name (default: the one the model
            was trained on) or class names
        sample_weight : array-like (n,), optional
            Weights the loss; metrics are unweighted (Keras' ``metrics=``).
        batch_size : int, optional
        metrics : list of str, optional
            Names from ``fastbp.metrics.METRICS``: "accuracy", "auc", "f1", "mae", "rmse", "r2",
            equal to scikit-learn's functions on ``predict(X)``.
        """
        names = M.check_names(metrics, self.output)
        if tables.is_frame(X) and frames.preprocessed(self, X, y):
            if sample_weight is not None:
                raise ValueError("sample_weight: not taken with a frame (rows without a target are dropped); "
                                 "encode it with model.preprocessor.transform to weight rows")
            X, y = frames.evaluate_inputs(self, X, y)
        else:
            X = frames.as_array(X)               # plain numbers for a model of arrays, as before
            frames.check_not_frame_y(y)
            if y is None:
                raise TypeError("y: expected the targets of X, got None")
        data = D.prepare(self, X, y, sample_weight)
        training.check_metric_targets(names, data)
        n = data.X.shape[0]
        P, total, correct = self.evaluate_data(data, self.block_rows(n, batch_size))
        logs = {"loss": total / n}
        if self.is_classifier:
            logs["accuracy"] = correct / n
        if names:
            logs.update(M.compute(names, training.metric_targets(data), P, output=self.output))
        return logs

    # ---- one batch ------------------------------------------------------------------------------
    def _batch_gradient(self, data, mode=E.GRADIENT):
        """Mean loss over the rows of ``data`` and their mean gradient, in a workspace's grads
        (mode TRAIN_GRADIENT: as a training step, with dropout and running statistics)."""
        m = data.X.shape[0]
        ws = self.workspace(m, isinstance(data.X, SparseRows))
        maxparts = self.kernel_parts(m)
        self._compile_ahead(mode, ws, data, maxparts)
        with threads.running(threads.get_num_threads(), blas=not ws.small):
            # batch=0: the rows are positions 0..m-1 of their minibatch (dropout masks as in fit)
            _, total, _ = E.run(mode, self.params, self.net, ws, data, order=np.arange(m), last=m, batch=0,
                                maxparts=maxparts)
        return total / m, ws.grads

    def loss_and_grad(self, X, y, sample_weight=None):
        """(loss, grad) on exactly this batch; grad is a new flat array in the params layout.

        No dropout; batch norm uses the batch's statistics and updates no running statistic
        (torch's training mode without a step). The loss includes the l1/l2 penalty."""
        data = D.prepare(self, X, y, sample_weight)
        self.check_batch_rows("X", data.X.shape[0])
        loss, grads = self._batch_gradient(data)
        return loss, grads.copy()

    def train_step(self, X, y, optimizer, sample_weight=None):
        """One update on exactly this batch, as a step of fit (dropout, running statistics);
        returns the loss before the update."""
        opt = get_optimizer(optimizer)
        data = D.prepare(self, X, y, sample_weight)
        opt.check_params(self.params)    # raises before any work if opt belongs to another model
        opt.check_updates(1)
        self.check_batch_rows("X", data.X.shape[0])
        buffers = self.buffers.copy()
        loss, grads = self._batch_gradient(data, E.TRAIN_GRADIENT)
        if not (math.isfinite(loss) and np.isfinite(grads).all()):
            self.buffers[...] = buffers
            raise TrainingDiverged(f"train_step: the loss ({loss}) or its gradient is NaN or inf on this batch; "
                                   f"params, running statistics and optimizer state are unchanged. Try a smaller "
                                   f"learning rate (now {opt.lr:g}) or clip_norm on the optimizer.")
        opt.step(self.params, grads, self.layout.segments_arr)
        self.net.updates[0] += 1
        return loss

    # ---- training -------------------------------------------------------------------------------
    def fit(self, X, y=None, epochs=1, batch_size=32, optimizer="adam", shuffle=True, validation_data=None,
            validation_split=0.0, sample_weight=None, class_weight=None, callbacks=None, verbose=1,
            initial_epoch=0, on_nan="raise", resume_from=None, comm=None, metrics=None):
        """Train with minibatches; returns a History (``history.history["loss"]`` per epoch, ...).

        The whole minibatch loop of an epoch runs compiled. The last partial batch is used
        (n=100, batch 32: 4 updates per epoch); with shuffle=False batches are rows in order.
        Reported "loss" is the mean over the epoch's samples of the loss each had in its
        minibatch (before that minibatch's update), "accuracy" likewise.

        Parameters
        ----------
        X : array-like (n, in), a numpy memmap (streamed from the file), or a pandas
            DataFrame / pyarrow Table
            A frame goes through ``model.preprocessor`` when the model has one, ``y`` names a
            column, or it holds text, categories or gaps (a frame of plain numbers for a
            model of arrays is taken as an array, as before): the first such fit fits a
            `TablePreprocessor` on its rows (one-hot categories, mean-filled gaps with "was
            missing" columns) and keeps it on the model; numeric features are standardized
            over the training rows and that scaling is folded into the first layer at the end
            (as ``fastbp train``). Rows without a target are left out.
        y : array-like: int labels (n,), or targets (n, out)
            With a frame: also the target column's name (str; text targets keep their class
            names, see predict_labels) or an array of class names; None takes the column the
            model was trained on.
        epochs, batch_size : int
        optimizer : Optimizer or str
            An optimizer object (its state carries over between fits) or a name.
        shuffle : bool
        validation_data : tuple (X_val, y_val[, sample_weight_val]), optional
        validation_split : float
            The last fraction of the rows, taken before shuffling, validates instead.
        sample_weight : array-like (n,), optional
        class_weight : dict {class: weight}, optional
        callbacks : list of Callback, optional
        verbose : int
            0 silent, 1 a progress bar per epoch, 2 a line per epoch.
        initial_epoch : int
        on_nan : {"raise", "stop", "ignore"}
            If a minibatch loss is NaN or inf, or an epoch ends with NaN or inf params or
            optimizer state, "raise" restores the params and optimizer state of the end of the
            last finite epoch and raises TrainingDiverged (a FloatingPointError; ``.epoch``,
            ``.step``); "stop" restores the same, warns (RuntimeWarning) and returns the History
            so far; "ignore" trains on (a minibatch whose loss is not finite makes no update).
        resume_from : path, optional
            A checkpoint written by ModelCheckpoint(..., save_weights_only=False); training
            continues after its epoch with its params, optimizer state (and hyperparameters),
            random stream and history; initial_epoch is then ignored. The file is validated
            fully first. A checkpoint written during a fit on a frame resumes a fit on a frame,
            with the checkpoint's preprocessor and standardization (and loads with ``load`` as
            a model of raw columns); one of a fit on arrays resumes a fit on arrays.
        comm : mpi4py communicator, optional
            Data-parallel training over its ranks (see fastbp.training and fastbp.distributed).
        metrics : list of str, optional
            Names from ``fastbp.metrics.METRICS`` ("accuracy", "auc", "f1", "mae", "rmse",
            "r2"), logged per epoch as History keys ``auc``, ``val_auc``, ...: on the training
            rows from each row's prediction at the step it was trained on (as Keras, no second
            pass), on the validation rows from the model after the epoch; unweighted.

        Returns
        -------
        History

        Notes
        -----
        Ctrl-C: the running chunk of minibatches (about a quarter second) completes, then fit
        returns the History of the completed epochs with ``history.interrupted = True``;
        params and optimizer state are those after the last completed update (possibly
        mid-epoch). A second Ctrl-C raises KeyboardInterrupt at the next Python instruction,
        which fit also turns into that return. on_train_end callbacks run in every case.
        """
        kwargs = dict(epochs=epochs, batch_size=batch_size, optimizer=optimizer, shuffle=shuffle,
                      validation_data=validation_data, validation_split=validation_split,
                      sample_weight=sample_weight, class_weight=class_weight, callbacks=callbacks, verbose=verbose,
                      initial_epoch=initial_epoch, on_nan=on_nan, resume_from=resume_from, comm=comm,
                      metrics=metrics)
        if tables.is_frame(X) and frames.preprocessed(self, X, y):
            return frames.fit(self, X, y, training.fit, **kwargs)
        X = frames.as_array(X)                   # plain numbers for a model of arrays, as before
        frames.check_not_frame_y(y)
        if y is None:
            raise TypeError("y: expected the targets of X, got None")
        return training.fit(self, X, y, **kwargs)

    # ---- files ----------------------------------------------------------------------------------
    def save(self, path):
        """Write the model to ``path`` atomically (the .fbp format; no pickle)."""
        io.save_model(path, self)

    # ---- interop (fastbp.interop) ----------------------------------------------------------------
    def to_onnx(self, path, opset=None):
        """Export as a standard ONNX graph (extra ``onnx``); see fastbp.interop.to_onnx."""
        return interop.to_onnx(self, path, opset=opset)

    def to_state_dict(self):
        """Params (and batch norm's running statistics) as numpy arrays in torch nn.Sequential
        naming ("0.weight" (out, in), "0.bias", ...); see fastbp.interop.to_state_dict."""
        return interop.to_state_dict(self)

    @classmethod
    def from_state_dict(cls, state_dict, **kwargs):
        """An MLP from a torch-style state dict; kwargs as for MLP (activation, output, dropout
        rates, ...); sizes, bias, norms and dtype come from the dict. See
        fastbp.interop.parse_state_dict and load_state_dict."""
        kwargs, _ = interop.parse_state_dict(state_dict, **kwargs)
        return interop.load_state_dict(cls(**kwargs), state_dict)

    def __getstate__(self):
        # In-memory pickling (copy.deepcopy, multiprocessing, scikit-learn clones). Files use
        # save/load, which never unpickle.
        return {"config": self.config(), "params": self.params.copy(), "buffers": self.buffers.copy(),
                "updates": self.updates, "rng": self.rng.bit_generator.state, "optimizer": self.optimizer,
                "history": self.history, "preprocessor": self.preprocessor}

    def __setstate__(self, state):
        self.__init__(**state["config"])     # rebuilds the flat buffer and the layer views into it
        self.params[...] = state["params"]
        self.buffers[...] = state.get("buffers", self.buffers)
        self.updates = state.get("updates", 0)
        self.rng.bit_generator.state = state["rng"]
        self.optimizer = state["optimizer"]
        self.history = state["history"]
        self.preprocessor = state.get("preprocessor")

    def copy(self):
        """An independent model with the same config, params, running statistics and update count."""
        m = MLP(**self.config())
        m.params[...] = self.params
        m.buffers[...] = self.buffers
        m.updates = self.updates
        if self.preprocessor is not None:
            m.preprocessor = tables.TablePreprocessor.from_json(self.preprocessor.to_json())
        return m


def load(path):
    """Read a model (or the model part of a checkpoint) written by ``MLP.save``; never unpickles.

    Raises TypeError for a path that is not a str or os.PathLike, ValueError for a file that
    cannot be read or is not a valid fastbp file (see the file format in the docs).
    """
    return io.load_model(path, MLP)
