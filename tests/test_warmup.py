"""fastbp compile / fastbp.compile_kernels: after it, no fit, predict or evaluate compiles anything."""
import json
import os
import subprocess
import sys

import pytest

import fastbp
from processes import finished, start_python

SESSION = """
import numpy as np, fastbp
rng = np.random.default_rng(1)
for sizes, act, out, n, batch in [([7, 30, 5], "tanh", "softmax", 500, 16),
                                   ([100, 300, 4], "sigmoid", "sigmoid", 700, 128),
                                   ([20, 64, 64, 1], "relu", "linear", 900, 300)]:
    X = rng.standard_normal((n, sizes[0])).astype(np.float32)
    if out == "softmax":
        y = rng.integers(0, sizes[-1], n)
    elif out == "sigmoid":
        y = (rng.random((n, sizes[-1])) > 0.5).astype(np.float32)
    else:
        y = rng.standard_normal((n, 1)).astype(np.float32)
    m = fastbp.MLP(sizes, activation=act, output=out, seed=2)
    m.fit(X, y, epochs=2, batch_size=batch, optimizer=fastbp.Momentum(lr=0.01, momentum=0.9),
          validation_data=(X[:50], y[:50]), sample_weight=rng.random(n), verbose=0,
          callbacks=[fastbp.EarlyStopping(monitor="val_loss")])
    m.predict(X, batch_size=77)
    m.evaluate(X, y)
    m.loss_and_grad(X[:5], y[:5])
    fastbp.MLP(sizes, activation=act, output=out, seed=2, deterministic=True).fit(X, y, batch_size=batch, verbose=0)
big = fastbp.MLP([300, 256, 10], seed=0)                  # more params than one thread updates
Xb, yb = rng.standard_normal((600, 300)).astype(np.float32), rng.integers(0, 10, 600)
big.train_step(Xb[:64], yb[:64], fastbp.Adam())
for threads in (fastbp.get_num_threads(), 1):
    fastbp.set_num_threads(threads)
    big.fit(Xb, yb, epochs=1, batch_size=64, verbose=0)
    big.predict(Xb)
import scipy.sparse as sp
Xs = sp.random(500, 300, density=0.05, format="csr", random_state=3, dtype=np.float32)
for sizes, batch in (([300, 256, 10], 64), ([300, 4, 3], 32)):      # batch-major; feature-major
    m = fastbp.MLP(sizes, seed=0)
    m.fit(Xs, rng.integers(0, sizes[-1], 500), epochs=1, batch_size=batch,
          validation_data=(Xs[:50], yb[:50] % sizes[-1]), verbose=0)
    m.predict(Xs)
"""


def _cache_files(folder):
    return {os.path.join(d, f) for d, _, files in os.walk(folder) for f in files}


# Every Python process of the test (the command's workers, and the processes they fork) appends
# "pid kernel" to compiled.txt for each kernel it compiled, and its pid to started.txt as it
# starts: a sitecustomize on PYTHONPATH.
LOG_COMPILES = """
import os
with open(os.path.join(os.environ["COMPILE_LOG_FOLDER"], "started.txt"), "a") as f:
    f.write(f"{os.getpid()}\\n")
from numba.core import event
class Listener(event.Listener):
    def on_start(self, ev):
        pass
    def on_end(self, ev):
        d = ev.data["dispatcher"]
        if tuple(ev.data["args"]) in d.overloads:       # not a compile load_cached stopped at its start
            with open(os.path.join(os.environ["COMPILE_LOG_FOLDER"], "compiled.txt"), "a") as f:
                f.write(f"{os.getpid()} {d.py_func.__name__}\\n")
event.register("numba:compile", Listener())
"""
# ``fastbp compile`` as the command line runs it, printing its process id first
COMPILE_COMMAND = """
import os, runpy, sys
print(os.getpid(), file=sys.stderr)
sys.argv = ["fastbp", "compile", "--dtype", "float32"]
runpy.run_module("fastbp", run_name="__main__")
"""


def _logging_env(folder):
    site = os.path.join(folder, "site")
    os.makedirs(site, exist_ok=True)
    with open(os.path.join(site, "sitecustomize.py"), "w") as f:
        f.write(LOG_COMPILES)
    return {"COMPILE_LOG_FOLDER": folder, "PYTHONPATH": os.pathsep.join([site] + sys.path)}


