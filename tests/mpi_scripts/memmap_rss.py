"""Under mpiexec: every rank streams one epoch from a 64 MiB .npy memmap, its pages released
after every chunk of at most 8 MiB of the file; each rank writes how much its resident memory
grew (sampled every few milliseconds during fit) to OUT/rank{r}.json, rank 0 also how much it
grew for the same epoch in one process."""
import json
import os
import sys
import threading
import time

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


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def grown_while(fn):
    """How much resident memory grew, at its peak, while fn() ran (sampled every 2 ms)."""
    peak, done = [rss_mib()], threading.Event()

    def sample():
        while not done.is_set():
            peak.append(rss_mib())
            time.sleep(0.002)

    before = rss_mib()
    watcher = threading.Thread(target=sample)
    watcher.start()
    try:
        fn()
    finally:
        done.set()
        watcher.join()
    return max(peak) - before


# compile and allocate outside the measurements
fastbp.MLP([k, 32, 10], seed=0).fit(Xm[:512], y[:512], epochs=1, batch_size=256, verbose=0, comm=comm)
alone = None
if rank == 0:      # the same epoch in one process, measured alike
    fastbp.MLP([k, 32, 10], seed=0).fit(Xm[:512], y[:512], epochs=1, batch_size=256, verbose=0)
    alone = grown_while(lambda: fastbp.MLP([k, 32, 10], seed=0).fit(Xm, y, epochs=1, batch_size=256, verbose=0))
comm.Barrier()
grown = grown_while(lambda: fastbp.MLP([k, 32, 10], seed=0).fit(Xm, y, epochs=1, batch_size=256, verbose=0,
                                                                 comm=comm))
with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
    json.dump({"rank": rank, "grown_mib": grown, "one_process_mib": alone}, f)
