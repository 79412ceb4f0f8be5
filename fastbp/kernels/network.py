"""The whole network on batches of rows, batch-major: training steps, one batch's gradient,
evaluation and prediction, in one entry point.

    params, grads  flat; layer l's W_l and b_l at net.woff[l], net.boff[l] (args.Net)
    data           args.Data: rows are read by index (training) or in order (inference)
    work           args.Work: A_0..A_L in work.acts, two dZ blocks in work.deltas, full layers'
                   Y (and Xhat) in work.pre
    out            (n, k) predictions (EVALUATE, PREDICT; TRAIN and TRAIN_GRADIENT when not empty:
                   row order[p]'s prediction at its step into out[p], for training metrics)

One entry point serves every mode so that the code they share (the forward pass, the loss)
is compiled once per dtype: numba compiles a kernel, and again every kernel it calls inside
each caller, so entry points that called shared kernels would each compile them anew.
"""
import numpy as np
from numba import typeof, types

from .activations import LINEAR
from .args import GRADIENT, PREDICT, TRAIN, TRAIN_GRADIENT
from .calls import by_address, entry, type_key
from .dense import (BACKWARD_INPUT, BACKWARD_WEIGHTS, BATCH_NORM, BATCH_STATS, FORWARD, INFERENCE, LAYER_NORM,
                    LAYER_NORM_BACKWARD, NORM_BACKWARD, NORM_BACKWARD_ROWS, NORM_FORWARD, NORM_STATISTICS, STEP,
                    call_task, layer_region, layer_task, sparse_transpose, task_parts)
from .jit import kernel, wide_vectors
from .losses import output_loss
from .optimizers import H_LR, apply_update, classic_update

# run_batches calls the kernels below through their addresses: fns[slot] and fns[slot + 1] are a
# kernel's calls.entry (its code is not compiled again into run_batches); ``addresses`` gives them.
TASK, REGION, LOSS, UPDATE = 0, 2, 4, 6
call_region = by_address(layer_region, returns=types.none)
call_loss = by_address(output_loss, returns=types.float64)
call_update = by_address(apply_update, returns=types.none)


@kernel(inline="always")
def _task(task, parts, l, m, act, grads, params, net, work, X, dcur, dnext, train, pos0, maxparts, extras, sparse,
          fns):
    """All ``parts`` parts of a layer task: serially, or in a parallel region (never compiled
    when maxparts is None, see parts.py)."""
    if maxparts is None or parts == 1:
        _one_call(task, np.int64(1), l, m, act, grads, params, net, work, X, dcur, dnext, train, pos0, extras, sparse,
                  fns)
    else:
        call_region(fns[REGION], fns[REGION + 1], (task, parts, l, m, act, grads, params, net, work, X, dcur, dnext,
                                                   train, pos0, extras, sparse, fns[TASK], fns[TASK + 1]))


@kernel(inline="always")
def _one_call(task, parts, l, m, act, grads, params, net, work, X, dcur, dnext, train, pos0, extras, sparse, fns):
    """Part 0 of a layer task told of ``parts`` parts, on this thread: the whole task for one
    part; for batch norm's sums (NORM_STATISTICS, NORM_BACKWARD), the sum of what the ``parts``
    parts of the task before them left (see dense.norm_backward)."""
    call_task(fns[TASK], fns[TASK + 1], (task, np.int64(0), parts, l, m, act, grads, params, net, work, X, dcur, dnext,
                                         train, pos0, extras, sparse))


