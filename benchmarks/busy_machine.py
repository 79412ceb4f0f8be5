#!/usr/bin/env python3
"""fastbp on a busy machine: the same training beside CPU-bound neighbour processes.

A benchmark script, not part of the asv suite (importing it runs nothing). Each scenario starts
its neighbours itself (``python -c "while ...: pass"`` loops that end on their own after
--neighbour-seconds, and are ended by their process ids when the scenario is done), then trains
side by side, in fresh processes of their own, rounds alternating the systems:

  fastbp          fastbp's default threads: the CPUs the process may use, fewer while other
                  processes keep them busy
  fastbp_1thread  fastbp.set_num_threads(1)
  jax             JAX (jit, optax.adam) with its own default threads, in --peer-python

Run from the project root, with fastbp importable by the current python and jax/optax in a
python of their own (see ../shared/bench/peers.py or docs/performance.rst for the peers' venv):

    python benchmarks/busy_machine.py --peer-python .peers/bin/python             # mnist and wide
    python benchmarks/busy_machine.py mnist --neighbours 1 --rounds 5 --peer-python .peers/bin/python

Workloads (float32, softmax cross-entropy, Adam): mnist 784-256-128-10 relu, batch 256, 32768
samples, lr 1e-3; wide 1024-2048-2048-10 relu, batch 1024, 8192 samples, lr 1e-3. A child trains
--epochs epochs; the first is warm-up, the fastest of the others counts; the table shows the
median over rounds and fastbp's ratio to each system (above 1: fastbp is faster).
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from every child's environment.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

WORKLOADS = {
    "mnist": ([784, 256, 128, 10], 256, 32768, 1e-3),
    "wide": ([1024, 2048, 2048, 10], 1024, 8192, 1e-3),
}
SYSTEMS = ["fastbp", "fastbp_1thread", "jax"]
PEERS = {"jax"}
DROP_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def make_data(sizes, n):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, sizes[0]), dtype=np.float32)
    y = (X @ rng.standard_normal((sizes[0], sizes[-1]), dtype=np.float32)).argmax(1).astype(np.int64)
    return X, y


def timed(run_epoch, epochs):
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        run_epoch()
        times.append(time.perf_counter() - t0)
    return times


# ---- one system, in this process ---------------------------------------------------------------
def runner_fastbp(w, epochs, threads=None):
    import fastbp
    sizes, batch, n, lr = w
    X, y = make_data(sizes, n)
    if threads:
        fastbp.set_num_threads(threads)
    model, opt = fastbp.MLP(sizes, seed=0), fastbp.Adam(lr=lr)
    return timed(lambda: model.fit(X, y, epochs=1, batch_size=batch, optimizer=opt, verbose=0), epochs)


def runner_fastbp_1thread(w, epochs):
    return runner_fastbp(w, epochs, threads=1)


def runner_jax(w, epochs):
    import jax
    import jax.numpy as jnp
    import optax
    sizes, batch, n, lr = w
    X, y = make_data(sizes, n)
    key = jax.random.PRNGKey(0)
    params = []
    for i in range(len(sizes) - 1):
        key, k = jax.random.split(key)
        params.append((jax.random.normal(k, (sizes[i], sizes[i + 1])) * np.sqrt(2 / sizes[i]), jnp.zeros(sizes[i + 1])))

    def lossf(p, x, t):
        for W, b in p[:-1]:
            x = jax.nn.relu(x @ W + b)
        z = x @ p[-1][0] + p[-1][1]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), t[:, None], 1))

    tx = optax.adam(lr)

    @jax.jit
    def step(p, st, x, t):
        loss, g = jax.value_and_grad(lossf)(p, x, t)
        u, st = tx.update(g, st, p)
        return optax.apply_updates(p, u), st, loss

    state = [params, tx.init(params), None]
    rng = np.random.default_rng(0)

    def run_epoch():
        p, st, loss = state
        perm = rng.permutation(n)
        for s in range(0, n, batch):
            idx = perm[s:s + batch]
            p, st, loss = step(p, st, X[idx], y[idx])
        loss.block_until_ready()
        state[:] = [p, st, loss]
    return timed(run_epoch, epochs)


def child(system, name, epochs):
    times = globals()["runner_" + system](WORKLOADS[name], epochs)
    print(json.dumps({"steady_s": min(times[1:]) if len(times) > 1 else times[0]}))


# ---- parent ------------------------------------------------------------------------------------
def start_neighbours(count, seconds):
    """``count`` CPU-bound processes that end on their own after ``seconds``; their Popen objects."""
    code = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count)]


def stop_neighbours(procs):
    for p in procs:
        try:
            os.kill(p.pid, 9)
        except ProcessLookupError:
            pass
        p.wait()


def measure(name, systems, neighbours, args, env):
    res = {s: [] for s in systems}
    procs = start_neighbours(neighbours, args.neighbour_seconds)
    try:
        time.sleep(0.5)                   # the neighbours are running before anything is timed
        for r in range(args.rounds):
            for s in (systems if r % 2 == 0 else systems[::-1]):
                py = args.peer_python if s in PEERS else sys.executable
                p = subprocess.run([py, os.path.abspath(__file__), "--child", s, name, "--epochs", str(args.epochs)],
                                   capture_output=True, text=True, env=env)
                if p.returncode != 0:
                    res[s] = "error: " + (p.stderr.strip().splitlines() or ["?"])[-1][:100]
                    continue
                if isinstance(res[s], list):
                    res[s].append(json.loads(p.stdout.strip().splitlines()[-1])["steady_s"])
    finally:
        stop_neighbours(procs)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workloads", nargs="*", help=f"some of {', '.join(WORKLOADS)} (default: all)")
    ap.add_argument("--neighbours", default="0,1,2", help="comma-separated counts of busy neighbours (default 0,1,2)")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3, help="epochs per process; the first is warm-up")
    ap.add_argument("--neighbour-seconds", type=float, default=900.0,
                    help="a neighbour ends on its own after this long (default 900)")
    ap.add_argument("--peer-python", default=sys.executable)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], args.epochs)
    names = args.workloads or list(WORKLOADS)
    systems = args.systems.split(",")
    env = {k: v for k, v in os.environ.items() if k not in DROP_ENV}
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  cpus={os.cpu_count()}  rounds={args.rounds}  epochs/process={args.epochs}")
    print(f"{'workload':8} {'busy':>4} {'system':15} {'samples/s':>10} {'fastbp ×':>9}")
    for name in names:
        n = WORKLOADS[name][2]
        for k in (int(x) for x in args.neighbours.split(",")):
            res = measure(name, systems, k, args, env)
            med = {s: statistics.median(v) for s, v in res.items() if isinstance(v, list) and v}
            for s in systems:
                if s not in med:
                    print(f"{name:8} {k:4d} {s:15} {res[s] or 'no result'}")
                    continue
                ratio = med[s] / med["fastbp"] if "fastbp" in med else float("nan")
                print(f"{name:8} {k:4d} {s:15} {n / med[s]:10.0f} {ratio:9.2f}", flush=True)
    print("# busy: CPU-bound neighbour processes running. 'fastbp ×': a system's time over fastbp's.")


if __name__ == "__main__":
    main()
