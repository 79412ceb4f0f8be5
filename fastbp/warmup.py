"""Compile every kernel ahead of use: ``fastbp compile`` and ``fastbp.compile_kernels()``.

numba compiles a kernel the first time it runs and keeps it in its on-disk cache, so a first
fit from an empty cache spends seconds compiling (bench_compile in benchmarks/ tracks how
many). This runs every kernel entry point once per dtype, in every variant a run can take (dense
and scipy sparse X), so that the cache holds them all: for a container image or a shared
install, where the first user should not pay for compilation. Everything else (activations, losses, optimizers, layer
sizes, batch sizes) reaches the same compiled kernels.

numba compiles one process's kernels one at a time, so with a second CPU the work is split in
two chains of nets (``_CHAINS``), each run by a worker process at once; this process then runs
all of them itself, which only loads the kernels from the cache (and compiles whatever a worker
could not, a read-only cache for one). Where the cache holds everything already, no worker
starts.
"""
import os
import subprocess
import sys
import time

import numpy as np
from numba.core import event

from . import data as D
from . import threads
from .kernels import syncbn
from .kernels.jit import COMPILE_ELSEWHERE
from .model import MLP
from .optim import Adam

DTYPES = ("float32", "float64")
# (sizes, rows, batch size): the feature-major kernels of small nets; the batch-major ones with
# every product serial (no parallel kernel compiled, see kernels.parts); the batch-major ones
# split into parallel parts (products over a million multiply-adds, more params than
# PARALLEL_MIN_PARAMS, enough rows for parallel inference).
_NETS = (([4, 8, 3], 64, 32, {}), ([64, 128, 10], 64, 32, {}), ([64, 1024, 10], 4096, 256, {}),
         # the kernels with norm, dropout, penalties and the newer activations (one variant)
         ([16, 32, 32, 10], 64, 32, dict(activation=["gelu", "relu"], norm=["batch", "layer"], dropout=0.1, l2=1e-4)))


# The two chains of (net, X sparse) the workers run: the featured net's dense kernels first (its
# layer kernels take longest), while the other chain gets to its sparse kernels only after the
# plain nets, by when the kernels the two share (its activation, norm and update kernels) are
# in the cache.
_CHAINS = (((3, False), (0, False), (0, True)),
           ((1, False), (1, True), (2, False), (2, True), (3, True)))


def compile_kernels(dtypes=DTYPES):
    """Compile, or load from numba's cache, every kernel ``MLP`` uses for each of ``dtypes``;
    returns {dtype: seconds it took}."""
    if isinstance(dtypes, str):
        dtypes = (dtypes,)
    try:
        dtypes = tuple(dtypes)
    except TypeError:
        raise TypeError(f"dtypes: expected a dtype name or a sequence of names out of {list(DTYPES)}, "
                        f"got {type(dtypes).__name__}") from None
    bad = [d for d in dtypes if d not in DTYPES]
    if bad or not dtypes:
        raise ValueError(f"dtypes: expected some of {list(DTYPES)}, got {list(dtypes)}")
    seconds = {}
    for dtype in dtypes:
        t0 = time.perf_counter()
        _compile(dtype)
        seconds[dtype] = time.perf_counter() - t0
    return seconds


def _compile(dtype):
    """Every kernel of _CHAINS for ``dtype`` ready here: with a second CPU, what the cache lacks
    compiled by workers first."""
    if threads.available_cpus() > 1:
        if _all_cached(dtype):          # which loaded them all on the way
            return
        _in_workers(dtype)
    for chain in _CHAINS:
        run_chain(dtype, chain)


class _Cold(BaseException):
    """Raised where a kernel would start compiling (a BaseException: nothing on the way turns it
    into another error)."""


class _StopAtCompile(event.Listener):
    def on_start(self, ev):
        raise _Cold

    def on_end(self, ev):
        pass


def _all_cached(dtype):
    """Whether every kernel of _CHAINS loads from the cache: runs them (which loads them) until a
    first kernel would compile here or in compile_apart's children, and stops it before it starts."""
    stop = _StopAtCompile()
    try:
        with event.install_listener("numba:compile", stop), event.install_listener(COMPILE_ELSEWHERE, stop):
            for chain in _CHAINS:
                run_chain(dtype, chain)
    except _Cold:
        return False
    return True


def _in_workers(dtype):
    """Run each of _CHAINS in a new Python process at once, silently, and wait for them (a worker
    that fails leaves its kernels to the caller's own run)."""
    # the worker imports this fastbp: not one in the current folder (where python -c looks first),
    # and from where this process found it if the worker's path would not look there
    parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # a worker ends when its chain is done: its compiling can leave the garbage uncollected (see
    # kernels.jit._compile_and_exit)
    code = (f"import gc, sys\n"
            f"gc.disable()\n"
            f"sys.path = [p for p in sys.path if p != '']\n"
            f"if {parent!r} not in sys.path:\n"
            f"    sys.path.insert(0, {parent!r})\n"
            f"from fastbp import warmup\n"
            f"from fastbp.kernels import epoch\n"
            f"epoch.LOOP_AT_ONCE = False\n"
            f"warmup.run_chain({dtype!r}, warmup._CHAINS[int(sys.argv[1])])\n")
    procs = []
    try:
        for i in range(len(_CHAINS)):
            try:
                procs.append(subprocess.Popen([sys.executable, "-c", code, str(i)], stdin=subprocess.DEVNULL,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            except OSError:     # no interpreter to start (an embedded Python): this process compiles
                break
        for p in procs:
            p.wait()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def run_chain(dtype, chain):
    """Run every kernel entry point of the nets in ``chain`` ((index into _NETS, X sparse) pairs)."""
    for net, sparse in chain:
        _run_net(dtype, net, sparse)


def _run_net(dtype, net, sparse):
    """Fit, predict, evaluate, loss_and_grad and a train step of _NETS[net] on dense or CSR X
    (layer 0 then runs over the stored entries: the kernels taking ``sparse``), and with batch
    norm an MPI rank's step (kernels.syncbn)."""
    import scipy.sparse as sp
    sizes, rows, batch, extra = _NETS[net]
    rng = np.random.default_rng(net)
    X = rng.standard_normal((rows, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], rows)
    if sparse:
        X = sp.csr_matrix(X * (rng.random(X.shape) < 0.2))
    model, opt = MLP(sizes, dtype=dtype, seed=0, **extra), Adam()
    model.fit(X, y, epochs=1, batch_size=batch, optimizer=opt, validation_split=0.25, verbose=0)
    model.predict(X)
    model.evaluate(X, y)
    model.loss_and_grad(X[:16], y[:16])
    if not sparse:
        model.train_step(X[:16], y[:16], opt)
    if model.buffers.size:
        cap = batch // 2
        ws = model.workspace(cap, sparse)
        syncbn.load(ws.grads, model.params, model.net, ws, D.prepare(model, X, y, None), model.kernel_parts(cap))