def _start_compile(folder):
    return start_python(COMPILE_COMMAND, folder, env=_logging_env(folder)), folder


@pytest.mark.slow
@pytest.mark.background.with_args(_start_compile)
def test_after_fastbp_compile_other_nets_compile_nothing(background):
    """From an empty cache, ``fastbp compile --dtype float32`` fills it with every kernel: a session
    with other sizes, activations, losses, optimizer, batch sizes, validation data, sample weights
    and deterministic mode then adds no compiled code to the cache. With a second CPU, its
    workers compiled everything and the command's own process only loaded it. On the way, every
    fit of a batch-major net had its kernels compiled in child processes (epoch.compile_ahead),
    run_batches in one that compiled none of the layer, loss and optimizer kernels it calls (their
    return types are declared), and the argument types network.callees predicts are the ones
    run_batches calls them with, or the workers' own processes would have compiled them."""
    proc, folder = background
    out, err = finished(proc, folder)
    assert "float32: every kernel compiled or loaded in" in out
    main = err.split()[0]
    compiled = {}
    with open(os.path.join(folder, "compiled.txt")) as f:
        for line in f:
            pid, name = line.split()
            compiled.setdefault(pid, set()).add(name)
    assert any("run_batches_small" in names for names in compiled.values())
    assert any("layer_task" in names for names in compiled.values())
    callees = {"layer_task", "layer_region", "output_loss", "apply_update"}
    if fastbp.threads.available_cpus() > 1:       # else nothing is compiled apart
        with open(os.path.join(folder, "started.txt")) as f:
            assert len(f.read().split()) == 3       # the command and its two workers
        assert main not in compiled, compiled[main]
        children = [names for pid, names in compiled.items() if "run_batches" in names]
        assert children and all(not callees & names for names in children), children
    else:
        assert "run_batches_small" in compiled[main]
    cache = os.path.join(folder, "cache")
    before = _cache_files(cache)
    assert any(f.endswith(".nbc") for f in before)
    finished(start_python(SESSION, folder, name="session"), folder, name="session")
    assert _cache_files(cache) == before
    # again, with every kernel in the cache: it loads them, in its own process only
    again = os.path.join(folder, "again")
    os.mkdir(again)
    env = dict(_logging_env(again), NUMBA_CACHE_DIR=cache)
    out, _ = finished(start_python(COMPILE_COMMAND, again, env=env), again)
    assert "float32: every kernel compiled or loaded in" in out
    with open(os.path.join(again, "started.txt")) as f:
        assert len(f.read().split()) == 1
    assert not os.path.exists(os.path.join(again, "compiled.txt"))
    assert _cache_files(cache) == before


@pytest.mark.parametrize("dtypes", [("float16",), (), "int8", ("float32", "double")])
def test_compile_kernels_rejects_unknown_dtypes(dtypes):
    with pytest.raises(ValueError, match="dtypes: expected some of"):
        fastbp.compile_kernels(dtypes)


@pytest.mark.parametrize("dtypes", [None, 5, 3.0])
def test_compile_kernels_rejects_what_is_not_a_dtype_name_or_a_sequence(dtypes):
    with pytest.raises(TypeError, match="dtypes: expected a dtype name or a sequence"):
        fastbp.compile_kernels(dtypes)


def test_load_cached_says_whether_a_kernel_is_ready_without_compiling_it():
    from numba import njit, types

    from fastbp.kernels.jit import load_cached

    def add_one(x):
        return x + 1

    k = njit(add_one)
    assert not load_cached(k, (types.int64,))
    assert k.signatures == []                      # nothing compiled, nothing half-made
    assert k(1) == 2
    assert load_cached(k, (types.int64,))
    assert not load_cached(k, (types.float64,))