@kernel
def run_batches(mode, out, step_loss, step_correct, params, grads, opt, net, data, order, first, last, batch, work,
                maxparts, extras, sparse, fns):
    """Run the network on batches of data rows; returns (batches run, loss sum, correct count).

    mode TRAIN     minibatches first .. last-1 of the epoch order ``order`` (``batch`` rows each,
                   the last possibly fewer): forward, loss, backward, one optimizer update each
                   (opt.step[0] counts them). step_loss[s] gets minibatch s's weighted loss sum,
                   step_correct[s] its count of correct rows. Stops after a minibatch whose loss
                   is not finite, without updating. net.updates[0] counts the model's updates.
                   Every loss includes the l1/l2 penalty (times the rows, as a sum).
         GRADIENT  the rows order[first:last] as one batch: their loss sum and count of correct
                   rows, and their mean gradient into ``grads`` (zeros for no rows). No update;
                   no dropout; batch norm normalizes by the batch's statistics, updating none.
    TRAIN_GRADIENT the same for a training step whose update is made elsewhere (MPI): dropout
                   and the running statistics as in TRAIN; the rows are positions batch,
                   batch+1, ... of their minibatch (dropout masks are keyed by position).
         EVALUATE  data rows first .. last-1 in blocks of work's capacity: predictions into
                   out[first:last], the loss sum and correct count over them.
         PREDICT   the same, predictions only.
    Overwrites work.acts and work.deltas. ``extras``: None for a plain network, whose kernels
    then hold none of the code of norm, dropout, penalties and the newer activations and losses
    (see dense.py) stepped by SGD, Momentum or Adam at a constant rate; an int otherwise
    (optimizers.variant). ``sparse``: None for dense X; for CSR input the rows (args.Sparse),
    which layer 0 reads instead of data.X (then empty), see dense.layer_task. ``fns``: the
    addresses of the kernels it calls (``addresses``).
    """
    wide_vectors()
    L = net.sizes.shape[0] - 1
    k = net.sizes[L]
    X = data.X
    rows = work.rows
    cap = rows.shape[0]
    o = work.acts_off[L]
    training = mode == TRAIN or mode == GRADIENT or mode == TRAIN_GRADIENT
    train = np.int64(STEP if mode == TRAIN or mode == TRAIN_GRADIENT else BATCH_STATS if mode == GRADIENT else INFERENCE)
    pos0 = np.int64(batch if mode == TRAIN_GRADIENT else 0)
    if mode == TRAIN:
        n_batches = last - first
    elif mode == GRADIENT or mode == TRAIN_GRADIENT:
        n_batches = 1
        if last == first:
            grads[:] = 0.0
            return 0, 0.0, 0.0
    else:
        n_batches = (last - first + cap - 1) // cap
    total_all = 0.0
    correct_all = 0.0
    for b in range(n_batches):
        # the batch's data rows into rows[:m]
        if mode == TRAIN:
            r0 = (first + b) * batch
            m = min(order.shape[0], r0 + batch) - r0
            for i in range(m):
                rows[i] = order[r0 + i]
        elif mode == GRADIENT or mode == TRAIN_GRADIENT:
            m = last - first
            for i in range(m):
                rows[i] = order[first + i]
        else:
            r0 = first + b * cap
            m = min(last, r0 + cap) - r0
            for i in range(m):
                rows[i] = r0 + i
        # forward: A_L holds the logits, or (PREDICT) the predictions
        for l in range(L):
            act = np.int64(LINEAR) if mode != PREDICT and l == L - 1 else net.act[l]
            n_in, n_out = net.sizes[l], net.sizes[l + 1]
            _task(np.int64(FORWARD), task_parts(FORWARD, m, n_in, n_out, maxparts), l, m, act, grads, params, net, work,
                  X, np.int64(0), np.int64(0), train, pos0, maxparts, extras, sparse, fns)
            if extras is not None and net.norm[l] == BATCH_NORM and train != INFERENCE:
                # the forward task stopped at Z, each part with its rows' moments: the batch's
                # statistics from them, then Y, the activation and dropout
                _one_call(np.int64(NORM_STATISTICS), task_parts(FORWARD, m, n_in, n_out, maxparts), l, m,
                          np.int64(LINEAR), grads, params, net, work, X, np.int64(0), np.int64(0), train, pos0, extras,
                          sparse, fns)
                _task(np.int64(NORM_FORWARD), task_parts(NORM_FORWARD, m, n_in, n_out, maxparts), l, m, act, grads,
                      params, net, work, X, np.int64(0), np.int64(0), train, pos0, maxparts, extras, sparse, fns)
        if mode != PREDICT:
            # loss; the gradient at the logits into deltas[0:], already divided by m
            correct = call_loss(fns[LOSS], fns[LOSS + 1], (work.deltas, np.int64(0), work.row_loss, work.acts, o, m, k,
                                                           net, data, rows, 1.0 / m if training else 1.0, training,
                                                           extras))
            correct_all += correct
            if training:
                total = 0.0
                for i in range(m):
                    total += work.row_loss[i]
                if out.shape[0] > 0:
                    # training metrics: each row's prediction at its step, at its epoch position
                    p0 = (first + b) * batch if mode == TRAIN else first
                    for i in range(m):
                        for j in range(k):
                            out[p0 + i, j] = work.acts[o + i * k + j]
            else:
                for i in range(m):
                    total_all += work.row_loss[i]
        if not training:
            for i in range(m):
                for j in range(k):
                    out[rows[i], j] = work.acts[o + i * k + j]
            continue
        # backward: dW_l, db_l of every layer, the delta passed down the two halves of deltas
        half = work.deltas.shape[0] // 2
        dcur = np.int64(0)
        for l in range(L - 1, -1, -1):
            dnext = half - dcur
            n_in, n_out = net.sizes[l], net.sizes[l + 1]
            if extras is not None and net.norm[l] == LAYER_NORM:
                # dcur holds dY: gamma's and beta's gradients beside dY -> dZ into dnext, which
                # then holds the layer's delta
                _task(np.int64(LAYER_NORM_BACKWARD), task_parts(LAYER_NORM_BACKWARD, m, n_in, n_out, maxparts), l, m,
                      np.int64(LINEAR), grads, params, net, work, X, dcur, dnext, train, pos0, maxparts, extras, sparse,
                      fns)
                dcur = dnext
                dnext = half - dcur
            elif extras is not None and net.norm[l] != 0:
                # dcur holds dY, whose input-gradient task above left each part's share of gamma's
                # and beta's gradients: their sums, then dY -> dZ (which needs them)
                _one_call(np.int64(NORM_BACKWARD), task_parts(BACKWARD_INPUT, m, n_out, net.sizes[l + 2], maxparts), l,
                          m, np.int64(LINEAR), grads, params, net, work, X, dcur, dnext, train, pos0, extras, sparse,
                          fns)
                _task(np.int64(NORM_BACKWARD_ROWS), task_parts(NORM_BACKWARD_ROWS, m, n_in, n_out, maxparts), l, m,
                      np.int64(LINEAR), grads, params, net, work, X, dcur, dnext, train, pos0, maxparts, extras, sparse,
                      fns)
            if sparse is not None:
                if l == 0:
                    sparse_transpose(sparse, rows, m, net.sizes[0])
            _task(np.int64(BACKWARD_WEIGHTS), task_parts(BACKWARD_WEIGHTS, m, n_in, n_out, maxparts), l, m,
                  np.int64(LINEAR), grads, params, net, work, X, dcur, dnext, train, pos0, maxparts, extras, sparse,
                  fns)
            if l > 0:
                _task(np.int64(BACKWARD_INPUT), task_parts(BACKWARD_INPUT, m, n_in, n_out, maxparts), l, m,
                      np.int64(LINEAR), grads, params, net, work, X, dcur, dnext, train, pos0, maxparts, extras,
                      sparse, fns)
            dcur = dnext
        if extras is not None and (net.l1 != 0.0 or net.l2 != 0.0):
            # the penalty at the weights before this update, once per row like the data loss
            pen = 0.0
            for i in range(work.pen.shape[0]):
                pen += work.pen[i]
            total += m * pen
        if mode == GRADIENT or mode == TRAIN_GRADIENT:
            return 1, total, correct
        s = first + b
        step_loss[s] = total
        step_correct[s] = correct
        if not np.isfinite(total):
            return b + 1, total_all, correct_all
        if extras is None:
            classic_update(params, grads, opt, opt.hyper[H_LR], maxparts)    # inlined, as always
        else:
            call_update(fns[UPDATE], fns[UPDATE + 1], (params, grads, opt, maxparts, extras))
        net.updates[0] += 1
    return n_batches, total_all, correct_all


