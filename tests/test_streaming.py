"""Training straight from a read-only memmap: same result as in memory, resident memory bounded."""
import numpy as np

import fastbp


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def test_memmap_trains_like_memory_with_bounded_rss(tmp_path):
    n, k = 32_768, 512                     # 64 MiB of float32
    path = tmp_path / "X.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, k))
    rng = np.random.default_rng(0)
    for i in range(0, n, 8192):
        X[i:i + 8192] = rng.standard_normal((8192, k), dtype=np.float32)
    X.flush()
    del X
    y = rng.integers(0, 10, n)
    Xm = np.load(path, mmap_mode="r")

    a = fastbp.MLP([k, 32, 10], seed=0)
    a.fit(Xm[:512], y[:512], epochs=1, verbose=0)          # compile and allocate outside the measurement
    peaks = []

    class Watch(fastbp.Callback):
        def on_epoch_end(self, epoch, logs=None):
            peaks.append(rss_mb())

    before = rss_mb()
    a.fit(Xm, y, epochs=1, batch_size=256, verbose=0, callbacks=[Watch()])
    grown = max(peaks + [rss_mb()]) - before
    assert grown < 24, f"resident memory grew by {grown:.0f} MiB while streaming a 64 MiB file"

    b = fastbp.MLP([k, 32, 10], seed=0)
    b.fit(np.array(Xm[:512]), y[:512], epochs=1, verbose=0)
    b.fit(np.array(Xm), y, epochs=1, batch_size=256, verbose=0)
    assert np.array_equal(a.params, b.params)
