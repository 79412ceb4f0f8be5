"""Data-parallel training over MPI: one ``Allreduce`` of the flat gradient buffer per minibatch.

    from mpi4py import MPI
    model.fit(X, y, epochs=10, batch_size=256, comm=MPI.COMM_WORLD)   # run under mpiexec -n N

Every rank (process) holds the whole model and is given the whole dataset: the same arrays, or
memmaps of the same files on a shared filesystem. Minibatch s of an epoch is the same rows as
in a single-process ``fit`` with the same seed. Rank r computes the gradient of the r-th
contiguous share of those rows, reading only them, with the compiled kernels. Each local
gradient is scaled by m_local / m, one in-place ``Allreduce`` sums the buffer, and every rank
then holds the mean over the global batch of m rows and applies the same optimizer step. Shares
that differ in size by one row, or are empty, change nothing. The loss sum, the count of correct
rows and two status flags ride in four extra slots of the same buffer, so a step costs exactly
one collective call.

- Start: rank 0's params, optimizer state and RNG state are broadcast, after checks that every
  rank has the same architecture, data shape and fit arguments.
- Shuffling: every rank draws ``model._epoch_order(n)`` from the same RNG state, as ``fit`` does.
- Callbacks, progress bar and checkpoints run on rank 0. Its optimizer hyperparameters (a
  learning-rate schedule may change them) and its ``stop_training`` are broadcast at every
  epoch boundary, and its params at the end (EarlyStopping may restore the best ones). Every
  rank returns a History with the same globally reduced values.
- Validation: each rank evaluates a contiguous share of the validation rows and the sums are reduced.
- Errors: an exception on any rank (bad input on one rank, an error in a rank-0 callback,
  arguments that differ between ranks, an error inside a step) is raised on every rank as the same
  exception type and message, "rank r of N: ...". Divergence is decided on the reduced loss,
  so every rank raises the same TrainingDiverged. Ctrl-C (mpiexec forwards it to every rank)
  stops every rank after the same update. An error outside these checks on one rank alone
  calls ``MPI_Abort`` rather than leave the others waiting forever.
"""
import builtins
import contextlib
import json
import os
import shutil
import sys
import sysconfig
import time
import warnings
import zlib

import numpy as np

from . import io as _io
from . import threads
from .callbacks import CallbackList, History, ProgressBar
from .errors import TrainingDiverged
from .kernels import epoch as E
from .kernels import network as N
from .kernels import optimizers as K
from ._interrupt import DeferredSigint
from .model import _rows, check_fit_arguments
from .validation import _describe, _to_numeric_array, as_finite

# Extra slots after the gradient in the reduced buffer.
LOSS, CORRECT, FAILED, INTERRUPTED = range(4)
N_EXTRA = 4
# Error messages sent between ranks are cut to this many bytes.
MAX_ERROR_BYTES = 1 << 16
PROGRESS_SECONDS = 0.25
# Set by MPI launchers (MPICH/Intel MPI hydra, Open MPI, MVAPICH, Slurm's srun) to the world size.
LAUNCHER_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS")
# Model settings every rank must share (seed and init may differ: rank 0's params are broadcast).
SAME_CONFIG = ("sizes", "activation", "output", "loss", "bias", "dtype")


def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("data-parallel training needs mpi4py and an MPI library: "
                          "pip install 'fastbp[mpi]'") from e
    return MPI


def launched_comm():
    """mpi4py's COMM_WORLD if this process was started by an MPI launcher with more than one
    rank (mpiexec -n N, srun) and mpi4py is importable; otherwise None.

    Without a launcher, mpi4py is not imported, so MPI is never initialized for nothing.
    """
    launched = False
    for var in LAUNCHER_SIZE_VARS:
        try:
            launched |= int(os.environ.get(var, "0")) > 1
        except ValueError:
            pass
    if not launched:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    comm = MPI.COMM_WORLD
    return comm if comm.Get_size() > 1 else None


def find_mpiexec():
    """The MPI launcher of the MPI library installed beside this interpreter (a venv's bin
    first, as ``pip install mpich`` puts it), else the first mpiexec/mpirun on PATH; or None."""
    for folder in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        for name in ("mpiexec", "mpirun"):
            path = os.path.join(folder, name)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
    return shutil.which("mpiexec") or shutil.which("mpirun")


