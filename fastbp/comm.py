"""The communicator the training loop talks to: one process (``LocalComm``) or MPI ranks (``MPIComm``).

The training loop (fastbp.training) is written once against this small interface. Locally every
collective is a no-op, so a single-process fit pays nothing for it; under MPI each is one
mpi4py buffer call (never pickle). Batch norm's per-feature sums (kernels.syncbn) and metric
gathers go through ``allreduce_sum`` too.

Interface (both classes):

    rank, size, is_root        this process's rank, the number of ranks, rank == 0
    share(n) -> (lo, hi)       the contiguous rows of n that this rank takes (sizes differ by <= 1)
    allreduce_sum(buf)         in place: the elementwise sum over ranks
    allreduce_max(buf)         in place: the elementwise maximum over ranks
    bcast(buf)                 in place: rank 0's values
    bcast_bytes(data)          rank 0's bytes
    same_everywhere(arrays)    whether every rank holds the same bits in ``arrays``
    agree(exc)                 collective: returns if no rank failed (exc None everywhere), else
                               raises the lowest failing rank's error on every rank
    together()                 context manager: a block without collective calls inside; if it
                               fails on any rank, the first failing rank's error is raised on all
    guard()                    context manager around a whole collective operation: an error that
                               only this rank saw (outside ``agree``/``together``) would leave the
                               others waiting forever, so MPIComm aborts every rank
    local_ranks()              how many ranks share this node
    node_first(fn)             collective: fn(first) on every rank, first True on one rank of each
                               node, which runs it before the node's other ranks; they wait for it
                               asleep, so what it compiles into numba's cache they then load (and it
                               has the node's CPUs to itself); an error on any rank is raised on all
"""
import builtins
import contextlib
import sys
import time
import zlib

import numpy as np

from .errors import TrainingDiverged
from .validation import _describe

# Error messages sent between ranks are cut to this many bytes.
MAX_ERROR_BYTES = 1 << 16
# How often a rank waiting in node_first looks whether its node's first rank is done.
NODE_WAIT_SECONDS = 0.01


def mark_collective(exc):
    """Flag an exception as raised on every rank (no rank is left waiting)."""
    exc._fastbp_collective = True
    return exc


def is_collective(exc):
    """Whether ``exc`` was raised on every rank (see ``mark_collective``)."""
    return getattr(exc, "_fastbp_collective", False)


class LocalComm:
    """One process: every collective is a no-op."""

    rank = 0
    size = 1
    is_root = True

    def share(self, n):
        return 0, n

    def allreduce_sum(self, buf):
        pass

    def allreduce_max(self, buf):
        pass

    def bcast(self, buf):
        pass

    def bcast_bytes(self, data):
        return data

    def same_everywhere(self, arrays):
        return True

    def agree(self, exc):
        if exc is not None:
            raise exc

    @contextlib.contextmanager
    def together(self):
        yield

    @contextlib.contextmanager
    def guard(self):
        yield

    def local_ranks(self):
        return 1

    def node_first(self, fn):
        fn(True)


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


def import_mpi():
    """mpi4py's MPI module, or an ImportError saying how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("data-parallel training needs mpi4py and an MPI library: "
                          "pip install 'fastbp[mpi]'") from e
    return MPI


class MPIComm:
    """The ranks of an mpi4py intracommunicator."""

    def __init__(self, comm):
        MPI = import_mpi()
        if not isinstance(comm, MPI.Intracomm):
            raise TypeError(f"comm: expected an mpi4py intracommunicator such as MPI.COMM_WORLD, got {_describe(comm)}")
        self.MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.is_root = self.rank == 0

    def share(self, n):
        return (n * self.rank) // self.size, (n * (self.rank + 1)) // self.size

    def allreduce_sum(self, buf):
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)

    def allreduce_max(self, buf):
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.MAX)

    def bcast(self, buf):
        self.comm.Bcast(buf, root=0)

    def bcast_bytes(self, data):
        n = np.array([len(data) if self.is_root else 0], np.int64)
        self.comm.Bcast(n, root=0)
        buf = np.frombuffer(bytearray(data), np.uint8) if self.is_root else np.empty(int(n[0]), np.uint8)
        self.comm.Bcast(buf, root=0)
        return buf.tobytes()

    def same_everywhere(self, arrays):
        crc = 0
        for a in arrays:
            crc = zlib.crc32(np.ascontiguousarray(a).view(np.uint8), crc)
        every = np.empty(self.size, np.int64)
        self.comm.Allgather(np.array([crc], np.int64), every)
        return bool((every == every[0]).all())

    def agree(self, exc):
        # The error travels as bytes (type name and message) with buffer-based calls, never pickled.
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
        err = mark_collective(_rebuild(name, f"{where}: {msg}" if not msg.startswith(where) else msg))
        raise err from (exc if self.rank == r else None)

    @contextlib.contextmanager
    def together(self):
        try:
            yield
        except BaseException as e:
            if is_collective(e):
                raise
            self.agree(e)
            raise                    # not reached: agree raises when this rank failed
        self.agree(None)

    @contextlib.contextmanager
    def guard(self):
        try:
            yield
        except BaseException as e:
            if not is_collective(e):
                import traceback
                # one write rather than one per line, so the abort cannot cut the report short
                sys.stderr.write(traceback.format_exc()
                                 + f"fastbp: rank {self.rank} of {self.size} failed alone; aborting all ranks\n")
                sys.stderr.flush()
                self.comm.Abort(1)
            raise

    def local_ranks(self):
        local = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED)
        try:
            return local.Get_size()
        finally:
            local.Free()

    def node_first(self, fn):
        local = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED)
        try:
            first = local.Get_rank() == 0
            exc = None
            if first:
                try:
                    fn(True)
                except BaseException as e:
                    exc = e
            # the node's first rank tells the others whether it succeeded; they wait asleep (an MPI
            # collective would keep a CPU spinning while it compiles)
            failed = np.array([exc is not None], np.int64)
            request = local.Ibcast(failed, root=0)
            while not request.Test():
                time.sleep(NODE_WAIT_SECONDS)
            if not first and not failed[0]:
                try:
                    fn(False)
                except BaseException as e:
                    exc = e
        finally:
            local.Free()
        self.agree(exc)


def as_communicator(comm):
    """The communicator for fit's ``comm`` argument: None -> LocalComm; an mpi4py
    intracommunicator -> MPIComm (LocalComm if it has one rank); a LocalComm/MPIComm as it is."""
    if comm is None or isinstance(comm, (LocalComm, MPIComm)):
        return comm or LocalComm()
    wrapped = MPIComm(comm)
    return wrapped if wrapped.size > 1 else LocalComm()
