"""Where a training step on sparse input goes: the gradient (forward and backward over the CSR
rows) against the optimizer update, and how much of W_0 a minibatch touches -- the most a lazy
update (one that skips W_0's rows no row of the minibatch stores) could ever save.

    python benchmarks/sparse_step.py                   # the peer comparison's sparse workload
    python benchmarks/sparse_step.py --threads 1

Uses the peer comparison's data (100 stored entries a row over 20000 features), 20000-256-20
relu, Adam, batch 256, float32; medians over --steps minibatches of a shuffled order.
"""
import argparse
import statistics
import time

import numpy as np

import fastbp
from fastbp import data as D
from fastbp import threads as T
from fastbp.kernels import epoch as E

try:                                  # imported by asv as part of the benchmarks package
    from .common import SPARSE_BATCH, SPARSE_NNZ, SPARSE_SIZES, make_sparse
except ImportError:                   # run as a script: python benchmarks/sparse_step.py
    from common import SPARSE_BATCH, SPARSE_NNZ, SPARSE_SIZES, make_sparse


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=32768)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        fastbp.set_num_threads(a.threads)
    X, y = make_sparse(SPARSE_SIZES[0], SPARSE_SIZES[-1], a.rows, SPARSE_NNZ)
    model = fastbp.MLP(SPARSE_SIZES, seed=0)
    opt = fastbp.Adam(lr=1e-3)
    model.fit(X[:2 * SPARSE_BATCH], y[:2 * SPARSE_BATCH], epochs=1, batch_size=SPARSE_BATCH, optimizer=opt, verbose=0)
    data = D.prepare(model, X, y)
    ws = model.workspace(SPARSE_BATCH)
    maxparts = model.kernel_parts(SPARSE_BATCH)
    kopt = opt.kernel_args(model.params, model.layout.segments_arr)
    order = np.random.default_rng(1).permutation(a.rows)
    grad_ms, step_ms, touched = [], [], []
    with T.running(T.get_num_threads(), blas=not ws.small):
        for s in range(a.steps):
            rows = order[s * SPARSE_BATCH:(s + 1) * SPARSE_BATCH]
            t0 = time.perf_counter()
            E.run(E.GRADIENT, model.params, model.net, ws, data, order=order, first=s * SPARSE_BATCH,
                  last=(s + 1) * SPARSE_BATCH, batch=0, maxparts=maxparts)
            t1 = time.perf_counter()
            E.run(E.TRAIN, model.params, model.net, ws, data, opt=kopt, order=order, first=s, last=s + 1,
                  batch=SPARSE_BATCH, step_loss=np.zeros(a.steps), step_correct=np.zeros(a.steps), maxparts=maxparts)
            t2 = time.perf_counter()
            grad_ms.append((t1 - t0) * 1e3)
            step_ms.append((t2 - t1) * 1e3)
            touched.append(np.unique(X[rows].indices).size / SPARSE_SIZES[0])
    g, st = statistics.median(grad_ms), statistics.median(step_ms)
    w0 = SPARSE_SIZES[0] * SPARSE_SIZES[1] / model.n_params
    print(f"{fastbp.get_num_threads()} threads, {model.n_params:,} params ({w0:.1%} in W_0)")
    print(f"training step {st:.2f} ms = gradient {g:.2f} ms + update {st - g:.2f} ms ({(st - g) / st:.0%})")
    print(f"a minibatch touches {statistics.median(touched):.0%} of W_0's rows: a lazy update could skip at most "
          f"{(1 - statistics.median(touched)) * w0 * (st - g):.2f} ms a step ({(1 - statistics.median(touched)) * w0 * (st - g) / st:.0%})")


if __name__ == "__main__":
    main()
