"""The argument groups the kernels take: namedtuples that numba passes as structs.

Grouping keeps every kernel signature short and in llm.c's order (outputs, inputs, sizes). It
costs no specialization: each field has one type per dtype, so one compiled kernel still serves
every network shape, activation, loss and optimizer.

    Net   the network: widths, where each W and b lives in the flat params, activation and loss codes
    Data  the training (or evaluation) data as the kernels read it
    Opt   an optimizer: its code, hyperparameters, state buffers and step count
    Work  the work buffers of one model for batches of up to ``cap`` rows (see ``Workspace``)
"""
from collections import namedtuple

import numpy as np

from .norm import LAYER_NORM, PART_MOMENTS

# What network.run_batches and small.run_batches_small do with their batches.
# TRAIN_GRADIENT is the gradient of a training step without its update (MPI updates after the
# Allreduce): dropout on and batch-norm running statistics updated, as in TRAIN, by the batch's own
# statistics (an MPI fit with batch norm takes kernels.syncbn instead: the global minibatch's).
TRAIN, GRADIENT, EVALUATE, PREDICT, TRAIN_GRADIENT = 0, 1, 2, 3, 4

Net = namedtuple("Net", ["sizes", "woff", "boff", "act", "loss", "norm", "goff", "roff", "rate", "full", "stats",
                         "updates", "key", "l1", "l2", "huber_delta", "smoothing"])
Net.__doc__ = """The network as the kernels see it (L layers).

sizes     (L+1,) int64  widths: input, hidden..., output
woff      (L,) int64    offset of W_l (sizes[l], sizes[l+1]), row-major, in the flat params
boff      (L,) int64    offset of b_l (sizes[l+1],) in the flat params; -1 without bias
act       (L,) int64    activation code of each layer's output (the last is the output activation)
loss      int           loss code
norm      (L,) int64    normalization code of each layer (_layout: NO_NORM, LAYER_NORM, BATCH_NORM)
goff      (L,) int64    offset of gamma_l (then beta_l) in the flat params; -1 without norm
roff      (L,) int64    offset of the running mean (then variance) in ``stats``; -1 without batch norm
rate      (L,) float64  dropout rate after each layer (0: none; always 0 for the output layer)
full      (L,) int64    1 where a hidden layer keeps its activation's input (norm, dropout, or an
                        activation whose derivative needs its input), 0 where the derivative is
                        taken from the output alone (the plain layers of old)
stats     (n_stats,)    the running statistics of batch norm (model.buffers)
updates   (1,) int64    the model's lifetime update count; keys the dropout masks
key       uint64        the model's dropout key
l1, l2    float         penalties on every W
huber_delta, smoothing  float  the huber loss's delta; cross-entropy's label smoothing
"""



def make_net(sizes, woff, boff, act, loss, *, norm=None, goff=None, roff=None, rate=None, full=None, stats=None,
             updates=None, key=0, l1=0.0, l2=0.0, huber_delta=1.0, smoothing=0.0):
    """A Net; what is not given is the plain network's (no norm, no dropout, no penalty).
    ``stats`` defaults to an empty array of the dtype float64."""
    L = len(sizes) - 1
    none = np.full(L, -1, np.int64)
    return Net(np.asarray(sizes, np.int64), np.asarray(woff, np.int64), np.asarray(boff, np.int64),
               np.asarray(act, np.int64), int(loss),
               np.zeros(L, np.int64) if norm is None else np.asarray(norm, np.int64),
               none if goff is None else np.asarray(goff, np.int64), none if roff is None else np.asarray(roff, np.int64),
               np.zeros(L) if rate is None else np.asarray(rate, np.float64),
               np.zeros(L, np.int64) if full is None else np.asarray(full, np.int64),
               np.zeros(0) if stats is None else stats, np.zeros(1, np.int64) if updates is None else updates,
               np.uint64(key), float(l1), float(l2), float(huber_delta), float(smoothing))


PlainNet = namedtuple("PlainNet", ["sizes", "woff", "boff", "act", "loss", "updates"])
PlainNet.__doc__ = """The fields of a Net a plain network's kernels read (``extras`` None, see dense.py):
every field is a kernel argument, so the shorter struct is shorter code at every call."""


def plain_net(net):
    """The PlainNet of a Net (the same arrays)."""
    return PlainNet(*(getattr(net, f) for f in PlainNet._fields))


Data = namedtuple("Data", ["X", "targets", "labels", "weights"])
Data.__doc__ = """Rows the kernels read by index (read-only arrays; an unused one is empty).

X        (n, sizes[0]) features (a SparseRows on the Python side for sparse input; the kernels
         then get an empty X and the rows in their ``sparse`` argument)
targets  (n, k) float targets, or (0, 0)
labels   (n,) int64 class labels (cross-entropy), or (0,)
weights  (n,) per-sample weights, or (0,)
"""

