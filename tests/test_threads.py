"""How many threads fastbp runs: the CPUs the process may use, fewer while other processes keep
them busy, or what set_num_threads fixed; numba's own thread count is left as it was."""
import os
import subprocess
import sys
import time

import numba
import numpy as np
import pytest

import fastbp
from fastbp import threads
from fastbp.kernels.parts import take


@pytest.fixture(autouse=True)
def unpinned():
    fastbp.set_num_threads(None)
    yield
    fastbp.set_num_threads(None)


def test_default_is_the_cpus_this_process_may_use(monkeypatch):
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: None)
    assert threads.available_cpus() == len(os.sched_getaffinity(0))
    assert fastbp.get_num_threads() == min(len(os.sched_getaffinity(0)), numba.config.NUMBA_NUM_THREADS)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert threads.available_cpus() == 1 and fastbp.get_num_threads() == 1


@pytest.mark.parametrize("files,expected", [
    ({"cgroup": "0::/job\n", "job/cpu.max": "150000 100000\n"}, 2),               # v2: 1.5 CPUs
    ({"cgroup": "0::/job\n", "job/cpu.max": "max 100000\n"}, None),               # v2: no quota
    ({"cgroup": "4:cpu,cpuacct:/box\n", "cpu,cpuacct/box/cpu.cfs_quota_us": "100000\n",
      "cpu,cpuacct/box/cpu.cfs_period_us": "100000\n"}, 1),                        # v1: one CPU
    ({"cgroup": "4:cpu,cpuacct:/box\n", "cpu,cpuacct/box/cpu.cfs_quota_us": "-1\n",
      "cpu,cpuacct/box/cpu.cfs_period_us": "100000\n"}, None),                     # v1: unlimited
    ({"cgroup": "1:name=systemd:/\n"}, None),                                       # no cpu controller
])
def test_a_containers_cpu_quota_bounds_the_count(tmp_path, monkeypatch, files, expected):
    for name, text in files.items():
        path = tmp_path / ("proc_cgroup" if name == "cgroup" else f"sys/{name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    real_open = open

    def fake_open(path, *a, **k):
        path = os.fspath(path)
        if path == "/proc/self/cgroup":
            path = str(tmp_path / "proc_cgroup")
        elif path.startswith("/sys/fs/cgroup"):
            path = str(tmp_path / "sys") + path[len("/sys/fs/cgroup"):]
        return real_open(path, *a, **k)

    monkeypatch.setattr("builtins.open", fake_open)
    assert threads._cgroup_quota() == expected
    if expected:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
        assert threads.available_cpus() == expected


def test_set_num_threads_fixes_the_count_and_none_restores_the_default():
    default = fastbp.get_num_threads()
    fastbp.set_num_threads(1)
    assert fastbp.get_num_threads() == 1 and threads.is_pinned()
    fastbp.set_num_threads(None)
    assert fastbp.get_num_threads() == default and not threads.is_pinned()
    with pytest.raises(ValueError, match="between 1 and"):
        fastbp.set_num_threads(numba.config.NUMBA_NUM_THREADS + 1)
    with pytest.raises(TypeError, match="must be an int"):
        fastbp.set_num_threads(1.5)


def test_fastbp_leaves_numbas_thread_count_as_it_was():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 threads")
    numba.set_num_threads(1)
    try:
        X = np.random.default_rng(0).standard_normal((2048, 256))
        m = fastbp.MLP([256, 512, 10], seed=0)
        fastbp.set_num_threads(2)
        m.fit(X, np.arange(2048) % 10, epochs=1, batch_size=512, verbose=0)
        m.predict(X)
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


def test_load_monitor_leaves_out_the_cpus_other_processes_keep_busy(monkeypatch):
    mon = threads.LoadMonitor(4)
    samples = iter([
        (1.0, 10.0, 5.0),     # wall s, CPU-s busy on our CPUs, CPU-s we used
        (2.0, 14.0, 9.0),     # others used 0 CPUs: all 4 threads
        (3.0, 17.9, 12.0),    # others 0.9 CPUs: 3
        (4.0, 21.9, 14.0),    # others 2.0: 2
        (4.01, 30.0, 14.0),   # too short an interval to judge: as before
        (5.0, 34.0, 14.0),    # others 4 (and more than the limit): never below 1
    ])
    monkeypatch.setattr(mon, "_sample", lambda: next(samples))
    mon._last = mon._sample()
    assert [mon.next_threads() for _ in range(5)] == [4, 3, 2, 2, 1]


def test_on_a_busy_machine_the_faster_of_the_free_cpus_and_all_runs(monkeypatch):
    mon = threads.LoadMonitor(4)
    monkeypatch.setattr(mon, "_update_free", lambda: 3)         # others keep one CPU busy
    rates = {}
    chosen = []

    def stretch(seconds):
        n = mon.next_threads(rates)
        chosen.append(n)
        mon.ran(rates, n, 10 * seconds if n == 4 else 5 * seconds, seconds)   # 4 threads: 10 steps/s, 3: 5
    stretch(0.01)
    stretch(0.01)
    assert chosen == [3, 4]                   # a stretch this short does not decide: each measured in turn
    for _ in range(4):
        stretch(0.1)
    assert chosen[2:] == [3, 4, 3, 4]         # until each has run MEASURE_SECONDS
    del chosen[:]
    probes = []
    for _ in range(8 + 16 + 32 + 64 + 128 + 128):
        stretch(0.25)
        probes.append(mon.probing)
    # the faster; the other probed after 8 stretches, then twice as many after each losing probe
    assert [i + 1 for i, p in enumerate(probes) if p] == [8, 24, 56, 120, 248, 376]
    assert all(n == 3 for n, p in zip(chosen, probes) if p) and all(n == 4 for n, p in zip(chosen, probes) if not p)
    for _ in range(3):
        mon.ran(rates, 3, 100, 1.0)                             # the load changed: 3 threads now faster
    assert [mon.next_threads(rates) for _ in range(3)] == [3, 3, 3]
    assert rates["probe"][1] == mon.PROBE_EVERY                 # a new choice: the old one probed soon
    monkeypatch.setattr(mon, "_update_free", lambda: 4)         # quiet again: every CPU, rates forgotten
    assert mon.next_threads(rates) == 4 and rates == {}


@pytest.mark.skipif(threads.partition_cpus() < 2, reason="needs 2 CPUs")
def test_a_fits_first_stretch_does_not_measure_its_thread_count(monkeypatch):
    """The first stretch of steps touches the fit's fresh buffers (optimizer state, gradients)
    first: recorded, it made the count it ran on (the free CPUs, measured first) look slower
    than all of them beside a neighbour, and the slower count won."""
    mon = threads.LoadMonitor(2)
    monkeypatch.setattr(mon, "_update_free", lambda: 1)         # a neighbour keeps one CPU busy
    monkeypatch.setattr(threads, "load_monitor", lambda: mon)
    chosen, recorded = [], []
    next_threads, ran = mon.next_threads, threads.LoadMonitor.ran

    def counting_next(rates=None):
        chosen.append(next_threads(rates))
        return chosen[-1]

    def recording_ran(rates, n_threads, steps, seconds):
        recorded.append(n_threads)
        ran(rates, n_threads, steps, seconds)
    monkeypatch.setattr(mon, "next_threads", counting_next)
    monkeypatch.setattr(mon, "ran", recording_ran)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((3000, 64)), rng.integers(0, 4, 3000)
    model = fastbp.MLP([64, 128, 96, 4], seed=0)
    assert model.kernel_parts(300) is not None                  # parallel kernels: the load is followed
    model.fit(X, y, epochs=2, batch_size=300, verbose=0)
    assert chosen[0] == 1 and len(chosen) >= 2 and recorded == chosen[1:]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_a_busy_neighbour_takes_a_thread_away():
    if threads.partition_cpus() < 2:
        pytest.skip("needs 2 CPUs")
    hog = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time() + 30\nwhile time.time() < t: pass"])
    try:
        mon = threads.LoadMonitor(2)
        decisions = []
        for _ in range(10):
            time.sleep(0.2)
            decisions.append(mon.next_threads())
    finally:
        hog.kill()
        hog.wait()
    assert decisions[-3:] == [1, 1, 1], decisions


@numba.njit(parallel=True)
def _take_all(parts, ran, by):
    next_part = np.zeros(1, np.int64)
    for _ in numba.prange(parts):
        p = take(next_part)
        while p < parts:
            ran[p] += 1
            by[p] = numba.get_thread_id()
            p = take(next_part)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("parts", [1, 2, 3, 8, 33])
def test_threads_take_every_part_once(parts, n_threads):
    if n_threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("needs 2 threads")
    ran, by = np.zeros(parts, np.int64), np.full(parts, -1, np.int64)
    with threads.using(n_threads):
        _take_all(parts, ran, by)
    assert (ran == 1).all()
    assert set(by) <= set(range(n_threads))
