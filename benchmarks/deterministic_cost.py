"""What deterministic=True costs: one-epoch fits of the default and the deterministic model,
alternating, best of --rounds, on the peer-benchmark workloads (float32, Adam, all threads).

    python benchmarks/deterministic_cost.py [tiny,mnist,wide] [--rounds 4]
"""
import argparse
import time

import numpy as np

import fastbp

WORKLOADS = {"tiny": ([4, 16, 3], 32, 8192, 1e-2), "mnist": ([784, 256, 128, 10], 256, 32768, 1e-3),
             "wide": ([1024, 2048, 2048, 10], 1024, 8192, 1e-3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workloads", nargs="?", default="tiny,mnist,wide")
    ap.add_argument("--rounds", type=int, default=4)
    a = ap.parse_args()
    print(f"threads: {fastbp.get_num_threads()}")
    for name in a.workloads.split(","):
        sizes, batch, n, lr = WORKLOADS[name]
        rng = np.random.default_rng(0)
        X = rng.standard_normal((n, sizes[0]), dtype=np.float32)
        y = (X @ rng.standard_normal((sizes[0], sizes[-1]), dtype=np.float32)).argmax(1)
        models = {d: fastbp.MLP(sizes, seed=0, deterministic=d) for d in (False, True)}
        opts = {d: fastbp.Adam(lr=lr) for d in (False, True)}
        for d in (False, True):            # warm-up: kernel load, work buffers
            models[d].fit(X, y, epochs=1, batch_size=batch, optimizer=opts[d], verbose=0)
        best = {False: float("inf"), True: float("inf")}
        for _ in range(a.rounds):
            for d in (False, True):
                t = time.perf_counter()
                models[d].fit(X, y, epochs=1, batch_size=batch, optimizer=opts[d], verbose=0)
                best[d] = min(best[d], time.perf_counter() - t)
        f, d = best[False], best[True]
        print(f"{name:6} default {n / f:12,.0f} samples/s   deterministic {n / d:12,.0f} samples/s   "
              f"cost {100 * (d / f - 1):+.1f}%")


if __name__ == "__main__":
    main()