# ---- the collective error protocol -------------------------------------------------------------
def _mark(exc):
    """Flag an exception as raised on every rank (no rank is left waiting)."""
    exc._fastbp_collective = True
    return exc


def _rebuild(name, text):
    """An exception of the class called ``name`` (builtins and fastbp's own), else RuntimeError."""
    mod, _, qual = name.rpartition(".")
    cls = None
    if mod == "builtins":
        cls = getattr(builtins, qual, None)
    elif name == f"{TrainingDiverged.__module__}.{TrainingDiverged.__qualname__}":
        cls = TrainingDiverged
    if isinstance(cls, type) and issubclass(cls, BaseException):
        try:
            return cls(text)
        except Exception:
            pass
    return RuntimeError(f"{name}: {text}")


class _Group:
    """A communicator plus the collective checks that keep ranks from waiting on a failed one."""

    def __init__(self, comm):
        MPI = _import_mpi()
        if not isinstance(comm, MPI.Intracomm):
            raise TypeError(f"comm: expected an mpi4py intracommunicator such as MPI.COMM_WORLD, got {_describe(comm)}")
        self.MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.root = self.rank == 0

    def agree(self, exc):
        """Collective: return if no rank failed, else raise the lowest failing rank's error on all.

        Every rank calls it with its own exception or None. The error travels as bytes (type
        name and message) with buffer-based calls, never pickled.
        """
        text = b""
        if exc is not None:
            name = f"{type(exc).__module__}.{type(exc).__qualname__}"
            text = f"{name}\n{exc}".encode("utf-8", "replace")[:MAX_ERROR_BYTES]
        mine = np.array([exc is not None, len(text)], np.int64)
        every = np.empty((self.size, 2), np.int64)
        self.comm.Allgather(mine, every)
        failed = np.flatnonzero(every[:, 0])
        if failed.size == 0:
            return
        r = int(failed[0])
        buf = np.frombuffer(bytearray(text), np.uint8) if self.rank == r else np.empty(int(every[r, 1]), np.uint8)
        self.comm.Bcast(buf, root=r)
        name, _, msg = buf.tobytes().decode("utf-8", "replace").partition("\n")
        where = f"rank {r} of {self.size}"
        err = _mark(_rebuild(name, f"{where}: {msg}" if not msg.startswith(where) else msg))
        raise err from (exc if self.rank == r else None)

    @contextlib.contextmanager
    def together(self):
        """Run a block on every rank (no collective calls inside); if it fails anywhere, the
        first failing rank's error is raised everywhere."""
        try:
            yield
        except BaseException as e:
            if getattr(e, "_fastbp_collective", False):
                raise
            self.agree(e)
            raise                    # not reached: agree raises when this rank failed
        self.agree(None)

    def bcast_bytes(self, data):
        """Rank 0's bytes on every rank."""
        n = np.array([len(data) if self.root else 0], np.int64)
        self.comm.Bcast(n, root=0)
        buf = np.frombuffer(bytearray(data), np.uint8) if self.root else np.empty(int(n[0]), np.uint8)
        self.comm.Bcast(buf, root=0)
        return buf.tobytes()

    def local_ranks(self):
        """How many ranks of this communicator share this node."""
        local = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED)
        try:
            return local.Get_size()
        finally:
            local.Free()


class _Interrupted(Exception):
    pass


# ---- data ------------------------------------------------------------------------------------
def _share(n, rank, size):
    """Rows [lo, hi) of n that rank ``rank`` of ``size`` takes: contiguous, sizes differ by <= 1."""
    return (n * rank) // size, (n * (rank + 1)) // size


def _shared_features(model, X, name, group):
    """X as the kernels read it; this rank checks only its share of the rows for NaN and inf
    (the other ranks check the rest, and an error anywhere is raised everywhere).

    A C-contiguous array (or memmap) in the model's dtype is used in place, read only where
    checked and where minibatches need it; otherwise it is converted once, as ``fit`` does.
    """
    arr = _to_numeric_array(name, X, model.dtype)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] != model.sizes[0]:
        model._features(arr, name)          # the model's own message, raised before reading data
    lo, hi = _share(arr.shape[0], group.rank, group.size)
    as_finite(f"{name}[{lo}:{hi}]", arr[lo:hi], model.dtype)
    return np.ascontiguousarray(arr, dtype=model.dtype)


