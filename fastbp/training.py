"""The one training loop: ``MLP.fit`` in one process and on MPI ranks alike.

A ``Run`` owns everything a fit needs while it runs: the checked data, the optimizer, the
callbacks and history, the divergence snapshot, Ctrl-C handling; the model keeps only the
network (and the Keras-style ``optimizer``, ``history`` and ``stop_training`` that callbacks
read). The loop talks to a communicator (fastbp.comm): locally every collective is a no-op.

An epoch runs in chunks of minibatches of about CHUNK_SECONDS, so Ctrl-C, the progress bar and
the release of a memmap's pages are seen during long epochs while short epochs stay one call.
In one process a chunk is one call of the compiled minibatch loop (kernels.network.run_batches).
Under MPI (data parallel) every rank holds the whole model and reads the whole dataset (arrays,
or memmaps of the same files); minibatch s of an epoch is the same rows as in one process with
the same seed, and rank r computes the gradient of the r-th contiguous share of them, scaled to
a mean over the global batch. One in-place Allreduce per step sums the gradient buffer, whose
four extra slots carry the loss sum, the count of correct rows and two status flags; every rank
then applies the same update (batch-norm layers sum their statistics over the ranks inside the
step: kernels.syncbn). Rank 0's state is broadcast at the start, its hyperparameters at
every epoch, its params at the end; callbacks, progress and checkpoints run on rank 0; an error
on any rank is raised on every rank (see fastbp.comm).
"""
import contextlib
import json
import os
import sys
import time
import warnings

import numpy as np

from . import _memmap
from . import data as D
from . import io
from . import metrics as M
from . import threads
from ._interrupt import DeferredSigint
from .callbacks import CallbackList, History, ProgressBar
from .comm import as_communicator, is_collective, mark_collective
from .errors import TrainingDiverged
from .kernels import epoch as E
from .kernels import optimizers as K
from .kernels import syncbn
from .kernels.args import SparseRows
from .kernels.jit import compile_notice
from .optim import get_optimizer
from .validation import all_finite, check_bool, check_int, check_unit_interval

ON_NAN = ("raise", "stop", "ignore")
CHUNK_SECONDS = 0.25
# Extra slots after the gradient in the buffer a distributed step reduces.
LOSS, CORRECT, FAILED, INTERRUPTED = range(4)
N_EXTRA = 4
# Model settings every rank must share (seed and init may differ: rank 0's params are broadcast).
SAME_CONFIG = ("sizes", "activation", "output", "loss", "bias", "dtype", "dropout", "norm", "l1", "l2",
               "label_smoothing", "huber_delta")
COMPILE_MESSAGE = ("fastbp: compiling kernels for {dtype} (once per install; "
                   "'fastbp compile' does it ahead of time)...")


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _Interrupted(Exception):
    """Ctrl-C seen at a point where every rank stops alike."""


def metric_targets(data):
    """The targets of a checked Data as the metrics read them: int labels, else the float targets."""
    return data.labels if data.labels.size else data.targets


def compute_metrics(names, y, P, output, result=None):
    """``{name: value}`` of predictions P against targets y (``result``: a function computing it,
    default metrics.compute); every value NaN when some prediction is NaN or inf (a run that
    diverged with on_nan="ignore"), where the metrics would refuse the predictions."""
    if not np.isfinite(P).all():
        return dict.fromkeys(names, float("nan"))
    return result() if result is not None else M.compute(names, y, P, output=output)


def check_metric_targets(names, data):
    """Regression metrics compare targets with predictions of one shape: int labels cannot be."""
    for name in names:
        if data.labels.size and not M.get(name).classification:
            raise ValueError(f"metrics: {name!r} compares targets with predictions of one shape, but y holds class "
                             "labels (n,); pass one-hot targets, or use accuracy, auc or f1")


