"""Under mpiexec, from an empty numba cache: one rank of the node compiles a fit's kernels, the
others load them.

usage: NUMBA_CACHE_DIR=<empty folder> mpiexec -n 2 python node_first.py OUT_DIR

Fits a plain and a batch-norm network (whose MPI step is kernels.syncbn's) large enough for the
batch-major kernels, and writes OUT_DIR/rank{r}.json: {"rank": r, "compiled": names of the
kernels this process compiled while the fits loaded theirs, "elsewhere": how many times it heard
of kernels compiled in other processes (compile_apart's children)}.
"""
import json
import os
import sys

import numpy as np
from mpi4py import MPI
from numba.core import event

import fastbp
import fastbp.training as T
from fastbp.kernels.jit import COMPILE_ELSEWHERE

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
loading = [False]
compiled, elsewhere = [], []


class Listener(event.Listener):
    def on_start(self, ev):
        if not loading[0]:
            return
        if ev.kind == COMPILE_ELSEWHERE:
            elsewhere.append(1)
        else:
            compiled.append(ev.data["dispatcher"].py_func.__qualname__)

    def on_end(self, ev):
        pass


event.register("numba:compile", Listener())
event.register(COMPILE_ELSEWHERE, Listener())
load_kernels = T.Run._load_kernels


def watched(self):
    loading[0] = True
    try:
        load_kernels(self)
    finally:
        loading[0] = False


T.Run._load_kernels = watched
rng = np.random.default_rng(0)
X = rng.standard_normal((512, 64)).astype(np.float32)
y = rng.integers(0, 10, 512)
for kw in ({}, dict(norm="batch")):
    fastbp.MLP([64, 256, 10], dtype="float32", seed=0, **kw).fit(X, y, epochs=1, batch_size=128, verbose=0, comm=comm)
with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as f:
    json.dump({"rank": rank, "compiled": compiled, "elsewhere": len(elsewhere)}, f)