# ---- fit ---------------------------------------------------------------------------------------
def fit_distributed(model, X, y, comm, epochs=1, batch_size=32, optimizer="adam", shuffle=True,
                    validation_data=None, validation_split=0.0, sample_weight=None, class_weight=None,
                    callbacks=None, verbose=1, initial_epoch=0, on_nan="raise", resume_from=None):
    """Data-parallel ``model.fit`` over the ranks of ``comm``; called by ``MLP.fit(..., comm=comm)``.

    Every rank calls it with the same arguments and the whole dataset (arrays or memmaps).
    Arguments and returned History are as for ``MLP.fit`` (``batch_size`` is the global batch,
    split across ranks). The History also carries ``timing``: seconds this rank spent
    computing gradients, in Allreduce and in optimizer updates. With one rank, this is
    ``model.fit`` itself.
    """
    group = _Group(comm)
    if group.size == 1:
        return model.fit(X, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer, shuffle=shuffle,
                         validation_data=validation_data, validation_split=validation_split,
                         sample_weight=sample_weight, class_weight=class_weight, callbacks=callbacks,
                         verbose=verbose, initial_epoch=initial_epoch, on_nan=on_nan, resume_from=resume_from)
    try:
        run = _DataParallelFit(model, group)
        run.setup(X, y, epochs, batch_size, optimizer, shuffle, validation_data, validation_split,
                  sample_weight, class_weight, callbacks, verbose, initial_epoch, on_nan, resume_from)
        return run.train()
    except BaseException as e:
        if not getattr(e, "_fastbp_collective", False):
            # Only this rank saw the error, outside the checked places: the other ranks would
            # wait forever in their next collective call, so end them all.
            import traceback
            traceback.print_exc()
            print(f"fastbp: rank {group.rank} of {group.size} failed alone; aborting all ranks", file=sys.stderr)
            sys.stderr.flush()
            group.comm.Abort(1)
        raise


