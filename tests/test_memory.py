"""1,000 consecutive fit/predict calls keep resident memory flat.

Each call converts a float64 Fortran-ordered X (64 KiB once converted) and uses a batch size
not seen in the last few calls, so a leak of converted inputs (64 MiB over the calls), of work
buffers (hundreds of MiB) or of per-call kernel state would grow the process beyond the bound.
One thread: memory does not depend on the thread count, and on a busy machine parallel regions
would only make the 1,000 calls slow.
"""
import gc
import os
import sys

import numpy as np
import pytest

import fastbp

BOUND = 16 * 2**20          # bytes of RSS growth allowed over the 1,000 calls


def rss():
    """Resident set size of this process, in bytes."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource                          # peak RSS: a bound on growth all the same
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


@pytest.fixture
def one_thread():
    saved = fastbp.get_num_threads()
    fastbp.set_num_threads(1)
    yield
    fastbp.set_num_threads(saved)


@pytest.mark.slow
def test_rss_stays_flat_over_1000_fit_predict_calls(tmp_path, one_thread):
    rng = np.random.default_rng(0)
    X = np.asfortranarray(rng.standard_normal((1024, 16)))        # float64, F order: converted every call
    y = rng.integers(0, 4, 1024)
    Xp = rng.standard_normal((300, 16)).astype(np.float32)

    def calls(i, model, opt):
        model.fit(X, y, epochs=1, batch_size=64 + (i * 37) % 960, optimizer=opt, verbose=0)
        P = model.predict(Xp, batch_size=1 + (i * 53) % 300)
        assert P.shape == (300, 4)
        if i % 50 == 0:                            # now and then a new model, an evaluate, a file
            model.evaluate(X, y)
            model.save(tmp_path / "m.fbp")
            fastbp.load(tmp_path / "m.fbp")

    model, opt = fastbp.MLP([16, 32, 32, 4], seed=0), fastbp.Adam(lr=1e-3)
    for i in range(50):                            # warm-up: caches, allocator pools, first compile
        calls(i, model, opt)
    gc.collect()
    start = rss()
    samples = []
    for i in range(1000):
        if i % 200 == 0:
            model, opt = fastbp.MLP([16, 32, 32, 4], seed=i), fastbp.Adam(lr=1e-3)
        calls(i, model, opt)
        if i % 100 == 99:
            gc.collect()
            samples.append(rss() - start)
    growth = [f"{s / 2**20:.1f}" for s in samples]
    print("RSS growth MiB:", growth)
    assert max(samples) < BOUND, f"RSS grew by {growth} MiB over the calls"
    assert np.isfinite(model.params).all()
