"""Threads for fastbp's kernels: how many CPUs the process may use, how many threads run now,
and BLAS held at one thread inside.

Parallel work is split into parts fixed by the shapes and by the number of CPUs this process
may use (``available_cpus``: its affinity mask and its container's CPU quota), never by the
number of threads of the moment, so a result is the same bits on any number of threads. That
leaves fastbp free to run fewer threads than parts, and the threads of a region take its parts
in turn (kernels.parts). When other processes keep CPUs busy, a thread the OS has parked behind
them stalls a region that ends while it holds a part (a region ends when its slowest thread
does), so training follows the load (``LoadMonitor``: the free CPUs, or all of them where that
measured faster) unless ``set_num_threads`` fixed the count.

fastbp parallelizes every matrix product itself, one single-threaded BLAS call per part, so the
BLAS libraries' own thread pools would only oversubscribe the cores. While a fastbp kernel runs,
every BLAS library in the process is held at one thread, then restored, so numpy and scipy
elsewhere in the user's program keep theirs; likewise numba's thread count is fastbp's only
inside fastbp's kernels.
"""
import contextlib
import math
import os
import sys
import threading
import time

import numba
import numpy as np

from .kernels import optimizers as K
from .kernels.args import Opt
from .kernels.parts import PARALLEL_MIN_PARAMS

_lock = threading.Lock()
_blas_libs = None
_pinned = None          # the count set_num_threads fixed, or None: follow the CPUs and the load


def _cgroup_quota():
    """CPUs of this process's container CPU quota (cgroup v2 cpu.max or v1 cfs quota), or None."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":                                   # cgroup v2
            candidates = [("/sys/fs/cgroup" + path.rstrip("/"), "cpu.max")]
        elif "cpu" in controllers.split(","):                   # cgroup v1
            candidates = [(f"/sys/fs/cgroup/{c}{path.rstrip('/')}", "cpu.cfs_quota_us")
                          for c in (controllers, "cpu", "cpu,cpuacct")]
        else:
            continue
        for folder, name in candidates:
            try:
                with open(os.path.join(folder, name)) as f:
                    fields = f.read().split()
                if name == "cpu.max":
                    quota, period = fields[0], fields[1]
                else:
                    with open(os.path.join(folder, "cpu.cfs_period_us")) as f:
                        quota, period = fields[0], f.read().split()[0]
                if quota in ("max", "-1"):
                    return None
                return max(1, math.ceil(int(quota) / int(period)))
            except (OSError, IndexError, ValueError):
                continue
    return None


def available_cpus():
    """How many CPUs this process may use: its affinity mask, within its container's CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:                                      # not Linux
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(n, quota) if quota else n)


def partition_cpus():
    """The number of CPUs parallel work is split for (kernels.parts): those available, at most
    the threads numba was started with (NUMBA_NUM_THREADS). Constant for a process."""
    return max(1, min(available_cpus(), numba.config.NUMBA_NUM_THREADS))


def get_num_threads():
    """Number of threads fastbp's kernels use at most: the count ``set_num_threads`` fixed, else
    the CPUs this process may use (fit runs fewer while other processes keep some busy, where that
    measures faster)."""
    return _pinned if _pinned is not None else partition_cpus()


def set_num_threads(n):
    """Use ``n`` threads for fastbp's kernels (1 <= n <= the number numba was started with),
    however busy the machine; results do not depend on it. ``None``: back to the default (the
    CPUs this process may use, fewer while other processes keep some busy where that measures
    faster)."""
    global _pinned
    if n is None:
        _pinned = None
        return
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    limit = numba.config.NUMBA_NUM_THREADS
    if not 1 <= n <= limit:
        raise ValueError(f"set_num_threads: n must be between 1 and {limit} (NUMBA_NUM_THREADS), got {n}")
    _pinned = n


def is_pinned():
    """Whether ``set_num_threads`` fixed the thread count."""
    return _pinned is not None


@contextlib.contextmanager
def using(n):
    """numba runs this thread's parallel regions on ``n`` threads inside the block (restored after)."""
    saved = numba.get_num_threads()
    if n != saved:
        numba.set_num_threads(n)
    try:
        yield
    finally:
        if n != saved:
            numba.set_num_threads(saved)