def check_fit_arguments(epochs, batch_size, shuffle, initial_epoch, verbose, on_nan, validation_split, optimizer):
    """fit's scalar arguments, checked; returns them converted, the optimizer as an Optimizer."""
    epochs = check_int("epochs", epochs, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    shuffle = check_bool("shuffle", shuffle)
    initial_epoch = check_int("initial_epoch", initial_epoch, 0)
    verbose = check_int("verbose", verbose, 0)
    if on_nan not in ON_NAN:
        raise ValueError(f"on_nan: unknown value {on_nan!r}; expected one of {list(ON_NAN)}")
    validation_split = check_unit_interval("validation_split", validation_split, open_right=True)
    return epochs, batch_size, shuffle, initial_epoch, verbose, validation_split, get_optimizer(optimizer)


def fit(model, X, y, epochs=1, batch_size=32, optimizer="adam", shuffle=True, validation_data=None,
        validation_split=0.0, sample_weight=None, class_weight=None, callbacks=None, verbose=1,
        initial_epoch=0, on_nan="raise", resume_from=None, comm=None, metrics=None, input_scaling=None):
    """Train ``model``; see ``MLP.fit`` for the arguments. Returns the History.

    ``input_scaling`` (fastbp.frames.InputScaling, for a fit on a table): the preprocessor and
    the standardization the params are trained on during this fit, which checkpoints keep and
    ModelCheckpoint(save_weights_only=True) folds into the copy it writes."""
    comm = as_communicator(comm)
    with comm.guard():
        run = Run(model, comm, input_scaling)
        run.setup(X, y, epochs, batch_size, optimizer, shuffle, validation_data, validation_split, sample_weight,
                  class_weight, callbacks, verbose, initial_epoch, on_nan, resume_from, metrics)
        return run.train()


class Run:
    """One fit of a model: its data, optimizer, callbacks and the loop's state.

    Attributes (what callbacks may read)
    ----------
    model : MLP
    comm : LocalComm or MPIComm
    optimizer : Optimizer
    history : History
    callbacks : list of Callback
        The user's callbacks, in fit's order.
    epoch : int or None
        The epoch running (0-based).
    """

    def __init__(self, model, comm, input_scaling=None):
        self.model = model
        self.comm = comm
        self.input_scaling = input_scaling
        self.epoch = None
        self.timing = {"compile": 0.0, "train": 0.0, "validate": 0.0}
        if comm.size > 1:
            self.timing["allreduce"] = 0.0

    # ---- setup: check everything before any state changes ---------------------------------------
    def setup(self, X, y, epochs, batch_size, optimizer, shuffle, validation_data, validation_split,
              sample_weight, class_weight, callbacks, verbose, initial_epoch, on_nan, resume_from, metrics=None):
        model, comm = self.model, self.comm
        share = comm.share if comm.size > 1 else None
        with comm.together():
            epochs, batch_size, shuffle, initial_epoch, verbose, validation_split, opt = check_fit_arguments(
                epochs, batch_size, shuffle, initial_epoch, verbose, on_nan, validation_split, optimizer)
            metric_names = M.check_names(metrics, model.output)
            stream = _memmap.read_only_mapping(X)
            data = D.prepare(model, X, y, sample_weight, share=share)
            if stream is not None and not _memmap.backs(data.X, stream):
                stream = None                # converted into memory: nothing to stream
            if class_weight is not None:
                data = D.with_class_weight(model, data, class_weight)
            data, val = D.split_validation(model, data, validation_data, validation_split, share=share)
            check_metric_targets(metric_names, data)
            n = data.X.shape[0]
            if model.buffers.size:
                # n is the global row count, so under MPI this checks the global minibatches
                if min(batch_size, n) == 1 or n % batch_size == 1:
                    raise ValueError(f"batch_size: with batch norm every minibatch needs at least two rows, but "
                                     f"{n} rows in minibatches of {batch_size} leave one of a single row; change "
                                     f"batch_size (or the number of rows)")
            opt.check_params(model.params)   # raises now if the optimizer holds another model's state
            history = History()
            progress = ProgressBar(verbose, epochs, n) if verbose and comm.is_root else None
            cbs = CallbackList(callbacks, model=model, history=history, progress=progress, run=self)
            start, callback_states = initial_epoch, []
            if resume_from is not None and comm.is_root:   # validates the whole file before changing anything
                start, callback_states = io.restore_checkpoint(resume_from, model, opt, history, cbs.user,
                                                               scaling=self.input_scaling)
        _memmap.advise_random(stream)
        self.data, self.val, self.n, self.stream = data, val, n, stream
        self.epochs, self.batch, self.shuffle, self.on_nan, self.verbose = epochs, batch_size, shuffle, on_nan, verbose
        self.optimizer, self.history, self.cbs, self.callbacks = opt, history, cbs, cbs.user
        self.callback_states, self.start = callback_states, start
        self.metric_names = metric_names
        # training metrics from each position's prediction at its step, which the kernels write
        self.train_metrics, self.train_pred = None, None
        if metric_names:
            self.train_metrics = M.TrainingMetrics(metric_names, metric_targets(data), model.sizes[-1],
                                                   output=model.output, dtype=model.dtype)
            self.train_pred = self.train_metrics.predictions
        if comm.size > 1:
            self._adopt_root_state(initial_epoch, validation_split, resume_from)
        # a schedule must have a rate for every update of the run (OneCycle's total_steps)
        self.optimizer.check_updates(max(0, self.epochs - self.start) * -(-n // batch_size))
        # Work buffers: a rank gets at most its share of a global minibatch.
        cap = batch_size if comm.size == 1 else max(1, -(-min(batch_size, n) // comm.size))
        self.ws = model.workspace(cap, isinstance(data.X, SparseRows))
        self.maxparts = model.kernel_parts(cap)
        # parts are fixed, so the thread count may follow the load without changing a bit
        follow_load = self.maxparts is not None and not threads.is_pinned() and threads.get_num_threads() > 1
        self.load = threads.load_monitor() if follow_load else None
        self.measuring = False      # whether a stretch of steps measures its thread count's speed
        self.grads = self.ws.grads
        # under MPI, batch norm normalizes by the statistics of the global minibatch (kernels.syncbn)
        self.synced = comm.size > 1 and model.buffers.size > 0
        if comm.size > 1:
            self.reduced = np.zeros(model.n_params + N_EXTRA, model.dtype)   # gradient, then the slots
            self.grads = self.reduced[:model.n_params]

    def _adopt_root_state(self, initial_epoch, validation_split, resume_from):
        """Every rank must run the same loop: compare with rank 0, then take its state."""
        model, comm, opt = self.model, self.comm, self.optimizer
        cfg = model.config()
        mine = {"model": {k: cfg[k] for k in SAME_CONFIG},
                "fit": {"epochs": self.epochs, "batch_size": self.batch, "shuffle": self.shuffle,
                        "on_nan": self.on_nan, "initial_epoch": initial_epoch, "validation_split": validation_split,
                        "resume_from": resume_from is not None, "optimizer": type(opt).__name__,
                        "metrics": list(self.metric_names)},
                "data": {"samples": self.n, "validation samples": 0 if self.val is None else self.val.X.shape[0],
                         "sample weights": bool(self.data.weights.size), "integer labels": bool(self.data.labels.size)}}
        root = None
        if comm.is_root:
            root = dict(mine, start=self.start, rng=model.rng.bit_generator.state, iterations=opt.iterations,
                        updates=model.updates, dropout_key=int(model.net.key), history={"history": self.history.history, "epoch": self.history.epoch})
        root = json.loads(comm.bcast_bytes(json.dumps(root).encode() if comm.is_root else b""))
        with comm.together():
            for part in ("model", "fit", "data"):
                for key, value in mine[part].items():
                    theirs = root[part][key]
                    if value != theirs:
                        raise ValueError(f"{key}: {value!r} on rank {comm.rank} but {theirs!r} on rank 0; every rank "
                                         "must call fit with the same model, data and arguments")
            rng = np.random.default_rng()
            rng.bit_generator.state = root["rng"]       # checks the state before the model takes it
        model.rng.bit_generator.state = root["rng"]
        self.start = int(root["start"])
        opt.iterations = int(root["iterations"])
        model.updates = int(root["updates"])
        model.net = model.net._replace(key=np.uint64(root["dropout_key"]))   # the same masks on every rank
        if not comm.is_root:
            self.history.history = {k: list(v) for k, v in root["history"]["history"].items()}
            self.history.epoch = list(root["history"]["epoch"])
        self._bcast_state()
        ranks_here = comm.local_ranks()
        nthreads = threads.get_num_threads()
        cores = os.cpu_count() or 1
        own = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
        if comm.is_root and (ranks_here * nthreads > cores or nthreads > own):
            warnings.warn(f"{ranks_here} ranks on this node each run {nthreads} threads, on {cores} cores "
                          f"({own} for rank 0); set NUMBA_NUM_THREADS={max(1, min(own, cores // ranks_here))} "
                          "(or fastbp.set_num_threads) per rank to avoid oversubscription", RuntimeWarning, stacklevel=5)

    def _bcast_state(self):
        """Rank 0's params and optimizer state on every rank."""
        self.comm.bcast(self.model.params)
        state = self.optimizer.state_for(self.model.params)
        if state.size:
            self.comm.bcast(state)

    # ---- the loop ---------------------------------------------------------------------------------
    def train(self):
        model, opt, history, cbs, comm = self.model, self.optimizer, self.history, self.cbs, self.comm
        model.optimizer = opt
        model.history = history
        model.stop_training = False
        params = dict(epochs=self.epochs, steps=-(-self.n // self.batch), batch_size=self.batch, samples=self.n)
        if comm.size > 1:
            params["ranks"] = comm.size
        history.set_params(params)
        history.timing = self.timing
        began = False
        sigint = DeferredSigint().start()        # Ctrl-C sets a flag, read between chunks
        try:
            with comm.together():
                if comm.is_root:
                    cbs.on_train_begin()
                    for cb, state in self.callback_states:
                        cb._restore_state(state)
                    began = True
            self._load_kernels()
            for epoch in range(self.start, self.epochs):
                if comm.size == 1 and sigint.hit:
                    raise _Interrupted
                self.epoch = epoch
                with comm.together():
                    if comm.is_root:
                        cbs.on_epoch_begin(epoch)
                logs = self._epoch(epoch, sigint)
                if logs is None:                 # diverged with on_nan="stop"
                    break
                if self.val is not None:
                    t0 = time.perf_counter()
                    logs.update({"val_" + k: v for k, v in self._validate().items()})
                    self.timing["validate"] += time.perf_counter() - t0
                logs["lr"] = self.optimizer.lr      # the rate of the next update (a schedule's too)
                with comm.together():
                    if comm.is_root:
                        cbs.on_epoch_end(epoch, logs)
                    else:
                        history.on_epoch_end(epoch, logs)
                # a callback on rank 0 stops everyone; Ctrl-C on any rank stops every rank
                flags = np.array([comm.is_root and model.stop_training, sigint.hit], np.float64)
                comm.allreduce_max(flags)
                self._check_ranks_agree()
                if flags[1]:
                    raise _Interrupted
                if flags[0]:
                    model.stop_training = True
                    break
        except _Interrupted:
            history.interrupted = True
        except KeyboardInterrupt as e:
            # A second Ctrl-C inside a step or a callback. Under MPI only when every rank agreed
            # on it before any changed state; as in one process, return what was done.
            if comm.size > 1 and not is_collective(e):
                raise
            history.interrupted = True
        except BaseException:
            if began:                           # on_train_end runs on errors too
                began = False
                cbs.on_train_end()
            raise
        finally:
            history.interrupted = history.interrupted or (comm.size == 1 and sigint.hit)
            sigint.stop()
        with comm.together():
            if began:
                cbs.on_train_end()
        comm.bcast(model.params)                # callbacks on rank 0 may have restored other params
        return history

    def _load_kernels(self):
        """Compile (or load from numba's cache) every kernel this fit calls, before the clock
        of the first epoch starts; one line says so when something compiles. A workspace
        remembers what it has loaded (its kernels' argument types are fixed by the model)."""
        model, ws, comm = self.model, self.ws, self.comm
        need = ("distributed" if comm.size > 1 else "local", self.val is not None)
        if need in ws.loaded:
            return
        message = COMPILE_MESSAGE.format(dtype=model.dtype.name)
        # said where the progress is shown: verbose=1 draws its bar only on a terminal
        shown = comm.is_root and (self.verbose >= 2 or (self.verbose == 1 and _is_terminal(sys.stderr)))
        notice = compile_notice(message) if shown else contextlib.nullcontext()
        t0 = time.perf_counter()
        with notice:
            opt = self.opt_args = self.optimizer.kernel_args(model.params, model.layout.segments_arr)
            # under MPI, one rank of each node compiles what is not cached yet; the others then load it
            comm.node_first(lambda first: self._load(opt, first))
        self.timing["compile"] += time.perf_counter() - t0
        ws.loaded.add(need)

    def _load(self, opt, first):
        """_load_kernels' calls, which run no batch: they only load (or compile) the kernels.
        ``first``: no other rank of this node compiles at the same time (comm.node_first)."""
        model, ws, comm = self.model, self.ws, self.comm
        mode = E.TRAIN if comm.size == 1 else E.TRAIN_GRADIENT
        if first and threads.available_cpus() > 1:
            E.compile_ahead(mode, model.params, model.net, ws, self.data, opt=opt, maxparts=self.maxparts,
                            loop=not self.synced)
        if self.synced:
            syncbn.load(self.grads, model.params, model.net, ws, self.data, self.maxparts)
        else:
            E.run(mode, model.params, model.net, ws, self.data, opt=opt, order=np.zeros(0, np.int64),
                  maxparts=self.maxparts)
        if comm.size > 1:
            P = model.params[:0]
            K.apply_update(P, P, opt._replace(state=opt.state[:, :0], step=np.zeros(1, np.int64)), self.maxparts,
                           K.variant(opt))
        if self.val is not None:
            lo, hi = comm.share(self.val.X.shape[0])
            model.evaluate_data(D.select(self.val, 0, 0), cap=model.block_rows(max(1, hi - lo)))

    def _epoch_order(self, n):
        """The row order of the next epoch: a permutation seeded from the model's random stream
        (one draw), or rows in order."""
        order = np.empty(n, np.int64)
        if not self.shuffle:
            order[:] = np.arange(n)
            return order
        E.shuffled_order(order, np.uint64(self.model.rng.bit_generator.random_raw()))
        return order

    def _epoch(self, epoch, sigint):
        """One epoch; its logs, or None after divergence with on_nan="stop"."""
        model, opt, comm, ws = self.model, self.optimizer, self.comm, self.ws
        n, batch = self.n, self.batch
        steps = -(-n // batch)
        order = self._epoch_order(n)
        self.opt_args = opt.kernel_args(model.params, model.layout.segments_arr)
        if comm.size > 1:       # rank 0's hyperparameters: a callback there may have changed lr
            ctl = np.append(self.opt_args.hyper, self.opt_args.clip)
            comm.bcast(ctl)
            if not comm.is_root:
                if opt.schedule is None:
                    opt.lr = float(ctl[K.H_LR])
                opt.clip_norm = float(ctl[-1]) or None
            self.opt_args = self.opt_args._replace(hyper=ctl[:-1].copy(), clip=float(ctl[-1]))
        state = self.opt_args.state
        snapshot = None if self.on_nan == "ignore" else (model.params.copy(), state.copy(), opt.iterations,
                                                         model.buffers.copy(), model.updates)
        step_loss = np.zeros(steps)
        step_correct = np.zeros(steps)
        if self.train_pred is not None and comm.size > 1:
            self.train_pred[...] = 0     # a rank writes only its rows; the sum over ranks gathers them
        # Chunks of about CHUNK_SECONDS, sized from the speed of earlier chunks (kept with the
        # workspace, so later fits of this model and batch size start right).
        chunk = max(1, int(CHUNK_SECONDS * ws.steps_per_second)) if ws.steps_per_second else max(1, steps // 50)
        bound = None
        if self.stream is not None:
            bound = _memmap.ChunkBound(batch, self.data.X.shape[1] * self.data.X.itemsize)
        chunk = min(chunk, bound.steps if bound else steps)
        progress = self.cbs.progress
        self.sigint, self.interrupted = sigint, False
        s = 0
        with threads.single_threaded_blas(ws.small):
            while s < steps:
                n_threads = self.load.next_threads(ws.thread_rates) if self.load is not None else threads.get_num_threads()
                probe = self.load is not None and self.load.probing
                end = min(steps, s + (max(1, int(chunk * self.load.PROBE_FRACTION)) if probe else chunk))
                t0 = time.perf_counter()
                try:
                    with threads.using(n_threads):
                        done = self._steps(step_loss, step_correct, order, s, end)
                finally:
                    opt.iterations = int(self.opt_args.step[0])
                dt = time.perf_counter() - t0
                self.timing["train"] += dt
                start, s = s, s + done
                if s < end and not self.interrupted and self.on_nan != "ignore":   # a non-finite loss
                    return self._diverged(epoch, s - 1, snapshot)
                if progress is not None:
                    progress.update(min(n, s * batch), step_loss[:s].sum() / min(n, s * batch))
                ws.steps_per_second = (s - start) / max(dt, 1e-9)
                if self.load is not None and self.measuring:
                    self.load.ran(ws.thread_rates, n_threads, s - start, dt)
                # a fit's first stretch also touches its fresh buffers (optimizer state,
                # gradients) for the first time: not a measure of the thread count's speed
                self.measuring = True
                chunk = max(1, int(CHUNK_SECONDS * ws.steps_per_second))
                if bound is not None:
                    bound.chunk_done(s - start)
                    _memmap.release(self.stream)
                    bound.released()
                    chunk = min(chunk, bound.steps)
                if self.interrupted or (s < steps and comm.size == 1 and sigint.hit):
                    raise _Interrupted           # params hold the last completed update
        logs = {"loss": step_loss.sum() / n}
        if model.is_classifier:
            logs["accuracy"] = step_correct.sum() / n
        finite = np.isfinite(logs["loss"])
        if self.metric_names and (finite or self.on_nan == "ignore"):
            self._gather(self.train_pred)
            logs.update(compute_metrics(self.metric_names, None, self.train_pred, model.output,
                                        lambda: self.train_metrics.result(order)))
        if self.on_nan == "ignore":
            return logs
        if not finite:
            return self._diverged(epoch, steps - 1, snapshot)
        # A finite loss can still come with an update that overflowed: never keep such an epoch.
        if not (all_finite(model.params) and all_finite(state)):
            return self._diverged(epoch, steps - 1, snapshot,
                                  reason="an update made the params or optimizer state NaN or inf")
        return logs

    def _steps(self, step_loss, step_correct, order, first, last):
        """Minibatches first .. last-1 (one update each); stops after one whose loss is not
        finite, or (MPI) at a Ctrl-C; returns how many ran."""
        if self.comm.size > 1:
            return self._reduced_steps(step_loss, step_correct, order, first, last)
        done, _, _ = E.run(E.TRAIN, self.model.params, self.model.net, self.ws, self.data, grads=self.grads,
                           opt=self.opt_args, out=self.train_pred, order=order, first=first, last=last,
                           batch=self.batch, step_loss=step_loss, step_correct=step_correct, maxparts=self.maxparts)
        return done

    def _reduced_steps(self, step_loss, step_correct, order, first, last):
        """_steps under MPI: per step, this rank's share of the gradient, one Allreduce, the update
        (with batch norm, the share's forward and backward passes sum statistics over the ranks
        at every batch-norm layer too: kernels.syncbn)."""
        model, comm, ws, opt = self.model, self.comm, self.ws, self.opt_args
        red, grads, P = self.reduced, self.grads, model.n_params
        n, batch = self.n, self.batch
        for s in range(first, last):
            r0 = s * batch
            m = min(n, r0 + batch) - r0
            lo, hi = comm.share(m)
            exc = None
            try:
                # the rows are positions lo.. of the global minibatch (dropout masks are keyed by them)
                if self.synced:
                    # scaled by 1/m already, without the penalty (added below, after the sum)
                    total, correct = syncbn.train_gradient(self._allreduce_sum, grads, model.params, model.net, ws,
                                                           self.data, order, r0 + lo, r0 + hi, lo, m,
                                                           out=self.train_pred, maxparts=self.maxparts)
                else:
                    _, total, correct = E.run(E.TRAIN_GRADIENT, model.params, model.net, ws, self.data, grads=grads,
                                              out=self.train_pred, order=order, first=r0 + lo, last=r0 + hi,
                                              batch=lo, maxparts=self.maxparts)
                    if hi - lo != m:
                        grads *= (hi - lo) / m   # the kernel's mean is over this rank's rows; the step's over m
            except BaseException as e:           # reported through the Allreduce, raised on every rank
                exc, total, correct = e, 0.0, 0.0
            red[P + LOSS] = total
            red[P + CORRECT] = correct
            red[P + FAILED] = exc is not None
            red[P + INTERRUPTED] = self.sigint.hit
            self._allreduce_sum(red)
            if red[P + FAILED] > 0:
                comm.agree(exc)
            total = float(red[P + LOSS])
            if self.synced and (model.net.l1 != 0.0 or model.net.l2 != 0.0):
                total += m * syncbn.add_penalty(grads, model.params, model.net, ws)
            step_loss[s] = total
            step_correct[s] = red[P + CORRECT]
            if not np.isfinite(total):
                return s - first + 1
            K.apply_update(model.params, grads, opt, self.maxparts, K.variant(opt))
            model.net.updates[0] += 1
            if red[P + INTERRUPTED] > 0:         # every rank sees it at the same step
                self.interrupted = True
                return s - first + 1
        return last - first

    def _allreduce_sum(self, buf):
        """comm.allreduce_sum, its time counted in timing["allreduce"]."""
        t0 = time.perf_counter()
        self.comm.allreduce_sum(buf)
        self.timing["allreduce"] += time.perf_counter() - t0

    def _diverged(self, epoch, step, snapshot, reason=None):
        """Restore the params and optimizer state of the end of the last finite epoch, then raise
        TrainingDiverged (on_nan="raise") or warn and stop (on_nan="stop", returns None). Every
        rank decides on the same reduced loss, so every rank does the same."""
        model, opt = self.model, self.optimizer
        params, state, t, buffers, updates = snapshot
        model.params[...] = params
        opt.state_for(model.params)[...] = state
        opt.iterations = t
        model.buffers[...] = buffers
        model.updates = updates
        what = reason or f"the loss became NaN or inf at minibatch {step}"
        msg = (f"training diverged in epoch {epoch} (0-based, as in history.epoch): {what}. Params and "
               f"optimizer state were restored to the end of the last finite epoch "
               + (f"(epoch {epoch - 1}). " if epoch > 0 else "(here: as they were before this epoch). ")
               + f"Try a smaller learning rate (now {opt.lr:g}) or clip_norm on the optimizer.")
        if self.on_nan == "raise":
            raise mark_collective(TrainingDiverged(msg, epoch=epoch, step=step))
        if self.comm.is_root:
            warnings.warn(msg, RuntimeWarning, stacklevel=4)
        model.stop_training = True
        return None

    def _validate(self):
        """Validation loss (and accuracy, and the fit's metrics) over every rank's share of the
        validation rows."""
        model, comm = self.model, self.comm
        nv = self.val.X.shape[0]
        lo, hi = comm.share(nv)
        sums = np.zeros(3)
        # every row's prediction, for metrics such as AUC that need all of them at once
        P = np.zeros((nv, model.sizes[-1]), model.dtype) if self.metric_names else None
        exc = None
        try:
            if hi > lo:
                Ps, sums[0], sums[1] = model.evaluate_data(D.select(self.val, lo, hi))
                if P is not None:
                    P[lo:hi] = Ps
        except BaseException as e:
            exc = e
        sums[2] = exc is not None
        comm.allreduce_sum(sums)
        if sums[2] > 0:
            comm.agree(exc)
        logs = {"loss": sums[0] / nv}
        if model.is_classifier:
            logs["accuracy"] = sums[1] / nv
        if P is not None:
            self._gather(P)
            logs.update(compute_metrics(self.metric_names, metric_targets(self.val), P, model.output))
        return logs

    def _gather(self, P):
        """Every rank's rows of predictions ``P`` on every rank (for metrics such as AUC over all
        rows): each rank holds the rows it computed and zeros elsewhere, so one sum gathers them."""
        if self.comm.size > 1:
            self.comm.allreduce_sum(P)

    def _check_ranks_agree(self):
        """Once per epoch under MPI: are params and optimizer state still the same bits on every
        rank? They are when Allreduce gives every rank the same bits, which MPI recommends but
        does not promise; if some rank drifted, rank 0's state is broadcast again."""
        comm = self.comm
        if comm.size == 1:
            return
        if not comm.same_everywhere([self.model.params, self.optimizer.state_for(self.model.params)]):
            if comm.is_root:
                warnings.warn("params differed between ranks after an epoch (this MPI's Allreduce does not give "
                              "every rank the same bits); rank 0's were broadcast again", RuntimeWarning, stacklevel=4)
            self._bcast_state()

    def save_checkpoint(self, path, epoch):
        """Write the whole training state after ``epoch`` (0-based, completed) to ``path``:
        params, optimizer state, the model's random stream, history and callback states, which
        ``fit(resume_from=path)`` continues from."""
        io.save_checkpoint(path, self.model, self.optimizer, epoch, self.history, self.callbacks,
                           scaling=self.input_scaling)

    def save_model(self, path):
        """Write the model as it stands to ``path`` as a model file (``MLP.save``); during a fit on
        a table, a copy with the standardization folded in and the preprocessor, as the fit's
        end leaves the model."""
        model = self.model if self.input_scaling is None else self.input_scaling.folded(self.model)
        io.save_model(path, model)
