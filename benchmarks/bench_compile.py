"""Whole-process start-up: a fresh python imports fastbp and trains one epoch of a workload.

Cold: numba's cache directory (NUMBA_CACHE_DIR) is an empty temporary directory, so every
kernel the run needs is compiled -- what a user pays on the first run after installing; timed
for one epoch of fit alone and for a first session (fit, then predict and evaluate), on the
tiny net (serial feature-major kernels) and the mnist net (parallel BLAS kernels).
Warm: the cache directory was filled by an earlier identical run, so kernels are loaded.
ColdCommand: the first ``fastbp train`` and ``fastbp compile`` after installing.
Each call is one process, seconds to a minute long: one sample per benchmark is enough.
"""
import os
import resource
import shutil
import subprocess
import sys
import tempfile

from .common import WORKLOADS


def child_code(workload, session=False):
    """Python source that trains one epoch of ``workload`` (then predicts and evaluates, if
    ``session``) on seeded data."""
    sizes, batch, n, lr = WORKLOADS[workload]
    code = f"""
import numpy as np
import fastbp
rng = np.random.default_rng(0)
X = rng.standard_normal(({n}, {sizes[0]}), dtype=np.float32)
y = (X @ rng.standard_normal(({sizes[0]}, {sizes[-1]}), dtype=np.float32)).argmax(1)
model = fastbp.MLP({sizes}, activation="relu", output="softmax", loss="cross_entropy", seed=0)
model.fit(X, y, epochs=1, batch_size={batch}, optimizer=fastbp.Adam(lr={lr}), verbose=0)
"""
    if session:
        code += "model.predict(X)\nmodel.evaluate(X, y)\n"
    return code


# Let the child pick the BLAS kernels a user's machine would (as the peer comparison does).
_DROP_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def run_child(cache_dir, code=None, args=None, cwd=None):
    """Run ``code`` (default: one tiny epoch), or ``python args``, in a fresh interpreter with
    NUMBA_CACHE_DIR=cache_dir; raise with its stderr on failure."""
    env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
    env["NUMBA_CACHE_DIR"] = cache_dir
    argv = [sys.executable] + (args if args is not None else ["-c", code or child_code("tiny")])
    p = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=cwd)
    if p.returncode != 0:
        raise RuntimeError(f"start-up child failed ({p.returncode}):\n{p.stderr}")


def children_peak_rss():
    """Largest peak RSS among this process's finished children, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class _OneShot:
    timeout = 900
    rounds = 1
    number = 1
    repeat = (1, 3, 30.0)    # one sample once a call has taken 30 s
    min_run_count = 1
    warmup_time = 0


class ColdStart(_OneShot):
    params = ["tiny", "mnist"]
    param_names = ["workload"]

    def setup(self, workload):
        self.cache_dir = tempfile.mkdtemp(prefix="fastbp-numba-cold-")

    def teardown(self, workload):
        shutil.rmtree(self.cache_dir, ignore_errors=True)

    def time_cold_start(self, workload):
        """import + compile every kernel of one epoch into an empty cache + the epoch."""
        run_child(self.cache_dir, child_code(workload))

    def time_cold_first_session(self, workload):
        """import + compile into an empty cache + one epoch, predict and evaluate."""
        run_child(self.cache_dir, child_code(workload, session=True))


class ColdCommand(_OneShot):
    """The commands a new user runs first, each from an empty cache: ``fastbp train`` (the
    embedded digits data, its default network; the target is ten seconds on a 2-core machine)
    and ``fastbp compile`` for float32 (every kernel variant)."""

    def setup(self):
        self.cache_dir = tempfile.mkdtemp(prefix="fastbp-numba-cold-")
        self.work_dir = tempfile.mkdtemp(prefix="fastbp-train-")

    def teardown(self):
        shutil.rmtree(self.cache_dir, ignore_errors=True)
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def time_fastbp_train(self):
        run_child(self.cache_dir, args=["-m", "fastbp", "train", "-q"], cwd=self.work_dir)

    def time_fastbp_compile(self):
        run_child(self.cache_dir, args=["-m", "fastbp", "compile", "--dtype", "float32"], cwd=self.work_dir)


class WarmStart(_OneShot):
    def setup_cache(self):
        # asv runs setup_cache and this class's benchmarks in one working directory.
        cache_dir = os.path.abspath("numba-cache")
        os.makedirs(cache_dir, exist_ok=True)
        run_child(cache_dir)                 # a cold start: fills the cache
        return {"cache_dir": cache_dir, "cold_peak_rss": children_peak_rss()}

    def time_warm_start(self, cache):
        """import + load every kernel of a tiny epoch from the cache + the epoch."""
        run_child(cache["cache_dir"])

    def track_cold_start_peak_rss(self, cache):
        """Peak RSS of the cold-start process (numba compilation), in bytes."""
        return cache["cold_peak_rss"]

    track_cold_start_peak_rss.unit = "bytes"