Sparse = namedtuple("Sparse", ["indptr", "indices", "values", "tstart", "trows", "tvals"])
Sparse.__doc__ = """The rows of a CSR matrix as the first layer's sparse kernels read them, and room for a
batch's transpose (the weight gradient's input, see dense.sparse_transpose).

indptr   (n+1,) int64  row r's entries are positions indptr[r] .. indptr[r+1]-1 (need not start at 0)
indices  (nnz,) int32  their feature (column) numbers, sorted and unique within a row
values   (nnz,)        their values, in the model's dtype
tstart   (s[0]+1,) int64        feature c's entries of the batch are tstart[c] .. tstart[c+1]-1 of
trows    (cap * max_row,) int64 trows (their batch row) and tvals (their value), in batch-row order
tvals    (cap * max_row,)
"""


class SparseRows:
    """Rows of a checked CSR matrix where ``Data.X`` holds an array for dense input.

    Python code sees ``shape``, ``ndim``, ``size`` and row slices ``X[lo:hi]`` (views, no copy)
    as for an array; ``epoch.run`` hands the kernels ``kernel_args`` (a Sparse) and an empty X.
    """

    ndim = 2

    def __init__(self, indptr, indices, values, n_cols, max_row):
        self.indptr, self.indices, self.values, self.n_cols = indptr, indices, values, n_cols
        self.max_row = max_row       # the most stored entries of a row (of the whole matrix, for a slice)

    @property
    def shape(self):
        return (self.indptr.shape[0] - 1, self.n_cols)

    @property
    def size(self):
        return self.shape[0] * self.n_cols

    @property
    def dtype(self):
        return self.values.dtype

    def __getitem__(self, rows):
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise TypeError("SparseRows: only row slices lo:hi are supported")
        lo, hi, _ = rows.indices(self.shape[0])
        return SparseRows(self.indptr[lo:max(lo, hi) + 1], self.indices, self.values, self.n_cols, self.max_row)

    def kernel_args(self, ws):
        """The Sparse the kernels take, with the transpose buffers of the Workspace ``ws``."""
        return Sparse(self.indptr, self.indices, self.values, *ws.transpose_buffers(self.n_cols, self.max_row))


# Calls that never update (or predate per-tensor rules and schedules) may leave out segments
# and sched: one tensor (a boundary past N counts as N), and the constant rate hyper[H_LR].
# The kernels only read these arrays.
Opt = namedtuple("Opt", ["code", "hyper", "state", "step", "clip", "segments", "sched"],
                 defaults=(np.array([0, np.iinfo(np.int64).max], np.int64), np.zeros(1)))
Opt.__doc__ = """An optimizer as the kernels see it (see kernels.optimizers).

code      int                  optimizer code
hyper     (N_HYPER,) float64   hyperparameters
state     (n_states, N)        state buffers in the params layout (velocity; moments; ...)
step      (1,) int64           updates applied so far; the kernels increment it
clip      float                global-norm clipping threshold, 0 for none
segments  (T+1,) int64         [0, end_0, ..., N]: where each parameter tensor (W, b, gamma,
                               beta) ends in the flat params (boundaries past N count as N)
sched     float64              the learning-rate schedule, [0] for the constant hyper[H_LR]
                               (see kernels.schedules)
"""

Work = namedtuple("Work", ["acts", "acts_off", "deltas", "row_loss", "rows", "blas_int", "blas_float",
                           "loss_scratch", "fm_acts", "fm_row", "fm_deltas", "pre", "pre_off", "xhat_off",
                           "nstat", "nstat_off", "pen"])
Work.__doc__ = """Work buffers for batches of up to cap rows (allocated once per model and batch size).

Batch-major kernels (network.py):
acts          flat; A_l (cap, sizes[l]) at acts_off[l]: A_0 the input rows (no room for sparse
              input, which reads its CSR rows), hidden A_l the post-activations, A_L the logits,
              then the predictions
acts_off      (L+2,) int64 offsets into acts
deltas        flat; two (cap, max width) blocks of dL/dZ, used in turn by the backward pass
row_loss      (cap,) float64 each batch row's weighted loss
rows          (cap,) int64 the data row of each batch row
blas_int      (parts, 8) int32 and blas_float (parts, 2): per-part scratch for BLAS's
blas_float    by-reference arguments (see blas.py)
loss_scratch  room for the output layer's loss kernels on a batch-major copy (small nets)
Feature-major kernels for small nets (small.py), the same memory seen as 2-D:
fm_acts       (sum of sizes, cap): layer l is rows fm_row[l] .. fm_row[l] + sizes[l]
fm_row        (L+2,) int64
fm_deltas     (2 * max width, cap): two delta blocks used in turn
Hidden layers with Net.full (batch-major only):
pre           flat; Y_l (cap, sizes[l+1]) at pre_off[l]: the activation's input (-1: not full),
              after a training forward pass its derivative there; with norm also Xhat_l, the
              normalized pre-activation, at xhat_off[l]
nstat         float64; at nstat_off[l] a norm layer's means then its 1/std (per row for layer
              norm, per feature for batch norm); batch norm's then room for every part, where
              each row part of a step keeps its sums over its rows (PART_MOMENTS per feature,
              dense.part_slot)
pen           float64 (sum of sizes[:-1],): the l1/l2 penalty of each row of every W
"""