class _DataParallelFit:
    """The state of one distributed fit: validated data, buffers, optimizer, callbacks."""

    def __init__(self, model, group):
        self.model = model
        self.g = group
        self.timing = {"compute": 0.0, "allreduce": 0.0, "update": 0.0, "steps": 0}

    # -- setup: validate locally, agree, then adopt rank 0's state --
    def setup(self, X, y, epochs, batch_size, optimizer, shuffle, validation_data, validation_split,
              sample_weight, class_weight, callbacks, verbose, initial_epoch, on_nan, resume_from):
        g, model = self.g, self.model
        with g.together():
            epochs, batch_size, shuffle, initial_epoch, verbose, validation_split, opt = check_fit_arguments(
                epochs, batch_size, shuffle, initial_epoch, verbose, on_nan, validation_split, optimizer)
            Xa = _shared_features(model, X, "X", g)
            n = Xa.shape[0]
            Yf, yint = model._targets(y, n)
            sw = model._weights(sample_weight, n)
            if class_weight is not None:
                sw = model._apply_class_weight(class_weight, Yf, yint, sw)
            Xa, Yf, yint, sw, val = model._split_validation(
                Xa, Yf, yint, sw, validation_data, validation_split,
                features=lambda X, name: _shared_features(model, X, name, g))
            n = Xa.shape[0]
            if opt._states is not None:
                opt._buffers(model.params)    # raises now if the optimizer holds another model's state
            history = History()
            cbs = CallbackList(callbacks, model=model, history=history,
                               progress=ProgressBar(verbose, epochs, n) if verbose and g.root else None)
            start, callback_states = initial_epoch, []
            if resume_from is not None and g.root:
                start, callback_states = _io.restore_checkpoint(resume_from, model, opt, history, cbs.user)
        self.X, self.Yf, self.yint, self.sw, self.n, self.val = Xa, Yf, yint, sw, n, val
        self.epochs, self.batch, self.shuffle, self.on_nan = epochs, batch_size, shuffle, on_nan
        self.opt, self.history, self.cbs, self.callback_states = opt, history, cbs, callback_states

        # Every rank must run the same loop: compare with rank 0, then take its state.
        cfg = model.config()
        mine = {"model": {k: cfg[k] for k in SAME_CONFIG},
                "fit": {"epochs": epochs, "batch_size": batch_size, "shuffle": shuffle, "on_nan": on_nan,
                        "initial_epoch": initial_epoch, "validation_split": validation_split,
                        "resume_from": resume_from is not None, "optimizer": type(opt).__name__},
                "data": {"samples": n, "validation samples": 0 if val is None else val[0].shape[0],
                         "sample weights": bool(sw.size), "integer labels": bool(yint.size)}}
        root = None
        if g.root:
            root = dict(mine, start=start, rng=model._rng.bit_generator.state, iterations=opt.iterations,
                        history={"history": history.history, "epoch": history.epoch})
        root = json.loads(g.bcast_bytes(json.dumps(root).encode() if g.root else b""))
        with g.together():
            for part in ("model", "fit", "data"):
                for key, value in mine[part].items():
                    theirs = root[part][key]
                    if value != theirs:
                        raise ValueError(f"{key}: {value!r} on rank {g.rank} but {theirs!r} on rank 0; every rank "
                                         "must call fit with the same model, data and arguments")
            rng = np.random.default_rng()
            rng.bit_generator.state = root["rng"]
        model._rng.bit_generator.state = root["rng"]
        self.start = int(root["start"])
        opt.iterations = int(root["iterations"])
        if not g.root:
            history.history = {k: list(v) for k, v in root["history"]["history"].items()}
            history.epoch = list(root["history"]["epoch"])
        self._bcast_state()

        ranks_here = g.local_ranks()
        with g.together():
            nthreads = threads.get_num_threads()
            cores = os.cpu_count() or 1
            own = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
            if g.root and (ranks_here * nthreads > cores or nthreads > own):
                warnings.warn(f"{ranks_here} ranks on this node each run {nthreads} threads, on {cores} cores "
                              f"({own} for rank 0); set NUMBA_NUM_THREADS={max(1, min(own, cores // ranks_here))} "
                              "(or fastbp.set_num_threads) per rank to avoid oversubscription",
                              RuntimeWarning, stacklevel=4)
            L = model.layout
            self.P = L.size
            self.red = np.zeros(self.P + N_EXTRA, model.dtype)       # gradient, then the extra slots
            self.grads = self.red[:self.P]
            self.cap = max(1, -(-min(batch_size, n) // g.size))      # most rows a rank gets per step
            self.w = model._buffers(self.cap)
            self.maxparts = model._maxparts()

    def _bcast_state(self):
        """Rank 0's params and optimizer state on every rank."""
        comm = self.g.comm
        comm.Bcast(self.model.params, root=0)
        for s in self.opt._buffers(self.model.params):
            if s.size:
                comm.Bcast(s, root=0)

    # -- training --
    def train(self):
        g, model, opt, history, cbs = self.g, self.model, self.opt, self.history, self.cbs
        n, batch = self.n, self.batch
        model.optimizer = opt
        model.history = history
        model.stop_training = False
        model._user_callbacks = cbs.user          # what ModelCheckpoint saves the state of
        history.set_params(dict(epochs=self.epochs, steps=-(-n // batch), batch_size=batch, samples=n, ranks=g.size))
        history.timing = self.timing
        ctl = np.zeros(K.N_HYPER + 1)
        flag = np.zeros(2)
        began = False
        try:
            with g.together():
                if g.root:
                    cbs.on_train_begin()
                    for cb, state in self.callback_states:
                        cb._restore_state(state)
                    began = True
            with threads.single_threaded_blas(), DeferredSigint() as sigint:
                for epoch in range(self.start, self.epochs):
                    with g.together():
                        if g.root:
                            cbs.on_epoch_begin(epoch)
                            ctl[:K.N_HYPER] = opt.hyper()
                            ctl[K.N_HYPER] = opt.clip_norm or 0.0
                    g.comm.Bcast(ctl, root=0)      # a schedule on rank 0 may have changed lr
                    hyper, clip = ctl[:K.N_HYPER].copy(), float(ctl[K.N_HYPER])
                    if not g.root:
                        opt.lr, opt.clip_norm = float(hyper[K.H_LR]), clip or None
                    logs = self._epoch(epoch, hyper, clip, sigint)
                    if logs is None:                             # diverged with on_nan="stop"
                        break
                    if self.val is not None:
                        logs.update({"val_" + k: v for k, v in self._validate().items()})
                    with g.together():
                        if g.root:
                            cbs.on_epoch_end(epoch, logs)
                        else:
                            history.on_epoch_end(epoch, logs)
                    flag[0] = g.root and model.stop_training      # a callback on rank 0 stops everyone
                    flag[1] = sigint.hit                         # Ctrl-C on any rank between steps
                    g.comm.Allreduce(g.MPI.IN_PLACE, flag, op=g.MPI.MAX)
                    self._check_ranks_agree()
                    if flag[1]:
                        raise _Interrupted
                    if flag[0]:
                        model.stop_training = True
                        break
        except _Interrupted:
            history.interrupted = True
        except KeyboardInterrupt as e:
            # A second Ctrl-C inside a step or a callback, agreed by all ranks before any of
            # them changed state: as in single-process fit, return what was done.
            if not getattr(e, "_fastbp_collective", False):
                raise
            history.interrupted = True
        except BaseException:
            if began:                       # as single-process fit: on_train_end runs on errors too
                began = False
                cbs.on_train_end()
            raise
        with g.together():
            if began:
                cbs.on_train_end()
        g.comm.Bcast(model.params, root=0)  # callbacks on rank 0 may have restored other params
        return history

    def _epoch(self, epoch, hyper, clip, sigint):
        """One epoch of global minibatches; the logs, or None after divergence with on_nan="stop"."""
        g, model, opt = self.g, self.model, self.opt
        MPI = g.MPI
        n, batch, P, red, grads = self.n, self.batch, self.P, self.red, self.grads
        steps = -(-n // batch)
        perm = model._epoch_order(n, self.shuffle)
        s1, s2 = opt._buffers(model.params)
        snapshot = None if self.on_nan == "ignore" else (model.params.copy(), s1.copy(), s2.copy(), opt.iterations)
        steploss = np.zeros(steps)
        stepcorrect = np.zeros(steps)
        progress = self.cbs.progress if g.root else None
        shown = time.perf_counter()
        tm = self.timing
        for s in range(steps):
            r0 = s * batch
            m = min(n, r0 + batch) - r0
            lo, hi = _share(m, g.rank, g.size)
            t0 = time.perf_counter()
            exc = None
            try:
                total, correct = self._local_gradient(perm, r0 + lo, r0 + hi, m)
            except BaseException as e:      # reported through the Allreduce below, raised on all ranks
                exc, total, correct = e, 0.0, 0.0
            red[P + LOSS] = total
            red[P + CORRECT] = correct
            red[P + FAILED] = exc is not None
            red[P + INTERRUPTED] = sigint.hit
            t1 = time.perf_counter()
            g.comm.Allreduce(MPI.IN_PLACE, red, op=MPI.SUM)
            t2 = time.perf_counter()
            if red[P + FAILED] > 0:
                g.agree(exc)
            total = float(red[P + LOSS])
            steploss[s] = total
            stepcorrect[s] = red[P + CORRECT]
            if np.isfinite(total):
                opt.iterations += 1
                K.opt_update(model.params, grads, s1, s2, opt.code, hyper, opt.iterations, K.clip_scale(grads, clip),
                             self.maxparts)
            elif self.on_nan != "ignore":
                return self._diverged(epoch, s, snapshot)
            t3 = time.perf_counter()
            tm["compute"] += t1 - t0
            tm["allreduce"] += t2 - t1
            tm["update"] += t3 - t2
            tm["steps"] += 1
            if red[P + INTERRUPTED] > 0:    # every rank sees it at the same step
                raise _Interrupted
            if progress is not None and t3 - shown > PROGRESS_SECONDS:
                done = min(n, (s + 1) * batch)
                progress.update(done, steploss[:s + 1].sum() / done)
                shown = t3
        logs = {"loss": steploss.sum() / n}
        if model.is_classifier:
            logs["accuracy"] = stepcorrect.sum() / n
        if self.on_nan == "ignore":
            return logs
        if not np.isfinite(logs["loss"]):
            return self._diverged(epoch, steps - 1, snapshot)
        # As fit: a finite loss can still come with an update that overflowed.
        if not (np.isfinite(model.params).all() and np.isfinite(s1).all() and np.isfinite(s2).all()):
            return self._diverged(epoch, steps - 1, snapshot,
                                  reason="an update made the params or optimizer state NaN or inf")
        return logs

    def _local_gradient(self, perm, lo, hi, m):
        """This rank's rows perm[lo:hi] of a global batch of m: gradient (scaled to a mean over
        the m rows) into self.grads; returns (loss sum, correct count) of these rows."""
        ml = hi - lo
        grads = self.grads
        if ml == 0:
            grads[:] = 0
            return 0.0, 0.0
        model, w, L = self.model, self.w, self.model.layout
        ridx = w["ridx"]
        ridx[:ml] = perm[lo:hi]
        E.gather(w["acts"], w["aoff"][0], self.X, ridx, ml, self.maxparts)
        total, correct = N.forward_backward(ml, w["acts"], w["aoff"][0], model.params, grads, L.sizes_arr, L.woff,
                                            L.boff, w["acts"], w["aoff"], w["gbuf"], model._act, model._out,
                                            model._loss, self.Yf, self.yint, ridx, self.sw, w["rowloss"], w["iw"],
                                            w["fw"], self.maxparts)
        if ml != m:
            grads *= ml / m              # the kernel's mean is over ml rows; the step's is over m
        return total, correct

    def _diverged(self, epoch, step, snapshot, reason=None):
        """Every rank decided on the same reduced loss: restore, then raise or stop everywhere."""
        with warnings.catch_warnings():
            if not self.g.root:
                warnings.simplefilter("ignore")
            try:
                return self.model._diverged(epoch, step, snapshot, self.opt, self.on_nan, reason)
            except TrainingDiverged as e:
                raise _mark(e)

    def _validate(self):
        """Validation loss (and accuracy) over all ranks' shares of the validation rows."""
        g, model = self.g, self.model
        vX, vYf, vyint, vsw = self.val
        nv = vX.shape[0]
        lo, hi = _share(nv, g.rank, g.size)
        sums = np.zeros(3)
        exc = None
        try:
            if hi > lo:
                part = model._evaluate_arrays(vX[lo:hi], _rows(vYf, lo, hi), _rows(vyint, lo, hi), _rows(vsw, lo, hi))
                sums[0] = part["loss"] * (hi - lo)
                sums[1] = part.get("accuracy", 0.0) * (hi - lo)     # binary outputs count 1/k each
        except BaseException as e:
            exc = e
        sums[2] = exc is not None
        g.comm.Allreduce(g.MPI.IN_PLACE, sums, op=g.MPI.SUM)
        if sums[2] > 0:
            g.agree(exc)
        logs = {"loss": sums[0] / nv}
        if model.is_classifier:
            logs["accuracy"] = sums[1] / nv
        return logs

    def _check_ranks_agree(self):
        """Once per epoch: are params and optimizer state still bit-identical on every rank?

        They are when Allreduce gives every rank the same bits, which MPI recommends but does
        not promise; if some rank drifted, rank 0's state is broadcast again.
        """
        g, model = self.g, self.model
        crc = zlib.crc32(model.params.view(np.uint8))
        for s in self.opt._buffers(model.params):
            crc = zlib.crc32(s.view(np.uint8), crc)
        every = np.empty(g.size, np.int64)
        g.comm.Allgather(np.array([crc], np.int64), every)
        if (every != every[0]).any():
            if g.root:
                warnings.warn("params differed between ranks after an epoch (this MPI's Allreduce does not give "
                              "every rank the same bits); rank 0's were broadcast again", RuntimeWarning, stacklevel=4)
            self._bcast_state()
