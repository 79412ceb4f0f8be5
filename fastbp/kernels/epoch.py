"""The order of an epoch's rows, and the entry points Python calls to run batches.

`run_batches` (network.py) runs minibatches [first, last) of an epoch (gather the shuffled
rows, forward, loss, backward, optimizer update) with no Python in between, no allocation and
no copy of the parameter buffer; Python calls it once per epoch, or per chunk of steps so that
Ctrl-C and progress bars are seen on long epochs. Its modes also give one batch's gradient,
evaluation and prediction. `run_batches_small` (small.py) does the same for small networks with
serial feature-major kernels only: training a small net never compiles the parallel ones
(compile time is a user cost on a first run).
"""
import numpy as np
from numba import typeof

from .args import EVALUATE, GRADIENT, PREDICT, TRAIN, TRAIN_GRADIENT, Opt, SparseRows, plain_net
from .jit import compile_apart, kernel, load_cached
from .network import FNS, addresses, callees, run_batches
from .optimizers import variant
from .small import run_batches_small

__all__ = ["EVALUATE", "GRADIENT", "PREDICT", "TRAIN", "TRAIN_GRADIENT", "run", "run_batches", "run_batches_small", "shuffled_order"]


@kernel
def shuffled_order(order, seed):
    """order[:] <- a permutation of 0..n-1: Fisher-Yates driven by splitmix64 from ``seed``.

    A tenth of numpy's Generator.permutation time at n = 8192, which matters when an epoch of
    a small net takes under a millisecond; the seed itself comes from the model's numpy RNG.
    """
    n = order.shape[0]
    for i in range(n):
        order[i] = i
    s = np.uint64(seed)
    for i in range(n - 1, 0, -1):
        s += np.uint64(0x9E3779B97F4A7C15)
        z = s
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
        # j uniform in [0, i]: the top 32 bits of z scaled by i + 1 (Lemire), a multiply where a
        # modulo would cost a division per element; bias below (i + 1) / 2**32
        if i < 0xFFFFFFFF:
            j = np.int64(((z >> np.uint64(32)) * np.uint64(i + 1)) >> np.uint64(32))
        else:
            j = np.int64(z % np.uint64(i + 1))
        order[i], order[j] = order[j], order[i]


# ---- calling them from Python ---------------------------------------------------------------------
_EMPTY = {}


def _empty(dtype, k):
    """Stand-ins of the kernels' argument types for arguments a mode does not use."""
    key = (np.dtype(dtype).str, k)
    if key not in _EMPTY:
        X = np.zeros((0, 0), dtype)
        X.flags.writeable = False        # the type of every dense X (data.frozen)
        _EMPTY[key] = dict(out=np.zeros((0, k), dtype), steps=np.zeros(0), order=np.zeros(0, np.int64),
                           grads=np.zeros(0, dtype),
                           opt=Opt(-1, np.zeros(1), np.zeros((0, 0), dtype), np.zeros(1, np.int64), 0.0), X=X)
    return _EMPTY[key]


def run(mode, params, net, ws, data, *, grads=None, opt=None, out=None, order=None, first=0, last=0, batch=1,
        step_loss=None, step_correct=None, maxparts=None):
    """run_batches or run_batches_small (as the workspace ``ws`` says) with the arguments the
    mode does not use filled in; returns (batches run, loss sum, correct count). Sparse data
    (data.X a SparseRows) goes to the kernels' ``sparse`` argument, with an empty X."""
    kernel, args = _call(mode, params, net, ws, data, grads, opt, out, order, first, last, batch, step_loss,
                         step_correct, maxparts)
    return kernel(*args)


# Whether compile_ahead compiles run_batches at the same time as the kernels it calls (three
# processes at once), or after them, loading them (two, then one): fastbp compile's workers,
# which run at once already, take the second (warmup.py).
LOOP_AT_ONCE = True


def compile_ahead(mode, params, net, ws, data, *, opt=None, maxparts=None, loop=True):
    """Before the first run(mode, ...) of a workspace: compile what run_batches calls by address
    in two child processes and run_batches itself in a third, all at once, or the third after
    the two (LOOP_AT_ONCE); see jit.compile_apart.
    ``loop=False``: only what run_batches calls (the layer, loss and optimizer kernels, which an
    MPI step with batch norm calls itself, kernels.syncbn). Small networks' kernels are one chain
    of callers: run_batches_small compiles with them in one child (not here, for the memory, and
    see jit._compile_and_exit)."""
    kernel, args = _call(mode, params, net, ws, data, None, opt, None, None, 0, 0, 1, None, None, maxparts,
                         with_fns=False)
    if kernel is not run_batches:
        sig = [typeof(a) for a in args]
        if loop and not load_cached(kernel, sig):
            compile_apart([], then=[(kernel, sig)])
        return
    if not loop:
        compile_apart([[(k, sig) for k, sig in group if not load_cached(k, sig)] for group in callees(args)])
        return
    sig = [typeof(a) for a in args] + [FNS]
    if not load_cached(kernel, sig):
        if LOOP_AT_ONCE:
            compile_apart(list(callees(args)) + [[(kernel, sig)]])
        else:
            compile_apart(callees(args), then=[(kernel, sig)])


def _call(mode, params, net, ws, data, grads, opt, out, order, first, last, batch, step_loss, step_correct,
          maxparts, with_fns=True):
    """The kernel run() calls and its arguments (``with_fns=False``: run_batches' without its
    last, ``fns``, the addresses of its callees, whose making loads them)."""
    # a plain network's kernels stay plain unless its optimizer is newer or runs a schedule
    extras = ws.extras if opt is None else variant(opt, ws.extras is None)
    work = ws.arrays
    if extras is None:
        net, work = plain_net(net), ws.plain_arrays
    e = _empty(params.dtype, int(net.sizes[-1]))
    sparse = None
    if isinstance(data.X, SparseRows):
        sparse = data.X.kernel_args(ws)
        data = data._replace(X=e["X"])
    args = (mode, e["out"] if out is None else out, e["steps"] if step_loss is None else step_loss,
            e["steps"] if step_correct is None else step_correct, params,
            (e["grads"] if mode in (EVALUATE, PREDICT) else ws.grads) if grads is None else grads,
            e["opt"] if opt is None else opt, net, data, e["order"] if order is None else order, first, last, batch,
            work)
    if ws.small:
        return run_batches_small, args + (extras, sparse)
    args += (maxparts, extras, sparse)
    return run_batches, (args + (addresses(args),) if with_fns else args)
