"""Under mpiexec: train "forever" until Ctrl-C, then report what each rank holds.

usage: mpiexec -n 2 python interrupt.py OUT_DIR
Rank 0 prints "EPOCH_END k" after each epoch (the test sends SIGINT to mpiexec, which forwards
it to every rank); after fit returns each rank writes OUT_DIR/rank{r}.json:
    {"rank": r, "interrupted": bool, "crc": params checksum, "iterations": n, "epochs": n}
"""
import json
import os
import sys
import zlib

import numpy as np
from mpi4py import MPI

import fastbp

comm = MPI.COMM_WORLD
rank = comm.Get_rank()

rng = np.random.default_rng(2)
X = rng.standard_normal((500, 8))
y = rng.integers(0, 3, 500)


class Announce(fastbp.Callback):
    def on_epoch_end(self, epoch, logs=None):
        print(f"EPOCH_END {epoch}", flush=True)


m = fastbp.MLP([8, 16, 3], dtype="float64", seed=0)
hist = m.fit(X, y, epochs=1_000_000, batch_size=10, optimizer=fastbp.Adam(lr=1e-3), verbose=0,
             callbacks=[Announce()], comm=comm)
result = {"rank": rank, "interrupted": bool(hist.interrupted), "iterations": m.optimizer.iterations,
          "epochs": len(hist.epoch), "crc": zlib.crc32(m.params.view(np.uint8))}
with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as f:
    json.dump(result, f)