def test_compile_apart_compiles_in_children_and_leaves_the_callers_loaded(tmp_path):
    """Each group compiles in a child into the on-disk cache, then ``then`` in another child that
    loads the groups' kernels; this process compiles nothing, hears one COMPILE_ELSEWHERE event,
    and has the callers of ``then`` loaded from the cache."""
    (tmp_path / "pair.py").write_text(
        "from numba import njit\n"
        "@njit(cache=True)\ndef callee(x):\n    return x + 1\n"
        "@njit(cache=True)\ndef other(x):\n    return x * 3\n"
        "@njit(cache=True)\ndef caller(x):\n    return callee(x) * 2 + other(x)\n")
    script = """
from numba import types
from numba.core import event
from fastbp.kernels.jit import COMPILE_ELSEWHERE, compile_apart
from pair import callee, caller, other
heard = []
class Listener(event.Listener):
    def on_start(self, ev):
        heard.append((ev.kind, ev.data))
    def on_end(self, ev):
        pass
event.register("numba:compile", Listener())
event.register(COMPILE_ELSEWHERE, Listener())
sig = (types.int64,)
compile_apart([[(callee, sig)], [(other, sig)]], then=[(caller, sig)])
assert [kind for kind, _ in heard] == [COMPILE_ELSEWHERE], heard
assert heard[0][1]["kernels"] == [callee, other]
assert sig in caller.overloads and not callee.overloads and not other.overloads   # loaded, not compiled here
assert caller(3) == 17
assert [kind for kind, _ in heard] == [COMPILE_ELSEWHERE]
"""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(tmp_path))
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300, cwd=tmp_path)


def test_compile_apart_children_compile_without_the_garbage_collector(tmp_path):
    """A child that only compiles runs with Python's cyclic collector off (it ends when done, and
    collecting numba's garbage costs it about a tenth of its time); this process keeps it on."""
    (tmp_path / "one.py").write_text("from numba import njit\n@njit(cache=True)\ndef one(x):\n    return x + 1\n")
    script = """
import gc, os
from numba import types
from numba.core import event
from fastbp.kernels.jit import compile_apart
from one import one
class Listener(event.Listener):
    def on_start(self, ev):
        with open("seen.txt", "a") as f:
            f.write(f"{os.getpid()} {gc.isenabled()}\\n")
    def on_end(self, ev):
        pass
event.register("numba:compile", Listener())
compile_apart([[(one, (types.int64,))]])
seen = [line.split() for line in open("seen.txt")]
assert seen and all(pid != str(os.getpid()) and enabled == "False" for pid, enabled in seen), seen
assert gc.isenabled()
"""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(tmp_path))
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300, cwd=tmp_path)


def test_compile_apart_forks_only_when_no_other_thread_holds_numbas_compiler_lock(tmp_path):
    """A thread of this process compiling (holding numba's compiler lock) when compile_apart forks
    would leave the lock held forever in the child, whose compile then never ends: compile_apart
    waits for the lock before it forks."""
    (tmp_path / "one.py").write_text("from numba import njit\n@njit(cache=True)\ndef one(x):\n    return x + 1\n")
    script = """
import threading, time
from numba import types
from numba.core.compiler_lock import global_compiler_lock
from fastbp.kernels.jit import compile_apart, load_cached
from one import one
held = threading.Event()
def hold():
    with global_compiler_lock:
        held.set()
        time.sleep(1.0)
t = threading.Thread(target=hold)
t.start()
held.wait()
compile_apart([[(one, (types.int64,))]])
t.join()
assert load_cached(one, (types.int64,))          # the child compiled it into the cache
assert one(1) == 2
"""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(tmp_path))
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=120, cwd=tmp_path)


# A script's prologue: ``compiled_here`` lists the kernels this process compiles (not those
# compile_apart's children compile, nor a compile load_cached stops at its start).
COMPILED_HERE = """
import os
import numpy as np, fastbp
from numba.core import event
parent = os.getpid()
compiled_here = []
class Listener(event.Listener):
    def on_start(self, ev):
        pass
    def on_end(self, ev):
        d = ev.data["dispatcher"]
        if os.getpid() == parent and tuple(ev.data["args"]) in d.overloads:
            compiled_here.append(d.py_func.__name__)
event.register("numba:compile", Listener())
rng = np.random.default_rng(0)
"""


def _run_from_empty_cache(tmp_path, body):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    subprocess.run([sys.executable, "-c", COMPILED_HERE + body], env=env, check=True, timeout=300, cwd=tmp_path)


@pytest.mark.skipif(fastbp.threads.available_cpus() < 2, reason="a fit compiles apart only with a second CPU")
def test_a_small_nets_first_fit_compiles_its_kernels_in_a_child(tmp_path):
    """The feature-major kernels of a small net compile in a child process from an empty cache
    (the fitting process only loads them), and predicting then loads the same entry point."""
    _run_from_empty_cache(tmp_path, """
X, y = rng.standard_normal((150, 4)), rng.integers(0, 3, 150)
m = fastbp.MLP([4, 8, 3], seed=0)
m.fit(X, y, epochs=2, batch_size=16, verbose=0)
m.predict(X)
assert m.workspace(16, False).small
assert not {"run_batches_small", "small_batch_gradient", "output_loss"} & set(compiled_here), compiled_here
""")


