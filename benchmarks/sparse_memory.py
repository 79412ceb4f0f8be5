"""Peak resident memory while training on a CSR matrix whose dense form would be 8 GiB.

    python benchmarks/sparse_memory.py                  # 1,048,576 x 2048 float32, 20 entries a row
    python benchmarks/sparse_memory.py --rows 262144    # a quarter of it

Builds the matrix directly as CSR (never dense), trains one epoch of a 2048-64-4 relu network
with Adam in minibatches of 256, evaluates every row, then prints the CSR's own size, the dense
size it stands for, and the process's peak resident memory (interpreter, numba, scipy and data
included). Linux and macOS (ru_maxrss).
"""
import argparse
import resource
import sys
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1 << 20)
    ap.add_argument("--features", type=int, default=2048)
    ap.add_argument("--nnz", type=int, default=20, help="stored entries a row")
    a = ap.parse_args()
    import scipy.sparse as sp

    import fastbp
    n, d, k = a.rows, a.features, a.nnz
    rng = np.random.default_rng(0)
    cols = np.sort(rng.integers(0, d - k + 1, (n, k), dtype=np.int32), axis=1)
    cols += np.arange(k, dtype=np.int32)
    X = sp.csr_matrix((rng.random(n * k, dtype=np.float32), cols.ravel(), np.arange(0, n * k + 1, k, dtype=np.int64)),
                      shape=(n, d))
    del cols
    y = rng.integers(0, 4, n)
    model = fastbp.MLP([d, 64, 4], seed=0)
    t0 = time.perf_counter()
    model.fit(X, y, epochs=1, batch_size=256, verbose=0)
    loss = model.evaluate(X, y)["loss"]
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 if sys.platform == "darwin" else 1 / 1024)
    csr = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    print(f"X: {n} x {d} float32, {k} entries a row: {csr / 2**20:.0f} MiB as CSR, {n * d * 4 / 2**30:.2f} GiB dense")
    print(f"one epoch + evaluate: {dt:.1f} s, loss {loss:.4f}")
    print(f"peak RSS: {peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
