"""Under mpiexec: train every case of cases.py data-parallel and save what rank 0 sees.

usage: mpiexec -n N python fit_cases.py OUT_DIR [CASE ...]

Writes OUT_DIR/results.npz (rank 0) with, per case: the final params and running statistics,
the history, and the largest difference between any rank's params, statistics or history and
rank 0's (all must be 0). Each rank also writes OUT_DIR/calls_rank{r}.txt listing the hooks a
recording callback saw. Given CASE names, only those cases run (and no resume).
"""
import os
import sys

import numpy as np
from mpi4py import MPI

import cases
import fastbp

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
out = sys.argv[1]
names = sys.argv[2:] or list(cases.CASES)


class Record(fastbp.Callback):
    """Logs every hook call to a file of its rank (callbacks must run on rank 0 only)."""

    def _log(self, what):
        with open(os.path.join(out, f"calls_rank{rank}.txt"), "a") as f:
            f.write(what + "\n")

    def on_train_begin(self, logs=None):
        self._log("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self._log(f"epoch_begin {epoch}")

    def on_epoch_end(self, epoch, logs=None):
        self._log(f"epoch_end {epoch}")

    def on_train_end(self, logs=None):
        self._log("train_end")


def spread(a):
    """Largest |a on any rank - a on rank 0| (0 when every rank holds the same values)."""
    a = np.ascontiguousarray(a, np.float64)
    ref = a.copy()
    comm.Bcast(ref, root=0)
    d = np.array([np.abs(a - ref).max() if a.size else 0.0])
    comm.Allreduce(MPI.IN_PLACE, d, op=MPI.MAX)
    return float(d[0])


results = {}


def keep(name, m, hist):
    results[f"{name}/params"] = m.params.astype(np.float64)
    results[f"{name}/params_spread"] = spread(m.params)
    results[f"{name}/buffers"] = m.buffers.astype(np.float64)
    results[f"{name}/buffers_spread"] = spread(m.buffers)
    for key, values in hist.history.items():
        results[f"{name}/history/{key}"] = np.array(values)
        results[f"{name}/history_spread/{key}"] = spread(np.array(values))
    results[f"{name}/epochs_run"] = len(hist.epoch)
    results[f"{name}/iterations"] = m.optimizer.iterations
    results[f"{name}/allreduce_seconds"] = hist.timing["allreduce"]


for name in names:
    X, y, _, _ = cases.data(name)
    if cases.CASES[name].get("memmap"):
        path = os.path.join(out, f"{name}_X.npy")
        if rank == 0:
            np.save(path, X)
        comm.Barrier()
        X = np.load(path, mmap_mode="r")
    kw = cases.fit_kwargs(name)
    if name == "adam_uneven":
        kw["callbacks"].append(Record())
    # Every rank builds its model from another seed: rank 0's params and RNG must win.
    m = cases.model(name, seed=cases.SEED + 1000 * rank)
    hist = m.fit(X, y, comm=comm, **kw)
    keep(name, m, hist)

# Resume: 2 epochs with a full checkpoint (written by rank 0), then on to RESUME_EPOCHS.
if not sys.argv[2:]:
    name = cases.RESUME_CASE
    X, y, _, _ = cases.data(name)
    ckpt = os.path.join(out, "resume.fbp")
    kw = cases.fit_kwargs(name, epochs=2, scheduler=False)
    kw["callbacks"].append(fastbp.ModelCheckpoint(ckpt, save_weights_only=False))
    cases.model(name, seed=cases.SEED + 1000 * rank).fit(X, y, comm=comm, **kw)
    results["resume/checkpoint_exists"] = os.path.exists(ckpt)
    kw = cases.fit_kwargs(name, epochs=cases.RESUME_EPOCHS, scheduler=False)
    m = cases.model(name, seed=777 + rank)
    hist = m.fit(X, y, comm=comm, resume_from=ckpt, **kw)
    keep("resume", m, hist)

if rank == 0:
    np.savez(os.path.join(out, "results.npz"), **results)
print(f"rank {rank} of {size} done", flush=True)