PlainWork = namedtuple("PlainWork", Work._fields[:Work._fields.index("pre")])
PlainWork.__doc__ = """The fields of a Work a plain network's kernels read (as PlainNet)."""


def plain_work(work):
    """The PlainWork of a Work (the same arrays)."""
    return PlainWork(*work[:len(PlainWork._fields)])


class Workspace:
    """The work buffers of one model for batches of up to ``cap`` rows, allocated once and kept.

    Attributes
    ----------
    cap : int
        The most rows a batch may have.
    small : bool
        Whether batches of this size take the serial feature-major kernels (small.py) rather
        than the batch-major BLAS ones (network.py).
    extras : None or int
        The batch-major kernels' ``extras`` argument: None for a plain network (see dense.py).
    arrays : Work
        The buffers the kernels take.
    plain_arrays : PlainWork
        The same buffers, those the kernels of a plain network read.
    grads : ndarray
        A flat gradient buffer in the params layout (allocated on first use: a workspace that
        only predicts never needs one).
    steps_per_second : float or None
        How fast training steps of this size ran last time (sizes the next chunks of minibatches).
    thread_rates : dict
        Steps and seconds run by thread count while other processes kept CPUs busy, and when
        to probe the slower count next (threads.LoadMonitor).
    loaded : set
        Which kinds of fit (fastbp.training) and of calls outside fit (MLP._compile_ahead)
        have loaded their kernels for this workspace.
    """

    def __init__(self, net, n_params, cap, dtype, small, parts, plain=True, sparse=False):
        self.cap = cap
        self.small = small
        self.extras = None if plain else np.int64(1)
        # sparse input on the batch-major kernels never gathers its rows into A_0
        self.arrays = workspace_arrays(net, cap, dtype, parts, input_rows=small or not sparse)
        self.plain_arrays = plain_work(self.arrays)
        self._grads, self._n_params, self._dtype = None, n_params, dtype
        self.steps_per_second = None
        self.thread_rates = {}
        self.loaded = set()
        self._transpose = None

    @property
    def grads(self):
        if self._grads is None:
            self._grads = np.zeros(self._n_params, self._dtype)
        return self._grads

    def transpose_buffers(self, n_cols, max_row):
        """(tstart, trows, tvals) of args.Sparse for batches of CSR rows with up to ``max_row``
        stored entries each (allocated on first use, grown when a matrix needs more)."""
        t = self._transpose
        if t is None or t[0].shape[0] != n_cols + 1 or t[1].shape[0] < self.cap * max_row:
            size = self.cap * max(max_row, 1)
            t = self._transpose = (np.zeros(n_cols + 1, np.int64), np.zeros(size, np.int64),
                                   np.zeros(size, self._dtype))
        return t


def workspace_arrays(net, cap, dtype, parts, input_rows=True):
    """A Work for batches of up to ``cap`` rows of the network ``net`` (a Net), with BLAS
    scratch for ``parts`` parallel parts. ``input_rows=False``: no room for A_0 (batch-major
    kernels on sparse input, which read the CSR rows instead; then no feature-major views)."""
    sizes = [int(s) for s in net.sizes]
    L = len(sizes) - 1
    pre_off, xhat_off, nstat_off = np.full(L, -1, np.int64), np.full(L, -1, np.int64), np.full(L, -1, np.int64)
    pre_size = nstat_size = 0
    for l in range(L):
        if net.full[l]:
            pre_off[l] = pre_size
            pre_size += cap * sizes[l + 1]
        if net.norm[l]:
            xhat_off[l] = pre_size
            pre_size += cap * sizes[l + 1]
            nstat_off[l] = nstat_size
            # layer norm: per row; batch norm: per feature, and PART_MOMENTS per feature for each part
            nstat_size += 2 * cap if net.norm[l] == LAYER_NORM else (2 + PART_MOMENTS * parts) * sizes[l + 1]
    acts_off = np.concatenate([[0], np.cumsum([cap * s for s in [sizes[0] * input_rows] + sizes[1:]])]).astype(np.int64)
    widest = max(sizes[1:])
    acts = np.empty(int(acts_off[-1]), dtype)
    deltas = np.empty(2 * cap * widest, dtype)
    return Work(acts=acts, acts_off=acts_off, deltas=deltas, row_loss=np.empty(cap),
                rows=np.empty(cap, np.int64), blas_int=np.zeros((parts, 8), np.int32),
                blas_float=np.zeros((parts, 2), dtype),
                loss_scratch=np.empty(max(2 * cap * sizes[-1], 3 * cap), dtype),
                fm_acts=acts.reshape(sum(sizes), cap) if input_rows else acts[:0].reshape(0, cap),
                fm_row=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
                fm_deltas=deltas.reshape(2 * widest, cap), pre=np.empty(pre_size, dtype), pre_off=pre_off,
                xhat_off=xhat_off, nstat=np.empty(nstat_size), nstat_off=nstat_off, pen=np.zeros(sum(sizes[:-1])))
