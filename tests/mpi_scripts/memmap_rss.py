"""Under mpiexec: every rank streams one epoch from a 64 MiB .npy memmap, its pages released
after every chunk of minibatches that maps at most 8 MiB (minibatches of 8 rows); each rank writes how much its resident memory
grew (its peak: the kernel's high-water mark) to OUT/rank{r}.json, rank 0 also how much it
grew for the same epoch in one process."""
import json
import os
import sys

import numpy as np
from mpi4py import MPI

import fastbp
import fastbp._memmap

fastbp._memmap.STREAM_CHUNK_BYTES = 8 << 20

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
out = sys.argv[1]
n, k = 32_768, 512
path = os.path.join(out, "X.npy")
if rank == 0:
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, k))
    rng = np.random.default_rng(0)
    for i in range(0, n, 8192):
        X[i:i + 8192] = rng.standard_normal((8192, k), dtype=np.float32)
    X.flush()
    del X
comm.Barrier()
y = np.random.default_rng(1).integers(0, 10, n)
Xm = np.load(path, mmap_mode="r")


def status_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024


def grown_while(fn):
    """How much resident memory grew, at its peak, while fn() ran: the kernel's high-water mark
    (VmHWM), reset first (writing 5 to /proc/self/clear_refs), against the resident size before."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status_mib("VmRSS")
    fn()
    return status_mib("VmHWM") - before


# compile and allocate outside the measurements
fastbp.MLP([k, 32, 10], seed=0).fit(Xm[:512], y[:512], epochs=1, batch_size=8, verbose=0, comm=comm)
alone = None
if rank == 0:      # the same epoch in one process, measured alike
    fastbp.MLP([k, 32, 10], seed=0).fit(Xm[:512], y[:512], epochs=1, batch_size=8, verbose=0)
    alone = grown_while(lambda: fastbp.MLP([k, 32, 10], seed=0).fit(Xm, y, epochs=1, batch_size=8, verbose=0))
comm.Barrier()
grown = grown_while(lambda: fastbp.MLP([k, 32, 10], seed=0).fit(Xm, y, epochs=1, batch_size=8, verbose=0,
                                                                 comm=comm))
with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
    json.dump({"rank": rank, "grown_mib": grown, "one_process_mib": alone}, f)
