"""Under mpiexec: batch norm's refusals and failures end fit on every rank alike, no hang.

usage: mpiexec -n N python batch_norm_errors.py OUT_DIR

Writes one JSON line per scenario to OUT_DIR/rank{r}.jsonl:
    {"scenario": ..., "rank": r, "error": type name or null, "message": ..., "unchanged": bool}
where unchanged says whether the rank's params and running statistics are still its initial ones.
"""
import json
import os
import sys

import numpy as np
from mpi4py import MPI

import fastbp
from fastbp.kernels import syncbn

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
out = sys.argv[1]

rng = np.random.default_rng(5)
X = rng.standard_normal((61, 4))
y = rng.integers(0, 3, 61)


def model():
    return fastbp.MLP([4, 6, 5, 3], norm=["batch", "layer"], dropout=0.1, dtype="float64", seed=1 + rank)


def scenario(name, run):
    m = model()
    start, buffers = m.params.copy(), m.buffers.copy()
    outcome = {"scenario": name, "rank": rank, "error": None, "message": None}
    try:
        run(m)
    except Exception as e:
        outcome.update(error=type(e).__name__, message=str(e))
    outcome["unchanged"] = bool(np.array_equal(m.params, start) and np.array_equal(m.buffers, buffers))
    with open(os.path.join(out, f"rank{rank}.jsonl"), "a") as f:
        f.write(json.dumps(outcome) + "\n")


def fit(m, **kw):
    args = dict(epochs=2, batch_size=9, optimizer=fastbp.SGD(lr=0.1), verbose=0)
    args.update(kw)
    return m.fit(X, y, comm=comm, **args)


def finish_fails_on_rank_1(m):
    """Rank 1 fails inside a step, between the sums of the forward pass: no rank may be left
    waiting in a batch-norm reduction."""
    real = syncbn.batch_norm_finish
    calls = [0]

    def flaky(*args):
        calls[0] += 1
        if calls[0] == 5:
            raise MemoryError("simulated: no memory inside a step")
        return real(*args)

    if rank == 1:
        syncbn.batch_norm_finish = flaky
    try:
        fit(m)
    finally:
        syncbn.batch_norm_finish = real


# 61 rows in minibatches of 12: the last holds one row, which batch norm cannot normalize
scenario("one_row_minibatch", lambda m: fit(m, batch_size=12))
scenario("step_fails_on_rank_1", finish_fails_on_rank_1)
scenario("still_works_after", fit)
print(f"rank {rank} done", flush=True)