@pytest.mark.skipif(fastbp.threads.available_cpus() < 2, reason="kernels compile apart only with a second CPU")
def test_a_first_prediction_compiles_its_kernels_in_children(tmp_path):
    """From an empty cache, predicting, evaluating and loss_and_grad with a new model (small and
    batch-major) compile their kernels in child processes; this process only loads them."""
    _run_from_empty_cache(tmp_path, """
for sizes in ([4, 8, 3], [64, 1024, 10]):
    X, y = rng.standard_normal((300, sizes[0])), rng.integers(0, sizes[-1], 300)
    m = fastbp.MLP(sizes, seed=0)
    m.predict(X)
    m.evaluate(X, y)
    m.loss_and_grad(X[:256], y[:256])
assert not {"run_batches", "run_batches_small", "layer_task", "output_loss"} & set(compiled_here), compiled_here
""")

GROUP = """
import json, sys
import numpy as np, fastbp
from numba.core import event
import fastbp.kernels.epoch as E

group = int(sys.argv[1])
started = {}
class Listener(event.Listener):
    def on_start(self, ev):
        d = ev.data["dispatcher"]
        started[d.py_func.__module__ + "." + d.py_func.__qualname__] = d
    def on_end(self, ev):
        pass
event.register("numba:compile", Listener())

class Done(Exception):
    pass

def one_group(groups, then=()):
    for k, sig in groups[group]:
        k.compile(tuple(sig))
    raise Done
E.compile_apart = one_group
# two of the fits below share run_batches' types: the second must not find it cached and run
E.load_cached = lambda kernel, sig: False

fastbp.set_num_threads(2)
rng = np.random.default_rng(0)
fits = []
for sizes, extra in (([64, 1024, 10], {}),
                     ([64, 256, 256, 10], dict(activation=["gelu", "tanh"], norm=["batch", "layer"], dropout=0.1,
                                               l2=1e-4))):
    X, y = rng.standard_normal((2048, sizes[0])).astype(np.float32), rng.integers(0, sizes[-1], 2048)
    for opt in (fastbp.Adam(), fastbp.Lion()):
        started.clear()
        try:
            fastbp.MLP(sizes, seed=0, **extra).fit(X, y, epochs=1, batch_size=256, optimizer=opt, verbose=0)
        except Done:
            pass
        # what this fit's group compiled into the on-disk cache
        fits.append(sorted(n for n, d in started.items() if type(d._cache).__name__ != "NullCache" and d.overloads))
print(json.dumps(fits))
"""


def _start_groups(folder):
    groups = []
    for group in ("0", "1", "2"):
        os.mkdir(os.path.join(folder, group))
        groups.append((start_python(GROUP, os.path.join(folder, group), group), os.path.join(folder, group)))
    return groups


@pytest.mark.slow
@pytest.mark.background.with_args(_start_groups)
def test_the_three_groups_compiled_at_once_share_no_cached_kernel(background):
    """epoch.compile_ahead compiles run_batches' layer kernels, its loss and optimizer kernels, and
    run_batches itself in three child processes at once. A cached kernel reached from two of them
    would be compiled twice (by each process): none is, for plain and for featured nets, each
    group from an empty cache of its own (fit after fit, the kernels of one fit compared)."""
    layers, rest, loop = (json.loads(finished(proc, folder)[0].strip().splitlines()[-1]) for proc, folder in background)
    assert "fastbp.kernels.dense.layer_task" in layers[0] and "fastbp.kernels.losses.output_loss" in rest[0]
    assert "fastbp.kernels.network.run_batches" in loop[0]
    for fit in zip(layers, rest, loop):
        a, b, c = map(set, fit)
        assert not a & b and not a & c and not b & c, (a & b, a & c, b & c)


def test_workers_that_cannot_start_leave_the_compiling_to_this_process(monkeypatch):
    """No interpreter to start workers with (an embedded Python): _in_workers returns quietly and
    compile_kernels' own run compiles everything."""
    from fastbp import warmup
    monkeypatch.setattr(sys, "executable", os.path.join(os.sep, "no", "such", "python"))
    warmup._in_workers("float32")