class LoadMonitor:
    """How many threads to run next, from what other processes leave of the usable CPUs.

    Linux: /proc/stat for the CPUs this process may run on, less its own CPU time (the
    hypervisor's steal counts as busy); elsewhere, or with less than MIN_SECONDS between calls,
    the previous answer. On a quiet machine every usable CPU runs a thread. While others keep
    some busy, two counts are candidates: the CPUs left free, and all of them (parts are taken
    in turn, so a thread the OS parks behind a neighbour costs only what it holds when a region
    ends: long regions may gain from the extra thread, short ones lose). Which is faster is
    measured: ``ran`` records the speed of each stretch of work in a ``rates`` dict kept per
    workload; once each count has run MEASURE_SECONDS, the faster runs, and now and then a
    short stretch (``probing``; PROBE_FRACTION of the work of one) tries the other: after
    PROBE_EVERY stretches, then twice as many after each probe that loses, up to
    MAX_PROBE_EVERY, since the losing count can be several times slower. One per process
    (``load_monitor``), so each fit starts from what the last one saw."""

    MIN_SECONDS = 0.05
    PROBE_EVERY = 8
    MAX_PROBE_EVERY = 128
    PROBE_FRACTION = 0.25
    MEASURE_SECONDS = 0.2

    def __init__(self, limit):
        self.limit = limit
        self.free = limit
        self.probing = False          # whether the count next_threads returned is a probe
        self._cpus = self._affinity()
        self._last = self._sample()

    @staticmethod
    def _affinity():
        try:
            return {f"cpu{c}" for c in os.sched_getaffinity(0)}
        except AttributeError:
            return None

    def _sample(self):
        """(wall seconds, CPU-seconds busy on our CPUs, CPU-seconds this process used), or None."""
        if self._cpus is None or not sys.platform.startswith("linux"):
            return None
        try:
            busy = 0
            with open("/proc/stat") as f:
                for line in f:
                    name, _, rest = line.partition(" ")
                    if name in self._cpus:
                        v = [int(x) for x in rest.split()[:8]]
                        busy += sum(v) - v[3] - v[4]      # all but idle and iowait
        except (OSError, ValueError):
            return None
        t = os.times()
        return time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"), t.user + t.system

    def _update_free(self):
        """The CPUs other processes left free since the previous call (as before if unknown)."""
        now = self._sample()
        last = self._last
        if now is None or last is None or now[0] - last[0] < self.MIN_SECONDS:
            return self.free
        wall = now[0] - last[0]
        others = max(0.0, (now[1] - last[1]) - (now[2] - last[2])) / wall
        self._last = now
        self.free = max(1, min(self.limit, self.limit - int(others + 0.5)))
        return self.free

    def next_threads(self, rates=None):
        """The thread count for the next stretch of work; ``rates`` (a dict this monitor fills
        through ``ran``, one per kind of work) lets it choose by measured speed. Sets
        ``probing`` when the count is a probe of the slower one (run a short stretch)."""
        self.probing = False
        free = self._update_free()
        if free == self.limit or rates is None:
            if rates is not None:
                rates.clear()             # measured under another load: measure anew next time
            return free
        candidates = (free, self.limit)
        seconds = [rates[c][1] if c in rates else 0.0 for c in candidates]
        if min(seconds) < self.MEASURE_SECONDS:
            # until each has run long enough to judge, the one measured least
            return candidates[0] if seconds[0] <= seconds[1] else candidates[1]
        best = max(candidates, key=lambda c: rates[c][0] / rates[c][1])
        # rates["probe"]: [stretches since the last probe, stretches between probes, last choice]
        since, every, last = rates.get("probe", (0, self.PROBE_EVERY, best))
        if best != last:                  # the other count won: probe the old one soon
            every = self.PROBE_EVERY
        since += 1
        if since >= every:
            since, every = 0, min(self.MAX_PROBE_EVERY, 2 * every)
            self.probing = True
        rates["probe"] = [since, every, best]
        if self.probing:
            return candidates[0] if best == candidates[1] else candidates[1]
        return best

    @classmethod
    def ran(cls, rates, n_threads, steps, seconds):
        """Record that ``steps`` units of work took ``seconds`` on ``n_threads`` threads: the
        sums of steps and seconds of each count, the older half forgotten with each new stretch
        once MEASURE_SECONDS are in."""
        if steps <= 0 or seconds <= 0.0:
            return
        s, t = rates.get(n_threads, (0.0, 0.0))
        keep = 0.5 if t >= cls.MEASURE_SECONDS else 1.0
        rates[n_threads] = (keep * s + steps, keep * t + seconds)


_monitor = None


def load_monitor():
    """The process's LoadMonitor for the current thread limit (get_num_threads())."""
    global _monitor
    limit = get_num_threads()
    with _lock:
        if _monitor is None or _monitor.limit != limit:
            _monitor = LoadMonitor(limit)
        return _monitor


def _blas_controllers():
    global _blas_libs
    if _blas_libs is None:
        from threadpoolctl import ThreadpoolController
        _blas_libs = ThreadpoolController().select(user_api="blas").lib_controllers
    return _blas_libs


@contextlib.contextmanager
def running(n, blas=True):
    """fastbp's kernels run inside the block: numba's regions on ``n`` threads, every BLAS at one
    thread (``blas=False``: the kernels call none, leave them be)."""
    with using(n), single_threaded_blas(not blas):
        yield


@contextlib.contextmanager
def single_threaded_blas(skip=False):
    """Hold every loaded BLAS at one thread for the duration (cheap: a few C calls); ``skip``:
    do nothing (the small-network kernels never call BLAS)."""
    if skip:
        yield
        return
    libs = _blas_controllers()
    with _lock:
        saved = [lib.get_num_threads() for lib in libs]
        for lib, n in zip(libs, saved):
            if n != 1:
                lib.set_num_threads(1)
    try:
        yield
    finally:
        with _lock:
            for lib, n in zip(libs, saved):
                if n != 1:
                    lib.set_num_threads(n)


def threading_layer():
    """The name of the threading layer numba runs fastbp's parallel kernels on ("omp", "tbb",
    "workqueue"). numba picks it when a parallel kernel first runs, so this runs a tiny one."""
    n = 2 * PARALLEL_MIN_PARAMS
    z = np.zeros(n)
    with using(max(2, get_num_threads())):
        K.apply_update(z, np.zeros(n), Opt(K.SGD, np.zeros(K.N_HYPER), np.zeros((0, n)), np.zeros(1, np.int64), 0.0), 2, None)
    return numba.threading_layer()
