"""Train one epoch from a float32 memmap of --gib GiB and report the peak resident memory.

    python benchmarks/stream_memmap.py --gib 4 [--dir /some/scratch/folder]

Writes the file (784 float32 features per row, mnist-workload net), opens it with
np.load(mmap_mode="r"), trains one epoch and prints the peak RSS, which stays far below the file's
size: fit reads minibatches from the mapping and releases its pages between chunks. (Linux: the
resident size is read from /proc.)
"""
import argparse
import os
import tempfile
import threading
import time

import numpy as np

import fastbp


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=float, default=4.0)
    ap.add_argument("--dir", default=None, help="where to write the file (default: a temp folder)")
    a = ap.parse_args()
    k = 784
    n = int(a.gib * 2**30 // (4 * k))
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        path = os.path.join(d, "X.npy")
        X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, k))
        rng = np.random.default_rng(0)
        T = rng.standard_normal((k, 10), dtype=np.float32)
        y = np.empty(n, np.int64)
        for i in range(0, n, 65536):
            block = rng.standard_normal((min(65536, n - i), k), dtype=np.float32)
            X[i:i + len(block)] = block
            y[i:i + len(block)] = (block @ T).argmax(1)
        X.flush()
        del X, block
        Xm = np.load(path, mmap_mode="r")
        model = fastbp.MLP([k, 256, 128, 10], seed=0)
        base, peak, done = rss_mib(), [0.0], threading.Event()

        def sample():                      # resident size every 5 ms while fit runs
            while not done.is_set():
                peak[0] = max(peak[0], rss_mib())
                time.sleep(0.005)
        watcher = threading.Thread(target=sample)
        watcher.start()
        t = time.perf_counter()
        model.fit(Xm, y, epochs=1, batch_size=256, verbose=0)
        dt = time.perf_counter() - t
        done.set()
        watcher.join()
        peak = peak[0]
        print(f"file {n * k * 4 / 2**30:.2f} GiB ({n:,} rows): one epoch in {dt:.1f} s ({n / dt:,.0f} samples/s), "
              f"peak RSS during fit {peak:.0f} MiB (before fit {base:.0f} MiB)")


if __name__ == "__main__":
    main()
