"""Memory while training mnist: the peak must not grow with the number of epochs.

``peakmem_fit`` over 1 and 4 epochs should report the same peak (work buffers are made once
per batch size and reused); ``track_rss_growth`` is the resident-set growth over three more
epochs after the first, which should stay near zero. Note: a large temporary freed during the
first epoch (e.g. the one-byte-per-element mask of a finiteness check on X) can stay resident
from the second epoch on, because glibc raises its mmap threshold after freeing it; that shows
up here as a one-time step, not as growth per epoch.
"""
import os
import resource
import sys

import fastbp

from .common import WORKLOADS, make_data, make_model, precompile, warm_up


def current_rss():
    """Resident set size of this process in bytes (the peak where the current value is unknown)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        pass
    try:
        import psutil
        return psutil.Process().memory_info().rss
    except ImportError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


class _MnistFit:
    setup_cache = precompile     # compiled in another process: the compiler's memory stays out
    timeout = 300

    def setup(self, *params):
        sizes, self.batch, n, lr = WORKLOADS["mnist"]
        self.X, self.y = make_data(sizes[0], sizes[-1], n)
        self.model = make_model(sizes)
        self.opt = fastbp.Adam(lr=lr)
        warm_up(self.model, self.X, self.y, self.batch, self.opt)

    def _fit(self, epochs):
        self.model.fit(self.X, self.y, epochs=epochs, batch_size=self.batch, optimizer=self.opt, verbose=0)


class TrainPeakMemory(_MnistFit):
    """Peak RSS of a process that trains mnist for 1 or 4 epochs (should be equal)."""
    params = [1, 4]
    param_names = ["epochs"]

    def peakmem_fit(self, epochs):
        self._fit(epochs)


class TrainRSSGrowth(_MnistFit):
    def track_rss_growth(self):
        """RSS after 4 epochs minus RSS after 1, in MiB."""
        self._fit(1)
        before = current_rss()
        self._fit(3)
        return (current_rss() - before) / 2**20

    track_rss_growth.unit = "MiB"