def _called(args):
    """{slot of fns: (kernel, argument types)} of every kernel run_batches(*args, fns) calls by
    address (a slot it never calls is missing); ``args`` without ``fns``."""
    (mode, out, step_loss, step_correct, params, grads, opt, net, data, order, first, last, batch, work, maxparts,
     extras, sparse) = args
    i, f = types.int64, types.float64
    # (task, [p,] parts, l, m, act, grads, params, net, work, X, dcur, dnext, train, pos0, extras, sparse)
    tail = (typeof(grads), typeof(params), typeof(net), typeof(work), typeof(data.X), i, i, i, i, typeof(extras),
            typeof(sparse))
    called = {TASK: (layer_task, (i,) * 6 + tail),
              LOSS: (output_loss, (typeof(work.deltas), i, typeof(work.row_loss), typeof(work.acts), i, i, i,
                                   typeof(net), typeof(data), typeof(work.rows), f, types.boolean, typeof(extras)))}
    if maxparts is not None:
        called[REGION] = (layer_region, (i,) * 5 + tail + (i, i))
    if extras is not None:
        called[UPDATE] = (apply_update, (typeof(params), typeof(grads), typeof(opt), typeof(maxparts),
                                         typeof(extras)))
    return called


def callees(args):
    """The kernels run_batches(*args, fns) calls by address (``args`` without ``fns``), each with
    the argument types it calls it with, in two independent groups (jit.compile_apart): the
    layer kernels, and the loss and optimizer ones. Their return types are declared (call_task,
    call_region, call_loss, call_update), so run_batches compiles without them: all three at
    once. A test checks these against what run_batches compiles."""
    called = _called(args)
    return [called[s] for s in (TASK, REGION) if s in called], [called[s] for s in (LOSS, UPDATE) if s in called]


_ADDRESSES = {}


def addresses(args):
    """``fns`` for run_batches(*args, fns): the calls.entry of each kernel it calls by address
    (zeros in the slots of those it never calls), each compiled or loaded from the cache first
    if needed. Read-only: the type ``FNS`` names."""
    key = type_key(args)
    fns = _ADDRESSES.get(key)
    if fns is None:
        fns = np.zeros(8, np.int64)
        for slot, (k, sig) in _called(args).items():
            fns[slot:slot + 2] = entry(k, sig)
        fns.flags.writeable = False
        _ADDRESSES[key] = fns
    return fns


FNS = types.Array(types.int64, 1, "C", readonly=True)
