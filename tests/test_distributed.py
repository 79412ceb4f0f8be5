"""Data-parallel training (fastbp.distributed) under a real ``mpiexec -n 2``.

The MPI side runs scripts in tests/mpi_scripts/ as subprocesses; this process replays the
same training in one process with plain ``model.fit`` and compares. Skipped only when no MPI
launcher or mpi4py is installed (``pip install ".[mpi]"``; the test extra includes them).
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fastbp
from fastbp.distributed import find_mpiexec

SCRIPTS = Path(__file__).parent / "mpi_scripts"
sys.path.insert(0, str(SCRIPTS))
import cases  # noqa: E402

RANKS = 2


MPIEXEC = find_mpiexec()
try:
    import mpi4py  # noqa: F401  (imports no MPI library, initializes nothing)
    HAVE_MPI4PY = True
except ImportError:
    HAVE_MPI4PY = False

pytestmark = [pytest.mark.mpi, pytest.mark.slow]
pytestmark.append(pytest.mark.skipif(MPIEXEC is None or not HAVE_MPI4PY,
                                reason="needs an MPI launcher and mpi4py: pip install '.[mpi]' (mpi4py, mpich)"))


def child_env():
    env = dict(os.environ)
    for var in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS"):
        env.pop(var, None)
    # The ranks import the same fastbp as this process.
    src = str(Path(fastbp.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([src] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    # One thread per rank: the ranks share the machine's cores.
    env.update(NUMBA_NUM_THREADS="1")
    # Open MPI refuses root and more ranks than cores unless told; MPICH ignores these.
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1")
    return env


def mpi_command(script, *args, n=RANKS):
    return [MPIEXEC, "-n", str(n), sys.executable, str(SCRIPTS / script), *map(str, args)]


def run_mpi(script, *args, n=RANKS, timeout=600):
    """(returncode, stdout, stderr) of ``mpiexec -n n python script args``; fails on a hang.

    The timeout covers numba compiling the kernels in fresh processes on a first run.
    """
    p = subprocess.Popen(mpi_command(script, *args, n=n), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=child_env(), start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail(f"mpiexec -n {n} {script} {' '.join(map(str, args))} still running after {timeout}s "
                    f"(ranks waiting on each other?)\nstdout:\n{out}\nstderr:\n{err}")
    return p.returncode, out, err


def results(folder):
    """JSON records the ranks wrote, one file each (mpiexec may interleave their stdout)."""
    return [json.loads(line) for path in sorted(Path(folder).glob("rank*.json*"))
            for line in path.read_text().splitlines() if line]


# ---- equivalence with one process ------------------------------------------------------------
@pytest.fixture(scope="module")
def mpi_run(tmp_path_factory):
    """All cases of cases.py trained once under mpiexec; (results dict, output folder)."""
    out = tmp_path_factory.mktemp("mpi_fit")
    code, stdout, stderr = run_mpi("fit_cases.py", out)
    assert code == 0, f"fit_cases.py failed:\n{stdout}\n{stderr}"
    with np.load(out / "results.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files}, out


def single_process(name, epochs=None, scheduler=True):
    X, y, _, _ = cases.data(name)
    m = cases.model(name)
    hist = m.fit(X, y, **cases.fit_kwargs(name, epochs=epochs, scheduler=scheduler))
    return m, hist


def assert_same_run(res, key, m, hist, float64):
    """The MPI run ``key`` ended where the one-process run (m, hist) did."""
    tol = dict(rtol=0, atol=1e-12) if float64 else dict(rtol=2e-4, atol=2e-5)
    assert int(res[f"{key}/epochs_run"]) == len(hist.epoch)
    assert int(res[f"{key}/iterations"]) == m.optimizer.iterations
    diff = np.abs(res[f"{key}/params"] - m.params).max()
    np.testing.assert_allclose(res[f"{key}/params"], m.params, **tol,
                               err_msg=f"{key}: params differ from one process by up to {diff:.3g}")
    # batch norm's running statistics (empty without batch norm)
    np.testing.assert_allclose(res[f"{key}/buffers"], m.buffers, **tol, err_msg=f"{key}: running statistics")
    names = {k.split("/")[-1] for k in res if k.startswith(f"{key}/history/")}
    assert names == set(hist.history)
    for name in names:
        np.testing.assert_allclose(res[f"{key}/history/{name}"], hist.history[name],
                                   rtol=1e-12 if float64 else 1e-5, err_msg=f"{key}: history[{name!r}]")
    # Every rank ends with exactly rank 0's params, statistics and history, bit for bit.
    assert float(res[f"{key}/params_spread"]) == 0.0
    assert float(res[f"{key}/buffers_spread"]) == 0.0
    assert all(float(res[f"{key}/history_spread/{name}"]) == 0.0 for name in names)


@pytest.mark.parametrize("name", list(cases.CASES))
def test_two_ranks_match_one_process(mpi_run, name):
    res, _ = mpi_run
    m, hist = single_process(name)
    assert_same_run(res, name, m, hist, cases.CASES[name]["dtype"] == "float64")
    assert float(res[f"{name}/allreduce_seconds"]) > 0          # the steps did go through MPI


@pytest.fixture(scope="module")
def mpi_run_three_ranks(tmp_path_factory):
    """The batch-norm cases trained under mpiexec -n 3: their last minibatch of 2 rows leaves
    one rank no row (on 2 ranks, each has one)."""
    out = tmp_path_factory.mktemp("mpi_fit_3")
    code, stdout, stderr = run_mpi("fit_cases.py", out, *cases.BATCH_NORM_CASES, n=3)
    assert code == 0, f"fit_cases.py failed:\n{stdout}\n{stderr}"
    with np.load(out / "results.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("name", cases.BATCH_NORM_CASES)
def test_batch_norm_on_three_ranks_matches_one_process(mpi_run_three_ranks, name):
    assert cases.CASES[name]["n"] % cases.CASES[name]["batch"] == 2
    m, hist = single_process(name)
    assert_same_run(mpi_run_three_ranks, name, m, hist, float64=True)
    assert m.buffers.size and not np.array_equal(m.buffers, cases.model(name).buffers)   # the statistics moved


def test_batch_norm_refusals_and_failures_reach_every_rank(tmp_path):
    """A global minibatch of one row is refused on every rank before anything changes; an error
    inside a rank's step, between batch norm's reductions, is raised on every rank (no hang); a
    fit after both trains."""
    code, out, err = run_mpi("batch_norm_errors.py", tmp_path)
    assert code == 0, f"{out}\n{err}"
    by = {}
    for r in results(tmp_path):
        by.setdefault(r["scenario"], {})[r["rank"]] = r
    assert all(set(ranks) == {0, 1} for ranks in by.values()), by
    for o in by["one_row_minibatch"].values():
        assert o["error"] == "ValueError" and "one of a single row" in o["message"] and o["unchanged"], o
    for o in by["step_fails_on_rank_1"].values():
        assert o["error"] == "MemoryError" and "rank 1 of 2" in o["message"], o
    for o in by["still_works_after"].values():
        assert o["error"] is None and not o["unchanged"], o


def test_the_cases_cover_both_kernel_families():
    """A rank's share of a minibatch takes the small-network kernels in every case but
    adam_blas, adam_sparse_blas and the batch-norm cases, which take the batch-major BLAS ones
    (a network with norm always does): both are compared with one process above."""
    small = {name: cases.model(name).workspace(-(-c["batch"] // RANKS)).small for name, c in cases.CASES.items()}
    assert [name for name, s in small.items() if not s] == ["adam_blas", "adam_sparse_blas", *cases.BATCH_NORM_CASES]


def test_streaming_a_memmap_keeps_every_rank_resident_memory_as_one_process(tmp_path):
    """As in one process: each rank reads only its rows from the file and drops the pages
    between chunks (sized to map at most 8 MiB here), so no rank holds more of a 64 MiB file
    than one process streaming it does, far from all of it."""
    code, out, err = run_mpi("memmap_rss.py", tmp_path)
    assert code == 0, f"{out}\n{err}"
    by_rank = {r["rank"]: r for r in results(tmp_path)}
    assert set(by_rank) == {0, 1}, by_rank
    alone = by_rank[0]["one_process_mib"]
    grown = {r: v["grown_mib"] for r, v in by_rank.items()}
    assert alone < 40, f"one process grew by {alone:.0f} MiB streaming a 64 MiB file"
    assert all(g <= 1.1 * alone + 4 for g in grown.values()), f"ranks grew by {grown} MiB, one process {alone:.0f}"


# ---- early stopping, resume and callbacks in the cases above ----------------------------------
def test_early_stopping_on_rank_0_stops_every_rank(mpi_run):
    # Guards the case itself: its EarlyStopping must stop early and restore older params, so
    # that the comparison above covers the broadcast stop flag and the final params broadcast.
    res, _ = mpi_run
    name = "nesterov_empty_share"
    m, hist = single_process(name)
    assert len(hist.epoch) < cases.CASES[name]["epochs"]
    assert int(res[f"{name}/epochs_run"]) == len(hist.epoch)


def test_resume_from_checkpoint_matches_uninterrupted_run(mpi_run):
    res, _ = mpi_run
    assert bool(res["resume/checkpoint_exists"])
    m, hist = single_process(cases.RESUME_CASE, epochs=cases.RESUME_EPOCHS, scheduler=False)
    assert_same_run(res, "resume", m, hist, True)


def test_callbacks_run_on_rank_0_only(mpi_run):
    _, out = mpi_run
    epochs = cases.CASES["adam_uneven"]["epochs"]
    expected = ["train_begin"] + [f"epoch_{w} {e}" for e in range(epochs) for w in ("begin", "end")] + ["train_end"]
    assert (out / "calls_rank0.txt").read_text().split("\n")[:-1] == expected
    assert not any((out / f"calls_rank{r}.txt").exists() for r in range(1, RANKS))


# ---- failures -------------------------------------------------------------------------------
def test_one_rank_of_the_node_compiles_and_the_other_loads(tmp_path):
    """From an empty cache, rank 0 compiles the fits' kernels (in its compiling children where it
    has a second CPU) while rank 1 waits; rank 1 then compiles none itself."""
    env = dict(child_env(), NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    p = subprocess.run(mpi_command("node_first.py", tmp_path), capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"
    by = {r["rank"]: r for r in results(tmp_path)}
    assert by[1]["compiled"] == [] and by[1]["elsewhere"] == 0, by[1]
    if len(os.sched_getaffinity(0)) > 1:
        assert by[0]["elsewhere"] >= 2, by[0]          # both fits' kernels compiled in its children
    else:
        assert "layer_task" in by[0]["compiled"], by[0]


def test_failure_on_one_rank_raises_the_same_error_on_every_rank(tmp_path):
    code, out, err = run_mpi("failures.py", "caught", tmp_path, timeout=300)
    assert code == 0, f"{out}\n{err}"
    by = {}
    for r in results(tmp_path):
        by.setdefault(r["scenario"], {})[r["rank"]] = r
    expected = {
        "nan_on_one_rank": ("ValueError", ["rank 1 of 2", "X[30:60]", "nan"]),
        "different_batch_size": ("ValueError", ["rank 1 of 2", "batch_size: 17 on rank 1 but 16 on rank 0"]),
        "callback_fails_on_rank_0": ("RuntimeError", ["rank 0 of 2", "callback failed at the end of epoch 1"]),
        "diverges_raise": ("TrainingDiverged", ["training diverged in epoch 0", "minibatch"]),
        "diverges_stop": (None, []),
        "step_fails_on_rank_1": ("MemoryError", ["rank 1 of 2", "simulated: no memory"]),
        "still_works_after": (None, []),
        "params_drift_on_rank_1": (None, []),
    }
    assert set(by) == set(expected) and all(set(v) == {0, 1} for v in by.values()), by
    for scenario, (error, fragments) in expected.items():
        r0, r1 = by[scenario][0], by[scenario][1]
        assert r0["error"] == r1["error"] == error, (scenario, r0, r1)
        assert r0["message"] == r1["message"], scenario
        for fragment in fragments:
            assert fragment in r0["message"], (scenario, r0["message"])
        assert r0["crc"] == r1["crc"], f"{scenario}: ranks hold different params"
    # Failing before any update leaves rank 0's start; divergence restores it.
    for scenario in ("nan_on_one_rank", "different_batch_size", "diverges_raise", "diverges_stop"):
        assert by[scenario][0]["crc"] == by[scenario][0]["crc_start"], scenario
    assert by["still_works_after"][0]["crc"] != by["still_works_after"][0]["crc_start"]
    # Drift on rank 1 after every epoch is repaired from rank 0 before the next, so the run ends
    # where the same fit without drift did; rank 0 says so.
    assert by["params_drift_on_rank_1"][0]["crc"] == by["still_works_after"][0]["crc"]
    assert any("params differed between ranks" in w for w in by["params_drift_on_rank_1"][0]["warnings"])
    assert not any("params differed" in w for w in by["still_works_after"][0]["warnings"])


def test_uncaught_error_on_one_rank_ends_every_rank(tmp_path):
    code, out, err = run_mpi("failures.py", "uncaught", tmp_path, timeout=300)
    assert code != 0
    assert "fit returned" not in out
    # Both ranks end with the same error, not only the rank with the bad row.
    ends = results(tmp_path)
    assert sorted(r["rank"] for r in ends) == list(range(RANKS)), err
    assert len({(r["error"], r["message"]) for r in ends}) == 1, ends
    assert ends[0]["error"] == "ValueError" and ends[0]["message"].startswith("rank 1 of 2: X[30:60]: ")
    assert "nan" in ends[0]["message"]


def test_error_outside_the_protocol_aborts_instead_of_hanging():
    code, out, err = run_mpi("failures.py", "alone", timeout=300)
    assert code != 0
    assert "fit returned" not in out
    assert "rank 1 of 2 failed alone; aborting all ranks" in err


def test_ctrl_c_stops_every_rank_after_the_same_update(tmp_path):
    p = subprocess.Popen(mpi_command("interrupt.py", tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=child_env(), start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        lines = []
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("EPOCH_END 1"):
                p.send_signal(signal.SIGINT)        # mpiexec forwards it to every rank
                break
        out, err = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail(f"ranks did not stop after Ctrl-C\n{out}\n{err}")
    out = "".join(lines) + out
    assert p.returncode == 0, f"{out}\n{err}"
    r = sorted(results(tmp_path), key=lambda r: r["rank"])
    assert len(r) == RANKS, out
    assert all(x["interrupted"] for x in r), r
    assert r[0]["crc"] == r[1]["crc"] and r[0]["iterations"] == r[1]["iterations"] > 0, r
    assert r[0]["epochs"] == r[1]["epochs"] >= 2


# ---- launcher detection ---------------------------------------------------------------------
def test_launched_comm_under_mpiexec(tmp_path):
    code = ("import json, sys; from fastbp.distributed import launched_comm; c = launched_comm(); "
            "r = c.Get_rank(); json.dump({'rank': r, 'size': c.Get_size()}, open(sys.argv[1] + f'/rank{r}.json', 'w'))")
    p = subprocess.run([MPIEXEC, "-n", str(RANKS), sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                       text=True, env=child_env(), timeout=300)
    assert p.returncode == 0, p.stderr
    assert sorted((r["rank"], r["size"]) for r in results(tmp_path)) == [(r, RANKS) for r in range(RANKS)]


def test_launched_comm_without_launcher_is_none_and_does_not_start_mpi():
    code = ("import sys; from fastbp.distributed import launched_comm; "
            "print(launched_comm(), 'mpi4py.MPI' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["None", "False"]


def test_comm_must_be_a_communicator():
    X = np.zeros((4, 2))
    with pytest.raises(TypeError, match="comm: expected an mpi4py intracommunicator"):
        fastbp.MLP([2, 2]).fit(X, np.zeros(4, int), comm="COMM_WORLD", verbose=0)
