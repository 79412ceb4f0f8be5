"""The kernels called directly the way the library calls them (``kernels/epoch.py``), for the tests
that check them against the reference: read-only data, and a plain network's PlainNet and
PlainWork. numba compiles a kernel once per argument types; other types (writable arrays, a Net
with no extras) would be versions only the tests compile, and the tests would check those."""
from fastbp.data import frozen
from fastbp.kernels import epoch as E
from fastbp.kernels.args import Data, SparseRows, plain_net, plain_work
from fastbp.kernels.network import addresses

NET, WORK = 7, 13        # where run_batches' arguments hold the network and its work buffers


def data(X, targets, labels, weights):
    """A Data of read-only views, as fastbp.data makes them."""
    return Data(*map(frozen, (X, targets, labels, weights)))


def sparse_rows(indptr, indices, values, n_cols, max_row):
    """A SparseRows of read-only views, as fastbp.data makes them."""
    return SparseRows(frozen(indptr), frozen(indices), frozen(values), n_cols, max_row)


def run(kind, maxparts, args, sparse=None):
    """run_batches_small (kind "small") or run_batches of ``args`` (mode ... work) for a plain
    network: its Net and Work passed as PlainNet and PlainWork, extras None."""
    args = list(args)
    args[NET], args[WORK] = plain_net(args[NET]), plain_work(args[WORK])
    if kind == "small":
        return E.run_batches_small(*args, None, sparse)
    args += [maxparts, None, sparse]
    return E.run_batches(*args, addresses(tuple(args)))
