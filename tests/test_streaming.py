"""Training straight from a read-only memmap: same result as in memory, resident memory bounded."""
import sys

import numpy as np
import pytest

import fastbp
import fastbp._memmap


def status_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the kernel's high-water mark")
def test_memmap_trains_like_memory_with_bounded_rss(tmp_path, monkeypatch):
    """Pages read are dropped after every chunk of minibatches, chunks sized to map at most
    8 MiB here: the peak resident memory while one epoch streams a 128 MiB file grows far less
    than the file. (Around each row read the kernel maps its whole page-cache folio, up to
    2 MiB on recent kernels, so a chunk is never less than a minibatch of rows times that:
    minibatches of 8 rows here.)"""
    monkeypatch.setattr(fastbp._memmap, "STREAM_CHUNK_BYTES", 8 << 20)
    n, k = 65_536, 512                     # 128 MiB of float32
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
    a.fit(Xm[:512], y[:512], epochs=1, batch_size=8, verbose=0)   # compile and allocate outside the measurement
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                                   # resets the high-water mark VmHWM
    before = status_mib("VmRSS")
    a.fit(Xm, y, epochs=1, batch_size=8, verbose=0)
    grown = status_mib("VmHWM") - before
    assert grown < 48, f"resident memory grew by {grown:.0f} MiB while streaming a 128 MiB file"

    b = fastbp.MLP([k, 32, 10], seed=0)
    b.fit(np.array(Xm[:512]), y[:512], epochs=1, batch_size=8, verbose=0)
    b.fit(np.array(Xm), y, epochs=1, batch_size=8, verbose=0)
    assert np.array_equal(a.params, b.params)
