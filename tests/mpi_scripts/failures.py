"""Under mpiexec: failures on one rank must end fit on every rank with the same error, no hang.

usage: mpiexec -n 2 python failures.py caught OUT_DIR   # every scenario caught
       mpiexec -n 2 python failures.py uncaught OUT_DIR # bad input on rank 1, not caught
       mpiexec -n 2 python failures.py alone            # an error outside the checked places: MPI_Abort

"caught" writes one JSON line per scenario to OUT_DIR/rank{r}.jsonl (a file per rank, as
mpiexec may interleave the ranks' stdout):
    {"scenario": ..., "rank": r, "error": type name or null, "message": ..., "crc": ..., "crc_start": ...}
where crc is a checksum of the params after the scenario, crc_start of rank 0's initial params.
"""
import json
import os
import sys
import warnings
import zlib

import numpy as np
from mpi4py import MPI

import fastbp
import fastbp.training as T

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
mode = sys.argv[1]

rng = np.random.default_rng(5)
X = rng.standard_normal((60, 4))
y = rng.integers(0, 3, 60)


def model(**kw):
    return fastbp.MLP([4, 6, 3], dtype="float64", seed=1, **kw)


def crc(a):
    return zlib.crc32(np.ascontiguousarray(a).view(np.uint8))


def fit(m, X=X, y=y, **kw):
    args = dict(epochs=3, batch_size=16, optimizer=fastbp.SGD(lr=0.1), verbose=0)
    args.update(kw)
    return m.fit(X, y, comm=comm, **args)


def scenario(name, run, make=None):
    m = (make or model)()
    before = m.params.copy()
    comm.Bcast(before, root=0)              # what every rank starts from: rank 0's params
    outcome = {"scenario": name, "rank": rank, "error": None, "message": None}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            run(m)
        except Exception as e:
            outcome.update(error=type(e).__name__, message=str(e))
    outcome["warnings"] = [str(w.message) for w in caught]
    outcome.update(crc=crc(m.params), crc_start=crc(before))
    with open(os.path.join(sys.argv[2], f"rank{rank}.jsonl"), "a") as f:
        f.write(json.dumps(outcome) + "\n")


class FailAtEpoch1(fastbp.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("callback failed at the end of epoch 1")


def nan_on_one_rank(m):
    Xr = X.copy()
    if rank == 1:
        Xr[-1, 2] = np.nan                   # a row that only rank 1 checks
    fit(m, Xr)


def linear_model():
    return fastbp.MLP([4, 6, 3], activation="linear", output="linear", loss="mse", dtype="float64", seed=1)


def diverge(on_nan):
    def run(m):
        yd = np.tile(y[:, None], (1, 3)) * 1e3
        fit(m, X * 1e3, yd, optimizer=fastbp.SGD(lr=1e6), on_nan=on_nan)
    return run


def step_fails_on_rank_1(m):
    """The third call of the compiled step on rank 1 fails (as if out of memory)."""
    real = T.E.run
    calls = [0]

    def flaky(*args, **kw):
        calls[0] += 1
        if calls[0] == 3:
            raise MemoryError("simulated: no memory for the activations of step 3")
        return real(*args, **kw)

    if rank == 1:
        T.E.run = flaky
    try:
        fit(m)
    finally:
        T.E.run = real


def params_drift_on_rank_1(m):
    """Rank 1's params change behind fit's back after each epoch (as if its MPI's Allreduce
    gave it other bits): the end-of-epoch check must notice and give it rank 0's again."""
    real = T.Run._check_ranks_agree

    def drift(self):
        self.model.params[0] += 1e-3
        return real(self)

    if rank == 1:
        T.Run._check_ranks_agree = drift
    try:
        fit(m)
    finally:
        T.Run._check_ranks_agree = real


if mode == "caught":
    scenario("nan_on_one_rank", nan_on_one_rank)
    scenario("different_batch_size", lambda m: fit(m, batch_size=16 + rank))
    scenario("callback_fails_on_rank_0", lambda m: fit(m, callbacks=[FailAtEpoch1()]))
    scenario("diverges_raise", diverge("raise"), linear_model)
    scenario("diverges_stop", diverge("stop"), linear_model)
    scenario("step_fails_on_rank_1", step_fails_on_rank_1)
    scenario("still_works_after", lambda m: fit(m))
    scenario("params_drift_on_rank_1", params_drift_on_rank_1)
elif mode == "uncaught":
    def note(kind, exc, tb):
        """Record the exception that ends this rank, then report it as Python does."""
        with open(os.path.join(sys.argv[2], f"rank{rank}.json"), "w") as f:
            json.dump({"rank": rank, "error": kind.__name__, "message": str(exc)}, f)
        sys.__excepthook__(kind, exc, tb)
    sys.excepthook = note
    nan_on_one_rank(model())
    print(f"rank {rank}: fit returned", flush=True)
elif mode == "alone":
    if rank == 1:
        real_update = T.K.apply_update

        def broken(params, *args):
            if params.size == 0:        # loading the kernel before the first epoch (an empty buffer)
                return real_update(params, *args)
            raise RuntimeError("simulated failure inside the optimizer update on rank 1")
        T.K.apply_update = broken
    fit(model())
    print(f"rank {rank}: fit returned", flush=True)
